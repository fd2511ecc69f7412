"""Expectation-maximization point estimates (maximum likelihood or MAP) for the GLM-HMM, any family.

The E-step is the smoother of :mod:`bayes_glmhmm.inference`. The M-step: expected counts for the
initial and transition probabilities, and the emission family's own step
(``EmissionFamily.m_step``): closed form for the Gaussian (weighted ridge regression, then the
noise scale: an ECM step), a damped Newton step on each state's expected complete-data
log-likelihood for the others (generalized EM). Either way the objective
log p(y | theta) [+ log p(theta)] never decreases.
Restarts run one after another in one compiled program; the best final objective is kept. With
``accelerate=True`` each restart is SQUAREM-accelerated (Varadhan and Roland 2008): EM's fixed point,
reached in fewer EM steps where plain EM crawls (over-specified K), the objective still non-decreasing.

With subjects (a hierarchical model, :mod:`bayes_glmhmm.hierarchy`) the emission M-step has three
blocks, each never decreasing the objective: a Newton step that shifts the population's and every
subject's coefficients together (the direction a strong coupling would otherwise stall: with a
small spread, subject and population steps alone barely move), then each subject's own step
under a Normal prior centred at the population's, with a fixed spread (``subject_spread``), then
the population's best given the subjects'. This is the MAP of the hierarchy with its spreads
fixed, as ssm ties children to a parent. The spreads themselves cannot be MAP-estimated (the
joint density grows without bound as they shrink to 0 with every subject at the population
values); ``fit_nuts(..., subjects=)`` samples them.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float

from bayes_glmhmm import _host_prng as host_prng
from bayes_glmhmm._compile import jit_one_off
from bayes_glmhmm.emissions import EmissionFamily, family_of, resolve_family
from bayes_glmhmm.emissions._glm import design_matrix
from bayes_glmhmm.hierarchy import Subjects, sequence_log_likelihoods, validate_subjects
from bayes_glmhmm.model import batched_smoother, log_prior, transition_log_prior
from bayes_glmhmm.params import Priors, validate_data, validate_num_states
from bayes_glmhmm.relabel import match_permutation
from bayes_glmhmm.standardize import standardize_if_requested
from bayes_glmhmm.transitions import (
    STATIONARY,
    TransitionModel,
    destination_to_full,
    free_to_full,
    full_to_destination,
    full_to_free,
    get_transitions,
    log_transition_matrices,
    validate_transition_inputs,
)

__all__ = ["EMOptima", "EMResult", "distinct_optima", "fit_em", "em_step", "initialize_params"]


class EMResult(NamedTuple):
    """Result of :func:`fit_em`.

    Attributes:
        params: the best estimate over restarts (the family's params type, e.g. GLMHMMParams).
        log_probs: objective at each iteration of the best restart, log p(y | theta) (+ log p(theta)
            under priors); non-decreasing. With ``accelerate``, one per SQUAREM iteration (3 EM steps).
        converged: whether the best restart met the tolerance before ``num_iters``.
        restart_log_probs: final objective of every restart.
        wall_seconds: time of the whole fit, compile included.
        population: with subjects, the population's params (``weights`` and ``biases`` the means
            the subjects' are drawn around); ``params`` then holds every subject's weights
            (S, K, ..., D) and biases (S, K, ...). None without subjects.
        restart_params: the final params of every restart, each field with a leading restart
            axis (R, ...) in the order of ``restart_log_probs`` (with subjects, every subject's
            weights and biases); None where not recorded (e.g. an EM result read from a file).
    """

    params: NamedTuple
    log_probs: np.ndarray
    converged: bool
    restart_log_probs: np.ndarray
    wall_seconds: float
    population: tuple | None = None
    restart_params: tuple | None = None


#: The priors under which MAP EM is maximum likelihood: Normals of infinite scale (no penalty on
#: coefficients, the Gaussian's scale unpenalized) and Dirichlet(1) (no pseudo-counts); their log
#: density is left out of the objective (:func:`_objective_log_prior`). :func:`fit_em` runs
#: maximum likelihood through the MAP program with these, so that a process fitting both (EM as
#: the field does it, and the MAP EM that starts NUTS) compiles one EM program, not two.
FLAT_PRIORS = Priors(
    initial_concentration=1.0,
    transition_concentration=1.0,
    weight_scale=float("inf"),
    bias_scale=float("inf"),
    noise_scale=float("inf"),
    transition_weight_scale=float("inf"),
    subject_spread_scale=float("inf"),
)


def _is_flat(priors: Priors):
    """Whether ``priors`` are :data:`FLAT_PRIORS` (a traced boolean: no real prior has an infinite scale)."""
    return jnp.isinf(priors.weight_scale)


def _finite(priors: Priors) -> Priors:
    """``priors`` with infinite scales replaced by 1, so that a log density is finite (and so its gradient)."""
    return Priors(*(jnp.where(jnp.isinf(value), 1.0, value) for value in priors))


def _objective_log_prior(log_density, priors: Priors | None, *args):
    """``log_density(*args, priors)`` in the EM objective: 0 without priors or under :data:`FLAT_PRIORS`."""
    if priors is None:
        return 0.0
    return jnp.where(_is_flat(priors), 0.0, log_density(*args, _finite(priors)))


def em_step(
    params,
    inputs: Float[Array, "num_sequences num_timesteps input_dim"],
    emissions: Float[Array, "num_sequences num_timesteps"],
    mask,
    priors: Priors | None,
    transition_inputs=None,
    transitions: TransitionModel = STATIONARY,
):
    """One EM iteration, for any family's params and either transition model.

    Args:
        params: current parameters (their type names the family).
        inputs: (N, T, D) covariates.
        emissions: (N, T) observations.
        mask: (N, T), False where missing.
        priors: None for maximum likelihood, else MAP under these priors.
        transition_inputs: (N, T, M) inputs of input-driven transitions, else None.
        transitions: the transition model (its form fixes the transition M-step).

    Returns:
        ``(new_params, objective)`` where objective is evaluated at the *input* params.
    """
    posterior = batched_smoother(
        params, inputs, emissions, mask, transition_inputs, per_step=transitions.is_input_driven
    )
    objective = jnp.sum(posterior.marginal_loglik)
    objective = objective + _objective_log_prior(_log_prior_of(transitions), priors, params)
    chain = _chain_m_step(params, posterior, transition_inputs, priors, transitions, inputs.dtype)
    step_weights = posterior.smoothed_probs * mask[..., None]  # (N, T, K)
    emission_params = family_of(params).m_step(params, design_matrix(inputs), emissions, step_weights, priors)
    return params._replace(**chain, **emission_params), objective


def _log_prior_of(transitions: TransitionModel):
    """``(params, priors) -> log p(params)`` of :func:`~bayes_glmhmm.model.log_prior` under ``transitions``."""
    return lambda params, priors: log_prior(params, priors, transitions)


def _chain_m_step(params, posterior, transition_inputs, priors, transitions: TransitionModel, dtype) -> dict:
    """The initial and transition probabilities' M-step (and the transition weights' when input-driven)."""
    if transitions.is_input_driven:
        initial_probs = _initial_m_step(params, posterior, priors, dtype)
        transition_matrix, transition_weights = _input_driven_m_step(
            params, posterior.expected_transitions, transition_inputs, priors, transitions
        )
        return dict(
            initial_probs=initial_probs, transition_matrix=transition_matrix, transition_weights=transition_weights
        )
    initial_probs, transition_matrix = _markov_chain_m_step(params, posterior, priors, dtype)
    return dict(initial_probs=initial_probs, transition_matrix=transition_matrix)


def subject_em_step(
    state,
    inputs,
    emissions,
    mask,
    subject_index,
    spread,
    priors: Priors | None,
    transition_inputs=None,
    transitions: TransitionModel = STATIONARY,
):
    """One EM iteration of the hierarchical model with its spreads fixed (see the module docstring).

    Args:
        state: ``(params, population)``: the params with every subject's ``weights`` (S, K, ..., D)
            and ``biases`` (S, K, ...), and the population's ``(weights, biases)``.
        inputs: (N, T, D) covariates.
        emissions: (N, T) observations.
        mask: (N, T), False where missing.
        subject_index: (N,) the subject of each sequence.
        spread: the fixed spread tau of every subject coefficient around the population's.
        priors: None (maximum likelihood for the population's and the chain's parameters) or MAP.
        transition_inputs: (N, T, M) inputs of input-driven transitions, else None.
        transitions: the transition model.

    Returns:
        ``(new_state, objective)``, the objective log p(y | theta_subjects) + sum_s log N(beta_s;
        mu, tau^2) (+ log p(mu, chain) under priors) at the *input* state.
    """
    params, population = state
    posterior = batched_smoother(
        params,
        inputs,
        emissions,
        mask,
        transition_inputs,
        per_step=transitions.is_input_driven,
        subject_index=subject_index,
    )
    objective = jnp.sum(posterior.marginal_loglik) + _subject_log_prior(params, population, spread)
    population_params = params._replace(weights=population[0], biases=population[1])
    objective = objective + _objective_log_prior(_log_prior_of(transitions), priors, population_params)
    chain = _chain_m_step(params, posterior, transition_inputs, priors, transitions, inputs.dtype)
    step_weights = posterior.smoothed_probs * mask[..., None]
    params, population = _common_shift_step(params, population, inputs, emissions, step_weights, subject_index, priors)
    design = design_matrix(inputs)
    subject_priors = Priors(weight_scale=spread, bias_scale=spread)

    def one_subject(subject, weights, biases):
        own = params._replace(weights=weights, biases=biases)
        own_steps = step_weights * (subject_index == subject)[:, None, None]
        return family_of(params).m_step(own, design, emissions, own_steps, subject_priors, prior_mean=population)

    num_subjects = params.weights.shape[0]
    emission = jax.vmap(one_subject)(jnp.arange(num_subjects), params.weights, params.biases)
    population = _population_m_step(emission["weights"], emission["biases"], spread, priors)
    return (params._replace(**chain, **emission), population), objective


SHIFT_STEP_SIZES = (1.0, 0.5, 0.25, 0.1, 0.0)


def _common_shift_step(params, population, inputs, emissions, step_weights, subject_index, priors):
    """One Newton step on a shift added to the population's and every subject's coefficients alike.

    Such a shift leaves every subject's offset from the population, hence its Normal prior,
    unchanged; it maximizes sum_{n, t, k} w[n, t, k] log p(y | x, z = k, theta_subject(n) + shift)
    (+ the population's log prior under ``priors``), the step being the best of
    :data:`SHIFT_STEP_SIZES` (0 included, so it never decreases the objective).
    """
    family = family_of(params)
    start, unravel = ravel_pytree((jnp.zeros_like(population[0]), jnp.zeros_like(population[1])))

    def objective(flat):
        weights_shift, biases_shift = unravel(flat)
        shifted = params._replace(weights=params.weights + weights_shift, biases=params.biases + biases_shift)
        per_state = sequence_log_likelihoods(family.log_likelihoods, shifted, inputs, emissions, subject_index)
        value = jnp.sum(jnp.where(step_weights > 0, step_weights * per_state, 0.0))
        if priors is not None:  # an infinite (flat) scale adds exactly 0
            value = (
                value
                + jnp.sum(-0.5 * ((population[0] + weights_shift) / priors.weight_scale) ** 2)
                + jnp.sum(-0.5 * ((population[1] + biases_shift) / priors.bias_scale) ** 2)
            )
        return value

    gradient = jax.grad(objective)(start)
    hessian = jax.hessian(objective)(start)
    scale = jnp.maximum(jnp.trace(-hessian) / start.shape[0], 1.0)
    direction = jnp.linalg.solve(-hessian + 1e-6 * scale * jnp.eye(start.shape[0], dtype=start.dtype), gradient)
    direction = jnp.where(jnp.all(jnp.isfinite(direction)), direction, 0.0)
    candidates = jnp.asarray(SHIFT_STEP_SIZES, start.dtype)[:, None] * direction[None]
    values = jax.vmap(objective)(candidates)
    best = candidates[jnp.argmax(jnp.where(jnp.isfinite(values), values, -jnp.inf))]
    weights_shift, biases_shift = unravel(best)
    shifted = params._replace(weights=params.weights + weights_shift, biases=params.biases + biases_shift)
    return shifted, (population[0] + weights_shift, population[1] + biases_shift)


def _subject_log_prior(params, population, spread):
    """sum_s log N(beta_s; mu, spread^2) over every subject coefficient."""
    normal = lambda values, mean: jnp.sum(  # noqa: E731
        -0.5 * ((values - mean) / spread) ** 2 - jnp.log(spread) - 0.5 * jnp.log(2 * jnp.pi)
    )
    return normal(params.weights, population[0][None]) + normal(params.biases, population[1][None])


def _population_m_step(subject_weights, subject_biases, spread, priors: Priors | None):
    """The population's coefficients given the subjects': mu = sum_s beta_s / (S + tau^2 / sigma^2).

    The maximum of sum_s log N(beta_s; mu, tau^2) + log N(mu; 0, sigma^2) in mu (sigma the prior's
    weight or bias scale); without priors, the subjects' mean.
    """
    num_subjects = subject_weights.shape[0]
    if priors is None:
        return jnp.mean(subject_weights, axis=0), jnp.mean(subject_biases, axis=0)
    # Under FLAT_PRIORS the scales are infinite: no shrinkage, the subjects' mean.
    shrink_weights = num_subjects + (spread / priors.weight_scale) ** 2
    shrink_biases = num_subjects + (spread / priors.bias_scale) ** 2
    return jnp.sum(subject_weights, axis=0) / shrink_weights, jnp.sum(subject_biases, axis=0) / shrink_biases


def _initial_m_step(params, posterior, priors: Priors | None, dtype):
    """Initial probabilities from the expected first states (+ Dirichlet pseudo-counts for MAP)."""
    counts = jnp.sum(posterior.smoothed_probs[:, 0], axis=0)
    if priors is not None:  # concentration - 1 first: exactly 0 for Dirichlet(1), so no rounding of the counts
        counts = jnp.maximum(counts + (priors.initial_concentration - 1.0), 0.0)
    tiny = jnp.finfo(dtype).tiny
    return jnp.where(counts.sum() > tiny, counts / jnp.maximum(counts.sum(), tiny), params.initial_probs)


NEWTON_STEPS = 3  # Newton steps of the transition M-step per EM iteration (generalized EM)
# Backtracking: the longest of these that does not decrease Q (NumPy: no program compiled at import).
STEP_FRACTIONS = 0.5 ** np.arange(16)


def _input_driven_m_step(params, expected_transitions, transition_inputs, priors, transitions: TransitionModel):
    """Transition M-step of input-driven transitions: a weighted multinomial logistic regression.

    Maximizes Q(A, V) = sum_{n, t, i, j} xi[n, t, i, j] log p(z_{t+1} = j | z_t = i, u[n, t]; A, V)
    (+ the log prior of A and V for MAP), xi being the smoothed two-slice marginals, over the
    free coordinates: the logits log A[i, j] - log A[i, i] (j != i) and the form's free weights.
    A few Newton steps (autodiff gradient and Hessian, a small problem of K (K - 1) (M + 1)
    numbers at most), each backtracked to the longest step that does not decrease Q, so the EM
    objective never decreases. The destination form's weights d are unidentified along a common
    shift (the softmax ignores it); a penalty on sum_j d_j removes that direction from the Newton
    system without changing the optimum.
    """
    num_states = params.transition_matrix.shape[-1]
    if num_states == 1:
        return params.transition_matrix, jnp.zeros_like(params.transition_weights)
    start = _transition_coordinates(params.transition_matrix, params.transition_weights, transitions)
    flat_start, unravel = ravel_pytree(start)

    def objective(flat):
        matrix, weights = _transition_params(unravel(flat), transitions)
        log_probs = log_transition_matrices(matrix, weights, transition_inputs)
        value = jnp.sum(expected_transitions * log_probs)
        return value + _objective_log_prior(
            lambda matrix, weights, priors: transition_log_prior(matrix, weights, priors, transitions),
            priors,
            matrix,
            weights,
        )

    def penalized(flat):
        coordinates = unravel(flat)
        shift = jnp.sum(coordinates["destination_weights"]) if transitions.form == "destination" else 0.0
        return objective(flat) - 0.5 * shift**2

    def _newton(_, flat):
        gradient = jax.grad(penalized)(flat)
        hessian = jax.hessian(penalized)(flat)
        step = -jnp.linalg.solve(hessian, gradient)
        ascent = jnp.all(jnp.isfinite(step)) & (jnp.dot(step, gradient) > 0)
        step = jnp.where(ascent, step, gradient)  # not concave here: fall back to the gradient
        candidates = flat[None] + STEP_FRACTIONS[:, None] * step[None]
        values = jax.vmap(objective)(candidates)
        current = objective(flat)
        improves = jnp.isfinite(values) & (values >= current)
        best = jnp.argmax(improves)  # the longest improving step (fractions decrease)
        return jnp.where(jnp.any(improves), candidates[best], flat)

    flat = lax.fori_loop(0, NEWTON_STEPS, _newton, flat_start)
    return _transition_params(unravel(flat), transitions)


def _transition_coordinates(transition_matrix, transition_weights, transitions: TransitionModel) -> dict:
    """Free coordinates of the transition parameters: stay-referenced logits and the form's free weights."""
    log_matrix = jnp.log(jnp.maximum(transition_matrix, jnp.finfo(transition_matrix.dtype).tiny))
    logits = log_matrix - jnp.diagonal(log_matrix)[:, None]
    coordinates = {"logits": full_to_free(logits[..., None])[..., 0]}
    if transitions.form == "destination":
        coordinates["destination_weights"] = full_to_destination(transition_weights)
    else:
        coordinates["free_transition_weights"] = full_to_free(transition_weights)
    return coordinates


def _transition_params(coordinates: dict, transitions: TransitionModel):
    """(transition_matrix, transition_weights) from :func:`_transition_coordinates`' coordinates."""
    logits = free_to_full(coordinates["logits"][..., None])[..., 0]
    matrix = jax.nn.softmax(logits, axis=-1)
    if transitions.form == "destination":
        destination = coordinates["destination_weights"]
        weights = destination_to_full(destination - jnp.mean(destination, axis=-1, keepdims=True))
    else:
        weights = free_to_full(coordinates["free_transition_weights"])
    return matrix, weights


def _markov_chain_m_step(params, posterior, priors: Priors | None, dtype):
    """Initial probabilities and transition matrix from expected counts (+ Dirichlet pseudo-counts for MAP)."""
    initial_counts = jnp.sum(posterior.smoothed_probs[:, 0], axis=0)
    transition_counts = jnp.sum(posterior.expected_transitions, axis=0)
    if priors is not None:  # concentration - 1 first: exactly 0 for Dirichlet(1), so no rounding of the counts
        initial_counts = jnp.maximum(initial_counts + (priors.initial_concentration - 1.0), 0.0)
        transition_counts = jnp.maximum(transition_counts + (priors.transition_concentration - 1.0), 0.0)
    # A row with no expected visits keeps its old value rather than dividing by zero.
    tiny = jnp.finfo(dtype).tiny
    initial_probs = jnp.where(
        initial_counts.sum() > tiny, initial_counts / jnp.maximum(initial_counts.sum(), tiny), params.initial_probs
    )
    row_sums = transition_counts.sum(axis=1, keepdims=True)
    transition_matrix = jnp.where(
        row_sums > tiny, transition_counts / jnp.maximum(row_sums, tiny), params.transition_matrix
    )
    return initial_probs, transition_matrix


def initialize_params(
    key: Array,
    inputs,
    emissions,
    mask,
    num_states: int,
    family: EmissionFamily | None = None,
    num_transition_inputs: int = 0,
):
    """A random starting point on the data's own scale.

    The emission parameters come from the family's ``initialize`` (around the pooled one-state
    fit, with noise); the rows of the transition matrix are Dirichlet(5) draws, the initial
    probabilities uniform; input-driven transitions (``num_transition_inputs`` M > 0) start with
    zero transition weights (K, K, M), i.e. from a stationary model.

    Args:
        key: PRNG key.
        inputs: (N, T, D).
        emissions: (N, T).
        mask: (N, T).
        num_states: K.
        family: the emission family (Gaussian by default).
        num_transition_inputs: M of input-driven transitions; 0 for stationary ones.

    Returns:
        Initial parameters of the family's type.
    """
    family = resolve_family("gaussian") if family is None else family
    key_transitions = jax.random.split(key, 3)[2]  # the family's initialize uses the first two
    transition_matrix = jax.random.dirichlet(key_transitions, jnp.full((num_states, num_states), 5.0))
    return family.params_type(
        initial_probs=jnp.full(num_states, 1.0 / num_states, inputs.dtype),
        transition_matrix=transition_matrix.astype(inputs.dtype),
        **family.initialize(key, inputs, emissions, mask, num_states),
        transition_weights=(
            None
            if num_transition_inputs == 0
            else jnp.zeros((num_states, num_states, num_transition_inputs), inputs.dtype)
        ),
    )


def _run_em(
    params,
    inputs,
    emissions,
    mask,
    priors,
    num_iters,
    tol,
    transition_inputs=None,
    transitions=STATIONARY,
    hierarchy=None,
    accelerate=False,
):
    """EM until one EM step raises the objective by at most tol times its size, or num_iters steps.

    ``hierarchy``: None, or ``(subject_index, spread)`` for subjects (:func:`subject_em_step`),
    ``params`` being then the state ``(params, population)``. ``accelerate``: SQUAREM
    (:func:`_squarem_iteration`), three EM steps per iteration, so at most ``num_iters // 3``
    iterations; ``log_probs`` then holds one objective per iteration.
    """

    def _step(state):
        if hierarchy is None:
            return em_step(state, inputs, emissions, mask, priors, transition_inputs, transitions)
        subject_index, spread = hierarchy
        return subject_em_step(
            state, inputs, emissions, mask, subject_index, spread, priors, transition_inputs, transitions
        )

    max_iterations = max(1, num_iters // SQUAREM_STEPS) if accelerate else num_iters

    def _cond(carry):
        _, log_probs, iteration, done, _ = carry
        return (iteration < max_iterations) & ~done

    def _body(carry):
        params, log_probs, iteration, _, step_bound = carry
        if accelerate:
            new_params, objective, gain, step_bound = _squarem_iteration(_step, params, step_bound)
        else:
            new_params, objective = _step(params)
            previous = jnp.where(iteration > 0, log_probs[iteration - 1], -jnp.inf)
            gain = objective - previous
        log_probs = log_probs.at[iteration].set(objective)
        done = jnp.abs(gain) <= tol * jnp.abs(objective)
        return new_params, log_probs, iteration + 1, done, step_bound

    log_probs = jnp.full(max_iterations, jnp.nan, inputs.dtype)
    init = (params, log_probs, jnp.asarray(0), jnp.asarray(False), jnp.asarray(1.0, inputs.dtype))
    params, log_probs, iteration, done, _ = lax.while_loop(_cond, _body, init)
    return params, log_probs, iteration, done


SQUAREM_STEPS = 3  # EM steps per SQUAREM iteration: two to extrapolate from, one to stabilize
SQUAREM_BOUND_FACTOR = 4.0  # the step-length bound grows (shrinks) by this after a bounded success (a failure)
_PROBABILITY_FIELDS = ("initial_probs", "transition_matrix")  # extrapolated as logs, mapped back by a softmax


def _squarem_coordinates(state, inverse: bool = False):
    """The unconstrained coordinates SQUAREM extrapolates in, or back (``inverse``).

    Probabilities (initial and transition) as logs, mapped back by a softmax along their last
    axis; the family's positive parameters (the Gaussian's scales) as logs; everything else (GLM
    weights and biases, transition weights, a hierarchy's population) as it is.
    """
    params, population = state if isinstance(state, tuple) and not hasattr(state, "_fields") else (state, None)
    positive = [name for name, support in family_of(params).extra_supports if support == "positive"]
    tiny = jnp.finfo(params.transition_matrix.dtype).tiny
    if inverse:
        changed = {name: jax.nn.softmax(getattr(params, name), axis=-1) for name in _PROBABILITY_FIELDS}
        changed |= {name: jnp.exp(getattr(params, name)) for name in positive}
    else:
        logged = (*_PROBABILITY_FIELDS, *positive)
        changed = {name: jnp.log(jnp.maximum(getattr(params, name), tiny)) for name in logged}
    params = params._replace(**changed)
    return params if population is None else (params, population)


def _squarem_iteration(step, params, step_bound):
    """One SQUAREM iteration (Varadhan and Roland 2008, scheme S3, with their step-length bound).

    From theta_0, two EM steps give theta_1 and theta_2; with r = theta_1 - theta_0 and
    v = theta_2 - 2 theta_1 + theta_0 (in :func:`_squarem_coordinates`), the extrapolation
    theta' = theta_0 - 2 a r + a^2 v with a = -|r| / |v|, bounded to [-step_bound, -1] (a = -1 is
    theta_2 itself), is followed by one EM step from theta'. That step's result is kept if the
    objective at theta' is finite and at least the one at theta_0; else theta_2 is kept. Either
    way the objective does not decrease from one iteration to the next. The bound grows after a
    kept extrapolation that reached it, and shrinks after a rejected one.

    Args:
        step: one EM step, ``state -> (new_state, objective at state)``.
        params: theta_0.
        step_bound: the current bound on |a| (>= 1).

    Returns:
        ``(new_params, objective at theta_0, gain of the plain EM step from theta_0, new step_bound)``.
    """
    first, objective = step(params)
    second, first_objective = step(first)
    origin, one, two = (_squarem_coordinates(state) for state in (params, first, second))
    change = jax.tree.map(lambda a, b: b - a, origin, one)
    curvature = jax.tree.map(lambda a, b, c: c - 2.0 * b + a, origin, one, two)
    change_norm = sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(change))
    curvature_norm = sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(curvature))
    tiny = jnp.finfo(objective.dtype).tiny
    length = jnp.clip(-jnp.sqrt(change_norm / jnp.maximum(curvature_norm, tiny)), -step_bound, -1.0)
    length = jnp.where(jnp.isfinite(length), length, -1.0)
    extrapolated = jax.tree.map(lambda a, r, v: a - 2.0 * length * r + length**2 * v, origin, change, curvature)
    stabilized, extrapolated_objective = step(_squarem_coordinates(extrapolated, inverse=True))
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(stabilized)]))
    keep = finite & jnp.isfinite(extrapolated_objective) & (extrapolated_objective >= objective)
    new_params = jax.tree.map(lambda a, b: jnp.where(keep, a, b), stabilized, second)
    bounded = length <= -step_bound
    step_bound = jnp.where(
        keep,
        jnp.where(bounded, step_bound * SQUAREM_BOUND_FACTOR, step_bound),
        jnp.maximum(1.0, step_bound / SQUAREM_BOUND_FACTOR),
    )
    return new_params, objective, first_objective - objective, step_bound


