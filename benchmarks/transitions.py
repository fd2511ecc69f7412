"""Cost of input-driven transitions at the field's scale: time per gradient against stationary transitions.

The data of ``benchmarks/families.py`` (its problem builder, Bernoulli family): about 50,000
trials in 270 sessions of ragged length (uniform in [150, 230] trials, padded and masked), D = 10
standard-normal emission inputs, K = 3 states. Transition inputs u (N, T, M), padding set to 0
as ``fit_nuts`` does: u[n, t, m] ~ Bernoulli(0.5) (a binary "previous reward"-like input), or
standard normal for the ``_normal`` models (a continuous input).

Every model is the NUTS potential of :func:`bayes_glmhmm.model.glmhmm_model` (minus the log
posterior density in NumPyro's unconstrained space, jitted ``value_and_grad`` of
``numpyro.infer.util.potential_energy``, the analytic forward-backward adjoint), with the
transition inputs passed as ``fit_nuts`` passes them: as a table of their distinct rows and a
per-step index when they take few values (:func:`bayes_glmhmm.transitions.tabulate_transition_inputs`:
the binary inputs, R = 2^M rows), else step by step (the continuous ones). Measured as
``families.py`` measures ``ours``:

- ``stationary``: one (K, K) transition matrix;
- ``full_M1`` / ``full_M3``: input-driven, p(z_{t+1} = j | z_t = i, u_t) =
  softmax_j(log A[i, j] + V[i, j] . u_t), every off-diagonal V[i, j] free, M = 1 or 3 binary inputs;
- ``destination_M3``: the destination form V[i, j] = d[j] - d[i], M = 3 binary inputs;
- ``full_M1_normal`` / ``full_M3_normal``: the full form with continuous inputs (step by step).

Per model: cold = the first call, compilation included (lowering + XLA compile + the first call,
also given apart); warm = the median of calls timed in interleaved rounds (all models in one
round, the order alternating), so that a change of machine load hits every model alike; the
ratio model / stationary both of the medians and as the median of the per-round ratios; XLA's
memory account of the compiled gradient (``Compiled.memory_analysis()``: temporaries + arguments
+ outputs - aliased bytes, not a measured peak). A check that the models are the ones intended:
at V = 0 an input-driven potential equals the stationary one plus minus the log prior density of
the zero weights (the prior on A is the same Dirichlet), recorded as ``zero_weights_gap``.

``--profile`` (also run when a warm ratio exceeds the issue's target of 1.5) times, in the same
interleaved way and each with its reverse pass, the transition part of the likelihood gradient
(the HMM kernel, forward filter + analytic adjoint, with the transition matrices it needs) for
M = 3: stationary; the package's table path (binary u); the package's step-by-step path
(continuous u, each step's matrix computed inside the scans); the (N, T - 1, K, K) stack built
by :func:`bayes_glmhmm.transitions.transition_matrices` (einsum, log_softmax, exp) and the
stack kernel; and a prototype of that stack with the softmax on (N, T - 1) slices and an
analytic reverse pass (:func:`softmax_unrolled_analytic`). The building of the matrices is also
timed alone, and the emission log-likelihoods that every model shares.

Writes ``transitions.csv`` (one row per model x measurement), ``transitions.json`` (settings,
machine, load averages, results) and ``transitions.md`` into ``--out``
(``transitions_quick.*`` with ``--quick``: small data, a smoke run whose time is compilation).

    python benchmarks/transitions.py [--quick] [--seconds 60] [--profile]
"""

import argparse
import functools
import json
import os
import platform
import sys
import time
from typing import NamedTuple

import numpyro

# As in families.py (before JAX starts its backend); no fit runs here, the gradients use one device.
numpyro.set_host_device_count(4)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from numpyro.infer.util import potential_energy  # noqa: E402

import bayes_glmhmm  # noqa: E402
from bayes_glmhmm import Priors  # noqa: E402
from bayes_glmhmm._io import csv_text, markdown_table, write_json_atomic, write_text_atomic  # noqa: E402
from bayes_glmhmm.emissions import get_family  # noqa: E402
from bayes_glmhmm.inference import DrivenTransitions, hmm_marginal_loglik  # noqa: E402
from bayes_glmhmm.model import (  # noqa: E402
    batched_log_likelihoods,
    centred_sites,
    free_transition_sites,
    glmhmm_model,
    prior_distributions,
    unconstrain_sites,
)
from bayes_glmhmm.transitions import (  # noqa: E402
    STATIONARY,
    destination_to_full,
    input_driven,
    safe_log,
    tabulate_transition_inputs,
    tabulated_transition_matrices,
    transition_matrices,
)

