"""A self-contained diagnostic report (HTML and Markdown) of a saved GLM-HMM posterior.

:func:`write_report` reads an ``arviz.InferenceData`` written by :mod:`bayes_glmhmm.convert`
(or a netCDF file of one) and writes, into one folder:

* ``report.html``: one file that opens anywhere, every figure embedded as a base64 PNG;
* ``report.md`` with its figures as PNG files in ``figures/`` beside it;
* ``summary.csv``: ``az.summary`` of every parameter, unrounded.

The report opens with the fit's own convergence verdict (:func:`fit_verdict`: that of
:meth:`~bayes_glmhmm.posterior.Posterior.diagnostics` on the posterior rebuilt from the file, the
one :func:`bayes_glmhmm.fit.fit_nuts` warned with): a red box listing its problems in plain
sentences, or one line saying it converged; a file that holds no fit to rebuild (no sampler
statistics or data) has no such verdict. Then come the report's own checks (every check, passed
or failed, with its threshold), the summary table with R-hat and ESS flagged, per-chain sampler statistics
(divergences, E-BFMI, tree depth, stuck chains), the energy plot, the log density by chain, trace
and rank plots, the relabeling that was applied to every draw (and R-hat before and after it), the
parameter posteriors, the emission curves of each state, for input-driven transitions the transition
weights and the transition probabilities against each transition input, and the posterior state
probabilities of the sequences. When a ``selection.json`` written by
:func:`bayes_glmhmm.selection_io.write_selection` lies beside the posterior file (or is given), a
last section shows how the number of states was chosen: the table, the rule and the figure.

Every emission family is reported from what the file records: the posterior's attrs name the
family (and C for the categorical), whose parameter names and emission parameters the tables and
figures iterate.
"""

import base64
import html
import json
import os
import re
import warnings
from typing import NamedTuple

import numpy as np

from bayes_glmhmm._io import write_pngs_atomic, write_text_atomic
from bayes_glmhmm._render import PendingPng, render_png
from bayes_glmhmm.convergence import tree_depths
from bayes_glmhmm.emissions import EmissionFamily, get_family
from bayes_glmhmm.hierarchy import subject_param_names

#: The parameters input-driven transitions add to the family's (see :mod:`bayes_glmhmm.transitions`).
_TRANSITION_NAMES = ("transition_weights",)

__all__ = ["write_report", "report_checks", "fit_verdict", "DEFAULT_THRESHOLDS"]

#: Okabe-Ito colours for chains (as in :mod:`bayes_glmhmm.plots`); ArviZ draws chains from the
#: Matplotlib colour cycle, so the report sets it to these.
_CHAIN_CYCLE = ("#0072B2", "#E69F00", "#CC79A7", "#000000", "#56B4E9", "#D55E00", "#009E73", "#F0E442")

#: Convergence thresholds: rank-normalized split R-hat and bulk / tail ESS after Vehtari et al.
#: (2021), E-BFMI after Betancourt (2016), and no divergent transitions. They concern the sampler
#: and the draws, not the likelihood, so they are the same for every emission family.
DEFAULT_THRESHOLDS = {
    "max_rhat": 1.01,
    "min_ess_per_chain": 100.0,
    "min_bfmi": 0.3,
    "max_divergences": 0,
}


def _json_attr(attrs, name: str, default):
    value = attrs.get(name)
    if value is None:
        return default
    try:
        return json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        return default


def _load(idata_or_path):
    import arviz as az

    if isinstance(idata_or_path, (str, os.PathLike)):
        source = os.fspath(idata_or_path)
        idata = az.from_netcdf(source)
    else:
        source = "(in memory)"
        idata = idata_or_path
    if "posterior" not in idata.groups():
        raise ValueError("the InferenceData has no posterior group")
    return idata, source


def _family(idata) -> EmissionFamily:
    """The emission family the posterior's attrs record (Gaussian for files written before families)."""
    attrs = idata.posterior.attrs
    num_classes = int(attrs.get("num_classes", -1))
    return get_family(str(attrs.get("family", "gaussian")), None if num_classes < 0 else num_classes)


def _param_names(idata) -> list[str]:
    """The family's parameters in the posterior group, then those of input-driven transitions and of subjects.

    The transition weights of input-driven transitions, and a hierarchical posterior's spreads and
    subjects' parameters (:func:`~bayes_glmhmm.hierarchy.subject_param_names`); every variable of
    the group if none of the family's is there.
    """
    names = [name for name in _family(idata).param_names if name in idata.posterior.data_vars]
    if not names:
        return list(idata.posterior.data_vars)
    extra = _TRANSITION_NAMES + subject_param_names(subject_transitions=True)
    return names + [name for name in extra if name in idata.posterior.data_vars]


def _transition_input_names(idata) -> list[str] | None:
    """The names of the transition inputs (the ``transition_input`` coordinate), or None if stationary."""
    if "transition_weights" not in idata.posterior.data_vars:
        return None
    if "transition_input" in idata.posterior.coords:
        return [str(value) for value in idata.posterior.coords["transition_input"].values]
    return [f"u{m}" for m in range(idata.posterior["transition_weights"].shape[-1])]


def _emission_names(idata) -> list[str]:
    """The family's emission parameters in the posterior group (all parameters if none is)."""
    names = _param_names(idata)
    return [name for name in _family(idata).emission_names if name in names] or names


def _input_names(idata) -> list[str] | None:
    """Names of the inputs, from the ``input_names`` attr or a string-valued ``input`` coordinate, if any.

    The attr is a JSON list; files of ``bayes-glmhmm fit`` written before that hold the names joined by commas.
    """
    names = _json_attr(idata.posterior.attrs, "input_names", None)
    raw = idata.posterior.attrs.get("input_names")
    if not isinstance(names, list) and isinstance(raw, str) and raw:
        names = raw.split(",")  # a lone name such as "3" is valid JSON, but not a list
    if names is None and "input" in idata.posterior.coords:
        values = idata.posterior.coords["input"].values
        names = [str(value) for value in values] if values.dtype.kind in "OUS" else None
    if names is None or "weights" not in idata.posterior or len(names) != idata.posterior["weights"].shape[-1]:
        return None
    return [str(name) for name in names]


def _summary(idata, var_names):
    import arviz as az

    with warnings.catch_warnings():
        # R-hat of a single chain, or of constant elements, is NaN with a RuntimeWarning; the table shows "nan".
        warnings.simplefilter("ignore", RuntimeWarning)
        return az.summary(idata, var_names=var_names, round_to="none")


