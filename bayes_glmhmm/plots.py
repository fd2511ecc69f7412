"""Matplotlib figures of GLM-HMM data, state inference, posteriors and sampler diagnostics.

Every function takes NumPy arrays (or a family's params NamedTuple of NumPy arrays, or a
:class:`~bayes_glmhmm.posterior.Posterior`) and returns a :class:`matplotlib.figure.Figure` built
with the object API: no figure is registered with pyplot and nothing is shown, so the functions
are safe under the "Agg" backend, in scripts, tests and notebooks (a returned figure displays
itself as the last value of a notebook cell).

Every emission family is drawn from what its :class:`~bayes_glmhmm.emissions.EmissionFamily`
says: its parameter names and ArviZ dims label the parameter figures (``weights[state 1, class 2,
contrast]``), and its ``mean`` gives the emission curves of :func:`plot_emission_curves`
(regression lines, psychometric curves, rates or class probabilities).

States are drawn in the Okabe-Ito palette, which colour-blind readers can tell apart; continuous
scales use "cividis". States are labelled from 0, as they are indexed in the arrays.
"""

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

if TYPE_CHECKING:  # the emission families import JAX; this module imports it only when a figure needs it
    from bayes_glmhmm.emissions import EmissionFamily
    from bayes_glmhmm.posterior import Posterior

__all__ = [
    "STATE_COLORS",
    "EmissionCurves",
    "state_colors",
    "emission_curves",
    "plot_article_data",
    "plot_scatter_by_state",
    "plot_states",
    "plot_state_sequences",
    "plot_emission_curves",
    "TransitionCurves",
    "transition_probability_curves",
    "plot_transition_probabilities",
    "plot_parameter_posteriors",
    "plot_transition_matrices",
    "plot_parameter_bars",
    "plot_trace",
    "plot_lp_by_chain",
    "plot_em_log_probs",
    "plot_selection",
    "plot_subject_weights",
]

#: Okabe-Ito colours, ordered so that the first three (the article's belts) are blue, orange and
#: reddish purple: no red/green pair among the states that appear together most often.
STATE_COLORS = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#CC79A7",  # reddish purple
    "#009E73",  # bluish green
    "#56B4E9",  # sky blue
    "#D55E00",  # vermillion
    "#F0E442",  # yellow
    "#999999",  # grey
)

_HMM_NAMES = ("initial_probs", "transition_matrix")
_PARAM_TITLES = {
    "weights": "weights $w_k$",
    "biases": "biases $c_k$",
    "scales": r"noise scales $\sigma_k$",
    "initial_probs": r"initial probabilities $\pi_k$",
    "transition_matrix": r"transition probabilities $P_{ij}$",
}
_TRUTH_STYLE = {"marker": "D", "markerfacecolor": "none", "markeredgecolor": "black", "markersize": 7, "ls": "none"}
_EM_STYLE = {"marker": "x", "color": "black", "markersize": 7, "markeredgewidth": 1.5, "ls": "none"}


def state_colors(num_states: int) -> list[str]:
    """Colours of states ``0 .. num_states - 1``, cycling through :data:`STATE_COLORS` beyond eight.

    Args:
        num_states: number of states K.

    Returns:
        A list of K hex colour strings.
    """
    return [STATE_COLORS[k % len(STATE_COLORS)] for k in range(int(num_states))]


def _state_cmap(num_states: int) -> ListedColormap:
    return ListedColormap(state_colors(num_states), name="glmhmm_states")


def _state_handles(num_states: int, alpha: float = 1.0) -> list[Patch]:
    return [Patch(facecolor=c, alpha=alpha, label=f"state {k}") for k, c in enumerate(state_colors(num_states))]


def _num_states_of(*state_arrays) -> int:
    """K large enough for every state label given (at least 1)."""
    maxima = [int(np.max(s)) for s in state_arrays if s is not None and np.size(s) > 0]
    return max(maxima, default=0) + 1


def _as_inputs_2d(inputs, num_timesteps: int) -> np.ndarray:
    """One sequence of inputs as (T, D)."""
    inputs = np.asarray(inputs, dtype=float)
    if inputs.ndim == 1:
        inputs = inputs[:, None]
    if inputs.ndim != 2 or inputs.shape[0] != num_timesteps:
        raise ValueError(f"inputs must have shape (T,) or (T, D) with T = {num_timesteps}, got {inputs.shape}")
    return inputs


def _state_band(ax, states, num_states: int, y_range=(0.0, 1.0), alpha: float = 1.0) -> None:
    """Draw states (T,) as a colour band over time steps -0.5 .. T-0.5 and the given y range."""
    states = np.asarray(states)
    ax.imshow(
        states[None, :],
        extent=(-0.5, states.shape[0] - 0.5, y_range[0], y_range[1]),
        aspect="auto",
        interpolation="nearest",
        cmap=_state_cmap(num_states),
        vmin=-0.5,
        vmax=num_states - 0.5,
        alpha=alpha,
        origin="lower",
    )


def _padded_range(values) -> tuple[float, float]:
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return -1.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    pad = 0.08 * (high - low) if high > low else 1.0
    return low - pad, high + pad


def plot_article_data(inputs, emissions, states=None, title: str = "True simulated data") -> Figure:
    """The article's data figure: the input sequence above, the emissions over the true states below.

    Args:
        inputs: x_t of one sequence, shape (T,) or (T, D) (the article's "ball weight", D = 1).
        emissions: y_t of that sequence, shape (T,) (the "colour"); NaN leaves a gap.
        states: optional true states z_t, shape (T,), drawn as a coloured background band.
        title: figure title.

    Returns:
        A figure with two axes: inputs, then emissions.
    """
    emissions = np.asarray(emissions, dtype=float).reshape(-1)
    num_timesteps = emissions.shape[0]
    inputs = _as_inputs_2d(inputs, num_timesteps)
    time = np.arange(num_timesteps)

    fig = Figure(figsize=(11, 4.5), layout="constrained")
    ax_inputs, ax_emissions = fig.subplots(2, 1, sharex=True, height_ratios=[2, 3])
    for d in range(inputs.shape[1]):
        label = f"input {d}" if inputs.shape[1] > 1 else None
        ax_inputs.plot(time, inputs[:, d], "-", marker=".", color="black" if d == 0 else None, lw=1, label=label)
    if inputs.shape[1] > 1:
        ax_inputs.legend(loc="upper right", fontsize="small")
    ax_inputs.set_ylabel("input x (weight)")
    ax_inputs.set_title("inputs")

    y_low, y_high = _padded_range(emissions)
    if states is not None:
        states = np.asarray(states).reshape(-1)
        if states.shape[0] != num_timesteps:
            raise ValueError(f"states must have shape ({num_timesteps},), got {states.shape}")
        num_states = _num_states_of(states)
        _state_band(ax_emissions, states, num_states, (y_low, y_high), alpha=0.35)
        ax_emissions.legend(
            handles=_state_handles(num_states, alpha=0.35),
            title="true state",
            loc="upper left",
            bbox_to_anchor=(1.005, 1.0),
            fontsize="small",
        )
    ax_emissions.plot(time, emissions, "--", color="0.3", lw=0.8)
    ax_emissions.plot(time, emissions, "o", color="black", markersize=3.5)
    ax_emissions.set_ylim(y_low, y_high)
    ax_emissions.set_xlim(-0.5, num_timesteps - 0.5)
    ax_emissions.set_ylabel("emission y (colour)")
    ax_emissions.set_xlabel("time step t")
    ax_emissions.set_title("emissions" + (" over the true states" if states is not None else ""))
    fig.suptitle(title)
    return fig


def _scalar_means(params, input_dim: int):
    """``grid (G,) -> (G, K)`` E[y | x, z = k] of a one-input family with one mean per state, else None.

    Class probabilities (the categorical family) have no single curve per state on a y axis of
    labels: :func:`plot_emission_curves` draws them per class.
    """
    if input_dim != 1:
        return None
    from bayes_glmhmm.emissions import family_of

    family = family_of(params)
    if family.num_classes is not None:
        return None
    return lambda grid: np.asarray(family.mean(params, np.asarray(grid, dtype=float)[:, None]), dtype=float)


def plot_scatter_by_state(
    inputs, emissions, states=None, params=None, title: str = "Emissions against inputs"
) -> Figure:
    """Scatter of y against x pooled over all sequences and time steps, coloured by true state.

    Args:
        inputs: x, shape (N, T, D), (N, T) or (T,) for D = 1; one panel per input dimension.
        emissions: y, shape (N, T) or (T,).
        states: optional true states of the emissions' shape; without them all points are grey.
        params: optional params of a family with one mean per state (Gaussian, Bernoulli,
            Poisson); for D = 1 its curves E[y | x, z = k] (the Gaussian's regression lines
            y = w_k x + c_k) are drawn in the state colours.
        title: figure title.

    Returns:
        A figure with one axes per input dimension.
    """
    emissions = np.asarray(emissions, dtype=float)
    inputs = np.asarray(inputs, dtype=float)
    if inputs.shape == emissions.shape:
        inputs = inputs[..., None]
    if inputs.shape[:-1] != emissions.shape:
        raise ValueError(f"inputs {inputs.shape} do not match emissions {emissions.shape}")
    input_dim = inputs.shape[-1]
    x = inputs.reshape(-1, input_dim)
    y = emissions.reshape(-1)
    if states is not None:
        states = np.asarray(states)
        if states.shape != emissions.shape:
            raise ValueError(f"states must have the emissions' shape {emissions.shape}, got {states.shape}")
        states = states.reshape(-1)
    num_states = _num_states_of(states)
    curve_means = None
    if params is not None:
        num_states = max(num_states, int(np.shape(params.initial_probs)[-1]))
        curve_means = _scalar_means(params, input_dim)
    colors = state_colors(num_states)

    fig = Figure(figsize=(5.5 * input_dim + 1.0, 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, input_dim, sharey=True, squeeze=False)[0])
    for d, ax in enumerate(axes):
        if states is None:
            ax.scatter(x[:, d], y, s=12, color="0.35", alpha=0.6, marker="o", linewidths=0, label="all steps")
        else:
            for k in range(num_states):
                chosen = states == k
                if chosen.any():
                    ax.scatter(
                        x[chosen, d], y[chosen], s=14, color=colors[k], alpha=0.7, linewidths=0, label=f"state {k}"
                    )
        if curve_means is not None:
            grid = np.linspace(np.nanmin(x[:, d]), np.nanmax(x[:, d]), 50)
            means = curve_means(grid)
            for k in range(num_states):
                ax.plot(grid, means[:, k], color=colors[k], lw=2.2)
                ax.plot(grid, means[:, k], color="black", lw=0.7, ls="--")
        ax.set_xlabel("input x" if input_dim == 1 else f"input x[{d}]")
        ax.set_ylabel("emission y")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if curve_means is not None:
        handles.append(Line2D([], [], color="black", lw=0.7, ls="--"))
        labels.append(r"$E[y \mid x, z = k]$")
    axes[0].legend(handles, labels, loc="best", fontsize="small", title="true state" if states is not None else None)
    fig.suptitle(title)
    return fig


