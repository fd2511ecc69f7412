"""GLM pieces shared by the emission families.

The linear predictor, the design matrix, weighted least squares, a generalized-EM Newton M-step,
random starts and relabeling features (the support checks are in
:mod:`bayes_glmhmm.emission_support`, importable without JAX).
"""

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from bayes_glmhmm.emissions.base import EmissionFamily

__all__ = [
    "linear_predictor",
    "design_matrix",
    "weighted_least_squares",
    "prior_precision",
    "newton_m_step",
    "glm_initialize",
    "glm_state_features",
    "glm_family",
]

NEWTON_STEP_SIZES = (1.0, 0.5, 0.25, 0.125, 1.0 / 16, 1.0 / 64, 0.0)  # 0 keeps the old value: never worse


def linear_predictor(
    weights: Float[Array, "num_states ..."],
    biases: Float[Array, "num_states ..."],
    inputs: Float[Array, "*batch input_dim"],
) -> Float[Array, "..."]:
    """eta[..., k] = x . weights[k] + biases[k] (one entry per non-reference class for the categorical)."""
    return jnp.tensordot(inputs, weights, axes=[[-1], [-1]]) + biases


def design_matrix(inputs: Float[Array, "*batch input_dim"]) -> Float[Array, "*batch input_dim_plus_one"]:
    """The inputs with a trailing column of ones (the intercept)."""
    return jnp.concatenate([inputs, jnp.ones(inputs.shape[:-1] + (1,), inputs.dtype)], axis=-1)


def weighted_least_squares(design, targets, step_weights, penalty=None, jitter: float = 1e-8):
    """Coefficients of a weighted ridge regression of ``targets`` on ``design``, for every state at once.

    Solves (X' W_k X + P_k) beta_k = X' W_k y per state k, with W_k = diag(step_weights[..., k]).

    Args:
        design: (..., P) regressors (e.g. :func:`design_matrix`), any leading shape.
        targets: (...) responses.
        step_weights: (..., K) weight of every step in every state (e.g. posterior responsibilities).
        penalty: optional (K, P, P) ridge penalty matrices.
        jitter: added to the diagonal so that a state with almost no weight stays solvable.

    Returns:
        (K, P) coefficients.
    """
    num_coefficients = design.shape[-1]
    flat_design = design.reshape(-1, num_coefficients)
    flat_weights = step_weights.reshape(-1, step_weights.shape[-1])
    gram = jnp.einsum("sk,si,sj->kij", flat_weights, flat_design, flat_design)
    moment = jnp.einsum("sk,si,s->ki", flat_weights, flat_design, targets.reshape(-1))
    if penalty is not None:
        gram = gram + penalty
    gram = gram + jitter * jnp.eye(num_coefficients, dtype=design.dtype)
    return jnp.linalg.solve(gram, moment[..., None])[..., 0]


def prior_precision(coefficient_shape: tuple, priors, dtype) -> Array:
    """Precision of the Normal priors on (weights, bias) coefficients laid out as (..., D + 1); zeros if no priors."""
    if priors is None:
        return jnp.zeros(coefficient_shape, dtype)
    weight_precision = jnp.full(coefficient_shape[:-1] + (coefficient_shape[-1] - 1,), 1.0 / priors.weight_scale**2)
    bias_precision = jnp.full(coefficient_shape[:-1] + (1,), 1.0 / priors.bias_scale**2)
    return jnp.concatenate([weight_precision, bias_precision], axis=-1).astype(dtype)


