"""One ``bayes-glmhmm`` command in this process, with what JAX spent on building its programs.

Usage: ``python benchmarks/compile_counts.py fit DATA.csv --states 3 ...`` (any CLI command and
arguments). Prints one line to stderr after the command: wall and CPU seconds of the whole
process, and from JAX's monitoring events the seconds and counts of tracing, lowering to MLIR
and XLA compilation (``compile``: cache reads included when the compilation cache is on). Each
count is the number of programs built. ``results/benchmarks/cold_start_cli/eager_ab/`` was
written with it; run it alternately against another checkout (``PYTHONPATH``) for an A/B.
"""

import collections
import resource
import sys
import time

_EVENTS = {
    "trace": "/jax/core/compile/jaxpr_trace_duration",
    "lower": "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "compile": "/jax/core/compile/backend_compile_duration",
}


def main(argv: list[str]) -> int:
    begin = time.perf_counter()
    import jax

    seconds, counts = collections.defaultdict(float), collections.Counter()

    def listen(event, duration, **kwargs):
        seconds[event] += duration
        counts[event] += 1

    jax.monitoring.register_event_duration_secs_listener(listen)
    from bayes_glmhmm import cli

    try:
        status = cli.main(argv)
    except SystemExit as exit_:
        status = exit_.code
    usage = resource.getrusage(resource.RUSAGE_SELF)
    measured = " ".join(f"{name}={seconds[event]:.2f}/{counts[event]}" for name, event in _EVENTS.items())
    wall = time.perf_counter() - begin
    print(f"wall {wall:.2f} cpu {usage.ru_utime + usage.ru_stime:.1f} {measured}", file=sys.stderr)
    return int(status or 0)


if __name__ == "__main__":  # the figure helpers are spawned processes that import this file
    sys.exit(main(sys.argv[1:]))
