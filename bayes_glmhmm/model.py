"""The GLM-HMM as a probability model: batched likelihood, state inference, and the NumPyro model.

The model composes the components: initial probabilities, a transition matrix and an emission
family (:mod:`bayes_glmhmm.emissions`), whose per-state log-likelihoods feed the HMM kernels of
:mod:`bayes_glmhmm.inference`. The hidden states are summed out by the forward filter, run over
all sequences at once with ``jax.vmap``; the result enters NumPyro through ``numpyro.factor``.
Every function here takes any family's params; the params' type names the family.
"""

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from jax import lax
from jax.scipy.special import gammaln, xlogy
from jaxtyping import Array, Bool, Float, Int

from bayes_glmhmm.emissions import EmissionFamily, family_of, get_family
from bayes_glmhmm.inference import (
    hmm_filter,
    hmm_marginal_loglik,
    hmm_marginal_loglik_parallel,
    hmm_sample_states,
    hmm_smoother,
    hmm_viterbi,
)
from bayes_glmhmm.params import GLMHMMParams, Priors, validate_data

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
]


def batched_log_likelihoods(
    params: GLMHMMParams,
    inputs: Float[Array, "num_sequences num_timesteps input_dim"],
    emissions: Float[Array, "num_sequences num_timesteps"],
) -> Float[Array, "num_sequences num_timesteps num_states"]:
    """Log p(y[n, t] | x[n, t], z[n, t] = k, theta) for every sequence, step and state."""
    return family_of(params).log_likelihoods(params, inputs, emissions)


def batched_marginal_loglik(
    params: GLMHMMParams,
    inputs: Float[Array, "num_sequences num_timesteps input_dim"],
    emissions: Float[Array, "num_sequences num_timesteps"],
    mask: Bool[Array, "num_sequences num_timesteps"],
    adjoint: bool = False,
    time_parallel: bool = False,
) -> Float[Array, " num_sequences"]:
    """The marginal log-likelihood log p(y[n] | x[n], theta) of every sequence; no validation.

    Args:
        params: model parameters.
        inputs: (N, T, D) covariates.
        emissions: (N, T) observations.
        mask: (N, T), False where missing.
        adjoint: use :func:`~bayes_glmhmm.inference.hmm_marginal_loglik`, whose reverse-mode
            gradient is the analytic forward-backward one (first order only); otherwise plain
            autodiff of the filter, differentiable to any order.
        time_parallel: use :func:`~bayes_glmhmm.inference.hmm_marginal_loglik_parallel`, O(log T)
            sequential depth (autodiff gradient); for accelerators with few long sequences, slower
            on CPUs. Takes precedence over ``adjoint``.
    """
    log_likelihoods = batched_log_likelihoods(params, inputs, emissions)
    if time_parallel:
        per_sequence = jax.vmap(hmm_marginal_loglik_parallel, in_axes=(None, None, 0, 0))
        return per_sequence(params.initial_probs, params.transition_matrix, log_likelihoods, mask)
    if adjoint:
        per_sequence = jax.vmap(hmm_marginal_loglik, in_axes=(None, None, 0, 0))
        return per_sequence(params.initial_probs, params.transition_matrix, log_likelihoods, mask)
    filter_one = jax.vmap(hmm_filter, in_axes=(None, None, 0, 0))
    return filter_one(params.initial_probs, params.transition_matrix, log_likelihoods, mask).marginal_loglik


def batched_smoother(params: GLMHMMParams, inputs, emissions, mask):
    """The smoother of every sequence (a batched :class:`~bayes_glmhmm.inference.SmootherPosterior`)."""
    log_likelihoods = batched_log_likelihoods(params, inputs, emissions)
    smoother = jax.vmap(hmm_smoother, in_axes=(None, None, 0, 0))
    return smoother(params.initial_probs, params.transition_matrix, log_likelihoods, mask)


def _as_params(params):
    """Params as float JAX arrays, keeping their family's type."""
    dtype = jnp.result_type(float)
    family_of(params)  # a clear error for anything that is not a family's params
    return type(params)(*(jnp.asarray(p, dtype=dtype) for p in params))


