"""Long-format tables (one row per time step) to padded, masked arrays, and back.

A CSV holds one row per time step; a sequence column (optional) groups rows into sequences, whose
rows are in time order. Sequences of different lengths are padded at the end and masked, and every
array position remembers its source row so that results are written per row without padding.

Targets are numbers, or, for families whose targets are classes (``class_target=True``), class
labels. Class labels that are all numbers stay numbers (e.g. 0/1, -1/+1 or 0..C-1; the family
checks and codes them). Otherwise every observed label is text and is coded 0..C-1:

* ``true``/``false`` (any case) always code as false = 0, true = 1;
* any other labels code in sorted (Python string) order, e.g. ``left`` = 0, ``none`` = 1,
  ``right`` = 2, so that the coding does not depend on which label happens to come first.

The coding is returned (:attr:`TabularData.class_labels`, label of code c at position c) so that
results can name classes by their labels. An empty cell or ``nan``/``na``/``null`` (any case) is a
missing target in every case.

Transition inputs (columns u_t that drive the state transitions t -> t+1, see
:mod:`bayes_glmhmm.transitions`) are read like inputs: numbers, never missing; a column may serve
both as an input and as a transition input. Their padding steps hold zeros (masked out).

A subject column (optional) names the subject of each sequence (e.g. the animal of each session, for
a hierarchical model across subjects, :mod:`bayes_glmhmm.hierarchy`): every row of a sequence
carries the same id, never missing; ids are text (stripped of surrounding spaces).
"""

import csv
import math
import os
from typing import NamedTuple

import numpy as np

__all__ = ["TabularData", "check_supported_states", "class_label_order", "read_long_csv", "tabulate"]

_MISSING = ("", "nan", "na", "null")
_BOOLEANS = ("false", "true")  # codes 0 and 1


class TabularData(NamedTuple):
    """A long table as model arrays.

    Attributes:
        inputs: (N, T, D) covariates; padding steps hold zeros.
        emissions: (N, T) targets (text class labels as their codes); missing and padding steps hold zeros.
        mask: (N, T) True where the target was observed.
        row_index: (N, T) the 0-based data row of each step, -1 for padding.
        lengths: (N,) number of rows of each sequence.
        sequence_ids: the N sequence labels, in order of first appearance.
        input_names: the D input column names.
        target_name: the target column name.
        class_labels: when the target held text class labels, the label of each code 0..C-1
            (see the module docstring for the order); None for numeric targets.
        transition_inputs: (N, T, M) transition inputs (padding steps hold zeros), or None when no
            transition input column was asked for.
        transition_input_names: the M transition input column names, or None.
        subject_ids: the subject id (text) of each of the N sequences, or None when no subject
            column was asked for.
        subject_name: the subject column name, or None.
    """

    inputs: np.ndarray
    emissions: np.ndarray
    mask: np.ndarray
    row_index: np.ndarray
    lengths: np.ndarray
    sequence_ids: list
    input_names: list
    target_name: str
    class_labels: list | None = None
    transition_inputs: np.ndarray | None = None
    transition_input_names: list | None = None
    subject_ids: list | None = None
    subject_name: str | None = None


def _is_missing(text: str) -> bool:
    return text.strip().lower() in _MISSING


def _parse_number(text: str, column: str, row: int, allow_missing: bool) -> float:
    """A float from a cell; empty or NaN is missing (allowed for the target only)."""
    stripped = text.strip()
    if _is_missing(stripped):
        if allow_missing:
            return math.nan
        raise ValueError(f"column {column!r} is missing a value at data row {row} (inputs may not be missing)")
    try:
        value = float(stripped)
    except ValueError:
        raise ValueError(f"column {column!r} has a non-numeric value {text!r} at data row {row}") from None
    if not math.isfinite(value):
        raise ValueError(f"column {column!r} has a non-finite value {text!r} at data row {row}")
    return value


def _parse_transition_input(text: str, column: str, row: int) -> float:
    """A transition input value; a missing or bad cell raises ValueError naming ``transition_inputs``, column, row."""
    try:
        return _parse_number(text, column, row, allow_missing=False)
    except ValueError as error:
        message = str(error).replace("(inputs may not be missing)", "(transition inputs may not be missing)")
        raise ValueError(f"transition_inputs: {message}") from None


