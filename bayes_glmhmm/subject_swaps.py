"""Within-subject label swaps: chains that disagree on which of one subject's states is which.

In a hierarchical posterior (:mod:`bayes_glmhmm.hierarchy`) state k of subject s is tied to state k
of the population only through the prior, so one subject's data can hold its states in a mode
where, say, its state 0 looks like the population's state 1 and its state 1 like the population's
state 0. Two chains can then settle one subject's states the two ways round. That is a different
mode of the posterior, not a symmetry: relabeling (:mod:`bayes_glmhmm.relabel`) permutes whole
draws by the population parameters and cannot undo it. The verdict would see it only as a high
R-hat on some anonymous subject parameter; :func:`subject_label_swaps` names the subject, the
chains and the states.

The check compares, per subject, each chain's posterior means of that subject's per-state
parameters (weights and biases, flattened per state) with those of a reference chain, in units of
the two chains' posterior sds, and finds the matching of states that brings them closest
(Hungarian matching, exact for this per-state cost). A swap is reported only when the best
matching is not the identity, the identity leaves the chains far apart (:data:`MIN_SWAP_DISTANCE`
posterior sds) and the best matching brings them much closer (by :data:`MIN_SWAP_RATIO`): see
:func:`subject_label_swaps` for why this rule does not fire on chains that agree, nor on a subject
whose states overlap.
"""

from typing import NamedTuple

import numpy as np
from jaxtyping import Float
from scipy.optimize import linear_sum_assignment

__all__ = ["MIN_SWAP_DISTANCE", "MIN_SWAP_RATIO", "SubjectLabelSwap", "state_match_costs", "subject_label_swaps"]

#: The chains' standardized posterior means of a subject's states must lie at least this many
#: posterior sds apart under the identity matching (Euclidean over states and coefficients).
MIN_SWAP_DISTANCE = 3.0

#: ...and the best matching must bring them at least this many times closer.
MIN_SWAP_RATIO = 3.0


class SubjectLabelSwap(NamedTuple):
    """One chain whose labeling of one subject's states differs from the reference chain's.

    Attributes:
        subject: the subject's index (0..S-1, that of :class:`~bayes_glmhmm.hierarchy.Subjects`).
        chain: the chain whose labeling differs.
        reference_chain: the chain it is compared with.
        permutation: (K,) ``permutation[k]`` is the state of ``chain`` that matches state k of
            ``reference_chain`` for this subject (the convention of :mod:`bayes_glmhmm.relabel`:
            new state k = old state ``permutation[k]``); not the identity.
        identity_distance: the distance between the two chains' posterior means of the subject's
            per-state parameters when state k is matched with state k, in posterior sds
            (Euclidean over states and coefficients).
        matched_distance: the same distance under ``permutation``.
    """

    subject: int
    chain: int
    reference_chain: int
    permutation: tuple[int, ...]
    identity_distance: float
    matched_distance: float


def state_match_costs(
    reference_means: Float[np.ndarray, "num_states num_elements"],
    reference_variances: Float[np.ndarray, "num_states num_elements"],
    chain_means: Float[np.ndarray, "num_states num_elements"],
    chain_variances: Float[np.ndarray, "num_states num_elements"],
) -> Float[np.ndarray, "num_states num_states"]:
    """Squared standardized distances between one subject's states in two chains.

    costs[k, j] = sum_e (chain_means[j, e] - reference_means[k, e])^2 / pooled[k, j, e], with
    pooled[k, j, e] = (reference_variances[k, e] + chain_variances[j, e]) / 2 the average of the
    two posterior variances compared, so that each coefficient counts in its own posterior sds
    whatever its scale. Constant elements (no posterior variance in either chain) count 0.

    Args:
        reference_means: the reference chain's posterior mean of each state's parameters.
        reference_variances: their posterior variances within the reference chain.
        chain_means: the other chain's posterior means.
        chain_variances: their posterior variances within that chain.

    Returns:
        (K, K) costs: row k a state of the reference chain, column j a state of the other chain.
    """
    differences = chain_means[None, :, :] - reference_means[:, None, :]
    pooled = (reference_variances[:, None, :] + chain_variances[None, :, :]) / 2
    positive = pooled > 0
    squared = np.where(positive, differences**2 / np.where(positive, pooled, 1.0), 0.0)
    return squared.sum(axis=-1)


