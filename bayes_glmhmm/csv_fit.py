"""Fit a GLM-HMM of any emission family to a user's long-format CSV and write a results folder.

This is ``bayes-glmhmm fit``. :func:`run_fit` runs these named steps:

1. :func:`read_fit_data`: read the CSV for the family (text class labels coded, see
   :mod:`bayes_glmhmm.tabular`), resolve the family (a categorical family's C inferred when not
   given) and check every observed target against the family's support, naming column and data row;
2. :func:`bayes_glmhmm.fit.fit_nuts`;
3. :func:`_write_posterior`: ``posterior.nc`` (with the transition inputs' names as the
   ``transition_input`` coordinate of input-driven transitions);
4. :func:`_write_state_probabilities`: ``state_probabilities.csv``, one row per data row with the
   posterior state probabilities and the prediction of the target (:func:`conditional_predictive_mean`);
5. :func:`_write_parameters`: ``parameters.csv`` / ``parameters.md`` labelled by state, class and input;
6. :func:`_write_classes`: ``classes.csv``, the class coding (families with class targets only);
7. :func:`_fit_figures`: the PNG figures, among them one ``emission_curves_*.png`` per input
   and, for input-driven transitions, one ``transition_probabilities_*.png`` per transition input;
8. :func:`_fit_summary`: ``summary.json``, written last (its ``transitions`` entry records the
   transition model and, for input-driven transitions, the posterior of every transition weight).

Every file is written atomically (complete or absent), and a previous ``summary.json`` in the output
folder is removed first, so a folder holds a ``summary.json`` only when every file it lists is from
the same, finished fit.

:func:`run_select` is ``bayes-glmhmm select``: the same CSV, read by the same steps (:func:`read_fit_data`,
:func:`model_arrays`), given to :func:`bayes_glmhmm.selection.select_num_states` to choose the number of
states, its results written by :func:`bayes_glmhmm.selection_io.write_selection`.
"""

import os
import re
from typing import NamedTuple

import numpy as np

from bayes_glmhmm._io import (
    csv_text,
    markdown_table,
    remove_if_exists,
    render_figures,
    write_json_atomic,
    write_pngs_atomic,
    write_text_atomic,
)
from bayes_glmhmm.emission_support import coded_targets
from bayes_glmhmm.emissions import FAMILY_NAMES, EmissionFamily, get_family, resolve_family
from bayes_glmhmm.family_names import CLASS_TARGET_FAMILIES, csv_target_options
from bayes_glmhmm.params import Priors, validate_num_states
from bayes_glmhmm.summaries import equal_tailed_interval
from bayes_glmhmm.tabular import TabularData, read_long_csv
from bayes_glmhmm.tabular import check_supported_states as supported_by_table

__all__ = [
    "FitData",
    "ModelArrays",
    "check_supported_states",
    "model_arrays",
    "read_fit_data",
    "run_fit",
    "run_select",
    "transitions_argument",
    "state_probability_rows",
    "conditional_predictive_mean",
    "parameter_rows",
    "CLASS_ORDER_RULE",
]

# The families whose targets are classes (text labels allowed), with their number of classes
# (None: the family's own num_classes, given or inferred). Every other family's target is a number.
CLASS_ORDER_RULE = (
    "numeric labels keep their values (bernoulli: 0/1, or -1/+1 with -1 coded 0); text labels are coded "
    "in sorted (Python string) order, except true/false (any case), coded false = 0, true = 1"
)


class FitData(NamedTuple):
    """A CSV read for one emission family.

    Attributes:
        table: the padded arrays (targets as read: numbers, or the codes of text labels).
        family: the resolved emission family.
        emissions: (N, T) observed targets in the family's coding (e.g. -1/+1 as 0/1), zeros where missing.
        class_labels: for families with class targets, the label of each class code 0..C-1
            (a text label, the numeric value coded c, or ``class_c`` for a class never observed);
            None for numeric targets (Gaussian, Poisson).
    """

    table: TabularData
    family: EmissionFamily
    emissions: np.ndarray
    class_labels: list | None


def _class_labels(table: TabularData, family: EmissionFamily, coded: np.ndarray) -> list | None:
    """The label of each class code (see :class:`FitData`), or None for a numeric target."""
    if family.name not in CLASS_TARGET_FAMILIES:
        return None
    num_classes = family.num_classes or CLASS_TARGET_FAMILIES[family.name]
    if table.class_labels is not None:
        known = list(table.class_labels)
        return known + [f"class_{code}" for code in range(len(known), num_classes)]
    labels = []
    for code in range(num_classes):
        originals = np.unique(table.emissions[table.mask & (coded == code)])
        labels.append(f"{originals[0]:g}" if originals.size == 1 else str(code))
    return labels


