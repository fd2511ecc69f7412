"""Simulation-based calibration per family (the full runs are benchmarks/sbc.py, 200 replications each),
and the naive forward algorithm of benchmarks/families.py against the package's likelihood."""

import importlib.util
import pathlib
import subprocess
import sys
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayes_glmhmm import Priors, log_likelihood
from bayes_glmhmm.emissions import FAMILY_NAMES, get_family
from bayes_glmhmm.model import sample_prior

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _family(name: str):
    return get_family(name, 3 if name == "categorical" else None)


def test_stationary_distribution_is_invariant():
    sbc = _load("sbc")
    matrix = np.array([[0.5, 0.4, 0.1], [0.1, 0.5, 0.4], [0.4, 0.1, 0.5]])
    pi = sbc.stationary(matrix)
    np.testing.assert_allclose(pi @ matrix, pi, atol=1e-12)
    np.testing.assert_allclose(pi.sum(), 1.0)


@pytest.mark.parametrize("family_name", FAMILY_NAMES)
def test_invariant_quantities_ignore_the_labels(family_name):
    """Permuting the states of a prior draw leaves every SBC quantity unchanged; each emission
    parameter contributes one quantity per state and per class (the categorical's C - 1 = 2)."""
    sbc = _load("sbc")
    family = _family(family_name)
    params = sample_prior(jax.random.PRNGKey(0), family, 3, 1, Priors())
    params = jax.tree.map(lambda value: np.asarray(value, dtype=float), params)
    original = sbc.invariant_quantities(params, -12.5)
    permuted = sbc.invariant_quantities(params.permute(np.array([2, 0, 1])), -12.5)
    assert original.keys() == permuted.keys()
    for name in original:  # permute works in float32: equal to its rounding
        np.testing.assert_allclose(permuted[name], original[name], rtol=1e-6, err_msg=name)
    classes = 2 if family_name == "categorical" else 1
    expected = 3 * classes * 2 + 3 * len(family.extra_names) + 3 + 1  # weights, biases, extras, stationary, loglik
    assert len(original) == expected


@pytest.mark.parametrize("form", ["full", "destination"])
def test_transition_weight_quantities_ignore_the_labels(form):
    """Input-driven SBC quantities (benchmarks/sbc.py --transitions): permuting the states of a
    prior draw (V on both state axes) leaves every quantity unchanged, and a change of one weight
    changes them (so they are not constant)."""
    from bayes_glmhmm.transitions import input_driven

    sbc = _load("sbc")
    params = sample_prior(jax.random.PRNGKey(1), get_family("bernoulli"), 3, 1, Priors(), input_driven(form), 2)
    params = jax.tree.map(lambda value: np.asarray(value, dtype=float), params)
    original = sbc.invariant_quantities(params, -3.0, form)
    permuted = sbc.invariant_quantities(params.permute(np.array([1, 2, 0])), -3.0, form)
    assert original.keys() == permuted.keys()
    assert any(name.startswith(("transition_weight", "destination_weight")) for name in original)
    for name in original:
        np.testing.assert_allclose(permuted[name], original[name], rtol=1e-6, atol=1e-7, err_msg=name)
    shifted = params._replace(transition_weights=params.transition_weights * 2.0)
    changed = sbc.invariant_quantities(shifted, -3.0, form)
    assert any(not np.allclose(changed[name], original[name]) for name in original if "weight_" in name)


def test_mean_rank_test_flags_a_shifted_mean():
    """Uniform ranks on {0..L} give |z| small; ranks all at L give a large positive z."""
    sbc = _load("sbc")
    uniform = np.tile(np.arange(20), 10)  # every rank of L = 19 equally often: mean exactly L / 2
    assert sbc.mean_rank_test(uniform, 19)["mean_rank_z"] == pytest.approx(0.0)
    high = sbc.mean_rank_test(np.full(200, 19), 19)
    assert high["mean_rank_z"] > 10


@pytest.mark.parametrize("family_name", FAMILY_NAMES)
def test_one_replication_per_family(family_name):
    """A smoke run: one tiny replication of each family gives a rank in {0..L} for every quantity."""
    sbc = _load("sbc")
    args = SimpleNamespace(
        family=family_name,
        num_classes=3,
        num_states=2,
        num_sequences=2,
        num_timesteps=15,
        chains=1,
        warmup=20,
        samples=20,
        rank_draws=9,
    )
    row = sbc.one_replication(0, args, Priors())
    ranks = {name: value for name, value in row.items() if name.startswith("rank_")}
    classes = 2 if family_name == "categorical" else 1
    assert len(ranks) == 2 * classes * 2 + 2 * len(_family(family_name).extra_names) + 2 + 1
    assert all(0 <= value <= args.rank_draws for value in ranks.values()), ranks


