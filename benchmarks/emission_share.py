"""How much of a log-density gradient the emission log-likelihoods take: the bound on fusing them into the filter.

The likelihood computes every emission log-likelihood log p(y_t | x_t, z_t = k) first, as one
vectorized (N, T, K) array, and then runs the forward filter (and, for the gradient, the analytic
backward pass) over it. Fusing the emission computation into the filter's step would save at most
the emission part's own cost (computing the array and back-propagating its cotangent through the
GLM), so its share of the whole gradient bounds the gain. This times, warm (compile excluded),
medians of repeated calls, on one device:

* ``whole``: value and gradient of sum_n log p(y_n | x_n, theta) in theta (the adjoint kernel, as NUTS uses it);
* ``kernel``: value and gradient of the filter alone in (initial probabilities, transition matrix,
  log-likelihood array), the array given;
* ``emission``: the emission array and one vector-Jacobian product of it in the GLM's parameters,
  a program of its own (so its figure includes one dispatch, ~0.1 ms on CPU).

``emission_share`` is emission / whole; ``whole_minus_kernel_share`` is 1 - kernel / whole, what
the emission part adds inside the one fused program of ``whole``. ``whole_balanced`` is ``whole``
with the emission array computed on the (N, T) batch reshaped to (a, b), b the largest divisor of
N T up to 1000, and reshaped back (the same values per step): XLA's CPU program for the emission
part and its gradient is several times slower for a batch of one long sequence, (1, T), than for
the same steps in a balanced shape. ``balanced_speedup`` is whole / whole_balanced.

Families: the Gaussian (D = 1, the article's) and the Bernoulli (D = 10, as the decision-making
studies). Writes results/benchmarks/emission_share.csv.

    python benchmarks/emission_share.py [--repeats 30]
"""

import argparse
import csv
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from bayes_glmhmm.em import initialize_params
from bayes_glmhmm.emissions import get_family
from bayes_glmhmm.inference import hmm_marginal_loglik
from bayes_glmhmm.model import batched_log_likelihoods

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(os.path.dirname(HERE), "results", "benchmarks")
SHAPES = [
    ("gaussian", 10, 100, 1),
    ("gaussian", 100, 1000, 1),
    ("gaussian", 1, 500, 1),
    ("gaussian", 1, 1000, 1),
    ("gaussian", 1, 2000, 1),
    ("gaussian", 1, 5000, 1),
    ("gaussian", 1, 10000, 1),
    ("gaussian", 1, 10007, 1),  # a prime: the "balanced" batch is (10007, 1)
    ("gaussian", 1, 100000, 1),
    ("gaussian", 2, 5000, 1),
    ("gaussian", 5, 2000, 1),
    ("bernoulli", 1, 10000, 10),
    ("bernoulli", 100, 500, 10),
]
#: The widest batch width of :func:`_balanced_shape`.
MAX_WIDTH = 1000
NUM_STATES = 3


def _problem(family_name: str, num_sequences: int, num_timesteps: int, input_dim: int):
    """Random params of the family and data of the shape (emissions drawn at random, observed)."""
    family = get_family(family_name)
    key_inputs, key_params, key_emissions = jax.random.split(jax.random.PRNGKey(0), 3)
    inputs = jax.random.normal(key_inputs, (num_sequences, num_timesteps, input_dim))
    if family_name == "gaussian":
        emissions = jax.random.normal(key_emissions, (num_sequences, num_timesteps))
    else:
        emissions = jax.random.bernoulli(key_emissions, 0.5, (num_sequences, num_timesteps)).astype(inputs.dtype)
    mask = jnp.ones(emissions.shape, bool)
    params = initialize_params(key_params, inputs, emissions, mask, NUM_STATES, family)
    return params, inputs, emissions, mask


def _balanced_shape(num_sequences: int, num_timesteps: int) -> tuple[int, int]:
    """(a, b) with a b = N T and b the largest divisor of N T up to :data:`MAX_WIDTH`."""
    total = num_sequences * num_timesteps
    width = max(d for d in range(1, MAX_WIDTH + 1) if total % d == 0)
    return total // width, width


