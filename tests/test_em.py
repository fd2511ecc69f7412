import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayes_glmhmm import GLMHMMParams, Priors, article_params, fit_em, log_likelihood, match_params, simulate
from bayes_glmhmm.em import distinct_optima, initialize_params
from bayes_glmhmm.model import log_prior


@pytest.fixture(scope="module")
def data():
    params = article_params()
    inputs = jax.random.uniform(jax.random.PRNGKey(0), (6, 80, 1), minval=1.0, maxval=10.0)
    _, emissions = simulate(jax.random.PRNGKey(1), params, inputs)
    return params, np.asarray(inputs), np.asarray(emissions)


@pytest.mark.parametrize("priors", [None, Priors(weight_scale=0.5, noise_scale=0.7, transition_concentration=2.0)])
def test_objective_never_decreases(data, priors):
    _, inputs, emissions = data
    result = fit_em(inputs, emissions, 3, priors=priors, num_restarts=4, num_iters=60, tol=0.0)
    steps = np.diff(result.log_probs)
    # ECM is monotone in exact arithmetic; float32 sums of ~500 terms round at ~1e-7 relative.
    assert np.all(steps >= -1e-5 * np.abs(result.log_probs[1:])), steps.min()
    assert 5 <= len(result.log_probs) <= 60  # tol=0 stops only once a step changes nothing


def test_objective_is_marginal_likelihood_plus_prior(data):
    _, inputs, emissions = data
    priors = Priors(weight_scale=0.5)
    start = initialize_params(
        jax.random.PRNGKey(2), jnp.asarray(inputs), jnp.asarray(emissions), jnp.ones(emissions.shape, bool), 3
    )
    result = fit_em(inputs, emissions, 3, priors=priors, init_params=start, num_iters=1)
    expected = jnp.sum(log_likelihood(start, inputs, emissions)) + log_prior(start, priors)
    np.testing.assert_allclose(result.log_probs[0], expected, rtol=1e-5)


def test_recovers_article_parameters(data):
    truth, inputs, emissions = data
    result = fit_em(inputs, emissions, 3, seed=0)
    estimate = result.params.permute(match_params(result.params, truth))
    # 480 observations: weights are known to ~0.05, biases to ~0.3 (their posterior sds).
    np.testing.assert_allclose(estimate.weights, truth.weights, atol=0.15)
    np.testing.assert_allclose(estimate.biases, truth.biases, atol=0.8)
    assert result.converged
    assert result.restart_log_probs.shape == (10,)
    assert np.isclose(result.log_probs[-1], np.max(result.restart_log_probs), rtol=1e-6)


def test_matches_dynamax_from_the_same_start(data):
    """Our ML EM and dynamax's LinearRegressionHMM.fit_em take the same path from one start.

    dynamax's Dirichlet concentrations are set to 1, which makes its M-step maximum likelihood too.
    """
    dynamax_hmm = pytest.importorskip("dynamax.hidden_markov_model")
    _, inputs, emissions = data
    start = initialize_params(
        jax.random.PRNGKey(5), jnp.asarray(inputs), jnp.asarray(emissions), jnp.ones(emissions.shape, bool), 3
    )
    hmm = dynamax_hmm.LinearRegressionHMM(3, 1, 1, initial_probs_concentration=1.0, transition_matrix_concentration=1.0)
    params, props = hmm.initialize(
        jax.random.PRNGKey(0),
        initial_probs=start.initial_probs,
        transition_matrix=start.transition_matrix,
        emission_weights=start.weights[:, None, :],
        emission_biases=start.biases[:, None],
        emission_covariances=(start.scales**2)[:, None, None],
    )
    num_iters = 15
    fitted, dynamax_log_probs = hmm.fit_em(
        params, props, jnp.asarray(emissions)[..., None], inputs=jnp.asarray(inputs), num_iters=num_iters, verbose=False
    )
    ours = fit_em(inputs, emissions, 3, init_params=start, num_iters=num_iters, tol=0.0)
    # Same algorithm in float32: agreement to ~1e-3 after 15 iterations (rounding compounds).
    np.testing.assert_allclose(ours.params.weights[:, 0], fitted.emissions.weights[:, 0, 0], atol=2e-3)
    np.testing.assert_allclose(ours.params.biases, fitted.emissions.biases[:, 0], atol=5e-3)
    np.testing.assert_allclose(ours.params.scales, np.sqrt(fitted.emissions.covs[:, 0, 0]), atol=2e-3)
    np.testing.assert_allclose(ours.params.transition_matrix, fitted.transitions.transition_matrix, atol=2e-3)
    # dynamax adds the (constant) Dirichlet(1) log densities; differences must agree.
    # tol=0 stops us once a step changes nothing in float32; compare the iterations we ran.
    ran = len(ours.log_probs)
    np.testing.assert_allclose(
        np.diff(ours.log_probs), np.diff(np.asarray(dynamax_log_probs)[:ran]), rtol=1e-3, atol=1e-2
    )


