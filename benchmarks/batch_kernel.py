"""The batched, state-major marginal log-likelihood against the ``vmap`` of the one-sequence kernel.

``inference.hmm_marginal_loglik_batch`` computes every sequence's log p(y[n] | theta) and its
analytic (forward-backward) gradient with the sequences along the last axis of the scans' (K, N)
arrays; before it, NUTS's potential ran ``jax.vmap(inference.hmm_marginal_loglik)``, whose scans
carry (N, K) arrays. Three measurements, each "vmap" (before) beside "batch" (now), in one process:

1. ``kernel``: value and gradient (initial probabilities, transition matrix, log-likelihoods) of
   the summed marginal log-likelihood, the log-likelihoods given, for several (N, T, K).
2. ``potential``: value and gradient of NUTS's whole potential (``numpyro.infer.util.
   potential_energy`` of ``glmhmm_model``, emissions and priors included) at the truth: the
   article's Gaussian data (10 x 100, K = 3) and the families benchmark's Bernoulli data at the
   field's scale (270 sessions of 150-230 trials, D = 10) at K = 3 and 5.
3. ``fit`` (``--fit``): ``fit_nuts`` on the article's data, 4 chains x (1000 + 1000), warm (each
   variant compiled by a first fit), alternating, ``--repeats`` times: NUTS seconds and min bulk
   ESS per second.

"vmap" is obtained by replacing ``model.hmm_marginal_loglik_batch`` with the ``vmap`` of the
one-sequence kernel while a program is traced. Timings are medians of interleaved rounds
(``families.interleaved_times``). Compile seconds are those of the first call.

    python benchmarks/batch_kernel.py [--fit --repeats 3]

Writes results/benchmarks/batch_kernel.csv and batch_kernel.md.
"""

import argparse
import contextlib
import functools
import os
import statistics
import sys
import time

import numpyro

numpyro.set_host_device_count(4)  # before JAX starts: one CPU device per chain for --fit

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from families import CompiledGradient, Scale, _compiled_gradient, interleaved_times, simulated_problem  # noqa: E402

from bayes_glmhmm import model  # noqa: E402
from bayes_glmhmm._io import csv_text, markdown_table, write_text_atomic  # noqa: E402
from bayes_glmhmm.emissions import get_family  # noqa: E402
from bayes_glmhmm.inference import hmm_marginal_loglik, hmm_marginal_loglik_batch  # noqa: E402
from bayes_glmhmm.params import Priors  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results", "benchmarks")
KERNEL_SHAPES = [(10, 100, 3), (100, 1000, 3), (270, 230, 3), (270, 230, 4), (270, 230, 5), (270, 230, 8), (1, 1000, 3)]
COLUMNS = ["measurement", "case", "vmap_us", "batch_us", "speedup", "vmap_compile_s", "batch_compile_s", "max_gap"]


def _vmapped(initial_probs, transition_matrix, log_likelihoods, mask):
    return jax.vmap(hmm_marginal_loglik, in_axes=(None, None, 0, 0))(
        initial_probs, transition_matrix, log_likelihoods, mask
    )


@contextlib.contextmanager
def _before():
    """Trace NUTS's potential as before: the one-sequence adjoint under ``vmap``."""
    original = model.hmm_marginal_loglik_batch
    model.hmm_marginal_loglik_batch = _vmapped
    try:
        yield
    finally:
        model.hmm_marginal_loglik_batch = original


def _compiled(function, *args) -> tuple[object, float]:
    start = time.perf_counter()
    compiled = jax.jit(function).lower(*args).compile()
    return compiled, time.perf_counter() - start


def _row(measurement, case, times, compile_seconds, gap) -> dict:
    vmap_us, batch_us = (1e6 * statistics.median(times[name]) for name in ("vmap", "batch"))
    return {
        "measurement": measurement,
        "case": case,
        "vmap_us": round(vmap_us, 1),
        "batch_us": round(batch_us, 1),
        "speedup": round(vmap_us / batch_us, 2),
        "vmap_compile_s": round(compile_seconds["vmap"], 2),
        "batch_compile_s": round(compile_seconds["batch"], 2),
        "max_gap": f"{gap:.1e}",
    }


