"""Simulation-based calibration (Talts et al. 2018) of fit_nuts, per emission family.

Each replication draws theta from the prior (:func:`bayes_glmhmm.model.sample_prior`, the model's
one prior definition), simulates a data set, fits NUTS (EM initialization, relabeling: the default
pipeline, with the priors applied exactly, i.e. no standardization), and records the rank of the
true value among L thinned posterior draws for label-invariant quantities: each emission
parameter sorted across states (weights and biases, per class for the categorical family, and the
Gaussian's noise scales), the sorted stationary distribution, and the log-likelihood of the data.
If the sampler is calibrated each rank is uniform on {0, ..., L}.

Data: N = 5 sequences x T = 100 steps, D = 1 standard-normal input, K = 2 states, for every
family. 500 emissions make the posterior clearly narrower than the prior even for binary choices
(under one bit each), so a miscalibrated posterior shows in the ranks, while a fit (EM with
restarts, 2 chains of 400 + 400) stays at seconds: the gradient's cost grows with T (a sequential
scan), hardly with N.

Writes into ``--out`` (results/benchmarks): ``sbc_<family>.csv`` (one row per replication),
``sbc_<family>.json`` (per quantity: chi-square uniformity test over 10 rank bins, mean rank with
its standard error) and ``sbc_<family>.png`` (rank histograms with the 99% band of a uniform
histogram); the Gaussian family keeps its historical names ``sbc_ranks.csv``, ``sbc_summary.json``
and ``sbc_ranks.png``; ``--name STEM`` writes ``STEM.{csv,json,png}`` instead. A run resumes from
the rows already written.

Each row also describes the truth and the posterior of the sorted stationary distribution
(:func:`stationary_columns`: the true stationary probabilities and transition diagonal, how
distinct the true states' emissions are, the least visited state's share of the steps, the
posterior mean and ESS), and the JSON splits the stationary ranks by them
(:func:`stationary_subsets`; issue 15: ``results/benchmarks/sbc_stationary.md``).

Input-driven transitions (``--transitions full|destination``, :mod:`bayes_glmhmm.transitions`):
the truth is drawn from the prior of that transition model with ``--transition-inputs M``
transition weights per state pair (default 1), the transition inputs are drawn independently of
everything else, u[n, t, m] ~ Bernoulli(0.5) (``--transition-input-kind bernoulli``, the default:
a binary input such as "rewarded on the previous trial") or standard normal (``normal``), the
states and emissions are simulated with them and ``fit_nuts`` fits them with
``transition_inputs=u, transitions=form``. The ranks then also cover label-invariant functions of
the transition weights V (K, K, M) (see :func:`transition_weight_quantities`), the stationary
distribution being that of A, the transition matrix at u = 0. The files are
``sbc_transitions_<family>_<form>.{csv,json,png}``.

    python benchmarks/sbc.py --family bernoulli --replications 200 [--num-states 2] [--chains 2]
    python benchmarks/sbc.py --family bernoulli --transitions full --transition-inputs 1 --replications 200
    python benchmarks/sbc.py --replications 1000 --name sbc_stationary_1000
"""

import argparse
import csv
import json
import os
import sys
import time

import numpyro

numpyro.set_host_device_count(2)

import jax  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from bayes_glmhmm import Priors, fit_nuts, log_likelihood, simulate  # noqa: E402
from bayes_glmhmm._io import csv_text, save_figures_atomic, write_json_atomic, write_text_atomic  # noqa: E402
from bayes_glmhmm.emissions import FAMILY_NAMES, EmissionFamily, family_of, get_family  # noqa: E402
from bayes_glmhmm.model import sample_prior  # noqa: E402
from bayes_glmhmm.transitions import STATIONARY, input_driven  # noqa: E402


def stationary(transition_matrix: np.ndarray) -> np.ndarray:
    """Stationary distribution(s) of (..., K, K) transition matrices."""
    num_states = transition_matrix.shape[-1]
    system = np.swapaxes(transition_matrix, -1, -2) - np.eye(num_states)
    system[..., -1, :] = 1.0
    rhs = np.zeros(transition_matrix.shape[:-1])
    rhs[..., -1] = 1.0
    return np.linalg.solve(system, rhs[..., None])[..., 0]


