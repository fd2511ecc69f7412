"""Compile once: our NUTS runner against NumPyro's MCMC driver, first and repeated fits.

Both run NumPyro's NUTS on the same model (``glmhmm_model``), the same starting points and the
same chain settings (4 chains in parallel on 4 host devices, 1000 warmup + 1000 draws, the
article's 10 x 100 data). Each sampler fits data set A (first call: tracing and compilation
included), then data set B of the same shapes (a repeated fit, as in a simulation study or a
bootstrap), then A again. The runner compiles once; NumPyro's ``MCMC`` re-traces and recompiles
``pmap``-ed chains on every call. The samplers' calls alternate so load affects all alike. The
runner runs twice: with NumPyro's identity starting mass matrix (the like-for-like row) and with
``fit_nuts``' default curvature preconditioning (fewer warmup gradients).

    python benchmarks/sampler_runner.py [--quick]

Writes results/benchmarks/sampler_runner.csv.
"""

import argparse
import os
import time

import numpyro

numpyro.set_host_device_count(4)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from numpyro.infer import MCMC, NUTS  # noqa: E402

from bayes_glmhmm import Priors, article_data, fit_em  # noqa: E402
from bayes_glmhmm._io import write_text_atomic  # noqa: E402
from bayes_glmhmm.fit import _initial_values  # noqa: E402
from bayes_glmhmm.model import glmhmm_model  # noqa: E402
from bayes_glmhmm.sampler import compiled_programs, run_nuts  # noqa: E402

NUM_STATES = 3
NUM_CHAINS = 4


def _problem(seed):
    data = article_data(jax.random.PRNGKey(seed))
    inputs, emissions = jnp.asarray(data.inputs), jnp.asarray(data.emissions)
    mask = jnp.ones(emissions.shape, bool)
    kwargs = dict(inputs=inputs, emissions=emissions, mask=mask, priors=Priors(), input_mean=inputs.mean((0, 1)))
    em = fit_em(inputs, emissions, NUM_STATES, priors=Priors(), num_restarts=10, seed=seed)
    z = _initial_values(jax.random.PRNGKey(seed), [em.params] * NUM_CHAINS, kwargs["input_mean"], 0.1, inputs.dtype)
    return kwargs, z


def _numpyro_fit(key, z, kwargs, num_warmup, num_samples):
    mcmc = MCMC(
        NUTS(glmhmm_model),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=NUM_CHAINS,
        chain_method="parallel",
        progress_bar=False,
    )
    # One run() as fit_nuts used to call it: warmup() + run() would compile twice per call. MCMC.run
    # does not expose the warmup's leapfrog steps (-1 below); the like-for-like runner row shows them.
    mcmc.run(key, init_params=z, extra_fields=("num_steps",), num_states=NUM_STATES, **kwargs)
    return np.asarray(mcmc.get_extra_fields()["num_steps"]).sum(), -1


def _runner_fit(key, z, kwargs, num_warmup, num_samples, precondition=False):
    draws = run_nuts(
        key,
        z,
        glmhmm_model,
        kwargs,
        {"num_states": NUM_STATES},
        num_warmup=num_warmup,
        num_samples=num_samples,
        chain_method="parallel",
        precondition=precondition,
    )
    return draws.num_steps.sum(), draws.warmup_num_steps.sum()


def _runner_fit_preconditioned(key, z, kwargs, num_warmup, num_samples):
    return _runner_fit(key, z, kwargs, num_warmup, num_samples, precondition=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="results/benchmarks/sampler_runner.csv")
    args = parser.parse_args()
    num_warmup = num_samples = 100 if args.quick else 1000
    problems = {"A": _problem(0), "B": _problem(1)}
    samplers = {
        "numpyro_mcmc": _numpyro_fit,
        "bayes_glmhmm_runner": _runner_fit,
        "bayes_glmhmm_runner_preconditioned": _runner_fit_preconditioned,
    }
    rows = []
    for call, name in enumerate(["A", "B", "A"]):
        kwargs, z = problems[name]
        for sampler, fit in samplers.items():
            programs = compiled_programs()
            start = time.perf_counter()
            kept_steps, warmup_steps = fit(jax.random.PRNGKey(call), z, kwargs, num_warmup, num_samples)
            seconds = time.perf_counter() - start
            rows.append(
                dict(
                    sampler=sampler,
                    call=call + 1,
                    data=name,
                    seconds=round(seconds, 3),
                    kept_draw_gradients=int(kept_steps),
                    warmup_gradients=int(warmup_steps),
                    new_runner_programs=compiled_programs() - programs,
                    load_1min=round(os.getloadavg()[0], 2),
                )
            )
            print(rows[-1], flush=True)
    header = list(rows[0])
    lines = [",".join(header)] + [",".join(str(row[column]) for column in header) for row in rows]
    if not args.quick:
        write_text_atomic(args.out, "\n".join(lines) + "\n")
    for sampler in samplers:
        times = [row["seconds"] for row in rows if row["sampler"] == sampler]
        print(f"{sampler}: first {times[0]:.1f} s, repeats {times[1]:.1f} / {times[2]:.1f} s")


if __name__ == "__main__":
    main()
