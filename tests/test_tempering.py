"""Parallel tempering: the exchange round, the ladders, and the tempered runner against exact mode masses."""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy import integrate, stats

from bayes_glmhmm.sampler import run_nuts
from bayes_glmhmm.tempering import geometric_ladder, swap_round, tempering_ladder, validated_ladder

# --- one exchange round ------------------------------------------------------------------------------


def test_swap_round_proposes_the_pairs_of_its_parity_only():
    log_likelihoods = jnp.array([0.0, 50.0, 100.0, 150.0, 200.0])  # every exchange is favourable: accepted
    temperatures = jnp.array([1.0, 0.5, 0.25, 0.125, 0.0625])
    even = swap_round(jax.random.PRNGKey(0), log_likelihoods, temperatures, jnp.int32(0))
    np.testing.assert_array_equal(even.proposed, [True, False, True, False])
    np.testing.assert_array_equal(even.accepted, [True, False, True, False])
    np.testing.assert_array_equal(even.permutation, [1, 0, 3, 2, 4])
    odd = swap_round(jax.random.PRNGKey(0), log_likelihoods, temperatures, jnp.int32(1))
    np.testing.assert_array_equal(odd.proposed, [False, True, False, True])
    np.testing.assert_array_equal(odd.permutation, [0, 2, 1, 4, 3])


def test_swap_round_never_exchanges_a_state_whose_likelihood_is_nan():
    round_ = swap_round(jax.random.PRNGKey(0), jnp.array([0.0, jnp.nan]), jnp.array([1.0, 0.5]), jnp.int32(0))
    assert not bool(round_.accepted[0])
    np.testing.assert_array_equal(round_.permutation, [0, 1])


def test_swap_round_accepts_with_the_replica_exchange_probability():
    """Over 20,000 seeded rounds, pair (0, 1) is exchanged with probability
    min(1, exp((beta_0 - beta_1)(l_1 - l_0))) = exp(0.6 * -1.5) = 0.4066; the frequency's standard
    error is 0.0035, so 4 SE = 0.014 separates it from a rule with the sign or the factor wrong
    (exp(-1.5) = 0.22, exp(+0.9) capped at 1)."""
    log_likelihoods = jnp.array([-10.0, -11.5])
    temperatures = jnp.array([1.0, 0.4])
    keys = jax.random.split(jax.random.PRNGKey(3), 20_000)
    accepted = jax.vmap(lambda key: swap_round(key, log_likelihoods, temperatures, jnp.int32(0)).accepted[0])(keys)
    expected = np.exp(0.6 * -1.5)
    standard_error = np.sqrt(expected * (1 - expected) / keys.shape[0])
    assert abs(float(accepted.mean()) - expected) < 4 * standard_error


# --- ladders -------------------------------------------------------------------------------------------


def test_geometric_ladder_spaces_log_temperatures_evenly():
    ladder = geometric_ladder(4, 0.001)
    np.testing.assert_allclose(ladder, [1.0, 0.1, 0.01, 0.001])
    assert geometric_ladder(1, 0.5) == (1.0,)


@pytest.mark.parametrize(
    ("ladder", "message"),
    [((0.5, 0.2), "start at 1.0"), ((1.0, 0.5, 0.5), "strictly decreasing"), ((1.0, 0.0), r"in \(0, 1\]")],
)
def test_invalid_ladders_are_rejected_by_name(ladder, message):
    with pytest.raises(ValueError, match=message):
        validated_ladder(ladder)
    with pytest.raises(ValueError, match="^tempering: .*" + message):
        tempering_ladder(ladder)


def test_tempering_argument_forms():
    assert tempering_ladder(None) is None and tempering_ladder(1) is None and tempering_ladder([1.0]) is None
    assert len(tempering_ladder(5)) == 5
    assert tempering_ladder((1.0, 0.3)) == (1.0, 0.3)
    for bad in (0, -2, True, "4", 0.5):
        with pytest.raises(ValueError, match="tempering"):
            tempering_ladder(bad)


# --- the tempered runner against exact mode masses ---------------------------------------------------

#: A bimodal posterior with known masses: x ~ Normal(PRIOR_MEAN, PRIOR_SCALE), y_i ~ Normal(x^2, NOISE).
#: The data put the modes at x = +-4; the prior's shift gives them unequal masses. Between the modes
#: the likelihood drops by ~ sum (y_i - 0)^2 / (2 NOISE^2) = 4 * 16^2 / 8 = 128 nats, which NUTS
#: never crosses; at beta = 0.01 the drop is 1.3 nats.
PRIOR_MEAN, PRIOR_SCALE, NOISE = 0.5, 3.0, 2.0
OBSERVATIONS = np.array([15.0, 16.5, 16.0, 16.5])


def _bimodal_model(emissions, sequence_axis_name=None, likelihood_temperature=None):
    x = numpyro.sample("x", dist.Normal(PRIOR_MEAN, PRIOR_SCALE))
    log_likelihood = dist.Normal(x**2, NOISE).log_prob(emissions).sum()
    if likelihood_temperature is not None:
        log_likelihood = likelihood_temperature * log_likelihood
    numpyro.factor("log_likelihood", log_likelihood)


def _exact_positive_mass() -> float:
    def density(x):
        return stats.norm.pdf(x, PRIOR_MEAN, PRIOR_SCALE) * np.prod(stats.norm.pdf(OBSERVATIONS, x**2, NOISE))

    positive, _ = integrate.quad(density, 0, 10, points=[4.0], epsabs=0)
    negative, _ = integrate.quad(density, -10, 0, points=[-4.0], epsabs=0)
    return positive / (positive + negative)