def _per_chain_stats(idata) -> list[dict]:
    """One row per chain: divergences, E-BFMI, tree depth, step size, median log density, stuck."""
    import arviz as az

    stats = idata.sample_stats if "sample_stats" in idata.groups() else None
    attrs = idata.posterior.attrs
    num_chains = idata.posterior.sizes["chain"]
    stuck = set(_json_attr(attrs, "stuck_chains", []))
    max_depth = _json_attr(attrs, "settings", {}).get("max_tree_depth")
    if max_depth is not None:
        max_depth = tree_depths(max_depth)[1]  # the draws' depth when warmup had its own
    bfmi = None
    if stats is not None and "energy" in stats:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            bfmi = np.asarray(az.bfmi(idata))
    rows = []
    for c in range(num_chains):
        row = {"chain": c}
        if stats is not None and "diverging" in stats:
            row["divergences"] = int(np.sum(stats["diverging"].values[c]))
        if bfmi is not None:
            row["e_bfmi"] = float(bfmi[c])
        if stats is not None and "step_size" in stats:
            row["step_size"] = float(np.median(stats["step_size"].values[c]))
        if stats is not None and "tree_depth" in stats:
            depth = stats["tree_depth"].values[c]
            row["mean_tree_depth"] = float(np.mean(depth))
            if max_depth is not None:
                row["at_max_depth"] = float(np.mean(depth >= max_depth))
        if stats is not None and "lp" in stats:
            row["median_lp"] = float(np.median(stats["lp"].values[c]))
        row["stuck"] = c in stuck
        rows.append(row)
    return rows


def _relabeling(idata) -> dict | None:
    """The permutations applied to the draws, and R-hat of the emission parameters before and after."""
    import arviz as az

    from bayes_glmhmm.relabel import invert_permutation, relabel_draws

    if "sample_stats" not in idata.groups() or "relabel_permutation" not in idata.sample_stats:
        return None
    permutations = np.asarray(idata.sample_stats["relabel_permutation"].values)
    names = _param_names(idata)
    emission_names = _emission_names(idata)
    samples = {name: idata.posterior[name].values for name in names}
    # permutations[c, s] maps the sampler's raw labels to the final ones (new k = raw perm[k]),
    # so the inverse permutation takes the stored draws back to what the sampler produced.
    raw = relabel_draws(samples, invert_permutation(permutations))
    per_chain = []
    for c in range(permutations.shape[0]):
        values, counts = np.unique(permutations[c], axis=0, return_counts=True)
        modal = values[np.argmax(counts)]
        per_chain.append(
            {
                "chain": c,
                "modal_permutation": [int(v) for v in modal],
                "draws_relabeled": float(np.mean(np.any(permutations[c] != np.arange(permutations.shape[-1]), -1))),
                "draws_off_modal": float(np.mean(np.any(permutations[c] != modal, axis=-1))),
            }
        )

    def _max_rhat(draws):
        emission = {name: draws[name] for name in emission_names if name in draws}
        if not emission or permutations.shape[0] < 2:
            return float("nan")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rhat = az.rhat(az.convert_to_dataset(emission))
        values = np.concatenate([np.ravel(rhat[name].values) for name in emission])
        return float(np.nanmax(values)) if np.isfinite(values).any() else float("nan")

    return {
        "per_chain": per_chain,
        "raw_samples": raw,
        "max_rhat_raw": _max_rhat(raw),
        "max_rhat_relabeled": _max_rhat(samples),
    }


def _posterior(idata):
    """The :class:`~bayes_glmhmm.posterior.Posterior` rebuilt from the file, or None if a group it needs is missing."""
    if not {"sample_stats", "observed_data", "constant_data"} <= set(idata.groups()):
        return None
    from bayes_glmhmm.convert import posterior_from_inference_data

    return posterior_from_inference_data(idata)


def _state_probabilities(idata, posterior=None) -> np.ndarray | None:
    """(N, T, K) posterior state probabilities: stored, or recomputed from the draws if absent."""
    if "posterior_states" in idata.groups() and "state_probabilities" in idata.posterior_states:
        return np.asarray(idata.posterior_states["state_probabilities"].values)
    posterior = _posterior(idata) if posterior is None else posterior
    return None if posterior is None else posterior.state_probabilities()


def report_checks(idata, thresholds: dict | None = None) -> list[dict]:
    """The convergence checks of the report, each with its value, threshold and outcome.

    Args:
        idata: InferenceData written by :func:`bayes_glmhmm.convert.to_inference_data`.
        thresholds: overrides of :data:`DEFAULT_THRESHOLDS` (``max_rhat``, ``min_ess_per_chain``,
            ``min_bfmi``, ``max_divergences``).

    Returns:
        A list of dicts with ``check``, ``value`` (text), ``threshold`` (text), ``passed`` (bool),
        ``detail`` (text).
    """
    thresholds = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    names = _param_names(idata)
    summary = _summary(idata, names)
    num_chains = idata.posterior.sizes["chain"]
    min_ess = thresholds["min_ess_per_chain"] * num_chains
    checks = []
    rhat = summary["r_hat"].to_numpy(dtype=float)
    worst = summary["r_hat"].idxmax() if np.isfinite(rhat).any() else "-"
    checks.append(
        {
            "check": "R-hat (rank-normalized, split)",
            "value": f"max {np.nanmax(rhat):.3f}" if np.isfinite(rhat).any() else "n/a (one chain)",
            "threshold": f"≤ {thresholds['max_rhat']}",
            "passed": bool(np.isfinite(rhat).any() and np.nanmax(rhat) <= thresholds["max_rhat"]),
            "detail": f"{int(np.sum(rhat > thresholds['max_rhat']))} of {rhat.size} elements above; worst {worst}",
        }
    )
    for column, label in (("ess_bulk", "bulk ESS"), ("ess_tail", "tail ESS")):
        ess = summary[column].to_numpy(dtype=float)
        known = np.isfinite(ess).any()
        checks.append(
            {
                "check": label,
                "value": f"min {np.nanmin(ess):.0f}" if known else "n/a",
                "threshold": f"≥ {min_ess:.0f} ({thresholds['min_ess_per_chain']:.0f} per chain)",
                "passed": bool(known and np.nanmin(ess) >= min_ess),
                "detail": f"{int(np.sum(ess < min_ess))} of {ess.size} elements below; lowest "
                f"{summary[column].idxmin() if known else '-'}",
            }
        )
    chains = _per_chain_stats(idata)
    if chains and "divergences" in chains[0]:
        total = sum(row["divergences"] for row in chains)
        draws = idata.posterior.sizes["draw"] * num_chains
        checks.append(
            {
                "check": "divergent transitions",
                "value": f"{total} of {draws} draws",
                "threshold": f"≤ {thresholds['max_divergences']}",
                "passed": total <= thresholds["max_divergences"],
                "detail": "per chain: " + ", ".join(str(row["divergences"]) for row in chains),
            }
        )
    if chains and "e_bfmi" in chains[0]:
        low = [row["chain"] for row in chains if row["e_bfmi"] < thresholds["min_bfmi"]]
        checks.append(
            {
                "check": "E-BFMI (energy)",
                "value": f"min {min(row['e_bfmi'] for row in chains):.2f}",
                "threshold": f"≥ {thresholds['min_bfmi']}",
                "passed": not low,
                "detail": f"low in chains {low}" if low else "every chain explores the energy well",
            }
        )
    if chains and "at_max_depth" in chains[0]:
        saturated = max(row["at_max_depth"] for row in chains)
        checks.append(
            {
                "check": "tree depth saturation",
                "value": f"max {100 * saturated:.1f}% of draws per chain",
                "threshold": "0%",
                "passed": saturated == 0,
                "detail": "draws that hit the maximum tree depth (the sampler cut its trajectory short)",
            }
        )
    stuck = [row["chain"] for row in chains if row["stuck"]]
    checks.append(
        {
            "check": "stuck chains (log density far below the best chain's)",
            "value": str(stuck) if stuck else "none",
            "threshold": "none",
            "passed": not stuck,
            "detail": f"threshold {float(idata.posterior.attrs.get('stuck_threshold', np.nan)):.1f} nats below "
            "the best chain's median; drop them with Posterior.drop_chains",
        }
    )
    return checks


