import base64
import csv
import dataclasses
import html
import importlib.util
import json
import os
import re
import shutil
from pathlib import Path

import arviz as az
import numpy as np
import pytest
from _family_posteriors import random_posterior, short_fit

from bayes_glmhmm.cli import main
from bayes_glmhmm.convert import write_netcdf_atomic
from bayes_glmhmm.hierarchy import Subjects
from bayes_glmhmm.relabel import invert_permutation, relabel_draws, relabel_samples
from bayes_glmhmm.report import (
    _data_rows,
    _input_labelled,
    _input_names,
    _relabeling,
    _state_probabilities,
    fit_verdict,
    report_checks,
    write_report,
)

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def posterior_file(small_posterior, tmp_path_factory):
    path = tmp_path_factory.mktemp("posterior") / "posterior.nc"
    write_netcdf_atomic(small_posterior.to_arviz(), path)
    return path


@pytest.fixture(scope="module")
def report(posterior_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return write_report(posterior_file, out)


def test_report_writes_every_file(report):
    for key in ("html", "markdown", "summary_csv", "energy", "trace", "rank", "state_probabilities", "emission_curves"):
        assert os.path.getsize(report[key]) > 0, key
    folder = os.path.dirname(report["html"])
    assert not [name for name in os.listdir(folder) if name.startswith(".tmp-")]


def test_html_is_self_contained(report):
    text = Path(report["html"]).read_text(encoding="utf-8")
    references = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert references
    assert all(ref.startswith(("data:image/png;base64,", "#")) for ref in references), references
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    figure_keys = [key for key in report if key not in ("html", "markdown", "summary_csv")]
    assert len(images) == len(figure_keys)
    for encoded in images:
        assert base64.b64decode(encoded).startswith(b"\x89PNG")
    for heading in ("Convergence checks", "Summary table", "Relabeling", "Posterior state probabilities"):
        assert heading in text


def test_markdown_references_its_figures(report):
    text = Path(report["markdown"]).read_text(encoding="utf-8")
    folder = os.path.dirname(report["markdown"])
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert linked
    for path in linked:
        assert os.path.isfile(os.path.join(folder, path)), path
    assert "| check | value | threshold | result | detail |" in text


def test_summary_csv_has_every_parameter(report):
    with open(report["summary_csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 + 9 + 3 + 3 + 3
    assert {"r_hat", "ess_bulk", "ess_tail"} <= set(rows[0])


def test_checks_flag_a_chain_in_another_place(posterior_file):
    idata = az.from_netcdf(posterior_file)
    assert {check["check"].split(" (")[0]: check for check in report_checks(idata)}["stuck chains"]["passed"]
    shifted = idata.copy()
    shifted.posterior["weights"].values[1] += 1.0
    shifted.posterior.attrs["stuck_chains"] = "[1]"
    checks = {check["check"].split(" (")[0]: check for check in report_checks(shifted)}
    assert not checks["R-hat"]["passed"]
    assert not checks["stuck chains"]["passed"]
    assert checks["divergent transitions"]["threshold"] == "≤ 0"


def test_flagged_cells_are_marked_in_html_and_markdown(posterior_file, tmp_path):
    idata = az.from_netcdf(posterior_file)
    idata.posterior["weights"].values[1] += 1.0
    # Padded sequences carry NaN state probabilities after their end (and in sequence 0 here).
    idata.posterior_states["state_probabilities"].values[:2, 40:] = np.nan
    paths = write_report(idata, tmp_path, title="shifted")
    text = Path(paths["html"]).read_text(encoding="utf-8")
    assert "Do not trust this posterior yet" in text
    # The fit's own verdict opens the page: a red box, before the contents, naming the R-hat problem.
    problems = fit_verdict(idata)["problems"]
    assert problems[0].startswith("max R-hat")
    box = text[text.index('<div class="fit-verdict not-converged"') : text.index("<nav>")]
    assert text.index("<h1>") < text.index(box)
    for problem in problems:
        assert f"<li>{html.escape(problem)}</li>" in box
    assert 'class="fit-verdict converged"' not in text
    markdown = Path(paths["markdown"]).read_text(encoding="utf-8")
    assert markdown.index("> ⚠ **NOT CONVERGED") < markdown.index("## Overview")
    assert all(f"> - {problem}" in markdown for problem in problems)
    assert text.count('class="right flag"') >= 3  # the three weights' R-hat at least
    assert "(!)**" in markdown
    assert "| 1 | 40 |" in markdown  # sequence 1 counts only its 40 valid steps


def test_the_report_opens_with_the_fits_own_verdict(report, posterior_file, small_posterior):
    """The box is the verdict Posterior.diagnostics gives (under the thresholds the fit recorded)."""
    idata = az.from_netcdf(posterior_file)
    verdict = fit_verdict(idata)
    diagnostics = small_posterior.diagnostics()
    assert (verdict["converged"], verdict["problems"]) == (diagnostics["converged"], diagnostics["problems"])
    assert verdict["thresholds"].as_dict() == small_posterior.settings["convergence_thresholds"]
    text = Path(report["html"]).read_text(encoding="utf-8")
    assert ('class="fit-verdict not-converged"' in text) == (not verdict["converged"])
    assert all(html.escape(problem) in text for problem in verdict["problems"])
    # Thresholds recorded in the file move the verdict, as they do for the fit.
    lenient = {"max_rhat": 10.0, "min_ess_bulk": 0, "min_ess_tail": 0}
    settings = json.loads(idata.posterior.attrs["settings"]) | {"convergence_thresholds": lenient}
    idata.posterior.attrs["settings"] = json.dumps(settings)
    assert fit_verdict(idata)["converged"]


def test_the_verdict_is_a_plain_line_when_converged():
    from bayes_glmhmm import ConvergenceThresholds
    from bayes_glmhmm.report import _verdict_html, _verdict_markdown

    converged = {"converged": True, "problems": [], "thresholds": ConvergenceThresholds()}
    line = _verdict_html(converged)
    assert line.startswith('<p class="fit-verdict converged">') and "not-converged" not in line
    assert "R-hat ≤ 1.01, bulk ESS ≥ 400, tail ESS ≥ 400" in line
    assert _verdict_markdown(converged)[0].startswith("✔ **Converged**")
    problems = ["min bulk ESS 13 < 400: too few <draws>"]
    box = _verdict_html({"converged": False, "problems": problems, "thresholds": ConvergenceThresholds()})
    assert box.startswith('<div class="fit-verdict not-converged" role="alert">')
    assert "<li>min bulk ESS 13 &lt; 400: too few &lt;draws&gt;</li>" in box
    # Red: the box's style is a red border and a red-tinted background.
    from bayes_glmhmm.report import _CSS

    style = _CSS[_CSS.index(".fit-verdict.not-converged {") :].split("}")[0]
    assert "border: 2px solid #c00000" in style and "background: #fde2e2" in style


def test_raw_draws_are_recovered_from_the_stored_permutations(rng):
    """relabel_draws(relabeled, inverse(perm)) gives back exactly what the sampler produced."""
    raw = {
        "weights": rng.normal(size=(2, 40, 3, 1)),
        "biases": rng.normal(size=(2, 40, 3)),
        "scales": rng.uniform(0.5, 2.0, size=(2, 40, 3)),
        "initial_probs": rng.dirichlet(np.ones(3), size=(2, 40)),
        "transition_matrix": rng.dirichlet(np.ones(3), size=(2, 40, 3)),
    }
    result = relabel_samples(raw)
    assert (result.permutations != np.arange(3)).any()
    back = relabel_draws(result.samples, invert_permutation(result.permutations))
    for name, value in raw.items():
        np.testing.assert_array_equal(back[name], value)


def test_relabeling_section_sees_a_permuted_chain(posterior_file):
    idata = az.from_netcdf(posterior_file)
    idata.sample_stats["relabel_permutation"].values[1] = [1, 2, 0]  # chain 1 was sampled in other labels
    relabeling = _relabeling(idata)
    assert relabeling["per_chain"][1]["modal_permutation"] == [1, 2, 0]
    assert relabeling["per_chain"][1]["draws_relabeled"] == 1.0
    assert relabeling["per_chain"][1]["draws_off_modal"] == 0.0
    assert relabeling["max_rhat_raw"] > 1.5 > 1.1 > relabeling["max_rhat_relabeled"]
    np.testing.assert_array_equal(
        relabeling["raw_samples"]["biases"][1], idata.posterior["biases"].values[1][:, [2, 0, 1]]
    )


def test_state_probabilities_are_recomputed_when_not_stored(posterior_file, small_posterior):
    idata = az.from_netcdf(posterior_file)
    stored = _state_probabilities(idata)
    without = az.InferenceData(**{group: idata[group] for group in idata.groups() if group != "posterior_states"})
    np.testing.assert_allclose(_state_probabilities(without), stored, atol=1e-5)
    assert stored.shape == small_posterior.emissions.shape + (3,)


def test_cli_report(posterior_file, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["report", str(posterior_file), "--out", str(out)]) == 0
    assert (out / "report.html").stat().st_size > 0
    assert "report.html" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "missing.nc")]) == 2


