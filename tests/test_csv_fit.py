import csv
import json
from pathlib import Path

import jax
import numpy as np
import pytest

from bayes_glmhmm import article_data
from bayes_glmhmm.csv_fit import _fit_figures, conditional_predictive_mean, parameter_rows, read_fit_data, run_fit
from bayes_glmhmm.emissions import get_family

Y_SCALE, Y_SHIFT, X_SCALE = 100.0, 2000.0, 1000.0


@pytest.fixture(scope="module")
def sessions_csv(tmp_path_factory):
    """Three sessions of the article's generator in other units (grams, colour index), lengths 60,
    40, 50, every 17th target missing."""
    data = article_data(jax.random.PRNGKey(4), num_sequences=3, num_timesteps=60)
    path = tmp_path_factory.mktemp("data") / "sessions.csv"
    lengths = [60, 40, 50]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["session", "weight_g", "colour"])
        for n, length in enumerate(lengths):
            for t in range(length):
                colour = "" if t % 17 == 5 else f"{data.emissions[n, t] * Y_SCALE + Y_SHIFT:.4f}"
                writer.writerow([f"s{n}", f"{data.inputs[n, t, 0] * X_SCALE:.3f}", colour])
    return path, data, lengths


@pytest.fixture(scope="module")
def fitted(sessions_csv, tmp_path_factory):
    path, data, lengths = sessions_csv
    out = tmp_path_factory.mktemp("fit")
    summary = run_fit(
        path,
        3,
        "colour",
        ["weight_g"],
        "session",
        out=str(out),
        num_chains=2,
        num_warmup=150,
        num_samples=100,
        seed=0,
        progress_bar=False,
    )
    return out, summary


def test_fit_writes_every_file(fitted):
    out, summary = fitted
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    for name in summary["files"]:
        assert (out / name).stat().st_size > 0, name
    assert summary["data"]["num_rows"] == 150
    assert summary["data"]["num_missing_targets"] == sum(len(range(5, n, 17)) for n in (60, 40, 50))


def test_summary_carries_the_verdict_of_the_written_posterior(fitted):
    """summary.json's verdict is the one the written posterior.nc gives again; 2 x 100 draws are too few
    for a bulk and tail ESS of 400 in each of the 21 parameters, so it says the fit has not converged."""
    import arviz as az

    from bayes_glmhmm import ConvergenceThresholds
    from bayes_glmhmm.convert import posterior_from_inference_data

    out, summary = fitted
    nuts = summary["nuts"]
    recomputed = posterior_from_inference_data(az.from_netcdf(out / "posterior.nc")).diagnostics()
    for key in ("converged", "problems", "divergences", "tree_depth_saturated", "stuck_chains"):
        assert nuts[key] == recomputed[key], key
    assert nuts["min_ess_bulk"] == pytest.approx(recomputed["min_ess_bulk"], rel=1e-9)
    assert nuts["settings"]["convergence_thresholds"] == ConvergenceThresholds().as_dict()
    assert nuts["converged"] is False
    assert any(problem.startswith(("min bulk ESS", "min tail ESS")) for problem in nuts["problems"])


@pytest.fixture(scope="module")
def fit_figures(fitted, sessions_csv):
    """The figures of the fit, ``{file name: Figure}``, rebuilt from its posterior.nc and its CSV."""
    import arviz as az

    from bayes_glmhmm.convert import posterior_from_inference_data

    out, _ = fitted
    path, _, _ = sessions_csv
    idata = az.from_netcdf(out / "posterior.nc")
    data = read_fit_data(path, "colour", ["weight_g"], "session")
    return _fit_figures(posterior_from_inference_data(idata), idata, data)


def test_fit_summary_states_the_sequence_lengths(fitted):
    _, summary = fitted
    assert summary["data"]["num_sequences"] == 3
    assert summary["data"]["sequence_lengths"] == {"min": 40, "median": 50.0, "max": 60}
    assert "states.png" in summary["files"] and "states_sequence0.png" not in summary["files"]


def test_fit_state_figure_shows_every_sequence_without_padding_or_truth(fit_figures):
    """states.png: the three sequences (lengths 60, 40, 50), each on an axis spanning its own steps,
    named by its id with its missing targets counted; no truth is claimed."""
    figure = fit_figures["states.png"]
    assert figure.get_suptitle().startswith("Inferred states") and "True" not in figure.get_suptitle()
    assert len(figure.axes) == 6
    emission_axes, probability_axes = figure.axes[0::2], figure.axes[1::2]
    assert [ax.get_title(loc="left") for ax in emission_axes] == [
        "sequence s0: 60 steps, 4 missing",
        "sequence s1: 40 steps, 3 missing",
        "sequence s2: 50 steps, 3 missing",
    ]
    assert [ax.get_xlim() for ax in probability_axes] == [(-0.5, 59.5), (-0.5, 39.5), (-0.5, 49.5)]
    assert all(ax.get_ylabel() == "colour" for ax in emission_axes)


