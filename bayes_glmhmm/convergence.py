"""Convergence verdicts of a posterior fit: the numbers, the thresholds, and plain sentences.

A fit's draws are trusted as they are only when every check passes: rank-normalized split R-hat
and bulk / tail effective sample sizes (Vehtari et al. 2021), no divergent transitions, no
transition cut short by the maximum tree depth, no chain stuck in an inferior mode, and (across
subjects) no subject whose states two chains label the other way round
(:func:`bayes_glmhmm.subject_swaps.subject_label_swaps`).

* :func:`sampler_diagnostics`: the numbers, from the draws and the sampler's statistics;
* :class:`ConvergenceThresholds`: where each check draws the line (settable per fit);
* :func:`convergence_problems`: one plain sentence per failed check (an empty list: converged);
* :class:`ConvergenceWarning` and :func:`warn_if_not_converged`: the one warning a fit issues.

The functions are pure (arrays and dicts in, numbers and sentences out), so that
:meth:`bayes_glmhmm.posterior.Posterior.diagnostics`, :func:`bayes_glmhmm.fit.fit_nuts` and the
report (:mod:`bayes_glmhmm.report`, from a saved file) reach the same verdict.
"""

import math
import warnings
from dataclasses import asdict, dataclass, fields

import numpy as np

from bayes_glmhmm.subject_swaps import subject_label_swaps

__all__ = [
    "ConvergenceThresholds",
    "ConvergenceWarning",
    "convergence_message",
    "convergence_problems",
    "sampler_diagnostics",
    "tree_depths",
    "warn_if_not_converged",
]


def tree_depths(max_tree_depth) -> tuple[int, int]:
    """NUTS's maximum tree depth as ``(during warmup, while sampling)``.

    Args:
        max_tree_depth: one depth for both phases, or a pair ``(warmup, sampling)`` (NumPyro's
            convention; a list, as read back from a saved file, too).

    Returns:
        The two depths, each an integer >= 1.

    Raises:
        ValueError: naming ``max_tree_depth``, for anything else.
    """
    pair = tuple(max_tree_depth) if isinstance(max_tree_depth, list | tuple) else (max_tree_depth, max_tree_depth)
    valid = len(pair) == 2 and all(
        isinstance(depth, int | np.integer) and not isinstance(depth, bool) and depth >= 1 for depth in pair
    )
    if not valid:
        raise ValueError(
            f"max_tree_depth must be an integer >= 1 or a pair (warmup, sampling) of them, got {max_tree_depth!r}"
        )
    return int(pair[0]), int(pair[1])


class ConvergenceWarning(UserWarning):
    """A fit whose draws fail a convergence check; the message lists the problems in plain sentences."""


