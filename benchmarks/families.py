"""Speed at the field's scale, per emission family: our NUTS potential against a naive forward algorithm.

Simulated data the size of Bolkan et al. 2022's mouse data set: about 50,000 trials in 270
sessions of ragged length (uniform in [150, 230] trials, padded to the longest and masked through
``lengths``), D = 10 inputs, K = 3 states, for every emission family (Bernoulli, categorical with
C = 3, Poisson, Gaussian). In one run, side by side:

(a) time per gradient of the NUTS potential (minus the log posterior density in NumPyro's
    unconstrained space, jitted ``value_and_grad`` of ``numpyro.infer.util.potential_energy``):
    ``ours`` is :func:`bayes_glmhmm.model.glmhmm_model` with the analytic forward-backward adjoint,
    as ``fit_nuts`` samples it; ``naive`` is what a user would write: the same priors
    (:func:`bayes_glmhmm.model.prior_distributions`) and the same family log-likelihoods, the
    states summed out by a plain log-space ``lax.scan`` forward filter, differentiated by
    autodiff (:func:`naive_model`). Both are evaluated at the truth, where their potentials must be
    equal (ours moves the centred intercepts, a unit-Jacobian change of coordinates); the gap is
    recorded. Compile time is excluded; the two are timed in interleaved rounds so that a change of
    machine load hits both alike, and each figure is the median over rounds.
(b) XLA's memory account of both compiled gradients (``Compiled.memory_analysis()``: temporaries
    + arguments + outputs - aliased bytes), not a measured peak.
(c) the full ``fit_nuts(..., num_chains=4, num_warmup=1000, num_samples=1000)`` of the Bernoulli
    data (``--fit-families`` for others): wall time with compilation, EM time, R-hat, ESS,
    divergences, and the coverage of the truth by 94% equal-tailed intervals after matching the
    posterior's labels to the truth's.

The machine may be shared: the 1-minute load average is recorded beside every measurement. The
interleaved ratios are robust to load; absolute times are not.

Writes ``families.csv`` (one row per family x measurement), ``families.json`` (settings, machine,
load averages, the summary) and ``families.md`` into ``--out`` (``families_quick.*`` with ``--quick``,
a smoke run of small data in well under a minute).

    python benchmarks/families.py [--quick] [--families bernoulli poisson] [--fit-families bernoulli]
"""

import argparse
import functools
import json
import os
import platform
import sys
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax import lax
from jax.scipy.special import logsumexp
from numpyro.infer.util import potential_energy

from bayes_glmhmm import Priors, fit_nuts, simulate
from bayes_glmhmm._io import csv_text, markdown_table, write_json_atomic, write_text_atomic
from bayes_glmhmm.emissions import FAMILY_NAMES, EmissionFamily, get_family
from bayes_glmhmm.model import centred_sites, glmhmm_model, prior_distributions, unconstrain_sites
from bayes_glmhmm.relabel import match_params
from bayes_glmhmm.summaries import equal_tailed_interval


class Scale(NamedTuple):
    """Size of a simulated data set: N sequences of lengths uniform in [min_length, max_length]."""

    num_sequences: int
    min_length: int
    max_length: int
    input_dim: int
    num_states: int
    num_classes: int


class FitSettings(NamedTuple):
    """Settings of the full NUTS fit."""

    num_chains: int
    num_warmup: int
    num_samples: int


FULL = Scale(num_sequences=270, min_length=150, max_length=230, input_dim=10, num_states=3, num_classes=3)
QUICK = Scale(num_sequences=8, min_length=20, max_length=40, input_dim=3, num_states=3, num_classes=3)
FULL_FIT = FitSettings(num_chains=4, num_warmup=1000, num_samples=1000)
QUICK_FIT = FitSettings(num_chains=2, num_warmup=60, num_samples=60)

#: Multiplies the true weights and biases: a log link turns the Bernoulli-sized linear predictor
#: (sd about 2) into rates of e^6; a third keeps the Poisson counts in the tens.
LINEAR_PREDICTOR_SCALE = {"poisson": 0.3}


class Problem(NamedTuple):
    """A simulated data set: the truth, padded data, the mask of real trials and the lengths."""

    family: EmissionFamily
    truth: tuple
    inputs: np.ndarray
    emissions: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray


# ---------------------------------------------------------------------------------------------
# The naive competitor: the forward algorithm as a user would write it.


