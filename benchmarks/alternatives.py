"""Our NUTS against the other ways to sample a GLM-HMM: naive NumPyro, NumPyro enumeration, Stan.

One run, the article's data (``article_data(PRNGKey(0))``: 10 sequences x 100 steps, one input,
K = 3), the article's priors for every method, one chain of 1000 warmup + 1000 kept draws, and
several sampler seeds per method (default 0..4; bad runs are kept: robust initialization is part
of the speed). The methods (models in ``benchmarks/_alternatives_models.py``,
``benchmarks/stan/glmhmm.stan``):

* ``ours``: ``bayes_glmhmm.fit_nuts(..., num_chains=1)``: MAP-EM start, centred biases, analytic
  forward-backward gradient. Its EM, NUTS and relabeling times all count. ``ours_dense``: the
  same with a dense mass matrix (``dense_mass=True``), to see whether it pays.
* ``naive``: a plain NumPyro model, log-space ``lax.scan`` forward algorithm differentiated by
  autodiff, ``numpyro.factor``, NumPyro's default init (``init_to_uniform``).
* ``enumeration``: NumPyro's own enumeration of the state (``contrib.control_flow.scan`` + funsor).
* ``stan``: Stan's ``hmm_marginal`` through pystan 3, Stan's default init, ``random_seed = seed + 1``.
* EM rows (wall time only): ``em_ours_init`` (the MAP EM with 10 restarts that ``fit_nuts`` runs
  first), and ``em_ours`` / ``em_dynamax`` (100 maximum-likelihood iterations from one start, as
  in ``benchmarks/em_speed.py``, whose helpers are reused).

Compile time is kept apart: every JAX method is called once, untimed, with the same shapes and
settings (seed 1000). JAX's own compile events (tracing, lowering, XLA compile) are summed during
every call (``jax_compile_s``) and taken out of the timed calls' seconds, because NumPyro's ``MCMC``
compiles its sampling loop again on every call, ``jit_model_args=True`` or not. Compile is, for
``ours``, that first call's time minus the median later call's (``fit_nuts`` reuses its compiled
sampler); for the NumPyro baselines, the first call's JAX compile time. Stan's compile is the
``stan.build`` of the program after its httpstan cache entry is deleted. The seeds of the timed
calls are interleaved (each seed runs every method, the order rotating) so that load from other
work on a shared machine hits all alike; the 1-minute load average is recorded in every row.

Per run: sampling seconds (NumPyro: warmup + draws, model initialization included, compilation
excluded; Stan: its own
reported elapsed warm-up + sampling time), total seconds (``ours``: ``fit_nuts``'s whole wall time,
EM and relabeling included), leapfrog steps (= gradient evaluations) of the kept draws and of the
warmup, min bulk / tail ESS
over every scalar of initial_probs, transition_matrix, weights, biases and scales after relabeling
every method's draws to one common reference (the features of a MAP-EM estimate, as ``fit_nuts``
does), ESS per second and per 1000 gradients (kept draws), divergences, the median marginal
log-likelihood of the draws and a ``stuck`` flag (median far below the best run of any method, by
``detect_stuck_chains``' threshold). Time per gradient is measured two ways: in the sampler
(NumPyro: sampling seconds / all leapfrog steps; Stan: its sampling-phase seconds / sampling-phase
leapfrogs; not available for ``ours``) and directly (200 gradients of the NumPyro potential
energy in one jitted loop, median of interleaved repeats; Stan: its own one-evaluation "Gradient evaluation took").

Before any timing the log densities are checked to agree: the three NumPyro models' log joint
densities at the same constrained parameters (two parameter values), and Stan's ``log_prob``
differences between them (Stan drops constants).

Writes ``alternatives.csv`` (one row per method x seed), ``alternatives_summary.md`` and
``alternatives.png`` into ``--out`` (default ``results/benchmarks``; with ``--quick`` a temporary
folder). Needs ``pip install -e ".[test,bench]"`` (funsor, pystan; a C++ compiler for Stan).

Usage::

    python benchmarks/alternatives.py [--seeds 5] [--warmup 1000] [--samples 1000] [--no-stan] [--out DIR]
    python benchmarks/alternatives.py --quick   # smoke run: 150 + 150 draws, 2 seeds
"""

import argparse
import csv
import io
import os
import platform
import re
import tempfile
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from bayes_glmhmm import GLMHMMParams, Priors, article_data, article_params, detect_stuck_chains, fit_em, fit_nuts
from bayes_glmhmm._io import save_figures_atomic, write_text_atomic
from bayes_glmhmm.em import initialize_params
from bayes_glmhmm.mcmc import PARAM_NAMES
from bayes_glmhmm.model import batched_marginal_loglik, glmhmm_model
from bayes_glmhmm.relabel import relabel_samples, state_features

