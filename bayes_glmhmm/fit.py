"""``fit_nuts``: the posterior of a GLM-HMM by NUTS, in a few named steps.

1. validate the settings and the data (:func:`_validated_settings`, :func:`_prepared_data`);
2. a MAP EM fit with several restarts under the same priors (:func:`bayes_glmhmm.em.fit_em`);
3. NUTS chains started from that estimate with independent jitter in the unconstrained space,
   so that no chain starts in the basin of an inferior (merged-states) mode; when the restarts
   reached other optima within a few nats of the best, some chains start from those instead, so
   that the verdict compares the modes rather than every chain agreeing on one (:func:`_starting_points`);
4. the compile-once runner of :mod:`bayes_glmhmm.sampler` on the model of :mod:`bayes_glmhmm.model`
   (with ``max_samples``, sampling on in rounds while R-hat or ESS fail: :func:`_next_round`);
5. detection of chains whose log density sits far below the best chain's (a stuck chain);
6. relabeling of every draw of every chain to the EM labeling (:mod:`bayes_glmhmm.relabel`);
7. the verdict (:mod:`bayes_glmhmm.convergence`): one ``ConvergenceWarning`` listing every failed
   check (R-hat, ESS, divergences, tree depth, stuck chains), or none.
"""

import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayes_glmhmm import _host_prng as host_prng
from bayes_glmhmm._compile import device_array, jit_one_off
from bayes_glmhmm.convergence import ConvergenceThresholds, sampler_diagnostics, tree_depths, warn_if_not_converged
from bayes_glmhmm.em import distinct_optima, fit_em
from bayes_glmhmm.emissions import EmissionFamily, family_of, resolve_family
from bayes_glmhmm.hierarchy import (
    PARAMETRIZATIONS,
    SUBJECT_TRANSITIONS,
    Subjects,
    subject_param_names,
    validate_subjects,
)
from bayes_glmhmm.model import centred_sites, free_transition_sites, glmhmm_model, unconstrain_sites
from bayes_glmhmm.params import Priors, validate_data, validate_num_states
from bayes_glmhmm.posterior import Posterior, detect_stuck_chains
from bayes_glmhmm.relabel import relabel_samples
from bayes_glmhmm.sampler import compile_in_background, run_nuts
from bayes_glmhmm.standardize import standardize_if_requested
from bayes_glmhmm.tempering import tempering_ladder
from bayes_glmhmm.transitions import (
    STATIONARY,
    TransitionModel,
    get_transitions,
    tabulate_transition_inputs,
    validate_transition_inputs,
)

__all__ = ["fit_nuts"]


def _chain_method(requested: str, num_chains: int, sequence_devices: int) -> str:
    available = jax.device_count()  # every process's devices when several run the fit
    if sequence_devices > available:
        raise ValueError(f"sequence_devices={sequence_devices} exceeds the {available} available devices")
    if requested == "auto":
        return "parallel" if num_chains > 1 and available >= num_chains * sequence_devices else "sequential"
    if requested == "parallel" and available < num_chains * sequence_devices:
        raise ValueError(
            f"chain_method='parallel' needs num_chains x sequence_devices = {num_chains * sequence_devices} devices, "
            f"{available} available (on CPU: numpyro.set_host_device_count before JAX starts)"
        )
    return requested


def _unconstrained_prototype(family: EmissionFamily, num_states, input_dim, transitions, num_transition_inputs) -> dict:
    """One point of every sampled site, unconstrained (uniform probabilities, zero weights, unit scales)."""
    shapes = family.param_shapes(num_states, input_dim)
    uniform_matrix = jnp.full((num_states, num_states), 1.0 / num_states)
    transition_sites = {"transition_matrix": uniform_matrix}
    if transitions.is_input_driven:
        zero_weights = jnp.zeros((num_states, num_states, num_transition_inputs))
        transition_sites = {"centred_transition_matrix": uniform_matrix} | free_transition_sites(
            zero_weights, transitions
        )
    return unconstrain_sites(
        {
            "initial_probs": jnp.full(num_states, 1.0 / num_states),
            **transition_sites,
            "weights": jnp.zeros(shapes["weights"]),
            "centred_biases": jnp.zeros(shapes["biases"]),
            **{name: jnp.ones(shapes[name]) for name in family.extra_names},
        },
        family,
    )


def _uniform_initial_values(
    key, family: EmissionFamily, num_states: int, input_dim: int, num_chains: int, transitions, num_transition_inputs
) -> dict:
    """NumPyro's ``init_to_uniform``: every unconstrained coordinate ~ Uniform(-2, 2), per chain."""
    prototype = _unconstrained_prototype(family, num_states, input_dim, transitions, num_transition_inputs)
    keys = jax.random.split(key, len(prototype))
    return {
        name: jax.random.uniform(k, (num_chains, *jnp.shape(value)), jnp.result_type(value), -2.0, 2.0)
        for k, (name, value) in zip(keys, sorted(prototype.items()), strict=True)
    }


def _initial_values(
    key, starts: list, input_mean, jitter: float, dtype, transition_input_mean=None, transitions=STATIONARY
) -> dict:
    """Unconstrained starting points, one per chain: each start plus independent Normal(0, jitter) noise.

    Args:
        key: PRNG key of the jitter.
        starts: one params NamedTuple per chain (of one family).
        input_mean: (D,) the model's centring of the inputs.
        jitter: standard deviation of the noise in the unconstrained space.
        dtype: floating dtype of the data.
        transition_input_mean: (M,) the model's centring of the transition inputs (input-driven only).
        transitions: the transition model.
    """
    params_type = type(starts[0])
    stacked = params_type(
        *(
            None if values[0] is None else np.stack([np.asarray(v, dtype) for v in values])
            for values in zip(*starts, strict=True)
        )
    )
    return _jittered_starts(key, stacked, input_mean, jitter, transition_input_mean, transitions)


