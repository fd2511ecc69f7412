"""Tests of :mod:`bayes_glmhmm.simulate`: the article's generator and statistical checks of sampling.

Every statistical check is seeded (so deterministic) and uses 5 standard errors: a correct
sampler fails one of them with probability < 1e-5 per comparison under the normal approximation.
"""

import jax
import numpy as np
import pytest

from bayes_glmhmm.params import GLMHMMParams
from bayes_glmhmm.simulate import article_data, article_params, simulate

# simulate is not jitted; the statistical tests below jit it once per shape, which also checks that
# it traces. The eager path is exercised by test_simulate_shapes_batch_and_single and article_data.
simulate_jit = jax.jit(simulate)

ARTICLE_TRANSITIONS = np.array([[0.5, 0.4, 0.1], [0.1, 0.5, 0.4], [0.4, 0.1, 0.5]])


# ---------------------------------------------------------------------------------------------
# The article's parameters
# ---------------------------------------------------------------------------------------------


def test_article_params_text_variant():
    params = article_params("text")
    assert isinstance(params, GLMHMMParams)
    np.testing.assert_allclose(params.initial_probs, [1 / 3, 1 / 3, 1 / 3], rtol=1e-15)
    np.testing.assert_array_equal(params.transition_matrix, ARTICLE_TRANSITIONS)
    np.testing.assert_array_equal(params.weights, [[1.0], [-0.8], [0.2]])
    np.testing.assert_array_equal(params.biases, [2.0, -1.0, 0.0])
    np.testing.assert_array_equal(params.scales, [1.0, 1.5, 0.8])
    for default, text in zip(article_params(), params, strict=True):
        np.testing.assert_array_equal(default, text)


def test_article_params_code_variant():
    params = article_params("code")
    np.testing.assert_allclose(params.initial_probs, [1 / 3, 1 / 3, 1 / 3], rtol=1e-15)
    np.testing.assert_array_equal(params.transition_matrix, ARTICLE_TRANSITIONS)
    np.testing.assert_array_equal(params.weights, [[1.0], [-0.8], [0.2]])
    np.testing.assert_array_equal(params.biases, [2.0, 0.0, -1.0])
    # The code passes (1, 0.8, 1.5) as covariances: the scales are their square roots.
    np.testing.assert_allclose(params.scales**2, [1.0, 0.8, 1.5], rtol=1e-12)


def test_article_params_are_fresh_copies():
    params = article_params()
    params.transition_matrix[0, 0] = 99.0
    assert article_params().transition_matrix[0, 0] == 0.5


@pytest.mark.parametrize("variant", ["Text", "paper", "", None])
def test_bad_variant_is_rejected(variant):
    with pytest.raises(ValueError, match="variant"):
        article_params(variant)
    with pytest.raises(ValueError, match="variant"):
        article_data(jax.random.PRNGKey(0), variant=variant)


# ---------------------------------------------------------------------------------------------
# simulate
# ---------------------------------------------------------------------------------------------


def test_simulate_shapes_batch_and_single():
    params = article_params()
    key = jax.random.PRNGKey(0)
    states, emissions = simulate(key, params, np.ones((3, 7, 1)))
    assert states.shape == (3, 7) and emissions.shape == (3, 7)
    assert np.issubdtype(states.dtype, np.integer)
    assert np.all((np.asarray(states) >= 0) & (np.asarray(states) < 3))
    assert np.all(np.isfinite(emissions))
    states, emissions = simulate(key, params, np.ones((7, 1)))
    assert states.shape == (7,) and emissions.shape == (7,)
    # Same key, same draw.
    again = simulate(key, params, np.ones((7, 1)))
    np.testing.assert_array_equal(again[0], states)
    np.testing.assert_array_equal(again[1], emissions)


def test_simulate_rejects_bad_inputs():
    params = article_params()
    with pytest.raises(ValueError, match="inputs"):
        simulate(jax.random.PRNGKey(0), params, np.ones((2, 3, 4, 1)))
    with pytest.raises(ValueError, match="input dimensions"):
        simulate(jax.random.PRNGKey(0), params, np.ones((2, 3, 2)))


LONG_T = 20_000


@pytest.fixture(scope="module", params=["text", "code"])
def long_sequence(request):
    params = article_params(request.param)
    inputs = np.random.default_rng(7).uniform(1.0, 10.0, (LONG_T, 1))
    states, emissions = simulate_jit(jax.random.PRNGKey(11), params, inputs)
    return params, inputs, np.asarray(states), np.asarray(emissions, dtype=np.float64)


