"""Standardization of inputs and emissions, and the exact back-transform of GLM-HMM parameters.

The article's priors (Normal(0, 1) weights and biases, HalfNormal(1) noise) are sensible only for
data near unit scale. For data far from it, the fit runs on

    x'[d] = (x[d] - input_mean[d]) / input_scale[d],    y' = (y - emission_mean) / emission_scale,

where the priors apply to the standardized parameters, and every draw is mapped back exactly:

    weights[k, d] = emission_scale * weights'[k, d] / input_scale[d]
    biases[k]     = emission_mean + emission_scale * biases'[k] - sum_d weights[k, d] input_mean[d]
    scales[k]     = emission_scale * scales'[k]

Initial and transition probabilities are unit-free and unchanged.
"""

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from bayes_glmhmm.params import GLMHMMParams

__all__ = ["Standardization", "fit_standardization", "needs_standardization", "standardize_if_requested"]

# "Far from unit scale": a spread outside [1/10, 10] or a centre more than 10 away from 0.
SCALE_RANGE = (0.1, 10.0)
MAX_ABS_MEAN = 10.0


class Standardization(NamedTuple):
    """An affine change of units of inputs and emissions.

    Attributes:
        input_mean: (D,) subtracted from each input (0 for constant inputs).
        input_scale: (D,) each centred input is divided by it (1 for constant inputs).
        emission_mean: subtracted from the emissions.
        emission_scale: the centred emissions are divided by it.
    """

    input_mean: np.ndarray
    input_scale: np.ndarray
    emission_mean: float
    emission_scale: float

    def apply(self, inputs, emissions):
        """Standardized copies of ``inputs`` (N, T, D) and ``emissions`` (N, T)."""
        inputs = (np.asarray(inputs) - self.input_mean) / self.input_scale
        emissions = (np.asarray(emissions) - self.emission_mean) / self.emission_scale
        return inputs, emissions

    def to_original(self, weights, biases, scales):
        """Map standardized (weights (..., K, D), biases (..., K), scales (..., K)) to original units."""
        weights = self.emission_scale * np.asarray(weights) / self.input_scale
        biases = self.emission_mean + self.emission_scale * np.asarray(biases) - weights @ self.input_mean
        return weights, biases, self.emission_scale * np.asarray(scales)

    def to_standardized(self, weights, biases, scales):
        """The inverse of :meth:`to_original`."""
        weights = np.asarray(weights)
        standardized_biases = (
            np.asarray(biases) - self.emission_mean + weights @ self.input_mean
        ) / self.emission_scale
        return (
            weights * self.input_scale / self.emission_scale,
            standardized_biases,
            np.asarray(scales) / self.emission_scale,
        )

    def params_to_original(self, params: GLMHMMParams) -> GLMHMMParams:
        """Parameters fitted on standardized data, in the data's original units."""
        weights, biases, scales = self.to_original(params.weights, params.biases, params.scales)
        return GLMHMMParams(
            np.asarray(params.initial_probs), np.asarray(params.transition_matrix), weights, biases, scales
        )

    def samples_to_original(self, samples: dict) -> dict:
        """Every draw of a samples dict (keys as GLMHMMParams' fields) in original units."""
        weights, biases, scales = self.to_original(samples["weights"], samples["biases"], samples["scales"])
        return {**samples, "weights": weights, "biases": biases, "scales": scales}

    def as_dict(self) -> dict:
        """JSON-friendly form."""
        return {
            "input_mean": np.asarray(self.input_mean).tolist(),
            "input_scale": np.asarray(self.input_scale).tolist(),
            "emission_mean": float(self.emission_mean),
            "emission_scale": float(self.emission_scale),
        }


def fit_standardization(inputs, emissions, mask) -> Standardization:
    """Means and standard deviations of the observed inputs and emissions.

    Args:
        inputs: (N, T, D) covariates.
        emissions: (N, T) observations.
        mask: (N, T), False where missing or padding (those steps are ignored).

    Returns:
        The :class:`Standardization`; a constant input keeps mean 0 and scale 1, so that an
        intercept-like column stays as given.
    """
    mask = np.asarray(mask, bool)
    observed_inputs = np.asarray(inputs)[mask]
    observed_emissions = np.asarray(emissions)[mask]
    input_scale = observed_inputs.std(axis=0)
    constant = input_scale <= 1e-12 * np.maximum(np.abs(observed_inputs).max(axis=0), 1.0)
    input_mean = np.where(constant, 0.0, observed_inputs.mean(axis=0))
    input_scale = np.where(constant, 1.0, input_scale)
    emission_scale = float(observed_emissions.std())
    if emission_scale <= 0:
        raise ValueError("emissions: all observed values are equal; there is nothing to regress")
    return Standardization(input_mean, input_scale, float(observed_emissions.mean()), emission_scale)


def needs_standardization(standardization: Standardization) -> bool:
    """Whether data with these moments are far enough from unit scale to distort unit priors.

    True when the emissions' or any non-constant input's standard deviation lies outside
    [0.1, 10], or its mean is further than 10 from zero. The article's data (inputs in [1, 10],
    emissions of spread ~5) stay on their own scale, so its priors apply exactly.
    """
    low, high = SCALE_RANGE
    scales = np.append(standardization.input_scale, standardization.emission_scale)
    means = np.append(standardization.input_mean, standardization.emission_mean)
    return bool(np.any((scales < low) | (scales > high)) or np.any(np.abs(means) > MAX_ABS_MEAN))


def standardize_if_requested(inputs, emissions, mask, standardize):
    """Apply the ``standardize`` option of the fitting functions.

    Args:
        inputs: (N, T, D) validated covariates (a JAX array).
        emissions: (N, T) validated observations.
        mask: (N, T) observed steps.
        standardize: True, False or ``"auto"`` (only when :func:`needs_standardization`).

    Returns:
        ``(inputs, emissions, standardization)``: the arrays to fit, in the input dtype, and the
        :class:`Standardization` applied, or None when the data are fitted as given.

    Raises:
        ValueError: for any other value of ``standardize``.
    """
    if standardize not in (True, False, "auto"):
        raise ValueError(f"standardize must be True, False or 'auto', got {standardize!r}")
    if standardize is False:
        return inputs, emissions, None
    standardization = fit_standardization(inputs, emissions, mask)
    if standardize == "auto" and not needs_standardization(standardization):
        return inputs, emissions, None
    scaled_inputs, scaled_emissions = standardization.apply(inputs, emissions)
    return (
        jnp.asarray(scaled_inputs, inputs.dtype),
        jnp.asarray(scaled_emissions, emissions.dtype),
        standardization,
    )