@jit_one_off(static_argnames=("transitions",))
def _jittered_starts(key, starts, input_mean, jitter, transition_input_mean, transitions) -> dict:
    """The work of :func:`_initial_values`, vmapped over chains (one compiled program)."""

    def _one_chain(chain_key, start):
        constrained = centred_sites(start, input_mean, transition_input_mean, transitions)
        # Keep the starting point off the simplex boundary, where the unconstrained value is infinite.
        for name in ("initial_probs", "transition_matrix", "centred_transition_matrix"):
            if name not in constrained:
                continue
            value = jnp.clip(constrained[name], 1e-4, None)
            constrained[name] = value / value.sum(axis=-1, keepdims=True)
        unconstrained = unconstrain_sites(constrained, family_of(start))
        keys = jax.random.split(chain_key, len(unconstrained))
        return {
            name: value + jitter * jax.random.normal(k, jnp.shape(value), dtype=jnp.result_type(value))
            for k, (name, value) in zip(keys, sorted(unconstrained.items()), strict=True)
        }

    num_chains = starts.initial_probs.shape[0]
    return jax.vmap(_one_chain)(jax.random.split(key, num_chains), starts)


def _starting_params(
    init, family: EmissionFamily, num_states: int, input_dim: int, num_chains: int, num_transition_inputs: int = 0
) -> list:
    """Validate a user-given ``init`` (one params NamedTuple, or one per chain) and return one per chain."""
    kind = family.params_type.__name__
    if isinstance(init, family.params_type):
        starts = [init] * num_chains
    elif isinstance(init, (list, tuple)) and not hasattr(init, "_fields"):
        starts = list(init)
    else:
        raise ValueError(f"init must be 'em', 'prior' or {kind} (the {family.name} family), got {type(init).__name__}")
    if len(starts) != num_chains:
        raise ValueError(f"init must give one {kind} per chain ({num_chains}), got {len(starts)}")
    expected = family.param_shapes(num_states, input_dim)
    for start in starts:
        if not isinstance(start, family.params_type):
            raise ValueError(f"init must be 'em', 'prior' or {kind}, got {type(start).__name__}")
        for name, shape in expected.items():
            if np.shape(getattr(start, name)) != shape:
                raise ValueError(f"init.{name} must have shape {shape}, got {np.shape(getattr(start, name))}")
        _check_start_transition_weights(start, num_states, num_transition_inputs)
    return starts


def _check_start_transition_weights(start, num_states: int, num_transition_inputs: int) -> None:
    weights = start.transition_weights
    if num_transition_inputs == 0:
        if weights is not None:
            raise ValueError("init has transition_weights but no transition_inputs were given")
        return
    expected = (num_states, num_states, num_transition_inputs)
    if weights is None or np.shape(weights) != expected:
        got = None if weights is None else np.shape(weights)
        raise ValueError(f"init.transition_weights must have shape {expected}, got {got}")


class _Data(NamedTuple):
    """Validated data, as fitted (possibly standardized) and as given."""

    inputs: jax.Array
    emissions: jax.Array
    mask: jax.Array
    original_inputs: jax.Array
    original_emissions: jax.Array
    lengths: np.ndarray | None
    standardization: object
    input_mean: jax.Array
    transition_inputs: jax.Array | None = None
    transition_input_mean: jax.Array | None = None


def _validated_settings(num_states, priors, init, on_stuck, chain_method, counts: dict, convergence=None):
    """Check every setting of :func:`fit_nuts` that does not depend on the data; return (K, priors, thresholds)."""
    num_states = validate_num_states(num_states)
    thresholds = ConvergenceThresholds.from_value(convergence)
    priors = Priors().validate() if priors is None else Priors(*priors).validate()
    for name, (value, minimum) in counts.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if isinstance(init, str) and init not in ("em", "prior"):
        raise ValueError(f"init must be 'em', 'prior' or a params NamedTuple, got {init!r}")
    if on_stuck not in ("warn", "drop", "raise"):
        raise ValueError(f"on_stuck must be 'warn', 'drop' or 'raise', got {on_stuck!r}")
    if chain_method not in ("auto", "parallel", "sequential", "vectorized"):
        raise ValueError(f"chain_method must be auto, parallel, sequential or vectorized, got {chain_method!r}")
    return num_states, priors, thresholds


def _prepared_transition_inputs(transition_inputs, emissions_shape, lengths):
    """Validated transition inputs, with padding past ``lengths`` (which no transition uses) set to 0."""
    if transition_inputs is None:
        return None
    if lengths is not None:
        values = np.array(transition_inputs, dtype=float, ndmin=2)
        if values.ndim == 3 and values.shape[:2] == tuple(emissions_shape):
            values[np.arange(emissions_shape[1])[None, :] >= np.asarray(lengths)[:, None]] = 0.0
            transition_inputs = values
    return validate_transition_inputs(transition_inputs, emissions_shape)


def _observed_mean(values, mask) -> jax.Array:
    """The mean of (N, T, D) ``values`` over the observed steps, (D,), computed on the host (no programs)."""
    values, mask = np.asarray(values), np.asarray(mask)
    total = np.sum(values * mask[..., None], axis=(0, 1), dtype=np.float64)
    return device_array(total / mask.sum(), values.dtype)


