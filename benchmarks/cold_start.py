"""Cold start: a first fit in a fresh process, ours against the simplest NumPyro alternative.

Most users run one fit per process (``bayes-glmhmm fit``, a notebook kernel), so the time to a
first posterior includes importing, tracing and compiling. Each row here is a fresh Python
process (the runs alternate between methods so that load affects both alike; medians over
``--repeats``) that imports the package, simulates the article's data (10 sequences x 100 steps,
K = 3), and fits it with 4 chains x (1000 warmup + 1000 draws), one chain per host device:

* ``ours``: ``fit_nuts`` with its defaults (MAP EM restarts, jittered starts, curvature-started
  mass matrix, the compile-once runner, relabeling, the verdict);
* ``naive``: NumPyro's ``MCMC(NUTS(model))`` on a plain NumPyro model whose forward algorithm is a
  log-space ``lax.scan`` differentiated by autodiff (``benchmarks/_alternatives_models.py``),
  default initialization, ``chain_method="parallel"``.

Each process then fits the same data a second time (warm: everything compiled). The ESS of both
is taken after relabeling every draw to the true parameters' states (the naive chains switch
labels), over every scalar parameter.

Columns: process wall seconds (interpreter start to exit, measured by the parent), import, data,
first (cold) fit and second (warm) fit seconds, JAX's own tracing, lowering and XLA compile
seconds, the compile seconds of every program by name, and min bulk ESS and ESS/s of both fits.

The CLI rows (``--cli``) time a bad call (``fit`` of a missing file, which fails before JAX is
imported), ``bayes-glmhmm fit`` on a CSV of the same data twice in new processes with an empty
persistent compilation cache (first run) and the cache it left (second run; both runs must write
the same ``parameters.csv``), and ``bayes-glmhmm demo`` and ``demo --quick``, each in a new process.

    python benchmarks/cold_start.py [--repeats 3] [--cli] [--quick]

Writes results/benchmarks/cold_start.csv (one row per process) and cold_start.md (medians).
"""

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(ROOT, "results", "benchmarks")
NUM_STATES = 3
NUM_CHAINS = 4


def _compile_listener(events: list):
    """Record JAX's compile-stage durations: (stage, seconds, program name)."""

    def listener(event, duration, **kwargs):
        stage = event.rsplit("/", 1)[-1]
        if stage in ("jaxpr_trace_duration", "jaxpr_to_mlir_module_duration", "backend_compile_duration"):
            events.append((stage, float(duration), str(kwargs.get("fun_name", "?"))))

    return listener


def _min_ess(samples: dict, truth) -> float:
    """Min bulk ESS over every scalar parameter, draws relabeled to the true states first."""
    import arviz as az
    import numpy as np

    from bayes_glmhmm.relabel import relabel_samples, state_features

    names = ("initial_probs", "transition_matrix", "weights", "biases", "scales")
    reference = state_features({name: np.asarray(getattr(truth, name)) for name in names})
    relabeled = relabel_samples({name: np.asarray(samples[name]) for name in names}, reference).samples
    bulk = az.ess(az.convert_to_dataset({name: relabeled[name] for name in names}), method="bulk")
    return float(min(np.nanmin(bulk[name].values) for name in names))


def _fit_ours(data, seed: int) -> dict:
    from bayes_glmhmm import fit_nuts

    posterior = fit_nuts(data.inputs, data.emissions, num_states=NUM_STATES, seed=seed, progress_bar=False)
    return {name: posterior.samples[name] for name in posterior.param_names}


def _fit_naive(data, seed: int) -> dict:
    import jax
    import numpy as np
    from numpyro.infer import MCMC, NUTS

    sys.path.insert(0, HERE)
    from _alternatives_models import make_naive_model

    from bayes_glmhmm import Priors

    mcmc = MCMC(
        NUTS(make_naive_model(NUM_STATES, Priors())),
        num_warmup=1000,
        num_samples=1000,
        num_chains=NUM_CHAINS,
        chain_method="parallel",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(seed), data.inputs, data.emissions)
    return {name: np.asarray(value) for name, value in mcmc.get_samples(group_by_chain=True).items()}