_initialize_restarts = jit_one_off(
    jax.vmap(initialize_params, in_axes=(0, None, None, None, None, None, None)), static_argnums=(4, 5, 6)
)  # one compiled program instead of dozens of eagerly dispatched ones


@functools.partial(jax.jit, static_argnames=("num_iters", "transitions", "accelerate"))
def _run_em_restarts(
    starts,
    inputs,
    emissions,
    mask,
    priors,
    num_iters,
    tol,
    transition_inputs,
    transitions,
    hierarchy=None,
    accelerate=False,
):
    """:func:`_run_em` from every start, one after another in one program (``lax.map``).

    Not ``vmap``: each restart then stops at its own convergence, and on a CPU the unbatched step
    is the faster one (4 restarts at 51,411 trials, K = 4: 73-87 ms per step for all of them
    against 117-141 ms batched; 10 restarts on the article's data x 10: 0.7 s against 1.8 s).
    """

    def _one(start):
        arguments = (inputs, emissions, mask, priors, num_iters, tol, transition_inputs, transitions, hierarchy)
        return _run_em(start, *arguments, accelerate)

    return lax.map(_one, starts)


def fit_em(
    inputs,
    emissions,
    num_states: int,
    *,
    family="gaussian",
    num_classes: int | None = None,
    mask=None,
    priors: Priors | None = None,
    num_iters: int = 200,
    tol: float = 1e-7,
    num_restarts: int = 10,
    seed: int = 0,
    init_params=None,
    standardize="auto",
    transition_inputs=None,
    transitions=None,
    subjects=None,
    subject_spread: float = 1.0,
    accelerate: bool = False,
) -> EMResult:
    """Fit the GLM-HMM by EM from several random starts and keep the best.

    Args:
        inputs: covariates, (N, T, D) or (T, D).
        emissions: observations, (N, T) or (T,), in the family's support.
        num_states: K >= 1.
        family: ``"gaussian"`` (default), ``"bernoulli"``, ``"categorical"``, ``"poisson"`` or an
            :class:`~bayes_glmhmm.emissions.EmissionFamily`.
        num_classes: C of the categorical family (default: 1 + the largest observed label).
        mask: optional, False where an emission is missing.
        priors: None for maximum likelihood; with :class:`Priors`, MAP under the NUTS model's priors.
        num_iters: maximum EM iterations per restart.
        tol: stop when |objective change| <= tol * |objective|.
        num_restarts: number of random starts (ignored when ``init_params`` is given).
        seed: seed of the random starts.
        init_params: start from these parameters instead (one run), in the data's units.
        standardize: ``"auto"`` (default), True or False: fit on standardized data and map the
            estimate back (see :func:`bayes_glmhmm.fit_nuts`); under priors they then apply to
            the standardized parameters. Only the Gaussian family standardizes its emissions;
            the others standardize inputs only. Maximum likelihood is unaffected (it is
            equivariant), only better conditioned. ``log_probs`` are always in the data's units.
            Transition inputs are never rescaled.
        transition_inputs: (N, T, M) inputs of input-driven transitions (u[n, t] drives the
            step t -> t+1; see :mod:`bayes_glmhmm.transitions`), or None for stationary ones.
        transitions: ``"full"`` (default with transition inputs) or ``"destination"`` (ssm's
            v_ij = v_j), or None / ``"stationary"``. The transition M-step is then a weighted
            multinomial logistic regression of the expected transitions on u (Newton steps).
        subjects: (N,) one subject id per sequence: the hierarchical model of
            :mod:`bayes_glmhmm.hierarchy` with its spreads fixed at ``subject_spread`` (see this
            module's docstring); each subject's weights and biases are a MAP estimate under
            Normal(population, ``subject_spread``^2), the population's under ``priors``. GLM
            families without extra parameters only (Bernoulli, categorical, Poisson); never
            standardized. The restarts and ``init_params`` give the population's start, every
            subject starting there.
        subject_spread: the fixed spread of every subject coefficient around the population's.
        accelerate: SQUAREM (Varadhan and Roland 2008): every iteration extrapolates from two EM
            steps and stabilizes with a third, keeping the result only if the objective did not
            fall (else the two plain steps). Same fixed points and stopping rule (the plain EM
            step's gain <= tol * |objective|), far fewer EM steps where EM crawls along a flat
            ridge (an over-specified K). ``num_iters`` still bounds the EM steps (``num_iters // 3``
            iterations), and ``log_probs`` holds one objective per iteration.

    Returns:
        An :class:`EMResult`; ``params`` is the family's params type (with subjects: every
        subject's weights and biases, and ``population`` the population's params).
    """
    import time

    start = time.perf_counter()
    num_states = validate_num_states(num_states)
    family = resolve_family(family, emissions, mask, num_classes)
    if priors is not None:
        priors = Priors(*priors).validate()
    if num_iters < 1:
        raise ValueError(f"num_iters must be >= 1, got {num_iters}")
    if num_restarts < 1:
        raise ValueError(f"num_restarts must be >= 1, got {num_restarts}")
    if accelerate:
        if num_iters < SQUAREM_STEPS:
            raise ValueError(f"num_iters must be >= {SQUAREM_STEPS} with accelerate=True (EM steps per iteration)")
        unsupported = [name for name, support in family.extra_supports if support not in ("positive", "real")]
        if unsupported:
            raise ValueError(f"accelerate: the {family.name} family's {unsupported} have supports SQUAREM cannot map")
    transitions = get_transitions(transitions, transition_inputs)
    inputs, emissions, mask = validate_data(inputs, emissions, mask, family)
    num_transition_inputs = 0
    if transition_inputs is not None:
        transition_inputs = validate_transition_inputs(transition_inputs, emissions.shape)
        num_transition_inputs = int(transition_inputs.shape[-1])
    subject_groups = None if subjects is None else _checked_subjects(subjects, subject_spread, family, emissions)
    inputs, emissions, standardization = standardize_if_requested(
        inputs, emissions, mask, standardize, emissions_too=family.standardizes_emissions
    )
    if subject_groups is not None and standardization is not None:
        raise ValueError(
            "subjects cannot be combined with standardization (the fixed spread would not map back to the "
            "data's units): pass standardize=False, rescaling the inputs yourself if they are far from unit scale"
        )
    if init_params is not None and not isinstance(init_params, family.params_type):
        raise ValueError(f"init_params must be {family.params_type.__name__} for the {family.name} family")
    if standardization is not None and init_params is not None:
        init_params = standardization.params_to_standardized(init_params)
    if init_params is not None:
        dtype = inputs.dtype
        _check_transition_weights(init_params, num_states, num_transition_inputs)
        starts = jax.tree.map(lambda p: jnp.asarray(p, dtype)[None], init_params)
    else:
        keys = host_prng.split(host_prng.prng_key(seed), num_restarts)
        starts = _initialize_restarts(keys, inputs, emissions, mask, num_states, family, num_transition_inputs)
    hierarchy = None
    if subject_groups is not None:
        starts = _subject_starts(starts, subject_groups.num_subjects)
        hierarchy = (jnp.asarray(subject_groups.index), jnp.asarray(subject_spread, inputs.dtype))
    states, log_probs, iterations, done = _run_em_restarts(
        starts,
        inputs,
        emissions,
        mask,
        FLAT_PRIORS if priors is None else priors,
        num_iters,
        tol,
        transition_inputs,
        transitions,
        hierarchy,
        bool(accelerate),
    )
    # On the host, so that picking the best restart compiles no programs of its own.
    states, log_probs, iterations, done = jax.tree.map(np.asarray, (states, log_probs, iterations, done))
    finals = np.array([row[np.isfinite(row)][-1] if np.isfinite(row).any() else -np.inf for row in log_probs])
    best = int(np.nanargmax(np.where(np.isnan(finals), -np.inf, finals)))
    params, population = (states, None) if hierarchy is None else states
    best_params = family.params_type(*(None if p is None else p[best] for p in params))
    restart_params = family.params_type(*params)
    if population is not None:
        population = best_params._replace(weights=population[0][best], biases=population[1][best])
    if standardization is not None:
        # Back to the data's units: the parameters exactly, the objective by the Jacobian of y.
        best_params = standardization.params_to_original(best_params)
        restart_params = standardization.params_to_original(restart_params)
        jacobian = float(np.sum(np.asarray(mask))) * np.log(standardization.emission_scale)
        log_probs, finals = log_probs - jacobian, finals - jacobian
    return EMResult(
        params=best_params,
        log_probs=log_probs[best][: int(iterations[best])],
        converged=bool(done[best]),
        restart_log_probs=finals,
        wall_seconds=time.perf_counter() - start,
        population=population,
        restart_params=restart_params,
    )


