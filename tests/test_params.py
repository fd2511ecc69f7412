"""Tests of :mod:`bayes_glmhmm.params`: priors, validation of user input, and state relabelling."""

import jax.numpy as jnp
import numpy as np
import pytest

from bayes_glmhmm.params import GLMHMMParams, Priors, permute_params, validate_data, validate_num_states

PRIOR_FIELDS = [
    "initial_concentration",
    "transition_concentration",
    "weight_scale",
    "bias_scale",
    "noise_scale",
    "transition_weight_scale",
    "subject_spread_scale",
    "subject_transition_concentration",
]

# ---------------------------------------------------------------------------------------------
# Priors
# ---------------------------------------------------------------------------------------------


def test_prior_defaults_are_one_but_the_subjects_transition_concentration():
    priors = Priors()
    assert list(priors._fields) == PRIOR_FIELDS
    assert all(value == 1.0 for name, value in priors._asdict().items() if name != "subject_transition_concentration")
    assert priors.subject_transition_concentration == 20.0  # a probability's sd about the population's <= 0.11
    assert priors.validate() is priors


def test_valid_priors_pass():
    priors = Priors(2.0, 0.5, 10.0, 3, np.float32(0.1))
    assert priors.validate() == priors


@pytest.mark.parametrize("field", PRIOR_FIELDS)
@pytest.mark.parametrize("bad", [0, 0.0, -1.0, float("nan"), float("inf"), -float("inf"), "abc", None, [1.0, 2.0]])
def test_invalid_prior_names_the_field(field, bad):
    # Priors is a NamedTuple, so construction cannot check; validate() is what fit_em / fit_nuts call.
    priors = Priors(**{field: bad})
    with pytest.raises(ValueError, match=field):
        priors.validate()


def test_problems_lists_every_bad_field_with_the_message_validate_raises():
    """``problems`` is the one check: ``validate`` raises its first entry, led by ``Priors.<field>``."""
    assert Priors().problems() == {}
    priors = Priors(weight_scale=-1.0, noise_scale="abc", subject_spread_scale=float("nan"))
    problems = priors.problems()
    assert problems == {
        "weight_scale": "must be a positive finite number, got -1.0",
        "noise_scale": "must be a positive number, got 'abc'",
        "subject_spread_scale": "must be a positive finite number, got nan",
    }
    with pytest.raises(ValueError) as raised:
        priors.validate()
    assert str(raised.value) == "Priors.weight_scale must be a positive finite number, got -1.0"


def test_priors_is_one_class_importable_without_jax():
    """``bayes_glmhmm.params.Priors`` is the JAX-free ``bayes_glmhmm.priors.Priors``, not a copy."""
    import bayes_glmhmm
    import bayes_glmhmm.params
    import bayes_glmhmm.priors

    assert bayes_glmhmm.params.Priors is bayes_glmhmm.priors.Priors is bayes_glmhmm.Priors


# ---------------------------------------------------------------------------------------------
# validate_num_states
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("good", [1, 3, np.int64(4), np.int32(2)])
def test_num_states_accepts_positive_integers(good):
    result = validate_num_states(good)
    assert result == int(good) and type(result) is int


@pytest.mark.parametrize("bad", [0, -1, 2.5, 3.0, True, False, "3", None, np.array([2])])
def test_num_states_rejects_non_positive_integers(bad):
    with pytest.raises(ValueError, match="num_states"):
        validate_num_states(bad)


# ---------------------------------------------------------------------------------------------
# validate_data
# ---------------------------------------------------------------------------------------------


def test_single_sequence_is_promoted_to_a_batch_of_one():
    inputs, emissions = np.arange(10.0).reshape(5, 2), np.arange(5.0)
    x, y, mask = validate_data(inputs, emissions)
    assert x.shape == (1, 5, 2) and y.shape == (1, 5) and mask.shape == (1, 5)
    assert x.dtype == jnp.result_type(float) and y.dtype == jnp.result_type(float) and mask.dtype == bool
    np.testing.assert_array_equal(x[0], inputs)
    np.testing.assert_array_equal(y[0], emissions)
    assert bool(mask.all())


def test_single_sequence_with_one_dimensional_mask():
    mask = np.array([True, False, True])
    _, y, out_mask = validate_data(np.ones((3, 1)), np.array([1.0, np.nan, 2.0]), mask)
    np.testing.assert_array_equal(out_mask, mask[None])
    np.testing.assert_array_equal(y, [[1.0, 0.0, 2.0]])


def test_inputs_without_input_axis_get_one():
    # (N, T) inputs that match (N, T) emissions mean one input per step.
    x, y, _ = validate_data(np.ones((2, 4)), np.zeros((2, 4)))
    assert x.shape == (2, 4, 1) and y.shape == (2, 4)


