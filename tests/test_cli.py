import json
import os

import numpy as np
import pytest

from bayes_glmhmm.cli import main


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    code = main(
        ["demo", "--quick", "--out", str(out), "--no-progress", "--chains", "2", "--warmup", "60", "--samples", "60"]
    )
    assert code == 0
    return out


def test_demo_writes_every_file(demo_dir):
    summary = json.loads((demo_dir / "summary.json").read_text())
    for name in summary["files"]:
        assert (demo_dir / name).stat().st_size > 0, name
    assert not [name for name in os.listdir(demo_dir) if name.startswith(".tmp-")]


def test_demo_summary_contents(demo_dir):
    summary = json.loads((demo_dir / "summary.json").read_text())
    nuts = summary["nuts"]
    for key in ("wall_seconds", "max_rhat", "min_ess_bulk", "divergences", "stuck_chains"):
        assert key in nuts, key
    assert nuts["wall_seconds"] > 0
    assert np.isfinite(nuts["max_rhat"])
    assert summary["em"]["converged"]
    assert 0.0 <= summary["recovery"]["fraction_covered"] <= 1.0
    # Even 60 draws per chain separate the article's three belts: states are recovered well.
    assert summary["states"]["posterior_accuracy"] > 0.9
    rows = (demo_dir / "parameters.csv").read_text().strip().splitlines()
    assert rows[0].startswith("parameter,index,truth,em_ml,posterior_mean")
    assert len(rows) == 1 + 3 + 9 + 3 + 3 + 3


def test_demo_rejects_bad_chain_count(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--chains", "0"]) == 2
    assert "--chains" in capsys.readouterr().err