def log_likelihood(
    params: GLMHMMParams,
    inputs: Float[Array, "num_sequences num_timesteps input_dim"],
    emissions: Float[Array, "num_sequences num_timesteps"],
    mask: Bool[Array, "num_sequences num_timesteps"] | None = None,
) -> Float[Array, " num_sequences"]:
    """Marginal log-likelihood log p(y[n] | x[n], theta) of each sequence.

    Jittable and differentiable with respect to ``params``; concrete data are validated.

    Args:
        params: model parameters.
        inputs: covariates, (N, T, D) or (T, D).
        emissions: observations, (N, T) or (T,).
        mask: optional, False where an emission is missing.

    Returns:
        One log-likelihood per sequence, shape (N,).
    """
    inputs, emissions, mask = validate_data(inputs, emissions, mask, family_of(params))
    return batched_marginal_loglik(_as_params(params), inputs, emissions, mask)


@jax.jit
def _viterbi_batch(params, inputs, emissions, mask):
    log_likelihoods = batched_log_likelihoods(params, inputs, emissions)
    viterbi = jax.vmap(hmm_viterbi, in_axes=(None, None, 0, 0))
    return viterbi(params.initial_probs, params.transition_matrix, log_likelihoods, mask)


def most_likely_states(
    params: GLMHMMParams,
    inputs: Float[Array, "num_sequences num_timesteps input_dim"],
    emissions: Float[Array, "num_sequences num_timesteps"],
    mask: Bool[Array, "num_sequences num_timesteps"] | None = None,
) -> Int[Array, "num_sequences num_timesteps"]:
    """Viterbi paths argmax_z p(z[n] | y[n], x[n], theta), shape (N, T)."""
    inputs, emissions, mask = validate_data(inputs, emissions, mask, family_of(params))
    return _viterbi_batch(_as_params(params), inputs, emissions, mask)


def smoothed_state_probs(
    params: GLMHMMParams,
    inputs: Float[Array, "num_sequences num_timesteps input_dim"],
    emissions: Float[Array, "num_sequences num_timesteps"],
    mask: Bool[Array, "num_sequences num_timesteps"] | None = None,
) -> Float[Array, "num_sequences num_timesteps num_states"]:
    """p(z[n, t] = k | y[n], x[n], theta) for fixed parameters, shape (N, T, K)."""
    inputs, emissions, mask = validate_data(inputs, emissions, mask, family_of(params))
    return jax.jit(batched_smoother)(_as_params(params), inputs, emissions, mask).smoothed_probs


def sample_states(
    key: Array,
    params: GLMHMMParams,
    inputs: Float[Array, "num_sequences num_timesteps input_dim"],
    emissions: Float[Array, "num_sequences num_timesteps"],
    mask: Bool[Array, "num_sequences num_timesteps"] | None = None,
) -> Int[Array, "num_sequences num_timesteps"]:
    """One FFBS draw z[n] ~ p(z[n] | y[n], x[n], theta) per sequence, for fixed parameters."""
    inputs, emissions, mask = validate_data(inputs, emissions, mask, family_of(params))
    return _ffbs_batch(key, _as_params(params), inputs, emissions, mask)


@jax.jit
def _ffbs_batch(key, params, inputs, emissions, mask):
    log_likelihoods = batched_log_likelihoods(params, inputs, emissions)
    keys = jax.random.split(key, emissions.shape[0])
    ffbs = jax.vmap(hmm_sample_states, in_axes=(0, None, None, 0, 0))
    return ffbs(keys, params.initial_probs, params.transition_matrix, log_likelihoods, mask)


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
#: (``EmissionFamily.extra_supports``).
SITE_SUPPORTS = {
    "initial_probs": dist.constraints.simplex,
    "transition_matrix": dist.constraints.simplex,  # row-wise
    "weights": dist.constraints.real,
    "centred_biases": dist.constraints.real,
}


def unconstrain_sites(constrained: dict, family: EmissionFamily = GAUSSIAN) -> dict:
    """Map values of :func:`glmhmm_model`'s sites to NumPyro's unconstrained space, without running the model.

    Same result as ``numpyro.infer.util.unconstrain_fn`` on the model, which evaluates the
    likelihood on the way; this only applies the inverse bijections (stick-breaking, log).
    """
    supports = SITE_SUPPORTS | {name: getattr(dist.constraints, kind) for name, kind in family.extra_supports}
    return {name: dist.biject_to(supports[name]).inv(jnp.asarray(value)) for name, value in constrained.items()}