def naive_forward_log_marginal(
    log_initial: jax.Array, log_transition: jax.Array, log_likelihoods: jax.Array, mask: jax.Array
) -> jax.Array:
    """log p(y_{1:T}) of one sequence by the plain log-space forward algorithm.

    Args:
        log_initial: (K,) log p(z_1 = k).
        log_transition: (K, K) log p(z_{t+1} = j | z_t = i).
        log_likelihoods: (T, K) log p(y_t | x_t, z_t = k).
        mask: (T,) False where y_t is missing or padding (its likelihood is then 1).
    """
    log_likelihoods = jnp.where(mask[:, None], log_likelihoods, 0.0)

    def _step(log_alpha, log_likelihood):
        log_alpha = logsumexp(log_alpha[:, None] + log_transition, axis=0) + log_likelihood
        return log_alpha, None

    log_alpha, _ = lax.scan(_step, log_initial + log_likelihoods[0], log_likelihoods[1:])
    return logsumexp(log_alpha)


def naive_total_loglik(params, inputs: jax.Array, emissions: jax.Array, mask: jax.Array, family: EmissionFamily):
    """sum_n log p(y[n] | x[n], theta): the family's log-likelihoods and the naive forward algorithm per sequence."""
    log_likelihoods = family.log_likelihoods(params, inputs, emissions)  # (N, T, K)
    per_sequence = jax.vmap(naive_forward_log_marginal, in_axes=(None, None, 0, 0))(
        jnp.log(params.initial_probs), jnp.log(params.transition_matrix), log_likelihoods, mask
    )
    return jnp.sum(per_sequence)


def naive_model(inputs, emissions, mask, num_states: int, priors: Priors, family: EmissionFamily) -> None:
    """The GLM-HMM in NumPyro with the package's priors, no centring, the naive scanned forward filter."""
    distributions = prior_distributions(family, num_states, inputs.shape[-1], priors)
    params = family.params_type(*(numpyro.sample(name, distributions[name]) for name in family.param_names))
    numpyro.factor("marginal_loglik", naive_total_loglik(params, inputs, emissions, mask, family))


# ---------------------------------------------------------------------------------------------
# Data


def true_params(key, family: EmissionFamily, num_states: int, input_dim: int):
    """A sticky K-state truth: one engaged state (large weight on input 0) and biased, disengaged ones.

    Weights on the other inputs are small and random; extra parameters (the Gaussian's noise
    scales) are 1.
    """
    weight_shape = family.weight_shape(num_states, input_dim)
    stimulus = np.array([3.0] + [0.5] * (num_states - 1))
    offsets = np.linspace(-1.5, 1.5, num_states - 1) if num_states > 1 else np.zeros(0)
    state_bias = np.concatenate([[0.0], offsets])
    weights = 0.3 * np.asarray(jax.random.normal(key, weight_shape))
    weights[..., 0] = np.reshape(stimulus, (num_states,) + (1,) * (len(weight_shape) - 2))
    biases = np.broadcast_to(np.reshape(state_bias, (num_states,) + (1,) * (len(weight_shape) - 2)), weight_shape[:-1])
    scale = LINEAR_PREDICTOR_SCALE.get(family.name, 1.0)
    transition_matrix = np.full((num_states, num_states), 0.04 / max(num_states - 1, 1)) + 0.96 * np.eye(num_states)
    transition_matrix = transition_matrix / transition_matrix.sum(axis=1, keepdims=True)
    initial_probs = np.full(num_states, 1.0 / num_states)
    extras = {name: np.ones(num_states) for name in family.extra_names}
    return family.params_type(
        initial_probs, transition_matrix, scale * weights, scale * np.array(biases, dtype=float), **extras
    )


def simulated_problem(key, family: EmissionFamily, scale: Scale) -> Problem:
    """Standard-normal inputs, ragged lengths, emissions from :func:`true_params`; padding zeroed and masked."""
    key_truth, key_lengths, key_inputs, key_data = jax.random.split(key, 4)
    truth = true_params(key_truth, family, scale.num_states, scale.input_dim)
    lengths = np.asarray(
        jax.random.randint(key_lengths, (scale.num_sequences,), scale.min_length, scale.max_length + 1)
    )
    num_timesteps = int(lengths.max())
    mask = np.arange(num_timesteps)[None, :] < lengths[:, None]
    inputs = np.asarray(jax.random.normal(key_inputs, (scale.num_sequences, num_timesteps, scale.input_dim)))
    inputs = np.where(mask[..., None], inputs, 0.0)
    _, emissions = simulate(key_data, truth, inputs)
    emissions = np.where(mask, np.asarray(emissions), 0.0)
    return Problem(family, truth, inputs.astype(np.float32), emissions.astype(np.float32), mask, lengths)


# ---------------------------------------------------------------------------------------------
# (a), (b): gradients of the two potentials


