"""Our EM against dynamax's ``LinearRegressionHMM.fit_em``: same data, same start, same iterations.

Both run maximum-likelihood EM (dynamax's Dirichlet concentrations set to 1) for exactly
``--iters`` iterations from one start (ours with ``tol=-1``, which no step can meet, so early
stopping is off). Compile time is kept apart from run time: every method is called once to
compile and then ``--repeats`` more times; the run time is the fastest repeat. dynamax builds a
fresh jitted function inside every ``fit_em`` call, so each of its calls compiles again; its run
time is therefore measured through one outer ``jax.jit`` around ``fit_em(verbose=False)``, which
compiles exactly the same computation once. The timed calls of the two alternate, so that load
from other work on a shared machine hits both alike. Writes ``results/benchmarks/em_speed.csv``.

Usage::

    python benchmarks/em_speed.py [--iters 100] [--repeats 3] [--out results/benchmarks]
"""

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from bayes_glmhmm import article_params, fit_em, simulate
from bayes_glmhmm._io import write_text_atomic
from bayes_glmhmm.em import initialize_params

SIZES = {"article 10 x 100": (10, 100), "large 100 x 1000": (100, 1000)}


def _data(num_sequences, num_timesteps):
    params = article_params()
    inputs = jax.random.uniform(jax.random.PRNGKey(0), (num_sequences, num_timesteps, 1), minval=1.0, maxval=10.0)
    _, emissions = simulate(jax.random.PRNGKey(1), params, inputs)
    start = initialize_params(
        jax.random.PRNGKey(5), inputs, jnp.asarray(emissions), jnp.ones(emissions.shape, bool), params.num_states
    )
    return np.asarray(inputs), np.asarray(emissions), start


def _first_call(function):
    """(seconds of the first call, compile included, and its result)."""
    begin = time.perf_counter()
    result = jax.block_until_ready(function())
    return time.perf_counter() - begin, result


def _interleaved_runs(functions, repeats):
    """Fastest of ``repeats`` calls of each function, the calls interleaved so that load from
    other processes on a shared machine hits every function alike."""
    best = [float("inf")] * len(functions)
    for _ in range(repeats):
        for i, function in enumerate(functions):
            begin = time.perf_counter()
            jax.block_until_ready(function())
            best[i] = min(best[i], time.perf_counter() - begin)
    return best


def _dynamax_runner(start, inputs, emissions, num_iters):
    from dynamax.hidden_markov_model import LinearRegressionHMM

    hmm = LinearRegressionHMM(
        start.num_states, start.input_dim, 1, initial_probs_concentration=1.0, transition_matrix_concentration=1.0
    )
    params, props = hmm.initialize(
        jax.random.PRNGKey(0),
        initial_probs=start.initial_probs,
        transition_matrix=start.transition_matrix,
        emission_weights=start.weights[:, None, :],
        emission_biases=start.biases[:, None],
        emission_covariances=(start.scales**2)[:, None, None],
    )
    emissions3 = jnp.asarray(emissions)[..., None]
    inputs = jnp.asarray(inputs)

    def plain():
        return hmm.fit_em(params, props, emissions3, inputs=inputs, num_iters=num_iters, verbose=False)

    jitted = jax.jit(lambda p, y, x: hmm.fit_em(p, props, y, inputs=x, num_iters=num_iters, verbose=False))
    return plain, lambda: jitted(params, emissions3, inputs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=os.path.join("results", "benchmarks"))
    parser.add_argument("--sizes", nargs="*", default=list(SIZES), choices=list(SIZES))
    args = parser.parse_args(argv)

    header = [
        "data",
        "num_iters",
        "ours_first_call_s",
        "ours_run_s",
        "dynamax_fit_em_call_s",
        "dynamax_first_call_s",
        "dynamax_run_s",
        "run_ratio_dynamax_over_ours",
        "first_call_ratio_dynamax_over_ours",
        "max_abs_param_diff",
        "final_log_prob_ours",
        "final_log_prob_dynamax",
    ]
    lines = [",".join(header)]
    for name in args.sizes:
        inputs, emissions, start = _data(*SIZES[name])

        def ours(inputs=inputs, emissions=emissions, start=start):
            result = fit_em(inputs, emissions, 3, init_params=start, num_iters=args.iters, tol=-1.0)
            return result.params, result.log_probs

        ours_first, (ours_params, ours_log_probs) = _first_call(ours)
        assert len(ours_log_probs) == args.iters, "tol=-1 must run every iteration"
        plain, jitted = _dynamax_runner(start, inputs, emissions, args.iters)
        plain_first, _ = _first_call(plain)
        dyn_first, (dyn_params, dyn_log_probs) = _first_call(jitted)
        ours_run, dyn_run = _interleaved_runs([ours, jitted], args.repeats)
        diff = max(
            np.max(np.abs(ours_params.weights[:, 0] - np.asarray(dyn_params.emissions.weights[:, 0, 0]))),
            np.max(np.abs(ours_params.biases - np.asarray(dyn_params.emissions.biases[:, 0]))),
            np.max(np.abs(ours_params.scales - np.sqrt(np.asarray(dyn_params.emissions.covs[:, 0, 0])))),
            np.max(np.abs(ours_params.transition_matrix - np.asarray(dyn_params.transitions.transition_matrix))),
        )
        row = [
            name,
            args.iters,
            ours_first,
            ours_run,
            plain_first,
            dyn_first,
            dyn_run,
            dyn_run / ours_run,
            dyn_first / ours_first,
            diff,
            float(ours_log_probs[-1]),
            # dynamax adds the log densities of its flat Dirichlet(1) priors, a constant.
            float(np.asarray(dyn_log_probs)[-1]),
        ]
        lines.append(",".join(value if isinstance(value, str) else f"{value:.6g}" for value in row))
        print(
            f"{name}: ours {ours_run * 1e3:.1f} ms run ({ours_first:.2f} s first call), dynamax "
            f"{dyn_run * 1e3:.1f} ms run ({dyn_first:.2f} s first call, {plain_first:.2f} s per fit_em call); "
            f"dynamax / ours = {dyn_run / ours_run:.2f}; max |param diff| {diff:.2g}",
            flush=True,
        )
    path = os.path.join(args.out, "em_speed.csv")
    write_text_atomic(path, "\n".join(lines) + "\n")
    print(
        f"wrote {path}: {args.iters} ML-EM iterations from one start, float32, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, jax {jax.__version__}; run = fastest of {args.repeats} calls after the first"
    )


if __name__ == "__main__":
    main()
