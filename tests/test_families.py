"""Oracle tests of the Bernoulli, categorical and Poisson families (float32, the suite's default).

Each family is checked against something that does not share its code: dynamax's
``LogisticRegressionHMM``, ``CategoricalRegressionHMM`` and ``PoissonHMM``; brute-force
enumeration of every state path; statsmodels' ``Logit``, ``MNLogit`` and ``GLM(Poisson)`` for
one state; SciPy's optimizer for the M-step's target; and float64 NumPy/SciPy formulas for the
densities and the means of simulated data. The NUTS fits are in ``test_families_fit.py``.
"""

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize, special, stats

from bayes_glmhmm import (
    BernoulliGLMHMMParams,
    CategoricalGLMHMMParams,
    Posterior,
    Priors,
    fit_em,
    fit_nuts,
    get_family,
    log_likelihood,
    most_likely_states,
    posterior_from_inference_data,
    simulate,
    smoothed_state_probs,
)
from bayes_glmhmm.emissions._glm import design_matrix
from bayes_glmhmm.model import batched_smoother, log_prior

FAMILIES = ("bernoulli", "categorical", "poisson")
NUM_CLASSES = 3  # C of every categorical test


def family_for(name: str):
    return get_family(name, NUM_CLASSES if name == "categorical" else None)


def random_params(rng, name: str, num_states: int, input_dim: int):
    """Parameters with Dirichlet(1) probabilities, Normal(0, 1) weights, Normal(0, 0.5) biases."""
    family = family_for(name)
    weight_shape = family.weight_shape(num_states, input_dim)
    return family.params_type(
        initial_probs=rng.dirichlet(np.ones(num_states)),
        transition_matrix=rng.dirichlet(np.ones(num_states), size=num_states),
        weights=rng.normal(size=weight_shape),
        biases=rng.normal(scale=0.5, size=weight_shape[:-1]) + (0.5 if name == "poisson" else 0.0),
    )


def oracle_means(name: str, params, inputs) -> np.ndarray:
    """Float64 E[y | x, z = k]: p(y = 1), the class probabilities (..., K, C), or the Poisson rate."""
    eta = np.tensordot(np.asarray(inputs, float), np.asarray(params.weights, float), axes=[[-1], [-1]])
    eta = eta + np.asarray(params.biases, float)
    if name == "bernoulli":
        return special.expit(eta)
    if name == "poisson":
        return np.exp(eta)
    full_logits = np.concatenate([np.zeros(eta.shape[:-1] + (1,)), eta], axis=-1)  # class 0 the reference
    return special.softmax(full_logits, axis=-1)


def oracle_log_likelihoods(name: str, params, inputs, emissions) -> np.ndarray:
    """Float64 log p(y | x, z = k) from SciPy's distributions, shape (..., K)."""
    means = oracle_means(name, params, inputs)
    labels = np.asarray(emissions, float)[..., None]
    if name == "bernoulli":
        return stats.bernoulli.logpmf(labels, means)
    if name == "poisson":
        return stats.poisson.logpmf(labels, means)
    one_hot = labels[..., None] == np.arange(means.shape[-1])
    return np.log(np.sum(np.where(one_hot, means, 0.0), axis=-1))


def random_emissions(rng, name: str, shape) -> np.ndarray:
    if name == "bernoulli":
        return rng.integers(0, 2, size=shape).astype(float)
    if name == "categorical":
        return rng.integers(0, NUM_CLASSES, size=shape).astype(float)
    return rng.poisson(2.0, size=shape).astype(float)


def to_float32(params):
    return jax.tree.map(lambda value: jnp.asarray(value, jnp.float32), params)


# 1. dynamax as the oracle of the per-step log-probabilities and the marginal likelihood.


