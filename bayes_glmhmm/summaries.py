"""Tables that put the posterior beside the truth and a point estimate."""

import numpy as np

from bayes_glmhmm.params import PARAM_NAMES, GLMHMMParams

__all__ = ["equal_tailed_interval", "parameter_table", "coverage_summary", "state_accuracy", "complete_data_estimate"]


def equal_tailed_interval(draws: np.ndarray, prob: float = 0.94) -> tuple[np.ndarray, np.ndarray]:
    """Central ``prob`` interval over the leading (chain, draw) axes: the (1-prob)/2 and (1+prob)/2 quantiles."""
    draws = np.asarray(draws)
    flat = draws.reshape((-1,) + draws.shape[2:])
    lower, upper = np.quantile(flat, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    return lower, upper


def parameter_table(
    samples: dict, truth: GLMHMMParams | None = None, point_estimate: GLMHMMParams | None = None, prob: float = 0.94
) -> list[dict]:
    """One row per scalar parameter: posterior mean, sd, interval, truth and point estimate.

    All inputs must share one labeling (see :func:`bayes_glmhmm.relabel.match_params`).

    Args:
        samples: dict of (chain, draw, ...) arrays keyed by parameter name.
        truth: the generating parameters, if known.
        point_estimate: e.g. the EM estimate.
        prob: interval probability.

    Returns:
        A list of dicts with keys ``parameter``, ``index``, ``posterior_mean``, ``posterior_sd``,
        ``lower``, ``upper`` and, when given, ``truth``, ``covered``, ``point_estimate``.
    """
    rows = []
    for name in PARAM_NAMES:
        draws = np.asarray(samples[name])
        flat = draws.reshape((-1,) + draws.shape[2:])
        mean, sd = flat.mean(axis=0), flat.std(axis=0)
        lower, upper = equal_tailed_interval(draws, prob)
        for index in np.ndindex(mean.shape):
            row = {
                "parameter": name,
                "index": list(index),
                "posterior_mean": float(mean[index]),
                "posterior_sd": float(sd[index]),
                "lower": float(lower[index]),
                "upper": float(upper[index]),
            }
            if truth is not None:
                true_value = float(np.asarray(getattr(truth, name))[index])
                row["truth"] = true_value
                row["covered"] = bool(lower[index] <= true_value <= upper[index])
            if point_estimate is not None:
                row["point_estimate"] = float(np.asarray(getattr(point_estimate, name))[index])
            rows.append(row)
    return rows


def coverage_summary(rows: list[dict]) -> dict:
    """Fraction of true values inside their intervals, overall and per parameter, with the misses."""
    covered = [row for row in rows if "covered" in row]
    if not covered:
        return {}
    per_parameter = {}
    for name in PARAM_NAMES:
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


def complete_data_estimate(states, inputs, emissions, num_states: int) -> GLMHMMParams:
    """Maximum-likelihood parameters had the true states been observed ("realized" parameters).

    A finite data set realizes its own transition frequencies and residual spreads, which can sit
    several standard errors from the generator's values; the posterior should cover these, and the
    generator's values only at the nominal rate across data sets.

    Args:
        states: (N, T) true states.
        inputs: (N, T, D) covariates.
        emissions: (N, T) observations.
        num_states: K.

    Returns:
        GLMHMMParams of empirical initial and transition frequencies and per-state least squares.
    """
    states, inputs, emissions = np.asarray(states), np.asarray(inputs), np.asarray(emissions)
    initial = np.bincount(states[:, 0], minlength=num_states) / states.shape[0]
    counts = np.zeros((num_states, num_states))
    np.add.at(counts, (states[:, :-1].ravel(), states[:, 1:].ravel()), 1)
    transition = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    weights, biases, scales = [], [], []
    for k in range(num_states):
        selected = states == k
        design = np.column_stack([inputs[selected], np.ones(selected.sum())])
        coefficients, *_ = np.linalg.lstsq(design, emissions[selected], rcond=None)
        residuals = emissions[selected] - design @ coefficients
        weights.append(coefficients[:-1])
        biases.append(coefficients[-1])
        scales.append(np.sqrt(np.mean(residuals**2)))
    return GLMHMMParams(initial, transition, np.array(weights), np.array(biases), np.array(scales))