def newton_m_step(step_log_likelihood, weights, biases, design, emissions, step_weights, priors, prior_mean=None):
    """A generalized-EM M-step for a GLM family: one damped Newton step per state.

    Per state k it increases Q_k(beta) = sum_t w_tk log p(y_t | eta_t = X_t beta) + log N(beta; m, prior),
    the expected complete-data log-likelihood of the state's coefficients (plus their log prior
    for MAP). The Newton direction uses the exact Hessian (Q_k is concave for the canonical links
    used here); the step is the best of a few step sizes including 0, so Q_k never decreases and
    EM's objective is non-decreasing (generalized EM). The one exception is a full step whose
    change is within the rounding of the summed change (64 ulps of sum_t w_tk |log p|), where
    the maximum is reached to that precision: it is taken, so the iteration does not stall.

    Args:
        step_log_likelihood: ``(eta (N, T, *classes), emissions (N, T)) -> (N, T)`` log p(y | eta).
        weights: (K, *classes, D) current weights.
        biases: (K, *classes) current biases.
        design: (N, T, D + 1) inputs with a column of ones.
        emissions: (N, T) observations.
        step_weights: (N, T, K) responsibilities times the mask.
        priors: :class:`~bayes_glmhmm.params.Priors` for MAP, or None for maximum likelihood.
        prior_mean: optional ``(weights, biases)`` mean m of the Normal prior (zero by default), e.g.
            the population's values in a hierarchical model.

    Returns:
        ``(weights, biases)`` after the step.
    """
    coefficients = jnp.concatenate([weights, biases[..., None]], axis=-1)  # (K, *classes, D + 1)
    shape = coefficients.shape[1:]
    if prior_mean is None:
        mean = jnp.zeros((coefficients.shape[0], math.prod(shape)), coefficients.dtype)
    else:
        mean = jnp.concatenate([prior_mean[0], prior_mean[1][..., None]], axis=-1).reshape(coefficients.shape[0], -1)
    precision = prior_precision(shape, priors, design.dtype).reshape(-1)
    flat_design = design.reshape(-1, design.shape[-1])  # (S, P), S = N T steps
    flat_emissions = emissions.reshape(-1)

    def step_objectives(flat):
        eta = jnp.tensordot(flat_design, flat.reshape(shape), axes=[[-1], [-1]])  # (S, *classes)
        return step_log_likelihood(eta, flat_emissions)

    def objective_change(candidate, flat, state_weights, state_mean):
        # Summed per step, the change keeps its precision where the objectives themselves (|Q| >> |change|)
        # would round it away in float32 and stall the step short of the maximum.
        fit = jnp.sum(state_weights * (step_objectives(candidate) - step_objectives(flat)))
        return fit - 0.5 * jnp.sum(precision * (candidate - flat) * (candidate + flat - 2.0 * state_mean))

    def one_state(flat, state_weights, state_mean):
        gradient, negative_hessian = _glm_gradient_and_hessian(
            step_log_likelihood, flat.reshape(shape), flat_design, flat_emissions, state_weights
        )
        gradient = gradient - precision * (flat - state_mean)
        negative_hessian = negative_hessian + jnp.diag(precision)
        scale = jnp.maximum(jnp.trace(negative_hessian) / flat.shape[0], 1.0)
        regularized = negative_hessian + 1e-6 * scale * jnp.eye(flat.shape[0], dtype=flat.dtype)
        direction = jnp.linalg.solve(regularized, gradient)
        direction = jnp.where(jnp.all(jnp.isfinite(direction)), direction, 0.0)
        steps = jnp.asarray(NEWTON_STEP_SIZES, flat.dtype)
        candidates = flat + steps[:, None] * direction
        changes = jax.vmap(objective_change, in_axes=(0, None, None, None))(candidates, flat, state_weights, state_mean)
        best = jnp.argmax(jnp.where(jnp.isfinite(changes), changes, -jnp.inf))
        # Near the maximum the full step's gain (~ g' H^-1 g / 2) falls below the rounding of the
        # summed change; the full step is then taken, else the iteration stalls short of the maximum.
        rounding = 64 * jnp.finfo(flat.dtype).eps * jnp.sum(state_weights * jnp.abs(step_objectives(flat)))
        return candidates[jnp.where(changes[0] >= -rounding, 0, best)]

    flat = coefficients.reshape(coefficients.shape[0], -1)
    state_weights = step_weights.reshape(-1, step_weights.shape[-1])
    new = jax.vmap(one_state, in_axes=(0, -1, 0))(flat, state_weights, mean).reshape(coefficients.shape)
    return new[..., :-1], new[..., -1]