def fit_verdict(idata) -> dict:
    """The fit's own convergence verdict: ``Posterior.diagnostics()`` of the posterior the file holds.

    The posterior is rebuilt from the file (:func:`~bayes_glmhmm.convert.posterior_from_inference_data`)
    and judged by :meth:`~bayes_glmhmm.posterior.Posterior.diagnostics` itself, so that the verdict
    is the fit's in every respect: its parameters (a hierarchical posterior's subjects' included),
    the subjects' label swaps named by their ids, a tempering ladder's gaps, and the thresholds the
    fit recorded (``settings["convergence_thresholds"]``, see :func:`bayes_glmhmm.fit.fit_nuts`;
    the defaults for files written before), not the report's ``thresholds``. The report's red box
    says what the fit's warning said.

    Args:
        idata: InferenceData written by :func:`bayes_glmhmm.convert.to_inference_data`.

    Returns:
        A dict with ``converged`` (bool), ``problems`` (plain sentences) and ``thresholds``
        (a :class:`~bayes_glmhmm.convergence.ConvergenceThresholds`).

    Raises:
        ValueError: for an InferenceData that lacks a group or variable the posterior needs.
    """
    from bayes_glmhmm.convert import posterior_from_inference_data

    return _verdict(posterior_from_inference_data(idata))


def _verdict(posterior) -> dict:
    """:func:`fit_verdict` of a rebuilt :class:`~bayes_glmhmm.posterior.Posterior`."""
    from bayes_glmhmm.convergence import ConvergenceThresholds

    diagnostics = posterior.diagnostics()
    return {
        "converged": diagnostics["converged"],
        "problems": diagnostics["problems"],
        "thresholds": ConvergenceThresholds.from_value(diagnostics["thresholds"]),
    }


# --- figures ------------------------------------------------------------------------------------


def _figure_png(figure, dpi: int = 90) -> PendingPng:
    """The figure's PNG, a :class:`~bayes_glmhmm._render.PendingPng` (drawn by a helper process if any)."""
    return render_png(figure, dpi)


# ArviZ's density estimate warns on a chain whose draws of a parameter are all equal (a frozen
# chain): its flat trace is what the figure must show, and the diagnostics name it.
_CONSTANT_DRAWS_WARNING = "Your data appears to have a single value or no finite values"


def _arviz_figure(draw, title: str) -> PendingPng:
    """Run an ArviZ plotting call with colour-blind-safe chain colours and return its PNG."""
    import matplotlib.pyplot as plt
    from cycler import cycler

    with plt.rc_context({"axes.prop_cycle": cycler(color=list(_CHAIN_CYCLE))}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_CONSTANT_DRAWS_WARNING, category=UserWarning)
        axes = draw()
        figure = np.ravel(axes)[0].get_figure()
        figure.suptitle(title)
        png = _figure_png(figure)
    plt.close(figure)
    return png


def _flat_labeller():
    from arviz.labels import BaseLabeller

    class FlatLabeller(BaseLabeller):
        """Labels on one line, ``weights[0, 0]``: ArviZ's two-line titles collide in tall grids."""

        def make_label_vert(self, var_name, sel, isel):
            return self.make_label_flat(var_name, sel, isel)

    return FlatLabeller()


def _energy_axes(idata):
    import arviz as az

    def _draw():
        ax = az.plot_energy(idata, figsize=(8, 4.2), backend_kwargs={"layout": "constrained"})
        ax.set_xlabel("energy, centred (each distribution minus its mean)")
        ax.set_ylabel("density")
        return ax

    return _draw


def _own_figure(figure) -> PendingPng:
    png = _figure_png(figure)
    figure.clear()
    return png


def _num_elements(idata, names) -> int:
    """Number of scalar elements of the given posterior variables."""
    return int(sum(np.prod(idata.posterior[name].shape[2:], dtype=int) for name in names))


def _sequence_names(idata, num_sequences: int) -> list[str]:
    """The sequences' names: the ids ``bayes-glmhmm fit`` records (``sequence_ids``), else ``seq n``."""
    ids = idata.posterior.attrs.get("sequence_ids")
    names = ids.split(",") if isinstance(ids, str) and ids else []
    return names if len(names) == num_sequences else [f"seq {n}" for n in range(num_sequences)]


def _state_overview(probabilities: np.ndarray, max_sequences: int = 12, sequence_names=None):
    """Small multiples: the stacked posterior state probabilities of each sequence (padding left blank)."""
    from matplotlib.figure import Figure

    from bayes_glmhmm.plots import state_colors

    num_sequences, num_timesteps, num_states = probabilities.shape
    shown = min(num_sequences, max_sequences)
    colors = state_colors(num_states)
    figure = Figure(figsize=(11, 0.75 * shown + 1.3), layout="constrained")
    axes = np.atleast_1d(figure.subplots(shown, 1, sharex=True, squeeze=False)[:, 0])
    time = np.arange(num_timesteps)
    for n, ax in enumerate(axes):
        ax.stackplot(time, np.nan_to_num(probabilities[n]).T, colors=colors, step="mid")  # padding: blank
        ax.set_ylim(0, 1)
        ax.set_yticks([0, 1])
        ax.tick_params(labelsize="x-small")
        name = f"seq {n}" if sequence_names is None else sequence_names[n]
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize="small")
    axes[-1].set_xlim(-0.5, num_timesteps - 0.5)
    axes[-1].set_xlabel("time step t")
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=c, label=f"state {k}") for k, c in enumerate(colors)]
    figure.legend(handles=handles, loc="outside right upper", fontsize="small", title="state")
    note = f" (first {shown} of {num_sequences} sequences)" if shown < num_sequences else ""
    figure.suptitle(r"Posterior state probabilities $p(z_t = k \mid y, x)$, stacked" + note)
    return figure


def _emission_curves_figure(posterior, probabilities, input_names) -> tuple[str, str, str, PendingPng]:
    """The emission curves of every state along the first input, the data coloured by most probable state."""
    from bayes_glmhmm import plots

    family = posterior.family
    states = None if probabilities is None else np.argmax(np.nan_to_num(probabilities, nan=-1.0), axis=-1)
    figure = plots.plot_emission_curves(posterior, 0, input_names, states=states)
    what = (
        "class probabilities p(y = c | x, z = k), one panel per class" if family.num_classes else "mean E[y | x, z = k]"
    )
    return (
        "emission_curves",
        "Emission curves",
        f"The {family.name} family's emission {what} of each state against the first input, the other "
        "inputs at their observed mean: posterior mean (line) and 94% band over the draws"
        + (", the EM estimate dashed" if posterior.em is not None else "")
        + ". The data are drawn by their most probable state"
        + (" as mean emissions per bin of the input." if family.discrete else "."),
        _own_figure(figure),
    )


#: The most transition inputs the report draws transition probabilities against (one figure each).
_MAX_TRANSITION_FIGURES = 4