def kernel_rows(seconds_budget: float) -> list[dict]:
    """Value and gradient of the summed marginal log-likelihood, both kernels, per shape."""
    rows = []
    for num_sequences, num_timesteps, num_states in KERNEL_SHAPES:
        key_loglik, key_mask = jax.random.split(jax.random.PRNGKey(num_sequences * num_states))
        log_likelihoods = 2.0 * jax.random.normal(key_loglik, (num_sequences, num_timesteps, num_states)) - 2.0
        mask = jax.random.uniform(key_mask, (num_sequences, num_timesteps)) > 0.05
        off_diagonal = 0.05 / (num_states - 1)
        transition_matrix = jnp.full((num_states, num_states), off_diagonal) + (0.95 - off_diagonal) * jnp.eye(
            num_states
        )
        initial_probs = jnp.full(num_states, 1.0 / num_states)
        data = {"mask": mask}
        z = {"initial_probs": initial_probs, "transition_matrix": transition_matrix, "log_likelihoods": log_likelihoods}
        gradients, compile_seconds, results = {}, {}, {}
        for name, kernel in (("vmap", _vmapped), ("batch", hmm_marginal_loglik_batch)):

            def total(z, data, kernel=kernel):
                values = kernel(z["initial_probs"], z["transition_matrix"], z["log_likelihoods"], data["mask"])
                return jnp.sum(values)

            compiled, compile_seconds[name] = _compiled(jax.value_and_grad(total), z, data)
            gradients[name] = CompiledGradient(compiled, z, data)
            results[name] = compiled(z, data)
        gap = _relative_gap(results["vmap"], results["batch"])
        times = interleaved_times(gradients, seconds_budget)
        rows.append(_row("kernel", f"{num_sequences} x {num_timesteps}, K = {num_states}", times, compile_seconds, gap))
        print(rows[-1], flush=True)
    return rows


def _relative_gap(first, second) -> float:
    """The largest |a - b| / max|a| over the leaves of two (value, gradient) results."""
    gaps = [
        float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(a)), 1e-30))
        for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second), strict=True)
    ]
    return max(gaps)


def potential_rows(seconds_budget: float) -> list[dict]:
    """Value and gradient of NUTS's whole potential at the truth, before and now."""
    from bayes_glmhmm.model import centred_sites, unconstrain_sites
    from bayes_glmhmm.simulate import article_data

    article = article_data(jax.random.PRNGKey(0))
    cases = [("article, Gaussian 10 x 100, K = 3", None, article)]
    bernoulli = get_family("bernoulli")
    for num_states in (3, 5):
        problem = simulated_problem(jax.random.PRNGKey(0), bernoulli, Scale(270, 150, 230, 10, num_states, 2))
        cases.append((f"Bernoulli 270 x 150-230, D = 10, K = {num_states}", problem, None))
    rows = []
    for case, problem, article_set in cases:
        if problem is not None:
            family, truth = problem.family, problem.truth
            inputs, emissions, mask = problem.inputs, problem.emissions, problem.mask
        else:
            family, truth = get_family("gaussian"), article_set.params
            inputs, emissions = np.asarray(article_set.inputs), np.asarray(article_set.emissions)
            mask = np.ones(emissions.shape, bool)
        input_mean = (np.sum(inputs * mask[..., None], axis=(0, 1)) / np.sum(mask)).astype(np.float32)
        sites = centred_sites(truth, input_mean)
        z = unconstrain_sites({name: jnp.asarray(value, jnp.float32) for name, value in sites.items()}, family)
        data = {"inputs": inputs, "emissions": emissions, "mask": mask, "input_mean": input_mean}
        num_states = int(np.shape(truth.initial_probs)[0])
        potential_model = functools.partial(
            model.glmhmm_model, num_states=num_states, priors=Priors(), family=family, adjoint=True
        )
        gradients, compile_seconds, results = {}, {}, {}
        for name, context in (("vmap", _before), ("batch", contextlib.nullcontext)):
            with context():
                start = time.perf_counter()
                gradients[name] = _compiled_gradient(potential_model, data, z)
                compile_seconds[name] = time.perf_counter() - start
            results[name] = gradients[name].function(z, data)
        gap = _relative_gap(results["vmap"], results["batch"])
        times = interleaved_times(gradients, seconds_budget)
        rows.append(_row("potential", case, times, compile_seconds, gap))
        print(rows[-1], flush=True)
    return rows