def read_fit_data(
    data_path,
    target: str,
    inputs: list[str],
    sequence: str | None = None,
    family: str = "gaussian",
    num_classes: int | None = None,
    transition_inputs: list[str] | None = None,
    subject: str | None = None,
) -> FitData:
    """Read a long-format CSV for an emission family and check its targets (step 1 of :func:`run_fit`).

    Args:
        data_path: the CSV.
        target: target column.
        inputs: input columns.
        sequence: sequence column, or None for one sequence.
        family: one of :data:`bayes_glmhmm.emissions.FAMILY_NAMES`.
        num_classes: C of the categorical family; by default the number of text labels, or 1 + the
            largest numeric label.
        transition_inputs: columns that drive the state transitions (input-driven transitions,
            see :mod:`bayes_glmhmm.transitions`), read into ``table.transition_inputs``; None for
            stationary transitions.
        subject: the column of subject ids, one per sequence (a hierarchical model across
            subjects), read into ``table.subject_ids``; None for no subjects.

    Returns:
        A :class:`FitData`.

    Raises:
        ValueError: for an unknown family, ``num_classes`` with another family, a bad file, a
            target outside the family's support (naming the column and data row), a transition
            input column that is unknown or holds a missing or non-numeric value (naming
            ``transition_inputs`` and the column), or a subject column that is unknown, misses
            an id or gives a sequence two (naming ``subject``, the column, sequence and row).
    """
    if family not in FAMILY_NAMES:
        raise ValueError(f"family must be one of {', '.join(FAMILY_NAMES)}, got {family!r}")
    if num_classes is not None:
        get_family(family, num_classes)  # ValueError unless categorical with a valid C
    table = read_long_csv(
        data_path,
        target=target,
        inputs=inputs,
        sequence=sequence,
        transition_inputs=transition_inputs,
        subject=subject,
        **csv_target_options(family, num_classes),
    )
    resolved = resolve_family(family, table.emissions, table.mask, num_classes)
    coded = coded_targets(table, resolved.name, resolved.num_classes)
    return FitData(table, resolved, coded, _class_labels(table, resolved, coded))


class ModelArrays(NamedTuple):
    """The data arguments of :func:`~bayes_glmhmm.fit.fit_nuts` and :func:`~bayes_glmhmm.selection.select_num_states`.

    Attributes:
        inputs: (N, T, D) inputs, zero-padded.
        emissions: (N, T) targets in the family's coding, NaN where missing or padded.
        mask: (N, T) True where a target is observed.
        lengths: (N,) the length of each sequence.
        transition_inputs: (N, T, M) transition inputs, or None for stationary transitions.
    """

    inputs: np.ndarray
    emissions: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray
    transition_inputs: np.ndarray | None


def model_arrays(data: FitData) -> ModelArrays:
    """The arrays a model is fitted to, from a CSV read by :func:`read_fit_data`."""
    table = data.table
    return ModelArrays(
        table.inputs, np.where(table.mask, data.emissions, np.nan), table.mask, table.lengths, table.transition_inputs
    )


def transitions_argument(transition_inputs: list[str] | None, transition_form: str | None) -> str:
    """The ``transitions`` argument of the fits: ``"stationary"`` without transition inputs, else the form.

    Raises:
        ValueError: for a ``transition_form`` other than ``"full"`` or ``"destination"``, or one
            given without ``transition_inputs``.
    """
    if transition_form is not None and transition_form not in ("full", "destination"):
        raise ValueError(f"transition_form must be 'full' or 'destination', got {transition_form!r}")
    if transition_form is not None and transition_inputs is None:
        raise ValueError("transition_form applies only with transition_inputs (input-driven transitions)")
    return "stationary" if transition_inputs is None else (transition_form or "full")


def check_supported_states(data: FitData, num_states: int) -> None:
    """Raise ValueError (naming ``--states``) if K exceeds the steps of the longest sequence."""
    supported_by_table(data.table, num_states)


def conditional_predictive_mean(
    samples: dict,
    states: np.ndarray,
    inputs: np.ndarray,
    family="gaussian",
    chunk_size: int = 50,
    subject_index: np.ndarray | None = None,
) -> np.ndarray:
    """E[y_t | all observed data]: the mean over draws s of ``family.mean(theta_s, x_t)[z_t^s]``.

    ``z^s`` is the FFBS path of draw s, so this averages the family's conditional mean over the
    joint posterior of parameters and states: the posterior predictive mean of each target given
    everything observed, the natural imputation of a missing target. It is the predictive mean for
    the Gaussian, the expected count (rate) for the Poisson, p(y_t = 1) for the Bernoulli and the
    C class probabilities (summing to 1) for the categorical family. Computed in chunks of draws so
    memory stays at chunk_size x N x T x K (x C). In a hierarchical posterior across subjects, each
    sequence's mean uses its subject's weights and biases (``subject_weights``, ``subject_biases``).

    Args:
        samples: (chain, draw, ...) parameter draws; the emission parameters (weights, biases and
            the family's extra parameters) are required, and ``subject_weights`` and
            ``subject_biases`` with ``subject_index``.
        states: (chain, draw, N, T) FFBS paths, -1 at padding.
        inputs: (N, T, D).
        family: the emission family (or its name) of the samples.
        chunk_size: draws per chunk.
        subject_index: (N,) the subject of each sequence, for a hierarchical posterior; None otherwise.

    Returns:
        (N, T) means, or (N, T, C) class probabilities for the categorical family; NaN at padding.
    """
    import jax

    from bayes_glmhmm._compile import device_array, jit_one_off

    family = get_family(family)
    flat = {
        name: np.asarray(samples[name]).reshape((-1,) + np.shape(samples[name])[2:])
        for name in family.param_names
        if name in samples
    }
    if subject_index is not None:
        # Each sequence's own subject's emission parameters, (draws, N, K, ...).
        subject_index = np.asarray(subject_index)
        for name, subject_name in (("weights", "subject_weights"), ("biases", "subject_biases")):
            draws = np.asarray(samples[subject_name])
            flat[name] = draws.reshape((-1,) + draws.shape[2:])[:, subject_index]
    flat_states = np.asarray(states).reshape((-1,) + np.shape(states)[2:]).astype(np.int64)
    inputs = device_array(inputs)
    mean_of_draw = jax.vmap(family.mean, in_axes=(0, None))
    if subject_index is not None:

        def sequence_mean(params, weights, biases, sequence_inputs):
            return family.mean(params._replace(weights=weights, biases=biases), sequence_inputs)

        def subjects_mean(params, all_inputs):
            return jax.vmap(sequence_mean, in_axes=(None, 0, 0, 0))(params, params.weights, params.biases, all_inputs)

        mean_of_draw = jax.vmap(subjects_mean, in_axes=(0, None))
    mean_of_draw = jit_one_off(mean_of_draw)  # one program, not one per operation and chunk
    total = 0.0
    for start in range(0, flat_states.shape[0], chunk_size):
        stop = start + chunk_size
        params = family.params_type(
            **{name: device_array(flat[name][start:stop]) if name in flat else None for name in family.param_names}
        )
        means = np.asarray(mean_of_draw(params, inputs))  # (S, N, T, K[, C])
        z = np.clip(flat_states[start:stop], 0, None)
        chosen = np.take_along_axis(means, z.reshape(z.shape + (1,) * (means.ndim - 3)), axis=3)
        total = total + np.sum(chosen[:, :, :, 0], axis=0)
    mean = total / flat_states.shape[0]
    padding = flat_states[0] < 0
    return np.where(padding.reshape(padding.shape + (1,) * (mean.ndim - 2)), np.nan, mean)


