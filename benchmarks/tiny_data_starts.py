"""Tiny data: do the chains start from the distinct EM optima, and does the verdict see the modes?

Issue 15: on a 2-sequence data set (40 and 30 rows, K = 3) every chain once started in a
merged-belts mode (two states on one belt), because every chain started at the best EM
restart; with all chains in one mode, the stuck-chain detector had nothing to compare against.
``fit_nuts`` now starts the chains from the distinct optima of the EM restarts within
``bayes_glmhmm.fit.START_OPTIMA_WINDOW`` nats of the best (chain 0 at the best, the others in
turn); ``--baseline`` sets the window to 0, the former starts (every chain at the best).

Data sets (the article's generator, 2 sequences of 40 and 30 rows, K = 3):

* ``issue``: the issue's data (``PRNGKey(8)``, the seed article's text variant, the emission at
  t = 7 missing in both sequences, weight prior scale 2: the CLI test's data before it grew);
* ``code3``, ``code6``, ``code10``: the article's code variant (``PRNGKey(3)``, ``(6)``,
  ``(10)``), data sets whose EM restarts reach a second optimum 0.2, 5.8 and 1.7 nats below the best.

Each is fitted with 6 seeds (EM restarts, jitter and NUTS), 4 chains x (300 warmup + 300 draws).
Per fit: the distinct EM optima (objective x restarts that reached it), the optimum each chain
started from, the optimum each chain ended nearest to (its median state features against each
optimum's, up to a relabeling; ``m`` marks a merged-belts chain: two states' median weights
within 0.3 of each other, the article's belts being 0.6 apart or more), each chain's median log
density, the stuck chains, max R-hat and the verdict with its problems.

    python benchmarks/tiny_data_starts.py [--baseline] [--seeds 6] [--max-samples N]

With ``--max-samples N`` the fits sample on until converged (``fit_nuts(max_samples=N)``).

Writes results/benchmarks/tiny_data_starts.csv (rows of both runs, the column ``starts`` saying
which) and tiny_data_starts.md (the table of every run written so far).
"""

import argparse
import csv
import os
import warnings

import numpyro

numpyro.set_host_device_count(4)

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bayes_glmhmm import Priors, article_data, fit_em, fit_nuts  # noqa: E402
from bayes_glmhmm import fit as fit_module  # noqa: E402
from bayes_glmhmm.em import distinct_optima  # noqa: E402
from bayes_glmhmm.relabel import match_permutation  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(os.path.dirname(HERE), "results", "benchmarks")
NUM_STATES = 3
NUM_CHAINS = 4
NUM_WARMUP = 300
NUM_SAMPLES = 300
FEATURE_NAMES = ("weights", "biases", "scales")
OPTIMA_WINDOW = fit_module.START_OPTIMA_WINDOW  # the default, before --baseline sets it to 0
MERGED_GAP = 0.3  # two states' median weights closer than this: one belt described twice
PROBLEM_TAGS = (
    ("R-hat", "rhat"),
    ("bulk ESS", "ess_bulk"),
    ("tail ESS", "ess_tail"),
    ("stuck", "stuck"),
    ("divergen", "divergences"),
    ("tree depth", "tree_depth"),
)


def _data_sets() -> dict:
    """name -> (inputs, emissions, mask, lengths, priors)."""
    lengths = np.array([40, 30])
    sets = {}
    issue = article_data(jax.random.PRNGKey(8), num_sequences=2, num_timesteps=40)
    issue_mask = np.ones((2, 40), bool)
    issue_mask[:, 7] = False
    sets["issue"] = (issue.inputs, issue.emissions, issue_mask, lengths, Priors(weight_scale=2.0))
    for key in (3, 6, 10):
        data = article_data(jax.random.PRNGKey(key), variant="code", num_sequences=2, num_timesteps=40)
        sets[f"code{key}"] = (data.inputs, data.emissions, np.ones((2, 40), bool), lengths, Priors())
    return sets


def _features(params: dict) -> np.ndarray:
    """Per-state weights, bias and log scale, (..., K, 3)."""
    return np.concatenate(
        [params["weights"], params["biases"][..., None], np.log(params["scales"])[..., None]], axis=-1
    )


def _nearest_optimum(chain_features: np.ndarray, optima_features: np.ndarray) -> int:
    """The optimum whose features are nearest a chain's median features, up to a relabeling."""
    distances = []
    for features in optima_features:
        scale = np.std(features, axis=0) + 1e-12
        permutation = match_permutation(chain_features, features, scale)
        distances.append(np.sum(((chain_features[permutation] - features) / scale) ** 2))
    return int(np.argmin(distances))


def _problem_tags(problems: list) -> str:
    return " ".join(tag for text, tag in PROBLEM_TAGS if any(text in problem for problem in problems)) or "-"


