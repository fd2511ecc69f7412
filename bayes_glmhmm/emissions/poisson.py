"""The Poisson family: log-linear regression per state, for counts (e.g. spikes per bin).

    y_t | x_t, z_t = k ~ Poisson(exp(x_t . weights[k] + biases[k]))

Emissions are non-negative integers (stored as floats).
"""

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special
from jax.scipy.special import gammaln

from bayes_glmhmm.emission_support import poisson_emissions
from bayes_glmhmm.emissions._glm import glm_family
from bayes_glmhmm.params import PoissonGLMHMMParams

__all__ = ["FAMILY", "baseline", "step_log_likelihood"]


def step_log_likelihood(eta, emissions):
    """Log p(y | eta) = y eta - exp(eta) - log y!, for any broadcastable shapes."""
    return emissions * eta - jnp.exp(eta) - gammaln(emissions + 1.0)


def draw(key, eta):
    """Draw y ~ Poisson(exp(eta))."""
    return jax.random.poisson(key, jnp.exp(eta))


def start_bias(emissions, mask):
    """The log of the observed mean count (at least 0.01)."""
    return jnp.log(jnp.maximum(jnp.sum(emissions * mask) / jnp.sum(mask), 0.01))


def baseline(train_inputs, train_emissions, test_inputs, test_emissions) -> np.ndarray:
    """Log p(y) of each test step under a constant Poisson rate fitted to the training steps.

    The rate is (sum y + 1/2) / n, the training mean plus half a count (never 0, so a count in
    the test steps cannot give -inf when training saw none). The inputs are not used.
    """
    train_emissions = np.asarray(train_emissions, dtype=np.float64)
    rate = (np.sum(train_emissions) + 0.5) / train_emissions.size
    test_emissions = np.asarray(test_emissions, dtype=np.float64)
    return test_emissions * np.log(rate) - rate - scipy.special.gammaln(test_emissions + 1.0)


FAMILY = glm_family(
    name="poisson",
    params_type=PoissonGLMHMMParams,
    step_log_likelihood=step_log_likelihood,
    inverse_link=jnp.exp,
    draw=draw,
    start_bias=start_bias,
    mean_label="rate E[y | x, z = k]",
    mean_is_probability=False,
    prepare_emissions=poisson_emissions,
    baseline=baseline,
    baseline_name="a constant rate (the training mean count)",
)