OPTIMUM_OBJECTIVE_TOLERANCE = 0.1  # nats: restarts closer than this may be one optimum (EM stops ~1e-3 short)
OPTIMUM_RELATIVE_OBJECTIVE_TOLERANCE = 1e-5  # of |objective|: EM's relative stop (1e-7) leaves more on big data
OPTIMUM_PARAMETER_TOLERANCE = 0.05  # relative: |a - b| <= tol * (1 + |a|) for every state feature and transition


class EMOptima(NamedTuple):
    """The distinct optima that EM restarts reached (:func:`distinct_optima`), best first.

    Attributes:
        restart_indices: (O,) for each optimum, the restart with the highest objective among those
            that reached it (the first is the best restart, i.e. :attr:`EMResult.params`).
        objectives: (O,) the objective of each optimum (that restart's), non-increasing.
        num_restarts: (O,) how many restarts reached each optimum.
        restart_optimum: (R,) the optimum each restart reached, -1 for a restart whose objective
            is not finite.
    """

    restart_indices: np.ndarray
    objectives: np.ndarray
    num_restarts: np.ndarray
    restart_optimum: np.ndarray


def distinct_optima(
    objectives,
    restart_params,
    objective_tolerance: float = OPTIMUM_OBJECTIVE_TOLERANCE,
    parameter_tolerance: float = OPTIMUM_PARAMETER_TOLERANCE,
) -> EMOptima:
    """Group EM restarts into distinct optima: the same optimum up to a relabeling of the states.

    Two restarts reached the same optimum when their objectives agree within
    ``objective_tolerance`` nats (or 1e-5 x |objective|, if larger) and their parameters agree up
    to a permutation of the states: the permutation matching the family's per-state features
    (Hungarian, as relabeling does), then every feature and every transition probability within
    ``parameter_tolerance`` x (1 + |value|). The objective alone would merge distinct optima that
    happen to tie; the parameters compare only restarts whose objectives already agree. Restarts
    are taken best first, each joining the first optimum it matches, so an optimum's
    representative is its best restart.

    Args:
        objectives: (R,) final objective of every restart (:attr:`EMResult.restart_log_probs`).
        restart_params: the params of every restart with a leading restart axis
            (:attr:`EMResult.restart_params`), of a model without subjects.
        objective_tolerance: nats within which two objectives may belong to one optimum (restarts
            of one optimum were measured within 0.01 nats of each other on the article's data).
        parameter_tolerance: relative tolerance of the parameters of one optimum.

    Returns:
        An :class:`EMOptima`.
    """
    objectives = np.asarray(objectives, dtype=float)
    fields = {name: np.asarray(value) for name, value in restart_params._asdict().items() if value is not None}
    features = family_of(restart_params).relabel_features(fields)  # (R, K, F)
    transitions = fields["transition_matrix"]  # (R, K, K)
    restart_optimum = np.full(objectives.shape[0], -1)
    representatives: list[int] = []
    for restart in np.argsort(-np.where(np.isfinite(objectives), objectives, -np.inf), kind="stable"):
        if not np.isfinite(objectives[restart]):
            continue
        for optimum, representative in enumerate(representatives):
            tolerance = max(objective_tolerance, OPTIMUM_RELATIVE_OBJECTIVE_TOLERANCE * abs(objectives[representative]))
            if abs(objectives[restart] - objectives[representative]) > tolerance:
                continue
            scale = np.std(features[representative], axis=0) + 1e-12
            permutation = match_permutation(features[restart], features[representative], scale)
            same_features = _close(features[restart][permutation], features[representative], parameter_tolerance)
            permuted_transitions = transitions[restart][permutation][:, permutation]
            if same_features and _close(permuted_transitions, transitions[representative], parameter_tolerance):
                restart_optimum[restart] = optimum
                break
        else:
            restart_optimum[restart] = len(representatives)
            representatives.append(int(restart))
    restart_indices = np.asarray(representatives, dtype=int)
    return EMOptima(
        restart_indices=restart_indices,
        objectives=objectives[restart_indices],
        num_restarts=np.bincount(restart_optimum[restart_optimum >= 0], minlength=len(representatives)),
        restart_optimum=restart_optimum,
    )


