"""Time per log-density gradient: plain autodiff of the scanned filter vs the analytic adjoint.

Both compute d/dtheta sum_n log p(y_n | x_n, theta) for the GLM-HMM, vmapped over sequences,
on the same data; compile time is excluded (one warm-up call), each figure is the median of
repeated calls. Beside the two kernels: the public ``log_likelihood`` as a user differentiates
it (``public_default``: its default, the adjoint; ``public_autodiff``: ``adjoint=False``) and the
naive log-space ``lax.scan`` forward algorithm a user would write (``naive_scan``, of
``benchmarks/_alternatives_models.py``); ``public_vs_naive`` is the public default's time over
the naive scan's. Writes results/benchmarks/gradient_speed.csv.

    python benchmarks/gradient_speed.py [--quick]
"""

import argparse
import csv
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from _alternatives_models import _forward_log_marginal

from bayes_glmhmm import GLMHMMParams, log_likelihood, simulate
from bayes_glmhmm.emissions import gaussian_glm_log_likelihoods
from bayes_glmhmm.inference import hmm_filter, hmm_marginal_loglik


def _random_params(key, num_states, input_dim):
    keys = jax.random.split(key, 4)
    return GLMHMMParams(
        jnp.ones(num_states) / num_states,
        0.8 * jnp.eye(num_states) + 0.2 * jax.random.dirichlet(keys[0], jnp.ones((num_states, num_states))),
        jax.random.normal(keys[1], (num_states, input_dim)),
        jax.random.normal(keys[2], (num_states,)) * 3,
        jnp.exp(0.3 * jax.random.normal(keys[3], (num_states,))),
    )


def _objective(kernel):
    def total(params, inputs, emissions, mask):
        log_likelihoods = gaussian_glm_log_likelihoods(params.weights, params.biases, params.scales, inputs, emissions)
        per_sequence = jax.vmap(kernel, in_axes=(None, None, 0, 0))(
            params.initial_probs, params.transition_matrix, log_likelihoods, mask
        )
        return jnp.sum(per_sequence)

    return jax.jit(jax.value_and_grad(total))


def _public(adjoint: bool):
    def total(params, inputs, emissions, mask):
        return jnp.sum(log_likelihood(params, inputs, emissions, mask, adjoint=adjoint))

    return jax.jit(jax.value_and_grad(total))


def _naive_scan(initial_probs, transition_matrix, log_likelihoods, mask):
    del mask  # every emission is observed here
    return _forward_log_marginal(jnp.log(initial_probs), jnp.log(transition_matrix), log_likelihoods)


KERNELS = {
    "autodiff_scan": _objective(lambda p, a, ll, m: hmm_filter(p, a, ll, m).marginal_loglik),
    "analytic_adjoint": _objective(hmm_marginal_loglik),
    "public_default": _public(True),
    "public_autodiff": _public(False),
    "naive_scan": _objective(_naive_scan),
}


def _time(function, *args, repeats):
    jax.block_until_ready(function(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(function(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="results/benchmarks/gradient_speed.csv")
    args = parser.parse_args()
    shapes = [(10, 100, 3), (1, 1000, 3), (100, 1000, 3), (1, 10000, 3), (10, 100, 8), (1000, 100, 3)]
    if args.quick:
        shapes = shapes[:2]
    rows = []
    for num_sequences, num_timesteps, num_states in shapes:
        key = jax.random.PRNGKey(num_sequences * 7 + num_timesteps + num_states)
        params = _random_params(key, num_states, 1)
        inputs = jax.random.uniform(key, (num_sequences, num_timesteps, 1), minval=1, maxval=10)
        _, emissions = simulate(key, params, inputs)
        mask = jnp.ones(emissions.shape, bool)
        repeats = max(5, min(200, int(2e6 / (num_sequences * num_timesteps * num_states))))
        row = {"num_sequences": num_sequences, "num_timesteps": num_timesteps, "num_states": num_states}
        values = {}
        for name, function in KERNELS.items():
            seconds = _time(function, params, inputs, emissions, mask, repeats=repeats)
            row[f"{name}_us"] = round(seconds * 1e6, 1)
            values[name] = function(params, inputs, emissions, mask)
        row["speedup"] = round(row["autodiff_scan_us"] / row["analytic_adjoint_us"], 2)
        row["public_vs_naive"] = round(row["public_default_us"] / row["naive_scan_us"], 2)
        gradient_gap = max(
            float(jnp.max(jnp.abs(a - b)))
            for a, b in zip(
                jax.tree.leaves(values["autodiff_scan"]), jax.tree.leaves(values["analytic_adjoint"]), strict=True
            )
        )
        row["max_abs_difference"] = f"{gradient_gap:.2e}"
        rows.append(row)
        print(row, flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    temporary = args.out + ".tmp"
    with open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, args.out)


if __name__ == "__main__":
    main()
