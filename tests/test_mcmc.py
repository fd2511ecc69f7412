import jax
import numpy as np
import pytest

from bayes_glmhmm import (
    GLMHMMParams,
    Posterior,
    Priors,
    article_params,
    detect_stuck_chains,
    fit_nuts,
    log_likelihood,
    match_params,
    simulate,
    smoothed_state_probs,
)
from bayes_glmhmm.mcmc import PARAM_NAMES


@pytest.fixture(scope="module")
def handmade_posterior():
    """A Posterior of two hand-picked parameter sets, each repeated: every oracle is exact here."""
    truth = article_params()
    other = GLMHMMParams(
        np.array([0.6, 0.2, 0.2]),
        np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]]),
        np.array([[0.7], [-0.5], [0.0]]),
        np.array([1.5, -0.5, 0.3]),
        np.array([1.2, 1.2, 1.0]),
    )
    inputs = jax.random.uniform(jax.random.PRNGKey(0), (2, 25, 1), minval=1.0, maxval=10.0)
    _, emissions = simulate(jax.random.PRNGKey(1), truth, inputs)
    num_draws = 2000
    samples = {
        name: np.stack(
            [
                np.broadcast_to(np.asarray(getattr(p, name), np.float32), (num_draws,) + np.shape(getattr(p, name)))
                for p in (truth, other)
            ]
        )
        for name in PARAM_NAMES
    }
    stats = {"lp": np.zeros((2, num_draws)), "diverging": np.zeros((2, num_draws), bool)}
    posterior = Posterior(
        samples=samples,
        permutations=np.broadcast_to(np.arange(3), (2, num_draws, 3)).copy(),
        sample_stats=stats,
        inputs=np.asarray(inputs),
        emissions=np.asarray(emissions),
        mask=np.ones(emissions.shape, bool),
        num_states=3,
        priors=Priors(),
    )
    return posterior, (truth, other)


def test_state_probabilities_average_the_smoother_over_draws(handmade_posterior):
    posterior, (truth, other) = handmade_posterior
    expected = 0.5 * (
        smoothed_state_probs(truth, posterior.inputs, posterior.emissions)
        + smoothed_state_probs(other, posterior.inputs, posterior.emissions)
    )
    np.testing.assert_allclose(posterior.state_probabilities(), expected, atol=1e-5)


def test_uneven_chunks_of_draws_are_exact_and_compile_one_program(handmade_posterior):
    """4000 draws in chunks of at most 1500 are three chunks of 1334, the last padded with two
    repeats of the final draw: the repeats must count 0 in the average (an error of up to ~2.5e-4
    if they counted, against atol 5e-5, above the float32 rounding of sums of 1334 draws) and be
    cut from per-draw outputs, and one program serves every chunk."""
    from bayes_glmhmm.posterior import _equal_draw_chunks, _loglik_per_draw, _smoothed_sum

    chunks = list(_equal_draw_chunks(4000, 1500))
    assert [(start, stop) for start, stop, _ in chunks] == [(0, 1334), (1334, 2668), (2668, 4000)]
    assert {indices.size for _, _, indices in chunks} == {1334}
    assert chunks[-1][2][-3:].tolist() == [3999, 3999, 3999]
    posterior, (truth, other) = handmade_posterior
    inputs, emissions = posterior.inputs, posterior.emissions
    expected = 0.5 * (smoothed_state_probs(truth, inputs, emissions) + smoothed_state_probs(other, inputs, emissions))
    compiled_before = _smoothed_sum._cache_size()
    np.testing.assert_allclose(posterior.state_probabilities(chunk_size=1500), expected, atol=5e-5)
    assert _smoothed_sum._cache_size() - compiled_before == 1
    mask = np.ones(emissions.shape, bool)
    compiled_before = _loglik_per_draw._cache_size()
    per_draw = posterior._per_draw(lambda p: _loglik_per_draw(p, inputs, emissions, mask), chunk_size=1500)
    assert _loglik_per_draw._cache_size() - compiled_before == 1
    assert per_draw.shape == (2, 2000, 2)
    np.testing.assert_allclose(per_draw[1, -1], log_likelihood(other, inputs, emissions), rtol=1e-5)
    np.testing.assert_allclose(per_draw[0, -1], log_likelihood(truth, inputs, emissions), rtol=1e-5)


