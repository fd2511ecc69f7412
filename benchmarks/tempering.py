"""Multimodal posteriors with known mode masses: plain NUTS against parallel tempering.

The cases (issue 15), a three-state Gaussian GLM-HMM fitted to

- ``split``: data from a well-separated two-state model; the spare state can split either cluster;
- ``merge``: data from a four-state model (two pairs of clusters); the fit must merge one pair;
- ``near``: the same with each pair's two states nearly merged (1 noise sd apart).

Either way the posterior has two modes. The data are made mirror-symmetric: every sequence y comes
with its mirror -y (same inputs), and the prior is symmetric under (weights, biases) ->
-(weights, biases), so the two modes have exactly equal posterior mass, 1/2 each. A draw is in
the "+" mode when two or more of its three states have a positive intercept; its share of the
draws estimates the "+" mode's mass.

``fedfunds`` is real data of the kind the issue met (a 3-regime switching regression of the
federal funds rate on the output gap and inflation, 222 quarters): its modes' masses are unknown,
so there only the agreement of the chains (R-hat, ESS, the indicator per chain) is reported.

Each fit reports the estimated mass with its Monte Carlo standard error (the indicator's ESS),
the indicator's R-hat, the fit's verdict, wall time and leapfrog steps (all rungs).

With ``--max-samples N`` every fit samples until converged (``fit_nuts(max_samples=N)``): the
chains go on past ``--samples`` until R-hat and ESS meet the thresholds or N draws per chain.

Run: ``python benchmarks/tempering.py [--seeds 3] [--rungs 4 6] [--max-samples N] [--out results/benchmarks]``.
"""

import argparse
import csv
import json
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


#: The true states (weights, biases) of each case, before the mirror; ``s`` is ``--separation``.
CASES = {
    # A 2-state model: the fit's spare state splits the + or the - cluster.
    "split": lambda s: (np.array([1.0, -1.0]), np.array([s, -s])),
    # A 4-state model, mirror pairs at +-s and +-3s: the 3-state fit merges the + pair or the - pair.
    "merge": lambda s: (np.array([1.0, 1.0, -1.0, -1.0]), np.array([s, 3 * s, -s, -3 * s])),
    # Two nearly merged states: mirror pairs at +-s and +-(s + 1), 1 noise sd apart within a pair; the
    # 3-state fit resolves the + pair (and merges the - pair) or the other way round.
    "near": lambda s: (np.array([1.0, 1.0, -1.0, -1.0]), np.array([s, s + 1.0, -s, -s - 1.0])),
}


def mirrored_data(case: str, seed: int, num_sequences: int, num_timesteps: int, separation: float):
    """Inputs (2N, T, 1) and emissions (2N, T): N sequences of a sticky switching regression and their mirrors."""
    generator = np.random.default_rng(seed)
    weights, biases = CASES[case](separation)
    num_true = weights.size
    inputs = generator.normal(size=(num_sequences, num_timesteps, 1))
    states = np.zeros((num_sequences, num_timesteps), int)
    states[:, 0] = generator.integers(0, num_true, num_sequences)
    for t in range(1, num_timesteps):
        stay = generator.random(num_sequences) < 0.95
        other = (states[:, t - 1] + generator.integers(1, num_true, num_sequences)) % num_true
        states[:, t] = np.where(stay, states[:, t - 1], other)
    emissions = weights[states] * inputs[..., 0] + biases[states] + generator.normal(size=states.shape)
    return np.concatenate([inputs, inputs]), np.concatenate([emissions, -emissions])


def fedfunds_data():
    """Real data of the issue's kind, as one sequence: the US federal funds rate on the output gap and
    inflation, the quarters with both inputs, from statsmodels' Markov-switching test suite (a
    test-only dependency)."""
    from statsmodels.tsa.regime_switching.tests import test_markov_regression as published

    inputs = np.column_stack([published.ogap, published.inf]).astype(float)
    emissions = np.asarray(published.fedfunds, float)
    complete = np.all(np.isfinite(inputs), axis=1)  # inflation is missing in the first quarters
    return inputs[complete][None], emissions[complete][None]


def mode_indicator(biases: np.ndarray) -> np.ndarray:
    """(chain, draw) 1.0 where two or more of the K states have a positive intercept (the "+" split)."""
    return (np.sum(biases > 0, axis=-1) >= 2).astype(float)


def _indicator_summary(indicator: np.ndarray) -> dict:
    import arviz as az

    mass = float(indicator.mean())
    if np.all(indicator == indicator.flat[0]):  # every draw in one mode: no mixing at all
        return {"plus_mass": mass, "mass_se": 0.0, "indicator_ess": 0.0, "indicator_rhat": float("nan")}
    ess = float(az.ess(indicator, method="bulk"))
    return {
        "plus_mass": mass,
        "mass_se": float(np.sqrt(mass * (1 - mass) / max(ess, 1.0))),
        "indicator_ess": ess,
        "indicator_rhat": float(az.rhat(indicator)),
    }