# Run as a script, benchmarks/ is on sys.path.
from families import FULL, QUICK, Problem, _memory_bytes, interleaved_times, simulated_problem  # noqa: E402  # isort: skip

TARGET_RATIO = 1.5


class Variant(NamedTuple):
    """A transition model to time: its name, the model, its number of transition inputs M and their kind."""

    name: str
    transitions: object
    num_transition_inputs: int
    input_kind: str = "bernoulli"


VARIANTS = (
    Variant("stationary", STATIONARY, 0),
    Variant("full_M1", input_driven("full"), 1),
    Variant("full_M3", input_driven("full"), 3),
    Variant("destination_M3", input_driven("destination"), 3),
    Variant("full_M1_normal", input_driven("full"), 1, "normal"),
    Variant("full_M3_normal", input_driven("full"), 3, "normal"),
)


class Gradient(NamedTuple):
    """A compiled ``(z, data) -> (potential, gradient)``, its arguments, and its cold-start timings."""

    function: object
    z: dict
    data: dict
    lower_seconds: float
    compile_seconds: float
    first_call_seconds: float
    path: str = ""

    @property
    def cold_seconds(self) -> float:
        return self.lower_seconds + self.compile_seconds + self.first_call_seconds


# ---------------------------------------------------------------------------------------------
# Data and models


def transition_inputs_for(problem: Problem, num_inputs: int, kind: str = "bernoulli", seed: int = 1) -> np.ndarray:
    """u (N, T, M) ~ Bernoulli(0.5) in {0, 1} or standard normal, 0 past each sequence's length (padding)."""
    shape = (*problem.mask.shape, num_inputs)
    key = jax.random.PRNGKey(seed + num_inputs)
    if kind == "bernoulli":
        values = np.asarray(jax.random.bernoulli(key, 0.5, shape), dtype=np.float32)
    else:
        values = np.asarray(jax.random.normal(key, shape), dtype=np.float32)
    return np.where(problem.mask[..., None], values, 0.0).astype(np.float32)


def transition_data(transition_inputs: np.ndarray, mask: np.ndarray) -> tuple[dict, str]:
    """The model's transition-input arguments as ``fit_nuts`` gives them, and the path they take.

    The distinct-row table and per-step index when the inputs take few values, else the inputs
    themselves (computed step by step); the mean over the observed steps in both cases.
    """
    mean = np.sum(transition_inputs * mask[..., None], axis=(0, 1)) / np.sum(mask)
    table = tabulate_transition_inputs(transition_inputs)
    if table is None:
        return {"transition_inputs": transition_inputs, "transition_input_mean": mean}, "per step"
    data = {"transition_input_rows": table.rows, "transition_input_index": table.index, "transition_input_mean": mean}
    return data, f"table ({table.rows.shape[0]} rows)"


def true_transition_weights(variant: Variant, num_states: int, seed: int = 2) -> np.ndarray:
    """V (K, K, M): Normal(0, 0.5) off-diagonal weights (full form) or V[i, j] = d[j] - d[i], d zero-sum."""
    key = jax.random.PRNGKey(seed)
    m = variant.num_transition_inputs
    if variant.transitions.form == "destination":
        destination = 0.5 * np.asarray(jax.random.normal(key, (m, num_states)))
        return np.asarray(destination_to_full(destination - destination.mean(axis=-1, keepdims=True)))
    weights = 0.5 * np.asarray(jax.random.normal(key, (num_states, num_states, m)))
    weights[np.arange(num_states), np.arange(num_states)] = 0.0
    return weights


