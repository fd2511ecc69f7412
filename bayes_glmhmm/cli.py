"""Command line.

* ``bayes-glmhmm demo``: simulate the article's conveyor-belt data, fit EM and NUTS, recover the
  states, compare, and write a results folder with a diagnostic report.
* ``bayes-glmhmm fit DATA.csv --states K --target COL --inputs COL[,COL...] [--family F]
  [--transition-inputs COL[,COL...] [--transition-form full|destination]] [--subject COL]``: fit a
  user's long-format CSV with any emission family (gaussian, bernoulli, categorical, poisson; see
  :mod:`bayes_glmhmm.csv_fit`), with stationary or input-driven transitions, and optionally
  hierarchical across subjects (:mod:`bayes_glmhmm.hierarchy`).
* ``bayes-glmhmm select DATA.csv --states 1-5 --target COL --inputs COL[,COL...] [--method loo|kfold]
  [--folds 5] [--rule one_se|max]``: choose the number of states by held-out prediction of whole
  sequences, Bayes and EM side by side (see :mod:`bayes_glmhmm.selection`); writes
  ``selection.csv``, ``.md``, ``.png`` and ``.json``.
* ``bayes-glmhmm report POSTERIOR.nc --out DIR [--selection selection.json]``: HTML and Markdown
  diagnostics of a saved fit, with the choice of the number of states when a ``selection.json``
  lies beside the file or is given.

Options, the CSV's columns and values are checked before JAX is imported, so a bad call fails at once.

The compilation cache: ``fit``, ``select`` and ``demo`` keep JAX's compiled programs on disk, so a
second run of the same shapes (same data size, K, chains, family) in a new process skips XLA's
compilation. The cache lives in ``$XDG_CACHE_HOME/bayes_glmhmm/jax`` (by default
``~/.cache/bayes_glmhmm/jax``; ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on Windows). The
environment variable ``BAYES_GLMHMM_COMPILE_CACHE`` moves it (a directory) or turns it off (``0``,
``off``, ``false`` or ``no``), and so does the flag ``--no-compile-cache`` for one call. Deleting
the folder is always safe.
"""

import argparse
import contextlib
import os
import platform
import re
import sys
import textwrap
import time
import warnings
from collections import Counter
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import threading

    from bayes_glmhmm.priors import Priors
    from bayes_glmhmm.tabular import TabularData

__all__ = ["COMPILE_CACHE_VARIABLE", "compile_cache_dir", "main", "parse_states", "run_demo"]

#: The environment variable that moves the compilation cache (a directory) or turns it off (see below).
COMPILE_CACHE_VARIABLE = "BAYES_GLMHMM_COMPILE_CACHE"
_CACHE_OFF = ("0", "off", "false", "no")


def _user_cache_root() -> str:
    """The user's cache directory: ``$XDG_CACHE_HOME`` or ``~/.cache``, on macOS ``~/Library/Caches``.

    On Windows ``%LOCALAPPDATA%``.
    """
    if sys.platform == "win32":
        return os.environ.get("LOCALAPPDATA") or os.path.expanduser(os.path.join("~", "AppData", "Local"))
    if sys.platform == "darwin":
        return os.path.expanduser(os.path.join("~", "Library", "Caches"))
    configured = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG specification ignores a relative path.
    return configured if os.path.isabs(configured) else os.path.expanduser(os.path.join("~", ".cache"))


def compile_cache_dir(enabled: bool = True) -> str | None:
    """The directory of the command line's persistent JAX compilation cache, or None when it is off.

    Args:
        enabled: False (the flag ``--no-compile-cache``) turns the cache off whatever the environment says.

    Returns:
        ``$BAYES_GLMHMM_COMPILE_CACHE`` when it names a directory, None when it is ``0``, ``off``,
        ``false`` or ``no`` (any case), else ``bayes_glmhmm/jax`` in the user's cache directory.
    """
    if not enabled:
        return None
    value = os.environ.get(COMPILE_CACHE_VARIABLE, "").strip()
    if value.lower() in _CACHE_OFF:
        return None
    if value:
        return os.path.abspath(os.path.expanduser(value))
    return os.path.join(_user_cache_root(), "bayes_glmhmm", "jax")


#: Programs that compiled faster than this are not cached (JAX's default: 1 s).
_MIN_CACHED_COMPILE_SECONDS = 0.0


def _use_compile_cache(directory: str | None) -> None:
    """Point JAX's persistent compilation cache at ``directory`` (None: leave it off) before JAX compiles.

    Every program is cached, however fast it compiled: a fit compiles dozens of programs of 0.01 to
    7 s each, and together the ones under JAX's default threshold of 1 s are a large part of it.
    """
    if directory is None:
        return
    import jax

    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:
        print(f"bayes-glmhmm: note: no compilation cache ({error}); programs are compiled afresh", file=sys.stderr)
        return
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", _MIN_CACHED_COMPILE_SECONDS)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


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


class _DemoData(NamedTuple):
    """The demo's simulated data: the article's training set and five held-out sequences."""

    data: object
    heldout: object


class _DemoEM(NamedTuple):
    """The maximum-likelihood EM fit, in its own and in the truth's labeling, with its Viterbi paths."""

    result: object
    aligned: object
    states: object


def _simulate_demo_data(seed: int, variant: str) -> _DemoData:
    """Simulate the article's data and, from the same generator, five sequences never fitted."""
    from bayes_glmhmm import _host_prng as host_prng
    from bayes_glmhmm.simulate import article_data

    data = article_data(host_prng.prng_key(seed), variant=variant)
    # Simulated in the training set's shape, so that the compiled simulation is reused, then cut to five.
    heldout = article_data(host_prng.fold_in(host_prng.prng_key(seed), 1), variant=variant)
    heldout = heldout._replace(inputs=heldout.inputs[:5], states=heldout.states[:5], emissions=heldout.emissions[:5])
    return _DemoData(data, heldout)


