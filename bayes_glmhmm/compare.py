"""Bayes versus EM: what the whole posterior adds to the article's point estimate.

:func:`compare_fits` puts an EM estimate (by default the article's maximum likelihood) beside a
NUTS posterior of any emission family, for data whose generating parameters and states may be known:

* **parameters**: per scalar parameter of the family (``posterior.family.param_names``) the truth,
  the EM estimate, the posterior mean, sd and central interval, and whether the interval covers
  the truth (and the value the data realized, the family's complete-data estimate);
* **states**: accuracy of the EM Viterbi path and of the posterior's marginal argmax
  argmax_k p(z_t = k | y, x), each after the optimal relabeling;
* **held-out log predictive density** per new sequence: the EM plug-in log p(y_new | theta_EM)
  against the posterior predictive log p(y_new | y) = log E_{theta | y}[p(y_new | theta)],
  estimated by log mean_s p(y_new | theta_s) over the draws;
* **wall time** of each fit.

Labels: every estimate is relabeled to the truth (or, without it, to the posterior's labeling)
with the convention of :mod:`bayes_glmhmm.relabel`: ``estimate.permute(perm)`` carries the
reference's labels. The article applies its permutation to the *truth*, in the direction that is
right only for permutations that are their own inverse; here the estimate is moved, correctly
for every permutation.
"""

import math
import os
from typing import NamedTuple

import numpy as np

from bayes_glmhmm._io import markdown_table, write_text_atomic
from bayes_glmhmm.em import EMResult
from bayes_glmhmm.emissions import family_of
from bayes_glmhmm.model import log_likelihood, most_likely_states
from bayes_glmhmm.params import Priors, validate_data
from bayes_glmhmm.posterior import Posterior
from bayes_glmhmm.relabel import find_state_permutation, invert_permutation, match_params
from bayes_glmhmm.summaries import complete_data_fit, equal_tailed_interval

__all__ = [
    "Comparison",
    "compare_fits",
    "em_objective_name",
    "heldout_log_predictive",
    "aligned_state_accuracy",
    "comparison_to_dict",
    "comparison_to_csv",
    "comparison_to_markdown",
]


class Comparison(NamedTuple):
    """Outcome of :func:`compare_fits`; every estimate is in the reference's labeling.

    Attributes:
        em_objective: what the EM estimate maximizes, e.g. "maximum likelihood".
        prob: probability of the posterior's central intervals (0.94: the 3% and 97% quantiles).
        reference: which labeling everything is expressed in: "truth", "true states" or "posterior".
        parameters: one dict per scalar parameter with ``parameter``, ``index``, ``em``,
            ``posterior_mean``, ``posterior_sd``, ``lower``, ``upper`` and, with a truth,
            ``truth`` and ``covered`` (lower <= truth <= upper); with true states also
            ``realized`` (the complete-data estimate: what this data set realized) and
            ``covers_realized``.
        parameter_summary: per parameter group: coverage of the truth (and of the realized
            values), mean absolute error of the EM estimate and of the posterior mean.
        states: accuracies of the EM Viterbi path and of the posterior marginal argmax, after
            the optimal relabeling (and as labeled by the parameter matching), or None.
        heldout: per held-out sequence n: ``em_plugin`` log p(y_n | theta_EM),
            ``posterior_predictive`` log p(y_n | y_train) and, with a truth, ``truth``
            log p(y_n | theta_true); their sums, and the mean per-sequence gain of the posterior
            over EM with its standard error; or None.
        wall_seconds: ``em`` (the EM fit compared), ``nuts_total`` and ``nuts_sampling`` (the
            posterior's whole fit, and its sampler alone, compile included).
        em_params: the EM estimate (the posterior's family's params NamedTuple), relabeled.
        permutations: ``em`` and ``posterior``: the permutation (new k = old perm[k]) applied to
            each to reach the reference labeling.
    """

    em_objective: str
    prob: float
    reference: str
    parameters: list
    parameter_summary: dict
    states: dict | None
    heldout: dict | None
    wall_seconds: dict
    em_params: tuple
    permutations: dict