def model_arguments(problem: Problem, variant: Variant, priors: Priors, zero_weights: bool = False):
    """(model, data, z, path): the potential's model, its data (arguments, not constants), z at the truth, the path.

    ``zero_weights``: z with V = 0 (for the check against the stationary potential).
    """
    family, truth = problem.family, problem.truth
    num_states = truth.initial_probs.shape[0]
    input_mean = np.sum(problem.inputs * problem.mask[..., None], axis=(0, 1)) / np.sum(problem.mask)
    data = {
        "inputs": problem.inputs,
        "emissions": problem.emissions,
        "mask": problem.mask,
        "input_mean": input_mean.astype(np.float32),
    }
    model = functools.partial(
        glmhmm_model, num_states=num_states, priors=priors, family=family, adjoint=True, transitions=variant.transitions
    )
    params, transition_input_mean, path = truth, None, ""
    if variant.transitions.is_input_driven:
        transition_inputs = transition_inputs_for(problem, variant.num_transition_inputs, variant.input_kind)
        transitions_data, path = transition_data(transition_inputs, problem.mask)
        transition_input_mean = transitions_data["transition_input_mean"]
        data |= transitions_data
        weights = true_transition_weights(variant, num_states)
        params = truth._replace(transition_weights=np.zeros_like(weights) if zero_weights else weights)
    params = jax.tree.map(lambda value: jnp.asarray(value, jnp.float32), params)
    sites = centred_sites(params, jnp.asarray(input_mean, jnp.float32), transition_input_mean, variant.transitions)
    z = unconstrain_sites({name: jnp.asarray(value, jnp.float32) for name, value in sites.items()}, family)
    return model, data, z, path


def compiled_gradient(problem: Problem, variant: Variant, priors: Priors) -> Gradient:
    """Lower, compile and call once value_and_grad of the variant's potential, each step timed."""
    model, data, z, path = model_arguments(problem, variant, priors)

    def potential(z, data):
        return potential_energy(model, (), data, z)

    start = time.perf_counter()
    lowered = jax.jit(jax.value_and_grad(potential)).lower(z, data)
    lowered_at = time.perf_counter()
    compiled = lowered.compile()
    compiled_at = time.perf_counter()
    jax.block_until_ready(compiled(z, data))
    called_at = time.perf_counter()
    return Gradient(compiled, z, data, lowered_at - start, compiled_at - lowered_at, called_at - compiled_at, path)


def zero_weights_gap(problem: Problem, variant: Variant, gradient: Gradient, stationary: Gradient, priors) -> float:
    """|U_variant(V = 0) - U_stationary + log p(V = 0)| / |U_stationary|, with the compiled functions."""
    _, data, z, _ = model_arguments(problem, variant, priors, zero_weights=True)
    value = float(gradient.function(z, data)[0])
    reference = float(stationary.function(stationary.z, stationary.data)[0])
    num_states = problem.truth.initial_probs.shape[0]
    distributions = prior_distributions(
        problem.family,
        num_states,
        problem.inputs.shape[-1],
        priors,
        variant.transitions,
        variant.num_transition_inputs,
    )
    ((name, site_value),) = free_transition_sites(
        jnp.zeros((num_states, num_states, variant.num_transition_inputs)), variant.transitions
    ).items()
    log_prior_at_zero = float(distributions[name].log_prob(site_value))
    return abs(value - reference + log_prior_at_zero) / abs(reference)


# ---------------------------------------------------------------------------------------------
# Measurement


def summarize_times(times: dict, gradients: dict) -> dict:
    """Per variant: warm median and IQR (ms), cold timings (s), ratios to stationary, XLA memory."""
    results = {}
    base = np.asarray(times["stationary"])
    for name, gradient in gradients.items():
        these = np.asarray(times[name])
        temp_bytes, total_bytes = _memory_bytes(gradient.function)
        results[name] = {
            "path": gradient.path or "stationary",
            "warm_ms": round(float(np.median(these)) * 1e3, 3),
            "warm_ms_iqr": [round(float(q) * 1e3, 3) for q in np.quantile(these, [0.25, 0.75])],
            "cold_s": round(gradient.cold_seconds, 2),
            "lower_s": round(gradient.lower_seconds, 2),
            "compile_s": round(gradient.compile_seconds, 2),
            "first_call_s": round(gradient.first_call_seconds, 3),
            "warm_ratio": round(float(np.median(these) / np.median(base)), 3),
            "warm_ratio_paired": round(float(np.median(these / base)), 3),
            "cold_ratio": round(gradient.cold_seconds / gradients["stationary"].cold_seconds, 3),
            "memory_mib": round(total_bytes / 2**20, 2),
            "temp_mib": round(temp_bytes / 2**20, 2),
            "memory_ratio": None,
        }
    for name in results:
        results[name]["memory_ratio"] = round(results[name]["memory_mib"] / results["stationary"]["memory_mib"], 3)
    return results