def test_log_likelihood_per_draw(handmade_posterior):
    posterior, (truth, other) = handmade_posterior
    per_draw = posterior.log_likelihood()
    assert per_draw.shape == (2, 2000, 2)
    np.testing.assert_allclose(per_draw[0, 7], log_likelihood(truth, posterior.inputs, posterior.emissions), rtol=1e-5)
    np.testing.assert_allclose(per_draw[1, 3], log_likelihood(other, posterior.inputs, posterior.emissions), rtol=1e-5)


def test_ffbs_draw_frequencies_match_state_probabilities(handmade_posterior):
    """Each draw's FFBS path is exact, so marginal frequencies over 4000 draws estimate
    state_probabilities with binomial standard error sqrt(p (1 - p) / 4000) <= 0.008; we allow
    5 standard errors (plus 0.002 for p near 0 or 1) over 150 cells, seeded."""
    posterior, _ = handmade_posterior
    states = posterior.sample_states(jax.random.PRNGKey(4))
    assert states.shape == (2, 2000, 2, 25)
    frequencies = np.stack([(states == k).mean(axis=(0, 1)) for k in range(3)], axis=-1)
    probabilities = posterior.state_probabilities()
    tolerance = 5 * np.sqrt(probabilities * (1 - probabilities) / 4000) + 0.002
    assert np.all(np.abs(frequencies - probabilities) <= tolerance)


def test_chunks_spread_over_devices_give_the_values_of_one_device(handmade_posterior, monkeypatch):
    """The suite runs with 2 host devices, so every chunk of draws is split over both
    (posterior.spread_draws). Per draw nothing changes: FFBS paths (the same per-draw keys) are
    bitwise those of one device and log-likelihoods equal; the state probabilities, float32 sums
    over chunks of 500 draws added in another order, agree to the worst-case rounding of such a
    sum, 500 x 2^-24 = 3e-5 (measured 6e-6). A chunk the devices do not divide, and one device,
    leave the chunk where it is."""
    import bayes_glmhmm.posterior as posterior_module

    posterior, _ = handmade_posterior
    assert jax.local_device_count() == 2
    assert len(posterior_module.spread_draws(np.zeros((6, 3))).sharding.device_set) == 2
    assert isinstance(posterior_module.spread_draws(np.zeros((5, 3))), np.ndarray)
    assert posterior_module._equal_chunk_size(7, 7) == 8  # rounded up to a multiple of the devices
    key = jax.random.PRNGKey(5)
    spread = posterior.sample_states(key), posterior.log_likelihood(), posterior.state_probabilities()
    monkeypatch.setattr(posterior_module, "spread_draws", lambda chunk: chunk)
    single = posterior.sample_states(key), posterior.log_likelihood(), posterior.state_probabilities()
    np.testing.assert_array_equal(spread[0], single[0])
    np.testing.assert_array_equal(spread[1], single[1])
    np.testing.assert_allclose(spread[2], single[2], atol=3e-5)
    monkeypatch.setattr(jax, "local_devices", lambda: jax.devices()[:1])
    assert isinstance(posterior_module.spread_draws(np.zeros((6, 3))), np.ndarray)


def _exact_predictive_moments(params, inputs):
    """Mean and variance of y_t under p(y | x, theta) with fresh states: a mixture over p(z_t | theta)."""
    state_probs = [np.asarray(params.initial_probs, float)]
    for _ in range(inputs.shape[1] - 1):
        state_probs.append(state_probs[-1] @ np.asarray(params.transition_matrix, float))
    state_probs = np.stack(state_probs)  # (T, K)
    means = np.asarray(inputs, float) @ np.asarray(params.weights, float).T + np.asarray(params.biases, float)
    second = means**2 + np.asarray(params.scales, float) ** 2
    mean = np.sum(state_probs * means, axis=-1)
    return mean, np.sum(state_probs * second, axis=-1) - mean**2


