"""Parameters, priors and input validation of the GLM-HMM, for every emission family.

The model, for sequence n and time t:

    z_1 ~ Categorical(initial_probs),  z_{t+1} | z_t = i ~ Categorical(transition_matrix[i])
    y_t | x_t, z_t = k ~ family(x_t . weights[k] + biases[k])

e.g. Normal(x_t . weights[k] + biases[k], scales[k]^2) for the Gaussian family (the article's),
with the priors of the article: Dirichlet on ``initial_probs`` and on each row of
``transition_matrix``, Normal(0, scale) on weights and biases, HalfNormal(scale) on ``scales``.
Each family has its parameter NamedTuple (:class:`GLMHMMParams` is the Gaussian's); the type of a
params object says its family (:func:`bayes_glmhmm.emissions.family_of`).
:class:`Priors` is defined in :mod:`bayes_glmhmm.priors`, which the command line imports without JAX.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from bayes_glmhmm._compile import device_array
from bayes_glmhmm.priors import Priors

__all__ = [
    "BernoulliGLMHMMParams",
    "CategoricalGLMHMMParams",
    "GLMHMMParams",
    "PARAM_NAMES",
    "PoissonGLMHMMParams",
    "Priors",
    "validate_data",
    "validate_num_states",
    "permute_params",
]


class GLMHMMParams(NamedTuple):
    """Parameters of a Gaussian GLM-HMM with K states and D inputs.

    Attributes:
        initial_probs: p(z_1 = k), shape (K,).
        transition_matrix: p(z_{t+1} = j | z_t = i), shape (K, K), rows sum to one.
        weights: regression weights of each state, shape (K, D).
        biases: intercept of each state, shape (K,).
        scales: noise standard deviation of each state, shape (K,).
        transition_weights: input-driven transitions only (None: stationary), shape (K, K, M):
            see :mod:`bayes_glmhmm.transitions`; ``transition_matrix`` is then the transition
            probabilities at zero transition input.
    """

    initial_probs: Float[Array, " num_states"]
    transition_matrix: Float[Array, "num_states num_states"]
    weights: Float[Array, "num_states input_dim"]
    biases: Float[Array, " num_states"]
    scales: Float[Array, " num_states"]
    transition_weights: Float[Array, "num_states num_states transition_input_dim"] | None = None


def permute_params(params, permutation):
    """Relabel states so that new state k is old state ``permutation[k]``, for any family's params.

    Works on unbatched parameters: every parameter has its state axis first, and the transition
    matrix and the transition weights (input-driven transitions) are permuted on both state axes.
    """
    # NumPy indices keep NumPy parameters NumPy (float64 stays exact) and index JAX arrays too.
    permutation = np.asarray(permutation)
    permuted = {name: None if value is None else value[permutation] for name, value in params._asdict().items()}
    permuted["transition_matrix"] = permuted["transition_matrix"][:, permutation]
    if permuted.get("transition_weights") is not None:
        permuted["transition_weights"] = permuted["transition_weights"][:, permutation]
    return type(params)(**permuted)


def _num_states(self) -> int:
    return int(np.shape(self.initial_probs)[-1])


def _input_dim(self) -> int:
    return int(np.shape(self.weights)[-1])


def _permute(self, permutation):
    """Relabel the states: new state k is old state ``permutation[k]``."""
    return permute_params(self, permutation)


class BernoulliGLMHMMParams(NamedTuple):
    """Parameters of a Bernoulli (logistic) GLM-HMM: p(y_t = 1 | x_t, z_t = k) = sigmoid(x_t . weights[k] + biases[k]).

    Attributes:
        initial_probs: p(z_1 = k), shape (K,).
        transition_matrix: p(z_{t+1} = j | z_t = i), shape (K, K).
        weights: log-odds of y = 1 per unit of each input, shape (K, D).
        biases: log-odds of y = 1 at zero input, shape (K,).
        transition_weights: (K, K, M) for input-driven transitions, else None.
    """

    initial_probs: Float[Array, " num_states"]
    transition_matrix: Float[Array, "num_states num_states"]
    weights: Float[Array, "num_states input_dim"]
    biases: Float[Array, " num_states"]
    transition_weights: Float[Array, "num_states num_states transition_input_dim"] | None = None


class CategoricalGLMHMMParams(NamedTuple):
    """Parameters of a categorical (multinomial logit) GLM-HMM with C classes, class 0 the reference.

    log p(y_t = c | x_t, z_t = k) / p(y_t = 0 | x_t, z_t = k) = x_t . weights[k, c - 1] + biases[k, c - 1]
    for c = 1..C-1: row c - 1 of a state's weights is the log-odds of class c *against class 0*,
    so there are C - 1 weight vectors, not C, and a positive weight favours class c over class 0
    (as in statsmodels' ``MNLogit``, whose first class is the reference too).

    Attributes:
        initial_probs: p(z_1 = k), shape (K,).
        transition_matrix: p(z_{t+1} = j | z_t = i), shape (K, K).
        weights: shape (K, C - 1, D).
        biases: shape (K, C - 1).
        transition_weights: (K, K, M) for input-driven transitions, else None.
    """

    initial_probs: Float[Array, " num_states"]
    transition_matrix: Float[Array, "num_states num_states"]
    weights: Float[Array, "num_states num_classes_minus_one input_dim"]
    biases: Float[Array, "num_states num_classes_minus_one"]
    transition_weights: Float[Array, "num_states num_states transition_input_dim"] | None = None


class PoissonGLMHMMParams(NamedTuple):
    """Parameters of a Poisson (log-link) GLM-HMM: E[y_t | x_t, z_t = k] = exp(x_t . weights[k] + biases[k]).

    Attributes:
        initial_probs: p(z_1 = k), shape (K,).
        transition_matrix: p(z_{t+1} = j | z_t = i), shape (K, K).
        weights: log rate ratio per unit of each input, shape (K, D).
        biases: log rate at zero input, shape (K,).
        transition_weights: (K, K, M) for input-driven transitions, else None.
    """

    initial_probs: Float[Array, " num_states"]
    transition_matrix: Float[Array, "num_states num_states"]
    weights: Float[Array, "num_states input_dim"]
    biases: Float[Array, " num_states"]
    transition_weights: Float[Array, "num_states num_states transition_input_dim"] | None = None


for _params_type in (GLMHMMParams, BernoulliGLMHMMParams, CategoricalGLMHMMParams, PoissonGLMHMMParams):
    _params_type.num_states = property(_num_states)
    _params_type.input_dim = property(_input_dim)
    _params_type.permute = _permute


PARAM_NAMES: tuple[str, ...] = GLMHMMParams._fields[:-1]  # the Gaussian parameter names, in GLMHMMParams order


def validate_num_states(num_states) -> int:
    """Return ``num_states`` as an int, or raise ValueError if it is not an integer >= 1."""
    if isinstance(num_states, bool) or not isinstance(num_states, (int, np.integer)):
        raise ValueError(f"num_states must be an integer >= 1, got {num_states!r}")
    if num_states < 1:
        raise ValueError(f"num_states must be an integer >= 1, got {num_states}")
    return int(num_states)


def validate_data(inputs, emissions, mask=None, family=None):
    """Check and promote data to (num_sequences, num_timesteps[, input_dim]) arrays.

    A single sequence given as (T, D) inputs and (T,) emissions is promoted to a batch of one.

    Args:
        inputs: covariates x, shape (N, T, D) or (T, D).
        emissions: observations y, shape (N, T) or (T,).
        mask: optional booleans of the emissions' shape, False where y is missing or padding.
        family: optional :class:`~bayes_glmhmm.emissions.EmissionFamily` whose support the observed
            emissions must lie in (and whose coding they are converted to, e.g. -1/+1 to 0/1).

    Returns:
        ``(inputs, emissions, mask)`` as float / bool JAX arrays of shapes (N, T, D), (N, T), (N, T).
        Missing emissions (mask False) are replaced by zeros so that no NaN reaches a gradient.

    Raises:
        ValueError: naming the argument, for wrong shapes, NaN or inf where the mask is True,
            non-numeric values, or empty sequences.
    """
    if any(isinstance(a, jax.core.Tracer) for a in (inputs, emissions, mask)):
        return _promote_traced(inputs, emissions, mask)
    inputs_np = _as_float_array(inputs, "inputs")
    emissions_np = _as_float_array(emissions, "emissions")
    if emissions_np.ndim == 1:
        emissions_np = emissions_np[None]
        if inputs_np.ndim == 1 and inputs_np.shape == emissions_np.shape[1:]:
            inputs_np = inputs_np[:, None]  # one input per step, without its input_dim axis
        if inputs_np.ndim == 2:
            inputs_np = inputs_np[None]
        if mask is not None and np.ndim(mask) == 1:
            mask = np.asarray(mask)[None]
    if emissions_np.ndim != 2:
        raise ValueError(
            f"emissions must have shape (num_sequences, num_timesteps) or (num_timesteps,), "
            f"got shape {emissions_np.shape}"
        )
    if inputs_np.ndim == 2 and inputs_np.shape == emissions_np.shape:
        # One input per step given without its trailing input_dim axis.
        inputs_np = inputs_np[..., None]
    if inputs_np.ndim != 3 or inputs_np.shape[:2] != emissions_np.shape:
        raise ValueError(
            f"inputs must have shape (num_sequences, num_timesteps, input_dim) = "
            f"{emissions_np.shape + ('input_dim',)} to match emissions, got shape {inputs_np.shape}"
        )
    if emissions_np.shape[1] < 1 or emissions_np.shape[0] < 1:
        raise ValueError(f"emissions must hold at least one step, got shape {emissions_np.shape}")
    if inputs_np.shape[2] < 1:
        raise ValueError(f"inputs must have at least one input dimension, got shape {inputs_np.shape}")
    if mask is None:
        mask_np = np.ones(emissions_np.shape, dtype=bool)
    else:
        mask_np = np.asarray(mask)
        if mask_np.shape != emissions_np.shape:
            raise ValueError(f"mask must have the emissions' shape {emissions_np.shape}, got {mask_np.shape}")
        if mask_np.dtype != bool:
            if not np.all(np.isin(mask_np, [0, 1])):
                raise ValueError("mask must be boolean (True = observed, False = missing or padding)")
            mask_np = mask_np.astype(bool)
    bad_emissions = ~np.isfinite(emissions_np) & mask_np
    if bad_emissions.any():
        n, t = np.argwhere(bad_emissions)[0]
        raise ValueError(
            f"emissions contain {int(bad_emissions.sum())} NaN or inf value(s) where mask is True "
            f"(first at sequence {n}, step {t}); pass mask=False there to treat them as missing"
        )
    if not np.all(np.isfinite(inputs_np)):
        n, t, d = np.argwhere(~np.isfinite(inputs_np))[0]
        raise ValueError(
            f"inputs contain NaN or inf (first at sequence {n}, step {t}, input {d}); missing inputs are not supported"
        )
    emissions_np = np.where(mask_np, emissions_np, 0.0)
    if family is not None:
        emissions_np = family.prepare_emissions(emissions_np, mask_np)
    dtype = jnp.result_type(float)
    return device_array(inputs_np, dtype), device_array(emissions_np, dtype), device_array(mask_np)


def _as_float_array(value, name: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric, got values that cannot be converted to float") from None
    return array


def _promote_traced(inputs, emissions, mask):
    """Shape-only promotion for traced arrays (inside jit or grad), where values cannot be checked."""
    inputs, emissions = jnp.asarray(inputs), jnp.asarray(emissions)
    if emissions.ndim == 1:
        if inputs.ndim == 1 and inputs.shape == emissions.shape:
            inputs = inputs[:, None]
        emissions, inputs = emissions[None], inputs[None] if inputs.ndim == 2 else inputs
        mask = None if mask is None else jnp.asarray(mask).reshape(emissions.shape)
    if inputs.ndim == 2 and inputs.shape == emissions.shape:
        inputs = inputs[..., None]
    if emissions.ndim != 2 or inputs.ndim != 3 or inputs.shape[:2] != emissions.shape:
        raise ValueError(
            f"inputs (num_sequences, num_timesteps, input_dim) and emissions (num_sequences, num_timesteps) "
            f"do not match: got {inputs.shape} and {emissions.shape}"
        )
    mask = jnp.ones(emissions.shape, bool) if mask is None else jnp.asarray(mask, bool)
    if mask.shape != emissions.shape:
        raise ValueError(f"mask must have the emissions' shape {emissions.shape}, got {mask.shape}")
    return inputs, jnp.where(mask, emissions, 0.0), mask
