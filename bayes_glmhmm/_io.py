"""Atomic file writing: every result file is either complete or absent, never half-written."""

import contextlib
import csv
import io
import json
import os
import tempfile

__all__ = [
    "atomic_path",
    "csv_text",
    "markdown_table",
    "remove_if_exists",
    "write_json_atomic",
    "write_text_atomic",
    "render_figures",
    "save_figures_atomic",
    "write_pngs_atomic",
]


@contextlib.contextmanager
def atomic_path(path, suffix: str = ""):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one ``os.replace``.

    On any exception (including KeyboardInterrupt) the temporary file is removed and ``path`` is
    left as it was.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=suffix or os.path.splitext(path)[1], dir=directory)
    os.close(handle)
    try:
        yield temporary
        # mkstemp creates the file private (0600); give it the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def remove_if_exists(path) -> bool:
    """Remove the file ``path`` if it exists (e.g. a stale ``summary.json``); return whether it did."""
    try:
        os.remove(path)
    except FileNotFoundError:
        return False
    return True


def write_text_atomic(path, text: str) -> str:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
    return os.fspath(path)


def write_json_atomic(path, data) -> str:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=_to_builtin) + "\n")


def _to_builtin(value):
    """JSON fallback for NumPy scalars and arrays."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot serialize {type(value).__name__} to JSON")


def render_figures(figures: dict, dpi: int = 110, close: bool = False) -> dict:
    """Start rendering Matplotlib figures ``{file name: Figure}`` as PNG; ``{file name: PendingPng}``.

    Inside :func:`bayes_glmhmm._render.background_rendering` helper processes draw them while the
    caller goes on; the figures may be closed as soon as this returns.

    Args:
        figures: ``{file name: Figure}``.
        dpi: resolution.
        close: close the figures (``pyplot.close``) once they are handed over.
    """
    from bayes_glmhmm._render import render_png

    pngs = {name: render_png(figure, dpi) for name, figure in figures.items()}
    if close:
        import matplotlib.pyplot as plt

        for figure in figures.values():
            plt.close(figure)
    return pngs


def write_pngs_atomic(pngs: dict, out) -> list[str]:
    """Write the rendered figures ``{file name: PendingPng}`` of :func:`render_figures` into ``out``, each atomically.

    Returns:
        The file names written.
    """
    for name, png in pngs.items():
        data = png.result()
        with atomic_path(os.path.join(out, name)) as temporary, open(temporary, "wb") as handle:
            handle.write(data)
    return list(pngs)


def save_figures_atomic(figures: dict, out, dpi: int = 110) -> list[str]:
    """Save Matplotlib figures ``{file name: Figure}`` into ``out`` as PNG, each atomically.

    Returns:
        The file names written.
    """
    return write_pngs_atomic(render_figures(figures, dpi), out)


def csv_text(header: list[str], rows: list[list]) -> str:
    """CSV text with proper quoting (labels such as ``weight[0, x]`` contain commas); floats to 6 digits."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[f"{v:.6g}" if isinstance(v, float) else v for v in row] for row in rows])
    return buffer.getvalue()


def markdown_table(header: list[str], rows: list[list]) -> list[str]:
    """The lines of a Markdown table; cells are written with ``str``."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return lines