def test_is_equivariant_to_the_data_scale(data):
    """Rescaling x and y rescales the ML estimate: EM must not assume the article's scales."""
    _, inputs, emissions = data
    x_scale, x_shift, y_scale, y_shift = 250.0, -40.0, 1000.0, 5000.0
    base = fit_em(inputs, emissions, 3, seed=3)
    scaled = fit_em(inputs * x_scale + x_shift, emissions * y_scale + y_shift, 3, seed=3)
    back = scaled.params.permute(
        match_params(
            GLMHMMParams(
                scaled.params.initial_probs,
                scaled.params.transition_matrix,
                scaled.params.weights * x_scale / y_scale,
                (scaled.params.biases + scaled.params.weights[:, 0] * x_shift - y_shift) / y_scale,
                scaled.params.scales / y_scale,
            ),
            base.params,
        )
    )
    np.testing.assert_allclose(back.weights * x_scale / y_scale, base.params.weights, rtol=2e-2, atol=1e-2)
    np.testing.assert_allclose(back.scales / y_scale, base.params.scales, rtol=2e-2)
    np.testing.assert_allclose(scaled.log_probs[-1], base.log_probs[-1] - emissions.size * np.log(y_scale), rtol=1e-4)


def _stacked(params_list):
    """Params of several restarts with a leading restart axis, as :attr:`EMResult.restart_params`."""
    names = GLMHMMParams._fields[:5]  # without transition weights (stationary transitions)
    return GLMHMMParams(*(np.stack([np.asarray(getattr(params, name)) for params in params_list]) for name in names))


def test_distinct_optima_counts_a_relabeled_optimum_once_and_keeps_the_others():
    """Same optimum = objectives within the tolerance AND parameters equal up to a relabeling."""
    truth = article_params()
    relabeled = truth.permute(np.array([2, 0, 1]))  # the same optimum, states in another order
    merged = truth._replace(weights=np.array([[1.0], [1.0], [0.2]]), biases=np.array([2.0, 2.1, 0.0]))
    tie = truth._replace(weights=np.array([[0.5], [-0.8], [0.2]]))  # another optimum, the best's objective
    nudged = merged._replace(biases=merged.biases + 1e-3)  # EM's stopping short of the merged optimum
    restarts = _stacked([merged, truth, relabeled, tie, nudged, truth])
    objectives = np.array([-105.0, -100.0, -100.0 - 1e-3, -100.0, -105.0 + 2e-3, np.nan])

    optima = distinct_optima(objectives, restarts)

    # Each optimum is represented by its best restart: the nudged one for the merged optimum.
    np.testing.assert_array_equal(optima.restart_indices, [1, 3, 4])
    np.testing.assert_allclose(optima.objectives, [-100.0, -100.0, -105.0 + 2e-3])
    np.testing.assert_array_equal(optima.num_restarts, [2, 1, 2])
    np.testing.assert_array_equal(optima.restart_optimum, [2, 0, 0, 1, 2, -1])
    # Equal parameters with objectives 1 nat apart are two optima (the objective must agree too).
    apart = distinct_optima(np.array([-100.0, -101.0]), _stacked([truth, relabeled]))
    np.testing.assert_array_equal(apart.num_restarts, [1, 1])
    # A relabeled transition matrix must follow the states: permuting it alone makes another optimum.
    other_chain = truth._replace(transition_matrix=truth.transition_matrix.T)
    np.testing.assert_array_equal(
        distinct_optima(np.array([-100.0, -100.0]), _stacked([truth, other_chain])).num_restarts, [1, 1]
    )


