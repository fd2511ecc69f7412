"""Input-driven transitions (issue 12): p(z_{t+1} = j | z_t = i, u_t) = softmax_j(log A[i, j] + V[i, j] . u_t).

Oracles: the stationary model (V = 0 must reproduce it), enumeration of all K^T paths in NumPy
float64 (likelihood, smoothed marginals, per-step two-slice marginals, Viterbi path), statsmodels'
``MarkovRegression`` with time-varying transition probabilities (Filardo 1994, an independent
Hamilton filter), 2-D Gauss-Legendre quadrature of the NumPyro model's density of the centred transition
matrix, the EM objective's monotonicity and a simulate-and-recover check, and autodiff against
the analytic adjoint. Every tolerance is sized for float32 (JAX's default) and states why.
"""

import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import log_density
from scipy import stats
from scipy.special import gammaln, logsumexp

from bayes_glmhmm import (
    BernoulliGLMHMMParams,
    GLMHMMParams,
    PoissonGLMHMMParams,
    Posterior,
    Priors,
    find_state_permutation,
    fit_em,
    fit_nuts,
    log_likelihood,
    most_likely_states,
    simulate,
    smoothed_state_probs,
)
from bayes_glmhmm.em import em_step
from bayes_glmhmm.emissions import get_family
from bayes_glmhmm.model import (
    batched_marginal_loglik,
    batched_smoother,
    glmhmm_model,
    log_prior,
    sample_prior,
)
from bayes_glmhmm.params import permute_params
from bayes_glmhmm.relabel import relabel_draws
from bayes_glmhmm.transitions import (
    destination_to_full,
    free_to_full,
    input_driven,
    transition_matrices,
    uncentre_transition_matrix,
)

FULL = input_driven("full")
DESTINATION = input_driven("destination")

# ---------------------------------------------------------------------------------------------
# Helpers and NumPy float64 oracles
# ---------------------------------------------------------------------------------------------

PARAMS_TYPES = {"gaussian": GLMHMMParams, "bernoulli": BernoulliGLMHMMParams, "poisson": PoissonGLMHMMParams}


def random_params(rng, family, num_states, input_dim, num_inputs, weight_scale=1.0):
    """Random params of a family with input-driven transitions (zero-diagonal V), float64 NumPy."""
    matrix = 0.5 * np.eye(num_states) + 0.5 * rng.dirichlet(np.full(num_states, 2.0), size=num_states)
    transition_weights = rng.normal(0.0, weight_scale, (num_states, num_states, num_inputs))
    transition_weights[np.arange(num_states), np.arange(num_states)] = 0.0
    fields = dict(
        initial_probs=rng.dirichlet(np.full(num_states, 2.0)),
        transition_matrix=matrix,
        weights=rng.normal(0.0, 1.0, (num_states, input_dim)),
        biases=rng.normal(0.0, 1.0, num_states),
        transition_weights=transition_weights,
    )
    if family == "gaussian":
        fields["scales"] = rng.uniform(0.5, 1.5, num_states)
    return PARAMS_TYPES[family](**fields)


def as_jax(params):
    return jax.tree.map(lambda p: jnp.asarray(p, jnp.result_type(float)), params)


def numpy_emission_logliks(family, params, inputs, emissions):
    """Log p(y[n, t] | x[n, t], z = k), (N, T, K), written out per family in float64."""
    eta = np.einsum("ntd,kd->ntk", inputs, np.asarray(params.weights)) + np.asarray(params.biases)
    y = emissions[..., None]
    if family == "gaussian":
        return stats.norm.logpdf(y, eta, np.asarray(params.scales))
    if family == "bernoulli":
        return y * eta - np.logaddexp(0.0, eta)
    if family == "poisson":
        return y * eta - np.exp(eta) - gammaln(y + 1.0)
    raise AssertionError(family)


def numpy_transition_matrices(matrix, weights, transition_inputs):
    """p(z_{t+1} = j | z_t = i, u_t) for t = 0..T-2, (..., T - 1, K, K), in float64."""
    logits = np.log(matrix) + np.einsum("ijm,...tm->...tij", weights, transition_inputs[..., :-1, :])
    return np.exp(logits - logsumexp(logits, axis=-1, keepdims=True))


def enumerate_sequence(initial_probs, matrices, logliks, mask):
    """Every quantity of one sequence by summing over all K^T paths (float64)."""
    num_timesteps, num_states = logliks.shape
    paths = np.array(list(itertools.product(range(num_states), repeat=num_timesteps)))
    steps = np.arange(num_timesteps - 1)
    log_joint = (
        np.log(initial_probs)[paths[:, 0]]
        + np.log(matrices[steps, paths[:, :-1], paths[:, 1:]]).sum(axis=1)
        + np.where(mask, logliks[np.arange(num_timesteps), paths], 0.0).sum(axis=1)
    )
    marginal = logsumexp(log_joint)
    posterior = np.exp(log_joint - marginal)
    smoothed = np.stack([np.bincount(paths[:, t], posterior, num_states) for t in range(num_timesteps)])
    two_slice = np.zeros((num_timesteps - 1, num_states, num_states))
    for t in steps:
        np.add.at(two_slice[t], (paths[:, t], paths[:, t + 1]), posterior)
    return marginal, smoothed, two_slice, paths[np.argmax(log_joint)]


def simulated_data(params, key, num_sequences, num_timesteps, num_inputs, input_dim=1):
    key_x, key_u, key_sim = jax.random.split(key, 3)
    inputs = np.asarray(jax.random.normal(key_x, (num_sequences, num_timesteps, input_dim)))
    transition_inputs = np.asarray(jax.random.normal(key_u, (num_sequences, num_timesteps, num_inputs)))
    states, emissions = simulate(key_sim, params, inputs, transition_inputs)
    return inputs, np.asarray(emissions), transition_inputs, np.asarray(states)


# ---------------------------------------------------------------------------------------------
# 1. V = 0 is the stationary model
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gaussian_problem():
    rng = np.random.default_rng(1)
    params = random_params(rng, "gaussian", 3, 1, 2)
    params = params._replace(transition_weights=np.zeros((3, 3, 2)))
    inputs = rng.normal(size=(3, 30, 1))
    transition_inputs = rng.normal(size=(3, 30, 2))
    _, emissions = simulate(jax.random.PRNGKey(4), params, inputs, transition_inputs)
    mask = np.ones((3, 30), bool)
    mask[0, 5:9] = False
    mask[2, 25:] = False
    return params, inputs, np.asarray(emissions), mask, transition_inputs