def test_batch_passes_through_unchanged():
    rng = np.random.default_rng(0)
    inputs, emissions = rng.normal(size=(3, 4, 2)), rng.normal(size=(3, 4))
    mask = rng.random((3, 4)) < 0.8
    x, y, m = validate_data(inputs, emissions, mask)
    # Values are only cast to the default float dtype (float32 unless x64 is enabled).
    np.testing.assert_allclose(x, inputs, rtol=1e-6)
    np.testing.assert_allclose(y, np.where(mask, emissions, 0.0), rtol=1e-6)
    np.testing.assert_array_equal(m, mask)


@pytest.mark.parametrize(
    ("inputs_shape", "emissions_shape"),
    [((2, 5, 1), (2, 4)), ((3, 4, 1), (2, 4)), ((4, 2), (5,)), ((2, 4, 1, 1), (2, 4)), ((2, 4, 0), (2, 4))],
)
def test_input_shape_mismatch_names_inputs(inputs_shape, emissions_shape):
    with pytest.raises(ValueError, match="inputs"):
        validate_data(np.ones(inputs_shape), np.ones(emissions_shape))


def test_bad_emission_shape_names_emissions():
    with pytest.raises(ValueError, match="emissions"):
        validate_data(np.ones((2, 3, 4, 1)), np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="emissions"):
        validate_data(np.ones((1, 0, 1)), np.ones((1, 0)))


@pytest.mark.parametrize("mask_shape", [(2, 3), (3, 4), (2, 4, 1), (4,)])
def test_mask_shape_mismatch_names_mask(mask_shape):
    with pytest.raises(ValueError, match="mask"):
        validate_data(np.ones((2, 4, 1)), np.ones((2, 4)), np.ones(mask_shape, bool))


