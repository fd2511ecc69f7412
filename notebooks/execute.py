"""Execute notebooks from their jupytext .py source and write the paired .ipynb with outputs.

Each notebook runs in a fresh kernel of this interpreter, in the notebooks/ folder, at full size
unless BAYES_GLMHMM_NOTEBOOK_TINY=1 is set. Usage (from the repository root)::

    .venv/bin/python notebooks/execute.py                       # every notebook
    .venv/bin/python notebooks/execute.py notebooks/02_diagnostics.py
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import nbclient

HERE = Path(__file__).resolve().parent
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def execute(source: Path, timeout: int = 5400) -> float:
    """Run ``source`` (a .py notebook) and write ``source.with_suffix('.ipynb')``; returns seconds."""
    with tempfile.TemporaryDirectory() as jupyter_dir:
        # A kernelspec for this very interpreter, found before any other "python3" on the path.
        spec = Path(jupyter_dir) / "kernels" / "python3"
        spec.mkdir(parents=True)
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        (spec / "kernel.json").write_text(json.dumps({**KERNELSPEC, "argv": argv}))
        os.environ["JUPYTER_PATH"] = os.pathsep.join([jupyter_dir, os.environ.get("JUPYTER_PATH", "")])
        notebook = jupytext.read(source)
        start = time.perf_counter()
        client = nbclient.NotebookClient(
            notebook, kernel_name="python3", timeout=timeout, resources={"metadata": {"path": str(source.parent)}}
        )
        client.execute()
        seconds = time.perf_counter() - start
    notebook.metadata["kernelspec"] = KERNELSPEC
    jupytext.write(notebook, source.with_suffix(".ipynb"))
    return seconds


def main(argv: list[str]) -> int:
    sources = [Path(arg).resolve() for arg in argv] or sorted(HERE.glob("[0-9][0-9]_*.py"))
    for source in sources:
        seconds = execute(source)
        print(f"{source.name}: {seconds:.0f} s -> {source.with_suffix('.ipynb').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
