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

from bayes_glmhmm.emission_support import bernoulli_emissions
from bayes_glmhmm.emissions._glm import glm_family
from bayes_glmhmm.params import BernoulliGLMHMMParams

__all__ = ["FAMILY", "baseline", "step_log_likelihood"]


def step_log_likelihood(eta, emissions):
    """Log p(y | eta) = y log sigmoid(eta) + (1 - y) log sigmoid(-eta), for any broadcastable shapes."""
    return emissions * log_sigmoid(eta) + (1.0 - emissions) * log_sigmoid(-eta)


def draw(key, eta):
    """Draw y ~ Bernoulli(sigmoid(eta))."""
    return jax.random.bernoulli(key, sigmoid(eta))


def start_bias(emissions, mask):
    """The log-odds of the observed rate of ones (clipped to [0.01, 0.99])."""
    rate = jnp.clip(jnp.sum(emissions * mask) / jnp.sum(mask), 0.01, 0.99)
    return jnp.log(rate / (1 - rate))


def baseline(train_inputs, train_emissions, test_inputs, test_emissions) -> np.ndarray:
    """Log p(y) of each test step under a constant rate fitted to the training steps.

    The rate is the training frequency of ones with half a count added to each outcome,
    p = (sum y + 1/2) / (n + 1) (within 1 / (2 n) of the plain frequency the field uses, and never
    0 or 1, so an outcome absent from training cannot give -inf). The inputs are not used.
    """
    train_emissions = np.asarray(train_emissions, dtype=np.float64)
    rate = (np.sum(train_emissions) + 0.5) / (train_emissions.size + 1.0)
    test_emissions = np.asarray(test_emissions, dtype=np.float64)
    return test_emissions * np.log(rate) + (1.0 - test_emissions) * np.log1p(-rate)


FAMILY = glm_family(
    name="bernoulli",
    params_type=BernoulliGLMHMMParams,
    step_log_likelihood=step_log_likelihood,
    inverse_link=sigmoid,
    draw=draw,
    start_bias=start_bias,
    mean_label="p(y = 1 | x, z = k)",
    mean_is_probability=True,
    prepare_emissions=bernoulli_emissions,
    baseline=baseline,
    baseline_name="a constant rate of ones (the training frequency)",
)