def stationary_eigenvector(transition_matrix: np.ndarray) -> np.ndarray:
    """Stationary distribution of one (K, K) transition matrix as its left eigenvector of eigenvalue 1.

    An independent computation of :func:`stationary` (the linear solve), to check it against.
    """
    values, vectors = np.linalg.eig(np.asarray(transition_matrix, dtype=float).T)
    vector = np.real(vectors[:, np.argmin(np.abs(values - 1.0))])
    return vector / vector.sum()


def state_divergences(params, inputs: np.ndarray, key, repeats: int = 20) -> np.ndarray:
    """Jeffreys divergences J[i, j] = KL(i || j) + KL(j || i) between the states' emission distributions.

    Averaged over the inputs (N, T, D) the data were simulated at, by Monte Carlo: ``repeats``
    emissions per input from each state, scored under every state, for any family. J = 0 for
    identical states; two Gaussian states with the same scale whose means differ by d scales at
    every input have J = d^2.
    """
    family = family_of(params)
    flat_inputs = np.tile(np.reshape(inputs, (-1, np.shape(inputs)[-1])), (repeats, 1))
    num_states = np.shape(params.initial_probs)[-1]
    kl = np.zeros((num_states, num_states))
    for state, state_key in enumerate(jax.random.split(key, num_states)):
        states = np.full(flat_inputs.shape[0], state)
        emissions = family.sample(state_key, params, flat_inputs, states)
        scores = np.asarray(family.log_likelihoods(params, flat_inputs, emissions), dtype=float)  # (S, K)
        kl[state] = np.mean(scores[:, [state]] - scores, axis=0)
    return kl + kl.T


def stationary_columns(truth, draws, states: np.ndarray, divergences: np.ndarray, num_chains: int) -> dict:
    """Per-replication descriptions of the truth and of the posterior of the sorted stationary distribution.

    ``true_stationary_sorted_<k>`` (the truth's sorted stationary probabilities),
    ``true_transition_diag_<k>`` (A[i, i] of the state with the k-th smallest true stationary
    probability), ``true_min_divergence`` (the smallest Jeffreys divergence between two true
    states, :func:`state_divergences`), ``true_min_occupancy`` (the fraction of simulated steps
    in the least visited state), ``posterior_mean_stationary_sorted_<k>``,
    ``posterior_sd_stationary_sorted_0`` and ``ess_stationary_sorted_0`` (bulk effective sample
    size of the sorted stationary probability over all draws, ``draws`` holding them chain by
    chain).
    """
    from numpyro.diagnostics import effective_sample_size

    true_matrix = np.asarray(truth.transition_matrix, dtype=float)
    true_pi = stationary(true_matrix)
    order = np.argsort(true_pi)
    num_states = true_pi.size
    draw_pi = np.sort(stationary(np.asarray(draws.transition_matrix, dtype=float)), axis=-1)  # (S, K)
    occupancy = np.bincount(np.ravel(states).astype(int), minlength=num_states) / np.size(states)
    out = {}
    for k in range(num_states):
        out[f"true_stationary_sorted_{k}"] = float(true_pi[order[k]])
    for k in range(num_states):
        out[f"true_transition_diag_{k}"] = float(true_matrix[order[k], order[k]])
    off_diagonal = divergences[~np.eye(num_states, dtype=bool)]
    out["true_min_divergence"] = float(np.min(off_diagonal))
    out["true_min_occupancy"] = float(np.min(occupancy))
    for k in range(num_states):
        out[f"posterior_mean_stationary_sorted_{k}"] = float(np.mean(draw_pi[:, k]))
    out["posterior_sd_stationary_sorted_0"] = float(np.std(draw_pi[:, 0]))
    chains = draw_pi[:, 0].reshape(num_chains, -1)
    out["ess_stationary_sorted_0"] = float(effective_sample_size(chains)) if np.ptp(chains) > 0 else float("nan")
    return out


#: Singular names of the parameters in the quantities' names (``weight_sorted_0``, as before families).
SINGULAR = {"weights": "weight", "biases": "bias", "scales": "scale"}


def _quantity_name(parameter: str, state_rank: int, index: tuple, dims: list[str], shape: tuple) -> str:
    """``weight_sorted_1`` (D = 1) or ``weight_sorted_1_class2`` (categorical: class 2 vs class 0) ..."""
    name = f"{SINGULAR.get(parameter, parameter)}_sorted_{state_rank}"
    for dim, position, size in zip(dims[1:], index, shape[1:], strict=True):
        if size > 1:
            name += f"_{dim}{position + (1 if dim == 'class' else 0)}"
    return name


