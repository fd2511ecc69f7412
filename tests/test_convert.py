import json
import os
import warnings
from dataclasses import replace

import arviz as az
import jax
import matplotlib
import numpy as np
import pytest

from bayes_glmhmm import Posterior, Priors, posterior_from_inference_data, write_netcdf_atomic
from bayes_glmhmm.convert import prior_samples, to_inference_data
from bayes_glmhmm.emissions import get_family
from bayes_glmhmm.hierarchy import SUBJECT_TRANSITIONS, Subjects
from bayes_glmhmm.standardize import Standardization

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def idata(small_posterior):
    return small_posterior.to_arviz(key=jax.random.PRNGKey(0))


def test_groups_and_dims(idata, small_posterior):
    for group in (
        "posterior",
        "sample_stats",
        "log_likelihood",
        "posterior_predictive",
        "observed_data",
        "constant_data",
        "posterior_states",
    ):
        assert group in idata.groups(), group
    assert idata.posterior["transition_matrix"].dims == ("chain", "draw", "state", "next_state")
    assert idata.posterior["weights"].dims == ("chain", "draw", "state", "input")
    assert idata.log_likelihood["emissions"].dims == ("chain", "draw", "sequence")
    assert idata.posterior_predictive["emissions"].dims == ("chain", "draw", "sequence", "time")
    assert idata.observed_data["emissions"].dims == ("sequence", "time")
    assert idata.constant_data["inputs"].dims == ("sequence", "time", "input")
    for name in ("diverging", "energy", "tree_depth", "step_size", "lp", "n_steps"):
        assert idata.sample_stats[name].shape == (2, 200), name
    # The posterior group holds the relabeled draws, untouched.
    np.testing.assert_array_equal(idata.posterior["biases"].values, small_posterior.samples["biases"])
    np.testing.assert_array_equal(idata.sample_stats["relabel_permutation"].values, small_posterior.permutations)
    # log_likelihood is the marginal likelihood of each whole sequence.
    np.testing.assert_allclose(idata.log_likelihood["emissions"].values, small_posterior.log_likelihood(), rtol=1e-6)
    probabilities = idata.posterior_states["state_probabilities"].values
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)


def test_arviz_functions_work(idata):
    summary = az.summary(idata)
    assert {"mean", "sd", "r_hat", "ess_bulk"} <= set(summary.columns)
    assert "transition_matrix[0, 1]" in summary.index
    with warnings.catch_warnings():
        # Four sequences are four very influential "observations": ArviZ warns about Pareto k,
        # which is the honest answer for leave-one-sequence-out on so little data.
        warnings.simplefilter("ignore", UserWarning)
        loo = az.loo(idata)
    assert loo.n_data_points == 4
    assert np.isfinite(loo.elpd_loo)
    axes = az.plot_trace(idata, var_names=["weights", "biases"])
    assert axes.shape[0] == 2
    matplotlib.pyplot.close("all")


def test_netcdf_round_trip(idata, small_posterior, tmp_path):
    path = write_netcdf_atomic(idata, tmp_path / "posterior.nc")
    back = az.from_netcdf(path)
    assert set(back.groups()) == set(idata.groups())
    for group in idata.groups():
        for name in idata[group].data_vars:
            np.testing.assert_array_equal(
                back[group][name].values, idata[group][name].values, err_msg=f"{group}/{name}"
            )
    rebuilt = posterior_from_inference_data(back)
    np.testing.assert_allclose(rebuilt.state_probabilities(), small_posterior.state_probabilities(), atol=1e-6)
    assert rebuilt.num_states == 3
    assert rebuilt.priors == small_posterior.priors
    # The verdict survives the round trip, under the thresholds the fit recorded.
    assert rebuilt.settings["convergence_thresholds"] == small_posterior.settings["convergence_thresholds"]
    verdict, original = rebuilt.diagnostics(), small_posterior.diagnostics()
    assert (verdict["converged"], verdict["problems"]) == (original["converged"], original["problems"])