def _per_state(values: np.ndarray, num_subjects: int, num_states: int) -> np.ndarray:
    """(chain, draw, S, K, ...) -> (chain, draw, S, K, elements)."""
    return np.asarray(values, dtype=float).reshape(values.shape[:2] + (num_subjects, num_states, -1))


def subject_label_swaps(
    subject_weights: Float[np.ndarray, "num_chains num_draws num_subjects num_states *weight_dims"],
    subject_biases: Float[np.ndarray, "num_chains num_draws num_subjects num_states *bias_dims"],
    reference_chain: int = 0,
    min_distance: float = MIN_SWAP_DISTANCE,
    min_ratio: float = MIN_SWAP_RATIO,
) -> list[SubjectLabelSwap]:
    """Subjects whose states a chain labels the other way round from the reference chain.

    For subject s and chain c, the posterior means over c's draws of each state's weights and
    biases are matched with the reference chain's (:func:`state_match_costs`; the best of all K!
    matchings by Hungarian matching). A swap is reported when the best matching pi is not the
    identity and

        identity_distance >= min_distance   and   matched_distance * min_ratio <= identity_distance,

    the distances being sqrt(sum_k costs[k, pi(k)]), in posterior sds. Why this is sound: two
    chains that sample the same mode have posterior means within Monte Carlo error of each other,
    about sqrt(2 / ESS) sds per coefficient, so the identity distance stays near
    sqrt(2 K E / ESS) (E coefficients per state), well under 3 for any usable effective sample
    size, and nothing is reported, whatever the noise makes the best matching. A subject whose
    states overlap (a weakly identified subject) has every matching within a few sds of every
    other, so the identity cannot be far off while another matching is close. What the first
    condition lets through is a real disagreement of the chains; the second calls it a swap only
    when a permutation explains at least 1 - 1 / min_ratio^2 (8/9) of its squared distance, so a
    chain in a different mode that is not a relabeling (or a drifting chain) is left to the
    R-hat and stuck-chain checks.

    Only weights and biases are compared: they are what sets a subject's states apart, and their
    cost is a sum over states (a subject's own transition matrix is permuted along both axes).

    Args:
        subject_weights: (chain, draw, S, K, ..., D) subject weights.
        subject_biases: (chain, draw, S, K, ...) subject biases.
        reference_chain: the chain the others are compared with (e.g. that of the best median log density).
        min_distance: the identity distance, in posterior sds, below which the chains agree.
        min_ratio: how many times closer than the identity the best matching must bring the chains.

    Returns:
        The swaps, by subject then chain; empty with one chain (nothing to compare).
    """
    num_chains, _, num_subjects, num_states = np.shape(subject_weights)[:4]
    if num_chains < 2:
        return []
    per_state = np.concatenate(
        [_per_state(subject_weights, num_subjects, num_states), _per_state(subject_biases, num_subjects, num_states)],
        axis=-1,
    )
    means, variances = per_state.mean(axis=1), per_state.var(axis=1)
    identity = tuple(range(num_states))
    swaps = []
    for subject in range(num_subjects):
        for chain in range(num_chains):
            if chain == reference_chain:
                continue
            costs = state_match_costs(
                means[reference_chain, subject],
                variances[reference_chain, subject],
                means[chain, subject],
                variances[chain, subject],
            )
            _, matched = linear_sum_assignment(costs)
            identity_distance = float(np.sqrt(np.trace(costs)))
            matched_distance = float(np.sqrt(costs[np.arange(num_states), matched].sum()))
            permutation = tuple(int(state) for state in matched)
            if (
                permutation != identity
                and identity_distance >= min_distance
                and matched_distance * min_ratio <= identity_distance
            ):
                swaps.append(
                    SubjectLabelSwap(subject, chain, reference_chain, permutation, identity_distance, matched_distance)
                )
    return swaps
