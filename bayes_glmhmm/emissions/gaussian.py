"""The Gaussian family (the article's "conveyor belts"): linear regression with per-state noise.

    y_t | x_t, z_t = k ~ Normal(x_t . weights[k] + biases[k], scales[k]^2),   scales[k] ~ HalfNormal(noise_scale)

Its M-step is closed form: a weighted ridge regression per state, then the noise scale given the
regression (an ECM step).
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.scipy.stats import norm
from jaxtyping import Array, Float

from bayes_glmhmm.emission_support import gaussian_emissions
from bayes_glmhmm.emissions._glm import (
    design_matrix,
    glm_state_features,
    linear_predictor,
    weighted_least_squares,
)
from bayes_glmhmm.emissions.base import EmissionFamily
from bayes_glmhmm.params import GLMHMMParams

__all__ = ["FAMILY", "baseline", "gaussian_glm_log_likelihoods", "glm_means"]


def glm_means(
    weights: Float[Array, "num_states input_dim"],
    biases: Float[Array, " num_states"],
    inputs: Float[Array, "*batch input_dim"],
) -> Float[Array, "*batch num_states"]:
    """E[y_t | x_t, z_t = k] = x_t . weights[k] + biases[k], for every state k."""
    return linear_predictor(weights, biases, inputs)


def gaussian_glm_log_likelihoods(
    weights: Float[Array, "num_states input_dim"],
    biases: Float[Array, " num_states"],
    scales: Float[Array, " num_states"],
    inputs: Float[Array, "*batch input_dim"],
    emissions: Float[Array, "*batch"],
) -> Float[Array, "*batch num_states"]:
    """Log p(y_t | x_t, z_t = k) = log Normal(y_t; x_t . weights[k] + biases[k], scales[k]^2).

    Args:
        weights: per-state regression weights.
        biases: per-state intercepts.
        scales: per-state noise standard deviations.
        inputs: covariates with any leading batch shape, e.g. (num_sequences, num_timesteps, D).
        emissions: observations with the same leading shape.

    Returns:
        Log-likelihoods with a trailing state axis, e.g. (num_sequences, num_timesteps, K).
    """
    return norm.logpdf(emissions[..., None], glm_means(weights, biases, inputs), scales)


def log_likelihoods(params: GLMHMMParams, inputs, emissions):
    """Log p(y | x, z = k, theta) for every state, shape (..., K).

    A batch of one sequence, (1, T, D), is computed as (T, D): XLA's CPU code for the emission array
    and its vector-Jacobian product in (weights, biases, scales) is 1.8-6.8x slower for a (1, T, K)
    batch than for the same steps without the leading axis, and the whole log-density gradient of
    one sequence of 2,000-100,000 steps 1.2-2x faster this way (2-core CPU,
    ``benchmarks/emission_share.py``, before and after). The values per step are the same.
    """
    if inputs.ndim == 3 and inputs.shape[0] == 1:
        return log_likelihoods(params, inputs[0], emissions[0])[None]
    return gaussian_glm_log_likelihoods(params.weights, params.biases, params.scales, inputs, emissions)


def sample(key, params: GLMHMMParams, inputs, states):
    """y_t ~ Normal(x_t . weights[z_t] + biases[z_t], scales[z_t]^2) given the states, shape (T,)."""
    means = jnp.take_along_axis(glm_means(params.weights, params.biases, inputs), states[:, None], axis=1)[:, 0]
    noise = jax.random.normal(key, states.shape, dtype=means.dtype)
    return means + params.scales[states] * noise


def mean(params: GLMHMMParams, inputs):
    """E[y | x, z = k], shape (..., K)."""
    return glm_means(params.weights, params.biases, inputs)


def extra_priors(num_states: int, priors) -> dict:
    """The noise scales' prior, scales[k] ~ HalfNormal(noise_scale)."""
    return {"scales": dist.HalfNormal(priors.noise_scale).expand([num_states]).to_event(1)}


def _map_scale_squared(count, residual_sum, noise_scale):
    """argmax_s of -count log s - residual_sum / (2 s^2) - s^2 / (2 noise_scale^2), as s^2.

    An infinite ``noise_scale`` (the EM's flat priors) gives the maximum likelihood, residual_sum / count.
    """
    a = 1.0 / noise_scale**2
    safe = jnp.where(a > 0, a, 1.0)
    map_value = (-count + jnp.sqrt(count**2 + 4.0 * safe * residual_sum)) / (2.0 * safe)
    return jnp.where(a > 0, map_value, residual_sum / jnp.maximum(count, jnp.finfo(residual_sum.dtype).tiny))


