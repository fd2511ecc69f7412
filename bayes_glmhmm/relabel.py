"""Label switching: find, apply and invert state permutations of posterior draws.

Convention used throughout: a permutation ``perm`` of shape (K,) relabels parameters so that
*new* state k is *old* state ``perm[k]``; for example ``weights_new = weights_old[perm]`` and
``transition_new = transition_old[perm][:, perm]`` (and the same for the (K, K, M) transition weights
of input-driven transitions). A state path relabels with the inverse,
``z_new = argsort(perm)[z_old]``.

Draws are matched to a reference by the Hungarian algorithm on a cost built from the
state-specific emission parameters (the family's ``relabel_features``: weights, biases and, for
the Gaussian, log scales), standardized by their
posterior spread; the reference is then re-estimated from the aligned draws and the matching
repeated until no permutation changes (a pivotal-reordering / Stephens-type fixed point).
"""

from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from bayes_glmhmm.emissions import family_of, get_family

__all__ = [
    "RelabelResult",
    "state_features",
    "match_permutation",
    "relabel_draws",
    "relabel_samples",
    "invert_permutation",
    "permute_states",
    "find_state_permutation",
    "match_params",
]

STATE_AXIS = {
    "initial_probs": 0,
    "weights": 0,
    "biases": 0,
    "scales": 0,
    "centred_biases": 0,
    "weight_spread": 0,
    "bias_spread": 0,
    "subject_weights": 1,
    "subject_biases": 1,
}
# Every parameter of every family has its state axis first (the transition matrix has two);
# the subjects' weights and biases (bayes_glmhmm.hierarchy) have it after their subject axis.
TRANSITION_AXIS = {"transition_matrix": 0, "transition_weights": 0, "subject_transition_matrix": 1}
# The first of the two state axes (origin, destination) of the transition parameters.


class RelabelResult(NamedTuple):
    """Outcome of :func:`relabel_samples`.

    Attributes:
        samples: the relabeled draws, same keys and shapes as the input.
        permutations: (..., K) integer permutation applied to each draw (new k = old perm[k]).
        reference: (K, F) final reference features.
        num_iterations: iterations until the permutations stopped changing.
    """

    samples: dict
    permutations: np.ndarray
    reference: np.ndarray
    num_iterations: int


def invert_permutation(permutation: np.ndarray) -> np.ndarray:
    """The inverse permutation along the last axis."""
    return np.argsort(permutation, axis=-1)


def state_features(samples: dict) -> np.ndarray:
    """Per-state emission features of each draw of the Gaussian family: weights, bias and log scale, (..., K, D + 2).

    Other families: ``family.relabel_features``.
    """
    return get_family("gaussian").relabel_features(samples)


def match_permutation(features: np.ndarray, reference: np.ndarray, feature_scale: np.ndarray) -> np.ndarray:
    """Permutation perm with features[perm[k]] closest to reference[k] (Hungarian, squared distance).

    Args:
        features: (K, F) features of one draw.
        reference: (K, F) reference features.
        feature_scale: (F,) standardization of each feature.

    Returns:
        (K,) permutation, new state k = old state perm[k].
    """
    difference = (features[None, :, :] - reference[:, None, :]) / feature_scale  # [new k, old j]
    cost = np.sum(difference**2, axis=-1)
    rows, columns = linear_sum_assignment(cost)
    permutation = np.empty_like(columns)
    permutation[rows] = columns
    return permutation


def relabel_draws(samples: dict, permutations: np.ndarray) -> dict:
    """Apply one permutation per draw to every state-indexed parameter.

    Args:
        samples: dict of arrays with leading draw axes (...), e.g. (chain, draw, K, ...).
        permutations: (..., K) permutations matching those leading axes.

    Returns:
        A new dict; keys without a state axis are copied unchanged.
    """
    permutations = np.asarray(permutations)
    lead = permutations.ndim - 1
    relabeled = {}
    for name, value in samples.items():
        value = np.asarray(value)
        if name in TRANSITION_AXIS:
            # Both state axes (origin and destination); the transition weights' input axis follows.
            offset = (1,) * TRANSITION_AXIS[name]
            first = lead + TRANSITION_AXIS[name]
            trailing = (1,) * (value.ndim - first - 2)
            rows = np.take_along_axis(
                value,
                permutations.reshape(permutations.shape[:-1] + offset + permutations.shape[-1:] + (1,) + trailing),
                axis=first,
            )
            columns = permutations.reshape(permutations.shape[:-1] + offset + (1, permutations.shape[-1]) + trailing)
            relabeled[name] = np.take_along_axis(rows, columns, axis=first + 1)
        elif name in STATE_AXIS:
            axis = lead + STATE_AXIS[name]
            index = permutations.reshape(
                permutations.shape[:-1]
                + (1,) * STATE_AXIS[name]
                + permutations.shape[-1:]
                + (1,) * (value.ndim - axis - 1)
            )
            relabeled[name] = np.take_along_axis(value, index, axis=axis)
        else:
            relabeled[name] = value
    return relabeled


