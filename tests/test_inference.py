"""Oracle tests of the HMM kernels in :mod:`bayes_glmhmm.inference` (and the batched GLM helpers of
:mod:`bayes_glmhmm.model` built on them).

The oracles are independent of the code under test: brute-force enumeration of all K^T state paths
in NumPy float64, a float64 scaled forward algorithm written here, central finite differences, and
dynamax (an optional test dependency). The kernels run in the ambient JAX precision (float32 by
default, float64 when ``JAX_ENABLE_X64=1``); every tolerance below is sized for float32, so it also
holds, with room to spare, in float64.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from scipy.special import logsumexp
from scipy.stats import norm

from bayes_glmhmm import model
from bayes_glmhmm.inference import (
    DrivenTransitions,
    hmm_filter,
    hmm_marginal_loglik,
    hmm_marginal_loglik_batch,
    hmm_marginal_loglik_parallel,
    hmm_posterior_mode_path_log_prob,
    hmm_sample_states,
    hmm_smoother,
    hmm_viterbi,
)
from bayes_glmhmm.params import GLMHMMParams

# Module-level jitted kernels: one compilation per (shape, transition ndim), shared by all tests.
filter_jit = jax.jit(hmm_filter)
smoother_jit = jax.jit(hmm_smoother)
viterbi_jit = jax.jit(hmm_viterbi)
path_log_prob_all = jax.jit(jax.vmap(hmm_posterior_mode_path_log_prob, in_axes=(None, None, None, 0, None)))
adjoint_grad = jax.jit(jax.value_and_grad(hmm_marginal_loglik, argnums=(0, 1, 2)))
autodiff_grad = jax.jit(jax.value_and_grad(lambda *a: hmm_filter(*a).marginal_loglik, argnums=(0, 1, 2)))
ffbs_many = jax.jit(jax.vmap(hmm_sample_states, in_axes=(0, None, None, None, None)))


def with_garbage(log_likelihoods, mask):
    """Overwrite masked steps with large, state-dependent finite values.

    A constant across states would cancel from every normalized quantity (posteriors, Viterbi), so
    the garbage differs by state (+-20): any masked term that leaked in would change every result,
    while the oracle drops those terms.
    """
    garbage = np.linspace(20.0, -20.0, log_likelihoods.shape[1])
    return np.where(mask[:, None], log_likelihoods, garbage)


# ---------------------------------------------------------------------------------------------
# NumPy float64 oracles
# ---------------------------------------------------------------------------------------------


def random_hmm(seed, num_states, num_timesteps, time_varying, loglik_scale=1.5):
    """A random HMM problem in float64: initial probs, transition matrix (or stack), log-likelihoods."""
    rng = np.random.default_rng(seed)
    initial_probs = rng.dirichlet(np.ones(num_states))
    rows = (num_timesteps - 1, num_states) if time_varying else (num_states,)
    transition_matrix = rng.dirichlet(np.ones(num_states), size=rows)
    log_likelihoods = rng.normal(-1.0, loglik_scale, (num_timesteps, num_states))
    return initial_probs, transition_matrix, log_likelihoods


def enumerate_terms(initial_probs, transition_matrix, log_likelihoods, mask):
    """Every path z_{1:T} and its log terms: (paths, log p(z_1), log A per step, log p(y_t|z_t) per step)."""
    num_timesteps, num_states = log_likelihoods.shape
    paths = np.array(list(itertools.product(range(num_states), repeat=num_timesteps)))
    log_a = np.log(transition_matrix)
    if transition_matrix.ndim == 2:
        trans = log_a[paths[:, :-1], paths[:, 1:]]
    else:
        trans = log_a[np.arange(num_timesteps - 1), paths[:, :-1], paths[:, 1:]]
    emis = np.where(mask, log_likelihoods[np.arange(num_timesteps), paths], 0.0)
    return paths, np.log(initial_probs)[paths[:, 0]], trans, emis


def marginal_of(paths, log_weights, t, num_states):
    """Normalized distribution of z_t under path log-weights."""
    weights = np.exp(log_weights - log_weights.max())
    probs = np.bincount(paths[:, t], weights=weights, minlength=num_states)
    return probs / probs.sum()


def brute_force(initial_probs, transition_matrix, log_likelihoods, mask):
    """Everything the kernels compute, by enumerating all K^T paths in float64."""
    num_timesteps, num_states = log_likelihoods.shape
    paths, init, trans, emis = enumerate_terms(initial_probs, transition_matrix, log_likelihoods, mask)
    log_joint = init + trans.sum(1) + emis.sum(1)
    marginal_loglik = logsumexp(log_joint)
    posterior = np.exp(log_joint - marginal_loglik)

    # p(z_t | y_{1:t}): weight each path by its prefix joint p(z_{1:t}, y_{1:t}). Every prefix occurs
    # K^(T-1-t) times among the full paths, a constant factor that the normalization removes.
    # p(z_t | y_{1:t-1}) likewise with the emissions up to t-1 and the transitions up to t.
    filtered, predicted = [], []
    for t in range(num_timesteps):
        prefix_trans = init + trans[:, :t].sum(1)
        filtered.append(marginal_of(paths, prefix_trans + emis[:, : t + 1].sum(1), t, num_states))
        predicted.append(marginal_of(paths, prefix_trans + emis[:, :t].sum(1), t, num_states))

    smoothed = np.stack([np.bincount(paths[:, t], posterior, num_states) for t in range(num_timesteps)])
    expected_transitions = np.zeros((num_states, num_states))
    for t in range(num_timesteps - 1):
        np.add.at(expected_transitions, (paths[:, t], paths[:, t + 1]), posterior)
    return {
        "paths": paths,
        "log_joint": log_joint,
        "posterior": posterior,
        "marginal_loglik": marginal_loglik,
        "filtered": np.stack(filtered),
        "predicted": np.stack(predicted),
        "smoothed": smoothed,
        "expected_transitions": expected_transitions,
    }


def scaled_forward_float64(initial_probs, transition_matrix, log_likelihoods):
    """Textbook scaled forward algorithm (Rabiner) in float64; returns (marginal loglik, filtered)."""
    num_timesteps = log_likelihoods.shape[0]
    marginal_loglik = 0.0
    filtered = np.empty_like(log_likelihoods)
    predicted = initial_probs
    for t in range(num_timesteps):
        shift = log_likelihoods[t].max()
        alpha = predicted * np.exp(log_likelihoods[t] - shift)
        scale = alpha.sum()
        filtered[t] = alpha / scale
        marginal_loglik += np.log(scale) + shift
        predicted = filtered[t] @ transition_matrix
    return marginal_loglik, filtered


# ---------------------------------------------------------------------------------------------
# Enumeration oracle, K = 3, T = 5 (243 paths)
# ---------------------------------------------------------------------------------------------

K_SMALL, T_SMALL = 3, 5
# The masked case hides the first step (so the first emission is missing) and one interior step.
SMALL_MASK = np.array([False, True, True, False, True])


@pytest.fixture(
    scope="module",
    params=[("shared", False), ("time_varying", False), ("shared", True), ("time_varying", True)],
    ids=lambda p: f"{p[0]}-{'masked' if p[1] else 'full'}",
)
def small_case(request):
    kind, masked = request.param
    initial_probs, transition_matrix, log_likelihoods = random_hmm(
        seed=10 + 2 * (kind == "time_varying") + masked,
        num_states=K_SMALL,
        num_timesteps=T_SMALL,
        time_varying=kind == "time_varying",
    )
    mask = SMALL_MASK if masked else np.ones(T_SMALL, bool)
    log_likelihoods = with_garbage(log_likelihoods, mask)
    oracle = brute_force(initial_probs, transition_matrix, log_likelihoods, mask)
    args = (jnp.asarray(initial_probs), jnp.asarray(transition_matrix), jnp.asarray(log_likelihoods), jnp.asarray(mask))
    return args, oracle


def test_filter_marginal_loglik_matches_enumeration(small_case):
    args, oracle = small_case
    result = filter_jit(*args)
    # float32 evaluation of O(T K) operations on O(10) magnitudes: relative error ~1e-6, so
    # rtol = atol = 1e-5 is sound and still 1e4 times finer than any missing or leaked term.
    np.testing.assert_allclose(result.marginal_loglik, oracle["marginal_loglik"], rtol=1e-5, atol=1e-5)


def test_filtered_and_predicted_probs_match_enumeration(small_case):
    args, oracle = small_case
    result = filter_jit(*args)
    # Probabilities in [0, 1] computed with a handful of float32 operations: absolute error ~1e-7;
    # atol 1e-5 leaves two decades of margin.
    np.testing.assert_allclose(result.filtered_probs, oracle["filtered"], atol=1e-5)
    np.testing.assert_allclose(result.predicted_probs, oracle["predicted"], atol=1e-5)


def test_smoother_matches_enumeration(small_case):
    args, oracle = small_case
    result = smoother_jit(*args)
    # Same float32 error budget as above (probabilities ~1e-7 absolute, log-lik ~1e-6 relative).
    np.testing.assert_allclose(result.marginal_loglik, oracle["marginal_loglik"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.filtered_probs, oracle["filtered"], atol=1e-5)
    np.testing.assert_allclose(result.smoothed_probs, oracle["smoothed"], atol=1e-5)
    # Expected counts are sums of T-1 probabilities: absolute error <= (T-1) * 1e-7.
    np.testing.assert_allclose(result.expected_transitions, oracle["expected_transitions"], atol=1e-5)
    # Sanity of the oracle itself: T-1 transitions in total.
    np.testing.assert_allclose(oracle["expected_transitions"].sum(), T_SMALL - 1, rtol=1e-12)


def test_viterbi_matches_enumeration(small_case):
    args, oracle = small_case
    order = np.argsort(oracle["log_joint"])[::-1]
    best, runner_up = oracle["log_joint"][order[:2]]
    # Exact path equality is only meaningful without a near-tie: float32 errors in path scores are
    # ~1e-6, so a gap of 1e-3 makes the argmax unambiguous. (Holds for these seeds by construction.)
    assert best - runner_up > 1e-3
    path = viterbi_jit(*args)
    np.testing.assert_array_equal(path, oracle["paths"][order[0]])


def test_path_log_prob_matches_enumeration(small_case):
    args, oracle = small_case
    initial_probs, transition_matrix, log_likelihoods, mask = args
    log_probs = path_log_prob_all(initial_probs, transition_matrix, log_likelihoods, jnp.asarray(oracle["paths"]), mask)
    # Sums of T + (T-1) + 1 float32 logs of O(10): absolute error ~1e-5 at worst.
    np.testing.assert_allclose(log_probs, oracle["log_joint"], rtol=1e-5, atol=1e-5)


def test_default_mask_means_all_observed():
    initial_probs, transition_matrix, log_likelihoods = random_hmm(3, K_SMALL, T_SMALL, time_varying=False)
    args = (jnp.asarray(initial_probs), jnp.asarray(transition_matrix), jnp.asarray(log_likelihoods))
    full = jnp.ones(T_SMALL, bool)
    without, with_mask = hmm_smoother(*args), smoother_jit(*args, full)
    # Identical computations up to jit-versus-eager fusion: float32 rounding only.
    for a, b in zip(without, with_mask, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(hmm_viterbi(*args), viterbi_jit(*args, full))


# ---------------------------------------------------------------------------------------------
# dynamax as an independent implementation, K = 4, T = 200
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("time_varying", [False, True], ids=["shared", "time_varying"])
def test_agrees_with_dynamax(time_varying):
    pytest.importorskip("dynamax")
    from dynamax.hidden_markov_model.inference import hmm_smoother as dynamax_smoother

    initial_probs, transition_matrix, log_likelihoods = random_hmm(20 + time_varying, 4, 200, time_varying)
    args = (jnp.asarray(initial_probs), jnp.asarray(transition_matrix), jnp.asarray(log_likelihoods))
    ours = smoother_jit(*args, jnp.ones(200, bool))
    theirs = dynamax_smoother(*args)
    # Both run in the same precision with different operation orders. The log-likelihood (~ -500)
    # is a sum of 200 terms: random rounding gives ~sqrt(200) * 6e-8 ~ 1e-6 relative, so rtol 1e-5.
    np.testing.assert_allclose(ours.marginal_loglik, theirs.marginal_loglik, rtol=1e-5)
    # Filtering and smoothing forget their errors geometrically (mixing chain), so the per-step
    # float32 error ~1e-7 does not accumulate: atol 1e-5.
    np.testing.assert_allclose(ours.filtered_probs, theirs.filtered_probs, atol=1e-5)
    np.testing.assert_allclose(ours.smoothed_probs, theirs.smoothed_probs, atol=1e-5)
    # dynamax sums the pairwise marginals for a shared matrix and returns them per step otherwise.
    their_counts = theirs.trans_probs if theirs.trans_probs.ndim == 2 else theirs.trans_probs.sum(0)
    # Sums of 199 pairwise probabilities, each within ~1e-7: absolute error <= 199 * 1e-7 ~ 2e-5.
    np.testing.assert_allclose(ours.expected_transitions, their_counts, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Trailing padding is truncation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("time_varying", [False, True], ids=["shared", "time_varying"])
def test_trailing_padding_equals_truncation(time_varying):
    num_observed, num_total = 8, 12
    initial_probs, transition_matrix, log_likelihoods = random_hmm(30 + time_varying, 3, num_total, time_varying)
    mask = np.arange(num_total) < num_observed
    padded_ll = with_garbage(log_likelihoods, mask)
    padded = smoother_jit(
        jnp.asarray(initial_probs), jnp.asarray(transition_matrix), jnp.asarray(padded_ll), jnp.asarray(mask)
    )
    short_matrix = transition_matrix[: num_observed - 1] if time_varying else transition_matrix
    truncated = smoother_jit(
        jnp.asarray(initial_probs),
        jnp.asarray(short_matrix),
        jnp.asarray(log_likelihoods[:num_observed]),
        jnp.ones(num_observed, bool),
    )
    # Each padded step adds log(sum(predicted)) = log(1 +- 1e-7) to the log-likelihood: 4 such
    # steps change it by < 1e-6 absolute, far below atol 1e-5.
    np.testing.assert_allclose(padded.marginal_loglik, truncated.marginal_loglik, rtol=1e-6, atol=1e-5)
    # The first num_observed filter steps are the same float operations: rounding only.
    np.testing.assert_allclose(padded.filtered_probs[:num_observed], truncated.filtered_probs, atol=1e-6)
    # Padding carries no information, so smoothing over it changes nothing (betas there are uniform)...
    np.testing.assert_allclose(padded.smoothed_probs[:num_observed], truncated.smoothed_probs, atol=1e-5)
    # ...and from the last observation on, smoothed = filtered (no future evidence).
    np.testing.assert_allclose(
        padded.smoothed_probs[num_observed - 1 :], padded.filtered_probs[num_observed - 1 :], atol=1e-5
    )


# ---------------------------------------------------------------------------------------------
# FFBS draws from the exact joint posterior
# ---------------------------------------------------------------------------------------------

NUM_DRAWS = 20_000


@pytest.mark.parametrize(
    ("time_varying", "mask"),
    [(False, [True, True, True, True]), (True, [True, False, True, True])],
    ids=["shared-full", "time_varying-masked"],
)
def test_ffbs_matches_exact_path_posterior(time_varying, mask):
    num_states, num_timesteps = 3, 4
    initial_probs, transition_matrix, log_likelihoods = random_hmm(
        40 + time_varying, num_states, num_timesteps, time_varying, loglik_scale=1.0
    )
    mask = np.array(mask)
    log_likelihoods = with_garbage(log_likelihoods, mask)
    oracle = brute_force(initial_probs, transition_matrix, log_likelihoods, mask)
    args = tuple(jnp.asarray(a) for a in (initial_probs, transition_matrix, log_likelihoods, mask))

    keys = jax.random.split(jax.random.PRNGKey(1234), NUM_DRAWS)
    draws = np.asarray(ffbs_many(keys, *args))
    assert draws.shape == (NUM_DRAWS, num_timesteps)
    assert draws.min() >= 0 and draws.max() < num_states

    # Joint path frequencies. Each count is Binomial(N, p_path); we allow 5 binomial standard errors
    # plus 3 counts (the normal approximation is poor for p * N of order 1). With 81 paths, the chance
    # that a correct sampler fails is < 1e-4; the seed is fixed, so the test is deterministic.
    index = np.ravel_multi_index(draws.T, (num_states,) * num_timesteps)
    frequencies = np.bincount(index, minlength=num_states**num_timesteps) / NUM_DRAWS
    exact = oracle["posterior"]
    tolerance = 5 * np.sqrt(exact * (1 - exact) / NUM_DRAWS) + 3 / NUM_DRAWS
    assert np.all(np.abs(frequencies - exact) <= tolerance), np.max(np.abs(frequencies - exact) / tolerance)
    # The oracle posterior must be spread out, or the comparison would have no power.
    assert np.sum(exact > 0.01) >= 10

    # Marginal frequencies against the smoother: 5 binomial SE plus 1e-4 for float32 error in the
    # smoothed probabilities themselves (which are ~1e-7 accurate).
    smoothed = np.asarray(smoother_jit(*args).smoothed_probs)
    marginal_freq = np.stack([np.bincount(draws[:, t], minlength=num_states) for t in range(num_timesteps)])
    marginal_freq = marginal_freq / NUM_DRAWS
    tolerance = 5 * np.sqrt(smoothed * (1 - smoothed) / NUM_DRAWS) + 1e-4
    assert np.all(np.abs(marginal_freq - smoothed) <= tolerance)


def test_inverse_cdf_pick_never_picks_a_zero_weight_state():
    """FFBS picks a state as the k with c_{k-1} <= u c_K < c_k (c: cumulative weights). A float32
    uniform is exactly 0 with probability 2^-23, about once per 8 million picks (a posterior of
    4000 draws x 1000 steps makes 4 million): with a strict comparison, u = 0 would pick a leading
    state of weight 0. At the largest float32 below 1 the last positive-weight state is picked, and
    on a fine grid of u the picks reproduce the weights exactly (the inverse CDF)."""
    from bayes_glmhmm.inference import _inverse_cdf_pick

    pick = jax.jit(jax.vmap(_inverse_cdf_pick, in_axes=(None, 0)))
    below_one = np.nextafter(np.float32(1), np.float32(0))
    edges = np.array([0.0, below_one], np.float32)
    assert pick(jnp.array([0.0, 0.5, 0.5]), edges).tolist() == [1, 2]
    assert pick(jnp.array([0.0, 0.7, 0.0]), edges).tolist() == [1, 1]
    assert pick(jnp.array([0.2, 0.3, 0.0]), edges).tolist() == [0, 1]
    weights = np.array([0.125, 0.0, 0.5, 0.375], np.float32)  # sums exactly in binary
    grid = (np.arange(8000, dtype=np.float32) + 0.5) / 8000
    picks = np.asarray(pick(jnp.asarray(weights), jnp.asarray(grid)))
    np.testing.assert_array_equal(np.bincount(picks, minlength=4) / 8000, weights)


# ---------------------------------------------------------------------------------------------
# Long sequences in float32
# ---------------------------------------------------------------------------------------------


def test_long_sequence_float32_is_stable():
    num_states, num_timesteps = 3, 5000
    rng = np.random.default_rng(50)
    initial_probs = rng.dirichlet(np.ones(num_states))
    transition_matrix = rng.dirichlet(np.ones(num_states) * 2, size=num_states)
    # Emission log-likelihoods around -200: exp(-200) underflows float32 (smallest subnormal
    # ~ exp(-103)), so an un-normalized pass, or one without the per-step max-subtraction, gives
    # 0 / 0; passing this requires the log-domain scaling.
    log_likelihoods = rng.normal(-200.0, 3.0, (num_timesteps, num_states))
    expected_loglik, expected_filtered = scaled_forward_float64(initial_probs, transition_matrix, log_likelihoods)

    # float32 explicitly, so that the test checks float32 also when JAX_ENABLE_X64=1.
    f32 = [jnp.asarray(a, jnp.float32) for a in (initial_probs, transition_matrix, log_likelihoods)]
    result = filter_jit(*f32, jnp.ones(num_timesteps, bool))
    assert result.marginal_loglik.dtype == jnp.float32
    assert np.all(np.isfinite(result.filtered_probs)) and np.isfinite(result.marginal_loglik)

    # The log-likelihood (~ -1e6) is a running float32 sum of T per-step normalizers. Rounding
    # errors of the running sum are ~ independent with sd u |S_t| / sqrt(3) (u = 2^-24), so the
    # total relative error has sd ~ u sqrt(T / 3) ~ 2.4e-6 (Higham's sqrt(n) u rule). rtol 2e-5 is
    # 8 sd; a single dropped or doubled step (200 / 1e6 = 2e-4) would still fail it.
    np.testing.assert_allclose(result.marginal_loglik, expected_loglik, rtol=2e-5)
    # The filter forgets its past errors geometrically (mixing chain), so per-step rounding ~1e-7
    # does not accumulate with T: atol 1e-4 over all 5000 steps is generous.
    np.testing.assert_allclose(result.filtered_probs, expected_filtered, atol=1e-4)


def test_float32_log_likelihood_at_100000_steps_is_compensated():
    """At T = 1e5 the float32 running sum of per-step log normalizers is where float32 bites.

    A plain float32 running sum (the textbook scaled forward pass) is off by 0.7 nats here,
    enough to bias a Metropolis correction; the filter's Kahan-compensated sum stays within a few
    float32 ulps of the total (ulp(2e5) = 0.016), i.e. float64 accuracy for the value. Seeded.
    """
    num_states, num_timesteps = 3, 100_000
    rng = np.random.default_rng(7)
    initial_probs = rng.dirichlet(np.ones(num_states))
    transition_matrix = rng.dirichlet(np.ones(num_states) * 2, size=num_states)
    log_likelihoods = rng.normal(-2.0, 1.0, (num_timesteps, num_states))
    # float64 oracle, and the per-step normalizers it sums.
    predicted, normalizers = initial_probs, np.empty(num_timesteps)
    for t in range(num_timesteps):
        shift = log_likelihoods[t].max()
        alpha = predicted * np.exp(log_likelihoods[t] - shift)
        normalizers[t] = np.log(alpha.sum()) + shift
        predicted = (alpha / alpha.sum()) @ transition_matrix
    expected = normalizers.sum()
    naive_float32 = np.cumsum(normalizers.astype(np.float32), dtype=np.float32)[-1]
    assert abs(float(naive_float32) - expected) > 0.1  # the problem is real at this length
    f32 = [jnp.asarray(a, jnp.float32) for a in (initial_probs, transition_matrix, log_likelihoods)]
    result = filter_jit(*f32, jnp.ones(num_timesteps, bool))
    assert abs(float(result.marginal_loglik) - expected) < 0.05


# ---------------------------------------------------------------------------------------------
# The batched GLM-level helpers of bayes_glmhmm.model
# ---------------------------------------------------------------------------------------------


def glm_problem(seed, num_sequences=2, num_timesteps=4, num_states=2, input_dim=2):
    rng = np.random.default_rng(seed)
    params = GLMHMMParams(
        initial_probs=rng.dirichlet(np.ones(num_states)),
        transition_matrix=rng.dirichlet(np.ones(num_states), size=num_states),
        weights=rng.normal(size=(num_states, input_dim)),
        biases=rng.normal(size=num_states),
        scales=rng.uniform(0.5, 1.5, num_states),
    )
    inputs = rng.normal(size=(num_sequences, num_timesteps, input_dim))
    emissions = rng.normal(size=(num_sequences, num_timesteps)) * 2
    return params, inputs, emissions


def glm_log_likelihoods_oracle(params, inputs, emissions):
    means = inputs @ params.weights.T + params.biases
    return norm.logpdf(emissions[..., None], loc=means, scale=params.scales)


def test_model_helpers_match_enumeration():
    params, inputs, emissions = glm_problem(60)
    mask = np.array([[True, True, True, True], [True, False, True, False]])
    emissions_nan = np.where(mask, emissions, np.nan)  # missing values may be NaN where masked
    log_liks = glm_log_likelihoods_oracle(params, inputs, emissions)
    oracles = [brute_force(params.initial_probs, params.transition_matrix, log_liks[n], mask[n]) for n in range(2)]

    # float32 tolerances as in the kernel tests above (log-lik ~1e-6 relative, probs ~1e-7).
    loglik = model.log_likelihood(params, inputs, emissions_nan, mask)
    assert loglik.shape == (2,)
    np.testing.assert_allclose(loglik, [o["marginal_loglik"] for o in oracles], rtol=1e-5, atol=1e-5)
    smoothed = model.smoothed_state_probs(params, inputs, emissions_nan, mask)
    np.testing.assert_allclose(smoothed, np.stack([o["smoothed"] for o in oracles]), atol=1e-5)
    paths = model.most_likely_states(params, inputs, emissions_nan, mask)
    for n, oracle in enumerate(oracles):
        order = np.argsort(oracle["log_joint"])[::-1]
        assert oracle["log_joint"][order[0]] - oracle["log_joint"][order[1]] > 1e-3  # no near-tie
        np.testing.assert_array_equal(paths[n], oracle["paths"][order[0]])

    draws = model.sample_states(jax.random.PRNGKey(0), params, inputs, emissions_nan, mask)
    assert draws.shape == (2, 4) and np.all((np.asarray(draws) >= 0) & (np.asarray(draws) < 2))
    # A single (T, D) / (T,) sequence without a mask is promoted to a batch of one.
    single = model.log_likelihood(params, inputs[0], emissions[0])
    np.testing.assert_allclose(single, [oracles[0]["marginal_loglik"]], rtol=1e-5, atol=1e-5)


def _summed_loglik(params, inputs, emissions, mask):
    return jnp.sum(model.log_likelihood(params, inputs, emissions, mask))


def test_gradient_is_finite_with_missing_data():
    params, inputs, emissions = glm_problem(70, num_timesteps=6)
    mask = np.ones(emissions.shape, bool)
    mask[1, 2:4] = False
    emissions = np.where(mask, emissions, np.nan)  # validate_data must keep NaN out of the gradient
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.result_type(float)), params)
    grads = jax.grad(_summed_loglik)(params, inputs, emissions, mask)
    for leaf in jax.tree_util.tree_leaves(grads):
        assert np.all(np.isfinite(leaf))


def test_gradient_matches_finite_differences_float64():
    with jax.enable_x64(True):
        params, inputs, emissions = glm_problem(71, num_timesteps=5)
        mask = np.ones(emissions.shape, bool)
        mask[0, 1] = False
        params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params)
        objective = jax.jit(lambda p: _summed_loglik(p, inputs, emissions, mask))
        assert objective(params).dtype == jnp.float64
        grads = jax.grad(objective)(params)

        # The log-likelihood is a smooth function of all raw parameter entries (the kernels never
        # renormalize the probabilities), so every coordinate has a well-defined derivative.
        flat, unravel = ravel_pytree(params)
        flat_grad, _ = ravel_pytree(grads)
        assert np.all(np.isfinite(flat_grad))
        step = 1e-5
        eye = np.eye(flat.size)
        finite_diff = np.array(
            [(objective(unravel(flat + step * e)) - objective(unravel(flat - step * e))) / (2 * step) for e in eye]
        )
    # Central differences in float64: truncation error ~ h^2 |f'''| ~ 1e-10 and rounding error
    # ~ eps |f| / h ~ 2e-16 * 30 / 1e-5 ~ 1e-9, so rtol = atol = 1e-6 has a 1000x margin.
    np.testing.assert_allclose(flat_grad, finite_diff, rtol=1e-6, atol=1e-6)


def test_analytic_adjoint_matches_enumeration_and_autodiff(small_case):
    """hmm_marginal_loglik's gradient is Fisher's identity: d/d log-likelihood[t, k] is the smoothed
    probability (0 where masked), d/d A[i, j] the expected transition count over A[i, j] (shared A),
    d/d pi[k] the smoothed first-step probability over pi[k]; and it equals autodiff of the filter.
    float32 gradients of O(1-10) values: atol 1e-4."""
    args, oracle = small_case
    initial_probs, transition_matrix, _, mask = (np.asarray(a) for a in args)
    value, (grad_initial, grad_transition, grad_loglik) = adjoint_grad(*args)
    np.testing.assert_allclose(value, oracle["marginal_loglik"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad_loglik, np.where(mask[:, None], oracle["smoothed"], 0.0), atol=1e-5)
    np.testing.assert_allclose(grad_initial, oracle["smoothed"][0] / initial_probs, rtol=1e-4, atol=1e-4)
    if transition_matrix.ndim == 2:
        np.testing.assert_allclose(
            grad_transition, oracle["expected_transitions"] / transition_matrix, rtol=1e-4, atol=1e-4
        )
    _, autodiff = autodiff_grad(*args)
    for ours, reference in zip((grad_initial, grad_transition, grad_loglik), autodiff, strict=True):
        np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4)


def test_best_fitting_state_with_zero_probability_does_not_underflow():
    """An ML EM fit can set p(z_1 = k) = 0; if state k fits y_1 far better than the others, shifting
    by the largest log-likelihood alone underflows every possible term (0 / 0 = NaN). The exact
    answer: only state 0 is possible, so log p(y) = log p(y_1 | z_1 = 0) + log p(y_2 | ...)."""
    initial_probs = jnp.array([1.0, 0.0])
    transition_matrix = jnp.array([[1.0, 0.0], [0.5, 0.5]])
    log_likelihoods = jnp.array([[-1000.0, 0.0], [-500.0, -1.0]])
    mask = jnp.ones(2, bool)
    result = filter_jit(initial_probs, transition_matrix, log_likelihoods, mask)
    np.testing.assert_allclose(result.marginal_loglik, -1500.0, rtol=1e-6)
    smoothed = smoother_jit(initial_probs, transition_matrix, log_likelihoods, mask).smoothed_probs
    np.testing.assert_allclose(smoothed, [[1.0, 0.0], [1.0, 0.0]], atol=1e-6)
    value, gradients = adjoint_grad(initial_probs, transition_matrix, log_likelihoods, mask)
    assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in gradients)
    np.testing.assert_allclose(gradients[2], [[1.0, 0.0], [1.0, 0.0]], atol=1e-6)


# ---------------------------------------------------------------------------------------------
# The batched, state-major marginal log-likelihood
# ---------------------------------------------------------------------------------------------


def _weighted_batch_total(kernel):
    """(initial, A, log-likelihoods, mask, weights) -> sum_n weights[n] log p(y[n]): a non-uniform cotangent."""

    def total(initial_probs, transition_matrix, log_likelihoods, mask, weights):
        return jnp.sum(weights * kernel(initial_probs, transition_matrix, log_likelihoods, mask))

    return jax.jit(jax.value_and_grad(total, argnums=(0, 1, 2)))


batch_grad = _weighted_batch_total(hmm_marginal_loglik_batch)
vmapped_adjoint_grad = _weighted_batch_total(jax.vmap(hmm_marginal_loglik, in_axes=(None, None, 0, 0)))

#: Four sequences of T_SMALL steps: all observed, the small mask, trailing padding, one observed step.
BATCH_MASKS = np.array(
    [
        [True] * T_SMALL,
        SMALL_MASK,
        [True, True, True, False, False],
        [False, False, True, False, False],
    ]
)


def test_batch_marginal_loglik_matches_enumeration_per_sequence():
    """Each sequence of the batch against its own enumeration (243 paths), with a weight per sequence
    as the cotangent: d/d log-likelihood[n, t, k] = w_n smoothed_n (0 where masked), d/d A[i, j] =
    sum_n w_n expected_n[i, j] / A[i, j], d/d pi[k] = sum_n w_n smoothed_n[0, k] / pi[k]. Masked
    steps hold +-20 garbage, so a leak changes every number. Same float32 budget as the one-sequence
    adjoint: values 1e-5 relative, gradients of O(1-10) 1e-4."""
    rng = np.random.default_rng(7)
    initial_probs, transition_matrix, _ = random_hmm(
        seed=21, num_states=K_SMALL, num_timesteps=T_SMALL, time_varying=False
    )
    log_likelihoods = np.stack([with_garbage(rng.normal(-1.0, 1.5, (T_SMALL, K_SMALL)), mask) for mask in BATCH_MASKS])
    weights = np.array([1.0, -0.5, 2.0, 0.25])
    oracles = [
        brute_force(initial_probs, transition_matrix, logliks, mask)
        for logliks, mask in zip(log_likelihoods, BATCH_MASKS, strict=True)
    ]
    values = hmm_marginal_loglik_batch(initial_probs, transition_matrix, log_likelihoods, BATCH_MASKS)
    np.testing.assert_allclose(values, [o["marginal_loglik"] for o in oracles], rtol=1e-5, atol=1e-5)

    value, (grad_initial, grad_transition, grad_loglik) = batch_grad(
        initial_probs, transition_matrix, log_likelihoods, BATCH_MASKS, weights
    )
    np.testing.assert_allclose(value, weights @ [o["marginal_loglik"] for o in oracles], rtol=1e-5, atol=1e-5)
    for n, oracle in enumerate(oracles):
        expected = weights[n] * np.where(BATCH_MASKS[n][:, None], oracle["smoothed"], 0.0)
        np.testing.assert_allclose(grad_loglik[n], expected, atol=1e-5, err_msg=f"sequence {n}")
    first = sum(w * o["smoothed"][0] for w, o in zip(weights, oracles, strict=True))
    np.testing.assert_allclose(grad_initial, first / initial_probs, rtol=1e-4, atol=1e-4)
    counts = sum(w * o["expected_transitions"] for w, o in zip(weights, oracles, strict=True))
    np.testing.assert_allclose(grad_transition, counts / transition_matrix, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("num_states", "num_timesteps", "num_sequences"),
    [(1, 4, 3), (2, 1, 3), (5, 7, 1), (4, 6, 9)],
    ids=["one_state", "one_step", "one_sequence", "K4"],
)
def test_batch_marginal_loglik_equals_the_vmapped_one_sequence_adjoint(num_states, num_timesteps, num_sequences):
    """Value and all three gradients equal those of ``vmap(hmm_marginal_loglik)`` at the edge shapes
    (one state, one step, one sequence), with a zero initial probability and a zero transition
    probability, random masks and weights. Both are float32 forward-backward passes in another
    layout: values 1e-5 relative, gradients 1e-4."""
    rng = np.random.default_rng(num_states * 100 + num_timesteps)
    initial_probs = rng.dirichlet(np.ones(num_states))
    transition_matrix = rng.dirichlet(np.ones(num_states), size=num_states)
    if num_states > 1:
        initial_probs[-1] = 0.0
        initial_probs /= initial_probs.sum()
        transition_matrix[0, -1] = 0.0
        transition_matrix /= transition_matrix.sum(axis=1, keepdims=True)
    log_likelihoods = rng.normal(-1.0, 3.0, (num_sequences, num_timesteps, num_states))
    mask = rng.uniform(size=(num_sequences, num_timesteps)) > 0.3
    weights = rng.normal(size=num_sequences)
    args = (initial_probs, transition_matrix, log_likelihoods, mask, weights)
    value, gradients = batch_grad(*args)
    reference_value, reference_gradients = vmapped_adjoint_grad(*args)
    np.testing.assert_allclose(value, reference_value, rtol=1e-5, atol=1e-5)
    assert_gradients_close(gradients, reference_gradients, 1e-4)
    assert all(np.all(np.isfinite(g)) for g in gradients)


def test_batch_marginal_loglik_under_vmap_over_chains():
    """Chains vectorized by ``vmap`` (NUTS's ``chain_method="vectorized"``) batch the custom VJP: each
    chain's value and gradient equal the unbatched kernel's at that chain's parameters (float32: 1e-5, 1e-4)."""
    rng = np.random.default_rng(3)
    chains, num_states = 3, 3
    initial_probs = rng.dirichlet(np.ones(num_states), size=chains)
    transition_matrix = rng.dirichlet(np.ones(num_states), size=(chains, num_states))
    log_likelihoods = rng.normal(-1.0, 1.5, (chains, 4, 6, num_states))
    mask = rng.uniform(size=(4, 6)) > 0.2
    weights = np.ones(4)
    batched = jax.vmap(batch_grad, in_axes=(0, 0, 0, None, None))(
        initial_probs, transition_matrix, log_likelihoods, mask, weights
    )
    for chain in range(chains):
        value, gradients = batch_grad(
            initial_probs[chain], transition_matrix[chain], log_likelihoods[chain], mask, weights
        )
        np.testing.assert_allclose(batched[0][chain], value, rtol=1e-5, atol=1e-5)
        assert_gradients_close([g[chain] for g in batched[1]], gradients, 1e-4)


# ---------------------------------------------------------------------------------------------
# The parallel-in-time marginal log-likelihood (associative reduction)
# ---------------------------------------------------------------------------------------------

parallel_grad = jax.jit(jax.value_and_grad(hmm_marginal_loglik_parallel, argnums=(0, 1, 2)))
parallel_value = jax.jit(hmm_marginal_loglik_parallel)
parallel_batched = jax.jit(jax.vmap(hmm_marginal_loglik_parallel, in_axes=(None, None, 0, 0)))


def assert_gradients_close(ours, reference, tolerance):
    for a, b in zip(ours, reference, strict=True):
        np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance)


