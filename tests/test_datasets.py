from importlib import resources

import numpy as np
import pytest

from bayes_glmhmm.datasets import (
    IBL_INPUT_NAMES,
    PST_INPUT_NAMES,
    PST_PAIRS,
    PST_REWARD_PROBABILITIES,
    MouseDesign,
    PSTDesign,
    ibl_design,
    load_ibl_sessions,
    load_ibl_trials,
    load_pst_trials,
    pst_design,
)

N_SESSIONS = 11
N_TRIALS = 7844


@pytest.fixture(scope="module")
def trials():
    return load_ibl_trials()


@pytest.fixture(scope="module")
def design(trials):
    return ibl_design(trials)


def _oracle_previous(trials):
    """Previous responded choice (+1 right = IBL -1, -1 left) and its feedback, by a backward search."""
    session, choice, feedback = trials["session"].tolist(), trials["choice"].tolist(), trials["feedback_type"].tolist()
    prev, wsls = [], []
    for t in range(len(choice)):
        value, reward = 0, 0
        s = t - 1
        while s >= 0 and session[s] == session[t]:
            if choice[s] != 0:
                value = 1 if choice[s] == -1 else -1
                reward = feedback[s]
                break
            s -= 1
        prev.append(value)
        wsls.append(value * reward)
    return np.array(prev, dtype=float), np.array(wsls, dtype=float)


def _flat(design, array):
    """Per-row values of an (N, T, ...) array, back in table order."""
    out = np.empty((int(design.lengths.sum()),) + array.shape[2:], dtype=array.dtype)
    valid = design.row_index >= 0
    out[design.row_index[valid]] = array[valid]
    return out


# --- the shipped table ---------------------------------------------------------------------------


def test_table_size_and_order(trials):
    assert set(trials) == {
        "session",
        "trial",
        "choice",
        "contrast_left",
        "contrast_right",
        "stimulus_side",
        "probability_left",
        "feedback_type",
    }
    assert all(v.shape == (N_TRIALS,) for v in trials.values())
    assert np.all(np.diff(trials["session"]) >= 0)
    assert np.unique(trials["session"]).tolist() == list(range(N_SESSIONS))
    sessions = load_ibl_sessions()
    counts = np.bincount(trials["session"])
    np.testing.assert_array_equal(counts, sessions["n_trials"])
    assert counts.sum() == N_TRIALS
    assert counts.tolist() == [752, 617, 532, 887, 782, 387, 1104, 626, 967, 471, 719]
    assert set(sessions["task_protocol"].tolist()) == {"training", "biased"}
    for s in range(N_SESSIONS):
        np.testing.assert_array_equal(trials["trial"][trials["session"] == s], np.arange(counts[s]))


def test_table_values(trials):
    assert set(np.unique(trials["choice"]).tolist()) == {-1, 0, 1}
    assert set(np.unique(trials["feedback_type"]).tolist()) == {-1, 1}
    assert set(np.unique(trials["stimulus_side"]).tolist()) == {-1, 1}
    levels = {0.0, 0.0625, 0.125, 0.25, 1.0}
    left, right, side = trials["contrast_left"], trials["contrast_right"], trials["stimulus_side"]
    assert set(np.unique(left).tolist()) == levels
    assert set(np.unique(right).tolist()) == levels
    np.testing.assert_array_equal(left[side == 1], 0.0)
    np.testing.assert_array_equal(right[side == -1], 0.0)
    p = trials["probability_left"]
    assert np.all((p >= 0) & (p <= 1))
    # IBL's convention: choice -1 (counter-clockwise) is correct for a stimulus on the right.
    responded = trials["choice"] != 0
    rewarded = trials["feedback_type"] == 1
    np.testing.assert_array_equal(rewarded[responded], (trials["choice"] == -side)[responded])
    assert not np.any(rewarded[~responded])
    assert (~responded).sum() == 19


def test_licence_is_shipped():
    text = (resources.files("bayes_glmhmm") / "data" / "LICENSE-ibllib.txt").read_text(encoding="utf-8")
    assert "MIT License" in text
    assert "Copyright (c) 2018 International Brain Laboratory" in text
    assert "ibllib 4.1.0" in text