def _transition_figures(posterior, names) -> list[tuple[str, str, str, PendingPng]]:
    """Input-driven transitions: the transition probabilities against each transition input (the first four)."""
    from bayes_glmhmm import plots

    if names is None or getattr(posterior, "transition_inputs", None) is None:
        return []
    figures = []
    for m, name in enumerate(names[:_MAX_TRANSITION_FIGURES]):
        figure = plots.plot_transition_probabilities(posterior, m, input_names=names)
        figures.append(
            (
                f"transition_probabilities_{m}",
                f"Transition probabilities against {name}",
                f"For each origin state i (one panel each), p(z[t+1] = j | z[t] = i, u[t]) against the "
                f"transition input {name}"
                + (", the other transition inputs at their mean" if len(names) > 1 else "")
                + ": posterior mean (line; dashed for staying, j = i) and 90% band over the draws, one colour "
                "per destination state j.",
                _own_figure(figure),
            )
        )
    return figures


def _input_labelled(idata, names, input_names, split: bool):
    """The draws of ``names`` (and the sampler statistics) for ArviZ's trace and rank plots, inputs named.

    The ``input`` coordinate takes the inputs' names (e.g. the CSV's columns) when known. With
    ``split``, each variable with an input axis becomes one variable per input (``weights: speed``),
    so that a compact trace, which draws every element of a variable on one axes, gives the
    weights of each input an axes of their own: inputs have their own units, and the weights of
    one can be orders of magnitude larger than another's.
    """
    import arviz as az
    import xarray as xr

    posterior = idata.posterior[list(names)]
    if "input" not in posterior.dims:
        split = False
    elif input_names is not None:
        posterior = posterior.assign_coords(input=list(input_names))
    if split and posterior.sizes["input"] > 1:
        variables = {}
        for name in names:
            variable = posterior[name]
            if "input" not in variable.dims:
                variables[name] = variable
                continue
            for value in variable.coords["input"].values:
                variables[f"{name}: {value}"] = variable.sel(input=value, drop=True)
        posterior = xr.Dataset(variables)
    groups = {"posterior": posterior}
    if "sample_stats" in idata.groups():
        groups["sample_stats"] = idata.sample_stats
    return az.InferenceData(**groups)


def _figures(idata, relabeling, probabilities, chains, posterior=None) -> list[tuple[str, str, str, PendingPng]]:
    """(file stem, title, caption, PNG) of every figure of the report, in order."""
    import arviz as az

    from bayes_glmhmm import plots

    attrs = idata.posterior.attrs
    family = _family(idata)
    input_names = _input_names(idata)
    names = _param_names(idata)
    emission = _emission_names(idata)
    count = _num_elements(idata, emission)
    compact = count > 12
    labelled = _input_labelled(idata, emission, input_names, split=compact)
    shown = list(labelled.posterior.data_vars)
    figures = []
    has_stats = "sample_stats" in idata.groups()
    if has_stats and "energy" in idata.sample_stats:
        figures.append(
            (
                "energy",
                "Energy",
                "Marginal energy distribution against the distribution of energy changes between "
                "iterations (centred), with the E-BFMI of each chain. When the energy-change "
                "distribution is much narrower than the marginal one (E-BFMI below 0.3), the "
                "sampler cannot explore the tails.",
                _arviz_figure(_energy_axes(idata), "Energy (az.plot_energy)"),
            )
        )
    if has_stats and "lp" in idata.sample_stats:
        stuck = [row["chain"] for row in chains if row["stuck"]]
        figures.append(
            (
                "lp_by_chain",
                "Log density by chain",
                "The log density of every draw per chain. A chain whose distribution sits far below the "
                "best chain's is stuck in an inferior mode (for this model, typically two states merged).",
                _own_figure(plots.plot_lp_by_chain(idata.sample_stats["lp"].values, stuck_chains=stuck)),
            )
        )
    figures.append(
        (
            "trace",
            "Trace plots",
            "Per-chain densities (left) and traces (right) of the emission parameters, after relabeling"
            + (
                " (elements of one variable share a panel, the weights of each input a panel of their own)."
                if compact
                else "."
            ),
            _arviz_figure(
                lambda: az.plot_trace(
                    labelled,
                    var_names=shown,
                    compact=compact,
                    legend=True,
                    figsize=(11, 1.5 * (len(shown) if compact else count) + 0.8),
                    divergences="bottom",
                    labeller=_flat_labeller(),
                    backend_kwargs={"layout": "constrained"},
                ),
                "Trace (az.plot_trace)",
            ),
        )
    )
    if idata.posterior.sizes["chain"] > 1:
        rank_columns = min(count, 3)
        rank_rows = int(np.ceil(count / rank_columns))
        figures.append(
            (
                "rank",
                "Rank plots",
                "Histograms of the ranks of each chain's draws among all chains' draws. Chains that "
                "sample the same distribution give flat histograms (the dashed line); a chain in "
                "another mode or still drifting piles up at one end.",
                _arviz_figure(
                    lambda: az.plot_rank(
                        labelled,
                        var_names=shown,
                        figsize=(11, 2.2 * rank_rows + 0.6),
                        grid=(rank_rows, rank_columns),
                        labeller=_flat_labeller(),
                        backend_kwargs={"layout": "constrained"},
                    ),
                    "Rank plots (az.plot_rank)",
                ),
            )
        )
    if relabeling is not None and relabeling["per_chain"]:
        raw = relabeling["raw_samples"]
        figures.append(
            (
                "trace_before_relabeling",
                "Weights before relabeling",
                "The weights as the sampler produced them, before every draw was relabeled: a chain "
                "whose labels are permuted with respect to another's, or that switches labels, shows "
                "here and not in the trace plots above.",
                _own_figure(
                    plots.plot_trace(
                        {"weights": raw["weights"]}, var_names=["weights"], family=family, input_names=input_names
                    )
                ),
            )
        )
    em = _json_attr(attrs, "em_params", None)
    em_params = family.params_type(**{k: np.asarray(v) for k, v in em.items() if v is not None}) if em else None
    samples = {name: idata.posterior[name].values for name in names if name in family.param_names}
    if samples:
        figures.append(
            (
                "parameters",
                "Parameter posteriors",
                "Posterior medians with central 50% and 94% intervals, pooled over chains"
                + ("; crosses: the EM estimate that initialized the sampler." if em_params is not None else "."),
                _own_figure(
                    plots.plot_parameter_posteriors(
                        samples, em_params=em_params, family=family, input_names=input_names
                    )
                ),
            )
        )
    if posterior is not None:
        figures.append(_emission_curves_figure(posterior, probabilities, input_names))
        figures += _transition_figures(posterior, _transition_input_names(idata))
    if probabilities is not None:
        sequence_names = _sequence_names(idata, len(probabilities))
        figures.append(
            (
                "state_probabilities",
                "Posterior state probabilities",
                "For every sequence and time step, the posterior probability of each state, averaged "
                "over all draws (smoothed marginals under each draw's parameters).",
                _own_figure(_state_overview(probabilities, sequence_names=sequence_names)),
            )
        )
        valid = np.all(np.isfinite(probabilities[0]), axis=-1)
        if "observed_data" in idata.groups() and "emissions" in idata.observed_data and valid.any():
            length = int(np.flatnonzero(valid)[-1]) + 1  # padding, if any, comes after the last valid step
            emissions = np.asarray(idata.observed_data["emissions"].values)[0, :length]
            sequence = np.nan_to_num(probabilities[0, :length])
            figures.append(
                (
                    "states_sequence0",
                    f"The first sequence in detail ({sequence_names[0]})",
                    f"The emissions of the first sequence ({sequence_names[0]}; every sequence is in the overview "
                    "above), its posterior state probabilities and the most probable state at each step.",
                    _own_figure(
                        plots.plot_states(
                            emissions,
                            None,
                            sequence,
                            map_states=sequence.argmax(-1),
                            sequence_label=f"{sequence_names[0]} (estimated path: most probable state per step)",
                        )
                    ),
                )
            )
    return figures