def test_parallel_marginal_loglik_matches_enumeration_and_adjoint(small_case):
    """Value against enumeration, gradients (all three inputs) against the analytic adjoint and the
    autodiff of the filter. Same float32 budget as the sequential kernels: value 1e-5, gradients of
    O(1-10) 1e-4 (the element products round at ~1e-7 relative, a few levels deep)."""
    args, oracle = small_case
    value, gradients = parallel_grad(*args)
    np.testing.assert_allclose(value, oracle["marginal_loglik"], rtol=1e-5, atol=1e-5)
    assert_gradients_close(gradients, adjoint_grad(*args)[1], 1e-4)
    assert_gradients_close(gradients, autodiff_grad(*args)[1], 1e-4)


@pytest.mark.parametrize(
    ("num_states", "num_timesteps", "time_varying", "masked"),
    [(1, 6, False, True), (3, 1, False, False), (3, 1, True, True), (4, 37, True, True)],
    ids=["K1", "T1-shared", "T1-time_varying-masked", "K4-T37-odd-time_varying-masked"],
)
def test_parallel_marginal_loglik_edge_shapes(num_states, num_timesteps, time_varying, masked):
    """K = 1, T = 1 (with a (0, K, K) transition stack and a masked only step), and T = 37, whose tree
    has odd levels (37, 19, 5, 3: an unpaired element carried up); float32 tolerances as above."""
    initial_probs, transition_matrix, log_likelihoods = random_hmm(
        80 + num_states + num_timesteps, num_states, num_timesteps, time_varying
    )
    mask = np.arange(num_timesteps) % 3 != 0 if masked else np.ones(num_timesteps, bool)
    log_likelihoods = with_garbage(log_likelihoods, mask)
    args = tuple(jnp.asarray(a) for a in (initial_probs, transition_matrix, log_likelihoods, mask))
    value, gradients = parallel_grad(*args)
    reference_value, reference_gradients = adjoint_grad(*args)
    np.testing.assert_allclose(value, reference_value, rtol=1e-5, atol=1e-5)
    assert_gradients_close(gradients, reference_gradients, 1e-4)
    if num_timesteps <= 6:
        oracle = brute_force(initial_probs, transition_matrix, log_likelihoods, mask)
        np.testing.assert_allclose(value, oracle["marginal_loglik"], rtol=1e-5, atol=1e-5)


