"""Smoke tests of the figures: every function on small synthetic arrays, under the Agg backend."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from bayes_glmhmm import plots  # noqa: E402
from bayes_glmhmm.params import GLMHMMParams  # noqa: E402

NUM_STATES, NUM_CHAINS, NUM_DRAWS = 3, 2, 50


def _params(rng, num_states=NUM_STATES, input_dim=1):
    return GLMHMMParams(
        initial_probs=rng.dirichlet(np.ones(num_states)),
        transition_matrix=rng.dirichlet(np.ones(num_states), size=num_states),
        weights=rng.standard_normal((num_states, input_dim)),
        biases=rng.standard_normal(num_states),
        scales=rng.uniform(0.5, 1.5, num_states),
    )


def _samples(rng, num_states=NUM_STATES, input_dim=1, num_chains=NUM_CHAINS, num_draws=NUM_DRAWS):
    leading = (num_chains, num_draws)
    return {
        "initial_probs": rng.dirichlet(np.ones(num_states), size=leading),
        "transition_matrix": rng.dirichlet(np.ones(num_states), size=leading + (num_states,)),
        "weights": rng.standard_normal(leading + (num_states, input_dim)),
        "biases": rng.standard_normal(leading + (num_states,)),
        "scales": rng.uniform(0.5, 1.5, leading + (num_states,)),
    }


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _check(fig, tmp_path, num_axes, labelled=None, x_labelled=None):
    """The figure has ``num_axes`` axes and saves to a non-empty PNG.

    ``labelled`` axes (default: all) must have a y label and ``x_labelled`` axes (default: the
    labelled ones) an x label; axes stacked on a shared time axis are labelled only at the bottom.
    """
    assert isinstance(fig, Figure)
    assert len(fig.axes) == num_axes
    labelled = fig.axes if labelled is None else labelled
    for ax in labelled:
        assert ax.get_ylabel(), f"axes {ax.get_title()!r} has no y label"
    for ax in labelled if x_labelled is None else x_labelled:
        assert ax.get_xlabel(), f"axes {ax.get_title()!r} has no x label"
    path = tmp_path / "figure.png"
    fig.savefig(path, dpi=40)
    assert path.stat().st_size > 0
    plt.close(fig)


def test_state_colors_cycle_and_are_distinct():
    assert len(set(plots.state_colors(8))) == 8
    assert plots.state_colors(10)[8] == plots.state_colors(10)[0]


@pytest.mark.parametrize("input_shape", [(40,), (40, 1)])
def test_plot_article_data(rng, tmp_path, input_shape):
    inputs = rng.uniform(1, 10, input_shape)
    emissions = rng.standard_normal(40)
    states = rng.integers(0, NUM_STATES, 40)
    fig = plots.plot_article_data(inputs, emissions, states)
    _check(fig, tmp_path, 2, x_labelled=fig.axes[1:])
    assert fig.axes[1].get_xlabel() == "time step t"
    assert fig.axes[1].get_legend() is not None


def test_plot_article_data_without_states(rng, tmp_path):
    emissions = rng.standard_normal(30)
    emissions[5] = np.nan
    fig = plots.plot_article_data(rng.uniform(1, 10, 30), emissions)
    _check(fig, tmp_path, 2, x_labelled=fig.axes[1:])


def test_plot_article_data_rejects_mismatched_states(rng):
    with pytest.raises(ValueError, match="states"):
        plots.plot_article_data(np.ones(10), np.ones(10), np.zeros(9, int))


@pytest.mark.parametrize("with_states", [True, False])
def test_plot_scatter_by_state(rng, tmp_path, with_states):
    inputs = rng.uniform(1, 10, (3, 20, 1))
    emissions = rng.standard_normal((3, 20))
    states = rng.integers(0, NUM_STATES, (3, 20)) if with_states else None
    fig = plots.plot_scatter_by_state(inputs, emissions, states, params=_params(rng))
    _check(fig, tmp_path, 1)
    assert fig.axes[0].get_legend() is not None


def test_plot_scatter_by_state_several_inputs(rng, tmp_path):
    inputs = rng.uniform(1, 10, (2, 15, 2))
    emissions = rng.standard_normal((2, 15))
    _check(plots.plot_scatter_by_state(inputs, emissions, rng.integers(0, 2, (2, 15))), tmp_path, 2)


@pytest.mark.parametrize(
    ("with_truth", "with_map", "num_axes"), [(True, True, 4), (True, False, 3), (False, True, 3), (False, False, 2)]
)
def test_plot_states(rng, tmp_path, with_truth, with_map, num_axes):
    num_timesteps = 30
    probabilities = rng.dirichlet(np.ones(NUM_STATES), size=num_timesteps)
    fig = plots.plot_states(
        rng.standard_normal(num_timesteps),
        rng.integers(0, NUM_STATES, num_timesteps) if with_truth else None,
        probabilities,
        map_states=probabilities.argmax(axis=1) if with_map else None,
        sequence_label="sequence 0",
    )
    assert fig.axes[-1].get_xlabel() == "time step t"
    _check(fig, tmp_path, num_axes, x_labelled=fig.axes[-1:])
    assert "sequence 0" in fig.get_suptitle()


def test_plot_states_rejects_wrong_probability_shape(rng):
    with pytest.raises(ValueError, match="state_probabilities"):
        plots.plot_states(np.zeros(10), None, np.full((9, 2), 0.5))


@pytest.mark.parametrize("with_references", [True, False])
def test_plot_parameter_posteriors(rng, tmp_path, with_references):
    samples = _samples(rng)
    references = (_params(rng), _params(rng)) if with_references else (None, None)
    fig = plots.plot_parameter_posteriors(samples, *references)
    _check(fig, tmp_path, 5)
    titles = [ax.get_title() for ax in fig.axes]
    assert any("transition" in title for title in titles)
    assert fig.axes[-1].get_xticklabels()[1].get_text() == "0→1"


def test_plot_parameter_posteriors_partial_and_multi_input(rng, tmp_path):
    samples = _samples(rng, num_states=2, input_dim=2)
    del samples["initial_probs"], samples["transition_matrix"]
    fig = plots.plot_parameter_posteriors(samples, true_params=_params(rng, num_states=2, input_dim=2))
    _check(fig, tmp_path, 3)
    assert len(fig.axes[0].get_xticks()) == 4  # K * D weights


def test_plot_parameter_posteriors_rejects_misshaped_truth(rng):
    with pytest.raises(ValueError, match="weights"):
        plots.plot_parameter_posteriors(_samples(rng), true_params=_params(rng, input_dim=2))


def test_plot_transition_matrices(rng, tmp_path):
    matrices = {
        "truth": rng.dirichlet(np.ones(NUM_STATES), size=NUM_STATES),
        "EM": rng.dirichlet(np.ones(NUM_STATES), size=NUM_STATES),
        "posterior mean": rng.dirichlet(np.ones(NUM_STATES), size=NUM_STATES),
    }
    spreads = {"posterior mean": np.full((NUM_STATES, NUM_STATES), 0.05)}
    fig = plots.plot_transition_matrices(matrices, spreads)
    _check(fig, tmp_path, 4, labelled=fig.axes[:3])  # three heatmaps and a colour bar
    annotations = [text.get_text() for text in fig.axes[2].texts]
    assert len(annotations) == NUM_STATES**2
    assert all("±" in text for text in annotations)
    assert not any("±" in text.get_text() for text in fig.axes[0].texts)
    images = [ax.get_images()[0] for ax in fig.axes[:3]]
    assert all(image.get_clim() == (0.0, 1.0) for image in images)


def test_plot_transition_matrices_rejects_unknown_spread(rng):
    with pytest.raises(ValueError, match="spreads"):
        plots.plot_transition_matrices({"truth": np.eye(2)}, {"EM": np.zeros((2, 2))})


def test_plot_trace(rng, tmp_path):
    samples = _samples(rng)
    fig = plots.plot_trace(samples, var_names=["weights", "scales"])
    # Pairs of (histogram, trace) in one column; x labels on the bottom pair only.
    _check(fig, tmp_path, 2 * 2 * NUM_STATES, x_labelled=fig.axes[-2:])


def test_plot_trace_caps_elements(rng, tmp_path):
    samples = _samples(rng, num_states=4)  # 4 + 16 + 4 + 4 + 4 = 32 elements
    fig = plots.plot_trace(samples, max_elements=10)
    assert "first 10 of 32" in fig.get_suptitle()
    _check(fig, tmp_path, 20, x_labelled=[])


def test_plot_trace_rejects_unknown_variable(rng):
    with pytest.raises(ValueError, match="var_names"):
        plots.plot_trace(_samples(rng), var_names=["nope"])


def test_plot_lp_by_chain_marks_stuck_chain(rng, tmp_path):
    lp = -100 + rng.standard_normal((4, NUM_DRAWS))
    lp[1] -= 50
    fig = plots.plot_lp_by_chain(lp)
    assert "[1]" in fig.get_suptitle()
    _check(fig, tmp_path, 2)


def test_plot_lp_by_chain_with_given_stuck_chains(rng, tmp_path):
    lp = -100 + rng.standard_normal((3, NUM_DRAWS))
    fig = plots.plot_lp_by_chain(lp, stuck_chains=[2])
    assert "[2]" in fig.get_suptitle()
    _check(fig, tmp_path, 2)


@pytest.mark.parametrize(
    "log_probs",
    [
        -100 + np.cumsum(np.exp(-np.arange(20.0))),
        np.array([-10.0]),
        np.array([[-10.0, -5.0, -6.0, np.nan], [-12.0, -8.0, -7.5, -7.4]]),
    ],
    ids=["converging", "one-iteration", "restarts-with-decrease"],
)
def test_plot_em_log_probs(tmp_path, log_probs):
    _check(plots.plot_em_log_probs(log_probs), tmp_path, 2)
