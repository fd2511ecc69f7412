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
"""

import csv
from importlib import resources
from typing import NamedTuple

import numpy as np

__all__ = [
    "IBL_INPUT_NAMES",
    "MouseDesign",
    "ibl_design",
    "load_ibl_sessions",
    "load_ibl_trials",
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