def _prepared_data(inputs, emissions, mask, lengths, num_states, family, standardize, transition_inputs=None) -> _Data:
    """Validate the data for the family, mask padding past ``lengths``, standardize if asked."""
    inputs, emissions, mask = validate_data(inputs, emissions, mask, family)
    if lengths is not None:
        lengths = np.asarray(lengths)
        if lengths.shape != (emissions.shape[0],) or np.any(lengths < 1) or np.any(lengths > emissions.shape[1]):
            raise ValueError(f"lengths must hold one length in [1, {emissions.shape[1]}] per sequence, got {lengths}")
        mask = device_array(np.asarray(mask) & (np.arange(emissions.shape[1])[None, :] < lengths[:, None]))
    transition_inputs = _prepared_transition_inputs(transition_inputs, emissions.shape, lengths)
    num_observed = int(np.count_nonzero(np.asarray(mask)))
    if num_states > num_observed:
        raise ValueError(f"num_states={num_states} exceeds the number of observed emissions ({num_observed})")
    fitted_inputs, fitted_emissions, standardization = standardize_if_requested(
        inputs, emissions, mask, standardize, emissions_too=family.standardizes_emissions
    )
    input_mean = _observed_mean(fitted_inputs, mask)
    transition_input_mean = None if transition_inputs is None else _observed_mean(transition_inputs, mask)
    return _Data(
        fitted_inputs,
        fitted_emissions,
        mask,
        inputs,
        emissions,
        lengths,
        standardization,
        input_mean,
        transition_inputs,
        transition_input_mean,
    )


def _subject_initial_values(
    seed: int,
    initial: dict,
    input_mean,
    subjects: Subjects,
    parametrization: str,
    priors,
    jitter,
    uniform: bool,
    subject_transitions: bool = False,
) -> dict:
    """Unconstrained starting values of the hierarchy's sites, per chain, beside the population's ``initial``.

    From a start (EM or the user's): every subject at the population values (offsets 0, or the
    subject weights and biases equal to the population's, and its transition matrix the
    population's), spreads at half their prior scale, all with Normal(0, ``jitter``) noise. With
    ``uniform`` (``init="prior"``), NumPyro's Uniform(-2, 2) on every unconstrained coordinate instead.
    """
    generator = np.random.default_rng([seed, 13])  # on the host: no programs to compile
    weights = np.asarray(initial["weights"])  # (chains, K, ..., D), real: unconstrained = constrained
    biases = np.asarray(initial["centred_biases"]) - weights @ np.asarray(input_mean)
    stacked = (weights.shape[0], subjects.num_subjects)
    centres = {
        "weight_spread": np.full(weights.shape, np.log(0.5 * priors.subject_spread_scale)),
        "bias_spread": np.full(biases.shape, np.log(0.5 * priors.subject_spread_scale)),
    }
    if parametrization == "noncentred":
        centres["subject_weight_offsets"] = np.zeros(stacked + weights.shape[1:])
        centres["subject_bias_offsets"] = np.zeros(stacked + biases.shape[1:])
    else:
        centres["subject_weights"] = np.broadcast_to(weights[:, None], stacked + weights.shape[1:])
        centres["subject_biases"] = np.broadcast_to(biases[:, None], stacked + biases.shape[1:])
    if subject_transitions:
        # Row-wise stick-breaking: a subject's unconstrained rows equal the population's at the same matrix.
        population_rows = np.asarray(initial["transition_matrix"])
        centres[SUBJECT_TRANSITIONS] = np.broadcast_to(population_rows[:, None], stacked + population_rows.shape[1:])
    dtype = weights.dtype
    if uniform:
        return {name: generator.uniform(-2.0, 2.0, value.shape).astype(dtype) for name, value in centres.items()}
    return {
        name: (value + jitter * generator.standard_normal(value.shape)).astype(dtype) for name, value in centres.items()
    }


START_OPTIMA_WINDOW = 5.0
"""Nats below the best EM optimum within which other optima also start chains (:func:`assign_chains_to_optima`).

The stuck-chain detector's floor (:func:`~bayes_glmhmm.posterior.detect_stuck_chains` flags a
chain at least 5 nats below the best): an optimum within it is a mode the posterior may well
hold, whose chains the verdict then compares (R-hat, stuck chains); one far below would only
make a stuck chain. Set it to 0 for the former starts (every chain at the best optimum).
"""


def assign_chains_to_optima(objectives, window: float, num_chains: int) -> np.ndarray:
    """The EM optimum each chain starts from: chain 0 at the best, the others round-robin over the eligible.

    An optimum is eligible when its objective is within ``window`` nats of the best's. Chains take
    the eligible optima best first, in turn (with optima 0 and 1 eligible and 4 chains: 0, 1, 0, 1),
    so that when EM's restarts disagree the chains start in different modes and the verdict can
    compare them (a chain that stays in a worse mode is flagged as stuck; chains that disagree
    raise R-hat), instead of every chain agreeing on the one mode they were all started in.

    Args:
        objectives: (O,) MAP objective of each distinct optimum (:func:`bayes_glmhmm.em.distinct_optima`).
        window: nats below the best within which an optimum is eligible (0: the best only).
        num_chains: number of chains.

    Returns:
        (num_chains,) index into ``objectives`` of each chain's optimum.
    """
    objectives = np.asarray(objectives, dtype=float)
    order = np.argsort(-objectives, kind="stable")
    eligible = order[objectives[order] >= objectives[order[0]] - window]
    return eligible[np.arange(num_chains) % eligible.shape[0]]