def test_zero_weights_equal_stationary_state_inference(gaussian_problem):
    params, inputs, emissions, mask, transition_inputs = gaussian_problem
    stationary = params._replace(transition_weights=None)
    # Same arithmetic up to softmax(log A) = A, a few float32 ulps per step over 30 steps.
    np.testing.assert_allclose(
        log_likelihood(params, inputs, emissions, mask, transition_inputs),
        log_likelihood(stationary, inputs, emissions, mask),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        smoothed_state_probs(params, inputs, emissions, mask, transition_inputs),
        smoothed_state_probs(stationary, inputs, emissions, mask),
        atol=1e-5,
    )
    # The Viterbi path is discrete; ties within float32 rounding are improbable with random data.
    np.testing.assert_array_equal(
        most_likely_states(params, inputs, emissions, mask, transition_inputs),
        most_likely_states(stationary, inputs, emissions, mask),
    )
    # Per-step two-slice marginals summed over the steps are the stationary expected counts.
    driven = batched_smoother(
        as_jax(params), *map(jnp.asarray, (inputs, emissions, mask, transition_inputs)), per_step=True
    )
    counts = batched_smoother(as_jax(stationary), *map(jnp.asarray, (inputs, emissions, mask)))
    assert driven.expected_transitions.shape == (3, 29, 3, 3)
    np.testing.assert_allclose(driven.expected_transitions.sum(axis=1), counts.expected_transitions, atol=1e-4)


_em_step = jax.jit(em_step, static_argnames=("transitions",))


ZERO_PRIORS = Priors(transition_concentration=2.0, transition_weight_scale=0.7)


# Each combination compiles its own EM step (~12 s on 2 cores): both forms, ML and MAP, are
# covered in two; the two others run with the slow tests.
@pytest.mark.parametrize(
    ("transitions", "priors"),
    [
        (FULL, None),
        (DESTINATION, ZERO_PRIORS),
        pytest.param(FULL, ZERO_PRIORS, marks=pytest.mark.slow),
        pytest.param(DESTINATION, None, marks=pytest.mark.slow),
    ],
    ids=["full-ML", "destination-MAP", "full-MAP", "destination-ML"],
)
def test_zero_weights_em_step_matches_stationary(gaussian_problem, priors, transitions):
    params, inputs, emissions, mask, transition_inputs = gaussian_problem
    inputs, emissions, mask, transition_inputs = map(jnp.asarray, (inputs, emissions, mask, transition_inputs))
    stationary = as_jax(params._replace(transition_weights=None))
    driven = as_jax(params)
    new_driven, objective_driven = _em_step(driven, inputs, emissions, mask, priors, transition_inputs, transitions)
    new_stationary, objective_stationary = _em_step(stationary, inputs, emissions, mask, priors)
    expected = objective_stationary
    if priors is not None:
        # The only extra prior term: the free transition weights' Normal (full: K (K - 1) M of them,
        # sd s) or ZeroSumNormal (destination: d = 0), evaluated at zero.
        if transitions.form == "full":
            expected = expected + 3 * 2 * 2 * stats.norm.logpdf(0.0, 0.0, priors.transition_weight_scale)
        else:
            # ZeroSumNormal(s) over K = 3 states: a standard (K - 1)-dim Normal(0, s) in an
            # orthonormal basis of the zero-sum plane, one per input (M = 2).
            expected = expected + 2 * (3 - 1) * stats.norm.logpdf(0.0, 0.0, priors.transition_weight_scale)
    # A sum of ~90 log-likelihood terms of size ~1: float32 rounding ~1e-5 relative at most.
    np.testing.assert_allclose(objective_driven, expected, rtol=1e-5)
    # Same E-step, so the same emission and initial-probability M-steps.
    for name in ("initial_probs", "weights", "biases", "scales"):
        np.testing.assert_allclose(getattr(new_driven, name), getattr(new_stationary, name), atol=2e-5, err_msg=name)
    np.testing.assert_allclose(jnp.sum(new_driven.transition_matrix, axis=1), 1.0, atol=1e-6)
    weights = np.asarray(new_driven.transition_weights)
    np.testing.assert_array_equal(weights[np.arange(3), np.arange(3)], 0.0)  # V[i, i] = 0 by construction
    # Generalized EM (Newton transition M-step with backtracking): the objective at the new
    # params is at least the old one's, up to float32 rounding (~1e-6 relative).
    _, objective_after = _em_step(new_driven, inputs, emissions, mask, priors, transition_inputs, transitions)
    assert objective_after >= objective_driven - 1e-5 * abs(objective_driven)


# ---------------------------------------------------------------------------------------------
# 2. Enumeration of all K^T paths
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "num_states", "seed"),
    [("bernoulli", 2, 0), ("poisson", 3, 1)],
)
def test_brute_force_enumeration(family, num_states, seed):
    rng = np.random.default_rng(seed)
    num_sequences, num_timesteps, num_inputs = 3, 4, 2
    params = random_params(rng, family, num_states, 2, num_inputs, weight_scale=1.5)
    inputs = rng.normal(size=(num_sequences, num_timesteps, 2))
    transition_inputs = rng.normal(size=(num_sequences, num_timesteps, num_inputs))
    if family == "bernoulli":
        emissions = rng.integers(0, 2, (num_sequences, num_timesteps)).astype(float)
    elif family == "poisson":
        emissions = rng.poisson(1.5, (num_sequences, num_timesteps)).astype(float)
    else:
        emissions = rng.normal(size=(num_sequences, num_timesteps))
    mask = np.ones((num_sequences, num_timesteps), bool)
    mask[0, 1] = False  # inside
    mask[1, 0] = False  # the first step
    mask[2, 2:] = False  # trailing
    emissions[~mask] = 0.0

    logliks = numpy_emission_logliks(family, params, inputs, emissions)
    matrices = numpy_transition_matrices(params.transition_matrix, params.transition_weights, transition_inputs)
    oracle = [enumerate_sequence(params.initial_probs, matrices[n], logliks[n], mask[n]) for n in range(num_sequences)]

    # The transition matrices themselves (float32 softmax: ~1e-7 absolute).
    np.testing.assert_allclose(
        transition_matrices(
            *map(jnp.asarray, (params.transition_matrix, params.transition_weights, transition_inputs))
        ),
        matrices,
        atol=2e-6,
    )
    # Log-likelihoods of size ~5-15 in float32: ~1e-6 relative.
    np.testing.assert_allclose(
        log_likelihood(params, inputs, emissions, mask, transition_inputs), [o[0] for o in oracle], rtol=1e-5
    )
    np.testing.assert_allclose(
        smoothed_state_probs(params, inputs, emissions, mask, transition_inputs),
        [o[1] for o in oracle],
        atol=1e-5,
    )
    smoother = batched_smoother(
        as_jax(params), *map(jnp.asarray, (inputs, emissions, mask, transition_inputs)), per_step=True
    )
    np.testing.assert_allclose(smoother.expected_transitions, [o[2] for o in oracle], atol=1e-5)
    np.testing.assert_allclose(smoother.marginal_loglik, [o[0] for o in oracle], rtol=1e-5)
    np.testing.assert_array_equal(
        most_likely_states(params, inputs, emissions, mask, transition_inputs), [o[3] for o in oracle]
    )


