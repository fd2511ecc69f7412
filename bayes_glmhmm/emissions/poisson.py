"""The Poisson family: log-linear regression per state, for counts (e.g. spikes per bin).

    y_t | x_t, z_t = k ~ Poisson(exp(x_t . weights[k] + biases[k]))

Emissions are non-negative integers (stored as floats).
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from bayes_glmhmm.emissions._glm import first_bad_index, glm_initialize, glm_state_features, linear_predictor
from bayes_glmhmm.emissions._glm import newton_m_step as _newton_m_step
from bayes_glmhmm.emissions.base import EmissionFamily
from bayes_glmhmm.params import PoissonGLMHMMParams

__all__ = ["FAMILY"]


def step_log_likelihood(eta, emissions):
    """Log p(y | eta) = y eta - exp(eta) - log y!, for any broadcastable shapes."""
    return emissions * eta - jnp.exp(eta) - gammaln(emissions + 1.0)


def log_likelihoods(params: PoissonGLMHMMParams, inputs, emissions):
    """Log p(y | x, z = k, theta) for every state, shape (..., K)."""
    return step_log_likelihood(linear_predictor(params.weights, params.biases, inputs), emissions[..., None])


def sample(key, params: PoissonGLMHMMParams, inputs, states):
    """y_t ~ Poisson(exp(x_t . weights[z_t] + biases[z_t])), shape (T,), as floats."""
    rates = jnp.take_along_axis(mean(params, inputs), states[:, None], axis=1)[:, 0]
    return jax.random.poisson(key, rates).astype(rates.dtype)


def mean(params: PoissonGLMHMMParams, inputs):
    """E[y | x, z = k] = exp(eta), shape (..., K)."""
    return jnp.exp(linear_predictor(params.weights, params.biases, inputs))


def m_step(params, design, emissions, step_weights, priors) -> dict:
    """One damped Newton step of each state's weighted Poisson regression."""
    weights, biases = _newton_m_step(
        step_log_likelihood, params.weights, params.biases, design, emissions, step_weights, priors
    )
    return {"weights": weights, "biases": biases}


def initialize(key, inputs, emissions, mask, num_states: int) -> dict:
    """Around the pooled Poisson regression, 0.5 log-rate units of noise per input sd."""
    rate = jnp.maximum(jnp.sum(emissions * mask) / jnp.sum(mask), 0.01)
    weights, biases = glm_initialize(
        key, step_log_likelihood, inputs, emissions, mask, (num_states, inputs.shape[-1]), jnp.log(rate)
    )
    return {"weights": weights, "biases": biases}


def prepare_emissions(emissions: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Non-negative integer counts; ValueError naming the first bad index."""
    bad = mask & ((emissions < 0) | (emissions != np.round(emissions)))
    if bad.any():
        index = first_bad_index(bad)
        raise ValueError(
            f"emissions for the poisson family must be non-negative integer counts, got {emissions[index]!r} "
            f"at (sequence, step) {index}"
        )
    return emissions


def _no_extra_priors(num_states: int, priors) -> dict:
    return {}


def relabel_features(samples: dict) -> np.ndarray:
    """Weights and bias of each state, (..., K, D + 1)."""
    return glm_state_features(samples)


FAMILY = EmissionFamily(
    name="poisson",
    params_type=PoissonGLMHMMParams,
    num_classes=None,
    extra_names=(),
    log_likelihoods=log_likelihoods,
    sample=sample,
    mean=mean,
    extra_priors=_no_extra_priors,
    extra_supports=(),
    m_step=m_step,
    initialize=initialize,
    prepare_emissions=prepare_emissions,
    relabel_features=relabel_features,
    extra_dims=(),
    standardizes_emissions=False,
    discrete=True,
)
