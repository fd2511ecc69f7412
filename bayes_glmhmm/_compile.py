"""How XLA compiles our programs: less optimization for the ones that run once per fit.

On a CPU, XLA's compile time of a program grows with its optimization level, and for the small
programs of one fit (EM starting points, jittered chain starts, NUTS initialization with the
curvature start, draws constrained once) the optimizer costs more compile time than it saves run
time (``benchmarks/cold_start.py``: the NUTS initialization compiles in about half the time at
level 0). The programs that run many times (the NUTS transitions, the EM iterations) keep XLA's
default. Per-draw computations over all posterior draws (FFBS, smoothing, per-draw likelihoods,
posterior predictive draws) take level 1, which compiles 1.5-2.5x faster than the default and
runs as fast on the article's shapes.
"""

import jax

__all__ = ["ONE_OFF", "PER_DRAW", "jit_one_off", "jit_per_draw"]

#: XLA options of a program that runs once per fit.
ONE_OFF = {"xla_backend_optimization_level": 0}
#: XLA options of a program that runs once per chunk of posterior draws.
PER_DRAW = {"xla_backend_optimization_level": 1}


def jit_one_off(function=None, **jit_kwargs):
    """``jax.jit`` with :data:`ONE_OFF` options; usable as a decorator, with or without arguments."""
    if function is None:
        return lambda inner: jax.jit(inner, compiler_options=ONE_OFF, **jit_kwargs)
    return jax.jit(function, compiler_options=ONE_OFF, **jit_kwargs)


def jit_per_draw(function=None, **jit_kwargs):
    """``jax.jit`` with :data:`PER_DRAW` options; usable as a decorator, with or without arguments."""
    if function is None:
        return lambda inner: jax.jit(inner, compiler_options=PER_DRAW, **jit_kwargs)
    return jax.jit(function, compiler_options=PER_DRAW, **jit_kwargs)