@dataclass(frozen=True)
class ConvergenceThresholds:
    """Where each convergence check draws the line.

    The defaults follow Vehtari et al. (2021): R-hat at most 1.01, and bulk and tail effective
    sample sizes of at least 400 (100 per chain for four chains), which makes the Monte Carlo error
    of a posterior mean about 5% of its posterior sd and the ends of a 90% interval usable. Any
    divergent transition or any transition that reached the maximum tree depth is a problem by
    default (Stan's rule): the first means the sampler could not follow the posterior's geometry
    somewhere, the second that trajectories were cut short.

    Attributes:
        max_rhat: the largest acceptable R-hat of any parameter element (``inf``: no R-hat check).
        min_ess_bulk: the smallest acceptable bulk ESS of any parameter element (0: no check).
        min_ess_tail: the smallest acceptable tail ESS (that of the 5% and 95% quantiles).
        max_divergences: divergent transitions tolerated, over all chains.
        max_tree_depth_fraction: fraction of transitions tolerated at the maximum tree depth.
    """

    max_rhat: float = 1.01
    min_ess_bulk: float = 400.0
    min_ess_tail: float = 400.0
    max_divergences: int = 0
    max_tree_depth_fraction: float = 0.0

    def __post_init__(self):
        def _number(name, minimum, maximum=math.inf):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ValueError(f"ConvergenceThresholds.{name} must be a number, got {value!r}")
            if not minimum <= value <= maximum:
                raise ValueError(f"ConvergenceThresholds.{name} must lie in [{minimum}, {maximum}], got {value!r}")

        _number("max_rhat", 1.0)
        _number("min_ess_bulk", 0.0)
        _number("min_ess_tail", 0.0)
        _number("max_divergences", 0)
        _number("max_tree_depth_fraction", 0.0, 1.0)

    @classmethod
    def from_value(cls, value) -> "ConvergenceThresholds":
        """Thresholds from None (the defaults), a :class:`ConvergenceThresholds` or a dict of some of its fields.

        Raises:
            ValueError: for another type, an unknown field or a value out of range.
        """
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = sorted(set(value) - {f.name for f in fields(cls)})
            if unknown:
                raise ValueError(f"convergence thresholds: unknown fields {unknown}")
            return cls(**value)
        raise ValueError(f"convergence must be None, a ConvergenceThresholds or a dict, got {type(value).__name__}")

    @classmethod
    def from_settings(cls, settings: dict | None) -> "ConvergenceThresholds":
        """The thresholds a posterior's ``settings`` record (``convergence_thresholds``), else the defaults."""
        recorded = (settings or {}).get("convergence_thresholds")
        return cls.from_value(None if recorded is None else dict(recorded))

    def as_dict(self) -> dict:
        """The thresholds as a JSON-ready dict (what ``posterior.settings["convergence_thresholds"]`` holds)."""
        return asdict(self)

    def describe(self) -> str:
        """The checks in words, e.g. for a report's "converged" line."""
        divergences = (
            "no divergent transitions"
            if self.max_divergences == 0
            else f"at most {self.max_divergences} divergent transitions"
        )
        depth = (
            "no transition at the maximum tree depth"
            if self.max_tree_depth_fraction == 0
            else f"at most {100 * self.max_tree_depth_fraction:.3g}% of transitions at the maximum tree depth"
        )
        return (
            f"R-hat ≤ {self.max_rhat:g}, bulk ESS ≥ {self.min_ess_bulk:g}, tail ESS ≥ {self.min_ess_tail:g}, "
            f"{divergences}, {depth}, no stuck chain"
        )


def _extreme(dataset, names, reducer) -> float:
    """The largest or smallest finite value over every element of the named variables (NaN if none is finite)."""
    values = np.concatenate([np.ravel(np.asarray(dataset[name].values, dtype=float)) for name in names])
    finite = values[np.isfinite(values)]
    return float(reducer(finite)) if finite.size else float("nan")


