"""Tests of :mod:`bayes_glmhmm.hierarchy`: subjects, the hierarchical model's density, relabeling, the fit.

The model's log density is checked against one assembled by hand from scipy's densities and the
public single-model :func:`~bayes_glmhmm.model.log_likelihood` run subject by subject, so the
gathering of each sequence's subject parameters, the centring of the intercepts and the priors
are each checked by an independent computation.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import log_density
from scipy import stats

from bayes_glmhmm.convert import posterior_from_inference_data
from bayes_glmhmm.emissions import get_family
from bayes_glmhmm.fit import _relabeled, fit_nuts
from bayes_glmhmm.hierarchy import (
    SUBJECT_PARAM_NAMES,
    draw_subjects,
    subject_index_of,
    validate_subjects,
)
from bayes_glmhmm.model import glmhmm_model, log_likelihood
from bayes_glmhmm.params import (
    BernoulliGLMHMMParams,
    CategoricalGLMHMMParams,
    GLMHMMParams,
    PoissonGLMHMMParams,
    Priors,
)
from bayes_glmhmm.relabel import relabel_draws
from bayes_glmhmm.simulate import simulate, simulate_subjects

BERNOULLI = get_family("bernoulli")

# ---------------------------------------------------------------------------------------------
# Subject ids
# ---------------------------------------------------------------------------------------------


def test_subjects_are_numbered_by_first_appearance():
    subjects = validate_subjects(["b", "a", "b", "c", "a"], 5)
    assert subjects.names == ("b", "a", "c")
    np.testing.assert_array_equal(subjects.index, [0, 1, 0, 2, 1])
    assert subjects.num_subjects == 3


def test_integer_and_float_ids_name_the_same_subject():
    assert validate_subjects(np.array([3.0, 7.0, 3.0]), 3).names == ("3", "7")


@pytest.mark.parametrize(
    ("subjects", "message"),
    [
        (["a", "b"], "one id per sequence"),
        (np.array([["a", "b", "c"]]), "one id per sequence"),
        (["a", None, "b"], "missing"),
    ],
)
def test_bad_subjects_name_the_argument(subjects, message):
    with pytest.raises(ValueError, match=f"subjects.*{message}"):
        validate_subjects(subjects, 3)


def test_unseen_subjects_map_past_the_fitted_ones():
    fitted = validate_subjects(["a", "b", "a"], 3)
    np.testing.assert_array_equal(subject_index_of(fitted, ["b", "new", "a", "other"], 4), [1, 2, 0, 2])


# ---------------------------------------------------------------------------------------------
# The model's density against a hand-made one
# ---------------------------------------------------------------------------------------------


FAMILY_PROBLEMS = {
    # name: (params type, class axes of the weights, emissions drawn given a generator and a shape)
    "bernoulli": (BernoulliGLMHMMParams, (), lambda generator, shape: generator.integers(0, 2, shape)),
    "gaussian": (GLMHMMParams, (), lambda generator, shape: generator.normal(size=shape)),
    "poisson": (PoissonGLMHMMParams, (), lambda generator, shape: generator.poisson(2.0, shape)),
    "categorical": (CategoricalGLMHMMParams, (2,), lambda generator, shape: generator.integers(0, 3, shape)),
}


def _small_problem(family_name="bernoulli", num_subjects=3, seed=0):
    """Population params, spreads, subject offsets and data for a tiny hierarchical problem of a family."""
    generator = np.random.default_rng(seed)
    num_states, input_dim = 2, 2
    params_type, classes, draw = FAMILY_PROBLEMS[family_name]
    weight_shape = (num_states, *classes, input_dim)
    population = dict(
        initial_probs=np.array([0.6, 0.4]),
        transition_matrix=np.array([[0.9, 0.1], [0.2, 0.8]]),
        weights=0.5 * generator.normal(size=weight_shape),
        biases=0.5 * generator.normal(size=weight_shape[:-1]),
    )
    if family_name == "gaussian":
        population["scales"] = np.array([0.7, 1.3])
    params = params_type(**population)
    weight_spread = np.abs(generator.normal(size=weight_shape)) + 0.2
    bias_spread = np.abs(generator.normal(size=weight_shape[:-1])) + 0.2
    weight_offsets = generator.normal(size=(num_subjects, *weight_shape))
    bias_offsets = generator.normal(size=(num_subjects, *weight_shape[:-1]))
    subject_index = np.array([0, 1, 1, 2, 0])[: max(num_subjects, 5)] % num_subjects
    inputs = generator.normal(loc=0.5, size=(subject_index.size, 7, input_dim))
    emissions = draw(generator, inputs.shape[:2]).astype(float)
    return params, weight_spread, bias_spread, weight_offsets, bias_offsets, subject_index, inputs, emissions


def _hand_log_density(
    params,
    weight_spread,
    bias_spread,
    weight_offsets,
    bias_offsets,
    subject_index,
    inputs,
    emissions,
    subject_matrices=None,
):
    """log p(theta, tau, eps, y) from scipy densities and subject-by-subject public log-likelihoods."""
    priors = Priors()
    total = stats.dirichlet.logpdf(params.initial_probs, np.ones(2))
    total += sum(stats.dirichlet.logpdf(row, np.ones(2)) for row in params.transition_matrix)
    total += stats.norm.logpdf(params.weights).sum() + stats.norm.logpdf(params.biases).sum()
    if isinstance(params, GLMHMMParams):
        total += stats.halfnorm.logpdf(params.scales).sum()
    total += stats.halfnorm.logpdf(weight_spread, scale=priors.subject_spread_scale).sum()
    total += stats.halfnorm.logpdf(bias_spread, scale=priors.subject_spread_scale).sum()
    total += stats.norm.logpdf(weight_offsets).sum() + stats.norm.logpdf(bias_offsets).sum()
    for subject in range(weight_offsets.shape[0]):
        own = params._replace(
            weights=params.weights + weight_spread * weight_offsets[subject],
            biases=params.biases + bias_spread * bias_offsets[subject],
        )
        if subject_matrices is not None:
            own = own._replace(transition_matrix=subject_matrices[subject])
            concentration = priors.subject_transition_concentration * params.transition_matrix
            total += sum(stats.dirichlet.logpdf(subject_matrices[subject][i], concentration[i]) for i in range(2))
        rows = subject_index == subject
        if rows.any():
            total += float(np.sum(log_likelihood(own, inputs[rows], emissions[rows])))
    return total


def _model_log_density(family, params, sites, subject_index, inputs, emissions, parametrization):
    """The model's log joint density (numpyro's ``log_density``) at population ``params`` and hierarchy ``sites``."""
    input_mean = inputs.reshape(-1, inputs.shape[-1]).mean(axis=0)
    centred_biases = params.biases + params.weights @ input_mean
    values = dict(
        initial_probs=params.initial_probs,
        transition_matrix=params.transition_matrix,
        weights=params.weights,
        centred_biases=centred_biases,
        **{name: getattr(params, name) for name in family.extra_names},
        **sites,
    )
    kwargs = dict(
        inputs=jnp.asarray(inputs),
        emissions=jnp.asarray(emissions),
        mask=jnp.ones(emissions.shape, bool),
        num_states=2,
        priors=Priors(),
        input_mean=jnp.asarray(input_mean),
        family=family,
        subject_index=jnp.asarray(subject_index),
        num_subjects=int(np.max(subject_index)) + 1,
        subject_parametrization=parametrization,
        subject_transitions="subject_transition_matrix" in sites,
    )
    value, _ = log_density(glmhmm_model, (), kwargs, {k: jnp.asarray(v) for k, v in values.items()})
    return float(value)


@pytest.mark.parametrize("family_name", list(FAMILY_PROBLEMS))
def test_noncentred_model_density_matches_hand_made_one(family_name):
    params, weight_spread, bias_spread, weight_offsets, bias_offsets, index, inputs, emissions = _small_problem(
        family_name
    )
    family = get_family(family_name, 3 if family_name == "categorical" else None)
    sites = dict(
        weight_spread=weight_spread,
        bias_spread=bias_spread,
        subject_weight_offsets=weight_offsets,
        subject_bias_offsets=bias_offsets,
    )
    model = _model_log_density(family, params, sites, index, inputs, emissions, "noncentred")
    hand = _hand_log_density(params, weight_spread, bias_spread, weight_offsets, bias_offsets, index, inputs, emissions)
    # float32 sums of ~100 terms of size ~10: agreement to 1e-4 relative.
    assert model == pytest.approx(hand, rel=1e-4, abs=1e-3)


def test_subject_transitions_density_matches_hand_made_one():
    params, weight_spread, bias_spread, weight_offsets, bias_offsets, index, inputs, emissions = _small_problem()
    matrices = np.random.default_rng(7).dirichlet(np.ones(2), size=(3, 2))
    sites = dict(
        weight_spread=weight_spread,
        bias_spread=bias_spread,
        subject_weight_offsets=weight_offsets,
        subject_bias_offsets=bias_offsets,
        subject_transition_matrix=matrices,
    )
    model = _model_log_density(BERNOULLI, params, sites, index, inputs, emissions, "noncentred")
    hand = _hand_log_density(
        params, weight_spread, bias_spread, weight_offsets, bias_offsets, index, inputs, emissions, matrices
    )
    shared = _hand_log_density(
        params, weight_spread, bias_spread, weight_offsets, bias_offsets, index, inputs, emissions
    )
    assert model == pytest.approx(hand, rel=1e-4, abs=1e-3)
    assert abs(hand - shared) > 1.0  # the subjects' own matrices change the density: the test can fail


def test_centred_and_noncentred_are_one_model():
    """p_centred(w) = p_noncentred(eps) / |dw/deps|, with w = mu + tau eps and |dw/deps| = prod tau."""
    params, weight_spread, bias_spread, weight_offsets, bias_offsets, index, inputs, emissions = _small_problem()
    noncentred = _model_log_density(
        BERNOULLI,
        params,
        dict(
            weight_spread=weight_spread,
            bias_spread=bias_spread,
            subject_weight_offsets=weight_offsets,
            subject_bias_offsets=bias_offsets,
        ),
        index,
        inputs,
        emissions,
        "noncentred",
    )
    centred = _model_log_density(
        BERNOULLI,
        params,
        dict(
            weight_spread=weight_spread,
            bias_spread=bias_spread,
            subject_weights=params.weights + weight_spread * weight_offsets,
            subject_biases=params.biases + bias_spread * bias_offsets,
        ),
        index,
        inputs,
        emissions,
        "centred",
    )
    num_subjects = weight_offsets.shape[0]
    log_jacobian = num_subjects * (np.log(weight_spread).sum() + np.log(bias_spread).sum())
    assert centred == pytest.approx(noncentred - log_jacobian, rel=1e-5, abs=1e-3)


# ---------------------------------------------------------------------------------------------
# Simulation and relabeling
# ---------------------------------------------------------------------------------------------


def test_simulate_subjects_runs_each_sequence_under_its_subject():
    params, weight_spread, bias_spread, *_ = _small_problem()
    subject_weights, subject_biases = draw_subjects(
        jax.random.PRNGKey(0), 3, params.weights, params.biases, weight_spread, bias_spread
    )
    subject_params = params._replace(weights=subject_weights, biases=subject_biases)
    index = np.array([2, 0, 2, 1])
    inputs = np.random.default_rng(1).normal(size=(4, 9, 2))
    states, emissions = simulate_subjects(jax.random.PRNGKey(5), subject_params, inputs, index)
    keys = jax.random.split(jax.random.PRNGKey(5), 4)
    for n, subject in enumerate(index):
        own = params._replace(weights=subject_weights[subject], biases=subject_biases[subject])
        expected_states, expected_emissions = simulate(keys[n], own, inputs[n])
        np.testing.assert_array_equal(states[n], expected_states)
        np.testing.assert_array_equal(emissions[n], expected_emissions)


def test_relabeling_moves_subject_parameters_with_their_states():
    generator = np.random.default_rng(0)
    samples = {
        "weights": generator.normal(size=(2, 3, 3, 2)),
        "weight_spread": generator.normal(size=(2, 3, 3, 2)),
        "subject_weights": generator.normal(size=(2, 3, 4, 3, 2)),
        "subject_biases": generator.normal(size=(2, 3, 4, 3)),
        "subject_transition_matrix": generator.normal(size=(2, 3, 4, 3, 3)),
    }
    permutations = np.stack([generator.permutation(3) for _ in range(6)]).reshape(2, 3, 3)
    relabeled = relabel_draws(samples, permutations)
    for chain in range(2):
        for draw in range(3):
            order = permutations[chain, draw]
            for name in ("weights", "weight_spread"):
                np.testing.assert_array_equal(relabeled[name][chain, draw], samples[name][chain, draw][order])
            for name in ("subject_weights", "subject_biases"):
                np.testing.assert_array_equal(relabeled[name][chain, draw], samples[name][chain, draw][:, order])
            matrices = samples["subject_transition_matrix"][chain, draw]
            np.testing.assert_array_equal(
                relabeled["subject_transition_matrix"][chain, draw], matrices[:, order][:, :, order]
            )


def test_fit_relabeling_follows_the_population_and_carries_the_subjects():
    """Two draws that are one state-swap of each other end in one labeling, subjects included."""
    generator = np.random.default_rng(3)
    weights = np.array([[3.0, 0.0], [-3.0, 1.0]])
    subject_weights = weights + 0.1 * generator.normal(size=(4, 2, 2))
    swap = np.array([1, 0])
    raw = {
        "initial_probs": np.array([[[0.3, 0.7], [0.7, 0.3]]]),
        "transition_matrix": np.array([[[[0.9, 0.1], [0.2, 0.8]], [[0.8, 0.2], [0.1, 0.9]]]]),
        "weights": np.stack([weights, weights[swap]])[None],
        "biases": np.array([[[1.0, -1.0], [-1.0, 1.0]]]),
        "weight_spread": np.array([[[[0.1, 0.2], [0.3, 0.4]], [[0.3, 0.4], [0.1, 0.2]]]]),
        "bias_spread": np.array([[[0.5, 0.6], [0.6, 0.5]]]),
        "subject_weights": np.stack([subject_weights, subject_weights[:, swap]])[None],
        "subject_biases": np.array([[[[1.0, -1.0]] * 4, [[-1.0, 1.0]] * 4]]),
    }
    result = _relabeled(raw, BERNOULLI, None, np.zeros((1, 2)), extra_names=SUBJECT_PARAM_NAMES)
    for name in raw:
        np.testing.assert_allclose(result.samples[name][0, 0], result.samples[name][0, 1], err_msg=name)


# ---------------------------------------------------------------------------------------------
# A fit
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hierarchical_fit():
    """Three simulated mice with 1, 1 and 2 sessions of 60 trials (and one held out), a short two-chain fit.

    Each mouse has its own transition matrix (``subject_transitions=True``), which exercises every
    per-subject path: weights, biases and transitions.
    """
    params, weight_spread, bias_spread, *_ = _small_problem(seed=4)
    params = params._replace(weights=params.weights * 2.0)
    subject_weights, subject_biases = draw_subjects(
        jax.random.PRNGKey(1), 3, params.weights, params.biases, 0.5 * weight_spread, 0.5 * bias_spread
    )
    index = np.array([0, 1, 2, 2, 2])
    inputs = np.random.default_rng(2).normal(size=(5, 60, 2))
    matrices = np.random.default_rng(5).dirichlet(20 * params.transition_matrix[0], size=(3, 2))
    matrices[:, 1] = np.random.default_rng(6).dirichlet(20 * params.transition_matrix[1], size=3)
    subject_params = params._replace(weights=subject_weights, biases=subject_biases, transition_matrix=matrices)
    _, emissions = simulate_subjects(jax.random.PRNGKey(3), subject_params, inputs, index)
    ids = np.array(["mouse_a", "mouse_b", "mouse_c"])[index]
    posterior = fit_nuts(
        inputs[:4],
        np.asarray(emissions)[:4],
        2,
        family="bernoulli",
        subjects=ids[:4],
        num_chains=2,
        num_warmup=150,
        num_samples=100,
        seed=0,
        progress_bar=False,
        standardize=False,
        subject_transitions=True,
    )
    return posterior, inputs, np.asarray(emissions), ids


def test_hierarchical_fit_holds_every_subject(hierarchical_fit):
    posterior, *_ = hierarchical_fit
    assert posterior.subjects.names == ("mouse_a", "mouse_b", "mouse_c")
    assert posterior.samples["subject_weights"].shape == (2, 100, 3, 2, 2)
    assert posterior.samples["subject_biases"].shape == (2, 100, 3, 2)
    assert posterior.samples["weight_spread"].shape == (2, 100, 2, 2)
    assert np.all(posterior.samples["weight_spread"] > 0)
    assert set(SUBJECT_PARAM_NAMES) <= set(posterior.param_names)
    assert posterior.samples["subject_transition_matrix"].shape == (2, 100, 3, 2, 2)
    np.testing.assert_allclose(posterior.samples["subject_transition_matrix"].sum(-1), 1.0, atol=1e-5)
    assert posterior.settings["subject_parametrization"] == "noncentred"
    assert posterior.settings["subject_transitions"] is True


def _log_mean_exp(values, axis=0):
    highest = np.max(values, axis=axis)
    return highest + np.log(np.mean(np.exp(values - highest), axis=axis))


def test_known_subject_predictive_uses_that_subjects_draws(hierarchical_fit):
    posterior, inputs, emissions, ids = hierarchical_fit
    held_out = slice(4, 5)  # a further session of mouse_c
    density = posterior.log_predictive_density(inputs[held_out], emissions[held_out], subjects=ids[held_out])
    subject_weights = posterior.samples["subject_weights"][:, :, 2].reshape(-1, 2, 2)
    subject_biases = posterior.samples["subject_biases"][:, :, 2].reshape(-1, 2)
    subject_matrices = posterior.samples["subject_transition_matrix"][:, :, 2].reshape(-1, 2, 2)
    flat = posterior.flat_params()
    per_draw = np.array(
        [
            log_likelihood(
                jax.tree.map(lambda p, s=s: p[s], flat)._replace(
                    weights=subject_weights[s], biases=subject_biases[s], transition_matrix=subject_matrices[s]
                ),
                inputs[held_out],
                emissions[held_out],
            )[0]
            for s in range(subject_weights.shape[0])
        ]
    )
    assert density[0] == pytest.approx(_log_mean_exp(per_draw), abs=1e-3)


def test_unseen_subject_gets_the_population_predictive(hierarchical_fit):
    """The estimate (one new subject per draw) agrees with 20 new subjects per draw within Monte Carlo error."""
    posterior, inputs, emissions, _ = hierarchical_fit
    held_out = slice(4, 5)
    density = posterior.log_predictive_density(inputs[held_out], emissions[held_out], subjects=["a_new_mouse"])[0]
    flat = jax.tree.map(np.asarray, posterior.flat_params())
    spread_w = posterior.samples["weight_spread"].reshape(-1, 2, 2)
    spread_b = posterior.samples["bias_spread"].reshape(-1, 2)
    generator = np.random.default_rng(123)
    values = []
    for s in range(spread_w.shape[0]):
        draw = jax.tree.map(lambda p, s=s: p[s], flat)
        for _ in range(20):
            new = draw._replace(
                weights=draw.weights + spread_w[s] * generator.standard_normal((2, 2)),
                biases=draw.biases + spread_b[s] * generator.standard_normal(2),
                transition_matrix=np.stack(
                    [generator.dirichlet(20.0 * np.maximum(row, 1e-6)) for row in draw.transition_matrix]
                ),
            )
            values.append(float(log_likelihood(new, inputs[held_out], emissions[held_out])[0]))
    values = np.array(values)
    reference = _log_mean_exp(values)
    # Delta method: se(log mean w) = sd(w) / (mean(w) sqrt(n)); the tested estimate uses 200
    # new subjects (one per draw), so its error dominates: 4 of its standard errors.
    weights = np.exp(values - values.max())
    standard_error = np.std(weights) / np.mean(weights) / np.sqrt(spread_w.shape[0])
    assert abs(density - reference) < 4 * standard_error + 1e-3
    known = posterior.log_predictive_density(inputs[held_out], emissions[held_out], subjects=["mouse_c"])[0]
    assert known != pytest.approx(density, abs=1e-3)  # the subject's own draws are used when known


def test_states_and_predictive_run_per_subject(hierarchical_fit):
    posterior, *_ = hierarchical_fit
    probabilities = posterior.state_probabilities()
    assert probabilities.shape == (4, 60, 2)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    assert posterior.sample_states(jax.random.PRNGKey(0)).shape == (2, 100, 4, 60)
    replicated = posterior.posterior_predictive(jax.random.PRNGKey(0))
    assert replicated.shape == (2, 100, 4, 60)
    assert set(np.unique(replicated)) <= {0.0, 1.0}


def test_subject_arguments_are_checked(hierarchical_fit, small_posterior, small_article_data):
    posterior, inputs, emissions, _ = hierarchical_fit
    with pytest.raises(ValueError, match="subjects="):
        posterior.log_predictive_density(inputs[4:], emissions[4:])
    with pytest.raises(ValueError, match="subjects"):
        posterior.log_predictive_density(subjects=["mouse_a"] * 4)
    data = small_article_data
    with pytest.raises(ValueError, match="without subjects"):
        small_posterior.log_predictive_density(data.inputs, data.emissions, subjects=["a"] * 4)


def test_subjects_with_input_driven_transitions():
    """Subjects compose with input-driven transitions: the predictive of a known subject's new sequence
    is the average over draws of the public likelihood with that subject's weights and the shared V."""
    params, weight_spread, bias_spread, *_ = _small_problem(seed=8)
    subject_weights, subject_biases = draw_subjects(
        jax.random.PRNGKey(2), 2, params.weights, params.biases, weight_spread, bias_spread
    )
    generator = np.random.default_rng(9)
    transition_inputs = generator.integers(0, 2, size=(4, 40, 1)).astype(float)
    driven = params._replace(
        weights=subject_weights, biases=subject_biases, transition_weights=np.array([[[0.0], [1.5]], [[-1.5], [0.0]]])
    )
    index = np.array([0, 1, 1, 0])
    inputs = generator.normal(size=(4, 40, 2))
    _, emissions = simulate_subjects(jax.random.PRNGKey(4), driven, inputs, index, transition_inputs)
    emissions = np.asarray(emissions)
    posterior = fit_nuts(
        inputs[:3],
        emissions[:3],
        2,
        family="bernoulli",
        subjects=index[:3],
        transition_inputs=transition_inputs[:3],
        num_chains=1,
        num_warmup=30,
        num_samples=20,
        progress_bar=False,
        standardize=False,
        convergence={"min_ess_bulk": 1, "min_ess_tail": 1, "max_rhat": 10.0},
    )
    assert posterior.samples["transition_weights"].shape == (1, 20, 2, 2, 1)
    assert posterior.samples["subject_weights"].shape == (1, 20, 2, 2, 2)
    density = posterior.log_predictive_density(
        inputs[3:], emissions[3:], transition_inputs=transition_inputs[3:], subjects=["0"]
    )
    flat = jax.tree.map(np.asarray, posterior.flat_params())
    per_draw = [
        float(
            log_likelihood(
                jax.tree.map(lambda p, s=s: p[s], flat)._replace(
                    weights=posterior.samples["subject_weights"][0, s, 0],
                    biases=posterior.samples["subject_biases"][0, s, 0],
                ),
                inputs[3:],
                emissions[3:],
                transition_inputs=transition_inputs[3:],
            )[0]
        )
        for s in range(20)
    ]
    assert density[0] == pytest.approx(_log_mean_exp(np.array(per_draw)), abs=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(subjects=["a", "b"]), "subjects must give one id per sequence"),
        (dict(subjects=["a"] * 4, subject_parametrization="partly"), "subject_parametrization"),
        (dict(subjects=["a"] * 4, standardize=True), "standardize=False"),
    ],
)
def test_fit_rejects_bad_subject_settings(small_article_data, kwargs, message):
    data = small_article_data
    with pytest.raises(ValueError, match=message):
        fit_nuts(data.inputs, data.emissions, 2, num_chains=1, num_warmup=5, num_samples=5, **kwargs)