@pytest.mark.slow
def test_small_sbc_ranks_are_uniform():
    """24 replications, 2 states, ranks among L = 19 thinned draws, 5 bins. A chi-square test per
    quantity at a Bonferroni-corrected 0.001 catches gross miscalibration only (e.g. a posterior
    that ignores the data or the prior); the 200-replication script is the real check."""
    sbc = _load("sbc")
    args = SimpleNamespace(
        family="gaussian",
        num_classes=None,
        num_states=2,
        num_sequences=3,
        num_timesteps=60,
        chains=1,
        warmup=200,
        samples=190,
        rank_draws=19,
    )
    rows = [sbc.one_replication(seed, args, Priors()) for seed in range(24)]
    summary = sbc.summarize(rows, args.rank_draws, bins=5)
    assert summary["min_p_value"] > 0.001 / len(summary["quantities"]), summary
    for row in rows:
        assert all(0 <= row[name] <= args.rank_draws for name in row if name.startswith("rank_"))


@pytest.mark.parametrize("family_name", FAMILY_NAMES)
def test_naive_forward_algorithm_matches_the_package(family_name):
    """The benchmark's competitor computes the package's likelihood: same value and gradient on
    ragged (masked) data of benchmarks/families.py's --quick shape, float32 tolerances."""
    families = _load("families")
    family = _family(family_name)
    problem = families.simulated_problem(jax.random.PRNGKey(1), family, families.QUICK)
    params = jax.tree.map(lambda value: jnp.asarray(value, jnp.float32), problem.truth)
    data = (problem.inputs, problem.emissions, problem.mask)

    def ours(params):
        return jnp.sum(log_likelihood(params, *data))

    def naive(params):
        return families.naive_total_loglik(params, *data, family)

    ours_value, ours_gradient = jax.value_and_grad(ours)(params)
    naive_value, naive_gradient = jax.value_and_grad(naive)(params)
    assert not problem.mask.all()  # the padding is exercised
    np.testing.assert_allclose(naive_value, ours_value, rtol=1e-5)
    for name in family.param_names:
        a, b = getattr(naive_gradient, name), getattr(ours_gradient, name)
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3 * float(jnp.max(jnp.abs(b))), err_msg=name)


@pytest.mark.slow
def test_families_quick_run_writes_its_outputs(tmp_path):
    """benchmarks/families.py --quick end to end (about a minute): every family's row, the fit's diagnostics."""
    subprocess.run(
        [sys.executable, str(BENCHMARKS / "families.py"), "--quick", "--out", str(tmp_path)], check=True, timeout=600
    )
    text = (tmp_path / "families_quick.csv").read_text()
    for family_name in FAMILY_NAMES:
        assert f"{family_name},naive_over_ours_time," in text
    assert "bernoulli,max_rhat," in text
    assert (tmp_path / "families_quick.json").exists() and (tmp_path / "families_quick.md").exists()


def test_stationary_agrees_with_the_left_eigenvector():
    """Issue 15: benchmarks/sbc.py's stationary distribution (a linear solve, batched) is the left
    eigenvector of eigenvalue 1 (an independent computation) and, for K = 2, A[1, 0] / (A[0, 1] + A[1, 0])."""
    sbc = _load("sbc")
    rng = np.random.default_rng(0)
    for num_states in (2, 3, 4):
        matrices = rng.dirichlet(np.ones(num_states), size=(50, num_states))
        batched = sbc.stationary(matrices)
        for matrix, pi in zip(matrices, batched, strict=True):
            np.testing.assert_allclose(pi, sbc.stationary_eigenvector(matrix), atol=1e-12)
    matrices = rng.dirichlet(np.ones(2), size=(50, 2))
    closed_form = matrices[:, 1, 0] / (matrices[:, 0, 1] + matrices[:, 1, 0])
    np.testing.assert_allclose(sbc.stationary(matrices)[:, 0], closed_form, atol=1e-12)


def test_state_divergences_match_the_gaussian_closed_form():
    """Two Gaussian states with one noise scale s: J = E_x[(dw x + db)^2] / s^2 over the inputs;
    identical states: J = 0 exactly."""
    sbc = _load("sbc")
    params = sample_prior(jax.random.PRNGKey(3), get_family("gaussian"), 2, 1, Priors())
    params = jax.tree.map(lambda value: np.asarray(value, dtype=float), params)
    params = params._replace(
        weights=np.array([[0.3], [-0.2]]), biases=np.array([0.1, 0.5]), scales=np.array([0.8, 0.8])
    )
    inputs = np.asarray(jax.random.normal(jax.random.PRNGKey(4), (5, 100, 1)))
    divergences = sbc.state_divergences(params, inputs, jax.random.PRNGKey(5))
    expected = np.mean((0.5 * inputs[..., 0] - 0.4) ** 2) / 0.8**2
    assert divergences.shape == (2, 2) and np.allclose(np.diag(divergences), 0.0)
    np.testing.assert_allclose(divergences[0, 1], expected, rtol=0.05)
    identical = params._replace(weights=np.array([[0.3], [0.3]]), biases=np.array([0.1, 0.1]))
    np.testing.assert_allclose(sbc.state_divergences(identical, inputs, jax.random.PRNGKey(5)), 0.0, atol=1e-9)


