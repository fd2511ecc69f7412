"""The outputs of :func:`~bayes_glmhmm.selection.select_num_states`: CSV, Markdown, JSON and the figure.

* :func:`selection_to_csv`: the whole table, one row per K, every column;
* :func:`selection_to_markdown`: a readable table (elpd, its difference from the best K and bits
  per trial, each ± one standard error, for Bayes and for EM; accuracy for choices; stacking
  weights; the Pareto k summary of PSIS-LOO; the worst R-hat), then the rule, the chosen K of
  each score, the method and the baseline in words;
* :func:`selection_to_dict`: everything above as JSON-safe builtins (NaN and infinities as None);
* :func:`write_selection`: ``selection.csv``, ``selection.md``, ``selection.png`` and, last,
  ``selection.json`` into a folder, each written atomically (complete or absent).

Every function takes a :class:`~bayes_glmhmm.selection.Selection` or the dict of
:func:`selection_to_dict` (e.g. ``selection.json`` read back), so a saved selection can be shown
again (the report does) without refitting anything.
"""

import math
import os
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import pandas as pd

from bayes_glmhmm._io import (
    csv_text,
    markdown_table,
    remove_if_exists,
    save_figures_atomic,
    write_json_atomic,
    write_text_atomic,
)

__all__ = [
    "SELECTION_FILES",
    "SummaryTable",
    "method_label",
    "selection_conclusion",
    "selection_lead",
    "selection_table",
    "selection_to_csv",
    "selection_to_dict",
    "selection_to_markdown",
    "summary_table",
    "write_selection",
]

#: The files :func:`write_selection` writes, in the order it writes them (``selection.json`` last).
SELECTION_FILES = ("selection.csv", "selection.md", "selection.png", "selection.json")

#: The R-hat above which the Markdown table flags a K's fits (as the report's convergence check).
_MAX_RHAT = 1.01

#: Table columns holding counts, written as integers.
_COUNT_COLUMNS = ("num_states", "num_high_pareto_k", "num_refits", "refit_fits", "num_unreliable", "divergences")


class _View(NamedTuple):
    """What the outputs need of a selection, from a :class:`Selection` or from its dict alike."""

    table: pd.DataFrame
    best: int
    best_em: int
    rule: str
    rule_text: str
    method: str
    states: tuple
    baseline_name: str
    settings: dict
    wall_seconds: dict
    folds: list


def _view(selection) -> _View:
    """The :class:`_View` of a :class:`~bayes_glmhmm.selection.Selection` or of its :func:`selection_to_dict`."""
    if isinstance(selection, Mapping):
        get = selection.get
        return _View(
            selection_table(selection),
            int(get("best")),
            int(get("best_em")),
            str(get("rule")),
            str(get("rule_text", "")),
            str(get("method")),
            tuple(int(k) for k in get("states")),
            str(get("baseline_name", "")),
            dict(get("settings") or {}),
            dict(get("wall_seconds") or {}),
            list(get("folds") or []),
        )
    return _View(
        selection_table(selection),
        int(selection.best),
        int(selection.best_em),
        str(selection.rule),
        str(selection.rule_text),
        str(selection.method),
        tuple(int(k) for k in selection.states),
        str(selection.baseline_name),
        dict(selection.settings),
        dict(selection.wall_seconds),
        np.asarray(selection.folds).tolist(),
    )


def selection_table(selection) -> pd.DataFrame:
    """The table of a selection, one row per K indexed by ``num_states``.

    Args:
        selection: a :class:`~bayes_glmhmm.selection.Selection`, or the dict of
            :func:`selection_to_dict` (its None values read back as NaN).

    Returns:
        A DataFrame with every column of :attr:`Selection.table`.
    """
    if not isinstance(selection, Mapping):
        return selection.table
    table = pd.DataFrame(list(selection["table"]))
    numeric = {column: float for column in table.columns if table[column].dtype == object}
    table = table.astype(numeric)
    return table.set_index("num_states", drop=False)


