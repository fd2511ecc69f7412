"""Sampling from a GLM-HMM, and the generator of the seed article ("the conveyor belt factory")."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float, Int

from bayes_glmhmm._compile import jit_one_off
from bayes_glmhmm.emissions import family_of
from bayes_glmhmm.params import GLMHMMParams
from bayes_glmhmm.transitions import log_transition_matrices, validate_transition_inputs

__all__ = ["simulate", "simulate_subjects", "article_params", "article_data", "ArticleData"]


@jax.jit
def _simulate_one(key, params, inputs, transition_inputs=None):
    num_timesteps = inputs.shape[0]
    key_initial, key_transitions, key_emissions = jax.random.split(key, 3)
    first_state = jax.random.categorical(key_initial, jnp.log(params.initial_probs))
    if transition_inputs is None:
        log_matrices = jnp.broadcast_to(
            jnp.log(params.transition_matrix), (num_timesteps - 1, *params.transition_matrix.shape)
        )
    else:
        log_matrices = log_transition_matrices(params.transition_matrix, params.transition_weights, transition_inputs)

    def _step(carry, xs):
        state = carry
        step_key, log_matrix = xs
        next_state = jax.random.categorical(step_key, log_matrix[state])
        return next_state, next_state

    step_keys = jax.random.split(key_transitions, num_timesteps - 1)
    _, later_states = lax.scan(_step, first_state, (step_keys, log_matrices))
    states = jnp.concatenate([first_state[None], later_states])
    return states, family_of(params).sample(key_emissions, params, inputs, states)


def simulate(
    key: Array,
    params,
    inputs: Float[Array, "num_sequences num_timesteps input_dim"],
    transition_inputs: Float[Array, "num_sequences num_timesteps transition_input_dim"] | None = None,
) -> tuple[Int[Array, "num_sequences num_timesteps"], Float[Array, "num_sequences num_timesteps"]]:
    """Draw hidden states and emissions from the GLM-HMM given the inputs, for any family.

    Args:
        key: PRNG key.
        params: model parameters (their type names the family; discrete emissions come as floats).
        inputs: covariates, (N, T, D); a single (T, D) sequence gives (T,) outputs.
        transition_inputs: (N, T, M) (or (T, M) with (T, D) inputs) inputs of input-driven
            transitions, required exactly when ``params.transition_weights`` is not None:
            z_{t+1} | z_t = i ~ Categorical(softmax(log A[i] + V[i] . u_t)).

    Returns:
        ``(states, emissions)``: z ~ p(z | u, theta) and y ~ p(y | x, z, theta), shapes (N, T).
    """
    family_of(params)  # a clear error for anything that is not a family's params
    params = type(params)(*(None if p is None else jnp.asarray(p) for p in params))
    inputs = jnp.asarray(inputs, dtype=jnp.result_type(float))
    if inputs.ndim not in (2, 3):
        raise ValueError(f"inputs must have shape (num_sequences, num_timesteps, input_dim), got {inputs.shape}")
    if inputs.shape[-1] != params.weights.shape[-1]:
        raise ValueError(
            f"inputs have {inputs.shape[-1]} input dimensions but params.weights has {params.weights.shape[-1]}"
        )
    transition_inputs = _checked_transition_inputs(params, inputs, transition_inputs)
    if inputs.ndim == 2:
        return _simulate_one(key, params, inputs, transition_inputs)
    keys = jax.random.split(key, inputs.shape[0])
    if transition_inputs is None:
        return _simulate_batch(keys, params, inputs)
    return _simulate_batch_input_driven(keys, params, inputs, transition_inputs)


def _checked_transition_inputs(params, inputs, transition_inputs):
    """Transition inputs shaped like ``inputs``' (N, T) or (T,) leading axes, or None for stationary params."""
    if params.transition_weights is None:
        if transition_inputs is not None:
            raise ValueError("transition_inputs were given but the params have no transition_weights (stationary)")
        return None
    if transition_inputs is None:
        raise ValueError("params with transition_weights (input-driven transitions) need transition_inputs")
    shape = inputs.shape[:-1] if inputs.ndim == 3 else (1, inputs.shape[0])
    validated = validate_transition_inputs(transition_inputs, shape, int(params.transition_weights.shape[-1]))
    return validated if inputs.ndim == 3 else validated[0]


_simulate_batch = jax.jit(jax.vmap(_simulate_one, in_axes=(0, None, 0)))
_simulate_batch_input_driven = jax.jit(jax.vmap(_simulate_one, in_axes=(0, None, 0, 0)))