def transition_weight_quantities(params, form: str = "full") -> dict:
    """Label-invariant scalars of the transition weights V (K, K, M) of (possibly batched) params.

    A relabeling of the states permutes V on both state axes. Full form, for each input m: the
    off-diagonal entries V[i, j, m] (i != j) are permuted among themselves, so their sorted values
    (``transition_weight_sorted_<r>``, r = 0 .. K (K - 1) - 1) and their mean
    (``transition_weight_mean``) do not depend on the labeling. Sorting forgets which states a
    weight connects; ``transition_weight_by_bias_<a>to<b>`` keeps it: the states are ordered by
    their emission bias (the first column of the biases; a function of theta, so this order is
    label-invariant) and V is read in that order, V[a -> b] from the a-th lowest-bias state to
    the b-th.

    Destination form (V[i, j] = d[j] - d[i], d zero-sum over the states, K - 1 free values per
    input): the same two views of d itself, which a relabeling permutes, leaving out the first
    of each (the zero sum fixes it): ``destination_weight_sorted_<k>`` and
    ``destination_weight_by_bias_<k>``, k = 1 .. K - 1. (Functions of V would be redundant here:
    for K = 2 its two off-diagonal entries are x and -x, and its off-diagonal mean is 0.)

    An ``_input<m>`` suffix is added when M > 1.
    """
    weights = np.asarray(params.transition_weights, dtype=float)  # (..., K, K, M)
    num_states, num_inputs = weights.shape[-3], weights.shape[-1]
    biases = np.asarray(params.biases, dtype=float)
    bias_key = biases.reshape(*biases.shape[: weights.ndim - 2], -1)[..., 0]  # (..., K)
    order = np.argsort(bias_key, axis=-1)  # (..., K): the a-th lowest-bias state
    out = {}
    if form == "destination":
        destination = np.mean(weights, axis=-3)  # d[..., j, m] = mean_i (d[j] - d[i]) = d[j]
        ordered = np.sort(destination, axis=-2)
        by_bias = np.take_along_axis(destination, order[..., :, None], axis=-2)
        for m in range(num_inputs):
            suffix = f"_input{m}" if num_inputs > 1 else ""
            for k in range(1, num_states):
                out[f"destination_weight_sorted_{k}{suffix}"] = ordered[..., k, m]
            for k in range(1, num_states):
                out[f"destination_weight_by_bias_{k}{suffix}"] = by_bias[..., k, m]
        return out
    rows, columns = np.nonzero(~np.eye(num_states, dtype=bool))
    off_diagonal = weights[..., rows, columns, :]  # (..., K (K - 1), M)
    ordered = np.sort(off_diagonal, axis=-2)
    by_bias = np.take_along_axis(weights, order[..., :, None, None], axis=-3)
    by_bias = np.take_along_axis(by_bias, order[..., None, :, None], axis=-2)
    for m in range(num_inputs):
        suffix = f"_input{m}" if num_inputs > 1 else ""
        for r in range(off_diagonal.shape[-2]):
            out[f"transition_weight_sorted_{r}{suffix}"] = ordered[..., r, m]
        out[f"transition_weight_mean{suffix}"] = np.mean(off_diagonal[..., m], axis=-1)
        for a, b in zip(rows, columns, strict=True):
            out[f"transition_weight_by_bias_{a}to{b}{suffix}"] = by_bias[..., a, b, m]
    return out