# --- the design ----------------------------------------------------------------------------------


def test_design_shapes(design):
    assert isinstance(design, MouseDesign)
    t_max = 1104
    assert design.inputs.shape == (N_SESSIONS, t_max, 4)
    assert design.input_names == IBL_INPUT_NAMES
    for name in ("choices", "mask", "signed_contrast", "probability_left", "responded", "row_index"):
        assert getattr(design, name).shape == (N_SESSIONS, t_max), name
    assert design.mask.dtype == bool
    assert np.issubdtype(design.choices.dtype, np.integer)
    np.testing.assert_array_equal(design.session_ids, np.arange(N_SESSIONS))
    assert design.lengths.sum() == N_TRIALS
    assert design.lengths.max() == t_max


def test_padding_is_masked(design):
    steps = np.arange(design.inputs.shape[1])
    padding = steps[None, :] >= design.lengths[:, None]
    assert padding.sum() == N_SESSIONS * 1104 - N_TRIALS
    assert not design.mask[padding].any()
    assert not design.responded[padding].any()
    assert np.all(design.inputs[padding] == 0)
    assert np.all(design.choices[padding] == 0)
    assert np.all(design.row_index[padding] == -1)
    assert np.all(np.isnan(design.signed_contrast[padding]))
    assert np.all(np.isfinite(design.inputs))


def test_bernoulli_targets_and_mask(trials, design):
    choice = trials["choice"]
    assert design.mask.sum() == np.sum(choice != 0)
    np.testing.assert_array_equal(_flat(design, design.mask), choice != 0)
    np.testing.assert_array_equal(_flat(design, design.responded), choice != 0)
    y = _flat(design, design.choices)
    np.testing.assert_array_equal(y[choice == -1], 1)  # rightward
    np.testing.assert_array_equal(y[choice == 1], 0)  # leftward
    assert set(np.unique(design.choices[design.mask]).tolist()) == {0, 1}


def test_categorical_targets(trials):
    design = ibl_design(trials, family="categorical")
    valid = design.row_index >= 0
    np.testing.assert_array_equal(design.mask, valid)
    y = _flat(design, design.choices)
    expected = np.array([{1: 0, -1: 1, 0: 2}[c] for c in trials["choice"].tolist()])
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(design.inputs, ibl_design(trials).inputs)


def test_previous_choice_and_wsls_against_oracle(trials, design):
    prev, wsls = _oracle_previous(trials)
    x = _flat(design, design.inputs)
    np.testing.assert_array_equal(x[:, 1], prev)
    np.testing.assert_array_equal(x[:, 2], wsls)
    np.testing.assert_array_equal(x[:, 3], 1.0)
    # The first trial of every session has no previous choice.
    first = np.flatnonzero(trials["trial"] == 0)
    assert np.all(x[first, 1:3] == 0)
    # After a no-response trial, the choice before it is carried forward.
    choice, feedback = trials["choice"], trials["feedback_type"]
    gaps = [t for t in np.flatnonzero(choice == 0) if t + 1 < N_TRIALS and trials["trial"][t + 1] > 0]
    assert gaps
    for t in gaps:
        s = t - 1
        while choice[s] == 0:
            s -= 1
        assert trials["session"][s] == trials["session"][t]
        assert x[t + 1, 1] == -choice[s]
        assert x[t + 1, 2] == -choice[s] * feedback[s]
    # A few trials by hand: session 0 starts with choices 1, -1, -1 (left, right, right), all rewarded.
    np.testing.assert_array_equal(choice[:3], [1, -1, -1])
    np.testing.assert_array_equal(feedback[:3], [1, 1, 1])
    np.testing.assert_array_equal(design.inputs[0, :3, 1], [0, -1, 1])
    np.testing.assert_array_equal(design.inputs[0, :3, 2], [0, -1, 1])


