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


def test_demo_compares_bayes_with_em(demo_dir):
    summary = json.loads((demo_dir / "summary.json").read_text())
    for name in ("comparison.csv", "comparison.md", "parameter_recovery_bars.png"):
        assert name in summary["files"], name
    comparison = summary["comparison"]
    assert comparison["em_objective"] == "maximum likelihood"
    assert comparison["labeling"] == "truth"
    assert "em" in summary
    assert 0.0 <= comparison["parameters"]["all"]["coverage"] <= 1.0
    assert comparison["states"]["train_posterior_accuracy"] > 0.9
    assert comparison["states"]["train_em_viterbi_accuracy"] > 0.9
    heldout = comparison["heldout_log_predictive"]
    assert heldout["num_sequences"] == 5
    assert np.all(np.isfinite(heldout["posterior_predictive"] + heldout["em_plugin"] + heldout["truth"]))
    assert comparison["wall_seconds"]["em"] > 0 and comparison["wall_seconds"]["nuts_total"] > 0
    rows = (demo_dir / "comparison.csv").read_text().strip().splitlines()
    assert rows[0].startswith("section,quantity,index,truth,em,posterior,posterior_sd,lower_94,upper_94,covered")
    assert sum(row.startswith("parameter,") for row in rows) == 21
    assert "## Held-out log predictive density" in (demo_dir / "comparison.md").read_text()


def test_fit_command_end_to_end(tmp_path, capsys):
    import csv

    import jax

    from bayes_glmhmm import article_data

    # Enough rows that MAP-EM starts in the main mode: on 2 x 40 rows it found a merged-belts mode,
    # which the chains rightly did not leave (flagged as stuck).
    data = article_data(jax.random.PRNGKey(8), num_sequences=2, num_timesteps=80)
    path = tmp_path / "data.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "x", "y"])
        for n in range(2):
            for t in range(80 - 10 * n):
                writer.writerow([n, data.inputs[n, t, 0], "" if t == 7 else data.emissions[n, t]])
    out = tmp_path / "out"
    code = main(
        [
            "fit",
            str(path),
            "--states",
            "3",
            "--target",
            "y",
            "--inputs",
            "x",
            "--sequence",
            "id",
            "--out",
            str(out),
            "--chains",
            "2",
            "--warmup",
            "150",
            "--samples",
            "40",
            "--no-progress",
            "--weight-scale",
            "2",
            "--sequence-devices",
            "2",
        ]
    )
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["priors"]["weight_scale"] == 2.0
    assert summary["data"]["num_rows"] == 150 and summary["data"]["num_missing_targets"] == 2
    for name in summary["files"]:
        assert (out / name).exists(), name


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--target", "nope", "--inputs", "x"], "unknown column 'nope'"),
        (["--target", "y", "--inputs", "x", "--noise-scale", "-1"], "noise_scale"),
        (["--target", "y", "--inputs", "x", "--states", "0"], "num_states"),
        (["--target", "y", "--inputs", "x", "--sequence-devices", "0"], "--sequence-devices must be >= 1"),
    ],
)
def test_fit_command_errors(tmp_path, capsys, extra, message):
    path = tmp_path / "data.csv"
    path.write_text("x,y\n1,2\n2,3\n3,4\n")
    arguments = ["fit", str(path), "--out", str(tmp_path / "o")] + extra
    if "--states" not in extra:
        arguments += ["--states", "2"]
    assert main(arguments) == 2
    assert message in capsys.readouterr().err