# Run as a script, benchmarks/ is on sys.path.
from _alternatives_models import (  # isort: skip
    make_enumeration_model,
    make_naive_model,
    stan_constrained,
    stan_data,
    stan_draws,
    stan_elapsed_seconds,
    stan_program,
)
from em_speed import _dynamax_runner, _first_call, _interleaved_runs  # isort: skip

NUM_STATES = 3
SAMPLERS = ("ours", "ours_dense", "naive", "enumeration", "stan")
WARMUP_SEED = 1000
EM_ITERS = 100
COLUMNS = [
    "method",
    "seed",
    "num_warmup",
    "num_samples",
    "compile_s",
    "jax_compile_s",
    "em_s",
    "sampling_s",
    "relabel_s",
    "total_s",
    "total_with_compile_s",
    "wall_s",
    "gradients",
    "gradients_warmup",
    "us_per_gradient_sampler",
    "us_per_gradient_direct",
    "min_ess_bulk",
    "min_ess_tail",
    "min_ess_bulk_param",
    "ess_bulk_per_s",
    "ess_bulk_per_s_total",
    "ess_bulk_per_1000_gradients",
    "divergences",
    "median_loglik",
    "loglik_gap_to_best",
    "stuck",
    "em_final_log_prob",
    "loadavg_1m",
]


class CompileClock:
    """Sums JAX's compile-event durations (tracing, lowering, backend compile) while it is open."""

    def __init__(self):
        self.seconds = 0.0
        self._open = False
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event, duration, **_):
        if self._open and event.startswith("/jax/core/compile/"):
            self.seconds += duration

    def __enter__(self):
        self.seconds, self._open = 0.0, True
        return self

    def __exit__(self, *exc):
        self._open = False


def _loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def _clip_simplex(value):
    value = np.clip(np.asarray(value, dtype=float), 1e-4, None)
    return value / value.sum(axis=-1, keepdims=True)


def _as_numpy_params(params) -> GLMHMMParams:
    params = jax.tree.map(lambda p: np.asarray(p, dtype=float), params)
    return params._replace(
        initial_probs=_clip_simplex(params.initial_probs), transition_matrix=_clip_simplex(params.transition_matrix)
    )


class Problem:
    """The data, the priors, the common relabeling reference and the per-draw log-likelihood."""

    def __init__(self, data_seed: int):
        data = article_data(jax.random.PRNGKey(data_seed))
        self.inputs = jnp.asarray(data.inputs)
        self.emissions = jnp.asarray(data.emissions)
        self.mask = jnp.ones(self.emissions.shape, bool)
        self.priors = Priors()
        self.input_mean = jnp.mean(self.inputs, axis=(0, 1))
        self.ours_kwargs = dict(
            inputs=self.inputs,
            emissions=self.emissions,
            mask=self.mask,
            num_states=NUM_STATES,
            priors=self.priors,
            input_mean=self.input_mean,
        )
        self.naive_model = make_naive_model(NUM_STATES, self.priors)
        self.enumeration_model = make_enumeration_model(NUM_STATES, self.priors)
        reference_em = fit_em(self.inputs, self.emissions, NUM_STATES, priors=self.priors, num_restarts=10, seed=0)
        self.reference_params = _as_numpy_params(reference_em.params)
        self.reference = state_features({k: np.asarray(v) for k, v in reference_em.params._asdict().items()})
        inputs, emissions, mask = self.inputs, self.emissions, self.mask
        self._loglik = jax.jit(
            jax.vmap(lambda p: jnp.sum(batched_marginal_loglik(p, inputs, emissions, mask)), in_axes=0)
        )

    def summarize_draws(self, draws: dict) -> dict:
        """Relabel (draw, ...) draws to the common reference; min ESS and per-draw log-likelihood."""
        import arviz as az

        relabeled = relabel_samples({name: np.asarray(draws[name])[None] for name in PARAM_NAMES}, self.reference)
        dataset = az.convert_to_dataset({name: relabeled.samples[name] for name in PARAM_NAMES})
        bulk, tail = az.ess(dataset, method="bulk"), az.ess(dataset, method="tail")
        minima = {name: float(np.nanmin(bulk[name].values)) for name in PARAM_NAMES}
        params = GLMHMMParams(*(jnp.asarray(relabeled.samples[name][0], dtype=jnp.float32) for name in PARAM_NAMES))
        return {
            "min_ess_bulk": min(minima.values()),
            "min_ess_bulk_param": min(minima, key=minima.get),
            "min_ess_tail": min(float(np.nanmin(tail[name].values)) for name in PARAM_NAMES),
            "loglik": np.asarray(self._loglik(params), dtype=float),
        }

    def numpyro_constrained(self, params: GLMHMMParams) -> dict:
        return {name: jnp.asarray(value, dtype=jnp.float32) for name, value in params._asdict().items()}