def simulate_subjects(
    key: Array,
    params,
    inputs: Float[Array, "num_sequences num_timesteps input_dim"],
    subject_index: Int[Array, " num_sequences"],
    transition_inputs: Float[Array, "num_sequences num_timesteps transition_input_dim"] | None = None,
) -> tuple[Int[Array, "num_sequences num_timesteps"], Float[Array, "num_sequences num_timesteps"]]:
    """Draw states and emissions, each sequence under its subject's GLM (a hierarchical model).

    Args:
        key: PRNG key.
        params: the family's params whose ``weights`` (S, K, ..., D) and ``biases`` (S, K, ...)
            hold every subject's (:mod:`bayes_glmhmm.hierarchy`), and ``transition_matrix`` too
            when it is (S, K, K); the other fields are shared.
        inputs: (N, T, D) covariates.
        subject_index: (N,) the subject of each sequence, in 0..S-1.
        transition_inputs: (N, T, M) inputs of input-driven transitions, or None.

    Returns:
        ``(states, emissions)``, shapes (N, T).
    """
    subject_index = jnp.asarray(subject_index)
    per_subject = ["weights", "biases"] + (["transition_matrix"] if jnp.ndim(params.transition_matrix) == 3 else [])
    sequence_params = params._replace(
        **{name: jnp.take(jnp.asarray(getattr(params, name)), subject_index, axis=0) for name in per_subject}
    )
    axes = type(params)(**{name: 0 if name in per_subject else None for name in params._fields})
    keys = jax.random.split(key, inputs.shape[0])
    transition_axis = None if transition_inputs is None else 0
    return jax.vmap(simulate, in_axes=(0, axes, 0, transition_axis))(keys, sequence_params, inputs, transition_inputs)


ARTICLE_TRANSITION_MATRIX = np.array([[0.5, 0.4, 0.1], [0.1, 0.5, 0.4], [0.4, 0.1, 0.5]])


def article_params(variant: str = "text") -> GLMHMMParams:
    """The conveyor-belt generator of the seed article.

    The article disagrees with itself. Its text gives biases c = (2, -1, 0) and noise standard
    deviations sigma = (1, 1.5, 0.8). Its code uses biases (2, 0, -1) and passes (1, 0.8, 1.5) as
    dynamax *covariances*, so the standard deviations are their square roots.

    Args:
        variant: ``"text"`` (default) or ``"code"``.

    Returns:
        The generator's parameters; weights are (1, -0.8, 0.2) in both, initial probs uniform.
    """
    weights = np.array([[1.0], [-0.8], [0.2]])
    if variant == "text":
        biases, scales = np.array([2.0, -1.0, 0.0]), np.array([1.0, 1.5, 0.8])
    elif variant == "code":
        biases, scales = np.array([2.0, 0.0, -1.0]), np.sqrt(np.array([1.0, 0.8, 1.5]))
    else:
        raise ValueError(f"variant must be 'text' or 'code', got {variant!r}")
    return GLMHMMParams(
        initial_probs=np.full(3, 1.0 / 3.0),
        transition_matrix=ARTICLE_TRANSITION_MATRIX.copy(),
        weights=weights,
        biases=biases,
        scales=scales,
    )


class ArticleData(NamedTuple):
    """The article's data set.

    Attributes:
        params: the generator's parameters.
        inputs: (num_sequences, num_timesteps, 1) training inputs ("ball weights").
        states: (num_sequences, num_timesteps) true belts.
        emissions: (num_sequences, num_timesteps) observed colours.
        sine_inputs: (num_timesteps, 1) the article's sinusoidal input sequence.
        sine_states: (num_timesteps,) true belts of that sequence.
        sine_emissions: (num_timesteps,) its colours.
    """

    params: GLMHMMParams
    inputs: np.ndarray
    states: np.ndarray
    emissions: np.ndarray
    sine_inputs: np.ndarray
    sine_states: np.ndarray
    sine_emissions: np.ndarray


def article_data(key: Array, variant: str = "text", num_sequences: int = 10, num_timesteps: int = 100) -> ArticleData:
    """Simulate the article's data: 10 sequences of 100 steps and the sinusoidal test sequence.

    Inputs are x ~ Uniform(1, 10) in the ``"text"`` variant and Uniform(0, 10) in ``"code"``; the
    sinusoidal sequence is x_t = 4 sin(2 pi t / 50) + 5 in both.

    Args:
        key: PRNG key.
        variant: ``"text"`` or ``"code"`` (see :func:`article_params`).
        num_sequences: number of training sequences.
        num_timesteps: length of every sequence.

    Returns:
        An :class:`ArticleData`, as NumPy arrays.
    """
    params = article_params(variant)
    arrays = _article_arrays(key, params, 1.0 if variant == "text" else 0.0, num_sequences, num_timesteps)
    return ArticleData(params, *(np.asarray(array) for array in arrays))


@jit_one_off(static_argnames=("num_sequences", "num_timesteps"))
def _article_arrays(key, params, low, num_sequences: int, num_timesteps: int) -> tuple:
    """The arrays of :func:`article_data` after its params, in one compiled program."""
    key_inputs, key_batch, key_sine = jax.random.split(key, 3)
    inputs = jax.random.uniform(key_inputs, (num_sequences, num_timesteps, 1), minval=low, maxval=10.0)
    states, emissions = simulate(key_batch, params, inputs)
    sine_inputs = (jnp.sin(2 * jnp.pi * jnp.arange(num_timesteps) / 50) * 4 + 5).reshape(-1, 1)
    sine_states, sine_emissions = simulate(key_sine, params, sine_inputs)
    return inputs, states, emissions, sine_inputs, sine_states, sine_emissions
