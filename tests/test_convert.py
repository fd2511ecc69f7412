import json
import os
import warnings

import arviz as az
import jax
import matplotlib
import numpy as np
import pytest

from bayes_glmhmm import posterior_from_inference_data, write_netcdf_atomic
from bayes_glmhmm.convert import to_inference_data

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