def self_check(problem: Problem, stan_model=None) -> str:
    """Assert that every model's log density agrees at two parameter values; return a report line."""
    from numpyro.contrib.funsor import enum
    from numpyro.contrib.funsor import log_density as enum_log_density
    from numpyro.infer.util import log_density

    args = (problem.inputs, problem.emissions)
    points = {"MAP-EM": problem.reference_params, "truth": _as_numpy_params(article_params())}
    values = {}
    for label, params in points.items():
        constrained = problem.numpyro_constrained(params)
        ours_params = {
            **{k: v for k, v in constrained.items() if k != "biases"},
            "centred_biases": constrained["biases"] + constrained["weights"] @ problem.input_mean,
        }
        values[label] = {
            "ours": float(log_density(glmhmm_model, (), problem.ours_kwargs, ours_params)[0]),
            "naive": float(log_density(problem.naive_model, args, {}, constrained)[0]),
            "enumeration": float(
                enum_log_density(enum(problem.enumeration_model, first_available_dim=-2), args, {}, constrained)[0]
            ),
        }
        if stan_model is not None:
            unconstrained = stan_model.unconstrain_pars(stan_constrained(params))
            values[label]["stan"] = float(stan_model.log_prob(unconstrained, adjust_transform=False))
    lines = []
    for label, by_method in values.items():
        reference = by_method["naive"]
        for method in ("ours", "enumeration"):
            gap = abs(by_method[method] - reference)
            assert gap <= 0.05 + 1e-5 * abs(reference), f"log density of {method} at {label}: {by_method} "
        lines.append(f"{label}: " + ", ".join(f"{m} {v:.4f}" for m, v in by_method.items()))
    if stan_model is not None:
        stan_difference = values["MAP-EM"]["stan"] - values["truth"]["stan"]
        naive_difference = values["MAP-EM"]["naive"] - values["truth"]["naive"]
        assert abs(stan_difference - naive_difference) <= 0.05 + 1e-5 * abs(naive_difference), (
            f"Stan's log density difference {stan_difference} != NumPyro's {naive_difference}"
        )
        lines.append(
            f"difference MAP-EM - truth: Stan {stan_difference:.4f}, NumPyro {naive_difference:.4f} "
            "(Stan's ~ statements drop constants, so only differences compare)"
        )
    return "; ".join(lines)


def _potential_gradient(model, model_args, model_kwargs, calls: int):
    """A no-argument function running ``calls`` potential-energy gradients in one jitted loop.

    Each gradient nudges the point by 1e-7 x itself, so that no evaluation can be hoisted out of
    the loop; one call's dispatch overhead is spread over ``calls`` gradients.
    """
    from numpyro.infer.util import initialize_model

    info = initialize_model(jax.random.PRNGKey(0), model, model_args=model_args, model_kwargs=model_kwargs)
    gradient = jax.grad(info.potential_fn)

    @jax.jit
    def _many(point):
        def _step(_, point):
            return jax.tree.map(lambda value, slope: value + 1e-7 * slope, point, gradient(point))

        return jax.lax.fori_loop(0, calls, _step, point)

    start = info.param_info.z
    return lambda: _many(start)


def direct_gradient_times(problem: Problem, rounds: int, calls: int) -> dict:
    """Microseconds of one potential-energy gradient per JAX model: median over ``rounds``
    interleaved timings of ``calls`` gradients in a jitted loop."""
    args = (problem.inputs, problem.emissions)
    functions = {
        "ours": _potential_gradient(glmhmm_model, (), problem.ours_kwargs, calls),
        "naive": _potential_gradient(problem.naive_model, args, {}, calls),
        "enumeration": _potential_gradient(problem.enumeration_model, args, {}, calls),
    }
    times = {name: [] for name in functions}
    for function in functions.values():
        jax.block_until_ready(function())
    for _ in range(rounds):
        for name, function in functions.items():
            begin = time.perf_counter()
            jax.block_until_ready(function())
            times[name].append((time.perf_counter() - begin) / calls)
    return {name: float(np.median(values)) * 1e6 for name, values in times.items()}


class OursRunner:
    def __init__(self, problem, num_warmup, num_samples, clock, dense_mass=False):
        self.problem, self.num_warmup, self.num_samples, self.clock = problem, num_warmup, num_samples, clock
        self.dense_mass = dense_mass

    def __call__(self, seed):
        with self.clock:
            begin = time.perf_counter()
            posterior = fit_nuts(
                self.problem.inputs,
                self.problem.emissions,
                NUM_STATES,
                num_chains=1,
                num_warmup=self.num_warmup,
                num_samples=self.num_samples,
                seed=seed,
                progress_bar=False,
                dense_mass=self.dense_mass,
            )
            wall = time.perf_counter() - begin
        seconds = posterior.wall_seconds
        gradients = int(np.sum(posterior.sample_stats["n_steps"]))
        gradients_warmup = int(np.sum(posterior.settings["warmup_gradients"]))
        return {
            "draws": {name: posterior.samples[name][0] for name in PARAM_NAMES},
            "gradients": gradients,
            "gradients_warmup": gradients_warmup,
            "divergences": int(np.sum(posterior.sample_stats["diverging"])),
            "em_s": seconds.get("em", float("nan")),
            "sampling_s": seconds["nuts"],
            "relabel_s": seconds.get("relabel", float("nan")),
            # Any JAX compilation inside a repeated call is taken out, as for the NumPyro baselines.
            "total_s": seconds.get("total", wall) - self.clock.seconds,
            "wall_s": wall,
            "jax_compile_s": self.clock.seconds,
            "us_per_gradient_sampler": (seconds["nuts"] - self.clock.seconds) / (gradients + gradients_warmup) * 1e6,
        }


