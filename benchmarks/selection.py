"""Choosing K: the cost of the whole selection at the field's scale, and how often it finds a known K.

``--speed``: :func:`bayes_glmhmm.selection.select_num_states` for K = 1..5 with PSIS-LOO over
sequences (the Bayesian answer, one NUTS fit per K plus exact refits of sequences with Pareto
k > 0.7, warm-started from the full posterior, at most ``--max-refits`` per K, in groups beyond
that) and the EM k-fold plug-in protocol (5 folds, the field's answer), on the families
benchmark's data: 51,411 Bernoulli trials in 270 sessions of 150-230 trials, D = 10, true K = 3
(``benchmarks/families.py``). Wall time of the whole call (compilation included), of the NUTS
part (of which the refits) and of the EM k-fold part, per K; the sampler's gradients per chain
(warmup and drawing, summed over the K's fits); R-hat, ESS and Pareto k per K; the 1-minute load
average.

``--em-kfold``: the EM k-fold part alone (5 folds, ``--em-restarts`` restarts, at most 200 EM
steps per restart), plain EM against SQUAREM-accelerated EM (``select_num_states``'s default,
``em_accelerate=True``), the two alternating per K on the same data and folds: wall time,
held-out log-likelihood and folds converged per K and method.

``--recovery``: simulated data sets with a known K (2, 3, 4), Gaussian and Bernoulli, 10 each;
candidates K - 1, K, K + 1; counts how often the one-SE rule picks the true K, for the Bayesian
PSIS-LOO score and for the EM k-fold score.

``--cost-by-k``: one ``fit_nuts`` per K = 1..5 on the first ``--sequences`` (50) sequences of the
speed data: wall time, gradients per warmup and per sampling iteration and per chain, adapted step
size, diagnostics and the in-sample PSIS-LOO elpd; it shows where the time of the larger
(over-specified) K's goes. ``--warmup-tree-depth D`` caps the warmup's trees at depth D (the draws'
at 10, ``max_tree_depth=(D, 10)``, as ``select_num_states`` does by default with D = 6) and writes
``selection_cost_by_k_warmup_depth<D>.*`` instead.

Writes ``selection_speed.{csv,json,md}``, ``selection_recovery.{csv,json,md}`` and
``selection_cost_by_k[_warmup_depth<D>].{csv,json,md}`` and ``selection_em_kfold.{csv,json,md}`` into
``--out``.

    python benchmarks/selection.py --speed [--warmup 500 --samples 500]
    python benchmarks/selection.py --em-kfold
    python benchmarks/selection.py --recovery [--datasets 10] [--families gaussian bernoulli]
    python benchmarks/selection.py --cost-by-k [--sequences 50 --warmup 200 --samples 200] [--warmup-tree-depth 6]
"""

import argparse
import json
import os
import platform
import sys
import time
import warnings

import numpyro

numpyro.set_host_device_count(4)  # before JAX starts: one CPU device per chain

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from families import FULL, QUICK, simulated_problem  # noqa: E402

from bayes_glmhmm import GLMHMMParams, fit_nuts, simulate  # noqa: E402
from bayes_glmhmm._io import csv_text, markdown_table, write_json_atomic, write_text_atomic  # noqa: E402
from bayes_glmhmm.emissions import get_family  # noqa: E402
from bayes_glmhmm.folds import fold_assignment  # noqa: E402
from bayes_glmhmm.params import BernoulliGLMHMMParams  # noqa: E402
from bayes_glmhmm.selection import (  # noqa: E402
    _Data,
    _em_kfold,
    _gradients_per_chain,
    _resolved_standardize,
    select_num_states,
)

TABLE_COLUMNS = [
    "num_states",
    "elpd",
    "elpd_se",
    "elpd_diff",
    "elpd_diff_se",
    "bits_per_trial",
    "bits_per_trial_se",
    "accuracy",
    "stacking_weight",
    "em_bits_per_trial",
    "em_bits_per_trial_se",
    "em_accuracy",
    "p_loo",
    "max_pareto_k",
    "num_high_pareto_k",
    "num_refits",
    "refit_fits",
    "num_unreliable",
    "max_rhat",
    "min_ess_bulk",
    "divergences",
    "gradients_per_chain",
    "nuts_seconds",
    "refit_seconds",
    "em_seconds",
]