def _em_starts(em_result, num_chains: int, window: float) -> tuple[list, dict]:
    """One start per chain from the distinct optima of the EM restarts, and the record of them.

    Chains assigned to the best optimum start at ``em_result.params`` itself; the record
    (``settings["start_optima"]``) holds each chain's optimum (0 the best), every distinct
    optimum's objective (best first) and number of restarts, and the window.
    """
    optima = distinct_optima(em_result.restart_log_probs, em_result.restart_params)
    chain_optima = assign_chains_to_optima(optima.objectives, window, num_chains)
    restart_params = em_result.restart_params
    starts = [
        em_result.params
        if optimum == 0
        else type(restart_params)(
            *(None if value is None else value[optima.restart_indices[optimum]] for value in restart_params)
        )
        for optimum in chain_optima
    ]
    record = {
        "chain_optima": chain_optima.tolist(),
        "objectives": np.round(optima.objectives, 3).tolist(),
        "num_restarts": optima.num_restarts.tolist(),
        "window": float(window),
    }
    return starts, record


def _starting_points(
    key, init, data: _Data, family, num_states, priors, num_chains, em_restarts, seed, jitter, transitions
):
    """Unconstrained starting points per chain, the EM fit they came from (or None), and its optima's record.

    With ``init="em"`` the chains start from the distinct optima of the EM restarts within
    :data:`START_OPTIMA_WINDOW` of the best (:func:`_em_starts`); the record of them is
    ``settings["start_optima"]`` (None without EM). The EM fit returned keeps the best estimate
    only (the relabeling reference), not every restart's.
    """
    input_dim = data.inputs.shape[-1]
    num_transition_inputs = 0 if data.transition_inputs is None else int(data.transition_inputs.shape[-1])
    if init == "prior":  # NumPyro's init_to_uniform, Uniform(-2, 2) in the unconstrained space
        uniform = _uniform_initial_values(
            key, family, num_states, input_dim, num_chains, transitions, num_transition_inputs
        )
        return uniform, None, None
    em_result, start_optima = None, None
    if init == "em":
        em_result = fit_em(
            data.inputs,
            data.emissions,
            num_states,
            family=family,
            mask=data.mask,
            priors=priors,
            num_restarts=em_restarts,
            seed=seed,
            standardize=False,
            transition_inputs=data.transition_inputs,
            transitions=transitions,
        )
        starts, start_optima = _em_starts(em_result, num_chains, START_OPTIMA_WINDOW)
        em_result = em_result._replace(restart_params=None)
    else:
        starts = _starting_params(init, family, num_states, input_dim, num_chains, num_transition_inputs)
        if data.standardization is not None:
            starts = [data.standardization.params_to_standardized(start) for start in starts]
    initial = _initial_values(
        key, starts, data.input_mean, jitter, data.inputs.dtype, data.transition_input_mean, transitions
    )
    return initial, em_result, start_optima


def _starting_point_shapes(data: _Data, family, num_states: int, num_chains: int, transitions) -> dict:
    """The structure of :func:`_starting_points`' result: (chain, ...) shapes in the data's dtype, no values."""
    num_transition_inputs = 0 if data.transition_inputs is None else int(data.transition_inputs.shape[-1])
    input_dim = int(data.inputs.shape[-1])
    shapes = jax.eval_shape(
        lambda: _unconstrained_prototype(family, num_states, input_dim, transitions, num_transition_inputs)
    )
    return jax.tree.map(lambda value: jax.ShapeDtypeStruct((num_chains, *value.shape), data.inputs.dtype), shapes)


def _prepared_subjects(subjects, data: _Data) -> Subjects:
    """The subjects of the sequences, checked against the data (and against standardization)."""
    groups = validate_subjects(subjects, data.emissions.shape[0])
    if data.standardization is not None:
        raise ValueError(
            "subjects cannot be combined with standardization (the spreads across subjects would not map "
            "back to the data's units): pass standardize=False, rescaling the inputs yourself if they are "
            "far from unit scale"
        )
    return groups


def _process_zero_em(em_result):
    """With several processes, process 0's EM fit on every process, so that all relabel to one reference.

    Each process runs EM on the same data; where sums are not bitwise reproducible across machines
    a process could pick another restart and label its posterior otherwise.
    """
    if em_result is None or jax.process_count() == 1:
        return em_result
    from jax.experimental import multihost_utils

    fields = multihost_utils.broadcast_one_to_all(tuple(em_result.params))
    return em_result._replace(params=type(em_result.params)(*(None if f is None else np.asarray(f) for f in fields)))


def _transition_model_kwargs(data: _Data) -> dict:
    """The model's transition-input arguments: the distinct-row table when the inputs take few values."""
    table = tabulate_transition_inputs(data.transition_inputs)
    if table is None:
        return dict(transition_inputs=data.transition_inputs, transition_input_mean=data.transition_input_mean)
    return dict(
        transition_input_rows=table.rows,
        transition_input_index=table.index,
        transition_input_mean=data.transition_input_mean,
    )


def _sample_stats(draws) -> dict:
    return {
        "diverging": draws.diverging,
        "energy": draws.energy,
        "n_steps": draws.num_steps,
        "tree_depth": np.floor(np.log2(np.maximum(draws.num_steps, 1))).astype(int) + 1,
        "step_size": draws.step_size,
        "lp": -draws.potential_energy,
    }


def _relabeled(
    raw: dict, family: EmissionFamily, em_result, lp, transitions: TransitionModel = STATIONARY, extra_names=()
):
    """Relabel every draw to the EM labeling (or, without EM, to the best chain's last draw).

    The labels are matched on the family's (population) parameters; ``extra_names`` (the
    subjects' parameters) are carried along with their states.
    """
    samples = {name: raw[name] for name in family.param_names + transitions.param_names + tuple(extra_names)}
    if em_result is not None:
        reference = family.relabel_features({k: np.asarray(v) for k, v in em_result.params._asdict().items()})
    else:
        best_chain = int(np.argmax(np.median(lp, axis=1)))
        reference = family.relabel_features(
            {k: v[best_chain, -1] for k, v in samples.items() if k in family.param_names}
        )
    return relabel_samples(samples, reference=reference, features=family.relabel_features)