def em_objective_name(priors: Priors | None) -> str:
    """Plain-words name of the EM objective: maximum likelihood, or MAP under the given priors."""
    if priors is None:
        return "maximum likelihood"
    fields = ", ".join(f"{name}={float(value):g}" for name, value in Priors(*priors)._asdict().items())
    return f"MAP under Priors({fields})"


def heldout_log_predictive(
    posterior: Posterior, em_params, inputs, emissions, mask=None, transition_inputs=None
) -> dict:
    """Log predictive densities of held-out sequences: posterior predictive and EM plug-in.

    The posterior predictive density of sequence n is
    p(y_n | y_train) = integral p(y_n | theta) p(theta | y_train) dtheta, estimated by
    (1/S) sum_s p(y_n | theta_s) over all S draws (in log space, with logsumexp); the EM plug-in
    density is p(y_n | theta_EM). Both sum out the hidden states of the new sequence.

    Args:
        posterior: the fitted posterior.
        em_params: a point estimate of the posterior's family (any labeling: the density does not
            depend on it), or None.
        inputs: held-out covariates, (N, T, D) or (T, D).
        emissions: held-out observations, (N, T) or (T,), in any coding the family accepts.
        mask: optional, False where a held-out emission is missing.
        transition_inputs: the held-out (N, T, M) transition inputs of an input-driven posterior.

    Returns:
        Dict of float lists over the N sequences, ``posterior_predictive`` and (with em_params)
        ``em_plugin``, plus their sums ``*_total``.
    """
    inputs, emissions, mask = validate_data(inputs, emissions, mask, posterior.family)
    predictive = posterior.log_predictive_density(inputs, emissions, mask, transition_inputs)
    result = {"posterior_predictive": predictive.tolist(), "posterior_predictive_total": float(predictive.sum())}
    if em_params is not None:
        plugin = np.asarray(log_likelihood(em_params, inputs, emissions, mask, transition_inputs), dtype=np.float64)
        result["em_plugin"] = plugin.tolist()
        result["em_plugin_total"] = float(plugin.sum())
    return result


def aligned_state_accuracy(true_states, estimated_states, num_states: int, mask=None) -> tuple[float, np.ndarray]:
    """Accuracy of an estimated state path after the relabeling that maximizes agreement.

    Args:
        true_states: (N, T) true labels.
        estimated_states: (N, T) estimated labels, in any labeling.
        num_states: K.
        mask: optional (N, T), False at steps to leave out.

    Returns:
        ``(accuracy, perm)``: the fraction of (observed) steps where
        ``invert_permutation(perm)[estimated_states]`` equals ``true_states``, and ``perm``
        (new state k = estimated state perm[k]).
    """
    true_states, estimated_states = np.asarray(true_states), np.asarray(estimated_states)
    keep = np.ones(true_states.shape, bool) if mask is None else np.asarray(mask, bool)
    permutation = find_state_permutation(true_states[keep], estimated_states[keep], num_states)
    relabeled = invert_permutation(permutation)[estimated_states]
    return float(np.mean(relabeled[keep] == true_states[keep])), permutation


def _as_numpy_params(params, family, argument: str):
    """``params`` as float64 NumPy arrays in ``family``'s params type; ValueError naming ``argument`` otherwise.

    A family's params NamedTuple must be of ``family``'s type (and number of classes); a plain
    tuple is read in the order of ``family.param_names``.
    """
    if hasattr(params, "_fields"):
        given = family_of(params)
        if given != family:
            raise ValueError(
                f"{argument} holds parameters of the {given.name} family (num_classes={given.num_classes}), "
                f"the posterior is of the {family.name} family (num_classes={family.num_classes})"
            )
    elif len(params) != len(family.param_names):
        raise ValueError(f"{argument} must hold the {family.name} family's parameters {family.param_names}")
    return family.params_type(*(None if p is None else np.asarray(p, dtype=np.float64) for p in params))


def _is_posterior_start(em_result: EMResult, posterior: Posterior) -> bool:
    """Whether ``em_result`` is the posterior's own MAP-EM start (also after ``posterior.permute``)."""
    start = posterior.em
    return start is not None and (
        em_result is start
        or (
            em_result.wall_seconds == start.wall_seconds
            and np.array_equal(np.asarray(em_result.log_probs), np.asarray(start.log_probs))
        )
    )