def worker(method: str) -> dict:
    """One fresh process: import, simulate, fit cold, fit warm; the timings as a dict."""
    begin = time.perf_counter()
    import numpyro

    numpyro.set_host_device_count(NUM_CHAINS)
    import jax
    import jax.monitoring

    events: list = []
    jax.monitoring.register_event_duration_secs_listener(_compile_listener(events))
    import bayes_glmhmm

    imported = time.perf_counter()
    data = bayes_glmhmm.article_data(jax.random.PRNGKey(0))
    jax.block_until_ready(data.emissions)
    simulated = time.perf_counter()
    fit = {"ours": _fit_ours, "baseline": _fit_ours, "naive": _fit_naive}[method]
    first_events = len(events)
    samples = fit(data, 1)
    cold = time.perf_counter()
    fit_events = events[first_events:]
    samples_warm = fit(data, 2)
    warm = time.perf_counter()
    by_program: dict = {}
    for stage, seconds, name in fit_events:
        if stage == "backend_compile_duration":
            by_program[name] = by_program.get(name, 0.0) + seconds
    stage_sum = {stage: sum(s for st, s, _ in fit_events if st == stage) for stage, _, _ in fit_events}
    cold_ess, warm_ess = _min_ess(samples, data.params), _min_ess(samples_warm, data.params)
    return {
        "method": method,
        "import_s": imported - begin,
        "data_s": simulated - imported,
        "cold_fit_s": cold - simulated,
        "warm_fit_s": warm - cold,
        "trace_s": stage_sum.get("jaxpr_trace_duration", 0.0),
        "lower_s": stage_sum.get("jaxpr_to_mlir_module_duration", 0.0),
        "compile_s": stage_sum.get("backend_compile_duration", 0.0),
        "num_programs": sum(1 for stage, _, _ in fit_events if stage == "backend_compile_duration"),
        "cold_min_ess_bulk": cold_ess,
        "warm_min_ess_bulk": warm_ess,
        "cold_ess_per_s": cold_ess / (cold - simulated),
        "warm_ess_per_s": warm_ess / (warm - cold),
        "programs": json.dumps({name: round(s, 3) for name, s in sorted(by_program.items(), key=lambda i: -i[1])}),
    }


def _run_process(command: list, env=None) -> tuple[float, str]:
    """Run a command in a new process; its wall seconds and stdout (raises on failure)."""
    begin = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - begin
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return wall, done.stdout


def _fit_rows(repeats: int, baseline: str | None = None) -> list[dict]:
    methods = ["ours", "naive"] + ([] if baseline is None else ["baseline"])
    rows = []
    for repeat in range(repeats):
        for method in methods if repeat % 2 == 0 else methods[::-1]:
            env = None
            if method == "baseline":  # ours, imported from another checkout of the package
                env = os.environ | {"PYTHONPATH": os.path.abspath(baseline)}
            wall, output = _run_process([sys.executable, __file__, "--worker", method], env=env)
            row = json.loads(output.strip().splitlines()[-1])
            rows.append({"kind": "fit", "repeat": repeat, "process_s": wall, **row})
            print(f"{method}: process {wall:.1f} s, cold fit {row['cold_fit_s']:.1f} s, warm {row['warm_fit_s']:.1f} s")
    return rows


def _article_csv(path: str) -> None:
    """The article's data as a long-format CSV (sequence, x, y)."""
    import numpy as np

    code = (
        "import jax, numpy as np, bayes_glmhmm as b; d = b.article_data(jax.random.PRNGKey(0)); "
        "print(np.asarray(d.inputs).tolist()); print(np.asarray(d.emissions).tolist())"
    )
    _, output = _run_process([sys.executable, "-c", code])
    inputs_line, emissions_line = output.strip().splitlines()[-2:]
    inputs, emissions = np.asarray(json.loads(inputs_line)), np.asarray(json.loads(emissions_line))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["session", "x", "y"])
        for sequence in range(emissions.shape[0]):
            for step in range(emissions.shape[1]):
                writer.writerow([sequence, inputs[sequence, step, 0], emissions[sequence, step]])


def _cli_rows(repeats: int, quick: bool) -> list[dict]:
    executable = os.path.join(os.path.dirname(sys.executable), "bayes-glmhmm")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        data_path = os.path.join(scratch, "article.csv")
        _article_csv(data_path)
        for repeat in range(repeats):
            cache = os.path.join(scratch, f"cache{repeat}")
            env = os.environ | {"BAYES_GLMHMM_COMPILE_CACHE": cache}
            fit = [executable, "fit", data_path, "--states", "3", "--target", "y", "--inputs", "x"]
            fit += ["--sequence", "session", "--no-progress", "--out", os.path.join(scratch, "fit")]
            bad_call = [executable, "fit", os.path.join(scratch, "missing.csv"), *fit[3:]]
            begin = time.perf_counter()
            bad = subprocess.run(bad_call, capture_output=True)
            rows.append({"kind": "cli_bad_call", "repeat": repeat, "process_s": time.perf_counter() - begin})
            if bad.returncode != 2:
                raise RuntimeError(f"a fit of a missing file exited with {bad.returncode}, not 2")
            written = []
            for run in ("first", "second"):
                wall, _ = _run_process(fit, env=env)
                rows.append({"kind": f"cli_fit_{run}", "repeat": repeat, "process_s": wall})
                print(f"cli fit ({run}, cache {cache}): {wall:.1f} s")
                with open(os.path.join(scratch, "fit", "parameters.csv")) as handle:
                    written.append(handle.read())
            if written[0] != written[1]:
                raise RuntimeError("the fit read from the compilation cache wrote other parameters")
            off = os.environ | {"BAYES_GLMHMM_COMPILE_CACHE": "off"}
            for name, extra in [("demo_quick", ["--quick"])] + ([] if quick else [("demo", [])]):
                demo = [executable, "demo", *extra, "--no-progress", "--out", os.path.join(scratch, name)]
                wall, _ = _run_process(demo, env=off)
                rows.append({"kind": name, "repeat": repeat, "process_s": wall})
                print(f"{name} (no cache): {wall:.1f} s")
    return rows