def test_posterior_predictive_matches_the_exact_mixture_moments(handmade_posterior):
    """Replicated emissions draw fresh states and noise per draw: over the 4000 draws of the two
    parameter sets, their mean and variance at every (n, t) are those of the equal mixture of the
    two exact predictive distributions. Tolerance: 5 standard errors of each Monte Carlo estimate
    (mean: sd / sqrt(4000); variance: var * sqrt(2 / 4000) plus a kurtosis allowance of 2x)."""
    posterior, (truth, other) = handmade_posterior
    replicated = posterior.posterior_predictive(jax.random.PRNGKey(2))
    assert replicated.shape == (2, 2000, 2, 25)
    flat = replicated.reshape(4000, 2, 25).astype(float)
    (mean_a, var_a), (mean_b, var_b) = (_exact_predictive_moments(p, posterior.inputs) for p in (truth, other))
    mean = (mean_a + mean_b) / 2
    variance = (var_a + mean_a**2 + var_b + mean_b**2) / 2 - mean**2
    assert np.all(np.abs(flat.mean(axis=0) - mean) <= 5 * np.sqrt(variance / 4000))
    assert np.all(np.abs(flat.var(axis=0) - variance) <= 5 * 2 * variance * np.sqrt(2 / 4000))
    # Each chain holds one parameter set: its draws follow that set's mixture, not the other's.
    assert np.abs(replicated[0].mean(axis=0) - mean_a).max() < np.abs(replicated[0].mean(axis=0) - mean_b).max()


def test_small_fit_converges_and_recovers(small_posterior, small_article_data):
    posterior = small_posterior
    diagnostics = posterior.diagnostics()
    assert set(posterior.samples) == set(PARAM_NAMES)
    assert posterior.samples["weights"].shape == (2, 200, 3, 1)
    assert posterior.samples["transition_matrix"].shape == (2, 200, 3, 3)
    assert posterior.permutations.shape == (2, 200, 3)
    for name in ("diverging", "energy", "n_steps", "tree_depth", "step_size", "lp"):
        assert posterior.sample_stats[name].shape == (2, 200), name
    # 200 draws x 2 chains from an EM start: a healthy run is far below the 1.1 alarm level.
    assert diagnostics["max_rhat"] < 1.05
    assert diagnostics["min_ess_bulk"] > 100
    assert diagnostics["stuck_chains"] == []
    aligned = posterior.permute(match_params(posterior.posterior_mean(), small_article_data.params))
    np.testing.assert_allclose(aligned.posterior_mean().weights, small_article_data.params.weights, atol=0.2)
    # permute composes the stored permutations and moves the EM estimate along.
    assert aligned.permutations.shape == posterior.permutations.shape
    assert np.allclose(
        aligned.em.params.weights,
        posterior.em.params.permute(match_params(posterior.posterior_mean(), small_article_data.params)).weights,
    )


def test_new_data_state_probabilities(small_posterior, small_article_data):
    data = small_article_data
    probabilities = small_posterior.state_probabilities(data.sine_inputs, data.sine_emissions)
    assert probabilities.shape == (1, 60, 3)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="inputs and emissions"):
        small_posterior.state_probabilities(data.sine_inputs)


