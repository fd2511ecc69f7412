"""Command line.

* ``bayes-glmhmm demo``: simulate the article's conveyor-belt data, fit EM and NUTS, recover the
  states, compare, and write a results folder with a diagnostic report.
* ``bayes-glmhmm fit DATA.csv --states K --target COL --inputs COL[,COL...]``: fit a user's
  long-format CSV (see :mod:`bayes_glmhmm.csv_fit`).
* ``bayes-glmhmm report POSTERIOR.nc --out DIR``: HTML and Markdown diagnostics of a saved fit.
"""

import argparse
import os
import platform
import sys
import time

__all__ = ["main", "run_demo"]


def _configure_devices(num_devices: int) -> None:
    """Give XLA enough host devices (one per chain and sequence shard) before JAX starts."""
    import numpyro

    numpyro.set_host_device_count(max(num_devices, os.cpu_count() or 1))


def _versions() -> dict:
    import arviz
    import jax
    import numpyro

    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "numpyro": numpyro.__version__,
        "arviz": arviz.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "jax_devices": jax.local_device_count(),
        "x64": bool(jax.config.jax_enable_x64),
    }


def run_demo(
    out: str = "results",
    quick: bool = False,
    seed: int = 0,
    variant: str = "text",
    num_chains: int = 4,
    num_warmup: int | None = None,
    num_samples: int | None = None,
    progress_bar: bool = True,
) -> dict:
    """Simulate the article's data, fit EM and NUTS, recover states, and write the results folder.

    Files written to ``out`` (each atomically; ``summary.json`` last):
    ``posterior.nc`` (InferenceData), ``parameters.csv`` (posterior vs truth vs EM),
    ``comparison.csv`` and ``comparison.md`` (full Bayes vs maximum-likelihood EM: parameters,
    state recovery, log predictive density of five held-out sequences, wall time, see
    :func:`bayes_glmhmm.compare.compare_fits`), figures ``data_*.png``, ``states_*.png``,
    ``parameters.png``, ``parameter_recovery_bars.png``, ``transition_matrices.png``,
    ``trace.png``, ``lp_by_chain.png``, ``em_log_probs.png``, and ``summary.json`` (with ``em``
    and ``comparison``).

    Args:
        out: output folder.
        quick: small, fast settings (few draws) for smoke tests.
        seed: seed of data simulation and inference.
        variant: the article's ``"text"`` or ``"code"`` generator.
        num_chains: NUTS chains.
        num_warmup: warmup per chain (default 1000, quick 150).
        num_samples: draws per chain (default 1000, quick 150).
        progress_bar: show progress bars.

    Returns:
        The summary dictionary written to ``summary.json``.
    """
    import jax
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from tqdm.auto import tqdm

    from bayes_glmhmm import plots
    from bayes_glmhmm._io import csv_text, save_figures_atomic, write_json_atomic, write_text_atomic
    from bayes_glmhmm.compare import compare_fits, comparison_to_csv, comparison_to_dict, comparison_to_markdown
    from bayes_glmhmm.convert import write_netcdf_atomic
    from bayes_glmhmm.em import fit_em
    from bayes_glmhmm.fit import fit_nuts
    from bayes_glmhmm.model import most_likely_states
    from bayes_glmhmm.relabel import match_params
    from bayes_glmhmm.report import write_report
    from bayes_glmhmm.simulate import article_data
    from bayes_glmhmm.summaries import complete_data_estimate, coverage_summary, parameter_table, state_accuracy

    num_warmup = num_warmup if num_warmup is not None else (150 if quick else 1000)
    num_samples = num_samples if num_samples is not None else (150 if quick else 1000)
    os.makedirs(out, exist_ok=True)
    stages = tqdm(total=8, desc="demo", disable=not progress_bar, file=sys.stderr)

    def _stage(name):
        stages.set_postfix_str(name)
        stages.update(1)

    data = article_data(jax.random.PRNGKey(seed), variant=variant)
    truth = data.params
    # Five more sequences from the same generator, never fitted: for the predictive comparison.
    heldout = article_data(
        jax.random.fold_in(jax.random.PRNGKey(seed), 1),
        variant=variant,
        num_sequences=5,
        num_timesteps=data.emissions.shape[1],
    )
    _stage("data")

    em_ml = fit_em(data.inputs, data.emissions, 3, seed=seed)
    em_ml_aligned = em_ml.params.permute(match_params(em_ml.params, truth))
    em_states = np.asarray(most_likely_states(em_ml_aligned, data.inputs, data.emissions))
    _stage("em")

    posterior = fit_nuts(
        data.inputs,
        data.emissions,
        3,
        num_chains=num_chains,
        num_warmup=num_warmup,
        num_samples=num_samples,
        seed=seed,
        progress_bar=progress_bar,
    )
    # Express the posterior in the truth's labeling so that every table compares like with like.
    posterior = posterior.permute(match_params(posterior.posterior_mean(), truth))
    _stage("nuts")

    idata = posterior.to_arviz(key=jax.random.PRNGKey(seed + 1))
    state_probs = idata.posterior_states["state_probabilities"].values
    sine_probs = posterior.state_probabilities(data.sine_inputs, data.sine_emissions)[0]
    write_netcdf_atomic(idata, os.path.join(out, "posterior.nc"))
    _stage("posterior states")

    rows = parameter_table(posterior.samples, truth=truth, point_estimate=em_ml_aligned)
    header = [
        "parameter",
        "index",
        "truth",
        "point_estimate",
        "posterior_mean",
        "posterior_sd",
        "lower",
        "upper",
        "covered",
    ]
    csv_header = ["parameter", "index", "truth", "em_ml", "posterior_mean", "posterior_sd", "lower_94", "upper_94"]
    csv_rows = [
        [row["parameter"], "-".join(map(str, row["index"])) or "-", *(row[name] for name in header[2:])] for row in rows
    ]
    write_text_atomic(os.path.join(out, "parameters.csv"), csv_text([*csv_header, "covered"], csv_rows))

    comparison = compare_fits(
        posterior,
        em_ml,
        truth=truth,
        true_states=data.states,
        heldout_inputs=heldout.inputs,
        heldout_emissions=heldout.emissions,
        heldout_states=heldout.states,
    )
    comparison_to_csv(comparison, os.path.join(out, "comparison.csv"))
    comparison_to_markdown(comparison, os.path.join(out, "comparison.md"))
    _stage("comparison")

    figures = {
        "data_sine_sequence.png": plots.plot_article_data(
            data.sine_inputs, data.sine_emissions, data.sine_states, title="The article's sinusoidal input sequence"
        ),
        "data_scatter.png": plots.plot_scatter_by_state(data.inputs, data.emissions, data.states),
        "states_sequence0.png": plots.plot_states(
            data.emissions[0],
            data.states[0],
            state_probs[0],
            map_states=em_states[0],
            sequence_label="training sequence 0",
        ),
        "states_sine_sequence.png": plots.plot_states(
            data.sine_emissions,
            data.sine_states,
            sine_probs,
            map_states=np.asarray(most_likely_states(em_ml_aligned, data.sine_inputs, data.sine_emissions))[0],
            sequence_label="sinusoidal input sequence (held out)",
        ),
        "parameters.png": plots.plot_parameter_posteriors(
            posterior.samples, true_params=truth, em_params=em_ml_aligned
        ),
        "parameter_recovery_bars.png": plots.plot_parameter_bars(truth, em_ml_aligned, posterior.samples),
        "transition_matrices.png": plots.plot_transition_matrices(
            {
                "truth": np.asarray(truth.transition_matrix),
                "EM (maximum likelihood)": np.asarray(em_ml_aligned.transition_matrix),
                "posterior mean": posterior.samples["transition_matrix"].mean(axis=(0, 1)),
            },
            spreads={"posterior mean": posterior.samples["transition_matrix"].std(axis=(0, 1))},
        ),
        "trace.png": plots.plot_trace(posterior.samples, var_names=["weights", "biases", "scales"]),
        "lp_by_chain.png": plots.plot_lp_by_chain(posterior.sample_stats["lp"]),
        "em_log_probs.png": plots.plot_em_log_probs(em_ml.log_probs),
    }
    save_figures_atomic(figures, out)
    for figure in figures.values():
        plt.close(figure)
    _stage("figures")

    report_paths = write_report(idata, os.path.join(out, "report"), title="bayes-glmhmm demo: the article's data")
    _stage("report")

    diagnostics = posterior.diagnostics()
    posterior_states = state_probs.argmax(-1)
    summary = {
        "command": "bayes-glmhmm demo" + (" --quick" if quick else ""),
        "data": {
            "source": f"article generator, variant={variant!r}",
            "num_sequences": int(data.emissions.shape[0]),
            "num_timesteps": int(data.emissions.shape[1]),
            "num_states": 3,
            "seed": seed,
        },
        "nuts": {
            "wall_seconds": diagnostics["wall_seconds"]["total"],
            "wall_seconds_breakdown": diagnostics["wall_seconds"],
            "max_rhat": diagnostics["max_rhat"],
            "min_ess_bulk": diagnostics["min_ess_bulk"],
            "min_ess_tail": diagnostics["min_ess_tail"],
            "divergences": diagnostics["divergences"],
            "stuck_chains": diagnostics["stuck_chains"],
            "settings": posterior.settings,
            "meets_targets": bool(
                diagnostics["max_rhat"] <= 1.01
                and diagnostics["min_ess_bulk"] >= 400
                and diagnostics["divergences"] == 0
            ),
        },
        "recovery": coverage_summary(rows),
        # The same intervals against the complete-data estimates of this very data set (what the
        # data realized: e.g. its empirical transition frequencies), see complete_data_estimate.
        "recovery_of_realized": coverage_summary(
            parameter_table(
                posterior.samples, truth=complete_data_estimate(data.states, data.inputs, data.emissions, 3)
            )
        ),
        "states": {
            "posterior_accuracy": state_accuracy(data.states, posterior_states),
            "em_viterbi_accuracy": state_accuracy(data.states, em_states),
            "sine_sequence_posterior_accuracy": state_accuracy(data.sine_states, sine_probs.argmax(-1)),
        },
        "em": {
            "objective": "maximum likelihood (as in the article)",
            "wall_seconds": em_ml.wall_seconds,
            "final_log_prob": float(em_ml.log_probs[-1]),
            "num_iterations": int(len(em_ml.log_probs)),
            "converged": em_ml.converged,
            "params": {k: np.asarray(v).tolist() for k, v in em_ml_aligned._asdict().items()},
        },
        "comparison": comparison_to_dict(comparison),
        "versions": _versions(),
        "files": sorted(
            ["posterior.nc", "parameters.csv", "comparison.csv", "comparison.md", *figures]
            + [os.path.relpath(path, out) for path in (report_paths["html"], report_paths["markdown"])]
        ),
    }
    write_json_atomic(os.path.join(out, "summary.json"), summary)
    _stage("summary")
    stages.close()
    return summary


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bayes-glmhmm", description="Fully Bayesian GLM-HMMs with NUTS.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="fit the article's conveyor-belt data and write a results folder")
    demo.add_argument("--out", default="results", help="output folder (default: results)")
    demo.add_argument("--quick", action="store_true", help="small, fast run (150 warmup + 150 draws per chain)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--variant", choices=["text", "code"], default="text", help="the article's text or code generator"
    )
    demo.add_argument("--chains", type=int, default=4)
    demo.add_argument("--warmup", type=int, default=None)
    demo.add_argument("--samples", type=int, default=None)
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    fit = commands.add_parser("fit", help="fit a long-format CSV (one row per time step)")
    fit.add_argument("data", help="CSV with a header row; rows of each sequence in time order")
    fit.add_argument("--states", type=int, required=True, help="number of hidden states K")
    fit.add_argument("--target", required=True, help="target column y (empty or NaN = missing)")
    fit.add_argument("--inputs", required=True, help="input columns x, comma-separated")
    fit.add_argument("--sequence", default=None, help="column identifying sequences (default: one sequence)")
    fit.add_argument("--out", default="fit_results", help="output folder (default: fit_results)")
    fit.add_argument("--chains", type=int, default=4)
    fit.add_argument("--warmup", type=int, default=1000)
    fit.add_argument("--samples", type=int, default=1000)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument(
        "--standardize",
        choices=["auto", "yes", "no"],
        default="auto",
        help="fit on standardized data (priors then apply to standardized parameters); "
        "auto: only for data far from unit scale",
    )
    for field, help_text in [
        ("initial-concentration", "Dirichlet concentration of the initial probabilities"),
        ("transition-concentration", "Dirichlet concentration of each transition row"),
        ("weight-scale", "sd of the Normal prior on weights"),
        ("bias-scale", "sd of the Normal prior on biases"),
        ("noise-scale", "scale of the HalfNormal prior on noise sds"),
    ]:
        fit.add_argument(f"--{field}", type=float, default=1.0, help=f"{help_text} (default 1)")
    fit.add_argument("--float64", action="store_true", help="compute in 64-bit floats")
    fit.add_argument(
        "--sequence-devices",
        type=int,
        default=1,
        help="devices that split each chain's sequences (default 1; CPU host devices are created as needed)",
    )
    fit.add_argument(
        "--time-parallel",
        action="store_true",
        help="parallel-in-time likelihood (O(log T) depth; pays on GPUs with few long sequences, not on CPUs)",
    )
    fit.add_argument("--no-progress", action="store_true", help="hide progress bars")
    report = commands.add_parser("report", help="write an HTML and Markdown diagnostic report of a saved posterior")
    report.add_argument("posterior", help="InferenceData netCDF file written by bayes_glmhmm (e.g. posterior.nc)")
    report.add_argument("--out", default=None, help="output folder (default: report/ beside the file)")
    report.add_argument("--title", default=None, help="report title")
    return parser