def test_interrupted_write_leaves_nothing(idata, tmp_path, monkeypatch):
    target = tmp_path / "posterior.nc"

    def _fail_halfway(self, filename, *args, **kwargs):
        with open(filename, "wb") as handle:
            handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(az.InferenceData, "to_netcdf", _fail_halfway)
    with pytest.raises(KeyboardInterrupt):
        write_netcdf_atomic(idata, target)
    assert os.listdir(tmp_path) == []


def test_rebuild_rejects_foreign_data():
    foreign = az.from_dict(posterior={"a": np.zeros((1, 5))})
    with pytest.raises(ValueError, match="sample_stats"):
        posterior_from_inference_data(foreign)


# --- input-driven transitions ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def transition_posterior():
    from _transition_posteriors import random_transition_posterior

    return random_transition_posterior(form="destination")


def test_transition_weights_dims_coords_and_round_trip(transition_posterior, tmp_path):
    """transition_weights (state, next_state, transition_input) named by the inputs; transition_inputs kept;
    the netCDF file rebuilds a Posterior with the same transition model, inputs and state probabilities."""
    posterior = transition_posterior
    idata = to_inference_data(posterior, key=jax.random.PRNGKey(0), transition_input_names=["rewarded", "drift"])
    weights = idata.posterior["transition_weights"]
    assert weights.dims == ("chain", "draw", "state", "next_state", "transition_input")
    assert weights.coords["transition_input"].values.tolist() == ["rewarded", "drift"]
    np.testing.assert_array_equal(weights.values, posterior.samples["transition_weights"])
    stored = idata.constant_data["transition_inputs"]
    assert stored.dims == ("sequence", "time", "transition_input")
    np.testing.assert_array_equal(stored.values, posterior.transition_inputs)
    assert json.loads(idata.posterior.attrs["transitions"]) == {"model": "input_driven", "form": "destination"}
    assert json.loads(idata.posterior.attrs["transition_input_names"]) == ["rewarded", "drift"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # R-hat of the constant diagonal V[i, i] = 0 is NaN
        assert "transition_weights[0, 1, drift]" in az.summary(idata, var_names=["transition_weights"]).index
    # The log-likelihood group is each sequence's likelihood under the input-driven transitions.
    np.testing.assert_allclose(idata.log_likelihood["emissions"].values, posterior.log_likelihood(), rtol=1e-6)

    back = posterior_from_inference_data(az.from_netcdf(write_netcdf_atomic(idata, tmp_path / "posterior.nc")))
    assert back.transitions == posterior.transitions
    np.testing.assert_array_equal(back.transition_inputs, posterior.transition_inputs)
    np.testing.assert_array_equal(back.samples["transition_weights"], posterior.samples["transition_weights"])
    np.testing.assert_array_equal(back.em.params.transition_weights, posterior.em.params.transition_weights)
    np.testing.assert_allclose(back.state_probabilities(), posterior.state_probabilities(), atol=1e-6)


def test_transition_input_names_default_and_checks(transition_posterior, small_posterior):
    idata = to_inference_data(transition_posterior, include_states=False)
    assert idata.posterior["transition_weights"].coords["transition_input"].values.tolist() == ["u0", "u1"]
    with pytest.raises(ValueError, match="transition_input_names has 1 names"):
        to_inference_data(transition_posterior, include_states=False, transition_input_names=["a"])
    with pytest.raises(ValueError, match="transition_input_names were given but the posterior has stationary"):
        to_inference_data(small_posterior, include_states=False, transition_input_names=["a"])


def test_stationary_posterior_is_unchanged(idata):
    """A stationary posterior has no transition weights, inputs or coordinate; its attrs say stationary."""
    assert "transition_weights" not in idata.posterior and "transition_input" not in idata.posterior.coords
    assert "transition_inputs" not in idata.constant_data
    assert json.loads(idata.posterior.attrs["transitions"])["model"] == "stationary"
    assert posterior_from_inference_data(idata).transitions.name == "stationary"


# --- the prior and prior predictive groups ---------------------------------------------------------------

# Prior hyperparameters that all differ, so that a draw from the wrong one shows in the moments.
DISTINCT_PRIORS = Priors(
    initial_concentration=0.5,
    transition_concentration=5.0,
    weight_scale=3.0,
    bias_scale=0.5,
    noise_scale=2.0,
    transition_weight_scale=1.5,
    subject_spread_scale=0.7,
    subject_transition_concentration=10.0,
)


def _assert_moments(draws, mean, variance, name):
    """Each element's mean within 4 standard errors (sd / sqrt(n)) of ``mean``; the variance within 12%.

    The draws are seeded, so each check is deterministic; with n >= 4000 independent draws a
    correct sampler is 4 standard errors off with probability 6e-5 per element, and its sample
    variance (relative standard error sqrt((kurtosis - 1) / n) <= 3% for these priors) 12% off
    with a smaller one, while a wrong hyperparameter moves the variance by 2x or more.
    """
    draws = np.asarray(draws, dtype=float).reshape((-1,) + np.shape(draws)[2:])
    standard_error = np.sqrt(variance / draws.shape[0])
    np.testing.assert_array_less(np.abs(draws.mean(axis=0) - mean), 4 * standard_error + 1e-12, err_msg=name)
    np.testing.assert_allclose(draws.var(axis=0), variance, rtol=0.12, err_msg=name)


def test_prior_groups_mirror_the_posterior_groups(idata, small_posterior):
    """prior: one chain of 500 draws of every posterior variable, the same dims and coords; prior_predictive:
    emissions with the posterior predictive's dims and coords; the same key gives the same draws."""
    assert {"prior", "prior_predictive"} <= set(idata.groups())
    assert set(idata.prior.data_vars) == set(idata.posterior.data_vars) == set(small_posterior.param_names)
    for name in idata.posterior.data_vars:
        prior, posterior = idata.prior[name], idata.posterior[name]
        assert prior.dims == posterior.dims, name
        assert prior.shape == (1, 500) + posterior.shape[2:], name
        assert prior.dtype == posterior.dtype, name
        for dim in prior.dims[2:]:
            np.testing.assert_array_equal(prior.coords[dim].values, posterior.coords[dim].values)
    predictive, replicated = idata.prior_predictive["emissions"], idata.posterior_predictive["emissions"]
    assert predictive.dims == replicated.dims == ("chain", "draw", "sequence", "time")
    assert predictive.shape == (1, 500) + replicated.shape[2:]
    for dim in ("sequence", "time"):
        np.testing.assert_array_equal(predictive.coords[dim].values, replicated.coords[dim].values)
    assert np.all(np.isfinite(predictive.values))  # Gaussian emissions: any real number; no padding here
    again = to_inference_data(small_posterior, key=jax.random.PRNGKey(0), include_states=False)
    other = to_inference_data(small_posterior, key=jax.random.PRNGKey(1), include_states=False)
    for group in ("prior", "prior_predictive"):
        for name in idata[group].data_vars:
            np.testing.assert_array_equal(again[group][name].values, idata[group][name].values)
            assert not np.array_equal(other[group][name].values, idata[group][name].values)
    # The posterior predictive is the one without the prior groups: the prior draws use a stream of their own.
    without = to_inference_data(small_posterior, key=jax.random.PRNGKey(0), include_states=False, prior_draws=0)
    np.testing.assert_array_equal(without.posterior_predictive["emissions"].values, replicated.values)


def test_prior_group_has_the_prior_moments(small_posterior):
    """Dirichlet, Normal and HalfNormal moments of the article model's priors, every hyperparameter distinct."""
    posterior = replace(small_posterior, priors=DISTINCT_PRIORS)
    prior = to_inference_data(posterior, key=jax.random.PRNGKey(2), include_states=False, prior_draws=4000).prior
    num_states = posterior.num_states

    def dirichlet(concentration):
        total = num_states * concentration
        return 1 / num_states, (1 / num_states) * (1 - 1 / num_states) / (total + 1)

    _assert_moments(prior["initial_probs"], *dirichlet(0.5), "initial_probs")
    _assert_moments(prior["transition_matrix"], *dirichlet(5.0), "transition_matrix")
    np.testing.assert_allclose(prior["transition_matrix"].values.sum(-1), 1.0, atol=1e-5)
    _assert_moments(prior["weights"], 0.0, 3.0**2, "weights")
    _assert_moments(prior["biases"], 0.0, 0.5**2, "biases")
    _assert_moments(prior["scales"], 2.0 * np.sqrt(2 / np.pi), 2.0**2 * (1 - 2 / np.pi), "scales")  # HalfNormal(2)


def test_prior_predictive_has_the_prior_predictive_second_moment(small_posterior):
    """Gaussian GLM-HMM, zero-mean priors: E[y_t^2 | x_t] = x_t^2 weight_scale^2 + bias_scale^2 + noise_scale^2
    whatever the states, since weights, biases and noise are independent with mean zero.

    Over 4000 draws, each with its own weights in each of 3 states, the ratio of the mean of y^2
    to its expectation has a standard error of about 3%; 12% is 4 of them. Draws from the
    posterior instead (weights near 1, -0.8, 0.2) would give a ratio near 0.1.
    """
    posterior = replace(small_posterior, priors=DISTINCT_PRIORS)
    idata = to_inference_data(posterior, key=jax.random.PRNGKey(3), include_states=False, prior_draws=4000)
    emissions = idata.prior_predictive["emissions"].values
    inputs = posterior.inputs[..., 0]
    expected = inputs**2 * 3.0**2 + 0.5**2 + 2.0**2
    np.testing.assert_allclose(np.mean(emissions**2 / expected), 1.0, rtol=0.12)
    large = inputs > np.median(inputs)  # the input's share: the ratio holds at large and small inputs alike
    np.testing.assert_allclose(np.mean(emissions[..., large] ** 2) / np.mean(expected[large]), 1.0, rtol=0.12)
    np.testing.assert_allclose(np.mean(emissions[..., ~large] ** 2) / np.mean(expected[~large]), 1.0, rtol=0.12)


def test_prior_of_a_standardized_fit_is_in_the_data_units(small_posterior):
    """A fit on standardized data had its priors on the standardized parameters: the prior draws are mapped back."""
    recorded = {"input_mean": [5.0], "input_scale": [2.5], "emission_mean": 1.0, "emission_scale": 4.0}
    standardized = replace(small_posterior, settings={**small_posterior.settings, "standardization": recorded})
    key = jax.random.PRNGKey(4)
    draws, plain = prior_samples(key, standardized, 50), prior_samples(key, small_posterior, 50)
    mapped = Standardization(np.array([5.0]), np.array([2.5]), 1.0, 4.0).samples_to_original(plain)
    for name in small_posterior.param_names:
        np.testing.assert_allclose(draws[name], mapped[name], rtol=1e-5, atol=1e-5, err_msg=name)
    assert not np.allclose(draws["biases"], plain["biases"])


def test_prior_predictive_reuses_the_compiled_simulation(small_posterior):
    """The prior's 500 draws are simulated in chunks of the posterior's (400 here): no new compiled program."""
    from bayes_glmhmm.posterior import _predictive_per_draw

    small_posterior.posterior_predictive(jax.random.PRNGKey(0))
    compiled = _predictive_per_draw._cache_size()
    prior = prior_samples(jax.random.PRNGKey(5), small_posterior, 500)
    simulated = small_posterior.prior_predictive(jax.random.PRNGKey(6), prior)
    assert _predictive_per_draw._cache_size() == compiled
    assert simulated.shape == (1, 500) + small_posterior.emissions.shape
    # Each draw is its own simulation (the last chunk's repeated draws are dropped, not kept).
    assert len(np.unique(simulated[0, :, 0, 0])) == 500


def test_prior_groups_with_input_driven_transitions_and_padding(transition_posterior):
    """Bernoulli, input-driven (destination form), padded sequences: transition_weights' prior (zero diagonal,
    V[i, j] = d_j - d_i with variance 2 s^2), and a prior predictive of 0s and 1s blank exactly at the padding."""
    posterior = replace(transition_posterior, priors=DISTINCT_PRIORS)
    idata = to_inference_data(posterior, key=jax.random.PRNGKey(7), include_states=False, prior_draws=4000)
    weights = idata.prior["transition_weights"]
    assert weights.dims == idata.posterior["transition_weights"].dims
    assert weights.coords["transition_input"].values.tolist() == ["u0", "u1"]
    np.testing.assert_array_equal(weights.values[..., [0, 1], [0, 1], :], 0.0)
    _assert_moments(weights.values[..., 0, 1, :], 0.0, 2 * 1.5**2, "transition_weights[0, 1]")
    np.testing.assert_allclose(weights.values[..., 0, 1, :], -weights.values[..., 1, 0, :], atol=1e-6)
    predictive = idata.prior_predictive["emissions"].values
    padding = np.isnan(idata.posterior_predictive["emissions"].values[0, 0])
    assert padding.any() and not padding.all()
    np.testing.assert_array_equal(np.isnan(predictive), np.broadcast_to(padding, predictive.shape))
    assert set(np.unique(predictive[..., ~padding])) == {0.0, 1.0}


def _hierarchical_posterior():
    """A Bernoulli posterior across 3 subjects with their own transitions, from random draws (no sampler)."""
    rng = np.random.default_rng(0)
    num_states, input_dim, lead = 2, 2, (2, 10)
    index = np.array([0, 1, 2, 2])
    inputs = rng.normal(size=(4, 40, input_dim))
    samples = {
        "initial_probs": rng.dirichlet(np.ones(num_states), size=lead),
        "transition_matrix": rng.dirichlet(np.ones(num_states), size=lead + (num_states,)),
        "weights": rng.normal(size=lead + (num_states, input_dim)),
        "biases": rng.normal(size=lead + (num_states,)),
        "weight_spread": np.abs(rng.normal(size=lead + (num_states, input_dim))),
        "bias_spread": np.abs(rng.normal(size=lead + (num_states,))),
        "subject_weights": rng.normal(size=lead + (3, num_states, input_dim)),
        "subject_biases": rng.normal(size=lead + (3, num_states)),
        SUBJECT_TRANSITIONS: rng.dirichlet(np.ones(num_states), size=lead + (3, num_states)),
    }
    return Posterior(
        samples={name: value.astype(np.float32) for name, value in samples.items()},
        permutations=np.broadcast_to(np.arange(num_states), lead + (num_states,)).copy(),
        sample_stats={"lp": np.zeros(lead), "diverging": np.zeros(lead, bool)},
        inputs=inputs,
        emissions=(rng.random((4, 40)) < 0.5).astype(float),
        mask=np.ones((4, 40), bool),
        num_states=num_states,
        priors=DISTINCT_PRIORS,
        family=get_family("bernoulli"),
        subjects=Subjects(index, ("ann", "bob", "cy")),
    )


def test_prior_groups_of_a_hierarchical_posterior(tmp_path):
    """Spreads HalfNormal(s); subject weights Normal(mu, tau) around mu ~ Normal(0, w): variance w^2 + s^2;
    subject transition rows Dirichlet(c A[i]) around the population's: mean 1/K, variance as the population's
    Dirichlet's plus the spread about A (the law of total variance); dims and coords the posterior's; round trip."""
    posterior = _hierarchical_posterior()
    idata = to_inference_data(posterior, key=jax.random.PRNGKey(8), include_states=False, prior_draws=4000)
    prior = idata.prior
    assert set(prior.data_vars) == set(idata.posterior.data_vars)
    for name in prior.data_vars:
        assert prior[name].dims == idata.posterior[name].dims, name
    assert prior.coords["subject"].values.tolist() == ["ann", "bob", "cy"]
    _assert_moments(prior["weight_spread"], 0.7 * np.sqrt(2 / np.pi), 0.7**2 * (1 - 2 / np.pi), "weight_spread")
    _assert_moments(prior["bias_spread"], 0.7 * np.sqrt(2 / np.pi), 0.7**2 * (1 - 2 / np.pi), "bias_spread")
    _assert_moments(prior["subject_weights"], 0.0, 3.0**2 + 0.7**2, "subject_weights")
    _assert_moments(prior["subject_biases"], 0.0, 0.5**2 + 0.7**2, "subject_biases")
    # Population row Dirichlet(5, 5): A ~ Beta(5, 5), Var A = 1/44; subject row given A: Beta(10 A, 10 (1 - A)),
    # Var = A (1 - A) / 11, whose mean is E[A (1 - A)] / 11 = (1/4 - 1/44) / 11.
    _assert_moments(prior[SUBJECT_TRANSITIONS], 0.5, 1 / 44 + (1 / 4 - 1 / 44) / 11, SUBJECT_TRANSITIONS)
    # Subjects differ from their population by the spread: the subject weights are not the population's.
    spread = prior["subject_weights"].values - prior["weights"].values[:, :, None]
    np.testing.assert_allclose(spread.std(), 0.7, rtol=0.05)
    predictive = idata.prior_predictive["emissions"]
    assert predictive.dims == idata.posterior_predictive["emissions"].dims
    assert set(np.unique(predictive.values)) == {0.0, 1.0}
    back = az.from_netcdf(write_netcdf_atomic(idata, tmp_path / "posterior.nc"))
    for group in ("prior", "prior_predictive"):
        for name in idata[group].data_vars:
            np.testing.assert_array_equal(back[group][name].values, idata[group][name].values)
    assert posterior_from_inference_data(back).subjects.names == ("ann", "bob", "cy")


def test_prior_draws_zero_leaves_the_groups_out_and_such_files_still_load(small_posterior, tmp_path):
    """prior_draws=0 writes the groups of before; a file without them rebuilds the Posterior; bad counts are refused."""
    idata = to_inference_data(small_posterior, include_states=False, prior_draws=0)
    assert not {"prior", "prior_predictive"} & set(idata.groups())
    rebuilt = posterior_from_inference_data(az.from_netcdf(write_netcdf_atomic(idata, tmp_path / "old.nc")))
    np.testing.assert_array_equal(rebuilt.samples["weights"], small_posterior.samples["weights"])
    assert {"prior", "prior_predictive"} <= set(rebuilt.to_arviz(include_states=False, prior_draws=20).groups())
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="prior_draws must be an integer >= 0"):
            to_inference_data(small_posterior, include_states=False, prior_draws=bad)


