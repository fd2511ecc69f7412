"""Every notebook runs with tiny settings, and every committed .ipynb matches its .py source.

The .py files (jupytext percent format) are the source of truth. Each is executed in a fresh
kernel of the interpreter that runs pytest, with ``BAYES_GLMHMM_NOTEBOOK_TINY=1`` so that it
shrinks its sampler settings; a cell that raises fails the test.
"""

import json
import os
import sys
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
SOURCES = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
KERNEL_NAME = "bayes-glmhmm-tests"


def _cells(notebook) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells if cell.source.strip()]


def test_every_notebook_is_paired():
    assert len(SOURCES) >= 3
    for source in SOURCES:
        assert source.with_suffix(".ipynb").is_file(), f"{source.name} has no executed .ipynb beside it"


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.stem)
def test_ipynb_matches_its_source(source):
    """The committed notebook has the .py's cells and was executed (it has outputs)."""
    paired = source.with_suffix(".ipynb")
    notebook = jupytext.read(paired)
    assert _cells(notebook) == _cells(jupytext.read(source)), f"run: jupytext --sync {source.name}"
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.get("execution_count") for cell in code_cells), f"{paired.name} is not fully executed"
    errors = [output for cell in code_cells for output in cell.get("outputs", []) if output.output_type == "error"]
    assert not errors, f"{paired.name} has error outputs"


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory):
    """A kernelspec for the interpreter running the tests, found first on JUPYTER_PATH."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "tests", "language": "python"}))
    return root


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.stem)
def test_notebook_runs_with_tiny_settings(source, kernel_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join([str(kernel_dir), os.environ.get("JUPYTER_PATH", "")]))
    monkeypatch.setenv("BAYES_GLMHMM_NOTEBOOK_TINY", "1")
    notebook = jupytext.read(source)
    client = nbclient.NotebookClient(
        notebook,
        kernel_name=KERNEL_NAME,
        timeout=600,
        resources={"metadata": {"path": str(tmp_path)}},  # files a notebook writes land in tmp_path
    )
    client.execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    assert any("image/png" in output.get("data", {}) for output in outputs), "no figure was displayed"
