"""The Bernoulli family: logistic regression per state, for binary choices.

    p(y_t = 1 | x_t, z_t = k) = sigmoid(x_t . weights[k] + biases[k])

Emissions are 0/1. Booleans are accepted (True = 1), and so are -1/+1 codings (-1 becomes 0,
+1 stays 1) when every observed value is -1 or +1. A mix of -1, 0 and 1 is refused as ambiguous
(in IBL data 0 is "no response": mask those trials or use the categorical family).
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.nn import log_sigmoid, sigmoid

from bayes_glmhmm.emissions._glm import first_bad_index, glm_initialize, glm_state_features, linear_predictor
from bayes_glmhmm.emissions._glm import newton_m_step as _newton_m_step
from bayes_glmhmm.emissions.base import EmissionFamily
from bayes_glmhmm.params import BernoulliGLMHMMParams

__all__ = ["FAMILY"]


def step_log_likelihood(eta, emissions):
    """Log p(y | eta) = y log sigmoid(eta) + (1 - y) log sigmoid(-eta), for any broadcastable shapes."""
    return emissions * log_sigmoid(eta) + (1.0 - emissions) * log_sigmoid(-eta)


def log_likelihoods(params: BernoulliGLMHMMParams, inputs, emissions):
    """Log p(y | x, z = k, theta) for every state, shape (..., K)."""
    return step_log_likelihood(linear_predictor(params.weights, params.biases, inputs), emissions[..., None])


def sample(key, params: BernoulliGLMHMMParams, inputs, states):
    """y_t ~ Bernoulli(sigmoid(x_t . weights[z_t] + biases[z_t])), shape (T,), as floats 0/1."""
    probabilities = jnp.take_along_axis(mean(params, inputs), states[:, None], axis=1)[:, 0]
    return jax.random.bernoulli(key, probabilities).astype(probabilities.dtype)


def mean(params: BernoulliGLMHMMParams, inputs):
    """p(y = 1 | x, z = k), shape (..., K)."""
    return sigmoid(linear_predictor(params.weights, params.biases, inputs))


def m_step(params, design, emissions, step_weights, priors) -> dict:
    """One damped Newton (IRLS) step of each state's weighted logistic regression."""
    weights, biases = _newton_m_step(
        step_log_likelihood, params.weights, params.biases, design, emissions, step_weights, priors
    )
    return {"weights": weights, "biases": biases}


def initialize(key, inputs, emissions, mask, num_states: int) -> dict:
    """Around the pooled logistic regression, 0.5 log-odds of noise per input sd."""
    rate = jnp.clip(jnp.sum(emissions * mask) / jnp.sum(mask), 0.01, 0.99)
    weights, biases = glm_initialize(
        key, step_log_likelihood, inputs, emissions, mask, (num_states, inputs.shape[-1]), jnp.log(rate / (1 - rate))
    )
    return {"weights": weights, "biases": biases}


def prepare_emissions(emissions: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """0/1 (or booleans, or all -1/+1) emissions as floats 0/1; ValueError naming the first bad index."""
    observed = emissions[mask]
    if observed.size and np.all(np.isin(observed, (-1.0, 1.0))) and np.any(observed == -1.0):
        return np.where(mask & (emissions == -1.0), 0.0, emissions)
    bad = mask & ~np.isin(emissions, (0.0, 1.0))
    if bad.any():
        index = first_bad_index(bad)
        raise ValueError(
            f"emissions for the bernoulli family must be 0/1 (or booleans, or all -1/+1), got "
            f"{emissions[index]!r} at (sequence, step) {index}; mask it out if it is a missing value"
        )
    return emissions


def _no_extra_priors(num_states: int, priors) -> dict:
    return {}


def relabel_features(samples: dict) -> np.ndarray:
    """Weights and bias of each state, (..., K, D + 1)."""
    return glm_state_features(samples)


FAMILY = EmissionFamily(
    name="bernoulli",
    params_type=BernoulliGLMHMMParams,
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
