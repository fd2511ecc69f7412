"""The convergence verdict: thresholds, the numbers, the sentences, and the one warning a fit issues.

The pure check runs on constructed diagnostics and constructed draws whose R-hat and ESS are known
(independent draws, AR(1) chains, a shifted chain); the fits are few and small (the small article
data of conftest.py): one that converges under the default thresholds, the same compiled sampler
under stricter thresholds, and one with deliberately few draws.
"""

import dataclasses
import warnings

import arviz as az
import numpy as np
import pytest

import bayes_glmhmm
from bayes_glmhmm import ConvergenceThresholds, ConvergenceWarning, Posterior, Priors, fit_nuts
from bayes_glmhmm.convergence import (
    convergence_message,
    convergence_problems,
    sampler_diagnostics,
    warn_if_not_converged,
)
from bayes_glmhmm.convert import posterior_from_inference_data, write_netcdf_atomic
from bayes_glmhmm.hierarchy import Subjects
from bayes_glmhmm.mcmc import PARAM_NAMES
from bayes_glmhmm.subject_swaps import SubjectLabelSwap, subject_label_swaps

#: A posterior that passes every check, as the numbers of sampler_diagnostics.
HEALTHY = {
    "max_rhat": 1.004,
    "min_ess_bulk": 812.0,
    "min_ess_tail": 655.0,
    "divergences": 0,
    "tree_depth_saturated": 0,
    "max_tree_depth": 10,
    "num_chains": 4,
    "num_draws": 1000,
    "stuck_chains": [],
    "stuck_threshold": 5.0,
    "stuck_gaps": [],
    "dropped_stuck_chains": [],
}


