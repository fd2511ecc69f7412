"""fit_nuts across 2 processes on JAX's distributed runtime, against the same fit in one process.

Two CPU processes on localhost (``tests/_distributed_worker.py``), each with 2 host devices,
connect through ``jax.distributed.initialize`` (4 devices in all; CPU collectives go through
gloo, jax 0.10's default) and fit a small simulated 2-state problem in two layouts of the
(chains, sequences) mesh:

- ``2:parallel:150``, the layout a cluster would use: ``sequence_devices=2``,
  ``chain_method="parallel"``, 150 + 150 iterations. Each chain runs on the 2 devices of one
  process, so the chains' states and draws lie on different processes and must be gathered.
- ``4:sequential:10``: ``sequence_devices=4``, the sequences of each chain split over both
  processes' devices, so every gradient is a sum across processes and each process holds only
  its devices' shards of the data. 10 + 10 iterations: enough to tell right from wrong data, few
  enough that float32 rounding has not grown (see ``SPLIT_TOLERANCE``).

The reference is the same worker in one process with 4 host devices, i.e. the same mesh shapes.
About 2 minutes on a 2-core CPU (each process compiles its own programs, and every gradient's
psum goes through gloo over TCP), hence ``slow``.
"""

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("_distributed_worker.py")
CHAINS_ACROSS_PROCESSES = "2:parallel:150"
SEQUENCES_ACROSS_PROCESSES = "4:sequential:10"
#: How far the draws of the sequences-across-processes layout may lie from one process's. The
#: log-likelihood of a chain is a psum of 4 devices' parts, added in another order by gloo than
#: by XLA within one process, so the draws differ by float32 rounding grown along the
#: trajectories: measured at most 1.6e-3 over these 10 + 10 iterations (test_sampler measures
#: 7e-4 over 8 + 8 between chain methods). A process that sampled other data (its own sequences
#: only, another order of chains) would be off by the posterior's spread, 0.05-0.6 here, which
#: the test checks is far above this tolerance.
SPLIT_TOLERANCE = 1e-2
TIMEOUT_SECONDS = 600


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment(devices_per_process: int) -> dict:
    """This environment with ``devices_per_process`` CPU host devices (replacing conftest's count)."""
    environment = dict(os.environ, JAX_PLATFORMS="cpu")
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", environment.get("XLA_FLAGS", ""))
    environment["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices_per_process} {flags}".strip()
    return environment


def _launch(folder: Path, num_processes: int, devices_per_process: int, extra=()) -> list[dict]:
    """Run the worker as ``num_processes`` processes at once; return each process's results, in process order.

    The processes write their logs to files: a full pipe would block one process, and the other
    would wait for it in a collective. If any fails, all are stopped and its log's end is shown.
    """
    coordinator = f"127.0.0.1:{_free_port()}"
    output = folder / "result"
    processes, logs = [], []
    for process_id in range(num_processes):
        command = [sys.executable, str(WORKER), "--output", str(output), "--num-processes", str(num_processes)]
        command += ["--process-id", str(process_id), "--coordinator", coordinator, *extra]
        command += ["--layout", CHAINS_ACROSS_PROCESSES, "--layout", SEQUENCES_ACROSS_PROCESSES]
        log = open(folder / f"log.{process_id}", "w")  # noqa: SIM115 (closed below)
        logs.append(log)
        processes.append(
            subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_environment(devices_per_process))
        )
    try:
        for process in processes:
            process.wait(timeout=TIMEOUT_SECONDS)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in logs:
            log.close()
    for process_id, process in enumerate(processes):
        assert process.returncode == 0, (folder / f"log.{process_id}").read_text()[-4000:]
    results = []
    for process_id in range(num_processes):
        with np.load(f"{output}.{process_id}.npz") as archive:
            results.append({name: archive[name] for name in archive.files})
    return results


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The worker's results from 2 processes x 2 devices (a list by process) and from 1 process x 4 devices."""
    distributed = _launch(tmp_path_factory.mktemp("two_processes"), 2, 2, extra=("--mismatch",))
    (single,) = _launch(tmp_path_factory.mktemp("one_process"), 1, 4)
    return distributed, single


