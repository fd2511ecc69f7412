"""Figures rendered in helper processes: the same PNG bytes as in-process, and safe fallbacks."""

import concurrent.futures
import pickle

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from bayes_glmhmm import _render  # noqa: E402
from bayes_glmhmm._io import render_figures, write_pngs_atomic  # noqa: E402


def _figure(layout: str | None = "constrained") -> Figure:
    figure = Figure(figsize=(4, 3), layout=layout)
    axes = figure.subplots(1, 2)
    x = np.linspace(0.0, 6.0, 200)
    axes[0].plot(x, np.sin(x), label="sin")
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside the axes: cropped only if tight
    axes[1].scatter(np.cos(x), np.sin(2 * x), s=4)
    figure.suptitle("a test figure")
    return figure


def _png_size(data: bytes) -> tuple[int, int]:
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_outside_the_block_a_figure_is_rendered_at_once():
    pending = _render.render_png(_figure(), dpi=50)
    assert pending._future is None and pending._data is not None
    assert pending.result()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_figure_with_a_layout_engine_fills_its_canvas_and_one_without_is_cropped():
    """Constrained figures are saved at their size (no second draw); the others are cropped to their content."""
    constrained = _render.render_png(_figure("constrained"), dpi=50).result()
    assert _png_size(constrained) == (200, 150)
    plain = _render.render_png(_figure(None), dpi=50).result()
    assert _png_size(plain) != (200, 150)  # bbox_inches="tight": the legend outside the axes is kept


def test_helper_processes_give_the_bytes_of_an_in_process_render():
    """The bytes must not depend on where the figure was drawn, so that results are reproducible."""
    here = {layout: _render.render_png(_figure(layout), dpi=60).result() for layout in ("constrained", None)}
    with _render.background_rendering(num_processes=1):
        pending = {layout: _render.render_png(_figure(layout), dpi=60) for layout in ("constrained", None)}
        assert all(png._future is not None for png in pending.values())  # really sent to the helper
        there = {layout: png.result() for layout, png in pending.items()}
    assert there == here
    assert _render._executor is None  # the block leaves no helpers behind


def _unpicklable_figure() -> Figure:
    figure = _figure()
    figure.axes[0].yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.1f}!"))
    return figure


def test_a_figure_that_cannot_be_pickled_is_rendered_here():
    expected = _render._png_bytes(_unpicklable_figure(), 50)
    figure = _unpicklable_figure()
    with pytest.raises((pickle.PicklingError, AttributeError)):  # which one depends on where the lambda lives
        pickle.dumps(figure)
    with _render.background_rendering(num_processes=1):
        pending = _render.render_png(figure, dpi=50)
        assert pending._future is None
    assert pending.result() == expected


def test_a_failed_helper_falls_back_to_rendering_the_pickled_figure_here():
    failed = concurrent.futures.Future()
    failed.set_exception(concurrent.futures.process.BrokenProcessPool("helper died"))
    pending = _render.PendingPng(future=failed, payload=pickle.dumps(_figure()), dpi=50)
    assert pending.result() == _render._png_bytes(_figure(), 50)


def test_zero_processes_render_in_this_process():
    with _render.background_rendering(num_processes=0):
        assert _render._executor is None
        assert _render.render_png(_figure(), dpi=40)._data is not None


def test_helpers_that_cannot_start_leave_the_rendering_here(monkeypatch):
    def no_processes(*args, **kwargs):
        raise OSError("no semaphores in this sandbox")

    monkeypatch.setattr(_render, "ProcessPoolExecutor", no_processes)
    with _render.background_rendering(num_processes=2):
        assert _render._executor is None
        assert _render.render_png(_figure(), dpi=40).result()[:4] == b"\x89PNG"


def test_rendered_figures_are_written_atomically_with_their_bytes(tmp_path):
    # Fresh figures for the expectation: a drawn constrained figure keeps its layout, and a second
    # layout pass from there may move things by a pixel.
    expected = {"a.png": _render._png_bytes(_figure(), 40), "b.png": _render._png_bytes(_figure(None), 40)}
    figures = {"a.png": _figure(), "b.png": _figure(None)}
    with _render.background_rendering(num_processes=1):
        pngs = render_figures(figures, dpi=40)
        assert write_pngs_atomic(pngs, tmp_path) == ["a.png", "b.png"]
    assert {name: (tmp_path / name).read_bytes() for name in figures} == expected
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.png", "b.png"]  # no temporary left