def fit_rows(repeats: int) -> list[dict]:
    """Warm ``fit_nuts`` on the article's data, both variants alternating: NUTS seconds and ESS/s."""
    import warnings

    from bayes_glmhmm import fit_nuts
    from bayes_glmhmm.simulate import article_data

    article = article_data(jax.random.PRNGKey(0))

    def fit(context):
        with context(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            posterior = fit_nuts(article.inputs, article.emissions, 3, seed=0, progress_bar=False)
        seconds = posterior.wall_seconds["nuts"]
        return seconds, posterior.diagnostics()["min_ess_bulk"] / seconds

    variants = {"vmap": _before, "batch": contextlib.nullcontext}
    for context in variants.values():
        fit(context)  # compile
    seconds = {name: [] for name in variants}
    ess_per_second = {name: [] for name in variants}
    for repeat in range(repeats):
        order = list(variants) if repeat % 2 == 0 else list(reversed(variants))
        for name in order:
            wall, rate = fit(variants[name])
            seconds[name].append(wall)
            ess_per_second[name].append(rate)
    rows = []
    for label, values in (("NUTS s", seconds), ("min bulk ESS / s", ess_per_second)):
        vmap_value, batch_value = (statistics.median(values[name]) for name in variants)
        ratio = vmap_value / batch_value if label == "NUTS s" else batch_value / vmap_value
        rows.append(
            {
                "measurement": "fit",
                "case": f"article, 4 x (1000 + 1000), warm: {label}",
                "vmap_us": round(vmap_value, 2),
                "batch_us": round(batch_value, 2),
                "speedup": round(ratio, 2),
                "vmap_compile_s": "",
                "batch_compile_s": "",
                "max_gap": "",
            }
        )
        print(rows[-1], flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="timing budget per case (s)")
    parser.add_argument("--fit", action="store_true", help="also time warm fit_nuts on the article's data")
    parser.add_argument("--repeats", type=int, default=3, help="fits per variant (--fit)")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)
    rows = kernel_rows(args.seconds) + potential_rows(args.seconds)
    if args.fit:
        rows += fit_rows(args.repeats)
    os.makedirs(args.out, exist_ok=True)
    table = [[row[column] for column in COLUMNS] for row in rows]
    write_text_atomic(os.path.join(args.out, "batch_kernel.csv"), csv_text(COLUMNS, table))
    lead = (
        "# The batched, state-major marginal log-likelihood\n\n"
        f"Written by `benchmarks/batch_kernel.py` ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores, "
        f"jax {jax.__version__}, 1-min load {os.getloadavg()[0]:.1f} at the end). `vmap`: "
        "`jax.vmap(hmm_marginal_loglik)` (before); `batch`: `hmm_marginal_loglik_batch` (now). Kernel and "
        "potential rows: microseconds per value and gradient, medians of interleaved rounds; `fit` rows: "
        "their own units (seconds; ESS per second, where `speedup` is batch / vmap). `max_gap`: the largest "
        "relative difference of the two results (float32).\n\n"
    )
    markdown = lead + "\n".join(markdown_table(COLUMNS, table)) + "\n"
    write_text_atomic(os.path.join(args.out, "batch_kernel.md"), markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