def test_one_step_sequences_have_no_transitions():
    """T = 1: no transition at all, so log p(y) = log sum_k pi_k p(y_1 | k) whatever V and u."""
    rng = np.random.default_rng(5)
    params = random_params(rng, "bernoulli", 3, 1, 2)
    inputs, emissions, transition_inputs = (
        rng.normal(size=(2, 1, 1)),
        np.array([[1.0], [0.0]]),
        rng.normal(size=(2, 1, 2)),
    )
    logliks = numpy_emission_logliks("bernoulli", params, inputs, emissions)
    expected = logsumexp(np.log(params.initial_probs) + logliks[:, 0], axis=-1)
    np.testing.assert_allclose(
        log_likelihood(params, inputs, emissions, transition_inputs=transition_inputs), expected, rtol=1e-5
    )


# ---------------------------------------------------------------------------------------------
# 3. statsmodels' MarkovRegression with time-varying transition probabilities
# ---------------------------------------------------------------------------------------------


def statsmodels_params(model, params):
    """Our Gaussian params as statsmodels' MarkovRegression params, by name.

    statsmodels' tvtp logits of moving from regime j to regime i < K - 1 use the LAST regime as
    reference: log p(j -> i) / p(j -> K - 1) = coefficients . exog_tvtp[t]; with exog_tvtp =
    [1, u] the constant is log A[j, i] - log A[j, K - 1] and the slopes V[j, i] - V[j, K - 1].
    """
    matrix, weights = np.asarray(params.transition_matrix), np.asarray(params.transition_weights)
    last = matrix.shape[0] - 1
    values = []
    for name in model.param_names:
        if match := re.fullmatch(r"p\[(\d+)->(\d+)\]\.tvtp(\d+)", name):
            origin, destination, column = map(int, match.groups())
            if column == 0:
                values.append(np.log(matrix[origin, destination]) - np.log(matrix[origin, last]))
            else:
                values.append(weights[origin, destination, column - 1] - weights[origin, last, column - 1])
        elif match := re.fullmatch(r"const\[(\d+)\]", name):
            values.append(params.biases[int(match.group(1))])
        elif match := re.fullmatch(r"x1\[(\d+)\]", name):
            values.append(params.weights[int(match.group(1)), 0])
        elif match := re.fullmatch(r"sigma2\[(\d+)\]", name):
            values.append(params.scales[int(match.group(1))] ** 2)  # a variance, not a scale
        else:
            raise AssertionError(f"unexpected statsmodels parameter {name}")
    return np.array(values)


@pytest.mark.parametrize("x64", [False, True], ids=["float32", "float64"])
def test_matches_statsmodels_tvtp_markov_regression(x64):
    markov_regression = pytest.importorskip("statsmodels.tsa.regime_switching.markov_regression")
    rng = np.random.default_rng(7)
    num_states, num_timesteps, num_inputs = 3, 50, 2
    params = random_params(rng, "gaussian", num_states, 1, num_inputs, weight_scale=1.0)
    inputs = rng.normal(size=(num_timesteps, 1))
    transition_inputs = rng.normal(size=(num_timesteps, num_inputs))
    # statsmodels' known initial probabilities are those of a regime *before* the first
    # observation. MarkovRegression's conditional log-likelihoods carry a second (previous-regime)
    # axis, so its Hamilton filter runs with order 1 and moves them by the transition of
    # exog_tvtp[0] twice before step 0 (checked in float64 against a forward filter written out
    # both ways; one move is off by ~4e-3 nats). Give statsmodels a virtual input u_{-1} and set
    # ours, p(z_0), to the distribution two such transitions later.
    before_probs = rng.dirichlet(np.ones(num_states))
    u_before = rng.normal(size=num_inputs)
    step_before = numpy_transition_matrices(
        params.transition_matrix, params.transition_weights, np.stack([u_before] * 2)
    )[0]
    params = params._replace(initial_probs=before_probs @ step_before @ step_before)
    _, emissions = simulate(jax.random.PRNGKey(8), params, inputs, transition_inputs)
    emissions = np.asarray(emissions, dtype=float)

    # exog_tvtp[t] drives the transition INTO t (S_{t-1} -> S_t); our u[t] drives t -> t+1.
    exog_tvtp = np.column_stack([np.ones(num_timesteps), np.vstack([u_before, transition_inputs[:-1]])])
    model = markov_regression.MarkovRegression(
        emissions, k_regimes=num_states, exog=inputs, switching_variance=True, exog_tvtp=exog_tvtp
    )
    model.initialize_known(before_probs)
    sm_params = statsmodels_params(model, params)
    # Their transition matrices are column-stochastic, [:, :, t + 1].T is our step t -> t + 1.
    theirs = np.transpose(model.regime_transition_matrix(sm_params), (2, 1, 0))
    ours = numpy_transition_matrices(params.transition_matrix, params.transition_weights, transition_inputs)
    np.testing.assert_allclose(theirs[1:], ours, atol=1e-12)
    expected = model.loglike(sm_params)

    with jax.enable_x64(x64):
        value = log_likelihood(params, inputs, emissions, transition_inputs=transition_inputs)
        assert value.dtype == (jnp.float64 if x64 else jnp.float32)
    # |log p(y)| ~ 80 over 50 steps: float32 ~ 1e-6 relative; float64 agrees to rounding.
    np.testing.assert_allclose(value, [expected], rtol=1e-10 if x64 else 1e-5)


