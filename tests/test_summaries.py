"""Tables and the complete-data ("realized") estimate of every emission family."""

import jax
import numpy as np
import pytest
from _family_posteriors import TRUTHS, family, random_posterior
from scipy.special import expit, softmax

from bayes_glmhmm import article_data, simulate
from bayes_glmhmm.params import BernoulliGLMHMMParams, GLMHMMParams
from bayes_glmhmm.summaries import complete_data_estimate, complete_data_fit, coverage_summary, parameter_table

NUM_STATES = 2


def _large_data(name: str, num_sequences: int, num_timesteps: int, seed: int = 0):
    truth = TRUTHS[name]
    inputs = jax.random.normal(jax.random.PRNGKey(seed), (num_sequences, num_timesteps, 2))
    states, emissions = simulate(jax.random.PRNGKey(seed + 1), truth, inputs)
    return truth, np.asarray(inputs, float), np.asarray(states), np.asarray(emissions, float)


def _design(inputs):
    return np.concatenate([inputs, np.ones(inputs.shape[:-1] + (1,))], axis=-1)


def _scores(name: str, params, inputs, states, emissions) -> np.ndarray:
    """Gradient of the complete-data log-likelihood w.r.t. every state's (weights, bias), in float64 NumPy.

    For a canonical link it is sum_t [z_t = k] (y_t - E[y_t | x_t, k]) x_t (per class for the
    categorical), zero at the maximum likelihood.
    """
    design = _design(inputs)
    coefficients = np.concatenate([params.weights, params.biases[..., None]], axis=-1)  # (K, [C-1,] D + 1)
    scores = []
    for k in range(NUM_STATES):
        chosen = states == k
        eta = design[chosen] @ np.moveaxis(coefficients[k], -1, 0)  # (M,) or (M, C - 1)
        y = emissions[chosen]
        if name == "categorical":
            probabilities = softmax(np.concatenate([np.zeros((eta.shape[0], 1)), eta], axis=-1), axis=-1)
            residual = (y[:, None] == np.arange(1, probabilities.shape[1])) - probabilities[:, 1:]
        else:
            residual = y - (expit(eta) if name == "bernoulli" else np.exp(eta))
        scores.append(np.einsum("m...,mp->...p", residual, design[chosen]) / chosen.sum())
    return np.stack(scores)


