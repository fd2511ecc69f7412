"""Figures rendered to PNG in helper processes, so that Matplotlib's drawing overlaps other work.

Matplotlib draws in Python, on one core, while the GIL is held: a cold ``bayes-glmhmm demo --quick``
spent 10 s of its 31 s in ``savefig`` (19 figures, 0.1-1.1 s each, most of it tick and text layout;
2-core CPU), with the second core idle. Inside :func:`background_rendering` a figure is pickled
(about 0.04 s for the largest) and drawn by one of a few spawned processes, which import Matplotlib
and NumPy only, never JAX; the caller goes on building the next figure or table, and collects the
bytes when it writes them. The PNG bytes are those of an in-process ``savefig`` (same Matplotlib,
same rcParams file). A figure that cannot be pickled, or a helper process that died, is rendered in
the calling process instead, so the bytes never depend on whether the helpers were there.

Outside :func:`background_rendering`, :func:`render_png` draws at once: library calls from a
notebook keep no processes behind.
"""

import contextlib
import io
import pickle
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context

__all__ = ["PendingPng", "background_rendering", "render_png"]

#: The executor of the innermost active :func:`background_rendering` block, or None.
_executor: ProcessPoolExecutor | None = None


def _png_bytes(figure, dpi: int) -> bytes:
    """The figure as PNG bytes.

    A figure with a layout engine (ours are all constrained) already fills its canvas, so it is
    saved as it is; ``bbox_inches="tight"`` would draw it twice (measured: 6.6 s against 4.7 s for
    the 19 figures of the quick demo) to crop a margin of a few points. A figure without one is
    cropped to its content, so nothing drawn outside its axes is cut off.
    """
    buffer = io.BytesIO()
    tight = None if figure.get_layout_engine() is not None else "tight"
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches=tight)
    return buffer.getvalue()


def _start_helper() -> None:
    """Helper process start: the non-interactive backend, Matplotlib imported before the first figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401  (unpickling a pyplot figure imports it; do it while idle)


def _render_pickled(payload: bytes, dpi: int) -> bytes:
    """Unpickle a figure, render it, and close it: a helper's job, or this process's if the helper failed."""
    import matplotlib.pyplot as plt

    figure = pickle.loads(payload)
    try:
        return _png_bytes(figure, dpi)
    finally:
        plt.close(figure)


class PendingPng:
    """The PNG bytes of a figure, being rendered by a helper process or already rendered."""

    def __init__(self, data: bytes | None = None, future: Future | None = None, payload: bytes = b"", dpi: int = 0):
        self._data, self._future, self._payload, self._dpi = data, future, payload, dpi

    def result(self) -> bytes:
        """The PNG bytes; waits for the helper process, or renders here if the helper failed."""
        if self._data is None:
            try:
                self._data = self._future.result()
            except Exception:  # a helper that died or failed: the figure is still in the payload
                self._data = _render_pickled(self._payload, self._dpi)
            self._future, self._payload = None, b""
        return self._data


def render_png(figure, dpi: int) -> PendingPng:
    """The figure's PNG bytes, rendered by a helper process inside :func:`background_rendering`.

    The figure is captured (pickled) now: the caller may clear or close it as soon as this returns.

    Args:
        figure: a Matplotlib figure.
        dpi: resolution of the PNG.

    Returns:
        A :class:`PendingPng`; its ``result()`` is the PNG bytes.
    """
    if _executor is None:
        return PendingPng(data=_png_bytes(figure, dpi))
    try:
        payload = pickle.dumps(figure)
    except Exception:  # e.g. a formatter holding a lambda: draw it here
        return PendingPng(data=_png_bytes(figure, dpi))
    try:
        future = _executor.submit(_render_pickled, payload, dpi)
    except RuntimeError:  # a broken or shut-down pool
        return PendingPng(data=_png_bytes(figure, dpi))
    return PendingPng(future=future, payload=payload, dpi=dpi)


def _started_helpers(num_processes: int) -> ProcessPoolExecutor | None:
    """A pool of ``num_processes`` spawned helpers, each started now (not at the first figure).

    None where processes cannot be started (a sandbox without ``fork``/``exec``, no semaphores):
    the figures are then drawn in the calling process, as without helpers.
    """
    try:
        executor = ProcessPoolExecutor(num_processes, mp_context=get_context("spawn"), initializer=_start_helper)
        for _ in range(num_processes):
            executor.submit(int)
    except (OSError, RuntimeError, ImportError):
        return None
    return executor


@contextlib.contextmanager
def background_rendering(num_processes: int = 2):
    """Within this block, :func:`render_png` renders in ``num_processes`` spawned helper processes.

    The helpers start at once and import Matplotlib while the caller works; they are shut down
    (after finishing what was submitted) when the block ends. ``num_processes=0``, or processes
    that cannot be started, render in the calling process, as outside the block.
    """
    global _executor
    executor = _started_helpers(num_processes) if num_processes >= 1 else None
    if executor is None:
        yield
        return
    previous, _executor = _executor, executor
    try:
        yield
    finally:
        _executor = previous
        executor.shutdown(wait=True, cancel_futures=True)
