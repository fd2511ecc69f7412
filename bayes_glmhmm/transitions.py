"""Transition models of the GLM-HMM: stationary, and driven by inputs.

Stationary (the article's): p(z_{t+1} = j | z_t = i) = A[i, j], one (K, K) ``transition_matrix``.

Input-driven (time-varying transition probabilities, Filardo 1994; ssm's input-driven
transitions; the "GLM-T" of Mohammadi et al. 2025): with transition inputs u[n, t] (M of them,
possibly other than the emission inputs),

    p(z_{t+1} = j | z_t = i, u_t) = softmax_j( log A[i, j] + V[i, j] . u_t ),    V[i, i] = 0,

so ``transition_matrix`` A is the matrix of transition probabilities at u = 0, and
``transition_weights`` V[i, j, m] is the change, per unit of u[m], in the log-odds of moving from
state i to state j rather than staying in i. Staying is the reference, which identifies V (the
softmax ignores a shift common to a row) and treats every state alike, so relabeling permutes V
on both state axes like A. The input u[n, t] of step t drives the transition t -> t+1 (what
happens on trial t changes the state of trial t+1); the last step's input is unused.

Two forms:

- ``"full"``: every V[i, j] (j != i) free, K (K - 1) M weights. Prior: Normal(0, s) on each,
  s = ``Priors.transition_weight_scale``.
- ``"destination"`` (ssm's cheaper form, v_ij = d_j: the input favours destination j from every
  state): V[i, j] = d[j] - d[i], K M weights of which (K - 1) M are identified; the prior is
  ZeroSumNormal(s) on d over the states (so each V[i, j] has prior standard deviation
  s sqrt(2)).

Prior on A: the rows of A are Dirichlet(``transition_concentration``) exactly as in the
stationary model, so at V = 0 the input-driven model and its prior are *identical* to the
stationary model's (not only close): the Dirichlet is placed on the transition probabilities at
u = 0, and the logits log A are its image.

The pure functions here take arrays; :mod:`bayes_glmhmm.model` declares the NumPyro sites.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

__all__ = [
    "FORMS",
    "STATIONARY",
    "TransitionModel",
    "centre_transition_matrix",
    "destination_to_full",
    "free_to_full",
    "full_to_destination",
    "full_to_free",
    "get_transitions",
    "input_driven",
    "log_transition_matrices",
    "param_names",
    "safe_log",
    "TransitionInputTable",
    "tabulate_transition_inputs",
    "tabulated_transition_matrices",
    "transition_matrices",
    "transitions_of",
    "uncentre_transition_matrix",
    "validate_transition_inputs",
]

FORMS = ("full", "destination")
PARAM_DIMS = {"transition_weights": ["state", "next_state", "transition_input"]}


class TransitionModel(NamedTuple):
    """A transition model: ``"stationary"`` or ``"input_driven"`` (form ``"full"`` or ``"destination"``).

    Hashable, usable as a static argument of ``jax.jit``.
    """

    name: str = "stationary"
    form: str = "full"

    @property
    def is_input_driven(self) -> bool:
        return self.name == "input_driven"

    @property
    def param_names(self) -> tuple[str, ...]:
        """The parameters this model adds to the family's: ``("transition_weights",)`` or none."""
        return ("transition_weights",) if self.is_input_driven else ()

    def describe(self) -> str:
        """A short phrase for reports: ``"stationary"`` or ``"input-driven (full)"``."""
        return "stationary" if not self.is_input_driven else f"input-driven ({self.form})"


STATIONARY = TransitionModel("stationary", "full")


def input_driven(form: str = "full") -> TransitionModel:
    """The input-driven transition model of the given form (``"full"`` or ``"destination"``)."""
    if form not in FORMS:
        raise ValueError(f"transitions must be 'full' or 'destination' for input-driven transitions, got {form!r}")
    return TransitionModel("input_driven", form)


def get_transitions(transitions, transition_inputs) -> TransitionModel:
    """The transition model of a fit.

    Args:
        transitions: None (input-driven ``"full"`` when transition inputs are given, else
            stationary), ``"stationary"``, ``"full"``, ``"destination"`` or a :class:`TransitionModel`.
        transition_inputs: the fit's transition inputs, or None.

    Raises:
        ValueError: for an unknown name, or when input-driven transitions lack transition inputs
            (or stationary ones are given some).
    """
    if isinstance(transitions, TransitionModel):
        model = transitions
    elif transitions is None:
        model = STATIONARY if transition_inputs is None else input_driven("full")
    elif transitions == "stationary":
        model = STATIONARY
    elif transitions in FORMS:
        model = input_driven(transitions)
    else:
        raise ValueError(f"transitions must be 'stationary', 'full' or 'destination', got {transitions!r}")
    if model.is_input_driven and transition_inputs is None:
        raise ValueError(f"transitions={model.form!r} needs transition_inputs (num_sequences, num_timesteps, M)")
    if not model.is_input_driven and transition_inputs is not None:
        raise ValueError("transition_inputs were given but transitions='stationary'; use 'full' or 'destination'")
    return model