# ---------------------------------------------------------------------------------------------
# 4. EM: monotone objective, recovery on simulated data
# ---------------------------------------------------------------------------------------------

TRUE_BERNOULLI = BernoulliGLMHMMParams(
    initial_probs=np.array([0.5, 0.5]),
    transition_matrix=np.array([[0.9, 0.1], [0.15, 0.85]]),
    weights=np.array([[3.0], [0.3]]),
    biases=np.array([0.0, 1.0]),
    # Leaving state 0 gets likelier with u, leaving state 1 less likely: V[1, 0] = -V[0, 1], so
    # the truth lies in the destination form too (d = (-0.75, 0.75)).
    transition_weights=np.array([[[0.0], [1.5]], [[-1.5], [0.0]]]),
)
# tol = 0: run until an iteration changes nothing in float32 (about 150 iterations here).
EM_SETTINGS = dict(family="bernoulli", num_restarts=3, num_iters=200, tol=0.0, seed=0)


@pytest.fixture(scope="module")
def bernoulli_data():
    inputs, emissions, transition_inputs, states = simulated_data(TRUE_BERNOULLI, jax.random.PRNGKey(11), 20, 200, 1)
    return inputs, emissions, transition_inputs, states


@pytest.fixture(scope="module")
def em_fits(bernoulli_data):
    inputs, emissions, transition_inputs, _ = bernoulli_data
    cache = {}

    def fit(form, priors):
        key = (form, priors)
        if key not in cache:
            if form == "stationary":
                cache[key] = fit_em(inputs, emissions, 2, priors=priors, **EM_SETTINGS)
            else:
                cache[key] = fit_em(
                    inputs,
                    emissions,
                    2,
                    priors=priors,
                    transition_inputs=transition_inputs,
                    transitions=form,
                    **EM_SETTINGS,
                )
        return cache[key]

    return fit


EM_PRIORS = Priors(transition_weight_scale=0.5, transition_concentration=2.0)


# Each combination compiles its own EM (~15 s on 2 cores): both forms, ML and MAP, are covered
# in two (full ML is also the recovery test's fit); the two others run with the slow tests.
@pytest.mark.parametrize(
    ("form", "priors"),
    [
        ("full", None),
        ("destination", EM_PRIORS),
        pytest.param("full", EM_PRIORS, marks=pytest.mark.slow),
        pytest.param("destination", None, marks=pytest.mark.slow),
    ],
    ids=["full-ML", "destination-MAP", "full-MAP", "destination-ML"],
)
def test_em_objective_never_decreases(em_fits, form, priors):
    result = em_fits(form, priors)
    log_probs = result.log_probs
    assert 20 <= len(log_probs) <= EM_SETTINGS["num_iters"]
    # Generalized EM is monotone in exact arithmetic; the objective sums 4000 float32 terms
    # (|total| ~ 2000), whose rounding is ~1e-7 relative: 1e-5 relative leaves ample room.
    assert np.all(np.diff(log_probs) >= -1e-5 * np.abs(log_probs[1:])), np.diff(log_probs).min()
    assert log_probs[-1] > log_probs[0]
    weights = result.params.transition_weights
    assert weights.shape == (2, 2, 1)
    np.testing.assert_array_equal(weights[[0, 1], [0, 1]], 0.0)
    if form == "destination":  # V[i, j] = d_j - d_i: antisymmetric for K = 2
        np.testing.assert_allclose(weights[1, 0], -weights[0, 1], atol=1e-5)


def test_em_recovers_input_driven_transitions(bernoulli_data, em_fits):
    inputs, emissions, transition_inputs, states = bernoulli_data
    result = em_fits("full", None)
    estimate = result.params
    estimated_states = most_likely_states(estimate, inputs, emissions, transition_inputs=transition_inputs)
    estimate = permute_params(estimate, find_state_permutation(states, estimated_states, 2))
    weights = estimate.transition_weights[..., 0]
    # 4000 transitions with |V| = 1.5 per unit of a N(0, 1) input: the ML standard errors are
    # ~0.2-0.3, so the signs are certain and the estimates within 0.75 (about 3 sd) of the truth.
    assert weights[0, 1] > 0 > weights[1, 0], weights
    np.testing.assert_allclose(weights[[0, 1], [1, 0]], [1.5, -1.5], atol=0.75)

    def total(params, **kwargs):
        return float(np.sum(log_likelihood(params, inputs, emissions, **kwargs)))

    # Converged: the last iterations change the objective by < 0.01 nats.
    assert abs(result.log_probs[-1] - result.log_probs[-2]) < 1e-2, result.log_probs[-3:]
    fitted = total(estimate, transition_inputs=transition_inputs)
    truth = total(TRUE_BERNOULLI, transition_inputs=transition_inputs)
    stationary = total(em_fits("stationary", None).params)
    # The (converged) ML estimate's likelihood is at least the truth's, up to float32 rounding of
    # a sum of 4000 terms (|total| ~ 2100, ~1e-3 nats) and the last EM steps' < 0.01 nats:
    # 0.05 nats allows for both (the margin on this seed's data is ~0.6 nats).
    assert fitted >= truth - 0.05, (fitted, truth)
    # The stationary model is nested (V = 0). A likelihood-ratio test with 2 extra parameters
    # rejects it at 1e-6 when the gain exceeds chi2_2(1 - 1e-6) / 2 = 13.8 nats; with |V| = 1.5
    # on 4000 transitions the expected gain is far larger.
    assert fitted > stationary + 13.8, (fitted, stationary)


# ---------------------------------------------------------------------------------------------
# 5. The NumPyro model's density: centred transition matrix and its Jacobian
# ---------------------------------------------------------------------------------------------


def _model_kwargs(
    family, num_states, inputs, emissions, mask, transition_inputs, transition_input_mean, priors, transitions
):
    dtype = jnp.result_type(float)
    return dict(
        inputs=jnp.asarray(inputs, dtype),
        emissions=jnp.asarray(emissions, dtype),
        mask=jnp.asarray(mask),
        num_states=num_states,
        priors=priors,
        input_mean=jnp.asarray(inputs, dtype).mean(axis=(0, 1)),
        family=get_family(family),
        transition_inputs=jnp.asarray(transition_inputs, dtype),
        transition_input_mean=jnp.asarray(transition_input_mean, dtype),
        transitions=transitions,
        adjoint=False,
    )