def plot_states(emissions, true_states, state_probabilities, map_states=None, sequence_label: str = "") -> Figure:
    """True against inferred states of one sequence, with the posterior state probabilities.

    Titled "True and inferred states" when ``true_states`` is given, else "Inferred states". For
    several sequences of any lengths, see :func:`plot_state_sequences`.

    Panels, sharing the time axis: the emissions; the true states as a colour band (skipped when
    ``true_states`` is None); the posterior state probabilities as a stacked area; and, if given,
    a point estimate of the path (e.g. EM Viterbi or the posterior mode) as another band.

    Args:
        emissions: y_t of the sequence, shape (T,).
        true_states: z_t, shape (T,), or None when the truth is unknown.
        state_probabilities: (T, K), state_probabilities[t, k] = p(z_t = k | y, x), e.g. a row of
            :meth:`bayes_glmhmm.posterior.Posterior.state_probabilities`.
        map_states: optional (T,) path estimate in the same labelling.
        sequence_label: appended to the title, e.g. ``"sequence 3"``.

    Returns:
        A figure with 2 to 4 axes, top to bottom as listed above.
    """
    emissions = np.asarray(emissions, dtype=float).reshape(-1)
    probabilities = np.asarray(state_probabilities, dtype=float)
    num_timesteps = emissions.shape[0]
    if probabilities.ndim != 2 or probabilities.shape[0] != num_timesteps:
        raise ValueError(f"state_probabilities must have shape ({num_timesteps}, K), got {probabilities.shape}")
    bands = []
    for name, states in (("true", true_states), ("estimate", map_states)):
        if states is not None:
            states = np.asarray(states).reshape(-1)
            if states.shape[0] != num_timesteps:
                raise ValueError(f"{name} states must have shape ({num_timesteps},), got {states.shape}")
        bands.append(states)
    true_states, map_states = bands
    num_states = max(probabilities.shape[1], _num_states_of(true_states, map_states))
    colors = state_colors(num_states)
    time = np.arange(num_timesteps)

    # Emissions, [true band], probabilities, [estimate band].
    kinds = ["emissions"] + (["true"] if true_states is not None else []) + ["probs"]
    kinds += ["estimate"] if map_states is not None else []
    heights = {"emissions": 3.0, "true": 0.6, "probs": 2.2, "estimate": 0.6}
    fig = Figure(figsize=(11, 1.2 + 1.1 * sum(heights[k] for k in kinds)), layout="constrained")
    axes = fig.subplots(len(kinds), 1, sharex=True, height_ratios=[heights[k] for k in kinds], squeeze=False)[:, 0]
    panel = dict(zip(kinds, axes, strict=True))

    ax = panel["emissions"]
    ax.plot(time, emissions, "-", color="0.6", lw=0.8)
    if true_states is not None:
        point_colors = [colors[int(s)] for s in true_states]
        ax.scatter(time, emissions, c=point_colors, s=16, edgecolors="black", linewidths=0.3, zorder=3)
        ax.set_title("emissions (points coloured by true state)", fontsize="medium")
    else:
        ax.plot(time, emissions, "o", color="black", markersize=3)
        ax.set_title("emissions", fontsize="medium")
    ax.set_ylabel("emission y")
    ax.grid(alpha=0.3)

    def _band_panel(ax, states, label):
        _state_band(ax, states, num_states)
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center")

    if true_states is not None:
        _band_panel(panel["true"], true_states, "true\nstates")
    ax = panel["probs"]
    ax.stackplot(time, probabilities.T, colors=colors[: probabilities.shape[1]], step="mid")
    ax.set_ylim(0, 1)
    ax.set_ylabel(r"$p(z_t = k \mid y, x)$")
    ax.set_title("posterior state probabilities (stacked)", fontsize="medium")
    if map_states is not None:
        _band_panel(panel["estimate"], map_states, "estimated\npath")
        if true_states is not None:
            accuracy = float(np.mean(map_states == true_states))
            panel["estimate"].set_title(f"estimated path: {100 * accuracy:.0f}% of steps match", fontsize="medium")
    if true_states is not None:
        inferred = np.argmax(probabilities, axis=1)
        agreement = float(np.mean(inferred == true_states))
        panel["probs"].set_title(
            f"posterior state probabilities (stacked); most probable state is true at {100 * agreement:.0f}% of steps",
            fontsize="medium",
        )
    axes[-1].set_xlim(-0.5, num_timesteps - 0.5)
    axes[-1].set_xlabel("time step t")
    fig.legend(handles=_state_handles(num_states), loc="outside right upper", title="state", fontsize="small")
    # Without the truth there is nothing to compare against: the figure shows inferred states only.
    title = "True and inferred states" if true_states is not None else "Inferred states"
    fig.suptitle(f"{title}: {sequence_label}" if sequence_label else title)
    return fig


def _sequence_lengths(lengths, num_sequences: int, num_timesteps: int) -> np.ndarray:
    """``lengths`` checked as (N,) integers in 1..T; all T when None."""
    if lengths is None:
        return np.full(num_sequences, num_timesteps, dtype=int)
    lengths = np.asarray(lengths)
    if lengths.shape != (num_sequences,) or not np.all(np.equal(np.mod(lengths, 1), 0)):
        raise ValueError(f"lengths must be ({num_sequences},) integers, got shape {lengths.shape}")
    lengths = lengths.astype(int)
    if np.any(lengths < 1) or np.any(lengths > num_timesteps):
        raise ValueError(f"lengths must lie in 1..{num_timesteps}, got {lengths.min()}..{lengths.max()}")
    return lengths


def _markersize(length: int) -> float:
    """Emission markers shrink with the sequence's length and vanish past 1000 steps, where the line reads better."""
    return 3.0 if length <= 200 else (1.5 if length <= 1000 else 0.0)


def plot_state_sequences(
    emissions,
    state_probabilities,
    lengths=None,
    true_states=None,
    sequence_labels: Sequence[str] | None = None,
    max_sequences: int = 6,
    emission_label: str = "emission y",
) -> Figure:
    """The emissions and posterior state probabilities of the first few sequences, each on its own time axis.

    One block per sequence shown (the first ``max_sequences``), top to bottom: its emissions
    (missing ones, NaN, leave a gap), its true states as a colour band if given, and its posterior
    state probabilities as a stacked area. A block spans only its own sequence's steps, so a
    sequence of 20 steps beside one of 5000 fills the width as well, and padding past a
    sequence's end is never drawn. When not every sequence is shown, the title says how many
    there are. Titled "True and inferred states" with ``true_states``, else "Inferred states".

    Args:
        emissions: y of shape (N, T), NaN where missing; (T,) for one sequence.
        state_probabilities: (N, T, K), state_probabilities[n, t, k] = p(z_{n,t} = k | y, x), e.g.
            :meth:`bayes_glmhmm.posterior.Posterior.state_probabilities`; (T, K) for one sequence.
            Values past a sequence's length (padding, often NaN) are not read.
        lengths: (N,) number of steps of each sequence, each in 1..T; None when every sequence
            has T steps.
        true_states: optional (N, T) true states z_{n,t} (integer labels; padding not read).
        sequence_labels: optional N names of the sequences (e.g. their ids); "sequence n" by default.
        max_sequences: the most sequences drawn (the first ones), at least 1.
        emission_label: y label of the emission panels, e.g. the target column's name.

    Returns:
        A figure with two axes per sequence shown (three with ``true_states``): emissions,
        [true states], state probabilities, in sequence order.

    Raises:
        ValueError: naming the argument, for shapes that do not match, lengths outside 1..T,
            the wrong number of sequence labels or ``max_sequences`` below 1.
    """
    emissions = np.asarray(emissions, dtype=float)
    probabilities = np.asarray(state_probabilities, dtype=float)
    if emissions.ndim == 1:
        emissions, probabilities = emissions[None], probabilities[None]
        true_states = None if true_states is None else np.asarray(true_states)[None]
    if emissions.ndim != 2:
        raise ValueError(f"emissions must have shape (N, T) or (T,), got {emissions.shape}")
    num_sequences, num_timesteps = emissions.shape
    if probabilities.ndim != 3 or probabilities.shape[:2] != emissions.shape:
        raise ValueError(
            f"state_probabilities must have shape ({num_sequences}, {num_timesteps}, K), got {probabilities.shape}"
        )
    if true_states is not None:
        true_states = np.asarray(true_states)
        if true_states.shape != emissions.shape:
            raise ValueError(f"true_states must have the emissions' shape {emissions.shape}, got {true_states.shape}")
    if int(max_sequences) < 1:
        raise ValueError(f"max_sequences must be >= 1, got {max_sequences}")
    lengths = _sequence_lengths(lengths, num_sequences, num_timesteps)
    if sequence_labels is None:
        sequence_labels = [f"sequence {n}" for n in range(num_sequences)]
    if len(sequence_labels) != num_sequences:
        raise ValueError(f"sequence_labels has {len(sequence_labels)} names, there are {num_sequences} sequences")
    shown = min(num_sequences, int(max_sequences))
    valid_true = None if true_states is None else [true_states[n, : lengths[n]] for n in range(shown)]
    num_states = max(probabilities.shape[2], _num_states_of(*(valid_true or [])))
    colors = state_colors(num_states)

    kinds = ["emissions"] + (["true"] if true_states is not None else []) + ["probs"]
    heights = {"emissions": 1.3, "true": 0.3, "probs": 0.9}
    block = sum(heights[kind] for kind in kinds)
    fig = Figure(figsize=(11, 0.9 + shown * (block + 0.55)), layout="constrained")
    grid = fig.add_gridspec(shown * len(kinds), 1, height_ratios=[heights[kind] for kind in kinds] * shown)
    for n in range(shown):
        length = int(lengths[n])
        time = np.arange(length)
        first = fig.add_subplot(grid[n * len(kinds), 0])
        panel = {"emissions": first}
        for offset, kind in enumerate(kinds[1:], start=1):
            panel[kind] = fig.add_subplot(grid[n * len(kinds) + offset, 0], sharex=first)
        for ax in list(panel.values())[:-1]:
            ax.tick_params(labelbottom=False)

        values = emissions[n, :length]
        num_missing = int(np.sum(~np.isfinite(values)))
        ax = panel["emissions"]
        ax.plot(time, values, "-", color="0.6", lw=0.8)
        size = _markersize(length)
        if size and true_states is not None:
            ax.scatter(time, values, c=[colors[int(s)] for s in valid_true[n]], s=4 * size**2, edgecolors="none")
        elif size:
            ax.plot(time, values, "o", color="black", markersize=size)
        ax.set_ylabel(emission_label, fontsize="small")
        ax.grid(alpha=0.3)
        missing = f", {num_missing} missing" if num_missing else ""
        ax.set_title(f"{sequence_labels[n]}: {length} steps{missing}", fontsize="medium", loc="left")
        if true_states is not None:
            _state_band(panel["true"], valid_true[n], num_states)
            panel["true"].set_yticks([])
            panel["true"].set_ylabel("true", rotation=0, ha="right", va="center", fontsize="small")
        ax = panel["probs"]
        ax.stackplot(
            time, np.nan_to_num(probabilities[n, :length]).T, colors=colors[: probabilities.shape[2]], step="mid"
        )
        ax.set_ylim(0, 1)
        ax.set_yticks([0, 1])
        ax.set_ylabel(r"$p(z_t = k \mid y, x)$", fontsize="small")
        ax.set_xlim(-0.5, length - 0.5)
    fig.axes[-1].set_xlabel("time step t (each sequence on its own scale)")
    fig.legend(handles=_state_handles(num_states), loc="outside right upper", title="state", fontsize="small")
    title = "True and inferred states" if true_states is not None else "Inferred states"
    title += ": emissions and posterior state probabilities (stacked)"
    if shown < num_sequences:
        title += f"\nfirst {shown} of {num_sequences} sequences"
    fig.suptitle(title)
    return fig