def test_transition_frequencies_match_the_matrix(long_sequence):
    params, _, states, _ = long_sequence
    counts = np.zeros((3, 3))
    np.add.at(counts, (states[:-1], states[1:]), 1)
    from_state = counts.sum(axis=1, keepdims=True)
    # Given n_i visits to state i, its successors are i.i.d. Categorical(A[i]) (strong Markov
    # property), so each frequency has binomial SE sqrt(A_ij (1 - A_ij) / n_i); 5 SE per cell.
    assert np.all(from_state > 1000)
    standard_error = np.sqrt(params.transition_matrix * (1 - params.transition_matrix) / from_state)
    deviation = np.abs(counts / from_state - params.transition_matrix)
    assert np.all(deviation <= 5 * standard_error), deviation / standard_error


def test_emission_residuals_have_the_state_mean_and_sd(long_sequence):
    params, inputs, states, emissions = long_sequence
    residuals = emissions - (inputs[:, 0] * params.weights[states, 0] + params.biases[states])
    for k in range(3):
        r = residuals[states == k]
        n, sigma = r.size, params.scales[k]
        # Sample mean of n i.i.d. N(0, sigma^2): SE sigma / sqrt(n).
        assert abs(r.mean()) <= 5 * sigma / np.sqrt(n), (k, r.mean(), sigma / np.sqrt(n))
        # Sample sd of Gaussian data: SE ~ sigma / sqrt(2 (n - 1)).
        se_sd = sigma / np.sqrt(2 * (n - 1))
        assert abs(r.std(ddof=1) - sigma) <= 5 * se_sd, (k, r.std(ddof=1), sigma, se_sd)


def test_initial_state_frequencies_match_initial_probs():
    initial_probs = np.array([0.6, 0.3, 0.1])
    params = article_params()._replace(initial_probs=initial_probs)
    num_sequences = 4000
    states, _ = simulate_jit(jax.random.PRNGKey(5), params, np.ones((num_sequences, 2, 1)))
    frequencies = np.bincount(np.asarray(states[:, 0]), minlength=3) / num_sequences
    # Multinomial counts: binomial SE sqrt(p (1 - p) / N) per state; 5 SE.
    standard_error = np.sqrt(initial_probs * (1 - initial_probs) / num_sequences)
    assert np.all(np.abs(frequencies - initial_probs) <= 5 * standard_error)
    # One step later the distribution is initial_probs @ A (a different vector), same test.
    second = initial_probs @ params.transition_matrix
    frequencies = np.bincount(np.asarray(states[:, 1]), minlength=3) / num_sequences
    assert np.all(np.abs(frequencies - second) <= 5 * np.sqrt(second * (1 - second) / num_sequences))


# ---------------------------------------------------------------------------------------------
# article_data
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["text", "code"])
def article(request):
    return request.param, article_data(jax.random.PRNGKey(0), variant=request.param)


def test_article_data_shapes(article):
    variant, data = article
    assert data.inputs.shape == (10, 100, 1)
    assert data.states.shape == (10, 100)
    assert data.emissions.shape == (10, 100)
    assert data.sine_inputs.shape == (100, 1)
    assert data.sine_states.shape == (100,)
    assert data.sine_emissions.shape == (100,)
    for array in data[1:]:
        assert isinstance(array, np.ndarray)
        assert np.all(np.isfinite(array))
    for a, b in zip(data.params, article_params(variant), strict=True):
        np.testing.assert_array_equal(a, b)
    assert set(np.unique(data.states)) <= {0, 1, 2}


def test_article_inputs_range(article):
    variant, data = article
    low = 1.0 if variant == "text" else 0.0
    assert data.inputs.min() >= low and data.inputs.max() <= 10.0
    # 1000 draws: the lowest lies within 0.1 of the bound unless a (0.99)^1000 ~ 4e-5 event occurs;
    # this separates Uniform(0, 10) from Uniform(1, 10).
    assert data.inputs.min() < low + 0.1


def test_sine_inputs_formula(article):
    _, data = article
    t = np.arange(100)
    # float32 sin of arguments up to 2 pi * 2: absolute error ~1e-6 after scaling by 4.
    np.testing.assert_allclose(data.sine_inputs[:, 0], 4 * np.sin(2 * np.pi * t / 50) + 5, atol=1e-5)


def test_article_data_custom_sizes():
    data = article_data(jax.random.PRNGKey(1), num_sequences=3, num_timesteps=20)
    assert data.inputs.shape == (3, 20, 1) and data.states.shape == (3, 20) and data.emissions.shape == (3, 20)
    assert data.sine_inputs.shape == (20, 1) and data.sine_states.shape == (20,) and data.sine_emissions.shape == (20,)