def test_fewer_new_sequences_reuse_the_fitted_programs_and_match_the_fitted_values(small_posterior, small_article_data):
    """New data of fewer sequences are padded to the fit's shape: same values, no program of their own."""
    from bayes_glmhmm.posterior import _loglik_per_draw, _smoothed_sum

    data = small_article_data
    fitted_probabilities = small_posterior.state_probabilities()
    fitted_loglik = small_posterior.log_likelihood()
    compiled = _smoothed_sum._cache_size(), _loglik_per_draw._cache_size()
    mask = np.ones(data.emissions[1:3].shape, bool)
    mask[0, 10:20] = False  # a missing stretch: the padding must not disturb the real sequences' masks
    probabilities = small_posterior.state_probabilities(data.inputs[1:3], data.emissions[1:3], mask)
    loglik = small_posterior.log_likelihood(data.inputs[1:3], data.emissions[1:3])
    assert (_smoothed_sum._cache_size(), _loglik_per_draw._cache_size()) == compiled
    assert probabilities.shape == (2, 60, 3) and loglik.shape == fitted_loglik.shape[:2] + (2,)
    np.testing.assert_allclose(loglik, fitted_loglik[..., 1:3], rtol=1e-6)
    np.testing.assert_allclose(probabilities[1], fitted_probabilities[2], atol=1e-6)
    assert np.abs(probabilities[0] - fitted_probabilities[1]).max() > 1e-3  # the mask was applied
    unmasked = small_posterior.state_probabilities(data.inputs[1:3], data.emissions[1:3])
    np.testing.assert_allclose(unmasked, fitted_probabilities[1:3], atol=1e-6)


def test_detect_stuck_chains():
    rng = np.random.default_rng(0)
    healthy = -100 + rng.standard_normal((4, 500)) * 3
    assert detect_stuck_chains(healthy)[0] == []
    stuck = healthy.copy()
    stuck[2] -= 60.0  # a merged-states mode sits tens of nats lower
    flagged, threshold = detect_stuck_chains(stuck)
    assert flagged == [2]
    assert 5.0 <= threshold < 60.0


def test_drop_chains(small_posterior):
    dropped = small_posterior.drop_chains([0])
    assert dropped.num_chains == 1
    np.testing.assert_array_equal(dropped.samples["biases"], small_posterior.samples["biases"][1:])
    with pytest.raises(ValueError, match="chains"):
        small_posterior.drop_chains([0, 1])


MERGED_MODE_PLACEHOLDER = object()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_states=0), "num_states"),
        (dict(num_states=2.5), "num_states"),
        (dict(num_states=3, num_chains=0), "num_chains"),
        (dict(num_states=3, num_samples=0), "num_samples"),
        (dict(num_states=3, priors=Priors(weight_scale=0.0)), "weight_scale"),
        (dict(num_states=3, init="random"), "init"),
        (dict(num_states=3, on_stuck="ignore"), "on_stuck"),
        (dict(num_states=3, chain_method="threads"), "chain_method"),
        (dict(num_states=3, family="binomial"), "family must be one of"),
        (dict(num_states=3, family="bernoulli"), "emissions for the bernoulli family"),
        (dict(num_states=3, family="gaussian", num_classes=3), "num_classes applies to the categorical"),
        (dict(num_states=3, family="bernoulli", init=MERGED_MODE_PLACEHOLDER), "BernoulliGLMHMMParams"),
    ],
)
def test_bad_arguments_raise(small_article_data, kwargs, message):
    data = small_article_data
    if kwargs.get("init") is MERGED_MODE_PLACEHOLDER:  # Gaussian params given for another family
        kwargs = {**kwargs, "init": MERGED_MODE}
        data = data._replace(emissions=(data.emissions > 0).astype(float))
    with pytest.raises(ValueError, match=message):
        fit_nuts(data.inputs, data.emissions, **kwargs)


def test_bad_data_raise(small_article_data):
    data = small_article_data
    bad = data.emissions.copy()
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match="emissions"):
        fit_nuts(data.inputs, bad, 3)
    with pytest.raises(ValueError, match="inputs"):
        fit_nuts(data.inputs[:, :-1], data.emissions, 3)
    with pytest.raises(ValueError, match="mask"):
        fit_nuts(data.inputs, data.emissions, 3, mask=np.ones((2, 2), bool))


# A merged-states mode of the article's data (seed 0): the posterior mean of a chain that NUTS left
# stuck there from NumPyro's default random initialization (measured: 3 of 16 such chains, 683
# nats below the main mode). One wide-noise state absorbs two belts.
MERGED_MODE = GLMHMMParams(
    initial_probs=np.array([0.121, 0.693, 0.186]),
    transition_matrix=np.array([[0.233, 0.351, 0.416], [0.05, 0.911, 0.039], [0.215, 0.575, 0.21]]),
    weights=np.array([[0.158], [0.247], [0.253]]),
    biases=np.array([0.226, 0.196, -0.459]),
    scales=np.array([0.684, 5.926, 0.624]),
)