def _report(results: dict, layout: str) -> dict:
    return json.loads(str(results[f"{layout}/report"]))


def _arrays(results: dict, layout: str, *prefixes: str) -> dict:
    """The arrays of ``layout`` whose names start with one of ``prefixes``."""
    return {name: value for name, value in results.items() if name.startswith(tuple(f"{layout}/{p}" for p in prefixes))}


@pytest.mark.parametrize("layout", [CHAINS_ACROSS_PROCESSES, SEQUENCES_ACROSS_PROCESSES])
def test_every_process_gets_every_chain_and_the_same_draws(runs, layout):
    """Both processes took part (2 processes x 2 devices, 4 in the mesh) and each returned all
    chains' draws, identical on both: process 1's posterior is process 0's, so code downstream of
    the sampler (relabeling, the Posterior) gives the same answers on every process."""
    distributed, _ = runs
    sequence_devices, chain_method, iterations = layout.split(":")
    for process_index, results in enumerate(distributed):
        report = _report(results, layout)
        assert (report["process_index"], report["process_count"]) == (process_index, 2)
        assert (report["local_devices"], report["devices"]) == (2, 4)
        assert (report["sequence_devices"], report["chain_method"]) == (int(sequence_devices), chain_method)
        assert results[f"{layout}/sample_weights"].shape == (2, int(iterations), 2, 1)
    first, second = distributed
    for name, value in _arrays(first, layout, "sample_", "lp").items():
        np.testing.assert_array_equal(second[name], value, err_msg=name)


def test_em_starting_points_agree_on_every_process(runs):
    """EM runs on each process independently, on the same data with the same seed: the starting
    parameters agree bitwise across processes and with one process's (run_nuts also takes process
    0's starting points, so chains could not start apart even where they did not)."""
    distributed, single = runs
    for layout in (CHAINS_ACROSS_PROCESSES, SEQUENCES_ACROSS_PROCESSES):
        for name, value in _arrays(single, layout, "em_").items():
            for results in distributed:
                np.testing.assert_array_equal(results[name], value, err_msg=name)


def test_chains_across_processes_give_one_process_draws_exactly(runs):
    """With each chain on the 2 devices of one process, every chain does the same arithmetic as
    in one process (a psum of 2 parts is order-free), from the same key and starting point: the
    300 iterations give bitwise the same draws and log densities. The two chains differ, so chains
    gathered in the wrong order, or one chain given twice, would fail."""
    distributed, single = runs
    layout = CHAINS_ACROSS_PROCESSES
    assert not np.allclose(single[f"{layout}/sample_weights"][0], single[f"{layout}/sample_weights"][1])
    for name, value in _arrays(single, layout, "sample_", "lp").items():
        np.testing.assert_array_equal(distributed[0][name], value, err_msg=name)


def test_sequences_split_across_processes_agree_with_one_process(runs):
    """With each chain's sequences split over both processes' devices, the draws equal one
    process's up to float32 rounding (``SPLIT_TOLERANCE``), and the log densities to relative
    1e-4; the two chains lie far further apart than the tolerance, so a process that sampled with
    other sequences than its shards' would fail."""
    distributed, single = runs
    layout = SEQUENCES_ACROSS_PROCESSES
    samples = _arrays(single, layout, "sample_")
    assert max(np.abs(value[0] - value[1]).max() for value in samples.values()) > 10 * SPLIT_TOLERANCE
    for name, value in samples.items():
        np.testing.assert_allclose(
            distributed[0][name], value, rtol=SPLIT_TOLERANCE, atol=SPLIT_TOLERANCE, err_msg=name
        )
    np.testing.assert_allclose(distributed[0][f"{layout}/lp"], single[f"{layout}/lp"], rtol=1e-4)


def test_processes_with_other_data_are_told_on_every_process(runs):
    """Every process must pass the same data: when process 1 passes its sequences in another
    order, run_nuts raises the same ValueError on both processes (a process raising alone would
    leave the other waiting in a collective)."""
    distributed, _ = runs
    for results in distributed:
        assert "process(es) [1] passed other model arguments than process 0" in str(results["mismatch_error"])