def _sequence_subjects(rows: list[dict], sequence: str | None, subject: str) -> dict:
    """The subject id of every sequence, ``{sequence label: id}``, checked row by row in file order.

    Raises:
        ValueError: naming ``subject``, the column, the sequence and the data row of the first row
            whose id is missing (empty, ``nan``/``na``/``null``/``None``) or differs from the
            sequence's earlier rows.
    """
    subjects: dict = {}
    first_rows: dict = {}
    for row_number, row in enumerate(rows, start=1):
        label = row[sequence] if sequence is not None else "all"
        where = f"sequence {label!r}" if sequence is not None else "the one sequence (no sequence column)"
        cell = row[subject].strip()
        if _is_missing(cell) or cell == "None":
            raise ValueError(
                f"subject: column {subject!r} is missing a value at data row {row_number} ({where}); every row "
                "needs its subject's id"
            )
        known = subjects.setdefault(label, cell)
        first_rows.setdefault(label, row_number)
        if cell != known:
            raise ValueError(
                f"subject: column {subject!r} holds {cell!r} at data row {row_number} but {known!r} at data row "
                f"{first_rows[label]} in {where}; every row of a sequence must carry the same subject"
            )
    return subjects


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def class_label_order(labels: list[str]) -> list[str]:
    """The label of each code 0..C-1 for distinct text labels: false, true for booleans; else sorted.

    Args:
        labels: the observed labels (stripped; repeats allowed).

    Returns:
        The labels in code order (booleans as lowercase ``["false", "true"]``, whichever appear).
    """
    distinct = sorted(set(labels))
    if all(label.lower() in _BOOLEANS for label in distinct):
        return list(_BOOLEANS)
    return distinct


def _target_values(
    cells: list[str], target: str, class_target: bool, num_classes: int | None
) -> tuple[np.ndarray, list | None]:
    """The target of every data row as a float (NaN = missing), and the text labels of the codes, if any.

    Args:
        cells: the target cell of every data row, in file order.
        target: the column name (for messages).
        class_target: whether the target may hold text class labels.
        num_classes: the most classes text labels may fill (None: no limit).
    """
    observed = [cell.strip() for cell in cells if not _is_missing(cell)]
    if not class_target or all(_is_number(cell) for cell in observed):
        values = [_parse_number(cell, target, row, allow_missing=True) for row, cell in enumerate(cells, start=1)]
        return np.array(values, dtype=float), None
    labels = class_label_order(observed)
    boolean = labels == list(_BOOLEANS)
    codes = {label: code for code, label in enumerate(labels)}

    def code_of(cell: str) -> int:
        return codes[cell.strip().lower() if boolean else cell.strip()]

    if num_classes is not None and len(labels) > num_classes:
        row, cell = next(
            (row, cell) for row, cell in enumerate(cells, 1) if not _is_missing(cell) and code_of(cell) >= num_classes
        )
        raise ValueError(
            f"target: column {target!r} holds {len(labels)} distinct labels {labels} (coded in sorted order) but "
            f"the family has {num_classes} classes: label {cell.strip()!r} at data row {row} has no class"
        )
    return np.array([math.nan if _is_missing(cell) else float(code_of(cell)) for cell in cells]), labels


def tabulate(
    rows: list[dict],
    target: str,
    inputs: list[str],
    sequence: str | None = None,
    columns: list[str] | None = None,
    class_target: bool = False,
    num_classes: int | None = None,
    transition_inputs: list[str] | None = None,
    subject: str | None = None,
) -> TabularData:
    """Turn row dicts of strings (as from ``csv.DictReader``) into padded arrays.

    Args:
        rows: the data rows, in file order.
        target: name of the target column y.
        inputs: names of the input columns x.
        sequence: name of the column identifying sequences; None for a single sequence.
        columns: all column names, for the error message of an unknown column.
        class_target: the target holds class labels, which may be text (coded as in the module
            docstring); False: the target must be numeric.
        num_classes: the most classes text labels may fill (e.g. 2 for binary targets); None: any.
        transition_inputs: names of the transition input columns u (numbers, never missing), or
            None for a stationary model.
        subject: name of the column of subject ids (one per sequence), or None.

    Returns:
        A :class:`TabularData`.

    Raises:
        ValueError: for an empty table, an unknown column (naming its role: ``target``, ``inputs``,
            ``sequence``, ``transition_inputs`` or ``subject``), an empty or repeated
            ``transition_inputs``, a non-numeric or missing input or transition input value
            (naming the column), a non-numeric target (or, with class labels, more text labels
            than ``num_classes``), a sequence with fewer than 2 rows, or a missing subject id or a
            sequence with two (naming ``subject``, the column, the sequence and the data row).
    """
    if not rows:
        raise ValueError("the table has no data rows")
    columns = list(columns if columns is not None else rows[0].keys())
    if not inputs:
        raise ValueError("inputs: give at least one input column")
    if transition_inputs is not None:
        transition_inputs = list(transition_inputs)
        if not transition_inputs:
            raise ValueError("transition_inputs: give at least one column (or None for stationary transitions)")
        repeated = sorted({name for name in transition_inputs if transition_inputs.count(name) > 1})
        if repeated:
            raise ValueError(f"transition_inputs: the columns {repeated} are given more than once")
    roles = [
        ("target", target),
        *(("inputs", name) for name in inputs),
        ("sequence", sequence),
        *(("transition_inputs", name) for name in transition_inputs or ()),
        ("subject", subject),
    ]
    for role, name in roles:
        if name is not None and name not in columns:
            raise ValueError(f"{role}: unknown column {name!r}; the columns are {columns}")
    order: dict = {}
    for row_number, row in enumerate(rows):
        label = row[sequence] if sequence is not None else "all"
        order.setdefault(label, []).append(row_number)
    for label, members in order.items():
        if len(members) < 2:
            raise ValueError(f"sequence {label!r} has {len(members)} row; every sequence needs at least 2 steps")
    subjects = None if subject is None else _sequence_subjects(rows, sequence, subject)
    targets, labels = _target_values([row[target] for row in rows], target, class_target, num_classes)
    num_sequences, max_length, input_dim = len(order), max(len(m) for m in order.values()), len(inputs)
    input_array = np.zeros((num_sequences, max_length, input_dim))
    emission_array = np.zeros((num_sequences, max_length))
    mask = np.zeros((num_sequences, max_length), bool)
    row_index = np.full((num_sequences, max_length), -1, dtype=np.int64)
    # Padding steps of the transition inputs hold zeros: the steps after a sequence's end are masked out.
    transition_array = (
        None if transition_inputs is None else np.zeros((num_sequences, max_length, len(transition_inputs)))
    )
    for n, members in enumerate(order.values()):
        for t, row_number in enumerate(members):
            row = rows[row_number]
            for d, name in enumerate(inputs):
                input_array[n, t, d] = _parse_number(row[name], name, row_number + 1, allow_missing=False)
            for m, name in enumerate(transition_inputs or ()):
                transition_array[n, t, m] = _parse_transition_input(row[name], name, row_number + 1)
            value = targets[row_number]
            mask[n, t] = not math.isnan(value)
            emission_array[n, t] = 0.0 if math.isnan(value) else value
            row_index[n, t] = row_number
    if not mask.any():
        raise ValueError(f"target: column {target!r} has no observed values")
    return TabularData(
        inputs=input_array,
        emissions=emission_array,
        mask=mask,
        row_index=row_index,
        lengths=np.array([len(m) for m in order.values()]),
        sequence_ids=list(order),
        input_names=list(inputs),
        target_name=target,
        class_labels=labels,
        transition_inputs=transition_array,
        transition_input_names=None if transition_inputs is None else list(transition_inputs),
        subject_ids=None if subjects is None else [subjects[label] for label in order],
        subject_name=subject,
    )