class NumPyroRunner:
    """One MCMC object per model, reused across seeds (jit_model_args=True) so it compiles once.

    Warmup and kept draws run as ``mcmc.warmup(collect_warmup=True)`` then ``mcmc.run``, the same
    sampler as one ``mcmc.run``, so that the warmup's leapfrog steps can be counted too.
    """

    def __init__(self, model, problem, num_warmup, num_samples, clock):
        from numpyro.infer import MCMC, NUTS

        self.problem, self.clock = problem, clock
        self.mcmc = MCMC(
            NUTS(model), num_warmup=num_warmup, num_samples=num_samples, progress_bar=False, jit_model_args=True
        )

    def __call__(self, seed):
        args = (self.problem.inputs, self.problem.emissions)
        fields = ("num_steps", "diverging")
        warmup_key, sample_key = jax.random.split(jax.random.PRNGKey(seed))
        with self.clock:
            begin = time.perf_counter()
            self.mcmc.warmup(warmup_key, *args, collect_warmup=True, extra_fields=fields)
            warmup_steps = np.asarray(self.mcmc.get_extra_fields()["num_steps"])
            self.mcmc.run(sample_key, *args, extra_fields=fields)
            samples = jax.block_until_ready(self.mcmc.get_samples())
            extra = self.mcmc.get_extra_fields()
            wall = time.perf_counter() - begin
        steps = np.asarray(extra["num_steps"])
        gradients, gradients_warmup = int(steps.sum()), int(warmup_steps.sum())
        # NumPyro's MCMC compiles its sampling loop again on every call, jit_model_args or not;
        # the compile time JAX reports during the call is taken out of the sampling time.
        sampling = wall - self.clock.seconds
        return {
            "draws": {name: np.asarray(samples[name]) for name in PARAM_NAMES},
            "gradients": gradients,
            "gradients_warmup": gradients_warmup,
            "divergences": int(np.sum(extra["diverging"])),
            "em_s": float("nan"),
            "sampling_s": sampling,
            "relabel_s": float("nan"),
            "total_s": sampling,
            "wall_s": wall,
            "jax_compile_s": self.clock.seconds,
            "us_per_gradient_sampler": sampling / (gradients + gradients_warmup) * 1e6,
        }


class StanRunner:
    """pystan 3: the program compiled once (its cache entry deleted first, so compile is real)."""

    def __init__(self, problem, num_warmup, num_samples, clear_cache=True):
        import httpstan.cache
        import httpstan.models
        import stan

        self.stan, self.num_warmup, self.num_samples = stan, num_warmup, num_samples
        self.program = stan_program()
        self.data = stan_data(problem.inputs, problem.emissions, NUM_STATES)
        if clear_cache:
            httpstan.cache.delete_model_directory(httpstan.models.calculate_model_name(self.program))
        begin = time.perf_counter()
        self.model = stan.build(self.program, data=self.data, random_seed=1)
        self.compile_s = time.perf_counter() - begin

    def __call__(self, seed):
        model = self.stan.build(self.program, data=self.data, random_seed=seed + 1)  # cached: no compile
        begin = time.perf_counter()
        fit = model.sample(num_chains=1, num_warmup=self.num_warmup, num_samples=self.num_samples, save_warmup=True)
        wall = time.perf_counter() - begin
        draws, stats = stan_draws(fit, self.num_warmup)
        elapsed = stan_elapsed_seconds(fit)
        gradients, gradients_warmup = int(stats["n_leapfrog"].sum()), int(stats["n_leapfrog_warmup"].sum())
        direct = float("nan")
        for line in fit.stan_outputs[0].splitlines():
            match = re.search(rb"Gradient evaluation took ([0-9.eE+-]+) seconds", line)
            if match:
                direct = float(match.group(1)) * 1e6
                break
        return {
            "draws": draws,
            "gradients": gradients,
            "gradients_warmup": gradients_warmup,
            "divergences": int(stats["diverging"].sum()),
            "em_s": float("nan"),
            "sampling_s": elapsed["total"] if np.isfinite(elapsed["total"]) else wall,
            "relabel_s": float("nan"),
            "total_s": elapsed["total"] if np.isfinite(elapsed["total"]) else wall,
            "wall_s": wall,
            "jax_compile_s": float("nan"),
            "us_per_gradient_sampler": elapsed["sampling"] / gradients * 1e6,
            "us_per_gradient_direct": direct,
        }


