"""Long-format tables (one row per time step) to padded, masked arrays, and back.

A CSV holds one row per time step; a sequence column (optional) groups rows into sequences, whose
rows are in time order. Sequences of different lengths are padded at the end and masked, and every
array position remembers its source row so that results are written per row without padding.
"""

import csv
import math
import os
from typing import NamedTuple

import numpy as np

__all__ = ["TabularData", "read_long_csv", "tabulate"]


class TabularData(NamedTuple):
    """A long table as model arrays.

    Attributes:
        inputs: (N, T, D) covariates; padding steps hold zeros.
        emissions: (N, T) targets; missing and padding steps hold zeros.
        mask: (N, T) True where the target was observed.
        row_index: (N, T) the 0-based data row of each step, -1 for padding.
        lengths: (N,) number of rows of each sequence.
        sequence_ids: the N sequence labels, in order of first appearance.
        input_names: the D input column names.
        target_name: the target column name.
    """

    inputs: np.ndarray
    emissions: np.ndarray
    mask: np.ndarray
    row_index: np.ndarray
    lengths: np.ndarray
    sequence_ids: list
    input_names: list
    target_name: str


def _parse_number(text: str, column: str, row: int, allow_missing: bool) -> float:
    """A float from a cell; empty or NaN is missing (allowed for the target only)."""
    stripped = text.strip()
    if stripped == "" or stripped.lower() in ("nan", "na", "null"):
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


def tabulate(
    rows: list[dict], target: str, inputs: list[str], sequence: str | None = None, columns: list[str] | None = None
) -> TabularData:
    """Turn row dicts of strings (as from ``csv.DictReader``) into padded arrays.

    Args:
        rows: the data rows, in file order.
        target: name of the target column y.
        inputs: names of the input columns x.
        sequence: name of the column identifying sequences; None for a single sequence.
        columns: all column names, for the error message of an unknown column.

    Returns:
        A :class:`TabularData`.

    Raises:
        ValueError: for an unknown column, a non-numeric or missing input value, a non-numeric
            target, an empty table or a sequence with fewer than 2 rows.
    """
    columns = list(columns if columns is not None else (rows[0].keys() if rows else []))
    if not inputs:
        raise ValueError("inputs: give at least one input column")
    for role, name in [("target", target), *(("inputs", name) for name in inputs), ("sequence", sequence)]:
        if name is not None and name not in columns:
            raise ValueError(f"{role}: unknown column {name!r}; the columns are {columns}")
    if not rows:
        raise ValueError("the table has no data rows")
    order: dict = {}
    for row_number, row in enumerate(rows):
        label = row[sequence] if sequence is not None else "all"
        order.setdefault(label, []).append(row_number)
    for label, members in order.items():
        if len(members) < 2:
            raise ValueError(f"sequence {label!r} has {len(members)} row; every sequence needs at least 2 steps")
    num_sequences, max_length, input_dim = len(order), max(len(m) for m in order.values()), len(inputs)
    input_array = np.zeros((num_sequences, max_length, input_dim))
    emission_array = np.zeros((num_sequences, max_length))
    mask = np.zeros((num_sequences, max_length), bool)
    row_index = np.full((num_sequences, max_length), -1, dtype=np.int64)
    for n, members in enumerate(order.values()):
        for t, row_number in enumerate(members):
            row = rows[row_number]
            for d, name in enumerate(inputs):
                input_array[n, t, d] = _parse_number(row[name], name, row_number + 1, allow_missing=False)
            value = _parse_number(row[target], target, row_number + 1, allow_missing=True)
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
    )


def read_long_csv(path, target: str, inputs: list[str], sequence: str | None = None) -> TabularData:
    """Read a long-format CSV (header row, one row per time step) into padded, masked arrays.

    Args:
        path: the CSV file.
        target: the target column.
        inputs: the input columns.
        sequence: the sequence column, or None if the file is one sequence.

    Returns:
        A :class:`TabularData`; "data row" numbers in errors count from 1 after the header.
    """
    if not os.path.exists(path):
        raise ValueError(f"DATA: no such file {os.fspath(path)!r}")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        rows = list(reader)
    for number, row in enumerate(rows, start=1):
        if None in row or any(value is None for value in row.values()):
            raise ValueError(f"data row {number} has a different number of fields than the header")
    return tabulate(rows, target, inputs, sequence, columns)