@pytest.mark.skipif(
    not any(shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")),
    reason="no headless browser installed",
)
def test_report_renders_in_a_headless_browser(report, tmp_path):
    spec = importlib.util.spec_from_file_location(
        "report_screenshot", os.path.join(REPOSITORY, "benchmarks", "report_screenshot.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    png = module.screenshot(report["html"], str(tmp_path / "shot.png"), width=1200, height=2000)
    from matplotlib.image import imread

    image = imread(png)
    assert image.shape[:2] == (2000, 1200)
    # Rendered, not blank: the page has text, tables and figures, so many distinct pixel values.
    assert len(np.unique(image[..., :3].reshape(-1, 3), axis=0)) > 50


# --- every family -------------------------------------------------------------------------------

INPUT_NAMES = ["contrast", "previous choice"]


@pytest.fixture(scope="module", params=["bernoulli", "categorical"])
def family_report(request, tmp_path_factory):
    """The report of a short fit of a non-Gaussian family, read back from netCDF (the categorical with input names)."""
    posterior = short_fit(request.param)
    idata = posterior.to_arviz()
    if posterior.family.num_classes is not None:
        idata.posterior.attrs["input_names"] = json.dumps(INPUT_NAMES)
    path = tmp_path_factory.mktemp(f"posterior-{request.param}") / "posterior.nc"
    write_netcdf_atomic(idata, path)
    return posterior, path, write_report(path, tmp_path_factory.mktemp(f"report-{request.param}"))


def test_report_of_a_family_names_it(family_report):
    posterior, _, paths = family_report
    family = posterior.family
    markdown = Path(paths["markdown"]).read_text(encoding="utf-8")
    html_text = Path(paths["html"]).read_text(encoding="utf-8")
    assert f"| emission family | {family.name} |" in markdown
    assert f"<td>emission family</td><td>{family.name}</td>" in html_text
    per_class = family.num_classes is not None
    assert ("class 0 is the reference" in markdown) == per_class
    assert ("| classes C | 3;" in markdown) == per_class
    assert ("| inputs | contrast, previous choice |" in markdown) == per_class
    assert "## Emission curves" in markdown and os.path.getsize(paths["emission_curves"]) > 0
    for key in ("energy", "trace", "rank", "trace_before_relabeling", "parameters", "state_probabilities"):
        assert os.path.getsize(paths[key]) > 0, key


def test_report_tables_iterate_the_family_parameters(family_report):
    posterior, _, paths = family_report
    with open(paths["summary_csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    shapes = posterior.family.param_shapes(posterior.num_states, posterior.inputs.shape[-1])
    assert len(rows) == sum(int(np.prod(shape)) for shape in shapes.values())
    assert sorted({row[""].split("[")[0] for row in rows}) == sorted(posterior.param_names)
    assert not any(row[""].startswith("scales") for row in rows)


def test_report_checks_apply_to_every_family(family_report):
    """The checks cover every element of the family's parameters, with the Gaussian's thresholds.

    One element of the last weights (the categorical's last class) is shifted far in chain 1: it
    must become the worst R-hat, named by its coordinates (for the categorical, classes count from 1).
    """
    posterior, path, _ = family_report
    idata = az.from_netcdf(path)
    checks = {check["check"].split(" (")[0]: check for check in report_checks(idata)}
    assert checks["R-hat"]["threshold"] == "≤ 1.01"
    assert checks["bulk ESS"]["threshold"].startswith("≥ 200 ")  # 100 per chain, 2 chains
    num_elements = sum(int(np.prod(shape)) for shape in posterior.family.param_shapes(2, 2).values())
    assert f"of {num_elements} elements above" in checks["R-hat"]["detail"]
    shifted = idata.copy()
    last = (1, slice(None)) + tuple(size - 1 for size in shifted.posterior["weights"].shape[2:])
    shifted.posterior["weights"].values[last] += 100.0
    rhat = {check["check"].split(" (")[0]: check for check in report_checks(shifted)}["R-hat"]
    coordinates = ", ".join(
        str(shifted.posterior["weights"].coords[dim].values[-1]) for dim in posterior.family.param_dims()["weights"]
    )
    assert not rhat["passed"] and rhat["detail"].endswith(f"worst weights[{coordinates}]")
    relabeling = _relabeling(idata)
    assert np.isfinite(relabeling["max_rhat_relabeled"])


# --- input-driven transitions ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def transition_report(tmp_path_factory):
    """The report of a posterior with input-driven transitions on two named transition inputs, from netCDF."""
    from _transition_posteriors import random_transition_posterior

    from bayes_glmhmm.convert import to_inference_data

    posterior = random_transition_posterior()
    idata = to_inference_data(posterior, transition_input_names=["rewarded", "drift"])
    path = tmp_path_factory.mktemp("posterior-transitions") / "posterior.nc"
    write_netcdf_atomic(idata, path)
    return posterior, path, write_report(path, tmp_path_factory.mktemp("report-transitions"))


def test_report_shows_the_transition_weights_and_figures(transition_report):
    """The section's table holds V[i, j, m] for i != j: posterior mean and central 90% interval of the draws."""
    posterior, path, paths = transition_report
    markdown = Path(paths["markdown"]).read_text(encoding="utf-8")
    html_text = Path(paths["html"]).read_text(encoding="utf-8")
    assert "## Input-driven transitions" in markdown and "Input-driven transitions</h2>" in html_text
    assert "| transitions | input-driven (full) on rewarded, drift |" in markdown
    for m in range(2):
        assert os.path.getsize(paths[f"transition_probabilities_{m}"]) > 0
        assert f"figures/transition_probabilities_{m}.png" in markdown
    weights = posterior.samples["transition_weights"].reshape(-1, 2, 2, 2).astype(float)
    for (i, j), m in zip([(0, 1), (1, 0)] * 2, [0, 0, 1, 1], strict=True):
        draws = weights[:, i, j, m]
        lower, upper = np.quantile(draws, [0.05, 0.95])
        excludes = "yes" if lower > 0 or upper < 0 else "no"
        name = ["rewarded", "drift"][m]
        row = f"| {i} → {j} | {name} | {draws.mean():.3f} | {lower:.3f} | {upper:.3f} | {excludes} |"
        assert row in markdown, row
    assert "| 0 → 0 |" not in markdown  # V[i, i] = 0 is no parameter
    with open(paths["summary_csv"], newline="") as handle:
        names = [row[""] for row in csv.DictReader(handle)]
    assert "transition_weights[1, 0, drift]" in names


def test_stationary_report_has_no_transition_section(report):
    markdown = Path(report["markdown"]).read_text(encoding="utf-8")
    assert "## Input-driven transitions" not in markdown and "| transitions | stationary |" in markdown
    assert not [key for key in report if key.startswith("transition_probabilities")]


# --- subjects ---------------------------------------------------------------------------------------

#: Three subjects' state means, (S, K, D + 1): weights (D = 2) then bias, the two states of each subject 6 to
#: 16 posterior sds (0.25) apart.
SUBJECT_STATE_MEANS = np.array(
    [
        [[2.0, 0.5, 1.0], [-1.0, 0.0, -1.0]],
        [[1.5, 1.0, 0.5], [-0.5, -0.5, -1.5]],
        [[2.5, 0.0, 1.0], [-1.5, 0.5, -0.5]],
    ]
)


def _swapped_subject_posterior(num_chains: int = 4, num_draws: int = 300):
    """A hierarchical Gaussian posterior of random draws (no sampler), one sequence per subject, in which
    chain 3 holds subject "mouse_b"'s two states the other way round from chain 0 (the reference chain:
    every chain's log density is 0, so the first has the best median)."""
    rng = np.random.default_rng(1)
    posterior = random_posterior("gaussian", num_chains, num_draws)
    draws = SUBJECT_STATE_MEANS + 0.25 * rng.standard_normal((num_chains, num_draws, *SUBJECT_STATE_MEANS.shape))
    draws[3, :, 1] = draws[3, :, 1, ::-1]
    weights, biases = posterior.samples["weights"], posterior.samples["biases"]
    return dataclasses.replace(
        posterior,
        samples=posterior.samples
        | {
            "weight_spread": (0.5 + 0.05 * np.abs(rng.standard_normal(weights.shape))).astype(np.float32),
            "bias_spread": (0.5 + 0.05 * np.abs(rng.standard_normal(biases.shape))).astype(np.float32),
            "subject_weights": draws[..., :2].astype(np.float32),
            "subject_biases": draws[..., 2].astype(np.float32),
        },
        subjects=Subjects(np.arange(3, dtype=np.int32), ("mouse_a", "mouse_b", "mouse_c")),
    )


@pytest.fixture(scope="module")
def subject_file(tmp_path_factory):
    """The swapped-subject posterior and its netCDF file."""
    posterior = _swapped_subject_posterior()
    path = tmp_path_factory.mktemp("posterior-subjects") / "posterior.nc"
    write_netcdf_atomic(posterior.to_arviz(include_states=False, prior_draws=0), path)
    return posterior, path


def test_the_reports_verdict_across_subjects_is_the_posteriors(subject_file, tmp_path):
    """The box judges the subjects' parameters and their label swaps, named by the subjects' ids, as
    Posterior.diagnostics does; so does a tempered fit's ladder, which the fit's settings record."""
    posterior, path = subject_file
    idata = az.from_netcdf(path)
    diagnostics = posterior.diagnostics()
    verdict = fit_verdict(idata)
    assert (verdict["converged"], verdict["problems"]) == (False, diagnostics["problems"])
    assert verdict["thresholds"].as_dict() == diagnostics["thresholds"]
    # Chain 3's subject mouse_b sits far from the other chains': an R-hat the population's draws do not have.
    assert verdict["problems"][0].startswith("max R-hat")
    (swapped,) = [problem for problem in verdict["problems"] if "which of a subject's states is which" in problem]
    assert "subject 'mouse_b' (chain 3's states 1, 0 are chain 0's 0, 1)" in swapped
    rhat = {check["check"].split(" (")[0]: check for check in report_checks(idata)}["R-hat"]
    assert not rhat["passed"] and "worst subject_weights[mouse_b, " in rhat["detail"]

    paths = write_report(idata, tmp_path / "report")
    box = Path(paths["html"]).read_text(encoding="utf-8").split('<div class="fit-verdict not-converged"')[1]
    assert f"<li>{html.escape(swapped)}</li>" in box.split("</div>")[0]
    assert f"> - {swapped}" in Path(paths["markdown"]).read_text(encoding="utf-8")

    tempered = {**posterior.settings, "tempering": {"swap_acceptance": [0.5, 0.01]}}
    idata.posterior.attrs["settings"] = json.dumps(tempered)
    ladder = dataclasses.replace(posterior, settings=tempered).diagnostics()["problems"]
    assert any(problem.startswith("the tempering ladder has gaps") for problem in ladder)
    assert fit_verdict(idata)["problems"] == ladder


def test_a_file_without_a_fit_to_rebuild_has_no_verdict_box(rng, tmp_path):
    """Draws without sampler statistics are no fit whose verdict could be given: the report's own checks
    stay, the fit's box goes, and fit_verdict says what is missing."""
    idata = _padded_idata(rng)
    text = Path(write_report(idata, tmp_path)["html"]).read_text(encoding="utf-8")
    assert 'class="fit-verdict' not in text and "Convergence checks" in text
    with pytest.raises(ValueError, match="lacks the 'sample_stats' group"):
        fit_verdict(idata)


# --- choosing the number of states ----------------------------------------------------------------


@pytest.fixture(scope="module")
def selection_report(posterior_file, tmp_path_factory):
    """The report of the posterior with a selection.json beside it (the hand-made selection, no fit)."""
    from _selections import synthetic_selection

    from bayes_glmhmm.selection_io import write_selection

    folder = tmp_path_factory.mktemp("fit-with-selection")
    shutil.copy(posterior_file, folder / "posterior.nc")
    write_selection(synthetic_selection("loo"), folder)
    return write_report(folder / "posterior.nc", tmp_path_factory.mktemp("report-selection"))


def test_report_shows_the_selection_beside_the_posterior(selection_report):
    from _selections import synthetic_selection

    from bayes_glmhmm.selection_io import summary_table

    markdown = Path(selection_report["markdown"]).read_text(encoding="utf-8")
    html_text = Path(selection_report["html"]).read_text(encoding="utf-8")
    assert "## Choosing the number of states" in markdown
    assert 'id="choosing-the-number-of-states">Choosing the number of states</h2>' in html_text
    section = markdown.split("## Choosing the number of states")[1]
    expected = summary_table(synthetic_selection("loo"))
    assert "| " + " | ".join(expected.header) + " |" in section
    assert "| 2 | Bayes | -480.5 ± 18.2 | 2.5 ± 3.0 | 0.1234 ± 0.0123 |" in section
    (row_of_3,) = [line for line in section.splitlines() if line.startswith("| 3 |")]
    assert row_of_3.endswith("| **1.200 (!)** |")  # the R-hat above 1.01, flagged
    assert (
        "Chosen: K = 2 by the Bayesian score (posterior predictive, PSIS-LOO over sequences) and K = 3 by EM" in section
    )
    assert "Rule one_se: the smallest K whose elpd is within one standard error" in section
    assert "The posterior of this report has K = 3 states." in section
    assert "![Held-out prediction against the number of states](figures/selection.png)" in section
    assert Path(selection_report["selection"]).read_bytes().startswith(b"\x89PNG")
    assert html_text.count('<figure id="fig-selection">') == 1


def test_report_without_a_selection_has_no_such_section(report):
    markdown = Path(report["markdown"]).read_text(encoding="utf-8")
    assert "Choosing the number of states" not in markdown and "selection" not in report


def test_cli_report_with_a_selection_option(posterior_file, tmp_path, capsys):
    from _selections import synthetic_selection

    from bayes_glmhmm.selection_io import write_selection

    write_selection(synthetic_selection("kfold"), tmp_path / "chosen")
    out = tmp_path / "report"
    code = main(
        ["report", str(posterior_file), "--out", str(out), "--selection", str(tmp_path / "chosen/selection.json")]
    )
    assert code == 0
    assert "with the choice of the number of states" in capsys.readouterr().out
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "## Choosing the number of states" in markdown and "3-fold CV over sequences" in markdown
    assert (out / "figures" / "selection.png").stat().st_size > 0
    assert main(["report", str(posterior_file), "--selection", str(tmp_path / "missing.json")]) == 2
    assert "--selection: no such file" in capsys.readouterr().err
    (tmp_path / "other.json").write_text('{"best": 2}')
    assert main(["report", str(posterior_file), "--out", str(out), "--selection", str(tmp_path / "other.json")]) == 2
    assert "is not a selection.json written by bayes_glmhmm" in capsys.readouterr().err


# --- the data's size, and inputs named by their columns -------------------------------------------------


def _padded_idata(rng, with_lengths=True, with_predictive=True):
    """3 sequences of 6, 4 and 5 steps padded to 6, two inputs; targets missing at (0, 2) and (1, 1)."""
    lengths = np.array([6, 4, 5])
    valid = np.arange(6)[None, :] < lengths[:, None]
    mask = valid.copy()
    mask[0, 2] = mask[1, 1] = False
    observed = np.where(mask, rng.normal(size=(3, 6)), np.nan)
    predictive = np.where(valid, rng.normal(size=(2, 5, 3, 6)), np.nan)  # padding blanked, missing steps not
    constant_data = {"inputs": rng.normal(size=(3, 6, 2)), "mask": mask.astype(np.int8)}
    if with_lengths:
        constant_data["lengths"] = lengths
    return az.from_dict(
        posterior={
            "weights": rng.normal(size=(2, 5, 2, 2)) * np.array([1.0, 1000.0]),
            "biases": rng.normal(size=(2, 5, 2)),
        },
        posterior_predictive={"emissions": predictive} if with_predictive else None,
        observed_data={"emissions": observed},
        constant_data=constant_data,
        dims={"weights": ["state", "input"], "biases": ["state"], "inputs": ["sequence", "time", "input"]},
    )


@pytest.mark.parametrize("with_lengths", [True, False])
def test_overview_states_rows_lengths_and_missing_targets_apart_from_padding(rng, with_lengths):
    """15 rows in sequences of 6, 4 and 5 steps, 2 targets missing, 3 padding steps: from the stored
    lengths, or (files written before them) from the predictive draws, which are NaN exactly at padding."""
    rows = dict(_data_rows(_padded_idata(rng, with_lengths=with_lengths)))
    assert rows["data"] == "15 rows (time steps) in 3 sequences, 2 inputs"
    assert rows["sequence lengths"] == "min 4, median 5, max 6 steps"
    assert rows["missing targets"].startswith("2 of 15 rows")
    assert rows["padding"].startswith("3 steps after the ends")


def test_overview_without_lengths_or_predictive_says_padding_is_unknown(rng):
    rows = dict(_data_rows(_padded_idata(rng, with_lengths=False, with_predictive=False)))
    assert rows["data"] == "3 sequences of at most 6 steps, 2 inputs (lengths not recorded)"
    assert rows["missing targets or padding"] == 5
    assert "padding" not in rows


def test_input_names_from_a_json_list_or_comma_joined(rng):
    idata = _padded_idata(rng)
    assert _input_names(idata) is None
    idata.posterior.attrs["input_names"] = json.dumps(["speed, km/h", "mass"])
    assert _input_names(idata) == ["speed, km/h", "mass"]
    idata.posterior.attrs["input_names"] = "speed,mass"  # as bayes-glmhmm fit wrote it before
    assert _input_names(idata) == ["speed", "mass"]
    idata.posterior.attrs["input_names"] = "3,mass"
    assert _input_names(idata) == ["3", "mass"]


def test_trace_draws_name_the_inputs_and_split_them_when_compact(rng):
    """Compact traces draw a variable's elements on one axes: there the weights of each input become a
    variable of their own (inputs have their own units); otherwise the input coordinate takes the names."""
    idata = _padded_idata(rng)
    labelled = _input_labelled(idata, ["weights", "biases"], ["speed", "mass"], split=False)
    assert list(labelled.posterior["weights"].coords["input"].values) == ["speed", "mass"]
    split = _input_labelled(idata, ["weights", "biases"], ["speed", "mass"], split=True)
    assert list(split.posterior.data_vars) == ["weights: speed", "weights: mass", "biases"]
    np.testing.assert_array_equal(split.posterior["weights: mass"].values, idata.posterior["weights"].values[..., 1])
    unnamed = _input_labelled(idata, ["weights", "biases"], None, split=True)
    assert list(unnamed.posterior.data_vars) == ["weights: 0", "weights: 1", "biases"]


def test_report_of_a_posterior_with_a_frozen_chain_renders_without_warnings(tmp_path):
    """A chain that never moved (every draw equal, as a 30-draw categorical test fit once gave) must not
    break the report: ArviZ's density warning on constant draws is an error under this suite's filters."""
    posterior = random_posterior("bernoulli", num_chains=2, num_draws=30)
    frozen = {name: value.copy() for name, value in posterior.samples.items()}
    for value in frozen.values():
        value[0] = value[0, :1]  # chain 0: its first draw, 30 times
    posterior = dataclasses.replace(posterior, samples=frozen)
    path = tmp_path / "posterior.nc"
    write_netcdf_atomic(posterior.to_arviz(), path)
    paths = write_report(path, tmp_path / "report")
    assert os.path.getsize(paths["trace"]) > 0
