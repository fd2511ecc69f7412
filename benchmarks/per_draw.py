"""Per-draw work after sampling: FFBS, smoothed states, log-likelihoods, posterior predictive.

After NUTS, ``to_inference_data`` (hence ``bayes-glmhmm fit`` and ``demo``) runs four programs
over every posterior draw, in chunks of at most 500 draws: FFBS paths (``sample_states``), the
smoothed state probabilities averaged over draws (``state_probabilities``), every sequence's
log-likelihood (``log_likelihood``) and replicated emissions (``posterior_predictive``). This
benchmark fits the article's data (10 sequences x 100 steps, K = 3) with 4 chains x (1000 + 1000)
in one process with 4 host devices (as the CLI sets up), then times each method warm (compiled),
with every chunk split over the local devices (``posterior.spread_draws``, the default) and on one
device (``spread_draws`` replaced by the identity), alternating, ``--repeats`` times; the table
holds the medians and the ratio.

A second table times the FFBS kernel alone on one chunk of 500 draws (one device): ours (one
uniform per step, drawn at once, and inverse-CDF picks) against the previous kernel, kept here as
the reference (a key split per step and ``jax.random.categorical``, a Gumbel draw of K values per
step), each compiled fresh: compile seconds of the first call and warm milliseconds.

    python benchmarks/per_draw.py [--repeats 5]

Writes results/benchmarks/per_draw.csv (one row per timing), per_draw_ffbs_kernel.csv and
per_draw.md (both tables).
"""

import argparse
import csv
import os
import statistics
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(os.path.dirname(HERE), "results", "benchmarks")
NUM_DEVICES = 4


def _methods(posterior, jax):
    return {
        "sample_states": lambda: posterior.sample_states(jax.random.PRNGKey(1)),
        "state_probabilities": posterior.state_probabilities,
        "log_likelihood": posterior.log_likelihood,
        "posterior_predictive": lambda: posterior.posterior_predictive(jax.random.PRNGKey(2)),
    }


def _timed(function) -> float:
    begin = time.perf_counter()
    function()
    return time.perf_counter() - begin


def _categorical_ffbs(jax, key, initial_probs, transition_matrix, log_likelihoods, mask):
    """The FFBS kernel before inverse-CDF picks: a key per step and a Gumbel categorical draw."""
    from jax import lax

    from bayes_glmhmm.inference import _as_array, _transition_at, hmm_filter

    jnp = jax.numpy
    num_timesteps = log_likelihoods.shape[0]
    transition_matrix = _as_array(transition_matrix)
    filtered = hmm_filter(initial_probs, transition_matrix, log_likelihoods, mask).filtered_probs
    keys = jax.random.split(key, num_timesteps)
    last_state = jax.random.categorical(keys[-1], jnp.log(filtered[-1]))

    def _step(next_state, xs):
        t, step_key, filtered_t = xs
        state = jax.random.categorical(
            step_key, jnp.log(filtered_t * _transition_at(transition_matrix, t)[:, next_state])
        )
        return state, state

    xs = (jnp.arange(num_timesteps - 1), keys[:-1], filtered[:-1])
    _, states = lax.scan(_step, last_state, xs, reverse=True)
    return jnp.concatenate([states, last_state[None]])


def measure_ffbs_kernels(posterior, repeats: int) -> list[dict]:
    """Rows ``{kernel, compile_s, warm_ms}``: FFBS of 500 draws x all sequences, one device."""
    import jax
    import numpy as np

    from bayes_glmhmm._compile import PER_DRAW
    from bayes_glmhmm.inference import hmm_sample_states
    from bayes_glmhmm.model import batched_log_likelihoods, batched_transitions

    inputs, emissions, mask, transition_inputs = posterior._data()
    params = jax.tree.map(lambda p: np.asarray(p)[:500], posterior._draw_params())
    keys = np.asarray(jax.random.split(jax.random.PRNGKey(1), 500))
    kernels = {"inverse_cdf (ours)": hmm_sample_states, "categorical (before)": lambda *a: _categorical_ffbs(jax, *a)}
    rows = []
    for name, kernel in kernels.items():

        def per_draw(draw_keys, draw_params, kernel=kernel):
            def one_draw(key, p):
                log_likelihoods = batched_log_likelihoods(p, inputs, emissions)
                transitions, axis = batched_transitions(p, transition_inputs)
                sequence_keys = jax.random.split(key, emissions.shape[0])
                return jax.vmap(kernel, in_axes=(0, None, axis, 0, 0))(
                    sequence_keys, p.initial_probs, transitions, log_likelihoods, mask
                )

            return jax.vmap(one_draw)(draw_keys, draw_params)

        compiled = jax.jit(per_draw, compiler_options=PER_DRAW)
        compile_s = _timed(lambda compiled=compiled: compiled(keys, params).block_until_ready())
        warm = [_timed(lambda compiled=compiled: compiled(keys, params).block_until_ready()) for _ in range(repeats)]
        rows.append({"kernel": name, "compile_s": compile_s, "warm_ms": 1000 * min(warm)})
    return rows