def dynamax_model(name: str, params, input_dim: int):
    """The dynamax HMM and its parameters equal to ours: ``(model, dynamax_params)``.

    dynamax's categorical regression has C full logit vectors; ours has C - 1 against class 0,
    which is the full parametrization with a zero row prepended for class 0. dynamax's Poisson
    HMM has no inputs: its rate exp(biases[k]) is ours at zero inputs.
    """
    hmm_module = pytest.importorskip("dynamax.hidden_markov_model")
    params = to_float32(params)
    num_states = params.num_states
    chain = dict(initial_probs=params.initial_probs, transition_matrix=params.transition_matrix)
    if name == "bernoulli":
        model = hmm_module.LogisticRegressionHMM(num_states, input_dim)
        emission = dict(emission_weights=params.weights, emission_biases=params.biases)
    elif name == "categorical":
        model = hmm_module.CategoricalRegressionHMM(num_states, NUM_CLASSES, input_dim)
        zero_row = jnp.zeros_like(params.weights[:, :1])
        emission = dict(
            emission_weights=jnp.concatenate([zero_row, params.weights], axis=1),
            emission_biases=jnp.concatenate([zero_row[..., 0], params.biases], axis=1),
        )
    else:
        model = hmm_module.PoissonHMM(num_states, 1)
        emission = dict(emission_rates=jnp.exp(params.biases)[:, None])
    dynamax_params, _ = model.initialize(jax.random.PRNGKey(0), **chain, **emission)
    return model, dynamax_params


@pytest.mark.parametrize("name", FAMILIES)
def test_log_likelihoods_match_dynamax(name):
    """Per-state log p(y_t | x_t, z_t = k) and log p(y | x) of 3 sequences x 40 steps at random
    parameters (K = 3; D = 2, or D = 1 zero inputs for dynamax's input-free Poisson HMM). Both
    sides compute in float32: per-step values agree to 1e-5, sums of 40 steps to relative 1e-5."""
    rng = np.random.default_rng(11)
    input_dim = 1 if name == "poisson" else 2
    params = random_params(rng, name, 3, input_dim)
    inputs = rng.normal(size=(3, 40, input_dim)) * (name != "poisson")
    emissions = random_emissions(rng, name, (3, 40))
    model, dynamax_params = dynamax_model(name, params, input_dim)
    family = family_for(name)
    ours = family.log_likelihoods(to_float32(params), jnp.asarray(inputs, jnp.float32), jnp.asarray(emissions))
    ours_marginal = log_likelihood(params, inputs, emissions)

    @jax.jit
    def dynamax_values(x, y):
        def state_log_probs(x_t, y_t):
            distributions = [model.emission_component.distribution(dynamax_params.emissions, k, x_t) for k in range(3)]
            return jnp.stack([distribution.log_prob(y_t) for distribution in distributions])

        marginal = model.marginal_log_prob(dynamax_params, y, x if name != "poisson" else None)
        return jax.vmap(state_log_probs)(x, y), marginal

    for n in range(3):
        y = jnp.asarray(emissions[n], jnp.int32)
        per_step, marginal = dynamax_values(jnp.asarray(inputs[n], jnp.float32), y[:, None] if name == "poisson" else y)
        np.testing.assert_allclose(ours[n], per_step, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ours_marginal[n], marginal, rtol=1e-5)


def test_poisson_with_inputs_matches_dynamax_filter_on_scipy_log_likelihoods():
    """dynamax's Poisson HMM has no inputs; with inputs, its ``hmm_filter`` on SciPy's float64
    Poisson log-pmfs (rates exp(x . weights[k] + biases[k])) is the oracle of the marginal."""
    hmm_module = pytest.importorskip("dynamax.hidden_markov_model")
    rng = np.random.default_rng(12)
    params = random_params(rng, "poisson", 3, 2)
    inputs = rng.normal(size=(2, 50, 2))
    emissions = rng.poisson(oracle_means("poisson", params, inputs)[..., 0])
    ours = log_likelihood(params, inputs, emissions)
    for n in range(2):
        log_likelihoods = oracle_log_likelihoods("poisson", params, inputs[n], emissions[n])
        posterior = hmm_module.hmm_filter(
            jnp.asarray(params.initial_probs, jnp.float32),
            jnp.asarray(params.transition_matrix, jnp.float32),
            jnp.asarray(log_likelihoods, jnp.float32),
        )
        np.testing.assert_allclose(ours[n], posterior.marginal_loglik, rtol=1e-5)


# 2. Brute-force enumeration of all K^T state paths.


def enumerate_paths(params, log_likelihoods, mask):
    """Every path's log p(z) + sum_t mask_t log p(y_t | z_t) for one sequence: (paths (P, T), log joint (P,))."""
    num_timesteps, num_states = log_likelihoods.shape
    paths = np.array(list(itertools.product(range(num_states), repeat=num_timesteps)))
    log_initial = np.log(np.asarray(params.initial_probs, float))
    log_transition = np.log(np.asarray(params.transition_matrix, float))
    log_joint = log_initial[paths[:, 0]] + np.sum(log_transition[paths[:, :-1], paths[:, 1:]], axis=1)
    log_joint += np.sum(np.where(mask, log_likelihoods[np.arange(num_timesteps), paths], 0.0), axis=1)
    return paths, log_joint


