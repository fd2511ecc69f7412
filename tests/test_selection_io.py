"""Tests of the outputs of select_num_states: CSV, Markdown and JSON against the Selection's table, the folder.

One real selection (a quick fit of simulated choices, module-scoped) and a hand-made one (NaN and
infinite values, flags, k-fold) that needs no fit.
"""

import csv
import io
import json
import math
import os

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _selections import synthetic_selection  # noqa: E402

from bayes_glmhmm import plots  # noqa: E402
from bayes_glmhmm.selection_io import (  # noqa: E402
    SELECTION_FILES,
    selection_lead,
    selection_table,
    selection_to_csv,
    selection_to_dict,
    selection_to_markdown,
    summary_table,
    write_selection,
)


@pytest.fixture(scope="module")
def selection():
    from _selections import real_selection

    return real_selection()


def _table_value(value):
    """A table value as the outputs hold it: NaN and infinities as None."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _markdown_row(markdown: str, k: int) -> list[str]:
    """The cells of the table row of K = k."""
    rows = [line for line in markdown.splitlines() if line.startswith(f"| {k} |")]
    assert len(rows) == 1, rows
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def test_csv_has_one_row_per_k_and_every_table_value(selection, tmp_path):
    path = tmp_path / "selection.csv"
    text = selection_to_csv(selection, path)
    assert path.read_text() == text
    rows = list(csv.DictReader(io.StringIO(text)))
    table = selection.table
    assert list(rows[0]) == list(table.columns)
    assert [int(row["num_states"]) for row in rows] == list(selection.states)
    for row, (_, expected) in zip(rows, table.iterrows(), strict=True):
        for column in table.columns:
            value = _table_value(expected[column])
            if value is None:
                assert row[column] == "", column
            else:
                assert float(row[column]) == pytest.approx(value, rel=1e-5), column
    assert {"p_loo", "max_pareto_k", "num_refits", "accuracy", "em_accuracy", "max_rhat"} <= set(rows[0])


def test_csv_writes_nan_and_infinity_as_empty_cells():
    rows = list(csv.DictReader(io.StringIO(selection_to_csv(synthetic_selection()))))
    assert [row["accuracy"] for row in rows] == ["", "", ""]  # a Gaussian target has no accuracy
    assert [row["p_loo"] for row in rows] == ["4.5", "9.25", ""]
    assert [row["num_unreliable"] for row in rows] == ["0", "0", "2"]


def test_markdown_rows_hold_the_table_values(selection):
    markdown = selection_to_markdown(selection)
    table = selection.table
    for k, row in table.iterrows():
        chosen = ", ".join(name for name, best in (("Bayes", selection.best), ("EM", selection.best_em)) if best == k)
        assert _markdown_row(markdown, k) == [
            str(k),
            chosen,
            f"{row['elpd']:.1f} ± {row['elpd_se']:.1f}",
            f"{row['elpd_diff']:.1f} ± {row['elpd_diff_se']:.1f}",
            f"{row['elpd_diff_mc_se']:.2f}",
            f"{row['bits_per_trial']:.4f} ± {row['bits_per_trial_se']:.4f}",
            f"{row['em_loglik']:.1f} ± {row['em_loglik_se']:.1f}",
            f"{row['em_diff']:.1f} ± {row['em_diff_se']:.1f}",
            f"{row['em_bits_per_trial']:.4f} ± {row['em_bits_per_trial_se']:.4f}",
            f"{100 * row['accuracy']:.1f}%",
            f"{100 * row['em_accuracy']:.1f}%",
            f"{row['stacking_weight']:.3f}",
            f"{row['max_pareto_k']:.2f}",
            f"**{int(row['num_high_pareto_k'])} ({int(row['num_refits'])} refitted), {int(row['num_unreliable'])} "
            "unreliable (!)**"
            if row["num_unreliable"]
            else f"{int(row['num_high_pareto_k'])} ({int(row['num_refits'])} refitted)",
            f"**{row['max_rhat']:.3f} (!)**" if row["max_rhat"] > 1.01 else f"{row['max_rhat']:.3f}",
        ]
    assert (
        f"Chosen: **K = {selection.best}** by the Bayesian score (posterior predictive, PSIS-LOO over sequences) "
        f"and **K = {selection.best_em}** by EM (maximum-likelihood EM, plug-in, 2-fold CV over sequences"
    ) in markdown
    assert f"Rule one_se: {selection.rule_text}." in markdown
    assert f"baseline: {selection.baseline_name}." in markdown


def test_markdown_of_kfold_leaves_out_pareto_k_and_flags_high_rhat():
    selection = synthetic_selection("kfold")
    markdown = selection_to_markdown(selection)
    header = [line for line in markdown.splitlines() if line.startswith("| K |")][0]
    assert "Pareto" not in header and "accuracy" not in header  # k-fold; a Gaussian target
    assert _markdown_row(markdown, 2)[1] == "Bayes" and _markdown_row(markdown, 3)[1] == "EM"
    assert _markdown_row(markdown, 1)[1] == ""
    assert _markdown_row(markdown, 3)[-1] == "**1.200 (!)**" and _markdown_row(markdown, 2)[-1] == "1.004"
    assert "Max R-hat above 1.01 (or unknown) for K = [3]" in markdown
    assert "by the Bayesian score (posterior predictive, 3-fold CV over sequences)" in markdown
    assert "3-fold CV over sequences, 4 restarts per fold" in markdown


def test_markdown_flags_sequences_psis_left_unreliable():
    markdown = selection_to_markdown(synthetic_selection("loo"))
    assert _markdown_row(markdown, 3)[-2] == "**3 (1 refitted), 2 unreliable (!)**"
    assert _markdown_row(markdown, 2)[-2] == "0 (0 refitted)"
    assert "PSIS-LOO is unreliable (Pareto k > 0.7, not refitted) for some sequences, per K: {3: 2}" in markdown
    table = summary_table(synthetic_selection("loo"))
    assert table.flags[2][-2:] == [True, True] and not any(table.flags[1])


def test_the_monte_carlo_error_of_the_difference_is_a_column_when_the_selection_has_it():
    plain = summary_table(synthetic_selection("kfold"))
    assert "Bayes Δelpd MC SE" not in plain.header  # a selection written before the column: as it was
    selection = synthetic_selection("kfold")
    selection.table["elpd_mc_se"] = [0.5, 0.25, 0.125]
    selection.table["elpd_diff_mc_se"] = [0.75, 0.375, 0.0]
    table = summary_table(selection)
    column = table.header.index("Bayes Δelpd MC SE")
    assert column == table.header.index("Bayes Δelpd ± SE") + 1
    assert [row[column] for row in table.rows] == ["0.75", "0.38", "0.00"]
    assert all(len(row) == len(table.header) == len(flags) for row, flags in zip(table.rows, table.flags, strict=True))
    assert "MC SE: the part of Δ's error" in selection_lead(selection)
    assert "MC SE" not in selection_lead(synthetic_selection("kfold"))


def test_dict_is_strict_json_with_none_for_nan_and_infinity():
    selection = synthetic_selection()
    data = selection_to_dict(selection)
    text = json.dumps(data, allow_nan=False)  # raises on a NaN or infinity left in
    assert json.loads(text) == data
    assert [row["accuracy"] for row in data["table"]] == [None, None, None]
    assert [row["p_loo"] for row in data["table"]] == [4.5, 9.25, None]
    assert data["settings"]["fit_nuts"] == {"num_chains": 2, "init_jitter": 0.5, "target": [1.0, None]}
    assert data["wall_seconds"] == {"1": 11.0, "2": 22.0, "3": 33.0, "total": 66.0}
    assert (data["best"], data["best_em"], data["states"], data["folds"]) == (2, 3, [1, 2, 3], [0, 1, 2, 0, 1, 2])
    assert (data["method"], data["rule"], data["rule_text"]) == ("loo", "one_se", selection.rule_text)
    assert data["baseline_name"] == selection.baseline_name


def test_dict_rows_are_the_table_rows(selection):
    data = selection_to_dict(selection)
    json.dumps(data, allow_nan=False)
    assert len(data["table"]) == len(selection.states)
    for row, (_, expected) in zip(data["table"], selection.table.iterrows(), strict=True):
        assert list(row) == list(selection.table.columns)
        for column, value in row.items():
            assert value == _table_value(expected[column]), column
        for column in ("num_states", "num_high_pareto_k", "num_refits", "num_unreliable", "divergences"):
            assert type(row[column]) is int, column
    assert data["folds"] == selection.folds.tolist()
    assert data["settings"]["num_folds"] == 2 and data["settings"]["fit_nuts"]["num_chains"] == 2
    assert data["method_label"] == "PSIS-LOO over sequences"


@pytest.mark.parametrize("which", ["real", "synthetic"])
def test_outputs_of_the_json_read_back_are_the_selection_s(selection, which):
    selection = selection if which == "real" else synthetic_selection()
    read_back = json.loads(json.dumps(selection_to_dict(selection)))
    assert selection_to_markdown(read_back) == selection_to_markdown(selection)
    assert selection_to_csv(read_back) == selection_to_csv(selection)
    np.testing.assert_array_equal(selection_table(read_back)["elpd"], selection.table["elpd"])


def test_write_selection_writes_four_complete_files(selection, tmp_path):
    out = tmp_path / "out"
    paths = write_selection(selection, out)
    assert [os.path.basename(path) for path in paths] == list(SELECTION_FILES)
    assert sorted(os.listdir(out)) == sorted(SELECTION_FILES)  # no temporary file left
    assert (out / "selection.csv").read_text() == selection_to_csv(selection)
    assert json.loads((out / "selection.json").read_text()) == selection_to_dict(selection)
    markdown = (out / "selection.md").read_text()
    assert markdown.startswith(selection_to_markdown(selection).rstrip("\n"))
    assert markdown.rstrip().endswith("(selection.png)")
    assert (out / "selection.png").read_bytes().startswith(b"\x89PNG")


def test_write_selection_removes_a_stale_json_and_writes_none_when_a_file_fails(tmp_path, monkeypatch):
    (tmp_path / "selection.json").write_text('{"best": 1}')

    def _broken(*args, **kwargs):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(plots, "plot_selection", _broken)
    with pytest.raises(RuntimeError, match="figure failed"):
        write_selection(synthetic_selection(), tmp_path)
    # The stale selection.json (of another run) is gone, and no half-written file is left.
    assert sorted(os.listdir(tmp_path)) == ["selection.csv", "selection.md"]