def test_gaussian_estimate_is_per_state_least_squares():
    """Oracle: float64 least squares and RMS residual per state on the true states (the old closed form)."""
    data = article_data(jax.random.PRNGKey(0), num_sequences=4, num_timesteps=60)
    states, inputs, emissions = np.asarray(data.states), np.asarray(data.inputs), np.asarray(data.emissions)
    fit = complete_data_fit(states, inputs, emissions, 3)
    assert isinstance(fit.params, GLMHMMParams) and fit.converged
    assert fit.num_iterations == 2  # closed form: the second step changes nothing
    for k in range(3):
        chosen = states == k
        design = _design(inputs[chosen])
        coefficients, *_ = np.linalg.lstsq(design, emissions[chosen], rcond=None)
        residuals = emissions[chosen] - design @ coefficients
        # float32 normal equations of a design with condition number ~ 10^2: 1e-4 relative is ample.
        np.testing.assert_allclose(fit.params.weights[k], coefficients[:-1], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(fit.params.biases[k], coefficients[-1], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(fit.params.scales[k], np.sqrt(np.mean(residuals**2)), rtol=1e-4)
    np.testing.assert_allclose(fit.params.initial_probs, np.bincount(states[:, 0], minlength=3) / 4)
    np.testing.assert_allclose(fit.params.transition_matrix.sum(axis=1), 1.0)


def test_bernoulli_estimate_recovers_the_generator():
    """20 x 500 steps, ~5,000 per state: every coefficient within 5 standard errors of the truth.

    The standard errors come from the Fisher information at the truth, sum_t [z_t = k] p (1 - p) x x';
    under the asymptotic normality of the maximum likelihood a 5-SE miss has probability ~6e-7 per
    coefficient, so with this seed a miss means a wrong estimator, not bad luck. The transition
    probabilities likewise within 5 binomial standard errors of the truth.
    """
    truth, inputs, states, emissions = _large_data("bernoulli", 20, 500)
    fit = complete_data_fit(states, inputs, emissions, NUM_STATES, family="bernoulli")
    assert isinstance(fit.params, BernoulliGLMHMMParams) and fit.converged
    design = _design(inputs)
    true_coefficients = np.concatenate([truth.weights, truth.biases[:, None]], axis=-1)
    estimate = np.concatenate([fit.params.weights, fit.params.biases[:, None]], axis=-1)
    for k in range(NUM_STATES):
        chosen = states == k
        p = expit(design[chosen] @ true_coefficients[k])
        information = np.einsum("m,mi,mj->ij", p * (1 - p), design[chosen], design[chosen])
        standard_errors = np.sqrt(np.diag(np.linalg.inv(information)))
        assert np.all(np.abs(estimate[k] - true_coefficients[k]) < 5 * standard_errors), (k, estimate[k])
    from_counts = np.bincount(states[:, :-1].ravel(), minlength=NUM_STATES)
    transition_se = np.sqrt(truth.transition_matrix * (1 - truth.transition_matrix) / from_counts[:, None])
    assert np.all(np.abs(fit.params.transition_matrix - truth.transition_matrix) < 5 * transition_se)
    # And it is the maximum: the complete-data score vanishes (to float32 rounding of the fit).
    assert np.max(np.abs(_scores("bernoulli", fit.params, inputs, states, emissions))) < 1e-4


@pytest.mark.parametrize("name", ["poisson", "categorical"])
def test_estimate_solves_the_score_equations(name):
    """Poisson and categorical: the complete-data score sum_t [z_t = k] (y_t - E[y_t]) x_t is zero at the estimate."""
    truth, inputs, states, emissions = _large_data(name, 10, 300, seed=2)
    fit = complete_data_fit(states, inputs, emissions, NUM_STATES, family=family(name))
    assert isinstance(fit.params, type(truth)) and fit.converged
    assert np.shape(fit.params.weights) == np.shape(truth.weights)
    # Mean score per step; Poisson counts are ~10, so rounding of float32 sums allows ~1e-4.
    assert np.max(np.abs(_scores(name, fit.params, inputs, states, emissions))) < 2e-4
    # Well within reach of the truth (1,500 steps per state; a loose sanity bound, the score is the oracle).
    np.testing.assert_allclose(fit.params.weights, truth.weights, atol=0.5)


def test_masked_emissions_are_left_out():
    """Flipping the masked emissions does not move the estimate; the transitions still count every step."""
    _, inputs, states, emissions = _large_data("bernoulli", 4, 100, seed=3)
    mask = np.ones(emissions.shape, bool)
    mask[:, ::3] = False
    flipped = np.where(mask, emissions, 1.0 - emissions)
    fit = complete_data_fit(states, inputs, emissions, NUM_STATES, family="bernoulli", mask=mask)
    refit = complete_data_fit(states, inputs, flipped, NUM_STATES, family="bernoulli", mask=mask)
    np.testing.assert_allclose(refit.params.weights, fit.params.weights, rtol=1e-6)
    unmasked = complete_data_fit(states, inputs, emissions, NUM_STATES, family="bernoulli")
    assert not np.allclose(unmasked.params.weights, fit.params.weights, rtol=1e-3)
    np.testing.assert_array_equal(unmasked.params.transition_matrix, fit.params.transition_matrix)


def test_separated_classes_do_not_converge():
    """A state whose choices are perfectly separated by an input has its maximum likelihood at infinity."""
    _, inputs, states, _ = _large_data("bernoulli", 4, 100, seed=4)
    separated = (inputs[..., 0] > 0).astype(float)
    fit = complete_data_fit(states, inputs, separated, NUM_STATES, family="bernoulli", max_iterations=15)
    assert not fit.converged and fit.num_iterations == 15
    assert np.all(fit.params.weights[:, 0] > 5.0)  # still climbing
    estimate = complete_data_estimate(states, inputs, separated, NUM_STATES, family="bernoulli")
    assert isinstance(estimate, BernoulliGLMHMMParams)


def test_states_must_match_the_emissions():
    _, inputs, states, emissions = _large_data("bernoulli", 4, 100, seed=3)
    with pytest.raises(ValueError, match="states"):
        complete_data_estimate(states[:, :-1], inputs, emissions, NUM_STATES, family="bernoulli")


@pytest.mark.parametrize("name", ["bernoulli", "categorical", "gaussian"])
def test_parameter_table_iterates_the_family(name):
    posterior = random_posterior(name)
    truth = TRUTHS[name]
    rows = parameter_table(posterior.samples, truth=truth, point_estimate=truth)
    shapes = posterior.family.param_shapes(NUM_STATES, 2)
    assert [row["parameter"] for row in rows] == [
        parameter for parameter in posterior.param_names for _ in range(int(np.prod(shapes[parameter])))
    ]
    weights = [row for row in rows if row["parameter"] == "weights"]
    assert [tuple(row["index"]) for row in weights] == list(np.ndindex(*shapes["weights"]))
    for row in weights:
        assert row["truth"] == row["point_estimate"] == pytest.approx(float(truth.weights[tuple(row["index"])]))
    summary = coverage_summary(rows)
    assert list(summary["per_parameter"]) == list(posterior.param_names)
    # The draws are the truth plus noise: most intervals cover it.
    assert summary["fraction_covered"] > 0.5
    with pytest.raises(ValueError, match="samples lacks"):
        parameter_table({"weights": posterior.samples["weights"]}, family=posterior.family)


def test_parameter_table_adds_the_off_diagonal_transition_weights():
    """Input-driven transitions: one row per transition weight V[i, j, m] with i != j (V[i, i] = 0 is no parameter)."""
    posterior = random_posterior("bernoulli")
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(2, 25, NUM_STATES, NUM_STATES, 3))
    weights[:, :, np.arange(NUM_STATES), np.arange(NUM_STATES)] = 0.0
    samples = {**posterior.samples, "transition_weights": weights}
    truth = TRUTHS["bernoulli"]._replace(transition_weights=np.full((NUM_STATES, NUM_STATES, 3), 0.25))
    rows = parameter_table(samples, truth=truth, point_estimate=TRUTHS["bernoulli"])
    transition_rows = [row for row in rows if row["parameter"] == "transition_weights"]
    assert [tuple(row["index"]) for row in transition_rows] == [
        (i, j, m) for i in range(NUM_STATES) for j in range(NUM_STATES) for m in range(3) if i != j
    ]
    for row in transition_rows:
        draws = weights[(slice(None), slice(None), *row["index"])].ravel()
        assert row["posterior_mean"] == pytest.approx(draws.mean())
        assert row["lower"] == pytest.approx(np.quantile(draws, 0.03))
        assert row["truth"] == 0.25 and row["covered"] == (row["lower"] <= 0.25 <= row["upper"])
        assert "point_estimate" not in row  # the stationary point estimate has no transition weights
    assert rows[: -len(transition_rows)] == parameter_table(
        posterior.samples, truth=truth, point_estimate=TRUTHS["bernoulli"]
    )
    assert "transition_weights" in coverage_summary(rows)["per_parameter"]
