"""Scaling of one log-density gradient in T, N and K: sequential scans against the parallel-in-time kernel.

Each implementation computes value_and_grad of sum_n log p(y_n | x_n, theta) for a Gaussian GLM-HMM
(emissions from :func:`bayes_glmhmm.emissions.gaussian_glm_log_likelihoods`, vmapped over sequences)
on the same data, side by side:

* ``autodiff_scan``: reverse-mode autodiff of the scanned filter, ``hmm_filter(...).marginal_loglik``;
* ``analytic_adjoint``: :func:`bayes_glmhmm.inference.hmm_marginal_loglik`, the forward scan with a
  backward-scan (Fisher identity) gradient, what NUTS uses;
* ``parallel``: :func:`bayes_glmhmm.inference.hmm_marginal_loglik_parallel`, a log-space associative
  reduction in O(log T) depth, differentiated by autodiff;
* ``associative_scan``: the same elements through ``jax.lax.associative_scan`` (all T prefixes, the
  last one kept), to show what skipping the down-sweep buys.

Sweeps: T in 1e2..1e5 (N = 1, K = 3); N in 1..1000 (T = 100, K = 3); K in 2..8 (N = 10, T = 100).
Compile time is excluded (a warm-up call); the implementations are timed in interleaved rounds, so a
change in machine load hits all of them alike, and each figure is the median over rounds, with the
number of rounds chosen per point to fit a time budget. Memory is XLA's own account of the compiled
executable (``Compiled.memory_analysis()``: temporaries + arguments + outputs), not a measured peak.
Writes results/benchmarks/scaling.csv, scaling.json (machine, load averages) and scaling.png.

    python benchmarks/scaling.py [--quick]
"""

import argparse
import csv
import io
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gradient_speed import KERNELS, _objective, _random_params  # noqa: E402

from bayes_glmhmm import simulate  # noqa: E402
from bayes_glmhmm._io import save_figures_atomic, write_json_atomic, write_text_atomic  # noqa: E402
from bayes_glmhmm.inference import (  # noqa: E402
    _combine_segments,
    _default_mask,
    _normalize_segment,
    _safe_log,
    _safe_logsumexp,
    hmm_marginal_loglik_parallel,
)


def _associative_scan_marginal_loglik(initial_probs, transition_matrix, log_likelihoods, mask):
    """hmm_marginal_loglik_parallel's elements through lax.associative_scan (every prefix computed)."""
    num_timesteps, num_states = log_likelihoods.shape
    log_likelihoods = jnp.where(_default_mask(log_likelihoods, mask)[:, None], log_likelihoods, 0.0)
    first = jnp.broadcast_to(_safe_log(initial_probs) + log_likelihoods[0], (1, num_states, num_states))
    rest = _safe_log(transition_matrix) + log_likelihoods[1:, None, :]
    elements = _normalize_segment(jnp.concatenate([first, rest]), jnp.zeros(num_timesteps, log_likelihoods.dtype))
    total = jax.tree.map(lambda leaf: leaf[-1], lax.associative_scan(_combine_segments, elements))
    return _safe_logsumexp(total.log_matrix[0], axis=0) + total.log_scale


IMPLEMENTATIONS = {
    **KERNELS,
    "parallel": _objective(hmm_marginal_loglik_parallel),
    "associative_scan": _objective(_associative_scan_marginal_loglik),
}
BASELINE = "analytic_adjoint"

SWEEPS = {
    "T": [(1, 100, 3), (1, 1_000, 3), (1, 10_000, 3), (1, 100_000, 3)],
    "N": [(1, 100, 3), (10, 100, 3), (100, 100, 3), (1_000, 100, 3)],
    "K": [(10, 100, 2), (10, 100, 3), (10, 100, 4), (10, 100, 6), (10, 100, 8)],
}
QUICK_SWEEPS = {"T": [(1, 100, 3), (1, 1_000, 3)], "N": [(10, 100, 3)], "K": [(10, 100, 2)]}


def _problem(num_sequences, num_timesteps, num_states):
    key = jax.random.PRNGKey(num_sequences * 7 + num_timesteps + num_states)
    params = _random_params(key, num_states, 1)
    inputs = jax.random.uniform(key, (num_sequences, num_timesteps, 1), minval=1, maxval=10)
    _, emissions = simulate(key, params, inputs)
    return params, inputs, emissions, jnp.ones(emissions.shape, bool)


def _memory_bytes(function, args):
    """XLA's memory account of the compiled gradient: (temporaries, temporaries + arguments + outputs)."""
    stats = function.lower(*args).compile().memory_analysis()
    total = stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes
    return stats.temp_size_in_bytes, total - stats.alias_size_in_bytes


def _largest_relative_gap(result, reference):
    """Max over gradient leaves of max|a - b| / max|b|, and the relative gap of the values."""
    value, gradients = result
    reference_value, reference_gradients = reference
    gaps = [
        float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(b)), 1e-30))
        for a, b in zip(jax.tree.leaves(gradients), jax.tree.leaves(reference_gradients), strict=True)
    ]
    return max(gaps), float(jnp.abs(value - reference_value) / jnp.abs(reference_value))


