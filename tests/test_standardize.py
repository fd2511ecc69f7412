import jax
import numpy as np
import pytest

from bayes_glmhmm import GLMHMMParams, fit_nuts, log_likelihood, match_params
from bayes_glmhmm.standardize import Standardization, fit_standardization, needs_standardization

X_SCALE, X_SHIFT, Y_SCALE, Y_SHIFT = 250.0, -40.0, 1000.0, 5000.0


def _rescaled(params: GLMHMMParams) -> GLMHMMParams:
    """The article's parameters in units where x_new = 250 x - 40 and y_new = 1000 y + 5000."""
    weights = params.weights * Y_SCALE / X_SCALE
    biases = Y_SCALE * params.biases + Y_SHIFT - weights[:, 0] * X_SHIFT
    return params._replace(weights=weights, biases=biases, scales=params.scales * Y_SCALE)


def test_back_transform_is_the_inverse(rng):
    standardization = Standardization(np.array([3.0, -2.0]), np.array([0.5, 40.0]), 7.0, 300.0)
    weights, biases, scales = rng.normal(size=(4, 3, 2)), rng.normal(size=(4, 3)), rng.uniform(0.5, 2, (4, 3))
    back = standardization.to_standardized(*standardization.to_original(weights, biases, scales))
    for ours, reference in zip(back, (weights, biases, scales), strict=True):
        np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=1e-12)


def test_likelihood_changes_only_by_the_jacobian(rng):
    """log p(y | x, theta) = log p(y' | x', theta') - n log emission_scale: the map is exact."""
    inputs = rng.uniform(1, 10, (3, 30, 2)) * np.array([100.0, 0.01])
    emissions = rng.normal(500.0, 80.0, (3, 30))
    mask = np.ones(emissions.shape, bool)
    standardization = fit_standardization(inputs, emissions, mask)
    params_std = GLMHMMParams(
        np.full(3, 1 / 3), np.full((3, 3), 1 / 3), rng.normal(size=(3, 2)), rng.normal(size=3), rng.uniform(0.5, 1.5, 3)
    )
    params = standardization.params_to_original(params_std)
    scaled_inputs, scaled_emissions = standardization.apply(inputs, emissions)
    with jax.enable_x64(True):
        original = np.asarray(log_likelihood(params, inputs, emissions))
        standardized = np.asarray(log_likelihood(params_std, scaled_inputs, scaled_emissions))
    np.testing.assert_allclose(original, standardized - 30 * np.log(standardization.emission_scale), rtol=1e-10)


def test_when_standardization_applies(small_article_data):
    data = small_article_data
    mask = np.ones(data.emissions.shape, bool)
    assert not needs_standardization(fit_standardization(data.inputs, data.emissions, mask))
    scaled = fit_standardization(data.inputs * X_SCALE + X_SHIFT, data.emissions * Y_SCALE + Y_SHIFT, mask)
    assert needs_standardization(scaled)
    with_constant = np.concatenate([data.inputs, np.ones_like(data.inputs)], axis=-1)
    constant = fit_standardization(with_constant, data.emissions, mask)
    assert constant.input_mean[1] == 0.0 and constant.input_scale[1] == 1.0
    with pytest.raises(ValueError, match="emissions"):
        fit_standardization(data.inputs, np.zeros_like(data.emissions), mask)


def test_fit_on_far_from_unit_data_reports_original_units(small_article_data, small_posterior):
    """Data in other units give the same answer in those units, not one distorted by unit priors.

    Unit-scale priors would pull weights of size ~4 (= 1000/250) towards 0 and noise scales of
    ~1000 towards 1; with standardization the posterior is the small fixture's, rescaled.
    """
    data = small_article_data
    posterior = fit_nuts(
        data.inputs * X_SCALE + X_SHIFT,
        data.emissions * Y_SCALE + Y_SHIFT,
        3,
        num_chains=2,
        num_warmup=200,
        num_samples=200,
        seed=1,
        progress_bar=False,
    )
    assert posterior.settings["standardization"] is not None
    truth = _rescaled(data.params)
    mean = posterior.posterior_mean()
    mean = mean.permute(match_params(mean, truth))
    # 240 observations: weights known to ~5%, scales to ~10% (see the unit-scale fixture's sds).
    np.testing.assert_allclose(mean.weights, truth.weights, rtol=0.15, atol=0.05 * Y_SCALE / X_SCALE)
    np.testing.assert_allclose(mean.scales, truth.scales, rtol=0.3)
    assert posterior.em.params.scales.min() > 100  # the EM estimate is reported in the data's units too
    assert small_posterior.settings["standardization"] is None  # unit-scale data keep the article's priors


def test_other_families_standardize_inputs_only_and_exactly(rng):
    """A Bernoulli or categorical model keeps its emissions; the inputs' change of units maps the
    parameters so that the likelihood is exactly unchanged (no Jacobian: y is not transformed)."""
    from bayes_glmhmm import BernoulliGLMHMMParams, CategoricalGLMHMMParams

    inputs = rng.uniform(1, 10, (2, 25, 2)) * np.array([300.0, 0.02])
    mask = np.ones((2, 25), bool)
    standardization = fit_standardization(inputs, np.zeros((2, 25)), mask, emissions_too=False)
    assert needs_standardization(standardization)
    assert (standardization.emission_mean, standardization.emission_scale) == (0.0, 1.0)
    scaled_inputs, _ = standardization.apply(inputs, np.zeros((2, 25)))
    for params in (
        BernoulliGLMHMMParams(np.array([0.4, 0.6]), np.full((2, 2), 0.5), rng.normal(size=(2, 2)), rng.normal(size=2)),
        CategoricalGLMHMMParams(
            np.array([0.4, 0.6]), np.full((2, 2), 0.5), rng.normal(size=(2, 2, 2)), rng.normal(size=(2, 2))
        ),
    ):
        _, emissions = simulate_np(params, scaled_inputs)
        original = standardization.params_to_original(params)
        assert type(original) is type(params)
        np.testing.assert_allclose(
            log_likelihood(original, inputs, emissions), log_likelihood(params, scaled_inputs, emissions), rtol=1e-4
        )
        back = standardization.params_to_standardized(original)
        np.testing.assert_allclose(back.weights, params.weights, rtol=1e-9, atol=1e-12)


def simulate_np(params, inputs):
    from bayes_glmhmm import simulate

    states, emissions = simulate(jax.random.PRNGKey(0), params, inputs)
    return np.asarray(states), np.asarray(emissions)