def test_centred_transition_matrix_density_is_the_dirichlet_pushforward():
    """K = 2, all emissions masked (likelihood 1): the model's density of the centred matrix A_c.

    By 2-D Gauss-Legendre quadrature over the two rows' free coordinates, exp(model log density -
    every other site's prior) integrates to 1, and the uncentred A it maps to has the
    Beta(alpha, alpha) moments of the Dirichlet prior: E[A] = 1/2, E[A^2] = (alpha + 1) / (2 (2 alpha + 1)).
    The shift between A and A_c (-V . u_bar, ~1.3 nats here) would move both without the Jacobian.
    """
    priors = Priors(transition_concentration=3.0, transition_weight_scale=0.8, weight_scale=1.3, bias_scale=0.6)
    rng = np.random.default_rng(3)
    inputs = rng.normal(1.0, 1.0, (2, 5, 1))
    transition_inputs = rng.normal(size=(2, 5, 2))
    u_bar = np.array([0.8, -0.5])
    free = np.array([[[1.2, -0.7]], [[-0.4, 0.9]]])  # V[0, 1], V[1, 0]
    sites = dict(
        initial_probs=jnp.array([0.3, 0.7]),
        free_transition_weights=jnp.asarray(free),
        weights=jnp.array([[0.4], [-1.1]]),
        centred_biases=jnp.array([0.2, -0.3]),
    )
    kwargs = _model_kwargs(
        "bernoulli",
        2,
        inputs,
        np.zeros((2, 5)),
        np.zeros((2, 5), bool),
        transition_inputs,
        u_bar,
        priors,
        FULL,
    )

    nodes, node_weights = np.polynomial.legendre.leggauss(48)
    nodes, node_weights = (nodes + 1) / 2, node_weights / 2  # on (0, 1)
    first, second = np.meshgrid(nodes, nodes, indexing="ij")
    centred = np.stack([np.stack([first, 1 - first], -1), np.stack([second, 1 - second], -1)], axis=-2).reshape(
        -1, 2, 2
    )

    @jax.jit
    def densities(centred):
        def one(matrix):
            value, trace = log_density(glmhmm_model, (), kwargs, {**sites, "centred_transition_matrix": matrix})
            return value, trace["transition_matrix"]["value"]

        return jax.vmap(one)(centred)

    values, matrices = densities(jnp.asarray(centred, jnp.result_type(float)))
    biases = np.asarray(sites["centred_biases"]) - np.asarray(sites["weights"]) @ inputs.mean(axis=(0, 1))
    rest = (
        stats.dirichlet.logpdf(np.asarray(sites["initial_probs"]), np.ones(2))
        + stats.norm.logpdf(free, 0.0, 0.8).sum()
        + stats.norm.logpdf(np.asarray(sites["weights"]), 0.0, 1.3).sum()
        + stats.norm.logpdf(biases, 0.0, 0.6).sum()
    )
    density = np.exp(np.asarray(values, float) - rest).reshape(48, 48)
    quadrature = np.outer(node_weights, node_weights)
    matrices = np.asarray(matrices, float).reshape(48, 48, 2, 2)
    # The deterministic A is A_c shifted by -V . u_bar in logits (checked at one point).
    np.testing.assert_allclose(
        matrices[3, 7],
        uncentre_transition_matrix(
            jnp.asarray(centred.reshape(48, 48, 2, 2)[3, 7], jnp.float32),
            free_to_full(jnp.asarray(free, jnp.float32)),
            jnp.asarray(u_bar, jnp.float32),
        ),
        atol=1e-6,
    )
    # Quadrature of a smooth integrand with 48 nodes is exact to ~1e-10; float32 log densities
    # of size ~10 round at ~1e-6 relative in the density: 1e-4 is ample.
    np.testing.assert_allclose(np.sum(quadrature * density), 1.0, atol=1e-4)
    alpha = priors.transition_concentration
    for row in (0, 1):
        a = matrices[..., row, 0]
        np.testing.assert_allclose(np.sum(quadrature * density * a), 0.5, atol=1e-4)
        np.testing.assert_allclose(np.sum(quadrature * density * a**2), (alpha + 1) / (2 * (2 * alpha + 1)), atol=1e-4)


@pytest.mark.parametrize("transitions", [FULL, DESTINATION], ids=["full", "destination"])
def test_model_log_density_is_prior_plus_likelihood_plus_jacobian(transitions):
    """K = 3 Gaussian with data: log density = log_prior(params) + log p(y | params) + log|dA / dA_c|."""
    priors = Priors(transition_concentration=1.5, transition_weight_scale=0.9, noise_scale=1.2)
    rng = np.random.default_rng(21)
    num_states, num_inputs = 3, 2
    inputs = rng.normal(2.0, 1.0, (2, 10, 1))
    transition_inputs = rng.normal(0.5, 1.0, (2, 10, num_inputs))
    emissions = rng.normal(size=(2, 10))
    mask = np.ones((2, 10), bool)
    mask[1, 7:] = False
    mask[0, 3] = False
    emissions[~mask] = 0.0
    u_bar = transition_inputs[mask].mean(axis=0)
    kwargs = _model_kwargs(
        "gaussian", num_states, inputs, emissions, mask, transition_inputs, u_bar, priors, transitions
    )
    input_mean = inputs.mean(axis=(0, 1))
    model_log_density = jax.jit(lambda sites: log_density(glmhmm_model, (), kwargs, sites)[0])

    for draw in range(3):
        centred = rng.dirichlet(np.full(num_states, 2.0), size=num_states)
        if transitions.form == "destination":
            d = rng.normal(size=(num_inputs, num_states))
            free_sites = {"destination_weights": d - d.mean(axis=-1, keepdims=True)}
            weights_v = destination_to_full(jnp.asarray(free_sites["destination_weights"]))
        else:
            free_sites = {"free_transition_weights": rng.normal(size=(num_states, num_states - 1, num_inputs))}
            weights_v = free_to_full(jnp.asarray(free_sites["free_transition_weights"]))
        sites = dict(
            initial_probs=rng.dirichlet(np.ones(num_states)),
            centred_transition_matrix=centred,
            weights=rng.normal(size=(num_states, 1)),
            centred_biases=rng.normal(size=num_states),
            scales=rng.uniform(0.5, 1.5, num_states),
            **free_sites,
        )
        sites = {name: jnp.asarray(value, jnp.result_type(float)) for name, value in sites.items()}
        value = model_log_density(sites)

        # The matrix at u = 0: in logits, log A = log A_c - V . u_bar, renormalized (NumPy oracle).
        logits = np.log(centred) - np.asarray(weights_v, float) @ u_bar
        matrix = np.exp(logits - logsumexp(logits, axis=-1, keepdims=True))
        params = GLMHMMParams(
            initial_probs=sites["initial_probs"],
            transition_matrix=matrix,
            weights=sites["weights"],
            biases=sites["centred_biases"] - sites["weights"] @ input_mean,
            scales=sites["scales"],
            transition_weights=weights_v,
        )
        jacobian = np.sum(np.log(matrix)) - np.sum(np.log(centred))
        expected = (
            log_prior(as_jax(params), priors, transitions)
            + np.sum(log_likelihood(params, inputs, emissions, mask, transition_inputs))
            + jacobian
        )
        # Total ~ -40 in float32: ~1e-6 relative rounding in each of the summed terms.
        np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-4, err_msg=f"draw {draw}")