def read_long_csv(
    path,
    target: str,
    inputs: list[str],
    sequence: str | None = None,
    class_target: bool = False,
    num_classes: int | None = None,
    transition_inputs: list[str] | None = None,
    subject: str | None = None,
) -> TabularData:
    """Read a long-format CSV (header row, one row per time step) into padded, masked arrays.

    Args:
        path: the CSV file.
        target: the target column.
        inputs: the input columns.
        sequence: the sequence column, or None if the file is one sequence.
        class_target: the target holds class labels, possibly text; see :func:`tabulate`.
        num_classes: the most classes text labels may fill; see :func:`tabulate`.
        transition_inputs: the transition input columns, or None; see :func:`tabulate`.
        subject: the column of subject ids (one id per sequence), or None; see :func:`tabulate`.

    Returns:
        A :class:`TabularData`; "data row" numbers in errors count from 1 after the header.

    Raises:
        ValueError: naming ``DATA`` for a missing, empty or unreadable file (not UTF-8 text, not
            CSV) or a header that names a column asked for twice, else as :func:`tabulate`.
    """
    name = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"DATA: no such file {name!r}")
    if not os.path.isfile(path):
        raise ValueError(f"DATA: {name!r} is not a file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            rows = list(reader)
    except UnicodeDecodeError as error:
        raise ValueError(f"DATA: the file {name!r} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    except csv.Error as error:
        raise ValueError(f"DATA: the file {name!r} is not a readable CSV ({error})") from None
    if not any(column.strip() for column in columns):
        raise ValueError(f"DATA: the file {name!r} is empty (expected a header row and data rows)")
    if not rows:
        raise ValueError(f"DATA: the file {name!r} has a header but no data rows")
    # csv.DictReader keeps the last of two equal names: a column asked for must be unambiguous.
    asked = {target, *inputs, sequence, *(transition_inputs or ()), subject}
    repeated = sorted({column for column in columns if column in asked and columns.count(column) > 1})
    if repeated:
        raise ValueError(f"DATA: the header of {name!r} names the columns {repeated} more than once")
    for number, row in enumerate(rows, start=1):
        if None in row or any(value is None for value in row.values()):
            raise ValueError(f"data row {number} has a different number of fields than the header")
    return tabulate(
        rows,
        target,
        inputs,
        sequence,
        columns,
        class_target=class_target,
        num_classes=num_classes,
        transition_inputs=transition_inputs,
        subject=subject,
    )


def check_supported_states(table: TabularData, num_states: int) -> None:
    """Raise ValueError (naming ``--states``) if K exceeds the steps of the longest sequence.

    Args:
        table: the data.
        num_states: K.
    """
    longest = int(table.lengths.max())
    if num_states > longest:
        raise ValueError(f"--states {num_states} is larger than the longest sequence ({longest} steps) can support")
