"""JAX's default PRNG keys (threefry 2x32), made and split in NumPy: the same keys, no compiled programs.

Outside ``jit``, ``jax.random.PRNGKey``, ``split`` and ``fold_in`` each compile a small program
(per number of keys, for ``split``): 0.05-0.25 s each on a 2-core CPU, on the critical path of a
fresh process's first fit. These functions compute the same raw ``uint32`` keys on the host with
the Threefry-2x32 hash (Salmon et al. 2011, 20 rounds), as JAX does for its default
implementation with ``jax_threefry_partitionable`` on (JAX's default). Under any other PRNG
configuration, or for a key that is not a concrete raw key (a typed key, a tracer), they call
``jax.random`` itself, so the keys are always JAX's.
"""

import jax
import numpy as np

__all__ = ["prng_key", "split", "fold_in"]

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(value: np.ndarray, distance: int) -> np.ndarray:
    return (value << np.uint32(distance)) | (value >> np.uint32(32 - distance))


def threefry_2x32(key: np.ndarray, first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Threefry-2x32 hash of the counter pairs (``first``, ``second``) under ``key``, as in JAX.

    Args:
        key: (2,) uint32 raw key.
        first: uint32 array, the first word of each counter.
        second: uint32 array of the same shape, the second word of each counter.

    Returns:
        The two hashed words, uint32 arrays of that shape.
    """
    schedule = [key[0], key[1], key[0] ^ key[1] ^ _PARITY]
    words = [first + schedule[0], second + schedule[1]]
    for block in range(5):
        for distance in _ROTATIONS[block % 2]:
            words[0] = words[0] + words[1]
            words[1] = words[0] ^ _rotate_left(words[1], distance)
        words[0] = words[0] + schedule[(block + 1) % 3]
        words[1] = words[1] + schedule[(block + 2) % 3] + np.uint32(block + 1)
    return words[0], words[1]


def _on_host() -> bool:
    """Whether JAX's PRNG configuration is the one these functions reproduce."""
    return jax.config.jax_default_prng_impl == "threefry2x32" and bool(jax.config.jax_threefry_partitionable)


def _raw_key(key) -> np.ndarray | None:
    """The key as a (2,) uint32 NumPy array, or None when it must stay with JAX (typed, traced, other shape)."""
    if isinstance(key, jax.core.Tracer):
        return None
    if isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return None
    array = np.asarray(key)
    if array.shape != (2,) or array.dtype != np.uint32:
        return None
    return array


def prng_key(seed: int) -> np.ndarray:
    """``jax.random.PRNGKey(seed)`` for a seed in [0, 2**31): a (2,) uint32 array ([0, seed])."""
    seed = int(seed)
    if not _on_host() or not 0 <= seed < 2**31:
        return np.asarray(jax.random.PRNGKey(seed))
    return np.array([0, seed], dtype=np.uint32)


def split(key, num: int = 2) -> np.ndarray:
    """``jax.random.split(key, num)``: (num, 2) uint32 keys (JAX's own keys when not computable here)."""
    raw = _raw_key(key)
    if raw is None or not _on_host():
        return jax.random.split(key, num)
    counters = np.arange(num, dtype=np.uint32)
    first, second = threefry_2x32(raw, np.zeros(num, dtype=np.uint32), counters)
    return np.stack([first, second], axis=-1)


def fold_in(key, data: int) -> np.ndarray:
    """``jax.random.fold_in(key, data)`` for data in [0, 2**31): a (2,) uint32 key."""
    raw = _raw_key(key)
    if raw is None or not _on_host() or not 0 <= int(data) < 2**31:
        return jax.random.fold_in(key, data)
    first, second = threefry_2x32(raw, np.zeros(1, dtype=np.uint32), np.array([data], dtype=np.uint32))
    return np.concatenate([first, second])