def _prediction_columns(data: FitData, predictive: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Header and (N, T, P) values of the prediction columns of ``state_probabilities.csv``.

    Numeric targets: ``predictive_mean``. Class targets: ``p_<target>=<label>`` for every class
    (categorical) or for class 1 (Bernoulli, p(y = 1)).
    """
    labels = data.class_labels
    if labels is None:
        return ["predictive_mean"], predictive[..., None]
    name = data.table.target_name
    if predictive.ndim == 3:
        return [f"p_{name}={label}" for label in labels], predictive
    return [f"p_{name}={labels[1]}"], predictive[..., None]


def state_probability_rows(table: TabularData, probabilities: np.ndarray, predictions: np.ndarray) -> list[list]:
    """One output row per data row (file order, padding excluded).

    Each row holds the data row number, sequence, step, whether the target was observed, the
    posterior probability of every state, the most probable state and the prediction(s) of the
    target.

    Args:
        table: the data.
        probabilities: (N, T, K) posterior state probabilities.
        predictions: (N, T) or (N, T, P) predictions per step.
    """
    predictions = np.asarray(predictions, dtype=float)
    if predictions.ndim == 2:
        predictions = predictions[..., None]
    rows = []
    for n, t in zip(*np.nonzero(table.row_index >= 0), strict=True):
        probs = probabilities[n, t]
        rows.append(
            [
                int(table.row_index[n, t]) + 1,
                table.sequence_ids[n],
                int(t),
                bool(table.mask[n, t]),
                *probs.tolist(),
                int(np.argmax(probs)),
                *(float(value) for value in predictions[n, t]),
            ]
        )
    rows.sort(key=lambda row: row[0])
    return rows


def _index_label(
    dim: str,
    position: int,
    input_names: list,
    class_labels: list | None,
    transition_input_names: list | None = None,
    subject_names: list | None = None,
) -> str:
    """The label of one index along an ArviZ dim (state, next_state, class, input, transition_input, subject)."""
    if dim == "subject":
        return str(subject_names[position]) if subject_names is not None else f"subject {position}"
    if dim == "input":
        return str(input_names[position])
    if dim == "transition_input":
        return str(transition_input_names[position]) if transition_input_names is not None else f"u{position}"
    if dim == "class":  # non-reference class position + 1 against the reference class 0
        if class_labels is None:
            return f"class {position + 1} vs 0"
        return f"{class_labels[position + 1]} vs {class_labels[0]}"
    return str(position)


def parameter_rows(
    samples: dict,
    family: EmissionFamily,
    input_names: list,
    class_labels: list | None = None,
    point_estimate=None,
    prob: float = 0.94,
    transition_input_names: list | None = None,
    subject_names: list | None = None,
) -> list[list]:
    """Posterior summary rows ``[label, mean, sd, lower, upper, point estimate]`` of every scalar parameter.

    Labels name each index by the family's dims: ``weight[state, input]`` (categorical:
    ``weight[state, <class> vs <reference class>, input]``), ``biases[state]`` (categorical:
    ``biases[state, <class> vs <reference class>]``), ``transition_matrix[state, next_state]``, ...
    With input-driven transitions (``samples`` holds ``transition_weights``), the rows
    ``transition_weights[i, j, <transition input>]`` follow, one per i != j (V[i, i] = 0 by
    construction) and transition input. A hierarchical posterior across subjects (``samples`` holds
    ``subject_weights``, see :mod:`bayes_glmhmm.hierarchy`) adds, after them, the spreads across
    subjects ``weight_spread[state, input]`` and ``bias_spread[state]`` and each subject's
    ``subject_weights[<subject>, state, input]`` and ``subject_biases[<subject>, state]`` (and
    ``subject_transition_matrix[<subject>, state, next_state]`` when subjects have their own
    transitions); ``weight`` and ``biases`` are then the population means.

    Args:
        samples: (chain, draw, ...) draws of every parameter of the family (and of
            ``transition_weights`` for input-driven transitions, and of the hierarchy's parameters
            for a hierarchical posterior).
        family: the emission family.
        input_names: the D input names.
        class_labels: the label of each class code (categorical), else None.
        point_estimate: optional params of the family (e.g. the EM MAP), NaN when absent.
        prob: mass of the equal-tailed interval.
        transition_input_names: the M transition input names (default ``u0``, ``u1``, ...).
        subject_names: the S subject ids, in the order of the subject axis (default
            ``subject 0``, ``subject 1``, ...).
    """
    from bayes_glmhmm.hierarchy import subject_param_dims
    from bayes_glmhmm.transitions import PARAM_DIMS as TRANSITION_PARAM_DIMS

    rows = []
    subject_dims = subject_param_dims(family.param_dims())
    dims = {**family.param_dims(), **TRANSITION_PARAM_DIMS, **subject_dims}
    names = family.param_names + tuple(name for name in (*TRANSITION_PARAM_DIMS, *subject_dims) if name in samples)
    for name in names:
        draws = np.asarray(samples[name])
        flat = draws.reshape((-1,) + draws.shape[2:])
        mean, sd = flat.mean(axis=0), flat.std(axis=0)
        lower, upper = equal_tailed_interval(draws, prob)
        estimate = None if point_estimate is None else getattr(point_estimate, name, None)
        estimate = None if estimate is None else np.asarray(estimate)
        display = "weight" if name == "weights" else name
        for index in np.ndindex(mean.shape):
            if name in TRANSITION_PARAM_DIMS and index[0] == index[1]:
                continue
            parts = [
                _index_label(dim, i, input_names, class_labels, transition_input_names, subject_names)
                for dim, i in zip(dims[name], index, strict=True)
            ]
            rows.append(
                [
                    f"{display}[{', '.join(parts)}]",
                    float(mean[index]),
                    float(sd[index]),
                    float(lower[index]),
                    float(upper[index]),
                    float("nan") if estimate is None else float(estimate[index]),
                ]
            )
    return rows


def _start_output(out) -> None:
    """Create the output folder and remove a previous ``summary.json``, the mark of a finished fit."""
    os.makedirs(out, exist_ok=True)
    remove_if_exists(os.path.join(out, "summary.json"))


def _write_posterior(posterior, data: FitData, out, seed: int):
    """Write ``posterior.nc`` (with input, target, sequence and class names as attributes); return the InferenceData.

    The transition inputs' names (input-driven transitions) name the ``transition_input`` coordinate;
    with subjects, their ids name the ``subject`` coordinate and the attribute ``subject_name``
    holds the subject column's name.
    """
    import json

    from bayes_glmhmm import _host_prng as host_prng
    from bayes_glmhmm.convert import to_inference_data, write_netcdf_atomic

    idata = to_inference_data(
        posterior, key=host_prng.prng_key(seed + 1), transition_input_names=data.table.transition_input_names
    )
    # JSON, not joined with commas: a column name may hold a comma.
    idata.posterior.attrs["input_names"] = json.dumps(list(data.table.input_names))
    idata.posterior.attrs["target_name"] = data.table.target_name
    idata.posterior.attrs["sequence_ids"] = ",".join(map(str, data.table.sequence_ids))
    idata.posterior.attrs["class_labels"] = json.dumps(data.class_labels)
    if data.table.subject_name is not None:
        idata.posterior.attrs["subject_name"] = data.table.subject_name
    write_netcdf_atomic(idata, os.path.join(out, "posterior.nc"))
    return idata


def _write_state_probabilities(posterior, idata, data: FitData, out) -> None:
    """Write ``state_probabilities.csv``: per data row, state probabilities and the target's prediction."""
    probabilities = idata.posterior_states["state_probabilities"].values
    predictive = conditional_predictive_mean(
        posterior.samples,
        idata.posterior_states["states"].values,
        data.table.inputs,
        family=data.family,
        subject_index=None if posterior.subjects is None else posterior.subjects.index,
    )
    prediction_header, predictions = _prediction_columns(data, predictive)
    header = [
        "row",
        "sequence",
        "step",
        "observed",
        *[f"p_state_{k}" for k in range(posterior.num_states)],
        "most_probable_state",
        *prediction_header,
    ]
    write_text_atomic(
        os.path.join(out, "state_probabilities.csv"),
        csv_text(header, state_probability_rows(data.table, probabilities, predictions)),
    )


