"""Real mouse decision data shipped with the package, and the GLM-HMM design built from it.

The International Brain Laboratory (IBL) trials of one mouse (SWC_054; 11 sessions, 7,844 trials),
extracted from the test fixture ``brainbox/tests/fixtures/trials_test.pickle`` of ibllib 4.1.0 (MIT
licence, see ``bayes_glmhmm/data/LICENSE-ibllib.txt``). Each trial shows a grating of some contrast on
the left or the right; the mouse turns a wheel to bring it to the centre, and is rewarded when it
does so.

IBL conventions, kept unchanged in :func:`load_ibl_trials`:

* ``choice``: -1 = counter-clockwise wheel turn, which is the correct response to a stimulus on the
  *right* (a "rightward" choice; ibllib's ``brainbox.behavior.training`` computes the proportion
  rightward as ``choice == -1``); +1 = clockwise, the correct response to a stimulus on the left
  ("leftward"); 0 = no response within the time limit.
* ``feedback_type``: +1 = rewarded (correct), -1 = not rewarded (wrong or no response).
* ``probability_left``: the prior probability that the stimulus appears on the left (the block
  structure of the biased task; 0.5 almost throughout the training sessions).

:func:`ibl_design` builds the inputs of the field's GLM-HMM for this task (Ashwood et al. 2022,
*Mice alternate between discrete strategies during perceptual decision-making*, Nat. Neurosci.).

Several subjects: no multi-animal choice data with a licence that lets it be copied here was found in
the packages of the registries, so the multi-subject set is human. :func:`load_pst_trials` gives the
learning phase of the probabilistic selection task (PST) of 28 participants (5,280 trials), extracted
from ``hddm/examples/rlddm_data.csv`` of HDDM 1.0.1 (BSD 3-clause licence, see
``bayes_glmhmm/data/LICENSE-hddm.txt``), and :func:`pst_design` its GLM-HMM design, one sequence per
participant (or per participant and stimulus pair) with the participant of each sequence for
``fit_nuts(..., subjects=...)``.
"""

import csv
from importlib import resources
from typing import NamedTuple

import numpy as np

__all__ = [
    "IBL_INPUT_NAMES",
    "PST_INPUT_NAMES",
    "PST_PAIRS",
    "PST_REWARD_PROBABILITIES",
    "MouseDesign",
    "PSTDesign",
    "ibl_design",
    "load_ibl_sessions",
    "load_ibl_trials",
    "load_pst_trials",
    "pst_design",
]

IBL_INPUT_NAMES = ("signed_contrast", "previous_choice", "win_stay_lose_switch", "bias")
"""The inputs :func:`ibl_design` can build, in Ashwood et al.'s order."""

_INT_COLUMNS = ("session", "trial", "choice", "stimulus_side", "feedback_type")
_FLOAT_COLUMNS = ("contrast_left", "contrast_right", "probability_left")
_REQUIRED = ("session", "choice", "contrast_left", "contrast_right", "feedback_type")
_FAMILIES = ("bernoulli", "categorical")
_CONTRASTS = ("zscore", "raw")