def test_mask_of_zeros_and_ones_is_accepted_but_other_numbers_are_not():
    _, _, mask = validate_data(np.ones((1, 3, 1)), np.ones((1, 3)), np.array([[1, 0, 1]]))
    np.testing.assert_array_equal(mask, [[True, False, True]])
    with pytest.raises(ValueError, match="mask"):
        validate_data(np.ones((1, 3, 1)), np.ones((1, 3)), np.array([[1, 2, 1]]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_observed_emissions_are_rejected(bad):
    emissions = np.ones((2, 3))
    emissions[1, 2] = bad
    with pytest.raises(ValueError, match="emissions"):
        validate_data(np.ones((2, 3, 1)), emissions)
    # ...also when a mask is given but is True at that step.
    mask = np.ones((2, 3), bool)
    mask[0, 0] = False
    with pytest.raises(ValueError, match="emissions"):
        validate_data(np.ones((2, 3, 1)), emissions, mask)


def test_non_finite_masked_emissions_are_replaced_by_zero():
    emissions = np.array([[1.0, np.nan, 3.0], [np.inf, 5.0, -np.inf]])
    mask = np.isfinite(emissions)
    _, y, m = validate_data(np.ones((2, 3, 1)), emissions, mask)
    np.testing.assert_array_equal(y, [[1.0, 0.0, 3.0], [0.0, 5.0, 0.0]])
    np.testing.assert_array_equal(m, mask)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_inputs_are_rejected(bad):
    inputs = np.ones((2, 3, 2))
    inputs[1, 0, 1] = bad
    # Even where the emission is masked: missing inputs are not supported.
    mask = np.ones((2, 3), bool)
    mask[1, 0] = False
    with pytest.raises(ValueError, match="inputs"):
        validate_data(inputs, np.ones((2, 3)), mask)


def test_non_numeric_data_are_rejected():
    with pytest.raises(ValueError, match="emissions"):
        validate_data(np.ones((3, 1)), ["a", "b", "c"])
    with pytest.raises(ValueError, match="inputs"):
        validate_data([["a"], ["b"], ["c"]], np.ones(3))
    with pytest.raises(ValueError, match="inputs"):
        validate_data(object(), np.ones(3))


# ---------------------------------------------------------------------------------------------
# GLMHMMParams and permutation
# ---------------------------------------------------------------------------------------------


def distinct_params():
    """K = 3, D = 2 parameters in which every entry is distinct, so any mix-up shows."""
    transition_matrix = np.array([[0.7, 0.2, 0.1], [0.15, 0.6, 0.25], [0.05, 0.35, 0.6]])
    return GLMHMMParams(
        initial_probs=np.array([0.5, 0.3, 0.2]),
        transition_matrix=transition_matrix,
        weights=np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),
        biases=np.array([-1.0, 0.0, 1.0]),
        scales=np.array([0.5, 1.0, 1.5]),
    )


def test_sizes():
    params = distinct_params()
    assert params.num_states == 3 and params.input_dim == 2


def test_permute_with_a_known_permutation():
    params = distinct_params()
    permutation = np.array([2, 0, 1])
    permuted = params.permute(permutation)
    for k in range(3):
        old = permutation[k]
        assert permuted.initial_probs[k] == params.initial_probs[old]
        assert permuted.biases[k] == params.biases[old]
        assert permuted.scales[k] == params.scales[old]
        np.testing.assert_array_equal(permuted.weights[k], params.weights[old])
        for j in range(3):
            # Both axes are relabelled: new i -> new j is old perm[i] -> old perm[j].
            assert permuted.transition_matrix[k, j] == params.transition_matrix[old, permutation[j]]
    # Hand-written expectation for the transition matrix, as a second check on the loop above.
    np.testing.assert_array_equal(permuted.transition_matrix, [[0.6, 0.05, 0.35], [0.1, 0.7, 0.2], [0.25, 0.15, 0.6]])
    np.testing.assert_allclose(np.sum(permuted.transition_matrix, axis=1), 1.0)
    # permute is permute_params.
    for a, b in zip(permuted, permute_params(params, permutation), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("permutation", [[0, 1, 2], [1, 0, 2], [2, 0, 1], [1, 2, 0], [2, 1, 0]])
def test_permute_then_inverse_is_identity(permutation):
    params = distinct_params()
    back = params.permute(permutation).permute(np.argsort(permutation))
    for original, restored in zip(params, back, strict=True):
        np.testing.assert_array_equal(restored, original)


def test_relabelling_leaves_the_likelihood_unchanged():
    # Summing over paths is invariant to renaming the states, so log p(y) must not change.
    from bayes_glmhmm.model import log_likelihood

    rng = np.random.default_rng(1)
    params = distinct_params()
    inputs, emissions = rng.normal(size=(2, 6, 2)), rng.normal(0.0, 5.0, (2, 6))
    before = log_likelihood(params, inputs, emissions)
    after = log_likelihood(params.permute([2, 0, 1]), inputs, emissions)
    # Same sums in a different order in float32: ~1e-6 relative.
    np.testing.assert_allclose(after, before, rtol=1e-5)


def test_permute_moves_every_parameter_of_a_categorical_model():
    """Categorical weights (K, C - 1, D) and biases (K, C - 1) move with their state; the type is kept."""
    from bayes_glmhmm import CategoricalGLMHMMParams

    rng = np.random.default_rng(1)
    params = CategoricalGLMHMMParams(
        rng.dirichlet(np.ones(3)),
        rng.dirichlet(np.ones(3), size=3),
        rng.normal(size=(3, 2, 4)),
        rng.normal(size=(3, 2)),
    )
    permuted = params.permute([2, 0, 1])
    assert type(permuted) is CategoricalGLMHMMParams
    np.testing.assert_array_equal(permuted.weights[0], params.weights[2])
    np.testing.assert_array_equal(permuted.biases[1], params.biases[0])
    np.testing.assert_array_equal(permuted.transition_matrix[0, 1], params.transition_matrix[2, 0])
    assert permuted.num_states == 3 and permuted.input_dim == 4


def test_family_registry_and_its_errors():
    from bayes_glmhmm import BernoulliGLMHMMParams, CategoricalGLMHMMParams, family_of, get_family
    from bayes_glmhmm.emissions import resolve_family

    assert get_family("bernoulli").params_type is BernoulliGLMHMMParams
    assert get_family("categorical", num_classes=4) is get_family("categorical", num_classes=4)  # one jit cache
    three = CategoricalGLMHMMParams(np.ones(2) / 2, np.eye(2), np.zeros((2, 2, 1)), np.zeros((2, 2)))
    assert family_of(three).num_classes == 3
    assert resolve_family("categorical", np.array([[0.0, 4.0, 1.0]])).num_classes == 5
    with pytest.raises(ValueError, match="family must be one of"):
        get_family("binomial")
    with pytest.raises(ValueError, match="num_classes"):
        get_family("categorical")
    with pytest.raises(ValueError, match="num_classes"):
        get_family("poisson", num_classes=3)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        get_family("categorical", num_classes=1)
    with pytest.raises(ValueError, match="params must be"):
        family_of((np.ones(2), np.eye(2)))


def test_validate_data_applies_the_family_support():
    from bayes_glmhmm import get_family

    inputs = np.zeros((1, 4, 1))
    _, coded, _ = validate_data(inputs, np.array([[-1, 1, 1, -1]]), family=get_family("bernoulli"))
    np.testing.assert_array_equal(coded, [[0, 1, 1, 0]])
    _, booleans, _ = validate_data(inputs, np.array([[True, False, True, True]]), family=get_family("bernoulli"))
    np.testing.assert_array_equal(booleans, [[1, 0, 1, 1]])
    with pytest.raises(ValueError, match=r"emissions.*bernoulli.*\(0, 2\)"):
        validate_data(inputs, np.array([[0, 1, 2, 1]]), family=get_family("bernoulli"))
    with pytest.raises(ValueError, match=r"emissions.*poisson.*\(0, 1\)"):
        validate_data(inputs, np.array([[0, 1.5, 2, 1]]), family=get_family("poisson"))
    with pytest.raises(ValueError, match=r"emissions.*categorical.*0\.\.2"):
        validate_data(inputs, np.array([[0, 1, 3, 1]]), family=get_family("categorical", num_classes=3))
    # A bad value where the mask is False is a missing value, not an error.
    _, kept, _ = validate_data(
        inputs, np.array([[0, 1, 7, 1]]), np.array([[True, True, False, True]]), family=get_family("poisson")
    )
    np.testing.assert_array_equal(kept, [[0, 1, 0, 1]])