def test_fit_figures_label_the_weights_by_column_on_their_own_scale(fit_figures, fitted):
    """The weights (about 0.1 colour units per gram) are titled by their column and drawn on an axis of
    their own, not squashed beside the biases (about 2000 colour units)."""
    axes = {ax.get_title(): ax for ax in fit_figures["parameters.png"].axes}
    assert "weights $w_k$: weight_g" in axes
    low, high = axes["weights $w_k$: weight_g"].get_ylim()
    assert high - low < 1.0
    assert axes["biases $c_k$"].get_ylim()[1] > 1000.0
    trace_labels = [ax.get_ylabel() for ax in fit_figures["trace.png"].axes]
    assert "weights[state 0, weight_g]" in trace_labels
    assert not any("input 0" in label for label in trace_labels)


def test_report_of_a_fit_states_rows_lengths_missing_targets_and_padding(fitted, tmp_path):
    """150 rows in 3 sequences of 60, 40 and 50 steps, 10 targets missing: padding (30 steps to the
    padded 3 x 60) is reported apart, and the padded shape is not given as the data's size."""
    from bayes_glmhmm.report import write_report

    out, _ = fitted
    markdown = Path(write_report(out / "posterior.nc", tmp_path)["markdown"]).read_text(encoding="utf-8")
    assert "| data | 150 rows (time steps) in 3 sequences, 1 input |" in markdown
    assert "| sequence lengths | min 40, median 50, max 60 steps |" in markdown
    assert "| missing targets | 10 of 150 rows" in markdown
    assert "| padding | 30 steps after the ends of the shorter sequences" in markdown
    assert "| inputs | weight_g |" in markdown
    assert "3 sequences x 60" not in markdown and "missing or padded" not in markdown
    # The detail figure names the sequence by its id in the file, not by its index.
    assert "The first sequence in detail (s0)" in markdown


def test_state_probabilities_per_row_without_padding(fitted):
    out, _ = fitted
    with open(out / "state_probabilities.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 150  # every data row once, no padding rows
    assert [int(row["row"]) for row in rows] == list(range(1, 151))
    probabilities = np.array([[float(row[f"p_state_{k}"]) for k in range(3)] for row in rows])
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-4)
    missing = [row for row in rows if row["observed"] == "False"]
    assert len(missing) == 10
    assert all(np.isfinite(float(row["predictive_mean"])) for row in missing)


def test_parameters_are_in_the_data_units(fitted, sessions_csv):
    out, summary = fitted
    _, data, _ = sessions_csv
    assert summary["nuts"]["settings"]["standardization"] is not None
    with open(out / "parameters.csv", newline="") as handle:
        rows = {row["parameter"]: row for row in csv.DictReader(handle)}
    weights = sorted(float(rows[f"weight[{k}, weight_g]"]["posterior_mean"]) for k in range(3))
    # Truth in these units: weights (1, -0.8, 0.2) x 100 / 1000; 140 observations pin them to ~15%.
    np.testing.assert_allclose(weights, np.sort(data.params.weights[:, 0]) * Y_SCALE / X_SCALE, rtol=0.25, atol=0.01)


def test_states_larger_than_any_sequence(sessions_csv, tmp_path):
    path, _, _ = sessions_csv
    with pytest.raises(ValueError, match="longest sequence"):
        run_fit(path, 61, "colour", ["weight_g"], "session", out=str(tmp_path))


def test_conditional_predictive_mean_by_hand():
    samples = {
        "weights": np.array([[[[1.0], [2.0]], [[3.0], [4.0]]]]),  # (chain 1, draw 2, K 2, D 1)
        "biases": np.array([[[0.5, -0.5], [1.0, 0.0]]]),
    }
    states = np.array([[[[0, 1, -1]], [[1, 1, -1]]]])  # (1, 2, N 1, T 3), last step padding
    inputs = np.array([[[1.0], [2.0], [0.0]]])
    mean = conditional_predictive_mean(samples, states, inputs)
    expected_t0 = ((1.0 * 1 + 0.5) + (4.0 * 1 + 0.0)) / 2
    expected_t1 = ((2.0 * 2 - 0.5) + (4.0 * 2 + 0.0)) / 2
    np.testing.assert_allclose(mean[0, :2], [expected_t0, expected_t1])
    assert np.isnan(mean[0, 2])