def sampler_diagnostics(
    samples: dict,
    sample_stats: dict | None = None,
    *,
    max_tree_depth: int | tuple[int, int] | None = None,
    stuck_chains=(),
    stuck_threshold: float = float("nan"),
    dropped_stuck_chains=(),
    subject_names=None,
) -> dict:
    """The numbers every convergence check needs, from the draws and the sampler's statistics.

    Constant parameter elements (the zero diagonal of transition weights, a K = 1 transition
    matrix) have no between- or within-chain variance: their R-hat and ESS are NaN and left out.
    With one chain R-hat is NaN (it compares chains), while ESS is still computed.

    Args:
        samples: dict of (chain, draw, ...) arrays, one per parameter.
        sample_stats: dict of (chain, draw) arrays; ``diverging``, ``tree_depth`` and ``lp`` (log
            density) are used when present.
        max_tree_depth: the sampler's maximum tree depth, if known (a pair ``(warmup, sampling)``:
            the draws are judged against the second, see :func:`tree_depths`).
        stuck_chains: chains flagged as stuck (see :func:`bayes_glmhmm.posterior.detect_stuck_chains`).
        stuck_threshold: the threshold (nats below the best chain's median log density) used for that.
        dropped_stuck_chains: stuck chains that were removed from ``samples``.
        subject_names: the S subject ids of a hierarchical posterior (``samples`` with
            ``subject_weights`` and ``subject_biases``), to name swapped subjects; their indices
            (as text) when not given.

    Returns:
        A dict: ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail`` (NaN when not computable),
        ``divergences``, ``tree_depth_saturated`` (transitions whose tree reached
        ``max_tree_depth``; 0 when unknown), ``max_tree_depth``, ``num_chains``, ``num_draws``,
        ``stuck_chains``, ``stuck_threshold``, ``stuck_gaps`` (nats by which each stuck chain's
        median log density lies below the best chain's; empty when the log density is not given),
        ``dropped_stuck_chains`` and ``subject_label_swaps`` (see :func:`_label_swaps`; empty
        without subjects or with one chain).
    """
    import arviz as az

    sample_stats = sample_stats or {}
    names = list(samples)
    first = np.asarray(samples[names[0]])
    num_chains, num_draws = int(first.shape[0]), int(first.shape[1])
    dataset = az.convert_to_dataset({name: np.asarray(samples[name]) for name in names})
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        # ArviZ warns (RuntimeWarning) about the constant elements left out below.
        warnings.simplefilter("ignore", RuntimeWarning)
        rhat = az.rhat(dataset)
        ess_bulk = az.ess(dataset, method="bulk")
        ess_tail = az.ess(dataset, method="tail")
    saturated = 0
    if max_tree_depth is not None:
        max_tree_depth = tree_depths(max_tree_depth)[1]
    if max_tree_depth is not None and "tree_depth" in sample_stats:
        saturated = int(np.sum(np.asarray(sample_stats["tree_depth"]) >= int(max_tree_depth)))
    stuck_chains = [int(c) for c in stuck_chains]
    gaps = []
    if stuck_chains and "lp" in sample_stats:
        medians = np.median(np.asarray(sample_stats["lp"], dtype=float), axis=1)
        gaps = [float(medians.max() - medians[c]) for c in stuck_chains]
    return {
        "max_rhat": _extreme(rhat, names, np.max),
        "min_ess_bulk": _extreme(ess_bulk, names, np.min),
        "min_ess_tail": _extreme(ess_tail, names, np.min),
        "divergences": int(np.sum(sample_stats["diverging"])) if "diverging" in sample_stats else 0,
        "tree_depth_saturated": saturated,
        "max_tree_depth": None if max_tree_depth is None else int(max_tree_depth),
        "num_chains": num_chains,
        "num_draws": num_draws,
        "stuck_chains": stuck_chains,
        "stuck_threshold": float(stuck_threshold),
        "stuck_gaps": gaps,
        "dropped_stuck_chains": [int(c) for c in dropped_stuck_chains],
        "subject_label_swaps": _label_swaps(samples, sample_stats, subject_names),
    }


def _label_swaps(samples: dict, sample_stats: dict, subject_names) -> list[dict]:
    """The within-subject label swaps of a hierarchical posterior, as JSON-ready dicts.

    Each chain is compared with the chain of the best median log density (``sample_stats["lp"]``;
    chain 0 without it), see :func:`~bayes_glmhmm.subject_swaps.subject_label_swaps`. A dict per
    swap: ``subject`` (its id), ``subject_index``, ``chain``, ``reference_chain``,
    ``permutation`` (``chain``'s state ``permutation[k]`` is ``reference_chain``'s state k),
    ``identity_distance`` and ``matched_distance`` (posterior sds).
    """
    if "subject_weights" not in samples or "subject_biases" not in samples:
        return []
    reference = 0
    if "lp" in sample_stats:
        reference = int(np.argmax(np.median(np.asarray(sample_stats["lp"], dtype=float), axis=1)))
    swaps = subject_label_swaps(
        np.asarray(samples["subject_weights"]), np.asarray(samples["subject_biases"]), reference_chain=reference
    )
    return [
        swap._asdict()
        | {
            "subject": str(swap.subject if subject_names is None else subject_names[swap.subject]),
            "subject_index": swap.subject,
            "permutation": list(swap.permutation),
        }
        for swap in swaps
    ]


