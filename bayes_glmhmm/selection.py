"""Choosing the number of states K: held-out sequences, PSIS-LOO and bits per trial.

:func:`select_num_states` fits K = 1, 2, ... and scores each K by how well it predicts whole
sequences (sessions) it was not fitted to, the Bayesian way and the field's way side by side:

- **Bayes, PSIS-LOO** (``method="loo"``): one posterior per K on all sequences, then
  leave-one-sequence-out by Pareto-smoothed importance sampling (ArviZ's ``loo`` on the
  per-sequence log-likelihoods of every draw). Sequences whose Pareto k exceeds 0.7, where the
  importance-sampling estimate is unreliable, are refitted exactly without that sequence (as
  ``az.reloo`` does); when there are more of them than ``max_refits``, they are left out in
  ``max_refits`` groups instead (leave-group-out, as in k-fold). Refits start warm from the full
  posterior's draws: no EM, a quarter of the warmup.
- **Bayes, k-fold** (``method="kfold"``): one posterior per K and fold of held-out sequences,
  scored by the posterior predictive density of the held-out sequences.
- **EM, k-fold** (always): the field's protocol (Ashwood et al. 2022; Bolkan, Stone et al. 2022):
  maximum-likelihood EM with restarts on the training sequences of each fold, scored by the
  plug-in log-likelihood of the held-out sequences.

Each fold holds the same arrays as the whole data set, its held-out sequences masked, so one
compiled program serves every fold (a fully masked sequence contributes exactly nothing to the
likelihood). Scores are reported as expected log predictive density (elpd, nats), as bits per
trial over the family's one-state baseline (:attr:`EmissionFamily.baseline`) as the field
reports them, and, for choices, as the accuracy of the one-step-ahead predictive choice.
"""

import time
import warnings
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.scipy.special import logsumexp

from bayes_glmhmm.convergence import ConvergenceWarning, tree_depths
from bayes_glmhmm.em import fit_em
from bayes_glmhmm.emissions import EmissionFamily, family_of, resolve_family
from bayes_glmhmm.fit import fit_nuts
from bayes_glmhmm.folds import fold_assignment
from bayes_glmhmm.inference import hmm_filter
from bayes_glmhmm.model import batched_log_likelihoods, batched_transitions
from bayes_glmhmm.params import validate_data
from bayes_glmhmm.posterior import Posterior, _draw_chunks, _loglik_per_draw
from bayes_glmhmm.standardize import fit_standardization, needs_standardization
from bayes_glmhmm.transitions import validate_transition_inputs

__all__ = [
    "RULES",
    "SELECTION_TREE_DEPTH",
    "Selection",
    "baseline_log_likelihood",
    "bits_per_trial",
    "choose",
    "fold_assignment",
    "one_step_predictive",
    "select_num_states",
]

RULES = {
    "one_se": "the smallest K whose elpd is within one standard error (of its difference) of the best K's",
    "max": "the K with the highest elpd",
}
PARETO_K_THRESHOLD = 0.7
#: Differences of elpd to the best K smaller than this many Monte Carlo SEs are warned about: the
#: draws' own error could reorder the two K's.
MONTE_CARLO_RESOLUTION = 2.0
#: NUTS's maximum tree depth of every fit of a selection, (during warmup, while drawing). A
#: selection fits K beyond the data's, whose redundant states make early warmup build trees of up
#: to 2^10 steps. On 50 Bernoulli sessions (9,791 trials, true K = 3), 4 x (200 + 200), a warmup
#: depth of 6 cut the gradients per warmup iteration from 88 to 43 at K = 4 and from 116 to 50
#: at K = 5, a fit's gradients by 37% and 42%, and changed nothing at K = 1-3 (the cap never
#: bound); the in-sample PSIS-LOO elpd moved by 0.8 nats (its SE 96); bulk ESS 62 against 97
#: (K = 4) and 198 against 96 (K = 5) (``results/benchmarks/selection_cost_by_k*.md``). The
#: draws' trees stay free to depth 10.
SELECTION_TREE_DEPTH = (6, 10)
_MIN_REFIT_WARMUP = 100
_LN2 = float(np.log(2.0))
# The columns of the Bayesian and of the EM score, in the order of _score_columns.
_BAYES_SCORE_COLUMNS = (
    "elpd",
    "elpd_se",
    "elpd_diff",
    "elpd_diff_se",
    "bits_per_trial",
    "bits_per_trial_se",
    "accuracy",
)
_EM_SCORE_COLUMNS = tuple(
    "em_" + name
    for name in ("loglik", "loglik_se", "diff", "diff_se", "bits_per_trial", "bits_per_trial_se", "accuracy")
)


# ---------------------------------------------------------------------------------------------
# Baselines and the bits-per-trial formula (the folds are in bayes_glmhmm.folds)


def baseline_log_likelihood(family: EmissionFamily, inputs, emissions, train_mask, test_mask) -> np.ndarray:
    """Per-sequence log-likelihood of the test steps under the family's baseline fitted to the training steps.

    Args:
        family: the emission family (its :attr:`~EmissionFamily.baseline`).
        inputs: (N, T, D) covariates.
        emissions: (N, T) observations in the family's coding.
        train_mask: (N, T) the steps the baseline is fitted to.
        test_mask: (N, T) the steps it is scored on.

    Returns:
        (N,) float64: sum over each sequence's test steps of log p(y | baseline); 0 without test steps.
    """
    inputs, emissions = np.asarray(inputs), np.asarray(emissions)
    train_mask, test_mask = np.asarray(train_mask, bool), np.asarray(test_mask, bool)
    step_values = family.baseline(inputs[train_mask], emissions[train_mask], inputs[test_mask], emissions[test_mask])
    per_step = np.zeros(emissions.shape)
    per_step[test_mask] = step_values
    return per_step.sum(axis=1)


def _held_out_baseline(family: EmissionFamily, inputs, emissions, observed, groups) -> np.ndarray:
    """(N,) baseline log-likelihood of each sequence with its group (fold, or itself) held out."""
    result = np.zeros(emissions.shape[0])
    for group in np.unique(groups):
        held_out = (groups == group)[:, None] & observed
        result += baseline_log_likelihood(family, inputs, emissions, observed & ~held_out, held_out)
    return result