def _median(rows, kind, key, method=None):
    values = [row[key] for row in rows if row["kind"] == kind and (method is None or row.get("method") == method)]
    return statistics.median(values) if values else float("nan")


def summary_markdown(rows: list[dict], repeats: int) -> str:
    lines = [
        "# Cold start: a first fit in a fresh process",
        "",
        f"Medians of {repeats} fresh processes per method, alternating; written by `benchmarks/cold_start.py` "
        f"on {os.cpu_count()} CPU cores, {time.strftime('%Y-%m-%d')}. The article's data (10 x 100, K = 3), "
        "4 chains x (1000 + 1000), one chain per host device. `naive`: NumPyro's `MCMC` on a plain NumPyro model "
        "(autodiff log-space scan); `baseline`, when present: `fit_nuts` of another checkout (`--baseline`).",
    ]
    if any(row["kind"] == "fit" for row in rows):
        lines += [
            "",
            "| method | process s | import s | data s | cold fit s | warm fit s | trace s | lower s | XLA compile s "
            "| programs | cold min ESS | cold ESS/s | warm ESS/s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
    keys = ["process_s", "import_s", "data_s", "cold_fit_s", "warm_fit_s", "trace_s", "lower_s", "compile_s"]
    for method in ("ours", "baseline", "naive"):
        if not any(row.get("method") == method for row in rows):
            continue
        values = [f"{_median(rows, 'fit', key, method):.1f}" for key in keys]
        values.append(f"{_median(rows, 'fit', 'num_programs', method):.0f}")
        values.append(f"{_median(rows, 'fit', 'cold_min_ess_bulk', method):.0f}")
        values += [f"{_median(rows, 'fit', key, method):.0f}" for key in ("cold_ess_per_s", "warm_ess_per_s")]
        lines.append(f"| {method} | " + " | ".join(values) + " |")
    ours = [row for row in rows if row["kind"] == "fit" and row["method"] == "ours"]
    if ours:
        programs = json.loads(ours[0]["programs"])
        lines += ["", "XLA compile seconds of ours' cold fit by program (first process):", ""]
        lines += [f"- `{name}`: {seconds:.2f}" for name, seconds in programs.items() if seconds >= 0.05]
    cli = [
        kind
        for kind in ("cli_bad_call", "cli_fit_first", "cli_fit_second", "demo_quick", "demo")
        if any(r["kind"] == kind for r in rows)
    ]
    if cli:
        lines += ["", "| command (new process) | wall s |", "|---|---|"]
        lines += [f"| {kind} | {_median(rows, kind, 'process_s'):.1f} |" for kind in cli]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", choices=["ours", "baseline", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per method (default: 3)")
    parser.add_argument("--cli", action="store_true", help="also time the CLI's fit (cache cold and warm) and demo")
    parser.add_argument("--quick", action="store_true", help="with --cli: demo --quick only")
    parser.add_argument(
        "--baseline",
        default=None,
        help="a checkout of another version of the repository: its fit_nuts runs too, as method 'baseline'",
    )
    parser.add_argument("--no-fit", action="store_true", help="skip the fit_nuts vs naive rows")
    parser.add_argument("--out", default=RESULTS, help="output folder (default: results/benchmarks)")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker)))
        return 0
    from bayes_glmhmm._io import write_text_atomic

    rows = [] if args.no_fit else _fit_rows(args.repeats, args.baseline)
    if args.cli:
        rows += _cli_rows(args.repeats, args.quick)
    columns = sorted({key for row in rows for key in row}, key=lambda key: (key != "kind", key))
    os.makedirs(args.out, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", newline="", dir=args.out, delete=False, suffix=".tmp") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(handle.name, os.path.join(args.out, "cold_start.csv"))
    markdown = summary_markdown(rows, args.repeats)
    write_text_atomic(os.path.join(args.out, "cold_start.md"), markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