def _write_parameters(posterior, data: FitData, out) -> None:
    """Write ``parameters.csv`` and ``parameters.md``: posterior mean, sd, 94% interval and EM MAP."""
    rows = parameter_rows(
        posterior.samples,
        data.family,
        data.table.input_names,
        class_labels=data.class_labels,
        point_estimate=posterior.em.params if posterior.em else None,
        transition_input_names=data.table.transition_input_names,
        subject_names=None if posterior.subjects is None else list(posterior.subjects.names),
    )
    header = ["parameter", "posterior_mean", "posterior_sd", "lower_94", "upper_94", "em_map"]
    write_text_atomic(os.path.join(out, "parameters.csv"), csv_text(header, rows))
    markdown = markdown_table(header, [[row[0]] + [f"{value:.4g}" for value in row[1:]] for row in rows])
    write_text_atomic(os.path.join(out, "parameters.md"), "\n".join(markdown) + "\n")


def _class_table(data: FitData) -> list[dict] | None:
    """Per class code: its label and the number of observed rows with it (None for numeric targets)."""
    if data.class_labels is None:
        return None
    observed = data.emissions[data.table.mask]
    return [
        {"code": code, "label": label, "count": int(np.sum(observed == code))}
        for code, label in enumerate(data.class_labels)
    ]


