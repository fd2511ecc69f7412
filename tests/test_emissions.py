"""Oracle tests of :mod:`bayes_glmhmm.emissions` against SciPy and a hand-written Gaussian density."""

import jax
import numpy as np
import pytest
from scipy.stats import norm

from bayes_glmhmm.emissions import gaussian_glm_log_likelihoods, glm_means

log_likelihoods_jit = jax.jit(gaussian_glm_log_likelihoods)


def random_glm(seed, batch_shape, num_states, input_dim):
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(num_states, input_dim))
    biases = rng.normal(size=num_states)
    scales = rng.uniform(0.3, 2.0, num_states)
    inputs = rng.normal(size=(*batch_shape, input_dim))
    emissions = rng.normal(0.0, 3.0, batch_shape)
    return weights, biases, scales, inputs, emissions


@pytest.mark.parametrize(
    ("batch_shape", "num_states", "input_dim"),
    [((2, 5), 3, 4), ((7,), 2, 1), ((3, 1), 1, 2)],
    ids=["N2-T5-K3-D4", "T7-K2-D1", "N3-T1-K1-D2"],
)
def test_matches_scipy_and_hand_formula(batch_shape, num_states, input_dim):
    weights, biases, scales, inputs, emissions = random_glm(
        sum(batch_shape) + num_states, batch_shape, num_states, input_dim
    )
    result = np.asarray(log_likelihoods_jit(weights, biases, scales, inputs, emissions))
    assert result.shape == (*batch_shape, num_states)

    # The oracle loops over states explicitly in float64, independent of the broadcasting in the code.
    means = np.stack([inputs @ weights[k] + biases[k] for k in range(num_states)], axis=-1)
    scipy_oracle = np.stack(
        [norm.logpdf(emissions, loc=means[..., k], scale=scales[k]) for k in range(num_states)], axis=-1
    )
    hand_oracle = -0.5 * np.log(2 * np.pi) - np.log(scales) - 0.5 * ((emissions[..., None] - means) / scales) ** 2
    np.testing.assert_allclose(scipy_oracle, hand_oracle, rtol=1e-12)
    # Values are O(10) with a few float32 operations each (the squared residual dominates):
    # relative error ~1e-6, so rtol 1e-5 with atol 1e-5 for values near zero is sound.
    np.testing.assert_allclose(result, scipy_oracle, rtol=1e-5, atol=1e-5)


def test_glm_means():
    weights, biases, _, inputs, _ = random_glm(5, (2, 3), 3, 2)
    expected = np.einsum("ntd,kd->ntk", inputs, weights) + biases
    # Dot products of length 2 of O(1) values in float32: absolute error ~1e-6.
    np.testing.assert_allclose(glm_means(weights, biases, inputs), expected, rtol=1e-5, atol=1e-5)


def test_each_state_uses_its_own_parameters():
    # Putting y exactly on state k's mean makes state k's log-likelihood the Gaussian peak,
    # -log(sigma_k sqrt(2 pi)), which pins the state axis to the parameters' axis.
    weights = np.array([[1.0], [-2.0], [0.5]])
    biases = np.array([0.0, 1.0, -1.0])
    scales = np.array([0.5, 1.0, 2.0])
    inputs = np.array([[3.0]])
    for k in range(3):
        emissions = np.array([inputs[0, 0] * weights[k, 0] + biases[k]])
        result = np.asarray(log_likelihoods_jit(weights, biases, scales, inputs, emissions))
        np.testing.assert_allclose(result[0, k], -np.log(scales[k] * np.sqrt(2 * np.pi)), rtol=1e-6)
        assert np.argmax(result[0] + np.log(scales)) == k


def test_gaussian_family_of_one_sequence_matches_the_scipy_oracle_and_its_gradient_the_batched_one():
    """The Gaussian family computes a batch of one sequence, (1, T, D), without its leading axis
    (XLA's CPU gradient of a (1, T, K) batch is slower, benchmarks/emission_share.py): the
    values must still be the float64 SciPy oracle's (rtol 1e-5, as above), and the gradient in
    (weights, biases, scales) that of the same sequence inside a batch of two (its duplicate), halved:
    float32 sums of 40 steps added in another order, so rtol 1e-5."""
    import jax.numpy as jnp

    from bayes_glmhmm.emissions import gaussian
    from bayes_glmhmm.params import GLMHMMParams

    weights, biases, scales, inputs, emissions = random_glm(5, (1, 40), 3, 2)
    params = GLMHMMParams(
        jnp.ones(3) / 3, jnp.eye(3), *(jnp.asarray(a, jnp.float32) for a in (weights, biases, scales))
    )
    result = np.asarray(gaussian.log_likelihoods(params, jnp.asarray(inputs), jnp.asarray(emissions)))
    assert result.shape == (1, 40, 3)
    means = np.stack([inputs @ weights[k] + biases[k] for k in range(3)], axis=-1)
    oracle = np.stack([norm.logpdf(emissions, loc=means[..., k], scale=scales[k]) for k in range(3)], axis=-1)
    np.testing.assert_allclose(result, oracle, rtol=1e-5, atol=1e-5)

    def total(emission_params, batch_inputs, batch_emissions):
        return jnp.sum(gaussian.log_likelihoods(params._replace(**emission_params), batch_inputs, batch_emissions))

    emission_params = {"weights": params.weights, "biases": params.biases, "scales": params.scales}
    gradient = jax.grad(total)
    one = gradient(emission_params, jnp.asarray(inputs), jnp.asarray(emissions))
    two = gradient(
        emission_params, jnp.asarray(np.concatenate([inputs] * 2)), jnp.asarray(np.concatenate([emissions] * 2))
    )
    for name in emission_params:
        np.testing.assert_allclose(np.asarray(one[name]), 0.5 * np.asarray(two[name]), rtol=1e-5, atol=1e-6)