def test_fit_em_keeps_every_restarts_params_in_the_datas_units(data):
    """restart_params[r] is restart r's estimate (its objective is its log-likelihood), also standardized."""
    _, inputs, emissions = data
    emissions = emissions * 1000.0 + 5000.0  # far from unit scale: fitted standardized, mapped back
    result = fit_em(inputs, emissions, 3, num_restarts=3, seed=1)
    best = int(np.argmax(result.restart_log_probs))
    for name in GLMHMMParams._fields[:5]:
        np.testing.assert_array_equal(getattr(result.restart_params, name)[best], getattr(result.params, name))
    for restart in range(3):
        params = GLMHMMParams(*(getattr(result.restart_params, name)[restart] for name in GLMHMMParams._fields[:5]))
        # The last objective is at the last step's input params: equal at convergence (tol 1e-7).
        expected = float(jnp.sum(log_likelihood(params, inputs, emissions)))
        np.testing.assert_allclose(result.restart_log_probs[restart], expected, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_states=0), "num_states"),
        (dict(num_states=3, num_iters=0), "num_iters"),
        (dict(num_states=3, num_restarts=0), "num_restarts"),
        (dict(num_states=3, priors=Priors(noise_scale=-1.0)), "noise_scale"),
        (dict(num_states=3, num_iters=2, accelerate=True), "num_iters"),
    ],
)
def test_bad_arguments_raise(data, kwargs, message):
    _, inputs, emissions = data
    with pytest.raises(ValueError, match=message):
        fit_em(inputs, emissions, **kwargs)


# ---------------------------------------------------------------------------------------------
# Subjects: the hierarchy with its spreads fixed
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def subject_data():
    """Four simulated subjects with 1..3 sessions of 50 choices (Bernoulli, K = 2)."""
    from bayes_glmhmm.hierarchy import draw_subjects
    from bayes_glmhmm.params import BernoulliGLMHMMParams
    from bayes_glmhmm.simulate import simulate_subjects

    population = BernoulliGLMHMMParams(
        np.array([0.5, 0.5]),
        np.array([[0.95, 0.05], [0.05, 0.95]]),
        np.array([[3.0, 0.5], [0.5, -1.0]]),
        np.array([0.0, 1.0]),
    )
    weights, biases = draw_subjects(
        jax.random.PRNGKey(2), 4, population.weights, population.biases, 0.7 * np.ones((2, 2)), 0.5 * np.ones(2)
    )
    index = np.repeat(np.arange(4), [1, 2, 2, 3])
    inputs = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (index.size, 50, 2)))
    _, choices = simulate_subjects(
        jax.random.PRNGKey(4), population._replace(weights=weights, biases=biases), inputs, index
    )
    return inputs, np.asarray(choices), index


def test_subject_em_objective_never_decreases(subject_data):
    inputs, choices, index = subject_data
    result = fit_em(inputs, choices, 2, family="bernoulli", subjects=index, priors=Priors(), standardize=False)
    assert result.params.weights.shape == (4, 2, 2) and result.population.weights.shape == (2, 2)
    # float32 sums of ~800 log-probabilities: a decrease within 1e-6 relative is rounding.
    steps = np.diff(result.log_probs)
    assert np.all(steps >= -1e-6 * np.abs(result.log_probs[1:])), steps.min()
    assert result.log_probs[-1] > result.log_probs[0] + 10.0


def test_subject_em_with_a_tiny_spread_is_the_pooled_fit(subject_data):
    """As the spread -> 0 every subject is the population, and the population the pooled MAP fit."""
    inputs, choices, index = subject_data
    pooled = fit_em(inputs, choices, 2, family="bernoulli", priors=Priors(), standardize=False, seed=1)
    tied = fit_em(
        inputs, choices, 2, family="bernoulli", subjects=index, subject_spread=1e-3, priors=Priors(), standardize=False
    )
    population = tied.population.permute(match_params(tied.population, pooled.params))
    # Both are converged MAP fits of the same objective (up to O(spread^2)); 5e-3 is EM's tolerance.
    np.testing.assert_allclose(population.weights, pooled.params.weights, atol=5e-3)
    np.testing.assert_allclose(population.biases, pooled.params.biases, atol=5e-3)
    np.testing.assert_allclose(tied.params.weights, np.broadcast_to(tied.population.weights, (4, 2, 2)), atol=1e-3)


