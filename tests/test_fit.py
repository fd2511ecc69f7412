"""fit_nuts's own steps: sampling until converged (``max_samples``)."""

import math
import warnings

import pytest

from bayes_glmhmm import ConvergenceThresholds, fit_nuts
from bayes_glmhmm.fit import _draws_to_add

THRESHOLDS = ConvergenceThresholds()


def _diagnostics(max_rhat=1.0, min_ess_bulk=1000.0, min_ess_tail=1000.0, num_draws=1000):
    return dict(max_rhat=max_rhat, min_ess_bulk=min_ess_bulk, min_ess_tail=min_ess_tail, num_draws=num_draws)


@pytest.mark.parametrize(
    ("diagnostics", "expected"),
    [
        (_diagnostics(), 0),  # converged: stop
        (_diagnostics(min_ess_bulk=200.0), math.ceil(1000 * (1.1 * 2 - 1))),  # half the ESS: 2.2x the draws
        (_diagnostics(min_ess_tail=380.0), 500),  # a small shortfall: at least num_samples // 2
        (_diagnostics(max_rhat=1.05), 500),  # R-hat alone: num_samples // 2
        (_diagnostics(min_ess_bulk=float("nan")), math.ceil(1000 * (1.1 * 2 - 1))),  # unknown ESS: twice
        (_diagnostics(min_ess_bulk=40.0), 5000 - 1000),  # capped at max_samples
        (_diagnostics(max_rhat=1.05, num_draws=5000), 0),  # max_samples reached
    ],
    ids=["converged", "ess-half", "ess-short", "rhat", "ess-nan", "capped", "at-max"],
)
def test_draws_to_add_scales_the_draws_by_the_ess_shortfall(diagnostics, expected):
    """ESS grows in proportion to the draws: the next round asks for the shortfall with 10% to
    spare, never fewer than num_samples // 2 and never past max_samples (1000 and 5000 here)."""
    assert _draws_to_add(diagnostics, THRESHOLDS, num_samples=1000, max_samples=5000) == expected


def test_draws_to_add_ignores_an_ess_threshold_of_zero():
    diagnostics = _diagnostics(min_ess_bulk=float("nan"), min_ess_tail=float("nan"))
    thresholds = ConvergenceThresholds(min_ess_bulk=0, min_ess_tail=0)
    assert _draws_to_add(diagnostics, thresholds, num_samples=1000, max_samples=5000) == 0


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
    assert not diagnostics["converged"]
    assert any("bulk ESS" in problem for problem in diagnostics["problems"])


def test_sampling_until_converged_stops_once_the_thresholds_are_met(sampled_until):
    """Thresholds the first 60 draws meet: one round, no more draws, converged."""
    _, lenient = sampled_until
    assert [entry["num_samples"] for entry in lenient.settings["sampling_rounds"]] == [60]
    assert lenient.samples["weights"].shape[:2] == (2, 60)
    assert lenient.diagnostics()["converged"]


def test_max_samples_below_num_samples_is_a_clear_error(small_article_data):
    data = small_article_data
    with pytest.raises(ValueError, match="max_samples must be an integer >= 60"):
        fit_nuts(data.inputs, data.emissions, 3, num_samples=60, max_samples=30)
