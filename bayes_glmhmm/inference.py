"""Inference kernels for hidden Markov models with arbitrary emission log-likelihoods.

Every kernel works on one sequence and takes ``(initial_probs, transition_matrix,
log_likelihoods, mask)``; it knows nothing about GLMs. Callers ``jax.vmap`` over sequences. One
kernel, :func:`hmm_marginal_loglik_batch`, takes a whole batch of sequences that share one
transition matrix: the marginal log-likelihood and its analytic gradient of NUTS's potential,
laid out state-major, which XLA's CPU code runs faster than the ``vmap`` of the one-sequence
kernel.

Conventions:
    * ``log_likelihoods[t, k] = log p(y_t | z_t = k, x_t, theta)``.
    * ``transition_matrix[i, j] = p(z_{t+1} = j | z_t = i)``, either one (K, K) matrix or a
      (T-1, K, K) stack whose ``[t]`` entry governs the step t -> t+1 (input-driven transitions).
    * ``mask[t] = False`` means y_t is missing: the step contributes no emission term, but the
      hidden chain still advances. Trailing masked steps therefore equal truncation.

Numerics: the forward and backward recursions carry normalized probability vectors and
accumulate the log normalizers, with the emission log-likelihoods max-subtracted per step
(the scheme of dynamax). Nothing is ever un-normalized, so float32 does not drift with T.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Bool, Float, Int

__all__ = [
    "FilterPosterior",
    "SmootherPosterior",
    "hmm_filter",
    "hmm_smoother",
    "hmm_sample_states",
    "hmm_viterbi",
    "hmm_posterior_mode_path_log_prob",
    "hmm_marginal_loglik",
    "hmm_marginal_loglik_batch",
    "hmm_marginal_loglik_parallel",
]


class FilterPosterior(NamedTuple):
    """Result of the forward filter for one sequence.

    Attributes:
        marginal_loglik: log p(y_{1:T} | x_{1:T}, theta), the states summed out.
        filtered_probs: filtered_probs[t, k] = p(z_t = k | y_{1:t}, x_{1:t}, theta).
        predicted_probs: predicted_probs[t, k] = p(z_t = k | y_{1:t-1}, x_{1:t-1}, theta).
    """

    marginal_loglik: Float[Array, ""]
    filtered_probs: Float[Array, "num_timesteps num_states"]
    predicted_probs: Float[Array, "num_timesteps num_states"]


class SmootherPosterior(NamedTuple):
    """Result of the forward-backward smoother for one sequence.

    Attributes:
        marginal_loglik: log p(y_{1:T} | x_{1:T}, theta).
        filtered_probs: p(z_t = k | y_{1:t}, theta).
        smoothed_probs: smoothed_probs[t, k] = p(z_t = k | y_{1:T}, x_{1:T}, theta).
        expected_transitions: expected_transitions[i, j] =
            sum_t p(z_t = i, z_{t+1} = j | y_{1:T}, x_{1:T}, theta), the expected transition
            counts that the EM M-step and the transition-matrix gradient need; with
            ``per_step=True``, the (T - 1, K, K) two-slice marginals
            p(z_t = i, z_{t+1} = j | y_{1:T}, x_{1:T}, theta) themselves (input-driven transitions).
    """

    marginal_loglik: Float[Array, ""]
    filtered_probs: Float[Array, "num_timesteps num_states"]
    smoothed_probs: Float[Array, "num_timesteps num_states"]
    expected_transitions: Float[Array, "num_states num_states"]


class DrivenTransitions(NamedTuple):
    """Input-driven transition probabilities, computed step by step instead of stored.

    p(z_{t+1} = j | z_t = i, u_t) = softmax_j(log_base[i, j] + weights[i, j] . inputs[t]), for
    t = 0..T-2. Every kernel accepts it wherever it accepts a (T-1, K, K) stack, with the same
    result as :meth:`matrices`; :func:`hmm_filter` and :func:`hmm_marginal_loglik` (value and
    analytic gradient) compute each step's matrix inside their scans, never holding all T-1 of
    them, which is what makes input-driven transitions cheap per gradient.

    Attributes:
        log_base: (K, K) logits at zero input, e.g. log of the transition matrix there.
        weights: (K, K, M) change of the logits per unit of each input.
        inputs: (T-1, M) the input of each step t -> t+1.
    """

    log_base: Float[Array, "num_states num_states"]
    weights: Float[Array, "num_states num_states input_dim"]
    inputs: Float[Array, "num_timesteps_minus_one input_dim"]

    def matrix_at(self, t: Array) -> Array:
        """The (K, K) transition matrix of step t -> t+1."""
        return _driven_matrix(self.log_base, self.weights, self.inputs[t])

    def matrices(self) -> Array:
        """All (T-1, K, K) transition matrices."""
        logits = self.log_base + jnp.einsum("ijm,tm->tij", self.weights, self.inputs)
        return jax.nn.softmax(logits, axis=-1)


def _driven_matrix(log_base: Array, weights: Array, step_input: Array) -> Array:
    return jax.nn.softmax(log_base + jnp.sum(weights * step_input, axis=-1), axis=-1)


def _as_array(transition_matrix):
    """A (K, K) or (T-1, K, K) array for the kernels that index it directly."""
    return transition_matrix.matrices() if isinstance(transition_matrix, DrivenTransitions) else transition_matrix


def _default_mask(log_likelihoods: Array, mask: Array | None) -> Array:
    if mask is None:
        return jnp.ones(log_likelihoods.shape[0], dtype=bool)
    return jnp.asarray(mask, dtype=bool)


def _transition_at(transition_matrix, t: Array) -> Array:
    """The matrix for the step t -> t+1, whether shared (K, K) or time-varying (T-1, K, K)."""
    if isinstance(transition_matrix, DrivenTransitions):
        if transition_matrix.inputs.shape[0] == 0:
            return jnp.eye(transition_matrix.log_base.shape[-1], dtype=transition_matrix.log_base.dtype)
        return transition_matrix.matrix_at(t)
    if transition_matrix.ndim == 2:
        return transition_matrix
    if transition_matrix.shape[0] == 0:
        # A one-step sequence has no transitions; the value is never used, only its shape.
        return jnp.eye(transition_matrix.shape[-1], dtype=transition_matrix.dtype)
    return transition_matrix[t]


def _reweight(probs: Array, log_likelihoods: Array) -> tuple[Array, Array]:
    """Probs * exp(log_likelihoods), divided by exp(shift) so that its largest entry is 1.

    The states are along axis 0: (K,) for one sequence, or (K, N) for N sequences at once
    (:func:`hmm_marginal_loglik_batch`), each column with its own shift.

    The shift is the largest log(probs) + log_likelihoods, not the largest log-likelihood alone:
    when the best-fitting state has (almost) zero probability, shifting by its likelihood would
    underflow every other term to 0 and give 0 / 0. Zero probabilities stay exactly zero; the
    inner clip keeps log and its gradient finite for subnormal ones.

    Returns:
        ``(scaled, shift)``.
    """
    positive = probs > 0
    tiny = jnp.finfo(probs.dtype).tiny
    log_probs = jnp.where(positive, jnp.log(jnp.maximum(probs, tiny)), -jnp.inf)
    log_weighted = log_probs + log_likelihoods
    shift = jnp.max(log_weighted, axis=0)
    shift = jnp.where(jnp.isfinite(shift), shift, 0.0)
    return jnp.exp(log_weighted - shift), shift


def _condition_on(probs: Array, log_likelihoods: Array) -> tuple[Array, Array]:
    """Bayes' rule for one step: returns normalized posterior probs and the log normalizer.

    States along axis 0, as in :func:`_reweight`: a (K, N) input gives N normalizers.
    """
    joint, shift = _reweight(probs, log_likelihoods)
    norm = jnp.sum(joint, axis=0)
    return joint / norm, jnp.log(norm) + shift


def _compensated_add(total: Array, compensation: Array, term: Array) -> tuple[Array, Array]:
    """Kahan summation: ``total + term`` with the rounding carried in ``compensation``; returns both."""
    corrected = term - compensation
    new_total = total + corrected
    return new_total, (new_total - total) - corrected


def _smoothing_ratio(next_smoothed: Array, next_predicted: Array) -> Array:
    """ratio_{t+1} = smoothed / predicted of step t + 1, 0 where the predicted probability is 0."""
    positive = next_predicted > 0
    return jnp.where(positive, next_smoothed / jnp.where(positive, next_predicted, 1.0), 0.0)


def hmm_filter(
    initial_probs: Float[Array, " num_states"],
    transition_matrix: Float[Array, "num_states num_states"]
    | Float[Array, "num_timesteps_minus_one num_states num_states"],
    log_likelihoods: Float[Array, "num_timesteps num_states"],
    mask: Bool[Array, " num_timesteps"] | None = None,
) -> FilterPosterior:
    """Forward filter: filtered state probabilities and the marginal log-likelihood.

    Args:
        initial_probs: p(z_1 = k).
        transition_matrix: p(z_{t+1} = j | z_t = i), shared or one per step.
        log_likelihoods: log p(y_t | z_t = k).
        mask: False where y_t is missing; such a step adds no emission term.

    Returns:
        A :class:`FilterPosterior`.
    """
    num_timesteps = log_likelihoods.shape[0]
    mask = _default_mask(log_likelihoods, mask)
    log_likelihoods = jnp.where(mask[:, None], log_likelihoods, 0.0)

    # The log normalizers are summed with Kahan compensation: a plain float32 running sum of 1e5
    # terms of size ~2 is off by several nats (measured 3.3 at T = 1e5), compensated by ~1e-3.
    def _step(carry, xs):
        marginal_loglik, compensation, predicted = carry
        t, loglik_t = xs
        filtered, log_norm = _condition_on(predicted, loglik_t)
        matrix = _transition_at(transition_matrix, jnp.minimum(t, num_timesteps - 2))
        # Broadcast-and-sum rather than a matrix-vector product: XLA fuses it with the rest of the
        # step, which is faster on CPU for batched small K (measured 2-3x at 100 sequences).
        next_predicted = jnp.sum(filtered[:, None] * matrix, axis=0)
        total, compensation = _compensated_add(marginal_loglik, compensation, log_norm)
        return (total, compensation, next_predicted), (filtered, predicted)

    zero = jnp.zeros((), log_likelihoods.dtype)
    init = (zero, zero, jnp.asarray(initial_probs, log_likelihoods.dtype))
    (marginal_loglik, _, _), (filtered, predicted) = lax.scan(_step, init, (jnp.arange(num_timesteps), log_likelihoods))
    return FilterPosterior(marginal_loglik, filtered, predicted)


def hmm_smoother(
    initial_probs: Float[Array, " num_states"],
    transition_matrix: Float[Array, "num_states num_states"]
    | Float[Array, "num_timesteps_minus_one num_states num_states"],
    log_likelihoods: Float[Array, "num_timesteps num_states"],
    mask: Bool[Array, " num_timesteps"] | None = None,
    per_step: bool = False,
) -> SmootherPosterior:
    """Forward-backward smoother: posterior marginals of every state and transition.

    Args:
        initial_probs: p(z_1 = k).
        transition_matrix: p(z_{t+1} = j | z_t = i), shared or one per step.
        log_likelihoods: log p(y_t | z_t = k).
        mask: False where y_t is missing.
        per_step: return the expected transitions of every step, (T - 1, K, K), instead of their sum.

    Returns:
        A :class:`SmootherPosterior`.
    """
    mask = _default_mask(log_likelihoods, mask)
    transition_matrix = _as_array(transition_matrix)
    filtered = hmm_filter(initial_probs, transition_matrix, log_likelihoods, mask)
    smoothed, transition_terms = _backward_pass(transition_matrix, filtered.filtered_probs, filtered.predicted_probs)
    # expected_transitions[i, j] = sum_t filtered_t(i) A_t[i, j] ratio_{t+1}(j).
    if per_step:
        expected = transition_matrix * transition_terms
    elif transition_matrix.ndim == 2:
        expected = transition_matrix * jnp.sum(transition_terms, axis=0)
    else:
        expected = jnp.sum(transition_matrix * transition_terms, axis=0)
    return SmootherPosterior(
        marginal_loglik=filtered.marginal_loglik,
        filtered_probs=filtered.filtered_probs,
        smoothed_probs=smoothed,
        expected_transitions=expected,
    )


def _backward_pass(transition_matrix, filtered, predicted):
    """The smoothing recursion in its filtered / predicted form (no likelihoods, so no underflow).

    With ratio_{t+1}(j) = p(z_{t+1} = j | y_{1:T}) / p(z_{t+1} = j | y_{1:t}),

        p(z_t = i | y_{1:T}) = filtered_t(i) sum_j A_t[i, j] ratio_{t+1}(j),
        p(z_t = i, z_{t+1} = j | y_{1:T}) = filtered_t(i) A_t[i, j] ratio_{t+1}(j).

    Every quantity is a normalized probability, so a best-fitting state of (near) zero prior
    probability cannot underflow the others; a state with zero predicted probability has zero
    smoothed probability and its ratio is set to 0.

    Returns:
        ``(smoothed (T, K), transition_terms (T-1, K, K))`` with transition_terms[t, i, j] =
        filtered_t(i) ratio_{t+1}(j), which is also d log p(y) / d A_t[i, j].
    """
    num_timesteps = filtered.shape[0]

    def _step(carry, xs):
        next_smoothed = carry
        t, filtered_t, next_predicted = xs
        ratio = _smoothing_ratio(next_smoothed, next_predicted)
        matrix = _transition_at(transition_matrix, t)
        smoothed_t = filtered_t * jnp.sum(matrix * ratio[None, :], axis=1)
        smoothed_t = smoothed_t / jnp.sum(smoothed_t)
        return smoothed_t, (smoothed_t, filtered_t[:, None] * ratio[None, :])

    _, (smoothed, transition_terms) = lax.scan(
        _step,
        filtered[-1],
        (jnp.arange(num_timesteps - 1), filtered[:-1], predicted[1:]),
        reverse=True,
    )
    return jnp.concatenate([smoothed, filtered[-1:]], axis=0), transition_terms


def hmm_sample_states(
    key: Array,
    initial_probs: Float[Array, " num_states"],
    transition_matrix: Float[Array, "num_states num_states"]
    | Float[Array, "num_timesteps_minus_one num_states num_states"],
    log_likelihoods: Float[Array, "num_timesteps num_states"],
    mask: Bool[Array, " num_timesteps"] | None = None,
) -> Int[Array, " num_timesteps"]:
    """Forward-filtering backward-sampling: one exact draw of z_{1:T} ~ p(z_{1:T} | y_{1:T}, theta).

    Args:
        key: PRNG key.
        initial_probs: p(z_1 = k).
        transition_matrix: p(z_{t+1} = j | z_t = i), shared or one per step.
        log_likelihoods: log p(y_t | z_t = k).
        mask: False where y_t is missing.

    Returns:
        A state path of integers in [0, num_states).
    """
    num_timesteps = log_likelihoods.shape[0]
    transition_matrix = _as_array(transition_matrix)
    filtered = hmm_filter(initial_probs, transition_matrix, log_likelihoods, mask).filtered_probs
    # One uniform per step, drawn at once, and inverse-CDF picks: 3x faster than a key split and a
    # Gumbel draw of K values per step (measured: 500 draws x 10 x 100, K = 3, 106 -> 33 ms).
    uniforms = jax.random.uniform(key, (num_timesteps,), dtype=filtered.dtype)
    last_state = _inverse_cdf_pick(filtered[-1], uniforms[-1])

    # p(z_t | z_{t+1}, y_{1:T}) is proportional to filtered_t(z_t) A_t[z_t, z_{t+1}].
    def _step(carry, xs):
        next_state = carry
        t, uniform, filtered_t = xs
        state = _inverse_cdf_pick(filtered_t * _transition_at(transition_matrix, t)[:, next_state], uniform)
        return state, state

    _, states = lax.scan(
        _step,
        last_state,
        (jnp.arange(num_timesteps - 1), uniforms[:-1], filtered[:-1]),
        reverse=True,
    )
    return jnp.concatenate([states, last_state[None]])


def _inverse_cdf_pick(weights: Float[Array, " num_states"], uniform: Float[Array, ""]) -> Int[Array, ""]:
    """The state k with c_{k-1} <= u c_K < c_k (c: cumulative ``weights``): a draw from weights / c_K.

    A state of weight 0 is never picked (its interval is empty), not even for u = 0; the ``minimum``
    guards against u c_K rounding up to c_K.
    """
    cumulative = jnp.cumsum(weights)
    picked = jnp.sum(cumulative <= uniform * cumulative[-1])
    return jnp.minimum(picked, weights.shape[0] - 1).astype(jnp.int32)


def hmm_viterbi(
    initial_probs: Float[Array, " num_states"],
    transition_matrix: Float[Array, "num_states num_states"]
    | Float[Array, "num_timesteps_minus_one num_states num_states"],
    log_likelihoods: Float[Array, "num_timesteps num_states"],
    mask: Bool[Array, " num_timesteps"] | None = None,
) -> Int[Array, " num_timesteps"]:
    """Viterbi: the single most probable path argmax_{z_{1:T}} p(z_{1:T} | y_{1:T}, theta).

    Args:
        initial_probs: p(z_1 = k).
        transition_matrix: p(z_{t+1} = j | z_t = i), shared or one per step.
        log_likelihoods: log p(y_t | z_t = k).
        mask: False where y_t is missing.

    Returns:
        The most probable state path.
    """
    num_timesteps = log_likelihoods.shape[0]
    mask = _default_mask(log_likelihoods, mask)
    log_likelihoods = jnp.where(mask[:, None], log_likelihoods, 0.0)
    log_transitions = jnp.log(_as_array(transition_matrix))

    # delta_t(j) = max over z_{1:t-1} of log p(z_{1:t-1}, z_t = j, y_{1:t}); carried shifted by
    # its max so that long sequences stay in range.
    def _forward(carry, xs):
        delta = carry
        t, loglik_next = xs
        scores = delta[:, None] + _transition_at(log_transitions, t)
        best_previous = jnp.argmax(scores, axis=0)
        next_delta = jnp.max(scores, axis=0) + loglik_next
        return next_delta - jnp.max(next_delta), best_previous

    first_delta = jnp.log(initial_probs) + log_likelihoods[0]
    last_delta, backpointers = lax.scan(
        _forward, first_delta - jnp.max(first_delta), (jnp.arange(num_timesteps - 1), log_likelihoods[1:])
    )
    last_state = jnp.argmax(last_delta)

    def _backward(carry, xs):
        next_state = carry
        best_previous = xs
        state = best_previous[next_state]
        return state, state

    _, states = lax.scan(_backward, last_state, backpointers, reverse=True)
    return jnp.concatenate([states, last_state[None]])


def hmm_posterior_mode_path_log_prob(
    initial_probs: Float[Array, " num_states"],
    transition_matrix: Float[Array, "num_states num_states"]
    | Float[Array, "num_timesteps_minus_one num_states num_states"],
    log_likelihoods: Float[Array, "num_timesteps num_states"],
    states: Int[Array, " num_timesteps"],
    mask: Bool[Array, " num_timesteps"] | None = None,
) -> Float[Array, ""]:
    """Log p(z_{1:T} = states, y_{1:T} | theta), the joint log probability of one path.

    Used to check Viterbi and FFBS against enumeration.

    Args:
        initial_probs: p(z_1 = k).
        transition_matrix: p(z_{t+1} = j | z_t = i), shared or one per step.
        log_likelihoods: log p(y_t | z_t = k).
        states: a state path.
        mask: False where y_t is missing.

    Returns:
        The joint log probability of the path and the observations.
    """
    num_timesteps = log_likelihoods.shape[0]
    mask = _default_mask(log_likelihoods, mask)
    log_likelihoods = jnp.where(mask[:, None], log_likelihoods, 0.0)
    emission_term = jnp.sum(log_likelihoods[jnp.arange(num_timesteps), states])
    steps = jnp.arange(num_timesteps - 1)
    transition_matrix = _as_array(transition_matrix)
    if transition_matrix.ndim == 2:
        transition_term = jnp.sum(jnp.log(transition_matrix[states[:-1], states[1:]]))
    else:
        transition_term = jnp.sum(jnp.log(transition_matrix[steps, states[:-1], states[1:]]))
    return jnp.log(initial_probs[states[0]]) + transition_term + emission_term


@jax.custom_vjp
def hmm_marginal_loglik(
    initial_probs: Float[Array, " num_states"],
    transition_matrix: Float[Array, "num_states num_states"]
    | Float[Array, "num_timesteps_minus_one num_states num_states"],
    log_likelihoods: Float[Array, "num_timesteps num_states"],
    mask: Bool[Array, " num_timesteps"],
) -> Float[Array, ""]:
    """The marginal log-likelihood log p(y_{1:T} | theta), with an analytic forward-backward gradient.

    The value is :func:`hmm_filter`'s. The gradient is not obtained by differentiating the scan
    but from the posterior of the states (Fisher's identity):

    * d/d log_likelihoods[t, k] = p(z_t = k | y_{1:T}) where y_t is observed, 0 where masked;
    * d/d transition_matrix[i, j] = sum_t p(z_t = i, z_{t+1} = j | y_{1:T}) / transition_matrix[i, j]
      = sum_t filtered_t(i) ratio_{t+1}(j), with ratio = smoothed / predicted (no division by A);
    * d/d initial_probs[k] = p(z_1 = k | y_{1:T}) / initial_probs[k].

    One backward scan (:func:`_backward_pass`) gives all three from the filtered and predicted
    probabilities; nothing else of the forward scan is stored. At an exactly-zero probability
    (a boundary NUTS never reaches) the returned partial derivative is 0. The plain autodiff of
    :func:`hmm_filter` is the test oracle.

    Args:
        initial_probs: p(z_1 = k).
        transition_matrix: p(z_{t+1} = j | z_t = i), shared or one per step.
        log_likelihoods: log p(y_t | z_t = k).
        mask: False where y_t is missing (no gradient flows to those log-likelihoods).

    Returns:
        The marginal log-likelihood.
    """
    return hmm_filter(initial_probs, transition_matrix, log_likelihoods, mask).marginal_loglik


def _marginal_loglik_forward(initial_probs, transition_matrix, log_likelihoods, mask):
    posterior = hmm_filter(initial_probs, transition_matrix, log_likelihoods, mask)
    residuals = (initial_probs, transition_matrix, mask, posterior.filtered_probs, posterior.predicted_probs)
    return posterior.marginal_loglik, residuals


def _marginal_loglik_backward(residuals, cotangent):
    initial_probs, transition_matrix, mask, filtered, predicted = residuals
    if isinstance(transition_matrix, DrivenTransitions):
        smoothed, transition_gradient = _driven_backward_pass(transition_matrix, filtered, predicted)
    else:
        smoothed, transition_terms = _backward_pass(transition_matrix, filtered, predicted)
        transition_gradient = jnp.sum(transition_terms, axis=0) if transition_matrix.ndim == 2 else transition_terms
    positive = initial_probs > 0
    initial_gradient = jnp.where(positive, smoothed[0] / jnp.where(positive, initial_probs, 1.0), 0.0)
    transition_gradient = jax.tree.map(lambda part: cotangent * part, transition_gradient)
    loglik_gradient = jnp.where(mask[:, None], smoothed, 0.0)
    return (
        cotangent * initial_gradient,
        transition_gradient,
        cotangent * loglik_gradient,
        None,
    )


def _driven_backward_pass(transitions: DrivenTransitions, filtered, predicted):
    """:func:`_backward_pass` for :class:`DrivenTransitions`, accumulating their gradient in the scan.

    With g[t, i, j] = d log p(y) / d A_t[i, j] = filtered_t(i) ratio_{t+1}(j) (see
    :func:`_backward_pass`) and A_t = softmax(logits_t) row-wise, the gradient with respect to
    the logits is xi[t, i, j] - A_t[i, j] sum_k xi[t, i, k], where xi = A_t * g are the two-slice
    marginals; it is summed into the gradients of ``log_base`` and ``weights`` step by step, so
    no (T-1, K, K) array is stored.

    Returns:
        ``(smoothed (T, K), DrivenTransitions of gradients)`` (``inputs``: (T-1, M) per step).
    """
    num_timesteps = filtered.shape[0]

    def _step(carry, xs):
        next_smoothed, base_gradient, weight_gradient = carry
        filtered_t, next_predicted, input_t = xs
        ratio = _smoothing_ratio(next_smoothed, next_predicted)
        matrix = _driven_matrix(transitions.log_base, transitions.weights, input_t)
        two_slice = filtered_t[:, None] * matrix * ratio[None, :]
        smoothed_row = jnp.sum(two_slice, axis=1)
        smoothed_t = smoothed_row / jnp.sum(smoothed_row)
        logit_gradient = two_slice - matrix * smoothed_row[:, None]
        carry = (
            smoothed_t,
            base_gradient + logit_gradient,
            weight_gradient + logit_gradient[..., None] * input_t,
        )
        input_gradient = jnp.sum(logit_gradient[..., None] * transitions.weights, axis=(0, 1))
        return carry, (smoothed_t, input_gradient)

    init = (filtered[-1], jnp.zeros_like(transitions.log_base), jnp.zeros_like(transitions.weights))
    (_, base_gradient, weight_gradient), (smoothed, input_gradient) = lax.scan(
        _step,
        init,
        (filtered[:-1], predicted[1:], transitions.inputs[: num_timesteps - 1]),
        reverse=True,
    )
    smoothed = jnp.concatenate([smoothed, filtered[-1:]], axis=0)
    return smoothed, DrivenTransitions(base_gradient, weight_gradient, input_gradient)


hmm_marginal_loglik.defvjp(_marginal_loglik_forward, _marginal_loglik_backward)


# ---------------------------------------------------------------------------------------------
# Batched marginal log-likelihood, state-major
# ---------------------------------------------------------------------------------------------


class _BatchResiduals(NamedTuple):
    """What the batched forward pass keeps for its backward pass (state-major: sequences last)."""

    initial_probs: Float[Array, " num_states"]
    transition_matrix: Float[Array, "num_states num_states"]
    mask: Bool[Array, "num_sequences num_timesteps"]
    filtered: Float[Array, "num_timesteps num_states num_sequences"]
    predicted: Float[Array, "num_timesteps num_states num_sequences"]


def _batch_forward(initial_probs, transition_matrix, log_likelihoods, mask):
    """The forward filter of every sequence, state-major; Kahan-summed log normalizers as in :func:`hmm_filter`.

    Returns:
        ``(marginal_loglik (N,), residuals)``.
    """
    num_sequences, _, num_states = log_likelihoods.shape
    steps = jnp.where(mask[..., None], log_likelihoods, 0.0).transpose(1, 2, 0)  # (T, K, N)

    def _step(carry, loglik_t):
        marginal_loglik, compensation, predicted = carry
        filtered, log_norm = _condition_on(predicted, loglik_t)
        next_predicted = jnp.sum(filtered[:, None, :] * transition_matrix[:, :, None], axis=0)
        total, compensation = _compensated_add(marginal_loglik, compensation, log_norm)
        return (total, compensation, next_predicted), (filtered, predicted)

    zeros = jnp.zeros((num_sequences,), steps.dtype)
    first = jnp.broadcast_to(jnp.asarray(initial_probs, steps.dtype)[:, None], (num_states, num_sequences))
    (marginal_loglik, _, _), (filtered, predicted) = lax.scan(_step, (zeros, zeros, first), steps)
    return marginal_loglik, _BatchResiduals(initial_probs, transition_matrix, mask, filtered, predicted)


@jax.custom_vjp
def hmm_marginal_loglik_batch(
    initial_probs: Float[Array, " num_states"],
    transition_matrix: Float[Array, "num_states num_states"],
    log_likelihoods: Float[Array, "num_sequences num_timesteps num_states"],
    mask: Bool[Array, "num_sequences num_timesteps"],
) -> Float[Array, " num_sequences"]:
    """Log p(y[n] | theta) of every sequence n of a batch sharing one transition matrix, with an analytic gradient.

    The value and gradient are those of ``jax.vmap(hmm_marginal_loglik, in_axes=(None, None, 0, 0))``
    (Fisher's identity, see :func:`hmm_marginal_loglik`); only the layout differs. The scans carry
    (K, N) arrays, the sequences along the last axis, so that each step's sums over states are
    elementwise operations on length-N vectors; the ``vmap`` of the one-sequence kernel carries
    (N, K) arrays and reduces along the short state axis. On a 2-core CPU the value and gradient
    take 1.0-1.2x less time at K = 3-4 (10 x 100 to 270 x 230 steps) and 1.4-1.8x less at
    K = 5-8 (270 x 230), the same for one sequence; NUTS's whole potential at the field's scale
    (270 sessions, D = 10) 1.07x less at K = 3 and 1.29x at K = 5
    (``results/benchmarks/batch_kernel.md``). The gradient of the transition matrix is
    accumulated in the backward scan, so no (N, T - 1, K, K) array is made.
    First-order reverse mode only (autodiff :func:`hmm_filter` for higher orders).

    Args:
        initial_probs: p(z_1 = k), shared by the sequences.
        transition_matrix: p(z_{t+1} = j | z_t = i), shared by the sequences and steps.
        log_likelihoods: log p(y[n, t] | z = k).
        mask: False where y[n, t] is missing or padding (no emission term, no gradient).

    Returns:
        The marginal log-likelihood of each sequence.
    """
    return _batch_forward(initial_probs, transition_matrix, log_likelihoods, mask)[0]


def _batch_backward_pass(
    transition_matrix: Float[Array, "num_states num_states"],
    filtered: Float[Array, "num_timesteps num_states num_sequences"],
    predicted: Float[Array, "num_timesteps num_states num_sequences"],
    cotangent: Float[Array, " num_sequences"],
) -> tuple[Array, Array]:
    """:func:`_backward_pass` of every sequence, state-major, with the transition gradient summed in the scan.

    Returns:
        ``(smoothed (T, K, N), transition gradient (K, K))``, the latter
        sum_n cotangent[n] sum_t filtered_t(i) ratio_{t+1}(j) for sequence n.
    """

    def _step(carry, xs):
        next_smoothed, transition_gradient = carry
        filtered_t, next_predicted = xs
        ratio = _smoothing_ratio(next_smoothed, next_predicted)
        smoothed_t = filtered_t * jnp.sum(transition_matrix[:, :, None] * ratio[None, :, :], axis=1)
        smoothed_t = smoothed_t / jnp.sum(smoothed_t, axis=0)
        weighted = filtered_t * cotangent
        transition_gradient = transition_gradient + jnp.sum(weighted[:, None, :] * ratio[None, :, :], axis=2)
        return (smoothed_t, transition_gradient), smoothed_t

    init = (filtered[-1], jnp.zeros_like(transition_matrix))
    (_, transition_gradient), smoothed = lax.scan(_step, init, (filtered[:-1], predicted[1:]), reverse=True)
    return jnp.concatenate([smoothed, filtered[-1:]], axis=0), transition_gradient


def _marginal_loglik_batch_backward(residuals: _BatchResiduals, cotangent):
    smoothed, transition_gradient = _batch_backward_pass(
        residuals.transition_matrix, residuals.filtered, residuals.predicted, cotangent
    )
    initial_probs = residuals.initial_probs
    positive = initial_probs > 0
    first = jnp.sum(smoothed[0] * cotangent, axis=1)
    initial_gradient = jnp.where(positive, first / jnp.where(positive, initial_probs, 1.0), 0.0)
    loglik_gradient = jnp.where(residuals.mask[..., None], (smoothed * cotangent).transpose(2, 0, 1), 0.0)
    return initial_gradient, transition_gradient, loglik_gradient, None


hmm_marginal_loglik_batch.defvjp(_batch_forward, _marginal_loglik_batch_backward)


# ---------------------------------------------------------------------------------------------
# Parallel-in-time marginal log-likelihood
# ---------------------------------------------------------------------------------------------


class _LogSegment(NamedTuple):
    """A stretch of steps t = s..e as a log-space K x K element, max-subtracted.

    log p(y_{s:e}, z_e = j | z_{s-1} = i, theta) = log_matrix[i, j] + log_scale, with the largest
    entry of log_matrix equal to 0. Keeping the (large, ~ -2 T) scale apart from the (O(1))
    matrix entries is what keeps float32 accurate: the entries' differences, which decide every
    log-sum-exp, are never rounded at the magnitude of the running total.
    """

    log_matrix: Float[Array, "... num_states num_states"]
    log_scale: Float[Array, "..."]


def _safe_log(probs: Array) -> Array:
    """Log with log(0) = -inf and a finite gradient everywhere (0 at exact zeros)."""
    positive = probs > 0
    return jnp.where(positive, jnp.log(jnp.where(positive, probs, 1.0)), -jnp.inf)


def _safe_logsumexp(values: Array, axis: int) -> Array:
    """Log-sum-exp that returns -inf (with a zero, not NaN, gradient) when every term is -inf."""
    shift = lax.stop_gradient(jnp.max(values, axis=axis, keepdims=True))
    shift = jnp.where(jnp.isfinite(shift), shift, 0.0)
    return _safe_log(jnp.sum(jnp.exp(values - shift), axis=axis)) + jnp.squeeze(shift, axis)


def _normalize_segment(log_matrix: Array, log_scale: Array) -> _LogSegment:
    """Move the largest entry of each matrix into its scale (exact: the shift cancels in the sum)."""
    shift = lax.stop_gradient(jnp.max(log_matrix, axis=(-2, -1)))
    shift = jnp.where(jnp.isfinite(shift), shift, 0.0)
    return _LogSegment(log_matrix - shift[..., None, None], log_scale + shift)


def _combine_segments(earlier: _LogSegment, later: _LogSegment) -> _LogSegment:
    """Concatenate two adjacent stretches: the log-space (max-plus-log-sum-exp) matrix product.

    log_matrix[i, j] = logsumexp_k(earlier[i, k] + later[k, j]), each term max-subtracted, so no
    exp overflows or underflows to a wrong 0 however far apart the entries are (a linear-space
    product of rescaled matrices would lose a best state whose prior probability is ~0).
    """
    terms = earlier.log_matrix[..., :, :, None] + later.log_matrix[..., None, :, :]
    return _normalize_segment(_safe_logsumexp(terms, axis=-2), earlier.log_scale + later.log_scale)


def hmm_marginal_loglik_parallel(
    initial_probs: Float[Array, " num_states"],
    transition_matrix: Float[Array, "num_states num_states"]
    | Float[Array, "num_timesteps_minus_one num_states num_states"],
    log_likelihoods: Float[Array, "num_timesteps num_states"],
    mask: Bool[Array, " num_timesteps"] | None = None,
) -> Float[Array, ""]:
    """The marginal log-likelihood log p(y_{1:T} | theta), parallel in time (associative reduction).

    Same value as :func:`hmm_marginal_loglik` and :func:`hmm_filter`, computed in O(log T) sequential
    depth instead of O(T): step t becomes the log-space matrix
    E_t[i, j] = log p(z_t = j | z_{t-1} = i) + log p(y_t | z_t = j) (E_1 has log p(z_1 = j) in every
    row), and log p(y_{1:T}) = logsumexp_j (E_1 (x) ... (x) E_T)[0, j] under the log-space matrix
    product (x). That product is associative, so it is evaluated as a balanced tree: the up-sweep of
    :func:`jax.lax.associative_scan`, whose down-sweep (all prefixes, i.e. the filtered
    probabilities) the marginal likelihood does not need.
    Each element is max-subtracted with its own scalar scale, so float32 neither overflows nor loses
    the entries' O(1) differences at T = 1e5; the scales are summed pairwise (error ~ log T ulps).

    The work is O(T K^3) log-sum-exp terms against the sequential filter's O(T K^2) products, so it
    pays only where the sequential depth, not the arithmetic, is the bottleneck (an accelerator with
    few long sequences). On a 2-core CPU it merely ties :func:`hmm_marginal_loglik` on tiny problems
    and is 1.6-8x slower elsewhere (results/benchmarks/scaling.csv).

    The gradient is plain reverse-mode autodiff of the reduction; at an exactly zero initial or
    transition probability its partial derivative is 0 (as in :func:`hmm_marginal_loglik` for the
    initial probabilities), and it is finite everywhere.

    Args:
        initial_probs: p(z_1 = k).
        transition_matrix: p(z_{t+1} = j | z_t = i), shared or one per step.
        log_likelihoods: log p(y_t | z_t = k).
        mask: False where y_t is missing; such a step adds no emission term (and no gradient).

    Returns:
        The marginal log-likelihood, a scalar.
    """
    num_timesteps, num_states = log_likelihoods.shape
    mask = _default_mask(log_likelihoods, mask)
    log_likelihoods = jnp.where(mask[:, None], log_likelihoods, 0.0)
    dtype = log_likelihoods.dtype
    log_initial = _safe_log(jnp.asarray(initial_probs, dtype)) + log_likelihoods[0]
    first = jnp.broadcast_to(log_initial, (1, num_states, num_states))
    log_transitions = _safe_log(jnp.asarray(_as_array(transition_matrix), dtype))
    if log_transitions.ndim == 2:
        log_transitions = jnp.broadcast_to(log_transitions, (num_timesteps - 1, num_states, num_states))
    rest = log_transitions + log_likelihoods[1:, None, :]
    elements = _normalize_segment(jnp.concatenate([first, rest]), jnp.zeros(num_timesteps, dtype))
    total = _reduce_segments(elements)
    return _safe_logsumexp(total.log_matrix[0], axis=0) + total.log_scale


def _reduce_segments(elements: _LogSegment) -> _LogSegment:
    """E_1 (x) E_2 (x) ... (x) E_T by pairwise combination: ceil(log2 T) vectorized levels.

    This is the up-sweep of :func:`jax.lax.associative_scan` alone. The marginal likelihood needs only
    the total, not every prefix, so the down-sweep is skipped (measured on CPU: up to 2.4x faster and
    2.3x less XLA memory than ``lax.associative_scan(...)[-1]``, benchmarks/scaling.py). The Python loop runs over tree
    levels, not time steps; at an odd level the last element is carried up unpaired.
    """
    while elements.log_scale.shape[0] > 1:
        num_elements = elements.log_scale.shape[0]
        paired = num_elements - num_elements % 2
        combined = _combine_segments(
            _LogSegment(*(leaf[0:paired:2] for leaf in elements)),
            _LogSegment(*(leaf[1:paired:2] for leaf in elements)),
        )
        elements = _LogSegment(
            *(jnp.concatenate([new, old[paired:]]) for new, old in zip(combined, elements, strict=True))
        )
    return _LogSegment(*(leaf[0] for leaf in elements))