class CompiledGradient(NamedTuple):
    """A compiled ``(z, data) -> (potential, gradient)`` with its arguments at the truth."""

    function: object
    z: dict
    data: dict


def _compiled_gradient(model, data: dict, z: dict) -> CompiledGradient:
    """Compile value_and_grad of ``model``'s potential energy, the data as arguments (not constants)."""

    def potential(z, data):
        return potential_energy(model, (), data, z)

    compiled = jax.jit(jax.value_and_grad(potential)).lower(z, data).compile()
    return CompiledGradient(compiled, z, data)


def potential_gradients(problem: Problem, priors: Priors) -> dict:
    """``{"ours": CompiledGradient, "naive": CompiledGradient}`` for the problem, both at the truth."""
    family, truth = problem.family, problem.truth
    num_states = truth.initial_probs.shape[0]
    data = {"inputs": problem.inputs, "emissions": problem.emissions, "mask": problem.mask}
    input_mean = np.sum(problem.inputs * problem.mask[..., None], axis=(0, 1)) / np.sum(problem.mask)
    ours_model = functools.partial(glmhmm_model, num_states=num_states, priors=priors, family=family, adjoint=True)
    ours_z = unconstrain_sites(
        {name: jnp.asarray(value, jnp.float32) for name, value in centred_sites(truth, input_mean).items()}, family
    )
    ours = _compiled_gradient(ours_model, {**data, "input_mean": input_mean.astype(np.float32)}, ours_z)
    distributions = prior_distributions(family, num_states, problem.inputs.shape[-1], priors)
    naive_z = {
        name: dist.biject_to(distributions[name].support).inv(jnp.asarray(getattr(truth, name), jnp.float32))
        for name in family.param_names
    }
    naive = _compiled_gradient(
        functools.partial(naive_model, num_states=num_states, priors=priors, family=family), data, naive_z
    )
    return {"ours": ours, "naive": naive}


def _memory_bytes(compiled) -> tuple[int, int]:
    """XLA's account of a compiled executable: (temporaries, temporaries + arguments + outputs - aliased)."""
    stats = compiled.memory_analysis()
    total = stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes
    return int(stats.temp_size_in_bytes), int(total - stats.alias_size_in_bytes)


def interleaved_times(gradients: dict, seconds_budget: float, min_rounds: int = 6, max_rounds: int = 200) -> dict:
    """Seconds per call of each compiled gradient, timed in interleaved rounds: name -> list of times."""
    single = {}
    for name, gradient in gradients.items():
        jax.block_until_ready(gradient.function(gradient.z, gradient.data))  # first call: transfers, caches
        start = time.perf_counter()
        jax.block_until_ready(gradient.function(gradient.z, gradient.data))
        single[name] = time.perf_counter() - start
    rounds = int(np.clip(seconds_budget / sum(single.values()), min_rounds, max_rounds))
    times = {name: [] for name in gradients}
    for round_index in range(rounds):
        # Alternate the order, so that whatever the first call of a round pays is shared alike.
        order = list(gradients) if round_index % 2 == 0 else list(reversed(gradients))
        for name in order:
            gradient = gradients[name]
            start = time.perf_counter()
            jax.block_until_ready(gradient.function(gradient.z, gradient.data))
            times[name].append(time.perf_counter() - start)
    return times


def measure_gradients(problem: Problem, priors: Priors, seconds_budget: float) -> dict:
    """Time per gradient (median of interleaved rounds), memory and the potentials' agreement at the truth."""
    load_before = os.getloadavg()[0]
    compile_start = time.perf_counter()
    gradients = potential_gradients(problem, priors)
    compile_seconds = time.perf_counter() - compile_start
    times = interleaved_times(gradients, seconds_budget)
    values = {name: float(gradient.function(gradient.z, gradient.data)[0]) for name, gradient in gradients.items()}
    result = {
        "rounds": len(times["ours"]),
        "compile_seconds_both": round(compile_seconds, 1),
        "load_1min": round((load_before + os.getloadavg()[0]) / 2, 2),
        "potential_ours": values["ours"],
        "potential_naive": values["naive"],
        "potential_relative_gap": abs(values["ours"] - values["naive"]) / abs(values["naive"]),
    }
    for name, gradient in gradients.items():
        temp_bytes, total_bytes = _memory_bytes(gradient.function)
        result[f"gradient_ms_{name}"] = round(float(np.median(times[name])) * 1e3, 3)
        result[f"gradient_ms_iqr_{name}"] = [round(float(q) * 1e3, 3) for q in np.quantile(times[name], [0.25, 0.75])]
        result[f"memory_mib_{name}"] = round(total_bytes / 2**20, 2)
        result[f"temp_mib_{name}"] = round(temp_bytes / 2**20, 2)
    result["naive_over_ours_time"] = round(result["gradient_ms_naive"] / result["gradient_ms_ours"], 2)
    result["naive_over_ours_memory"] = round(result["memory_mib_naive"] / result["memory_mib_ours"], 2)
    return result


