import csv

import jax
import numpy as np
import pytest

from bayes_glmhmm import article_data, fit_nuts
from bayes_glmhmm.tabular import check_supported_states, read_long_csv


def _write_csv(path, rows, header=("session", "x", "y", "extra")):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def three_sessions(tmp_path):
    rows = [
        ("b", 1.0, 2.0, "u"),
        ("b", 2.0, "", "u"),
        ("a", 3.0, 4.0, "v"),
        ("b", 4.0, "nan", "u"),
        ("a", 5.0, 6.0, "v"),
        ("c", 6.0, 7.0, "w"),
        ("c", 7.0, 8.0, "w"),
        ("c", 8.0, 9.0, "w"),
        ("b", 9.0, 1.0, "u"),
    ]
    return _write_csv(tmp_path / "data.csv", rows)


def test_reads_padded_masked_arrays(three_sessions):
    table = read_long_csv(three_sessions, target="y", inputs=["x"], sequence="session")
    assert table.sequence_ids == ["b", "a", "c"]
    np.testing.assert_array_equal(table.lengths, [4, 2, 3])
    assert table.inputs.shape == (3, 4, 1)
    np.testing.assert_array_equal(table.inputs[0, :, 0], [1, 2, 4, 9])
    np.testing.assert_array_equal(table.mask[0], [True, False, False, True])  # empty and "nan" are missing
    np.testing.assert_array_equal(table.mask[1], [True, True, False, False])  # padding is masked
    np.testing.assert_array_equal(table.row_index[0], [0, 1, 3, 8])
    np.testing.assert_array_equal(table.row_index[1], [2, 4, -1, -1])
    np.testing.assert_array_equal(table.emissions[2, :3], [7, 8, 9])


def test_single_sequence_without_sequence_column(three_sessions):
    table = read_long_csv(three_sessions, target="y", inputs=["x"])
    assert table.emissions.shape == (1, 9)
    assert table.mask.sum() == 7


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(target="z", inputs=["x"], sequence="session"), "target: unknown column 'z'"),
        (dict(target="y", inputs=["x", "w"], sequence="session"), "inputs: unknown column 'w'"),
        (dict(target="y", inputs=["x"], sequence="id"), "sequence: unknown column 'id'"),
        (dict(target="y", inputs=["extra"], sequence="session"), "non-numeric value 'u' at data row 1"),
        (dict(target="extra", inputs=["x"], sequence="session"), "column 'extra' has a non-numeric"),
        (dict(target="y", inputs=[], sequence="session"), "at least one input"),
    ],
)
def test_clear_errors(three_sessions, kwargs, message):
    with pytest.raises(ValueError, match=message):
        read_long_csv(three_sessions, **kwargs)


def test_missing_input_names_the_row(tmp_path):
    path = _write_csv(tmp_path / "d.csv", [("a", 1.0, 2.0, 0), ("a", "", 3.0, 0)])
    with pytest.raises(ValueError, match="column 'x' is missing a value at data row 2"):
        read_long_csv(path, target="y", inputs=["x"], sequence="session")


def test_short_sequence_is_rejected(tmp_path):
    path = _write_csv(tmp_path / "d.csv", [("a", 1.0, 2.0, 0), ("a", 2.0, 3.0, 0), ("b", 1.0, 1.0, 0)])
    with pytest.raises(ValueError, match="sequence 'b' has 1 row"):
        read_long_csv(path, target="y", inputs=["x"], sequence="session")


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        read_long_csv(tmp_path / "nope.csv", target="y", inputs=["x"])


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "is empty"),
        ("\n\n", "is empty"),
        ("  \n", "is empty"),
        ("\ufeff", "is empty"),
        ("x,y\n", "has a header but no data rows"),
        ("x,y\n\n\n", "has a header but no data rows"),
    ],
)
def test_empty_file_says_so(tmp_path, text, message):
    path = tmp_path / "empty.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"DATA: the file .* {message}"):
        read_long_csv(path, target="y", inputs=["x"])