def _realized(true_states, posterior: Posterior):
    """Complete-data estimate of the training data in the posterior's family, or None.

    None when a state has fewer observed steps than its emission coefficients plus one, or when
    the estimate does not converge (e.g. classes perfectly separated within a state, whose
    maximum likelihood lies at infinity): there is then no realized value to cover.
    """
    true_states = np.asarray(true_states)
    if true_states.shape != posterior.emissions.shape or not np.all(posterior.mask):
        return None
    counts = np.bincount(true_states.ravel(), minlength=posterior.num_states)
    if np.any(counts < posterior.inputs.shape[-1] + 2):
        return None
    fit = complete_data_fit(
        true_states, posterior.inputs, posterior.emissions, posterior.num_states, family=posterior.family
    )
    return fit.params if fit.converged else None


def _parameter_rows(names, samples: dict, em_params, truth, realized, prob: float) -> list[dict]:
    rows = []
    for name in names:
        draws = np.asarray(samples[name], dtype=np.float64)
        flat = draws.reshape((-1,) + draws.shape[2:])
        mean, sd = flat.mean(axis=0), flat.std(axis=0)
        lower, upper = equal_tailed_interval(draws, prob)
        em_value = np.asarray(getattr(em_params, name), dtype=np.float64)
        realized_value = None if realized is None else getattr(realized, name, None)
        for index in np.ndindex(mean.shape):
            if name == "transition_weights" and index[0] == index[1]:
                continue  # V[i, i] = 0 by construction: no parameter, and it would inflate coverage
            row = {"parameter": name, "index": list(index)}
            if truth is not None:
                row["truth"] = float(np.asarray(getattr(truth, name))[index])
            row["em"] = float(em_value[index])
            row.update(
                posterior_mean=float(mean[index]),
                posterior_sd=float(sd[index]),
                lower=float(lower[index]),
                upper=float(upper[index]),
            )
            if truth is not None:
                row["covered"] = bool(row["lower"] <= row["truth"] <= row["upper"])
            if realized_value is not None:
                row["realized"] = float(np.asarray(realized_value)[index])
                row["covers_realized"] = bool(row["lower"] <= row["realized"] <= row["upper"])
            rows.append(row)
    return rows


def _parameter_summary(names, rows: list[dict]) -> dict:
    summary = {}
    for name in (None, *names):
        group = [row for row in rows if name is None or row["parameter"] == name]
        entry = {"num_parameters": len(group)}
        with_truth = [row for row in group if "truth" in row]
        if with_truth:
            entry["coverage"] = float(np.mean([row["covered"] for row in with_truth]))
            entry["em_mean_abs_error"] = float(np.mean([abs(row["em"] - row["truth"]) for row in with_truth]))
            entry["posterior_mean_abs_error"] = float(
                np.mean([abs(row["posterior_mean"] - row["truth"]) for row in with_truth])
            )
        with_realized = [row for row in group if "realized" in row]
        if with_realized:
            # The complete-data fit estimates the emissions and a stationary chain only.
            entry["coverage_of_realized"] = float(np.mean([row["covers_realized"] for row in with_realized]))
        summary[name or "all"] = entry
    return summary