def _glm_gradient_and_hessian(step_log_likelihood, coefficients, design, emissions, step_weights):
    """Gradient and minus the Hessian of sum_s w_s log p(y_s | eta_s = coefficients @ x_s) in the coefficients.

    By the chain rule through the linear predictor: with g_s and h_s the first and second
    derivatives of log p(y_s | eta) in eta (per class for the categorical family, taken by
    autodiff of the per-step function), the gradient is sum_s w_s g_s (x) x_s and the Hessian
    sum_s w_s h_s (x) x_s x_s'. One pass over the data instead of one per coefficient.

    Args:
        step_log_likelihood: as in :func:`newton_m_step`.
        coefficients: (*classes, P) one state's coefficients (weights and bias).
        design: (S, P) regressors of every step.
        emissions: (S,) observations.
        step_weights: (S,) weight of every step.

    Returns:
        ``(gradient, negative_hessian)`` of shapes (E P,) and (E P, E P), E = prod(classes), in the
        flattened layout of ``coefficients``.
    """
    classes = coefficients.shape[:-1]
    num_eta = math.prod(classes)
    eta = (design @ coefficients.reshape(num_eta, -1).T).reshape(-1, num_eta)  # (S, E)

    def per_step(eta_vector, emission):
        return step_log_likelihood(eta_vector.reshape(classes), emission)

    first = jax.vmap(jax.grad(per_step))(eta, emissions)  # (S, E)
    second = jax.vmap(jax.hessian(per_step))(eta, emissions)  # (S, E, E)
    gradient = jnp.einsum("s,se,sp->ep", step_weights, first, design).reshape(-1)
    hessian = jnp.einsum("s,sef,sp,sq->epfq", step_weights, second, design, design)
    size = num_eta * design.shape[-1]
    return gradient, -hessian.reshape(size, size)


def glm_initialize(
    key, step_log_likelihood, inputs, emissions, mask, weight_shape, start_bias, num_newton: int = 8
) -> dict:
    """Random starting weights and biases around the pooled (one-state) GLM fit.

    The pooled fit is ``num_newton`` damped Newton steps from weights 0 and biases ``start_bias``
    under a weak Normal(0, 10) prior; each state then gets Normal noise of 0.5 log-odds (or log-rate)
    units per standard deviation of each input, and 0.5 on the bias.

    Args:
        key: PRNG key.
        step_log_likelihood: as in :func:`newton_m_step`.
        inputs: (N, T, D).
        emissions: (N, T).
        mask: (N, T).
        weight_shape: (K, *classes, D).
        start_bias: (*classes,) starting bias of the pooled fit (e.g. log of the mean count).
        num_newton: Newton steps of the pooled fit.

    Returns:
        ``{"weights": ..., "biases": ...}`` of shapes ``weight_shape`` and ``weight_shape[:-1]``.
    """
    from bayes_glmhmm.params import Priors

    num_states, input_dim = weight_shape[0], weight_shape[-1]
    dtype = inputs.dtype
    weak = Priors(weight_scale=10.0, bias_scale=10.0)
    design = design_matrix(inputs)
    step_weights = mask.astype(dtype)[..., None]
    weights = jnp.zeros((1, *weight_shape[1:]), dtype)
    biases = jnp.broadcast_to(jnp.asarray(start_bias, dtype), (1, *weight_shape[1:-1]))
    weights, biases = jax.lax.fori_loop(
        0,
        num_newton,
        lambda _, current: newton_m_step(step_log_likelihood, *current, design, emissions, step_weights, weak),
        (weights, biases),
    )  # a loop, not unrolled: one Newton step to compile
    key_weights, key_biases, _ = jax.random.split(key, 3)  # the third is the transitions' (em.initialize_params)
    input_sd = jnp.sqrt(jnp.var(inputs, axis=(0, 1), where=mask[..., None])) + 1e-12
    input_sd = jnp.where(input_sd > 1e-6, input_sd, 1.0)
    noise_weights = 0.5 * jax.random.normal(key_weights, weight_shape, dtype) / input_sd
    noise_biases = 0.5 * jax.random.normal(key_biases, weight_shape[:-1], dtype)
    del num_states, input_dim
    return {"weights": weights + noise_weights, "biases": biases + noise_biases}


def glm_state_features(samples: dict, num_class_axes: int = 0, extra: tuple = ()) -> np.ndarray:
    """Per-state features of each draw: flattened weights and biases, then ``extra`` (..., K) arrays.

    Args:
        samples: dict with ``weights`` (..., K, *classes, D) and ``biases`` (..., K, *classes).
        num_class_axes: 1 for the categorical family's class axis, else 0.
        extra: further per-state arrays (..., K), e.g. log noise scales.

    Returns:
        (..., K, F) features.
    """
    biases = np.asarray(samples["biases"])
    weights = np.asarray(samples["weights"])
    state_axis = biases.ndim - 1 - num_class_axes
    parts = [
        weights.reshape(weights.shape[: state_axis + 1] + (-1,)),
        biases.reshape(biases.shape[: state_axis + 1] + (-1,)),
    ]
    parts += [np.asarray(value)[..., None] for value in extra]
    return np.concatenate(parts, axis=-1)