def invariant_quantities(params, loglik, form: str = "full") -> dict:
    """Label-invariant scalars of (possibly batched) parameters of any family.

    Each emission parameter (weights, biases, the Gaussian's scales) is sorted across states,
    separately for every other index (class, input): a permutation of the states permutes each
    such column the same way, so the sorted values do not depend on the labeling. Added: the
    sorted stationary distribution of the transition matrix (for input-driven transitions, of A,
    the matrix at u = 0), the invariant functions of the transition weights
    (:func:`transition_weight_quantities`, input-driven only, ``form`` the transition form) and
    the data's log-likelihood.
    """
    family = family_of(params)
    num_states, input_dim = np.shape(params.initial_probs)[-1], np.shape(params.weights)[-1]
    shapes, dims = family.param_shapes(num_states, input_dim), family.param_dims()
    out = {}
    for parameter in family.emission_names:
        value = np.asarray(getattr(params, parameter))
        shape = shapes[parameter]
        ordered = np.sort(value, axis=value.ndim - len(shape))
        for index in np.ndindex(shape):
            name = _quantity_name(parameter, index[0], index[1:], dims[parameter], shape)
            out[name] = ordered[(..., *index)]
    pis = np.sort(stationary(np.asarray(params.transition_matrix, dtype=float)), axis=-1)
    for k in range(num_states):
        out[f"stationary_sorted_{k}"] = pis[..., k]
    if getattr(params, "transition_weights", None) is not None:
        out |= transition_weight_quantities(params, form)
    out["log_likelihood"] = np.asarray(loglik)
    return out


def sbc_family(args) -> EmissionFamily:
    """The emission family of the run (C = ``args.num_classes`` for the categorical)."""
    return get_family(args.family, args.num_classes if args.family == "categorical" else None)


def sbc_transitions(args):
    """The transition model of the run: stationary, or input-driven of ``args.transitions``'s form."""
    form = getattr(args, "transitions", None)
    return STATIONARY if form is None else input_driven(form)


def draw_transition_inputs(key, shape: tuple, kind: str = "bernoulli") -> np.ndarray:
    """Transition inputs u (N, T, M), independent of everything else: Bernoulli(0.5) in {0, 1}, or standard normal."""
    if kind == "bernoulli":
        return np.asarray(jax.random.bernoulli(key, 0.5, shape), dtype=float)
    if kind == "normal":
        return np.asarray(jax.random.normal(key, shape), dtype=float)
    raise ValueError(f"transition input kind must be 'bernoulli' or 'normal', got {kind!r}")


def one_replication(seed: int, args, priors: Priors) -> dict:
    """theta ~ prior, data ~ p(y | theta), a NUTS fit, and the rank of every invariant quantity's truth.

    Args:
        seed: replication number (seeds the prior draw, the data and the fit).
        args: settings with ``family``, ``num_classes``, ``num_states``, ``num_sequences``,
            ``num_timesteps``, ``chains``, ``warmup``, ``samples`` and ``rank_draws`` (L); for
            input-driven transitions also ``transitions`` (the form), ``transition_inputs`` (M)
            and ``transition_input_kind``.
        priors: the priors the truth is drawn from and the fit assumes.

    Returns:
        A row: fit time and diagnostics, and ``rank_<quantity>`` in {0, ..., L}.
    """
    family = sbc_family(args)
    transitions = sbc_transitions(args)
    key = jax.random.PRNGKey(10_000 + seed)
    key_prior, key_inputs, key_data = jax.random.split(key, 3)
    num_transition_inputs = args.transition_inputs if transitions.is_input_driven else 0
    truth = sample_prior(key_prior, family, args.num_states, 1, priors, transitions, num_transition_inputs)
    truth = jax.tree.map(lambda value: np.asarray(value, dtype=float), truth)  # skips transition_weights=None
    inputs = np.asarray(jax.random.normal(key_inputs, (args.num_sequences, args.num_timesteps, 1)))
    transition_inputs = None
    if transitions.is_input_driven:
        transition_inputs = draw_transition_inputs(
            jax.random.fold_in(key, 1),
            (args.num_sequences, args.num_timesteps, num_transition_inputs),
            args.transition_input_kind,
        )
    states, emissions = simulate(key_data, truth, inputs, transition_inputs)
    emissions = np.asarray(emissions)
    fit_transitions = {}
    if transitions.is_input_driven:
        fit_transitions = {"transition_inputs": transition_inputs, "transitions": transitions.form}
    start = time.perf_counter()
    posterior = fit_nuts(
        inputs,
        emissions,
        args.num_states,
        family=family,
        priors=priors,
        num_chains=args.chains,
        num_warmup=args.warmup,
        num_samples=args.samples,
        seed=seed,
        progress_bar=False,
        standardize=False,
        **fit_transitions,
    )
    seconds = time.perf_counter() - start
    diagnostics = posterior.diagnostics()
    # Thin to L draws spread over all chains, which also reduces autocorrelation (Talts et al.).
    flat = posterior.flat_params()
    picks = np.linspace(0, flat.weights.shape[0] - 1, args.rank_draws).astype(int)
    draws = jax.tree.map(lambda p: np.asarray(p)[picks], flat)
    draw_loglik = posterior.log_likelihood().reshape(-1, args.num_sequences).sum(-1)[picks]
    true_loglik = float(np.sum(log_likelihood(truth, inputs, emissions, transition_inputs=transition_inputs)))
    true_q = invariant_quantities(truth, true_loglik, transitions.form)
    draw_q = invariant_quantities(draws, draw_loglik, transitions.form)
    row = {
        "replication": seed,
        "seconds": round(seconds, 2),
        "max_rhat": round(diagnostics["max_rhat"], 4),
        "min_ess_bulk": round(diagnostics["min_ess_bulk"], 1),
        "divergences": diagnostics["divergences"],
        "stuck_chains": len(diagnostics["stuck_chains"]),
    }
    for name, value in true_q.items():
        row[f"rank_{name}"] = int(np.sum(draw_q[name] < value))
    divergences = state_divergences(truth, inputs, jax.random.fold_in(key, 2))
    row |= stationary_columns(truth, flat, np.asarray(states), divergences, args.chains)
    return row


