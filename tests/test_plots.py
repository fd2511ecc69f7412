"""Tests of the figures under the Agg backend: every function on small synthetic arrays, and the
emission curves of every family against an independent NumPy computation from the draws."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _family_posteriors import NUM_CLASSES, family_data, random_posterior, short_fit  # noqa: E402
from _selections import synthetic_selection  # noqa: E402
from _transition_posteriors import random_transition_posterior  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from bayes_glmhmm import plots  # noqa: E402
from bayes_glmhmm.params import CategoricalGLMHMMParams, GLMHMMParams  # noqa: E402

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


def test_plot_states_is_titled_for_what_it_shows(rng):
    """Without the truth the figure shows inferred states only, and its title must not promise a truth."""
    probabilities = rng.dirichlet(np.ones(NUM_STATES), size=20)
    emissions = rng.standard_normal(20)
    without = plots.plot_states(emissions, None, probabilities, sequence_label="sequence s1")
    assert without.get_suptitle() == "Inferred states: sequence s1"
    with_truth = plots.plot_states(emissions, rng.integers(0, NUM_STATES, 20), probabilities)
    assert with_truth.get_suptitle() == "True and inferred states"
    plt.close(without)
    plt.close(with_truth)


def _padded_sequences(rng, lengths, num_states=NUM_STATES):
    """(N, T) emissions and (N, T, K) probabilities, NaN past each length (padding) and at step 3 of sequence 0."""
    lengths = np.asarray(lengths)
    num_timesteps = int(lengths.max())
    emissions = rng.standard_normal((len(lengths), num_timesteps))
    probabilities = rng.dirichlet(np.ones(num_states), size=(len(lengths), num_timesteps))
    padding = np.arange(num_timesteps)[None, :] >= lengths[:, None]
    emissions[padding] = np.nan
    probabilities[padding] = np.nan
    emissions[0, 3] = np.nan  # a missing target, not padding
    return emissions, probabilities


def test_plot_state_sequences_draws_several_sequences_each_on_its_own_time_axis(rng, tmp_path):
    """The first six of eight sequences of very different lengths: two axes each, each spanning its own
    sequence's steps only (padding never drawn), titled by the sequence's name, its length and missing count."""
    lengths = [30, 2000, 12, 400, 25, 60, 70, 80]
    emissions, probabilities = _padded_sequences(rng, lengths)
    labels = [f"session s{n}" for n in range(len(lengths))]
    fig = plots.plot_state_sequences(
        emissions, probabilities, lengths=lengths, sequence_labels=labels, emission_label="colour"
    )
    assert fig.get_suptitle().startswith("Inferred states")
    assert "first 6 of 8 sequences" in fig.get_suptitle()
    emission_axes, probability_axes = fig.axes[0::2], fig.axes[1::2]
    assert [ax.get_title(loc="left") for ax in emission_axes] == [
        "session s0: 30 steps, 1 missing",
        "session s1: 2000 steps",
        "session s2: 12 steps",
        "session s3: 400 steps",
        "session s4: 25 steps",
        "session s5: 60 steps",
    ]
    for ax, probability_ax, length in zip(emission_axes, probability_axes, lengths, strict=False):
        assert ax.get_ylabel() == "colour"
        assert probability_ax.get_xlim() == (-0.5, length - 0.5)
        assert max(np.max(line.get_xdata()) for line in ax.get_lines()) == length - 1
    _check(fig, tmp_path, 12, x_labelled=fig.axes[-1:])


def test_plot_state_sequences_all_sequences_with_the_truth(rng, tmp_path):
    """Fewer sequences than the cap: all drawn, no note; the true states add a band per sequence."""
    lengths = [15, 40]
    emissions, probabilities = _padded_sequences(rng, lengths)
    fig = plots.plot_state_sequences(
        emissions, probabilities, lengths=lengths, true_states=rng.integers(0, NUM_STATES, emissions.shape)
    )
    assert fig.get_suptitle().startswith("True and inferred states")
    assert "first" not in fig.get_suptitle()
    assert [ax.get_ylabel() for ax in fig.axes[1::3]] == ["true", "true"]
    _check(fig, tmp_path, 6, x_labelled=fig.axes[-1:])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lengths": [10, 0]}, "lengths must lie in 1..10"),
        ({"lengths": [10, 11]}, "lengths must lie in 1..10"),
        ({"lengths": [10]}, "lengths must be"),
        ({"sequence_labels": ["a"]}, "sequence_labels has 1 names"),
        ({"max_sequences": 0}, "max_sequences"),
        ({"state_probabilities": np.full((2, 9, 3), 1 / 3)}, "state_probabilities"),
        ({"true_states": np.zeros((2, 9), int)}, "true_states"),
    ],
)
def test_plot_state_sequences_rejects_bad_arguments(kwargs, message):
    arguments = {"emissions": np.zeros((2, 10)), "state_probabilities": np.full((2, 10, 3), 1 / 3), **kwargs}
    with pytest.raises(ValueError, match=message):
        plots.plot_state_sequences(**arguments)


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
    samples["weights"][..., 1] *= 1000.0  # an input in other units: its weights must not squash the others
    del samples["initial_probs"], samples["transition_matrix"]
    fig = plots.plot_parameter_posteriors(
        samples, true_params=_params(rng, num_states=2, input_dim=2), input_names=["speed", "mass"]
    )
    _check(fig, tmp_path, 4)  # the weights of each input on an axis of its own, biases, scales
    assert [ax.get_title() for ax in fig.axes[:2]] == ["weights $w_k$: speed", "weights $w_k$: mass"]
    assert all(len(ax.get_xticks()) == 2 for ax in fig.axes[:2])  # K weights per input
    # Each weights axis spans its own input's draws: the small ones are not squashed to a line.
    for ax, d in zip(fig.axes[:2], range(2), strict=True):
        low, high = ax.get_ylim()
        spread = np.ptp(samples["weights"][..., d])
        assert spread / 2 < high - low < 3 * spread


def test_plot_parameter_posteriors_categorical_labels(rng, tmp_path):
    """Categorical weights (K, C - 1, D): one axis per input, entries per (state, class), classes from 1."""
    num_states, num_classes, input_dim = 2, 3, 2
    lead = (NUM_CHAINS, NUM_DRAWS)
    samples = {
        "initial_probs": rng.dirichlet(np.ones(num_states), size=lead),
        "transition_matrix": rng.dirichlet(np.ones(num_states), size=lead + (num_states,)),
        "weights": rng.standard_normal(lead + (num_states, num_classes - 1, input_dim)),
        "biases": rng.standard_normal(lead + (num_states, num_classes - 1)),
    }
    truth = CategoricalGLMHMMParams(*(value[0, 0] for value in samples.values()))
    fig = plots.plot_parameter_posteriors(samples, true_params=truth, input_names=["contrast", "bias"])
    _check(fig, tmp_path, 5)
    weights_axis, _, biases_axis = fig.axes[:3]
    assert "contrast" in weights_axis.get_title() and "class c vs class 0" in weights_axis.get_title()
    assert [t.get_text() for t in weights_axis.get_xticklabels()] == ["0,c1", "0,c2", "1,c1", "1,c2"]
    assert [t.get_text() for t in biases_axis.get_xticklabels()] == ["0,c1", "0,c2", "1,c1", "1,c2"]
    # The truth markers sit at the right elements: weights[k, c - 1, 0] in the "contrast" panel.
    truth_marks = [line for line in weights_axis.get_lines() if line.get_marker() == "D"][0]
    np.testing.assert_allclose(truth_marks.get_ydata(), truth.weights[..., 0].reshape(-1))
    fig = plots.plot_trace(samples, var_names=["weights"], input_names=["contrast", "bias"])
    labels = [ax.get_ylabel() for ax in fig.axes[::2]]
    assert labels[:2] == ["weights[state 0, class 1, contrast]", "weights[state 0, class 1, bias]"]
    assert "weights[state 1, class 2, bias]" in labels
    bars = plots.plot_parameter_bars(truth, None, samples, input_names=["contrast", "bias"])
    assert len(bars.axes) == 4  # weights of each input, biases, initial probabilities
    assert len(bars.axes[0].patches) == 2 * num_states * (num_classes - 1)  # truth and posterior per element
    with pytest.raises(ValueError, match="input_names"):
        plots.plot_trace(samples, var_names=["weights"], input_names=["contrast"])


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
    assert fig.axes[0].get_ylabel() == "weights[state 0, input 0]"
    assert fig.axes[-2].get_ylabel() == f"scales[state {NUM_STATES - 1}]"


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


def _decrease_marks(ax) -> list[tuple[float, float]]:
    """(iteration, |decrease|) of every vermillion cross drawn on the increase panel."""
    return [
        (float(x), float(y))
        for line in ax.get_lines()
        if line.get_marker() == "x" and line.get_color() == "#D55E00"
        for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True)
    ]


@pytest.mark.parametrize(
    ("log_probs", "decreases"),
    [
        (-100 + np.cumsum(np.exp(-np.arange(20.0))), []),
        (np.array([-10.0]), []),
        # Restart 0 falls from -5 to -6 at iteration 2: one cross at (2, 1); restart 1 only rises.
        (np.array([[-10.0, -5.0, -6.0, np.nan], [-12.0, -8.0, -7.5, -7.4]]), [(2.0, 1.0)]),
        # A change within rounding (ten float64 epsilons of 1e3) is not a decrease.
        (np.array([-1000.0, -999.0, -999.0 - 1e-13, -998.5]), []),
    ],
    ids=["converging", "one-iteration", "restarts-with-decrease", "decrease-within-rounding"],
)
def test_plot_em_log_probs(tmp_path, log_probs, decreases):
    fig = plots.plot_em_log_probs(log_probs)
    ax_delta = fig.axes[1]
    assert _decrease_marks(ax_delta) == decreases
    legend = ax_delta.get_legend()
    legend_texts = [] if legend is None else [text.get_text() for text in legend.get_texts()]
    assert ("|decrease| (EM bug?)" in legend_texts) == bool(decreases)
    _check(fig, tmp_path, 2)


# --- emission curves ------------------------------------------------------------------------------

#: The inverse links, written independently of the package: E[y | eta] per family, with the
#: categorical's class probabilities softmax(0, eta_1, ..., eta_{C-1}) (class 0 the reference).
_INVERSE_LINKS = {
    "gaussian": lambda eta: eta,
    "bernoulli": lambda eta: 1.0 / (1.0 + np.exp(-eta)),
    "poisson": np.exp,
    "categorical": lambda eta: _softmax_with_reference(eta),
}


def _softmax_with_reference(eta):
    logits = np.concatenate([np.zeros(eta.shape[:-1] + (1,)), eta], axis=-1)
    logits -= logits.max(axis=-1, keepdims=True)
    return np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)


def _numpy_curves(family_name, weights, biases, inputs):
    """(S, G, K[, C]) family mean of every draw at the grid's inputs (G, D), in float64 NumPy."""
    eta = np.einsum("gd,s...d->sg...", inputs, np.asarray(weights, float)) + np.asarray(biases, float)[:, None]
    return _INVERSE_LINKS[family_name](eta)


