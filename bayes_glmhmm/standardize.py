"""Standardization of inputs and emissions, and the exact back-transform of GLM-HMM parameters.

The article's priors (Normal(0, 1) weights and biases, HalfNormal(1) noise) are sensible only for
data near unit scale. For data far from it, the fit runs on

    x'[d] = (x[d] - input_mean[d]) / input_scale[d],    y' = (y - emission_mean) / emission_scale,

where the priors apply to the standardized parameters, and every draw is mapped back exactly:

    weights[k, d] = emission_scale * weights'[k, d] / input_scale[d]
    biases[k]     = emission_mean + emission_scale * biases'[k] - sum_d weights[k, d] input_mean[d]
    scales[k]     = emission_scale * scales'[k]

Initial and transition probabilities are unit-free and unchanged. Families other than the
Gaussian standardize their inputs only (emission_mean 0, emission_scale 1): a logit or log link
has no unit to change. The weights of a categorical family, (K, C - 1, D), map the same way.
"""

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

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

    def to_original(self, weights, biases, scales=None):
        """Map standardized (weights (..., K, [C - 1,] D), biases (..., K, [C - 1]), scales (..., K)) to original units.

        Returns ``(weights, biases, scales)``; scales is None when not given.
        """
        weights = self.emission_scale * np.asarray(weights) / self.input_scale
        biases = self.emission_mean + self.emission_scale * np.asarray(biases) - weights @ self.input_mean
        return weights, biases, None if scales is None else self.emission_scale * np.asarray(scales)

    def to_standardized(self, weights, biases, scales=None):
        """The inverse of :meth:`to_original`."""
        weights = np.asarray(weights)
        standardized_biases = (
            np.asarray(biases) - self.emission_mean + weights @ self.input_mean
        ) / self.emission_scale
        return (
            weights * self.input_scale / self.emission_scale,
            standardized_biases,
            None if scales is None else np.asarray(scales) / self.emission_scale,
        )

    def _map_params(self, params, transform):
        weights, biases, scales = transform(params.weights, params.biases, getattr(params, "scales", None))
        mapped = dict(weights=weights, biases=biases) | ({} if scales is None else dict(scales=scales))
        merged = params._asdict() | mapped
        return type(params)(**{name: None if value is None else np.asarray(value) for name, value in merged.items()})

    def params_to_original(self, params):
        """Parameters (any family's) fitted on standardized data, in the data's original units."""
        return self._map_params(params, self.to_original)

    def params_to_standardized(self, params):
        """Parameters in the data's units, in standardized units (the inverse of :meth:`params_to_original`)."""
        return self._map_params(params, self.to_standardized)

    def samples_to_original(self, samples: dict) -> dict:
        """Every draw of a samples dict (keys as the params' fields) in original units."""
        weights, biases, scales = self.to_original(samples["weights"], samples["biases"], samples.get("scales"))
        mapped = dict(weights=weights, biases=biases) | ({} if scales is None else dict(scales=scales))
        return {**samples, **mapped}

    def as_dict(self) -> dict:
        """JSON-friendly form."""
        return {
            "input_mean": np.asarray(self.input_mean).tolist(),
            "input_scale": np.asarray(self.input_scale).tolist(),
            "emission_mean": float(self.emission_mean),
            "emission_scale": float(self.emission_scale),
        }


def fit_standardization(inputs, emissions, mask, emissions_too: bool = True) -> Standardization:
    """Means and standard deviations of the observed inputs and emissions.

    Args:
        inputs: (N, T, D) covariates.
        emissions: (N, T) observations.
        mask: (N, T), False where missing or padding (those steps are ignored).
        emissions_too: standardize the emissions as well (Gaussian); otherwise their mean is 0
            and scale 1, i.e. they are left as they are.

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
    if not emissions_too:
        return Standardization(input_mean, input_scale, 0.0, 1.0)
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


def standardize_if_requested(inputs, emissions, mask, standardize, emissions_too: bool = True):
    """Apply the ``standardize`` option of the fitting functions.

    Args:
        inputs: (N, T, D) validated covariates (a JAX array).
        emissions: (N, T) validated observations.
        mask: (N, T) observed steps.
        standardize: True, False or ``"auto"`` (only when :func:`needs_standardization`).
        emissions_too: whether the emissions are standardized too (the Gaussian family) or left as
            they are (the other families).

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
    standardization = fit_standardization(inputs, emissions, mask, emissions_too)
    if standardize == "auto" and not needs_standardization(standardization):
        return inputs, emissions, None
    scaled_inputs, scaled_emissions = standardization.apply(inputs, emissions)
    return (
        jnp.asarray(scaled_inputs, inputs.dtype),
        jnp.asarray(scaled_emissions, emissions.dtype),
        standardization,
    )