@pytest.mark.parametrize("num_states", [2, 3])
@pytest.mark.parametrize("name", FAMILIES)
def test_enumeration_of_every_path(name, num_states):
    """Two sequences of T = 5 (one step missing, its emission NaN): log p(y) is the log-sum over all
    K^T paths of p(z) prod_t p(y_t | z_t), p(z_t = k | y) the enumerated path posterior's
    marginal, and the Viterbi path the enumerated argmax. Float64 oracle vs float32 filter:
    relative 1e-5 on log p(y), 1e-5 on probabilities."""
    rng = np.random.default_rng(20 + num_states)
    params = random_params(rng, name, num_states, 2)
    inputs = rng.normal(size=(2, 5, 2))
    emissions = random_emissions(rng, name, (2, 5))
    mask = np.ones((2, 5), bool)
    mask[1, 2] = False
    emissions[1, 2] = np.nan
    marginal = log_likelihood(params, inputs, emissions, mask)
    smoothed = smoothed_state_probs(params, inputs, emissions, mask)
    viterbi = most_likely_states(params, inputs, emissions, mask)
    for n in range(2):
        log_likelihoods = oracle_log_likelihoods(name, params, inputs[n], np.nan_to_num(emissions[n]))
        paths, log_joint = enumerate_paths(params, log_likelihoods, mask[n][None])
        total = special.logsumexp(log_joint)
        np.testing.assert_allclose(marginal[n], total, rtol=1e-5)
        path_posterior = np.exp(log_joint - total)
        expected = np.stack([np.bincount(paths[:, t], path_posterior, num_states) for t in range(5)])
        np.testing.assert_allclose(smoothed[n], expected, atol=1e-5)
        np.testing.assert_array_equal(viterbi[n], paths[np.argmax(log_joint)])


# 3. One state is a plain GLM: statsmodels' maximum likelihood.


def one_state_data(name: str):
    """4 sequences x 150 steps from a one-state GLM with D = 2 standard Normal inputs."""
    rng = np.random.default_rng(30)
    inputs = rng.normal(size=(4, 150, 2))
    truth = {
        "bernoulli": BernoulliGLMHMMParams(np.ones(1), np.ones((1, 1)), np.array([[1.0, -0.7]]), np.array([0.3])),
        "poisson": random_params(rng, "poisson", 1, 2)._replace(weights=np.array([[0.5, -0.3]])),
        "categorical": CategoricalGLMHMMParams(
            np.ones(1), np.ones((1, 1)), np.array([[[1.0, -0.5], [-0.8, 0.6]]]), np.array([[0.2, -0.3]])
        ),
    }[name]
    _, emissions = simulate(jax.random.PRNGKey(31), truth, inputs)
    return inputs, np.asarray(emissions)


@pytest.mark.parametrize("name", FAMILIES)
def test_one_state_is_the_statsmodels_glm(name):
    """fit_em with K = 1 and no priors, from zero coefficients, is maximum likelihood of the GLM
    (damped Newton steps until the objective repeats): its coefficients match
    statsmodels' (float64 Newton) to 1e-3, 1% of their smallest standard error (~0.1): float32
    rounding of the 600-term score moves the fixed point by ~1e-4. The log-likelihood matches
    ``llf`` to relative 1e-5 (float32 sums of 600 terms)."""
    sm = pytest.importorskip("statsmodels.api")
    inputs, emissions = one_state_data(name)
    design = sm.add_constant(inputs.reshape(-1, 2), prepend=False)  # intercept last, as our (weights, bias)
    labels = emissions.reshape(-1)
    if name == "bernoulli":
        reference = sm.Logit(labels, design).fit(disp=0)
    elif name == "categorical":
        reference = sm.MNLogit(labels, design).fit(disp=0)  # its first class is the reference, as ours
    else:
        reference = sm.GLM(labels, design, family=sm.families.Poisson()).fit()
    family = family_for(name)
    weight_shape = family.weight_shape(1, 2)
    zeros = family.params_type(np.ones(1), np.ones((1, 1)), np.zeros(weight_shape), np.zeros(weight_shape[:-1]))
    result = fit_em(inputs, emissions, 1, family=family, num_iters=100, tol=1e-9, init_params=zeros)
    assert result.converged
    coefficients = np.concatenate([result.params.weights, result.params.biases[..., None]], axis=-1)[0]
    expected = np.asarray(reference.params).T.reshape(coefficients.shape)  # MNLogit: (D + 1, C - 1)
    np.testing.assert_allclose(coefficients, expected, atol=1e-3)
    fitted_log_likelihood = float(np.sum(log_likelihood(result.params, inputs, emissions)))
    np.testing.assert_allclose(fitted_log_likelihood, reference.llf, rtol=1e-5)
    np.testing.assert_allclose(result.log_probs[-1], reference.llf, rtol=1e-5)


