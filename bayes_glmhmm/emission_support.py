"""Each emission family's check of its observed targets (the family's support), NumPy only.

The families (:mod:`bayes_glmhmm.emissions`) use these functions as their ``prepare_emissions``;
the command line checks a CSV's target column with the same functions, through
:func:`coded_targets`, before it imports JAX, so that a bad target fails at once.
"""

import functools
from collections.abc import Callable

import numpy as np

from bayes_glmhmm.family_names import FAMILY_NAMES

__all__ = [
    "bernoulli_emissions",
    "categorical_emissions",
    "coded_targets",
    "first_bad_index",
    "gaussian_emissions",
    "infer_num_classes",
    "poisson_emissions",
    "support_check",
]


def first_bad_index(bad: np.ndarray) -> tuple[int, ...]:
    """The (sequence, step) index of the first True entry of ``bad``."""
    return tuple(int(i) for i in np.argwhere(bad)[0])


def gaussian_emissions(emissions: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Any finite real value is a valid Gaussian observation."""
    del mask
    return emissions


def bernoulli_emissions(emissions: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """0/1 (or booleans, or all -1/+1) emissions as floats 0/1; ValueError naming the first bad index.

    A mix of -1, 0 and 1 is refused as ambiguous.
    """
    observed = emissions[mask]
    if observed.size and np.all(np.isin(observed, (-1.0, 1.0))) and np.any(observed == -1.0):
        return np.where(mask & (emissions == -1.0), 0.0, emissions)
    bad = mask & ~np.isin(emissions, (0.0, 1.0))
    if bad.any():
        index = first_bad_index(bad)
        raise ValueError(
            f"emissions for the bernoulli family must be 0/1 (or booleans, or all -1/+1), got "
            f"{emissions[index]:g} at (sequence, step) {index}; mask it out if it is a missing value"
        )
    return emissions


def categorical_emissions(emissions: np.ndarray, mask: np.ndarray, *, num_classes: int) -> np.ndarray:
    """Integer labels 0..C-1; ValueError naming the first bad index."""
    bad = mask & ((emissions < 0) | (emissions > num_classes - 1) | (emissions != np.round(emissions)))
    if bad.any():
        index = first_bad_index(bad)
        raise ValueError(
            f"emissions for the categorical family with {num_classes} classes must be integer labels "
            f"0..{num_classes - 1}, got {emissions[index]:g} at (sequence, step) {index}"
        )
    return emissions


def poisson_emissions(emissions: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Non-negative integer counts; ValueError naming the first bad index."""
    bad = mask & ((emissions < 0) | (emissions != np.round(emissions)))
    if bad.any():
        index = first_bad_index(bad)
        raise ValueError(
            f"emissions for the poisson family must be non-negative integer counts, got {emissions[index]:g} "
            f"at (sequence, step) {index}"
        )
    return emissions


_FIXED_CHECKS = {"gaussian": gaussian_emissions, "bernoulli": bernoulli_emissions, "poisson": poisson_emissions}


def infer_num_classes(emissions, mask=None) -> int:
    """C of a categorical family whose number of classes is not given: 1 + the largest observed label, at least 2."""
    values = np.asarray(emissions, dtype=float)
    if mask is not None:
        values = values[np.asarray(mask, bool)]
    values = values[np.isfinite(values)]
    return max(int(values.max()) + 1, 2) if values.size else 2


def support_check(family: str, num_classes: int | None = None) -> Callable:
    """The support check of the family named ``family``: its ``prepare_emissions``.

    Args:
        family: a name in :data:`~bayes_glmhmm.family_names.FAMILY_NAMES`.
        num_classes: C, required for ``"categorical"``.

    Returns:
        ``(emissions (N, T), mask (N, T)) -> (N, T)`` the emissions in the family's coding, raising
        ValueError naming the first observed value outside the support.
    """
    if family == "categorical":
        if num_classes is None:
            raise ValueError("family='categorical' needs num_classes (the number of classes C)")
        return functools.partial(categorical_emissions, num_classes=num_classes)
    if family not in _FIXED_CHECKS:
        raise ValueError(f"family must be one of {', '.join(FAMILY_NAMES)}, got {family!r}")
    return _FIXED_CHECKS[family]


def _accepted_alone(check: Callable, value: float) -> bool:
    """Whether ``check`` accepts ``value`` as a one-step sequence."""
    try:
        check(np.array([[value]]), np.array([[True]]))
    except ValueError:
        return False
    return True


def coded_targets(table, family: str, num_classes: int | None = None) -> np.ndarray:
    """The observed targets of a long table in the family's coding, checked against its support.

    Args:
        table: a :class:`~bayes_glmhmm.tabular.TabularData` (``emissions``, ``mask``, ``row_index``,
            ``target_name``).
        family: a name in :data:`~bayes_glmhmm.family_names.FAMILY_NAMES`.
        num_classes: C of the categorical family; None infers it (:func:`infer_num_classes`).

    Returns:
        (N, T) float targets in the family's coding (e.g. -1/+1 as 0/1).

    Raises:
        ValueError: led by ``target:`` and naming the column, for a value outside the family's
            support (with its first data row, 1-based) or a mix of values each valid alone (e.g.
            -1, 0 and 1 for the Bernoulli family).
    """
    if family == "categorical" and num_classes is None:
        num_classes = infer_num_classes(table.emissions, table.mask)
    check = support_check(family, num_classes)
    try:
        return np.asarray(check(table.emissions, table.mask), dtype=float)
    except ValueError as error:
        values = np.unique(table.emissions[table.mask])
        unsupported = [value for value in values if not _accepted_alone(check, value)]
        if not unsupported:  # each value is fine alone, their mix is not (e.g. -1, 0 and 1 for bernoulli)
            raise ValueError(f"target: column {table.target_name!r}: {error}") from None
        bad = table.mask & np.isin(table.emissions, unsupported)
        row = int(table.row_index[bad].min())
        value = table.emissions[table.row_index == row][0]
        raise ValueError(
            f"target: column {table.target_name!r} has the value {value:g} at data row {row + 1}, "
            f"which the {family} family does not accept ({error})"
        ) from None