def test_conditional_predictive_mean_by_hand_categorical():
    """Class probabilities: the draws' softmax(0, eta) of each draw's state, averaged; they sum to 1."""
    weights = np.array([[[[[1.0], [-1.0]], [[0.0], [2.0]]], [[[0.5], [0.5]], [[-2.0], [0.0]]]]])  # (1, 2, K, C-1, D)
    biases = np.array([[[[0.0, 1.0], [1.0, -1.0]], [[0.2, 0.0], [0.0, 0.3]]]])  # (1, 2, K, C-1)
    states = np.array([[[[0, 1]], [[1, 1]]]])  # (1, 2, N 1, T 2)
    inputs = np.array([[[0.5], [-1.0]]])
    mean = conditional_predictive_mean(
        {"weights": weights, "biases": biases}, states, inputs, family=get_family("categorical", 3)
    )

    def probabilities(draw, state, x):
        logits = np.concatenate([[0.0], weights[0, draw, state, :, 0] * x + biases[0, draw, state]])
        return np.exp(logits) / np.exp(logits).sum()

    expected = [
        (probabilities(0, 0, 0.5) + probabilities(1, 1, 0.5)) / 2,
        (probabilities(0, 1, -1.0) + probabilities(1, 1, -1.0)) / 2,
    ]
    assert mean.shape == (1, 2, 3)
    np.testing.assert_allclose(mean[0], expected, rtol=1e-6)
    np.testing.assert_allclose(mean.sum(-1), 1.0, rtol=1e-6)


def test_conditional_predictive_mean_by_hand_bernoulli():
    samples = {"weights": np.array([[[[2.0], [-1.0]]]]), "biases": np.array([[[0.0, 0.5]]])}  # one draw, K 2
    states = np.array([[[[1, 0]]]])
    mean = conditional_predictive_mean(samples, states, np.array([[[1.0], [1.0]]]), family="bernoulli")
    np.testing.assert_allclose(mean[0], 1 / (1 + np.exp(-np.array([-1.0 + 0.5, 2.0]))), rtol=1e-6)


def test_conditional_predictive_mean_uses_each_subjects_parameters():
    """A hierarchical posterior: sequence n is predicted with its subject's weights and biases, not the
    population's (which are set far off here)."""
    samples = {
        "weights": np.full((1, 2, 2, 1), 100.0),  # (chain 1, draw 2, K 2, D 1): the population, unused
        "biases": np.full((1, 2, 2), 100.0),
        "subject_weights": np.array([[[[[1.0], [2.0]], [[3.0], [4.0]]], [[[5.0], [6.0]], [[7.0], [8.0]]]]]),  # S 2
        "subject_biases": np.array([[[[0.1, 0.2], [0.3, 0.4]], [[0.5, 0.6], [0.7, 0.8]]]]),
    }
    states = np.array([[[[0, 1], [1, 1], [0, -1]], [[1, 0], [0, 0], [1, -1]]]])  # (1, 2, N 3, T 2), one padded
    inputs = np.array([[[1.0], [2.0]], [[-1.0], [0.5]], [[2.0], [0.0]]])
    subject_index = np.array([1, 0, 1])
    mean = conditional_predictive_mean(samples, states, inputs, subject_index=subject_index)
    weights, biases = samples["subject_weights"][0], samples["subject_biases"][0]
    expected = np.zeros((3, 2))
    for draw in range(2):
        for n, t in np.ndindex(3, 2):
            k, s = states[0, draw, n, t], subject_index[n]
            expected[n, t] += (weights[draw, s, k, 0] * inputs[n, t, 0] + biases[draw, s, k]) / 2
    np.testing.assert_allclose(mean[:, :1], expected[:, :1], rtol=1e-6)
    np.testing.assert_allclose(mean[:2, 1], expected[:2, 1], rtol=1e-6)
    assert np.isnan(mean[2, 1])


def _csv(tmp_path, targets):
    path = tmp_path / "d.csv"
    path.write_text("x,y\n" + "".join(f"{t}.0,{target}\n" for t, target in enumerate(targets)))
    return path