def _grid_inputs(posterior, grid, input_index):
    inputs = np.tile(posterior.inputs.reshape(-1, posterior.inputs.shape[-1]).mean(axis=0), (grid.size, 1))
    inputs[:, input_index] = grid
    return inputs


def _curve(ax, gid):
    (line,) = [line for line in ax.get_lines() if line.get_gid() == gid]
    return np.asarray(line.get_xdata()), np.asarray(line.get_ydata())


@pytest.mark.parametrize("family_name", ["gaussian", "bernoulli", "poisson", "categorical"])
def test_emission_curves_are_the_posterior_mean_of_the_family_mean(tmp_path, family_name):
    """The line of state k is mean_s E[y | x, z = k, theta_s] along the grid, the dashed one E[y | x, theta_EM].

    Oracle: the same averages computed in NumPy from ``posterior.samples`` with the inverse links
    written out above. Float32 draws evaluated by JAX in float32: agreement to 1e-5 relative.
    """
    posterior = random_posterior(family_name)
    _, _, states, _ = family_data(family_name)
    input_index = 1
    fig = plots.plot_emission_curves(posterior, input_index, ["drive", "load"], states=states)
    num_panels = NUM_CLASSES if family_name == "categorical" else 1
    _check(fig, tmp_path, num_panels)
    samples = posterior.samples
    draws_weights = samples["weights"].reshape((-1,) + samples["weights"].shape[2:])
    draws_biases = samples["biases"].reshape((-1,) + samples["biases"].shape[2:])
    for c, ax in enumerate(fig.axes):
        assert ax.get_xlabel() == "load"
        for k in range(posterior.num_states):
            grid, plotted = _curve(ax, f"posterior-mean-state-{k}")
            grid_inputs = _grid_inputs(posterior, grid, input_index)
            expected = _numpy_curves(family_name, draws_weights, draws_biases, grid_inputs)
            expected = expected[..., k, c] if num_panels > 1 else expected[..., k]
            np.testing.assert_allclose(plotted, expected.mean(axis=0), rtol=1e-5, atol=1e-6)
            _, em_plotted = _curve(ax, f"em-state-{k}")
            em = posterior.em.params
            em_expected = _numpy_curves(family_name, em.weights[None], em.biases[None], grid_inputs)
            em_expected = em_expected[0, :, k, c] if num_panels > 1 else em_expected[0, :, k]
            np.testing.assert_allclose(em_plotted, em_expected, rtol=1e-5, atol=1e-6)
        assert grid.min() == pytest.approx(posterior.inputs[..., input_index].min())
        assert grid.max() == pytest.approx(posterior.inputs[..., input_index].max())
    if family_name in ("bernoulli", "categorical"):
        assert all(ax.get_ylim() == (-0.03, 1.03) for ax in fig.axes)  # probabilities
    if num_panels > 1:
        assert fig.axes[0].get_title() == "class 0 (the reference)"
        assert "class 0 is the reference" in fig.get_suptitle()