# --- tables -------------------------------------------------------------------------------------


class _Table:
    """A table whose cells may be flagged (drawn highlighted and marked, not by colour alone)."""

    def __init__(self, header: list[str], rows: list[list], flags: list[list[bool]] | None = None, align=None):
        self.header = header
        self.rows = [[str(cell) for cell in row] for row in rows]
        self.flags = flags or [[False] * len(header) for _ in rows]
        self.align = align or ["left"] + ["right"] * (len(header) - 1)


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    if not np.isfinite(value):
        return "nan"
    return f"{value:.{digits}f}"


class _DataSize(NamedTuple):
    """What the data of a posterior file hold, padding apart: sequences are padded to a common length."""

    num_sequences: int
    padded_length: int  # T, the common length the sequences are padded to
    input_dim: int
    lengths: np.ndarray | None  # (N,) steps of each sequence; None if the file does not tell
    num_missing: int  # unobserved targets within the sequences (with unknown lengths: padding included)


def _sequence_lengths(idata, num_sequences: int, padded_length: int) -> np.ndarray | None:
    """(N,) sequence lengths: the stored ``lengths``, else read off the posterior predictive, else None.

    The predictive draws are NaN exactly at padding (missing targets get predictions), so the
    last finite step of one draw ends each sequence; a file with neither cannot tell missing
    targets from padding.
    """
    if "lengths" in idata.constant_data:
        return np.asarray(idata.constant_data["lengths"].values, dtype=int)
    if "posterior_predictive" in idata.groups() and "emissions" in idata.posterior_predictive:
        draw = np.asarray(idata.posterior_predictive["emissions"].isel(chain=0, draw=0).values)
        if draw.shape == (num_sequences, padded_length):
            finite = np.isfinite(draw)
            return np.where(finite.any(axis=1), padded_length - np.argmax(finite[:, ::-1], axis=1), 0)
    return None


def _data_size(idata) -> _DataSize | None:
    """The size of the fitted data (from ``constant_data``), or None if the file holds no inputs."""
    if "constant_data" not in idata.groups() or "inputs" not in idata.constant_data:
        return None
    num_sequences, padded_length, input_dim = idata.constant_data["inputs"].shape
    lengths = _sequence_lengths(idata, num_sequences, padded_length)
    if "mask" in idata.constant_data:
        unobserved = np.asarray(idata.constant_data["mask"].values) == 0
    elif "observed_data" in idata.groups() and "emissions" in idata.observed_data:
        unobserved = ~np.isfinite(np.asarray(idata.observed_data["emissions"].values, dtype=float))
    else:
        unobserved = np.zeros((num_sequences, padded_length), dtype=bool)
    if lengths is not None:
        unobserved = unobserved & (np.arange(padded_length)[None, :] < lengths[:, None])
    return _DataSize(num_sequences, padded_length, input_dim, lengths, int(unobserved.sum()))


def _data_rows(idata) -> list[list]:
    """Overview rows of the data: rows, sequences and their lengths, missing targets and padding, apart."""
    size = _data_size(idata)
    if size is None:
        return []
    inputs = f"{size.input_dim} input{'s' if size.input_dim != 1 else ''}"
    sequences = f"{size.num_sequences} sequence{'s' if size.num_sequences != 1 else ''}"
    if size.lengths is None:
        # Old files: only the padded shape is known, and padding cannot be told from missing targets.
        return [
            ["data", f"{sequences} of at most {size.padded_length} steps, {inputs} (lengths not recorded)"],
            ["missing targets or padding", size.num_missing],
        ]
    num_rows = int(size.lengths.sum())
    low, middle, high = int(size.lengths.min()), float(np.median(size.lengths)), int(size.lengths.max())
    spread = f"all {high} steps" if low == high else f"min {low}, median {middle:g}, max {high} steps"
    rows = [
        ["data", f"{num_rows} rows (time steps) in {sequences}, {inputs}"],
        ["sequence lengths", spread],
        ["missing targets", f"{size.num_missing} of {num_rows} rows (no likelihood term; states still inferred)"],
    ]
    padding = size.num_sequences * size.padded_length - num_rows
    if padding:
        rows.append(
            ["padding", f"{padding} steps after the ends of the shorter sequences (not data; left out of every result)"]
        )
    return rows


def _overview_table(idata, source: str) -> _Table:
    attrs = idata.posterior.attrs
    settings = _json_attr(attrs, "settings", {})
    wall = _json_attr(attrs, "wall_seconds", {})
    rows = [
        ["file", source],
        ["chains x draws", f"{idata.posterior.sizes['chain']} x {idata.posterior.sizes['draw']}"],
    ]
    if "num_warmup" in settings:
        rows.append(["warmup per chain", settings["num_warmup"]])
    family = _family(idata)
    rows.append(["emission family", family.name])
    if family.num_classes is not None:
        rows.append(
            [
                "classes C",
                f"{family.num_classes}; class 0 is the reference: weights[k, c - 1] and biases[k, c - 1] "
                "are the log-odds of class c against class 0",
            ]
        )
    if "num_states" in attrs:
        rows.append(["states K", int(attrs["num_states"])])
    transitions = _json_attr(attrs, "transitions", None)
    transition_names = _transition_input_names(idata)
    if transition_names is not None:
        form = transitions.get("form", "full") if isinstance(transitions, dict) else "full"
        rows.append(["transitions", f"input-driven ({form}) on {', '.join(transition_names)}"])
    elif transitions is not None:
        rows.append(["transitions", "stationary"])
    input_names = _input_names(idata)
    if input_names is not None:
        rows.append(["inputs", ", ".join(input_names)])
    rows += _data_rows(idata)
    for key, label in (
        ("init", "initialization"),
        ("seed", "seed"),
        ("target_accept_prob", "target acceptance"),
        ("max_tree_depth", "maximum tree depth"),
        ("dense_mass", "dense mass matrix"),
    ):
        if key in settings:
            rows.append([label, _fmt(settings[key], 2) if isinstance(settings[key], float) else settings[key]])
    if settings.get("dropped_chains"):
        rows.append(["chains dropped before saving", settings["dropped_chains"]])
    if wall:
        parts = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in wall.items())
        rows.append(["wall time", parts])
    return _Table(["", ""], rows, align=["left", "left"])


def _checks_table(checks: list[dict]) -> _Table:
    rows, flags = [], []
    for check in checks:
        rows.append(
            [
                check["check"],
                check["value"],
                check["threshold"],
                "pass" if check["passed"] else "FAIL",
                check["detail"],
            ]
        )
        flags.append([False, not check["passed"], False, not check["passed"], False])
    return _Table(
        ["check", "value", "threshold", "result", "detail"], rows, flags, ["left", "right", "left", "left", "left"]
    )