def method_label(method: str, num_folds: int | None = None) -> str:
    """The Bayesian score's estimate in words: ``"PSIS-LOO over sequences"`` or ``"5-fold CV over sequences"``."""
    if method == "loo":
        return "PSIS-LOO over sequences"
    folds = "k" if num_folds is None else str(int(num_folds))
    return f"{folds}-fold CV over sequences"


def _em_label(view: _View) -> str:
    """EM's score in words, with its folds, restarts and acceleration (absent from files written before it)."""
    folds = view.settings.get("num_folds")
    restarts = view.settings.get("em_restarts")
    text = f"maximum-likelihood EM, plug-in, {method_label('kfold', folds)}"
    text += f", {restarts} restarts per fold" if restarts is not None else ""
    return text + (" (SQUAREM-accelerated)" if view.settings.get("em_accelerate") else "")


# ---------------------------------------------------------------------------------------------
# CSV


def _builtin(value):
    """A table cell as a Python builtin: NumPy scalars unwrapped, NaN and infinities as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _rows(table: pd.DataFrame) -> list[dict]:
    """The table's rows as dicts of builtins (counts as int, NaN as None), in column order."""
    rows = []
    for record in table.to_dict(orient="records"):
        row = {}
        for column in table.columns:
            value = _builtin(record[column])
            if column in _COUNT_COLUMNS and value is not None:
                value = int(value)
            row[column] = value
        rows.append(row)
    return rows


def selection_to_csv(selection, path: str | os.PathLike | None = None) -> str:
    """The selection table as CSV, one row per K and every column, written atomically to ``path`` if given.

    Columns as :attr:`Selection.table` (``num_states`` first); floats to 6 significant digits; an
    empty cell where a value is NaN (e.g. ``accuracy`` of a Gaussian target).

    Args:
        selection: a :class:`~bayes_glmhmm.selection.Selection` or its :func:`selection_to_dict`.
        path: where to write, or None.

    Returns:
        The CSV text.
    """
    table = selection_table(selection)
    rows = _rows(table)
    text = csv_text(list(table.columns), [[row[column] for column in table.columns] for row in rows])
    if path is not None:
        write_text_atomic(path, text)
    return text


# ---------------------------------------------------------------------------------------------
# Markdown


def _known(value) -> bool:
    return value is not None and not (isinstance(value, float) and not math.isfinite(value))


def _plus_minus(value, se, digits: int) -> str:
    """``value ± se`` to ``digits`` decimals; ``–`` for a missing value."""
    if not _known(value):
        return "–"
    if not _known(se):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ± {se:.{digits}f}"


def _number(value, digits: int) -> str:
    return f"{value:.{digits}f}" if _known(value) else "–"


def _percent(value) -> str:
    return f"{100 * value:.1f}%" if _known(value) else "–"


def _pareto_cell(row: pd.Series) -> tuple[str, bool]:
    """How many sequences had Pareto k > 0.7 and how many were refitted; flagged if some stay unreliable."""
    high, refits, unreliable = (row.get(name) for name in ("num_high_pareto_k", "num_refits", "num_unreliable"))
    if not _known(high):
        return "–", False
    fits = row.get("refit_fits")
    grouped = _known(fits) and _known(refits) and 0 < fits < refits
    text = (
        f"{int(high)} ({int(refits)} refitted in {int(fits)} fits)"
        if grouped
        else f"{int(high)} ({int(refits)} refitted)"
    )
    if _known(unreliable) and unreliable > 0:
        return f"{text}, {int(unreliable)} unreliable", True
    return text, False


def _rhat_cell(value) -> tuple[str, bool]:
    """The worst R-hat of a K's fits; flagged above 1.01."""
    if not _known(value):
        return "–", False
    return f"{value:.3f}", bool(value > _MAX_RHAT)