def _timed_first_call(runner, seed):
    begin = time.perf_counter()
    result = runner(seed)
    return time.perf_counter() - begin, result


def em_rows(problem: Problem, seeds, repeats: int) -> list[dict]:
    """Wall time of EM: ours as fit_nuts runs it, and ours vs dynamax for EM_ITERS ML iterations."""
    rows = []
    inputs, emissions, mask = problem.inputs, problem.emissions, problem.mask
    for seed in seeds:

        def ours_init(seed=seed):
            return fit_em(inputs, emissions, NUM_STATES, priors=problem.priors, num_restarts=10, seed=seed).params

        start = initialize_params(jax.random.PRNGKey(seed), inputs, emissions, mask, NUM_STATES)

        def ours_ml(start=start):
            result = fit_em(inputs, emissions, NUM_STATES, init_params=start, num_iters=EM_ITERS, tol=-1.0)
            return result.params, result.log_probs

        _, dynamax_jitted = _dynamax_runner(start, np.asarray(inputs), np.asarray(emissions), EM_ITERS)
        load = _loadavg()
        firsts = [_first_call(function) for function in (ours_init, ours_ml, dynamax_jitted)]
        runs = _interleaved_runs([ours_init, ours_ml, dynamax_jitted], repeats)
        (_, _), (_, (_, ours_log_probs)), (_, (_, dynamax_log_probs)) = firsts
        finals = [float("nan"), float(ours_log_probs[-1]), float(np.asarray(dynamax_log_probs)[-1])]
        for method, (first, _), run, final in zip(
            ("em_ours_init", "em_ours", "em_dynamax"), firsts, runs, finals, strict=True
        ):
            rows.append(
                {
                    "method": method,
                    "seed": seed,
                    "compile_s": max(first - run, 0.0),
                    "total_s": run,
                    "total_with_compile_s": first,
                    "wall_s": run,
                    "em_final_log_prob": final,
                    "loadavg_1m": load,
                }
            )
    return rows