def measure(problem: Problem, priors: Priors, seconds_budget: float) -> tuple[dict, dict]:
    """Compile every variant (cold timings), time them interleaved (warm), check the models; return (results, loads)."""
    loads = {"before_compile": os.getloadavg()[0]}
    # A throwaway compile first, so that no variant pays the process's one-time costs in its cold time.
    small = simulated_problem(jax.random.PRNGKey(0), problem.family, QUICK._replace(num_sequences=2))
    compiled_gradient(small, VARIANTS[1], priors)
    gradients = {}
    for variant in VARIANTS:
        gradients[variant.name] = compiled_gradient(problem, variant, priors)
        print(f"{variant.name}: cold {gradients[variant.name].cold_seconds:.2f} s", flush=True)
    loads["before_warm"] = os.getloadavg()[0]
    times = interleaved_times(gradients, seconds_budget)
    loads["after_warm"] = os.getloadavg()[0]
    results = summarize_times(times, gradients)
    for variant in VARIANTS[1:]:
        gap = zero_weights_gap(problem, variant, gradients[variant.name], gradients["stationary"], priors)
        results[variant.name]["zero_weights_gap"] = float(f"{gap:.2e}")
    results["stationary"]["rounds"] = len(times["stationary"])
    return results, loads


# ---------------------------------------------------------------------------------------------
# Profile: the pieces that input-driven transitions add


def softmax_unrolled_analytic(transition_matrix, transition_weights, transition_inputs):
    """Prototype of :func:`bayes_glmhmm.transitions.transition_matrices`, same values, another program.

    The forward pass works on K x K slices of shape (N, T - 1), one per (i, j), so that the
    softmax over j is elementwise (vectorized over sequences and steps) instead of a reduction
    over a minor axis of size K; the reverse pass is the softmax's analytic one,
    d/d logits = P * (G - sum_j P * G), contracted with u for V (one dot over N (T - 1)).
    """
    return _unrolled_softmax(transition_matrix, transition_weights, transition_inputs)


def _unrolled_forward(transition_matrix, transition_weights, transition_inputs):
    num_states = transition_matrix.shape[-1]
    log_matrix = jnp.log(transition_matrix)
    steps = transition_inputs[..., :-1, :]
    rows = []
    for i in range(num_states):
        logits = [log_matrix[i, j] + jnp.sum(transition_weights[i, j] * steps, axis=-1) for j in range(num_states)]
        shift = functools.reduce(jnp.maximum, logits)
        exps = [jnp.exp(logit - shift) for logit in logits]
        total = functools.reduce(jnp.add, exps)
        rows.append(jnp.stack([value / total for value in exps], axis=-1))
    return jnp.stack(rows, axis=-2)


@jax.custom_vjp
def _unrolled_softmax(transition_matrix, transition_weights, transition_inputs):
    return _unrolled_forward(transition_matrix, transition_weights, transition_inputs)


def _unrolled_softmax_forward(transition_matrix, transition_weights, transition_inputs):
    probs = _unrolled_forward(transition_matrix, transition_weights, transition_inputs)
    return probs, (transition_matrix, probs, transition_inputs)


def _unrolled_softmax_backward(residuals, cotangent):
    transition_matrix, probs, transition_inputs = residuals
    weighted = probs * cotangent
    logit_gradient = weighted - probs * jnp.sum(weighted, axis=-1, keepdims=True)
    weight_gradient = jnp.einsum("...tij,...tm->ijm", logit_gradient, transition_inputs[..., :-1, :])
    matrix_gradient = jnp.sum(logit_gradient, axis=tuple(range(logit_gradient.ndim - 2))) / transition_matrix
    return matrix_gradient, weight_gradient, None


_unrolled_softmax.defvjp(_unrolled_softmax_forward, _unrolled_softmax_backward)