def _handle_stuck(posterior: Posterior, on_stuck: str) -> Posterior:
    """Raise on chains flagged as stuck (``on_stuck="raise"``) or drop them (``"drop"``).

    Kept or dropped, a stuck chain is one of the problems of the fit's verdict
    (:func:`_warn_if_not_converged`), so it is warned about there, in the fit's one warning.
    """
    stuck = posterior.stuck_chains
    if not stuck:
        return posterior
    if on_stuck == "raise":
        medians = np.median(posterior.sample_stats["lp"], axis=1)
        raise RuntimeError(
            f"chain(s) {stuck} look stuck in an inferior mode: median log density "
            f"{np.round(medians[stuck], 1).tolist()} vs best {medians.max():.1f} "
            f"(threshold {posterior.stuck_threshold:.1f} nats)"
        )
    return posterior.drop_chains(stuck) if on_stuck == "drop" else posterior


def _tempering_record(draws) -> dict | None:
    """What ``settings["tempering"]`` keeps of a tempered run (None without tempering)."""
    if draws.swap_acceptance is None:
        return None
    return {
        "temperatures": list(draws.temperatures),
        "swap_acceptance": np.round(draws.swap_acceptance.mean(axis=0), 4).tolist(),
        "ladder_gradients": draws.ladder_num_steps.tolist(),
    }


#: Sampling until converged stops when R-hat stays above this after a round that did not bring its excess
#: over 1 down by a tenth: the chains sit in separate modes, which more draws do not join (chains that
#: mix, however slowly, lose about half the excess when the draws double).
SEPARATE_MODES_RHAT = 1.1