def _close(values, reference, tolerance: float) -> bool:
    return bool(np.all(np.abs(values - reference) <= tolerance * (1.0 + np.abs(reference))))


def _checked_subjects(subjects, subject_spread, family: EmissionFamily, emissions) -> Subjects:
    """The subjects of :func:`fit_em`, checked with their spread and family."""
    if family.extra_names:
        raise ValueError(
            f"subjects: fit_em with subjects supports the families without extra parameters (bernoulli, "
            f"categorical, poisson), not {family.name} (its {', '.join(family.extra_names)} are shared across "
            "subjects); use fit_nuts(..., subjects=) for it"
        )
    if isinstance(subject_spread, bool) or not np.isfinite(float(subject_spread)) or float(subject_spread) <= 0:
        raise ValueError(f"subject_spread must be a positive finite number, got {subject_spread!r}")
    return validate_subjects(subjects, emissions.shape[0])


def _subject_starts(starts, num_subjects: int):
    """Restart states ``(params, population)``: every subject at the population's start."""
    weights, biases = np.asarray(starts.weights), np.asarray(starts.biases)  # on the host: nothing to compile
    population = (weights, biases)
    subject_level = starts._replace(
        weights=np.repeat(weights[:, None], num_subjects, axis=1),
        biases=np.repeat(biases[:, None], num_subjects, axis=1),
    )
    return subject_level, population


def _check_transition_weights(init_params, num_states: int, num_transition_inputs: int) -> None:
    """``init_params.transition_weights`` must match the transition inputs (None without them)."""
    weights = init_params.transition_weights
    if num_transition_inputs == 0 and weights is not None:
        raise ValueError("init_params has transition_weights but no transition_inputs were given")
    expected = (num_states, num_states, num_transition_inputs)
    if num_transition_inputs > 0 and (weights is None or np.shape(weights) != expected):
        got = None if weights is None else np.shape(weights)
        raise ValueError(f"init_params.transition_weights must have shape {expected}, got {got}")