def _write_classes(data: FitData, out) -> list[str]:
    """Write ``classes.csv`` (code, label, count) for class targets; return the file names written."""
    classes = _class_table(data)
    if classes is None:
        return []
    rows = [[entry["code"], entry["label"], entry["count"]] for entry in classes]
    write_text_atomic(os.path.join(out, "classes.csv"), csv_text(["code", "label", "count"], rows))
    return ["classes.csv"]


def _emission_curve_files(input_names: list, prefix: str = "emission_curves") -> list[str]:
    """One file name per input, ``<prefix>_<input>.png`` (unsafe characters as ``_``; unique)."""
    names = []
    for d, input_name in enumerate(input_names):
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(input_name)).strip("_.") or f"input{d}"
        name = f"{prefix}_{slug}.png"
        names.append(f"{prefix}_{d}_{slug}.png" if name in names else name)
    return names


#: The most sequences drawn in ``states.png`` (the first ones; its title says how many there are).
_MAX_STATE_SEQUENCES = 6


#: The order of the figures in ``summary.json``'s file list, by the start of their file names.
_FIGURE_ORDER = ("parameters", "trace", "lp_by_chain", "states", "emission_curves", "transition_probabilities")


def _fit_draw_figures(posterior, data: FitData) -> dict:
    """The figures drawn from the posterior draws alone, ``{file name: Figure}`` (see :func:`_fit_figures`).

    They exist as soon as sampling ends, so they can be rendered while the states are computed.
    """
    from bayes_glmhmm import plots

    input_names = list(data.table.input_names)
    em_params = posterior.em.params if posterior.em else None
    figures = {
        "parameters.png": plots.plot_parameter_posteriors(
            posterior.samples, em_params=em_params, family=data.family, input_names=input_names
        ),
        "trace.png": plots.plot_trace(
            posterior.samples,
            var_names=list(data.family.emission_names),
            family=data.family,
            input_names=input_names,
        ),
        "lp_by_chain.png": plots.plot_lp_by_chain(
            posterior.sample_stats["lp"], stuck_chains=posterior.stuck_chains, threshold=posterior.stuck_threshold
        ),
    }
    if data.table.transition_input_names is not None:
        names = list(data.table.transition_input_names)
        for m, name in enumerate(_emission_curve_files(names, prefix="transition_probabilities")):
            figures[name] = plots.plot_transition_probabilities(posterior, input_index=m, input_names=names)
    return figures


def _fit_state_figures(posterior, idata, data: FitData) -> dict:
    """The figures that need the posterior state probabilities, ``{file name: Figure}`` (see :func:`_fit_figures`)."""
    from bayes_glmhmm import plots

    table = data.table
    input_names = list(table.input_names)
    probabilities = idata.posterior_states["state_probabilities"].values
    target_label = table.target_name + (" (class code)" if data.class_labels is not None else "")
    figures = {
        "states.png": plots.plot_state_sequences(
            np.where(table.mask, data.emissions, np.nan),
            probabilities,
            lengths=table.lengths,
            sequence_labels=[f"sequence {sequence_id!s}" for sequence_id in table.sequence_ids],
            max_sequences=_MAX_STATE_SEQUENCES,
            emission_label=target_label,
        )
    }
    most_probable = np.nan_to_num(probabilities, nan=0.0).argmax(-1)  # padding is not drawn
    for d, name in enumerate(_emission_curve_files(input_names)):
        figures[name] = plots.plot_emission_curves(
            posterior, input_index=d, input_names=input_names, states=most_probable
        )
    return figures


def _in_figure_order(figures: dict) -> dict:
    """``figures`` ordered by :data:`_FIGURE_ORDER` (each group in its own order)."""
    return dict(
        sorted(figures.items(), key=lambda item: next(i for i, s in enumerate(_FIGURE_ORDER) if item[0].startswith(s)))
    )


def _fit_figures(posterior, idata, data: FitData) -> dict:
    """The figures of a fit, ``{file name: Figure}``, labelled with the CSV's column names.

    The parameter posteriors (the weights of each input on an axis of their own, titled by its
    column), the traces, the log density by chain, the inferred states of the first six sequences
    (each on its own time axis, padding left out), the emission curves of every input and, for
    input-driven transitions, the transition probabilities against every transition input.
    """
    return _in_figure_order(_fit_draw_figures(posterior, data) | _fit_state_figures(posterior, idata, data))


