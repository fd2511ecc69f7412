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

from bayes_glmhmm.emission_support import categorical_emissions
from bayes_glmhmm.emissions._glm import glm_family
from bayes_glmhmm.emissions.base import EmissionFamily
from bayes_glmhmm.params import CategoricalGLMHMMParams

__all__ = ["baseline", "family", "full_logits", "step_log_likelihood"]


def full_logits(eta):
    """(..., C - 1) logits against class 0 -> (..., C) logits with a leading 0 for the reference class."""
    return jnp.concatenate([jnp.zeros(eta.shape[:-1] + (1,), eta.dtype), eta], axis=-1)


def step_log_likelihood(eta, emissions):
    """Log p(y | eta) for (..., C - 1) predictors and (...) integer-valued labels."""
    log_probabilities = log_softmax(full_logits(eta), axis=-1)
    one_hot = emissions[..., None] == jnp.arange(log_probabilities.shape[-1])
    return jnp.sum(jnp.where(one_hot, log_probabilities, 0.0), axis=-1)


def class_probabilities(eta):
    """p(y = c | eta), (..., C)."""
    return jax.nn.softmax(full_logits(eta), axis=-1)


def draw(key, eta):
    """Draw y ~ Categorical(softmax(0, eta))."""
    return jax.random.categorical(key, full_logits(eta), axis=-1)


def start_bias(emissions, mask, *, num_classes: int):
    """The log-odds of each class's observed frequency against class 0's (frequencies at least 0.01)."""
    counts = jnp.sum((emissions[..., None] == jnp.arange(num_classes)) * mask[..., None], axis=(0, 1))
    frequencies = jnp.maximum(counts / jnp.sum(counts), 0.01)
    return jnp.log(frequencies[1:] / frequencies[0])


def baseline(train_inputs, train_emissions, test_inputs, test_emissions, *, num_classes: int) -> np.ndarray:
    """Log p(y) of each test step under the training class frequencies.

    p(c) = (n_c + 1/2) / (n + C / 2): the frequency of class c in the training steps with half a
    count added to every class (never 0, so a class absent from training cannot give -inf). The
    inputs are not used.
    """
    train_labels = np.asarray(train_emissions).astype(int)
    counts = np.bincount(train_labels, minlength=num_classes).astype(np.float64)
    log_frequencies = np.log((counts + 0.5) / (counts.sum() + 0.5 * num_classes))
    return log_frequencies[np.asarray(test_emissions).astype(int)]


@functools.cache
def family(num_classes: int) -> EmissionFamily:
    """The categorical family with ``num_classes`` classes (one object per C, so jit caches are shared).

    Raises:
        ValueError: if ``num_classes`` is not an integer >= 2.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    num_classes = int(num_classes)
    return glm_family(
        name="categorical",
        params_type=CategoricalGLMHMMParams,
        step_log_likelihood=step_log_likelihood,
        inverse_link=class_probabilities,
        draw=draw,
        start_bias=functools.partial(start_bias, num_classes=num_classes),
        mean_label="p(y = {c} | x, z = k)",
        mean_is_probability=True,
        prepare_emissions=functools.partial(categorical_emissions, num_classes=num_classes),
        baseline=functools.partial(baseline, num_classes=num_classes),
        baseline_name="the class frequencies of the training steps",
        num_classes=num_classes,
    )