def _next_round(
    diagnostics: dict, previous_rhat, thresholds: ConvergenceThresholds, num_samples: int, max_samples: int
) -> tuple[int, str]:
    """How many more draws per chain a fit that samples until converged takes next, and why it stops.

    Converged on R-hat and ESS, or ``max_samples`` reached: stop. R-hat above
    :data:`SEPARATE_MODES_RHAT` with its excess over 1 not a tenth below the previous round's: stop
    (the chains sit in separate modes: ``tempering``). Otherwise ESS is taken to grow in proportion to the draws, so
    the draws made are scaled by the largest shortfall (required / achieved ESS, bulk or tail) with
    10% to spare: at least ``num_samples // 2`` more (R-hat alone failing, or an ESS that could
    not be computed), at most as many as made so far (an ESS of a few draws extrapolates badly),
    and at most up to ``max_samples``.

    Args:
        diagnostics: :func:`~bayes_glmhmm.convergence.sampler_diagnostics` of the draws so far
            (``max_rhat``, ``min_ess_bulk``, ``min_ess_tail``, ``num_draws``).
        previous_rhat: the max R-hat after the previous round (None after the first).
        thresholds: the fit's thresholds.
        num_samples: the fit's ``num_samples`` (the draws of the first round).
        max_samples: the most draws per chain in all.

    Returns:
        (more draws per chain, the reason to stop: "" while it goes on).
    """
    num_draws = int(diagnostics["num_draws"])
    rhat = diagnostics["max_rhat"]
    shortfall = 1.0
    for kind in ("bulk", "tail"):
        required, achieved = getattr(thresholds, f"min_ess_{kind}"), diagnostics[f"min_ess_{kind}"]
        if required > 0:
            shortfall = max(shortfall, required / achieved if np.isfinite(achieved) and achieved > 0 else 2.0)
    rhat_fails = bool(np.isfinite(rhat) and rhat > thresholds.max_rhat)
    if shortfall <= 1.0 and not rhat_fails:
        return 0, "converged"
    if num_draws >= max_samples:
        return 0, "max_samples"
    if previous_rhat is not None and rhat > SEPARATE_MODES_RHAT and rhat - 1 > 0.9 * (previous_rhat - 1):
        return 0, f"separate modes (R-hat above {SEPARATE_MODES_RHAT:g} and not falling)"
    wanted = int(np.ceil(num_draws * (1.1 * shortfall - 1.0))) if shortfall > 1.0 else 0
    return min(max(wanted, num_samples // 2, 1), num_draws, max_samples - num_draws), ""


def _more_draws_until_converged(relabel, thresholds, num_samples: int, max_samples: int, rounds: list):
    """The ``more_draws`` of :func:`~bayes_glmhmm.sampler.run_nuts` for ``fit_nuts(max_samples=)``.

    After each round it judges the relabeled draws (R-hat and ESS, :func:`_next_round`) and
    appends the round's figures to ``rounds``, the last with the reason it stopped
    (``"stopped"``); a stuck chain stops it too.
    """

    def more_draws(draws) -> int:
        lp = -draws.potential_energy
        stuck = detect_stuck_chains(lp)[0] if lp.shape[0] > 1 else []
        diagnostics = sampler_diagnostics(relabel(draws))
        previous_rhat = rounds[-1]["max_rhat"] if rounds else None
        rounds.append(
            {
                "num_samples": int(diagnostics["num_draws"]),
                "max_rhat": round(diagnostics["max_rhat"], 4),
                "min_ess_bulk": round(diagnostics["min_ess_bulk"], 1),
                "min_ess_tail": round(diagnostics["min_ess_tail"], 1),
            }
        )
        extra, stopped = _next_round(diagnostics, previous_rhat, thresholds, num_samples, max_samples)
        if stuck:
            extra, stopped = 0, f"stuck chain(s) {[int(chain) for chain in stuck]}"
        if stopped:
            rounds[-1]["stopped"] = stopped
        return extra

    return more_draws


def _warn_if_not_converged(posterior: Posterior) -> None:
    """The fit's verdict: one :class:`~bayes_glmhmm.convergence.ConvergenceWarning` listing every problem."""
    warn_if_not_converged(posterior.diagnostics()["problems"], stacklevel=3)


def fit_nuts(
    inputs,
    emissions,
    num_states: int,
    *,
    family="gaussian",
    num_classes: int | None = None,
    mask=None,
    lengths=None,
    priors: Priors | None = None,
    num_chains: int = 4,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    seed: int = 0,
    progress_bar: bool = True,
    chain_method: str = "auto",
    target_accept_prob: float = 0.8,
    max_tree_depth: int | tuple[int, int] = 10,
    dense_mass: bool = False,
    init="em",
    em_restarts: int = 10,
    init_jitter: float = 0.1,
    on_stuck: str = "warn",
    standardize="auto",
    sequence_devices: int = 1,
    time_parallel: bool = False,
    precondition: bool = True,
    transition_inputs=None,
    transitions=None,
    convergence: ConvergenceThresholds | dict | None = None,
    subjects=None,
    subject_parametrization: str = "noncentred",
    subject_transitions: bool = False,
    tempering=None,
    max_samples: int | None = None,
) -> Posterior:
    """Sample the posterior of a K-state GLM-HMM with NUTS, states marginalized.

    Args:
        inputs: covariates, (N, T, D) or (T, D).
        emissions: observations, (N, T) or (T,), in the family's support.
        num_states: K >= 1.
        family: the emission family: ``"gaussian"`` (default; the article's switching linear
            regression), ``"bernoulli"`` (logistic; 0/1, booleans or all -1/+1),
            ``"categorical"`` (multinomial logit, class 0 the reference; labels 0..C-1),
            ``"poisson"`` (log link; counts), or an :class:`~bayes_glmhmm.emissions.EmissionFamily`.
        num_classes: C of the categorical family (default: 1 + the largest observed label).
        mask: optional, False where an emission is missing or padding.
        lengths: optional (N,) lengths of sequences padded at the end to a common T: steps past
            a length are padding, excluded from the likelihood and blanked (NaN / -1) in the
            InferenceData, while missing steps inside a sequence keep state probabilities and
            predictive draws.
        priors: :class:`Priors`; the article's by default (``noise_scale`` is the Gaussian's only).
        num_chains: number of chains.
        num_warmup: warmup (adaptation) iterations per chain.
        num_samples: kept draws per chain.
        seed: seed of everything random (EM restarts, jitter, NUTS).
        progress_bar: show NumPyro's progress bar.
        chain_method: ``"auto"`` (parallel when there are enough JAX devices, see
            ``numpyro.set_host_device_count``), ``"parallel"``, ``"sequential"`` or ``"vectorized"``.
        target_accept_prob: NUTS target acceptance probability.
        max_tree_depth: NUTS maximum tree depth, or a pair ``(warmup, sampling)`` that caps the
            warmup's trees apart (NumPyro's convention, :func:`~bayes_glmhmm.convergence.tree_depths`).
        dense_mass: adapt a dense mass matrix.
        init: ``"em"`` (MAP EM with restarts, then jitter; when the restarts reach several optima
            within :data:`START_OPTIMA_WINDOW` nats of the best, the chains start from them in turn,
            recorded in ``settings["start_optima"]``), ``"prior"`` (NumPyro's default
            uniform initialization, no EM), or starting parameters of the family's params type:
            one for all chains or a list with one per chain (jitter added). Without EM,
            relabeling uses the best chain's last draw as reference.
        em_restarts: restarts of the initializing EM.
        init_jitter: standard deviation of the unconstrained jitter around the EM estimate.
        standardize: ``"auto"`` (default), True or False. When applied, the fit runs on
            standardized inputs (and, for the Gaussian family only, emissions), the priors apply
            to the standardized parameters, and every draw is mapped back exactly to the data's
            units (:mod:`bayes_glmhmm.standardize`). ``"auto"`` applies it only to data far from
            unit scale (a spread outside [0.1, 10] or a mean beyond +-10), so the article's data
            keep the article's priors exactly. ``posterior.settings["standardization"]`` records it.
        sequence_devices: number of devices that share each chain's batch of sequences
            (``jax.shard_map`` over a (chains, sequences) mesh; each device computes the
            likelihood and gradient of its slice). With ``chain_method="parallel"`` the fit uses
            ``num_chains * sequence_devices`` devices. On CPU, create host devices with
            ``numpyro.set_host_device_count`` before JAX starts; on GPUs they are the GPUs.
            Results agree with one device up to floating-point summation order. With several
            processes (after ``jax.distributed.initialize``), the devices are every process's; each
            process passes the whole data and returns the whole posterior (README, "Many processes").
        time_parallel: compute the likelihood with the parallel-in-time (associative) reduction,
            O(log T) sequential depth instead of O(T). Same posterior; it pays on accelerators with
            few long sequences and is 1.6-8x slower per gradient on CPUs
            (``results/benchmarks/scaling.csv``).
        precondition: start each chain's mass matrix from the curvature of the log posterior at
            its starting point (finite-difference Hessian; its inverse, or diagonal thereof)
            instead of the identity. From the EM start this roughly halves the gradients spent
            in warmup on the article's data; adaptation then proceeds as usual.
        on_stuck: what to do with chains detected as stuck: ``"warn"`` (keep them; the fit's
            :class:`~bayes_glmhmm.convergence.ConvergenceWarning` names them), ``"drop"`` (remove
            them; the warning still names them) or ``"raise"`` (a ``RuntimeError``).
        transition_inputs: (N, T, M) inputs that drive the transitions (input-driven transitions,
            :mod:`bayes_glmhmm.transitions`): p(z_{t+1} = j | z_t = i, u_t) =
            softmax_j(log A[i, j] + V[i, j] . u_t) with V[i, i] = 0, u[n, t] driving the step
            t -> t+1; they may differ from ``inputs``. No NaN or inf (padding past ``lengths``
            is ignored). Never rescaled by ``standardize``; the model centres them.
        transitions: ``"full"`` (the default with transition inputs), ``"destination"`` (ssm's
            cheaper v_ij = v_j) or None / ``"stationary"`` (without transition inputs).
        convergence: the thresholds of the fit's convergence verdict, a
            :class:`~bayes_glmhmm.convergence.ConvergenceThresholds` or a dict of some of its fields
            (e.g. ``{"min_ess_bulk": 1000}``); by default R-hat <= 1.01, bulk and tail ESS >= 400,
            no divergent transition, no transition at the maximum tree depth. Recorded in
            ``posterior.settings["convergence_thresholds"]``, so that ``posterior.diagnostics()``
            reaches the same verdict later (also after a netCDF round trip).
        subjects: (N,) one subject id per sequence (e.g. the animal of each session): a
            hierarchical model across subjects (:mod:`bayes_glmhmm.hierarchy`). Each subject gets
            its own GLM weights and biases, drawn around population values with a spread per
            state and coefficient (``weight_spread``, ``bias_spread`` ~
            HalfNormal(``priors.subject_spread_scale``)); the initial probabilities, the
            transitions and the Gaussian's noise scales are shared. ``samples["weights"]`` and
            ``["biases"]`` are then the population means; ``samples["subject_weights"]``
            (chain, draw, S, K, ..., D) and ``["subject_biases"]`` each subject's. The EM start is
            the pooled fit. Not combined with standardization (pass ``standardize=False``).
        subject_parametrization: ``"noncentred"`` (default; suits subjects with little data
            each) or ``"centred"`` (suits subjects with much data each); the same model.
        subject_transitions: with ``subjects``, give each subject its own transition matrix,
            partially pooled: row i of subject s's ~ Dirichlet(``priors.subject_transition_concentration``
            x population row i), in ``samples["subject_transition_matrix"]`` (chain, draw, S, K, K);
            ``samples["transition_matrix"]`` is then the population's. Stationary transitions only.
        tempering: parallel tempering for multimodal posteriors (:mod:`bayes_glmhmm.tempering`):
            None (default, plain NUTS), a number of temperatures L >= 2 (a geometric ladder of
            inverse temperatures from 1 down to ``tempering.DEFAULT_MIN_TEMPERATURE``), or the
            ladder itself (1 = beta_0 > ... > 0). Each chain then runs L rungs side by side, the
            rung at beta sampling p(theta) p(y | theta)^beta, adjacent rungs exchanging states after
            every step; the draws are the beta = 1 rungs'. About L times the cost; use it when the
            verdict reports chains that disagree (R-hat, stuck chains) because they sit in different
            modes. ``posterior.settings["tempering"]`` records the ladder, the exchange acceptance
            between adjacent rungs (near 0 for a pair: the ladder has a gap there; add rungs) and
            the leapfrog steps of all rungs.
        max_samples: sample until converged: after ``num_samples`` draws per chain, while R-hat or
            the bulk or tail ESS fail the ``convergence`` thresholds, the chains go on (from where
            they stopped, no new compilation) by the draws the ESS shortfall asks for (at least
            ``num_samples // 2``, at most doubling the draws), up to ``max_samples`` draws per chain
            in all. It stops early when a chain is stuck, or when R-hat stays above
            :data:`SEPARATE_MODES_RHAT` without falling (chains in separate modes: more draws do not
            join them; use ``tempering``). Slowly mixing chains whose modes connect (R-hat a little
            over 1.01, ESS short) then reach the thresholds. ``settings["sampling_rounds"]`` records
            the draws per chain, R-hat and ESS after each round and why it stopped (``"stopped"``),
            and ``settings["num_samples"]`` the draws made. None (default): ``num_samples`` draws.

    Returns:
        A :class:`~bayes_glmhmm.posterior.Posterior`.

    Warns:
        ConvergenceWarning: one warning, listing every problem in a plain sentence, when a check
            fails (R-hat, bulk or tail ESS, divergences, tree depth, stuck chains; see
            :func:`~bayes_glmhmm.convergence.convergence_problems`). ``posterior.diagnostics()``
            gives the same verdict (``converged``, ``problems``).
    """
    total_start = time.perf_counter()
    num_states, priors, thresholds = _validated_settings(
        num_states,
        priors,
        init,
        on_stuck,
        chain_method,
        {
            "num_chains": (num_chains, 1),
            "num_warmup": (num_warmup, 0),
            "num_samples": (num_samples, 1),
            "sequence_devices": (sequence_devices, 1),
            "max_samples": (num_samples if max_samples is None else max_samples, num_samples),
        },
        convergence,
    )
    tree_depths(max_tree_depth)  # a clear ValueError before any work
    if subject_parametrization not in PARAMETRIZATIONS:
        raise ValueError(f"subject_parametrization must be one of {PARAMETRIZATIONS}, got {subject_parametrization!r}")
    if subject_transitions and (subjects is None or transition_inputs is not None):
        raise ValueError(
            "subject_transitions=True needs subjects and stationary transitions (no transition_inputs), "
            f"got subjects={'None' if subjects is None else 'given'} and transition_inputs="
            f"{'None' if transition_inputs is None else 'given'}"
        )
    family = resolve_family(family, emissions, mask, num_classes)
    transitions = get_transitions(transitions, transition_inputs)
    ladder = tempering_ladder(tempering)
    method = _chain_method(chain_method, num_chains, sequence_devices)
    data = _prepared_data(inputs, emissions, mask, lengths, num_states, family, standardize, transition_inputs)
    subject_groups = None if subjects is None else _prepared_subjects(subjects, data)
    key_jitter, key_nuts = host_prng.split(host_prng.prng_key(seed))
    model_kwargs = dict(
        inputs=data.inputs, emissions=data.emissions, mask=data.mask, priors=priors, input_mean=data.input_mean
    )
    model_options = dict(
        num_states=num_states,
        family=family,
        adjoint=True,
        time_parallel=bool(time_parallel),
        transitions=transitions,
    )
    if transitions.is_input_driven:
        model_kwargs |= _transition_model_kwargs(data)
    runner_settings = dict(
        num_warmup=num_warmup,
        num_samples=num_samples,
        target_accept_prob=target_accept_prob,
        max_tree_depth=max_tree_depth,
        dense_mass=dense_mass,
        chain_method=method,
        sequence_devices=sequence_devices,
        precondition=precondition,
    )
    compiling = None
    if init == "em" and subject_groups is None and ladder is None:
        # The NUTS programs compile while EM computes the starting points (their values are not needed).
        compiling = compile_in_background(
            key_nuts,
            _starting_point_shapes(data, family, num_states, num_chains, transitions),
            glmhmm_model,
            model_kwargs,
            model_options,
            **runner_settings,
        )
    init_z, em_result, start_optima = _starting_points(
        key_jitter, init, data, family, num_states, priors, num_chains, em_restarts, seed, init_jitter, transitions
    )
    em_result = _process_zero_em(em_result)
    if subject_groups is not None:
        init_z |= _subject_initial_values(
            seed,
            init_z,
            data.input_mean,
            subject_groups,
            subject_parametrization,
            priors,
            init_jitter,
            init == "prior",
            bool(subject_transitions),
        )
        model_kwargs["subject_index"] = jnp.asarray(subject_groups.index)
        model_options |= dict(
            num_subjects=subject_groups.num_subjects,
            subject_parametrization=subject_parametrization,
            subject_transitions=bool(subject_transitions),
        )
    wall = {} if em_result is None else {"em": em_result.wall_seconds}
    subject_names = () if subject_groups is None else subject_param_names(bool(subject_transitions))
    rounds = []
    more_draws = None
    if max_samples is not None and max_samples > num_samples:

        def relabel(draws):
            lp = -draws.potential_energy
            return _relabeled(draws.samples, family, em_result, lp, transitions, subject_names).samples

        more_draws = _more_draws_until_converged(relabel, thresholds, num_samples, max_samples, rounds)

    nuts_start = time.perf_counter()
    if compiling is not None:
        compiling.join()
    draws = run_nuts(
        key_nuts,
        init_z,
        glmhmm_model,
        model_kwargs,
        model_options,
        **runner_settings,
        progress_bar=progress_bar,
        temperatures=ladder,
        more_draws=more_draws,
    )
    wall["nuts"] = time.perf_counter() - nuts_start
    sample_stats = _sample_stats(draws)
    stuck, threshold = detect_stuck_chains(sample_stats["lp"]) if num_chains > 1 else ([], float("nan"))

    relabel_start = time.perf_counter()
    relabeled = _relabeled(draws.samples, family, em_result, sample_stats["lp"], transitions, subject_names)
    wall["relabel"] = time.perf_counter() - relabel_start
    final_samples = relabeled.samples
    if data.standardization is not None:
        final_samples = data.standardization.samples_to_original(final_samples)
        if em_result is not None:
            em_result = em_result._replace(params=data.standardization.params_to_original(em_result.params))

    posterior = Posterior(
        samples=final_samples,
        permutations=relabeled.permutations,
        sample_stats=sample_stats,
        inputs=np.asarray(data.original_inputs),
        emissions=np.asarray(data.original_emissions),
        mask=np.asarray(data.mask),
        num_states=num_states,
        priors=priors,
        em=em_result,
        stuck_chains=stuck,
        stuck_threshold=threshold,
        wall_seconds=wall,
        lengths=data.lengths,
        family=family,
        transitions=transitions,
        transition_inputs=None if data.transition_inputs is None else np.asarray(data.transition_inputs),
        subjects=subject_groups,
        settings=dict(
            family=family.name,
            transitions=transitions.describe(),
            num_classes=family.num_classes,
            num_chains=num_chains,
            num_warmup=num_warmup,
            num_samples=int(draws.potential_energy.shape[1]),
            max_samples=max_samples,
            sampling_rounds=rounds,
            seed=seed,
            chain_method=method,
            sequence_devices=sequence_devices,
            time_parallel=bool(time_parallel),
            precondition=bool(precondition),
            warmup_gradients=draws.warmup_num_steps.tolist(),
            target_accept_prob=target_accept_prob,
            max_tree_depth=max_tree_depth,
            dense_mass=dense_mass,
            init=init if isinstance(init, str) else "user",
            init_jitter=init_jitter,
            start_optima=start_optima,
            standardization=None if data.standardization is None else data.standardization.as_dict(),
            convergence_thresholds=thresholds.as_dict(),
            subject_parametrization=None if subject_groups is None else subject_parametrization,
            subject_transitions=bool(subject_transitions),
            tempering=_tempering_record(draws),
        ),
    )
    posterior = _handle_stuck(posterior, on_stuck)
    wall["total"] = time.perf_counter() - total_start
    posterior.wall_seconds = wall
    _warn_if_not_converged(posterior)
    return posterior