def m_step(params: GLMHMMParams, design, emissions, step_weights, priors) -> dict:
    """Closed-form ECM step: weighted ridge regression per state, then the noise scale given it.

    Under priors the ridge penalty is scaled by the current noise variance (the conditional MAP
    given the scales) and the scale is the MAP under its HalfNormal prior given the regression.
    """
    num_coefficients = design.shape[-1]
    dtype = design.dtype
    if priors is None:
        penalty = jnp.zeros(num_coefficients, dtype)
    else:
        penalty = jnp.concatenate(
            [jnp.full(num_coefficients - 1, 1.0 / priors.weight_scale**2), jnp.array([1.0 / priors.bias_scale**2])]
        ).astype(dtype)
    ridge = (params.scales**2)[:, None, None] * jnp.diag(penalty)[None]
    coefficients = weighted_least_squares(design, emissions, step_weights, ridge)  # (K, D + 1)
    residuals = emissions[..., None] - design @ coefficients.T  # (N, T, K)
    residual_sum = jnp.sum(step_weights * residuals**2, axis=(0, 1))
    counts = jnp.sum(step_weights, axis=(0, 1))
    tiny = jnp.finfo(dtype).tiny
    if priors is None:
        scale_squared = residual_sum / jnp.maximum(counts, tiny)
    else:
        scale_squared = _map_scale_squared(counts, residual_sum, priors.noise_scale)
    # Floor: a state that explains a single point exactly would otherwise collapse to zero noise.
    observed = jnp.sum(step_weights, axis=-1) > 0
    floor = 1e-6 * jnp.var(emissions, where=observed) + tiny
    return {
        "weights": coefficients[:, :-1],
        "biases": coefficients[:, -1],
        "scales": jnp.sqrt(jnp.maximum(scale_squared, floor)),
    }


def initialize(key, inputs, emissions, mask, num_states: int) -> dict:
    """Pooled least squares plus Normal noise of one residual sd (per input sd); scales that sd."""
    input_dim = inputs.shape[-1]
    key_weights, key_biases, _ = jax.random.split(key, 3)  # the third is the transitions' (em.initialize_params)
    design = design_matrix(inputs)
    coefficients = weighted_least_squares(design, emissions, mask.astype(inputs.dtype)[..., None])[0]
    residuals = emissions - design @ coefficients
    residual_sd = jnp.sqrt(jnp.sum(mask * residuals**2) / jnp.sum(mask))
    input_sd = jnp.sqrt(jnp.var(inputs, axis=(0, 1), where=mask[..., None])) + 1e-12
    weights = coefficients[:-1] + residual_sd / input_sd * jax.random.normal(key_weights, (num_states, input_dim))
    biases = coefficients[-1] + residual_sd * jax.random.normal(key_biases, (num_states,))
    return {
        "weights": weights.astype(inputs.dtype),
        "biases": biases.astype(inputs.dtype),
        "scales": jnp.full(num_states, residual_sd, inputs.dtype),
    }


def relabel_features(samples: dict) -> np.ndarray:
    """Weights, bias and log noise scale of each state, (..., K, D + 2)."""
    return glm_state_features(samples, extra=(np.log(np.asarray(samples["scales"])),))


def baseline(train_inputs, train_emissions, test_inputs, test_emissions) -> np.ndarray:
    """Log p(y) of each test step under a one-state linear regression fitted to the training steps.

    Ordinary least squares with an intercept, and the maximum-likelihood noise variance (the
    residual sum of squares over n): the K = 1 model without priors.
    """
    train_design = np.column_stack([np.asarray(train_inputs, dtype=np.float64), np.ones(len(train_emissions))])
    train_emissions = np.asarray(train_emissions, dtype=np.float64)
    coefficients, *_ = np.linalg.lstsq(train_design, train_emissions, rcond=None)
    variance = max(float(np.mean((train_emissions - train_design @ coefficients) ** 2)), np.finfo(float).tiny)
    test_design = np.column_stack([np.asarray(test_inputs, dtype=np.float64), np.ones(len(test_emissions))])
    residuals = np.asarray(test_emissions, dtype=np.float64) - test_design @ coefficients
    return -0.5 * (np.log(2.0 * np.pi * variance) + residuals**2 / variance)


FAMILY = EmissionFamily(
    name="gaussian",
    params_type=GLMHMMParams,
    num_classes=None,
    extra_names=("scales",),
    log_likelihoods=log_likelihoods,
    sample=sample,
    mean=mean,
    extra_priors=extra_priors,
    extra_supports=(("scales", "positive"),),
    m_step=m_step,
    initialize=initialize,
    prepare_emissions=gaussian_emissions,
    relabel_features=relabel_features,
    extra_dims=(("scales", ("state",)),),
    standardizes_emissions=True,
    discrete=False,
    baseline=baseline,
    baseline_name="a one-state linear regression (least squares)",
)