def _read_data_csv(name: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV file in ``bayes_glmhmm/data``."""
    resource = resources.files("bayes_glmhmm") / "data" / name
    with resource.open("r", encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = list(reader)
    return header, rows


def load_ibl_trials() -> dict[str, np.ndarray]:
    """The shipped IBL trials, one array per column, in the original trial order.

    Returns:
        A dict of 7,844-long arrays:

        * ``session`` (int): session index 0..10, in the order of the ibllib fixture (not
          chronological; :func:`load_ibl_sessions` gives the dates).
        * ``trial`` (int): index of the trial within its session, from 0.
        * ``choice`` (int): IBL's code, -1 = rightward (counter-clockwise), +1 = leftward
          (clockwise), 0 = no response.
        * ``contrast_left``, ``contrast_right`` (float): stimulus contrast in {0, 0.0625, 0.125,
          0.25, 1} on each side. IBL stores NaN on the side without a stimulus; that is written as 0
          here, so a 0% contrast trial has 0 on both sides.
        * ``stimulus_side`` (int): +1 = the stimulus was on the right, -1 = on the left (which side
          IBL's non-NaN contrast was on; this is the only record of the side of 0% contrast trials).
        * ``probability_left`` (float): prior probability of a left stimulus (rounded to 4 decimals).
        * ``feedback_type`` (int): +1 = rewarded, -1 = not rewarded.
    """
    header, rows = _read_data_csv("ibl_trials.csv")
    columns = list(zip(*rows, strict=True))
    table: dict[str, np.ndarray] = {}
    for name, values in zip(header, columns, strict=True):
        dtype = np.int64 if name in _INT_COLUMNS else np.float64
        table[name] = np.asarray([dtype(float(v)) for v in values], dtype=dtype)
    return table


def load_ibl_sessions() -> dict[str, np.ndarray]:
    """One row per shipped IBL session.

    Returns:
        A dict of 11-long arrays: ``session`` (int, the index used by :func:`load_ibl_trials`),
        ``date`` (str, ISO date), ``task_protocol`` (str, ``"training"`` or ``"biased"``; only the
        biased sessions have blocks of ``probability_left`` 0.2 / 0.8) and ``n_trials`` (int).
    """
    header, rows = _read_data_csv("ibl_sessions.csv")
    columns = dict(zip(header, zip(*rows, strict=True), strict=True))
    return {
        "session": np.asarray([int(v) for v in columns["session"]], dtype=np.int64),
        "date": np.asarray(columns["date"], dtype=str),
        "task_protocol": np.asarray(columns["task_protocol"], dtype=str),
        "n_trials": np.asarray([int(v) for v in columns["n_trials"]], dtype=np.int64),
    }


class MouseDesign(NamedTuple):
    """IBL sessions as padded, masked GLM-HMM arrays (N sessions, T = longest session).

    Attributes:
        inputs: (N, T, D) float design; padding steps hold zeros.
        choices: (N, T) int targets (coding in :func:`ibl_design`); padding steps hold zeros.
        mask: (N, T) bool, True where the choice enters the likelihood.
        lengths: (N,) number of trials of each session.
        input_names: the D input names, in column order.
        session_ids: (N,) the ``session`` value of each row of the arrays.
        signed_contrast: (N, T) raw ``contrast_right - contrast_left`` in [-1, 1]; NaN in padding.
        probability_left: (N, T) prior probability of a left stimulus; NaN in padding.
        responded: (N, T) bool, True on trials with a response (IBL choice != 0); False in padding.
        row_index: (N, T) the 0-based row of each trial in the input table, -1 for padding.
        contrast_center: the value subtracted from the signed contrast in the input (0 for ``"raw"``).
        contrast_scale: the value the centred signed contrast was divided by (1 for ``"raw"``).
        rewarded: (N, T) float, 1.0 where the trial was rewarded (IBL feedback +1), 0.0 where not
            and in padding: with ``rewarded[..., None]`` as transition inputs, the reward of
            trial t drives the state of trial t+1.
    """

    inputs: np.ndarray
    choices: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray
    input_names: tuple[str, ...]
    session_ids: np.ndarray
    signed_contrast: np.ndarray
    probability_left: np.ndarray
    responded: np.ndarray
    row_index: np.ndarray
    contrast_center: float
    contrast_scale: float
    rewarded: np.ndarray | None = None


def _check_trials(trials: dict[str, np.ndarray]) -> int:
    """Validate a trials table; return its number of rows."""
    missing = [name for name in _REQUIRED if name not in trials]
    if missing:
        raise ValueError(f"trials is missing the column(s) {missing}; it needs {list(_REQUIRED)}")
    n_rows = len(np.asarray(trials["choice"]))
    for name in (*_REQUIRED, "probability_left"):
        if name in trials and np.shape(trials[name]) != (n_rows,):
            raise ValueError(f"trials column {name!r} has shape {np.shape(trials[name])}, expected ({n_rows},)")
    if n_rows == 0:
        raise ValueError("trials has no rows")
    choice = np.asarray(trials["choice"])
    if not np.all(np.isin(choice, (-1, 0, 1))):
        raise ValueError("trials column 'choice' must hold IBL codes -1, 0 or 1")
    feedback = np.asarray(trials["feedback_type"])
    if not np.all(np.isin(feedback, (-1, 1))):
        raise ValueError("trials column 'feedback_type' must hold -1 or 1")
    for name in ("contrast_left", "contrast_right"):
        if not np.all(np.isfinite(np.asarray(trials[name], dtype=float))):
            raise ValueError(f"trials column {name!r} must be finite (write the side without a stimulus as 0)")
    return n_rows


def ibl_design(
    trials: dict[str, np.ndarray] | None = None,
    *,
    family: str = "bernoulli",
    inputs: tuple[str, ...] | list[str] = IBL_INPUT_NAMES,
    contrast: str = "zscore",
    sessions: tuple[int, ...] | list[int] | None = None,
) -> MouseDesign:
    """The GLM-HMM design of Ashwood et al. (2022) for IBL trials, one padded sequence per session.

    Direction convention: everything is signed so that positive means *rightward*, matching the
    Bernoulli target (1 = rightward); a positive weight pushes the mouse to the right.

    Inputs (columns, in the order given by ``inputs``):

    * ``signed_contrast``: ``contrast_right - contrast_left`` (0% contrast is 0 whichever side it
      was on). With ``contrast="zscore"`` (the default, as Ashwood et al. do with
      ``sklearn.preprocessing.scale``) it is centred and divided by its standard deviation
      (``ddof=0``) over all trials of the selected sessions, responded or not; the values used are
      returned as ``contrast_center`` and ``contrast_scale``. ``contrast="raw"`` keeps it in [-1, 1].
      The raw value is always returned in ``MouseDesign.signed_contrast``.
    * ``previous_choice``: +1 if the mouse's most recent *responded* trial earlier in the same
      session was rightward (IBL choice -1), -1 if leftward. No-response trials are skipped, as in
      Ashwood et al. Trials with no earlier response in their session (always the first trial of a
      session) get 0; Ashwood et al. instead copy the trial's own choice there, which leaks the
      target into the input.
    * ``win_stay_lose_switch``: ``previous_choice`` times the feedback (+1 rewarded, -1 not) of that
      same earlier responded trial, so +1 means "win-stay / lose-switch points rightward"; 0 where
      ``previous_choice`` is 0.
    * ``bias``: the constant 1.

    Targets:

    * ``family="bernoulli"``: 1 = rightward (IBL choice -1), 0 = leftward (IBL choice +1), the
      mapping of Ashwood et al.; no-response trials (IBL choice 0) hold 0 and are masked out.
    * ``family="categorical"``: 3 classes, 0 = leftward (IBL +1), 1 = rightward (IBL -1),
      2 = no response (IBL 0); only padding is masked.

    Sessions are padded at the end to the longest one; padding has ``mask`` False, zero inputs and
    zero choices.

    Args:
        trials: a table with the columns of :func:`load_ibl_trials` (at least ``session``,
            ``choice``, ``contrast_left``, ``contrast_right``, ``feedback_type``; ``probability_left``
            is optional). Sessions are taken in order of first appearance and the rows of a session in
            table order. Defaults to the shipped data.
        family: ``"bernoulli"`` or ``"categorical"``.
        inputs: names from :data:`IBL_INPUT_NAMES`, at least one, without repeats.
        contrast: ``"zscore"`` or ``"raw"``, the transform of the signed contrast input.
        sessions: ``session`` values to keep, in the order wanted; defaults to all.

    Returns:
        The design as a :class:`MouseDesign`.

    Raises:
        ValueError: on an unknown ``family``, ``contrast`` or input name, repeated or no ``inputs``,
            a ``sessions`` value absent from the table, or a malformed ``trials`` table.
    """
    if family not in _FAMILIES:
        raise ValueError(f"family must be one of {_FAMILIES}, got {family!r}")
    if contrast not in _CONTRASTS:
        raise ValueError(f"contrast must be one of {_CONTRASTS}, got {contrast!r}")
    if isinstance(inputs, str):
        raise ValueError(f"inputs must be a sequence of input names, got the string {inputs!r}")
    input_names = tuple(inputs)
    unknown = [name for name in input_names if name not in IBL_INPUT_NAMES]
    if unknown:
        raise ValueError(f"inputs has unknown name(s) {unknown}; choose from {IBL_INPUT_NAMES}")
    if not input_names or len(set(input_names)) != len(input_names):
        raise ValueError(f"inputs must name at least one input, each once, got {input_names}")

    if trials is None:
        trials = load_ibl_trials()
    n_rows = _check_trials(trials)
    session = np.asarray(trials["session"])
    choice = np.asarray(trials["choice"], dtype=np.int64)
    feedback = np.asarray(trials["feedback_type"], dtype=np.int64)
    signed = np.asarray(trials["contrast_right"], dtype=np.float64) - np.asarray(
        trials["contrast_left"], dtype=np.float64
    )
    prob_left = (
        np.asarray(trials["probability_left"], dtype=np.float64)
        if "probability_left" in trials
        else np.full(n_rows, np.nan)
    )

    _, first = np.unique(session, return_index=True)
    present = session[np.sort(first)]
    if sessions is None:
        chosen = present
    else:
        chosen = np.asarray(list(sessions))
        absent = [s for s in chosen.tolist() if s not in set(present.tolist())]
        if chosen.size == 0 or absent:
            raise ValueError(f"sessions must name sessions of the table, got absent or no value(s) {absent}")
    rows_of = [np.flatnonzero(session == s) for s in chosen]
    lengths = np.asarray([len(r) for r in rows_of], dtype=np.int64)
    n_seq, t_max = len(rows_of), int(lengths.max())

    # Previous responded choice (+1 right, -1 left, 0 none yet) and its feedback, per row.
    prev_choice = np.zeros(n_rows)
    prev_wsls = np.zeros(n_rows)
    for rows in rows_of:
        last_choice, last_feedback = 0.0, 0.0
        for r in rows:
            prev_choice[r] = last_choice
            prev_wsls[r] = last_choice * last_feedback
            if choice[r] != 0:
                last_choice, last_feedback = float(-choice[r]), float(feedback[r])

    all_rows = np.concatenate(rows_of)
    if contrast == "zscore":
        center = float(np.mean(signed[all_rows]))
        scale = float(np.std(signed[all_rows]))
        if scale == 0.0:
            raise ValueError("contrast='zscore' needs a signed contrast that varies across the selected trials")
    else:
        center, scale = 0.0, 1.0
    columns = {
        "signed_contrast": (signed - center) / scale,
        "previous_choice": prev_choice,
        "win_stay_lose_switch": prev_wsls,
        "bias": np.ones(n_rows),
    }
    if family == "bernoulli":
        target = np.where(choice == -1, 1, 0)
    else:
        target = np.select([choice == 1, choice == -1], [0, 1], default=2)

    design = np.zeros((n_seq, t_max, len(input_names)))
    choices = np.zeros((n_seq, t_max), dtype=np.int64)
    mask = np.zeros((n_seq, t_max), dtype=bool)
    responded = np.zeros((n_seq, t_max), dtype=bool)
    raw_contrast = np.full((n_seq, t_max), np.nan)
    probability_left = np.full((n_seq, t_max), np.nan)
    row_index = np.full((n_seq, t_max), -1, dtype=np.int64)
    rewarded = np.zeros((n_seq, t_max))
    for i, rows in enumerate(rows_of):
        n = len(rows)
        for d, name in enumerate(input_names):
            design[i, :n, d] = columns[name][rows]
        choices[i, :n] = target[rows]
        responded[i, :n] = choice[rows] != 0
        mask[i, :n] = responded[i, :n] if family == "bernoulli" else True
        raw_contrast[i, :n] = signed[rows]
        probability_left[i, :n] = prob_left[rows]
        row_index[i, :n] = rows
        rewarded[i, :n] = feedback[rows] == 1
    return MouseDesign(
        inputs=design,
        choices=choices,
        mask=mask,
        lengths=lengths,
        input_names=input_names,
        session_ids=chosen.copy(),
        signed_contrast=raw_contrast,
        probability_left=probability_left,
        responded=responded,
        row_index=row_index,
        contrast_center=center,
        contrast_scale=scale,
        rewarded=rewarded,
    )


# --- several subjects: the probabilistic selection task (human) ----------------------------------

PST_INPUT_NAMES = ("reward_gap", "previous_choice", "win_stay_lose_switch", "bias")
"""The inputs :func:`pst_design` can build."""

PST_PAIRS = ("AB", "CD", "EF")
"""The stimulus pairs of the PST, from the easiest to the hardest to learn."""

PST_REWARD_PROBABILITIES = {"AB": (0.8, 0.2), "CD": (0.7, 0.3), "EF": (0.6, 0.4)}
"""Probability that choosing (the better, the worse) stimulus of each pair is rewarded."""

_PST_SEQUENCES = ("subject", "subject_pair")


def load_pst_trials() -> dict[str, np.ndarray]:
    """The shipped PST trials of 28 participants, one array per column, in the file's order.

    The learning phase of the probabilistic selection task (Frank et al. 2004, *Science*): on each
    trial a participant sees the two stimuli of one pair, AB, CD or EF, chooses one, and is rewarded
    with the probability of :data:`PST_REWARD_PROBABILITIES` (A 0.8 against B 0.2, C 0.7 against
    D 0.3, E 0.6 against F 0.4), in blocks of 60 trials (20 of each pair) until a criterion. It is
    the example data of HDDM's RLDDM tutorial (HDDM 1.0.1, ``hddm/examples/rlddm_data.csv``);
    reaction times were not kept.

    Order: the rows of a participant are contiguous. Within one pair they are in the order of
    presentation (``pair_trial`` increases); HDDM sorted its file by that number, so how the three
    pairs were interleaved is the file's order (each run of three rows holds one trial of each
    pair) and may not be the presented one. :func:`pst_design` with ``sequences="subject_pair"``
    uses only the exact within-pair order.

    Returns:
        A dict of 5,280-long arrays:

        * ``subject`` (int): HDDM's participant id (28 values between 3 and 80, not contiguous).
        * ``trial`` (int): position of the row among its participant's rows, from 0.
        * ``pair`` (str): ``"AB"``, ``"CD"`` or ``"EF"``.
        * ``pair_trial`` (int): HDDM's trial number within the participant and pair, from 1; it
          skips the trials HDDM's file lacks (60 of them, in 7 participants).
        * ``chose_better`` (int): 1 = the better stimulus (A, C or E) was chosen, 0 = the worse.
        * ``rewarded`` (int): 1 = the choice was rewarded, 0 = not.
    """
    header, rows = _read_data_csv("pst_trials.csv")
    columns = dict(zip(header, zip(*rows, strict=True), strict=True))
    table: dict[str, np.ndarray] = {}
    for name in header:
        if name == "pair":
            table[name] = np.asarray(columns[name], dtype=str)
        else:
            table[name] = np.asarray([int(v) for v in columns[name]], dtype=np.int64)
    return table


class PSTDesign(NamedTuple):
    """PST trials as padded, masked GLM-HMM arrays (N sequences, T = longest sequence).

    Attributes:
        inputs: (N, T, D) float design; padding steps hold zeros.
        choices: (N, T) int Bernoulli targets, 1 = the better stimulus chosen; padding holds zeros.
        mask: (N, T) bool, True on the trials (every trial has a choice), False in padding.
        lengths: (N,) number of trials of each sequence.
        input_names: the D input names, in column order.
        subject_ids: (N,) the participant of each sequence (the ``subject`` value), for
            ``fit_nuts(..., subjects=...)``.
        pair_ids: (N,) the pair of each sequence (``"AB"``, ``"CD"``, ``"EF"``) with
            ``sequences="subject_pair"``, ``"all"`` with ``sequences="subject"``.
        pair_index: (N, T) index of each trial's pair in :data:`PST_PAIRS`, -1 in padding.
        rewarded: (N, T) float, 1.0 where the trial was rewarded, 0.0 where not and in padding (as
            transition inputs, the reward of trial t drives the state of trial t+1).
        row_index: (N, T) the 0-based row of each trial in the input table, -1 for padding.
    """

    inputs: np.ndarray
    choices: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray
    input_names: tuple[str, ...]
    subject_ids: np.ndarray
    pair_ids: np.ndarray
    pair_index: np.ndarray
    rewarded: np.ndarray
    row_index: np.ndarray


def _check_pst_trials(trials: dict[str, np.ndarray]) -> int:
    """Validate a PST trials table; return its number of rows."""
    required = ("subject", "pair", "chose_better", "rewarded")
    missing = [name for name in required if name not in trials]
    if missing:
        raise ValueError(f"trials is missing the column(s) {missing}; it needs {list(required)}")
    n_rows = len(np.asarray(trials["chose_better"]))
    for name in required:
        if np.shape(trials[name]) != (n_rows,):
            raise ValueError(f"trials column {name!r} has shape {np.shape(trials[name])}, expected ({n_rows},)")
    if n_rows == 0:
        raise ValueError("trials has no rows")
    for name in ("chose_better", "rewarded"):
        if not np.all(np.isin(np.asarray(trials[name]), (0, 1))):
            raise ValueError(f"trials column {name!r} must hold 0 or 1")
    if not np.all(np.isin(np.asarray(trials["pair"]), PST_PAIRS)):
        raise ValueError(f"trials column 'pair' must hold one of {PST_PAIRS}")
    return n_rows


def pst_design(
    trials: dict[str, np.ndarray] | None = None,
    *,
    inputs: tuple[str, ...] | list[str] = PST_INPUT_NAMES,
    sequences: str = "subject",
    subjects: tuple[int, ...] | list[int] | None = None,
) -> PSTDesign:
    """A Bernoulli GLM-HMM design for the PST trials, one padded sequence per participant (or pair).

    Target: 1 = the better stimulus of the pair chosen, 0 = the worse (the sides on the screen are
    not recorded, so there is no left/right choice). Every trial has a choice and is in the mask.

    Inputs (columns, in the order given by ``inputs``), in the spirit of Ashwood et al. (2022):

    * ``reward_gap``: the difference of the pair's reward probabilities, better minus worse (0.6 for
      AB, 0.4 for CD, 0.2 for EF), the trial's evidence for the better stimulus; not standardized.
    * ``previous_choice``: +1 if on the participant's previous trial *of the same pair* the better
      stimulus was chosen, -1 if the worse; 0 on the first trial of each pair. The previous trial of
      the same pair is used because only the order within a pair is known exactly (see
      :func:`load_pst_trials`), and because a choice is between the stimuli of one pair.
    * ``win_stay_lose_switch``: ``previous_choice`` times +1 if that same earlier trial was rewarded,
      -1 if not (so +1 means "win-stay / lose-switch points to the better stimulus"); 0 where
      ``previous_choice`` is 0.
    * ``bias``: the constant 1.

    Args:
        trials: a table with the columns of :func:`load_pst_trials` (at least ``subject``, ``pair``,
            ``chose_better``, ``rewarded``), rows of a participant in time order. Defaults to the
            shipped data.
        inputs: names from :data:`PST_INPUT_NAMES`, at least one, without repeats.
        sequences: ``"subject"`` (one sequence per participant, the table's order, which interleaves
            the pairs as the file does) or ``"subject_pair"`` (one sequence per participant and pair,
            in the exact order of presentation; participants in order of first appearance, pairs
            in the order of :data:`PST_PAIRS`).
        subjects: ``subject`` values to keep, in the order wanted; defaults to all, in order of
            first appearance.

    Returns:
        The design as a :class:`PSTDesign`.

    Raises:
        ValueError: on an unknown input name or ``sequences``, repeated or no ``inputs``, a
            ``subjects`` value absent from the table, or a malformed ``trials`` table.
    """
    if sequences not in _PST_SEQUENCES:
        raise ValueError(f"sequences must be one of {_PST_SEQUENCES}, got {sequences!r}")
    if isinstance(inputs, str):
        raise ValueError(f"inputs must be a sequence of input names, got the string {inputs!r}")
    input_names = tuple(inputs)
    unknown = [name for name in input_names if name not in PST_INPUT_NAMES]
    if unknown:
        raise ValueError(f"inputs has unknown name(s) {unknown}; choose from {PST_INPUT_NAMES}")
    if not input_names or len(set(input_names)) != len(input_names):
        raise ValueError(f"inputs must name at least one input, each once, got {input_names}")

    if trials is None:
        trials = load_pst_trials()
    n_rows = _check_pst_trials(trials)
    subject = np.asarray(trials["subject"])
    pair = np.asarray(trials["pair"], dtype=str)
    better = np.asarray(trials["chose_better"], dtype=np.int64)
    reward = np.asarray(trials["rewarded"], dtype=np.int64)
    pair_idx = np.asarray([PST_PAIRS.index(p) for p in pair.tolist()], dtype=np.int64)

    _, first = np.unique(subject, return_index=True)
    present = subject[np.sort(first)]
    if subjects is None:
        chosen = present
    else:
        chosen = np.asarray(list(subjects))
        absent = [s for s in chosen.tolist() if s not in set(present.tolist())]
        if chosen.size == 0 or absent:
            raise ValueError(f"subjects must name subjects of the table, got absent or no value(s) {absent}")

    # Previous choice of the same pair (+1 better, -1 worse, 0 none yet) and its reward, per row.
    prev_choice = np.zeros(n_rows)
    prev_wsls = np.zeros(n_rows)
    for s in chosen:
        for k in range(len(PST_PAIRS)):
            last_choice, last_reward = 0.0, 0.0
            for r in np.flatnonzero((subject == s) & (pair_idx == k)):
                prev_choice[r] = last_choice
                prev_wsls[r] = last_choice * last_reward
                last_choice, last_reward = 2.0 * better[r] - 1.0, 2.0 * reward[r] - 1.0

    if sequences == "subject":
        groups = [(s, "all", np.flatnonzero(subject == s)) for s in chosen]
    else:
        groups = [
            (s, p, rows)
            for s in chosen
            for k, p in enumerate(PST_PAIRS)
            if (rows := np.flatnonzero((subject == s) & (pair_idx == k))).size
        ]
    lengths = np.asarray([len(rows) for _, _, rows in groups], dtype=np.int64)
    n_seq, t_max = len(groups), int(lengths.max())

    gaps = np.asarray([g[0] - g[1] for g in PST_REWARD_PROBABILITIES.values()])
    columns = {
        "reward_gap": np.round(gaps[pair_idx], 12),
        "previous_choice": prev_choice,
        "win_stay_lose_switch": prev_wsls,
        "bias": np.ones(n_rows),
    }
    design = np.zeros((n_seq, t_max, len(input_names)))
    choices = np.zeros((n_seq, t_max), dtype=np.int64)
    mask = np.zeros((n_seq, t_max), dtype=bool)
    pair_index = np.full((n_seq, t_max), -1, dtype=np.int64)
    rewarded = np.zeros((n_seq, t_max))
    row_index = np.full((n_seq, t_max), -1, dtype=np.int64)
    for i, (_, _, rows) in enumerate(groups):
        n = len(rows)
        for d, name in enumerate(input_names):
            design[i, :n, d] = columns[name][rows]
        choices[i, :n] = better[rows]
        mask[i, :n] = True
        pair_index[i, :n] = pair_idx[rows]
        rewarded[i, :n] = reward[rows]
        row_index[i, :n] = rows
    return PSTDesign(
        inputs=design,
        choices=choices,
        mask=mask,
        lengths=lengths,
        input_names=input_names,
        subject_ids=np.asarray([g[0] for g in groups]),
        pair_ids=np.asarray([g[1] for g in groups], dtype=str),
        pair_index=pair_index,
        rewarded=rewarded,
        row_index=row_index,
    )
