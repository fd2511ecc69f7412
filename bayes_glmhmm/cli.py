"""Command line: ``bayes-glmhmm demo`` fits the article's conveyor-belt data end to end."""

import argparse
import os
import platform
import sys
import time

__all__ = ["main", "run_demo"]


def _configure_devices(num_chains: int) -> None:
    """Give XLA one host device per chain so that chains run in parallel (before JAX starts)."""
    import numpyro

    numpyro.set_host_device_count(max(num_chains, os.cpu_count() or 1))


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
    figures ``data_*.png``, ``states_*.png``, ``parameters.png``, ``transition_matrices.png``,
    ``trace.png``, ``lp_by_chain.png``, ``em_log_probs.png``, and ``summary.json``.

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
    from bayes_glmhmm._io import atomic_path, write_json_atomic, write_text_atomic
    from bayes_glmhmm.convert import write_netcdf_atomic
    from bayes_glmhmm.em import fit_em
    from bayes_glmhmm.mcmc import fit_nuts
    from bayes_glmhmm.model import most_likely_states
    from bayes_glmhmm.relabel import match_params
    from bayes_glmhmm.simulate import article_data
    from bayes_glmhmm.summaries import complete_data_estimate, coverage_summary, parameter_table, state_accuracy

    num_warmup = num_warmup if num_warmup is not None else (150 if quick else 1000)
    num_samples = num_samples if num_samples is not None else (150 if quick else 1000)
    os.makedirs(out, exist_ok=True)
    stages = tqdm(total=6, desc="demo", disable=not progress_bar, file=sys.stderr)

    def _stage(name):
        stages.set_postfix_str(name)
        stages.update(1)

    data = article_data(jax.random.PRNGKey(seed), variant=variant)
    truth = data.params
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
    lines = [
        ",".join(
            [
                "parameter",
                "index",
                "truth",
                "em_ml",
                "posterior_mean",
                "posterior_sd",
                "lower_94",
                "upper_94",
                "covered",
            ]
        )
    ]
    for row in rows:
        values = [row["parameter"], "-".join(map(str, row["index"])) or "-"]
        values += [f"{row[name]:.6g}" if isinstance(row[name], float) else str(row[name]) for name in header[2:]]
        lines.append(",".join(values))
    write_text_atomic(os.path.join(out, "parameters.csv"), "\n".join(lines) + "\n")

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
    for name, figure in figures.items():
        with atomic_path(os.path.join(out, name)) as temporary:
            figure.savefig(temporary, dpi=110, bbox_inches="tight", format="png")
        plt.close(figure)
    _stage("figures")

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
        "versions": _versions(),
        "files": sorted(["posterior.nc", "parameters.csv", *figures]),
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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bayes-glmhmm`` command."""
    args = _build_parser().parse_args(argv)
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