def test_subject_em_with_one_state_and_a_wide_spread_is_each_subjects_logistic_regression(subject_data):
    """K = 1 without priors and a spread of 1000: each subject's coefficients are its own maximum
    likelihood logistic regression (statsmodels, an independent oracle)."""
    statsmodels = pytest.importorskip("statsmodels.api")
    inputs, choices, index = subject_data
    result = fit_em(
        inputs, choices, 1, family="bernoulli", subjects=index, subject_spread=1e3, standardize=False, tol=1e-9
    )
    for subject in range(4):
        rows = index == subject
        design = statsmodels.add_constant(inputs[rows].reshape(-1, 2), prepend=False)
        oracle = statsmodels.Logit(choices[rows].reshape(-1), design).fit(disp=0).params
        estimate = np.append(result.params.weights[subject, 0], result.params.biases[subject, 0])
        # Prior precision 1e-6 moves the maximum by ~1e-6 x coefficient / Fisher information: negligible.
        np.testing.assert_allclose(estimate, oracle, atol=2e-3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(family="gaussian"), "subjects: fit_em with subjects supports"),
        (dict(family="bernoulli", subject_spread=0.0), "subject_spread must be a positive"),
        (dict(family="bernoulli", subjects=["a", "b"]), "subjects must give one id per sequence"),
        (dict(family="bernoulli", standardize=True), "standardize=False"),
    ],
)
def test_subject_em_rejects_bad_settings(subject_data, kwargs, message):
    inputs, choices, index = subject_data
    arguments = dict(subjects=index, num_iters=2, num_restarts=1) | kwargs
    with pytest.raises(ValueError, match=message):
        fit_em(inputs, choices, 2, **arguments)


# ---------------------------------------------------------------------------------------------
# Maximum likelihood through the MAP program (flat priors)


def _run_both(start, inputs, emissions, mask, transition_inputs=None, transitions=None):
    """_run_em from one start, with ``priors=None`` (the maximum likelihood code path) and with FLAT_PRIORS."""
    from bayes_glmhmm import em
    from bayes_glmhmm.transitions import STATIONARY

    transitions = STATIONARY if transitions is None else transitions
    run = jax.jit(em._run_em, static_argnames=("num_iters", "transitions"))
    return [
        run(start, inputs, emissions, mask, priors, 25, -1.0, transition_inputs, transitions)  # tol < 0: all 25 steps
        for priors in (None, em.FLAT_PRIORS)
    ]


def _assert_same_run(plain, flat):
    """The same 25 EM steps, to rounding.

    The two programs are compiled apart, so their float32 rounding differs and EM carries it: after
    25 steps the objectives were 1.3e-5 apart (relative) and weakly identified transition weights
    4e-3. A prior term left in the objective would move it by tens of nats, and a prior left in
    the M-step would shrink the coefficients by far more than 1e-2. Under JAX_ENABLE_X64 (CI runs
    these tests so too) the runs agree to 1e-15, and the check is to 1e-9.
    """
    x64 = jnp.asarray(0.0).dtype == jnp.float64
    params, log_probs, iterations, _ = plain
    flat_params, flat_log_probs, flat_iterations, _ = flat
    assert int(iterations) == int(flat_iterations) == 25
    np.testing.assert_allclose(flat_log_probs, log_probs, rtol=1e-9 if x64 else 1e-4)
    for name, value in params._asdict().items():
        if value is not None:
            tolerance = dict(rtol=1e-9, atol=1e-9) if x64 else dict(rtol=0.0, atol=1e-2)
            np.testing.assert_allclose(getattr(flat_params, name), value, err_msg=name, **tolerance)


def test_flat_priors_are_maximum_likelihood_gaussian(data):
    """Ridge penalties of 0, the unpenalized scale, no pseudo-counts, no log prior in the objective."""
    _, inputs, emissions = data
    mask = jnp.ones(emissions.shape, bool)
    start = initialize_params(jax.random.PRNGKey(2), jnp.asarray(inputs), jnp.asarray(emissions), mask, 3)
    _assert_same_run(*_run_both(start, jnp.asarray(inputs), jnp.asarray(emissions), mask))