def bits_per_trial(log_likelihood_total: float, baseline_total: float, num_trials: int) -> float:
    """The field's normalized held-out log-likelihood: (LL - LL_baseline) / (num_trials * ln 2).

    Both log-likelihoods in nats, summed over the same ``num_trials`` held-out trials (Ashwood et
    al. 2022, Eq. 8). Positive: the model predicts better than the baseline, by that many bits
    per trial.
    """
    if num_trials <= 0:
        raise ValueError(f"num_trials must be positive, got {num_trials}")
    return (float(log_likelihood_total) - float(baseline_total)) / (num_trials * _LN2)


def _total_and_se(values) -> tuple[float, float]:
    """Sum over sequences and its standard error sqrt(N var) (ArviZ's convention for elpd)."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.sum()), float(np.sqrt(values.size * np.var(values)))


def elpd_monte_carlo_variance(per_draw_loglik, log_weights=None, num_chains: int = 1) -> np.ndarray:
    """Monte Carlo variance of each sequence's elpd estimate, log sum_s w[s] p(y[n] | theta_s).

    The elpd of a held-out sequence (k-fold) or of a left-out one (PSIS-LOO) is estimated from a
    finite number of posterior draws; a long sequence's likelihoods p(y[n] | theta_s) spread over
    many orders of magnitude, so few draws can dominate the average. By the delta method (as the
    ``loo`` package's ``mcse_elpd_loo``, Vehtari, Gelman and Gabry 2017), with normalized weights
    w[s], E = sum_s w[s] p_s and ratios r_s = p_s / E,

        Var(log E) ~ sum_s w[s]^2 (r_s - 1)^2 / r_eff,

    where r_eff = ESS / S is the relative efficiency of the draws' likelihoods (their
    autocorrelation within chains, ArviZ's mean ESS). With equal weights (draws of a posterior that
    never saw the sequence) this is Var_s(p_s) / (ESS E^2).

    Args:
        per_draw_loglik: (S, N) log p(y[n] | theta_s), the draws in chain order (``num_chains``
            chains of S / ``num_chains`` draws each).
        log_weights: (S, N) importance log weights (PSIS-LOO's, normalized or not), or None for
            equal weights.
        num_chains: how many chains the S draws come from (for the ESS).

    Returns:
        (N,) variances (nats squared) of the per-sequence estimates; the variance of their sum is
        their sum (the draws' errors for different sequences are treated as independent).
    """
    import arviz as az
    from scipy.special import logsumexp as logsumexp_float64

    loglik = np.asarray(per_draw_loglik, np.float64)
    num_draws, num_sequences = loglik.shape
    if log_weights is None:
        log_weights = np.full(loglik.shape, -np.log(num_draws))
    log_weights = np.asarray(log_weights, np.float64)
    log_weights = log_weights - logsumexp_float64(log_weights, axis=0)
    log_estimate = logsumexp_float64(log_weights + loglik, axis=0)
    ratios = np.exp(loglik - log_estimate)
    per_draw = num_draws // num_chains
    if num_draws < 4 or per_draw * num_chains != num_draws:
        relative_efficiency = np.ones(num_sequences)
    else:
        scaled = np.exp(loglik - loglik.max(axis=0)).reshape(num_chains, per_draw, num_sequences)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ess = np.asarray(az.ess(az.convert_to_dataset(scaled), method="mean")["x"].values, np.float64)
        relative_efficiency = np.where(np.isfinite(ess) & (ess > 0), ess / num_draws, 1.0)
    return np.sum(np.exp(2.0 * log_weights) * (ratios - 1.0) ** 2, axis=0) / relative_efficiency


# ---------------------------------------------------------------------------------------------
# One-step-ahead predictive probabilities (predictive accuracy)


@jax.jit
def _one_step_per_draw(params, inputs, emissions, mask, transition_inputs=None):
    """For each draw: log p(y[n, :t] | theta) (N, T) and p(y[n, t] = c | y[n, :t], theta) (N, T, C)."""
    family = family_of(params)

    def _one_draw(draw_params):
        log_likelihoods = batched_log_likelihoods(draw_params, inputs, emissions)
        transitions, transition_axis = batched_transitions(draw_params, transition_inputs)
        filtered = jax.vmap(hmm_filter, in_axes=(None, transition_axis, 0, 0))(
            draw_params.initial_probs, transitions, log_likelihoods, mask
        )
        predicted = filtered.predicted_probs
        step_log = logsumexp(jnp.log(jnp.maximum(predicted, 1e-37)) + log_likelihoods, axis=-1)
        step_log = jnp.where(mask, step_log, 0.0)
        log_before = jnp.cumsum(step_log, axis=1) - step_log
        means = family.mean(draw_params, inputs)
        if means.ndim == predicted.ndim:  # p(y = 1) per state: the classes are (0, 1)
            means = jnp.stack([1.0 - means, means], axis=-1)
        return log_before, jnp.einsum("ntk,ntkc->ntc", predicted, means)

    return jax.vmap(_one_draw)(params)


def one_step_predictive(params, inputs, emissions, mask, transition_inputs=None, log_weights=None, chunk_size=200):
    """Posterior one-step-ahead class probabilities p(y[n, t] = c | y[n, :t], x, data), (N, T, C).

    The exact predictive of each step given the sequence's earlier steps and the data the draws
    came from: sum_s w[s, n, t] p(y[n, t] = c | y[n, :t], theta_s), with w[s, n, t] proportional
    to exp(log_weights[s, n]) p(y[n, :t] | theta_s). ``log_weights`` are importance weights of
    each draw for each sequence (PSIS-LOO's, to leave the sequence out), zero by default (draws
    from a posterior that never saw the sequence). Its log is the sequence's chain-rule term of
    the log predictive density. For families whose mean is a class probability (Bernoulli,
    categorical); the Bernoulli's classes are (0, 1).

    Args:
        params: draws, the family's params NamedTuple with a leading draw axis.
        inputs: (N, T, D) validated covariates.
        emissions: (N, T) observations in the family's coding.
        mask: (N, T), False where a step is missing or held back.
        transition_inputs: (N, T, M) for input-driven transitions.
        log_weights: (S, N) importance log weights, or None.
        chunk_size: draws per compiled call.

    Returns:
        (N, T, C) float64 predictive probabilities.
    """
    num_draws = int(jax.tree.leaves(params)[0].shape[0])
    if log_weights is None:
        log_weights = np.zeros((num_draws, emissions.shape[0]))
    log_weights = np.asarray(log_weights, dtype=np.float64)
    running_max, numerator, denominator = None, None, None
    for start, stop, chunk in _draw_chunks(params, chunk_size):
        log_before, probabilities = _one_step_per_draw(chunk, inputs, emissions, mask, transition_inputs)
        log_w = log_weights[start:stop, :, None] + np.asarray(log_before, dtype=np.float64)
        chunk_max = log_w.max(axis=0)
        new_max = chunk_max if running_max is None else np.maximum(running_max, chunk_max)
        weights = np.exp(log_w - new_max)
        chunk_numerator = np.einsum("snt,sntc->ntc", weights, np.asarray(probabilities, np.float64))
        if running_max is None:
            numerator, denominator = chunk_numerator, weights.sum(axis=0)
        else:
            rescale = np.exp(running_max - new_max)
            numerator = numerator * rescale[..., None] + chunk_numerator
            denominator = denominator * rescale + weights.sum(axis=0)
        running_max = new_max
    return numerator / denominator[..., None]


def _correct_choices(probabilities: np.ndarray, emissions, mask) -> np.ndarray:
    """(N,) number of observed steps whose most probable predicted class is the observed one."""
    predicted = np.argmax(probabilities, axis=-1)
    return np.sum((predicted == np.asarray(emissions).astype(int)) & np.asarray(mask, bool), axis=1)


# ---------------------------------------------------------------------------------------------
# The choice rule


def choose(elpd, elpd_diff_se, states, rule: str = "one_se") -> int:
    """The chosen K under ``rule`` (see :data:`RULES`).

    Args:
        elpd: (len(states),) elpd (or any higher-is-better total) of each K.
        elpd_diff_se: (len(states),) standard error of each K's difference from the best K (0 for
            the best itself).
        states: the K values.
        rule: ``"one_se"`` (the smallest K within one standard error of the best) or ``"max"``.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {sorted(RULES)}, got {rule!r}")
    elpd, elpd_diff_se = np.asarray(elpd, dtype=float), np.asarray(elpd_diff_se, dtype=float)
    best = int(np.nanargmax(elpd))
    if rule == "max":
        return int(states[best])
    close = np.flatnonzero(elpd >= elpd[best] - np.nan_to_num(elpd_diff_se))
    return int(min(states[i] for i in close))


def _differences(pointwise: dict, states) -> tuple[np.ndarray, np.ndarray]:
    """Difference of each K's total from the best K's, and its paired standard error."""
    totals = np.array([pointwise[k].sum() for k in states])
    best = states[int(np.nanargmax(totals))]
    diffs, ses = [], []
    for k in states:
        total, se = _total_and_se(pointwise[best] - pointwise[k])
        diffs.append(total)
        ses.append(se)
    return np.array(diffs), np.array(ses)


# ---------------------------------------------------------------------------------------------
# The result


@dataclass
class Selection:
    """Outcome of :func:`select_num_states`.

    Attributes:
        table: one row per K (pandas DataFrame indexed by ``num_states``). Bayes columns:
            ``elpd`` (PSIS-LOO or k-fold, nats), ``elpd_se``, ``elpd_diff`` and ``elpd_diff_se``
            (to the best K, paired), ``bits_per_trial`` and its ``_se``, ``accuracy`` (choices),
            ``elpd_mc_se`` and ``elpd_diff_mc_se`` (the Monte Carlo SE of the elpd from the finite
            posterior draws, and of its difference to the best K; see
            :func:`elpd_monte_carlo_variance`), ``stacking_weight``; PSIS-LOO adds ``p_loo``,
            ``max_pareto_k``, ``num_high_pareto_k``
            (above 0.7 before refitting), ``num_refits`` (sequences refitted), ``refit_fits`` (the
            refits run; fewer than ``num_refits`` when sequences were left out in groups),
            ``num_unreliable`` (above 0.7 and not refitted), ``refit_seconds`` (the refits' wall
            time, part of ``nuts_seconds``). EM k-fold columns: ``em_loglik``,
            ``em_loglik_se``, ``em_diff``, ``em_diff_se``, ``em_bits_per_trial`` and its ``_se``,
            ``em_accuracy``. Convergence:
            ``max_rhat``, ``min_ess_bulk``, ``divergences`` (worst over the K's fits),
            ``unconverged_fits`` of ``num_fits`` (fits whose verdict is not converged),
            ``gradients_per_chain`` (leapfrog steps of warmup and drawing, mean over chains, summed
            over the K's fits: the sampler's work), and ``nuts_seconds`` (the K's fits, PSIS and
            scoring), ``em_seconds`` (EM k-fold).
        best: the K chosen for the Bayesian score under ``rule``.
        best_em: the K chosen for the EM k-fold score under the same rule.
        rule: the rule's key; :attr:`rule_text` states it.
        method: ``"loo"`` or ``"kfold"``.
        states: the K values compared.
        folds: (N,) the fold of each sequence (EM, and Bayes with k-fold).
        pointwise: per K, per-sequence arrays: ``elpd``, ``baseline`` (the family's baseline fitted
            without the sequence's fold, for Bayes and EM alike), ``em_loglik``, ``em_baseline``
            (the same), ``trials``, ``elpd_mc_var`` (the Monte Carlo variance of each elpd), and for choices
            ``correct`` and ``em_correct``; PSIS-LOO adds ``pareto_k`` (before refitting) and
            ``refitted`` (bool).
        posteriors: PSIS-LOO: the posterior of each K on all sequences; k-fold: empty.
        baseline_name: what the baseline of the bits per trial is.
        settings: the arguments that shaped the result.
        wall_seconds: ``total`` and per K.
    """

    table: pd.DataFrame
    best: int
    best_em: int
    rule: str
    method: str
    states: tuple
    folds: np.ndarray
    pointwise: dict
    posteriors: dict = field(default_factory=dict)
    baseline_name: str = ""
    settings: dict = field(default_factory=dict)
    wall_seconds: dict = field(default_factory=dict)

    @property
    def rule_text(self) -> str:
        """The rule for :attr:`best`, in words."""
        return RULES[self.rule]

    def chosen(self, rule: str = "one_se", score: str = "elpd") -> int:
        """The K chosen under another rule, for the Bayesian score (``"elpd"``) or EM's (``"em_loglik"``)."""
        if score not in ("elpd", "em_loglik"):
            raise ValueError(f"score must be 'elpd' or 'em_loglik', got {score!r}")
        diff_se = self.table["elpd_diff_se" if score == "elpd" else "em_diff_se"]
        return choose(self.table[score].to_numpy(), diff_se.to_numpy(), list(self.states), rule)

    def __repr__(self) -> str:
        columns = ["elpd", "elpd_se", "elpd_diff", "elpd_diff_se", "bits_per_trial", "em_bits_per_trial"]
        return (
            f"Selection(method={self.method!r}, best={self.best}, best_em={self.best_em}, rule={self.rule!r})\n"
            f"{self.table[columns].to_string()}"
        )


# ---------------------------------------------------------------------------------------------
# The fits


def _validated_states(states) -> tuple[int, ...]:
    try:
        values = tuple(states)
    except TypeError:
        raise ValueError(f"states must be a sequence of integers >= 1, got {states!r}") from None
    if not values or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in values):
        raise ValueError(f"states must be a non-empty sequence of integers >= 1, got {states!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"states must not repeat a value, got {states!r}")
    return tuple(sorted(int(k) for k in values))


def _observed_steps(mask, lengths, emissions_shape) -> np.ndarray:
    observed = np.asarray(mask, bool)
    if lengths is not None:
        lengths = np.asarray(lengths)
        if lengths.shape != (emissions_shape[0],) or np.any(lengths < 1) or np.any(lengths > emissions_shape[1]):
            raise ValueError(f"lengths must hold one length in [1, {emissions_shape[1]}] per sequence, got {lengths}")
        observed = observed & (np.arange(emissions_shape[1])[None, :] < lengths[:, None])
    return observed


def _resolved_standardize(standardize, inputs, emissions, observed, family: EmissionFamily):
    """Decide ``standardize="auto"`` once, on all the data, so that every fold is fitted alike."""
    if standardize != "auto":
        return standardize
    standardization = fit_standardization(inputs, emissions, observed, emissions_too=family.standardizes_emissions)
    return bool(needs_standardization(standardization))


def _subset(arrays: tuple, index: np.ndarray) -> tuple:
    return tuple(None if a is None else jnp.asarray(np.asarray(a)[index]) for a in arrays)


def _padded_index(members: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Sequences padded to ``size`` by repeating the first, and which entries are real (the copies masked out)."""
    padded = np.concatenate([members, np.full(size - members.size, members[0], dtype=int)])
    return padded, np.arange(size) < members.size


def _fold_index(folds: np.ndarray, fold: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The fold's sequences, padded to ``size`` (:func:`_padded_index`)."""
    return _padded_index(np.flatnonzero(folds == fold), size)


def _gradients_per_chain(posterior: Posterior) -> float:
    """Leapfrog steps (gradients of the potential) of warmup and drawing together, mean over chains."""
    warmup = np.asarray(posterior.settings["warmup_gradients"], np.float64)
    drawing = np.sum(np.asarray(posterior.sample_stats["n_steps"], np.float64), axis=-1)
    return float(np.mean(warmup + drawing))


def _fit_summary(posterior: Posterior) -> dict:
    diagnostics = posterior.diagnostics()
    return {
        "gradients_per_chain": _gradients_per_chain(posterior),
        "max_rhat": diagnostics["max_rhat"],
        "min_ess_bulk": diagnostics["min_ess_bulk"],
        "divergences": diagnostics["divergences"],
        "converged": bool(diagnostics["converged"]),
    }


def _worst(summaries: list[dict]) -> dict:
    """The worst diagnostics over a K's fits and their summed gradients; R-hat and ESS NaN where no fit has them."""
    rhats = np.array([s["max_rhat"] for s in summaries], dtype=float)
    ess = np.array([s["min_ess_bulk"] for s in summaries], dtype=float)
    return {
        "max_rhat": float(np.max(rhats[np.isfinite(rhats)])) if np.isfinite(rhats).any() else float("nan"),
        "min_ess_bulk": float(np.min(ess[np.isfinite(ess)])) if np.isfinite(ess).any() else float("nan"),
        "divergences": int(sum(s["divergences"] for s in summaries)),
        "unconverged_fits": int(sum(not s["converged"] for s in summaries)),
        "num_fits": len(summaries),
        "gradients_per_chain": float(sum(s["gradients_per_chain"] for s in summaries)),
    }


class _Data:
    """The validated data and everything a fold needs, shared by every K."""

    def __init__(self, inputs, emissions, mask, lengths, family, transition_inputs):
        inputs, emissions, mask = validate_data(inputs, emissions, mask, family)
        self.inputs, self.emissions = np.asarray(inputs), np.asarray(emissions)
        self.observed = _observed_steps(mask, lengths, self.emissions.shape)
        self.transition_inputs = (
            None
            if transition_inputs is None
            else np.asarray(validate_transition_inputs(transition_inputs, self.emissions.shape))
        )
        self.choices = bool(family.mean_is_probability)
        self.trials = self.observed.sum(axis=1)
        if np.any(self.trials == 0):
            empty = np.flatnonzero(self.trials == 0).tolist()
            raise ValueError(f"emissions: every sequence needs an observed step; sequences {empty} have none")

    @property
    def num_sequences(self) -> int:
        return int(self.emissions.shape[0])

    def held_out_scores(self, draws, index, valid, log_weights=None, num_chains: int = 1) -> dict:
        """Held-out log predictive density, its Monte Carlo variance (and correct choices) of the sequences ``index``.

        ``draws``: params with a leading draw axis (one EM estimate: a single draw), from
        ``num_chains`` chains in chain order. Entries of ``index`` with ``valid`` False are
        padding copies, returned as zeros.
        """
        inputs, emissions, transition_inputs = _subset((self.inputs, self.emissions, self.transition_inputs), index)
        mask = jnp.asarray(self.observed[index] & valid[:, None])
        per_draw = _per_draw_loglik(draws, inputs, emissions, mask, transition_inputs)
        if log_weights is not None:
            per_draw = per_draw + log_weights
            normalizer = logsumexp(jnp.asarray(log_weights, np.float64), axis=0)
        else:
            normalizer = np.log(per_draw.shape[0])
        elpd = np.asarray(logsumexp(jnp.asarray(per_draw), axis=0) - normalizer, np.float64)
        scores = {"elpd": np.where(valid, elpd, 0.0)}
        if per_draw.shape[0] > 1:
            mc_variance = elpd_monte_carlo_variance(per_draw, log_weights, num_chains)
            scores["elpd_mc_var"] = np.where(valid, mc_variance, 0.0)
        if self.choices:
            probabilities = one_step_predictive(draws, inputs, emissions, mask, transition_inputs, log_weights)
            scores["correct"] = np.where(valid, _correct_choices(probabilities, emissions, mask), 0)
        return scores


def _per_draw_loglik(draws, inputs, emissions, mask, transition_inputs, chunk_size: int = 200) -> np.ndarray:
    """(S, N) log p(y[n] | theta_s) of every draw, computed in chunks of draws (one compiled program)."""
    chunks = []
    for _, _, chunk in _draw_chunks(draws, chunk_size):
        chunks.append(np.asarray(_loglik_per_draw(chunk, inputs, emissions, mask, transition_inputs), np.float64))
    return np.concatenate(chunks, axis=0)


def _nuts(data: _Data, num_states: int, train_observed: np.ndarray, fit_kwargs: dict) -> Posterior:
    """One posterior fit; its convergence verdict is kept in its diagnostics and summed up per K."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fit_nuts(
            data.inputs,
            data.emissions,
            num_states,
            mask=train_observed,
            transition_inputs=data.transition_inputs,
            **fit_kwargs,
        )


def _em_kfold(data: _Data, num_states: int, folds: np.ndarray, em_kwargs: dict) -> dict:
    """The field's protocol: ML EM per fold on the training sequences, plug-in score of the held-out ones."""
    size = int(np.bincount(folds).max())
    loglik, correct = np.zeros(data.num_sequences), np.zeros(data.num_sequences)
    converged = []
    for fold in range(int(folds.max()) + 1):
        train = data.observed & (folds != fold)[:, None]
        result = fit_em(
            data.inputs, data.emissions, num_states, mask=train, transition_inputs=data.transition_inputs, **em_kwargs
        )
        converged.append(result.converged)
        index, valid = _fold_index(folds, fold, size)
        single = jax.tree.map(lambda p: jnp.asarray(p)[None], result.params)
        scores = data.held_out_scores(single, index, valid)
        loglik[index[valid]] = scores["elpd"][valid]
        if data.choices:
            correct[index[valid]] = scores["correct"][valid]
    return {"em_loglik": loglik, "em_correct": correct, "em_converged": converged}


def _bayes_kfold(data: _Data, num_states: int, folds: np.ndarray, fit_kwargs: dict) -> tuple[dict, list]:
    size = int(np.bincount(folds).max())
    elpd, mc_var, correct = (np.zeros(data.num_sequences) for _ in range(3))
    summaries = []
    for fold in range(int(folds.max()) + 1):
        posterior = _nuts(data, num_states, data.observed & (folds != fold)[:, None], fit_kwargs)
        summaries.append(_fit_summary(posterior))
        index, valid = _fold_index(folds, fold, size)
        scores = data.held_out_scores(posterior.flat_params(), index, valid, num_chains=posterior.num_chains)
        elpd[index[valid]] = scores["elpd"][valid]
        mc_var[index[valid]] = scores["elpd_mc_var"][valid]
        if data.choices:
            correct[index[valid]] = scores["correct"][valid]
    return {"elpd": elpd, "elpd_mc_var": mc_var, "correct": correct}, summaries


def _psis(per_draw_loglik: np.ndarray):
    """ArviZ's PSIS-LOO of (chain, draw, N) per-sequence log-likelihoods: (elpd_i, pareto_k, p_loo, log weights)."""
    import arviz as az

    # ArviZ's loo reads the chain and draw counts from a posterior group; a placeholder serves.
    chains_draws = np.zeros(per_draw_loglik.shape[:2])
    dataset = az.from_dict(posterior={"draw_index": chains_draws}, log_likelihood={"sequence": per_draw_loglik})
    with warnings.catch_warnings():
        # High Pareto k is reported per sequence and acted on (refits) below, not warned twice.
        warnings.simplefilter("ignore")
        loo = az.loo(dataset, pointwise=True)
        flat = per_draw_loglik.reshape(-1, per_draw_loglik.shape[-1])
        log_weights, _ = az.psislw(-flat.T, reff=1.0)  # samples on the last axis
    log_weights = np.asarray(log_weights).T
    return np.asarray(loo.loo_i), np.asarray(loo.pareto_k), float(loo.p_loo), log_weights


def _refit_groups(high: np.ndarray, max_refits: int | None, max_group_size: int) -> list[np.ndarray]:
    """Groups of high-k sequences, each refitted without all of its members (highest k first).

    With at most ``max_refits`` such sequences (or no cap), each is its own group: exact
    leave-one-sequence-out. With more, they are dealt round-robin (by decreasing k) into
    ``max_refits`` groups of at most ``max_group_size`` sequences: leave-group-out, as in k-fold,
    so every high-k sequence gets an exact held-out score from ``max_refits`` fits. Sequences
    beyond ``max_refits * max_group_size`` keep their (unreliable) PSIS estimate.
    """
    if max_refits is None or high.size <= max_refits:
        return [high[i : i + 1] for i in range(high.size)]
    if max_refits == 0:
        return []
    covered = high[: max_refits * max_group_size]
    return [covered[i::max_refits] for i in range(max_refits)]


def _warm_starts(posterior: Posterior) -> list:
    """One start per chain for a refit: late draws of the full posterior, avoiding stuck chains.

    Leaving out a few of many sequences moves the posterior little, so each refit chain starts at
    a draw of the full fit (chain ``c`` at the last draw of good chain ``c mod G``, earlier draws
    once the good chains are used up) and needs no EM and a short warmup.
    """
    good = [c for c in range(posterior.num_chains) if c not in set(posterior.stuck_chains)] or list(
        range(posterior.num_chains)
    )
    flat = posterior.flat_params()
    stride = max(posterior.num_draws // posterior.num_chains, 1)
    starts = []
    for chain in range(posterior.num_chains):
        source, rank = good[chain % len(good)], chain // len(good)
        draw = max(posterior.num_draws - 1 - rank * stride, 0)
        starts.append(jax.tree.map(lambda p, i=source * posterior.num_draws + draw: np.asarray(p[i]), flat))
    return starts


def _refit_kwargs(posterior: Posterior, fit_kwargs: dict) -> dict:
    """The full fit's settings, started warm from its draws (no EM) with a quarter of its warmup (>= 100)."""
    num_warmup = int(posterior.settings["num_warmup"])
    return fit_kwargs | dict(
        init=_warm_starts(posterior),
        init_jitter=0.0,
        num_warmup=min(num_warmup, max(num_warmup // 4, _MIN_REFIT_WARMUP)),
    )


def _bayes_loo(data: _Data, num_states: int, fit_kwargs: dict, max_refits: int | None, max_group_size: int):
    posterior = _nuts(data, num_states, data.observed, fit_kwargs)
    summaries = [_fit_summary(posterior)]
    per_draw_loglik = posterior.log_likelihood()
    elpd, pareto_k, p_loo, log_weights = _psis(per_draw_loglik)
    refitted = np.zeros(data.num_sequences, bool)
    mc_var = elpd_monte_carlo_variance(
        per_draw_loglik.reshape(-1, data.num_sequences), log_weights, posterior.num_chains
    )
    result = {"elpd": np.asarray(elpd, np.float64), "elpd_mc_var": mc_var, "pareto_k": pareto_k, "refitted": refitted}
    if data.choices:
        mask = jnp.asarray(data.observed)
        inputs, emissions, transition_inputs = _subset(
            (data.inputs, data.emissions, data.transition_inputs), np.arange(data.num_sequences)
        )
        probabilities = one_step_predictive(
            posterior.flat_params(), inputs, emissions, mask, transition_inputs, log_weights
        )
        result["correct"] = _correct_choices(probabilities, emissions, mask)
    high = np.flatnonzero(pareto_k > PARETO_K_THRESHOLD)
    groups = _refit_groups(high[np.argsort(-pareto_k[high])], max_refits, max_group_size)
    refit_kwargs = _refit_kwargs(posterior, fit_kwargs) if groups else {}
    size = max((group.size for group in groups), default=0)
    refit_start = time.perf_counter()
    for group in groups:
        left_out = np.isin(np.arange(data.num_sequences), group)
        refit = _nuts(data, num_states, data.observed & ~left_out[:, None], refit_kwargs)
        summaries.append(_fit_summary(refit))
        index, valid = _padded_index(group, size)
        scores = data.held_out_scores(refit.flat_params(), index, valid, num_chains=refit.num_chains)
        result["elpd"][group] = scores["elpd"][valid]
        result["elpd_mc_var"][group] = scores["elpd_mc_var"][valid]
        if data.choices:
            result["correct"][group] = scores["correct"][valid]
        result["refitted"][group] = True
    result["p_loo"] = p_loo
    result["refit_fits"] = len(groups)
    result["refit_seconds"] = time.perf_counter() - refit_start if groups else 0.0
    return result, summaries, posterior


def _stacking_weights(pointwise: dict, states) -> np.ndarray:
    """Stacking weights (Yao et al. 2018) of the K's from their per-sequence elpd, by ``az.compare``."""
    import arviz as az
    import xarray as xr

    if len(states) == 1:
        return np.ones(1)
    elpd_data = {}
    for k in states:
        values = np.asarray(pointwise[k], dtype=np.float64)
        total, se = _total_and_se(values)
        elpd_data[str(k)] = az.ELPDData(
            data=[total, se, 0.0, 1, values.size, False, xr.DataArray(values), "log"],
            index=["elpd_loo", "se", "p_loo", "n_samples", "n_data_points", "warning", "loo_i", "scale"],
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compared = az.compare(elpd_data, ic="loo", method="stacking")
    return np.array([float(compared.loc[str(k), "weight"]) for k in states])


# ---------------------------------------------------------------------------------------------
# The table


def _score_columns(names: tuple, values, baseline, correct, diff, diff_se, data: _Data) -> dict:
    """One score's columns, named by ``names`` in this order.

    The order: total, its SE, difference to the best K, its SE, bits per trial, its SE, accuracy.
    """
    total_trials = int(data.trials.sum())
    total, total_se = _total_and_se(values)
    gain, gain_se = _total_and_se(values - baseline)
    accuracy = float(correct.sum() / total_trials) if data.choices else np.nan
    scores = (total, total_se, diff, diff_se, gain / (total_trials * _LN2), gain_se / (total_trials * _LN2), accuracy)
    return dict(zip(names, scores, strict=True))


def _monte_carlo_errors(mc_variances: dict, pointwise: dict, states) -> tuple[np.ndarray, np.ndarray]:
    """Each K's Monte Carlo SE of its elpd, and of its difference to the best K (independent fits: variances add)."""
    totals = np.array([pointwise[k].sum() for k in states])
    best = states[int(np.nanargmax(totals))]
    variances = {k: float(np.sum(mc_variances[k])) for k in states}
    mc_se = np.sqrt([variances[k] for k in states])
    diff_mc_se = np.sqrt([0.0 if k == best else variances[k] + variances[best] for k in states])
    return mc_se, diff_mc_se


def _table(data: _Data, states, pointwise: dict, extras: dict, method: str) -> pd.DataFrame:
    bayes = {k: pointwise[k]["elpd"] for k in states}
    em = {k: pointwise[k]["em_loglik"] for k in states}
    elpd_diff, elpd_diff_se = _differences(bayes, states)
    em_diff, em_diff_se = _differences(em, states)
    weights = _stacking_weights(bayes, states)
    mc_se, diff_mc_se = _monte_carlo_errors({k: pointwise[k]["elpd_mc_var"] for k in states}, bayes, states)
    rows = []
    for i, k in enumerate(states):
        values = pointwise[k]
        bayes_scores = (values["elpd"], values["baseline"], values.get("correct"), elpd_diff[i], elpd_diff_se[i])
        em_scores = (values["em_loglik"], values["em_baseline"], values.get("em_correct"), em_diff[i], em_diff_se[i])
        row = {"num_states": k, **_score_columns(_BAYES_SCORE_COLUMNS, *bayes_scores, data)}
        row |= {"elpd_mc_se": mc_se[i], "elpd_diff_mc_se": diff_mc_se[i]}
        row |= {"stacking_weight": weights[i], **_score_columns(_EM_SCORE_COLUMNS, *em_scores, data)}
        if method == "loo":
            high = values["pareto_k"] > PARETO_K_THRESHOLD
            row |= {
                "p_loo": extras[k]["p_loo"],
                "max_pareto_k": float(np.max(values["pareto_k"])),
                "num_high_pareto_k": int(high.sum()),
                "num_refits": int(values["refitted"].sum()),
                "refit_fits": int(extras[k]["refit_fits"]),
                "num_unreliable": int(np.sum(high & ~values["refitted"])),
                "refit_seconds": extras[k]["refit_seconds"],
            }
        row |= extras[k]["convergence"] | {
            "nuts_seconds": extras[k]["nuts_seconds"],
            "em_seconds": extras[k]["em_seconds"],
        }
        rows.append(row)
    return pd.DataFrame(rows).set_index("num_states", drop=False)


# ---------------------------------------------------------------------------------------------
# The public function


def select_num_states(
    inputs,
    emissions,
    states=(1, 2, 3, 4, 5),
    *,
    family="gaussian",
    num_classes: int | None = None,
    mask=None,
    lengths=None,
    method: str = "loo",
    num_folds: int = 5,
    fold_seed: int = 0,
    rule: str = "one_se",
    max_refits: int | None = 10,
    em_restarts: int = 5,
    em_iters: int = 200,
    em_accelerate: bool = True,
    transition_inputs=None,
    transitions=None,
    progress: bool = True,
    **fit_nuts_kwargs,
) -> Selection:
    """Choose the number of states K by held-out prediction of whole sequences, Bayes and EM side by side.

    For each K in ``states``, scores the model by its expected log predictive density (elpd) of
    sequences it was not fitted to, sum_n log p(y_n | x_n, data without n), estimated by
    PSIS-LOO over sequences or by k-fold cross-validation over held-out sequences, and, as the
    field does, by the EM plug-in log-likelihood of held-out sequences in k-fold
    cross-validation (maximum likelihood, ``em_restarts`` restarts per fold). Both are reported
    also in bits per trial over the family's baseline, fitted without each sequence's fold (the
    same baseline for both scores; see :func:`bits_per_trial`), and, for choices (Bernoulli,
    categorical), as predictive accuracy: the fraction of trials whose most probable one-step-ahead predicted class,
    p(y_t | y_{1:t-1}, x, training data), is the observed one.

    Args:
        inputs: covariates, (N, T, D) or (T, D).
        emissions: observations, (N, T) or (T,).
        states: the K values to compare.
        family: the emission family (as in :func:`~bayes_glmhmm.fit_nuts`).
        num_classes: C of the categorical family.
        mask: optional, False where an emission is missing.
        lengths: optional (N,) lengths of sequences padded to a common T.
        method: ``"loo"`` (PSIS-LOO over sequences, one fit per K; sequences with Pareto k > 0.7
            refitted exactly without it, warm-started from the full posterior's draws with a
            quarter of its warmup, at least 100) or ``"kfold"`` (one fit per K and fold).
        num_folds: folds of held-out sequences (EM always; Bayes with ``method="kfold"``).
        fold_seed: seed of the fold assignment (:func:`fold_assignment`).
        rule: how :attr:`Selection.best` is chosen (:data:`RULES`): ``"one_se"`` (default) or
            ``"max"``; :meth:`Selection.chosen` applies another afterwards.
        max_refits: most refits per K for high Pareto k (None: one per sequence). Up to
            ``max_refits`` high-k sequences are each left out alone; with more, they are dealt
            (by decreasing k) into ``max_refits`` groups of at most N // ``num_folds`` sequences,
            each group refitted once without all its members: a leave-group-out score, slightly
            pessimistic as each refit sees fewer sequences. Sequences beyond that keep their PSIS
            estimate, counted in the table's ``num_unreliable`` and warned about.
        em_restarts: restarts of every EM: per fold of the EM cross-validation (the field uses 20;
            5 by default here), and of the EM that starts each posterior fit.
        em_iters: most EM steps per restart of the EM cross-validation.
        em_accelerate: SQUAREM-accelerated EM in the cross-validation (``fit_em(accelerate=True)``):
            the same maximum-likelihood fixed points, reached in fewer EM steps at over-specified K
            where plain EM crawls (and stops at ``em_iters`` unconverged). False: plain EM.
        transition_inputs: (N, T, M) inputs of input-driven transitions, given to every fit.
        transitions: the transition form (as in :func:`~bayes_glmhmm.fit_nuts`).
        progress: print one line per fit.
        **fit_nuts_kwargs: passed to every :func:`~bayes_glmhmm.fit_nuts` (e.g. ``num_chains``,
            ``num_warmup``, ``num_samples``, ``seed``, ``priors``); ``progress_bar`` defaults to
            False and ``max_tree_depth`` to :data:`SELECTION_TREE_DEPTH`, (6, 10): trees of at
            most depth 6 during warmup, 10 while drawing.

    Returns:
        A :class:`Selection`.
    """
    start = time.perf_counter()
    states = _validated_states(states)
    if method not in ("loo", "kfold"):
        raise ValueError(f"method must be 'loo' or 'kfold', got {method!r}")
    if rule not in RULES:
        raise ValueError(f"rule must be one of {sorted(RULES)}, got {rule!r}")
    if max_refits is not None and (isinstance(max_refits, bool) or not isinstance(max_refits, int) or max_refits < 0):
        raise ValueError(f"max_refits must be None or an integer >= 0, got {max_refits!r}")
    for name in ("mask", "lengths", "transition_inputs", "family", "num_classes"):
        if name in fit_nuts_kwargs:
            raise ValueError(f"{name} is an argument of select_num_states itself, not of the fits")
    family = resolve_family(family, emissions, mask, num_classes)
    data = _Data(inputs, emissions, mask, lengths, family, transition_inputs)
    if max(states) > int(data.observed.sum()):
        raise ValueError(f"states: K = {max(states)} exceeds the number of observed emissions")
    folds = fold_assignment(data.num_sequences, num_folds, fold_seed)
    # A leave-group-out refit holds out at most one fold's worth of sequences.
    max_group_size = max(1, data.num_sequences // num_folds)
    standardize = _resolved_standardize(
        fit_nuts_kwargs.pop("standardize", "auto"), data.inputs, data.emissions, data.observed, family
    )
    shared = dict(family=family, standardize=standardize, transitions=transitions)
    defaults = dict(progress_bar=False, em_restarts=em_restarts, max_tree_depth=SELECTION_TREE_DEPTH)
    fit_kwargs = defaults | fit_nuts_kwargs | shared | dict(lengths=lengths)
    em_seed = int(fit_nuts_kwargs.get("seed", 0))
    em_kwargs = dict(num_restarts=em_restarts, num_iters=em_iters, seed=em_seed, accelerate=em_accelerate) | shared

    # One baseline for both scores (fitted without each fold), so that their bits per trial differ
    # exactly by their elpd difference / (n ln 2).
    baseline = _held_out_baseline(family, data.inputs, data.emissions, data.observed, folds)

    pointwise, extras, posteriors, wall = {}, {}, {}, {}
    for k in states:
        k_start = time.perf_counter()
        if method == "loo":
            bayes, summaries, posteriors[k] = _bayes_loo(data, k, fit_kwargs, max_refits, max_group_size)
        else:
            bayes, summaries = _bayes_kfold(data, k, folds, fit_kwargs)
        nuts_seconds = time.perf_counter() - k_start
        em_start = time.perf_counter()
        em = _em_kfold(data, k, folds, em_kwargs)
        em_seconds = time.perf_counter() - em_start
        pointwise[k] = {
            "elpd": bayes["elpd"],
            "elpd_mc_var": bayes["elpd_mc_var"],
            "baseline": baseline,
            "em_loglik": em["em_loglik"],
            "em_baseline": baseline,
            "trials": data.trials,
            **({"correct": bayes["correct"], "em_correct": em["em_correct"]} if data.choices else {}),
            **({"pareto_k": bayes["pareto_k"], "refitted": bayes["refitted"]} if method == "loo" else {}),
        }
        extras[k] = {
            "p_loo": bayes.get("p_loo", np.nan),
            "refit_fits": bayes.get("refit_fits", 0),
            "refit_seconds": bayes.get("refit_seconds", 0.0),
            "convergence": _worst(summaries),
            "nuts_seconds": nuts_seconds,
            "em_seconds": em_seconds,
            "em_converged": em["em_converged"],
        }
        wall[k] = time.perf_counter() - k_start
        if progress:
            print(
                f"K = {k}: elpd {pointwise[k]['elpd'].sum():.1f}, EM held-out {pointwise[k]['em_loglik'].sum():.1f}"
                f" ({wall[k]:.0f} s)",
                flush=True,
            )
    table = _table(data, states, pointwise, extras, method)
    _warn_about(table, extras, method)
    wall["total"] = time.perf_counter() - start
    return Selection(
        table=table,
        best=choose(table["elpd"], table["elpd_diff_se"], states, rule),
        best_em=choose(table["em_loglik"], table["em_diff_se"], states, rule),
        rule=rule,
        method=method,
        states=states,
        folds=folds,
        pointwise=pointwise,
        posteriors=posteriors,
        baseline_name=family.baseline_name,
        settings=dict(
            method=method,
            num_folds=num_folds,
            fold_seed=fold_seed,
            rule=rule,
            max_refits=max_refits,
            pareto_k_threshold=PARETO_K_THRESHOLD,
            em_restarts=em_restarts,
            em_iters=em_iters,
            em_accelerate=bool(em_accelerate),
            family=family.name,
            num_classes=family.num_classes,
            standardize=standardize,
            num_sequences=data.num_sequences,
            num_trials=int(data.trials.sum()),
            fit_nuts=dict(fit_nuts_kwargs),
            max_tree_depth=list(tree_depths(fit_kwargs["max_tree_depth"])),
        ),
        wall_seconds=wall,
    )


def _warn_about(table: pd.DataFrame, extras: dict, method: str) -> None:
    """Warn about scores that are not to be trusted: unreliable PSIS, unconverged fits or EM."""
    problems = []
    if method == "loo":
        unreliable = {int(k): int(n) for k, n in table["num_unreliable"].items() if n > 0}
        if unreliable:
            problems.append(
                f"PSIS-LOO is unreliable (Pareto k > {PARETO_K_THRESHOLD}) for sequences not refitted, per K: "
                f"{unreliable}; raise max_refits or use method='kfold'"
            )
    if "elpd_diff_mc_se" in table:
        unresolved = [
            int(k)
            for k in table.index
            if table.loc[k, "elpd_diff_mc_se"] > 0
            and table.loc[k, "elpd_diff"] < MONTE_CARLO_RESOLUTION * table.loc[k, "elpd_diff_mc_se"]
        ]
        if unresolved:
            problems.append(
                f"the elpd differences of K = {unresolved} to the best K are within {MONTE_CARLO_RESOLUTION:g} Monte "
                "Carlo SEs (elpd_diff_mc_se): too few posterior draws to rank them; draw more (num_samples)"
            )
    unconverged = {
        int(k): f"{int(n)} of {int(table.loc[k, 'num_fits'])}" for k, n in table["unconverged_fits"].items() if n
    }
    if unconverged:
        problems.append(
            f"posterior fits that did not converge, per K: {unconverged} (see each posterior's "
            "diagnostics()['problems'])"
        )
    em_unconverged = [int(k) for k in table.index if not all(extras[k]["em_converged"])]
    if em_unconverged:
        problems.append(f"EM did not converge in every fold for K = {em_unconverged} (raise em_iters)")
    if problems:
        category = ConvergenceWarning if unconverged else UserWarning
        warnings.warn("select_num_states: " + "; ".join(problems), category, stacklevel=3)