def _fit_demo_em(data, seed: int) -> _DemoEM:
    """Maximum-likelihood EM (as in the article), relabeled to the truth, and its Viterbi paths."""
    import numpy as np

    from bayes_glmhmm.em import fit_em
    from bayes_glmhmm.model import most_likely_states
    from bayes_glmhmm.relabel import match_params

    result = fit_em(data.inputs, data.emissions, 3, seed=seed)
    aligned = result.params.permute(match_params(result.params, data.params))
    return _DemoEM(result, aligned, np.asarray(most_likely_states(aligned, data.inputs, data.emissions)))


def _fit_demo_nuts(data, num_chains: int, num_warmup: int, num_samples: int, seed: int, progress_bar: bool):
    """NUTS on the training data, its draws expressed in the truth's labeling."""
    from bayes_glmhmm.fit import fit_nuts
    from bayes_glmhmm.relabel import match_params

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
    return posterior.permute(match_params(posterior.posterior_mean(), data.params))


def _write_demo_posterior(posterior, data, out: str, seed: int):
    """Write ``posterior.nc``; return the InferenceData, the training state probabilities and the sine sequence's."""
    from bayes_glmhmm import _host_prng as host_prng
    from bayes_glmhmm.convert import write_netcdf_atomic

    idata = posterior.to_arviz(key=host_prng.prng_key(seed + 1))
    state_probs = idata.posterior_states["state_probabilities"].values
    sine_probs = posterior.state_probabilities(data.sine_inputs, data.sine_emissions)[0]
    write_netcdf_atomic(idata, os.path.join(out, "posterior.nc"))
    return idata, state_probs, sine_probs


def _write_demo_parameters(posterior, truth, em_aligned, out: str) -> list[dict]:
    """Write ``parameters.csv`` (posterior vs truth vs EM, with interval coverage); return the table's rows."""
    from bayes_glmhmm._io import csv_text, write_text_atomic
    from bayes_glmhmm.summaries import parameter_table

    rows = parameter_table(posterior.samples, truth=truth, point_estimate=em_aligned)
    fields = ["truth", "point_estimate", "posterior_mean", "posterior_sd", "lower", "upper", "covered"]
    header = ["parameter", "index", "truth", "em_ml", "posterior_mean", "posterior_sd", "lower_94", "upper_94"]
    csv_rows = [[row["parameter"], "-".join(map(str, row["index"])) or "-", *(row[f] for f in fields)] for row in rows]
    write_text_atomic(os.path.join(out, "parameters.csv"), csv_text([*header, "covered"], csv_rows))
    return rows


def _write_demo_comparison(posterior, em: _DemoEM, demo: _DemoData, out: str):
    """Compare full Bayes with maximum-likelihood EM; write ``comparison.csv`` / ``.md``; return the comparison."""
    from bayes_glmhmm.compare import compare_fits, comparison_to_csv, comparison_to_markdown

    comparison = compare_fits(
        posterior,
        em.result,
        truth=demo.data.params,
        true_states=demo.data.states,
        heldout_inputs=demo.heldout.inputs,
        heldout_emissions=demo.heldout.emissions,
        heldout_states=demo.heldout.states,
    )
    comparison_to_csv(comparison, os.path.join(out, "comparison.csv"))
    comparison_to_markdown(comparison, os.path.join(out, "comparison.md"))
    return comparison


def _demo_draw_figures(posterior, data, em: _DemoEM) -> dict:
    """The demo's figures of the data, the draws and EM, ``{file name: Figure}``: drawn before the states."""
    import numpy as np

    from bayes_glmhmm import plots

    truth = data.params
    return {
        "data_sine_sequence.png": plots.plot_article_data(
            data.sine_inputs, data.sine_emissions, data.sine_states, title="The article's sinusoidal input sequence"
        ),
        "data_scatter.png": plots.plot_scatter_by_state(data.inputs, data.emissions, data.states),
        "parameters.png": plots.plot_parameter_posteriors(posterior.samples, true_params=truth, em_params=em.aligned),
        "parameter_recovery_bars.png": plots.plot_parameter_bars(truth, em.aligned, posterior.samples),
        "transition_matrices.png": plots.plot_transition_matrices(
            {
                "truth": np.asarray(truth.transition_matrix),
                "EM (maximum likelihood)": np.asarray(em.aligned.transition_matrix),
                "posterior mean": posterior.samples["transition_matrix"].mean(axis=(0, 1)),
            },
            spreads={"posterior mean": posterior.samples["transition_matrix"].std(axis=(0, 1))},
        ),
        "trace.png": plots.plot_trace(posterior.samples, var_names=["weights", "biases", "scales"]),
        "lp_by_chain.png": plots.plot_lp_by_chain(posterior.sample_stats["lp"]),
        "em_log_probs.png": plots.plot_em_log_probs(em.result.log_probs),
    }


def _demo_state_figures(data, em: _DemoEM, state_probs, sine_probs) -> dict:
    """The demo's figures of the inferred states, ``{file name: Figure}``."""
    import numpy as np

    from bayes_glmhmm import plots
    from bayes_glmhmm.model import most_likely_states

    return {
        "states_sequence0.png": plots.plot_states(
            data.emissions[0],
            data.states[0],
            state_probs[0],
            map_states=em.states[0],
            sequence_label="training sequence 0",
        ),
        "states_sine_sequence.png": plots.plot_states(
            data.sine_emissions,
            data.sine_states,
            sine_probs,
            map_states=np.asarray(most_likely_states(em.aligned, data.sine_inputs, data.sine_emissions))[0],
            sequence_label="sinusoidal input sequence (held out)",
        ),
    }


def _render_demo_figures(figures: dict) -> dict:
    """Start rendering the figures (in helper processes inside ``background_rendering``) and close them."""
    from bayes_glmhmm._io import render_figures

    return render_figures(figures, close=True)