def measure(repeats: int) -> tuple[list[dict], list[dict]]:
    """Rows ``{method, placement, repeat, seconds}`` (the first, compiling call of each left out), and the
    rows of :func:`measure_ffbs_kernels`."""
    import numpyro

    numpyro.set_host_device_count(NUM_DEVICES)
    import jax

    import bayes_glmhmm
    import bayes_glmhmm.posterior as posterior_module

    data = bayes_glmhmm.article_data(jax.random.PRNGKey(0))
    posterior = bayes_glmhmm.fit_nuts(data.inputs, data.emissions, num_states=3, progress_bar=False)
    spread = posterior_module.spread_draws
    placements = {"spread": spread, "one_device": lambda chunk: chunk}
    rows = []
    for name, method in _methods(posterior, jax).items():
        for function in placements.values():  # compile both programs first
            posterior_module.spread_draws = function
            method()
        for repeat in range(repeats):
            for placement, function in placements.items() if repeat % 2 == 0 else reversed(placements.items()):
                posterior_module.spread_draws = function
                rows.append({"method": name, "placement": placement, "repeat": repeat, "seconds": _timed(method)})
    posterior_module.spread_draws = spread
    return rows, measure_ffbs_kernels(posterior, repeats)


def summary_markdown(rows: list[dict], kernel_rows: list[dict], repeats: int) -> str:
    lines = [
        "# Per-draw work after sampling: chunks split over the devices or on one",
        "",
        f"Warm seconds, medians of {repeats} alternating calls, 4000 draws (4 chains x 1000) of the article's "
        f"data, {NUM_DEVICES} host devices on {os.cpu_count()} CPU cores; written by `benchmarks/per_draw.py`.",
        "",
        "| method | spread over the devices, s | one device, s | ratio |",
        "|---|---|---|---|",
    ]
    for name in dict.fromkeys(row["method"] for row in rows):
        medians = {
            placement: statistics.median(
                row["seconds"] for row in rows if row["method"] == name and row["placement"] == placement
            )
            for placement in ("spread", "one_device")
        }
        ratio = medians["one_device"] / medians["spread"]
        lines.append(f"| `{name}` | {medians['spread']:.3f} | {medians['one_device']:.3f} | {ratio:.2f} |")
    lines += [
        "",
        f"FFBS kernel alone, 500 draws x 10 sequences x 100 steps on one device (best of {repeats} warm calls):",
        "",
        "| kernel | compile s | warm ms |",
        "|---|---|---|",
    ]
    lines += [f"| {row['kernel']} | {row['compile_s']:.2f} | {row['warm_ms']:.1f} |" for row in kernel_rows]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per method and placement (default: 5)")
    parser.add_argument("--out", default=RESULTS, help="output folder (default: results/benchmarks)")
    args = parser.parse_args(argv)
    rows, kernel_rows = measure(args.repeats)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "per_draw.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["method", "placement", "repeat", "seconds"])
        writer.writeheader()
        writer.writerows(rows)
    with open(os.path.join(args.out, "per_draw_ffbs_kernel.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["kernel", "compile_s", "warm_ms"])
        writer.writeheader()
        writer.writerows(kernel_rows)
    text = summary_markdown(rows, kernel_rows, args.repeats)
    with open(os.path.join(args.out, "per_draw.md"), "w") as handle:
        handle.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