def _machine() -> dict:
    return {
        "jax": jax.__version__,
        "numpyro": numpyro.__version__,
        "backend": jax.default_backend(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def _rounded(value, digits=4):
    value = float(value)
    return round(value, digits) if np.isfinite(value) else None


# ---------------------------------------------------------------------------------------------
# Speed at the field's scale


def run_speed(args) -> None:
    scale = QUICK if args.quick else FULL
    problem = simulated_problem(jax.random.PRNGKey(0), get_family("bernoulli"), scale)
    load_start = os.getloadavg()
    start, cpu_start = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        selection = select_num_states(
            problem.inputs,
            problem.emissions,
            tuple(range(1, args.max_states + 1)),
            family="bernoulli",
            lengths=problem.lengths,
            method="loo",
            num_folds=5,
            em_restarts=args.em_restarts,
            max_refits=args.max_refits,
            num_chains=4,
            num_warmup=args.warmup,
            num_samples=args.samples,
            seed=0,
        )
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    table = selection.table
    integers = {"num_states", "num_high_pareto_k", "num_refits", "refit_fits", "num_unreliable", "divergences"}
    rows = [
        [int(table.loc[k, c]) if c in integers else _rounded(table.loc[k, c]) for c in TABLE_COLUMNS]
        for k in selection.states
    ]
    summary = {
        "total_wall_seconds": round(wall, 1),
        "total_cpu_seconds": round(cpu, 1),
        "nuts_seconds": round(float(table["nuts_seconds"].sum()), 1),
        "em_kfold_seconds": round(float(table["em_seconds"].sum()), 1),
        "best": selection.best,
        "best_em": selection.best_em,
        "true_num_states": scale.num_states,
        "rule": selection.rule_text,
        "warnings": [str(w.message) for w in caught],
        "load_1min_start": round(load_start[0], 2),
        "load_1min_end": round(os.getloadavg()[0], 2),
    }
    metadata = {
        "data": f"{int(problem.mask.sum())} Bernoulli trials in {scale.num_sequences} sequences of "
        f"{scale.min_length}-{scale.max_length}, D = {scale.input_dim}, true K = {scale.num_states}",
        "settings": {
            "states": list(selection.states),
            "method": "loo",
            "num_chains": 4,
            "num_warmup": args.warmup,
            "num_samples": args.samples,
            "em_folds": 5,
            "em_restarts": args.em_restarts,
            "max_refits": selection.settings["max_refits"],
        },
        "machine": _machine(),
    }
    print(json.dumps(summary), flush=True)
    prefix = os.path.join(args.out, "selection_speed_quick" if args.quick else "selection_speed")
    write_text_atomic(prefix + ".csv", csv_text(TABLE_COLUMNS, rows))
    write_json_atomic(prefix + ".json", {"metadata": metadata, "summary": summary, "table": rows})
    lines = [
        "# Choosing K at the field's scale",
        "",
        f"Written by `benchmarks/selection.py --speed`: {metadata['data']}; `select_num_states` with "
        f"K = 1..{args.max_states}, PSIS-LOO over sequences (4 chains x ({args.warmup} + {args.samples}) draws "
        f"per K; sequences with Pareto k > 0.7 refitted exactly, warm-started from the full posterior, "
        f"at most {args.max_refits} refits per K, in groups beyond that) and the EM 5-fold protocol "
        f"({args.em_restarts} restarts per fold), in one call, compilation included. 2-core CPU, 1-min load "
        f"{summary['load_1min_start']} at the start, {summary['load_1min_end']} at the end.",
        "",
        f"Whole selection: **{wall / 60:.1f} min** wall ({cpu / 60:.1f} min CPU); NUTS and PSIS-LOO "
        f"{summary['nuts_seconds'] / 60:.1f} min; EM k-fold {summary['em_kfold_seconds'] / 60:.1f} min. "
        f"Chosen K (one-SE rule): Bayes {selection.best}, EM {selection.best_em} (truth {scale.num_states}).",
        "",
        *markdown_table(TABLE_COLUMNS, rows),
        "",
    ]
    if summary["warnings"]:
        lines += ["Warnings:", "", *[f"- {message}" for message in summary["warnings"]], ""]
    write_text_atomic(prefix + ".md", "\n".join(lines))


# ---------------------------------------------------------------------------------------------
# The EM k-fold protocol: plain against SQUAREM-accelerated EM


EM_KFOLD_COLUMNS = ["num_states", "em", "seconds", "held_out_loglik", "folds_converged", "load_1min"]


def run_em_kfold(args) -> None:
    scale = QUICK if args.quick else FULL
    family = get_family("bernoulli")
    problem = simulated_problem(jax.random.PRNGKey(0), family, scale)
    data = _Data(problem.inputs, problem.emissions, problem.mask, problem.lengths, family, None)
    folds = fold_assignment(data.num_sequences, 5, 0)
    standardize = _resolved_standardize("auto", data.inputs, data.emissions, data.observed, family)
    settings = dict(num_restarts=args.em_restarts, num_iters=200, seed=0, family=family, standardize=standardize)
    rows, totals = [], {"plain": 0.0, "squarem": 0.0}
    for num_states in range(1, args.max_states + 1):
        for name in ("squarem", "plain"):
            start = time.perf_counter()
            scores = _em_kfold(data, num_states, folds, settings | dict(accelerate=name == "squarem"))
            seconds = time.perf_counter() - start
            totals[name] += seconds
            row = [
                num_states,
                name,
                round(seconds, 1),
                round(float(scores["em_loglik"].sum()), 2),
                int(sum(scores["em_converged"])),
                round(os.getloadavg()[0], 2),
            ]
            print(json.dumps(dict(zip(EM_KFOLD_COLUMNS, row, strict=True))), flush=True)
            rows.append(row)
    data_text = (
        f"{int(problem.mask.sum())} Bernoulli trials in {scale.num_sequences} sequences of "
        f"{scale.min_length}-{scale.max_length}, D = {scale.input_dim}, true K = {scale.num_states}"
    )
    summary = {name: round(total, 1) for name, total in totals.items()}
    prefix = os.path.join(args.out, "selection_em_kfold_quick" if args.quick else "selection_em_kfold")
    write_text_atomic(prefix + ".csv", csv_text(EM_KFOLD_COLUMNS, rows))
    write_json_atomic(
        prefix + ".json",
        {"metadata": {"data": data_text, "machine": _machine()}, "total_seconds": summary, "table": rows},
    )
    lines = [
        "# The EM k-fold protocol: plain against SQUAREM-accelerated EM",
        "",
        f"Written by `benchmarks/selection.py --em-kfold`: {data_text}; 5 folds of held-out sequences, "
        f"{args.em_restarts} restarts per fold, at most 200 EM steps per restart (SQUAREM: 3 per iteration), "
        "the same stopping rule (one EM step gains at most 1e-7 of the objective); the two alternate per K, "
        "compilation included. 2-core CPU.",
        "",
        f"Total: **plain {summary['plain'] / 60:.1f} min, SQUAREM {summary['squarem'] / 60:.1f} min** "
        f"({summary['plain'] / summary['squarem']:.2f}x).",
        "",
        *markdown_table(EM_KFOLD_COLUMNS, rows),
        "",
    ]
    write_text_atomic(prefix + ".md", "\n".join(lines))


# ---------------------------------------------------------------------------------------------
# Why the larger K's cost more: the sampler's work per iteration


COST_COLUMNS = [
    "num_states",
    "wall_seconds",
    "em_seconds",
    "nuts_seconds",
    "warmup_gradients_per_iteration",
    "sampling_gradients_per_iteration",
    "gradients_per_chain",
    "step_size",
    "max_rhat",
    "min_ess_bulk",
    "divergences",
    "elpd_loo",
    "elpd_loo_se",
    "load_1min",
]


def _in_sample_loo(posterior):
    """ArviZ's PSIS-LOO over sequences of the fitted data (pointwise Pareto k warnings silenced)."""
    import arviz as az

    per_draw = np.asarray(posterior.log_likelihood())
    data = az.from_dict(posterior={"lp": np.asarray(posterior.sample_stats["lp"])}, log_likelihood={"y": per_draw})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.loo(data)


def run_cost_by_k(args) -> None:
    """One ``fit_nuts`` per K on the first ``--sequences`` sequences of the speed data: where the time goes."""
    problem = simulated_problem(jax.random.PRNGKey(0), get_family("bernoulli"), FULL)
    count = args.sequences
    inputs, emissions, lengths = problem.inputs[:count], problem.emissions[:count], problem.lengths[:count]
    rows = []
    for k in range(1, args.max_states + 1):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the verdict is in the row
            posterior = fit_nuts(
                inputs,
                emissions,
                k,
                family="bernoulli",
                lengths=lengths,
                num_chains=4,
                num_warmup=args.warmup,
                num_samples=args.samples,
                em_restarts=args.em_restarts,
                seed=0,
                progress_bar=False,
                max_tree_depth=10 if args.warmup_tree_depth is None else (args.warmup_tree_depth, 10),
            )
        wall = time.perf_counter() - start
        diagnostics = posterior.diagnostics()
        loo = _in_sample_loo(posterior)
        row = {
            "num_states": k,
            "wall_seconds": round(wall, 1),
            "em_seconds": round(posterior.wall_seconds.get("em", 0.0), 1),
            "nuts_seconds": round(posterior.wall_seconds["nuts"], 1),
            "warmup_gradients_per_iteration": round(
                float(np.mean(posterior.settings["warmup_gradients"])) / max(args.warmup, 1), 1
            ),
            "sampling_gradients_per_iteration": round(float(np.mean(posterior.sample_stats["n_steps"])), 1),
            "gradients_per_chain": int(_gradients_per_chain(posterior)),
            "step_size": _rounded(np.median(np.asarray(posterior.sample_stats["step_size"])[:, -1]), 3),
            "max_rhat": _rounded(diagnostics["max_rhat"], 3),
            "min_ess_bulk": _rounded(diagnostics["min_ess_bulk"], 0),
            "divergences": diagnostics["divergences"],
            "elpd_loo": round(float(loo.elpd_loo), 2),
            "elpd_loo_se": round(float(loo.se), 2),
            "load_1min": round(os.getloadavg()[0], 2),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    trials = int(sum(lengths))
    table = [[row[c] for c in COST_COLUMNS] for row in rows]
    data = f"{trials} Bernoulli trials in the first {count} sequences of the speed data (D = 10, true K = 3)"
    name = "selection_cost_by_k" + ("" if args.warmup_tree_depth is None else f"_warmup_depth{args.warmup_tree_depth}")
    prefix = os.path.join(args.out, name)
    metadata = {
        "data": data,
        "settings": {"num_chains": 4, "num_warmup": args.warmup, "num_samples": args.samples},
        "machine": _machine(),
    }
    write_text_atomic(prefix + ".csv", csv_text(COST_COLUMNS, table))
    write_json_atomic(prefix + ".json", {"metadata": metadata, "table": table})
    lines = [
        "# Why the larger K's cost more",
        "",
        f"Written by `benchmarks/selection.py --cost-by-k`: `fit_nuts` for K = 1..{args.max_states} on {data}, "
        f"4 chains x ({args.warmup} + {args.samples}), EM start ({args.em_restarts} restarts), compilation "
        "included; NUTS's maximum tree depth "
        + ("10" if args.warmup_tree_depth is None else f"{args.warmup_tree_depth} during warmup, 10 while drawing")
        + "; gradients per iteration are leapfrog steps (mean over chains), gradients per chain those of "
        "warmup and drawing together (mean over chains), the step size is the adapted one (median over "
        "chains), elpd_loo the in-sample PSIS-LOO over sequences (ArviZ) with its SE. 2-core CPU.",
        "",
        *markdown_table(COST_COLUMNS, table),
        "",
    ]
    write_text_atomic(prefix + ".md", "\n".join(lines))


# ---------------------------------------------------------------------------------------------
# Recovery of a known K


def _sticky(num_states: int, stay: float) -> np.ndarray:
    off = (1.0 - stay) / max(num_states - 1, 1)
    return np.full((num_states, num_states), off) + (stay - off) * np.eye(num_states)


def gaussian_truth(num_states: int) -> GLMHMMParams:
    """Well-separated belts: slopes -2..2, intercepts 1.5..-1.5, noise 0.4, staying probability 0.9."""
    return GLMHMMParams(
        np.full(num_states, 1.0 / num_states),
        _sticky(num_states, 0.9),
        np.linspace(-2.0, 2.0, num_states)[:, None],
        np.linspace(1.5, -1.5, num_states),
        np.full(num_states, 0.4),
    )


def bernoulli_truth(num_states: int) -> BernoulliGLMHMMParams:
    """An engaged state (stimulus weight 4) and biased disengaged ones, staying probability 0.95."""
    stimulus = np.array([4.0, 0.5, 0.5, -3.0])[:num_states]
    biases = np.array([0.0, 2.5, -2.5, 0.0])[:num_states]
    return BernoulliGLMHMMParams(
        np.full(num_states, 1.0 / num_states), _sticky(num_states, 0.95), stimulus[:, None], biases
    )


RECOVERY_DATA = {
    # family: (truth, sequences, steps per sequence)
    "gaussian": (gaussian_truth, 16, 40),
    "bernoulli": (bernoulli_truth, 16, 150),
}


def recovery_case(family: str, num_states: int, seed: int, args) -> dict:
    truth_of, num_sequences, num_timesteps = RECOVERY_DATA[family]
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(num_sequences, num_timesteps, 1)).astype(np.float32)
    _, emissions = simulate(jax.random.PRNGKey(seed), truth_of(num_states), inputs)
    candidates = (num_states - 1, num_states, num_states + 1)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        selection = select_num_states(
            inputs,
            np.asarray(emissions),
            candidates,
            family=family,
            num_folds=4,
            em_restarts=3,
            num_chains=2,
            num_warmup=args.warmup,
            num_samples=args.samples,
            seed=seed,
            progress=False,
            progress_bar=False,
        )
    table = selection.table
    return {
        "family": family,
        "true_num_states": num_states,
        "seed": seed,
        "bayes_choice": selection.best,
        "em_choice": selection.best_em,
        "bayes_correct": int(selection.best == num_states),
        "em_correct": int(selection.best_em == num_states),
        **{f"elpd_diff_k{c - num_states:+d}": _rounded(table.loc[c, "elpd_diff"], 2) for c in candidates},
        **{f"elpd_diff_se_k{c - num_states:+d}": _rounded(table.loc[c, "elpd_diff_se"], 2) for c in candidates},
        "max_pareto_k": _rounded(table["max_pareto_k"].max(), 3),
        "refits": int(table["num_refits"].sum()),
        "max_rhat": _rounded(table["max_rhat"].max(), 3),
        "warnings": len(caught),
        "seconds": round(time.perf_counter() - start, 1),
    }


def run_recovery(args) -> None:
    rows, started = [], time.perf_counter()
    load_start = os.getloadavg()
    for family in args.families:
        for num_states in (2, 3, 4):
            for seed in range(args.datasets):
                row = recovery_case(family, num_states, 1000 * num_states + seed, args)
                rows.append(row)
                print(json.dumps(row), flush=True)
    timing = {
        "wall_seconds": round(time.perf_counter() - started, 1),
        "load_1min_start": round(load_start[0], 2),
        "load_1min_end": round(os.getloadavg()[0], 2),
    }
    write_recovery(rows, args, timing)


def write_recovery(rows: list[dict], args, timing: dict) -> None:
    """Write ``selection_recovery.{csv,json,md}`` from the per-data-set rows of the families in ``args``."""
    header = list(rows[0])
    write_text_atomic(
        os.path.join(args.out, "selection_recovery.csv"), csv_text(header, [[r[h] for h in header] for r in rows])
    )
    summary_rows = []
    for family in args.families:
        for num_states in (2, 3, 4):
            cases = [r for r in rows if r["family"] == family and r["true_num_states"] == num_states]
            summary_rows.append(
                [
                    family,
                    num_states,
                    len(cases),
                    sum(r["bayes_correct"] for r in cases),
                    sum(r["em_correct"] for r in cases),
                    ", ".join(str(r["bayes_choice"]) for r in cases),
                    ", ".join(str(r["em_choice"]) for r in cases),
                ]
            )
    summary_header = ["family", "true K", "data sets", "Bayes correct", "EM correct", "Bayes choices", "EM choices"]
    metadata = {
        "datasets": args.datasets,
        "data": {name: {"sequences": n, "steps": t} for name, (_, n, t) in RECOVERY_DATA.items()},
        "settings": {"num_chains": 2, "num_warmup": args.warmup, "num_samples": args.samples, "em_folds": 4},
        "machine": _machine(),
        **timing,
    }
    write_json_atomic(
        os.path.join(args.out, "selection_recovery.json"),
        {"metadata": metadata, "summary": [dict(zip(summary_header, r, strict=True)) for r in summary_rows]},
    )
    lines = [
        "# Choosing K on simulated data with a known K",
        "",
        f"Written by `benchmarks/selection.py --recovery`: {args.datasets} data sets per family and true K; "
        "candidates K - 1, K, K + 1; the one-SE rule on PSIS-LOO over sequences (Bayes, 2 chains x "
        f"({args.warmup} + {args.samples}) draws) and on the EM 4-fold plug-in score (3 restarts). Gaussian: "
        f"{RECOVERY_DATA['gaussian'][1]} sequences x {RECOVERY_DATA['gaussian'][2]} steps (slopes -2..2, noise "
        f"0.4, staying 0.9); Bernoulli: {RECOVERY_DATA['bernoulli'][1]} sequences x "
        f"{RECOVERY_DATA['bernoulli'][2]} trials (an engaged state, biased ones and a reversed one, staying 0.95). "
        f"Total {metadata['wall_seconds'] / 60:.1f} min; 1-min load {metadata['load_1min_start']} at the start, "
        f"{metadata['load_1min_end']} at the end.",
        "",
        *markdown_table(summary_header, summary_rows),
        "",
    ]
    write_text_atomic(os.path.join(args.out, "selection_recovery.md"), "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", action="store_true", help="K = 1..5 at the field's scale")
    parser.add_argument("--em-kfold", action="store_true", help="EM k-fold alone: plain against SQUAREM")
    parser.add_argument("--recovery", action="store_true", help="how often the true K is chosen")
    parser.add_argument("--cost-by-k", action="store_true", help="the sampler's work per iteration, per K")
    parser.add_argument("--sequences", type=int, default=50, help="sequences of the speed data (--cost-by-k)")
    parser.add_argument("--max-states", type=int, default=5)
    parser.add_argument(
        "--warmup-tree-depth", type=int, default=None, help="--cost-by-k: cap the warmup's trees at this depth"
    )
    parser.add_argument("--quick", action="store_true", help="--speed on small data (a smoke run)")
    parser.add_argument("--warmup", type=int, default=None, help="warmup draws per chain")
    parser.add_argument("--samples", type=int, default=None, help="kept draws per chain")
    parser.add_argument("--em-restarts", type=int, default=5, help="EM restarts per fold (--speed)")
    parser.add_argument("--max-refits", type=int, default=10, help="most PSIS-LOO refits per K (--speed)")
    parser.add_argument("--datasets", type=int, default=10, help="data sets per family and K (--recovery)")
    parser.add_argument("--families", nargs="+", default=["gaussian", "bernoulli"], choices=sorted(RECOVERY_DATA))
    parser.add_argument("--out", default="results/benchmarks")
    parser.add_argument(
        "--from-log", default=None, help="--recovery: write the results from the JSON lines of an earlier run's log"
    )
    args = parser.parse_args(argv)
    if not (args.speed or args.recovery or args.cost_by_k or args.em_kfold):
        parser.error("give --speed, --em-kfold, --recovery and/or --cost-by-k")
    if args.em_kfold:
        run_em_kfold(args)
    if args.cost_by_k:
        run_cost_by_k(
            argparse.Namespace(**{**vars(args), "warmup": args.warmup or 200, "samples": args.samples or 200})
        )
    if args.speed:
        run_speed(argparse.Namespace(**{**vars(args), "warmup": args.warmup or 500, "samples": args.samples or 500}))
    if args.recovery and args.from_log:
        with open(args.from_log) as log:
            rows = [json.loads(line) for line in log if line.startswith("{")]
        rows = [row for row in rows if row["family"] in args.families]
        write_recovery(
            rows,
            argparse.Namespace(**{**vars(args), "warmup": args.warmup or 300, "samples": args.samples or 300}),
            {"wall_seconds": round(sum(r["seconds"] for r in rows), 1), "load_1min_start": None, "load_1min_end": None},
        )
    elif args.recovery:
        run_recovery(argparse.Namespace(**{**vars(args), "warmup": args.warmup or 300, "samples": args.samples or 300}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