def _timed_pieces(problem: Problem, num_inputs: int) -> dict:
    """Name -> (function to differentiate, arguments): the transition part of the likelihood gradient, per path."""
    truth = problem.truth
    num_states = truth.initial_probs.shape[0]
    params = jax.tree.map(lambda value: jnp.asarray(value, jnp.float32), truth)
    mask = jnp.asarray(problem.mask)

    def centred(kind):  # as the model centres them
        values = transition_inputs_for(problem, num_inputs, kind)
        return values - np.sum(values * problem.mask[..., None], axis=(0, 1)) / np.sum(problem.mask)

    binary, continuous = centred("bernoulli"), centred("normal")
    table = tabulate_transition_inputs(binary)
    u = jnp.asarray(continuous)
    weights = jnp.asarray(true_transition_weights(Variant("full", input_driven("full"), num_inputs), num_states))
    matrix = jnp.asarray(truth.transition_matrix, jnp.float32)
    log_likelihoods = batched_log_likelihoods(params, jnp.asarray(problem.inputs), jnp.asarray(problem.emissions))
    stack = transition_matrices(matrix, weights, u)
    assert np.allclose(softmax_unrolled_analytic(matrix, weights, u), stack, atol=1e-6), "prototype disagrees"
    cotangent = jax.random.uniform(jax.random.PRNGKey(3), stack.shape, jnp.float32)

    def kernel(transitions, log_likelihoods, axis):
        per_sequence = jax.vmap(hmm_marginal_loglik, in_axes=(None, axis, 0, 0))
        return jnp.sum(per_sequence(params.initial_probs, transitions, log_likelihoods, mask))

    def stationary(matrix, weights, log_likelihoods):
        return kernel(matrix, log_likelihoods, None)

    def table_path(matrix, weights, log_likelihoods):
        return kernel(tabulated_transition_matrices(matrix, weights, table), log_likelihoods, 0)

    def step_by_step(matrix, weights, log_likelihoods):
        driven = DrivenTransitions(safe_log(matrix), weights, u[:, :-1, :])
        return kernel(driven, log_likelihoods, DrivenTransitions(None, None, 0))

    def stack_path(matrix, weights, log_likelihoods, construct=transition_matrices):
        return kernel(construct(matrix, weights, u), log_likelihoods, 0)

    def build(matrix, weights, construct):  # the (N, T - 1, K, K) matrices alone, a fixed cotangent
        return jnp.sum(cotangent * construct(matrix, weights))

    def emissions_part(weights, biases):  # what every model shares: the family's log-likelihoods
        p = params._replace(weights=weights, biases=biases)
        logliks = batched_log_likelihoods(p, jnp.asarray(problem.inputs), jnp.asarray(problem.emissions))
        return jnp.sum(jnp.where(mask[..., None], logliks, 0.0))

    def grad(function, argnums=(0, 1, 2)):
        return jax.value_and_grad(function, argnums=argnums)

    three = (matrix, weights, log_likelihoods)
    builders = {
        "build_table": lambda a, v: tabulated_transition_matrices(a, v, table),
        "build_stack": lambda a, v: transition_matrices(a, v, u),
        "build_stack_unrolled_analytic": lambda a, v: softmax_unrolled_analytic(a, v, u),
    }
    pieces = {
        "kernel_stationary": (grad(stationary, (0, 2)), three),
        "table": (grad(table_path), three),
        "step_by_step": (grad(step_by_step), three),
        "stack": (grad(stack_path), three),
        "stack_unrolled_analytic": (
            grad(functools.partial(stack_path, construct=softmax_unrolled_analytic)),
            three,
        ),
    }
    for name, construct in builders.items():
        pieces[name] = (grad(functools.partial(build, construct=construct), (0, 1)), (matrix, weights))
    pieces["emission_logliks"] = (grad(emissions_part, (0, 1)), (params.weights, params.biases))
    return pieces


class _Piece(NamedTuple):
    function: object
    z: tuple
    data: None


def profile(problem: Problem, seconds_budget: float, num_inputs: int = 3) -> dict:
    """Milliseconds per call of each piece (median of interleaved rounds) and its XLA memory."""
    compiled = {}
    for name, (function, args) in _timed_pieces(problem, num_inputs).items():
        executable = jax.jit(function).lower(*args).compile()
        # interleaved_times calls function(z, data): wrap to call with the argument tuple.
        compiled[name] = _Piece(lambda args, _, executable=executable: executable(*args), args, None)
        jax.block_until_ready(compiled[name].function(args, None))
    times = interleaved_times(compiled, seconds_budget)
    out = {"num_transition_inputs": num_inputs, "rounds": len(times["kernel_stationary"])}
    for name in compiled:
        out[f"{name}_ms"] = round(float(np.median(times[name])) * 1e3, 3)
    base = np.asarray(times["kernel_stationary"])
    for name in ("table", "step_by_step", "stack", "stack_unrolled_analytic"):
        out[f"{name}_ratio_paired"] = round(float(np.median(np.asarray(times[name]) / base)), 3)
    return out


