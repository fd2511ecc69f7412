"""The GLM-HMM as a probability model: batched likelihood, state inference, and the NumPyro model.

The model composes the components: initial probabilities, a transition matrix and an emission
family (:mod:`bayes_glmhmm.emissions`), whose per-state log-likelihoods feed the HMM kernels of
:mod:`bayes_glmhmm.inference`. The hidden states are summed out by the forward filter, run over
all sequences at once with ``jax.vmap``; the result enters NumPyro through ``numpyro.factor``.
Every function here takes any family's params; the params' type names the family.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax import lax
from jax.scipy.special import gammaln, xlogy
from jaxtyping import Array, Bool, Float, Int

from bayes_glmhmm._compile import device_array
from bayes_glmhmm.emissions import EmissionFamily, family_of, get_family
from bayes_glmhmm.hierarchy import (
    sample_subject_sites,
    sample_subject_transitions,
    sequence_log_likelihoods,
    sequence_transition_matrices,
    subject_prior_distributions,
    with_subject_emissions,
)
from bayes_glmhmm.inference import (
    DrivenTransitions,
    hmm_filter,
    hmm_marginal_loglik,
    hmm_marginal_loglik_batch,
    hmm_marginal_loglik_parallel,
    hmm_sample_states,
    hmm_smoother,
    hmm_viterbi,
)
from bayes_glmhmm.params import GLMHMMParams, Priors, validate_data
from bayes_glmhmm.transitions import (
    STATIONARY,
    TransitionInputTable,
    TransitionModel,
    destination_to_full,
    free_to_full,
    full_to_destination,
    full_to_free,
    safe_log,
    tabulated_transition_matrices,
    transitions_of,
    uncentre_transition_matrix,
    validate_transition_inputs,
)

GAUSSIAN = get_family("gaussian")

__all__ = [
    "glmhmm_model",
    "log_prior",
    "log_likelihood",
    "most_likely_states",
    "smoothed_state_probs",
    "sample_states",
    "batched_log_likelihoods",
    "batched_marginal_loglik",
    "batched_smoother",
    "sum_over_devices",
    "unconstrain_sites",
    "centred_sites",
    "GAUSSIAN",
    "prior_distributions",
    "sample_prior",
    "transition_log_prior",
    "free_transition_sites",
    "batched_transitions",
]


def batched_log_likelihoods(
    params: GLMHMMParams,
    inputs: Float[Array, "num_sequences num_timesteps input_dim"],
    emissions: Float[Array, "num_sequences num_timesteps"],
    subject_index: Int[Array, " num_sequences"] | None = None,
) -> Float[Array, "num_sequences num_timesteps num_states"]:
    """Log p(y[n, t] | x[n, t], z[n, t] = k, theta) for every sequence, step and state.

    With ``subject_index`` (a hierarchical model, :mod:`bayes_glmhmm.hierarchy`) the params'
    ``weights`` and ``biases`` have a leading subject axis, and sequence n uses those of subject
    ``subject_index[n]``.
    """
    family = family_of(params)
    if subject_index is None:
        return family.log_likelihoods(params, inputs, emissions)
    return sequence_log_likelihoods(family.log_likelihoods, params, inputs, emissions, subject_index)


def batched_marginal_loglik(
    params: GLMHMMParams,
    inputs: Float[Array, "num_sequences num_timesteps input_dim"],
    emissions: Float[Array, "num_sequences num_timesteps"],
    mask: Bool[Array, "num_sequences num_timesteps"],
    adjoint: bool = False,
    time_parallel: bool = False,
    transition_inputs: Float[Array, "num_sequences num_timesteps transition_input_dim"] | None = None,
    subject_index: Int[Array, " num_sequences"] | None = None,
) -> Float[Array, " num_sequences"]:
    """The marginal log-likelihood log p(y[n] | x[n], u[n], theta) of every sequence; no validation.

    Args:
        params: model parameters.
        inputs: (N, T, D) covariates.
        emissions: (N, T) observations.
        mask: (N, T), False where missing.
        transition_inputs: (N, T, M) inputs of input-driven transitions (params with
            ``transition_weights``), else None.
        adjoint: use :func:`~bayes_glmhmm.inference.hmm_marginal_loglik`, whose reverse-mode
            gradient is the analytic forward-backward one (first order only); otherwise plain
            autodiff of the filter, differentiable to any order. Sequences that share one
            transition matrix (stationary transitions, not a subject's own) go through
            :func:`~bayes_glmhmm.inference.hmm_marginal_loglik_batch` together: the same value
            and gradient, faster.
        time_parallel: use :func:`~bayes_glmhmm.inference.hmm_marginal_loglik_parallel`, O(log T)
            sequential depth (autodiff gradient); for accelerators with few long sequences, slower
            on CPUs. Takes precedence over ``adjoint``.
        subject_index: (N,) the subject of each sequence, for params with subject-level weights
            and biases (see :func:`batched_log_likelihoods`); None otherwise.
    """
    log_likelihoods = batched_log_likelihoods(params, inputs, emissions, subject_index)
    transitions, transition_axis = batched_transitions(params, transition_inputs, subject_index)
    axes = (None, transition_axis, 0, 0)
    if time_parallel:
        per_sequence = jax.vmap(hmm_marginal_loglik_parallel, in_axes=axes)
        return per_sequence(params.initial_probs, transitions, log_likelihoods, mask)
    if adjoint and transition_axis is None:
        return hmm_marginal_loglik_batch(params.initial_probs, transitions, log_likelihoods, mask)
    if adjoint:
        per_sequence = jax.vmap(hmm_marginal_loglik, in_axes=axes)
        return per_sequence(params.initial_probs, transitions, log_likelihoods, mask)
    filter_one = jax.vmap(hmm_filter, in_axes=axes)
    return filter_one(params.initial_probs, transitions, log_likelihoods, mask).marginal_loglik


def batched_transitions(params, transition_inputs, subject_index=None):
    """The transitions the kernels take, and their ``vmap`` axes over sequences.

    Stationary params: ``(transition_matrix (K, K), None)``, shared by all sequences; subjects'
    own matrices (S, K, K) (:mod:`bayes_glmhmm.hierarchy`) gathered by ``subject_index``,
    ``((N, K, K), 0)``. Input-driven
    params: a :class:`~bayes_glmhmm.inference.DrivenTransitions` whose (N, T - 1, M) inputs are
    split over sequences, p(z_{t+1} = j | z_t = i, u[n, t]) computed step by step by the kernels;
    or, for transition inputs given as a :class:`~bayes_glmhmm.transitions.TransitionInputTable`,
    the (N, T - 1, K, K) matrices gathered from those of the distinct rows.
    """
    if params.transition_weights is None:
        if transition_inputs is not None:
            raise ValueError("transition_inputs were given but the params have no transition_weights (stationary)")
        return sequence_transition_matrices(params.transition_matrix, subject_index)
    if transition_inputs is None:
        raise ValueError("params with transition_weights (input-driven transitions) need transition_inputs")
    if isinstance(transition_inputs, TransitionInputTable):
        matrices = tabulated_transition_matrices(params.transition_matrix, params.transition_weights, transition_inputs)
        return matrices, 0
    driven = DrivenTransitions(
        safe_log(params.transition_matrix), params.transition_weights, transition_inputs[..., :-1, :]
    )
    return driven, DrivenTransitions(None, None, 0)


def batched_smoother(
    params: GLMHMMParams, inputs, emissions, mask, transition_inputs=None, per_step: bool = False, subject_index=None
):
    """The smoother of every sequence (a batched :class:`~bayes_glmhmm.inference.SmootherPosterior`).

    ``per_step=True`` returns the expected transitions of every step, (N, T - 1, K, K);
    ``subject_index`` as in :func:`batched_log_likelihoods`.
    """
    log_likelihoods = batched_log_likelihoods(params, inputs, emissions, subject_index)
    transitions, transition_axis = batched_transitions(params, transition_inputs, subject_index)
    smoother = jax.vmap(
        lambda initial, matrix, logliks, step_mask: hmm_smoother(initial, matrix, logliks, step_mask, per_step),
        in_axes=(None, transition_axis, 0, 0),
    )
    return smoother(params.initial_probs, transitions, log_likelihoods, mask)


def _as_params(params):
    """Params as float JAX arrays, keeping their family's type (and ``transition_weights=None``)."""
    dtype = jnp.result_type(float)
    family_of(params)  # a clear error for anything that is not a family's params
    return type(params)(*(None if p is None else device_array(p, dtype) for p in params))


def _validated(params, inputs, emissions, mask, transition_inputs):
    """Validate data (and transition inputs against the params' transitions) at the public boundary."""
    inputs, emissions, mask = validate_data(inputs, emissions, mask, family_of(params))
    input_driven = getattr(params, "transition_weights", None) is not None
    if transition_inputs is not None and not input_driven:
        raise ValueError("transition_inputs were given but the params have no transition_weights (stationary)")
    if transition_inputs is None and input_driven:
        raise ValueError("params with transition_weights (input-driven transitions) need transition_inputs")
    if transition_inputs is not None:
        transition_inputs = validate_transition_inputs(
            transition_inputs, emissions.shape, int(np.shape(params.transition_weights)[-1])
        )
    return inputs, emissions, mask, transition_inputs


def log_likelihood(
    params: GLMHMMParams,
    inputs: Float[Array, "num_sequences num_timesteps input_dim"],
    emissions: Float[Array, "num_sequences num_timesteps"],
    mask: Bool[Array, "num_sequences num_timesteps"] | None = None,
    transition_inputs: Float[Array, "num_sequences num_timesteps transition_input_dim"] | None = None,
    *,
    adjoint: bool = True,
) -> Float[Array, " num_sequences"]:
    """Marginal log-likelihood log p(y[n] | x[n], u[n], theta) of each sequence.

    Jittable and differentiable with respect to ``params``; concrete data are validated. By
    default its reverse-mode gradient (``jax.grad``, ``jax.vjp``, ``jax.jacrev``) is the
    analytic forward-backward one that NUTS uses (Fisher's identity, see
    :func:`~bayes_glmhmm.inference.hmm_marginal_loglik`): one backward scan instead of
    differentiating the filter's scan, faster and lighter in memory. Higher derivatives taken
    through it work too (``jax.hessian``, forward over reverse, and ``jax.grad`` of a gradient),
    but forward mode applied to the function itself (``jax.jvp``, ``jax.jacfwd``) raises JAX's
    ``TypeError`` about ``custom_vjp``; ``adjoint=False`` differentiates the filter itself, in
    any mode and to any order. The values are the same either way.

    Args:
        params: model parameters.
        inputs: covariates, (N, T, D) or (T, D).
        emissions: observations, (N, T) or (T,).
        mask: optional, False where an emission is missing.
        transition_inputs: (N, T, M) inputs of input-driven transitions; required exactly when
            ``params.transition_weights`` is not None (see :mod:`bayes_glmhmm.transitions`).
        adjoint: use the analytic forward-backward gradient in reverse mode; False for plain
            autodiff of the filter (forward mode too).

    Returns:
        One log-likelihood per sequence, shape (N,).
    """
    inputs, emissions, mask, transition_inputs = _validated(params, inputs, emissions, mask, transition_inputs)
    return _log_likelihood_batch(_as_params(params), inputs, emissions, mask, bool(adjoint), transition_inputs)


@functools.partial(jax.jit, static_argnames=("adjoint",))
def _log_likelihood_batch(params, inputs, emissions, mask, adjoint: bool, transition_inputs):
    """:func:`batched_marginal_loglik` as one compiled program (not dozens of eager operations)."""
    return batched_marginal_loglik(
        params, inputs, emissions, mask, adjoint=adjoint, transition_inputs=transition_inputs
    )


@jax.jit
def _viterbi_batch(params, inputs, emissions, mask, transition_inputs):
    log_likelihoods = batched_log_likelihoods(params, inputs, emissions)
    transitions, transition_axis = batched_transitions(params, transition_inputs)
    viterbi = jax.vmap(hmm_viterbi, in_axes=(None, transition_axis, 0, 0))
    return viterbi(params.initial_probs, transitions, log_likelihoods, mask)


def most_likely_states(
    params: GLMHMMParams,
    inputs: Float[Array, "num_sequences num_timesteps input_dim"],
    emissions: Float[Array, "num_sequences num_timesteps"],
    mask: Bool[Array, "num_sequences num_timesteps"] | None = None,
    transition_inputs: Float[Array, "num_sequences num_timesteps transition_input_dim"] | None = None,
) -> Int[Array, "num_sequences num_timesteps"]:
    """Viterbi paths argmax_z p(z[n] | y[n], x[n], u[n], theta), shape (N, T)."""
    inputs, emissions, mask, transition_inputs = _validated(params, inputs, emissions, mask, transition_inputs)
    return _viterbi_batch(_as_params(params), inputs, emissions, mask, transition_inputs)


def smoothed_state_probs(
    params: GLMHMMParams,
    inputs: Float[Array, "num_sequences num_timesteps input_dim"],
    emissions: Float[Array, "num_sequences num_timesteps"],
    mask: Bool[Array, "num_sequences num_timesteps"] | None = None,
    transition_inputs: Float[Array, "num_sequences num_timesteps transition_input_dim"] | None = None,
) -> Float[Array, "num_sequences num_timesteps num_states"]:
    """p(z[n, t] = k | y[n], x[n], u[n], theta) for fixed parameters, shape (N, T, K)."""
    inputs, emissions, mask, transition_inputs = _validated(params, inputs, emissions, mask, transition_inputs)
    smoother = jax.jit(batched_smoother)(_as_params(params), inputs, emissions, mask, transition_inputs)
    return smoother.smoothed_probs


def sample_states(
    key: Array,
    params: GLMHMMParams,
    inputs: Float[Array, "num_sequences num_timesteps input_dim"],
    emissions: Float[Array, "num_sequences num_timesteps"],
    mask: Bool[Array, "num_sequences num_timesteps"] | None = None,
    transition_inputs: Float[Array, "num_sequences num_timesteps transition_input_dim"] | None = None,
) -> Int[Array, "num_sequences num_timesteps"]:
    """One FFBS draw z[n] ~ p(z[n] | y[n], x[n], u[n], theta) per sequence, for fixed parameters."""
    inputs, emissions, mask, transition_inputs = _validated(params, inputs, emissions, mask, transition_inputs)
    return _ffbs_batch(key, _as_params(params), inputs, emissions, mask, transition_inputs)


@jax.jit
def _ffbs_batch(key, params, inputs, emissions, mask, transition_inputs=None):
    log_likelihoods = batched_log_likelihoods(params, inputs, emissions)
    transitions, transition_axis = batched_transitions(params, transition_inputs)
    keys = jax.random.split(key, emissions.shape[0])
    ffbs = jax.vmap(hmm_sample_states, in_axes=(0, None, transition_axis, 0, 0))
    return ffbs(keys, params.initial_probs, transitions, log_likelihoods, mask)


def sum_over_devices(function, axis_name: str):
    """``params -> psum(function(params))`` over the mesh axis ``axis_name``, for replicated params.

    Under ``shard_map(check_vma=False)`` autodiff would transpose ``psum`` into another
    ``psum`` and scale the gradient by the number of devices; here the gradient is the sum of
    the devices' local gradients, the gradient of the sum.
    """

    @jax.custom_vjp
    def total(params):
        return lax.psum(function(params), axis_name)

    def forward(params):
        value, pullback = jax.vjp(function, params)
        return lax.psum(value, axis_name), pullback

    def backward(pullback, cotangent):
        (gradient,) = pullback(cotangent)
        return (jax.tree.map(lambda part: lax.psum(part, axis_name), gradient),)

    total.defvjp(forward, backward)
    return total


#: The support of the sampled sites every family shares (its unconstrained space is theirs under
#: NumPyro's ``biject_to``); ``centred_biases`` has the improper flat prior. A family adds its own
#: (``EmissionFamily.extra_supports``); input-driven transitions add theirs.
SITE_SUPPORTS = {
    "initial_probs": dist.constraints.simplex,
    "transition_matrix": dist.constraints.simplex,  # row-wise
    "weights": dist.constraints.real,
    "centred_biases": dist.constraints.real,
    "centred_transition_matrix": dist.constraints.simplex,  # row-wise; input-driven transitions
    "free_transition_weights": dist.constraints.real,
    "destination_weights": dist.ZeroSumNormal(1.0, event_shape=(2,)).support,  # zero sum over the states
    "weight_spread": dist.constraints.positive,  # subjects (bayes_glmhmm.hierarchy)
    "bias_spread": dist.constraints.positive,
    "subject_weight_offsets": dist.constraints.real,
    "subject_bias_offsets": dist.constraints.real,
    "subject_weights": dist.constraints.real,
    "subject_biases": dist.constraints.real,
    "subject_transition_matrix": dist.constraints.simplex,  # row-wise
}


def unconstrain_sites(constrained: dict, family: EmissionFamily = GAUSSIAN) -> dict:
    """Map values of :func:`glmhmm_model`'s sites to NumPyro's unconstrained space, without running the model.

    Same result as ``numpyro.infer.util.unconstrain_fn`` on the model, which evaluates the
    likelihood on the way; this only applies the inverse bijections (stick-breaking, log).
    """
    supports = SITE_SUPPORTS | {name: getattr(dist.constraints, kind) for name, kind in family.extra_supports}
    return {name: dist.biject_to(supports[name]).inv(jnp.asarray(value)) for name, value in constrained.items()}


def centred_sites(params, input_mean, transition_input_mean=None, transitions: TransitionModel = STATIONARY) -> dict:
    """The model's sampled sites at ``params``.

    Every parameter, with ``centred_biases`` = biases + weights @ input_mean; for input-driven
    transitions, ``centred_transition_matrix`` (the transition probabilities at the mean
    transition input) and the free transition weights of the form instead of ``transition_matrix``
    and ``transition_weights``.
    """
    sites = {name: value for name, value in params._asdict().items() if value is not None}
    sites["centred_biases"] = sites.pop("biases") + params.weights @ input_mean
    if transitions.is_input_driven:
        weights = sites.pop("transition_weights")
        sites["centred_transition_matrix"] = jax.nn.softmax(
            jnp.log(jnp.maximum(sites.pop("transition_matrix"), jnp.finfo(jnp.result_type(float)).tiny))
            + weights @ transition_input_mean,
            axis=-1,
        )
        sites.update(free_transition_sites(weights, transitions))
    return sites


def free_transition_sites(transition_weights, transitions: TransitionModel) -> dict:
    """The sampled site holding the free transition weights of the form."""
    if transitions.form == "destination":
        return {"destination_weights": full_to_destination(transition_weights)}
    return {"free_transition_weights": full_to_free(transition_weights)}


def _transition_weight_priors(transitions: TransitionModel, num_states: int, num_inputs: int, priors: Priors):
    """The prior of the free transition weights: Normal on each V[i, j] (j != i), or ZeroSumNormal on d."""
    scale = priors.transition_weight_scale
    if transitions.form == "destination":
        return {
            "destination_weights": dist.ZeroSumNormal(scale, event_shape=(num_states,)).expand([num_inputs]).to_event(1)
        }
    return {
        "free_transition_weights": dist.Normal(0.0, scale).expand([num_states, num_states - 1, num_inputs]).to_event(3)
    }


def _filled(shape, value):
    """An array of ``shape`` filled with ``value``, of NumPy for a number, of JAX for a traced value.

    Outside ``jit`` a NumPy array compiles no program; EM passes its priors traced.
    """
    return jnp.full(shape, value) if isinstance(value, jax.core.Tracer) else np.full(shape, value)


def _transition_matrix_prior(num_states: int, priors: Priors):
    return dist.Dirichlet(_filled((num_states, num_states), priors.transition_concentration)).to_event(1)


def transition_log_prior(
    transition_matrix, transition_weights, priors: Priors, transitions: TransitionModel
) -> Float[Array, ""]:
    """Log prior density of the transition parameters alone (the part of :func:`log_prior` for the EM M-step)."""
    num_states = transition_matrix.shape[-1]
    total = _dirichlet_log_density(_transition_matrix_prior(num_states, priors), transition_matrix)
    if transitions.is_input_driven:
        sites = free_transition_sites(transition_weights, transitions)
        distributions = _transition_weight_priors(transitions, num_states, transition_weights.shape[-1], priors)
        total = total + sum(distributions[name].log_prob(sites[name]) for name in distributions)
    return total


def prior_distributions(
    family: EmissionFamily,
    num_states: int,
    input_dim: int,
    priors: Priors,
    transitions: TransitionModel = STATIONARY,
    num_transition_inputs: int = 0,
) -> dict:
    """The prior of every parameter as a NumPyro distribution (event shape the parameter's): the one definition.

    Dirichlet on ``initial_probs`` and on each row of ``transition_matrix`` (for input-driven
    transitions: the transition probabilities at u = 0), Normal on ``weights`` and ``biases``, the
    family's extra priors (the Gaussian's HalfNormal noise scales) and, for input-driven
    transitions, the prior of the free transition weights (``free_transition_weights`` (K, K - 1, M)
    or ``destination_weights`` (M, K); see :mod:`bayes_glmhmm.transitions`).
    """
    weight_shape = family.weight_shape(num_states, input_dim)
    distributions = {
        "initial_probs": dist.Dirichlet(_filled(num_states, priors.initial_concentration)),
        "transition_matrix": _transition_matrix_prior(num_states, priors),
        "weights": dist.Normal(0.0, priors.weight_scale).expand(list(weight_shape)).to_event(len(weight_shape)),
        "biases": dist.Normal(0.0, priors.bias_scale).expand(list(weight_shape[:-1])).to_event(len(weight_shape) - 1),
        **family.extra_priors(num_states, priors),
    }
    if transitions.is_input_driven:
        distributions |= _transition_weight_priors(transitions, num_states, num_transition_inputs, priors)
    return distributions


def _dirichlet_log_density(distribution, value):
    """Dirichlet log density with 0 log 0 = 0, so a probability of exactly 0 under concentration 1 is finite.

    NumPyro's ``Dirichlet.log_prob`` computes (alpha - 1) log p, which is NaN there; MAP EM reaches
    exact zeros (an unvisited state's initial probability).
    """
    concentration = (
        distribution.base_dist.concentration if hasattr(distribution, "base_dist") else distribution.concentration
    )
    normalizer = gammaln(jnp.sum(concentration, axis=-1)) - jnp.sum(gammaln(concentration), axis=-1)
    return jnp.sum(normalizer + jnp.sum(xlogy(concentration - 1.0, value), axis=-1))


def log_prior(params, priors: Priors, transitions: TransitionModel | None = None) -> Float[Array, ""]:
    """Log p(theta) under ``priors``, the density the NUTS model uses (in the constrained space).

    Args:
        params: any family's params.
        priors: the hyperparameters.
        transitions: the transition model, whose form fixes the prior of the transition weights
            (default: :func:`~bayes_glmhmm.transitions.transitions_of`, the full form).
    """
    transitions = transitions_of(params) if transitions is None else transitions
    num_inputs = 0 if params.transition_weights is None else int(params.transition_weights.shape[-1])
    distributions = prior_distributions(
        family_of(params), params.num_states, params.input_dim, priors, transitions, num_inputs
    )
    values = {name: value for name, value in params._asdict().items() if value is not None}
    if transitions.is_input_driven:
        values |= free_transition_sites(values.pop("transition_weights"), transitions)
    simplex = ("initial_probs", "transition_matrix")
    return sum(
        _dirichlet_log_density(distributions[name], values[name])
        if name in simplex
        else distributions[name].log_prob(values[name])
        for name in distributions
    )


def sample_prior(
    key: Array,
    family: EmissionFamily,
    num_states: int,
    input_dim: int,
    priors: Priors,
    transitions: TransitionModel = STATIONARY,
    num_transition_inputs: int = 0,
):
    """One draw theta ~ p(theta) of every parameter, as the family's params NamedTuple.

    For input-driven transitions ``transition_weights`` (K, K, M) is drawn too (M =
    ``num_transition_inputs``).
    """
    distributions = prior_distributions(family, num_states, input_dim, priors, transitions, num_transition_inputs)
    keys = jax.random.split(key, len(distributions))
    draws = {name: distributions[name].sample(k) for k, name in zip(keys, distributions, strict=True)}
    if transitions.is_input_driven:
        draws["transition_weights"] = _transition_weights_from_sites(draws, transitions)
    return family.params_type(**{name: draws[name] for name in family.param_names + transitions.param_names})


def _transition_weights_from_sites(sites: dict, transitions: TransitionModel):
    """V (K, K, M) from the form's free weights."""
    if transitions.form == "destination":
        return destination_to_full(sites["destination_weights"])
    return free_to_full(sites["free_transition_weights"])


def _sample_transitions(distributions, num_states, transitions: TransitionModel, transition_input_mean):
    """Declare the transition sites; return (transition matrix the likelihood uses, transition_weights or None).

    Stationary: ``transition_matrix`` ~ rows Dirichlet. Input-driven: the sampler moves the
    transition probabilities at the mean transition input, ``centred_transition_matrix`` (far
    less correlated with the weights than those at u = 0), and the free weights;
    ``transition_matrix`` (at u = 0) and ``transition_weights`` are deterministic. The prior
    stays the Dirichlet on ``transition_matrix``: in logit coordinates the map between the two
    matrices is a shift, so the density of the centred matrix is the Dirichlet density of A times
    prod_j A[i, j] / prod_j A_c[i, j] (the softmax Jacobians).
    """
    if not transitions.is_input_driven:
        return numpyro.sample("transition_matrix", distributions["transition_matrix"]), None
    centred = numpyro.sample(
        "centred_transition_matrix",
        dist.ImproperUniform(dist.constraints.simplex, (num_states,), event_shape=(num_states,)),
    )
    free_sites = {name: numpyro.sample(name, distributions[name]) for name in _free_site_names(transitions)}
    weights = numpyro.deterministic("transition_weights", _transition_weights_from_sites(free_sites, transitions))
    matrix = numpyro.deterministic(
        "transition_matrix", uncentre_transition_matrix(centred, weights, transition_input_mean)
    )
    jacobian = jnp.sum(jnp.log(matrix)) - jnp.sum(jnp.log(centred))
    numpyro.factor(
        "transition_matrix_prior", _dirichlet_log_density(distributions["transition_matrix"], matrix) + jacobian
    )
    return centred, weights


def _free_site_names(transitions: TransitionModel) -> tuple[str, ...]:
    return ("destination_weights",) if transitions.form == "destination" else ("free_transition_weights",)


def glmhmm_model(
    inputs: Float[Array, "num_sequences num_timesteps input_dim"],
    emissions: Float[Array, "num_sequences num_timesteps"],
    mask: Bool[Array, "num_sequences num_timesteps"],
    num_states: int,
    priors: Priors,
    input_mean: Float[Array, " input_dim"],
    adjoint: bool = True,
    sequence_axis_name: str | None = None,
    time_parallel: bool = False,
    family: EmissionFamily = GAUSSIAN,
    transition_inputs: Float[Array, "num_sequences num_timesteps transition_input_dim"] | None = None,
    transition_input_mean: Float[Array, " transition_input_dim"] | None = None,
    transitions: TransitionModel = STATIONARY,
    transition_input_rows: Float[Array, "num_rows transition_input_dim"] | None = None,
    transition_input_index=None,
    subject_index: Int[Array, " num_sequences"] | None = None,
    num_subjects: int = 0,
    subject_parametrization: str = "noncentred",
    subject_transitions: bool = False,
    likelihood_temperature: Float[Array, ""] | None = None,
) -> None:
    """NumPyro model of the GLM-HMM with the hidden states marginalized, for any emission family.

    The prior is exactly the article's. Only the coordinates differ: the sampler moves
    ``centred_biases = biases + weights @ input_mean``, the intercept at the mean input, which is
    far less correlated with the weights than ``biases`` is; the Normal prior on ``biases`` enters
    through a factor. The map (weights, biases) -> (weights, centred_biases) has unit Jacobian, so
    the posterior of (weights, biases) is unchanged. The family adds its own sites (the
    Gaussian's noise scales). Input-driven transitions centre their inputs the same way (see
    :func:`_sample_transitions`).

    Args:
        inputs: (N, T, D) covariates.
        emissions: (N, T) observations (any value in the family's support where masked).
        mask: (N, T) booleans, False where missing or padding.
        num_states: K.
        priors: hyperparameters.
        input_mean: (D,) mean of the observed inputs, used only to centre.
        adjoint: differentiate the marginal likelihood with the analytic forward-backward
            adjoint (default) instead of autodiff through the scan; same value and gradient.
        sequence_axis_name: inside :func:`jax.shard_map`, the mesh axis over which the sequences
            are split; the log-likelihoods of all devices are added (with a ``psum`` whose
            gradient is the sum of the devices' gradients). None: this device holds them all.
        time_parallel: compute the marginal likelihood with the parallel-in-time reduction
            (:func:`~bayes_glmhmm.inference.hmm_marginal_loglik_parallel`); same value.
        family: the emission family (Gaussian by default).
        transition_inputs: (N, T, M) inputs of input-driven transitions (u[n, t] drives t -> t+1).
        transition_input_mean: (M,) their mean, used only to centre.
        transitions: the transition model (stationary by default).
        transition_input_rows: instead of ``transition_inputs``, their (R, M) distinct rows ...
        transition_input_index: ... and the (N, T) row of each step (a
            :class:`~bayes_glmhmm.transitions.TransitionInputTable`; same model, faster for
            inputs with few distinct values).
        subject_index: (N,) the subject of each sequence, for a hierarchical model across
            subjects (:mod:`bayes_glmhmm.hierarchy`): then ``weights`` and ``biases`` are the
            population means and each subject's own weights and biases are drawn around them.
        num_subjects: S, the number of subjects (0: no hierarchy).
        subject_parametrization: ``"noncentred"`` (default) or ``"centred"``, see
            :mod:`bayes_glmhmm.hierarchy`; the same model.
        subject_transitions: give each subject its own transition matrix, rows Dirichlet around
            the population's (stationary transitions only); else the subjects share it.
        likelihood_temperature: beta in (0, 1]: the density becomes p(theta) p(y | theta)^beta, a
            rung of parallel tempering (:mod:`bayes_glmhmm.tempering`). None: the posterior (beta = 1).
    """
    input_dim = inputs.shape[-1]
    if transition_input_rows is not None:
        transition_inputs = TransitionInputTable(transition_input_rows, transition_input_index)
    num_transition_inputs = 0 if transition_inputs is None else transition_inputs[0].shape[-1]
    distributions = prior_distributions(family, num_states, input_dim, priors, transitions, num_transition_inputs)
    initial_probs = numpyro.sample("initial_probs", distributions["initial_probs"])
    transition_matrix, transition_weights = _sample_transitions(
        distributions, num_states, transitions, transition_input_mean
    )
    weights = numpyro.sample("weights", distributions["weights"])
    bias_shape = distributions["biases"].event_shape
    centred_biases = numpyro.sample(
        "centred_biases", dist.ImproperUniform(dist.constraints.real, (), event_shape=bias_shape)
    )
    biases = numpyro.deterministic("biases", centred_biases - weights @ input_mean)
    numpyro.factor("biases_prior", distributions["biases"].log_prob(biases))
    extras = {name: numpyro.sample(name, distributions[name]) for name in family.extra_names}
    params = family.params_type(
        initial_probs, transition_matrix, weights, centred_biases, **extras, transition_weights=transition_weights
    )
    if num_subjects:
        subject_sites = subject_prior_distributions(weights.shape, num_subjects, priors, subject_parametrization)
        subject_weights, subject_biases = sample_subject_sites(
            subject_sites, weights, biases, num_subjects, subject_parametrization
        )
        # The likelihood takes inputs centred at input_mean, so each subject's intercept is centred too.
        params = with_subject_emissions(params, subject_weights, subject_biases + subject_weights @ input_mean)
        if subject_transitions:
            params = params._replace(
                transition_matrix=sample_subject_transitions(transition_matrix, num_subjects, priors)
            )
    if transition_inputs is None:
        centred_transition_inputs = None
    elif isinstance(transition_inputs, TransitionInputTable):
        centred_transition_inputs = transition_inputs._replace(rows=transition_inputs.rows - transition_input_mean)
    else:
        centred_transition_inputs = transition_inputs - transition_input_mean

    def total_loglik(params):
        per_sequence = batched_marginal_loglik(
            params,
            inputs - input_mean,
            emissions,
            mask,
            adjoint=adjoint,
            time_parallel=time_parallel,
            transition_inputs=centred_transition_inputs,
            subject_index=subject_index if num_subjects else None,
        )
        return jnp.sum(per_sequence)

    if sequence_axis_name is not None:
        total_loglik = sum_over_devices(total_loglik, sequence_axis_name)
    log_likelihood_total = total_loglik(params)
    if likelihood_temperature is not None:
        log_likelihood_total = likelihood_temperature * log_likelihood_total
    numpyro.factor("marginal_loglik", log_likelihood_total)
