"""Tables that put the posterior beside the truth and a point estimate, for every emission family.

The parameter names come from the family (``family.param_names``), and the complete-data
("realized") estimate maximizes each family's own complete-data likelihood with its M-step.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayes_glmhmm.emissions import EmissionFamily, family_of, resolve_family
from bayes_glmhmm.emissions._glm import design_matrix
from bayes_glmhmm.params import validate_data
from bayes_glmhmm.transitions import input_driven

#: The parameters input-driven transitions add to a family's.
TRANSITION_PARAM_NAMES = input_driven().param_names

__all__ = [
    "CompleteDataFit",
    "equal_tailed_interval",
    "parameter_table",
    "coverage_summary",
    "state_accuracy",
    "complete_data_estimate",
    "complete_data_fit",
]


def equal_tailed_interval(draws: np.ndarray, prob: float = 0.94) -> tuple[np.ndarray, np.ndarray]:
    """Central ``prob`` interval over the leading (chain, draw) axes: the (1-prob)/2 and (1+prob)/2 quantiles."""
    draws = np.asarray(draws)
    flat = draws.reshape((-1,) + draws.shape[2:])
    lower, upper = np.quantile(flat, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    return lower, upper


def _parameter_names(samples: dict, family: EmissionFamily | None, *references) -> tuple[str, ...]:
    """The parameter names of the rows.

    The family's parameter names (of ``family``, else of the first reference params given), plus
    ``transition_weights`` when the samples hold them (input-driven transitions); without a family,
    the samples' keys.
    """
    if family is None:
        family = next((family_of(params) for params in references if params is not None), None)
    if family is None:
        return tuple(samples)
    missing = [name for name in family.param_names if name not in samples]
    if missing:
        raise ValueError(f"samples lacks {missing} of the {family.name} family")
    return family.param_names + tuple(name for name in TRANSITION_PARAM_NAMES if name in samples)


def _reference_value(params, name: str):
    """A parameter of reference params (truth, point estimate) as an array, None if absent (stationary weights)."""
    if params is None:
        return None
    value = getattr(params, name, None)
    return None if value is None else np.asarray(value)


def parameter_table(
    samples: dict, truth=None, point_estimate=None, prob: float = 0.94, family: EmissionFamily | None = None
) -> list[dict]:
    """One row per scalar parameter: posterior mean, sd, interval, truth and point estimate.

    All inputs must share one labeling (see :func:`bayes_glmhmm.relabel.match_params`).

    Args:
        samples: dict of (chain, draw, ...) arrays keyed by parameter name (e.g. ``Posterior.samples``).
        truth: the generating parameters (the family's params NamedTuple), if known.
        point_estimate: e.g. the EM estimate.
        prob: interval probability.
        family: the emission family whose parameters make the rows; by default that of ``truth``
            or ``point_estimate``, else every key of ``samples`` in its order. The
            ``transition_weights`` V of input-driven transitions, (K, K, M) per draw, make rows
            too when ``samples`` holds them, one per i != j and input (V[i, i] = 0 by
            construction has no row).

    Returns:
        A list of dicts with keys ``parameter``, ``index``, ``posterior_mean``, ``posterior_sd``,
        ``lower``, ``upper`` and, when given (and holding the parameter), ``truth``, ``covered``,
        ``point_estimate``.
    """
    rows = []
    for name in _parameter_names(samples, family, truth, point_estimate):
        draws = np.asarray(samples[name])
        flat = draws.reshape((-1,) + draws.shape[2:])
        mean, sd = flat.mean(axis=0), flat.std(axis=0)
        lower, upper = equal_tailed_interval(draws, prob)
        true_values, estimates = _reference_value(truth, name), _reference_value(point_estimate, name)
        for index in np.ndindex(mean.shape):
            if name in TRANSITION_PARAM_NAMES and index[0] == index[1]:
                continue  # V[i, i] = 0 by construction (staying is the reference): not a parameter
            row = {
                "parameter": name,
                "index": list(index),
                "posterior_mean": float(mean[index]),
                "posterior_sd": float(sd[index]),
                "lower": float(lower[index]),
                "upper": float(upper[index]),
            }
            if true_values is not None:
                true_value = float(true_values[index])
                row["truth"] = true_value
                row["covered"] = bool(lower[index] <= true_value <= upper[index])
            if estimates is not None:
                row["point_estimate"] = float(estimates[index])
            rows.append(row)
    return rows


def coverage_summary(rows: list[dict]) -> dict:
    """Fraction of true values inside their intervals, overall and per parameter, with the misses."""
    covered = [row for row in rows if "covered" in row]
    if not covered:
        return {}
    per_parameter = {}
    for name in dict.fromkeys(row["parameter"] for row in covered):
        group = [row["covered"] for row in covered if row["parameter"] == name]
        per_parameter[name] = float(np.mean(group))
    return {
        "fraction_covered": float(np.mean([row["covered"] for row in covered])),
        "per_parameter": per_parameter,
        "not_covered": [f"{row['parameter']}{row['index']}" for row in covered if not row["covered"]],
    }


def state_accuracy(true_states: np.ndarray, estimated_states: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Fraction of (observed) steps where the estimated state equals the true one (same labeling)."""
    agree = np.asarray(true_states) == np.asarray(estimated_states)
    if mask is not None:
        agree = agree[np.asarray(mask, bool)]
    return float(np.mean(agree))


# --- the complete-data estimate ----------------------------------------------------------------------


class CompleteDataFit(NamedTuple):
    """Outcome of :func:`complete_data_fit`.

    Attributes:
        params: the complete-data maximum-likelihood parameters, the family's params NamedTuple of
            float64 NumPy arrays.
        converged: whether the emission parameters stopped changing (by at most ``tolerance``)
            within ``max_iterations``; False e.g. when a state's classes are perfectly separated
            and its maximum likelihood lies at infinity.
        num_iterations: M-steps taken.
    """

    params: tuple
    converged: bool
    num_iterations: int


def _hmm_frequencies(states: np.ndarray, num_states: int) -> tuple[np.ndarray, np.ndarray]:
    """Empirical p(z_1 = k) over sequences and p(z_{t+1} = j | z_t = i) over every observed transition."""
    initial = np.bincount(states[:, 0], minlength=num_states) / states.shape[0]
    counts = np.zeros((num_states, num_states))
    np.add.at(counts, (states[:, :-1].ravel(), states[:, 1:].ravel()), 1)
    transition = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    return initial, transition


@functools.partial(jax.jit, static_argnames="family")
def _complete_data_m_step(family: EmissionFamily, params, inputs, emissions, mask, states):
    """One maximum-likelihood M-step (no priors) and the largest change of an emission parameter.

    The design matrix and the one-hot state weights are made here, inside the program (outside
    ``jit`` each of their operations would compile a program of its own).
    """
    step_weights = jax.nn.one_hot(states, params.initial_probs.shape[-1], dtype=inputs.dtype) * mask[..., None]
    new = family.m_step(params, design_matrix(inputs), emissions, step_weights, None)
    change = jnp.max(jnp.stack([jnp.max(jnp.abs(new[name] - getattr(params, name))) for name in family.emission_names]))
    return params._replace(**new), change


def complete_data_fit(
    states,
    inputs,
    emissions,
    num_states: int,
    family="gaussian",
    num_classes: int | None = None,
    mask=None,
    max_iterations: int = 200,
    tolerance: float = 1e-6,
) -> CompleteDataFit:
    """Maximum-likelihood parameters had the true states been observed, with convergence information.

    The initial and transition probabilities are the empirical frequencies of the states. The
    emission parameters maximize the complete-data log-likelihood
    sum_{n,t} log p(y[n, t] | x[n, t], theta_{z[n, t]}) over the observed steps, one GLM per state:
    the family's M-step (:attr:`~bayes_glmhmm.emissions.EmissionFamily.m_step`) with one-hot state
    weights and no priors, iterated from weights and biases at zero (extra parameters at one) until
    no emission parameter changes by more than ``tolerance``. For the Gaussian that M-step is closed
    form (weighted least squares, then the mean squared residual), so one step is exact; for the
    other families it is a damped Newton (IRLS) step on a concave objective that never decreases it.

    Args:
        states: (N, T) true states.
        inputs: (N, T, D) covariates.
        emissions: (N, T) observations, in any coding the family accepts.
        num_states: K.
        family: a family name or :class:`~bayes_glmhmm.emissions.EmissionFamily`.
        num_classes: C of a categorical family (inferred from the labels when not given).
        mask: optional (N, T), False at missing emissions (left out of the emission fit; the
            states there still count for the transitions).
        max_iterations: the most M-steps.
        tolerance: convergence threshold on the largest change of an emission parameter.

    Returns:
        A :class:`CompleteDataFit`.
    """
    family = resolve_family(family, emissions, mask, num_classes)
    states = np.asarray(states)
    inputs, emissions, mask = validate_data(inputs, emissions, mask, family)
    if states.shape != emissions.shape:
        raise ValueError(f"states must have the emissions' shape {tuple(emissions.shape)}, got {states.shape}")
    initial, transition = _hmm_frequencies(states, num_states)
    # The usual IRLS start: the objective is concave per state, so the start only sets the number
    # of steps (and needs no key, nor the compile of a family's random initialization). NumPy
    # arrays: the program takes them as they are.
    shapes = family.param_shapes(num_states, inputs.shape[-1])
    dtype = np.dtype(inputs.dtype)
    start = {name: np.zeros(shapes[name], dtype) for name in ("weights", "biases")}
    start.update({name: np.ones(shapes[name], dtype) for name in family.extra_names})
    params = family.params_type(
        initial_probs=np.asarray(initial, dtype), transition_matrix=np.asarray(transition, dtype), **start
    )
    converged = False
    num_iterations = 0
    while num_iterations < max_iterations and not converged:
        params, change = _complete_data_m_step(family, params, inputs, emissions, mask, states)
        num_iterations += 1
        converged = float(change) <= tolerance
    params = family.params_type(
        initial,
        transition,
        *(np.asarray(getattr(params, name), dtype=np.float64) for name in family.emission_names),
    )
    return CompleteDataFit(params, converged, num_iterations)


def complete_data_estimate(
    states, inputs, emissions, num_states: int, family="gaussian", num_classes: int | None = None, mask=None
):
    """Maximum-likelihood parameters had the true states been observed ("realized" parameters).

    A finite data set realizes its own transition frequencies and emission parameters, which can
    sit several standard errors from the generator's values; the posterior should cover these, and
    the generator's values only at the nominal rate across data sets. See :func:`complete_data_fit`
    for how each family's emission parameters are found (and whether they converged).

    Args:
        states: (N, T) true states.
        inputs: (N, T, D) covariates.
        emissions: (N, T) observations.
        num_states: K.
        family: a family name or :class:`~bayes_glmhmm.emissions.EmissionFamily` (Gaussian by default).
        num_classes: C of a categorical family (inferred from the labels when not given).
        mask: optional (N, T), False at missing emissions.

    Returns:
        The family's params NamedTuple: empirical initial and transition frequencies and the
        per-state maximum-likelihood emission parameters (for the Gaussian, least squares and the
        root mean squared residual).
    """
    return complete_data_fit(states, inputs, emissions, num_states, family, num_classes, mask).params