def _demo_summary(
    posterior, data, em: _DemoEM, rows, state_probs, sine_probs, comparison, settings: dict, files: list
) -> dict:
    """The content of the demo's ``summary.json``.

    Args:
        posterior: the NUTS posterior in the truth's labeling.
        data: the training data (with the truth).
        em: the EM fit.
        rows: the parameter table (posterior vs truth).
        state_probs: (N, T, K) training state probabilities.
        sine_probs: (T, K) state probabilities of the held-out sinusoidal sequence.
        comparison: the Bayes vs EM comparison.
        settings: ``quick``, ``variant`` and ``seed`` of the run.
        files: every file written, relative to the output folder.
    """
    import numpy as np

    from bayes_glmhmm.compare import comparison_to_dict
    from bayes_glmhmm.summaries import complete_data_estimate, coverage_summary, parameter_table, state_accuracy

    diagnostics = posterior.diagnostics()
    return {
        "command": "bayes-glmhmm demo" + (" --quick" if settings["quick"] else ""),
        "data": {
            "source": f"article generator, variant={settings['variant']!r}",
            "num_sequences": int(data.emissions.shape[0]),
            "num_timesteps": int(data.emissions.shape[1]),
            "num_states": 3,
            "seed": settings["seed"],
        },
        "nuts": {
            "wall_seconds": diagnostics["wall_seconds"]["total"],
            "wall_seconds_breakdown": diagnostics["wall_seconds"],
            "max_rhat": diagnostics["max_rhat"],
            "min_ess_bulk": diagnostics["min_ess_bulk"],
            "min_ess_tail": diagnostics["min_ess_tail"],
            "divergences": diagnostics["divergences"],
            "tree_depth_saturated": diagnostics["tree_depth_saturated"],
            "stuck_chains": diagnostics["stuck_chains"],
            "converged": diagnostics["converged"],
            "problems": diagnostics["problems"],
            "settings": posterior.settings,
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
            "posterior_accuracy": state_accuracy(data.states, state_probs.argmax(-1)),
            "em_viterbi_accuracy": state_accuracy(data.states, em.states),
            "sine_sequence_posterior_accuracy": state_accuracy(data.sine_states, sine_probs.argmax(-1)),
        },
        "em": {
            "objective": "maximum likelihood (as in the article)",
            "wall_seconds": em.result.wall_seconds,
            "final_log_prob": float(em.result.log_probs[-1]),
            "num_iterations": int(len(em.result.log_probs)),
            "converged": em.result.converged,
            "params": {k: np.asarray(v).tolist() for k, v in em.aligned._asdict().items() if v is not None},
        },
        "comparison": comparison_to_dict(comparison),
        "versions": _versions(),
        "files": sorted(files),
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

    The steps, each a function: simulate (:func:`_simulate_demo_data`), EM
    (:func:`_fit_demo_em`), NUTS (:func:`_fit_demo_nuts`), posterior states
    (:func:`_write_demo_posterior`), tables (:func:`_write_demo_parameters`,
    :func:`_write_demo_comparison`), figures (:func:`_demo_draw_figures`,
    :func:`_demo_state_figures`), report, summary
    (:func:`_demo_summary`).

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
    import matplotlib

    matplotlib.use("Agg")
    from tqdm.auto import tqdm

    from bayes_glmhmm._io import write_json_atomic, write_pngs_atomic
    from bayes_glmhmm.report import write_report

    num_warmup = num_warmup if num_warmup is not None else (150 if quick else 1000)
    num_samples = num_samples if num_samples is not None else (150 if quick else 1000)
    os.makedirs(out, exist_ok=True)
    stages = tqdm(total=8, desc="demo", disable=not progress_bar, file=sys.stderr)

    def _stage(name):
        stages.set_postfix_str(name)
        stages.update(1)

    demo = _simulate_demo_data(seed, variant)
    data = demo.data
    _stage("data")
    em = _fit_demo_em(data, seed)
    _stage("em")
    posterior = _fit_demo_nuts(data, num_chains, num_warmup, num_samples, seed, progress_bar)
    _stage("nuts")
    # Each group of figures is handed to the helper processes (inside background_rendering) as soon
    # as what it shows exists, so that they draw it while this process computes the next step.
    pngs = _render_demo_figures(_demo_draw_figures(posterior, data, em))
    idata, state_probs, sine_probs = _write_demo_posterior(posterior, data, out, seed)
    _stage("posterior states")
    pngs |= _render_demo_figures(_demo_state_figures(data, em, state_probs, sine_probs))
    rows = _write_demo_parameters(posterior, data.params, em.aligned, out)
    comparison = _write_demo_comparison(posterior, em, demo, out)
    _stage("comparison")
    report_paths = write_report(idata, os.path.join(out, "report"), title="bayes-glmhmm demo: the article's data")
    _stage("report")
    write_pngs_atomic(pngs, out)
    _stage("figures")
    files = ["posterior.nc", "parameters.csv", "comparison.csv", "comparison.md", *pngs]
    files += [os.path.relpath(path, out) for path in (report_paths["html"], report_paths["markdown"])]
    summary = _demo_summary(
        posterior,
        data,
        em,
        rows,
        state_probs,
        sine_probs,
        comparison,
        {"quick": quick, "variant": variant, "seed": seed},
        files,
    )
    write_json_atomic(os.path.join(out, "summary.json"), summary)
    _stage("summary")
    stages.close()
    return summary


def _add_demo_parser(commands) -> None:
    """The ``demo`` subcommand's options."""
    demo = commands.add_parser("demo", help="fit the article's conveyor-belt data and write a results folder")
    demo.add_argument("--out", default="results", help="output folder (default: results)")
    demo.add_argument("--quick", action="store_true", help="small, fast run (150 warmup + 150 draws per chain)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the simulation and of inference (default: 0)")
    demo.add_argument(
        "--variant", choices=["text", "code"], default="text", help="the article's text or code generator"
    )
    demo.add_argument("--chains", type=int, default=4, help="NUTS chains (default: 4)")
    demo.add_argument(
        "--warmup", type=int, default=None, help="warmup iterations per chain (default: 1000, with --quick 150)"
    )
    demo.add_argument("--samples", type=int, default=None, help="draws per chain (default: 1000, with --quick 150)")
    demo.add_argument("--no-progress", action="store_true", help=_NO_PROGRESS_HELP)
    _add_cache_argument(demo)


_NO_PROGRESS_HELP = "hide progress bars (they are hidden anyway when stderr is not a terminal, e.g. a log file)"


def _add_cache_argument(parser) -> None:
    """The ``--no-compile-cache`` flag of the commands that compile (``fit``, ``select``, ``demo``)."""
    parser.add_argument(
        "--no-compile-cache",
        action="store_true",
        help=f"do not read or write the compilation cache in this run (default: on, in "
        f"$XDG_CACHE_HOME/bayes_glmhmm/jax or ~/.cache/bayes_glmhmm/jax; the environment variable "
        f"{COMPILE_CACHE_VARIABLE} moves it to a directory, or turns it off with 0/off/false)",
    )


_TARGET_HELP = (
    "target column y; an empty cell or nan/na/null is a missing target. gaussian: numbers; poisson: counts "
    "0, 1, 2, ...; bernoulli: 0/1, -1/+1 (-1 coded 0) or true/false (or two text labels, coded in sorted "
    "order); categorical: labels 0..C-1, or text labels coded 0..C-1 in sorted order (true/false: false = 0). "
    "The coding of class targets is saved in {saved_in}"
)


def _add_data_arguments(parser, coding_saved_in: str) -> None:
    """The options that read a long-format CSV for a model, shared by ``fit`` and ``select``.

    ``coding_saved_in`` names the files that record the coding of class targets.
    """
    from bayes_glmhmm.family_names import FAMILY_NAMES

    parser.add_argument("data", help="CSV with a header row; rows of each sequence in time order")
    parser.add_argument("--target", required=True, help=_TARGET_HELP.format(saved_in=coding_saved_in))
    parser.add_argument("--inputs", required=True, help="input columns x, comma-separated (numbers, never missing)")
    parser.add_argument("--sequence", default=None, help="column identifying sequences (default: one sequence)")
    parser.add_argument(
        "--family",
        choices=list(FAMILY_NAMES),
        default="gaussian",
        help="emission family: gaussian (linear regression), bernoulli (logistic), categorical (multinomial "
        "logit, class 0 the reference), poisson (log link) (default: gaussian)",
    )
    parser.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="number of classes C, categorical family only (default: the number of distinct text labels, "
        "or 1 + the largest numeric label)",
    )
    parser.add_argument(
        "--transition-inputs",
        default=None,
        help="columns u that drive the state transitions, comma-separated (numbers, never missing): "
        "p(z[t+1] = j | z[t] = i, u[t]) = softmax_j(log A[i, j] + V[i, j] . u[t]), the value on step t acting on "
        "the transition to step t+1 (default: none, stationary transitions)",
    )
    parser.add_argument(
        "--transition-form",
        choices=["full", "destination"],
        default=None,
        help="with --transition-inputs: full (a weight per origin i, destination j and input) or destination "
        "(a weight per destination j and input, shared by every origin) (default: full)",
    )