@pytest.mark.parametrize("transitions", [FULL, DESTINATION], ids=["full", "destination"])
def test_prior_of_transition_weights(transitions):
    """sample_prior: zero diagonal; each V[i, j] ~ N(0, s) (full) or N(0, s sqrt 2) (destination), K = 3."""
    scale = 0.7
    priors = Priors(transition_weight_scale=scale)
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    draws = jax.jit(jax.vmap(lambda k: sample_prior(k, get_family("bernoulli"), 3, 1, priors, transitions, 2)))(keys)
    weights = np.asarray(draws.transition_weights)
    assert weights.shape == (4000, 3, 3, 2)
    np.testing.assert_array_equal(weights[:, [0, 1, 2], [0, 1, 2]], 0.0)
    off = weights[:, ~np.eye(3, dtype=bool)]  # (4000, 6, 2)
    expected_sd = scale * (np.sqrt(2.0) if transitions.form == "destination" else 1.0)
    # 4000 draws: the sample sd has relative standard error 1 / sqrt(2 * 4000) = 1.1%; 5% is > 4 se.
    np.testing.assert_allclose(off.std(axis=0), expected_sd, rtol=0.05)
    # Mean: standard error sd / sqrt(4000) ~ 0.016 sd; 0.08 sd is 5 se.
    np.testing.assert_allclose(off.mean(axis=0), 0.0, atol=0.08 * expected_sd)
    # The matrix at u = 0 keeps its Dirichlet(1) rows: E[A[i, j]] = 1/3 (se 0.004).
    np.testing.assert_allclose(np.asarray(draws.transition_matrix).mean(axis=0), 1 / 3, atol=0.02)


# ---------------------------------------------------------------------------------------------
# 6. Relabeling
# ---------------------------------------------------------------------------------------------


def test_relabeling_permutes_transition_weights_on_both_axes():
    rng = np.random.default_rng(9)
    params = random_params(rng, "poisson", 3, 1, 2)
    inputs = rng.normal(size=(2, 12, 1))
    transition_inputs = rng.normal(size=(2, 12, 2))
    emissions = rng.poisson(1.0, (2, 12)).astype(float)
    base = log_likelihood(params, inputs, emissions, transition_inputs=transition_inputs)
    for permutation in itertools.permutations(range(3)):
        permuted = permute_params(params, permutation)
        p = np.array(permutation)
        np.testing.assert_array_equal(permuted.transition_weights, params.transition_weights[p][:, p])
        # Relabeling is a symmetry of the model: same likelihood up to float32 summation order.
        np.testing.assert_allclose(
            log_likelihood(permuted, inputs, emissions, transition_inputs=transition_inputs), base, rtol=1e-6
        )

    chains, draws, num_states, num_inputs = 2, 5, 3, 2
    samples = {
        "transition_weights": rng.normal(size=(chains, draws, num_states, num_states, num_inputs)),
        "transition_matrix": rng.dirichlet(np.ones(num_states), size=(chains, draws, num_states)),
        "weights": rng.normal(size=(chains, draws, num_states, 1)),
    }
    permutations = np.stack([[rng.permutation(num_states) for _ in range(draws)] for _ in range(chains)])
    relabeled = relabel_draws(samples, permutations)
    for c, d in itertools.product(range(chains), range(draws)):
        p = permutations[c, d]
        for name in ("transition_weights", "transition_matrix"):
            np.testing.assert_array_equal(relabeled[name][c, d], samples[name][c, d][p][:, p], err_msg=name)
        np.testing.assert_array_equal(relabeled["weights"][c, d], samples["weights"][c, d][p])


# ---------------------------------------------------------------------------------------------
# 7. Analytic adjoint gradient
# ---------------------------------------------------------------------------------------------


def test_adjoint_gradient_equals_autodiff():
    rng = np.random.default_rng(13)
    params = as_jax(random_params(rng, "bernoulli", 3, 2, 2, weight_scale=1.0))
    inputs = jnp.asarray(rng.normal(size=(3, 20, 2)), jnp.result_type(float))
    transition_inputs = jnp.asarray(rng.normal(size=(3, 20, 2)), jnp.result_type(float))
    emissions = jnp.asarray(rng.integers(0, 2, (3, 20)), jnp.result_type(float))
    mask = np.ones((3, 20), bool)
    mask[0, 4:7] = False
    mask[2, 15:] = False
    mask = jnp.asarray(mask)

    def objective(params, adjoint):
        return jnp.sum(
            batched_marginal_loglik(
                params, inputs, emissions, mask, adjoint=adjoint, transition_inputs=transition_inputs
            )
        )

    value_adjoint, grad_adjoint = jax.value_and_grad(objective)(params, True)
    value_autodiff, grad_autodiff = jax.value_and_grad(objective)(params, False)
    np.testing.assert_allclose(value_adjoint, value_autodiff, rtol=1e-6)
    assert np.any(np.abs(grad_autodiff.transition_weights) > 0.1)  # a non-trivial check
    # Two float32 evaluations of the same gradient (sums of ~60 terms of size ~1): ~1e-5.
    for name in params._fields:
        np.testing.assert_allclose(
            getattr(grad_adjoint, name), getattr(grad_autodiff, name), rtol=1e-4, atol=1e-4, err_msg=name
        )