# --- emission curves ---------------------------------------------------------------------------------

#: How each family's emission mean (``family.mean``) reads on a y axis, and whether it is a
#: probability (drawn on a 0..1 axis); ``{c}`` is the class of a categorical panel. Families not
#: listed get the generic label.
_EM_CURVE_STYLE = {"color": "black", "ls": "--", "lw": 1.0}


class EmissionCurves(NamedTuple):
    """The posterior of each state's emission mean along one input, the other inputs at their observed mean.

    Attributes:
        grid: (G,) values of the chosen input, from its smallest to its largest observed value.
        inputs: (G, D) the input vectors along the grid.
        mean: posterior mean over the draws theta_s of ``family.mean(theta_s, inputs)``, i.e. of
            E[y | x, z = k, theta] (Bernoulli: p(y = 1 | x, z = k); Poisson: the rate), shape
            (G, K); for the categorical family the class probabilities p(y = c | x, z = k), (G, K, C).
        lower: the (1 - prob) / 2 quantile over the draws, same shape.
        upper: the (1 + prob) / 2 quantile over the draws, same shape.
        em: ``family.mean`` under the EM estimate ``posterior.em.params``, same shape, or None.
        draw_indices: (S,) the draws used, as indices into the (chain * draw) flattened draws.
    """

    grid: np.ndarray
    inputs: np.ndarray
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    em: np.ndarray | None
    draw_indices: np.ndarray


def _check_input_index(input_index, input_dim: int) -> int:
    if isinstance(input_index, bool) or not isinstance(input_index, (int, np.integer)):
        raise ValueError(f"input_index must be an integer in [0, {input_dim}), got {input_index!r}")
    if not 0 <= input_index < input_dim:
        raise ValueError(f"input_index must lie in [0, {input_dim}), got {input_index}")
    return int(input_index)


@functools.lru_cache(maxsize=8)
def _means_per_draw(family):
    """``family.mean`` of a batch of draws at shared inputs, (S, ...) params -> (S, G, K[, C]), compiled once."""
    import jax

    from bayes_glmhmm._compile import jit_one_off

    return jit_one_off(jax.vmap(family.mean, in_axes=(0, None)))