def _bimodal_run(temperatures, chain_method="vectorized", num_warmup=500, num_samples=2000):
    return run_nuts(
        jax.random.PRNGKey(5),
        {"x": jnp.full((2,), 4.0)},  # both chains start in the + mode
        _bimodal_model,
        {"emissions": jnp.asarray(OBSERVATIONS, jnp.float32)},
        {},
        num_warmup=num_warmup,
        num_samples=num_samples,
        chain_method=chain_method,
        temperatures=temperatures,
    )


@pytest.fixture(scope="module")
def tempered_bimodal_run():
    return _bimodal_run(geometric_ladder(8, 0.005))


def test_tempering_recovers_the_exact_mode_masses(tempered_bimodal_run):
    """The beta = 1 draws put the exact (quadrature) mass, 0.61, on the + mode, within 4 Monte Carlo
    standard errors (the indicator's ESS over 2 chains x 2000 draws); plain NUTS from the same start
    puts all its draws there (mass 1), so the test fails for a sampler that does not exchange or that
    exchanges with a wrong acceptance rule."""
    exact = _exact_positive_mass()
    assert 0.55 < exact < 0.7  # the prior's shift makes the masses unequal
    indicator = (tempered_bimodal_run.samples["x"] > 0).astype(float)
    estimate = float(indicator.mean())
    ess = float(az.ess(indicator))
    assert ess > 100, ess
    assert abs(estimate - exact) < 4 * np.sqrt(exact * (1 - exact) / ess), (estimate, exact, ess)
    assert float(az.rhat(indicator)) < 1.05
    plain = _bimodal_run(None)
    assert np.all(plain.samples["x"] > 0)


def test_tempered_run_reports_its_ladder_and_cost(tempered_bimodal_run):
    draws = tempered_bimodal_run
    assert draws.samples["x"].shape == (2, 2000) and draws.potential_energy.shape == (2, 2000)
    assert len(draws.temperatures) == 8 and draws.temperatures[0] == 1.0
    assert draws.swap_acceptance.shape == (2, 7)
    assert np.all((draws.swap_acceptance > 0.05) & (draws.swap_acceptance <= 1.0))
    # All 8 rungs' leapfrog steps: more than the cold rung's alone, at most 8 rungs x its maximum.
    cold = draws.warmup_num_steps + draws.num_steps.sum(axis=1)
    assert np.all(draws.ladder_num_steps > cold)


def test_chain_methods_run_the_same_ladders():
    """One device per ladder (2 host devices), the ladders one after the other, and all rungs batched
    run the same chains: rung r of ladder c has the same key, start and exchange draws either way, so
    over 10 + 10 steps (before rounding differences can grow) the draws and exchanges agree."""
    ladder = geometric_ladder(4, 0.01)
    runs = {method: _bimodal_run(ladder, method, 10, 10) for method in ("sequential", "parallel", "vectorized")}
    reference = runs["sequential"]
    assert np.ptp(reference.samples["x"]) > 0.1  # the chains move
    for method, draws in runs.items():
        np.testing.assert_allclose(draws.samples["x"], reference.samples["x"], rtol=1e-4, atol=1e-4, err_msg=method)
        np.testing.assert_array_equal(draws.swap_acceptance, reference.swap_acceptance, err_msg=method)
        np.testing.assert_array_equal(draws.ladder_num_steps, reference.ladder_num_steps, err_msg=method)


# --- fit_nuts(tempering=...) ---------------------------------------------------------------------------


def test_a_tempered_fit_records_its_ladder_and_a_gap_in_it_is_a_problem(tmp_path):
    """A ladder with one huge step (beta 1 -> 1e-4) cannot exchange: the fit records the ladder, its
    near-zero acceptance and all rungs' cost, and the verdict names the gap; the record survives
    the netCDF round trip, so the verdict is the same after it."""
    from bayes_glmhmm import ConvergenceWarning, fit_nuts
    from bayes_glmhmm.convert import posterior_from_inference_data

    generator = np.random.default_rng(0)
    inputs = generator.normal(size=(2, 30, 1))
    emissions = np.where(np.arange(30) < 15, 2.0, -2.0) + inputs[..., 0] + generator.normal(size=(2, 30))
    with pytest.warns(ConvergenceWarning, match="the tempering ladder has gaps: states rarely move between rungs 0-1"):
        posterior = fit_nuts(
            inputs,
            emissions,
            2,
            num_chains=2,
            num_warmup=40,
            num_samples=40,
            em_restarts=2,
            progress_bar=False,
            tempering=(1.0, 1e-4),
        )
    record = posterior.settings["tempering"]
    assert record["temperatures"] == [1.0, 1e-4]
    assert record["swap_acceptance"][0] < 0.05
    cold = np.asarray(posterior.settings["warmup_gradients"]) + posterior.sample_stats["n_steps"].sum(axis=1)
    assert np.all(np.asarray(record["ladder_gradients"]) > cold)
    assert posterior.samples["weights"].shape == (2, 40, 2, 1)
    problems = posterior.diagnostics()["problems"]
    path = tmp_path / "tempered.nc"
    posterior.to_arviz().to_netcdf(path)
    reloaded = posterior_from_inference_data(az.from_netcdf(path))
    assert reloaded.settings["tempering"] == record
    assert reloaded.diagnostics()["problems"] == problems