# The pieces a GLM family without extra parameters shares: the family module gives only
# log p(y | eta), the inverse link, a sampler given eta, a starting bias and its support check.


def _log_likelihoods(step_log_likelihood, params, inputs, emissions):
    """Log p(y | x, z = k, theta) for every state, (..., K)."""
    return step_log_likelihood(linear_predictor(params.weights, params.biases, inputs), emissions[..., None])


def _mean(inverse_link, params, inputs):
    """The inverse link of each state's linear predictor, (..., K[, C])."""
    return inverse_link(linear_predictor(params.weights, params.biases, inputs))


def _sample(draw, key, params, inputs, states):
    """y_t drawn given eta_t of the state z_t, (T,), as floats."""
    eta = linear_predictor(params.weights, params.biases, inputs)  # (T, K, *classes)
    index = states.reshape(states.shape + (1,) * (eta.ndim - 1))
    return draw(key, jnp.take_along_axis(eta, index, axis=1)[:, 0]).astype(inputs.dtype)


def _m_step(step_log_likelihood, params, design, emissions, step_weights, priors, prior_mean=None) -> dict:
    """One damped Newton step of each state's weighted GLM (:func:`newton_m_step`)."""
    weights, biases = newton_m_step(
        step_log_likelihood, params.weights, params.biases, design, emissions, step_weights, priors, prior_mean
    )
    return {"weights": weights, "biases": biases}


def _initialize(step_log_likelihood, start_bias, num_classes, key, inputs, emissions, mask, num_states) -> dict:
    """Around the pooled one-state fit (:func:`glm_initialize`), from the family's starting bias."""
    classes = () if num_classes is None else (num_classes - 1,)
    shape = (num_states, *classes, inputs.shape[-1])
    bias = start_bias(emissions, mask)
    return glm_initialize(key, step_log_likelihood, inputs, emissions, mask, shape, bias)


def _no_extra_priors(num_states: int, priors) -> dict:
    return {}


def glm_family(
    *,
    name: str,
    params_type: type,
    step_log_likelihood: Callable,
    inverse_link: Callable,
    draw: Callable,
    start_bias: Callable,
    prepare_emissions: Callable,
    mean_label: str,
    mean_is_probability: bool,
    baseline: Callable,
    baseline_name: str,
    num_classes: int | None = None,
) -> EmissionFamily:
    """An :class:`EmissionFamily` of a GLM whose only parameters are weights and biases.

    Args:
        name: registry name.
        params_type: its params NamedTuple.
        step_log_likelihood: ``(eta, y) -> log p(y | eta)``, broadcasting (eta has a trailing class
            axis for the categorical family).
        inverse_link: ``eta -> E[y | eta]`` (class probabilities for the categorical family).
        draw: ``(key, eta (T, *classes)) -> y (T,)``.
        start_bias: ``(emissions, mask) -> (*classes,)`` the pooled fit's starting bias.
        prepare_emissions: the support check (see :class:`EmissionFamily`).
        mean_label: axis label of the mean (``{c}`` for the class).
        mean_is_probability: whether the mean is a probability.
        baseline: the one-state reference model's held-out log-likelihoods (see :class:`EmissionFamily`).
        baseline_name: what the baseline is, in words.
        num_classes: C for a categorical family.
    """
    return EmissionFamily(
        name=name,
        params_type=params_type,
        num_classes=num_classes,
        extra_names=(),
        log_likelihoods=functools.partial(_log_likelihoods, step_log_likelihood),
        sample=functools.partial(_sample, draw),
        mean=functools.partial(_mean, inverse_link),
        extra_priors=_no_extra_priors,
        extra_supports=(),
        m_step=functools.partial(_m_step, step_log_likelihood),
        initialize=functools.partial(_initialize, step_log_likelihood, start_bias, num_classes),
        prepare_emissions=prepare_emissions,
        relabel_features=functools.partial(glm_state_features, num_class_axes=0 if num_classes is None else 1),
        extra_dims=(),
        standardizes_emissions=False,
        discrete=True,
        mean_label=mean_label,
        mean_is_probability=mean_is_probability,
        baseline=baseline,
        baseline_name=baseline_name,
    )