# 4. EM never decreases its objective; the Newton M-step never decreases Q_k.


def two_state_truth(name: str):
    transition_matrix = np.array([[0.9, 0.1], [0.15, 0.85]])
    weights = {
        "bernoulli": np.array([[2.0, -1.0], [-0.5, 1.5]]),
        "poisson": np.array([[0.6, -0.4], [-0.3, 0.5]]),
        "categorical": np.array([[[1.5, -1.0], [0.5, 0.8]], [[-1.0, 0.5], [1.0, -1.2]]]),
    }[name]
    biases = {"bernoulli": [0.5, -1.0], "poisson": [1.0, -0.2], "categorical": [[0.5, -0.5], [-0.5, 0.6]]}[name]
    return family_for(name).params_type(np.array([0.6, 0.4]), transition_matrix, weights, np.array(biases))


@pytest.fixture(scope="module", params=FAMILIES)
def two_state_data(request):
    """4 sequences x 100 steps of a two-state GLM-HMM of each family."""
    name = request.param
    truth = two_state_truth(name)
    inputs = jax.random.normal(jax.random.PRNGKey(40), (4, 100, 2))
    _, emissions = simulate(jax.random.PRNGKey(41), truth, inputs)
    return name, truth, np.asarray(inputs), np.asarray(emissions)


# Concentrations above 1 keep every probability off the simplex's boundary; at the default 1 the
# MAP objective is NaN once one underflows to 0 (test_dirichlet_log_prior_is_finite_at_zero_probability).
MAP_PRIORS = Priors(initial_concentration=2.0, transition_concentration=2.0, weight_scale=0.7, bias_scale=1.3)


@pytest.mark.parametrize("priors", [None, MAP_PRIORS], ids=["ml", "map"])
def test_em_objective_never_decreases(two_state_data, priors):
    """Three random starts, 150 iterations or until the objective repeats exactly. The first
    objective is log p(y | start) [+ log p(start)] (relative 1e-5). A float32 objective of
    |L| ~ 300-700 has an ulp of ~6e-8 |L| and the filter adds a few ulps of noise per iteration
    (observed: at most 2 ulps down); we allow 1e-6 |L| (16 ulps, ~5e-4 nats). A bad M-step
    costs far more than that."""
    name, _, inputs, emissions = two_state_data
    rng = np.random.default_rng(42)
    for _ in range(3):
        start = random_params(rng, name, 2, 2)
        result = fit_em(inputs, emissions, 2, family=name, priors=priors, num_iters=150, tol=0.0, init_params=start)
        log_probs = result.log_probs
        assert np.all(np.isfinite(log_probs))
        at_start = np.sum(log_likelihood(start, inputs, emissions))
        at_start += 0.0 if priors is None else float(log_prior(to_float32(start), priors))
        np.testing.assert_allclose(log_probs[0], at_start, rtol=1e-5)  # the ML or MAP objective
        assert log_probs[-1] > log_probs[0] + 1.0  # EM moved from the random start
        np.testing.assert_array_less(-np.diff(log_probs), 1e-6 * np.abs(log_probs[1:]))


class Coefficients(NamedTuple):
    """One state's weights (1, [C - 1,] D) and biases (1, [C - 1]), for :func:`oracle_log_likelihoods`."""

    weights: np.ndarray
    biases: np.ndarray


def expected_complete_objective(name, coefficients, design, emissions, state_weights, priors):
    """Float64 Q_k(beta) = sum_t w_tk log p(y_t | X_t beta) [- 0.5 sum beta^2 / prior variance]."""
    coefficients = np.asarray(coefficients, float)
    params = Coefficients(coefficients[None, ..., :-1], coefficients[None, ..., -1])
    inputs = np.asarray(design, float)[..., :-1]
    log_likelihoods = oracle_log_likelihoods(name, params, inputs, emissions)[..., 0]
    value = np.sum(state_weights * log_likelihoods)
    if priors is not None:
        value -= 0.5 * np.sum(coefficients[..., :-1] ** 2) / priors.weight_scale**2
        value -= 0.5 * np.sum(coefficients[..., -1] ** 2) / priors.bias_scale**2
    return value