def test_flat_priors_are_maximum_likelihood_with_input_driven_transitions():
    """The transition M-step's Newton objective carries no prior either (its log density is left out, not -inf)."""
    from bayes_glmhmm.params import BernoulliGLMHMMParams
    from bayes_glmhmm.transitions import get_transitions

    rng = np.random.default_rng(0)
    inputs = jnp.asarray(rng.normal(size=(4, 60, 1)))
    emissions = jnp.asarray(rng.integers(0, 2, size=(4, 60)))
    transition_inputs = jnp.asarray(rng.integers(0, 2, size=(4, 60, 1)).astype(float))
    start = BernoulliGLMHMMParams(
        jnp.array([0.6, 0.4]),
        jnp.array([[0.9, 0.1], [0.2, 0.8]]),
        jnp.array([[1.0], [-1.0]]),
        jnp.array([0.2, -0.3]),
        jnp.zeros((2, 2, 1)),
    )
    mask = jnp.ones(emissions.shape, bool)
    transitions = get_transitions("full", transition_inputs)
    _assert_same_run(*_run_both(start, inputs, emissions, mask, transition_inputs, transitions))


def test_maximum_likelihood_and_map_em_share_one_compiled_program(data):
    """A process that fits EM as the field does and MAP EM (NUTS's start) compiles the EM loop once."""
    from bayes_glmhmm.em import _run_em_restarts

    _, inputs, emissions = data
    inputs, emissions = inputs[:, :70], emissions[:, :70]  # a shape no other test compiles
    before = _run_em_restarts._cache_size()
    fit_em(inputs, emissions, 3, num_restarts=2, num_iters=5, standardize=False)
    fit_em(inputs, emissions, 3, priors=Priors(), num_restarts=2, num_iters=5, standardize=False)
    assert _run_em_restarts._cache_size() == before + 1


# ---------------------------------------------------------------------------------------------
# SQUAREM acceleration
# ---------------------------------------------------------------------------------------------


def _halving_step(forbidden_below: float):
    """A fake EM map on Bernoulli params: weights halve; the objective -|w|^2, -inf where any w < forbidden_below."""
    from bayes_glmhmm.params import BernoulliGLMHMMParams

    def step(params):
        weights = params.weights
        objective = jnp.where(jnp.all(weights >= forbidden_below), -jnp.sum(weights**2), -jnp.inf)
        return params._replace(weights=0.5 * weights), objective

    start = BernoulliGLMHMMParams(
        jnp.array([0.5, 0.5]), jnp.array([[0.9, 0.1], [0.2, 0.8]]), jnp.ones((2, 1)), jnp.zeros(2)
    )
    return step, start


def test_squarem_keeps_an_extrapolation_that_does_not_lower_the_objective():
    """On a linear map the S3 extrapolation (length -2 here) lands on the fixed point 0 exactly."""
    from bayes_glmhmm.em import _squarem_iteration

    step, start = _halving_step(forbidden_below=-1.0)
    new, objective, gain, bound = _squarem_iteration(step, start, jnp.asarray(4.0))
    np.testing.assert_allclose(new.weights, 0.0, atol=1e-6)
    np.testing.assert_allclose(new.transition_matrix, start.transition_matrix, rtol=1e-6)  # a fixed coordinate
    assert float(objective) == -2.0 and float(gain) == pytest.approx(1.5)
    assert float(bound) == 4.0  # |length| 2 < 4: the bound stays
    new, _, _, bound = _squarem_iteration(step, start, jnp.asarray(2.0))
    assert float(bound) == 8.0  # the extrapolation reached the bound and was kept: it grows


def test_squarem_falls_back_to_two_plain_steps_when_the_extrapolation_lowers_the_objective():
    """The extrapolated point (w = 0) has objective -inf: theta_2 (w = 1/4) is kept and the bound shrinks."""
    from bayes_glmhmm.em import _squarem_iteration

    step, start = _halving_step(forbidden_below=0.2)
    new, _, _, bound = _squarem_iteration(step, start, jnp.asarray(4.0))
    np.testing.assert_allclose(new.weights, 0.25, rtol=1e-6)
    assert float(bound) == 1.0