@pytest.mark.parametrize(
    "family, num_classes, targets, message",
    [
        ("bernoulli", None, ["0", "1", "2", "1"], "column 'y' has the value 2 at data row 3, which the bernoulli"),
        ("bernoulli", None, ["1", "0", "-1", "1"], "column 'y': emissions for the bernoulli family"),
        ("categorical", 3, ["0", "", "3", "1"], "column 'y' has the value 3 at data row 3, which the categorical"),
        ("categorical", None, ["0", "1.5", "2"], "column 'y' has the value 1.5 at data row 2"),
        ("poisson", None, ["0", "4", "-1"], "column 'y' has the value -1 at data row 3, which the poisson"),
        ("bernoulli", None, ["left", "right", "none"], "holds 3 distinct labels .* label 'right' at data row 2"),
        ("gaussian", None, ["1.0", "left"], "column 'y' has a non-numeric value 'left' at data row 2"),
        ("gaussian", 3, ["1.0", "2.0"], "num_classes applies to the categorical family only"),
        ("binomial", None, ["1", "0"], "family must be one of gaussian, bernoulli, categorical, poisson"),
    ],
)
def test_targets_outside_the_family_name_column_and_row(tmp_path, family, num_classes, targets, message):
    with pytest.raises(ValueError, match=message):
        read_fit_data(_csv(tmp_path, targets), "y", ["x"], family=family, num_classes=num_classes)


@pytest.mark.parametrize(
    "family, num_classes, targets, labels, codes",
    [
        ("bernoulli", None, ["-1", "1", "", "-1"], ["-1", "1"], [0, 1, 0]),
        ("bernoulli", None, ["True", "false"], ["false", "true"], [1, 0]),
        ("categorical", None, ["2", "0", "2"], ["0", "1", "2"], [2, 0, 2]),
        ("categorical", 4, ["b", "a", "c"], ["a", "b", "c", "class_3"], [1, 0, 2]),
    ],
)
def test_class_labels_of_every_code(tmp_path, family, num_classes, targets, labels, codes):
    data = read_fit_data(_csv(tmp_path, targets), "y", ["x"], family=family, num_classes=num_classes)
    assert data.class_labels == labels
    np.testing.assert_array_equal(data.emissions[data.table.mask], codes)


def test_numeric_targets_have_no_class_labels(tmp_path):
    assert read_fit_data(_csv(tmp_path, ["0", "3", "1"]), "y", ["x"], family="poisson").class_labels is None


def test_parameter_rows_label_states_classes_and_inputs():
    family = get_family("categorical", 3)
    shapes = family.param_shapes(2, 2)
    samples = {name: np.zeros((1, 3, *shape)) for name, shape in shapes.items()}
    samples["weights"][0, :, 1, 0, 1] = [1.0, 2.0, 3.0]  # state 1, class "none" vs "left", input "side"
    rows = {row[0]: row for row in parameter_rows(samples, family, ["contrast", "side"], ["left", "none", "right"])}
    assert len(rows) == sum(int(np.prod(shape)) for shape in shapes.values())
    assert rows["weight[1, none vs left, side]"][1:3] == [2.0, pytest.approx(np.std([1.0, 2.0, 3.0]))]
    assert "weight[0, right vs left, contrast]" in rows and "biases[1, right vs left]" in rows
    assert "transition_matrix[1, 0]" in rows


def test_parameter_rows_name_the_transition_inputs():
    family = get_family("bernoulli")
    shapes = family.param_shapes(2, 1)
    samples = {name: np.zeros((1, 3, *shape)) for name, shape in shapes.items()}
    samples["transition_weights"] = np.zeros((1, 3, 2, 2, 2))
    samples["transition_weights"][0, :, 1, 0, 1] = [-1.0, 0.0, 4.0]  # from state 1 to state 0, per unit of "reward"
    rows = parameter_rows(samples, family, ["contrast"], transition_input_names=["choice", "reward"])
    labels = [row[0] for row in rows]
    transition = [label for label in labels if label.startswith("transition_weights")]
    assert transition == [
        "transition_weights[0, 1, choice]",
        "transition_weights[0, 1, reward]",
        "transition_weights[1, 0, choice]",
        "transition_weights[1, 0, reward]",
    ]  # V[i, i] = 0 by construction has no row
    assert labels[: -len(transition)] == [row[0] for row in parameter_rows(samples, family, ["contrast"])[:-4]]
    row = rows[labels.index("transition_weights[1, 0, reward]")]
    assert row[1:3] == [1.0, pytest.approx(np.std([-1.0, 0.0, 4.0]))] and np.isnan(row[5])
    unnamed = [
        row[0] for row in parameter_rows(samples, family, ["contrast"]) if row[0].startswith("transition_weights")
    ]
    assert unnamed[0] == "transition_weights[0, 1, u0]"