# ---------------------------------------------------------------------------------------------
# Output


def csv_rows(results: dict, profile_result: dict | None) -> list[list]:
    """One row per model x scalar measurement: model, measurement, value, unit."""
    units = {"ms": "ms", "_s": "s", "mib": "MiB", "ratio": "ratio", "gap": "relative", "rounds": "count"}
    rows = []
    for name, measurements in results.items():
        for measurement, value in measurements.items():
            unit = next((u for suffix, u in units.items() if suffix in measurement), "")
            if isinstance(value, list):
                rows += [[name, f"{measurement}_{q}", v, unit] for q, v in zip(("q25", "q75"), value, strict=True)]
            elif isinstance(value, (int, float)):
                rows.append([name, measurement, value, unit])
    for measurement, value in (profile_result or {}).items():
        rows.append(["profile", measurement, value, "ms" if measurement.endswith("_ms") else ""])
    return rows


def markdown_summary(results: dict, profile_result: dict | None, metadata: dict) -> str:
    """A short human-readable summary of the run."""
    scale = metadata["scale"]
    loads = metadata["load_1min"]
    lines = [
        "# Input-driven transitions: time per gradient at the field's scale",
        "",
        f"Written by `benchmarks/transitions.py{' --quick' if metadata['quick'] else ''}` (package "
        f"`{metadata['package']}`{', commit ' + metadata['commit'] if metadata.get('commit') else ''}): Bernoulli "
        f"family, {metadata['observed_trials']} trials in {scale['num_sequences']} sequences of "
        f"{scale['min_length']}-{scale['max_length']} trials, D = {scale['input_dim']}, K = {scale['num_states']}; "
        "transition inputs u ~ Bernoulli(0.5) (`_normal`: standard normal); "
        f"{metadata['cpu_count']} CPU cores shared with other work, 1-min load "
        f"{loads['before_compile']:.1f} before compiling, {loads['before_warm']:.1f} / {loads['after_warm']:.1f} "
        f"before / after the warm rounds ({results['stationary']['rounds']} interleaved rounds).",
        "",
        "Gradient of the NUTS potential (`value_and_grad` of NumPyro's potential energy, analytic adjoint, jit), "
        "the transition inputs passed as `fit_nuts` passes them (path: a table of distinct rows, or step by step). "
        "Warm: median of interleaved rounds; cold: the first call, compilation included (lowering + compile + "
        "call); ratios to stationary (paired: median of the per-round ratios); XLA memory (temp + arguments + "
        "outputs - aliased). Target of issue 12: warm overhead at most 1.5x.",
        "",
    ]
    header = ["model", "path", "warm ms", "warm / stationary", "paired ratio", "cold s", "compile s"]
    header += ["cold / stationary", "MiB", "MiB / stationary", "V = 0 check"]
    table = []
    for name, result in results.items():
        table.append(
            [
                name,
                result["path"],
                result["warm_ms"],
                result["warm_ratio"],
                result["warm_ratio_paired"],
                result["cold_s"],
                result["compile_s"],
                result["cold_ratio"],
                result["memory_mib"],
                result["memory_ratio"],
                f"{result['zero_weights_gap']:.1e}" if "zero_weights_gap" in result else "",
            ]
        )
    lines += markdown_table(header, table)
    lines.append("")
    for label, paths in (("binary inputs (table)", ("table",)), ("continuous inputs (step by step)", ("per step",))):
        ratios = [r["warm_ratio_paired"] for r in results.values() if r["path"].startswith(paths)]
        if ratios:
            verdict = "within" if max(ratios) <= TARGET_RATIO else "above"
            lines.append(
                f"- {label}: paired warm ratios {min(ratios):.2f}-{max(ratios):.2f}, {verdict} the 1.5x target."
            )
    if profile_result:
        p = profile_result
        lines += [
            "",
            f"Profile: the transition part of the likelihood gradient, M = {p['num_transition_inputs']} (ms per call, "
            f"median of {p['rounds']} interleaved rounds, each with its reverse pass; ratio: paired, to the "
            "stationary kernel):",
            "",
        ]
        rows = [
            ["HMM kernel (filter + adjoint), shared (K, K) matrix: stationary", p["kernel_stationary_ms"], 1.0],
            [
                "table path (binary u): R matrices, gathered per step, stack kernel",
                p["table_ms"],
                p["table_ratio_paired"],
            ],
            [
                "step by step (continuous u): each step's matrix inside the filter and the adjoint",
                p["step_by_step_ms"],
                p["step_by_step_ratio_paired"],
            ],
            ["(N, T-1, K, K) stack by `transition_matrices`, stack kernel", p["stack_ms"], p["stack_ratio_paired"]],
            [
                "prototype: stack with the softmax on (N, T-1) slices, analytic reverse pass",
                p["stack_unrolled_analytic_ms"],
                p["stack_unrolled_analytic_ratio_paired"],
            ],
            ["building alone: the table's matrices, gathered", p["build_table_ms"], ""],
            ["building alone: the stack by `transition_matrices`", p["build_stack_ms"], ""],
            ["building alone: the prototype stack", p["build_stack_unrolled_analytic_ms"], ""],
            ["emission log-likelihoods (every model)", p["emission_logliks_ms"], ""],
        ]
        lines += markdown_table(["piece", "ms", "ratio"], rows)
    return "\n".join(lines) + "\n"