@pytest.mark.parametrize("priors", [None, MAP_PRIORS], ids=["ml", "map"])
def test_newton_m_step_climbs_to_the_maximizer_of_q(two_state_data, priors):
    """From a far start (weights ~ Normal(0, sd 2); Poisson biases -3, where an undamped Newton
    step overshoots), 25 repeated M-steps at fixed responsibilities: Q_k (float64 oracle) never
    decreases by more than 1e-6 |Q_k| (float32 rounding of the step's own comparison), and ends at
    SciPy's float64 BFGS maximizer of Q_k to 1e-4 (BFGS's own accuracy is ~1e-5; the float32
    Newton fixed point lies within ~1e-6 of the float64 one). Without the step-size search the
    categorical and Poisson starts diverge and this fails."""
    name, truth, inputs, emissions = two_state_data
    family = family_for(name)
    rng = np.random.default_rng(43)
    design = design_matrix(jnp.asarray(inputs, jnp.float32))
    mask = np.ones(emissions.shape, bool)
    mask[0, :10] = False
    posterior = batched_smoother(to_float32(truth), jnp.asarray(inputs, jnp.float32), jnp.asarray(emissions), mask)
    step_weights = np.asarray(posterior.smoothed_probs) * mask[..., None]
    start = random_params(rng, name, 2, 2)
    start = start._replace(weights=2 * rng.normal(size=start.weights.shape))
    if name == "poisson":
        start = start._replace(biases=np.full(2, -3.0))
    m_step = jax.jit(lambda params: family.m_step(params, design, jnp.asarray(emissions), step_weights, priors))
    params = to_float32(start)

    def q_values(params):
        coefficients = np.concatenate([params.weights, np.asarray(params.biases)[..., None]], axis=-1)
        return np.array(
            [
                expected_complete_objective(name, coefficients[k], design, emissions, step_weights[..., k], priors)
                for k in range(2)
            ]
        )

    history = [q_values(params)]
    for _ in range(25):
        params = params._replace(**m_step(params))
        history.append(q_values(params))
    history = np.array(history)
    assert np.all(np.isfinite(history))
    np.testing.assert_array_less(-np.diff(history, axis=0), 1e-6 * np.abs(history[1:]))
    assert np.all(history[-1] > history[0] + 1.0)
    for k in range(2):
        final = np.concatenate([params.weights[k], np.asarray(params.biases[k])[..., None]], axis=-1)
        shape = final.shape

        def negative_q(flat, k=k, shape=shape):
            return -expected_complete_objective(
                name, flat.reshape(shape), design, emissions, step_weights[..., k], priors
            )

        best = optimize.minimize(negative_q, np.zeros(final.size), method="BFGS", options=dict(gtol=1e-8))
        np.testing.assert_allclose(final.ravel(), best.x, atol=1e-4)


def test_dirichlet_log_prior_is_finite_at_zero_probability():
    """Dirichlet.log_prob is (alpha - 1) log p = 0 * log 0 = NaN at a zero probability under concentration 1
    (the default), and MAP EM drives initial probabilities to exactly 0; log_prior must stay finite."""
    params = BernoulliGLMHMMParams(
        np.array([0.0, 1.0]), np.array([[1.0, 0.0], [0.5, 0.5]]), np.zeros((2, 1)), np.zeros(2)
    )
    assert np.isfinite(float(log_prior(params, Priors())))


# 5. Emissions outside a family's support.