def transitions_of(params) -> TransitionModel:
    """The transition model of a params NamedTuple: input-driven when it has ``transition_weights``.

    The form is not recorded in params (both forms store the same (K, K, M) weights); this says
    ``"full"``, which is right for every computation that takes params (likelihoods, smoothing,
    simulation).
    """
    return STATIONARY if getattr(params, "transition_weights", None) is None else input_driven("full")


def param_names(params) -> tuple[str, ...]:
    """Names of the parameters that ``params`` holds: its family's, plus ``transition_weights`` when input-driven."""
    names = tuple(name for name in params._fields if name != "transition_weights")
    return names + transitions_of(params).param_names


def safe_log(probs: Array) -> Array:
    """Log p with log 0 replaced by the log of the smallest normal float (finite value and gradient)."""
    return jnp.log(jnp.maximum(probs, jnp.finfo(jnp.result_type(probs)).tiny))


def log_transition_matrices(
    transition_matrix: Float[Array, "num_states num_states"],
    transition_weights: Float[Array, "num_states num_states transition_input_dim"],
    transition_inputs: Float[Array, "... num_timesteps transition_input_dim"],
) -> Float[Array, "... num_timesteps_minus_one num_states num_states"]:
    """Log p(z_{t+1} = j | z_t = i, u_t) for t = 0..T-2: the [..., t, i, j] entry.

    Args:
        transition_matrix: A, (K, K) transition probabilities at u = 0.
        transition_weights: V, (K, K, M).
        transition_inputs: u, (..., T, M); the last step's input is unused.
    """
    logits = safe_log(transition_matrix) + jnp.einsum(
        "ijm,...tm->...tij", transition_weights, transition_inputs[..., :-1, :]
    )
    return jax.nn.log_softmax(logits, axis=-1)


def transition_matrices(transition_matrix, transition_weights, transition_inputs):
    """p(z_{t+1} = j | z_t = i, u_t), shape (..., T - 1, K, K) (see :func:`log_transition_matrices`)."""
    return jnp.exp(log_transition_matrices(transition_matrix, transition_weights, transition_inputs))


def centre_transition_matrix(transition_matrix, transition_weights, transition_input_mean):
    """The transition probabilities at u = u_bar: softmax_j(log A[i, j] + V[i, j] . u_bar)."""
    logits = safe_log(transition_matrix) + transition_weights @ transition_input_mean
    return jax.nn.softmax(logits, axis=-1)


def uncentre_transition_matrix(centred_transition_matrix, transition_weights, transition_input_mean):
    """A from the transition probabilities at u = u_bar: the inverse of :func:`centre_transition_matrix`."""
    return centre_transition_matrix(centred_transition_matrix, transition_weights, -transition_input_mean)


def _off_diagonal(num_states: int) -> tuple[np.ndarray, np.ndarray]:
    rows, columns = np.nonzero(~np.eye(num_states, dtype=bool))
    return rows, columns


def free_to_full(free_weights: Float[Array, "num_states num_states_minus_one transition_input_dim"]):
    """V (K, K, M) with zero diagonal from its off-diagonal entries, row by row in increasing destination order."""
    num_states, _, num_inputs = free_weights.shape
    rows, columns = _off_diagonal(num_states)
    full = jnp.zeros((num_states, num_states, num_inputs), free_weights.dtype)
    return full.at[rows, columns].set(free_weights.reshape(-1, num_inputs))


def full_to_free(transition_weights):
    """The off-diagonal entries of V (K, K, M) as (K, K - 1, M): the inverse of :func:`free_to_full`."""
    num_states, _, num_inputs = transition_weights.shape
    rows, columns = _off_diagonal(num_states)
    return transition_weights[rows, columns].reshape(num_states, num_states - 1, num_inputs)


def destination_to_full(destination_weights: Float[Array, "transition_input_dim num_states"]):
    """V[i, j] = d[j] - d[i] from the destination weights d (M, K): ssm's v_ij = d_j, staying as reference."""
    return jnp.transpose(destination_weights[:, None, :] - destination_weights[:, :, None], (1, 2, 0))


def full_to_destination(transition_weights):
    """The zero-sum destination weights d (M, K) of a V of the destination form (d_j = mean_i V[i, j])."""
    return jnp.transpose(jnp.mean(transition_weights, axis=0))