def test_emission_curves_band_and_thinning():
    """The band is the equal-tailed interval over the draws used, and at most max_draws draws are used."""
    posterior = random_posterior("bernoulli", num_chains=2, num_draws=50)
    curves = plots.emission_curves(posterior, input_index=0, prob=0.8, num_points=11, max_draws=7)
    indices = curves.draw_indices
    assert len(indices) == 7 and indices[0] == 0 and indices[-1] == 99  # evenly through the 100 draws
    assert set(np.diff(indices).tolist()) <= {16, 17}
    weights = posterior.samples["weights"].reshape(100, 2, 2)[curves.draw_indices]
    biases = posterior.samples["biases"].reshape(100, 2)[curves.draw_indices]
    per_draw = _numpy_curves("bernoulli", weights, biases, curves.inputs)
    np.testing.assert_allclose(curves.mean, per_draw.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(curves.lower, np.quantile(per_draw, 0.1, axis=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(curves.upper, np.quantile(per_draw, 0.9, axis=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(curves.inputs[:, 1], posterior.inputs[..., 1].mean(), rtol=1e-6)


def test_binned_means_per_state():
    x = np.array([-1.0, -1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    y = np.array([0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0])
    states = np.array([0, 0, 0, 1, 1, 1, 0])
    (x0, y0), (x1, y1) = plots._binned_means(x, y, states, 2)
    np.testing.assert_allclose(x0, [-1.0, 0.0, 1.0])
    np.testing.assert_allclose(y0, [0.5, 1.0, 1.0])
    np.testing.assert_allclose(x1, [0.0, 1.0])
    np.testing.assert_allclose(y1, [1.0, 0.5])


def test_plot_emission_curves_of_a_fitted_posterior(tmp_path):
    """A real (short) fit: the states default to the most probable ones and the EM start is overlaid."""
    posterior = short_fit("bernoulli")
    fig = plots.plot_emission_curves(posterior)
    _check(fig, tmp_path, 1)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "input 0"
    assert ax.get_ylabel() == "p(y = 1 | x, z = k)"
    assert {line.get_gid() for line in ax.get_lines()} >= {"posterior-mean-state-0", "em-state-1"}
    assert "bernoulli" in fig.get_suptitle()


def test_plot_emission_curves_rejects_bad_arguments():
    posterior = random_posterior("poisson")
    with pytest.raises(ValueError, match="input_index"):
        plots.plot_emission_curves(posterior, input_index=2)
    with pytest.raises(ValueError, match="input_names"):
        plots.plot_emission_curves(posterior, input_names=["only one"])
    with pytest.raises(ValueError, match="prob"):
        plots.plot_emission_curves(posterior, prob=1.0, states=np.zeros(posterior.emissions.shape, int))
    with pytest.raises(ValueError, match="states"):
        plots.plot_emission_curves(posterior, states=np.zeros(3, int))


# --- input-driven transitions ----------------------------------------------------------------------------


def _numpy_transition_probabilities(posterior, draw_indices, transition_inputs):
    """(S, G, K, K) softmax_j(log A[i, j] + V[i, j] . u) per draw and grid point, written out in NumPy."""
    total = posterior.num_chains * posterior.num_draws
    matrix = posterior.samples["transition_matrix"].reshape(total, 2, 2)[draw_indices].astype(float)
    weights = posterior.samples["transition_weights"].reshape(total, 2, 2, 2)[draw_indices].astype(float)
    logits = np.log(matrix)[:, None] + np.einsum("sijm,gm->sgij", weights, transition_inputs)
    return np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)


def _transition_steps(posterior):
    """The transition inputs of the steps t with t + 1 inside their sequence (those that drive a transition)."""
    return np.array(
        [posterior.transition_inputs[n, t] for n, length in enumerate(posterior.lengths) for t in range(length - 1)]
    )


def test_transition_probabilities_are_the_posterior_mean_of_the_softmax(tmp_path):
    """Panel i, line j: mean over draws of p(z[t+1] = j | z[t] = i, u) along transition input 1, input 0 at its mean.

    Oracle: the softmax written out in NumPy from ``posterior.samples`` at the plotted grid, the other
    input at its mean over the steps that drive a transition (padding and last steps excluded).
    """
    posterior = random_transition_posterior()
    fig = plots.plot_transition_probabilities(posterior, input_index=1, input_names=["rewarded", "drift"])
    _check(fig, tmp_path, 2)
    steps = _transition_steps(posterior)
    every_draw = np.arange(posterior.num_chains * posterior.num_draws)
    for i, ax in enumerate(fig.axes):
        assert ax.get_xlabel() == "drift" and ax.get_title() == f"from state {i}"
        assert ax.get_ylim() == (-0.03, 1.03)
        for j in range(posterior.num_states):
            grid, plotted = _curve(ax, f"posterior-mean-from-{i}-to-{j}")
            grid_inputs = np.stack([np.full_like(grid, steps[:, 0].mean()), grid], axis=-1)
            expected = _numpy_transition_probabilities(posterior, every_draw, grid_inputs)[..., i, j].mean(axis=0)
            np.testing.assert_allclose(plotted, expected, rtol=1e-5, atol=1e-6)
        assert grid.min() == pytest.approx(steps[:, 1].min()) and grid.max() == pytest.approx(steps[:, 1].max())
    assert "other transition inputs at their mean" in fig.get_suptitle()


def test_transition_probability_curves_band_grid_and_thinning():
    """Given grid, equal-tailed band over the draws used, at most max_draws draws, rows summing to 1."""
    posterior = random_transition_posterior(num_draws=30)
    curves = plots.transition_probability_curves(posterior, input_index=0, grid=[0.0, 1.0], prob=0.8, max_draws=7)
    assert len(curves.draw_indices) == 7 and curves.draw_indices[[0, -1]].tolist() == [0, 59]
    np.testing.assert_array_equal(curves.transition_inputs[:, 0], [0.0, 1.0])
    np.testing.assert_allclose(curves.transition_inputs[:, 1], _transition_steps(posterior)[:, 1].mean(), rtol=1e-6)
    per_draw = _numpy_transition_probabilities(posterior, curves.draw_indices, curves.transition_inputs)
    np.testing.assert_allclose(curves.mean, per_draw.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(curves.lower, np.quantile(per_draw, 0.1, axis=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(curves.upper, np.quantile(per_draw, 0.9, axis=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(curves.mean.sum(-1), 1.0, rtol=1e-5)
    # The truth's u0 makes 0 -> 1 likelier and 1 -> 0 less likely: the draws around it agree.
    assert curves.mean[1, 0, 1] > curves.mean[0, 0, 1] and curves.mean[1, 1, 0] < curves.mean[0, 1, 0]


def test_plot_transition_probabilities_rejects_bad_arguments():
    posterior = random_transition_posterior()
    with pytest.raises(ValueError, match="stationary transitions"):
        plots.plot_transition_probabilities(random_posterior("bernoulli"))
    with pytest.raises(ValueError, match="input_index"):
        plots.plot_transition_probabilities(posterior, input_index=2)
    with pytest.raises(ValueError, match="input_names"):
        plots.plot_transition_probabilities(posterior, input_names=["only one"])
    for grid in ([[0.0, 1.0]], [], [0.0, np.nan]):
        with pytest.raises(ValueError, match="grid"):
            plots.transition_probability_curves(posterior, grid=grid)
    with pytest.raises(ValueError, match="prob"):
        plots.transition_probability_curves(posterior, prob=0.0)
    with pytest.raises(ValueError, match="max_draws"):
        plots.transition_probability_curves(posterior, max_draws=0)


# --- choosing the number of states ------------------------------------------------------------------


def _gid(ax, gid):
    """The one artist (line or collection) of the axes with this gid."""
    found = [artist for artist in ax.lines + list(ax.collections) if artist.get_gid() == gid]
    assert len(found) == 1, gid
    return found[0]


@pytest.mark.parametrize(
    "score, columns",
    [
        ("bits_per_trial", {"bayes": "bits_per_trial", "em": "em_bits_per_trial"}),
        ("elpd", {"bayes": "elpd", "em": "em_loglik"}),
    ],
)
def test_plot_selection_draws_each_score_with_one_standard_error(tmp_path, score, columns):
    """Bayes left of each K and EM right, at the table's values, bars of ±1 SE, stars at the chosen K."""
    selection = synthetic_selection("loo")
    table = selection.table
    fig = plots.plot_selection(selection, score=score)
    ax = fig.axes[0]
    states = np.array([1.0, 2.0, 3.0])
    for name, shift_sign in (("bayes", -1), ("em", 1)):
        values, errors = table[columns[name]].to_numpy(), table[columns[name] + "_se"].to_numpy()
        points = _gid(ax, f"{name}-score")
        shifts = np.asarray(points.get_xdata()) - states
        assert np.all(shift_sign * shifts > 0) and np.all(np.abs(shifts) < 0.25)
        np.testing.assert_allclose(points.get_ydata(), values)
        segments = _gid(ax, f"{name}-error").get_segments()
        np.testing.assert_allclose([segment[:, 1].min() for segment in segments], values - errors)
        np.testing.assert_allclose([segment[:, 1].max() for segment in segments], values + errors)
        best = selection.best if name == "bayes" else selection.best_em
        star = _gid(ax, f"{name}-chosen")
        assert star.get_xdata()[0] == pytest.approx(best + shifts[0])
        assert star.get_ydata()[0] == pytest.approx(values[best - 1])
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "Bayes: posterior predictive, PSIS-LOO over sequences" in legend
    assert "EM: plug-in maximum likelihood, 3-fold CV over sequences" in legend
    assert "chosen by Bayes: K = 2" in legend and "chosen by EM: K = 3" in legend
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["1", "2", "3"]
    if score == "bits_per_trial":
        assert selection.baseline_name in ax.get_ylabel()
    else:
        assert "nats" in ax.get_ylabel()
    _check(fig, tmp_path, 1)


def test_plot_selection_from_its_json_into_given_axes(tmp_path):
    """The dict of selection.json draws the same figure; a k-fold Bayesian score says so in the legend."""
    import json

    from bayes_glmhmm.selection_io import selection_to_dict

    selection = synthetic_selection("kfold")
    read_back = json.loads(json.dumps(selection_to_dict(selection)))
    fig = Figure()
    left, right = fig.subplots(1, 2)
    assert plots.plot_selection(read_back, ax=right) is fig
    assert not left.lines
    np.testing.assert_allclose(_gid(right, "bayes-score").get_ydata(), selection.table["bits_per_trial"])
    np.testing.assert_allclose(_gid(right, "em-chosen").get_ydata(), selection.table["em_bits_per_trial"][3])
    legend = [text.get_text() for text in right.get_legend().get_texts()]
    assert "Bayes: posterior predictive, 3-fold CV over sequences" in legend
    _check(fig, tmp_path, 2, labelled=[right])


def test_plot_selection_rejects_an_unknown_score():
    with pytest.raises(ValueError, match="score must be one of"):
        plots.plot_selection(synthetic_selection(), score="accuracy")


# --- subjects of a hierarchical posterior -------------------------------------------------------------


def test_plot_subject_weights_draws_each_subject_in_the_given_order(rng, tmp_path):
    """Posterior means and equal-tailed intervals of subject_weights[s, k, d], in ``order``, with the references."""
    from types import SimpleNamespace

    num_subjects, num_states, input_dim = 3, 2, 2
    lead = (NUM_CHAINS, NUM_DRAWS)
    samples = {
        "subject_weights": rng.standard_normal(lead + (num_subjects, num_states, input_dim)),
        "weights": rng.standard_normal(lead + (num_states, input_dim)),
        "weight_spread": rng.uniform(0.1, 1.0, lead + (num_states, input_dim)),
    }
    posterior = SimpleNamespace(samples=samples, subjects=SimpleNamespace(names=("a", "b", "c")))
    truth, estimates = np.array([1.0, 2.0, 3.0]), np.array([0.5, np.nan, 1.5])
    order = [2, 0, 1]
    fig = plots.plot_subject_weights(
        posterior,
        1,
        0,
        truth=truth,
        point_estimates={"two-stage EM": estimates},
        input_names=["stim", "cue"],
        order=order,
    )
    ax = fig.axes[0]
    draws = samples["subject_weights"][..., 1, 0].reshape(-1, num_subjects)[:, order]
    np.testing.assert_allclose(_gid(ax, "subject-mean").get_ydata(), draws.mean(axis=0))
    segments = _gid(ax, "subject-interval").get_segments()
    np.testing.assert_allclose([segment[:, 1].min() for segment in segments], np.quantile(draws, 0.03, axis=0))
    np.testing.assert_allclose([segment[:, 1].max() for segment in segments], np.quantile(draws, 0.97, axis=0))
    np.testing.assert_allclose(_gid(ax, "truth").get_ydata(), truth[order])
    np.testing.assert_allclose(_gid(ax, "estimate-0").get_ydata(), estimates[order])
    assert _gid(ax, "population-mean").get_ydata()[0] == pytest.approx(samples["weights"][..., 1, 0].mean())
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["c", "a", "b"]
    assert ax.get_ylabel() == "weight of stim, state 1"
    assert "two-stage EM" in [text.get_text() for text in ax.get_legend().get_texts()]
    _check(fig, tmp_path, 1)
    with pytest.raises(ValueError, match="hierarchical"):
        plots.plot_subject_weights(SimpleNamespace(samples={}, subjects=None), 0, 0)
    with pytest.raises(ValueError, match="order"):
        plots.plot_subject_weights(posterior, 0, 0, order=[0, 0, 1])
    with pytest.raises(ValueError, match="truth"):
        plots.plot_subject_weights(posterior, 0, 0, truth=np.zeros(2))