def _summary_table(summary, thresholds: dict, num_chains: int) -> _Table:
    columns = ["mean", "sd", "hdi_3%", "hdi_97%", "mcse_mean", "ess_bulk", "ess_tail", "r_hat"]
    columns = [column for column in columns if column in summary.columns]
    min_ess = thresholds["min_ess_per_chain"] * num_chains
    rows, flags = [], []
    for name, record in summary.iterrows():
        row, flag = [name], [False]
        for column in columns:
            value = float(record[column])
            if column in ("ess_bulk", "ess_tail"):
                row.append(_fmt(value, 0))
                flag.append(bool(np.isfinite(value) and value < min_ess))
            elif column == "r_hat":
                row.append(_fmt(value, 3))
                flag.append(bool(np.isfinite(value) and value > thresholds["max_rhat"]))
            else:
                row.append(_fmt(value, 3))
                flag.append(False)
        rows.append(row)
        flags.append(flag)
    return _Table(["parameter"] + columns, rows, flags)


def _chains_table(chains: list[dict], thresholds: dict) -> _Table:
    columns = [
        ("divergences", "divergences", lambda v: str(v), lambda v: v > thresholds["max_divergences"]),
        ("e_bfmi", "E-BFMI", lambda v: _fmt(v, 2), lambda v: v < thresholds["min_bfmi"]),
        ("step_size", "step size", lambda v: _fmt(v, 3), lambda v: False),
        ("mean_tree_depth", "mean tree depth", lambda v: _fmt(v, 1), lambda v: False),
        ("at_max_depth", "at max depth", lambda v: f"{100 * v:.1f}%", lambda v: v > 0),
        ("median_lp", "median log density", lambda v: _fmt(v, 1), lambda v: False),
        ("stuck", "stuck", lambda v: "STUCK" if v else "no", lambda v: bool(v)),
    ]
    present = [column for column in columns if chains and column[0] in chains[0]]
    rows, flags = [], []
    for row in chains:
        rows.append([str(row["chain"])] + [fmt(row[key]) for key, _, fmt, _ in present])
        flags.append([False] + [bool(bad(row[key])) for key, _, _, bad in present])
    return _Table(["chain"] + [label for _, label, _, _ in present], rows, flags)


def _transition_weights_table(idata, prob: float = 0.9) -> _Table:
    """Posterior mean and equal-tailed ``prob`` interval of every transition weight V[i, j, m], i != j."""
    names = _transition_input_names(idata)
    draws = np.asarray(idata.posterior["transition_weights"].values)
    flat = draws.reshape((-1,) + draws.shape[2:])
    mean = flat.mean(axis=0)
    lower, upper = np.quantile(flat, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    rows, flags = [], []
    for i, j, m in np.ndindex(mean.shape):
        if i == j:
            continue
        excludes_zero = bool(lower[i, j, m] > 0 or upper[i, j, m] < 0)
        rows.append(
            [
                f"{i} → {j}",
                names[m],
                _fmt(mean[i, j, m]),
                _fmt(lower[i, j, m]),
                _fmt(upper[i, j, m]),
                "yes" if excludes_zero else "no",
            ]
        )
        flags.append([False] * 6)
    percent = f"{100 * prob:g}%"
    return _Table(
        [
            "transition i → j",
            "transition input",
            "posterior mean",
            f"{percent} lower",
            f"{percent} upper",
            f"{percent} interval excludes 0",
        ],
        rows,
        flags,
        ["left", "left", "right", "right", "right", "left"],
    )


def _relabeling_table(relabeling: dict) -> _Table:
    rows = [
        [
            str(row["chain"]),
            "(" + ", ".join(str(v) for v in row["modal_permutation"]) + ")",
            f"{100 * row['draws_relabeled']:.1f}%",
            f"{100 * row['draws_off_modal']:.1f}%",
        ]
        for row in relabeling["per_chain"]
    ]
    return _Table(
        ["chain", "usual permutation (state k = raw state perm[k])", "draws relabeled", "draws off the usual"],
        rows,
    )


def _states_table(probabilities: np.ndarray, certain: float = 0.9) -> _Table:
    num_states = probabilities.shape[-1]
    rows = []
    for n, sequence in enumerate(probabilities):
        # Padding after a sequence's end carries NaN probabilities: leave those steps out.
        sequence = sequence[np.all(np.isfinite(sequence), axis=-1)]
        if sequence.shape[0] == 0:
            rows.append([str(n), "0", "-", "-"] + ["-"] * num_states)
            continue
        top = sequence.max(axis=-1)
        occupancy = sequence.mean(axis=0)
        rows.append(
            [str(n), str(sequence.shape[0]), f"{np.mean(top):.3f}", str(int(np.sum(top < certain)))]
            + [f"{100 * occupancy[k]:.0f}%" for k in range(num_states)]
        )
    return _Table(
        ["sequence", "steps", "mean max probability", f"steps with max probability < {certain}"]
        + [f"expected time in state {k}" for k in range(num_states)],
        rows,
    )


# --- choosing the number of states --------------------------------------------------------------

_SELECTION_TITLE = "Choosing the number of states"


def _load_selection(selection, source: str):
    """The selection to report: given (a path of ``selection.json``, its dict or a Selection), or found beside the file.

    Returns:
        The dict read from ``selection.json`` (or the object given), or None when there is none.

    Raises:
        ValueError: for a given path that does not exist, or a file that is not a selection's JSON.
    """
    if selection is None:
        if source == "(in memory)":
            return None
        beside = os.path.join(os.path.dirname(os.path.abspath(source)), "selection.json")
        if not os.path.isfile(beside):
            return None
        selection = beside
    if not isinstance(selection, (str, os.PathLike)):
        return selection
    path = os.fspath(selection)
    if not os.path.isfile(path):
        raise ValueError(f"selection: no such file: {path}")
    try:
        with open(path, encoding="utf-8") as handle:
            loaded = json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"selection: {path} is not JSON ({error})") from None
    if not isinstance(loaded, dict) or not {"table", "best", "best_em", "states"} <= set(loaded):
        raise ValueError(f"selection: {path} is not a selection.json written by bayes_glmhmm")
    return loaded


def _selection_table(selection) -> _Table:
    from bayes_glmhmm.selection_io import summary_table

    table = summary_table(selection)
    align = ["left", "left"] + ["right"] * (len(table.header) - 2)
    return _Table(table.header, table.rows, table.flags, align)


def _selection_blocks(idata, selection, figure_stems) -> list:
    """The section's blocks: what was compared, the table, the rule and choices, and the figure."""
    from bayes_glmhmm.selection_io import selection_conclusion, selection_lead

    blocks = [("p", selection_lead(selection)), ("table", _selection_table(selection))]
    blocks += [("p", sentence) for sentence in selection_conclusion(selection)]
    attrs = idata.posterior.attrs
    if "num_states" in attrs:
        blocks.append(("p", f"The posterior of this report has K = {int(attrs['num_states'])} states."))
    if "selection" in figure_stems:
        blocks.append(("figure", "selection"))
    return blocks