def _run_fit_command(args) -> int:
    from bayes_glmhmm.params import Priors

    if args.chains < 1:
        print("bayes-glmhmm: error: --chains must be >= 1", file=sys.stderr)
        return 2
    if args.sequence_devices < 1:
        print("bayes-glmhmm: error: --sequence-devices must be >= 1", file=sys.stderr)
        return 2
    try:
        priors = Priors(
            args.initial_concentration,
            args.transition_concentration,
            args.weight_scale,
            args.bias_scale,
            args.noise_scale,
        ).validate()
    except ValueError as error:
        print(f"bayes-glmhmm: error: {error}", file=sys.stderr)
        return 2
    _configure_devices(args.chains * args.sequence_devices)
    if args.float64:
        import jax

        jax.config.update("jax_enable_x64", True)
    from bayes_glmhmm.csv_fit import run_fit

    try:
        summary = run_fit(
            args.data,
            args.states,
            args.target,
            [name.strip() for name in args.inputs.split(",") if name.strip()],
            sequence=args.sequence,
            out=args.out,
            priors=priors,
            num_chains=args.chains,
            num_warmup=args.warmup,
            num_samples=args.samples,
            seed=args.seed,
            progress_bar=not args.no_progress,
            standardize={"auto": "auto", "yes": True, "no": False}[args.standardize],
            sequence_devices=args.sequence_devices,
            time_parallel=args.time_parallel,
        )
    except ValueError as error:
        print(f"bayes-glmhmm: error: {error}", file=sys.stderr)
        return 2
    nuts = summary["nuts"]
    print(
        f"wrote {args.out}/: {summary['data']['num_rows']} rows in {summary['data']['num_sequences']} sequence(s), "
        f"NUTS {nuts['wall_seconds']:.1f} s, max R-hat {nuts['max_rhat']:.3f}, "
        f"min bulk ESS {nuts['min_ess_bulk']:.0f}, divergences {nuts['divergences']}, "
        f"stuck chains {nuts['stuck_chains']}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bayes-glmhmm`` command."""
    args = _build_parser().parse_args(argv)
    if args.command == "report":
        if not os.path.isfile(args.posterior):
            print(f"bayes-glmhmm: error: no such file: {args.posterior}", file=sys.stderr)
            return 2
        import matplotlib

        matplotlib.use("Agg")
        from bayes_glmhmm.report import write_report

        out = args.out if args.out is not None else os.path.join(os.path.dirname(args.posterior) or ".", "report")
        paths = write_report(args.posterior, out, title=args.title)
        print(f"wrote {paths['html']} (self-contained) and {paths['markdown']}")
        return 0
    if args.command == "fit":
        return _run_fit_command(args)
    if args.command == "demo":
        if args.chains < 1:
            print("bayes-glmhmm: error: --chains must be >= 1", file=sys.stderr)
            return 2
        _configure_devices(args.chains)
        start = time.perf_counter()
        summary = run_demo(
            out=args.out,
            quick=args.quick,
            seed=args.seed,
            variant=args.variant,
            num_chains=args.chains,
            num_warmup=args.warmup,
            num_samples=args.samples,
            progress_bar=not args.no_progress,
        )
        nuts = summary["nuts"]
        covered, realized = summary["recovery"]["fraction_covered"], summary["recovery_of_realized"]["fraction_covered"]
        print(
            f"wrote {args.out}/ in {time.perf_counter() - start:.1f} s: NUTS {nuts['wall_seconds']:.1f} s, "
            f"max R-hat {nuts['max_rhat']:.3f}, min bulk ESS {nuts['min_ess_bulk']:.0f}, "
            f"divergences {nuts['divergences']}, 94% intervals cover {covered:.0%} of the generator's values "
            f"and {realized:.0%} of the realized ones"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