def mean_rank_test(ranks: np.ndarray, rank_draws: int) -> dict:
    """Mean rank against its value under uniformity, L / 2, with the standard error of the mean.

    A rank uniform on {0, ..., L} has variance ((L + 1)^2 - 1) / 12; the mean of R independent
    ranks has standard error sqrt of that over R. A mean rank far above L / 2 says the truth sits
    high in the posterior (the posterior is biased low), and vice versa.
    """
    ranks = np.asarray(ranks, dtype=float)
    standard_error = np.sqrt(((rank_draws + 1) ** 2 - 1) / 12 / ranks.size)
    mean = float(np.mean(ranks))
    return {
        "mean_rank": mean,
        "expected_mean_rank": rank_draws / 2,
        "mean_rank_se": float(standard_error),
        "mean_rank_z": float((mean - rank_draws / 2) / standard_error),
    }


def summarize(rows: list[dict], rank_draws: int, bins: int = 10) -> dict:
    """Chi-square uniformity test over ``bins`` rank bins and the mean-rank test, per quantity."""
    names = [key for key in rows[0] if key.startswith("rank_")]
    summary = {"replications": len(rows), "rank_draws": rank_draws, "bins": bins, "quantities": {}}
    for name in names:
        ranks = np.array([row[name] for row in rows])
        counts = np.histogram(ranks, bins=bins, range=(0, rank_draws + 1))[0]
        chi2, p_value = stats.chisquare(counts)
        summary["quantities"][name[5:]] = {
            "chi2": float(chi2),
            "p_value": float(p_value),
            "counts": counts.tolist(),
            **mean_rank_test(ranks, rank_draws),
        }
    p_values = [q["p_value"] for q in summary["quantities"].values()]
    summary["min_p_value"] = float(min(p_values))
    summary["bonferroni_alpha_0.01"] = 0.01 / len(p_values)
    summary["calibrated_at_bonferroni_0.01"] = bool(min(p_values) > 0.01 / len(p_values))
    summary["max_abs_mean_rank_z"] = float(max(abs(q["mean_rank_z"]) for q in summary["quantities"].values()))
    summary["divergent_replications"] = int(sum(row["divergences"] > 0 for row in rows))
    summary["replications_with_stuck_chains"] = int(sum(row["stuck_chains"] > 0 for row in rows))
    summary["median_seconds_per_fit"] = float(np.median([row["seconds"] for row in rows]))
    return summary