def emission_curves(
    posterior: "Posterior", input_index: int = 0, prob: float = 0.94, num_points: int = 101, max_draws: int = 400
) -> EmissionCurves:
    """Posterior mean and equal-tailed band of every state's emission mean along one input.

    Along a grid of input ``input_index`` (the other inputs held at their mean over the observed
    steps), ``posterior.family.mean`` is evaluated under each of at most ``max_draws`` draws,
    evenly spaced through the (chain * draw) flattened draws, and summarized per grid point.

    Args:
        posterior: a :class:`~bayes_glmhmm.posterior.Posterior` of any family.
        input_index: the input d along which the curves run.
        prob: mass of the equal-tailed band.
        num_points: grid points G.
        max_draws: the most draws used (thinned evenly when there are more).

    Returns:
        :class:`EmissionCurves`.

    Raises:
        ValueError: for an ``input_index`` out of range, a ``prob`` outside (0, 1), or a
            ``num_points`` or ``max_draws`` below 2 or 1.
    """
    from bayes_glmhmm._compile import device_array

    family = posterior.family
    input_index = _check_input_index(input_index, posterior.inputs.shape[-1])
    if not 0 < prob < 1:
        raise ValueError(f"prob must lie in (0, 1), got {prob}")
    if num_points < 2:
        raise ValueError(f"num_points must be at least 2, got {num_points}")
    if max_draws < 1:
        raise ValueError(f"max_draws must be at least 1, got {max_draws}")
    observed = np.asarray(posterior.inputs, dtype=float)[posterior.valid_steps()]  # (M, D)
    grid = np.linspace(observed[:, input_index].min(), observed[:, input_index].max(), num_points)
    inputs = np.tile(observed.mean(axis=0), (num_points, 1))
    inputs[:, input_index] = grid

    total = posterior.num_chains * posterior.num_draws
    draw_indices = np.unique(np.round(np.linspace(0, total - 1, min(total, max_draws))).astype(int))
    flat = {name: np.reshape(value, (total, *np.shape(value)[2:])) for name, value in posterior.samples.items()}
    draws = {name: np.asarray(flat[name][draw_indices]) for name in family.param_names}
    if posterior.em is not None:  # the EM estimate as one more draw: one program computes all the curves
        draws = {
            name: np.concatenate([value, np.asarray(getattr(posterior.em.params, name), value.dtype)[None]])
            for name, value in draws.items()
        }
    params = family.params_type(**{name: device_array(value) for name, value in draws.items()})
    means = np.asarray(_means_per_draw(family)(params, device_array(inputs, params.weights.dtype)), dtype=float)
    per_draw, em = (means[:-1], means[-1]) if posterior.em is not None else (means, None)
    lower, upper = np.quantile(per_draw, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    return EmissionCurves(grid, inputs, per_draw.mean(axis=0), lower, upper, em, draw_indices)


def _binned_means(x, y, states, num_states: int, max_bins: int = 10) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per state, the mean input and mean emission of the observed steps in each bin of the input.

    Inputs with at most 12 distinct values (e.g. stimulus contrasts) are binned by value; others
    into ``max_bins`` bins of equal counts. Empty bins are left out.

    Returns:
        One ``(mean input, mean emission)`` pair of arrays per state.
    """
    levels = np.unique(x)
    if levels.size <= 12:
        bins = np.searchsorted(levels, x)
        num_bins = levels.size
    else:
        edges = np.quantile(x, np.linspace(0, 1, max_bins + 1))
        bins = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, max_bins - 1)
        num_bins = max_bins
    means = []
    for k in range(num_states):
        chosen = states == k
        counts = np.bincount(bins[chosen], minlength=num_bins)
        filled = counts > 0
        x_sums = np.bincount(bins[chosen], weights=x[chosen], minlength=num_bins)
        y_sums = np.bincount(bins[chosen], weights=y[chosen], minlength=num_bins)
        means.append((x_sums[filled] / counts[filled], y_sums[filled] / counts[filled]))
    return means


def plot_emission_curves(
    posterior: "Posterior",
    input_index: int = 0,
    input_names: list[str] | None = None,
    prob: float = 0.94,
    *,
    states=None,
    max_draws: int = 400,
) -> Figure:
    """Each state's emission mean against one input: posterior mean, ``prob`` band and the EM estimate.

    What is drawn is the family's mean, E[y | x, z = k] (:func:`emission_curves`): for the
    Gaussian the regression lines, for the Bernoulli the psychometric curves p(y = 1 | x, z = k),
    for the Poisson the rates, and for the categorical family one panel per class c with
    p(y = c | x, z = k) (class 0 is the reference of the weights). The other inputs are held at
    their mean over the observed steps. The EM estimate (``posterior.em``), when present, is drawn
    dashed. The data are drawn by their state (the most probable one by default): continuous
    emissions as points, discrete ones as the mean emission (or class frequency) per bin of the
    input, which averages over the other inputs as they were observed.

    Args:
        posterior: a :class:`~bayes_glmhmm.posterior.Posterior` of any family.
        input_index: the input d along the x axis.
        input_names: optional names of the D inputs; the x axis is labelled with the chosen one.
        prob: mass of the equal-tailed posterior band.
        states: optional (N, T) state of every step used to colour the data; by default the most
            probable state argmax_k p(z_t = k | y, x) under the posterior.
        max_draws: the most posterior draws evaluated (thinned evenly when there are more).

    Returns:
        A figure with one axes per class (categorical) or one axes.

    Raises:
        ValueError: for an ``input_index`` out of range, ``input_names`` of the wrong length,
            ``states`` of the wrong shape, or a ``prob`` outside (0, 1).
    """
    family = posterior.family
    input_dim = posterior.inputs.shape[-1]
    if input_names is not None and len(input_names) != input_dim:
        raise ValueError(f"input_names has {len(input_names)} names, the posterior {input_dim} inputs")
    curves = emission_curves(posterior, input_index, prob, max_draws=max_draws)
    if states is None:
        states = posterior.state_probabilities().argmax(-1)
    states = np.asarray(states)
    if states.shape != np.shape(posterior.emissions):
        raise ValueError(f"states must have the emissions' shape {np.shape(posterior.emissions)}, got {states.shape}")
    observed = np.asarray(posterior.mask, bool) & posterior.valid_steps()
    x = np.asarray(posterior.inputs, dtype=float)[..., input_index][observed]
    y = np.asarray(posterior.emissions, dtype=float)[observed]
    states = states[observed]

    num_states = posterior.num_states
    colors = state_colors(num_states)
    per_class = curves.mean.ndim == 3
    num_panels = curves.mean.shape[-1] if per_class else 1
    label_template, is_probability = family.mean_label, family.mean_is_probability
    x_label = _coordinate("input", input_index, input_names, short=False)
    fig = Figure(figsize=(max(7.5, min(4.4 * num_panels, 14.0) + 2.4), 4.5), layout="constrained")
    axes = fig.subplots(1, num_panels, sharey=True, squeeze=False)[0]
    for c, ax in enumerate(axes):
        part = (lambda values, c=c: values[..., c]) if per_class else (lambda values: values)
        target = (y == c).astype(float) if per_class else y
        if family.discrete:
            for k, (x_means, y_means) in enumerate(_binned_means(x, target, states, num_states)):
                ax.plot(x_means, y_means, "o", color=colors[k], markeredgecolor="black", markersize=5, zorder=4)
        else:
            for k in range(num_states):
                chosen = states == k
                ax.scatter(x[chosen], target[chosen], s=10, color=colors[k], alpha=0.45, linewidths=0, zorder=1)
        mean, lower, upper = part(curves.mean), part(curves.lower), part(curves.upper)
        for k in range(num_states):
            ax.fill_between(curves.grid, lower[:, k], upper[:, k], color=colors[k], alpha=0.22, lw=0, zorder=2)
            (line,) = ax.plot(curves.grid, mean[:, k], color=colors[k], lw=2.2, zorder=3)
            line.set_gid(f"posterior-mean-state-{k}")
            if curves.em is not None:
                (em_line,) = ax.plot(curves.grid, part(curves.em)[:, k], zorder=5, **_EM_CURVE_STYLE)
                em_line.set_gid(f"em-state-{k}")
        if is_probability:
            ax.set_ylim(-0.03, 1.03)
        elif family.discrete:
            ax.set_ylim(bottom=0)  # counts: rates are positive
        ax.set_xlabel(x_label)
        ax.set_ylabel(label_template.format(c=c))
        ax.grid(alpha=0.3)
        if per_class:
            ax.set_title(f"class {c}" + (" (the reference)" if c == 0 else ""))

    data_label = "binned data mean" if family.discrete else "data"
    handles = [
        Line2D([], [], color="0.3", lw=2.2, label="posterior mean"),
        Patch(facecolor="0.3", alpha=0.22, label=f"{100 * prob:g}% band"),
        Line2D([], [], marker="o", color="0.3", ls="none", label=f"{data_label} (by state)"),
    ]
    if curves.em is not None:
        handles.append(Line2D([], [], label="EM estimate", **_EM_CURVE_STYLE))
    fig.legend(handles=handles + _state_handles(num_states), loc="outside right center", fontsize="small")
    notes = [f"{family.name} family"]
    if per_class:
        notes.append("class 0 is the reference of the weights")
    if input_dim > 1:
        notes.append("other inputs at their observed mean")
    fig.suptitle(f"Emission curves per state against {x_label}\n({'; '.join(notes)})", fontsize="medium")
    return fig


# --- input-driven transitions -------------------------------------------------------------------------


class TransitionCurves(NamedTuple):
    """The posterior of the transition probabilities along one transition input, the others at their mean.

    Attributes:
        grid: (G,) values of the chosen transition input.
        transition_inputs: (G, M) the transition input vectors along the grid.
        mean: (G, K, K) posterior mean of p(z_{t+1} = j | z_t = i, u) at ``[g, i, j]``.
        lower: the (1 - prob) / 2 quantile over the draws, same shape.
        upper: the (1 + prob) / 2 quantile over the draws, same shape.
        draw_indices: (S,) the draws used, as indices into the (chain * draw) flattened draws.
    """

    grid: np.ndarray
    transition_inputs: np.ndarray
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    draw_indices: np.ndarray


def _transition_steps(posterior: "Posterior") -> np.ndarray:
    """(S, M) the transition inputs of every step t that drives a transition t -> t+1 inside a sequence."""
    transition_inputs = getattr(posterior, "transition_inputs", None)
    if transition_inputs is None:
        raise ValueError("posterior has stationary transitions: fit with transition_inputs to plot them against inputs")
    valid = posterior.valid_steps()
    return np.asarray(transition_inputs, dtype=float)[:, :-1][valid[:, 1:]]


def _thinned_draws(posterior: "Posterior", max_draws: int) -> np.ndarray:
    """At most ``max_draws`` indices evenly spaced through the (chain * draw) flattened draws."""
    if max_draws < 1:
        raise ValueError(f"max_draws must be at least 1, got {max_draws}")
    total = posterior.num_chains * posterior.num_draws
    return np.unique(np.round(np.linspace(0, total - 1, min(total, max_draws))).astype(int))


def transition_probability_curves(
    posterior: "Posterior",
    input_index: int = 0,
    grid=None,
    prob: float = 0.9,
    num_points: int = 101,
    max_draws: int = 400,
) -> TransitionCurves:
    """Posterior mean and equal-tailed band of p(z_{t+1} = j | z_t = i, u) along one transition input.

    Along ``grid`` (values of transition input ``input_index``; the other transition inputs held
    at their mean over the steps that drive a transition), the transition matrices
    softmax_j(log A[i, j] + V[i, j] . u) of :func:`bayes_glmhmm.transitions.transition_matrices`
    are computed for each of at most ``max_draws`` draws, evenly spaced through the (chain * draw)
    flattened draws, and summarized per grid point.

    Args:
        posterior: a :class:`~bayes_glmhmm.posterior.Posterior` with input-driven transitions.
        input_index: the transition input m along which the curves run.
        grid: values of that input; by default ``num_points`` from its smallest to its largest value
            over the steps that drive a transition.
        prob: mass of the equal-tailed band.
        num_points: grid points G of the default grid.
        max_draws: the most draws used (thinned evenly when there are more).

    Returns:
        :class:`TransitionCurves`.

    Raises:
        ValueError: for a stationary posterior, an ``input_index`` out of range, a ``grid`` that is
            not a non-empty 1-D array of finite numbers, a ``prob`` outside (0, 1), or a
            ``num_points`` or ``max_draws`` below 2 or 1.
    """
    import jax
    import jax.numpy as jnp

    from bayes_glmhmm.transitions import transition_matrices

    steps = _transition_steps(posterior)
    if isinstance(input_index, bool) or not isinstance(input_index, (int, np.integer)):
        raise ValueError(f"input_index must be an integer in [0, {steps.shape[-1]}), got {input_index!r}")
    if not 0 <= input_index < steps.shape[-1]:
        raise ValueError(f"input_index must lie in [0, {steps.shape[-1]}), the transition inputs, got {input_index}")
    if not 0 < prob < 1:
        raise ValueError(f"prob must lie in (0, 1), got {prob}")
    if grid is None:
        if num_points < 2:
            raise ValueError(f"num_points must be at least 2, got {num_points}")
        grid = np.linspace(steps[:, input_index].min(), steps[:, input_index].max(), num_points)
    else:
        try:
            grid = np.asarray(grid, dtype=float)
        except (TypeError, ValueError):
            raise ValueError("grid must be a 1-D array of numbers") from None
        if grid.ndim != 1 or grid.size < 1 or not np.all(np.isfinite(grid)):
            raise ValueError(f"grid must be a non-empty 1-D array of finite numbers, got shape {grid.shape}")
    transition_inputs = np.tile(steps.mean(axis=0), (grid.size, 1))
    transition_inputs[:, input_index] = grid

    draw_indices = _thinned_draws(posterior, max_draws)
    total = posterior.num_chains * posterior.num_draws

    def _flat(name):
        value = np.asarray(posterior.samples[name])
        return jnp.asarray(value.reshape((total, *value.shape[2:]))[draw_indices])

    matrix, weights = _flat("transition_matrix"), _flat("transition_weights")
    # transition_matrices reads u_t of steps t = 0..T-2: give each grid point a two-step "sequence".
    two_steps = jnp.asarray(np.stack([transition_inputs, np.zeros_like(transition_inputs)], axis=1), weights.dtype)
    per_draw = jax.vmap(transition_matrices, in_axes=(0, 0, None))(matrix, weights, two_steps)
    per_draw = np.asarray(per_draw, dtype=float)[:, :, 0]  # (S, G, K, K)
    lower, upper = np.quantile(per_draw, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    return TransitionCurves(grid, transition_inputs, per_draw.mean(axis=0), lower, upper, draw_indices)


def plot_transition_probabilities(
    posterior: "Posterior",
    input_index: int = 0,
    grid=None,
    input_names: Sequence[str] | None = None,
    prob: float = 0.9,
    *,
    max_draws: int = 400,
    num_points: int = 101,
) -> Figure:
    """Transition probabilities against one transition input: one panel per origin state i.

    Panel i draws, for every destination j, p(z_{t+1} = j | z_t = i, u) against transition input
    ``input_index`` (the others held at their mean): the posterior mean (line, in state j's colour)
    and the equal-tailed ``prob`` band over the draws (see :func:`transition_probability_curves`).
    The curve j = i is the probability of staying.

    Args:
        posterior: a :class:`~bayes_glmhmm.posterior.Posterior` with input-driven transitions.
        input_index: the transition input m along the x axis.
        grid: values of that input (default: its observed range).
        input_names: optional names of the M transition inputs; the x axis is labelled with the chosen one.
        prob: mass of the band.
        max_draws: the most posterior draws evaluated (thinned evenly when there are more).
        num_points: grid points of the default grid.

    Returns:
        A figure with one axes per origin state (at most four per row).

    Raises:
        ValueError: as :func:`transition_probability_curves`, or for ``input_names`` of the wrong length.
    """
    num_inputs = _transition_steps(posterior).shape[-1]
    if input_names is not None and len(input_names) != num_inputs:
        raise ValueError(f"input_names has {len(input_names)} names, the posterior {num_inputs} transition inputs")
    curves = transition_probability_curves(posterior, input_index, grid, prob, num_points, max_draws)
    num_states = posterior.num_states
    colors = state_colors(num_states)
    x_label = str(input_names[input_index]) if input_names is not None else f"transition input {input_index}"
    num_cols = min(num_states, 4)
    num_rows = int(np.ceil(num_states / num_cols))
    fig = Figure(figsize=(3.6 * num_cols + 1.8, 3.3 * num_rows + 0.8), layout="constrained")
    axes = fig.subplots(num_rows, num_cols, sharey=True, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        if i >= num_states:
            ax.set_visible(False)
            continue
        for j in range(num_states):
            if curves.grid.size > 1:
                ax.fill_between(
                    curves.grid, curves.lower[:, i, j], curves.upper[:, i, j], color=colors[j], alpha=0.22, lw=0
                )
                (line,) = ax.plot(
                    curves.grid, curves.mean[:, i, j], color=colors[j], lw=2.2, ls="-" if i != j else "--"
                )
            else:  # a single grid point: a dot and an interval
                ax.plot(curves.grid.repeat(2), [curves.lower[0, i, j], curves.upper[0, i, j]], color=colors[j], lw=2)
                (line,) = ax.plot(curves.grid, curves.mean[:, i, j], "o", color=colors[j])
            line.set_gid(f"posterior-mean-from-{i}-to-{j}")
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(f"from state {i}")
        ax.set_xlabel(x_label)
        ax.set_ylabel(f"p(z[t+1] = j | z[t] = {i}, u[t])")
        ax.grid(alpha=0.3)
    handles = [
        Line2D([], [], color="0.3", lw=2.2, label="posterior mean"),
        Line2D([], [], color="0.3", lw=2.2, ls="--", label="staying (j = i)"),
        Patch(facecolor="0.3", alpha=0.22, label=f"{100 * prob:g}% band"),
        *(Patch(facecolor=colors[j], label=f"to state {j}") for j in range(num_states)),
    ]
    fig.legend(handles=handles, loc="outside right center", fontsize="small")
    note = "; other transition inputs at their mean" if num_inputs > 1 else ""
    fig.suptitle(f"Transition probabilities against {x_label}{note}", fontsize="medium")
    return fig


# --- parameter figures: names, dims and labels from the emission family ------------------------------


@functools.cache
def _registered_families() -> tuple:
    """One family of each registered kind (those that need C with C = 2), for samples given without a family."""
    from bayes_glmhmm.emissions import FAMILY_NAMES, get_family

    families = []
    for name in FAMILY_NAMES:
        try:
            families.append(get_family(name))
        except ValueError:  # a family that needs its number of classes
            families.append(get_family(name, num_classes=2))
    return tuple(families)


def _families_for(family) -> tuple:
    return (family,) if family is not None else _registered_families()


def _family_of_references(family, *references):
    """The family given, else the family of the first reference params given (truth, EM), else None."""
    if family is not None:
        return family
    from bayes_glmhmm.emissions import family_of

    for params in references:
        if params is not None:
            return family_of(params)
    return None


def _display_names(samples: Mapping, family) -> list[str]:
    """The parameters present in ``samples``, in display order: the emission parameters, then the HMM's.

    Without a family, the extra emission parameters are those of every registered family (e.g. the
    Gaussian's noise scales); other keys are left out.
    """
    extras = dict.fromkeys(name for candidate in _families_for(family) for name in candidate.extra_names)
    order = ("weights", "biases", *extras, *_HMM_NAMES)
    return [name for name in order if name in samples]


def _dims_of(name: str, trailing_ndim: int, family) -> list[str] | None:
    """ArviZ dims of a parameter's trailing axes (``state``, ``next_state``, ``class``, ``input``).

    The family's; without one, those of the first registered family whose parameter ``name`` has
    that many axes (so (K, C - 1, D) weights read as categorical). None for an unknown variable.
    """
    for candidate in _families_for(family):
        dims = candidate.param_dims().get(name)
        if dims is not None and len(dims) == trailing_ndim:
            return list(dims)
    return None


def _is_positive(name: str, family) -> bool:
    """Whether the family declares ``name`` positive (e.g. noise scales): its axis then starts at 0."""
    return any(dict(candidate.extra_supports).get(name) == "positive" for candidate in _families_for(family))


#: Short (tick) and long (element name) labels of coordinate ``i`` along each dim. The ``class``
#: dim holds the non-reference classes 1..C-1, so its coordinate i is class i + 1.
_COORDINATE_LABELS = {
    "state": ("{i}", "state {i}"),
    "next_state": ("→{i}", "to state {i}"),
    "class": ("c{c}", "class {c}"),
    "input": ("{i}", "input {i}"),
}
_AXIS_WORDS = {"state": "state k", "next_state": "to state j", "class": "class c (vs class 0)", "input": "input d"}


def _coordinate(dim: str, i: int, input_names, short: bool) -> str:
    if dim == "input" and input_names is not None:
        return str(input_names[i])
    template = _COORDINATE_LABELS.get(dim, ("{i}", f"{dim} {{i}}"))[0 if short else 1]
    return template.format(i=i, c=i + 1)


def _short_label(dims: Sequence[str], index: tuple, input_names) -> str:
    """Tick label of one element, e.g. ``1``, ``0→2`` or ``1,c2``."""
    label = ""
    for dim, i in zip(dims, index, strict=True):
        part = _coordinate(dim, i, input_names, short=True)
        label += part if not label or part.startswith("→") else "," + part
    return label


def _element_labels(name: str, shape: tuple[int, ...], family=None, input_names=None) -> list[str]:
    """Names of the scalar elements of a parameter, e.g. ``weights[state 1, class 2, contrast]``."""
    if not shape:
        return [name]
    dims = _dims_of(name, len(shape), family)
    if dims is None:
        return [f"{name}[{','.join(str(i) for i in index)}]" for index in np.ndindex(*shape)]
    _check_input_names(input_names, dims, shape)
    labels = []
    for index in np.ndindex(*shape):
        parts = [_coordinate(dim, i, input_names, short=False) for dim, i in zip(dims, index, strict=True)]
        labels.append(f"{name}[{', '.join(parts)}]")
    return labels


def _check_input_names(input_names, dims, shape) -> None:
    """Raise ValueError unless ``input_names`` (if given) names every input of a parameter with these dims."""
    if input_names is not None and "input" in dims and len(input_names) != shape[dims.index("input")]:
        raise ValueError(
            f"input_names has {len(input_names)} names, the parameters have {shape[dims.index('input')]} inputs"
        )


class _Panel(NamedTuple):
    """One axes of a parameter figure: some elements of one parameter."""

    name: str
    title: str
    shape: tuple  # the parameter's shape per draw
    entries: list  # index tuples (into ``shape``) of the elements drawn
    draws: np.ndarray  # (chain, draw, len(entries))
    ticks: list
    owners: list  # the state of each element, its colour
    xlabel: str


def _panels(samples: Mapping, names: Sequence[str], family, input_names) -> list[_Panel]:
    """One panel per parameter; the weights get one panel per input.

    Inputs have their own units, so the weights of one input can be orders of magnitude larger than
    another's; on a shared axis the small ones would be squashed flat.
    """
    panels = []
    for name in names:
        draws = np.asarray(samples[name], dtype=float)
        if name == "weights" and draws.ndim == 3:
            draws = draws[..., None]  # (C, S, K): one input given without its axis
        if draws.ndim < 3:
            raise ValueError(f"samples[{name!r}] must have shape (chain, draw, state, ...), got {draws.shape}")
        shape = draws.shape[2:]
        dims = _dims_of(name, len(shape), family) or ["state"] + [f"axis {i}" for i in range(1, len(shape))]
        _check_input_names(input_names, dims, shape)
        split = dims.index("input") if "input" in dims else None
        shown = [dim for position, dim in enumerate(dims) if position != split]
        groups = [None] if split is None else range(shape[split])
        for group in groups:
            entries = [index for index in np.ndindex(*shape) if group is None or index[split] == group]
            title = _PARAM_TITLES.get(name, name) + (" (class c vs class 0)" if "class" in dims else "")
            if group is not None and (shape[split] > 1 or input_names is not None):
                title += f": {_coordinate('input', group, input_names, short=False)}"
            shown_index = [tuple(i for position, i in enumerate(index) if position != split) for index in entries]
            xlabel = (
                "from state i → to state j"
                if "next_state" in shown
                else ", ".join(_AXIS_WORDS.get(dim, dim) for dim in shown)
            )
            panels.append(
                _Panel(
                    name=name,
                    title=title,
                    shape=shape,
                    entries=entries,
                    draws=np.stack([draws[(slice(None), slice(None), *index)] for index in entries], axis=-1),
                    ticks=[_short_label(shown, index, input_names) for index in shown_index],
                    owners=[index[0] for index in entries],
                    xlabel=xlabel,
                )
            )
    return panels


def _reference_values(params, panel: _Panel, label: str) -> np.ndarray:
    """The elements of ``panel`` in reference parameters (truth, EM), checking the parameter's size."""
    value = np.asarray(getattr(params, panel.name), dtype=float)
    size = int(np.prod(panel.shape))
    if value.size != size:
        raise ValueError(f"{panel.name} of the {label} parameters has {value.size} entries, the samples have {size}")
    value = value.reshape(panel.shape)
    return np.array([value[index] for index in panel.entries])


def plot_parameter_posteriors(
    samples: Mapping[str, np.ndarray],
    true_params=None,
    em_params=None,
    interval: float = 0.94,
    family: "EmissionFamily | None" = None,
    input_names: Sequence[str] | None = None,
) -> Figure:
    """Posterior of every parameter per state, against the truth and the EM estimate.

    Each panel is one parameter group (the weights of one input, biases, the family's extra
    parameters such as noise scales, initial probabilities, transition matrix entries); each
    element shows the posterior median (dot), the central 50% interval (thick bar) and the
    equal-tailed ``interval`` (thin bar, 3%..97% for 0.94), pooled over chains and draws and
    coloured by state (by the "from" state for transitions). The weights of each input get a panel
    of their own, on its own scale.

    Args:
        samples: dict of (C, S, ...) draws keyed by the family's parameter names, e.g.
            ``Posterior.samples``: ``initial_probs`` (C, S, K), ``transition_matrix`` (C, S, K, K),
            ``weights`` (C, S, K, D) or (C, S, K, C - 1, D) for the categorical family, ``biases``
            and extra parameters such as ``scales``; groups that are missing are skipped, other
            keys ignored.
        true_params: optional params of the family aligned to the samples' labels, drawn as open
            diamonds.
        em_params: optional EM estimate, aligned likewise, drawn as crosses.
        interval: mass of the thin equal-tailed interval.
        family: the :class:`~bayes_glmhmm.emissions.EmissionFamily`; by default that of
            ``true_params`` or ``em_params``, else read from the samples' names and shapes.
        input_names: optional names of the D inputs, used in titles and labels.

    Returns:
        A figure with one axes per parameter group present.
    """
    family = _family_of_references(family, true_params, em_params)
    names = _display_names(samples, family)
    if not names:
        raise ValueError(f"samples holds no GLM-HMM parameter, got keys {sorted(samples)}")
    if not 0 < interval < 1:
        raise ValueError(f"interval must lie in (0, 1), got {interval}")
    panels = _panels(samples, names, family, input_names)
    num_states = panels[0].shape[0]
    colors = state_colors(num_states)
    tail = 100 * (1 - interval) / 2

    # Small panels fill a grid of up to three columns; the transition entries (K^2 of them) take
    # the rest of the last row if at least two cells are free there, else a full row of their own.
    small = [panel for panel in panels if panel.name != "transition_matrix"]
    wide = [panel for panel in panels if panel.name == "transition_matrix"]
    num_cols = min(3, max(len(small), 2 if wide else 1))
    num_small_rows = int(np.ceil(len(small) / num_cols))
    used_in_last = len(small) - (num_small_rows - 1) * num_cols if small else num_cols
    share_last_row = bool(wide) and num_cols - used_in_last >= 2
    num_rows = num_small_rows + int(bool(wide) and not share_last_row)
    fig = Figure(figsize=(4.3 * num_cols + 1.5, 3.3 * num_rows + 0.6), layout="constrained")
    grid = fig.add_gridspec(num_rows, num_cols)
    placed = [(panel, fig.add_subplot(grid[i // num_cols, i % num_cols])) for i, panel in enumerate(small)]
    if wide:
        cells = grid[num_rows - 1, used_in_last:] if share_last_row else grid[num_rows - 1, :]
        placed.append((wide[0], fig.add_subplot(cells)))

    for panel, ax in placed:
        flat = panel.draws.reshape(-1, len(panel.entries))
        position = np.arange(flat.shape[1])
        low, q25, median, q75, high = np.percentile(flat, [tail, 25, 50, 75, 100 - tail], axis=0)
        for e, owner in enumerate(panel.owners):
            ax.plot([e, e], [low[e], high[e]], color=colors[owner], lw=1.3, solid_capstyle="butt")
            ax.plot([e, e], [q25[e], q75[e]], color=colors[owner], lw=4.5, solid_capstyle="butt")
        ax.scatter(position, median, s=26, color="white", edgecolors=[colors[o] for o in panel.owners], zorder=3)
        for params, style, offset in ((true_params, _TRUTH_STYLE, 0.25), (em_params, _EM_STYLE, -0.25)):
            if params is not None:
                ax.plot(position + offset, _reference_values(params, panel, "reference"), zorder=4, **style)
        crowded = flat.shape[1] > 12
        ax.set_xticks(position, panel.ticks, rotation=90 if crowded else 0, fontsize="small" if crowded else None)
        ax.set_xlim(-0.6, flat.shape[1] - 0.4)
        if panel.name in _HMM_NAMES:
            ax.set_ylim(-0.03, 1.03)
        elif _is_positive(panel.name, family):
            ax.set_ylim(bottom=0)
        else:
            ax.axhline(0, color="0.5", lw=0.6, zorder=0)
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(panel.title)
        ax.set_ylabel("probability" if panel.name in _HMM_NAMES else "value")
        ax.set_xlabel(panel.xlabel)
        if panel.name == "transition_matrix":
            for boundary in range(1, num_states):
                ax.axvline(boundary * num_states - 0.5, color="0.7", lw=0.8, zorder=0)

    handles = [
        Line2D([], [], color="0.3", marker="o", markerfacecolor="white", lw=4.5, label="median, 50% interval"),
        Line2D([], [], color="0.3", lw=1.3, label=f"{100 * interval:.0f}% interval ({tail:g}%..{100 - tail:g}%)"),
    ]
    if true_params is not None:
        handles.append(Line2D([], [], label="truth", **_TRUTH_STYLE))
    if em_params is not None:
        handles.append(Line2D([], [], label="EM estimate", **_EM_STYLE))
    handles += _state_handles(num_states)
    fig.legend(handles=handles, loc="outside right upper", fontsize="small")
    fig.suptitle("Posterior of the parameters (pooled over chains)")
    return fig


def plot_transition_matrices(
    matrices: Mapping[str, np.ndarray], spreads: Mapping[str, np.ndarray] | None = None
) -> Figure:
    """Side-by-side heatmaps of transition matrices on a shared 0..1 colour scale.

    Args:
        matrices: title -> (K, K) matrix with rows "from" and columns "to", e.g.
            ``{"truth": P, "EM": P_em, "posterior mean": P_mean}``.
        spreads: optional title -> (K, K) spread (e.g. posterior standard deviation), written as
            "± sd" under the value of the matrix with the same title.

    Returns:
        A figure with one axes per matrix and one colour bar axes.
    """
    if not matrices:
        raise ValueError("matrices must hold at least one matrix")
    spreads = dict(spreads or {})
    unknown = set(spreads) - set(matrices)
    if unknown:
        raise ValueError(f"spreads has titles that are not in matrices: {sorted(unknown)}")
    arrays = {title: np.asarray(matrix, dtype=float) for title, matrix in matrices.items()}
    for title, matrix in arrays.items():
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"matrix {title!r} must be square (K, K), got shape {matrix.shape}")
    num_states = max(matrix.shape[0] for matrix in arrays.values())
    cell = 0.55 if num_states > 6 else 0.85
    side = max(2.6, cell * num_states + 1.0)
    fig = Figure(figsize=(side * len(arrays) + 1.2, side + 0.7), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(arrays), squeeze=False)[0])
    cmap = "cividis"
    image = None
    fontsize = "small" if num_states <= 5 else "x-small"
    for ax, (title, matrix) in zip(axes, arrays.items(), strict=True):
        image = ax.imshow(matrix, cmap=cmap, vmin=0.0, vmax=1.0)
        spread = None if title not in spreads else np.asarray(spreads[title], dtype=float)
        if spread is not None and spread.shape != matrix.shape:
            raise ValueError(f"spread {title!r} has shape {spread.shape}, its matrix {matrix.shape}")
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                text = f"{matrix[i, j]:.2f}"
                if spread is not None:
                    text += f"\n± {spread[i, j]:.2f}"
                # cividis is dark below about 0.5, so white text there and black above.
                color = "white" if matrix[i, j] < 0.5 else "black"
                ax.text(j, i, text, ha="center", va="center", color=color, fontsize=fontsize)
        ticks = np.arange(matrix.shape[0])
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        ax.set_xlabel("to state j")
        ax.set_ylabel("from state i")
        ax.set_title(title)
    fig.colorbar(image, ax=list(axes), shrink=0.85, label="$P_{ij}$")
    fig.suptitle("Transition matrices")
    return fig


# Truth, EM and posterior bars: grey, orange and blue stay apart for colour-blind readers and
# from none of the state colours is meaning borrowed (the x axis names the state).
_BAR_STYLES = {
    "truth": {"color": "0.82", "edgecolor": "black", "hatch": "//"},
    "EM": {"color": "#E69F00", "edgecolor": "black"},
    "posterior mean": {"color": "#0072B2", "edgecolor": "black"},
}


def plot_parameter_bars(
    truth,
    em_params,
    samples: Mapping[str, np.ndarray],
    prob: float = 0.94,
    family: "EmissionFamily | None" = None,
    input_names: Sequence[str] | None = None,
) -> Figure:
    """The article's parameter-recovery bar charts, with the posterior's intervals added.

    One panel per parameter group (the weights of each input, biases, the family's extra
    parameters such as noise scales, initial probabilities), one group of bars per element: the
    generating value, the EM estimate and the posterior mean, the latter with an error bar from
    the (1 - prob) / 2 to the (1 + prob) / 2 posterior quantile (3%..97% for 0.94), pooled over
    chains and draws. All three must share one labeling, e.g.
    ``em.permute(match_params(em, truth))`` and ``posterior.permute(...)`` likewise (the article
    permutes the truth instead, in the direction that is right only for self-inverse
    permutations).

    Args:
        truth: params of the generator (any family's NamedTuple), or None to leave its bars out.
        em_params: params of the EM estimate, or None to leave its bars out.
        samples: dict of (C, S, ...) draws keyed by parameter name with at least ``weights``,
            ``biases``, ``initial_probs`` and the family's extra parameters (e.g. ``scales``);
            ``transition_matrix`` and other keys are ignored.
        prob: mass of the central posterior interval drawn as the error bar.
        family: the emission family; by default that of ``truth`` or ``em_params``, else read from
            the samples' names and shapes.
        input_names: optional names of the D inputs.

    Returns:
        A figure with one axes per panel in two columns (2 x 2 for the article's Gaussian, D = 1).
    """
    if not 0 < prob < 1:
        raise ValueError(f"prob must lie in (0, 1), got {prob}")
    family = _family_of_references(family, truth, em_params)
    required = ("weights", "biases", *(family.extra_names if family is not None else ()), "initial_probs")
    missing = [name for name in required if name not in samples]
    if missing:
        raise ValueError(f"samples lacks {missing}")
    names = [name for name in _display_names(samples, family) if name != "transition_matrix"]
    panels = _panels(samples, names, family, input_names)
    num_cols = 2
    num_rows = int(np.ceil(len(panels) / num_cols))
    fig = Figure(figsize=(11.5, 3.5 * num_rows), layout="constrained")
    grid = fig.add_gridspec(num_rows, num_cols)
    low_q, high_q = (1 - prob) / 2, (1 + prob) / 2
    axes = []
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(grid[i // num_cols, i % num_cols])
        axes.append(ax)
        flat = panel.draws.reshape(-1, len(panel.entries))
        mean = flat.mean(axis=0)
        low, high = np.quantile(flat, [low_q, high_q], axis=0)
        series = [
            (label, _reference_values(params, panel, label), None)
            for label, params in (("truth", truth), ("EM", em_params))
            if params is not None
        ]
        series.append(("posterior mean", mean, np.stack([mean - low, high - mean])))
        position = np.arange(flat.shape[1])
        width = 0.8 / len(series)
        for s, (label, heights, errors) in enumerate(series):
            offset = (s - (len(series) - 1) / 2) * width
            ax.bar(position + offset, heights, width, label=label, alpha=0.9, lw=0.6, **_BAR_STYLES[label])
            if errors is not None:
                ax.errorbar(
                    position + offset, heights, yerr=np.maximum(errors, 0.0), fmt="none", ecolor="black", capsize=3
                )
        states_only = panel.xlabel == "state k"
        ax.set_xticks(position, [f"state {tick}" if states_only else tick for tick in panel.ticks])
        ax.axhline(0, color="0.4", lw=0.6)
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(panel.title)
        ax.set_xlabel("state" if states_only else panel.xlabel)
        ax.set_ylabel("probability" if panel.name in _HMM_NAMES else "value")
    handles, labels = axes[0].get_legend_handles_labels()
    labels = [f"{label} ({100 * prob:g}% interval)" if label == "posterior mean" else label for label in labels]
    fig.legend(handles, labels, loc="outside right upper", fontsize="small")
    fig.suptitle("Parameter recovery: generator vs EM vs posterior")
    return fig


_CHAIN_COLORS = ("#0072B2", "#E69F00", "#CC79A7", "#000000", "#56B4E9", "#D55E00", "#009E73", "#F0E442")


def _chain_colors(num_chains: int) -> list[str]:
    # Chains have no meaning to match across figures, so black comes fourth: four chains are
    # common and blue next to bluish green is hard to tell apart in overlaid traces.
    return [_CHAIN_COLORS[c % len(_CHAIN_COLORS)] for c in range(num_chains)]


def plot_trace(
    samples: Mapping[str, np.ndarray],
    var_names: Sequence[str] | None = None,
    max_elements: int = 36,
    family: "EmissionFamily | None" = None,
    input_names: Sequence[str] | None = None,
) -> Figure:
    """Trace and per-chain histogram of every scalar element of the chosen variables.

    A quick look without ArviZ. Elements are laid out in up to three column pairs (histogram,
    trace); at most ``max_elements`` elements are drawn and the title says when some were left out.
    Elements of the family's parameters are named by their dims, e.g.
    ``weights[state 1, class 2, contrast]``.

    Args:
        samples: dict of (C, S, ...) arrays (C chains, S draws).
        var_names: variables to show, in order; by default the GLM-HMM parameters present in
            ``samples`` (weights, biases, the family's extra parameters, initial_probs,
            transition_matrix), else every key.
        max_elements: cap on the number of scalar elements drawn.
        family: the emission family, for the dims of its parameters; by default read from the
            samples' names and shapes.
        input_names: optional names of the D inputs.

    Returns:
        A figure with two axes (histogram, trace) per element drawn.
    """
    if var_names is None:
        var_names = _display_names(samples, family) or list(samples)
    missing = [name for name in var_names if name not in samples]
    if missing:
        raise ValueError(f"var_names not in samples: {missing}")
    if max_elements < 1:
        raise ValueError(f"max_elements must be >= 1, got {max_elements}")
    elements = []
    for name in var_names:
        values = np.asarray(samples[name], dtype=float)
        if values.ndim < 2:
            raise ValueError(f"samples[{name!r}] must have shape (chain, draw, ...), got {values.shape}")
        flat = values.reshape(values.shape[0], values.shape[1], -1)
        labels = _element_labels(name, values.shape[2:], family, input_names)
        elements += [(label, flat[:, :, e]) for e, label in enumerate(labels)]
    if not elements:
        raise ValueError("no variables to plot")
    total = len(elements)
    elements = elements[:max_elements]
    num_pairs = 1 if len(elements) <= 8 else (2 if len(elements) <= 24 else 3)
    num_rows = int(np.ceil(len(elements) / num_pairs))
    fig = Figure(figsize=(6.5 * num_pairs, 1.45 * num_rows + 1.0), layout="constrained")
    grid = fig.add_gridspec(num_rows, 2 * num_pairs, width_ratios=[1, 2.2] * num_pairs)
    num_chains = elements[0][1].shape[0]
    colors = _chain_colors(num_chains)
    for index, (label, values) in enumerate(elements):
        row, pair = index % num_rows, index // num_rows
        ax_hist = fig.add_subplot(grid[row, 2 * pair])
        ax_trace = fig.add_subplot(grid[row, 2 * pair + 1])
        finite = values[np.isfinite(values)]
        low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        bins = np.linspace(low, high, 31) if high > low else 10
        for c in range(values.shape[0]):
            chain = values[c][np.isfinite(values[c])]
            if chain.size:
                ax_hist.hist(chain, bins=bins, histtype="step", density=True, color=colors[c], lw=1.0)
            ax_trace.plot(values[c], color=colors[c], lw=0.5, alpha=0.8)
        ax_hist.set_yticks([])
        ax_hist.set_ylabel(label, rotation=0, ha="right", va="center", fontsize="small")
        ax_trace.set_ylabel("value", fontsize="x-small")
        ax_hist.tick_params(labelsize="x-small")
        ax_trace.tick_params(labelsize="x-small")
        last_in_column = row == num_rows - 1 or index == len(elements) - 1
        if last_in_column:
            ax_hist.set_xlabel("value (density per chain)", fontsize="small")
            ax_trace.set_xlabel("draw", fontsize="small")
    handles = [Line2D([], [], color=colors[c], lw=1.5, label=f"chain {c}") for c in range(num_chains)]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(num_chains, 8), fontsize="small")
    note = f" (first {len(elements)} of {total} elements)" if total > len(elements) else ""
    fig.suptitle(f"Traces{note}")
    return fig


def plot_lp_by_chain(
    lp, stuck_chains: Sequence[int] | None = None, threshold: float | None = None, title: str = "Log density by chain"
) -> Figure:
    """Log density of the draws per chain, to spot a chain stuck in an inferior mode.

    Left, the log density against the draw, one line per chain; right, its distribution per chain
    (box of the quartiles, whiskers at 3%..97%) with the level below which a chain counts as stuck
    (see :func:`bayes_glmhmm.posterior.detect_stuck_chains`).

    Args:
        lp: (C, S) log density of each draw of each chain.
        stuck_chains: chains to mark as stuck; None computes them with ``detect_stuck_chains``.
        threshold: nats below the best chain's median at which a chain counts as stuck; None uses
            the default of ``detect_stuck_chains``.
        title: figure title.

    Returns:
        A figure with two axes: traces, then per-chain distributions.
    """
    lp = np.asarray(lp, dtype=float)
    if lp.ndim == 1:
        lp = lp[None]
    if lp.ndim != 2:
        raise ValueError(f"lp must have shape (num_chains, num_draws), got {lp.shape}")
    # mcmc imports NumPyro; import it only when this figure is drawn.
    from bayes_glmhmm.posterior import detect_stuck_chains

    detected, threshold_used = detect_stuck_chains(lp, threshold)
    stuck = set(detected if stuck_chains is None else (int(c) for c in stuck_chains))
    num_chains = lp.shape[0]
    colors = _chain_colors(num_chains)
    cutoff = float(np.max(np.median(lp, axis=1))) - threshold_used

    fig = Figure(figsize=(12, 4.2), layout="constrained")
    ax_trace, ax_box = fig.subplots(1, 2, width_ratios=[2.4, 1])
    for c in range(num_chains):
        label = f"chain {c}" + (" (stuck)" if c in stuck else "")
        ax_trace.plot(lp[c], color=colors[c], lw=0.7, alpha=0.85, ls="--" if c in stuck else "-", label=label)
    ax_trace.set_xlabel("draw")
    ax_trace.set_ylabel("log density")
    ax_trace.set_title("log density over draws")
    ax_trace.grid(alpha=0.3)
    ax_trace.legend(loc="best", fontsize="small", ncols=1 + num_chains // 8)

    boxes = ax_box.boxplot(
        [row[np.isfinite(row)] for row in lp],
        positions=np.arange(num_chains),
        whis=(3, 97),
        showfliers=False,
        patch_artist=True,
        widths=0.6,
    )
    for c, patch in enumerate(boxes["boxes"]):
        patch.set_facecolor(colors[c])
        patch.set_alpha(0.5 if c not in stuck else 0.9)
        patch.set_hatch("//" if c in stuck else "")
    for median_line in boxes["medians"]:
        median_line.set_color("black")
    ax_box.axhline(cutoff, color="black", ls=":", lw=1.2, label=f"stuck below (best median − {threshold_used:.1f})")
    ax_box.set_xticks(np.arange(num_chains), [f"{c}" + ("*" if c in stuck else "") for c in range(num_chains)])
    ax_box.set_xlabel("chain (* stuck)")
    ax_box.set_ylabel("log density")
    ax_box.set_title("per chain: quartiles, 3%..97%")
    ax_box.grid(axis="y", alpha=0.3)
    ax_box.legend(loc="best", fontsize="small")
    stuck_note = f"; stuck chains: {sorted(stuck)}" if stuck else "; no stuck chain"
    fig.suptitle(title + stuck_note)
    return fig


def plot_em_log_probs(log_probs, title: str = "EM training progress") -> Figure:
    """The EM objective per iteration, and its per-iteration increase on a log scale.

    EM never decreases its objective. A decrease larger than rounding (ten machine epsilons of the
    input's dtype, relative to the objective) is drawn on the right panel as a vermillion cross at
    its absolute size, so that it stands out; changes within rounding are left out of that panel.

    Args:
        log_probs: objective per iteration, shape (I,), or (R, I) for R restarts (NaN padding
            after a restart stopped is ignored), e.g. :attr:`bayes_glmhmm.em.EMResult.log_probs`.
        title: figure title.

    Returns:
        A figure with two axes: the objective, then its increase per iteration.
    """
    given = np.asarray(log_probs)
    eps = float(np.finfo(given.dtype).eps) if np.issubdtype(given.dtype, np.floating) else float(np.finfo(float).eps)
    log_probs = given.astype(float)
    if log_probs.ndim == 1:
        log_probs = log_probs[None]
    if log_probs.ndim != 2:
        raise ValueError(f"log_probs must have shape (num_iters,) or (num_restarts, num_iters), got {log_probs.shape}")
    num_runs = log_probs.shape[0]
    colors = ["black"] if num_runs == 1 else _chain_colors(num_runs)

    fig = Figure(figsize=(11, 3.8), layout="constrained")
    ax_objective, ax_delta = fig.subplots(1, 2)
    any_decrease = False
    for r, row in enumerate(log_probs):
        valid = np.isfinite(row)
        iterations = np.flatnonzero(valid)
        label = "EM" if num_runs == 1 else f"restart {r}"
        ax_objective.plot(iterations, row[valid], "--", marker=".", color=colors[r], lw=1, label=label)
        if iterations.size > 1:
            values = row[valid]
            delta = np.diff(values)
            steps = iterations[1:]
            rounding = 10 * eps * np.maximum(np.abs(values[1:]), 1.0)
            increase = delta > rounding
            decrease = delta < -rounding
            ax_delta.plot(steps[increase], delta[increase], marker=".", lw=0.8, color=colors[r], label=label)
            if decrease.any():
                any_decrease = True
                ax_delta.plot(steps[decrease], -delta[decrease], "x", color="#D55E00", markersize=8, markeredgewidth=2)
    ax_objective.set_xlabel("iteration")
    ax_objective.set_ylabel("objective (log probability)")
    ax_objective.set_title("objective")
    ax_objective.grid(alpha=0.3)
    ax_objective.legend(loc="lower right", fontsize="small")
    ax_delta.set_yscale("log")
    ax_delta.set_xlabel("iteration")
    ax_delta.set_ylabel("increase over previous iteration")
    ax_delta.set_title("increase per iteration (log scale)")
    ax_delta.grid(alpha=0.3, which="major")
    if any_decrease:
        ax_delta.plot([], [], "x", color="#D55E00", markersize=8, markeredgewidth=2, label="|decrease| (EM bug?)")
        ax_delta.legend(loc="upper right", fontsize="small")
    fig.suptitle(title)
    return fig


# --- choosing the number of states ------------------------------------------------------------------

#: The two scores of :func:`plot_selection`: (table column, its standard error's column) for Bayes and EM.
_SELECTION_SCORES = {
    "bits_per_trial": (("bits_per_trial", "bits_per_trial_se"), ("em_bits_per_trial", "em_bits_per_trial_se")),
    "elpd": (("elpd", "elpd_se"), ("em_loglik", "em_loglik_se")),
}
_BAYES_COLOR, _EM_COLOR = "#0072B2", "#E69F00"


class _SelectionSeries(NamedTuple):
    """One score of :func:`plot_selection`: gid prefix, name, style, x shift, chosen K, table columns, legend label."""

    gid: str
    name: str
    color: str
    marker: str
    shift: float
    best: int
    column: str
    se_column: str
    label: str


def _draw_selection_series(ax, series: _SelectionSeries, states: np.ndarray, table) -> None:
    """Points with ±1 SE bars of one score against K, and a star at its chosen K."""
    values = table[series.column].to_numpy(dtype=float)
    container = ax.errorbar(
        states + series.shift,
        values,
        yerr=table[series.se_column].to_numpy(dtype=float),
        color=series.color,
        marker=series.marker,
        markeredgecolor="black",
        markersize=7,
        capsize=4,
        lw=1.6,
        label=series.label,
        zorder=3,
    )
    container.lines[0].set_gid(f"{series.gid}-score")
    container.lines[2][0].set_gid(f"{series.gid}-error")
    chosen = int(np.flatnonzero(states == series.best)[0])
    (star,) = ax.plot(
        states[chosen] + series.shift,
        values[chosen],
        marker="*",
        markersize=19,
        color=series.color,
        markeredgecolor="black",
        ls="none",
        zorder=4,
        label=f"chosen by {series.name}: K = {series.best}",
    )
    star.set_gid(f"{series.gid}-chosen")


def plot_selection(selection, ax=None, score: str = "bits_per_trial") -> Figure:
    """Held-out prediction against the number of states K, Bayes and EM side by side, each choice marked.

    The field's figure (Ashwood et al. 2022, Fig. 2): for each K, the held-out bits per trial
    over the family's baseline (``score="bits_per_trial"``, the baseline drawn at 0), or the
    held-out log predictive density in nats (``score="elpd"``), with ±1 standard error bars. Blue
    circles: the Bayesian posterior predictive (PSIS-LOO or k-fold over sequences, as the legend
    says); orange squares, shifted slightly right: the plug-in likelihood of maximum-likelihood EM
    in k-fold cross-validation. A star marks the K each score chose under the selection's rule
    (:attr:`Selection.best` and :attr:`Selection.best_em`).

    Args:
        selection: a :class:`~bayes_glmhmm.selection.Selection`, or its
            :func:`~bayes_glmhmm.selection_io.selection_to_dict` (e.g. ``selection.json`` read back).
        ax: optional axes to draw into; by default a new figure.
        score: ``"bits_per_trial"`` or ``"elpd"``.

    Returns:
        The figure of ``ax`` (a new one with one axes by default). The points carry the gids
        ``bayes-score`` and ``em-score``, their error bars ``bayes-error`` and ``em-error``, the
        stars ``bayes-chosen`` and ``em-chosen``.

    Raises:
        ValueError: for an unknown ``score``.
    """
    from bayes_glmhmm.selection_io import _view, method_label

    if score not in _SELECTION_SCORES:
        raise ValueError(f"score must be one of {sorted(_SELECTION_SCORES)}, got {score!r}")
    view = _view(selection)
    table = view.table
    states = np.asarray(table["num_states"], dtype=float)
    if ax is None:
        fig = Figure(figsize=(10.5, 4.6), layout="constrained")
        ax = fig.subplots()
    else:
        fig = ax.get_figure()
    offset = 0.06 if len(states) < 2 else 0.06 * float(np.min(np.diff(states)))
    folds = view.settings.get("num_folds")
    (bayes_columns, em_columns) = _SELECTION_SCORES[score]
    for series in (
        _SelectionSeries(
            "bayes",
            "Bayes",
            _BAYES_COLOR,
            "o",
            -offset,
            view.best,
            *bayes_columns,
            f"Bayes: posterior predictive, {method_label(view.method, folds)}",
        ),
        _SelectionSeries(
            "em",
            "EM",
            _EM_COLOR,
            "s",
            offset,
            view.best_em,
            *em_columns,
            f"EM: plug-in maximum likelihood, {method_label('kfold', folds)}",
        ),
    ):
        _draw_selection_series(ax, series, states, table)
    if score == "bits_per_trial":
        ax.axhline(0.0, color="0.4", ls=":", lw=1.2, label="baseline (0 bits per trial)")
        ax.set_ylabel(f"held-out bits per trial over the baseline:\n{view.baseline_name or 'the family baseline'}")
    else:
        ax.set_ylabel("held-out log predictive density (nats)\nEM: plug-in log-likelihood")
    ax.set_xticks(states, [str(int(k)) for k in states])
    ax.set_xlim(states.min() - 0.5, states.max() + 0.5)
    ax.set_xlabel("number of states K")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: (labels[i].startswith(("chosen", "baseline")), i))
    ax.legend(
        [handles[i] for i in order],
        [labels[i] for i in order],
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        fontsize="small",
        title=f"±1 SE; choices by rule {view.rule!r}",
        title_fontsize="small",
    )
    what = "bits per trial" if score == "bits_per_trial" else "log predictive density"
    ax.set_title(f"Choosing the number of states: held-out {what}")
    return fig


# --- subjects of a hierarchical posterior ----------------------------------------------------------


def plot_subject_weights(
    posterior,
    state: int,
    input_index: int,
    truth=None,
    point_estimates=None,
    input_names=None,
    order=None,
    subject_labels=None,
    prob: float = 0.94,
) -> Figure:
    """Each subject's GLM weight of one state and input: posterior mean and interval, around the population's.

    For a hierarchical posterior (``fit_nuts(..., subjects=...)``): per subject s, the posterior
    mean of ``subject_weights[s, state, input_index]`` with its equal-tailed ``prob`` interval
    (blue); behind them the population mean mu_w (its posterior mean as a line, its ``prob``
    interval as a band) and, dotted, the posterior mean of mu_w +- tau_w, where the population
    places a typical subject. Subjects whose own data say little sit close to the population line
    (shrinkage); those with much data sit near their own estimate. Optionally the true values
    (open diamonds) and point estimates per subject, e.g. the two-stage EM fit (crosses, one
    marker per estimator).

    Args:
        posterior: a hierarchical :class:`~bayes_glmhmm.posterior.Posterior`, or any object with
            ``samples`` holding ``subject_weights`` (chain, draw, S, K, D), ``weights`` (chain,
            draw, K, D) and ``weight_spread`` (chain, draw, K, D), and ``subjects.names`` (S ids).
        state: the state k whose weights are drawn.
        input_index: the input d whose weights are drawn.
        truth: optional (S,) true weights of the subjects (in the posterior's subject order).
        point_estimates: optional ``{label: (S,) estimates}`` (or one (S,) array, labelled "point
            estimate"); NaN leaves a subject without a marker.
        input_names: optional D names of the inputs (the y label and title); default ``input d``.
        order: optional order of the subjects along the x axis, a permutation of 0..S-1 (e.g. by
            the amount of data of each); default the posterior's order.
        subject_labels: optional S tick labels, in the posterior's subject order; default the ids.
        prob: mass of the intervals, in (0, 1).

    Returns:
        A figure with one axes. Artists carry gids: ``subject-mean``, ``subject-interval``,
        ``population-mean``, ``population-band``, ``truth`` and ``estimate-<i>`` (the i-th point
        estimate), with x positions 0..S-1 in the drawn order.

    Raises:
        ValueError: for a posterior without subjects, non-GLM weights of another shape, an index
            out of range, a bad ``order``, ``prob``, or arrays of the wrong length.
    """
    samples = posterior.samples
    if "subject_weights" not in samples or getattr(posterior, "subjects", None) is None:
        raise ValueError("plot_subject_weights needs a hierarchical posterior (fit_nuts(..., subjects=...))")
    draws = np.asarray(samples["subject_weights"], dtype=float)
    if draws.ndim != 5:
        raise ValueError(
            f"subject_weights must have shape (chain, draw, S, K, D) (one weight vector per state), got {draws.shape}"
        )
    num_subjects, num_states, input_dim = draws.shape[2:]
    if not 0 <= state < num_states:
        raise ValueError(f"state must lie in 0..{num_states - 1}, got {state}")
    if not 0 <= input_index < input_dim:
        raise ValueError(f"input_index must lie in 0..{input_dim - 1}, got {input_index}")
    if not 0.0 < prob < 1.0:
        raise ValueError(f"prob must lie in (0, 1), got {prob}")
    if input_names is not None and len(input_names) != input_dim:
        raise ValueError(f"input_names has {len(input_names)} names for {input_dim} inputs")
    order = np.arange(num_subjects) if order is None else np.asarray(order, dtype=int)
    if sorted(order.tolist()) != list(range(num_subjects)):
        raise ValueError(f"order must be a permutation of 0..{num_subjects - 1}")
    names = [str(name) for name in posterior.subjects.names] if subject_labels is None else list(subject_labels)
    if len(names) != num_subjects:
        raise ValueError(f"subject_labels has {len(names)} labels for {num_subjects} subjects")
    if point_estimates is not None and not isinstance(point_estimates, Mapping):
        point_estimates = {"point estimate": point_estimates}
    references = {"truth": truth, **(point_estimates or {})}
    for label, values in references.items():
        if values is not None and np.shape(values) != (num_subjects,):
            raise ValueError(f"{label} must have shape ({num_subjects},), got {np.shape(values)}")

    tail = (1.0 - prob) / 2.0
    per_subject = draws[..., state, input_index].reshape(-1, num_subjects)[:, order]
    lower, upper = np.quantile(per_subject, [tail, 1.0 - tail], axis=0)
    population = np.asarray(samples["weights"], dtype=float)[..., state, input_index].reshape(-1)
    spread = np.asarray(samples["weight_spread"], dtype=float)[..., state, input_index].reshape(-1)
    x = np.arange(num_subjects)
    input_name = input_names[input_index] if input_names is not None else f"input {input_index}"

    fig = Figure(figsize=(max(6.0, 0.55 * num_subjects + 3.0), 4.2), layout="constrained")
    ax = fig.subplots()
    band = ax.axhspan(
        *np.quantile(population, [tail, 1.0 - tail]),
        color="0.85",
        label=f"population mean $\\mu_w$, {prob:.0%} interval",
    )
    band.set_gid("population-band")
    ax.axhline(population.mean(), color="0.35", lw=1.2, gid="population-mean")
    for sign in (-1.0, 1.0):
        ax.axhline(
            population.mean() + sign * spread.mean(),
            color="0.35",
            ls=":",
            lw=1.0,
            label=r"$\mu_w \pm \tau_w$ (posterior means)" if sign > 0 else None,
        )
    collection = ax.vlines(x, lower, upper, color=_BAYES_COLOR, lw=2.0, label=f"subject, {prob:.0%} interval")
    collection.set_gid("subject-interval")
    ax.plot(x, per_subject.mean(axis=0), "o", color=_BAYES_COLOR, markersize=7, label="subject, posterior mean")[
        0
    ].set_gid("subject-mean")
    if truth is not None:
        ax.plot(x, np.asarray(truth, dtype=float)[order], **_TRUTH_STYLE, label="truth")[0].set_gid("truth")
    markers = ("X", "s", "^", "v")
    for i, (label, values) in enumerate((point_estimates or {}).items()):
        (line,) = ax.plot(
            x + 0.18,
            np.asarray(values, dtype=float)[order],
            marker=markers[i % len(markers)],
            color=_EM_COLOR if i == 0 else STATE_COLORS[(i + 1) % len(STATE_COLORS)],
            markeredgecolor="black",
            markersize=7,
            ls="none",
            label=label,
        )
        line.set_gid(f"estimate-{i}")
    ax.set_xticks(
        x,
        [names[s] for s in order],
        rotation=45 if num_subjects > 6 else 0,
        ha="right" if num_subjects > 6 else "center",
    )
    ax.set_xlim(-0.6, num_subjects - 0.4)
    ax.set_xlabel("subject")
    ax.set_ylabel(f"weight of {input_name}, state {state}")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    ax.set_title(f"Subjects' weights of {input_name} in state {state}: partial pooling")
    return fig