@pytest.mark.parametrize("family", ["gaussian", "bernoulli"])
def test_accelerated_em_is_monotone_and_ends_at_an_em_fixed_point(data, subject_data, family):
    """SQUAREM changes the path, not the fixed points: plain EM from its result barely moves.

    Gaussian: the article's data (K = 3, the scales extrapolated as logs); Bernoulli: the subjects'
    choices pooled, fitted with one state too many (K = 3 for 2), where plain EM crawls.
    """
    inputs, emissions, num_states = (data[1], data[2], 3) if family == "gaussian" else (*subject_data[:2], 3)
    result = fit_em(inputs, emissions, num_states, family=family, num_restarts=2, num_iters=900, accelerate=True)
    steps = np.diff(result.log_probs)
    assert np.all(steps >= -1e-6 * np.abs(result.log_probs[1:])), steps.min()  # float32 rounding only
    assert result.converged
    polish = fit_em(inputs, emissions, num_states, family=family, init_params=result.params, num_iters=20)
    # At EM's fixed point (tol 1e-7 relative per step), 20 plain steps gain at most ~20 * 1e-7 relative.
    gain = polish.log_probs[-1] - result.log_probs[-1]
    assert gain <= 1e-5 * abs(result.log_probs[-1]), gain


def test_accelerated_em_needs_fewer_em_steps_where_plain_em_crawls():
    """K = 3 for K = 2 data (10 x 100 choices), one start, one stopping rule: SQUAREM stops after far fewer EM steps.

    Measured here: 214 plain EM steps against 63 (21 SQUAREM iterations), both at the same optimum;
    other seeds and K = 4 gave 1.2-4x fewer. The bound (half) leaves room for float32 differences.
    """
    from bayes_glmhmm.params import BernoulliGLMHMMParams

    truth = BernoulliGLMHMMParams(
        np.array([0.5, 0.5]),
        np.array([[0.95, 0.05], [0.05, 0.95]]),
        np.array([[3.0, 0.5], [0.5, -1.0]]),
        np.array([0.0, 1.0]),
    )
    inputs = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (10, 100, 2)))
    _, choices = simulate(jax.random.PRNGKey(4), truth, inputs)
    common = dict(family="bernoulli", num_restarts=1, seed=0, num_iters=3000)
    plain = fit_em(inputs, np.asarray(choices), 3, **common)
    accelerated = fit_em(inputs, np.asarray(choices), 3, accelerate=True, **common)
    assert plain.converged and accelerated.converged
    assert 3 * len(accelerated.log_probs) < len(plain.log_probs) / 2, (len(accelerated.log_probs), len(plain.log_probs))
    np.testing.assert_allclose(accelerated.log_probs[-1], plain.log_probs[-1], rtol=1e-5)


@pytest.mark.parametrize("case", ["subjects", "input_driven"])
def test_accelerated_em_with_subjects_and_input_driven_transitions(subject_data, case):
    """SQUAREM through the hierarchy's state (params, population) and through transition weights.

    Monotone, converged, and no lower than plain EM from the same starts (measured: subjects
    -208.16 against -208.30 in 51 EM steps against 137; input-driven -189.33 against -189.36 in
    42 against 113).
    """
    inputs, choices, index = subject_data
    if case == "subjects":
        settings = dict(subjects=index, priors=Priors(), standardize=False, num_restarts=1)
    else:
        transition_inputs = np.asarray(jax.random.normal(jax.random.PRNGKey(5), (index.size, 50, 1)))
        settings = dict(transition_inputs=transition_inputs, num_restarts=3)
    plain = fit_em(inputs, choices, 2, family="bernoulli", num_iters=600, **settings)
    accelerated = fit_em(inputs, choices, 2, family="bernoulli", num_iters=600, accelerate=True, **settings)
    steps = np.diff(accelerated.log_probs)
    assert np.all(steps >= -1e-6 * np.abs(accelerated.log_probs[1:])), steps.min()
    assert accelerated.converged and plain.converged
    assert accelerated.log_probs[-1] >= plain.log_probs[-1] - 1e-5 * abs(plain.log_probs[-1])
    assert 3 * len(accelerated.log_probs) < len(plain.log_probs)