#: The fields of :class:`bayes_glmhmm.params.Priors`, each an option of ``fit`` and ``select``.
_PRIOR_OPTIONS = {
    "initial_concentration": "Dirichlet concentration of the initial probabilities",
    "transition_concentration": "Dirichlet concentration of each transition row",
    "weight_scale": "sd of the Normal prior on weights",
    "bias_scale": "sd of the Normal prior on biases",
    "noise_scale": "scale of the HalfNormal prior on noise sds (gaussian family only; unused by others)",
    "transition_weight_scale": "sd of the Normal prior on transition weights (with --transition-inputs)",
    "subject_spread_scale": "scale of the HalfNormal prior on the spread of each weight and bias across subjects "
    "(fit --subject only; unused otherwise)",
}


def _sampler_settings(args) -> dict:
    """The sampler's settings of ``--chains``, ``--warmup``, ``--samples`` and ``--seed`` as keyword arguments."""
    return dict(num_chains=args.chains, num_warmup=args.warmup, num_samples=args.samples, seed=args.seed)


def _flag(name: str) -> str:
    """The option of an argument name: ``weight_scale`` -> ``--weight-scale``."""
    return "--" + name.replace("_", "-")


def _add_sampler_arguments(parser) -> None:
    """The options of NUTS, the priors and the precision, shared by ``fit`` and ``select``."""
    parser.add_argument("--chains", type=int, default=4, help="NUTS chains (default: 4)")
    parser.add_argument("--warmup", type=int, default=1000, help="warmup iterations per chain (default: 1000)")
    parser.add_argument("--samples", type=int, default=1000, help="draws kept per chain (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of EM restarts, jitter and NUTS (default: 0)")
    parser.add_argument(
        "--standardize",
        choices=["auto", "yes", "no"],
        default="auto",
        help="fit on standardized inputs and, for the gaussian family only, standardized targets (priors then "
        "apply to standardized parameters; results are reported in the data's units); auto: only for data far "
        "from unit scale; never with fit --subject, where auto means no (default: auto)",
    )
    for field, help_text in _PRIOR_OPTIONS.items():
        parser.add_argument(_flag(field), type=float, default=1.0, help=f"{help_text} (default: 1)")
    parser.add_argument("--float64", action="store_true", help="compute in 64-bit floats")


#: The choices of ``--subject-parametrization`` (:data:`bayes_glmhmm.hierarchy.PARAMETRIZATIONS`, which imports JAX).
_SUBJECT_PARAMETRIZATIONS = ("noncentred", "centred")