def test_signed_contrast(trials, design):
    raw = trials["contrast_right"] - trials["contrast_left"]
    np.testing.assert_array_equal(_flat(design, design.signed_contrast), raw)
    z = _flat(design, design.inputs[..., 0])
    np.testing.assert_allclose(z.mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(z * design.contrast_scale + design.contrast_center, raw, atol=1e-12)
    plain = ibl_design(trials, contrast="raw", inputs=("signed_contrast",))
    assert plain.contrast_center == 0.0 and plain.contrast_scale == 1.0
    np.testing.assert_array_equal(_flat(plain, plain.inputs[..., 0]), raw)


def test_input_selection_and_sessions(trials):
    design = ibl_design(trials, inputs=["bias", "previous_choice"], sessions=[5, 2])
    assert design.input_names == ("bias", "previous_choice")
    np.testing.assert_array_equal(design.session_ids, [5, 2])
    np.testing.assert_array_equal(design.lengths, [387, 532])
    assert design.inputs.shape == (2, 532, 2)
    np.testing.assert_array_equal(design.inputs[1, :, 0], 1.0)
    np.testing.assert_array_equal(trials["session"][design.row_index[0, :387]], 5)
    full = ibl_design(trials)
    np.testing.assert_array_equal(design.inputs[1, :, 1], full.inputs[2, :532, 1])


def test_default_table_is_the_shipped_one(trials, design):
    np.testing.assert_array_equal(ibl_design().inputs, design.inputs)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"family": "poisson"}, "family"),
        ({"inputs": ("signed_contrast", "reaction_time")}, "inputs"),
        ({"inputs": ()}, "inputs"),
        ({"inputs": ("bias", "bias")}, "inputs"),
        ({"inputs": "bias"}, "inputs"),
        ({"contrast": "tanh"}, "contrast"),
        ({"sessions": [99]}, "sessions"),
        ({"sessions": []}, "sessions"),
    ],
)
def test_bad_arguments(trials, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        ibl_design(trials, **kwargs)


def test_bad_trials_table(trials):
    broken = {k: v for k, v in trials.items() if k != "feedback_type"}
    with pytest.raises(ValueError, match="trials"):
        ibl_design(broken)
    bad_choice = dict(trials, choice=np.where(trials["choice"] == 0, 2, trials["choice"]))
    with pytest.raises(ValueError, match="choice"):
        ibl_design(bad_choice)


# --- several subjects: the PST trials (HDDM 1.0.1) -----------------------------------------------

PST_TRIALS = 5280
# fmt: off
PST_SUBJECTS = [42, 50, 56, 3, 4, 5, 6, 8, 12, 17, 18, 19, 20, 22, 23, 24, 26, 33, 34, 35, 36, 39, 52, 59, 63,
                71, 75, 80]
PST_COUNTS = [180, 359, 274, 120, 360, 120, 179, 119, 240, 120, 120, 240, 180, 360, 120, 120, 240, 120, 120, 120,
              120, 180, 180, 180, 120, 338, 238, 113]
# fmt: on


@pytest.fixture(scope="module")
def pst():
    return load_pst_trials()


@pytest.fixture(scope="module")
def pst_by_subject(pst):
    return pst_design(pst)


def _pst_oracle_previous(pst):
    """Previous choice of the same participant and pair (+1 better, -1 worse) and its reward, searched backwards."""
    subject, pair = pst["subject"].tolist(), pst["pair"].tolist()
    better, reward = pst["chose_better"].tolist(), pst["rewarded"].tolist()
    prev, wsls = [], []
    for t in range(len(better)):
        value, sign = 0, 0
        for s in range(t - 1, -1, -1):
            if subject[s] != subject[t]:
                break
            if pair[s] == pair[t]:
                value, sign = 2 * better[s] - 1, 2 * reward[s] - 1
                break
        prev.append(value)
        wsls.append(value * sign)
    return np.array(prev, dtype=float), np.array(wsls, dtype=float)


def test_pst_table_size_and_order(pst):
    assert list(pst) == ["subject", "trial", "pair", "pair_trial", "chose_better", "rewarded"]
    assert all(v.shape == (PST_TRIALS,) for v in pst.values())
    subject = pst["subject"]
    # Participants are contiguous blocks, in the file's order.
    assert np.count_nonzero(np.diff(subject)) == len(PST_SUBJECTS) - 1
    _, first = np.unique(subject, return_index=True)
    assert subject[np.sort(first)].tolist() == PST_SUBJECTS
    counts = [int(np.sum(subject == s)) for s in PST_SUBJECTS]
    assert counts == PST_COUNTS and sum(counts) == PST_TRIALS
    missing, with_gaps = 0, set()
    for s in PST_SUBJECTS:
        rows = subject == s
        np.testing.assert_array_equal(pst["trial"][rows], np.arange(rows.sum()))
        for p in PST_PAIRS:
            numbers = pst["pair_trial"][rows & (pst["pair"] == p)]
            assert np.all(np.diff(numbers) > 0)  # the order of presentation within a pair
            gap = int(numbers.max()) - len(numbers)
            missing += gap
            if gap:
                with_gaps.add(s)
    assert missing == 60 and sorted(with_gaps) == [6, 8, 50, 56, 71, 75, 80]


def test_pst_table_values(pst):
    assert pst["pair"].dtype.kind == "U"
    assert [int(np.sum(pst["pair"] == p)) for p in PST_PAIRS] == [1759, 1757, 1764]
    assert set(np.unique(pst["chose_better"]).tolist()) == {0, 1}
    assert set(np.unique(pst["rewarded"]).tolist()) == {0, 1}
    assert pst["chose_better"].sum() == 3463 and pst["rewarded"].sum() == 3008
    # Rewards of the better / worse choice per pair (counts verified on the file), near the pairs' probabilities
    # 0.8 / 0.2 (AB), 0.7 / 0.3 (CD), 0.6 / 0.4 (EF).
    expected = {"AB": (1048, 1296, 100, 463), "CD": (737, 1122, 205, 635), "EF": (629, 1045, 289, 719)}
    for p, (p_better, p_worse) in PST_REWARD_PROBABILITIES.items():
        rows = pst["pair"] == p
        better = rows & (pst["chose_better"] == 1)
        worse = rows & (pst["chose_better"] == 0)
        counts = (pst["rewarded"][better].sum(), better.sum(), pst["rewarded"][worse].sum(), worse.sum())
        assert counts == expected[p], p
        assert abs(pst["rewarded"][better].mean() - p_better) < 0.05, p
        assert abs(pst["rewarded"][worse].mean() - p_worse) < 0.05, p


def test_pst_licence_is_shipped():
    text = (resources.files("bayes_glmhmm") / "data" / "LICENSE-hddm.txt").read_text(encoding="utf-8")
    assert "HDDM 1.0.1" in text
    assert "hddm/examples/rlddm_data.csv" in text
    assert "Copyright (c) 2021, Thomas V. Wiecki" in text
    assert "Redistribution and use in source and binary forms" in text


def test_pst_design_by_subject(pst, pst_by_subject):
    design = pst_by_subject
    assert isinstance(design, PSTDesign)
    assert design.input_names == PST_INPUT_NAMES
    assert design.inputs.shape == (28, 360, 4)
    for name in ("choices", "mask", "pair_index", "rewarded", "row_index"):
        assert getattr(design, name).shape == (28, 360), name
    assert design.lengths.tolist() == PST_COUNTS
    assert design.subject_ids.tolist() == PST_SUBJECTS
    assert design.pair_ids.tolist() == ["all"] * 28
    assert np.all(np.isfinite(design.inputs)) and np.all(np.isfinite(design.rewarded))
    assert design.mask.sum() == PST_TRIALS
    padding = ~design.mask
    assert np.all(design.inputs[padding] == 0) and np.all(design.choices[padding] == 0)
    assert np.all(design.row_index[padding] == -1) and np.all(design.pair_index[padding] == -1)
    valid = design.mask
    np.testing.assert_array_equal(np.sort(design.row_index[valid]), np.arange(PST_TRIALS))
    rows = design.row_index[valid]
    np.testing.assert_array_equal(design.choices[valid], pst["chose_better"][rows])
    np.testing.assert_array_equal(design.rewarded[valid], pst["rewarded"][rows])
    np.testing.assert_array_equal(np.asarray(PST_PAIRS)[design.pair_index[valid]], pst["pair"][rows])
    # Each sequence is its participant's rows in table order.
    for i, s in enumerate(PST_SUBJECTS):
        np.testing.assert_array_equal(design.row_index[i, : design.lengths[i]], np.flatnonzero(pst["subject"] == s))


def test_pst_inputs_against_oracle(pst, pst_by_subject):
    design = pst_by_subject
    x = _flat(design, design.inputs)
    prev, wsls = _pst_oracle_previous(pst)
    np.testing.assert_allclose(x[:, 0], [{"AB": 0.6, "CD": 0.4, "EF": 0.2}[p] for p in pst["pair"].tolist()])
    np.testing.assert_array_equal(x[:, 1], prev)
    np.testing.assert_array_equal(x[:, 2], wsls)
    np.testing.assert_array_equal(x[:, 3], 1.0)
    # 28 participants x 3 pairs start without a previous choice.
    assert np.sum(x[:, 1] == 0) == 84 and np.all(x[:, 2][x[:, 1] == 0] == 0)
    # By hand: participant 42 starts CD (worse, unrewarded), EF (better, unrewarded), AB (better, rewarded), AB.
    np.testing.assert_array_equal(pst["pair"][:4], ["CD", "EF", "AB", "AB"])
    np.testing.assert_array_equal(design.inputs[0, :4, 1], [0, 0, 0, 1])
    np.testing.assert_array_equal(design.inputs[0, :4, 2], [0, 0, 0, 1])


def test_pst_design_by_subject_and_pair(pst, pst_by_subject):
    design = pst_design(pst, sequences="subject_pair")
    assert design.inputs.shape == (84, 120, 4)
    assert design.lengths.sum() == PST_TRIALS
    assert design.lengths.min() == 37 and design.lengths.max() == 120
    assert design.subject_ids.tolist() == [s for s in PST_SUBJECTS for _ in PST_PAIRS]
    assert design.pair_ids.tolist() == list(PST_PAIRS) * 28
    for i in range(84):
        rows = design.row_index[i, : design.lengths[i]]
        assert np.all(pst["pair"][rows] == design.pair_ids[i])
        assert np.all(np.diff(pst["pair_trial"][rows]) > 0)
        assert design.inputs[i, 0, 1] == 0  # first trial of a pair: no previous choice
    # The inputs do not depend on how the trials are cut into sequences.
    np.testing.assert_array_equal(_flat(design, design.inputs), _flat(pst_by_subject, pst_by_subject.inputs))


def test_pst_subjects_and_inputs_selection(pst):
    design = pst_design(pst, inputs=["bias", "previous_choice"], subjects=[80, 3])
    assert design.input_names == ("bias", "previous_choice")
    assert design.subject_ids.tolist() == [80, 3]
    assert design.lengths.tolist() == [113, 120]
    assert design.inputs.shape == (2, 120, 2)
    full = pst_design(pst)
    i3 = PST_SUBJECTS.index(3)
    np.testing.assert_array_equal(design.inputs[1, :, 1], full.inputs[i3, :120, 1])
    np.testing.assert_array_equal(pst_design().inputs, full.inputs)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"sequences": "session"}, "sequences"),
        ({"inputs": ("reward_gap", "signed_contrast")}, "inputs"),
        ({"inputs": ()}, "inputs"),
        ({"inputs": ("bias", "bias")}, "inputs"),
        ({"inputs": "bias"}, "inputs"),
        ({"subjects": [999]}, "subjects"),
        ({"subjects": []}, "subjects"),
    ],
)
def test_pst_bad_arguments(pst, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        pst_design(pst, **kwargs)


def test_pst_bad_trials_table(pst):
    with pytest.raises(ValueError, match="rewarded"):
        pst_design({k: v for k, v in pst.items() if k != "rewarded"})
    with pytest.raises(ValueError, match="chose_better"):
        pst_design(dict(pst, chose_better=pst["chose_better"] * 2))
    with pytest.raises(ValueError, match="pair"):
        pst_design(dict(pst, pair=np.where(pst["pair"] == "AB", "GH", pst["pair"])))