def _ess_problem(kind: str, value, minimum: float, num_chains: int, num_draws: int, purpose: str) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        if minimum <= 0:
            return None
        return (
            f"the {kind} ESS could not be computed from {num_chains} x {num_draws} draws (at least 4 per chain "
            "are needed): nothing is known of the Monte Carlo error; draw more samples"
        )
    if value < minimum:
        return (
            f"min {kind} ESS {value:.0f} < {minimum:g}: too few effectively independent draws for {purpose}; "
            "draw more samples (num_samples, or max_samples to sample until converged; --samples, --max-samples "
            "on the command line) or run more chains"
        )
    return None


def convergence_problems(diagnostics: dict, thresholds: ConvergenceThresholds | None = None) -> list[str]:
    """One plain sentence per failed convergence check; an empty list means converged.

    Args:
        diagnostics: the numbers, as :func:`sampler_diagnostics` (or
            :meth:`~bayes_glmhmm.posterior.Posterior.diagnostics`) returns them. Keys that are
            absent are not checked, except ``max_rhat``, ``min_ess_bulk`` and ``min_ess_tail``.
            ``num_chains`` and ``num_draws`` give the number of transitions.
        thresholds: the :class:`ConvergenceThresholds` (the defaults when None).

    Returns:
        Sentences in a fixed order: R-hat, bulk ESS, tail ESS, divergences, tree depth, stuck
        chains, gaps in a tempering ladder (``swap_acceptance``, the exchange acceptance of each
        adjacent pair of rungs, when the fit was tempered), subjects whose states chains label the
        other way round (``subject_label_swaps``), dropped stuck chains. A NaN R-hat (one chain)
        is no problem; a NaN ESS is one (unless its threshold is 0).
    """
    thresholds = ConvergenceThresholds() if thresholds is None else thresholds
    num_chains = int(diagnostics.get("num_chains", 0))
    num_draws = int(diagnostics.get("num_draws", 0))
    transitions = num_chains * num_draws
    problems = []
    rhat = diagnostics["max_rhat"]
    if rhat is not None and math.isfinite(rhat) and rhat > thresholds.max_rhat:
        problems.append(
            f"max R-hat {rhat:.3f} > {thresholds.max_rhat:g}: the chains disagree (or a chain drifts), so they "
            "have not all reached the same posterior; run longer chains (max_samples samples until converged), and "
            "look for several modes or label switching (chains that sit in different modes: "
            "fit_nuts(..., tempering=4) lets them move between modes)"
        )
    for kind, purpose in (("bulk", "reliable posterior means and sds"), ("tail", "reliable interval ends")):
        minimum = getattr(thresholds, f"min_ess_{kind}")
        problem = _ess_problem(kind, diagnostics[f"min_ess_{kind}"], minimum, num_chains, num_draws, purpose)
        if problem is not None:
            problems.append(problem)
    divergences = int(diagnostics.get("divergences", 0))
    if divergences > thresholds.max_divergences:
        problems.append(
            f"{divergences} of {transitions} transitions diverged: the sampler could not follow the posterior's "
            "geometry there and may have missed part of it; raise target_accept_prob (e.g. 0.95)"
        )
    saturated = int(diagnostics.get("tree_depth_saturated", 0))
    depth = diagnostics.get("max_tree_depth")
    if transitions and saturated / transitions > thresholds.max_tree_depth_fraction:
        problems.append(
            f"{100 * saturated / transitions:.3g}% of transitions ({saturated} of {transitions}) hit the maximum "
            f"tree depth {depth}: their trajectories were cut short and the chains explore slowly; raise "
            "max_tree_depth"
        )
    stuck = list(diagnostics.get("stuck_chains", []))
    if stuck:
        gaps = list(diagnostics.get("stuck_gaps", []))
        threshold = diagnostics.get("stuck_threshold", float("nan"))
        where = ""
        if len(gaps) == len(stuck):
            where = f": median log density {', '.join(f'{gap:.1f}' for gap in gaps)} nats below the best chain's"
            if threshold is not None and math.isfinite(threshold):
                where += f" (threshold {threshold:.1f})"
        problems.append(
            f"chain(s) {stuck} look stuck in an inferior mode{where}; their draws are kept: drop them "
            "(on_stuck='drop' or Posterior.drop_chains), start the chains elsewhere, or let them move between "
            "modes (fit_nuts(..., tempering=4))"
        )
    problems += _ladder_gaps(diagnostics.get("swap_acceptance"), num_draws)
    problems += _swapped_subjects(diagnostics.get("subject_label_swaps"))
    dropped = list(diagnostics.get("dropped_stuck_chains", []))
    if dropped:
        problems.append(
            f"chain(s) {dropped} were stuck in an inferior mode and were dropped: the draws are those of the "
            "other chains, which found a better mode; check that it is the main one"
        )
    return problems