@pytest.mark.slow
def test_chain_started_in_merged_mode_is_detected():
    from bayes_glmhmm import article_data

    data = article_data(jax.random.PRNGKey(0))
    with pytest.warns(UserWarning, match="stuck"):
        posterior = fit_nuts(
            data.inputs,
            data.emissions,
            3,
            init=[data.params, MERGED_MODE],
            num_chains=2,
            num_warmup=300,
            num_samples=300,
            seed=2,
            progress_bar=False,
        )
    assert posterior.stuck_chains == [1]
    medians = np.median(posterior.sample_stats["lp"], axis=1)
    assert medians[0] - medians[1] > 100
    kept = posterior.drop_chains(posterior.stuck_chains)
    assert kept.num_chains == 1
    np.testing.assert_allclose(np.sort(kept.posterior_mean().weights[:, 0]), [-0.8, 0.2, 1.0], atol=0.1)


def test_user_init_is_validated(small_article_data):
    data = small_article_data
    with pytest.raises(ValueError, match="one GLMHMMParams per chain"):
        fit_nuts(data.inputs, data.emissions, 3, init=[MERGED_MODE], num_chains=2)
    with pytest.raises(ValueError, match="init.weights"):
        fit_nuts(data.inputs, data.emissions, 3, init=MERGED_MODE._replace(weights=np.zeros((3, 2))), num_chains=1)
    with pytest.raises(ValueError, match="init"):
        fit_nuts(data.inputs, data.emissions, 3, init=5)


def test_same_seed_gives_bitwise_identical_draws(small_article_data, small_posterior):
    data = small_article_data
    again = fit_nuts(
        data.inputs, data.emissions, 3, num_chains=2, num_warmup=200, num_samples=200, seed=1, progress_bar=False
    )
    for name in PARAM_NAMES:
        np.testing.assert_array_equal(again.samples[name], small_posterior.samples[name], err_msg=name)
    np.testing.assert_array_equal(again.sample_stats["lp"], small_posterior.sample_stats["lp"])
    key = jax.random.PRNGKey(9)
    np.testing.assert_array_equal(again.sample_states(key), small_posterior.sample_states(key))


@pytest.mark.slow
def test_one_sequence_of_100000_steps():
    """Memory and numerics at T = 1e5: the scan stores (T, K) per sequence, the Kahan-summed
    likelihood stays exact in float32, and 1e5 observations pin the weights to ~0.003."""
    truth = article_params()
    inputs = jax.random.uniform(jax.random.PRNGKey(0), (1, 100_000, 1), minval=1.0, maxval=10.0)
    states, emissions = simulate(jax.random.PRNGKey(1), truth, inputs)
    posterior = fit_nuts(
        inputs, emissions, 3, num_chains=1, num_warmup=100, num_samples=100, em_restarts=3, seed=0, progress_bar=False
    )
    assert np.all(np.isfinite(posterior.sample_stats["lp"]))
    aligned = posterior.permute(match_params(posterior.posterior_mean(), truth))
    np.testing.assert_allclose(aligned.posterior_mean().weights, truth.weights, atol=0.03)
    probabilities = aligned.state_probabilities(chunk_size=20)
    assert probabilities.shape == (1, 100_000, 3)
    assert np.mean(probabilities.argmax(-1) == np.asarray(states)) > 0.9


def test_assign_chains_to_optima():
    """Chain 0 at the best optimum, the others in turn over the optima within the window, best first."""
    from bayes_glmhmm.fit import assign_chains_to_optima

    objectives = np.array([-10.0, -14.0, -30.0, -10.5])  # not sorted: the best first is the function's job
    np.testing.assert_array_equal(assign_chains_to_optima(objectives, 5.0, 4), [0, 3, 1, 0])
    np.testing.assert_array_equal(assign_chains_to_optima(objectives, 1.0, 5), [0, 3, 0, 3, 0])
    np.testing.assert_array_equal(assign_chains_to_optima(objectives, 0.0, 4), [0, 0, 0, 0])
    np.testing.assert_array_equal(assign_chains_to_optima(objectives, 100.0, 1), [0])
    np.testing.assert_array_equal(assign_chains_to_optima(np.array([-3.0]), 5.0, 3), [0, 0, 0])