# ---------------------------------------------------------------------------------------------
# (c): the full fit


def interval_coverage(samples: dict, truth, param_names, prob: float = 0.94) -> dict:
    """Fraction of the true scalars inside their central ``prob`` posterior intervals, overall and per parameter."""
    per_parameter, covered_all, missed = {}, [], []
    for name in param_names:
        lower, upper = equal_tailed_interval(samples[name], prob)
        true_value = np.asarray(getattr(truth, name))
        covered = (lower <= true_value) & (true_value <= upper)
        per_parameter[name] = float(np.mean(covered))
        covered_all.extend(np.ravel(covered).tolist())
        missed += [f"{name}{[int(i) for i in index]}" for index in zip(*np.nonzero(~covered), strict=True)]
    return {"fraction": float(np.mean(covered_all)), "per_parameter": per_parameter, "not_covered": missed}


def measure_fit(problem: Problem, settings: FitSettings, seed: int = 0) -> dict:
    """The default pipeline (EM, then NUTS) on the problem: wall time with compilation, diagnostics, coverage."""
    load_start = os.getloadavg()
    start, cpu_start = time.perf_counter(), time.process_time()
    posterior = fit_nuts(
        problem.inputs,
        problem.emissions,
        problem.truth.initial_probs.shape[0],
        family=problem.family,
        lengths=problem.lengths,
        num_chains=settings.num_chains,
        num_warmup=settings.num_warmup,
        num_samples=settings.num_samples,
        seed=seed,
        progress_bar=False,
    )
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    diagnostics = posterior.diagnostics()
    matched = posterior.permute(match_params(posterior.posterior_mean(), problem.truth))
    coverage = interval_coverage(matched.samples, problem.truth, posterior.param_names)
    warmup_gradients = int(np.sum(posterior.settings["warmup_gradients"]))
    sampling_gradients = int(np.sum(posterior.sample_stats["n_steps"]))
    return {
        "fit_wall_seconds": round(wall, 1),
        # CPU time of every thread of this process: what the fit cost, whatever the machine's load.
        "fit_cpu_seconds": round(cpu, 1),
        "em_seconds": round(float(posterior.wall_seconds.get("em", float("nan"))), 1),
        "nuts_seconds": round(float(posterior.wall_seconds["nuts"]), 1),
        "max_rhat": round(diagnostics["max_rhat"], 4),
        "min_ess_bulk": round(diagnostics["min_ess_bulk"], 1),
        "min_ess_tail": round(diagnostics["min_ess_tail"], 1),
        "divergences": diagnostics["divergences"],
        "stuck_chains": len(diagnostics["stuck_chains"]),
        "gradients_warmup": warmup_gradients,
        "gradients_sampling": sampling_gradients,
        "coverage_94": round(coverage["fraction"], 3),
        "coverage_94_per_parameter": {name: round(value, 3) for name, value in coverage["per_parameter"].items()},
        "not_covered": coverage["not_covered"],
        "load_1min_start": round(load_start[0], 2),
        "load_1min_end": round(os.getloadavg()[0], 2),
        "settings": settings._asdict(),
    }


# ---------------------------------------------------------------------------------------------
# Output

UNITS = {
    "gradient_ms": "ms",
    "memory_mib": "MiB",
    "temp_mib": "MiB",
    "naive_over_ours": "ratio",
    "seconds": "s",
    "load": "load",
    "coverage": "fraction",
}


def _unit(measurement: str) -> str:
    return next((unit for prefix, unit in UNITS.items() if prefix in measurement), "")


def csv_rows(results: dict) -> list[list]:
    """One row per family x scalar measurement: family, measurement, value, unit."""
    rows = []
    for family_name, measurements in results.items():
        for stage in ("gradient", "fit"):
            for measurement, value in measurements.get(stage, {}).items():
                if isinstance(value, dict):
                    rows += [[family_name, f"{measurement}_{k}", v, _unit(measurement)] for k, v in value.items()]
                elif isinstance(value, (int, float)) and not isinstance(value, bool):
                    rows.append([family_name, measurement, value, _unit(measurement)])
    return rows