def _transitions_summary(posterior, data: FitData, prob: float = 0.94) -> dict:
    """The ``transitions`` entry of ``summary.json``: the model and, if input-driven, every transition weight.

    Each weight V[i, j, m] (i != j) is the change, per unit of transition input m, in the log-odds
    of moving from state i to state j rather than staying in i; listed with its posterior mean,
    sd and equal-tailed ``prob`` interval.
    """
    transitions = posterior.transitions
    if not transitions.is_input_driven:
        return {"model": transitions.name}
    names = list(data.table.transition_input_names)
    draws = np.asarray(posterior.samples["transition_weights"])
    flat = draws.reshape((-1,) + draws.shape[2:])
    mean, sd = flat.mean(axis=0), flat.std(axis=0)
    lower, upper = equal_tailed_interval(draws, prob)
    percent = f"{100 * prob:g}"
    weights = [
        {
            "from_state": i,
            "to_state": j,
            "input": names[m],
            "posterior_mean": float(mean[i, j, m]),
            "posterior_sd": float(sd[i, j, m]),
            f"lower_{percent}": float(lower[i, j, m]),
            f"upper_{percent}": float(upper[i, j, m]),
        }
        for i, j, m in np.ndindex(mean.shape)
        if i != j
    ]
    return {
        "model": transitions.name,
        "form": transitions.form,
        "inputs": names,
        "meaning": "p(z[t+1] = j | z[t] = i, u[t]) = softmax_j(log A[i, j] + V[i, j] . u[t]), V[i, i] = 0: "
        "V[i, j, m] is the change per unit of input m in the log-odds of moving from i to j rather than "
        "staying; A = transition_matrix, the transition probabilities at u = 0",
        "weights": weights,
    }


def _length_summary(lengths) -> dict:
    """The shortest, median and longest sequence length, in steps (rows)."""
    lengths = np.asarray(lengths)
    return {"min": int(lengths.min()), "median": float(np.median(lengths)), "max": int(lengths.max())}