def _chosen_cell(view: _View, k: int) -> str:
    return ", ".join(name for name, best in (("Bayes", view.best), ("EM", view.best_em)) if best == k)


def _has_accuracy(table: pd.DataFrame) -> bool:
    return "accuracy" in table and bool(np.isfinite(table["accuracy"].to_numpy(dtype=float)).any())


class SummaryTable(NamedTuple):
    """The readable selection table: header, rows of text cells, and which cells are flagged.

    Flagged cells (a max R-hat above 1.01, sequences left unreliable by PSIS-LOO) are drawn marked
    ``(!)`` in Markdown and highlighted in the report.
    """

    header: list[str]
    rows: list[list[str]]
    flags: list[list[bool]]


def _has_monte_carlo_error(table: pd.DataFrame) -> bool:
    """Whether the table has the Monte Carlo SE of the elpd (selections written before it lack it)."""
    return "elpd_mc_se" in table


def _summary_header(view: _View) -> list[str]:
    header = ["K", "chosen by", "Bayes elpd ± SE", "Bayes Δelpd ± SE"]
    header += ["Bayes Δelpd MC SE"] if _has_monte_carlo_error(view.table) else []
    header += ["Bayes bits/trial ± SE"]
    header += ["EM log-lik. ± SE", "EM Δ ± SE", "EM bits/trial ± SE"]
    if _has_accuracy(view.table):
        header += ["Bayes accuracy", "EM accuracy"]
    header += ["stacking weight"]
    if view.method == "loo":
        header += ["max Pareto k", "Pareto k > 0.7"]
    return header + ["max R-hat"]


def _summary_row(view: _View, k: int, row: pd.Series) -> tuple[list[str], list[bool]]:
    cells = [str(k), _chosen_cell(view, k)]
    cells += [_plus_minus(row["elpd"], row["elpd_se"], 1), _plus_minus(row["elpd_diff"], row["elpd_diff_se"], 1)]
    if _has_monte_carlo_error(view.table):
        cells += [_number(row["elpd_diff_mc_se"], 2)]
    cells += [_plus_minus(row["bits_per_trial"], row["bits_per_trial_se"], 4)]
    cells += [_plus_minus(row["em_loglik"], row["em_loglik_se"], 1), _plus_minus(row["em_diff"], row["em_diff_se"], 1)]
    cells += [_plus_minus(row["em_bits_per_trial"], row["em_bits_per_trial_se"], 4)]
    if _has_accuracy(view.table):
        cells += [_percent(row["accuracy"]), _percent(row["em_accuracy"])]
    cells += [_number(row["stacking_weight"], 3)]
    flags = [False] * len(cells)
    flagged = []
    if view.method == "loo":
        cells.append(_number(row.get("max_pareto_k"), 2))
        flags.append(False)
        flagged.append(_pareto_cell(row))
    flagged.append(_rhat_cell(row.get("max_rhat")))
    return cells + [text for text, _ in flagged], flags + [flag for _, flag in flagged]


def summary_table(selection) -> SummaryTable:
    """The readable table of a selection: one row per K, text cells, flags.

    Columns: K; which score chose it; the Bayesian elpd, its difference from the best K (Δ, how
    far below) and the bits per trial over the baseline, each ± one standard error, and the Monte
    Carlo SE of Δ from the finite posterior draws (when the selection has it); the same for
    EM; the accuracy of both (choices only); the stacking weight; for PSIS-LOO the largest Pareto k
    and how many sequences exceeded 0.7 (and were refitted); the worst R-hat over the K's fits.

    Args:
        selection: a :class:`~bayes_glmhmm.selection.Selection` or its :func:`selection_to_dict`.
    """
    view = _view(selection)
    rows, flags = [], []
    for k, row in view.table.iterrows():
        cells, cell_flags = _summary_row(view, int(k), row)
        rows.append(cells)
        flags.append(cell_flags)
    return SummaryTable(_summary_header(view), rows, flags)