def _selection_figure(selection) -> tuple[str, str, str, PendingPng]:
    from bayes_glmhmm.plots import plot_selection

    return (
        "selection",
        "Held-out prediction against the number of states",
        "Held-out bits per trial over the family's baseline (0, dotted) for each K, ±1 standard error: the "
        "Bayesian posterior predictive (blue circles) and EM's plug-in maximum likelihood in k-fold "
        "cross-validation (orange squares, shifted right). Stars mark the K each score chose under the rule.",
        _own_figure(plot_selection(selection)),
    )


# --- rendering ----------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       max-width: 1180px; margin: 2em auto; padding: 0 1em; color: #1a1a1a; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.8em; }
p.lead { color: #444; margin-top: 0; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #d0d0d0; padding: 0.25em 0.6em; }
th { background: #eef2f7; text-align: center; }
td.right { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) td { background: #f8f8f8; }
td.flag, tbody tr:nth-child(even) td.flag { background: #f6d5b8; font-weight: bold; white-space: nowrap; }
td.flag::before { content: "\\26A0\\FE0E  "; color: #8a3b00; }
.verdict { padding: 0.7em 1em; border-radius: 6px; font-size: 1.05em; margin: 1em 0; }
.verdict.ok { background: #d6ecf7; border-left: 6px solid #0072B2; }
.verdict.bad { background: #f6d5b8; border-left: 6px solid #D55E00; }
.fit-verdict.not-converged { background: #fde2e2; border: 2px solid #c00000; color: #6b0000;
       padding: 0.6em 1em; border-radius: 6px; margin: 1em 0; }
.fit-verdict.not-converged ul { margin: 0.4em 0 0.2em 0; }
.fit-verdict.converged { color: #1a1a1a; }
figure { margin: 1em 0 2em 0; } figure img { max-width: 100%; border: 1px solid #e0e0e0; }
figcaption { color: #444; font-size: 0.92em; margin-top: 0.3em; max-width: 900px; }
nav ul { columns: 3; font-size: 0.92em; } code { background: #f2f2f2; padding: 0 0.2em; }
details summary { cursor: pointer; color: #0058a0; }
"""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _html_table(table: _Table) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in table.header) if any(table.header) else ""
    lines = ["<table>"]
    if head:
        lines.append(f"<thead><tr>{head}</tr></thead>")
    lines.append("<tbody>")
    for row, flags in zip(table.rows, table.flags, strict=True):
        cells = []
        for cell, flag, align in zip(row, flags, table.align, strict=True):
            classes = " ".join(c for c in ("right" if align == "right" else "", "flag" if flag else "") if c)
            attribute = f' class="{classes}"' if classes else ""
            cells.append(f"<td{attribute}>{html.escape(cell)}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _markdown_table(table: _Table) -> str:
    def _escape(text: str) -> str:
        return text.replace("|", "\\|")

    header = [_escape(cell) or " " for cell in table.header]
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---:" if align == "right" else "---" for align in table.align) + "|")
    for row, flags in zip(table.rows, table.flags, strict=True):
        cells = [f"**{_escape(cell)} (!)**" if flag else _escape(cell) for cell, flag in zip(row, flags, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _sections(idata, source, thresholds, checks, summary, chains, relabeling, probabilities, figures, selection=None):
    """The report as a list of (title, [blocks]); a block is ("p", text), ("table", _Table) or ("figure", stem)."""
    figure_stems = {stem for stem, *_ in figures}
    num_chains = idata.posterior.sizes["chain"]
    failed = [check["check"] for check in checks if not check["passed"]]
    sections = [
        (
            "Overview",
            [("verdict", failed), ("table", _overview_table(idata, source))],
        ),
        (
            "Convergence checks",
            [
                (
                    "p",
                    "Thresholds after Vehtari et al. (2021): rank-normalized split R-hat at most "
                    f"{thresholds['max_rhat']} and bulk and tail effective sample sizes of at least "
                    f"{thresholds['min_ess_per_chain']:.0f} per chain; E-BFMI of at least {thresholds['min_bfmi']} "
                    "(Betancourt 2016); no divergent transitions. Failed checks are highlighted and marked ⚠.",
                ),
                ("table", _checks_table(checks)),
            ],
        ),
        (
            "Summary table",
            [
                (
                    "p",
                    "az.summary of every parameter after relabeling: mean, standard deviation, 94% highest "
                    "density interval, Monte Carlo standard error of the mean, bulk and tail ESS and R-hat. "
                    "Cells past a threshold are highlighted and marked ⚠. The same table, unrounded, is in "
                    "summary.csv.",
                ),
                ("table", _summary_table(summary, thresholds, num_chains)),
            ],
        ),
    ]
    sampler = [
        (
            "p",
            "Per chain: divergent transitions, E-BFMI, the adapted step size, the tree depth (and how often it "
            "hit the maximum) and the median log density, which is how a stuck chain is detected.",
        ),
        ("table", _chains_table(chains, thresholds)),
    ]
    sampler += [("figure", stem) for stem in ("energy", "lp_by_chain") if stem in figure_stems]
    sections.append(("Sampler: divergences, energy, stuck chains", sampler))
    sections.append(("Trace and rank plots", [("figure", stem) for stem in ("trace", "rank") if stem in figure_stems]))
    if relabeling is not None:
        before, after = relabeling["max_rhat_raw"], relabeling["max_rhat_relabeled"]
        sections.append(
            (
                "Relabeling (label switching)",
                [
                    (
                        "p",
                        "The likelihood of an HMM does not change when its states are permuted, so chains can "
                        "settle in different labelings and a chain can switch labels. Every draw was matched "
                        "to a common labeling (Hungarian algorithm on the per-state emission parameters) before "
                        "anything in this report was computed. Maximum R-hat of the emission parameters: "
                        f"{_fmt(before)} on the raw draws, {_fmt(after)} after relabeling.",
                    ),
                    ("table", _relabeling_table(relabeling)),
                    ("figure", "trace_before_relabeling"),
                ],
            )
        )
    if "parameters" in figure_stems:
        sections.append(("Parameter posteriors", [("figure", "parameters")]))
    if "emission_curves" in figure_stems:
        sections.append(("Emission curves", [("figure", "emission_curves")]))
    if _transition_input_names(idata) is not None:
        blocks = [
            (
                "p",
                "Input-driven transitions: p(z[t+1] = j | z[t] = i, u[t]) = softmax_j(log A[i, j] + V[i, j] · u[t]) "
                "with V[i, i] = 0, so the transition weight V[i, j, m] is the change, per unit of transition input "
                "m, in the log-odds of moving from state i to state j rather than staying in i (positive: the input "
                "makes the move i → j more likely); A, the transition matrix, holds the transition probabilities "
                "at u = 0. The input of step t acts on the transition to step t + 1. Posterior mean and central "
                "90% interval of every weight:",
            ),
            ("table", _transition_weights_table(idata)),
        ]
        blocks += [("figure", stem) for stem, *_ in figures if stem.startswith("transition_probabilities_")]
        sections.append(("Input-driven transitions", blocks))
    if probabilities is not None:
        blocks = [
            (
                "p",
                "Posterior state probabilities p(z[n, t] = k | y, x): the smoothed marginals averaged over "
                "every posterior draw, so that they carry the parameters' uncertainty. Steps whose most "
                "probable state has probability below 0.9 are counted as uncertain.",
            ),
            ("table", _states_table(probabilities)),
        ]
        blocks += [("figure", stem) for stem in ("state_probabilities", "states_sequence0") if stem in figure_stems]
        sections.append(("Posterior state probabilities", blocks))
    if selection is not None:
        sections.append((_SELECTION_TITLE, _selection_blocks(idata, selection, figure_stems)))
    return sections


def _verdict_html(verdict: dict) -> str:
    """The fit's verdict at the top: a red box listing the problems, or one plain "converged" line."""
    checks = html.escape(verdict["thresholds"].describe())
    if verdict["converged"]:
        return f'<p class="fit-verdict converged">✔ <b>Converged</b>: {checks}.</p>'
    items = "".join(f"<li>{html.escape(problem)}</li>" for problem in verdict["problems"])
    return (
        '<div class="fit-verdict not-converged" role="alert">⚠ <b>Not converged: do not trust these draws as '
        f"they are.</b> The fit's verdict ({checks}) found:<ul>{items}</ul></div>"
    )


def _verdict_markdown(verdict: dict) -> list[str]:
    """The fit's verdict at the top, in Markdown (which has no colour: a marked quote block)."""
    if verdict["converged"]:
        return [f"✔ **Converged**: {verdict['thresholds'].describe()}.", ""]
    lines = [
        "> ⚠ **NOT CONVERGED: do not trust these draws as they are.** "
        f"The fit's verdict ({verdict['thresholds'].describe()}) found:",
        ">",
    ]
    return lines + [f"> - {problem}" for problem in verdict["problems"]] + [""]


def _render_html(title, sections, figures, verdict: dict | None = None) -> str:
    by_stem = {stem: (name, caption, png) for stem, name, caption, png in figures}
    body = [f"<h1>{html.escape(title)}</h1>"]
    body.append('<p class="lead">Diagnostic report of a Bayesian GLM-HMM posterior, written by bayes_glmhmm.</p>')
    if verdict is not None:
        body.append(_verdict_html(verdict))
    body.append("<nav><ul>" + "".join(f'<li><a href="#{_slug(t)}">{html.escape(t)}</a></li>' for t, _ in sections))
    body.append("</ul></nav>")
    for section_title, blocks in sections:
        body.append(f'<h2 id="{_slug(section_title)}">{html.escape(section_title)}</h2>')
        for kind, content in blocks:
            if kind == "p":
                body.append(f"<p>{html.escape(content)}</p>")
            elif kind == "verdict":
                if content:
                    body.append(
                        '<div class="verdict bad">⚠ <b>Do not trust this posterior yet.</b> Failed: '
                        + html.escape("; ".join(content))
                        + "</div>"
                    )
                else:
                    body.append('<div class="verdict ok">✔ <b>Every convergence check passed.</b></div>')
            elif kind == "table":
                body.append(_html_table(content))
            elif kind == "figure" and content in by_stem:
                name, caption, png = by_stem[content]
                data = base64.b64encode(png).decode("ascii")
                body.append(
                    f'<figure id="fig-{content}"><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
                    f"<figcaption><b>{html.escape(name)}.</b> {html.escape(caption)}</figcaption></figure>"
                )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _render_markdown(title, sections, figures, figure_dir: str, verdict: dict | None = None) -> str:
    by_stem = {stem: (name, caption) for stem, name, caption, _ in figures}
    lines = [f"# {title}", "", "Diagnostic report of a Bayesian GLM-HMM posterior, written by bayes_glmhmm.", ""]
    if verdict is not None:
        lines += _verdict_markdown(verdict)
    for section_title, blocks in sections:
        lines += [f"## {section_title}", ""]
        for kind, content in blocks:
            if kind == "p":
                lines += [content, ""]
            elif kind == "verdict":
                if content:
                    lines += ["> ⚠ **Do not trust this posterior yet.** Failed: " + "; ".join(content), ""]
                else:
                    lines += ["> ✔ **Every convergence check passed.**", ""]
            elif kind == "table":
                lines += [_markdown_table(content), ""]
            elif kind == "figure" and content in by_stem:
                name, caption = by_stem[content]
                lines += [f"![{name}]({figure_dir}/{content}.png)", "", f"*{name}.* {caption}", ""]
    return "\n".join(lines)


def write_report(
    idata_or_path, out_dir, title: str | None = None, thresholds: dict | None = None, selection=None
) -> dict[str, str]:
    """Write the diagnostic report of a saved posterior: HTML, Markdown, figures and a summary table.

    Args:
        idata_or_path: an ``arviz.InferenceData`` made by
            :func:`bayes_glmhmm.convert.to_inference_data`, or the path of its netCDF file.
        out_dir: output folder (created if needed); every file is written atomically.
        title: report title; by default "GLM-HMM posterior: <file name>".
        thresholds: overrides of :data:`DEFAULT_THRESHOLDS`.
        selection: the choice of the number of states to report in a section "Choosing the number
            of states" (table, rule, figure): the path of a ``selection.json`` written by
            :func:`bayes_glmhmm.selection_io.write_selection`, its dict, or a
            :class:`~bayes_glmhmm.selection.Selection`. By default the ``selection.json`` beside
            the posterior file, if there is one.

    Returns:
        Paths written: ``html`` (self-contained, figures embedded), ``markdown``, ``summary_csv``,
        and one entry per figure PNG (keyed by its stem, e.g. ``energy``, ``trace``, ``rank``,
        ``selection``).

    Raises:
        ValueError: for a ``selection`` path that does not exist or is not a selection's JSON.
    """
    idata, source = _load(idata_or_path)
    selection = _load_selection(selection, source)
    thresholds = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    chains = _per_chain_stats(idata)
    relabeling = _relabeling(idata)
    posterior = _posterior(idata)
    probabilities = _state_probabilities(idata, posterior)
    # The figures first: inside background_rendering, helper processes draw them during what follows.
    figures = _figures(idata, relabeling, probabilities, chains, posterior)
    if selection is not None:
        figures.append(_selection_figure(selection))
    summary = _summary(idata, _param_names(idata))
    checks = report_checks(idata, thresholds)
    verdict = None if posterior is None else _verdict(posterior)
    if title is None:
        title = "GLM-HMM posterior" + (f": {os.path.basename(source)}" if source != "(in memory)" else "")
    sections = _sections(
        idata, source, thresholds, checks, summary, chains, relabeling, probabilities, figures, selection
    )

    out_dir = os.fspath(out_dir)
    figure_dir = os.path.join(out_dir, "figures")
    os.makedirs(figure_dir, exist_ok=True)
    write_pngs_atomic({f"{stem}.png": png for stem, _, _, png in figures}, figure_dir)
    paths = {stem: os.path.join(figure_dir, f"{stem}.png") for stem, *_ in figures}
    figures = [(stem, name, caption, png.result()) for stem, name, caption, png in figures]
    paths["summary_csv"] = write_text_atomic(os.path.join(out_dir, "summary.csv"), summary.to_csv(float_format="%.6g"))
    paths["markdown"] = write_text_atomic(
        os.path.join(out_dir, "report.md"), _render_markdown(title, sections, figures, "figures", verdict)
    )
    paths["html"] = write_text_atomic(
        os.path.join(out_dir, "report.html"), _render_html(title, sections, figures, verdict)
    )
    return paths