def _fmt(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if value is None or not np.isfinite(value):
        return ""
    return f"{value:.6g}"


def _median_range(values, digits=3) -> str:
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if values.size == 0:
        return "n/a"

    def _g(x):
        return f"{x:.{digits}g}"

    if values.size == 1:
        return _g(values[0])
    return f"{_g(np.median(values))} [{_g(values.min())}-{_g(values.max())}]"


def _median(rows, method, key):
    values = [row[key] for row in rows if row["method"] == method and np.isfinite(row.get(key, np.nan))]
    return float(np.median(values)) if values else float("nan")


def summary_markdown(rows, args, check_line, loads, versions, first_calls, first_compiles) -> str:
    sampler_methods = [m for m in SAMPLERS if any(row["method"] == m for row in rows)]
    lines = [
        "# Sampling the article's GLM-HMM: ours against the alternatives",
        "",
        f"Written by `benchmarks/alternatives.py` ({'quick mode, ' if args.quick else ''}"
        f"{args.warmup} warmup + {args.samples} draws, one chain, seeds {', '.join(map(str, range(args.seeds)))}; "
        "article data: 10 sequences x 100 steps, K = 3, article priors for every method). "
        "Each cell: median [min-max] over seeds; every run counts, stuck ones included.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, shared with other work; 1-minute load average "
        f"{loads['start']:.2f} at the start, {loads['min']:.2f}-{loads['max']:.2f} over the runs, {loads['end']:.2f} "
        f"at the end. {versions}.",
        "",
    ]
    if loads["max"] > (os.cpu_count() or 1):
        lines += [
            "**Caveat: the machine was oversubscribed** (load average above its core count). Stan samples in "
            "one single-threaded process forked by httpstan, the JAX methods on XLA's CPU thread pool inside "
            "this process, and the two need not suffer alike; the interleaved seeds make the ratios fairer "
            "than separate runs would, not load-free. A run on a quiet machine settles them.",
            "",
        ]
    lines += [
        "| method | compile s | sampling s | total s | gradients (kept draws) | us / gradient, sampler "
        "| us / gradient, direct | min bulk ESS | min tail ESS | bulk ESS / s (sampling) | bulk ESS / s (total) "
        "| bulk ESS / 1000 gradients | divergences | stuck runs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method in sampler_methods:
        mine = [row for row in rows if row["method"] == method]

        def _col(key, mine=mine):
            return _median_range([row.get(key, np.nan) for row in mine])

        stuck = sum(bool(row["stuck"]) for row in mine)
        lines.append(
            f"| {method} | {_col('compile_s')} | {_col('sampling_s')} | {_col('total_s')} | {_col('gradients')} "
            f"| {_col('us_per_gradient_sampler')} | {_col('us_per_gradient_direct')} | {_col('min_ess_bulk')} "
            f"| {_col('min_ess_tail')} | {_col('ess_bulk_per_s')} | {_col('ess_bulk_per_s_total')} "
            f"| {_col('ess_bulk_per_1000_gradients')} | {sum(row['divergences'] for row in mine)} "
            f"| {stuck} / {len(mine)} |"
        )
    lines += [
        "",
        "Sampling s: NumPyro methods, warmup + draws with model initialization, JAX compilation "
        "inside the call removed (for `ours` the NUTS step of `fit_nuts`); Stan, its own reported "
        "warm-up + sampling time. Total s: `ours` is the whole `fit_nuts` call (MAP-EM with 10 restarts "
        "+ NUTS + relabeling); the others equal their sampling time. Compile s is a one-off cost per "
        "shape, kept out of both (see Compilation below). us / gradient, sampler: "
        "ours and NumPyro, sampling s / all leapfrog steps (warmup included, so NUTS overhead is in it); "
        "Stan, its sampling-phase time / sampling-phase leapfrog steps. Direct: 200 gradients of the "
        "potential energy in one jitted loop, median of interleaved repeats; "
        'Stan\'s own single "Gradient evaluation took" figure.',
        "",
    ]
    ours_total, ours_sampling = _median(rows, "ours", "ess_bulk_per_s_total"), _median(rows, "ours", "ess_bulk_per_s")
    lines.append("## Ratios of median bulk ESS per second")
    lines.append("")
    lines.append("| ours / | ours total (EM + NUTS + relabel) | ours NUTS only | target | met (total) |")
    lines.append("|---|---|---|---|---|")
    targets = {"stan": 20.0, "enumeration": 3.0, "naive": None}
    for other in ("stan", "enumeration", "naive"):
        if other not in sampler_methods or "ours" not in sampler_methods:
            continue
        theirs = _median(rows, other, "ess_bulk_per_s")
        target = targets[other]
        ratio_total, ratio_sampling = ours_total / theirs, ours_sampling / theirs
        met = "n/a" if target is None else ("yes" if ratio_total >= target else "no")
        lines.append(
            f"| {other} | {ratio_total:.1f}x | {ratio_sampling:.1f}x | "
            f"{'-' if target is None else f'>= {target:g}x'} | {met} |"
        )
    lines += [
        "",
        "The issue's targets: ours >= 20x Stan's ESS/s and >= 3x NumPyro enumeration's; judged here on "
        "ours' total time (EM initialization included) against the others' sampling time, the stricter "
        "reading.",
        "",
        "## EM (wall time, compiled; fastest of repeats)",
        "",
        "| method | seconds | first call s (compile included) | final log p |",
        "|---|---|---|---|",
    ]
    for method, label in (
        ("em_ours_init", "ours, MAP EM with 10 restarts (fit_nuts' initialization)"),
        ("em_ours", f"ours, {EM_ITERS} ML iterations, one start"),
        ("em_dynamax", f"dynamax LinearRegressionHMM.fit_em, {EM_ITERS} ML iterations, same start"),
    ):
        mine = [row for row in rows if row["method"] == method]
        if mine:
            lines.append(
                f"| {label} | {_median_range([r['total_s'] for r in mine])} "
                f"| {_median_range([r['total_with_compile_s'] for r in mine])} "
                f"| {_median_range([r['em_final_log_prob'] for r in mine], 6)} |"
            )
    lines += ["", "## Self-check before timing", "", check_line, ""]
    stuck_rows = [row for row in rows if row.get("stuck")]
    if stuck_rows:
        lines += [
            "## Stuck runs",
            "",
            "Median marginal log-likelihood of the draws far below the best run of any method:",
            "",
        ]
        for row in stuck_rows:
            lines.append(
                f"- {row['method']} seed {row['seed']}: {row['loglik_gap_to_best']:.1f} nats below the best "
                f"(min bulk ESS {row['min_ess_bulk']:.0f})"
            )
        lines.append("")
    lines += [
        "## Compilation",
        "",
        "Each JAX method is first called once, untimed, with the same shapes and settings (seed "
        f"{WARMUP_SEED}). JAX's own compile events (tracing, lowering, XLA compile) are summed during every "
        "call; whatever a timed call compiles is taken out of its sampling and total seconds (the raw wall "
        "time is `wall_s` in the CSV).",
        "",
        "| method | first call s | JAX compile in first call s | compile s reported | JAX compile in later calls s |",
        "|---|---|---|---|---|",
    ]
    for method in [m for m in sampler_methods if m != "stan"]:
        mine = [row for row in rows if row["method"] == method]
        lines.append(
            f"| {method} | {first_calls[method]:.1f} | {first_compiles[method]:.1f} "
            f"| {_median_range([r['compile_s'] for r in mine])} | {_median_range([r['jax_compile_s'] for r in mine])} |"
        )
    if "stan" in sampler_methods:
        stan_compile = [r["compile_s"] for r in rows if r["method"] == "stan"][0]
        lines.append(f"| stan | - | - | {stan_compile:.1f} (stan.build, httpstan cache cleared) | - |")
    lines += [
        "",
        "`ours`: compile = first call minus the median later call (`fit_nuts` reuses its compiled sampler "
        "when the shapes repeat). NumPyro's `MCMC` compiles its sampling loop again on every `run`/`warmup` "
        "even with `jit_model_args=True` (numpyro "
        "0.22): for `naive` and `enumeration` the compile reported is the first call's JAX compile time, and "
        "the later calls' recompilation is removed from their sampling time (a user calling `MCMC.run` "
        "repeatedly waits for it: see `wall_s`).",
        "",
    ]
    return "\n".join(lines)


def figure(rows, gradient_direct):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in SAMPLERS if any(row["method"] == m for row in rows)]
    panels = [("ours (total)", "ours", "ess_bulk_per_s_total")] + [
        (m if m != "ours" else "ours (NUTS only)", m, "ess_bulk_per_s") for m in methods
    ]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    rng = np.random.default_rng(0)
    for i, (_, method, key) in enumerate(panels):
        mine = [row for row in rows if row["method"] == method]
        values = np.array([row[key] for row in mine])
        stuck = np.array([bool(row["stuck"]) for row in mine])
        x = i + rng.uniform(-0.12, 0.12, size=len(values))
        left.scatter(x[~stuck], values[~stuck], color="C0", zorder=3)
        left.scatter(x[stuck], values[stuck], color="C3", marker="v", zorder=3, label="stuck" if i == 0 else None)
        left.hlines(np.median(values), i - 0.3, i + 0.3, color="k", lw=2, zorder=4)
        left.annotate(f"{np.median(values):.0f}", (i + 0.32, np.median(values)), va="center", fontsize=8)
    left.set_yscale("log")
    left.set_xticks(range(len(panels)), [p[0] for p in panels], rotation=20)
    left.set_ylabel("min bulk ESS per second")
    left.set_title("ESS/s per seed (dots), median (bar); red = stuck")
    for i, method in enumerate(methods):
        mine = [row for row in rows if row["method"] == method]
        sampler = np.array([row["us_per_gradient_sampler"] for row in mine], dtype=float)
        if np.isfinite(sampler).any():
            right.scatter(i + rng.uniform(-0.1, 0.1, size=len(sampler)), sampler, color="C0", zorder=3)
        direct = gradient_direct.get(method, np.nanmedian([row.get("us_per_gradient_direct", np.nan) for row in mine]))
        if np.isfinite(direct):
            right.scatter([i], [direct], color="C1", marker="x", s=80, zorder=4)
    right.scatter([], [], color="C0", label="in the sampler (per seed)")
    right.scatter([], [], color="C1", marker="x", label="direct (jitted grad; Stan: its own)")
    right.set_yscale("log")
    right.set_xticks(range(len(methods)), methods)
    right.set_ylabel("microseconds per gradient")
    right.set_title("time per log-density gradient")
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=None, help="sampler seeds 0..n-1 (default 5, quick 2)")
    parser.add_argument("--warmup", type=int, default=None, help="warmup iterations (default 1000, quick 150)")
    parser.add_argument("--samples", type=int, default=None, help="kept draws (default 1000, quick 150)")
    parser.add_argument("--no-stan", action="store_true", help="skip Stan (no pystan / C++ compiler needed)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 150 + 150 draws, 2 seeds")
    parser.add_argument(
        "--stan-cached", action="store_true", help="keep httpstan's compiled model (Stan compile time then meaningless)"
    )
    parser.add_argument("--em-repeats", type=int, default=3)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    args.seeds = args.seeds or (2 if args.quick else 5)
    args.warmup = args.warmup if args.warmup is not None else (150 if args.quick else 1000)
    args.samples = args.samples or (150 if args.quick else 1000)
    out = args.out or (
        os.path.join(tempfile.gettempdir(), "bayes_glmhmm_alternatives_quick")
        if args.quick
        else os.path.join("results", "benchmarks")
    )
    seeds = list(range(args.seeds))
    load_start = _loadavg()
    print(f"load average {load_start}; {args.warmup} + {args.samples} draws, seeds {seeds}", flush=True)

    problem = Problem(args.data_seed)
    stan_runner = None
    if not args.no_stan:
        # Built first: httpstan forks its sampler processes, better before JAX has compiled much.
        stan_runner = StanRunner(problem, args.warmup, args.samples, clear_cache=not args.stan_cached)
        print(f"stan: compiled in {stan_runner.compile_s:.1f} s", flush=True)
    check_line = self_check(problem, stan_runner.model if stan_runner else None)
    print(f"self-check passed: {check_line}", flush=True)

    clock = CompileClock()
    runners = {
        "ours": OursRunner(problem, args.warmup, args.samples, clock),
        "ours_dense": OursRunner(problem, args.warmup, args.samples, clock, dense_mass=True),
        "naive": NumPyroRunner(problem.naive_model, problem, args.warmup, args.samples, clock),
        "enumeration": NumPyroRunner(problem.enumeration_model, problem, args.warmup, args.samples, clock),
    }
    first_calls, first_compiles = {}, {}
    for name, runner in runners.items():
        first_calls[name], _ = _timed_first_call(runner, WARMUP_SEED)
        first_compiles[name] = clock.seconds
        print(
            f"{name}: first call {first_calls[name]:.1f} s, JAX compile events in it {clock.seconds:.1f} s", flush=True
        )
    if stan_runner is not None:
        runners["stan"] = stan_runner
    gradient_direct = direct_gradient_times(problem, rounds=7 if args.quick else 15, calls=200)
    gradient_direct["ours_dense"] = gradient_direct["ours"]  # the same potential; only the mass matrix differs
    print("direct gradient us: " + ", ".join(f"{k} {v:.0f}" for k, v in gradient_direct.items()), flush=True)

    results = []
    for index, seed in enumerate(seeds):
        names = list(runners)
        order = names[index % len(names) :] + names[: index % len(names)]
        for name in order:
            load = _loadavg()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # os.fork() with JAX threads (httpstan)
                result = runners[name](seed)
            result.update(method=name, seed=seed, loadavg_1m=load)
            result.update(problem.summarize_draws(result.pop("draws")))
            results.append(result)
            print(
                f"seed {seed} {name}: sampling {result['sampling_s']:.1f} s, total {result['total_s']:.1f} s, "
                f"{result['gradients']} gradients, min bulk ESS {result['min_ess_bulk']:.0f} "
                f"({result['min_ess_bulk_param']}), median loglik {np.median(result['loglik']):.1f}, "
                f"jax compile {result['jax_compile_s']:.1f} s, load {load}",
                flush=True,
            )

    logliks = np.stack([result["loglik"] for result in results])
    stuck, threshold = detect_stuck_chains(logliks)
    best = float(np.max(np.median(logliks, axis=1)))
    rows = []
    for index, result in enumerate(results):
        name = result["method"]
        later = [r["wall_s"] for r in results if r["method"] == name]
        if name == "stan":
            compile_s = stan_runner.compile_s
        elif name in ("ours", "ours_dense"):
            compile_s = max(first_calls[name] - float(np.median(later)), 0.0)
        else:  # every call compiles again, so first minus later would hide it: JAX's own figure
            compile_s = first_compiles[name]
        median_loglik = float(np.median(result["loglik"]))
        row = {
            "num_warmup": args.warmup,
            "num_samples": args.samples,
            **{k: v for k, v in result.items() if k != "loglik"},
            "compile_s": compile_s,
            "total_with_compile_s": result["total_s"] + compile_s,
            "us_per_gradient_direct": result.get("us_per_gradient_direct", gradient_direct.get(name, float("nan"))),
            "ess_bulk_per_s": result["min_ess_bulk"] / result["sampling_s"],
            "ess_bulk_per_s_total": result["min_ess_bulk"] / result["total_s"],
            "ess_bulk_per_1000_gradients": result["min_ess_bulk"] / result["gradients"] * 1000,
            "median_loglik": median_loglik,
            "loglik_gap_to_best": best - median_loglik,
            "stuck": index in stuck,
        }
        rows.append(row)
    print(f"stuck threshold {threshold:.1f} nats; stuck runs: {[(rows[i]['method'], rows[i]['seed']) for i in stuck]}")

    rows += em_rows(problem, seeds, args.em_repeats)
    loads = [row["loadavg_1m"] for row in rows]
    load_summary = {"start": load_start, "min": min(loads), "max": max(loads), "end": _loadavg()}

    import numpyro

    versions = f"jax {jax.__version__}, numpyro {numpyro.__version__}"
    try:
        import funsor

        versions += f", funsor {funsor.__version__}"
    except ImportError:
        pass
    if stan_runner is not None:
        import httpstan

        versions += f", pystan {stan_runner.stan.__version__ if hasattr(stan_runner.stan, '__version__') else '?'}"
        versions += f", httpstan {httpstan.__version__}"

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_fmt(row.get(column, float("nan"))) for column in COLUMNS])
    write_text_atomic(os.path.join(out, "alternatives.csv"), buffer.getvalue())
    summary = summary_markdown(rows, args, check_line, load_summary, versions, first_calls, first_compiles)
    write_text_atomic(os.path.join(out, "alternatives_summary.md"), summary)
    save_figures_atomic({"alternatives.png": figure(rows, gradient_direct)}, out)
    print(f"wrote {out}/alternatives.csv, alternatives_summary.md, alternatives.png; load {load_summary}")


if __name__ == "__main__":
    main()
