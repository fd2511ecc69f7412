"""One process of a multi-process fit, launched by ``tests/test_distributed.py``.

Every process simulates the same small data set (fixed key), runs the same ``fit_nuts`` once per
layout asked for (``--layout S:METHOD:N``: ``sequence_devices=S``, ``chain_method=METHOD``, N
warmup iterations and N draws per chain) and writes what it got back to
``<output>.<process index>.npz``, under keys ``<layout>/<name>``: the posterior draws, the log
densities, the EM starting parameters, and a JSON report (chain method used, wall time of the
fit). With ``--num-processes 1`` it runs the same fits in one process, the reference. With
``--mismatch``, after the fits, the processes other than 0 pass their sequences in reverse order
(the same data set, other arguments), and the key ``mismatch_error`` holds the error that
``fit_nuts`` raised on this process ("" if none). The host devices come from ``XLA_FLAGS`` (set by
the caller), so that the device count is fixed before JAX starts.
"""

import argparse
import json
import time

import jax
import numpy as np

#: The tiny problem: compile time dominates on a 2-core CPU.
NUM_SEQUENCES = 8
NUM_TIMESTEPS = 50
NUM_STATES = 2
FIT_SETTINGS = dict(num_chains=2, seed=3, progress_bar=False)


def simulated_data():
    """Inputs (N, T, 1) and emissions (N, T) of a 2-state Gaussian GLM-HMM, the same on every process."""
    from bayes_glmhmm import GLMHMMParams, simulate

    params = GLMHMMParams(
        initial_probs=np.array([0.5, 0.5]),
        transition_matrix=np.array([[0.9, 0.1], [0.15, 0.85]]),
        weights=np.array([[1.0], [-0.8]]),
        biases=np.array([2.0, -1.0]),
        scales=np.array([0.7, 1.0]),
    )
    inputs_key, simulation_key = jax.random.split(jax.random.PRNGKey(7))
    inputs = jax.random.uniform(inputs_key, (NUM_SEQUENCES, NUM_TIMESTEPS, 1), minval=1.0, maxval=10.0)
    _, emissions = simulate(simulation_key, params, inputs)
    return np.asarray(inputs), np.asarray(emissions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--coordinator", default=None, help="host:port of process 0 (several processes only)")
    parser.add_argument(
        "--layout", action="append", required=True, help="S:METHOD:N, sequence devices, chain method, iterations"
    )
    parser.add_argument("--mismatch", action="store_true", help="then try a fit with other data on process 1")
    parser.add_argument("--output", required=True, help="path prefix of the .npz written by each process")
    arguments = parser.parse_args()

    if arguments.num_processes > 1:
        # Before anything else touches JAX's backends (simulating included).
        jax.distributed.initialize(
            coordinator_address=arguments.coordinator,
            num_processes=arguments.num_processes,
            process_id=arguments.process_id,
        )
    from bayes_glmhmm import fit_nuts

    inputs, emissions = simulated_data()
    results = {}
    for layout in arguments.layout:
        sequence_devices, chain_method, iterations = layout.split(":")
        start = time.perf_counter()
        posterior = fit_nuts(
            inputs,
            emissions,
            NUM_STATES,
            sequence_devices=int(sequence_devices),
            chain_method=chain_method,
            num_warmup=int(iterations),
            num_samples=int(iterations),
            **FIT_SETTINGS,
        )
        report = dict(
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            local_devices=jax.local_device_count(),
            devices=jax.device_count(),
            chain_method=posterior.settings["chain_method"],
            sequence_devices=posterior.settings["sequence_devices"],
            wall_seconds=time.perf_counter() - start,
            nuts_seconds=posterior.wall_seconds["nuts"],
        )
        results[f"{layout}/report"] = json.dumps(report)
        results[f"{layout}/lp"] = np.asarray(posterior.sample_stats["lp"])
        for name, value in posterior.samples.items():
            results[f"{layout}/sample_{name}"] = np.asarray(value)
        for name, value in posterior.em.params._asdict().items():
            if value is not None:
                results[f"{layout}/em_{name}"] = np.asarray(value)
    if arguments.mismatch:
        own = (inputs, emissions) if jax.process_index() == 0 else (inputs[::-1], emissions[::-1])
        try:
            fit_nuts(*own, NUM_STATES, sequence_devices=2, num_warmup=1, num_samples=1, **FIT_SETTINGS)
            results["mismatch_error"] = ""
        except ValueError as error:
            results["mismatch_error"] = str(error)
    np.savez(f"{arguments.output}.{jax.process_index()}.npz", **results)


if __name__ == "__main__":
    main()
