"""Per-state log-likelihoods of the Gaussian GLM: the only place the GLM meets the HMM kernels."""

from jax.scipy.stats import norm
from jaxtyping import Array, Float

__all__ = ["gaussian_glm_log_likelihoods", "glm_means"]


def glm_means(
    weights: Float[Array, "num_states input_dim"],
    biases: Float[Array, " num_states"],
    inputs: Float[Array, "*batch input_dim"],
) -> Float[Array, "*batch num_states"]:
    """E[y_t | x_t, z_t = k] = x_t . weights[k] + biases[k], for every state k."""
    return inputs @ weights.T + biases


def gaussian_glm_log_likelihoods(
    weights: Float[Array, "num_states input_dim"],
    biases: Float[Array, " num_states"],
    scales: Float[Array, " num_states"],
    inputs: Float[Array, "*batch input_dim"],
    emissions: Float[Array, "*batch"],
) -> Float[Array, "*batch num_states"]:
    """Log p(y_t | x_t, z_t = k) = log Normal(y_t; x_t . weights[k] + biases[k], scales[k]^2).

    Args:
        weights: per-state regression weights.
        biases: per-state intercepts.
        scales: per-state noise standard deviations.
        inputs: covariates with any leading batch shape, e.g. (num_sequences, num_timesteps, D).
        emissions: observations with the same leading shape.

    Returns:
        Log-likelihoods with a trailing state axis, e.g. (num_sequences, num_timesteps, K).
    """
    return norm.logpdf(emissions[..., None], glm_means(weights, biases, inputs), scales)
