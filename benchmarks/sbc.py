"""Simulation-based calibration (Talts et al. 2018) of fit_nuts.

Each replication draws theta from the prior, simulates a data set, fits NUTS (EM initialization,
relabeling: the default pipeline, with the priors applied exactly, i.e. no standardization), and
records the rank of the true value among L thinned posterior draws for label-invariant quantities:
sorted weights, sorted biases, sorted noise scales, the sorted stationary distribution, and the
log-likelihood of the data. If the sampler is calibrated each rank is uniform on {0, ..., L}.

Writes results/benchmarks/sbc_ranks.csv (one row per replication), sbc_summary.json (chi-square
uniformity test per quantity, with 10 bins), and sbc_ranks.png (rank histograms with the 99% band
of a uniform histogram).

    python benchmarks/sbc.py --replications 200 [--num-states 2] [--chains 2]
"""

import argparse
import csv
import json
import os
import sys
import time

import numpyro

numpyro.set_host_device_count(2)

import jax  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from bayes_glmhmm import GLMHMMParams, Priors, fit_nuts, log_likelihood, simulate  # noqa: E402


def sample_prior(key, num_states: int, input_dim: int, priors: Priors) -> GLMHMMParams:
    """theta ~ p(theta), the model's priors."""
    keys = jax.random.split(key, 5)
    return GLMHMMParams(
        np.asarray(jax.random.dirichlet(keys[0], np.full(num_states, priors.initial_concentration))),
        np.asarray(jax.random.dirichlet(keys[1], np.full((num_states, num_states), priors.transition_concentration))),
        np.asarray(priors.weight_scale * jax.random.normal(keys[2], (num_states, input_dim))),
        np.asarray(priors.bias_scale * jax.random.normal(keys[3], (num_states,))),
        np.asarray(priors.noise_scale * np.abs(jax.random.normal(keys[4], (num_states,)))),
    )


def stationary(transition_matrix: np.ndarray) -> np.ndarray:
    """Stationary distribution(s) of (..., K, K) transition matrices."""
    num_states = transition_matrix.shape[-1]
    system = np.swapaxes(transition_matrix, -1, -2) - np.eye(num_states)
    system[..., -1, :] = 1.0
    rhs = np.zeros(transition_matrix.shape[:-1])
    rhs[..., -1] = 1.0
    return np.linalg.solve(system, rhs[..., None])[..., 0]


def invariant_quantities(params: GLMHMMParams, loglik) -> dict:
    """Label-invariant scalars of (possibly batched) parameters."""
    weights = np.sort(np.asarray(params.weights)[..., 0], axis=-1)
    biases = np.sort(np.asarray(params.biases), axis=-1)
    scales = np.sort(np.asarray(params.scales), axis=-1)
    pis = np.sort(stationary(np.asarray(params.transition_matrix, dtype=float)), axis=-1)
    out = {}
    for k in range(weights.shape[-1]):
        out[f"weight_sorted_{k}"] = weights[..., k]
        out[f"bias_sorted_{k}"] = biases[..., k]
        out[f"scale_sorted_{k}"] = scales[..., k]
        out[f"stationary_sorted_{k}"] = pis[..., k]
    out["log_likelihood"] = np.asarray(loglik)
    return out


def one_replication(seed: int, args, priors: Priors) -> dict:
    key_prior, key_inputs, key_data = jax.random.split(jax.random.PRNGKey(10_000 + seed), 3)
    truth = sample_prior(key_prior, args.num_states, 1, priors)
    inputs = np.asarray(jax.random.normal(key_inputs, (args.num_sequences, args.num_timesteps, 1)))
    _, emissions = simulate(key_data, truth, inputs)
    emissions = np.asarray(emissions)
    start = time.perf_counter()
    posterior = fit_nuts(
        inputs,
        emissions,
        args.num_states,
        priors=priors,
        num_chains=args.chains,
        num_warmup=args.warmup,
        num_samples=args.samples,
        seed=seed,
        progress_bar=False,
        standardize=False,
    )
    seconds = time.perf_counter() - start
    diagnostics = posterior.diagnostics()
    # Thin to L draws spread over all chains, which also reduces autocorrelation (Talts et al.).
    flat = posterior.flat_params()
    picks = np.linspace(0, flat.weights.shape[0] - 1, args.rank_draws).astype(int)
    draws = GLMHMMParams(*(np.asarray(p)[picks] for p in flat))
    draw_loglik = posterior.log_likelihood().reshape(-1, args.num_sequences).sum(-1)[picks]
    true_loglik = float(np.sum(log_likelihood(truth, inputs, emissions)))
    true_q = invariant_quantities(truth, true_loglik)
    draw_q = invariant_quantities(draws, draw_loglik)
    row = {
        "replication": seed,
        "seconds": round(seconds, 2),
        "max_rhat": round(diagnostics["max_rhat"], 4),
        "min_ess_bulk": round(diagnostics["min_ess_bulk"], 1),
        "divergences": diagnostics["divergences"],
        "stuck_chains": len(diagnostics["stuck_chains"]),
    }
    for name, value in true_q.items():
        row[f"rank_{name}"] = int(np.sum(draw_q[name] < value))
    return row