def run_one(seed: int, tempering, args) -> dict:
    from bayes_glmhmm import fit_nuts

    if args.case == "fedfunds":
        inputs, emissions = fedfunds_data()
    else:
        inputs, emissions = mirrored_data(args.case, seed, args.num_sequences, args.num_timesteps, args.separation)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        posterior = fit_nuts(
            inputs,
            emissions,
            3,
            num_chains=args.chains,
            num_warmup=args.warmup,
            num_samples=args.samples,
            seed=seed,
            progress_bar=False,
            tempering=tempering,
            max_samples=args.max_samples,
        )
    seconds = time.perf_counter() - start
    diagnostics = posterior.diagnostics()
    # The real data's modes are unknown: there the indicator only shows whether the chains agree.
    indicator = mode_indicator(np.asarray(posterior.samples["biases"]))
    record = posterior.settings.get("tempering") or {}
    gradients = (
        record.get("ladder_gradients")
        or (posterior.sample_stats["n_steps"].sum(axis=1) + np.asarray(posterior.settings["warmup_gradients"])).tolist()
    )
    return {
        "case": args.case,
        "seed": seed,
        "method": "nuts" if tempering is None else f"tempering_{tempering}",
        "rungs": 1 if tempering is None else int(tempering),
        **_indicator_summary(indicator),
        "chain_plus_mass": np.round(indicator.mean(axis=1), 3).tolist(),
        "max_rhat": diagnostics["max_rhat"],
        "min_ess_bulk": diagnostics["min_ess_bulk"],
        "min_ess_tail": diagnostics["min_ess_tail"],
        "converged": diagnostics["converged"],
        "num_problems": len(diagnostics["problems"]),
        "problems": [problem.split(":")[0] for problem in diagnostics["problems"]],
        "sampling_rounds": posterior.settings.get("sampling_rounds") or [],
        "swap_acceptance": record.get("swap_acceptance"),
        "draws": int(posterior.settings["num_samples"]),
        "gradients": int(np.sum(gradients)),
        "seconds": round(seconds, 1),
    }


def _figure(value) -> str:
    return "-" if value is None else f"{value:.0f}"


def markdown_table(rows: list[dict]) -> str:
    """The rows as a Markdown table: the "+" mode's mass +- its Monte Carlo SE, mixing, verdict and cost."""
    lines = [
        "| case | seed | method | + mass +- SE | + mass per chain | indicator ESS | max R-hat | min bulk ESS "
        "| min tail ESS | converged | problems | exchange acceptance | draws per chain | leapfrog steps | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        acceptance = "-" if row["swap_acceptance"] is None else f"{min(row['swap_acceptance']):.2f}-"
        acceptance += "" if row["swap_acceptance"] is None else f"{max(row['swap_acceptance']):.2f}"
        lines.append(
            f"| {row['case']} | {row['seed']} | {row['method']} | {row['plus_mass']:.3f} +- {row['mass_se']:.3f} "
            f"| {' '.join(f'{mass:.2f}' for mass in row['chain_plus_mass'])} | {row['indicator_ess']:.0f} "
            f"| {row['max_rhat']:.3f} | {row['min_ess_bulk']:.0f} | {_figure(row.get('min_ess_tail'))} "
            f"| {row['converged']} | {'; '.join(row.get('problems', [])) or '-'} | {acceptance} "
            f"| {row.get('draws', '-')} | {row['gradients']:,} | {row['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=[*sorted(CASES), "fedfunds"], default="split")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rungs", type=int, nargs="*", default=[4])
    parser.add_argument("--num-sequences", type=int, default=2)
    parser.add_argument("--num-timesteps", type=int, default=100)
    parser.add_argument("--separation", type=float, default=2.0)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument(
        "--max-samples", type=int, default=None, help="sample on until converged, up to this many draws per chain"
    )
    parser.add_argument("--seed-list", type=int, nargs="+", default=None, help="these seeds instead of 0..--seeds-1")
    parser.add_argument("--skip-plain", action="store_true", help="only the tempered fits")
    parser.add_argument("--name", default=None, help="the results' file name (default tempering_CASE)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    import numpyro

    numpyro.set_host_device_count(args.chains)
    rows = []
    for seed in args.seed_list or range(args.seeds):
        for tempering in [*([] if args.skip_plain else [None]), *args.rungs]:
            row = run_one(seed, tempering, args)
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.out is not None:
        name = args.name or f"tempering_{args.case}"
        args.out.mkdir(parents=True, exist_ok=True)
        with open(args.out / f"{name}.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        settings = {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()}
        summary = json.dumps({"settings": settings, "rows": rows}, indent=1)
        (args.out / f"{name}.json").write_text(summary)
        (args.out / f"{name}.md").write_text(f"Settings: {json.dumps(settings)}\n\n{markdown_table(rows)}")


if __name__ == "__main__":
    main()