def _programs(params, inputs, emissions, mask):
    def whole(p):
        log_likelihoods = batched_log_likelihoods(p, inputs, emissions)
        per_sequence = jax.vmap(hmm_marginal_loglik, in_axes=(None, None, 0, 0))(
            p.initial_probs, p.transition_matrix, log_likelihoods, mask
        )
        return jnp.sum(per_sequence)

    def whole_balanced(p):
        """``whole`` with the emission array computed on the (N, T) batch reshaped to a balanced (a, b)."""
        shape = _balanced_shape(*emissions.shape)
        log_likelihoods = batched_log_likelihoods(p, inputs.reshape(*shape, -1), emissions.reshape(shape))
        per_sequence = jax.vmap(hmm_marginal_loglik, in_axes=(None, None, 0, 0))(
            p.initial_probs, p.transition_matrix, log_likelihoods.reshape(*emissions.shape, -1), mask
        )
        return jnp.sum(per_sequence)

    def kernel(initial_probs, transition_matrix, log_likelihoods):
        per_sequence = jax.vmap(hmm_marginal_loglik, in_axes=(None, None, 0, 0))(
            initial_probs, transition_matrix, log_likelihoods, mask
        )
        return jnp.sum(per_sequence)

    def emission(p, cotangent):
        log_likelihoods, pullback = jax.vjp(lambda q: batched_log_likelihoods(q, inputs, emissions), p)
        return log_likelihoods, pullback(cotangent)

    log_likelihoods = batched_log_likelihoods(params, inputs, emissions)
    cotangent = jnp.full(log_likelihoods.shape, 1.0 / NUM_STATES, log_likelihoods.dtype)
    return {
        "whole": (jax.jit(jax.value_and_grad(whole)), (params,)),
        "whole_balanced": (jax.jit(jax.value_and_grad(whole_balanced)), (params,)),
        "kernel": (
            jax.jit(jax.value_and_grad(kernel, argnums=(0, 1, 2))),
            (params.initial_probs, params.transition_matrix, log_likelihoods),
        ),
        "emission": (jax.jit(emission), (params, cotangent)),
    }


def _median_seconds(programs: dict, repeats: int) -> dict:
    """Median warm seconds of every program, compiled first, then timed in turn (the order rotating each repeat)."""
    for function, arguments in programs.values():
        jax.block_until_ready(function(*arguments))
    names = list(programs)
    times = {name: [] for name in names}
    for repeat in range(repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            function, arguments = programs[name]
            begin = time.perf_counter()
            jax.block_until_ready(function(*arguments))
            times[name].append(time.perf_counter() - begin)
    return {name: statistics.median(values) for name, values in times.items()}


def measure(repeats: int) -> list[dict]:
    rows = []
    for family_name, num_sequences, num_timesteps, input_dim in SHAPES:
        programs = _programs(*_problem(family_name, num_sequences, num_timesteps, input_dim))
        seconds = _median_seconds(programs, repeats)
        row = {
            "family": family_name,
            "num_sequences": num_sequences,
            "num_timesteps": num_timesteps,
            "input_dim": input_dim,
            **{f"{name}_us": 1e6 * value for name, value in seconds.items()},
            "emission_share": seconds["emission"] / seconds["whole"],
            "whole_minus_kernel_share": 1.0 - seconds["kernel"] / seconds["whole"],
            "balanced_speedup": seconds["whole"] / seconds["whole_balanced"],
        }
        rows.append(row)
        print(
            f"{family_name} {num_sequences} x {num_timesteps}, D = {input_dim}: whole {row['whole_us']:.0f} us, "
            f"kernel {row['kernel_us']:.0f} us, emission {row['emission_us']:.0f} us "
            f"({100 * row['emission_share']:.1f}% of the whole; whole minus kernel "
            f"{100 * row['whole_minus_kernel_share']:.1f}%); balanced batch {row['whole_balanced_us']:.0f} us "
            f"({row['balanced_speedup']:.2f}x)"
        )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per program (default: 30)")
    parser.add_argument("--out", default=RESULTS, help="output folder (default: results/benchmarks)")
    args = parser.parse_args(argv)
    rows = measure(args.repeats)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "emission_share.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(
            [
                {key: (round(value, 4) if isinstance(value, float) else value) for key, value in row.items()}
                for row in rows
            ]
        )
    print(f"np {np.__version__}, jax {jax.__version__}; wrote {os.path.join(args.out, 'emission_share.csv')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