# ---------------------------------------------------------------------------------------------
# 8. Validation
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_input_driven():
    rng = np.random.default_rng(17)
    params = random_params(rng, "bernoulli", 2, 1, 2)
    inputs = rng.normal(size=(2, 6, 1))
    emissions = rng.integers(0, 2, (2, 6)).astype(float)
    transition_inputs = rng.normal(size=(2, 6, 2))
    return params, inputs, emissions, transition_inputs


def _bad_transition_inputs(transition_inputs):
    nan = transition_inputs.copy()
    nan[1, 2, 0] = np.nan
    return {
        "wrong length": transition_inputs[:, :-1],
        "wrong sequences": transition_inputs[:1],
        "NaN": nan,
        "inf": np.where(nan != nan, np.inf, nan),
    }


def test_log_likelihood_validates_transition_inputs(small_input_driven):
    params, inputs, emissions, transition_inputs = small_input_driven
    for bad in _bad_transition_inputs(transition_inputs).values():
        for function in (log_likelihood, smoothed_state_probs, most_likely_states):
            with pytest.raises(ValueError, match="transition_inputs"):
                function(params, inputs, emissions, transition_inputs=bad)
    with pytest.raises(ValueError, match="transition_inputs"):  # wrong M
        log_likelihood(params, inputs, emissions, transition_inputs=transition_inputs[..., :1])
    with pytest.raises(ValueError, match="transition_inputs"):  # missing for input-driven params
        log_likelihood(params, inputs, emissions)
    with pytest.raises(ValueError, match="transition_inputs"):  # given for stationary params
        log_likelihood(params._replace(transition_weights=None), inputs, emissions, transition_inputs=transition_inputs)
    # One input may come without its trailing axis: (N, T) is (N, T, 1).
    one = params._replace(transition_weights=params.transition_weights[..., :1])
    np.testing.assert_array_equal(
        log_likelihood(one, inputs, emissions, transition_inputs=transition_inputs[..., 0]),
        log_likelihood(one, inputs, emissions, transition_inputs=transition_inputs[..., :1]),
    )


def test_simulate_validates_transition_inputs(small_input_driven):
    params, inputs, _, transition_inputs = small_input_driven
    key = jax.random.PRNGKey(0)
    for bad in _bad_transition_inputs(transition_inputs).values():
        with pytest.raises(ValueError, match="transition_inputs"):
            simulate(key, params, inputs, bad)
    with pytest.raises(ValueError, match="transition_inputs"):
        simulate(key, params, inputs)
    with pytest.raises(ValueError, match="transition_inputs"):
        simulate(key, params._replace(transition_weights=None), inputs, transition_inputs)
    # A single sequence: (T, D) inputs with (T, M) transition inputs give (T,) outputs.
    states, emissions = simulate(key, params, inputs[0], transition_inputs[0])
    assert states.shape == emissions.shape == (6,)


def test_fit_em_and_fit_nuts_validate_transitions(small_input_driven):
    params, inputs, emissions, transition_inputs = small_input_driven
    settings = dict(family="bernoulli", num_restarts=1, num_iters=2)
    for bad in _bad_transition_inputs(transition_inputs).values():
        with pytest.raises(ValueError, match="transition_inputs"):
            fit_em(inputs, emissions, 2, transition_inputs=bad, **settings)
        with pytest.raises(ValueError, match="transition_inputs"):
            fit_nuts(inputs, emissions, 2, transition_inputs=bad, family="bernoulli", progress_bar=False)
    with pytest.raises(ValueError, match="transitions must be"):
        fit_em(inputs, emissions, 2, transition_inputs=transition_inputs, transitions="bogus", **settings)
    with pytest.raises(ValueError, match="transitions must be"):
        fit_nuts(inputs, emissions, 2, transition_inputs=transition_inputs, transitions="bogus", progress_bar=False)
    with pytest.raises(ValueError, match="transition_inputs"):  # an input-driven form without inputs
        fit_em(inputs, emissions, 2, transitions="destination", **settings)
    with pytest.raises(ValueError, match="transition_inputs"):  # inputs with stationary transitions
        fit_em(inputs, emissions, 2, transition_inputs=transition_inputs, transitions="stationary", **settings)
    with pytest.raises(ValueError, match="transition_weights"):  # a stationary start for input-driven EM
        fit_em(
            inputs,
            emissions,
            2,
            transition_inputs=transition_inputs,
            init_params=params._replace(transition_weights=None),
            **settings,
        )


def _fake_posterior(params_draws, inputs, emissions, transition_inputs, family="bernoulli"):
    """A Posterior holding given draws (chain, draw, ...) of input-driven params, without sampling."""
    samples = {name: np.asarray(value) for name, value in params_draws.items()}
    chains, draws = samples["weights"].shape[:2]
    num_states = samples["weights"].shape[2]
    return Posterior(
        samples=samples,
        permutations=np.broadcast_to(np.arange(num_states), (chains, draws, num_states)).copy(),
        sample_stats={},
        inputs=inputs,
        emissions=emissions,
        mask=np.ones(emissions.shape, bool),
        num_states=num_states,
        priors=Priors(),
        family=get_family(family),
        transitions=FULL,
        transition_inputs=transition_inputs,
    )


@pytest.fixture(scope="module")
def fake_posterior(small_input_driven):
    _, inputs, emissions, transition_inputs = small_input_driven
    keys = jax.random.split(jax.random.PRNGKey(2), 6)
    draws = jax.jit(jax.vmap(lambda k: sample_prior(k, get_family("bernoulli"), 2, 1, Priors(), FULL, 2)))(keys)
    samples = {name: np.asarray(value).reshape((2, 3) + value.shape[1:]) for name, value in draws._asdict().items()}
    return _fake_posterior(samples, inputs, emissions, transition_inputs)


def test_posterior_validates_transition_inputs(fake_posterior, small_input_driven):
    _, inputs, emissions, transition_inputs = small_input_driven
    with pytest.raises(ValueError, match="transition_inputs"):
        fake_posterior.log_likelihood(inputs, emissions)
    with pytest.raises(ValueError, match="transition_inputs"):
        fake_posterior.log_predictive_density(inputs, emissions, transition_inputs=transition_inputs[..., :1])
    for bad in _bad_transition_inputs(transition_inputs).values():
        with pytest.raises(ValueError, match="transition_inputs"):
            fake_posterior.state_probabilities(inputs, emissions, transition_inputs=bad)
    with pytest.raises(ValueError, match="transition_inputs"):  # only with new data
        fake_posterior.log_likelihood(transition_inputs=transition_inputs)