def validate_transition_inputs(transition_inputs, emissions_shape: tuple, num_inputs: int | None = None):
    """Check transition inputs against the emissions' (N, T) shape; return them as a float (N, T, M) array.

    A single sequence's (T, M) is promoted to (1, T, M), and (N, T) to (N, T, 1) for one input.
    Inside ``jit`` (traced values) only the shape is checked.

    Args:
        transition_inputs: u, (N, T, M), (T, M) or (N, T).
        emissions_shape: (N, T) of the validated emissions.
        num_inputs: M expected (the fitted model's), or None.

    Raises:
        ValueError: naming ``transition_inputs``, for a wrong shape or a NaN / inf value.
    """
    traced = isinstance(transition_inputs, jax.core.Tracer)
    array = jnp.asarray(transition_inputs) if traced else _as_float(transition_inputs)
    num_sequences, num_timesteps = emissions_shape
    if array.ndim == 2 and array.shape == (num_sequences, num_timesteps) and num_inputs in (None, 1):
        array = array[..., None]
    if array.ndim == 2 and num_sequences == 1 and array.shape[0] == num_timesteps:
        array = array[None]
    if array.ndim != 3 or array.shape[:2] != (num_sequences, num_timesteps):
        raise ValueError(
            f"transition_inputs must have shape (num_sequences, num_timesteps, M) = "
            f"{(num_sequences, num_timesteps, 'M')} to match emissions, got shape {tuple(array.shape)}"
        )
    if array.shape[2] < 1:
        raise ValueError(f"transition_inputs must have at least one input, got shape {tuple(array.shape)}")
    if num_inputs is not None and array.shape[2] != num_inputs:
        raise ValueError(f"transition_inputs have {array.shape[2]} inputs, the model {num_inputs}")
    if not traced and not np.all(np.isfinite(array)):
        n, t, m = np.argwhere(~np.isfinite(array))[0]
        raise ValueError(
            f"transition_inputs contain NaN or inf (first at sequence {n}, step {t}, input {m}); "
            "missing transition inputs are not supported (fill padding past a sequence's end with 0)"
        )
    return jnp.asarray(array, dtype=jnp.result_type(float))


def _as_float(value) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("transition_inputs must be numeric, got values that cannot be converted to float") from None


class TransitionInputTable(NamedTuple):
    """Transition inputs as a table of their distinct rows and, per step, the row it holds.

    transition_inputs[n, t] = rows[index[n, t]]. Indicators (a reward, the previous choice) take
    a handful of distinct values, so the transition matrices are computed once per distinct row,
    R softmaxes instead of N (T - 1), and gathered per step: the input-driven gradient then costs
    little more than the stationary one (``results/benchmarks/transitions.md``).

    Attributes:
        rows: (R, M) the distinct transition input rows.
        index: (N, T) int32, the row of each step.
    """

    rows: Float[Array, "num_rows transition_input_dim"]
    index: Array


def tabulate_transition_inputs(transition_inputs, max_fraction: float = 0.25) -> TransitionInputTable | None:
    """The distinct-row table of concrete (N, T, M) transition inputs, or None when it would not pay.

    Args:
        transition_inputs: validated (N, T, M) transition inputs (NumPy or JAX, not traced).
        max_fraction: tabulate only when the distinct rows are at most this fraction of the
            N (T - 1) steps (gathering costs a pass over the steps; computing R matrices must be
            far cheaper than computing one per step for the table to win).

    Returns:
        A :class:`TransitionInputTable`, or None for inputs with too many distinct rows (e.g.
        continuous ones), which are then computed step by step.
    """
    values = np.asarray(transition_inputs)
    num_sequences, num_timesteps, num_inputs = values.shape
    rows, index = np.unique(values.reshape(-1, num_inputs), axis=0, return_inverse=True)
    if len(rows) > max(1.0, max_fraction * num_sequences * max(num_timesteps - 1, 1)):
        return None
    return TransitionInputTable(
        jnp.asarray(rows, dtype=jnp.result_type(float)),
        jnp.asarray(np.reshape(index, (num_sequences, num_timesteps)), dtype=jnp.int32),
    )


def tabulated_transition_matrices(transition_matrix, transition_weights, table: TransitionInputTable):
    """p(z_{t+1} = j | z_t = i, u[n, t]) for every sequence and step, (N, T - 1, K, K), from the table."""
    logits = safe_log(transition_matrix) + jnp.einsum("ijm,rm->rij", transition_weights, table.rows)
    return jax.nn.softmax(logits, axis=-1)[table.index[:, :-1]]
