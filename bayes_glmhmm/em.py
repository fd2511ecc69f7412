"""Expectation-maximization point estimates (maximum likelihood or MAP) for the Gaussian GLM-HMM.

The E-step is the smoother of :mod:`bayes_glmhmm.inference`. The M-step is closed form:
expected counts for the initial and transition probabilities, and per state a weighted (ridge,
under priors) least-squares regression followed by the noise scale given the regression. That is
an ECM step, so the objective log p(y | theta) [+ log p(theta)] never decreases.
Restarts run in parallel with ``jax.vmap``; the best final objective is kept.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float

from bayes_glmhmm.model import batched_smoother, log_prior
from bayes_glmhmm.params import GLMHMMParams, Priors, validate_data, validate_num_states
from bayes_glmhmm.standardize import standardize_if_requested

__all__ = ["EMResult", "fit_em", "em_step", "initialize_params"]


class EMResult(NamedTuple):
    """Result of :func:`fit_em`.

    Attributes:
        params: the best estimate over restarts.
        log_probs: objective at each iteration of the best restart, log p(y | theta) (+ log p(theta)
            under priors); non-decreasing.
        converged: whether the best restart met the tolerance before ``num_iters``.
        restart_log_probs: final objective of every restart.
        wall_seconds: time of the whole fit, compile included.
    """

    params: GLMHMMParams
    log_probs: np.ndarray
    converged: bool
    restart_log_probs: np.ndarray
    wall_seconds: float


def _map_scale_squared(count, residual_sum, noise_scale):
    """argmax_s of -count log s - residual_sum / (2 s^2) - s^2 / (2 noise_scale^2), as s^2."""
    a = 1.0 / noise_scale**2
    return (-count + jnp.sqrt(count**2 + 4.0 * a * residual_sum)) / (2.0 * a)


def em_step(
    params: GLMHMMParams,
    inputs: Float[Array, "num_sequences num_timesteps input_dim"],
    emissions: Float[Array, "num_sequences num_timesteps"],
    mask,
    priors: Priors | None,
) -> tuple[GLMHMMParams, Float[Array, ""]]:
    """One EM iteration.

    Args:
        params: current parameters.
        inputs: (N, T, D) covariates.
        emissions: (N, T) observations.
        mask: (N, T), False where missing.
        priors: None for maximum likelihood, else MAP under these priors.

    Returns:
        ``(new_params, objective)`` where objective is evaluated at the *input* params.
    """
    num_states = params.initial_probs.shape[0]
    input_dim = inputs.shape[-1]
    posterior = batched_smoother(params, inputs, emissions, mask)
    objective = jnp.sum(posterior.marginal_loglik)
    if priors is not None:
        objective = objective + log_prior(params, priors)

    initial_counts = jnp.sum(posterior.smoothed_probs[:, 0], axis=0)
    transition_counts = jnp.sum(posterior.expected_transitions, axis=0)
    if priors is not None:
        initial_counts = jnp.maximum(initial_counts + priors.initial_concentration - 1.0, 0.0)
        transition_counts = jnp.maximum(transition_counts + priors.transition_concentration - 1.0, 0.0)
    # A row with no expected visits keeps its old value rather than dividing by zero.
    tiny = jnp.finfo(inputs.dtype).tiny
    initial_probs = jnp.where(
        initial_counts.sum() > tiny, initial_counts / jnp.maximum(initial_counts.sum(), tiny), params.initial_probs
    )
    row_sums = transition_counts.sum(axis=1, keepdims=True)
    transition_matrix = jnp.where(
        row_sums > tiny, transition_counts / jnp.maximum(row_sums, tiny), params.transition_matrix
    )

    weights_per_step = posterior.smoothed_probs * mask[..., None]  # (N, T, K)
    design = jnp.concatenate([inputs, jnp.ones(inputs.shape[:-1] + (1,), inputs.dtype)], axis=-1)
    gram = jnp.einsum("ntk,nti,ntj->kij", weights_per_step, design, design)
    moment = jnp.einsum("ntk,nti,nt->ki", weights_per_step, design, emissions)
    counts = jnp.sum(weights_per_step, axis=(0, 1))
    if priors is None:
        penalty = jnp.zeros(input_dim + 1, inputs.dtype)
    else:
        penalty = jnp.concatenate(
            [jnp.full(input_dim, 1.0 / priors.weight_scale**2), jnp.array([1.0 / priors.bias_scale**2])]
        ).astype(inputs.dtype)
    # Ridge penalty scaled by the current noise variance: the conditional MAP given the scales.
    # The small jitter keeps a state with almost no responsibility solvable.
    regularizer = (params.scales**2)[:, None, None] * jnp.diag(penalty)[None] + 1e-8 * jnp.eye(input_dim + 1)
    coefficients = jnp.linalg.solve(gram + regularizer, moment[..., None])[..., 0]  # (K, D+1)
    residuals = emissions[..., None] - design @ coefficients.T  # (N, T, K)
    residual_sum = jnp.sum(weights_per_step * residuals**2, axis=(0, 1))
    if priors is None:
        scale_squared = residual_sum / jnp.maximum(counts, tiny)
    else:
        scale_squared = _map_scale_squared(counts, residual_sum, priors.noise_scale)
    # Floor: a state that explains a single point exactly would otherwise collapse to zero noise.
    floor = 1e-6 * jnp.var(emissions, where=mask) + tiny
    scales = jnp.sqrt(jnp.maximum(scale_squared, floor))
    del num_states
    new_params = GLMHMMParams(initial_probs, transition_matrix, coefficients[:, :-1], coefficients[:, -1], scales)
    return new_params, objective


def initialize_params(key: Array, inputs, emissions, mask, num_states: int) -> GLMHMMParams:
    """A random starting point on the data's own scale.

    Weights and biases are the pooled least-squares fit plus Normal noise of the size of one
    residual standard deviation (per unit of each input's spread), the scales that residual
    standard deviation, rows of the transition matrix Dirichlet(5) draws.

    Args:
        key: PRNG key.
        inputs: (N, T, D).
        emissions: (N, T).
        mask: (N, T).
        num_states: K.

    Returns:
        Initial parameters.
    """
    input_dim = inputs.shape[-1]
    key_weights, key_biases, key_transitions = jax.random.split(key, 3)
    weight = mask.astype(inputs.dtype)
    design = jnp.concatenate([inputs, jnp.ones(inputs.shape[:-1] + (1,), inputs.dtype)], axis=-1)
    gram = jnp.einsum("nt,nti,ntj->ij", weight, design, design) + 1e-8 * jnp.eye(input_dim + 1)
    coefficients = jnp.linalg.solve(gram, jnp.einsum("nt,nti,nt->i", weight, design, emissions))
    residuals = emissions - design @ coefficients
    residual_sd = jnp.sqrt(jnp.sum(weight * residuals**2) / jnp.sum(weight))
    input_sd = jnp.sqrt(jnp.var(inputs, axis=(0, 1), where=mask[..., None])) + 1e-12
    weights = coefficients[:-1] + residual_sd / input_sd * jax.random.normal(key_weights, (num_states, input_dim))
    biases = coefficients[-1] + residual_sd * jax.random.normal(key_biases, (num_states,))
    transition_matrix = jax.random.dirichlet(key_transitions, jnp.full((num_states, num_states), 5.0))
    return GLMHMMParams(
        initial_probs=jnp.full(num_states, 1.0 / num_states),
        transition_matrix=transition_matrix.astype(inputs.dtype),
        weights=weights.astype(inputs.dtype),
        biases=biases.astype(inputs.dtype),
        scales=jnp.full(num_states, residual_sd, inputs.dtype),
    )


def _run_em(params, inputs, emissions, mask, priors, num_iters, tol):
    """EM until the relative change of the objective is below tol, or num_iters steps."""

    def _cond(carry):
        _, log_probs, iteration, done = carry
        return (iteration < num_iters) & ~done

    def _body(carry):
        params, log_probs, iteration, _ = carry
        new_params, objective = em_step(params, inputs, emissions, mask, priors)
        log_probs = log_probs.at[iteration].set(objective)
        previous = jnp.where(iteration > 0, log_probs[iteration - 1], -jnp.inf)
        done = jnp.abs(objective - previous) <= tol * jnp.abs(objective)
        return new_params, log_probs, iteration + 1, done

    log_probs = jnp.full(num_iters, jnp.nan, inputs.dtype)
    init = (params, log_probs, jnp.asarray(0), jnp.asarray(False))
    params, log_probs, iteration, done = lax.while_loop(_cond, _body, init)
    return params, log_probs, iteration, done


_initialize_restarts = jax.jit(
    jax.vmap(initialize_params, in_axes=(0, None, None, None, None)), static_argnums=(4,)
)  # one compiled program instead of dozens of eagerly dispatched ones

_run_em_restarts = jax.jit(
    jax.vmap(_run_em, in_axes=(0, None, None, None, None, None, None)), static_argnames=("num_iters",)
)


def fit_em(
    inputs,
    emissions,
    num_states: int,
    *,
    mask=None,
    priors: Priors | None = None,
    num_iters: int = 200,
    tol: float = 1e-7,
    num_restarts: int = 10,
    seed: int = 0,
    init_params: GLMHMMParams | None = None,
    standardize="auto",
) -> EMResult:
    """Fit the GLM-HMM by EM from several random starts and keep the best.

    Args:
        inputs: covariates, (N, T, D) or (T, D).
        emissions: observations, (N, T) or (T,).
        num_states: K >= 1.
        mask: optional, False where an emission is missing.
        priors: None for maximum likelihood; with :class:`Priors`, MAP under the NUTS model's priors.
        num_iters: maximum EM iterations per restart.
        tol: stop when |objective change| <= tol * |objective|.
        num_restarts: number of random starts (ignored when ``init_params`` is given).
        seed: seed of the random starts.
        init_params: start from these parameters instead (one run), in the data's units.
        standardize: ``"auto"`` (default), True or False: fit on standardized data and map the
            estimate back (see :func:`bayes_glmhmm.fit_nuts`); under priors they then apply to
            the standardized parameters. Maximum likelihood is unaffected (it is equivariant),
            only better conditioned. ``log_probs`` are always in the data's units.

    Returns:
        An :class:`EMResult`.
    """
    import time

    start = time.perf_counter()
    num_states = validate_num_states(num_states)
    if priors is not None:
        priors = Priors(*priors).validate()
    if num_iters < 1:
        raise ValueError(f"num_iters must be >= 1, got {num_iters}")
    if num_restarts < 1:
        raise ValueError(f"num_restarts must be >= 1, got {num_restarts}")
    inputs, emissions, mask = validate_data(inputs, emissions, mask)
    inputs, emissions, standardization = standardize_if_requested(inputs, emissions, mask, standardize)
    if standardization is not None and init_params is not None:
        weights, biases, scales = standardization.to_standardized(
            init_params.weights, init_params.biases, init_params.scales
        )
        init_params = GLMHMMParams(init_params.initial_probs, init_params.transition_matrix, weights, biases, scales)
    if init_params is not None:
        dtype = inputs.dtype
        starts = jax.tree.map(lambda p: jnp.asarray(p, dtype)[None], GLMHMMParams(*init_params))
    else:
        keys = jax.random.split(jax.random.PRNGKey(seed), num_restarts)
        starts = _initialize_restarts(keys, inputs, emissions, mask, num_states)
    params, log_probs, iterations, done = _run_em_restarts(starts, inputs, emissions, mask, priors, num_iters, tol)
    log_probs = np.asarray(log_probs)
    finals = np.array([row[np.isfinite(row)][-1] if np.isfinite(row).any() else -np.inf for row in log_probs])
    best = int(np.nanargmax(np.where(np.isnan(finals), -np.inf, finals)))
    best_params = GLMHMMParams(*(np.asarray(p[best]) for p in params))
    if standardization is not None:
        # Back to the data's units: the parameters exactly, the objective by the Jacobian of y.
        best_params = standardization.params_to_original(best_params)
        jacobian = float(np.sum(np.asarray(mask))) * np.log(standardization.emission_scale)
        log_probs, finals = log_probs - jacobian, finals - jacobian
    return EMResult(
        params=best_params,
        log_probs=log_probs[best][: int(iterations[best])],
        converged=bool(done[best]),
        restart_log_probs=finals,
        wall_seconds=time.perf_counter() - start,
    )