def markdown_summary(results: dict, metadata: dict) -> str:
    """A short human-readable summary of the run."""
    scale = metadata["scale"]
    lines = [
        "# Every family at the field's scale",
        "",
        f"Written by `benchmarks/families.py`{' --quick' if metadata['quick'] else ''}: "
        f"{metadata['observed_trials']} trials in {scale['num_sequences']} sequences of "
        f"{scale['min_length']}-{scale['max_length']} trials, D = {scale['input_dim']}, K = {scale['num_states']}; "
        f"{metadata['cpu_count']} CPU cores, 1-min load {metadata['load_average_start'][0]:.1f} at the start, "
        f"{metadata['load_average_end'][0]:.1f} at the end.",
        "",
        "Time per gradient of the NUTS potential (median of interleaved rounds) and XLA memory "
        "(temp + arguments + outputs):",
        "",
    ]
    header = ["family", "ours ms", "naive ms", "naive / ours", "ours MiB", "naive MiB", "load", "potential gap"]
    table = []
    for family_name, result in results.items():
        gradient = result["gradient"]
        table.append(
            [
                family_name,
                gradient["gradient_ms_ours"],
                gradient["gradient_ms_naive"],
                gradient["naive_over_ours_time"],
                gradient["memory_mib_ours"],
                gradient["memory_mib_naive"],
                gradient["load_1min"],
                f"{gradient['potential_relative_gap']:.1e}",
            ]
        )
    lines += markdown_table(header, table)
    fits = {name: result["fit"] for name, result in results.items() if "fit" in result}
    if fits:
        lines += ["", "Full `fit_nuts` (EM, then NUTS; compilation included):", ""]
        header = ["family", "chains x (warmup + draws)", "wall s", "CPU s", "EM s", "max R-hat", "min ESS bulk"]
        header += ["divergences", "94% coverage", "load start / end"]
        table = [
            [
                name,
                "{num_chains} x ({num_warmup} + {num_samples})".format(**fit["settings"]),
                fit["fit_wall_seconds"],
                fit["fit_cpu_seconds"],
                fit["em_seconds"],
                fit["max_rhat"],
                fit["min_ess_bulk"],
                fit["divergences"],
                fit["coverage_94"],
                f"{fit['load_1min_start']} / {fit['load_1min_end']}",
            ]
            for name, fit in fits.items()
        ]
        lines += markdown_table(header, table)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    # Before JAX starts its backend: one CPU device per chain, so the 4 chains run in parallel.
    numpyro.set_host_device_count(4)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run on small data (well under a minute)")
    parser.add_argument("--families", nargs="+", default=list(FAMILY_NAMES), choices=FAMILY_NAMES)
    parser.add_argument("--fit-families", nargs="*", default=["bernoulli"], choices=FAMILY_NAMES)
    parser.add_argument("--seconds-per-family", type=float, default=None, help="timing budget per family")
    parser.add_argument("--out", default="results/benchmarks", help="output folder")
    args = parser.parse_args(argv)
    scale, fit_settings = (QUICK, QUICK_FIT) if args.quick else (FULL, FULL_FIT)
    budget = args.seconds_per_family or (0.5 if args.quick else 40.0)
    started, load_start = time.time(), os.getloadavg()
    priors = Priors()
    results, observed = {}, 0
    for family_name in args.families:
        family = get_family(family_name, scale.num_classes if family_name == "categorical" else None)
        problem = simulated_problem(jax.random.PRNGKey(0), family, scale)  # same lengths and inputs
        observed = int(problem.mask.sum())
        results[family_name] = {"gradient": measure_gradients(problem, priors, budget)}
        print(family_name, json.dumps(results[family_name]["gradient"]), flush=True)
        if family_name in args.fit_families:
            results[family_name]["fit"] = measure_fit(problem, fit_settings)
            print(family_name, json.dumps(results[family_name]["fit"]), flush=True)
    metadata = {
        "quick": args.quick,
        "scale": scale._asdict(),
        "observed_trials": observed,
        "seconds_per_family": budget,
        "jax": jax.__version__,
        "numpyro": numpyro.__version__,
        "backend": jax.default_backend(),
        "devices": len(jax.devices()),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "wall_seconds": round(time.time() - started, 1),
        "memory": "Compiled.memory_analysis(): temp_size + argument_size + output_size - alias_size",
    }
    prefix = "families_quick" if args.quick else "families"
    write_text_atomic(
        os.path.join(args.out, f"{prefix}.csv"), csv_text(["family", "measurement", "value", "unit"], csv_rows(results))
    )
    write_json_atomic(os.path.join(args.out, f"{prefix}.json"), {"metadata": metadata, "results": results})
    write_text_atomic(os.path.join(args.out, f"{prefix}.md"), markdown_summary(results, metadata))
    print(json.dumps(metadata), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