def test_inference_data_round_trip_keeps_the_subjects(hierarchical_fit):
    posterior, inputs, emissions, ids = hierarchical_fit
    idata = posterior.to_arviz(include_states=False)
    assert list(idata.posterior["subject"].values) == ["mouse_a", "mouse_b", "mouse_c"]
    assert idata.posterior["subject_weights"].dims == ("chain", "draw", "subject", "state", "input")
    restored = posterior_from_inference_data(idata)
    assert restored.subjects.names == posterior.subjects.names
    np.testing.assert_array_equal(restored.subjects.index, posterior.subjects.index)
    np.testing.assert_allclose(
        restored.log_predictive_density(inputs[4:], emissions[4:], subjects=ids[4:]),
        posterior.log_predictive_density(inputs[4:], emissions[4:], subjects=ids[4:]),
        rtol=1e-6,
    )


def test_sequences_split_over_devices_give_the_same_density_and_gradient():
    """Under ``shard_map`` over 2 devices, with the 5 sequences padded to 6 (a fully masked sequence of
    subject 0), the hierarchical model's potential and its gradient equal those on one device."""
    from functools import partial

    from jax.sharding import PartitionSpec
    from numpyro.infer.util import potential_energy

    from bayes_glmhmm.model import centred_sites, unconstrain_sites
    from bayes_glmhmm.sampler import SEQUENCE_AXIS, SEQUENCE_FIELDS, _pad_sequences, sequence_mesh

    params, weight_spread, bias_spread, weight_offsets, bias_offsets, index, inputs, emissions = _small_problem()
    input_mean = jnp.asarray(inputs.reshape(-1, 2).mean(axis=0))
    constrained = centred_sites(params, input_mean) | dict(
        weight_spread=weight_spread,
        bias_spread=bias_spread,
        subject_weight_offsets=weight_offsets,
        subject_bias_offsets=bias_offsets,
    )
    z = unconstrain_sites({name: jnp.asarray(value, jnp.float32) for name, value in constrained.items()}, BERNOULLI)
    kwargs = dict(
        inputs=jnp.asarray(inputs, jnp.float32),
        emissions=jnp.asarray(emissions, jnp.float32),
        mask=jnp.ones(emissions.shape, bool),
        subject_index=jnp.asarray(index),
        priors=Priors(),
        input_mean=input_mean,
    )
    options = dict(num_states=2, family=BERNOULLI, num_subjects=3)

    def potential(point, model_kwargs, axis_name=None):
        model = partial(glmhmm_model, **options, sequence_axis_name=axis_name)
        return potential_energy(model, (), model_kwargs, point)

    one_device = jax.value_and_grad(potential)(z, kwargs)
    padded = _pad_sequences(kwargs, 2)
    assert padded["emissions"].shape[0] == 6
    specs = {name: PartitionSpec(SEQUENCE_AXIS) if name in SEQUENCE_FIELDS else PartitionSpec() for name in padded}
    sharded = jax.shard_map(
        jax.value_and_grad(partial(potential, axis_name=SEQUENCE_AXIS)),
        mesh=sequence_mesh(1, 2),
        in_specs=(PartitionSpec(), specs),
        out_specs=PartitionSpec(),
        check_vma=False,
    )
    two_devices = jax.jit(sharded)(z, padded)
    assert float(two_devices[0]) == pytest.approx(float(one_device[0]), rel=1e-5)
    for name in one_device[1]:
        np.testing.assert_allclose(two_devices[1][name], one_device[1][name], rtol=1e-4, atol=1e-4, err_msg=name)