def test_parallel_default_mask_and_vmap():
    """No mask means every step observed; vmapped over sequences (as the model batches them) each
    sequence gets its own value. Same computations up to fusion: float32 rounding only."""
    initial_probs, transition_matrix, log_likelihoods = random_hmm(90, K_SMALL, T_SMALL, time_varying=False)
    args = tuple(jnp.asarray(a) for a in (initial_probs, transition_matrix, log_likelihoods))
    full = jnp.ones(T_SMALL, bool)
    np.testing.assert_allclose(parallel_value(*args), adjoint_grad(*args, full)[0], rtol=1e-5, atol=1e-5)
    batch_ll = jnp.stack([args[2], args[2][::-1]])
    batch_mask = jnp.stack([full, jnp.asarray(SMALL_MASK)])
    batched = parallel_batched(args[0], args[1], batch_ll, batch_mask)
    for n in range(2):
        expected = adjoint_grad(args[0], args[1], batch_ll[n], batch_mask[n])[0]
        np.testing.assert_allclose(batched[n], expected, rtol=1e-5, atol=1e-5)


def test_parallel_best_fitting_state_with_zero_probability_does_not_underflow():
    """The zero-probability case of the sequential kernels: a state that fits y_1 far better than the
    others but has p(z_1 = k) = 0, and a zero transition entry. A linear-space product of rescaled
    matrices gives 0 / 0 here; the log-space product must give -1500 and finite gradients, equal to
    the adjoint's (0 at the exact zeros)."""
    args = (
        jnp.array([1.0, 0.0]),
        jnp.array([[1.0, 0.0], [0.5, 0.5]]),
        jnp.array([[-1000.0, 0.0], [-500.0, -1.0]]),
        jnp.ones(2, bool),
    )
    value, gradients = parallel_grad(*args)
    np.testing.assert_allclose(value, -1500.0, rtol=1e-6)
    assert all(np.all(np.isfinite(g)) for g in gradients)
    assert_gradients_close(gradients, adjoint_grad(*args)[1], 1e-6)