def _add_fit_parser(commands) -> None:
    """The ``fit`` subcommand's options."""
    fit = commands.add_parser("fit", help="fit a long-format CSV (one row per time step)")
    _add_data_arguments(fit, "classes.csv and summary.json")
    fit.add_argument(
        "--subject",
        default=None,
        help="column of subject ids (e.g. the animal of each session), the same on every row of a sequence: a "
        "hierarchical model in which each subject has its own weights and biases, drawn around the population's "
        "with a spread per state and coefficient; initial and transition probabilities are shared. "
        "parameters.csv then gives the population's weight and biases rows, their spreads (weight_spread, "
        "bias_spread) and each subject's (subject_weights, subject_biases). A fit across subjects is never "
        "standardized (--standardize auto means no; yes is an error) (default: none, one set of parameters)",
    )
    fit.add_argument(
        "--subject-parametrization",
        choices=list(_SUBJECT_PARAMETRIZATIONS),
        default=None,
        help="with --subject: noncentred (suits subjects with little data each) or centred (subjects with "
        "thousands of trials each); the same model, sampled differently (default: noncentred)",
    )
    fit.add_argument("--states", type=int, required=True, help="number of hidden states K")
    fit.add_argument("--out", default="fit_results", help="output folder (default: fit_results)")
    _add_sampler_arguments(fit)
    fit.add_argument(
        "--tempering",
        type=int,
        default=1,
        help="parallel tempering with this many temperatures per chain (e.g. 4), for posteriors whose chains sit "
        "in different modes (the verdict's R-hat or stuck chains); about that many times the cost; the exchange "
        "acceptance between temperatures is in summary.json (nuts.settings.tempering) (default: 1, plain NUTS)",
    )
    fit.add_argument(
        "--max-samples",
        type=int,
        default=None,
        help="sample until converged: while R-hat or ESS fail, the chains go on past --samples, up to this many "
        "draws per chain; for chains that mix slowly (chains in separate modes need --tempering); the rounds are "
        "in summary.json (nuts.settings.sampling_rounds) (default: --samples draws)",
    )
    fit.add_argument(
        "--sequence-devices",
        type=int,
        default=1,
        help="devices that split each chain's sequences (default: 1; CPU host devices are created as needed)",
    )
    fit.add_argument(
        "--time-parallel",
        action="store_true",
        help="parallel-in-time likelihood (O(log T) depth; pays on GPUs with few long sequences, not on CPUs)",
    )
    fit.add_argument("--no-progress", action="store_true", help=_NO_PROGRESS_HELP)
    _add_cache_argument(fit)


def _add_select_parser(commands) -> None:
    """The ``select`` subcommand's options."""
    select = commands.add_parser(
        "select",
        help="choose the number of states of a long-format CSV by held-out prediction of whole sequences "
        "(Bayes: PSIS-LOO or k-fold; EM: k-fold, as the field does)",
    )
    _add_data_arguments(select, "selection.json (settings, data, class_labels)")
    select.add_argument(
        "--states",
        required=True,
        help="the numbers of states K to compare: a range such as 1-5, or a list such as 1,2,4",
    )
    select.add_argument(
        "--method",
        choices=["loo", "kfold"],
        default="loo",
        help="the Bayesian score: loo (one fit per K on every sequence, PSIS leave-one-sequence-out, sequences "
        "with Pareto k > 0.7 refitted exactly) or kfold (one fit per K and fold of held-out sequences) "
        "(default: loo)",
    )
    select.add_argument(
        "--folds",
        type=int,
        default=5,
        help="folds of held-out sequences, for EM always and for Bayes with --method kfold; at most the number "
        "of sequences (default: 5)",
    )
    select.add_argument(
        "--rule",
        choices=["one_se", "max"],
        default="one_se",
        help="how K is chosen: one_se (the smallest K whose score is within one standard error of the best K's) "
        "or max (the best score) (default: one_se)",
    )
    select.add_argument(
        "--max-refits",
        type=int,
        default=10,
        help="with --method loo: the most exact refits per K of sequences with Pareto k > 0.7, the highest k "
        "first (default: 10)",
    )
    select.add_argument(
        "--em-restarts", type=int, default=5, help="EM restarts per fold of the EM k-fold score (default: 5)"
    )
    select.add_argument("--out", default="selection_results", help="output folder (default: selection_results)")
    _add_sampler_arguments(select)
    select.add_argument("--no-progress", action="store_true", help="hide the line printed per K")
    _add_cache_argument(select)


