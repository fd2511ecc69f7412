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