def float64_normalizers(initial_probs, transition_matrix, log_likelihoods):
    """Per-step log normalizers of the scaled forward pass in float64; they sum to log p(y)."""
    predicted, normalizers = initial_probs, np.empty(log_likelihoods.shape[0])
    for t, loglik in enumerate(log_likelihoods):
        shift = loglik.max()
        alpha = predicted * np.exp(loglik - shift)
        normalizers[t] = np.log(alpha.sum()) + shift
        predicted = (alpha / alpha.sum()) @ transition_matrix
    return normalizers


def long_float32_problem(seed, num_timesteps, loglik_mean, loglik_sd):
    rng = np.random.default_rng(seed)
    initial_probs = rng.dirichlet(np.ones(3))
    transition_matrix = rng.dirichlet(np.ones(3) * 2, size=3)
    log_likelihoods = rng.normal(loglik_mean, loglik_sd, (num_timesteps, 3))
    expected = float64_normalizers(initial_probs, transition_matrix, log_likelihoods).sum()
    # float32 explicitly, so that the test checks float32 also when JAX_ENABLE_X64=1.
    return [jnp.asarray(a, jnp.float32) for a in (initial_probs, transition_matrix, log_likelihoods)], expected


def test_parallel_float32_at_10000_steps_matches_float64_and_adjoint():
    """T = 1e4 in float32, log-likelihoods ~ -2 per step (total ~ -1.7e4, ulp 0.002).

    Every element keeps its O(1) entries apart from its scalar scale, and the scales are summed
    pairwise, so the value's rounding error is bounded by ~log2(T) = 14 ulps of the total: atol 0.03
    (measured 0.001). Gradients against the sequential adjoint: d/d log-likelihoods are smoothed
    probabilities (atol 1e-4, as for short sequences since smoothing forgets errors geometrically);
    d/d A sums 1e4 terms, each ~1e-7 relative: rtol 1e-3 of its largest entry (~1e4).
    """
    f32, expected = long_float32_problem(1, 10_000, -2.0, 1.0)
    mask = jnp.ones(10_000, bool)
    value, gradients = parallel_grad(*f32, mask)
    assert value.dtype == jnp.float32
    assert abs(float(value) - expected) < 0.03
    _, reference = adjoint_grad(*f32, mask)
    np.testing.assert_allclose(gradients[2], reference[2], atol=1e-4)
    scale = float(jnp.max(jnp.abs(reference[1])))
    np.testing.assert_allclose(gradients[1], reference[1], atol=1e-3 * scale)
    np.testing.assert_allclose(gradients[0], reference[0], rtol=1e-3, atol=1e-3)