def test_log_predictive_density_is_log_mean_exp_of_draws(fake_posterior):
    """On new data: log (1/S) sum_s p(y_new | theta_s), each p from the public log_likelihood."""
    rng = np.random.default_rng(23)
    inputs = rng.normal(size=(3, 8, 1))
    emissions = rng.integers(0, 2, (3, 8)).astype(float)
    transition_inputs = rng.normal(size=(3, 8, 2))
    per_draw = []
    for c, d in itertools.product(range(2), range(3)):
        params = BernoulliGLMHMMParams(**{name: value[c, d] for name, value in fake_posterior.samples.items()})
        per_draw.append(np.asarray(log_likelihood(params, inputs, emissions, transition_inputs=transition_inputs)))
    expected = logsumexp(np.asarray(per_draw, float), axis=0) - np.log(6)
    value = fake_posterior.log_predictive_density(inputs, emissions, transition_inputs=transition_inputs)
    assert value.shape == (3,)
    # float32 log-likelihoods of size ~6: 1e-5 relative.
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    # The fitted data by default (in-sample): the same formula on Posterior.log_likelihood().
    fitted = fake_posterior.log_likelihood().reshape(6, -1).astype(float)
    np.testing.assert_allclose(
        fake_posterior.log_predictive_density(), logsumexp(fitted, axis=0) - np.log(6), rtol=1e-6
    )


# ---------------------------------------------------------------------------------------------
# 9. NUTS: simulate and recover
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_fit_nuts_recovers_input_driven_transitions(bernoulli_data):
    inputs, emissions, transition_inputs, states = bernoulli_data
    posterior = fit_nuts(
        inputs,
        emissions,
        2,
        family="bernoulli",
        transition_inputs=transition_inputs,
        transitions="full",
        num_chains=2,
        num_warmup=300,
        num_samples=300,
        em_restarts=3,
        seed=3,
        progress_bar=False,
    )
    assert posterior.transitions == FULL
    weights = posterior.samples["transition_weights"]
    assert weights.shape == (2, 300, 2, 2, 1)
    np.testing.assert_array_equal(weights[..., [0, 1], [0, 1], :], 0.0)
    # Put the posterior in the truth's labels (by the Viterbi path of the posterior mean).
    mean = posterior.posterior_mean()
    estimated_states = most_likely_states(mean, inputs, emissions, transition_inputs=transition_inputs)
    posterior = posterior.permute(find_state_permutation(states, estimated_states, 2))
    weights = posterior.samples["transition_weights"][..., 0]
    # Seeded check: each 90% central interval misses a fixed truth with probability 0.1 if
    # calibrated; this seed's data and chains are fixed, so the check is deterministic.
    for (i, j), truth in zip([(0, 1), (1, 0)], [1.5, -1.5], strict=True):
        low, high = np.quantile(weights[..., i, j], [0.05, 0.95])
        assert low < truth < high, (i, j, low, high)
    diagnostics = posterior.diagnostics()
    # 2 chains x 300 draws of a well-identified posterior started at the MAP: R-hat < 1.05.
    assert diagnostics["max_rhat"] < 1.05, diagnostics
    assert diagnostics["divergences"] == 0, diagnostics

    # Held-out sequences from the truth: log predictive density = log-mean-exp over draws.
    new_inputs, new_emissions, new_transition_inputs, _ = simulated_data(
        TRUE_BERNOULLI, jax.random.PRNGKey(99), 3, 50, 1
    )
    per_draw = posterior.log_likelihood(new_inputs, new_emissions, transition_inputs=new_transition_inputs)
    per_draw = per_draw.reshape(-1, 3).astype(float)
    expected = logsumexp(per_draw, axis=0) - np.log(per_draw.shape[0])
    value = posterior.log_predictive_density(new_inputs, new_emissions, transition_inputs=new_transition_inputs)
    np.testing.assert_allclose(value, expected, rtol=1e-6)


def test_tabulated_transition_inputs_give_the_same_model():
    """Inputs with few distinct rows (indicators) go to the model as a table of distinct rows and a
    per-step index (fit_nuts does this; same model, fewer softmaxes): the log density and its
    gradient, with the analytic adjoint, equal those with the per-step inputs (float32 rounding).
    Continuous inputs are not tabulated."""
    from bayes_glmhmm.transitions import tabulate_transition_inputs

    rng = np.random.default_rng(5)
    num_states, num_inputs = 3, 2
    inputs = rng.normal(size=(3, 12, 1))
    transition_inputs = rng.integers(0, 2, (3, 12, num_inputs)).astype(float)
    emissions = rng.normal(size=(3, 12))
    mask = np.ones((3, 12), bool)
    mask[2, 9:] = False
    u_bar = transition_inputs[mask].mean(axis=0)
    table = tabulate_transition_inputs(transition_inputs)
    assert table is not None and table.rows.shape == (4, num_inputs)
    np.testing.assert_array_equal(np.asarray(table.rows)[np.asarray(table.index)], transition_inputs)
    assert tabulate_transition_inputs(rng.normal(size=(3, 12, num_inputs))) is None

    per_step = _model_kwargs("gaussian", num_states, inputs, emissions, mask, transition_inputs, u_bar, Priors(), FULL)
    per_step["adjoint"] = True
    tabulated = {key: value for key, value in per_step.items() if key != "transition_inputs"}
    tabulated |= dict(transition_input_rows=table.rows, transition_input_index=table.index)
    sites = dict(
        initial_probs=rng.dirichlet(np.ones(num_states)),
        centred_transition_matrix=rng.dirichlet(np.full(num_states, 2.0), size=num_states),
        weights=rng.normal(size=(num_states, 1)),
        centred_biases=rng.normal(size=num_states),
        scales=rng.uniform(0.5, 1.5, num_states),
        free_transition_weights=rng.normal(size=(num_states, num_states - 1, num_inputs)),
    )
    sites = {name: jnp.asarray(value, jnp.result_type(float)) for name, value in sites.items()}

    def density(kwargs):
        return jax.value_and_grad(lambda values: log_density(glmhmm_model, (), kwargs, values)[0])(sites)

    (value, gradient), (expected_value, expected_gradient) = density(tabulated), density(per_step)
    np.testing.assert_allclose(value, expected_value, rtol=1e-5)
    for name in sites:
        np.testing.assert_allclose(gradient[name], expected_gradient[name], rtol=1e-4, atol=1e-4, err_msg=name)