@pytest.mark.parametrize(
    ("name", "value", "num_classes"),
    [
        ("bernoulli", 2.0, None),
        ("bernoulli", 0.5, None),
        ("bernoulli", -1.0, None),  # with the 0s and 1s elsewhere: a -1/0/1 mix is ambiguous
        ("poisson", -1.0, None),
        ("poisson", 2.5, None),
        ("categorical", 3.0, 3),
        ("categorical", -1.0, 3),
        ("categorical", 1.5, 3),
    ],
)
def test_bad_emissions_name_the_first_offending_step(name, value, num_classes):
    """Bad values at (1, 2) and (0, 4): the error names ``emissions`` and (0, 4), the first in
    (sequence, step) order, from log_likelihood, fit_em and fit_nuts alike (before any fitting)."""
    family = get_family(name, num_classes)
    rng = np.random.default_rng(50)
    params = random_params(rng, "categorical" if num_classes else name, 2, 1)
    inputs = rng.normal(size=(2, 6, 1))
    emissions = np.tile([0.0, 1.0, 1.0, 0.0, 1.0, 0.0], (2, 1))
    emissions[1, 2] = emissions[0, 4] = value
    pattern = r"emissions.*\(0, 4\)"
    with pytest.raises(ValueError, match=pattern):
        log_likelihood(params, inputs, emissions)
    with pytest.raises(ValueError, match=pattern):
        fit_em(inputs, emissions, 2, family=family)
    with pytest.raises(ValueError, match=pattern):
        fit_nuts(inputs, emissions, 2, family=family, progress_bar=False)
    mask = np.ones(emissions.shape, bool)
    mask[1, 2] = mask[0, 4] = False
    clean = np.where(mask, emissions, 0.0)
    np.testing.assert_allclose(
        log_likelihood(params, inputs, emissions, mask), log_likelihood(params, inputs, clean, mask), rtol=1e-6
    )


@pytest.mark.parametrize("name", ["gaussian", *FAMILIES])
def test_support_check_is_the_jax_free_one(name):
    """Each family's ``prepare_emissions`` is the function of :mod:`bayes_glmhmm.emission_support` that the
    command line runs before importing JAX (one check, not a copy), and refuses what the family refuses."""
    from bayes_glmhmm import emission_support

    num_classes = 3 if name == "categorical" else None
    family = get_family(name, num_classes)
    shared = emission_support.support_check(name, num_classes)
    if name == "categorical":
        assert family.prepare_emissions.func is shared.func is emission_support.categorical_emissions
        assert family.prepare_emissions.keywords == shared.keywords == {"num_classes": 3}
    else:
        assert family.prepare_emissions is shared is getattr(emission_support, f"{name}_emissions")
    observed = np.ones((1, 2), bool)
    if name != "gaussian":
        with pytest.raises(ValueError, match=r"at \(sequence, step\) \(0, 1\)"):
            shared(np.array([[1.0, 1.5]]), observed)


def test_bernoulli_accepts_booleans_and_plus_minus_one():
    """True/False and an all -1/+1 coding give the 0/1 likelihood (-1 -> 0, +1 -> 1), also with a
    masked step holding another value; -1/+1 differs from a flipped coding (so -1 is not 1)."""
    rng = np.random.default_rng(51)
    params = random_params(rng, "bernoulli", 2, 2)
    inputs = rng.normal(size=(2, 20, 2))
    zero_one = rng.integers(0, 2, size=(2, 20)).astype(float)
    expected = log_likelihood(params, inputs, zero_one)
    np.testing.assert_allclose(log_likelihood(params, inputs, zero_one.astype(bool)), expected, rtol=1e-6)
    np.testing.assert_allclose(log_likelihood(params, inputs, 2 * zero_one - 1), expected, rtol=1e-6)
    flipped = log_likelihood(params, inputs, 1 - zero_one)
    assert not np.allclose(flipped, expected, rtol=1e-3)
    mask = np.ones(zero_one.shape, bool)
    mask[0, 3] = False
    plus_minus = 2 * zero_one - 1
    plus_minus[0, 3] = 0.0
    np.testing.assert_allclose(
        log_likelihood(params, inputs, plus_minus, mask), log_likelihood(params, inputs, zero_one, mask), rtol=1e-6
    )


# 6. Simulated emissions have the family's means.