def _fit_summary(posterior, data: FitData, data_path, sequence, files: list[str]) -> dict:
    """The content of ``summary.json``: data, family and classes, NUTS diagnostics and verdict, priors, files.

    ``nuts["converged"]`` and ``nuts["problems"]`` are the verdict of ``posterior.diagnostics()``
    (plain sentences, empty when converged; the thresholds are in ``nuts["settings"]``).
    """
    table = data.table
    diagnostics = posterior.diagnostics()
    return {
        "command": "bayes-glmhmm fit",
        "data": {
            "path": os.fspath(data_path),
            "target": table.target_name,
            "inputs": list(table.input_names),
            "sequence": sequence,
            "num_sequences": len(table.sequence_ids),
            "num_rows": int(table.lengths.sum()),
            "sequence_lengths": _length_summary(table.lengths),
            "num_missing_targets": int(table.lengths.sum() - table.mask.sum()),
            "num_states": posterior.num_states,
            "transition_inputs": table.transition_input_names,
            "subject": table.subject_name,
            "num_subjects": None if table.subject_ids is None else len(set(table.subject_ids)),
        },
        "transitions": _transitions_summary(posterior, data),
        "family": data.family.name,
        "num_classes": None if data.class_labels is None else len(data.class_labels),
        "classes": _class_table(data),
        "class_order": None if data.class_labels is None else CLASS_ORDER_RULE,
        "nuts": {
            "wall_seconds": diagnostics["wall_seconds"]["total"],
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
        "priors": posterior.priors._asdict(),
        "parameters_in": "the data's original units",
        "files": sorted(files),
    }


#: Why a fit across subjects is not standardized (the message of ``standardize=True`` with a subject column).
_SUBJECTS_NOT_STANDARDIZED = (
    "a fit across subjects is never standardized (the spreads across subjects would not map back to the "
    "data's units); rescale the input columns yourself if they are far from unit scale"
)


def _subjects_standardize(standardize, arrays: ModelArrays, family: EmissionFamily) -> bool:
    """False for a fit across subjects given False or ``"auto"``; a warning where ``"auto"`` would standardize."""
    import warnings

    from bayes_glmhmm.standardize import fit_standardization, needs_standardization

    if standardize not in (False, "auto"):
        return standardize  # fit_nuts names what is wrong with it
    if standardize == "auto":
        moments = fit_standardization(
            arrays.inputs, arrays.emissions, arrays.mask, emissions_too=family.standardizes_emissions
        )
        if needs_standardization(moments):
            warnings.warn(
                "the data are far from unit scale (a spread outside [0.1, 10] or a mean beyond +-10, in the target "
                "or an input), where standardize='auto' would standardize them, but a fit across subjects is fitted "
                "in the data's units: the priors (weight_scale, bias_scale, noise_scale, subject_spread_scale) "
                "apply there; rescale the columns or widen the priors",
                UserWarning,
                stacklevel=3,
            )
    return False


def run_fit(
    data_path,
    num_states: int,
    target: str,
    inputs: list[str],
    sequence: str | None = None,
    out: str = "fit_results",
    priors: Priors | None = None,
    num_chains: int = 4,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    seed: int = 0,
    standardize="auto",
    progress_bar: bool = True,
    sequence_devices: int = 1,
    time_parallel: bool = False,
    family: str = "gaussian",
    num_classes: int | None = None,
    transition_inputs: list[str] | None = None,
    transition_form: str | None = None,
    subject: str | None = None,
    subject_parametrization: str = "noncentred",
    tempering=None,
    max_samples: int | None = None,
) -> dict:
    """Fit NUTS to a long-format CSV and write the results folder (steps in the module docstring).

    Files (each written atomically, ``summary.json`` last): ``posterior.nc`` (InferenceData),
    ``parameters.csv`` / ``parameters.md`` (posterior summary in the data's units),
    ``state_probabilities.csv`` (per data row: state probabilities, most probable state, and the
    prediction of the target: ``predictive_mean`` for Gaussian and Poisson targets (for the Poisson
    the expected count), ``p_<target>=<label>`` of class 1 for the Bernoulli and of every class for
    the categorical family), ``classes.csv`` (class targets: code, label, count), ``parameters.png``,
    ``trace.png``, ``lp_by_chain.png``, ``states.png`` (the inferred states of the first six sequences),
    ``emission_curves_<input>.png`` per input, ``transition_probabilities_<transition input>.png`` per
    transition input (input-driven transitions) and ``summary.json`` (with ``family``, ``num_classes``,
    ``classes``, ``transitions``, the data's size (rows, sequences, sequence lengths, missing targets)
    and the convergence verdict ``nuts["converged"]``, ``nuts["problems"]``).

    With a subject column, the model is hierarchical across subjects (:mod:`bayes_glmhmm.hierarchy`):
    ``parameters.csv`` adds the spreads across subjects and every subject's weights and biases
    (:func:`parameter_rows`), ``state_probabilities.csv`` predicts each row with its subject's
    parameters, ``posterior.nc`` holds the ``subject`` coordinate (the ids) and the attribute
    ``subject_name``, and ``summary.json`` records ``data.subject`` and ``data.num_subjects`` (and
    ``nuts.settings.subject_parametrization``). The figures show the population's parameters.

    A fit that fails a convergence check issues a
    :class:`~bayes_glmhmm.convergence.ConvergenceWarning` (from :func:`~bayes_glmhmm.fit.fit_nuts`)
    and still writes every file: the verdict travels with them.

    Args:
        data_path: the CSV (one row per time step; rows of a sequence in time order).
        num_states: K.
        target: target column.
        inputs: input columns.
        sequence: sequence column, or None for one sequence.
        out: output folder.
        priors: priors (the article's by default; ``noise_scale`` is used by the Gaussian only).
        num_chains: chains.
        num_warmup: warmup per chain.
        num_samples: draws per chain.
        seed: seed.
        standardize: see :func:`bayes_glmhmm.fit_nuts` (inputs for every family, targets for the
            Gaussian only). With ``subject``, ``"auto"`` means False (a fit across subjects is
            never standardized; a ``UserWarning`` says so when the data are far from unit scale,
            where ``"auto"`` would have standardized them) and True is an error.
        progress_bar: show progress.
        sequence_devices: devices sharing each chain's sequences; see :func:`bayes_glmhmm.fit_nuts`.
        time_parallel: parallel-in-time likelihood; see :func:`bayes_glmhmm.fit_nuts`.
        family: emission family, one of :data:`bayes_glmhmm.emissions.FAMILY_NAMES`.
        num_classes: C of the categorical family (default: inferred, see :func:`read_fit_data`).
        transition_inputs: columns that drive the state transitions (input-driven transitions,
            see :mod:`bayes_glmhmm.transitions`; numbers, never missing; padding past a sequence's
            end is filled with 0 and masked out); None for stationary transitions.
        transition_form: ``"full"`` (default; a weight per origin, destination and input) or
            ``"destination"`` (a weight per destination and input); only with ``transition_inputs``.
        subject: the column of subject ids, one per sequence (e.g. the animal of each session):
            a hierarchical model across subjects (``subjects=`` of :func:`~bayes_glmhmm.fit.fit_nuts`);
            None for one set of parameters shared by every sequence.
        subject_parametrization: ``"noncentred"`` (default) or ``"centred"``; see
            :func:`~bayes_glmhmm.fit.fit_nuts`. Used only with ``subject``.
        tempering: parallel tempering (``tempering=`` of :func:`~bayes_glmhmm.fit.fit_nuts`): None or
            1 for plain NUTS, L temperatures per chain, or a ladder.
        max_samples: sample until converged, up to this many draws per chain (``max_samples=`` of
            :func:`~bayes_glmhmm.fit.fit_nuts`; the rounds are in ``nuts.settings.sampling_rounds``);
            None: ``num_samples`` draws.

    Returns:
        The summary written to ``summary.json``.

    Raises:
        ValueError: naming the argument, for a bad file, column or value (see :func:`read_fit_data`),
            a ``transition_form`` other than ``"full"`` or ``"destination"`` or given without
            ``transition_inputs``, more states than the longest sequence has steps, or
            ``standardize=True`` with ``subject``.
    """
    import matplotlib

    matplotlib.use("Agg")

    from bayes_glmhmm.fit import fit_nuts

    num_states = validate_num_states(num_states)
    transitions = transitions_argument(transition_inputs, transition_form)
    if subject is not None and standardize is True:
        raise ValueError(f"standardize: {_SUBJECTS_NOT_STANDARDIZED}")
    data = read_fit_data(
        data_path,
        target,
        inputs,
        sequence,
        family=family,
        num_classes=num_classes,
        transition_inputs=transition_inputs,
        subject=subject,
    )
    check_supported_states(data, num_states)
    arrays = model_arrays(data)
    subject_arguments = {}
    if subject is not None:
        standardize = _subjects_standardize(standardize, arrays, data.family)
        subject_arguments = dict(subjects=data.table.subject_ids, subject_parametrization=subject_parametrization)
    posterior = fit_nuts(
        arrays.inputs,
        arrays.emissions,
        num_states,
        family=data.family,
        mask=arrays.mask,
        lengths=arrays.lengths,
        priors=priors,
        num_chains=num_chains,
        num_warmup=num_warmup,
        num_samples=num_samples,
        seed=seed,
        progress_bar=progress_bar,
        standardize=standardize,
        sequence_devices=sequence_devices,
        time_parallel=time_parallel,
        transition_inputs=arrays.transition_inputs,
        transitions=transitions,
        tempering=tempering,
        max_samples=max_samples,
        **subject_arguments,
    )
    _start_output(out)
    # The draws' figures are rendered (in helper processes, inside background_rendering) while the
    # states are computed; the states' figures follow.
    pngs = render_figures(_fit_draw_figures(posterior, data), close=True)
    idata = _write_posterior(posterior, data, out, seed)
    _write_state_probabilities(posterior, idata, data, out)
    _write_parameters(posterior, data, out)
    files = ["posterior.nc", "state_probabilities.csv", "parameters.csv", "parameters.md"]
    files += _write_classes(data, out)
    pngs |= render_figures(_fit_state_figures(posterior, idata, data), close=True)
    files += write_pngs_atomic(_in_figure_order(pngs), out)
    summary = _fit_summary(posterior, data, data_path, sequence, files)
    write_json_atomic(os.path.join(out, "summary.json"), summary)
    return summary


def _data_settings(data: FitData, data_path, sequence) -> dict:
    """What ``selection.json`` records of the CSV: path, columns, size and the class coding."""
    table = data.table
    return {
        "path": os.fspath(data_path),
        "target": table.target_name,
        "inputs": list(table.input_names),
        "sequence": sequence,
        "transition_inputs": table.transition_input_names,
        "num_sequences": len(table.sequence_ids),
        "num_rows": int(table.lengths.sum()),
        "num_missing_targets": int(table.lengths.sum() - table.mask.sum()),
        "class_labels": data.class_labels,
    }


def run_select(
    data_path,
    states,
    target: str,
    inputs: list[str],
    sequence: str | None = None,
    out: str = "selection_results",
    *,
    family: str = "gaussian",
    num_classes: int | None = None,
    transition_inputs: list[str] | None = None,
    transition_form: str | None = None,
    method: str = "loo",
    num_folds: int = 5,
    rule: str = "one_se",
    max_refits: int | None = 10,
    em_restarts: int = 5,
    progress: bool = True,
    **fit_nuts_kwargs,
):
    """Choose the number of states of a long-format CSV and write the selection folder (``bayes-glmhmm select``).

    Reads the CSV as :func:`run_fit` does (:func:`read_fit_data`, :func:`model_arrays`), runs
    :func:`~bayes_glmhmm.selection.select_num_states` and writes ``selection.csv``,
    ``selection.md``, ``selection.png`` and ``selection.json`` with
    :func:`~bayes_glmhmm.selection_io.write_selection` (``selection.json`` last; its
    ``settings["data"]`` records the file, the columns and the class coding).

    Args:
        data_path: the CSV (one row per time step; rows of a sequence in time order).
        states: the K values to compare.
        target: target column.
        inputs: input columns.
        sequence: sequence column, or None for one sequence (which k-fold cannot split: give one).
        out: output folder.
        family: emission family, one of :data:`bayes_glmhmm.emissions.FAMILY_NAMES`.
        num_classes: C of the categorical family (default: inferred, see :func:`read_fit_data`).
        transition_inputs: columns that drive the state transitions, or None for stationary ones.
        transition_form: ``"full"`` (default) or ``"destination"``; only with ``transition_inputs``.
        method: ``"loo"`` or ``"kfold"`` (see :func:`~bayes_glmhmm.selection.select_num_states`).
        num_folds: folds of held-out sequences.
        rule: ``"one_se"`` or ``"max"``.
        max_refits: most exact refits per K for high Pareto k (None: all).
        em_restarts: EM restarts per fold.
        progress: print one line per K.
        **fit_nuts_kwargs: passed to every fit (``num_chains``, ``num_warmup``, ``num_samples``,
            ``seed``, ``priors``, ``standardize``, ...).

    Returns:
        The :class:`~bayes_glmhmm.selection.Selection`.

    Raises:
        ValueError: naming the argument, for a bad file, column or value (see :func:`read_fit_data`),
            a bad ``transition_form``, more states than the longest sequence has steps, or a bad
            argument of :func:`~bayes_glmhmm.selection.select_num_states`.
    """
    from bayes_glmhmm.selection import select_num_states
    from bayes_glmhmm.selection_io import write_selection

    transitions = transitions_argument(transition_inputs, transition_form)
    data = read_fit_data(
        data_path,
        target,
        inputs,
        sequence,
        family=family,
        num_classes=num_classes,
        transition_inputs=transition_inputs,
    )
    states = tuple(states)
    check_supported_states(data, max(states, default=1))
    arrays = model_arrays(data)
    selection = select_num_states(
        arrays.inputs,
        arrays.emissions,
        states,
        family=data.family,
        mask=arrays.mask,
        lengths=arrays.lengths,
        method=method,
        num_folds=num_folds,
        rule=rule,
        max_refits=max_refits,
        em_restarts=em_restarts,
        transition_inputs=arrays.transition_inputs,
        transitions=transitions,
        progress=progress,
        **fit_nuts_kwargs,
    )
    selection.settings["data"] = _data_settings(data, data_path, sequence)
    write_selection(selection, out)
    return selection
