import argparse
import contextlib
import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bayes_glmhmm.cli import main


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The quick demo with 2 chains x (60 + 60): its folder and what it printed to stderr."""
    out = tmp_path_factory.mktemp("demo")
    printed = io.StringIO()
    with contextlib.redirect_stderr(printed):
        code = main(
            [
                "demo",
                "--quick",
                "--out",
                str(out),
                "--no-progress",
                "--chains",
                "2",
                "--warmup",
                "60",
                "--samples",
                "60",
            ]
        )
    assert code == 0
    return out, printed.getvalue()


@pytest.fixture(scope="module")
def demo_dir(demo_run):
    return demo_run[0]


def _words(text: str) -> str:
    """Text with every run of whitespace as one space (the warning block wraps its lines)."""
    return " ".join(text.split())


def _assert_warning_block(stderr: str, problems: list[str]) -> None:
    """stderr holds the delimited block listing every problem, and no Python warning besides."""
    assert problems
    rule = "=" * 78
    assert stderr.count(rule) == 2
    block = stderr[stderr.index(rule) : stderr.rindex(rule)]
    assert "WARNING: the posterior has not converged" in block
    for problem in problems:
        assert _words(problem) in _words(block), problem
    assert "ConvergenceWarning" not in stderr


def test_demo_writes_every_file(demo_dir):
    summary = json.loads((demo_dir / "summary.json").read_text())
    for name in summary["files"]:
        assert (demo_dir / name).stat().st_size > 0, name
    assert not [name for name in os.listdir(demo_dir) if name.startswith(".tmp-")]


def test_demo_summary_contents(demo_run):
    """The NUTS numbers and verdict of summary.json are those recomputed from the written posterior.nc, and
    2 x 60 draws cannot converge (ArviZ caps ESS at N log10 N = 250 < 400): the verdict says so, in
    summary.json and in the warning block on stderr."""
    import arviz as az

    from bayes_glmhmm.convert import posterior_from_inference_data

    demo_dir, stderr = demo_run
    summary = json.loads((demo_dir / "summary.json").read_text())
    nuts = summary["nuts"]
    assert nuts["wall_seconds"] > 0
    recomputed = posterior_from_inference_data(az.from_netcdf(demo_dir / "posterior.nc")).diagnostics()
    for key in ("max_rhat", "min_ess_bulk", "min_ess_tail"):
        assert nuts[key] == pytest.approx(recomputed[key], rel=1e-9), key
    for key in ("divergences", "tree_depth_saturated", "stuck_chains", "converged", "problems"):
        assert nuts[key] == recomputed[key], key
    assert nuts["converged"] is False
    assert f"min bulk ESS {nuts['min_ess_bulk']:.0f} < 400" in "".join(nuts["problems"])
    _assert_warning_block(stderr, nuts["problems"])
    assert summary["em"]["converged"]
    # Even 60 draws per chain separate the article's three belts: states are recovered well.
    assert summary["states"]["posterior_accuracy"] > 0.9
    rows = (demo_dir / "parameters.csv").read_text().strip().splitlines()
    assert rows[0].startswith("parameter,index,truth,em_ml,posterior_mean")
    assert len(rows) == 1 + 3 + 9 + 3 + 3 + 3


def _read_rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _covered(row: dict, truth: str = "truth") -> bool:
    return float(row["lower_94"]) <= float(row[truth]) <= float(row["upper_94"])


def test_demo_coverage_is_the_fraction_of_written_intervals_holding_the_truth(demo_dir):
    """The coverage in summary.json is recomputed from parameters.csv (truth, interval ends), row by row."""
    summary = json.loads((demo_dir / "summary.json").read_text())
    rows = _read_rows(demo_dir / "parameters.csv")
    covered = [_covered(row) for row in rows]
    assert len(rows) == 21
    assert summary["recovery"]["fraction_covered"] == pytest.approx(np.mean(covered), abs=1e-12)
    assert len(summary["recovery"]["not_covered"]) == covered.count(False)
    for name, fraction in summary["recovery"]["per_parameter"].items():
        group = [ok for row, ok in zip(rows, covered, strict=True) if row["parameter"] == name]
        assert fraction == pytest.approx(np.mean(group), abs=1e-12), name


def test_demo_compares_coverage_from_its_own_table(demo_dir):
    """comparison coverage = the fraction of comparison.csv's parameter rows whose interval holds the truth
    (and the realized value); and the intervals hold most realized values.

    The realized (complete-data) values are what the posterior of this data set should cover: at 94%
    the expected count is 19.7 of 21; 15 (71%) leaves room for the Monte Carlo error of 120 draws
    yet fails if intervals and values are mismatched (e.g. a wrong labeling puts most outside).
    """
    summary = json.loads((demo_dir / "summary.json").read_text())
    rows = [row for row in _read_rows(demo_dir / "comparison.csv") if row["section"] == "parameter"]
    coverage = summary["comparison"]["parameters"]["all"]
    assert len(rows) == coverage["num_parameters"] == 21
    assert coverage["coverage"] == pytest.approx(np.mean([_covered(row) for row in rows]), abs=1e-12)
    realized = [_covered(row, "realized") for row in rows]
    assert coverage["coverage_of_realized"] == pytest.approx(np.mean(realized), abs=1e-12)
    assert sum(realized) >= 15, realized


def test_warning_block_only_when_not_converged(capsys):
    from bayes_glmhmm.cli import _print_verdict

    problems = [
        "max R-hat 1.240 > 1.01: the chains disagree " + "and more words " * 10,
        "2 of 4000 transitions diverged",
    ]
    _print_verdict({"converged": False, "problems": problems})
    printed = capsys.readouterr()
    assert printed.out == ""
    _assert_warning_block(printed.err, problems)
    assert max(len(line) for line in printed.err.splitlines()) <= 78
    _print_verdict({"converged": True, "problems": []})
    assert capsys.readouterr() == ("", "")


def test_demo_rejects_bad_chain_count(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--chains", "0"]) == 2
    assert "--chains" in capsys.readouterr().err


def test_demo_compares_bayes_with_em(demo_dir):
    """The comparison's numbers are recomputed from what the demo wrote: the held-out densities from
    the truth, EM's estimate in summary.json and the draws in posterior.nc, on the same five held-out
    sequences; a comparison that scored the wrong sequences or parameters fails."""
    import arviz as az

    from bayes_glmhmm import GLMHMMParams, log_likelihood
    from bayes_glmhmm.cli import _simulate_demo_data
    from bayes_glmhmm.convert import posterior_from_inference_data

    summary = json.loads((demo_dir / "summary.json").read_text())
    for name in ("comparison.csv", "comparison.md", "parameter_recovery_bars.png"):
        assert name in summary["files"], name
    comparison = summary["comparison"]
    assert comparison["em_objective"] == "maximum likelihood"
    assert comparison["labeling"] == "truth"
    assert "em" in summary
    assert comparison["states"]["train_posterior_accuracy"] > 0.9
    assert comparison["states"]["train_em_viterbi_accuracy"] > 0.9
    heldout = comparison["heldout_log_predictive"]
    assert heldout["num_sequences"] == 5
    demo = _simulate_demo_data(summary["data"]["seed"], "text")
    held_inputs, held_emissions = demo.heldout.inputs, demo.heldout.emissions
    expected = {
        "truth": log_likelihood(demo.data.params, held_inputs, held_emissions),
        "em_plugin": log_likelihood(GLMHMMParams(**summary["em"]["params"]), held_inputs, held_emissions),
        "posterior_predictive": posterior_from_inference_data(
            az.from_netcdf(demo_dir / "posterior.nc")
        ).log_predictive_density(held_inputs, held_emissions),
    }
    for name, values in expected.items():
        np.testing.assert_allclose(heldout[name], np.asarray(values, float), rtol=1e-5, err_msg=name)
    # 5 x 100 held-out steps: the Bayes and EM densities lie within a few nats per sequence of the truth's.
    assert np.all(np.abs(np.subtract(heldout["posterior_predictive"], heldout["truth"])) < 10)
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
            "--max-samples",
            "80",
            "--no-progress",
            "--weight-scale",
            "2",
            "--sequence-devices",
            "2",
        ]
    )
    printed = capsys.readouterr()
    assert code == 0, printed.err
    summary = json.loads((out / "summary.json").read_text())
    # 2 x 80 draws: ESS cannot reach 400 (at most N log10 N = 352), so the fit samples on to --max-samples
    # and says it has not converged.
    assert summary["nuts"]["converged"] is False
    rounds = summary["nuts"]["settings"]["sampling_rounds"]
    assert rounds[0]["num_samples"] == 40 and rounds[-1]["num_samples"] == 80
    assert summary["nuts"]["settings"]["num_samples"] == 80
    _assert_warning_block(printed.err, summary["nuts"]["problems"])
    assert "not converged" not in printed.out
    assert summary["priors"]["weight_scale"] == 2.0
    assert summary["data"]["num_rows"] == 150 and summary["data"]["num_missing_targets"] == 2
    for name in summary["files"]:
        assert (out / name).exists(), name


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--target", "nope", "--inputs", "x"], "unknown column 'nope'"),
        (["--target", "y", "--inputs", "x", "--noise-scale", "-1"], "--noise-scale must be a positive finite number"),
        (["--target", "y", "--inputs", "x", "--states", "0"], "--states must be >= 1, got 0"),
        (["--target", "y", "--inputs", "x", "--states", "4"], "--states 4 is larger than the longest sequence"),
        (["--target", "y", "--inputs", "x", "--sequence-devices", "0"], "--sequence-devices must be >= 1"),
        (["--target", "y", "--inputs", "x", "--warmup", "-1"], "--warmup must be >= 0, got -1"),
        (["--target", "y", "--inputs", "x", "--samples", "0"], "--samples must be >= 1, got 0"),
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


# --- fit --family: class targets end to end through the command line ---------------------------------

TINY = ["--chains", "2", "--warmup", "30", "--samples", "30", "--no-progress", "--states", "2"]


def _simulated_choices(params, seed: int, num_inputs: int) -> tuple[np.ndarray, np.ndarray]:
    """Two sessions x 60 trials of a 2-state GLM-HMM with standard normal inputs; (inputs, class codes)."""
    import jax

    from bayes_glmhmm import simulate

    inputs = np.random.default_rng(seed).normal(size=(2, 60, num_inputs))
    _, emissions = simulate(jax.random.PRNGKey(seed), params, inputs)
    return inputs, np.asarray(emissions).astype(int)


def _write_choices(path, inputs, labels, input_names) -> list[str]:
    """Long CSV (session, inputs..., choice); the target of trial 3 of each session is missing. Returns the
    target cells in file order."""
    cells = []
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["session", *input_names, "choice"])
        for n in range(inputs.shape[0]):
            for t in range(inputs.shape[1]):
                cells.append("" if t == 3 else labels[n][t])
                writer.writerow([f"s{n}", *(f"{x:.4f}" for x in inputs[n, t]), cells[-1]])
    return cells


def _fit(path, out, family: str, inputs: str) -> None:
    code = main(
        ["fit", str(path), "--target", "choice", "--inputs", inputs, "--sequence", "session"]
        + ["--family", family, "--out", str(out), *TINY]
    )
    assert code == 0


@pytest.fixture(scope="module")
def bernoulli_fit(tmp_path_factory):
    """A Bernoulli fit of true/false choices (written in mixed case)."""
    from bayes_glmhmm import BernoulliGLMHMMParams

    params = BernoulliGLMHMMParams(
        np.array([0.5, 0.5]), np.array([[0.95, 0.05], [0.05, 0.95]]), np.array([[3.0], [0.3]]), np.array([0.5, 1.5])
    )
    inputs, codes = _simulated_choices(params, 1, 1)
    folder = tmp_path_factory.mktemp("bernoulli")
    labels = [["True" if c else "false" for c in row] for row in codes]
    cells = _write_choices(folder / "choices.csv", inputs, labels, ["contrast"])
    _fit(folder / "choices.csv", folder / "out", "bernoulli", "contrast")
    return folder / "out", [cell.lower() for cell in cells]


@pytest.fixture(scope="module")
def categorical_fit(tmp_path_factory):
    """A categorical fit of left/none/right choices on two inputs (C inferred)."""
    from bayes_glmhmm import CategoricalGLMHMMParams

    params = CategoricalGLMHMMParams(
        np.array([0.5, 0.5]),
        np.array([[0.95, 0.05], [0.05, 0.95]]),
        np.array([[[2.0, 0.5], [-2.0, 0.0]], [[0.2, -1.0], [0.1, 1.0]]]),
        np.array([[0.0, -1.0], [1.0, 1.0]]),
    )
    inputs, codes = _simulated_choices(params, 2, 2)
    folder = tmp_path_factory.mktemp("categorical")
    names = np.array(["left", "none", "right"])
    cells = _write_choices(folder / "choices.csv", inputs, names[codes].tolist(), ["contrast", "previous"])
    _fit(folder / "choices.csv", folder / "out", "categorical", "contrast,previous")
    return folder / "out", cells


def _check_class_outputs(out, cells, labels, prediction_labels) -> list[dict]:
    """Common checks of a class-target fit; returns the rows of state_probabilities.csv."""
    summary = json.loads((out / "summary.json").read_text())
    for name in summary["files"]:
        assert (out / name).stat().st_size > 0, name
    assert not [name for name in os.listdir(out) if name.startswith(".tmp-")]
    # The saved coding: labels in code order, with the counts of the labels in the CSV.
    expected = [{"code": c, "label": label, "count": cells.count(label)} for c, label in enumerate(labels)]
    assert summary["classes"] == expected and summary["num_classes"] == len(labels)
    assert _read_rows(out / "classes.csv") == [{k: str(v) for k, v in entry.items()} for entry in expected]
    import arviz as az

    assert json.loads(az.from_netcdf(out / "posterior.nc").posterior.attrs["class_labels"]) == labels
    rows = _read_rows(out / "state_probabilities.csv")
    assert [int(row["row"]) for row in rows] == list(range(1, len(cells) + 1))
    assert [row["observed"] == "True" for row in rows] == [cell != "" for cell in cells]
    # Consistency of the coding with the data: over the observed rows, the mean predicted probability
    # of a label is its observed frequency. With a per-state intercept the in-sample predictive
    # frequencies match the data up to prior shrinkage and Monte Carlo error (0.02 seen); 0.08 is well
    # below the gaps between these seeded data's frequencies (false/true 0.33/0.67; left/none/right
    # 0.15/0.53/0.32: at least 0.17), so a permuted coding fails.
    observed = [(row, cell) for row, cell in zip(rows, cells, strict=True) if cell]
    for label in prediction_labels:
        predicted = np.mean([float(row[f"p_choice={label}"]) for row, _ in observed])
        frequency = np.mean([cell == label for _, cell in observed])
        assert abs(predicted - frequency) < 0.08, (label, predicted, frequency)
    return rows


def test_fit_bernoulli_true_false_end_to_end(bernoulli_fit):
    out, cells = bernoulli_fit
    summary = json.loads((out / "summary.json").read_text())
    assert summary["family"] == "bernoulli" and "emission_curves_contrast.png" in summary["files"]
    rows = _check_class_outputs(out, cells, ["false", "true"], ["true"])
    assert all(0.0 <= float(row["p_choice=true"]) <= 1.0 for row in rows)
    parameters = {row["parameter"] for row in _read_rows(out / "parameters.csv")}
    assert {"weight[0, contrast]", "weight[1, contrast]", "biases[1]"} <= parameters
    assert not any(name.startswith("scales") for name in parameters)


def test_fit_categorical_string_labels_end_to_end(categorical_fit):
    out, cells = categorical_fit
    summary = json.loads((out / "summary.json").read_text())
    assert summary["family"] == "categorical"
    assert {"emission_curves_contrast.png", "emission_curves_previous.png"} <= set(summary["files"])
    rows = _check_class_outputs(out, cells, ["left", "none", "right"], ["left", "none", "right"])
    totals = [sum(float(row[f"p_choice={label}"]) for label in ("left", "none", "right")) for row in rows]
    np.testing.assert_allclose(totals, 1.0, atol=1e-5)  # 6 significant digits per written value
    parameters = {row["parameter"] for row in _read_rows(out / "parameters.csv")}
    assert {"weight[1, right vs left, previous]", "biases[0, none vs left]"} <= parameters


@pytest.mark.parametrize(
    "text, extra, message",
    [
        ("x,choice\n1,0\n2,1\n3,2\n4,1\n", ["--family", "bernoulli"], "column 'choice' has the value 2 at data row 3"),
        (
            "x,choice\n1,left\n2,none\n3,left\n4,right\n",
            ["--family", "categorical", "--num-classes", "2"],
            "label 'right' at data row 4 has no class",
        ),
        ("x,choice\n1,left\n2,right\n", ["--family", "gaussian"], "non-numeric value 'left' at data row 1"),
        ("x,choice\n1,0\n2,1\n", ["--num-classes", "3"], "--num-classes applies to --family categorical only"),
        ("", ["--family", "bernoulli"], "is empty"),
        ("x,choice\n", ["--family", "bernoulli"], "has a header but no data rows"),
    ],
)
def test_fit_command_family_errors(tmp_path, capsys, text, extra, message):
    path = tmp_path / "data.csv"
    path.write_text(text)
    arguments = ["fit", str(path), "--target", "choice", "--inputs", "x", "--states", "2", "--out", str(tmp_path)]
    assert main(arguments + extra) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--transition-inputs", "w"], "--transition-inputs: unknown column 'w'"),
        (["--transition-inputs", "u"], "--transition-inputs: column 'u' is missing a value at data row 2"),
        (["--transition-inputs", " , "], "--transition-inputs: give at least one column name"),
        (["--transition-form", "destination"], "--transition-form applies only with --transition-inputs"),
        (
            ["--transition-inputs", "x", "--transition-weight-scale", "0"],
            "--transition-weight-scale must be a positive",
        ),
    ],
)
def test_fit_command_transition_errors(tmp_path, capsys, extra, message):
    path = tmp_path / "data.csv"
    path.write_text("x,u,y\n1,0,2\n2,nan,3\n3,1,4\n")
    arguments = ["fit", str(path), "--target", "y", "--inputs", "x", "--states", "2", "--out", str(tmp_path / "o")]
    assert main(arguments + extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_fit_command_with_transition_inputs_end_to_end(tmp_path, capsys):
    """--transition-inputs: the column drives the transitions; every output names it and agrees with the draws."""
    import arviz as az
    import jax

    from bayes_glmhmm import BernoulliGLMHMMParams, simulate

    params = BernoulliGLMHMMParams(
        np.array([0.5, 0.5]),
        np.array([[0.9, 0.1], [0.1, 0.9]]),
        np.array([[3.0], [0.3]]),
        np.array([0.5, 1.5]),
        transition_weights=np.array([[[0.0], [2.0]], [[-2.0], [0.0]]]),
    )
    rng = np.random.default_rng(5)
    inputs, rewards = rng.normal(size=(2, 60, 1)), rng.integers(0, 2, (2, 60, 1)).astype(float)
    _, choices = simulate(jax.random.PRNGKey(5), params, inputs, rewards)
    lengths = [60, 45]
    path = tmp_path / "choices.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["session", "contrast", "prev_reward", "choice"])
        for n, length in enumerate(lengths):
            for t in range(length):
                writer.writerow([f"s{n}", f"{inputs[n, t, 0]:.4f}", int(rewards[n, t, 0]), int(choices[n, t])])
    out = tmp_path / "out"
    arguments = ["fit", str(path), "--target", "choice", "--inputs", "contrast", "--sequence", "session"]
    arguments += ["--family", "bernoulli", "--transition-inputs", "prev_reward", "--transition-form", "destination"]
    assert main(arguments + ["--out", str(out), "--transition-weight-scale", "2", *TINY]) == 0
    assert "destination input-driven transitions on prev_reward" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    for name in summary["files"]:
        assert (out / name).stat().st_size > 0, name
    assert "transition_probabilities_prev_reward.png" in summary["files"]
    assert summary["data"]["transition_inputs"] == ["prev_reward"]
    assert summary["priors"]["transition_weight_scale"] == 2.0
    transitions = summary["transitions"]
    assert (transitions["model"], transitions["form"], transitions["inputs"]) == (
        "input_driven",
        "destination",
        ["prev_reward"],
    )
    idata = az.from_netcdf(out / "posterior.nc")
    draws = idata.posterior["transition_weights"]
    assert draws.coords["transition_input"].values.tolist() == ["prev_reward"]
    stored = idata.constant_data["transition_inputs"].values
    np.testing.assert_array_equal(stored[1, 45:], 0.0)  # the shorter session's padding
    np.testing.assert_array_equal(stored[:, :45, 0], rewards[:, :45, 0])
    parameters = {row["parameter"]: row for row in _read_rows(out / "parameters.csv")}
    assert [(entry["from_state"], entry["to_state"]) for entry in transitions["weights"]] == [(0, 1), (1, 0)]
    for entry in transitions["weights"]:
        i, j = entry["from_state"], entry["to_state"]
        values = draws.values[..., i, j, 0].ravel()
        assert entry["posterior_mean"] == pytest.approx(values.mean(), rel=1e-5)
        assert entry["lower_94"] == pytest.approx(np.quantile(values, 0.03), rel=1e-5)
        row = parameters[f"transition_weights[{i}, {j}, prev_reward]"]
        assert float(row["posterior_mean"]) == pytest.approx(entry["posterior_mean"], rel=1e-5, abs=1e-6)
    # Destination form: V[i, j] = d[j] - d[i], so with two states V[1, 0] = -V[0, 1] in every draw.
    np.testing.assert_allclose(draws.values[..., 1, 0, 0], -draws.values[..., 0, 1, 0], atol=1e-5)


# --- fit --subject: a hierarchical model across subjects ----------------------------------------------


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--subject-parametrization", "centred"], "--subject-parametrization applies only with --subject"),
        (["--subject", "mouse", "--standardize", "yes"], "--standardize yes cannot be combined with --subject"),
        (["--subject", "mouse", "--subject-spread-scale", "0"], "--subject-spread-scale must be a positive finite"),
        (
            ["--subject", "mouse", "--sequence", "session"],
            "--subject: column 'mouse' holds 'm2' at data row 3 but 'm1' at data row 1 in sequence 's1'",
        ),
    ],
)
def test_fit_command_subject_errors(tmp_path, capsys, extra, message):
    path = tmp_path / "data.csv"
    path.write_text("session,mouse,x,y\ns1,m1,1,2\ns1,m1,2,3\ns1,m2,3,4\ns2,m2,1,2\ns2,m2,3,4\n")
    arguments = ["fit", str(path), "--target", "y", "--inputs", "x", "--states", "2", "--out", str(tmp_path / "o")]
    assert main(arguments + extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_fit_command_with_subjects_end_to_end(tmp_path, capsys):
    """--subject: three mice over four sessions; parameters.csv adds the spreads and each mouse's weights
    and biases, summary.json and posterior.nc name the column and the mice, the options reach the fit."""
    import arviz as az

    rng = np.random.default_rng(3)
    mice = ["m1", "m2", "m3", "m1"]
    path = tmp_path / "choices.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["session", "mouse", "contrast", "choice"])
        for n, mouse in enumerate(mice):
            bias = {"m1": -0.5, "m2": 0.5, "m3": 0.0}[mouse]
            for x in rng.normal(size=30):
                writer.writerow([f"s{n}", mouse, f"{x:.4f}", int(rng.random() < 1 / (1 + np.exp(-2 * x - bias)))])
    out = tmp_path / "out"
    arguments = ["fit", str(path), "--target", "choice", "--inputs", "contrast", "--sequence", "session"]
    arguments += ["--family", "bernoulli", "--subject", "mouse", "--subject-parametrization", "centred"]
    arguments += ["--subject-spread-scale", "0.5", "--out", str(out), "--states", "2", "--no-progress"]
    assert main(arguments + ["--chains", "1", "--warmup", "30", "--samples", "30"]) == 0
    assert "4 sequence(s) of 3 subjects (mouse)" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    for name in summary["files"]:
        assert (out / name).stat().st_size > 0, name
    assert (summary["data"]["subject"], summary["data"]["num_subjects"]) == ("mouse", 3)
    assert summary["nuts"]["settings"]["subject_parametrization"] == "centred"
    assert summary["nuts"]["settings"]["standardization"] is None
    assert summary["priors"]["subject_spread_scale"] == 0.5
    rows = {row["parameter"]: row for row in _read_rows(out / "parameters.csv")}
    expected = {"weight_spread[1, contrast]", "bias_spread[0]", "subject_weights[m3, 1, contrast]"}
    assert expected | {"subject_biases[m1, 0]", "subject_biases[m2, 1]", "weight[0, contrast]"} <= set(rows)
    assert sum(name.startswith("subject_") for name in rows) == 3 * 2 + 3 * 2
    assert rows["subject_biases[m2, 1]"]["em_map"] == "nan" and rows["biases[1]"]["em_map"] != "nan"
    idata = az.from_netcdf(out / "posterior.nc")
    assert idata.posterior.attrs["subject_name"] == "mouse"
    assert idata.posterior["subject_biases"].coords["subject"].values.tolist() == ["m1", "m2", "m3"]
    draws = idata.posterior["subject_biases"].sel(subject="m2").values[..., 1].ravel()
    assert float(rows["subject_biases[m2, 1]"]["posterior_mean"]) == pytest.approx(draws.mean(), rel=1e-5, abs=1e-6)


# --- select: choosing the number of states ---------------------------------------------------------


@pytest.fixture(scope="module")
def select_run(tmp_path_factory):
    """``bayes-glmhmm select`` on 4 sessions x 50 left/right choices (K = 1-2, k-fold, 2 folds, 2 x 50 + 50)."""
    import warnings

    import jax

    from bayes_glmhmm import BernoulliGLMHMMParams, simulate

    params = BernoulliGLMHMMParams(
        np.array([0.5, 0.5]), np.array([[0.95, 0.05], [0.05, 0.95]]), np.array([[4.0], [0.5]]), np.array([0.0, 1.5])
    )
    inputs = np.random.default_rng(3).normal(size=(4, 50, 1))
    _, choices = simulate(jax.random.PRNGKey(3), params, inputs)
    folder = tmp_path_factory.mktemp("select")
    labels = np.array(["left", "right"])[np.asarray(choices).astype(int)]
    cells = _write_choices(folder / "choices.csv", inputs, labels.tolist(), ["contrast"])
    arguments = ["select", str(folder / "choices.csv"), "--states", "1-2", "--family", "bernoulli"]
    arguments += ["--target", "choice", "--inputs", "contrast", "--sequence", "session", "--method", "kfold"]
    arguments += ["--folds", "2", "--em-restarts", "2", "--out", str(folder / "out"), "--chains", "2"]
    arguments += ["--warmup", "50", "--samples", "50", "--no-progress"]
    printed = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(printed):
        warnings.simplefilter("ignore", UserWarning)  # R-hat of such short chains
        code = main(arguments)
    return code, folder / "out", cells, printed.getvalue()


def test_select_command_writes_the_selection_and_prints_the_chosen_k(select_run):
    from bayes_glmhmm.selection_io import SELECTION_FILES

    code, out, cells, printed = select_run
    assert code == 0
    assert sorted(os.listdir(out)) == sorted(SELECTION_FILES)
    summary = json.loads((out / "selection.json").read_text())
    assert (
        f"chosen K = {summary['best']} (Bayes, 2-fold CV over sequences) and K = {summary['best_em']} "
        "(EM, 2-fold CV over sequences) by rule one_se"
    ) in printed
    markdown = (out / "selection.md").read_text()
    assert markdown.split("![")[0].strip() in printed  # the table, the rule and the choices
    assert summary["states"] == [1, 2] and summary["method"] == "kfold"
    assert [int(row["num_states"]) for row in _read_rows(out / "selection.csv")] == [1, 2]
    settings = summary["settings"]
    assert (settings["num_folds"], settings["em_restarts"], settings["family"]) == (2, 2, "bernoulli")
    fit_nuts = settings["fit_nuts"]
    assert (fit_nuts["num_chains"], fit_nuts["num_warmup"], fit_nuts["num_samples"], fit_nuts["seed"]) == (2, 50, 50, 0)
    assert fit_nuts["priors"]["weight_scale"] == 1.0
    data = settings["data"]
    assert (data["target"], data["inputs"], data["sequence"]) == ("choice", ["contrast"], "session")
    assert (data["num_sequences"], data["num_rows"], data["num_missing_targets"]) == (4, 200, cells.count(""))
    assert data["class_labels"] == ["left", "right"]
    assert summary["settings"]["num_trials"] == 200 - cells.count("")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1-5", (1, 2, 3, 4, 5)),
        ("1,2,4", (1, 2, 4)),
        (" 3 ", (3,)),
        ("1-3,5", (1, 2, 3, 5)),
        ("4, 2", (2, 4)),
        ("2-2", (2,)),
    ],
)
def test_parse_states(text, expected):
    from bayes_glmhmm.cli import parse_states

    assert parse_states(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "--states must be a range such as 1-5 or a list such as 1,2,4"),
        ("a", "--states must be a range"),
        ("1.5", "--states must be a range"),
        ("-1", "--states must be a range"),
        ("1--3", "--states must be a range"),
        ("1,", "--states must be a range"),
        ("0-3", "--states: every K must be >= 1"),
        ("5-1", "--states: the range '5-1' runs backwards; write it as 1-5"),
        ("1,1", "--states gives K = 1 more than once"),
        ("1-3,2", "--states gives K = 2 more than once"),
    ],
)
def test_parse_states_rejects_bad_values(text, message):
    import re

    from bayes_glmhmm.cli import parse_states

    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_states(text)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--states", "2-1"], "--states: the range '2-1' runs backwards"),
        (["--states", "two"], "--states must be a range such as 1-5"),
        (["--states", "1-9"], "--states 9 is larger than the longest sequence (3 steps) can support"),
        (["--folds", "1"], "--folds must be >= 2, got 1"),
        (["--folds", "3"], "--folds=3 exceeds the number of sequences (2)"),
        (["--max-refits", "-1"], "--max-refits must be >= 0"),
        (["--em-restarts", "0"], "--em-restarts must be >= 1"),
        (["--chains", "0"], "--chains must be >= 1"),
        (["--target", "nope"], "--target: unknown column 'nope'"),
        (["--transition-form", "destination"], "--transition-form applies only with --transition-inputs"),
        (["--num-classes", "3"], "--num-classes applies to --family categorical only"),
        (["--weight-scale", "0"], "--weight-scale must be a positive finite number, got 0"),
    ],
)
def test_select_command_errors(tmp_path, capsys, extra, message):
    path = tmp_path / "data.csv"
    path.write_text("session,x,y\na,1,0\na,2,1\na,3,1\nb,1,1\nb,2,0\nb,0,0\n")
    arguments = ["select", str(path), "--target", "y", "--inputs", "x", "--sequence", "session", "--states", "1-2"]
    arguments += ["--family", "bernoulli", "--out", str(tmp_path / "o")]
    assert main(arguments + extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# --- first contact: checks before JAX, progress bars, help, the compilation cache ---------------------

#: Runs ``main`` on the command line's arguments in a new process; prints the JAX modules loaded by then.
_REPORT_MODULES = """
import json, sys
from bayes_glmhmm.cli import main
code = main(sys.argv[1:])
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in ("jax", "jaxlib", "numpyro"))))
sys.exit(code)
"""


def _run_cli(arguments: list[str], cwd, cache: str = "off", script: str = _REPORT_MODULES):
    """A command-line call in a new process (stderr a pipe, not a terminal), with the cache as given.

    Its output is decoded as it came, without universal newlines, which would turn a progress bar's
    carriage returns into line feeds.
    """
    environment = dict(os.environ, BAYES_GLMHMM_COMPILE_CACHE=cache)
    result = subprocess.run([sys.executable, "-c", script, *arguments], cwd=cwd, env=environment, capture_output=True)
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(), result.stderr.decode())


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["fit", "data.csv", "--states", "2", "--target", "nope", "--inputs", "x"], "--target: unknown column 'nope'"),
        (["fit", "empty.csv", "--states", "2", "--target", "y", "--inputs", "x"], "the file 'empty.csv' is empty"),
        (["fit", "missing.csv", "--states", "2", "--target", "y", "--inputs", "x"], "DATA: no such file"),
        (["fit", "data.csv", "--states", "0", "--target", "y", "--inputs", "x"], "--states must be >= 1, got 0"),
        (["fit", "data.csv", "--states", "5", "--target", "y", "--inputs", "x"], "--states 5 is larger"),
        (
            ["fit", "text.csv", "--states", "2", "--target", "y", "--inputs", "x"],
            "non-numeric value 'up' at data row 2",
        ),
        (["fit", "data.csv", "--states", "2", "--target", "y", "--inputs", "x", "--bias-scale", "nan"], "--bias-scale"),
        (
            ["fit", "data.csv", "--states", "2", "--target", "y", "--inputs", "x", "--tempering", "0"],
            "--tempering must be >= 1, got 0",
        ),
        (
            ["fit", "data.csv", "--states", "2", "--target", "y", "--inputs", "x", "--samples", "50"]
            + ["--max-samples", "40"],
            "--max-samples must be >= --samples (50), got 40",
        ),
        (
            ["fit", "data.csv", "--states", "2", "--target", "y", "--inputs", "x", "--subject", "mouse"],
            "--subject: unknown column 'mouse'",
        ),
        (["select", "data.csv", "--states", "1-2", "--target", "y", "--inputs", "w"], "--inputs: unknown column 'w'"),
        (["select", "data.csv", "--states", "1-4", "--target", "y", "--inputs", "x"], "--states 4 is larger"),
        (["demo", "--chains", "0"], "--chains must be >= 1, got 0"),
        # The family's own check of the target values (bayes_glmhmm.emission_support), before JAX.
        (
            ["fit", "counts.csv", "--states", "2", "--target", "y", "--inputs", "x", "--family", "poisson"],
            "--target: column 'y' has the value 1.5 at data row 2, which the poisson family does not accept",
        ),
        (
            ["fit", "data.csv", "--states", "2", "--target", "y", "--inputs", "x", "--family", "bernoulli"],
            "--target: column 'y' has the value 2 at data row 1, which the bernoulli family does not accept",
        ),
        (
            ["fit", "data.csv", "--states", "2", "--target", "y", "--inputs", "x", "--family", "categorical"]
            + ["--num-classes", "3"],
            "--target: column 'y' has the value 3 at data row 2, which the categorical family does not accept",
        ),
        (
            ["select", "counts.csv", "--states", "1-2", "--target", "y", "--inputs", "x", "--family", "poisson"]
            + ["--sequence", "id", "--folds", "2"],
            "--target: column 'y' has the value 1.5 at data row 2, which the poisson family does not accept",
        ),
        # --folds against the CSV's sequences, before JAX.
        (
            ["select", "counts.csv", "--states", "1-2", "--target", "x", "--inputs", "x", "--sequence", "id"]
            + ["--folds", "3"],
            "--folds=3 exceeds the number of sequences (2)",
        ),
        (
            ["select", "data.csv", "--states", "1-2", "--target", "y", "--inputs", "x"],
            "--folds=5 exceeds the number of sequences (1): each fold holds out whole sequences; give the column",
        ),
    ],
)
def test_bad_calls_fail_before_jax_is_imported(tmp_path, arguments, message):
    """Options, file, columns, the family's target values and --folds are checked with NumPy and the csv
    module alone: a bad call exits with status 2 and a message naming the flag or file, and JAX and
    NumPyro were never imported."""
    (tmp_path / "data.csv").write_text("x,y\n1,2\n2,3\n3,4\n")
    (tmp_path / "text.csv").write_text("x,y\n1,2\n2,up\n3,4\n")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "counts.csv").write_text("id,x,y\na,1,0\na,2,1.5\na,3,2\nb,1,1\nb,2,0\nb,3,4\n")
    result = _run_cli(arguments, tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("bayes-glmhmm: error: ") and message in result.stderr
    assert json.loads(result.stdout) == []
    assert not (tmp_path / "fit_results").exists() and not (tmp_path / "selection_results").exists()


def test_the_checks_before_jax_import_no_jax():
    """The modules whose checks the command line runs before JAX (the families' support checks, the
    priors, the folds) import neither JAX nor NumPyro."""
    script = (
        "import json, sys\n"
        "import bayes_glmhmm.emission_support, bayes_glmhmm.folds, bayes_glmhmm.priors\n"
        "from bayes_glmhmm import Priors\n"
        "print(json.dumps(sorted(name for name in sys.modules if name.split('.')[0] in ('jax', 'numpyro'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_prior_options_are_checked_by_priors_itself(tmp_path, capsys, monkeypatch):
    """The command line runs ``Priors``' own check (no check of its own) and names the flag: a problem
    that only the patched ``Priors.problems`` reports reaches the user as ``--bias-scale ...``."""
    from bayes_glmhmm.priors import Priors

    monkeypatch.setattr(Priors, "problems", lambda self: {"bias_scale": "is vetoed by Priors.problems"})
    path = tmp_path / "data.csv"
    path.write_text("x,y\n1,2\n2,3\n3,4\n")
    # --states 5 fails later (in the data check), so a command line that skipped Priors' check fails fast.
    arguments = ["fit", str(path), "--target", "y", "--inputs", "x", "--states", "5", "--out", str(tmp_path / "o")]
    assert main(arguments) == 2
    assert "bayes-glmhmm: error: --bias-scale is vetoed by Priors.problems" in capsys.readouterr().err


class _Stream(io.StringIO):
    """A text stream that says whether it is a terminal."""

    def __init__(self, terminal: bool):
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


def test_progress_bars_only_on_a_terminal(monkeypatch):
    from bayes_glmhmm.cli import _show_progress

    monkeypatch.setattr(sys, "stderr", _Stream(terminal=True))
    assert _show_progress(argparse.Namespace(no_progress=False))
    assert not _show_progress(argparse.Namespace(no_progress=True))
    monkeypatch.setattr(sys, "stderr", _Stream(terminal=False))
    assert not _show_progress(argparse.Namespace(no_progress=False))


def test_sampler_options_have_help_with_defaults():
    """--chains, --warmup, --samples, --seed and --no-compile-cache: help text with the default, in every
    command that samples."""
    from bayes_glmhmm.cli import _build_parser

    parser = _build_parser()
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    for command in ("demo", "fit", "select"):
        options = {flag: action for action in commands.choices[command]._actions for flag in action.option_strings}
        for flag in ("--chains", "--warmup", "--samples", "--seed", "--no-compile-cache"):
            assert "(default: " in options[flag].help, (command, flag)


def test_compile_cache_dir_follows_the_flag_and_the_environment(monkeypatch, tmp_path):
    from bayes_glmhmm.cli import COMPILE_CACHE_VARIABLE, compile_cache_dir

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv(COMPILE_CACHE_VARIABLE)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache_dir() == str(tmp_path / "xdg" / "bayes_glmhmm" / "jax")
    assert compile_cache_dir(enabled=False) is None
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")  # ignored, as the XDG specification says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert compile_cache_dir() == str(tmp_path / "home" / ".cache" / "bayes_glmhmm" / "jax")
    monkeypatch.setattr(sys, "platform", "darwin")
    assert compile_cache_dir() == str(tmp_path / "home" / "Library" / "Caches" / "bayes_glmhmm" / "jax")
    for off in ("0", "off", "False", " NO "):
        monkeypatch.setenv(COMPILE_CACHE_VARIABLE, off)
        assert compile_cache_dir() is None, off
    monkeypatch.setenv(COMPILE_CACHE_VARIABLE, str(tmp_path / "moved"))
    assert compile_cache_dir() == str(tmp_path / "moved")
    assert compile_cache_dir(enabled=False) is None


@pytest.fixture(scope="module")
def cached_fits(tmp_path_factory):
    """A tiny fit run twice in new processes with the compilation cache in a temporary folder: the
    cache's files after each run, and each run's process result."""
    folder = tmp_path_factory.mktemp("cache")
    rng = np.random.default_rng(0)
    with open(folder / "data.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "x", "y"])
        for n in range(2):
            for t in range(30):
                x = rng.normal()
                writer.writerow([n, f"{x:.4f}", f"{(2.0 if (t // 10) % 2 else -2.0) * x + rng.normal():.4f}"])
    cache = folder / "cache"
    arguments = ["fit", "data.csv", "--states", "2", "--target", "y", "--inputs", "x", "--sequence", "id"]
    arguments += ["--chains", "1", "--warmup", "20", "--samples", "20"]
    runs = []
    for out in ("first", "second"):
        result = _run_cli([*arguments, "--out", out], folder, cache=str(cache))
        assert result.returncode == 0, result.stderr[-3000:]
        runs.append((sorted(os.listdir(cache)), result))
    return folder, runs


def test_compile_cache_is_written_then_read(cached_fits):
    """The first run fills the cache; the second finds every program there (it adds none) and gives the
    same parameters."""
    folder, ((after_first, _), (after_second, _)) = cached_fits
    assert any(name.endswith("-cache") for name in after_first)
    assert after_second == after_first
    first, second = ((folder / out / "parameters.csv").read_bytes() for out in ("first", "second"))
    assert first == second


def test_no_progress_bar_in_a_redirected_log(cached_fits):
    """stderr was a pipe: no progress bar, so no carriage return or escape code in the log."""
    _, runs = cached_fits
    for _, result in runs:
        assert "\r" not in result.stderr and "\x1b" not in result.stderr