def test_stationary_columns_describe_truth_and_posterior():
    """The truth's sorted stationary probabilities, the diagonal in that order, the least visited
    state's share, and the posterior mean of the sorted stationary probabilities."""
    sbc = _load("sbc")
    params = sample_prior(jax.random.PRNGKey(0), get_family("gaussian"), 2, 1, Priors())
    params = jax.tree.map(lambda value: np.asarray(value, dtype=float), params)
    truth = params._replace(transition_matrix=np.array([[0.6, 0.4], [0.1, 0.9]]))  # pi = (0.2, 0.8)
    draws = jax.tree.map(lambda value: np.repeat(value[None], 6, axis=0), truth)
    draws = draws._replace(
        transition_matrix=np.stack([truth.transition_matrix, truth.transition_matrix[::-1, ::-1]] * 3)
    )
    states = np.array([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
    columns = sbc.stationary_columns(truth, draws, states, np.array([[0.0, 2.5], [2.5, 0.0]]), num_chains=2)
    assert columns["true_stationary_sorted_0"] == pytest.approx(0.2)
    assert columns["true_stationary_sorted_1"] == pytest.approx(0.8)
    assert (columns["true_transition_diag_0"], columns["true_transition_diag_1"]) == (0.6, 0.9)
    assert columns["true_min_divergence"] == 2.5 and columns["true_min_occupancy"] == pytest.approx(0.1)
    assert columns["posterior_mean_stationary_sorted_0"] == pytest.approx(0.2)  # relabeled draws sort alike
    assert columns["posterior_sd_stationary_sorted_0"] == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(columns["ess_stationary_sorted_0"])  # constant draws: no ESS


def test_stationary_subsets_split_the_ranks():
    """Rank tests within subsets: the counts add up, a subset of ranks at L has a large z."""
    sbc = _load("sbc")
    rows = [
        {
            "rank_stationary_sorted_0": 19 if i < 20 else i % 20,
            "rank_stationary_sorted_1": 0 if i < 20 else 19 - i % 20,
            "true_min_divergence": 0.01 if i < 20 else 5.0 + i,
            "true_stationary_sorted_0": 0.05 if i < 20 else 0.3,
            "true_min_occupancy": 0.2,
            "posterior_mean_stationary_sorted_0": 0.3,
        }
        for i in range(120)
    ]
    subsets = sbc.stationary_subsets(rows, 19, identical_below=1.0)
    table = {entry["subset"]: entry for entry in subsets["stationary_sorted_0"]}
    assert table["all"]["n"] == 120
    identical, distinct = table["nearly identical states (J < 1)"], table["distinct states (J >= 1)"]
    assert identical["n"] == 20 and distinct["n"] == 100
    assert identical["mean_rank_z"] > 5 and distinct["mean_rank_z"] == pytest.approx(0.0)
    assert distinct["p_value"] == pytest.approx(1.0)
    assert table["true pi_min < 0.1"]["n"] == 20 and table["posterior mean pi_min in [0.25, 0.5]"]["n"] == 120
    assert subsets["stationary_sorted_1"][1]["mean_rank_z"] < -5


def test_exact_posterior_ranks_are_uniform_but_not_given_the_truth():
    """Issue 15: with exact posterior draws (observed states, conjugate Dirichlet rows) the ranks
    of the sorted stationary probability are uniform overall and given the data (the posterior
    mean), but a subset chosen by the true value is not: a true pi_min < 0.1 ranks low."""
    sbc = _load("sbc")
    rows = sbc.exact_stationary_rows(0, 600, num_timesteps=10, rank_draws=19)
    assert all(0 <= row["rank_stationary_sorted_0"] <= 19 for row in rows)
    table = {entry["subset"]: entry for entry in sbc.stationary_subsets(rows, 19)["stationary_sorted_0"]}
    assert abs(table["all"]["mean_rank_z"]) < 3.5 and table["all"]["p_value"] > 1e-3
    assert abs(table["posterior mean pi_min in [0.25, 0.5]"]["mean_rank_z"]) < 3.5
    assert table["true pi_min < 0.1"]["mean_rank_z"] < -3.5