def _tiny_start_data(key: int, variant: str):
    """Two sequences of 40 and 30 steps of the article's generator, prepared as fit_nuts prepares them."""
    from bayes_glmhmm import article_data
    from bayes_glmhmm.emissions import resolve_family
    from bayes_glmhmm.fit import _prepared_data

    data = article_data(jax.random.PRNGKey(key), variant=variant, num_sequences=2, num_timesteps=40)
    family = resolve_family("gaussian")
    prepared = _prepared_data(data.inputs, data.emissions, None, np.array([40, 30]), 3, family, "auto")
    return data, family, prepared


def _em_starts_of(prepared, family, num_chains: int, jitter: float):
    from bayes_glmhmm.fit import _starting_points
    from bayes_glmhmm.transitions import STATIONARY

    key = jax.random.PRNGKey(5)
    return _starting_points(key, "em", prepared, family, 3, Priors(), num_chains, 10, 0, jitter, STATIONARY)


def test_tiny_data_chains_start_from_distinct_em_optima():
    """On 2 x (40, 30) rows whose EM restarts reach two optima 0.2 nats apart, the chains start from both."""
    from bayes_glmhmm import fit_em
    from bayes_glmhmm.em import distinct_optima

    data, family, prepared = _tiny_start_data(3, "code")
    em = fit_em(prepared.inputs, prepared.emissions, 3, mask=prepared.mask, priors=Priors(), seed=0, standardize=False)
    optima = distinct_optima(em.restart_log_probs, em.restart_params)
    assert len(optima.objectives) >= 2 and optima.objectives[0] - optima.objectives[1] < 1.0

    initial, em_result, record = _em_starts_of(prepared, family, 4, jitter=0.0)
    assert record["chain_optima"] == [0, 1, 0, 1]
    np.testing.assert_allclose(record["objectives"], np.round(optima.objectives, 3))
    second = np.asarray(em.restart_params.weights)[optima.restart_indices[1]]
    np.testing.assert_allclose(initial["weights"][1], second, rtol=1e-6)
    np.testing.assert_allclose(initial["weights"][0], em.params.weights, rtol=1e-6)
    assert not np.allclose(initial["weights"][0], initial["weights"][1], atol=1e-2)
    assert em_result.restart_params is None  # the fit keeps the best estimate only (its relabeling reference)

    posterior = fit_nuts(
        data.inputs,
        data.emissions,
        3,
        lengths=[40, 30],
        num_chains=2,
        num_warmup=10,
        num_samples=10,
        progress_bar=False,
    )
    assert posterior.settings["start_optima"]["chain_optima"] == [0, 1]
    assert posterior.settings["start_optima"]["window"] == 5.0


def test_single_em_optimum_leaves_the_starts_unchanged(monkeypatch):
    """Where every restart within the window is one optimum, every chain starts at the best EM estimate as before."""
    from bayes_glmhmm import fit as fit_module

    _, family, prepared = _tiny_start_data(8, "text")  # the data: the runner-up optimum is 35 nats lower
    initial, em_result, record = _em_starts_of(prepared, family, 4, jitter=0.1)
    assert record["chain_optima"] == [0, 0, 0, 0] and record["objectives"][0] - record["objectives"][1] > 30
    former = fit_module._initial_values(
        jax.random.PRNGKey(5), [em_result.params] * 4, prepared.input_mean, 0.1, prepared.inputs.dtype
    )
    for name, value in former.items():
        np.testing.assert_array_equal(initial[name], value, err_msg=name)
    monkeypatch.setattr(fit_module, "START_OPTIMA_WINDOW", 0.0)
    _, _, best_only = _em_starts_of(prepared, family, 4, jitter=0.1)
    assert best_only["chain_optima"] == [0, 0, 0, 0]