def summarize(rows: list[dict], rank_draws: int, bins: int = 10) -> dict:
    names = [key for key in rows[0] if key.startswith("rank_")]
    summary = {"replications": len(rows), "rank_draws": rank_draws, "bins": bins, "quantities": {}}
    for name in names:
        ranks = np.array([row[name] for row in rows])
        counts = np.histogram(ranks, bins=bins, range=(0, rank_draws + 1))[0]
        chi2, p_value = stats.chisquare(counts)
        summary["quantities"][name[5:]] = {"chi2": float(chi2), "p_value": float(p_value), "counts": counts.tolist()}
    p_values = [q["p_value"] for q in summary["quantities"].values()]
    summary["min_p_value"] = float(min(p_values))
    summary["bonferroni_alpha_0.01"] = 0.01 / len(p_values)
    summary["calibrated_at_bonferroni_0.01"] = bool(min(p_values) > 0.01 / len(p_values))
    summary["divergent_replications"] = int(sum(row["divergences"] > 0 for row in rows))
    summary["replications_with_stuck_chains"] = int(sum(row["stuck_chains"] > 0 for row in rows))
    summary["median_seconds_per_fit"] = float(np.median([row["seconds"] for row in rows]))
    return summary


def plot(summary: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    quantities = summary["quantities"]
    columns = 4
    rows_ = int(np.ceil(len(quantities) / columns))
    figure = Figure(figsize=(3.2 * columns, 2.4 * rows_), layout="constrained")
    axes = figure.subplots(rows_, columns, squeeze=False).ravel()
    expected = summary["replications"] / summary["bins"]
    low, high = stats.binom.ppf([0.005, 0.995], summary["replications"], 1 / summary["bins"])
    for ax, (name, info) in zip(axes, quantities.items(), strict=False):
        ax.bar(np.arange(summary["bins"]), info["counts"], width=0.9, color="#0072B2")
        ax.axhspan(low, high, color="0.85", zorder=0, label="99% band (uniform)")
        ax.axhline(expected, color="0.3", lw=1)
        ax.set_title(f"{name}\np = {info['p_value']:.2f}", fontsize=9)
        ax.set_xlabel("rank bin")
        ax.set_ylabel("replications")
    for ax in axes[len(quantities) :]:
        ax.set_visible(False)
    figure.suptitle(f"SBC rank histograms: {summary['replications']} replications, L = {summary['rank_draws']}")
    figure.savefig(path, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replications", type=int, default=200)
    parser.add_argument("--num-states", type=int, default=2)
    parser.add_argument("--num-sequences", type=int, default=5)
    parser.add_argument("--num-timesteps", type=int, default=100)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=400)
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--rank-draws", type=int, default=99)
    parser.add_argument("--out", default="results/benchmarks")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    priors = Priors()
    rows_path = os.path.join(args.out, "sbc_ranks.csv")
    done = {}
    if os.path.exists(rows_path):  # resume
        with open(rows_path, newline="") as handle:
            for row in csv.DictReader(handle):
                done[int(row["replication"])] = {k: (float(v) if "." in v else int(v)) for k, v in row.items()}
    rows = [done[i] for i in sorted(done) if i < args.replications]
    for seed in range(args.replications):
        if seed in done:
            continue
        row = one_replication(seed, args, priors)  # the sampler compiles once, in the first replication
        rows.append(row)
        temporary = rows_path + ".tmp"
        with open(temporary, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            writer.writeheader()
            writer.writerows(rows)
        os.replace(temporary, rows_path)
        print(f"replication {seed + 1}/{args.replications}: {row['seconds']} s, R-hat {row['max_rhat']}", flush=True)
    summary = summarize(rows, args.rank_draws)
    summary["settings"] = vars(args)
    temporary = os.path.join(args.out, ".sbc_summary.json.tmp")
    with open(temporary, "w") as handle:
        json.dump(summary, handle, indent=2)
    os.replace(temporary, os.path.join(args.out, "sbc_summary.json"))
    plot(summary, os.path.join(args.out, "sbc_ranks.png"))
    print(json.dumps({k: v for k, v in summary.items() if k != "quantities"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