def selection_lead(selection) -> str:
    """The paragraph that says what the table's scores and columns are (plain text)."""
    view = _view(selection)
    settings = view.settings
    data = ""
    if "num_trials" in settings and "num_sequences" in settings:
        data = f" ({settings['num_trials']} trials in {settings['num_sequences']} sequences)"
    return (
        f"Held-out prediction of whole sequences{data} for K = {', '.join(map(str, view.states))}. "
        f"Bayes: the posterior predictive density, {method_label(view.method, settings.get('num_folds'))}. "
        f"EM: the field's protocol, {_em_label(view)}. elpd: the log predictive density of the held-out "
        "sequences in nats (EM: their plug-in log-likelihood), higher is better; Δ: how far below the best K's "
        "it lies, with the paired standard error; bits/trial: the gain over the baseline in bits per held-out "
        f"trial, the baseline being {view.baseline_name or 'the family baseline'}. Every ± is one standard error"
        + (
            " (over sequences); MC SE: the part of Δ's error that comes from the finite posterior draws."
            if _has_monte_carlo_error(view.table)
            else "."
        )
    )


def selection_conclusion(selection, markdown: bool = False) -> list[str]:
    """The sentences below the table: the rule, the K each score chose, the method, the baseline, and warnings.

    Args:
        selection: a :class:`~bayes_glmhmm.selection.Selection` or its :func:`selection_to_dict`.
        markdown: emphasize the chosen K in Markdown (``**K = 2**``); plain text otherwise.
    """
    view = _view(selection)
    strong = (lambda text: f"**{text}**") if markdown else (lambda text: text)
    lines = [
        f"Rule {view.rule}: {view.rule_text}. Chosen: {strong(f'K = {view.best}')} by the Bayesian score "
        f"(posterior predictive, {method_label(view.method, view.settings.get('num_folds'))}) and "
        f"{strong(f'K = {view.best_em}')} by EM ({_em_label(view)}). Bits per trial are measured against the "
        f"baseline: {view.baseline_name or 'the family baseline'}."
    ]
    table = view.table
    if "num_unreliable" in table:
        unreliable = {int(k): int(n) for k, n in table["num_unreliable"].items() if _known(n) and n > 0}
        if unreliable:
            lines.append(
                f"(!) PSIS-LOO is unreliable (Pareto k > 0.7, not refitted) for some sequences, per K: {unreliable}; "
                "raise max_refits or use the k-fold method."
            )
    rhat = table["max_rhat"].to_numpy(dtype=float) if "max_rhat" in table else np.array([])
    high = [int(k) for k, value in zip(table.index, rhat, strict=True) if not value <= _MAX_RHAT]
    if high:
        lines.append(
            f"(!) Max R-hat above {_MAX_RHAT} (or unknown) for K = {high}: those fits have not converged, so "
            "their scores may be off; run longer chains."
        )
    return lines


def selection_to_markdown(selection, path: str | os.PathLike | None = None, *, figure: str | None = None) -> str:
    """The selection as a readable Markdown table with the rule and the chosen K, written atomically if ``path``.

    One row per K: the Bayesian elpd, its difference from the best K and the bits per trial, each
    ± one standard error, then EM's; the predictive accuracy of both (choices only); the stacking
    weight; for PSIS-LOO the largest Pareto k and how many sequences exceeded 0.7 (and were
    refitted); the worst R-hat over the K's fits, marked ``(!)`` above 1.01. Below the table, a
    sentence states the rule and the K it chose for Bayes and for EM, the method and the baseline.

    Args:
        selection: a :class:`~bayes_glmhmm.selection.Selection` or its :func:`selection_to_dict`.
        path: where to write, or None.
        figure: optional path of the figure (e.g. ``selection.png``), linked at the end.

    Returns:
        The Markdown text.
    """
    table = summary_table(selection)
    body = [
        [f"**{cell} (!)**" if flag else cell for cell, flag in zip(row, flags, strict=True)]
        for row, flags in zip(table.rows, table.flags, strict=True)
    ]
    lines = ["# Choosing the number of states", "", selection_lead(selection), ""]
    lines += markdown_table(table.header, body)
    for sentence in selection_conclusion(selection, markdown=True):
        lines += ["", sentence]
    if figure is not None:
        lines += ["", f"![Held-out bits per trial against K]({figure})"]
    text = "\n".join(lines) + "\n"
    if path is not None:
        write_text_atomic(path, text)
    return text