def permute_states(states: np.ndarray, permutations: np.ndarray) -> np.ndarray:
    """Relabel state paths drawn under the old labels: z_new = inverse(perm)[z_old].

    Args:
        states: (..., N, T) integer paths.
        permutations: (..., K) with the same leading axes as ``states`` (before N, T).

    Returns:
        Paths in the new labels.
    """
    inverse = invert_permutation(np.asarray(permutations))
    flat_inverse = inverse.reshape(-1, inverse.shape[-1])
    flat_states = np.asarray(states).reshape(flat_inverse.shape[0], -1)
    return np.take_along_axis(flat_inverse, flat_states, axis=1).reshape(np.shape(states))


def relabel_samples(
    samples: dict, reference: np.ndarray | None = None, max_iterations: int = 20, features=state_features
) -> RelabelResult:
    """Relabel every draw to a common labeling.

    Args:
        samples: dict with ``weights`` (..., K, D), ``biases`` (..., K), ``scales`` (..., K) and
            optionally ``initial_probs``, ``transition_matrix`` and other state-indexed entries.
        reference: (K, F) starting reference features (e.g. from the EM estimate, see
            :func:`state_features`); defaults to the first draw.
        max_iterations: bound on the reference refinements.
        features: ``samples -> (..., K, F)`` per-state features, the family's ``relabel_features``
            (the Gaussian's by default).

    Returns:
        A :class:`RelabelResult`.
    """
    features = features(samples)
    lead_shape, (num_states, num_features) = features.shape[:-2], features.shape[-2:]
    flat = features.reshape(-1, num_states, num_features)
    if reference is None:
        reference = flat[0]
    reference = np.asarray(reference, dtype=float)
    # Start with the spread across states of the reference, so that features on large scales
    # do not dominate; afterwards use the within-state posterior spread.
    feature_scale = np.std(flat.reshape(-1, num_features), axis=0) + 1e-12
    permutations = None
    num_iterations = 0
    for _ in range(max_iterations):
        num_iterations += 1
        new_permutations = np.stack([match_permutation(draw, reference, feature_scale) for draw in flat])
        aligned = np.take_along_axis(flat, new_permutations[..., None], axis=1)
        reference = aligned.mean(axis=0)
        feature_scale = np.sqrt(np.mean(aligned.std(axis=0) ** 2, axis=0)) + 1e-12
        if permutations is not None and np.array_equal(new_permutations, permutations):
            break
        permutations = new_permutations
    permutations = new_permutations.reshape(lead_shape + (num_states,))
    return RelabelResult(relabel_draws(samples, permutations), permutations, reference, num_iterations)


def find_state_permutation(true_states: np.ndarray, estimated_states: np.ndarray, num_states: int) -> np.ndarray:
    """Permutation that best aligns estimated labels to true labels (maximum agreement).

    Returns ``perm`` with the convention of this module: relabeling the *estimate* by ``perm``
    (new state k = estimated state perm[k]) makes estimated state labels match the true ones, so
    ``params_estimate.permute(perm)`` is directly comparable to the true parameters and
    ``invert_permutation(perm)[estimated_states]`` to ``true_states``.

    Args:
        true_states: integer array of true labels.
        estimated_states: integer array of estimated labels, same shape.
        num_states: K.

    Returns:
        (K,) permutation.
    """
    true_states = np.asarray(true_states).ravel()
    estimated_states = np.asarray(estimated_states).ravel()
    overlap = np.zeros((num_states, num_states))
    np.add.at(overlap, (true_states, estimated_states), 1)
    rows, columns = linear_sum_assignment(-overlap)
    permutation = np.empty(num_states, dtype=int)
    permutation[rows] = columns
    return permutation


def match_params(estimate, target) -> np.ndarray:
    """Permutation that aligns an estimate's state labels to a target's (e.g. the truth).

    Matches the per-state emission features (the family's: weights, bias and, for the Gaussian,
    log scale), standardized by the target's spread across states, with the Hungarian algorithm.
    With the convention of this module, ``estimate.permute(perm)`` has the target's labeling.

    Args:
        estimate: params of any family (e.g. GLMHMMParams).
        target: params of the same family with the labeling wanted.

    Returns:
        (K,) permutation.
    """
    features = family_of(target).relabel_features
    estimate_features = features({name: np.asarray(value) for name, value in estimate._asdict().items()})
    target_features = features({name: np.asarray(value) for name, value in target._asdict().items()})
    scale = np.std(target_features, axis=0) + 1e-12
    return match_permutation(estimate_features, target_features, scale)
