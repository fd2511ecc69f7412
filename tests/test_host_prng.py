"""The host-side PRNG keys equal JAX's own (the oracle), and fall back to JAX where they cannot."""

import jax
import numpy as np
import pytest

from bayes_glmhmm import _host_prng as host_prng

SEEDS = [0, 1, 2, 42, 123_456, 2**31 - 1]


@pytest.mark.parametrize("seed", SEEDS)
def test_keys_splits_and_folds_equal_jax_random(seed):
    key = host_prng.prng_key(seed)
    np.testing.assert_array_equal(key, np.asarray(jax.random.PRNGKey(seed)))
    for num in (1, 2, 3, 5, 101):
        np.testing.assert_array_equal(host_prng.split(key, num), np.asarray(jax.random.split(key, num)))
    for data in (0, 1, 1000, 2**31 - 1):
        np.testing.assert_array_equal(host_prng.fold_in(key, data), np.asarray(jax.random.fold_in(key, data)))
    # A split of a split (the keys a fit derives from its seed), from a JAX array key too.
    nested = host_prng.split(host_prng.split(jax.random.PRNGKey(seed), 3)[1], 4)
    expected = jax.random.split(jax.random.split(jax.random.PRNGKey(seed), 3)[1], 4)
    np.testing.assert_array_equal(nested, np.asarray(expected))


def test_typed_traced_and_out_of_range_keys_are_jax_own():
    typed = jax.random.key(7)
    split = host_prng.split(typed, 3)
    assert jax.dtypes.issubdtype(split.dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(jax.random.key_data(split), jax.random.key_data(jax.random.split(typed, 3)))
    raw = jax.random.PRNGKey(3)
    traced = jax.jit(lambda key: host_prng.split(key, 2))(raw)
    np.testing.assert_array_equal(traced, np.asarray(jax.random.split(raw, 2)))
    np.testing.assert_array_equal(host_prng.prng_key(-5), np.asarray(jax.random.PRNGKey(-5)))
    np.testing.assert_array_equal(host_prng.prng_key(2**40), np.asarray(jax.random.PRNGKey(2**40)))


def test_another_prng_configuration_gets_jax_keys():
    key = host_prng.prng_key(11)
    with jax.threefry_partitionable(False):
        original = np.asarray(jax.random.split(key, 4))
        np.testing.assert_array_equal(host_prng.split(key, 4), original)
        np.testing.assert_array_equal(host_prng.fold_in(key, 9), np.asarray(jax.random.fold_in(key, 9)))
    # The check can fail: the two configurations split into different keys.
    assert not np.array_equal(host_prng.split(key, 4), original)