def compare_fits(
    posterior: Posterior,
    em_result,
    truth=None,
    true_states=None,
    heldout_inputs=None,
    heldout_emissions=None,
    heldout_mask=None,
    prob: float = 0.94,
    em_priors: Priors | None = None,
    heldout_states=None,
    heldout_transition_inputs=None,
) -> Comparison:
    """Compare an EM point estimate with a NUTS posterior, against the truth where it is known.

    Args:
        posterior: the NUTS posterior (any labeling, any emission family).
        em_result: the EM fit (an :class:`~bayes_glmhmm.em.EMResult`, or bare parameters of the
            posterior's family).
        truth: the generating parameters (of the posterior's family), if known.
        true_states: (N, T) true states of the training data, if known: gives state recovery
            and the realized (complete-data) parameter values.
        heldout_inputs: covariates of held-out sequences, (N', T', D).
        heldout_emissions: their observations, (N', T'); given with ``heldout_inputs``.
        heldout_mask: optional mask of the held-out emissions.
        prob: probability of the central posterior intervals.
        em_priors: the priors the EM fit maximized under; None means maximum likelihood (the
            article's). When ``em_result`` is ``posterior.em`` (the sampler's own MAP
            initialization), the posterior's priors are used.
        heldout_states: true states of the held-out sequences, if known: adds held-out state
            recovery (EM Viterbi vs posterior marginal argmax on the new data).
        heldout_transition_inputs: the held-out sequences' (N', T', M) transition inputs, for a
            posterior with input-driven transitions.

    Returns:
        A :class:`Comparison`.

    Raises:
        ValueError: for a ``prob`` outside (0, 1), held-out inputs without emissions (or held-out
            states without both), an estimate or truth of another family than the posterior's, or
            an estimate whose number of states differs from the posterior's.
    """
    if not 0.0 < prob < 1.0:
        raise ValueError(f"prob must lie in (0, 1), got {prob}")
    if (heldout_inputs is None) != (heldout_emissions is None):
        raise ValueError("heldout_inputs and heldout_emissions must be given together")
    if heldout_states is not None and heldout_inputs is None:
        raise ValueError("heldout_states needs heldout_inputs and heldout_emissions")
    if isinstance(em_result, EMResult):
        if em_priors is None and _is_posterior_start(em_result, posterior):
            em_priors = posterior.priors
        em_params, em_seconds = em_result.params, float(em_result.wall_seconds)
    else:
        em_params, em_seconds = em_result, float("nan")
    family = posterior.family
    em_params = _as_numpy_params(em_params, family, "em_result")
    if em_params.num_states != posterior.num_states:
        raise ValueError(f"the EM estimate has {em_params.num_states} states, the posterior {posterior.num_states}")
    num_states = posterior.num_states
    if truth is not None:
        truth = _as_numpy_params(truth, family, "truth")

    # One labeling for everything: the truth's, else the true states', else the posterior's.
    if truth is not None:
        reference = "truth"
        posterior_perm = match_params(posterior.posterior_mean(), truth)
        em_perm = match_params(em_params, truth)
    elif true_states is not None:
        reference = "true states"
        posterior_perm = find_state_permutation(true_states, posterior.state_probabilities().argmax(-1), num_states)
        em_path = most_likely_states(
            em_params, posterior.inputs, posterior.emissions, transition_inputs=posterior.transition_inputs
        )
        em_perm = find_state_permutation(true_states, np.asarray(em_path), num_states)
    else:
        reference = "posterior"
        posterior_perm = np.arange(num_states)
        em_perm = match_params(em_params, posterior.posterior_mean())
    posterior = posterior.permute(posterior_perm)
    em_params = em_params.permute(em_perm)

    realized = None if true_states is None else _realized(true_states, posterior)
    if realized is not None and posterior.transitions.is_input_driven:
        # The empirical transition frequencies average over the transition inputs: not A at u = 0.
        realized = realized._replace(transition_matrix=None)
    rows = _parameter_rows(posterior.param_names, posterior.samples, em_params, truth, realized, prob)

    states = None
    if true_states is not None or heldout_states is not None:
        states = {"em_estimator": "Viterbi path", "posterior_estimator": "argmax_k p(z_t = k | y, x)"}
        sets = []
        if true_states is not None:
            sets.append(("train", true_states, None))
        if heldout_states is not None:
            sets.append(("heldout", heldout_states, (heldout_inputs, heldout_emissions, heldout_mask)))
        for label, truth_path, data in sets:
            inputs, emissions, mask = (
                (posterior.inputs, posterior.emissions, posterior.mask)
                if data is None
                else validate_data(*data, family=family)
            )
            transition_inputs = posterior.transition_inputs if data is None else heldout_transition_inputs
            truth_path = np.asarray(truth_path).reshape(np.shape(emissions))
            em_path = np.asarray(most_likely_states(em_params, inputs, emissions, mask, transition_inputs))
            new_data = {} if data is None else dict(inputs=inputs, emissions=emissions, mask=mask)
            if data is not None and transition_inputs is not None:
                new_data["transition_inputs"] = transition_inputs
            posterior_path = posterior.state_probabilities(**new_data).argmax(-1)
            mask = np.asarray(mask)
            for who, path in (("em_viterbi", em_path), ("posterior", posterior_path)):
                accuracy, permutation = aligned_state_accuracy(truth_path, path, num_states, mask)
                states[f"{label}_{who}_accuracy"] = accuracy
                states[f"{label}_{who}_accuracy_as_labeled"] = float(np.mean((path == truth_path)[mask]))
                states[f"{label}_{who}_state_permutation"] = permutation.tolist()

    heldout = None
    if heldout_inputs is not None:
        heldout = heldout_log_predictive(
            posterior, em_params, heldout_inputs, heldout_emissions, heldout_mask, heldout_transition_inputs
        )
        gain = np.asarray(heldout["posterior_predictive"]) - np.asarray(heldout["em_plugin"])
        heldout["num_sequences"] = int(gain.size)
        heldout["gain_per_sequence_mean"] = float(gain.mean())
        heldout["gain_per_sequence_se"] = float(gain.std(ddof=1) / math.sqrt(gain.size)) if gain.size > 1 else None
        if truth is not None:
            oracle = log_likelihood(truth, heldout_inputs, heldout_emissions, heldout_mask, heldout_transition_inputs)
            oracle = np.asarray(oracle, np.float64)
            heldout["truth"] = oracle.tolist()
            heldout["truth_total"] = float(oracle.sum())

    wall = posterior.wall_seconds or {}
    return Comparison(
        em_objective=em_objective_name(em_priors),
        prob=float(prob),
        reference=reference,
        parameters=rows,
        parameter_summary=_parameter_summary(posterior.param_names, rows),
        states=states,
        heldout=heldout,
        wall_seconds={
            "em": em_seconds,
            "nuts_total": float(wall.get("total", float("nan"))),
            "nuts_sampling": float(wall.get("nuts", float("nan"))),
        },
        em_params=em_params,
        permutations={"em": em_perm.tolist(), "posterior": np.asarray(posterior_perm).tolist()},
    )