def _measure(shape, seconds_budget):
    num_sequences, num_timesteps, num_states = shape
    args = _problem(*shape)
    results, single = {}, {}
    for name, function in IMPLEMENTATIONS.items():
        results[name] = jax.block_until_ready(function(*args))  # compiles; not timed
        start = time.perf_counter()
        jax.block_until_ready(function(*args))
        single[name] = time.perf_counter() - start
    rounds = int(np.clip(seconds_budget / sum(single.values()), 5, 200))
    load_before = os.getloadavg()[0]
    times = {name: [] for name in IMPLEMENTATIONS}
    for _ in range(rounds):
        for name, function in IMPLEMENTATIONS.items():
            start = time.perf_counter()
            jax.block_until_ready(function(*args))
            times[name].append(time.perf_counter() - start)
    row = {
        "num_sequences": num_sequences,
        "num_timesteps": num_timesteps,
        "num_states": num_states,
        "rounds": rounds,
        "load_1min": round((load_before + os.getloadavg()[0]) / 2, 2),
    }
    steps = num_sequences * num_timesteps
    for name, function in IMPLEMENTATIONS.items():
        median = float(np.median(times[name]))
        temp_bytes, total_bytes = _memory_bytes(function, args)
        row[f"{name}_us"] = round(median * 1e6, 1)
        row[f"{name}_us_per_step"] = round(median * 1e6 / steps, 4)
        row[f"{name}_temp_bytes"] = temp_bytes
        row[f"{name}_memory_bytes"] = total_bytes
    for name in IMPLEMENTATIONS:
        if name != BASELINE:
            row[f"{name}_over_{BASELINE}"] = round(row[f"{name}_us"] / row[f"{BASELINE}_us"], 2)
    for name in ("parallel", "associative_scan"):
        gradient_gap, value_gap = _largest_relative_gap(results[name], results[BASELINE])
        row[f"{name}_gradient_rel_gap"] = f"{gradient_gap:.1e}"
        row[f"{name}_value_rel_gap"] = f"{value_gap:.1e}"
    return row


def _figure(rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes_of = {"T": "num_timesteps", "N": "num_sequences", "K": "num_states"}
    titles = {"T": "vs T (N = 1, K = 3)", "N": "vs N (T = 100, K = 3)", "K": "vs K (N = 10, T = 100)"}
    figure, axes = plt.subplots(2, 3, figsize=(13, 7.5), constrained_layout=True)
    for column, sweep in enumerate(SWEEPS):
        points = [row for row in rows if row["sweep"] == sweep]
        if not points:
            continue
        x = [row[axes_of[sweep]] for row in points]
        for name in IMPLEMENTATIONS:
            style = {"marker": "o", "linestyle": "--" if name == "associative_scan" else "-"}
            axes[0, column].plot(x, [row[f"{name}_us"] / 1e3 for row in points], label=name, **style)
            axes[1, column].plot(x, [row[f"{name}_memory_bytes"] / 2**20 for row in points], label=name, **style)
        for row_index, label in enumerate(["time per gradient (ms)", "XLA memory: temp + args + out (MiB)"]):
            axis = axes[row_index, column]
            axis.set_xscale("log")
            axis.set_yscale("log")
            axis.set_xticks(x, [str(value) for value in x])
            axis.minorticks_off()
            axis.set_xlabel(axes_of[sweep])
            axis.set_ylabel(label)
            axis.grid(True, which="both", alpha=0.3)
        axes[0, column].set_title(titles[sweep])
    axes[0, 0].legend(fontsize=8)
    load = np.mean([row["load_1min"] for row in rows])
    figure.suptitle(
        f"value_and_grad of the GLM-HMM log-likelihood, CPU ({os.cpu_count()} cores, mean 1-min load {load:.1f})"
    )
    return figure


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few small points")
    parser.add_argument("--out", default="results/benchmarks", help="output folder")
    parser.add_argument("--seconds-per-point", type=float, default=None, help="timing budget per point")
    args = parser.parse_args()
    sweeps = QUICK_SWEEPS if args.quick else SWEEPS
    budget = args.seconds_per_point or (0.5 if args.quick else 12.0)
    started, load_start = time.time(), os.getloadavg()
    rows, cache = [], {}
    for sweep, shapes in sweeps.items():
        for shape in shapes:
            if shape not in cache:
                cache[shape] = _measure(shape, budget)
            rows.append({"sweep": sweep, **cache[shape]})
            print(rows[-1], flush=True)
    metadata = {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(device) for device in jax.devices()],
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "wall_seconds": round(time.time() - started, 1),
        "quick": args.quick,
        "seconds_per_point": budget,
        "memory": "Compiled.memory_analysis(): temp_size + argument_size + output_size - alias_size, bytes",
    }
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    prefix = "scaling_quick" if args.quick else "scaling"
    write_text_atomic(os.path.join(args.out, f"{prefix}.csv"), buffer.getvalue())
    write_json_atomic(os.path.join(args.out, f"{prefix}.json"), metadata)
    save_figures_atomic({f"{prefix}.png": _figure(rows)}, args.out)
    print(json.dumps(metadata), flush=True)


if __name__ == "__main__":
    main()
