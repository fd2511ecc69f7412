"""How XLA compiles our programs: less optimization for the ones that run once per fit.

On a CPU, XLA's compile time of a program grows with its optimization level, and for the small
programs of one fit (EM starting points, jittered chain starts, NUTS initialization with the
curvature start, draws constrained once) the optimizer costs more compile time than it saves run
time (measured on the article's data, 2-core CPU: the NUTS initialization compiles in 1.95 s at
level 0 against 3.1 s at the default). The programs that run many times keep XLA's default: at
level 0 the NUTS transitions run 3x slower, and EM at level 1 1.8x slower. Per-draw computations
over all posterior draws (FFBS, smoothing, per-draw likelihoods, posterior predictive draws) take
level 1: FFBS compiles in 1.0 s against 1.6 s, predictive draws in 0.9 s against 2.1 s, and both
run within 20% of the default's time (1000 draws of the article's data).

And no programs for host data: :func:`device_array` copies NumPy data to the device, where
``jnp.asarray`` outside ``jit`` would compile a program per shape and dtype (the PRNG keys' side
of this is :mod:`bayes_glmhmm._host_prng`).
"""

import jax
import numpy as np

__all__ = ["ONE_OFF", "PER_DRAW", "device_array", "jit_one_off", "jit_per_draw"]

#: XLA options of a program that runs once per fit.
ONE_OFF = {"xla_backend_optimization_level": 0}
#: XLA options of a program that runs once per chunk of posterior draws.
PER_DRAW = {"xla_backend_optimization_level": 1}


def _jit_with(options: dict):
    """A ``jax.jit`` with the XLA ``options``, usable as a decorator, with or without arguments."""

    def jit(function=None, **jit_kwargs):
        if function is None:
            return lambda inner: jax.jit(inner, compiler_options=options, **jit_kwargs)
        return jax.jit(function, compiler_options=options, **jit_kwargs)

    return jit


#: ``jax.jit`` with :data:`ONE_OFF` options (``@jit_one_off`` or ``@jit_one_off(static_argnames=...)``).
jit_one_off = _jit_with(ONE_OFF)
#: ``jax.jit`` with :data:`PER_DRAW` options.
jit_per_draw = _jit_with(PER_DRAW)


def device_array(value, dtype=None) -> jax.Array:
    """``value`` as a JAX array (of ``dtype`` if given), copied from the host without compiling anything.

    Outside ``jit``, ``jnp.asarray`` of a NumPy array or Python scalar compiles a small program per
    shape and dtype (an identity, plus a cast when the dtype changes), 10-30 ms each on a 2-core
    CPU. A fit made 30-50 of them before its first real program; ``jax.device_put`` of the NumPy
    array, converted on the host, compiles none. A JAX array (or a tracer, inside ``jit`` or
    ``grad``) is returned as it is, or cast by JAX when its dtype differs.
    """
    if isinstance(value, jax.Array):
        return value if dtype is None or value.dtype == np.dtype(dtype) else value.astype(dtype)
    return jax.device_put(np.asarray(value, dtype=dtype))