def _finite_or_none(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def comparison_to_dict(comparison: Comparison) -> dict:
    """A JSON-ready dict of the comparison (NaN written as null), e.g. for ``summary.json``."""
    return {
        "em_objective": comparison.em_objective,
        "interval_probability": comparison.prob,
        "labeling": comparison.reference,
        "parameters": comparison.parameter_summary,
        "states": comparison.states,
        "heldout_log_predictive": comparison.heldout,
        "wall_seconds": {name: _finite_or_none(value) for name, value in comparison.wall_seconds.items()},
        "permutations": comparison.permutations,
        "em_params": {
            name: np.asarray(value).tolist()
            for name, value in comparison.em_params._asdict().items()
            if value is not None
        },
    }


def _percent(prob: float) -> str:
    return f"{100 * prob:g}"


def _format(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def _index_label(index) -> str:
    return "-".join(str(i) for i in index) if len(index) else "-"


def _long_rows(comparison: Comparison) -> list[dict]:
    """All sections as one long table: section, quantity, index, truth, em, posterior, ..."""
    rows = []
    for row in comparison.parameters:
        rows.append(
            {
                "section": "parameter",
                "quantity": row["parameter"],
                "index": _index_label(row["index"]),
                "truth": row.get("truth"),
                "em": row["em"],
                "posterior": row["posterior_mean"],
                "posterior_sd": row["posterior_sd"],
                "lower": row["lower"],
                "upper": row["upper"],
                "covered": row.get("covered"),
                "realized": row.get("realized"),
                "covers_realized": row.get("covers_realized"),
            }
        )
    if comparison.states is not None:
        for label in ("train", "heldout"):
            if f"{label}_em_viterbi_accuracy" in comparison.states:
                rows.append(
                    {
                        "section": "states",
                        "quantity": f"{label}_accuracy_after_alignment",
                        "index": "-",
                        "truth": 1.0,
                        "em": comparison.states[f"{label}_em_viterbi_accuracy"],
                        "posterior": comparison.states[f"{label}_posterior_accuracy"],
                    }
                )
    if comparison.heldout is not None:
        heldout = comparison.heldout
        truths = heldout.get("truth", [None] * heldout["num_sequences"])
        for n in range(heldout["num_sequences"]):
            rows.append(
                {
                    "section": "heldout_log_predictive",
                    "quantity": "sequence",
                    "index": str(n),
                    "truth": truths[n],
                    "em": heldout["em_plugin"][n],
                    "posterior": heldout["posterior_predictive"][n],
                }
            )
        rows.append(
            {
                "section": "heldout_log_predictive",
                "quantity": "total",
                "index": "-",
                "truth": heldout.get("truth_total"),
                "em": heldout["em_plugin_total"],
                "posterior": heldout["posterior_predictive_total"],
            }
        )
    rows.append(
        {
            "section": "wall_seconds",
            "quantity": "fit",
            "index": "-",
            "em": comparison.wall_seconds["em"],
            "posterior": comparison.wall_seconds["nuts_total"],
        }
    )
    return rows


def comparison_to_csv(comparison: Comparison, path: str | os.PathLike | None = None) -> str:
    """The comparison as one long CSV table, written atomically to ``path`` if given.

    Columns: ``section`` (parameter, states, heldout_log_predictive, wall_seconds), ``quantity``,
    ``index``, ``truth``, ``em``, ``posterior``, ``posterior_sd``, ``lower_<p>``, ``upper_<p>``,
    ``covered``, ``realized``, ``covers_realized``. In the parameter rows ``posterior`` is the
    posterior mean; in the state rows both estimates' accuracies after optimal relabeling; in the
    held-out rows log p(y_n | theta_EM), log p(y_n | y_train) and (truth) log p(y_n | theta_true);
    in the wall-time row the seconds of the EM fit and of the whole NUTS fit.

    Args:
        comparison: from :func:`compare_fits`.
        path: where to write, or None.

    Returns:
        The CSV text.
    """
    percent = _percent(comparison.prob)
    columns = ["section", "quantity", "index", "truth", "em", "posterior", "posterior_sd", "lower", "upper"]
    columns += ["covered", "realized", "covers_realized"]
    header = [f"{name}_{percent}" if name in ("lower", "upper") else name for name in columns]
    lines = [",".join(header)]
    for row in _long_rows(comparison):
        lines.append(",".join(_format(row.get(name)) for name in columns))
    text = "\n".join(lines) + "\n"
    if path is not None:
        write_text_atomic(path, text)
    return text


def _number(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def comparison_to_markdown(comparison: Comparison, path: str | os.PathLike | None = None) -> str:
    """The comparison as Markdown tables (parameters, states, held-out density, wall time).

    Args:
        comparison: from :func:`compare_fits`.
        path: where to write atomically, or None.

    Returns:
        The Markdown text.
    """
    percent = _percent(comparison.prob)
    has_truth = any("truth" in row for row in comparison.parameters)
    has_realized = any("realized" in row for row in comparison.parameters)
    lines = [
        "# Full Bayes (NUTS) vs EM",
        "",
        f"EM objective: **{comparison.em_objective}**. Posterior: mean and central {percent}% interval "
        f"over all draws. Labels aligned to the {comparison.reference} "
        f"(EM permutation {comparison.permutations['em']}, posterior permutation "
        f"{comparison.permutations['posterior']}; new state k = old state perm[k]).",
        "",
        "## Parameters",
        "",
    ]
    header = ["parameter"] + (["truth"] if has_truth else []) + ["EM", "posterior mean", f"{percent}% interval"]
    header += (["covers truth"] if has_truth else []) + (["realized", "covers realized"] if has_realized else [])
    body = []
    for row in comparison.parameters:
        index = ",".join(str(i) for i in row["index"])
        cells = [f"{row['parameter']}[{index}]"] + ([_number(row["truth"])] if has_truth else [])
        cells += [_number(row["em"]), _number(row["posterior_mean"]), f"[{row['lower']:.3f}, {row['upper']:.3f}]"]
        cells += (["yes" if row["covered"] else "**no**"] if has_truth else []) + (
            [_number(row["realized"]), "yes" if row["covers_realized"] else "**no**"] if has_realized else []
        )
        body.append(cells)
    lines += markdown_table(header, body)
    if has_truth:
        lines += ["", "Per group: coverage of the truth by the intervals; mean absolute error of each estimate.", ""]
        header = ["group", "parameters", f"{percent}% coverage", "EM abs. error", "posterior-mean abs. error"]
        header += ["coverage of realized"] if has_realized else []
        body = []
        for group, entry in comparison.parameter_summary.items():
            cells = [group, str(entry["num_parameters"]), _number(entry["coverage"], 2)]
            cells += [_number(entry["em_mean_abs_error"]), _number(entry["posterior_mean_abs_error"])]
            cells += [_number(entry.get("coverage_of_realized"), 2)] if has_realized else []
            body.append(cells)
        lines += markdown_table(header, body)
    if comparison.states is not None:
        lines += [
            "",
            "## State recovery",
            "",
            "Fraction of steps labeled correctly after the relabeling that maximizes agreement: the EM "
            "Viterbi path (given theta_EM) vs the posterior's argmax_k p(z_t = k | y, x), which averages over the "
            "parameters' uncertainty.",
            "",
        ]
        body = []
        for label in ("train", "heldout"):
            if f"{label}_em_viterbi_accuracy" in comparison.states:
                body.append(
                    [
                        "training data" if label == "train" else "held-out sequences",
                        _number(comparison.states[f"{label}_em_viterbi_accuracy"]),
                        _number(comparison.states[f"{label}_posterior_accuracy"]),
                    ]
                )
        lines += markdown_table(["data", "EM Viterbi", "posterior"], body)
    if comparison.heldout is not None:
        heldout = comparison.heldout
        has_oracle = "truth" in heldout
        lines += [
            "",
            "## Held-out log predictive density",
            "",
            "Per held-out sequence: EM plug-in log p(y_n | theta_EM) vs posterior predictive "
            "log p(y_n | y_train) = log mean_s p(y_n | theta_s)"
            + (", and the generator's log p(y_n | theta_true) for reference." if has_oracle else "."),
            "",
        ]
        header = ["sequence", "EM plug-in", "posterior predictive", "posterior - EM"]
        header += ["truth"] if has_oracle else []
        body = []
        for n in range(heldout["num_sequences"]):
            em, bayes = heldout["em_plugin"][n], heldout["posterior_predictive"][n]
            cells = [str(n), _number(em, 2), _number(bayes, 2), _number(bayes - em, 2)]
            cells += [_number(heldout["truth"][n], 2)] if has_oracle else []
            body.append(cells)
        em, bayes = heldout["em_plugin_total"], heldout["posterior_predictive_total"]
        cells = ["**total**", _number(em, 2), _number(bayes, 2), _number(bayes - em, 2)]
        cells += [_number(heldout["truth_total"], 2)] if has_oracle else []
        body.append(cells)
        lines += markdown_table(header, body)
        if heldout.get("gain_per_sequence_se") is not None:
            lines += [
                "",
                f"Mean gain of the posterior predictive over the EM plug-in: "
                f"{heldout['gain_per_sequence_mean']:.3f} ± {heldout['gain_per_sequence_se']:.3f} nats per sequence "
                f"(± one standard error over the {heldout['num_sequences']} sequences).",
            ]
    wall = comparison.wall_seconds
    lines += [
        "",
        "## Wall time",
        "",
        *markdown_table(
            ["fit", "seconds"],
            [
                [f"EM ({comparison.em_objective.split(' under ')[0]})", _number(wall["em"], 2)],
                ["NUTS, whole fit (its MAP-EM start, sampling, relabeling)", _number(wall["nuts_total"], 2)],
                ["NUTS sampling alone (compile included)", _number(wall["nuts_sampling"], 2)],
            ],
        ),
    ]
    text = "\n".join(lines) + "\n"
    if path is not None:
        write_text_atomic(path, text)
    return text
