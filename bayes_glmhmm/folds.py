"""Folds of held-out sequences for k-fold scores, NumPy only (importable without JAX).

:func:`bayes_glmhmm.selection.select_num_states` deals the sequences into folds with
:func:`fold_assignment`; the command line checks ``--folds`` against the CSV's sequences with
:func:`check_num_folds` before it imports JAX.
"""

import numpy as np

__all__ = ["check_num_folds", "fold_assignment"]


def check_num_folds(num_folds: int, num_sequences: int) -> int:
    """``num_folds`` as an int; ValueError naming ``num_folds`` unless 2 <= num_folds <= num_sequences.

    Each fold holds out whole sequences, so there can be no more folds than sequences.
    """
    if isinstance(num_folds, bool) or not isinstance(num_folds, (int, np.integer)) or num_folds < 2:
        raise ValueError(f"num_folds must be an integer >= 2, got {num_folds!r}")
    if num_folds > num_sequences:
        raise ValueError(
            f"num_folds={num_folds} exceeds the number of sequences ({num_sequences}): each fold holds out"
            " whole sequences"
        )
    return int(num_folds)


def fold_assignment(num_sequences: int, num_folds: int, seed: int = 0) -> np.ndarray:
    """Fold of each sequence: a seeded random permutation dealt round-robin into ``num_folds`` folds.

    Fold sizes differ by at most one sequence.

    Args:
        num_sequences: N.
        num_folds: the number of folds, 2 <= num_folds <= N.
        seed: seed of the permutation.

    Returns:
        (N,) the fold 0..num_folds-1 of each sequence.

    Raises:
        ValueError: unless 2 <= num_folds <= num_sequences (see :func:`check_num_folds`).
    """
    num_folds = check_num_folds(num_folds, num_sequences)
    order = np.random.default_rng(seed).permutation(num_sequences)
    folds = np.empty(num_sequences, dtype=int)
    folds[order] = np.arange(num_sequences) % num_folds
    return folds