def _add_report_parser(commands) -> None:
    """The ``report`` subcommand's options."""
    report = commands.add_parser("report", help="write an HTML and Markdown diagnostic report of a saved posterior")
    report.add_argument("posterior", help="InferenceData netCDF file written by bayes_glmhmm (e.g. posterior.nc)")
    report.add_argument("--out", default=None, help="output folder (default: report/ beside the file)")
    report.add_argument("--title", default=None, help="report title")
    report.add_argument(
        "--selection",
        default=None,
        help="selection.json written by bayes-glmhmm select, reported in a section 'Choosing the number of "
        "states' (default: the selection.json beside the posterior file, if there is one)",
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bayes-glmhmm", description="Fully Bayesian GLM-HMMs with NUTS.")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_demo_parser(commands)
    _add_fit_parser(commands)
    _add_select_parser(commands)
    _add_report_parser(commands)
    return parser


def _error(message: str) -> int:
    """Print a command-line error and return the exit status 2."""
    print(f"bayes-glmhmm: error: {message}", file=sys.stderr)
    return 2


#: The options of ``fit`` that give the columns, by the argument name that errors of
#: :func:`bayes_glmhmm.csv_fit.run_fit` lead with.
_COLUMN_FLAGS = {
    "target": "--target",
    "inputs": "--inputs",
    "sequence": "--sequence",
    "transition_inputs": "--transition-inputs",
    "subject": "--subject",
}


def _with_flag_names(message: str) -> str:
    """An error message that leads with an argument name (``transition_inputs: ...``) led by its flag instead."""
    argument, separator, rest = message.partition(":")
    if separator and argument in _COLUMN_FLAGS:
        return f"{_COLUMN_FLAGS[argument]}:{rest}"
    return message


def _column_list(text: str) -> list[str]:
    """Column names from a comma-separated option, blanks dropped."""
    return [name.strip() for name in text.split(",") if name.strip()]


#: The counts of NUTS, shared by ``fit``, ``select`` and ``demo``: (flag, argument, smallest value).
_SAMPLER_COUNTS = (("--chains", "chains", 1), ("--warmup", "warmup", 0), ("--samples", "samples", 1))


def _check_counts(args, counts) -> None:
    """ValueError naming the flag if an integer option (None: its default) is below its smallest value."""
    for flag, name, minimum in counts:
        value = getattr(args, name)
        if value is not None and value < minimum:
            raise ValueError(f"{flag} must be >= {minimum}, got {value}")


def _model_checks(args) -> list[str] | None:
    """Check the options shared by ``fit`` and ``select``, without JAX; return the transition input columns.

    Raises:
        ValueError: naming the flag.
    """
    _check_counts(args, _SAMPLER_COUNTS)
    if args.num_classes is not None and args.family != "categorical":
        raise ValueError(f"--num-classes applies to --family categorical only, not {args.family}")
    _check_counts(args, [("--num-classes", "num_classes", 2)])
    problems = _priors(args).problems()
    if problems:
        name, problem = next(iter(problems.items()))
        raise ValueError(f"{_flag(name)} {problem}")
    if args.transition_inputs is None:
        if args.transition_form is not None:
            raise ValueError("--transition-form applies only with --transition-inputs")
        return None
    transition_inputs = _column_list(args.transition_inputs)
    if not transition_inputs:
        raise ValueError("--transition-inputs: give at least one column name")
    return transition_inputs


def _check_data(args, transition_inputs: list[str] | None, num_states: int) -> "TabularData":
    """Read the CSV as the fit will and check it fits ``num_states`` states, without JAX; return the table.

    Catches, before JAX is imported, what NumPy and the csv module can: a missing, empty or
    unreadable file, unknown columns, missing or non-numeric inputs, a non-numeric target of a
    numeric family, more text labels than classes, a target outside the family's support (the
    family's own check, :mod:`bayes_glmhmm.emission_support`: e.g. counts for the Poisson family,
    0/1 for the Bernoulli, labels 0..C-1 for the categorical), sequences shorter than 2 steps, a
    subject column that is unknown, misses an id or gives a sequence two, and more states than the
    longest sequence has steps.

    Raises:
        ValueError: naming the file (``DATA``), the flag or the column.
    """
    from bayes_glmhmm.emission_support import coded_targets
    from bayes_glmhmm.family_names import csv_target_options
    from bayes_glmhmm.tabular import check_supported_states, read_long_csv

    table = read_long_csv(
        args.data,
        args.target,
        _column_list(args.inputs),
        args.sequence,
        transition_inputs=transition_inputs,
        subject=getattr(args, "subject", None),  # fit only
        **csv_target_options(args.family, args.num_classes),
    )
    coded_targets(table, args.family, args.num_classes)
    check_supported_states(table, num_states)
    return table


def _subject_checks(args) -> None:
    """Check the subject options of ``fit``, without JAX. ValueError naming the flag."""
    if args.subject is None:
        if args.subject_parametrization is not None:
            raise ValueError("--subject-parametrization applies only with --subject")
        return
    if args.standardize == "yes":
        raise ValueError(
            "--standardize yes cannot be combined with --subject: a fit across subjects is never standardized (the "
            "spreads across subjects would not map back to the data's units); rescale the input columns yourself "
            "if they are far from unit scale"
        )


def _priors(args) -> "Priors":
    """The priors of the options, unchecked (:func:`_model_checks` checks them, naming the flag); no JAX."""
    from bayes_glmhmm.priors import Priors

    return Priors(**{name: getattr(args, name) for name in _PRIOR_OPTIONS})


def _show_progress(args) -> bool:
    """Whether to draw progress bars: not with ``--no-progress``, nor when stderr is not a terminal.

    Into a file or a pipe, a bar's carriage returns and escape codes would fill the log.
    """
    return not args.no_progress and sys.stderr.isatty()


def _start_jax(num_devices: int, float64: bool, compile_cache: bool) -> None:
    """Before JAX computes anything: the host devices, 64-bit floats if asked, the compilation cache.

    Args:
        num_devices: host devices wanted (one per chain and sequence shard).
        float64: compute in 64-bit floats.
        compile_cache: use the persistent compilation cache (unless the environment turns it off,
            see :func:`compile_cache_dir`).
    """
    _configure_devices(num_devices)
    if float64:
        import jax

        jax.config.update("jax_enable_x64", True)
    _use_compile_cache(compile_cache_dir(compile_cache))


#: What a command imports only after sampling (the InferenceData, its netCDF file, the diagnostics).
_AFTER_SAMPLING_MODULES = ("arviz", "h5netcdf", "xarray.backends.h5netcdf_")


def _import_while_sampling() -> "threading.Thread":
    """Import :data:`_AFTER_SAMPLING_MODULES` in a daemon thread, once the fit's own modules are loaded.

    ArviZ takes 1.6 s to import (2-core CPU), on the critical path of a ``fit`` right after
    sampling; while the main thread waits for XLA (which releases the GIL), a second thread can do
    it. The fit's modules (``bayes_glmhmm.fit`` with SciPy's optimizers, NumPyro, JAX, Matplotlib
    with pyplot on the Agg backend) are imported first in the calling thread, so that the two
    threads never import one module graph from two ends (``matplotlib.use`` reads a half-imported
    pyplot from ``sys.modules``). The main thread's own ``import arviz`` waits for the module's
    lock until the thread is done. A failed import is left to the main thread, which repeats it
    when it needs the module and raises there.

    Returns:
        The started thread: join it before the command returns, so that no import is cut off at exit.
    """
    import threading

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401

    import bayes_glmhmm.fit  # noqa: F401

    def _import_all():
        import importlib

        for name in _AFTER_SAMPLING_MODULES:
            with contextlib.suppress(Exception):
                importlib.import_module(name)

    thread = threading.Thread(target=_import_all, name="bayes-glmhmm-imports", daemon=True)
    thread.start()
    return thread


_STANDARDIZE = {"auto": "auto", "yes": True, "no": False}


def _convergence_block(problems: list[str], width: int = 78) -> str:
    """The warning block that ``fit`` and ``demo`` print (to stderr) when the posterior has not converged."""
    rule = "=" * width
    lines = [rule, "WARNING: the posterior has not converged; do not trust its draws as they are."]
    lines += [textwrap.fill(problem, width, initial_indent="  - ", subsequent_indent="    ") for problem in problems]
    lines += [
        textwrap.fill(
            "The verdict is in summary.json (nuts.converged, nuts.problems); bayes-glmhmm report POSTERIOR.nc "
            "shows every diagnostic.",
            width,
        ),
        rule,
    ]
    return "\n".join(lines)


@contextlib.contextmanager
def _verdict_printed_not_warned():
    """Silence the fit's :class:`~bayes_glmhmm.convergence.ConvergenceWarning` (JAX started).

    ``fit`` and ``demo`` print the verdict as one delimited block (:func:`_print_verdict`), not as a
    Python warning besides.
    """
    from bayes_glmhmm.convergence import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _print_verdict(nuts: dict) -> None:
    """Print the warning block of a summary's ``nuts`` entry to stderr, if it has not converged."""
    if not nuts["converged"]:
        print(_convergence_block(nuts["problems"]), file=sys.stderr)


def _run_fit_command(args) -> int:
    """``bayes-glmhmm fit``: check the options, configure devices, run :func:`bayes_glmhmm.csv_fit.run_fit`."""
    try:
        _check_counts(
            args,
            [("--states", "states", 1), ("--sequence-devices", "sequence_devices", 1), ("--tempering", "tempering", 1)],
        )
        transition_inputs = _model_checks(args)
        _subject_checks(args)
        _check_data(args, transition_inputs, args.states)
        if args.max_samples is not None and args.max_samples < args.samples:
            raise ValueError(f"--max-samples must be >= --samples ({args.samples}), got {args.max_samples}")
    except ValueError as error:
        return _error(_with_flag_names(str(error)))
    _start_jax(args.chains * args.sequence_devices, args.float64, not args.no_compile_cache)
    from bayes_glmhmm._render import background_rendering
    from bayes_glmhmm.csv_fit import run_fit

    imports = _import_while_sampling()
    try:
        with _verdict_printed_not_warned(), background_rendering():
            summary = run_fit(
                args.data,
                args.states,
                args.target,
                _column_list(args.inputs),
                sequence=args.sequence,
                out=args.out,
                priors=_priors(args),
                **_sampler_settings(args),
                progress_bar=_show_progress(args),
                standardize=_STANDARDIZE[args.standardize],
                sequence_devices=args.sequence_devices,
                time_parallel=args.time_parallel,
                family=args.family,
                num_classes=args.num_classes,
                transition_inputs=transition_inputs,
                transition_form=args.transition_form,
                subject=args.subject,
                subject_parametrization=args.subject_parametrization or _SUBJECT_PARAMETRIZATIONS[0],
                tempering=args.tempering,
                max_samples=args.max_samples,
            )
    except ValueError as error:
        return _error(_with_flag_names(str(error)))
    finally:
        imports.join()
    nuts = summary["nuts"]
    classes = "" if summary["classes"] is None else f", {summary['num_classes']} classes"
    transitions = summary["transitions"]
    driven = (
        ""
        if transitions["model"] == "stationary"
        else f", {transitions['form']} input-driven transitions on {', '.join(transitions['inputs'])}"
    )
    data = summary["data"]
    subjects = "" if data["subject"] is None else f" of {data['num_subjects']} subjects ({data['subject']})"
    print(
        f"wrote {args.out}/: {summary['family']} family{classes}{driven}, {summary['data']['num_rows']} rows in "
        f"{summary['data']['num_sequences']} sequence(s){subjects}, NUTS {nuts['wall_seconds']:.1f} s, "
        f"max R-hat {nuts['max_rhat']:.3f}, min bulk ESS {nuts['min_ess_bulk']:.0f}, "
        f"divergences {nuts['divergences']}, stuck chains {nuts['stuck_chains']}"
    )
    _print_verdict(nuts)
    return 0


_STATES_ITEM = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_states(text: str) -> tuple[int, ...]:
    """The K values of ``--states``: a range ``1-5``, a list ``1,2,4``, or both (``1-3,5``), sorted.

    Raises:
        ValueError: naming ``--states``, for anything else, a K below 1, a range that runs
            backwards, or a K given twice.
    """
    values = []
    for item in str(text).split(","):
        match = _STATES_ITEM.match(item)
        if match is None:
            raise ValueError(
                f"--states must be a range such as 1-5 or a list such as 1,2,4 of integers >= 1, got {text!r}"
            )
        low = int(match[1])
        high = low if match[2] is None else int(match[2])
        if low < 1:
            raise ValueError(f"--states: every K must be >= 1, got {item.strip()!r} in {text!r}")
        if high < low:
            raise ValueError(f"--states: the range {item.strip()!r} runs backwards; write it as {high}-{low}")
        values.extend(range(low, high + 1))
    repeated = sorted(k for k, count in Counter(values).items() if count > 1)
    if repeated:
        raise ValueError(f"--states gives K = {', '.join(map(str, repeated))} more than once in {text!r}")
    return tuple(sorted(values))


#: The arguments of :func:`bayes_glmhmm.csv_fit.run_select` that errors may lead with, by their flag.
_SELECT_FLAGS = {
    "states": "--states",
    "num_folds": "--folds",
    "max_refits": "--max-refits",
    "em_restarts": "--em-restarts",
    "rule": "--rule",
    "method": "--method",
}


def _with_select_flag_names(message: str) -> str:
    """:func:`_with_flag_names`, and a leading argument of ``select_num_states`` (``num_folds=3 ...``) as its flag."""
    message = _with_flag_names(message)
    match = re.match(r"^([a-z_]+)(?=[:= ])", message)
    if match and match[1] in _SELECT_FLAGS:
        return _SELECT_FLAGS[match[1]] + message[match.end() :]
    return message


def _select_checks(args) -> tuple[int, ...]:
    """Check the options of ``select`` alone (``--folds`` against the data: :func:`_check_folds`); return the K values.

    Raises:
        ValueError: naming the flag.
    """
    states = parse_states(args.states)
    _check_counts(
        args, [("--folds", "folds", 2), ("--max-refits", "max_refits", 0), ("--em-restarts", "em_restarts", 1)]
    )
    return states


def _check_folds(num_folds: int, table: "TabularData") -> None:
    """ValueError naming ``--folds`` unless 2 <= ``num_folds`` <= the number of the CSV's sequences."""
    from bayes_glmhmm.folds import check_num_folds

    try:
        check_num_folds(num_folds, len(table.lengths))
    except ValueError as error:
        hint = "; give the column of sequences with --sequence" if len(table.lengths) == 1 else ""
        raise ValueError(_with_select_flag_names(str(error)) + hint) from None


def _run_select_command(args) -> int:
    """``bayes-glmhmm select``: check the options, run :func:`bayes_glmhmm.csv_fit.run_select`, print the table."""
    try:
        transition_inputs = _model_checks(args)
        states = _select_checks(args)
        table = _check_data(args, transition_inputs, max(states))
        _check_folds(args.folds, table)
    except ValueError as error:
        return _error(_with_select_flag_names(str(error)))
    _start_jax(args.chains, args.float64, not args.no_compile_cache)
    import matplotlib

    matplotlib.use("Agg")
    from bayes_glmhmm.csv_fit import run_select
    from bayes_glmhmm.selection_io import method_label, selection_to_markdown

    try:
        selection = run_select(
            args.data,
            states,
            args.target,
            _column_list(args.inputs),
            sequence=args.sequence,
            out=args.out,
            family=args.family,
            num_classes=args.num_classes,
            transition_inputs=transition_inputs,
            transition_form=args.transition_form,
            method=args.method,
            num_folds=args.folds,
            rule=args.rule,
            max_refits=args.max_refits,
            em_restarts=args.em_restarts,
            progress=not args.no_progress,
            priors=_priors(args),
            **_sampler_settings(args),
            standardize=_STANDARDIZE[args.standardize],
        )
    except ValueError as error:
        return _error(_with_select_flag_names(str(error)))
    print(selection_to_markdown(selection))
    print(
        f"chosen K = {selection.best} (Bayes, {method_label(selection.method, args.folds)}) and "
        f"K = {selection.best_em} (EM, {method_label('kfold', args.folds)}) by rule {selection.rule}; "
        f"wrote {args.out}/selection.csv, selection.md, selection.png and selection.json"
    )
    return 0


def _run_report_command(args) -> int:
    """``bayes-glmhmm report``: the HTML and Markdown report of a saved posterior."""
    if not os.path.isfile(args.posterior):
        return _error(f"no such file: {args.posterior}")
    if args.selection is not None and not os.path.isfile(args.selection):
        return _error(f"--selection: no such file: {args.selection}")
    import matplotlib

    matplotlib.use("Agg")
    from bayes_glmhmm._render import background_rendering
    from bayes_glmhmm.report import write_report

    out = args.out if args.out is not None else os.path.join(os.path.dirname(args.posterior) or ".", "report")
    try:
        with background_rendering():
            paths = write_report(args.posterior, out, title=args.title, selection=args.selection)
    except ValueError as error:
        message = str(error)
        return _error("--" + message if message.startswith("selection:") else message)
    selection = " with the choice of the number of states" if "selection" in paths else ""
    print(f"wrote {paths['html']} (self-contained) and {paths['markdown']}{selection}")
    return 0


def _run_demo_command(args) -> int:
    """``bayes-glmhmm demo``: run :func:`run_demo` and print its headline numbers."""
    try:
        _check_counts(args, _SAMPLER_COUNTS)
    except ValueError as error:
        return _error(str(error))
    _start_jax(args.chains, False, not args.no_compile_cache)
    start = time.perf_counter()
    from bayes_glmhmm._render import background_rendering

    imports = _import_while_sampling()
    try:
        with _verdict_printed_not_warned(), background_rendering():
            summary = run_demo(
                out=args.out,
                quick=args.quick,
                variant=args.variant,
                **_sampler_settings(args),
                progress_bar=_show_progress(args),
            )
    finally:
        imports.join()
    nuts = summary["nuts"]
    covered, realized = summary["recovery"]["fraction_covered"], summary["recovery_of_realized"]["fraction_covered"]
    print(
        f"wrote {args.out}/ in {time.perf_counter() - start:.1f} s: NUTS {nuts['wall_seconds']:.1f} s, "
        f"max R-hat {nuts['max_rhat']:.3f}, min bulk ESS {nuts['min_ess_bulk']:.0f}, "
        f"divergences {nuts['divergences']}, 94% intervals cover {covered:.0%} of the generator's values "
        f"and {realized:.0%} of the realized ones"
    )
    _print_verdict(nuts)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bayes-glmhmm`` command; returns the exit status (2 for bad input)."""
    args = _build_parser().parse_args(argv)
    commands = {
        "report": _run_report_command,
        "fit": _run_fit_command,
        "select": _run_select_command,
        "demo": _run_demo_command,
    }
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