def _commit(package_dir: str) -> str | None:
    """The git commit of the package's checkout, with ``+changes`` when its files differ from it; None outside git."""
    import subprocess

    def git(*args):
        result = subprocess.run(["git", "-C", package_dir, *args], capture_output=True, text=True, check=False)
        return result.stdout.strip() if result.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    if commit is None:
        return None
    return commit + ("+changes" if git("status", "--porcelain", "--", ".") else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run on small data (its time is compilation)")
    parser.add_argument("--seconds", type=float, default=None, help="budget of the warm interleaved rounds")
    parser.add_argument("--profile", action="store_true", help="time the pieces even within the target")
    parser.add_argument("--out", default="results/benchmarks", help="output folder")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    budget = args.seconds or (1.0 if args.quick else 60.0)
    started, load_start = time.time(), os.getloadavg()
    priors = Priors()
    problem = simulated_problem(jax.random.PRNGKey(0), get_family("bernoulli"), scale)  # families.py's data
    results, loads = measure(problem, priors, budget)
    print(json.dumps(results), flush=True)
    profile_result = None
    if args.profile or max(result["warm_ratio"] for result in results.values()) > TARGET_RATIO:
        loads["before_profile"] = os.getloadavg()[0]
        profile_result = profile(problem, budget / 2)
        loads["after_profile"] = os.getloadavg()[0]
        print(json.dumps(profile_result), flush=True)
    metadata = {
        "quick": args.quick,
        "scale": scale._asdict(),
        "observed_trials": int(problem.mask.sum()),
        "family": "bernoulli",
        "transition_inputs": "u[n, t, m] ~ Bernoulli(0.5) (_normal models: Normal(0, 1)), 0 past the lengths",
        "seconds_budget": budget,
        "target_ratio": TARGET_RATIO,
        "package": os.path.dirname(bayes_glmhmm.__file__),
        "commit": _commit(os.path.dirname(bayes_glmhmm.__file__)),
        "jax": jax.__version__,
        "numpyro": numpyro.__version__,
        "backend": jax.default_backend(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "load_1min": {k: round(v, 2) for k, v in loads.items()},
        "wall_seconds": round(time.time() - started, 1),
        "memory": "Compiled.memory_analysis(): temp_size + argument_size + output_size - alias_size",
    }
    prefix = "transitions_quick" if args.quick else "transitions"
    write_text_atomic(
        os.path.join(args.out, f"{prefix}.csv"),
        csv_text(["model", "measurement", "value", "unit"], csv_rows(results, profile_result)),
    )
    write_json_atomic(
        os.path.join(args.out, f"{prefix}.json"), {"metadata": metadata, "results": results, "profile": profile_result}
    )
    write_text_atomic(os.path.join(args.out, f"{prefix}.md"), markdown_summary(results, profile_result, metadata))
    print(json.dumps(metadata), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