def centred_sites(params, input_mean) -> dict:
    """The model's sites at ``params``: every parameter, with ``centred_biases`` = biases + weights @ input_mean."""
    sites = params._asdict()
    sites["centred_biases"] = sites.pop("biases") + params.weights @ input_mean
    return sites


def prior_distributions(family: EmissionFamily, num_states: int, input_dim: int, priors: Priors) -> dict:
    """The prior of every parameter as a NumPyro distribution (event shape the parameter's): the one definition.

    Dirichlet on ``initial_probs`` and on each row of ``transition_matrix``, Normal on ``weights``
    and ``biases``, and the family's extra priors (the Gaussian's HalfNormal noise scales).
    """
    weight_shape = family.weight_shape(num_states, input_dim)
    return {
        "initial_probs": dist.Dirichlet(jnp.full(num_states, priors.initial_concentration)),
        "transition_matrix": dist.Dirichlet(
            jnp.full((num_states, num_states), priors.transition_concentration)
        ).to_event(1),
        "weights": dist.Normal(0.0, priors.weight_scale).expand(list(weight_shape)).to_event(len(weight_shape)),
        "biases": dist.Normal(0.0, priors.bias_scale).expand(list(weight_shape[:-1])).to_event(len(weight_shape) - 1),
        **family.extra_priors(num_states, priors),
    }


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


def log_prior(params, priors: Priors) -> Float[Array, ""]:
    """Log p(theta) under ``priors``, the density the NUTS model uses (in the constrained space)."""
    distributions = prior_distributions(family_of(params), params.num_states, params.input_dim, priors)
    simplex = ("initial_probs", "transition_matrix")
    return sum(
        _dirichlet_log_density(distributions[name], getattr(params, name))
        if name in simplex
        else distributions[name].log_prob(getattr(params, name))
        for name in distributions
    )


def sample_prior(key: Array, family: EmissionFamily, num_states: int, input_dim: int, priors: Priors):
    """One draw theta ~ p(theta) of every parameter, as the family's params NamedTuple."""
    distributions = prior_distributions(family, num_states, input_dim, priors)
    keys = jax.random.split(key, len(family.param_names))
    return family.params_type(
        *(distributions[name].sample(k) for k, name in zip(keys, family.param_names, strict=True))
    )


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
) -> None:
    """NumPyro model of the GLM-HMM with the hidden states marginalized, for any emission family.

    The prior is exactly the article's. Only the coordinates differ: the sampler moves
    ``centred_biases = biases + weights @ input_mean``, the intercept at the mean input, which is
    far less correlated with the weights than ``biases`` is; the Normal prior on ``biases`` enters
    through a factor. The map (weights, biases) -> (weights, centred_biases) has unit Jacobian, so
    the posterior of (weights, biases) is unchanged. The family adds its own sites (the
    Gaussian's noise scales).

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
    """
    input_dim = inputs.shape[-1]
    distributions = prior_distributions(family, num_states, input_dim, priors)
    initial_probs = numpyro.sample("initial_probs", distributions["initial_probs"])
    transition_matrix = numpyro.sample("transition_matrix", distributions["transition_matrix"])
    weights = numpyro.sample("weights", distributions["weights"])
    bias_shape = distributions["biases"].event_shape
    centred_biases = numpyro.sample(
        "centred_biases", dist.ImproperUniform(dist.constraints.real, (), event_shape=bias_shape)
    )
    biases = numpyro.deterministic("biases", centred_biases - weights @ input_mean)
    numpyro.factor("biases_prior", distributions["biases"].log_prob(biases))
    extras = {name: numpyro.sample(name, distributions[name]) for name in family.extra_names}
    params = family.params_type(initial_probs, transition_matrix, weights, centred_biases, **extras)

    def total_loglik(params):
        per_sequence = batched_marginal_loglik(
            params, inputs - input_mean, emissions, mask, adjoint=adjoint, time_parallel=time_parallel
        )
        return jnp.sum(per_sequence)

    if sequence_axis_name is not None:
        total_loglik = sum_over_devices(total_loglik, sequence_axis_name)
    numpyro.factor("marginal_loglik", total_loglik(params))