def test_unreadable_files_name_data(tmp_path):
    """A folder, bytes that are not UTF-8 and a field the csv module refuses each say what is wrong with DATA."""
    with pytest.raises(ValueError, match="^DATA: .* is not a file"):
        read_long_csv(tmp_path, target="y", inputs=["x"])
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("x,y\n1,caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="^DATA: the file .* is not UTF-8 text"):
        read_long_csv(latin1, target="y", inputs=["x"])
    huge = tmp_path / "huge.csv"
    huge.write_text('x,y\n1,"' + "a" * 200_000 + '"\n2,3\n')  # an unclosed quote swallows the file alike
    with pytest.raises(ValueError, match=r"^DATA: the file .* is not a readable CSV \(field larger"):
        read_long_csv(huge, target="y", inputs=["x"])


def test_a_column_named_twice_is_refused_only_when_asked_for(tmp_path):
    """csv.DictReader keeps the last of two equal names; a fit must not silently read the wrong one."""
    asked = tmp_path / "asked.csv"
    asked.write_text("x,y,x\n1,2,3\n4,5,6\n")
    with pytest.raises(ValueError, match=r"^DATA: the header of .* names the columns \['x'\] more than once"):
        read_long_csv(asked, target="y", inputs=["x"])
    unused = tmp_path / "unused.csv"
    unused.write_text("x,y,z,z\n1,2,0,0\n4,5,0,0\n")
    table = read_long_csv(unused, target="y", inputs=["x"])
    np.testing.assert_array_equal(table.inputs[0, :, 0], [1, 4])


def test_check_supported_states_against_the_longest_sequence(tmp_path):
    path = _write_csv(tmp_path / "d.csv", [("a", 1.0, 2.0, 0), ("a", 2.0, 3.0, 0), ("b", 1.0, 1.0, 0)] * 2)
    table = read_long_csv(path, target="y", inputs=["x"], sequence="session")  # a: 4 rows, b: 2
    check_supported_states(table, 4)
    with pytest.raises(ValueError, match=r"^--states 5 is larger than the longest sequence \(4 steps\)"):
        check_supported_states(table, 5)


def _labels_csv(tmp_path, labels):
    return _write_csv(tmp_path / "labels.csv", [("a", float(t), label, 0) for t, label in enumerate(labels)])


def test_text_labels_are_coded_in_sorted_order(tmp_path):
    # "none" is a label, not a missing value; "" and "nan" are missing.
    path = _labels_csv(tmp_path, ["right", "left", "none", "", "right", "nan", "left"])
    table = read_long_csv(path, target="y", inputs=["x"], class_target=True)
    assert table.class_labels == ["left", "none", "right"]
    np.testing.assert_array_equal(table.mask[0], [True, True, True, False, True, False, True])
    np.testing.assert_array_equal(table.emissions[0][table.mask[0]], [2, 0, 1, 2, 0])


@pytest.mark.parametrize("labels", [["TRUE", "false", "True"], ["true", "true"]])
def test_boolean_labels_code_false_0_true_1(tmp_path, labels):
    # Even when "true" alone is observed (sorted order would make it 0), true is 1.
    table = read_long_csv(_labels_csv(tmp_path, labels), target="y", inputs=["x"], class_target=True)
    assert table.class_labels == ["false", "true"]
    np.testing.assert_array_equal(table.emissions[0], [label.lower() == "true" for label in labels])


def test_numeric_labels_stay_numeric(tmp_path):
    table = read_long_csv(_labels_csv(tmp_path, ["-1", "1", "", "1"]), target="y", inputs=["x"], class_target=True)
    assert table.class_labels is None
    np.testing.assert_array_equal(table.emissions[0][table.mask[0]], [-1, 1, 1])


def test_more_text_labels_than_classes_names_the_row(tmp_path):
    path = _labels_csv(tmp_path, ["left", "none", "left", "right", "none"])
    with pytest.raises(ValueError, match=r"column 'y' holds 3 distinct labels.*label 'right' at data row 4"):
        read_long_csv(path, target="y", inputs=["x"], class_target=True, num_classes=2)


def test_text_target_refused_unless_class_target(tmp_path):
    with pytest.raises(ValueError, match="column 'y' has a non-numeric value 'left' at data row 1"):
        read_long_csv(_labels_csv(tmp_path, ["left", "right"]), target="y", inputs=["x"])


# --- transition inputs --------------------------------------------------------------------------------


def _transition_csv(tmp_path, u_cells):
    """Sessions b (4 rows) and a (2 rows) with an input x, a target y and a transition input column u."""
    rows = [("b", 1.0, 2.0, u_cells[0]), ("b", 2.0, "", u_cells[1]), ("a", 3.0, 4.0, u_cells[2])]
    rows += [("b", 4.0, 5.0, u_cells[3]), ("a", 5.0, 6.0, u_cells[4]), ("b", 6.0, 7.0, u_cells[5])]
    return _write_csv(tmp_path / "transitions.csv", rows, header=("session", "x", "y", "u"))


def test_transition_inputs_are_padded_with_zeros(tmp_path):
    path = _transition_csv(tmp_path, ["0.5", "-1", "2", "3", "4", "1e-1"])
    table = read_long_csv(path, target="y", inputs=["x"], sequence="session", transition_inputs=["u", "x"])
    assert table.transition_input_names == ["u", "x"]
    assert table.transition_inputs.shape == (2, 4, 2)
    np.testing.assert_array_equal(table.transition_inputs[0, :, 0], [0.5, -1, 3, 0.1])
    np.testing.assert_array_equal(table.transition_inputs[1, :, 0], [2, 4, 0, 0])  # padding holds zeros
    np.testing.assert_array_equal(table.transition_inputs[..., 1], table.inputs[..., 0])  # x serves as both
    stationary = read_long_csv(path, target="y", inputs=["x"], sequence="session")
    assert stationary.transition_inputs is None and stationary.transition_input_names is None


@pytest.mark.parametrize(
    "cells, columns, message",
    [
        (["0", "1", "", "1", "0", "1"], ["u"], r"transition_inputs: column 'u' is missing a value at data row 3"),
        (["0", "1", "nan", "1", "0", "1"], ["u"], r"transition_inputs: column 'u' is missing a value at data row 3"),
        (["0", "1", "1", "inf", "0", "1"], ["u"], r"transition_inputs: column 'u' has a non-finite value"),
        (["0", "1", "1", "1", "left", "1"], ["u"], r"transition_inputs: column 'u' has a non-numeric value 'left'"),
        (["0"] * 6, ["v"], r"transition_inputs: unknown column 'v'"),
        (["0"] * 6, [], r"transition_inputs: give at least one column"),
        (["0"] * 6, ["u", "u"], r"transition_inputs: the columns \['u'\] are given more than once"),
    ],
)
def test_transition_input_errors_name_the_argument_and_column(tmp_path, cells, columns, message):
    with pytest.raises(ValueError, match=message):
        read_long_csv(
            _transition_csv(tmp_path, cells), target="y", inputs=["x"], sequence="session", transition_inputs=columns
        )


# --- subjects -------------------------------------------------------------------------------------------


def _subjects_csv(tmp_path, mice):
    """Sessions b (4 rows), a (2 rows) and c (2 rows), with the mouse column's cells as given (file order)."""
    sessions = ["b", "b", "a", "b", "a", "c", "b", "c"]
    rows = [
        (session, float(t), float(t % 2), mouse) for t, (session, mouse) in enumerate(zip(sessions, mice, strict=True))
    ]
    return _write_csv(tmp_path / "subjects.csv", rows, header=("session", "x", "y", "mouse"))


def test_subject_ids_one_per_sequence(tmp_path):
    """One id per sequence, in the order of the sequences; stripped of spaces; the column's name kept."""
    path = _subjects_csv(tmp_path, ["m2", "m2 ", "m1", "m2", "m1", "7", "m2", "7"])
    table = read_long_csv(path, target="y", inputs=["x"], sequence="session", subject="mouse")
    assert table.sequence_ids == ["b", "a", "c"]
    assert table.subject_ids == ["m2", "m1", "7"] and table.subject_name == "mouse"
    with pytest.raises(ValueError, match="holds 'm1' at data row 3 but 'm2' at data row 1 in the one sequence"):
        read_long_csv(path, target="y", inputs=["x"], subject="mouse")  # no sequence column: one sequence, one id
    single = read_long_csv(_subjects_csv(tmp_path, ["m1"] * 8), target="y", inputs=["x"], subject="mouse")
    assert single.subject_ids == ["m1"]
    plain = read_long_csv(path, target="y", inputs=["x"], sequence="session")
    assert plain.subject_ids is None and plain.subject_name is None


@pytest.mark.parametrize(
    "mice, subject, message",
    [
        (
            ["m1", "m1", "m1", "m2", "m1", "m1", "m3", "m1"],
            "mouse",
            r"^subject: column 'mouse' holds 'm2' at data row 4 but 'm1' at data row 1 in sequence 'b'; every row",
        ),
        (["m1", "m1", "m1", "m1", "", "m1", "m1", "m1"], "mouse", r"missing a value at data row 5 \(sequence 'a'\)"),
        (["m1", "m1", "NaN", "m1", "m1", "m1", "m1", "m1"], "mouse", r"^subject: column 'mouse' is missing a value"),
        (["m1"] * 8, "animal", r"^subject: unknown column 'animal'"),
    ],
)
def test_subject_errors_name_the_column_sequence_and_row(tmp_path, mice, subject, message):
    with pytest.raises(ValueError, match=message):
        read_long_csv(_subjects_csv(tmp_path, mice), target="y", inputs=["x"], sequence="session", subject=subject)


@pytest.fixture(scope="module")
def padded_fit():
    """Three article sequences cut to lengths 60, 35, 48 and padded to 60, with two missing targets."""
    data = article_data(jax.random.PRNGKey(11), num_sequences=3, num_timesteps=60)
    lengths = np.array([60, 35, 48])
    mask = np.arange(60)[None, :] < lengths[:, None]
    mask[0, 10] = mask[2, 5] = False  # missing targets inside sequences
    emissions = np.where(mask, data.emissions, np.nan)
    posterior = fit_nuts(
        data.inputs,
        emissions,
        3,
        mask=mask,
        lengths=lengths,
        num_chains=2,
        num_warmup=150,
        num_samples=100,
        seed=2,
        progress_bar=False,
    )
    return data, lengths, mask, posterior


def test_padding_never_leaks_and_missing_steps_are_inferred(padded_fit):
    data, lengths, mask, posterior = padded_fit
    idata = posterior.to_arviz(key=jax.random.PRNGKey(1))
    predictive = idata.posterior_predictive["emissions"].values
    states = idata.posterior_states["states"].values
    probabilities = idata.posterior_states["state_probabilities"].values
    valid = np.arange(60)[None, :] < lengths[:, None]
    assert np.all(np.isnan(predictive[..., ~valid])) and np.all(np.isfinite(predictive[..., valid]))
    assert np.all(states[..., ~valid] == -1) and np.all(states[..., valid] >= 0)
    assert np.all(np.isnan(probabilities[~valid]))
    np.testing.assert_allclose(probabilities[valid].sum(-1), 1.0, atol=1e-5)
    # The missing step inside sequence 0 has a proper posterior and predictive draws.
    assert np.isfinite(predictive[..., 0, 10]).all() and np.isclose(probabilities[0, 10].sum(), 1.0, atol=1e-5)
    np.testing.assert_array_equal(idata.constant_data["lengths"].values, lengths)


def test_padding_equals_truncation_per_draw(padded_fit):
    """Each draw's likelihood of a padded sequence equals that of the truncated sequence."""
    data, lengths, mask, posterior = padded_fit
    padded = posterior.log_likelihood()[..., 1]
    truncated = posterior.log_likelihood(data.inputs[1:2, :35], np.where(mask[1:2, :35], data.emissions[1:2, :35], 0))
    np.testing.assert_allclose(padded, truncated[..., 0], rtol=1e-5)


def test_bad_lengths(padded_fit):
    data, *_ = padded_fit
    with pytest.raises(ValueError, match="lengths"):
        fit_nuts(data.inputs, data.emissions, 3, lengths=[60, 0, 10])