def rank_subsets(rows: list[dict], quantity: str, rank_draws: int, subsets: dict, bins: int = 10) -> list[dict]:
    """Mean-rank and chi-square uniformity tests of ``rank_<quantity>`` within subsets of the replications.

    ``subsets`` maps a subset's description to a function of a row saying whether the row belongs
    to it. The chi-square test uses ``bins`` rank bins, fewer (down to 2) when a subset is too
    small for 5 expected replications per bin; the bins used are reported.
    """
    table = []
    for description, member in subsets.items():
        ranks = np.array([row[f"rank_{quantity}"] for row in rows if member(row)], dtype=float)
        entry = {"subset": description, "n": int(ranks.size)}
        if ranks.size:
            subset_bins = int(max(2, min(bins, ranks.size // 5)))
            counts = np.histogram(ranks, bins=subset_bins, range=(0, rank_draws + 1))[0]
            chi2, p_value = stats.chisquare(counts)
            entry |= {"bins": subset_bins, "chi2": float(chi2), "p_value": float(p_value), "counts": counts.tolist()}
            entry |= mean_rank_test(ranks, rank_draws)
            z = entry["mean_rank_z"]
            entry["mean_rank_p_value"] = float(2 * stats.norm.sf(abs(z)))
        table.append(entry)
    return table


def stationary_subsets(rows: list[dict], rank_draws: int, identical_below: float = 1.0) -> dict:
    """The sorted stationary probabilities' rank tests, split by how distinct and how balanced the states are.

    Needs the columns of :func:`stationary_columns`. Subsets: all; the true states nearly
    identical (smallest Jeffreys divergence below ``identical_below``) or distinct, and the
    divergence by quartile; ranges of the posterior mean of the smallest stationary probability;
    ranges of the truth's smallest stationary probability and of the least visited state's share.

    Only a subset chosen by the data keeps the ranks uniform for an exact posterior (given y the
    truth and the draws are exchangeable); the posterior mean is a function of the data up to
    Monte Carlo error. A subset chosen by the truth does not: a truth in the prior's tail ranks
    towards that tail of a posterior that the prior pulls back (``true pi_min < 0.1`` low ranks,
    ``>= 0.25`` high ranks, even for exact draws), and the least visited state's share follows
    the true stationary probabilities. Nor does one chosen by the divergence, though the prior
    makes the emission parameters independent of the transition matrix: data that look like
    one state come from identical true states with any pi, or from one rarely visited state, so
    their posterior puts mass at small pi_min, and picking the identical-state truths (any pi)
    picks high ranks (results/benchmarks/sbc_stationary.md).
    """
    divergences = np.array([row["true_min_divergence"] for row in rows])
    divergences = divergences[np.isfinite(divergences)]  # exact_stationary_rows: inf, no emissions
    quartiles = np.quantile(divergences, [0.25, 0.5, 0.75]) if divergences.size else [np.nan] * 3
    edges = [0.0, *quartiles, np.inf]

    def divergence_in(low, high):
        return lambda row: low <= row["true_min_divergence"] < high

    def stationary_in(low, high):
        return lambda row: low <= row["true_stationary_sorted_0"] < high

    def posterior_in(low, high):
        return lambda row: low <= row["posterior_mean_stationary_sorted_0"] < high

    subsets = {
        "all": lambda row: True,
        f"nearly identical states (J < {identical_below:g})": divergence_in(0.0, identical_below),
        f"distinct states (J >= {identical_below:g})": divergence_in(identical_below, np.inf),
        **{
            f"J quartile {i + 1}: [{edges[i]:.3g}, {edges[i + 1]:.3g})": divergence_in(edges[i], edges[i + 1])
            for i in range(4)
        },
        "posterior mean pi_min < 0.1": posterior_in(0.0, 0.1),
        "posterior mean pi_min in [0.1, 0.25)": posterior_in(0.1, 0.25),
        "posterior mean pi_min in [0.25, 0.5]": posterior_in(0.25, 0.51),
        "true pi_min < 0.1": stationary_in(0.0, 0.1),
        "true pi_min in [0.1, 0.25)": stationary_in(0.1, 0.25),
        "true pi_min in [0.25, 0.5]": stationary_in(0.25, 0.51),
        "least visited state < 5% of steps": lambda row: row["true_min_occupancy"] < 0.05,
        "least visited state >= 5% of steps": lambda row: row["true_min_occupancy"] >= 0.05,
    }
    names = sorted(key[5:] for key in rows[0] if key.startswith("rank_stationary_sorted_"))
    return {
        "identical_below": identical_below,
        "divergence": "smallest Jeffreys divergence KL(i || j) + KL(j || i) between two true states' emissions",
        **{name: rank_subsets(rows, name, rank_draws, subsets) for name in names},
    }


def exact_stationary_rows(
    seed: int,
    replications: int,
    num_states: int = 2,
    num_sequences: int = 5,
    num_timesteps: int = 100,
    rank_draws: int = 99,
) -> list[dict]:
    """SBC of the sorted stationary distribution with exact posterior draws: the states observed.

    Per replication: the rows of A ~ Dirichlet(1) (the prior of :class:`Priors`), the initial
    state ~ Dirichlet(1), ``num_sequences`` state sequences of ``num_timesteps`` steps observed;
    the posterior of each row is Dirichlet(1 + its transition counts), drawn exactly (NumPy). The
    rows carry what :func:`stationary_subsets` splits by (the Jeffreys divergence set to inf: no
    emissions), so the same subsets show what an exact posterior gives: uniform ranks overall
    and in subsets chosen by the data, not in subsets chosen by the truth.
    """
    rng = np.random.default_rng(seed)
    matrices = rng.dirichlet(np.ones(num_states), size=(replications, num_states))  # (R, K, K)
    state = np.stack(
        [rng.choice(num_states, size=num_sequences, p=p) for p in rng.dirichlet(np.ones(num_states), replications)]
    )
    counts = np.zeros((replications, num_states, num_states))
    visits = np.zeros((replications, num_states))
    replication_index = np.arange(replications)[:, None]
    for _ in range(num_timesteps - 1):
        np.add.at(visits, (replication_index, state), 1)
        cumulative = np.cumsum(np.take_along_axis(matrices, state[..., None], axis=1), axis=-1)  # (R, N, K)
        following = np.minimum(np.sum(rng.uniform(size=state.shape)[..., None] > cumulative, axis=-1), num_states - 1)
        np.add.at(counts, (replication_index, state, following), 1)
        state = following
    np.add.at(visits, (replication_index, state), 1)
    rows = []
    for r in range(replications):
        draws = np.stack([rng.dirichlet(1.0 + row, size=rank_draws) for row in counts[r]], axis=1)  # (L, K, K)
        true_pi, draw_pi = np.sort(stationary(matrices[r])), np.sort(stationary(draws), axis=-1)
        row = {"replication": r}
        for k in range(num_states):
            row[f"rank_stationary_sorted_{k}"] = int(np.sum(draw_pi[:, k] < true_pi[k]))
        for k in range(num_states):
            row[f"true_stationary_sorted_{k}"] = float(true_pi[k])
        row["true_min_divergence"] = float("inf")
        row["true_min_occupancy"] = float(np.min(visits[r]) / (num_sequences * num_timesteps))
        row["posterior_mean_stationary_sorted_0"] = float(np.mean(draw_pi[:, 0]))
        row["posterior_sd_stationary_sorted_0"] = float(np.std(draw_pi[:, 0]))
        rows.append(row)
    return rows


def figure(summary: dict):
    """Rank histograms per quantity, with the 99% band of a histogram of uniform ranks."""
    from matplotlib.figure import Figure

    quantities = summary["quantities"]
    columns = 4
    rows_ = int(np.ceil(len(quantities) / columns))
    figure = Figure(figsize=(3.2 * columns, 2.5 * rows_), layout="constrained")
    axes = figure.subplots(rows_, columns, squeeze=False).ravel()
    expected = summary["replications"] / summary["bins"]
    low, high = stats.binom.ppf([0.005, 0.995], summary["replications"], 1 / summary["bins"])
    for ax, (name, info) in zip(axes, quantities.items(), strict=False):
        ax.bar(np.arange(summary["bins"]), info["counts"], width=0.9, color="#0072B2")
        ax.axhspan(low, high, color="0.85", zorder=0, label="99% band (uniform)")
        ax.axhline(expected, color="0.3", lw=1)
        ax.set_title(f"{name}\np = {info['p_value']:.2f}, mean-rank z = {info['mean_rank_z']:+.1f}", fontsize=9)
        ax.set_xlabel("rank bin")
        ax.set_ylabel("replications")
    for ax in axes[len(quantities) :]:
        ax.set_visible(False)
    transitions = summary.get("settings", {}).get("transitions")
    described = "" if transitions is None else f", input-driven transitions ({transitions})"
    figure.suptitle(
        f"SBC rank histograms, {summary.get('family', 'gaussian')} family{described}: "
        f"{summary['replications']} replications, L = {summary['rank_draws']}"
    )
    return figure


def output_names(family_name: str, transitions: str | None = None, name: str | None = None) -> dict:
    """File names of the rows, the summary and the figure (the Gaussian's historical ones kept).

    With input-driven transitions of form ``transitions``: ``sbc_transitions_<family>_<form>.*``.
    A ``name`` replaces the stem: ``<name>.{csv,json,png}``.
    """
    if name is not None:
        return {kind: f"{name}.{ext}" for kind, ext in (("rows", "csv"), ("summary", "json"), ("figure", "png"))}
    if transitions is not None:
        stem = f"sbc_transitions_{family_name}_{transitions}"
        return {kind: f"{stem}.{ext}" for kind, ext in (("rows", "csv"), ("summary", "json"), ("figure", "png"))}
    if family_name == "gaussian":
        return {"rows": "sbc_ranks.csv", "summary": "sbc_summary.json", "figure": "sbc_ranks.png"}
    return {kind: f"sbc_{family_name}.{ext}" for kind, ext in (("rows", "csv"), ("summary", "json"), ("figure", "png"))}


def _number(text: str):
    """A CSV cell as int, else float (``nan`` included)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def read_rows(path: str) -> dict:
    """Replication number -> row, from a previous (possibly interrupted) run."""
    if not os.path.exists(path):
        return {}
    with open(path, newline="") as handle:
        return {int(row["replication"]): {k: _number(v) for k, v in row.items()} for row in csv.DictReader(handle)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="gaussian", choices=FAMILY_NAMES)
    parser.add_argument("--num-classes", type=int, default=3, help="C of the categorical family")
    parser.add_argument("--replications", type=int, default=200)
    parser.add_argument("--num-states", type=int, default=2)
    parser.add_argument("--num-sequences", type=int, default=5)
    parser.add_argument("--num-timesteps", type=int, default=100)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=400)
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--rank-draws", type=int, default=99)
    parser.add_argument(
        "--transitions", default=None, choices=["full", "destination"], help="input-driven transitions of this form"
    )
    parser.add_argument("--transition-inputs", type=int, default=1, help="M, the number of transition inputs")
    parser.add_argument("--transition-input-kind", default="bernoulli", choices=["bernoulli", "normal"])
    parser.add_argument("--out", default="results/benchmarks")
    parser.add_argument("--name", default=None, help="stem of the output files instead of the family's default")
    parser.add_argument(
        "--identical-below",
        type=float,
        default=1.0,
        help="Jeffreys divergence below which two true states count as nearly identical (the stationary subsets)",
    )
    args = parser.parse_args(argv)
    if args.transitions is None:  # stationary: the settings of the runs before input-driven transitions
        del args.transition_inputs, args.transition_input_kind
    names = output_names(args.family, args.transitions, args.name)
    rows_path = os.path.join(args.out, names["rows"])
    priors = Priors()
    done = read_rows(rows_path)  # resume
    rows = [done[i] for i in sorted(done) if i < args.replications]
    for seed in range(args.replications):
        if seed in done:
            continue
        row = one_replication(seed, args, priors)  # the sampler compiles once, in the first replication
        rows.append(row)
        # rows of a run before the stationary columns lack them: written as nan
        write_text_atomic(rows_path, csv_text(list(row), [[r.get(k, float("nan")) for k in row] for r in rows]))
        print(f"replication {seed + 1}/{args.replications}: {row['seconds']} s, R-hat {row['max_rhat']}", flush=True)
    summary = {"family": args.family, **summarize(rows, args.rank_draws)}
    if all(np.isfinite(row.get("true_min_divergence", np.nan)) for row in rows):
        summary["stationary_subsets"] = stationary_subsets(rows, args.rank_draws, args.identical_below)
    summary["settings"] = {**vars(args), "num_classes": sbc_family(args).num_classes}  # None but categorical
    if args.transitions is not None:
        summary["transition_inputs"] = (
            "u[n, t, m] ~ Bernoulli(0.5) in {0, 1}, independent of the states and emissions"
            if args.transition_input_kind == "bernoulli"
            else "u[n, t, m] ~ Normal(0, 1), independent of the states and emissions"
        )
    write_json_atomic(os.path.join(args.out, names["summary"]), summary)
    save_figures_atomic({names["figure"]: figure(summary)}, args.out, dpi=100)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("quantities", "stationary_subsets")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