def _fit_row(name: str, data: tuple, seed: int, starts: str, max_samples: int | None = None) -> dict:
    inputs, emissions, mask, lengths, priors = data
    em_mask = mask & (np.arange(emissions.shape[1])[None, :] < lengths[:, None])
    em = fit_em(inputs, emissions, NUM_STATES, mask=em_mask, priors=priors, seed=seed, standardize=False)
    optima = distinct_optima(em.restart_log_probs, em.restart_params)
    optima_features = _features(
        {name: np.asarray(getattr(em.restart_params, name))[optima.restart_indices] for name in FEATURE_NAMES}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        posterior = fit_nuts(
            inputs,
            emissions,
            NUM_STATES,
            mask=mask,
            lengths=lengths,
            priors=priors,
            num_chains=NUM_CHAINS,
            num_warmup=NUM_WARMUP,
            num_samples=NUM_SAMPLES,
            seed=seed,
            progress_bar=False,
            max_samples=max_samples,
        )
    record = posterior.settings["start_optima"]
    assert np.allclose(record["objectives"], np.round(optima.objectives, 3)), "the benchmark's EM is not the fit's"
    diagnostics = posterior.diagnostics()
    lp = posterior.sample_stats["lp"]
    modes = []
    for chain in range(lp.shape[0]):
        medians = {name: np.median(np.asarray(posterior.samples[name][chain]), axis=0) for name in FEATURE_NAMES}
        weights = medians["weights"].reshape(NUM_STATES, -1)[:, 0]
        merged = np.min(np.abs(weights[:, None] - weights[None, :])[np.triu_indices(NUM_STATES, 1)]) < MERGED_GAP
        modes.append(f"{_nearest_optimum(_features(medians), optima_features)}{'m' if merged else ''}")
    return {
        "data": name,
        "seed": seed,
        "starts": starts,
        "em_optima": " ".join(f"{o:.1f}x{n}" for o, n in zip(optima.objectives, optima.num_restarts, strict=True)),
        "chain_starts": " ".join(str(optimum) for optimum in record["chain_optima"]),
        "chain_modes": " ".join(modes),
        "distinct_starts": len(set(record["chain_optima"])),
        "distinct_modes": len({mode.rstrip("m") for mode in modes}),
        "lp_medians": " ".join(f"{value:.1f}" for value in np.median(lp, axis=1)),
        "stuck_chains": " ".join(str(chain) for chain in posterior.stuck_chains) or "-",
        "max_rhat": round(float(diagnostics["max_rhat"]), 3),
        "min_ess": round(float(min(diagnostics["min_ess_bulk"], diagnostics["min_ess_tail"]))),
        "draws": int(posterior.settings["num_samples"]),
        "converged": bool(diagnostics["converged"]),
        "problems": _problem_tags(diagnostics["problems"]),
    }


def _write(rows: list) -> None:
    path = os.path.join(RESULTS, "tiny_data_starts.csv")
    kept = []
    if os.path.exists(path):
        with open(path, newline="") as handle:
            kept = [row for row in csv.DictReader(handle) if row["starts"] != rows[0]["starts"]]
    every = kept + [{key: str(value) for key, value in row.items()} for row in rows]
    every.sort(key=lambda row: (row["data"], int(row["seed"]), row["starts"]))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(every)
    columns = list(rows[0])
    lines = [
        "# Tiny data: chains started from the distinct EM optima",
        "",
        f"Written by `benchmarks/tiny_data_starts.py`: 2 sequences (40 and 30 rows), K = 3, {NUM_CHAINS} chains x "
        f"({NUM_WARMUP} + {NUM_SAMPLES}). `starts`: `best` = every chain at the best EM restart (the former "
        f"starts, `--baseline`), `optima` = the distinct optima within {OPTIMA_WINDOW:g} nats "
        "of the best, in turn. `em_optima`: objective x restarts (of 10) per distinct optimum, best first; "
        "`chain_starts` / `chain_modes`: the optimum each chain started from / ended nearest (`m`: merged belts); "
        "`optima_until_N`: the distinct starts, sampling on until converged up to N draws per chain "
        "(`--max-samples N`); `min_ess`: the smaller of min bulk and tail ESS; `draws`: draws per chain.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    lines += ["| " + " | ".join(row.get(column) or "-" for column in columns) + " |" for row in every]
    with open(os.path.join(RESULTS, "tiny_data_starts.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", action="store_true", help="every chain at the best EM restart (window 0)")
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--max-samples", type=int, default=None, help="sample on until converged, up to N draws")
    args = parser.parse_args()
    starts = "best" if args.baseline else "optima"
    if args.max_samples is not None:
        starts += f"_until_{args.max_samples}"
    if args.baseline:
        fit_module.START_OPTIMA_WINDOW = 0.0
    rows = []
    for name, data in _data_sets().items():
        for seed in range(args.seeds):
            rows.append(_fit_row(name, data, seed, starts, args.max_samples))
            print(rows[-1], flush=True)
    _write(rows)


if __name__ == "__main__":
    main()