def test_parameter_rows_label_the_subjects():
    """A hierarchical posterior: the spreads and every subject's weights and biases follow the population's
    rows, named by the subject ids, without an EM value."""
    from bayes_glmhmm import BernoulliGLMHMMParams

    family = get_family("bernoulli")
    samples = {name: np.zeros((1, 3, *shape)) for name, shape in family.param_shapes(2, 1).items()}
    samples |= {
        "weight_spread": np.ones((1, 3, 2, 1)),
        "bias_spread": np.ones((1, 3, 2)),
        "subject_weights": np.zeros((1, 3, 2, 2, 1)),
        "subject_biases": np.zeros((1, 3, 2, 2)),
    }
    samples["subject_weights"][0, :, 1, 0, 0] = [1.0, 2.0, 6.0]  # mouse "m7", state 0, input "contrast"
    em = BernoulliGLMHMMParams(np.full(2, 0.5), np.full((2, 2), 0.5), np.full((2, 1), 0.25), np.zeros(2))
    rows = parameter_rows(samples, family, ["contrast"], point_estimate=em, subject_names=["m3", "m7"])
    labels = [row[0] for row in rows]
    pooled = [row[0] for row in parameter_rows({name: samples[name] for name in family.param_names}, family, ["c"])]
    assert len(labels) == len(pooled) + 2 + 2 + 4 + 4
    assert labels[len(pooled) :] == [
        "weight_spread[0, contrast]",
        "weight_spread[1, contrast]",
        "bias_spread[0]",
        "bias_spread[1]",
        "subject_weights[m3, 0, contrast]",
        "subject_weights[m3, 1, contrast]",
        "subject_weights[m7, 0, contrast]",
        "subject_weights[m7, 1, contrast]",
        "subject_biases[m3, 0]",
        "subject_biases[m3, 1]",
        "subject_biases[m7, 0]",
        "subject_biases[m7, 1]",
    ]
    row = rows[labels.index("subject_weights[m7, 0, contrast]")]
    assert row[1] == pytest.approx(3.0) and np.isnan(row[5])
    assert rows[labels.index("weight[1, contrast]")][5] == 0.25  # the population's EM value stays


def test_subjects_are_never_standardized(tmp_path):
    """standardize=True with a subject column is refused before the file is read; "auto" fits in the data's
    units, saying so where it would have standardized."""
    from bayes_glmhmm.csv_fit import _subjects_standardize, model_arrays

    path = tmp_path / "d.csv"
    path.write_text("m,x,y\na,100,1\na,350,0\nb,-200,1\nb,20,0\n")
    with pytest.raises(ValueError, match="^standardize: a fit across subjects is never standardized"):
        run_fit(tmp_path / "absent.csv", 2, "y", ["x"], "m", subject="m", standardize=True, family="bernoulli")
    data = read_fit_data(path, "y", ["x"], "m", family="bernoulli", subject="m")
    with pytest.warns(UserWarning, match="far from unit scale"):
        assert _subjects_standardize("auto", model_arrays(data), data.family) is False
    assert _subjects_standardize(False, model_arrays(data), data.family) is False


def test_read_fit_data_reads_transition_inputs(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("s,x,u,y\na,0.5,1,0\na,1.5,0,1\nb,2.5,1,1\nb,3.5,1,0\nb,0.1,0,1\n")
    data = read_fit_data(path, "y", ["x"], "s", family="bernoulli", transition_inputs=["u", "x"])
    assert data.table.transition_input_names == ["u", "x"]
    np.testing.assert_array_equal(data.table.transition_inputs[..., 0], [[1, 0, 0], [1, 1, 0]])  # a padded with 0
    np.testing.assert_array_equal(data.table.transition_inputs[1, :, 1], [2.5, 3.5, 0.1])
    path.write_text("x,u,y\n0.5,1,0\n1.5,,1\n2.5,1,1\n")
    with pytest.raises(ValueError, match="transition_inputs: column 'u' is missing a value at data row 2"):
        read_fit_data(path, "y", ["x"], family="bernoulli", transition_inputs=["u"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(transition_form="destination"), "transition_form applies only with transition_inputs"),
        (dict(transition_inputs=["x"], transition_form="diagonal"), "transition_form must be 'full' or 'destination'"),
        (dict(transition_inputs=["w"]), "transition_inputs: unknown column 'w'"),
    ],
)
def test_run_fit_checks_transition_arguments_before_fitting(tmp_path, kwargs, message):
    path = tmp_path / "d.csv"
    path.write_text("x,y\n0.5,1.0\n1.5,2.0\n2.5,0.5\n")
    with pytest.raises(ValueError, match=message):
        run_fit(path, 2, "y", ["x"], out=str(tmp_path / "out"), **kwargs)
    assert not (tmp_path / "out").exists()
