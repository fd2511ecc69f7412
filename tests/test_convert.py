import os
import warnings

import arviz as az
import jax
import matplotlib
import numpy as np
import pytest

from bayes_glmhmm import posterior_from_inference_data, write_netcdf_atomic

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