#: A tempering ladder needs states to cross every pair of adjacent rungs often: at acceptance a, the
#: even-odd scheme proposes each pair every other step, so N kept steps see about a N / 2 crossings.
MIN_LADDER_CROSSINGS = 20


def _ladder_gaps(swap_acceptance, num_draws: int) -> list[str]:
    """The problem of a tempering ladder with a pair of rungs that states rarely cross (none without tempering)."""
    if not swap_acceptance or not num_draws:
        return []
    rates = list(swap_acceptance)
    gaps = [pair for pair, rate in enumerate(rates) if rate * num_draws / 2 < MIN_LADDER_CROSSINGS]
    if not gaps:
        return []
    listed = ", ".join(f"{pair}-{pair + 1} ({rates[pair]:.3f})" for pair in gaps)
    return [
        f"the tempering ladder has gaps: states rarely move between rungs {listed} (exchange acceptance, fewer "
        f"than {MIN_LADDER_CROSSINGS} expected crossings in {num_draws} draws), so modes found by the hot rungs "
        "may not reach the posterior's; use more temperatures (tempering=L with a larger L) or run longer"
    ]


def _swapped_subjects(swaps) -> list[str]:
    """The problem of subjects whose states chains label the other way round (none without such swaps)."""
    if not swaps:
        return []
    described = []
    for swap in swaps:
        moved = [k for k, state in enumerate(swap["permutation"]) if state != k]
        theirs = ", ".join(str(swap["permutation"][k]) for k in moved)
        ours = ", ".join(str(k) for k in moved)
        described.append(
            f"subject {swap['subject']!r} (chain {swap['chain']}'s states {theirs} are chain "
            f"{swap['reference_chain']}'s {ours})"
        )
    return [
        f"the chains disagree on which of a subject's states is which: {'; '.join(described)}; that is a "
        "different mode of the subject's parameters, not a symmetry, and relabeling (which permutes whole draws "
        "by the population parameters) cannot fix it; run longer chains, drop the disagreeing chains "
        "(Posterior.drop_chains), or start the chains from a common point"
    ]


def convergence_message(problems: list[str]) -> str:
    """The text of a :class:`ConvergenceWarning`: a headline and one line per problem."""
    lines = [f"the posterior has not converged ({len(problems)} problem{'s' * (len(problems) != 1)}):"]
    lines += [f"- {problem}" for problem in problems]
    return "\n".join(lines)


def warn_if_not_converged(problems: list[str], stacklevel: int = 2) -> None:
    """Issue one :class:`ConvergenceWarning` listing ``problems``; nothing when the list is empty.

    Args:
        problems: sentences from :func:`convergence_problems`.
        stacklevel: as for :func:`warnings.warn`, counted from the caller of this function (2: its caller's caller).
    """
    if problems:
        warnings.warn(convergence_message(problems), ConvergenceWarning, stacklevel=stacklevel + 1)