# ---------------------------------------------------------------------------------------------
# JSON


def _json_safe(value):
    """``value`` as JSON builtins: mappings with string keys, lists, finite numbers, None for NaN."""
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if hasattr(value, "_asdict"):  # a NamedTuple such as Priors
        return _json_safe(value._asdict())
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    if hasattr(value, "__array__"):  # NumPy and JAX arrays
        return _json_safe(np.asarray(value).tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return getattr(value, "name", None) or str(value)


def selection_to_dict(selection) -> dict:
    """The selection as a JSON-safe dict (NaN and infinities as None), e.g. for ``selection.json``.

    Keys: ``method``, ``method_label``, ``rule``, ``rule_text``, ``best``, ``best_em``,
    ``states``, ``baseline_name``, ``table`` (one dict per K, every column), ``settings``,
    ``wall_seconds`` (keys as strings), ``folds`` (the fold of each sequence). The per-sequence
    arrays and the posteriors are left out. Every function of this module, and
    :func:`bayes_glmhmm.plots.plot_selection`, accepts the dict in place of the selection.

    Args:
        selection: a :class:`~bayes_glmhmm.selection.Selection` (or such a dict).

    Returns:
        A dict of builtins that ``json.dumps`` writes as strict JSON.
    """
    view = _view(selection)
    return _json_safe(
        {
            "method": view.method,
            "method_label": method_label(view.method, view.settings.get("num_folds")),
            "rule": view.rule,
            "rule_text": view.rule_text,
            "best": view.best,
            "best_em": view.best_em,
            "states": list(view.states),
            "baseline_name": view.baseline_name,
            "table": _rows(view.table),
            "settings": view.settings,
            "wall_seconds": view.wall_seconds,
            "folds": view.folds,
        }
    )


# ---------------------------------------------------------------------------------------------
# The folder


def _save_figure(selection, out_dir: str) -> None:
    """Draw :func:`~bayes_glmhmm.plots.plot_selection` and save it as ``selection.png`` atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from bayes_glmhmm.plots import plot_selection

    figure = plot_selection(selection)
    try:
        save_figures_atomic({"selection.png": figure}, out_dir)
    finally:
        figure.clear()


def write_selection(selection, out_dir: str | os.PathLike) -> list[str]:
    """Write ``selection.csv``, ``selection.md``, ``selection.png`` and ``selection.json`` into ``out_dir``.

    Each file is written to a temporary name and renamed, so it is complete or absent. A previous
    ``selection.json`` is removed first and the new one written last, so the folder holds a
    ``selection.json`` only when the other three files are of the same selection.

    Args:
        selection: a :class:`~bayes_glmhmm.selection.Selection` or its :func:`selection_to_dict`.
        out_dir: the folder (created if needed).

    Returns:
        The paths written, in :data:`SELECTION_FILES` order.
    """
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    remove_if_exists(os.path.join(out_dir, "selection.json"))
    paths = [os.path.join(out_dir, name) for name in SELECTION_FILES]
    selection_to_csv(selection, paths[0])
    selection_to_markdown(selection, paths[1], figure="selection.png")
    _save_figure(selection, out_dir)
    write_json_atomic(paths[3], selection_to_dict(selection))
    return paths