@pytest.mark.parametrize("name", FAMILIES)
def test_simulated_emissions_have_the_family_means(name):
    """200 sequences x 100 steps (K = 2, D = 2). ``family.mean`` equals the float64 formula; then,
    per state k, class c (categorical) and feature f in (1, x_1, x_2), the score
    S = sum_t f_t (y_t - mu_t) over steps with z_t = k, divided by its standard deviation
    sqrt(sum f_t^2 var_t) (binomial p(1-p), Poisson mu), must lie within 4.5: the intercept checks
    frequencies or rates, the others that the right state's weights act on the right inputs. Each
    |z| > 4.5 has probability 7e-6, for at most 18 statistics per family; seeded."""
    family = family_for(name)
    rng = np.random.default_rng(60)
    params = random_params(rng, name, 2, 2)
    inputs = rng.normal(size=(200, 100, 2))
    states, emissions = simulate(jax.random.PRNGKey(61), params, inputs)
    states, emissions = np.asarray(states), np.asarray(emissions)
    means = oracle_means(name, params, inputs)
    np.testing.assert_allclose(family.mean(to_float32(params), jnp.asarray(inputs, jnp.float32)), means, rtol=2e-5)
    chosen = np.take_along_axis(means, states.reshape(states.shape + (1,) * (means.ndim - 2)), axis=2)[:, :, 0]
    if name == "categorical":
        assert set(np.unique(emissions)) <= set(range(NUM_CLASSES))
        indicators = emissions[..., None] == np.arange(NUM_CLASSES)
        residuals, variances = indicators - chosen, chosen * (1 - chosen)  # (N, T, C)
    else:
        assert np.all(emissions == np.round(emissions)) and np.all(emissions >= 0)
        assert name != "bernoulli" or np.all(emissions <= 1)
        residuals, variances = (
            (emissions - chosen)[..., None],
            (chosen * (1 - chosen) if name == "bernoulli" else chosen)[..., None],
        )
    features = np.concatenate([np.ones(inputs.shape[:-1] + (1,)), inputs], axis=-1)  # (N, T, 3)
    for k in range(2):
        in_state = states == k
        assert in_state.sum() > 1000
        score = np.einsum("ntf,ntc->fc", features * in_state[..., None], residuals)
        spread = np.sqrt(np.einsum("ntf,ntc->fc", features**2 * in_state[..., None], variances))
        z_scores = score / spread
        assert np.all(np.abs(z_scores) < 4.5), (k, z_scores)


# 8. ArviZ conversion of a categorical posterior (without NUTS: two fixed draws per chain).


def test_categorical_posterior_arviz_dims_and_round_trip(tmp_path):
    """The weights carry a ``class`` dim of size C - 1 (coordinates 1..C-1, class 0 the reference),
    and netCDF -> posterior_from_inference_data gives back the family, the draws and the
    log-likelihoods."""
    import arviz as az

    from bayes_glmhmm import write_netcdf_atomic

    rng = np.random.default_rng(80)
    family = family_for("categorical")
    draws = [random_params(rng, "categorical", 2, 2) for _ in range(4)]
    samples = {
        name: np.stack([getattr(draw, name) for draw in draws]).reshape((2, 2) + np.shape(getattr(draws[0], name)))
        for name in family.param_names
    }
    inputs = rng.normal(size=(3, 15, 2))
    emissions = random_emissions(rng, "categorical", (3, 15))
    posterior = Posterior(
        samples={name: value.astype(np.float32) for name, value in samples.items()},
        permutations=np.broadcast_to(np.arange(2), (2, 2, 2)).copy(),
        sample_stats={"lp": np.zeros((2, 2)), "diverging": np.zeros((2, 2), bool)},
        inputs=inputs,
        emissions=emissions,
        mask=np.ones(emissions.shape, bool),
        num_states=2,
        priors=Priors(),
        family=family,
        settings={"family": "categorical", "num_classes": NUM_CLASSES},
    )
    idata = posterior.to_arviz(key=jax.random.PRNGKey(0), include_states=False)  # states: test_convert.py
    assert idata.posterior["weights"].dims == ("chain", "draw", "state", "class", "input")
    assert idata.posterior["biases"].dims == ("chain", "draw", "state", "class")
    np.testing.assert_array_equal(idata.posterior["class"].values, np.arange(1, NUM_CLASSES))
    assert idata.posterior["weights"].shape == (2, 2, 2, NUM_CLASSES - 1, 2)
    path = write_netcdf_atomic(idata, tmp_path / "categorical.nc")
    rebuilt = posterior_from_inference_data(az.from_netcdf(path))
    assert rebuilt.family == family and rebuilt.family.num_classes == NUM_CLASSES
    for name in family.param_names:
        np.testing.assert_array_equal(rebuilt.samples[name], posterior.samples[name])
    np.testing.assert_allclose(rebuilt.log_likelihood(), posterior.log_likelihood(), rtol=1e-6)
    expected = log_likelihood(draws[3], inputs, emissions)
    np.testing.assert_allclose(posterior.log_likelihood()[1, 1], expected, rtol=1e-5)
