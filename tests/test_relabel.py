import itertools

import numpy as np
import pytest

from bayes_glmhmm import GLMHMMParams, article_params, find_state_permutation, match_params, relabel_samples
from bayes_glmhmm.params import PARAM_NAMES
from bayes_glmhmm.relabel import invert_permutation, permute_states, relabel_draws


def _fake_draws(rng, num_chains=3, num_draws=200):
    """Draws scattered around the article's parameters (sd small against the gaps between states)."""
    truth = article_params()
    shape = (num_chains, num_draws)
    transition = rng.dirichlet(np.ones(3), size=shape + (3,)) * 0.1 + 0.9 * truth.transition_matrix
    return truth, {
        "initial_probs": np.broadcast_to(truth.initial_probs, shape + (3,)).copy(),
        "transition_matrix": transition,
        "weights": truth.weights + 0.05 * rng.standard_normal(shape + (3, 1)),
        "biases": truth.biases + 0.2 * rng.standard_normal(shape + (3,)),
        "scales": truth.scales * np.exp(0.05 * rng.standard_normal(shape + (3,))),
    }


def test_relabeling_undoes_known_random_permutations(rng):
    truth, draws = _fake_draws(rng)
    applied = np.array([rng.permutation(3) for _ in range(3 * 200)]).reshape(3, 200, 3)
    scrambled = relabel_draws(draws, applied)
    result = relabel_samples(scrambled)
    # Up to one global relabeling (the reference is arbitrary), every draw is restored exactly.
    global_perm = match_params(GLMHMMParams(*(result.samples[k].mean(axis=(0, 1)) for k in PARAM_NAMES)), truth)
    restored = relabel_draws(result.samples, np.broadcast_to(global_perm, applied.shape))
    for name in draws:
        np.testing.assert_allclose(restored[name], draws[name], err_msg=name)
    # The stored permutations compose with the applied ones to that global permutation.
    composed = np.take_along_axis(applied, result.permutations, axis=-1)
    np.testing.assert_array_equal(
        np.take_along_axis(composed, np.broadcast_to(global_perm, applied.shape), -1),
        np.broadcast_to(np.arange(3), applied.shape),
    )


def test_relabeling_restores_rhat(rng):
    """A chain in another labeling has an enormous R-hat until relabeled (measured: 40)."""
    import arviz as az

    _, draws = _fake_draws(rng, num_chains=4, num_draws=300)
    switched = relabel_draws(
        draws, np.broadcast_to(np.array([[0, 1, 2]] * 2 + [[2, 0, 1], [1, 2, 0]])[:, None], (4, 300, 3))
    )
    raw = float(az.rhat(az.convert_to_dataset({"biases": switched["biases"]}))["biases"].max())
    fixed = relabel_samples(switched, reference=None).samples
    relabeled = float(az.rhat(az.convert_to_dataset({"biases": fixed["biases"]}))["biases"].max())
    assert raw > 2.0
    assert relabeled < 1.01


@pytest.mark.parametrize("permutation", list(itertools.permutations(range(3))))
def test_match_params_and_state_permutation_directions(permutation):
    """The article plots find_permutation's result applied the wrong way; ours is right for all six."""
    truth = article_params()
    permutation = np.array(permutation)
    estimate = truth.permute(permutation)  # estimate state k is true state permutation[k]
    found = match_params(estimate, truth)
    np.testing.assert_array_equal(found, invert_permutation(permutation))
    aligned = estimate.permute(found)
    for name in PARAM_NAMES:
        np.testing.assert_allclose(aligned._asdict()[name], truth._asdict()[name], err_msg=name)

    rng = np.random.default_rng(1)
    true_states = rng.integers(0, 3, size=500)
    estimated_states = invert_permutation(permutation)[true_states]  # labels under the estimate's naming
    state_perm = find_state_permutation(true_states, estimated_states, 3)
    np.testing.assert_array_equal(state_perm, found)
    np.testing.assert_array_equal(invert_permutation(state_perm)[estimated_states], true_states)
    np.testing.assert_array_equal(permute_states(estimated_states[None], state_perm[None]), true_states[None])


def test_transition_matrix_is_permuted_on_both_axes():
    matrix = np.arange(9.0).reshape(3, 3)
    permutation = np.array([2, 0, 1])
    out = relabel_draws({"transition_matrix": matrix[None]}, permutation[None])["transition_matrix"][0]
    for i, j in itertools.product(range(3), range(3)):
        assert out[i, j] == matrix[permutation[i], permutation[j]]