def test_parallel_float32_at_100000_steps_with_large_log_likelihoods():
    """T = 1e5 in float32 with log-likelihoods ~ -200 (exp underflows; the total ~ -2e7 would overflow
    nothing but loses everything to a running sum without scaling): finite, and within log2(T) = 17
    ulps of the float64 total (ulp(2e7) = 2; measured error 0-2), i.e. relative 2e-6."""
    f32, expected = long_float32_problem(50, 100_000, -200.0, 3.0)
    value = parallel_value(*f32, jnp.ones(100_000, bool))
    assert np.isfinite(value)
    np.testing.assert_allclose(float(value), expected, rtol=2e-6)


def test_driven_transitions_match_their_materialized_stack_in_every_kernel():
    """Oracle: DrivenTransitions (matrices computed step by step) give the kernels exactly what the
    (T-1, K, K) stack of softmax(log_base + weights . u_t) gives: filter, smoother, Viterbi, FFBS
    path, parallel likelihood, and the analytic gradient of hmm_marginal_loglik, including the
    gradient with respect to the inputs (float32 tolerances; masked steps included)."""
    keys = jax.random.split(jax.random.PRNGKey(7), 5)
    num_states, num_timesteps, num_inputs = 3, 12, 2
    log_base = jnp.log(jax.random.dirichlet(keys[0], jnp.full((num_states, num_states), 2.0)))
    weights = jax.random.normal(keys[1], (num_states, num_states, num_inputs))
    inputs = jax.random.normal(keys[2], (num_timesteps - 1, num_inputs))
    log_likelihoods = jax.random.normal(keys[3], (num_timesteps, num_states))
    mask = jnp.arange(num_timesteps) % 4 != 2
    initial = jnp.array([0.5, 0.3, 0.2])
    driven = DrivenTransitions(log_base, weights, inputs)
    stack = driven.matrices()
    assert stack.shape == (num_timesteps - 1, num_states, num_states)
    np.testing.assert_allclose(stack[4], jax.nn.softmax(log_base + weights @ inputs[4], axis=-1), rtol=1e-6)

    for kernel in (hmm_filter, hmm_smoother):
        ours, theirs = kernel(initial, driven, log_likelihoods, mask), kernel(initial, stack, log_likelihoods, mask)
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(
        hmm_viterbi(initial, driven, log_likelihoods, mask), hmm_viterbi(initial, stack, log_likelihoods, mask)
    )
    key = jax.random.PRNGKey(3)
    np.testing.assert_array_equal(
        hmm_sample_states(key, initial, driven, log_likelihoods, mask),
        hmm_sample_states(key, initial, stack, log_likelihoods, mask),
    )
    np.testing.assert_allclose(
        hmm_marginal_loglik_parallel(initial, driven, log_likelihoods, mask),
        hmm_marginal_loglik(initial, stack, log_likelihoods, mask),
        rtol=1e-5,
    )

    def through_driven(log_base, weights, inputs):
        return hmm_marginal_loglik(initial, DrivenTransitions(log_base, weights, inputs), log_likelihoods, mask)

    def through_stack(log_base, weights, inputs):
        matrices = DrivenTransitions(log_base, weights, inputs).matrices()
        return hmm_filter(initial, matrices, log_likelihoods, mask).marginal_loglik

    value, gradient = jax.value_and_grad(through_driven, argnums=(0, 1, 2))(log_base, weights, inputs)
    expected_value, expected_gradient = jax.value_and_grad(through_stack, argnums=(0, 1, 2))(log_base, weights, inputs)
    np.testing.assert_allclose(value, expected_value, rtol=1e-6)
    for ours, theirs in zip(gradient, expected_gradient, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    assert float(jnp.abs(expected_gradient[1]).max()) > 0.05  # the weights' gradient is exercised


def test_driven_transitions_of_a_one_step_sequence():
    """T = 1: no transitions, so the (0, M) inputs are never read; the value is the first step's."""
    driven = DrivenTransitions(jnp.zeros((2, 2)), jnp.ones((2, 2, 1)), jnp.zeros((0, 1)))
    log_likelihoods = jnp.array([[-1.0, -2.0]])
    value = hmm_marginal_loglik(jnp.array([0.4, 0.6]), driven, log_likelihoods, jnp.array([True]))
    np.testing.assert_allclose(value, np.log(0.4 * np.exp(-1.0) + 0.6 * np.exp(-2.0)), rtol=1e-6)
