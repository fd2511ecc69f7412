"""fit_nuts's own steps: sampling until converged (``max_samples``)."""

import math
import warnings

import numpy as np
import pytest

from bayes_glmhmm import ConvergenceThresholds, fit_nuts
from bayes_glmhmm.fit import _next_round

THRESHOLDS = ConvergenceThresholds()


def _diagnostics(max_rhat=1.0, min_ess_bulk=1000.0, min_ess_tail=1000.0, num_draws=1000):
    return dict(max_rhat=max_rhat, min_ess_bulk=min_ess_bulk, min_ess_tail=min_ess_tail, num_draws=num_draws)


@pytest.mark.parametrize(
    ("diagnostics", "previous_rhat", "expected"),
    [
        (_diagnostics(), None, (0, "converged")),
        (_diagnostics(min_ess_bulk=250.0), None, (math.ceil(1000 * (1.1 * 400 / 250 - 1)), "")),  # 1.76x the draws
        (_diagnostics(min_ess_tail=380.0), None, (500, "")),  # a small shortfall: at least num_samples // 2
        (_diagnostics(max_rhat=1.05), None, (500, "")),  # R-hat alone: num_samples // 2
        (_diagnostics(min_ess_bulk=float("nan")), None, (1000, "")),  # unknown ESS: twice, at most doubling
        (_diagnostics(min_ess_bulk=40.0), None, (1000, "")),  # a 10x shortfall: at most doubling
        (_diagnostics(min_ess_bulk=40.0, num_draws=4500), None, (500, "")),  # capped at max_samples
        (_diagnostics(max_rhat=1.05, num_draws=5000), None, (0, "max_samples")),
        (_diagnostics(max_rhat=1.5, min_ess_bulk=7.0), 1.5, (0, "separate modes")),  # R-hat > 1.1, not falling
        (_diagnostics(max_rhat=1.528, min_ess_bulk=7.0), 1.533, (0, "separate modes")),  # a fall of 1% of 0.533
        (_diagnostics(max_rhat=1.5, min_ess_bulk=7.0), 1.6, (1000, "")),  # falling: the chains may yet meet
        (_diagnostics(max_rhat=1.5, min_ess_bulk=7.0), None, (1000, "")),  # first round: no trend yet
        (_diagnostics(max_rhat=1.08), 1.05, (500, "")),  # rising, but below 1.1: slow mixing, go on
    ],
    ids=[
        "converged",
        "ess-short",
        "ess-a-little",
        "rhat",
        "ess-nan",
        "at-most-doubling",
        "capped",
        "at-max",
        "separate-modes",
        "separate-modes-barely-falling",
        "rhat-falling",
        "first-round",
        "rhat-rising-below-1.1",
    ],
)
def test_next_round_scales_the_draws_by_the_ess_shortfall(diagnostics, previous_rhat, expected):
    """ESS grows in proportion to the draws: the next round asks for the shortfall with 10% to
    spare, never fewer than num_samples // 2, never more than the draws so far and never past
    max_samples (1000 and 5000 here); R-hat above 1.1 that a round did not bring down stops it."""
    extra, stopped = _next_round(diagnostics, previous_rhat, THRESHOLDS, num_samples=1000, max_samples=5000)
    assert extra == expected[0] and stopped.startswith(expected[1]) and bool(stopped) == bool(expected[1])


def test_next_round_ignores_an_ess_threshold_of_zero():
    diagnostics = _diagnostics(min_ess_bulk=float("nan"), min_ess_tail=float("nan"))
    thresholds = ConvergenceThresholds(min_ess_bulk=0, min_ess_tail=0)
    assert _next_round(diagnostics, None, thresholds, num_samples=1000, max_samples=5000) == (0, "converged")