def test_arviz_prior_plots_work(idata):
    """ArviZ's prior checks read the groups: plot_ppc of the prior predictive, plot_dist_comparison."""
    ax = az.plot_ppc(idata, group="prior", num_pp_samples=20, random_seed=0)
    assert ax is not None
    axes = az.plot_dist_comparison(idata, var_names=["biases"])
    assert axes.shape == (3, 3)  # one row per state: prior, posterior, and both together
    matplotlib.pyplot.close("all")


@pytest.mark.parametrize("name", ["categorical", "poisson"])
def test_prior_groups_of_the_other_families(name):
    """Categorical (weights with the class dim) and Poisson: the prior's dims are the posterior's, and the prior
    predictive holds class labels 0..C-1, or counts."""
    from _family_posteriors import random_posterior

    posterior = random_posterior(name)
    idata = to_inference_data(posterior, include_states=False, prior_draws=200)
    for variable in idata.posterior.data_vars:
        assert idata.prior[variable].dims == idata.posterior[variable].dims, variable
    emissions = idata.prior_predictive["emissions"].values
    assert emissions.shape == (1, 200) + posterior.emissions.shape
    np.testing.assert_array_equal(emissions, np.round(emissions))
    assert emissions.min() == 0
    if name == "categorical":
        assert set(np.unique(emissions)) == {0.0, 1.0, 2.0}
