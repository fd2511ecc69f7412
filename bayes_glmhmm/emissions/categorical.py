"""The categorical family: multinomial logistic regression per state, class 0 the reference.

    p(y_t = c | x_t, z_t = k) = softmax(0, eta[k, 0], ..., eta[k, C - 2])[c],
    eta[k, c - 1] = x_t . weights[k, c - 1] + biases[k, c - 1]

so ``weights[k, c - 1]`` is the change in the log-odds of class c *against class 0* per unit of
input (statsmodels' ``MNLogit`` convention); C - 1 weight vectors per state, not C. Emissions are
integer labels 0..C-1. With C = 2 it is the Bernoulli family.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.nn import log_softmax

from bayes_glmhmm.emissions._glm import first_bad_index, glm_initialize, glm_state_features, linear_predictor
from bayes_glmhmm.emissions._glm import newton_m_step as _newton_m_step
from bayes_glmhmm.emissions.base import EmissionFamily
from bayes_glmhmm.params import CategoricalGLMHMMParams

__all__ = ["family"]


def full_logits(eta):
    """(..., C - 1) logits against class 0 -> (..., C) logits with a leading 0 for the reference class."""
    return jnp.concatenate([jnp.zeros(eta.shape[:-1] + (1,), eta.dtype), eta], axis=-1)


def step_log_likelihood(eta, emissions):
    """Log p(y | eta) for (..., C - 1) predictors and (...) integer-valued labels."""
    log_probabilities = log_softmax(full_logits(eta), axis=-1)
    one_hot = emissions[..., None] == jnp.arange(log_probabilities.shape[-1])
    return jnp.sum(jnp.where(one_hot, log_probabilities, 0.0), axis=-1)


def log_likelihoods(params: CategoricalGLMHMMParams, inputs, emissions):
    """Log p(y | x, z = k, theta) for every state, shape (..., K)."""
    eta = linear_predictor(params.weights, params.biases, inputs)  # (..., K, C - 1)
    return step_log_likelihood(eta, emissions[..., None])


def sample(key, params: CategoricalGLMHMMParams, inputs, states):
    """y_t ~ Categorical(p(. | x_t, z_t)), shape (T,), as floats 0..C-1."""
    eta = linear_predictor(params.weights, params.biases, inputs)  # (T, K, C - 1)
    chosen = jnp.take_along_axis(eta, states[:, None, None], axis=1)[:, 0]
    return jax.random.categorical(key, full_logits(chosen), axis=-1).astype(inputs.dtype)


def mean(params: CategoricalGLMHMMParams, inputs):
    """Class probabilities p(y = c | x, z = k), shape (..., K, C)."""
    return jax.nn.softmax(full_logits(linear_predictor(params.weights, params.biases, inputs)), axis=-1)


def m_step(params, design, emissions, step_weights, priors) -> dict:
    """One damped Newton step of each state's weighted multinomial logistic regression."""
    weights, biases = _newton_m_step(
        step_log_likelihood, params.weights, params.biases, design, emissions, step_weights, priors
    )
    return {"weights": weights, "biases": biases}


def initialize(key, inputs, emissions, mask, num_states: int, *, num_classes: int) -> dict:
    """Around the pooled multinomial logit, 0.5 log-odds of noise per input sd."""
    counts = jnp.sum((emissions[..., None] == jnp.arange(num_classes)) * mask[..., None], axis=(0, 1))
    frequencies = jnp.maximum(counts / jnp.sum(counts), 0.01)
    start_bias = jnp.log(frequencies[1:] / frequencies[0])
    shape = (num_states, num_classes - 1, inputs.shape[-1])
    weights, biases = glm_initialize(key, step_log_likelihood, inputs, emissions, mask, shape, start_bias)
    return {"weights": weights, "biases": biases}


def prepare_emissions(emissions: np.ndarray, mask: np.ndarray, *, num_classes: int) -> np.ndarray:
    """Integer labels 0..C-1; ValueError naming the first bad index."""
    bad = mask & ((emissions < 0) | (emissions > num_classes - 1) | (emissions != np.round(emissions)))
    if bad.any():
        index = first_bad_index(bad)
        raise ValueError(
            f"emissions for the categorical family with {num_classes} classes must be integer labels "
            f"0..{num_classes - 1}, got {emissions[index]!r} at (sequence, step) {index}"
        )
    return emissions


def _no_extra_priors(num_states: int, priors) -> dict:
    return {}


def relabel_features(samples: dict) -> np.ndarray:
    """Weights and biases of each state against the reference class, flattened, (..., K, (C - 1)(D + 1))."""
    return glm_state_features(samples, num_class_axes=1)


@functools.cache
def family(num_classes: int) -> EmissionFamily:
    """The categorical family with ``num_classes`` classes (one object per C, so jit caches are shared).

    Raises:
        ValueError: if ``num_classes`` is not an integer >= 2.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    num_classes = int(num_classes)
    return EmissionFamily(
        name="categorical",
        params_type=CategoricalGLMHMMParams,
        num_classes=num_classes,
        extra_names=(),
        log_likelihoods=log_likelihoods,
        sample=sample,
        mean=mean,
        extra_priors=_no_extra_priors,
        extra_supports=(),
        m_step=m_step,
        initialize=functools.partial(initialize, num_classes=num_classes),
        prepare_emissions=functools.partial(prepare_emissions, num_classes=num_classes),
        relabel_features=relabel_features,
        extra_dims=(),
        standardizes_emissions=False,
        discrete=True,
    )