def _caught(function, *args, **kwargs):
    """(result, [ConvergenceWarning messages]) of a call, whatever the warning filters say."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = function(*args, **kwargs)
    return result, [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]


# --- thresholds ---------------------------------------------------------------------------------


def test_thresholds_defaults_validation_and_records():
    default = ConvergenceThresholds()
    assert default.as_dict() == {
        "max_rhat": 1.01,
        "min_ess_bulk": 400.0,
        "min_ess_tail": 400.0,
        "max_divergences": 0,
        "max_tree_depth_fraction": 0.0,
    }
    assert ConvergenceThresholds.from_value(None) == default
    assert ConvergenceThresholds.from_value({"min_ess_bulk": 1000}) == dataclasses.replace(default, min_ess_bulk=1000)
    assert ConvergenceThresholds.from_settings({"convergence_thresholds": {"max_rhat": 1.05}}).max_rhat == 1.05
    assert ConvergenceThresholds.from_settings({}) == default  # files written before the verdict existed
    for bad, field in (
        (dict(max_rhat=0.99), "max_rhat"),
        (dict(max_rhat=float("nan")), "max_rhat"),
        (dict(min_ess_bulk=-1), "min_ess_bulk"),
        (dict(min_ess_tail="400"), "min_ess_tail"),
        (dict(max_divergences=True), "max_divergences"),
        (dict(max_tree_depth_fraction=1.5), "max_tree_depth_fraction"),
    ):
        with pytest.raises(ValueError, match=field):
            ConvergenceThresholds(**bad)
    with pytest.raises(ValueError, match="unknown fields"):
        ConvergenceThresholds.from_value({"min_ess": 400})
    with pytest.raises(ValueError, match="convergence"):
        ConvergenceThresholds.from_value(400)
    with pytest.raises(dataclasses.FrozenInstanceError):
        default.max_rhat = 2.0
    assert "R-hat ≤ 1.01" in default.describe() and "no stuck chain" in default.describe()


def test_the_package_exports_the_warning():
    assert issubclass(bayes_glmhmm.ConvergenceWarning, UserWarning)
    assert {"ConvergenceWarning", "ConvergenceThresholds"} <= set(bayes_glmhmm.__all__)


# --- the sentences ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, []),
        ({"max_rhat": 1.24}, ["max R-hat 1.240 > 1.01: the chains disagree"]),
        ({"max_rhat": 1.01, "min_ess_bulk": 400.0, "min_ess_tail": 400.0}, []),  # thresholds are inclusive
        ({"max_rhat": float("nan"), "num_chains": 1}, []),  # one chain: R-hat is undefined, not a problem
        ({"max_rhat": float("nan"), "num_chains": 1, "min_ess_bulk": 90.0}, ["min bulk ESS 90 < 400"]),
        ({"min_ess_bulk": 13.2}, ["min bulk ESS 13 < 400"]),
        ({"min_ess_tail": 399.0}, ["min tail ESS 399 < 400"]),
        ({"min_ess_tail": float("nan"), "num_draws": 3}, ["the tail ESS could not be computed from 4 x 3 draws"]),
        ({"divergences": 2}, ["2 of 4000 transitions diverged"]),
        ({"tree_depth_saturated": 480}, ["12% of transitions (480 of 4000) hit the maximum tree depth 10"]),
        (
            {"stuck_chains": [2], "stuck_gaps": [15.04]},
            [
                "chain(s) [2] look stuck in an inferior mode: median log density 15.0 nats below the best chain's "
                "(threshold 5.0)"
            ],
        ),
        ({"dropped_stuck_chains": [1]}, ["chain(s) [1] were stuck in an inferior mode and were dropped"]),
        # 1000 draws: a pair needs acceptance >= 0.04 (20 expected crossings); pairs 1-2 and 2-3 fall short.
        (
            {"swap_acceptance": [0.3, 0.039, 0.001, 0.04]},
            ["the tempering ladder has gaps: states rarely move between rungs 1-2 (0.039), 2-3 (0.001)"],
        ),
        ({"swap_acceptance": [0.3, 0.04]}, []),
        (
            {"max_rhat": 1.3, "min_ess_bulk": 20.0, "divergences": 1, "stuck_chains": [0], "stuck_gaps": [40.0]},
            ["max R-hat 1.300", "min bulk ESS 20", "1 of 4000 transitions diverged", "chain(s) [0] look stuck"],
        ),
    ],
    ids=[
        "healthy",
        "rhat",
        "at-thresholds",
        "one-chain",
        "one-chain-low-ess",
        "bulk-ess",
        "tail-ess",
        "ess-not-computable",
        "divergences",
        "tree-depth",
        "stuck",
        "dropped",
        "ladder-gaps",
        "ladder-without-gaps",
        "several-in-order",
    ],
)
def test_problems_of_constructed_diagnostics(changes, expected):
    problems = convergence_problems(HEALTHY | changes)
    assert len(problems) == len(expected), problems
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start), (problem, start)


def test_thresholds_move_the_verdict():
    unhealthy = HEALTHY | {"max_rhat": 1.03, "min_ess_bulk": 150.0, "divergences": 3, "tree_depth_saturated": 40}
    assert len(convergence_problems(unhealthy)) == 4
    lenient = ConvergenceThresholds(
        max_rhat=1.05, min_ess_bulk=100, max_divergences=3, max_tree_depth_fraction=0.01
    )  # 40 of 4000 transitions = 1%: at the threshold
    assert convergence_problems(unhealthy, lenient) == []
    strict = ConvergenceThresholds(min_ess_bulk=1000, min_ess_tail=1000)
    assert [p.split(":")[0] for p in convergence_problems(HEALTHY, strict)] == [
        "min bulk ESS 812 < 1000",
        "min tail ESS 655 < 1000",
    ]
    # A zero ESS threshold switches the check off, even when ESS cannot be computed.
    off = ConvergenceThresholds(min_ess_bulk=0, min_ess_tail=0)
    assert convergence_problems(HEALTHY | {"min_ess_bulk": float("nan"), "min_ess_tail": float("nan")}, off) == []


# --- the numbers ----------------------------------------------------------------------------------


def _ar1_chains(rng, rho: float, num_chains: int = 4, num_draws: int = 1000) -> np.ndarray:
    """Stationary AR(1) chains x_t = rho x_{t-1} + sqrt(1 - rho^2) e_t: ESS = N (1 - rho) / (1 + rho)."""
    noise = rng.standard_normal((num_chains, num_draws))
    chains = np.empty_like(noise)
    chains[:, 0] = noise[:, 0]
    for t in range(1, num_draws):
        chains[:, t] = rho * chains[:, t - 1] + np.sqrt(1 - rho**2) * noise[:, t]
    return chains


def test_sampler_diagnostics_against_known_chains(rng):
    """Independent draws: ESS ~ the number of draws and R-hat ~ 1; AR(1) with rho = 0.9: ESS ~ 4000 x 0.1 / 1.9
    = 211 (tolerance 30%, the estimator's error at this length is ~10%); a chain shifted by one sd: R-hat far
    above 1.01. A constant element (e.g. a transition weight's zero diagonal) is left out, not NaN-poisoning."""
    independent = rng.standard_normal((4, 1000, 3))
    numbers = sampler_diagnostics({"a": independent, "constant": np.zeros((4, 1000, 2))})
    assert numbers["max_rhat"] < 1.01
    assert 0.6 * 4000 < numbers["min_ess_bulk"] and 0.6 * 4000 < numbers["min_ess_tail"]
    assert (numbers["num_chains"], numbers["num_draws"]) == (4, 1000)
    alone = sampler_diagnostics({"a": independent})
    assert [alone[key] for key in ("max_rhat", "min_ess_bulk", "min_ess_tail")] == [
        numbers[key] for key in ("max_rhat", "min_ess_bulk", "min_ess_tail")
    ]
    assert convergence_problems(numbers) == []

    correlated = sampler_diagnostics({"a": _ar1_chains(rng, 0.9)})
    assert correlated["min_ess_bulk"] == pytest.approx(4000 * 0.1 / 1.9, rel=0.3)
    assert f"min bulk ESS {correlated['min_ess_bulk']:.0f} < 400" in "".join(convergence_problems(correlated))

    shifted = independent.copy()
    shifted[3] += 1.0
    numbers = sampler_diagnostics({"a": shifted})
    assert numbers["max_rhat"] > 1.05
    assert convergence_problems(numbers)[0].startswith("max R-hat")

    one_chain = sampler_diagnostics({"a": independent[:1]})
    assert np.isnan(one_chain["max_rhat"]) and one_chain["min_ess_bulk"] > 500
    assert convergence_problems(one_chain) == []


def test_sampler_statistics_are_counted(rng):
    """Divergences, transitions at the maximum tree depth (depth >= max, as Stan counts) and how far each
    stuck chain's median log density lies below the best chain's."""
    draws = {"a": rng.standard_normal((4, 1000))}
    depth = np.full((4, 1000), 3)
    depth[0, :300] = 10
    depth[2, :180] = 10
    diverging = np.zeros((4, 1000), bool)
    diverging[1, [5, 900]] = True
    lp = rng.standard_normal((4, 1000))
    lp[2] -= 40.0
    numbers = sampler_diagnostics(
        draws,
        {"tree_depth": depth, "diverging": diverging, "lp": lp},
        max_tree_depth=10,
        stuck_chains=[2],
        stuck_threshold=5.0,
    )
    assert numbers["divergences"] == 2
    assert numbers["tree_depth_saturated"] == 480
    # A warmup depth of its own, (warmup, sampling), as a pair or as read back from a file: the
    # draws are judged against the sampling depth (depth 3 everywhere else would all count at 3).
    for pair in [(3, 10), [3, 10]]:
        judged = sampler_diagnostics(draws, {"tree_depth": depth}, max_tree_depth=pair)
        assert judged["tree_depth_saturated"] == 480 and judged["max_tree_depth"] == 10
    assert numbers["stuck_gaps"] == [pytest.approx(float(np.median(lp, axis=1).max() - np.median(lp[2])))]
    problems = convergence_problems(numbers)
    assert [problem.split(":")[0] for problem in problems] == [
        "2 of 4000 transitions diverged",
        "12% of transitions (480 of 4000) hit the maximum tree depth 10",
        "chain(s) [2] look stuck in an inferior mode",
    ]
    # Without the maximum depth the saturation cannot be judged, and is not invented.
    assert sampler_diagnostics(draws, {"tree_depth": depth})["tree_depth_saturated"] == 0


# --- the warning --------------------------------------------------------------------------------


def test_one_warning_lists_every_problem_and_points_at_the_caller():
    problems = convergence_problems(HEALTHY | {"max_rhat": 1.2, "divergences": 2})
    _, messages = _caught(warn_if_not_converged, problems)
    assert messages == [convergence_message(problems)]
    assert messages[0].splitlines() == ["the posterior has not converged (2 problems):"] + [f"- {p}" for p in problems]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_if_not_converged(problems, stacklevel=1)
    assert caught[0].filename == __file__
    assert _caught(warn_if_not_converged, [])[1] == []


# --- Posterior.diagnostics ------------------------------------------------------------------------


def _random_posterior(rng, sample_stats: dict, settings: dict, stuck_chains=()) -> Posterior:
    """A Posterior of 4 chains x 1000 independent draws (R-hat and ESS pass) with the given sampler statistics."""
    shapes = {"initial_probs": (3,), "transition_matrix": (3, 3), "weights": (3, 1), "biases": (3,), "scales": (3,)}
    samples = {name: rng.standard_normal((4, 1000) + shapes[name]) for name in PARAM_NAMES}
    return Posterior(
        samples=samples,
        permutations=np.broadcast_to(np.arange(3), (4, 1000, 3)).copy(),
        sample_stats={"lp": rng.standard_normal((4, 1000)), **sample_stats},
        inputs=np.zeros((1, 5, 1)),
        emissions=np.zeros((1, 5)),
        mask=np.ones((1, 5), bool),
        num_states=3,
        priors=Priors(),
        stuck_chains=list(stuck_chains),
        stuck_threshold=5.0,
        settings=settings,
    )


def test_diagnostics_give_the_verdict_of_constructed_sampler_statistics(rng):
    depth = np.full((4, 1000), 4)
    depth[:, :30] = 8  # 3% of the transitions at the maximum depth 8
    diverging = np.zeros((4, 1000), bool)
    diverging[3, 7] = True
    healthy = _random_posterior(
        rng, {"tree_depth": depth.clip(max=7), "diverging": np.zeros((4, 1000), bool)}, {"max_tree_depth": 8}
    )
    diagnostics = healthy.diagnostics()
    assert diagnostics["converged"] and diagnostics["problems"] == []
    assert diagnostics["thresholds"] == ConvergenceThresholds().as_dict()

    posterior = _random_posterior(rng, {"tree_depth": depth, "diverging": diverging}, {"max_tree_depth": 8})
    diagnostics = posterior.diagnostics()
    assert not diagnostics["converged"]
    assert [problem.split(":")[0] for problem in diagnostics["problems"]] == [
        "1 of 4000 transitions diverged",
        "3% of transitions (120 of 4000) hit the maximum tree depth 8",
    ]
    assert diagnostics["tree_depth_saturated"] == 120 and diagnostics["divergences"] == 1
    # Thresholds: those the fit recorded, or given; the verdict follows them.
    lenient = {"max_divergences": 1, "max_tree_depth_fraction": 0.05}
    recorded = dataclasses.replace(posterior, settings={"max_tree_depth": 8, "convergence_thresholds": lenient})
    assert recorded.diagnostics()["converged"]
    assert recorded.diagnostics()["thresholds"] == ConvergenceThresholds(**lenient).as_dict()
    assert not recorded.diagnostics(ConvergenceThresholds())["converged"]


def test_a_dropped_stuck_chain_stays_in_the_verdict(rng):
    """Dropping a stuck chain keeps the fact (settings["dropped_stuck_chains"]); a stuck chain that is kept
    keeps its flag under its new index when another chain is dropped."""
    posterior = _random_posterior(rng, {}, {}, stuck_chains=[1, 3])
    posterior.sample_stats["lp"][[1, 3]] -= 50.0
    assert posterior.diagnostics()["problems"][0].startswith("chain(s) [1, 3] look stuck")
    dropped = posterior.drop_chains([0, 1])
    assert dropped.num_chains == 2 and dropped.stuck_chains == [1]  # chain 3 is now chain 1
    assert dropped.settings["dropped_chains"] == [0, 1] and dropped.settings["dropped_stuck_chains"] == [1]
    problems = dropped.diagnostics()["problems"]
    assert [problem.split(":")[0].split(" in an")[0] for problem in problems] == [
        "chain(s) [1] look stuck",
        "chain(s) [1] were stuck",
    ]
    both = posterior.drop_chains(posterior.stuck_chains)
    assert both.stuck_chains == [] and not both.diagnostics()["converged"]


# --- within-subject label swaps ------------------------------------------------------------------

#: Three subjects' state means, (S, K, D + 1): weights (D = 2) then bias; states 4 to 8 posterior sds apart
#: (sd 0.25), except subject 2, whose two states overlap (0.1 sd apart in each coefficient).
SUBJECT_STATE_MEANS = np.array(
    [
        [[1.0, -1.0, 0.0], [-1.0, 0.5, 1.0]],
        [[0.5, 0.5, -1.0], [2.0, -0.5, 0.0]],
        [[0.3, 0.3, 0.3], [0.325, 0.325, 0.325]],
    ]
)


def _subject_draws(rng, num_chains=4, num_draws=400, sd=0.25, chain_offsets=0.0):
    """(subject_weights, subject_biases): independent Normal draws around SUBJECT_STATE_MEANS, every chain
    in the same labeling; ``chain_offsets`` (posterior sds) moves each chain's means by its own random offset."""
    offsets = chain_offsets * rng.standard_normal((num_chains, 1, *SUBJECT_STATE_MEANS.shape))
    means = SUBJECT_STATE_MEANS + sd * offsets
    draws = means + sd * rng.standard_normal((num_chains, num_draws, *SUBJECT_STATE_MEANS.shape))
    return draws[..., :2], draws[..., 2]


def test_a_swap_inside_one_subject_of_one_chain_is_found(rng):
    """Chain 2 holds subject 1's two states the other way round (relabeling by the population cannot see
    it): that subject and that chain, and nothing else, with the identity many sds off and the swap not."""
    weights, biases = _subject_draws(rng)
    assert subject_label_swaps(weights, biases) == []
    weights[2, :, 1] = weights[2, :, 1, ::-1]
    biases[2, :, 1] = biases[2, :, 1, ::-1]
    swaps = subject_label_swaps(weights, biases)
    assert [swap[:4] for swap in swaps] == [(1, 2, 0, (1, 0))]
    assert swaps[0].identity_distance > 10 and swaps[0].matched_distance < 1
    # Against chain 2 as the reference, the other three chains are the ones the other way round.
    assert [swap[:4] for swap in subject_label_swaps(weights, biases, reference_chain=2)] == [
        (1, 0, 2, (1, 0)),
        (1, 1, 2, (1, 0)),
        (1, 3, 2, (1, 0)),
    ]
    # One chain: nothing to compare.
    assert subject_label_swaps(weights[2:3], biases[2:3]) == []


def test_a_three_state_cycle_is_found_and_named_by_its_permutation(rng):
    """K = 3, weights with an extra axis (as the categorical family's): chain 1's states (1, 2, 0) are the
    reference's (0, 1, 2)."""
    state_means = np.array([[-2.0, 0.0, 1.0], [0.0, 2.0, -1.0], [2.0, -2.0, 0.0]])  # (K, E), sd 0.3
    draws = state_means + 0.3 * rng.standard_normal((2, 300, 2, 3, 3))  # (chain, draw, S, K, E)
    draws[1, :, 0] = draws[1, :, 0][:, [2, 0, 1]]
    swaps = subject_label_swaps(draws[..., None, :2], draws[..., 2])
    assert swaps == [SubjectLabelSwap(0, 1, 0, (1, 2, 0), swaps[0].identity_distance, swaps[0].matched_distance)]


@pytest.mark.parametrize("case", ["overlapping states swapped", "noisy chains", "shifted chain"])
def test_agreeing_or_unidentified_subjects_are_not_called_swapped(rng, case):
    """No report where a swap is not the explanation. Subject 2's overlapping states (0.1 sd apart) swapped in
    one chain of 4,000 draws each: the swap matches better than the identity, but both are a fraction of a
    posterior sd (the subject's states are not identified, and its chains agree). Chains whose means wander
    by 0.5 sd each (short, poorly mixed chains). One chain 3 sds off in every coefficient: a different mode
    that no relabeling explains, R-hat's business, not this check's."""
    if case == "overlapping states swapped":
        weights, biases = _subject_draws(rng, num_draws=4000)  # so long that a relabeling would fit better
        weights[1, :, 2] = weights[1, :, 2, ::-1]
        biases[1, :, 2] = biases[1, :, 2, ::-1]
    elif case == "noisy chains":
        weights, biases = _subject_draws(rng, num_draws=50, chain_offsets=0.5)
    else:
        weights, biases = _subject_draws(rng)
        weights[3] += 3 * 0.25
        biases[3] += 3 * 0.25
    assert subject_label_swaps(weights, biases) == []


def test_a_swapped_subject_is_one_named_sentence_of_the_verdict(rng, tmp_path):
    """Posterior.diagnostics names the subject by its id, the chains and the states, says what to do, and
    fails the verdict; dropping the disagreeing chain passes it; the netCDF round trip keeps the verdict."""
    posterior = _random_posterior(rng, {}, {})
    weights, biases = _subject_draws(rng, num_draws=1000)
    weights[3, :, 1] = weights[3, :, 1, ::-1]
    biases[3, :, 1] = biases[3, :, 1, ::-1]
    posterior.sample_stats["lp"][0] += 1.0  # chain 0 has the best median log density: the reference
    posterior = dataclasses.replace(
        posterior,
        # Population and spreads of the right shapes: K = 3 in _random_posterior, the subjects' 2 states
        # joined by a third, far from both and the same in every chain.
        samples=posterior.samples
        | {
            "weights": posterior.samples["weights"][..., :1].repeat(2, axis=-1),
            "weight_spread": np.ones((4, 1000, 3, 2)),
            "bias_spread": np.ones((4, 1000, 3)),
            "subject_weights": np.concatenate([weights, 10 + rng.standard_normal(weights[:, :, :, :1].shape)], axis=3),
            "subject_biases": np.concatenate([biases, 10 + rng.standard_normal(biases[:, :, :, :1].shape)], axis=3),
        },
        inputs=np.zeros((3, 5, 2)),
        emissions=np.zeros((3, 5)),
        mask=np.ones((3, 5), bool),
        subjects=Subjects(np.arange(3, dtype=np.int32), ("mouse_a", "mouse_b", "mouse_c")),
    )
    diagnostics = posterior.diagnostics()
    assert not diagnostics["converged"]
    assert [(swap["subject"], swap["chain"], swap["permutation"]) for swap in diagnostics["subject_label_swaps"]] == [
        ("mouse_b", 3, [1, 0, 2])
    ]
    swapped = [problem for problem in diagnostics["problems"] if "which of a subject's states is which" in problem]
    assert len(swapped) == 1
    assert "subject 'mouse_b' (chain 3's states 1, 0 are chain 0's 0, 1)" in swapped[0]
    assert "relabeling" in swapped[0] and "Posterior.drop_chains" in swapped[0]
    kept = posterior.drop_chains([3]).diagnostics()
    assert kept["subject_label_swaps"] == [] and kept["converged"], kept["problems"]
    assert posterior.drop_chains([0, 1, 2]).diagnostics()["subject_label_swaps"] == []  # one chain: not judged

    path = write_netcdf_atomic(posterior.to_arviz(include_states=False, prior_draws=0), tmp_path / "swap.nc")
    rebuilt = posterior_from_inference_data(az.from_netcdf(path))
    assert rebuilt.diagnostics()["problems"] == diagnostics["problems"]


# --- fits -----------------------------------------------------------------------------------------

#: Enough draws on the small article data (4 x 60 steps, K = 3) for every parameter's bulk and tail ESS to
#: pass 400 from 2 chains.
CONVERGING = dict(num_chains=2, num_warmup=300, num_samples=1000, seed=3, progress_bar=False)


@pytest.fixture(scope="module")
def converged_fit(small_article_data):
    data = small_article_data
    return _caught(fit_nuts, data.inputs, data.emissions, 3, **CONVERGING)


def test_a_fit_that_converges_issues_no_warning_and_says_so(converged_fit):
    posterior, messages = converged_fit
    assert messages == []
    diagnostics = posterior.diagnostics()
    assert diagnostics["converged"] and diagnostics["problems"] == [], diagnostics
    assert diagnostics["max_rhat"] <= 1.01 and min(diagnostics["min_ess_bulk"], diagnostics["min_ess_tail"]) >= 400
    assert posterior.settings["convergence_thresholds"] == ConvergenceThresholds().as_dict()


def test_the_same_fit_under_stricter_thresholds_warns_once(converged_fit, small_article_data, tmp_path):
    """The thresholds reach the verdict, are recorded, and survive the netCDF round trip."""
    data = small_article_data
    reference, _ = converged_fit
    strict = {"min_ess_bulk": 50_000}
    posterior, messages = _caught(fit_nuts, data.inputs, data.emissions, 3, convergence=strict, **CONVERGING)
    np.testing.assert_array_equal(posterior.samples["weights"], reference.samples["weights"])  # same draws
    assert len(messages) == 1
    problems = posterior.diagnostics()["problems"]
    assert messages[0] == convergence_message(problems)
    expected = f"min bulk ESS {reference.diagnostics()['min_ess_bulk']:.0f} < 50000"
    assert [problem.split(":")[0] for problem in problems] == [expected]
    assert posterior.settings["convergence_thresholds"]["min_ess_bulk"] == 50_000
    assert posterior.diagnostics(ConvergenceThresholds())["converged"]
    path = write_netcdf_atomic(posterior.to_arviz(include_states=False), tmp_path / "posterior.nc")
    rebuilt = posterior_from_inference_data(az.from_netcdf(path))
    assert rebuilt.diagnostics()["problems"] == problems
    with pytest.raises(ValueError, match="min_ess_bulk"):
        fit_nuts(data.inputs, data.emissions, 3, convergence={"min_ess_bulk": -1})


FEW_DRAWS = dict(num_chains=2, num_warmup=40, num_samples=40, em_restarts=2, seed=0, progress_bar=False)


def test_a_fit_with_too_few_draws_warns(small_article_data):
    data = small_article_data
    posterior, messages = _caught(fit_nuts, data.inputs, data.emissions, 3, **FEW_DRAWS)
    diagnostics = posterior.diagnostics()
    assert diagnostics["min_ess_bulk"] < 400  # 80 draws cannot give 400 (ArviZ caps ESS at N log10 N = 152)
    assert not diagnostics["converged"]
    assert messages == [convergence_message(diagnostics["problems"])]
    assert any(problem.startswith("min bulk ESS") for problem in diagnostics["problems"])


def test_a_stuck_chain_is_one_sentence_of_the_one_warning(small_article_data, monkeypatch):
    """The stuck-chain report and the verdict are one warning; on_stuck='drop' still names the chain and
    on_stuck='raise' raises before any warning. (Chain 1 is flagged by a stand-in detector: a real stuck
    chain needs a long fit, see test_mcmc.test_chain_started_in_merged_mode_is_detected.)"""
    import bayes_glmhmm.fit as fit_module

    monkeypatch.setattr(fit_module, "detect_stuck_chains", lambda lp: ([1], 5.0))
    data = small_article_data
    kept, messages = _caught(fit_nuts, data.inputs, data.emissions, 3, **FEW_DRAWS)
    assert kept.stuck_chains == [1] and len(messages) == 1
    assert "- chain(s) [1] look stuck in an inferior mode" in messages[0]
    assert "- min bulk ESS" in messages[0]

    dropped, messages = _caught(fit_nuts, data.inputs, data.emissions, 3, on_stuck="drop", **FEW_DRAWS)
    assert dropped.num_chains == 1 and len(messages) == 1
    assert "- chain(s) [1] were stuck in an inferior mode and were dropped" in messages[0]
    assert not dropped.diagnostics()["converged"]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError, match=r"chain\(s\) \[1\] look stuck"):
            fit_nuts(data.inputs, data.emissions, 3, on_stuck="raise", **FEW_DRAWS)
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]