@pytest.fixture(scope="module")
def sampled_until(small_article_data):
    """The small article data, 2 chains x (150 + 60), sampled on up to 240 draws under a bulk and
    tail ESS threshold of 2,000 that 2 x 240 draws cannot reach, and under lenient thresholds."""
    data = small_article_data

    def fit(convergence):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the strict fit's verdict is checked below
            return fit_nuts(
                data.inputs,
                data.emissions,
                3,
                num_chains=2,
                num_warmup=150,
                num_samples=60,
                max_samples=240,
                seed=2,
                progress_bar=False,
                convergence=convergence,
            )

    strict = fit({"min_ess_bulk": 2000, "min_ess_tail": 2000})
    lenient = fit({"min_ess_bulk": 20, "min_ess_tail": 20, "max_rhat": 1.5})
    return strict, lenient


def test_sampling_until_converged_runs_to_max_samples_and_records_its_rounds(sampled_until):
    """Unreachable thresholds: the chains go on in rounds up to max_samples, each round recorded;
    the last round's R-hat and ESS are the fit's own diagnostics (same draws, same relabeling), and
    the verdict still fails, loudly."""
    strict, _ = sampled_until
    rounds = strict.settings["sampling_rounds"]
    drawn = [entry["num_samples"] for entry in rounds]
    assert drawn[0] == 60 and drawn[-1] == 240 and drawn == sorted(set(drawn)) and len(drawn) >= 2
    assert strict.samples["weights"].shape[:2] == (2, 240) and strict.settings["num_samples"] == 240
    assert strict.settings["max_samples"] == 240
    diagnostics = strict.diagnostics()
    assert rounds[-1]["min_ess_bulk"] == pytest.approx(diagnostics["min_ess_bulk"], abs=0.1)
    assert rounds[-1]["max_rhat"] == pytest.approx(diagnostics["max_rhat"], abs=1e-4)
    assert not diagnostics["converged"] and rounds[-1]["stopped"] == "max_samples"
    assert any("bulk ESS" in problem for problem in diagnostics["problems"])


def test_sampling_until_converged_stops_once_the_thresholds_are_met(sampled_until):
    """Thresholds the first 60 draws meet: one round, no more draws, converged."""
    _, lenient = sampled_until
    assert [entry["num_samples"] for entry in lenient.settings["sampling_rounds"]] == [60]
    assert lenient.settings["sampling_rounds"][0]["stopped"] == "converged"
    assert lenient.samples["weights"].shape[:2] == (2, 60)
    assert lenient.diagnostics()["converged"]


def test_max_samples_below_num_samples_is_a_clear_error(small_article_data):
    data = small_article_data
    with pytest.raises(ValueError, match="max_samples must be an integer >= 60"):
        fit_nuts(data.inputs, data.emissions, 3, num_samples=60, max_samples=30)


def test_warmup_tree_depth_caps_only_the_warmup(small_article_data):
    """max_tree_depth=(1, 10): every warmup transition is one leapfrog step (a depth-1 tree), so each
    chain's warmup takes exactly num_warmup gradients; the draws' trees are free to depth 10 and
    are judged against 10, not 1. Fails if the pair is dropped (warmup trees grow deeper), or if
    its first depth caps the draws or the verdict (every draw "at the maximum depth")."""
    data = small_article_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 2 x 40 draws: the verdict is not the point here
        posterior = fit_nuts(
            data.inputs,
            data.emissions,
            3,
            num_chains=2,
            num_warmup=60,
            num_samples=40,
            seed=4,
            progress_bar=False,
            max_tree_depth=(1, 10),
        )
    assert posterior.settings["warmup_gradients"] == [60, 60]
    assert np.max(np.asarray(posterior.sample_stats["n_steps"])) > 1
    diagnostics = posterior.diagnostics()
    assert diagnostics["max_tree_depth"] == 10 and diagnostics["tree_depth_saturated"] == 0


@pytest.mark.parametrize("depth", [0, (5,), (5, 0), 5.5, True, "10", (6, 10, 12)])
def test_bad_max_tree_depth_is_a_clear_error(small_article_data, depth):
    data = small_article_data
    with pytest.raises(ValueError, match="max_tree_depth must be an integer >= 1 or a pair"):
        fit_nuts(data.inputs, data.emissions, 3, max_tree_depth=depth)
