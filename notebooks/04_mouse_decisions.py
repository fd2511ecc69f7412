# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A mouse's decisions: discrete strategies, with posterior uncertainty
#
# Ashwood et al. (2022, *Mice alternate between discrete strategies during perceptual
# decision-making*, Nature Neuroscience) fitted GLM-HMMs to the choices of mice in the
# International Brain Laboratory (IBL) task: a grating appears on the left or the right of a
# screen, and the mouse turns a wheel to bring it to the centre. Each hidden state is its own
# logistic regression of the choice on the stimulus and the recent history, and the mouse moves
# between states in a Markov chain. They found that a single "lapsing" psychometric curve is
# better described as a mouse that switches, over tens to hundreds of trials, between an
# **engaged** state, in which the choice follows the stimulus, and **disengaged** states in which
# it hardly does, and leans to one side or repeats itself instead.
#
# They fitted the model by EM, a (maximum a posteriori) point estimate. Here we fit the same kind
# of model to real IBL sessions with NUTS, the states summed out by the forward filter, and ask
# what the whole posterior adds: how well each weight of each state is known, how sure we may be
# of the state of each trial, and how much of each session the mouse spent in each state.
#
# Set `BAYES_GLMHMM_NOTEBOOK_TINY=1` for tiny settings (the test suite does): 3 sessions,
# K = 1 and 2 only, 2 chains of 50 + 50 draws.

# %%
# %matplotlib inline
import os
import warnings
from pathlib import Path

# Progress bars are off below; tqdm's note that ipywidgets is missing is noise here.
warnings.filterwarnings("ignore", message="IProgress not found")

TINY = os.environ.get("BAYES_GLMHMM_NOTEBOOK_TINY", "0") not in ("", "0")
NUM_CHAINS = 2 if TINY else 4
NUM_WARMUP, NUM_SAMPLES = (50, 50) if TINY else (1000, 1000)
STATE_COUNTS = (1, 2) if TINY else (1, 2, 3, 4)
NUM_SESSIONS = 3 if TINY else None  # None: all 11
EM_RESTARTS = 2 if TINY else 10
INTERVAL = 0.94  # posterior intervals: 3% .. 97% quantiles

import numpyro

numpyro.set_host_device_count(NUM_CHAINS)  # before JAX starts: one CPU device per chain

import arviz as az
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from bayes_glmhmm import fit_em, fit_nuts, log_likelihood, plots, smoothed_state_probs
from bayes_glmhmm.datasets import ibl_design, load_ibl_sessions, load_ibl_trials

# ArviZ announces its next major version on import; nothing here depends on it.
warnings.filterwarnings("ignore", message=".*ArviZ is undergoing a major refactor.*", category=FutureWarning)
# The table of section 2 reports stuck chains; the sampler's warning about them would repeat it.
warnings.filterwarnings("ignore", message=r"chain\(s\) .* look stuck")
plt.rcParams["figure.dpi"] = 72
EM_COLOR, BAYES_COLOR = "#E69F00", "#0072B2"  # Okabe-Ito orange, blue
TAIL = 100 * (1 - INTERVAL) / 2

# %% [markdown]
# ## 1. The data
#
# The package ships the trials of one IBL mouse (SWC_054), 11 sessions from the ibllib test
# fixture. Five are *training* sessions (the stimulus is equally likely on either side) and six
# are *biased* sessions, in which the side alternates in blocks where it is on the left with
# probability 0.8 or 0.2 (`probability_left`). We take the sessions in the order they were
# recorded.

# %%
trials = load_ibl_trials()
sessions = load_ibl_sessions()
chronological = np.argsort(sessions["date"], kind="stable")
if NUM_SESSIONS is not None:
    chronological = chronological[:NUM_SESSIONS]
session_ids = sessions["session"][chronological]

session_table = pd.DataFrame(
    [
        {
            "date": sessions["date"][s],
            "protocol": sessions["task_protocol"][s],
            "trials": int(np.sum(trials["session"] == s)),
            "no response": int(np.sum((trials["session"] == s) & (trials["choice"] == 0))),
            "rewarded": float(np.mean(trials["feedback_type"][trials["session"] == s] == 1)),
            "rightward (of responses)": float(
                np.mean(trials["choice"][(trials["session"] == s) & (trials["choice"] != 0)] == -1)
            ),
        }
        for s in session_ids
    ],
    index=pd.Index(session_ids, name="session"),
)
session_table.round(3)

# %% [markdown]
# A rightward choice is IBL's choice code -1 (a counter-clockwise wheel turn); no-response trials
# (code 0) carry no left/right choice. `ibl_design(family="bernoulli")` codes the choice as
# 1 = rightward, 0 = leftward, masks the no-response trials out of the likelihood (they keep their
# place in the sequence, so the hidden state still evolves through them) and builds Ashwood et al.'s
# inputs: the signed contrast (right minus left, z-scored), the previous choice (+1 right, -1
# left), win-stay-lose-switch (the previous choice times its reward, +1 / -1) and a constant
# **bias** column.
#
# That last column is redundant here. `fit_nuts` gives every state its own bias, and it centres the
# inputs inside the model (each input minus its mean over the observed trials), so a constant
# column becomes a column of zeros: its weight would not touch the likelihood at all and would be
# identified by the prior only. We check this on the data, then drop the column:

# %%
with_bias = ibl_design(family="bernoulli", sessions=session_ids)
bias_column = with_bias.inputs[..., with_bias.input_names.index("bias")]
observed = with_bias.mask
centred_bias = bias_column[observed] - bias_column[observed].mean()
print(f"the bias column after centring: largest absolute value {np.abs(centred_bias).max():.1e}")

INPUT_NAMES = ("signed_contrast", "previous_choice", "win_stay_lose_switch")
design = ibl_design(family="bernoulli", inputs=INPUT_NAMES, sessions=session_ids)
num_sessions, max_length, input_dim = design.inputs.shape
valid = np.arange(max_length)[None, :] < design.lengths[:, None]  # real trials, not padding
session_labels = [f"{sessions['date'][s]} ({sessions['task_protocol'][s]})" for s in design.session_ids]
display(
    Markdown(
        f"**The design**: {num_sessions} sessions, {int(design.lengths.sum()):,} trials "
        f"({int(design.mask.sum()):,} with a response, {int((valid & ~design.mask).sum())} without, masked), "
        f"padded to the longest session ({max_length} trials); inputs {', '.join(design.input_names)}. "
        f"The signed contrast is z-scored: input = (contrast - {design.contrast_center:.4f}) / "
        f"{design.contrast_scale:.4f}, so its weight is per {design.contrast_scale:.2f} of contrast. "
        f"Rightward choices: {design.choices[design.mask].mean():.1%} of responses."
    )
)

# %% [markdown]
# The raw psychometric curves: the fraction of rightward choices at each signed contrast. In the
# biased sessions we split the trials by block. Even at full contrast the mouse errs on some
# trials (the "lapses" that the GLM-HMM explains as disengaged states), and in the biased
# sessions the curves shift with the block: the mouse has learnt the block's prior, which none of
# the model's inputs encodes.

# %%
responded = design.mask
contrast = design.signed_contrast
levels = np.unique(contrast[responded])
protocol_of_trial = np.asarray([sessions["task_protocol"][s] for s in design.session_ids])[:, None]
block_of_trial = np.select(
    [protocol_of_trial == "training", design.probability_left > 0.5, design.probability_left < 0.5],
    ["training session", "biased, left block (p_left 0.8)", "biased, right block (p_left 0.2)"],
    default="biased, 50/50 start",
)
block_colors = {
    "training session": "black",
    "biased, 50/50 start": "0.6",
    "biased, left block (p_left 0.8)": "#D55E00",
    "biased, right block (p_left 0.2)": "#009E73",
}
fig = Figure(figsize=(6.5, 4.2), layout="constrained")
ax = fig.subplots()
for block, color in block_colors.items():
    rows = responded & (block_of_trial == block)
    if rows.sum() == 0:
        continue
    fraction = [design.choices[rows & (contrast == c)].mean() for c in levels]
    ax.plot(levels, fraction, "o-", color=color, label=f"{block} ({rows.sum()} trials)")
ax.axhline(0.5, color="0.8", lw=0.8, zorder=0)
ax.axvline(0, color="0.8", lw=0.8, zorder=0)
ax.set_xlabel("signed contrast (right - left)")
ax.set_ylabel("fraction of rightward choices")
ax.set_title(f"{num_sessions} sessions, one mouse")
ax.legend(loc="upper left", fontsize="small")
display(fig)

# %% [markdown]
# ## 2. Fits with K = 1 .. 4 states
#
# One NUTS posterior per number of states, under the package's default priors (Normal on the
# weights and biases, flat Dirichlet on the initial and transition probabilities), 4 chains of
# 1000 draws after 1000 warmup iterations, each started from a MAP EM fit (10 restarts) with a
# little jitter. K = 1 is plain logistic regression. The hidden states are summed out exactly by
# the forward filter; NUTS explores only the parameters.

# %%
posteriors = {}
for num_states in STATE_COUNTS:
    posteriors[num_states] = fit_nuts(
        design.inputs,
        design.choices,
        num_states,
        family="bernoulli",
        mask=design.mask,
        lengths=design.lengths,
        num_chains=NUM_CHAINS,
        num_warmup=NUM_WARMUP,
        num_samples=NUM_SAMPLES,
        em_restarts=EM_RESTARTS,
        seed=0,
        progress_bar=False,
    )
print(posteriors[STATE_COUNTS[0]].priors)


def diagnostics_row(posterior):
    """One row of the diagnostics table: convergence, divergences, stuck chains and time."""
    with warnings.catch_warnings():
        # With K = 1 the initial and transition probabilities are the constant 1: ArviZ's R-hat
        # divides 0 by 0 there and warns; diagnostics() leaves those non-finite values out.
        warnings.filterwarnings("ignore", message="invalid value encountered in scalar divide")
        diagnostics = posterior.diagnostics()
    return {
        "parameters": sum(int(np.prod(value.shape[2:])) for value in posterior.samples.values()),
        "max R-hat": diagnostics["max_rhat"],
        "min bulk ESS": diagnostics["min_ess_bulk"],
        "min tail ESS": diagnostics["min_ess_tail"],
        "divergences": diagnostics["divergences"],
        "stuck chains": str(diagnostics["stuck_chains"]),
        "mean leapfrog steps": float(posterior.sample_stats["n_steps"].mean()),
        "EM (s)": diagnostics["wall_seconds"]["em"],
        "NUTS (s)": diagnostics["wall_seconds"]["nuts"],
    }


diagnostics_table = pd.DataFrame.from_dict(
    {num_states: diagnostics_row(posterior) for num_states, posterior in posteriors.items()}, orient="index"
).rename_axis("K")
diagnostics_table.round(3)

# %% [markdown]
# R-hat near 1 (below 1.01) and a few hundred effective draws per parameter at least are what we
# want; the minimum and the maximum over *all* parameters are shown, so one slow parameter
# shows. The stuck-chain check flags a chain whose log density sits far below the best chain's
# (an inferior mode, e.g. two states merged). The log density of every chain:

# %%
fig = Figure(figsize=(3.6 * len(posteriors), 3.2), layout="constrained")
axes = np.atleast_1d(fig.subplots(1, len(posteriors), sharey=False))
chain_colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
for ax, (num_states, posterior) in zip(axes, posteriors.items(), strict=True):
    for chain, lp in enumerate(posterior.sample_stats["lp"]):
        stuck = chain in posterior.stuck_chains
        ax.plot(lp, lw=0.6, color=chain_colors[chain % len(chain_colors)], ls="--" if stuck else "-")
    ax.set_title(f"K = {num_states}" + (f", stuck: {posterior.stuck_chains}" if posterior.stuck_chains else ""))
    ax.set_xlabel("draw")
axes[0].set_ylabel("log density")
fig.suptitle("Log density of the draws, one line per chain")
display(fig)

# %% [markdown]
# **How many states?** A quick look only; choosing K properly is a separate question (Ashwood et
# al. cross-validate on held-out sessions). `posterior.to_arviz()` stores the log-likelihood of
# each *session* per draw, so `az.loo` estimates leave-one-session-out predictive accuracy by
# Pareto-smoothed importance sampling. With only a handful of sessions, each of hundreds of
# trials, leaving one out moves the posterior a lot and the importance weights have heavy tails:
# a Pareto k above 0.7 says the estimate for that session is unreliable, and the table shows how
# many sessions are in that case.

# %%
loo_rows = {}
for num_states, posterior in posteriors.items():
    with warnings.catch_warnings():
        # The Pareto-k warning is what the table's last columns report.
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto distribution")
        loo = az.loo(posterior.to_arviz(include_states=False), pointwise=True)
    pareto_k = np.asarray(loo.pareto_k)
    loo_rows[num_states] = {
        "elpd_loo": float(loo.elpd_loo),
        "se": float(loo.se),
        "p_loo": float(loo.p_loo),
        "elpd per trial (bits)": float(loo.elpd_loo) / np.log(2) / int(design.mask.sum()),
        "max Pareto k": float(pareto_k.max()),
        "sessions with k > 0.7": int(np.sum(pareto_k > 0.7)),
    }
loo_table = pd.DataFrame.from_dict(loo_rows, orient="index").rename_axis("K")
best_loo = int(loo_table["elpd_loo"].idxmax())
display(loo_table.round(3))
gains = loo_table["elpd_loo"].diff()
display(
    Markdown(
        "Differences in elpd from one K to the next: "
        + ", ".join(f"K = {k - 1} → {k}: {gains[k]:+.1f} nats" for k in list(loo_rows)[1:])
        + f". The highest estimate is at K = {best_loo}; with "
        f"{int(loo_table['sessions with k > 0.7'].max())} of {num_sessions} sessions above k = 0.7 for "
        "some K, read this as a rough guide, not a verdict."
    )
)

# %% [markdown]
# ## 3. The states of the three-state model
#
# Ashwood et al. settle on three states for the IBL mice; we look at K = 3 in detail (K = 2 in the
# tiny run). The sampler's labels are arbitrary (relabeled to EM's); we order the states by their
# posterior mean contrast weight, so state 0 is the one whose choices follow the stimulus most
# closely.
#
# Two EM estimates go along, both MAP-EM under the same priors as the posterior: the one
# `fit_nuts` started its chains from (`posterior.em`, the best of its random restarts), and EM
# started once more, from the posterior mean.

# %%
CHOSEN_K = min(3, max(STATE_COUNTS))
fitted = posteriors[CHOSEN_K]
contrast_index = design.input_names.index("signed_contrast")
order = np.argsort(-fitted.samples["weights"][..., contrast_index].mean(axis=(0, 1)))
posterior = fitted.permute(order)
em_start = posterior.em  # the EM fit the chains started from, permuted alike
em_params = em_start.params
em_refit = fit_em(
    design.inputs,
    design.choices,
    CHOSEN_K,
    family="bernoulli",
    mask=design.mask,
    priors=posterior.priors,
    init_params=posterior.posterior_mean(),
)
map_params = em_refit.params
state_probs = posterior.state_probabilities()  # (N, T, K) p(z = k | choices), averaged over every draw
colors = plots.state_colors(CHOSEN_K)
display(
    Markdown(
        f"**EM as `fit_nuts` ran it** (best of {EM_RESTARTS} restarts): log posterior "
        f"{em_start.log_probs[-1]:.1f} after {len(em_start.log_probs)} iterations, converged: "
        f"{em_start.converged}; the restarts ended at "
        + ", ".join(f"{value:.1f}" for value in np.sort(em_start.restart_log_probs)[::-1])
        + f". **EM from the posterior mean**: log posterior {em_refit.log_probs[-1]:.1f} after "
        f"{len(em_refit.log_probs)} iterations, converged: {em_refit.converged}."
    )
)
print(f"K = {CHOSEN_K}: diagnostics")
diagnostics_table.loc[[CHOSEN_K]].round(3)

# %% [markdown]
# Per parameter, with ArviZ (inputs named):

# %%
idata = posterior.to_arviz(include_states=False)
idata.posterior = idata.posterior.assign_coords(input=list(design.input_names))
az.summary(idata, var_names=["weights", "biases", "transition_matrix"], hdi_prob=INTERVAL).round(3)

# %% [markdown]
# ### Weights
#
# Each state's logistic regression: the weight of each input and the bias (the log-odds of a
# rightward choice at zero input), as the posterior median with the 50 % and 94 % intervals,
# beside the two EM estimates. Positive means rightward.

# %%
REGRESSOR_NAMES = (*design.input_names, "bias")


def regressor_draws(samples):
    """(draws, K, D + 1) weights with each state's bias as the last column."""
    weights = samples["weights"].reshape(-1, *samples["weights"].shape[2:])
    biases = samples["biases"].reshape(-1, samples["biases"].shape[-1])
    return np.concatenate([weights, biases[..., None]], axis=-1)


draws = regressor_draws(posterior.samples)


def coefficients(params):
    """(K, D + 1) weights of one estimate with each state's bias as the last column."""
    return np.concatenate([np.asarray(params.weights), np.asarray(params.biases)[:, None]], axis=-1)


em_coefficients, map_coefficients = coefficients(em_params), coefficients(map_params)
low, q25, median, q75, high = np.percentile(draws, [TAIL, 25, 50, 75, 100 - TAIL], axis=0)

fig = Figure(figsize=(3.2 * len(REGRESSOR_NAMES), 3.6), layout="constrained")
axes = fig.subplots(1, len(REGRESSOR_NAMES))
for d, (ax, name) in enumerate(zip(axes, REGRESSOR_NAMES, strict=True)):
    for k in range(CHOSEN_K):
        ax.plot([k, k], [low[k, d], high[k, d]], color=colors[k], lw=1.3, solid_capstyle="butt")
        ax.plot([k, k], [q25[k, d], q75[k, d]], color=colors[k], lw=5, solid_capstyle="butt")
        ax.scatter([k], [median[k, d]], s=30, color="white", edgecolors=colors[k], zorder=3)
    ax.plot(np.arange(CHOSEN_K) + 0.22, em_coefficients[:, d], marker="x", color="black", mew=1.5, ls="none", zorder=4)
    ax.plot(np.arange(CHOSEN_K) + 0.36, map_coefficients[:, d], marker="+", color="black", ms=8, ls="none", zorder=4)
    ax.axhline(0, color="0.5", lw=0.7, zorder=0)
    ax.set_xticks(np.arange(CHOSEN_K), [f"state {k}" for k in range(CHOSEN_K)])
    ax.set_xlim(-0.6, CHOSEN_K - 0.4)
    ax.set_title(name.replace("_", " ") + (" (per sd)" if name == "signed_contrast" else ""))
    ax.grid(axis="y", alpha=0.3)
axes[0].set_ylabel("log-odds of a rightward choice")
handles = [
    Line2D([], [], color="0.3", marker="o", markerfacecolor="white", lw=5, label="median, 50% interval"),
    Line2D([], [], color="0.3", lw=1.3, label=f"{INTERVAL:.0%} interval"),
    Line2D([], [], color="black", marker="x", mew=1.5, ls="none", label="EM, the chains' start"),
    Line2D([], [], color="black", marker="+", ms=8, ls="none", label="EM from the posterior mean"),
]
fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize="small")
fig.suptitle(f"Weights of the {CHOSEN_K} states")
display(fig)

# %% [markdown]
# The same numbers as a table, with each state's expected dwell time, $1 / (1 - P_{kk})$ trials,
# and whether the 94 % interval of each coefficient excludes zero:


# %%
def interval_text(values):
    """'mean [low, high]' of draws, the interval the central INTERVAL mass."""
    lo, hi = np.percentile(values, [TAIL, 100 - TAIL])
    return f"{np.mean(values):.2f} [{lo:.2f}, {hi:.2f}]"


self_transition = np.diagonal(posterior.samples["transition_matrix"], axis1=-2, axis2=-1).reshape(-1, CHOSEN_K)
dwell = 1.0 / (1.0 - self_transition)
state_table = pd.DataFrame(
    {
        f"state {k}": {
            **{name: interval_text(draws[:, k, d]) for d, name in enumerate(REGRESSOR_NAMES)},
            "P(stay)": interval_text(self_transition[:, k]),
            "expected dwell (trials)": interval_text(dwell[:, k]),
        }
        for k in range(CHOSEN_K)
    }
)
nonzero = (low > 0) | (high < 0)  # (K, D + 1): the interval excludes zero
display(state_table)
display(
    pd.DataFrame(nonzero.T, index=list(REGRESSOR_NAMES), columns=[f"state {k}" for k in range(CHOSEN_K)]).replace(
        {True: "excludes 0", False: "includes 0"}
    )
)

# %% [markdown]
# ### Psychometric curves per state
#
# What each state's regression means for behaviour. First the library's overview,
# `plots.plot_emission_curves`: every state's p(rightward) against the contrast input (in its
# z-scored units), the other inputs held at their mean over the observed trials (a previous choice
# of about 0, halfway between left and right), the posterior mean with its 94 % band, EM dashed,
# and the data binned by each trial's most probable state.

# %%
plots.plot_emission_curves(
    posterior, input_index=contrast_index, input_names=list(design.input_names), states=state_probs.argmax(-1)
)

# %% [markdown]
# Then the same curves in the task's terms: the probability of a rightward choice
# against the signed contrast in its raw units, after a leftward and after a rightward previous
# choice (averaged over the win-stay-lose-switch values seen after such a choice), as the
# posterior mean with its 94 % band over the draws. The dots are the data: the fraction of
# rightward choices among the trials whose posterior probability of that state exceeds 0.9, the
# dot's area growing with the number of such trials.

# %%
previous_index = design.input_names.index("previous_choice")
wsls_index = design.input_names.index("win_stay_lose_switch")
contrast_grid = np.linspace(-1.0, 1.0, 81)
flat_params = posterior.flat_params()
mean_per_draw = jax.jit(jax.vmap(posterior.family.mean, in_axes=(0, None)))


def psychometric_draws(previous):
    """(draws, grid, K) p(rightward) after a previous choice, averaged over its observed WSLS values."""
    after = responded & (design.inputs[..., previous_index] == previous)
    wsls_values, counts = np.unique(design.inputs[..., wsls_index][after], return_counts=True)
    grid_inputs = np.zeros((contrast_grid.size, wsls_values.size, input_dim))
    grid_inputs[..., contrast_index] = ((contrast_grid - design.contrast_center) / design.contrast_scale)[:, None]
    grid_inputs[..., previous_index] = previous
    grid_inputs[..., wsls_index] = wsls_values[None, :]
    probabilities = np.asarray(mean_per_draw(flat_params, jnp.asarray(grid_inputs)))  # (S, G, W, K)
    return np.tensordot(probabilities, counts / counts.sum(), axes=([2], [0]))


PREVIOUS = {-1.0: ("after a leftward choice", "--"), 1.0: ("after a rightward choice", "-")}
curves = {previous: psychometric_draws(previous) for previous in PREVIOUS}
confident = state_probs > 0.9

fig = Figure(figsize=(3.8 * CHOSEN_K, 3.8), layout="constrained")
axes = np.atleast_1d(fig.subplots(1, CHOSEN_K, sharey=True))
for k, ax in enumerate(axes):
    for previous, (label, style) in PREVIOUS.items():
        curve = curves[previous][..., k]
        band_low, band_high = np.percentile(curve, [TAIL, 100 - TAIL], axis=0)
        ax.fill_between(contrast_grid, band_low, band_high, color=colors[k], alpha=0.25, lw=0)
        ax.plot(contrast_grid, curve.mean(axis=0), color=colors[k], ls=style, label=label)
        rows = responded & confident[..., k] & (design.inputs[..., previous_index] == previous)
        for c in levels:
            at_level = rows & (contrast == c)
            if at_level.sum():
                marker = "o" if previous > 0 else "s"
                face = colors[k] if previous > 0 else "white"
                ax.scatter(
                    c,
                    design.choices[at_level].mean(),
                    s=4 * np.sqrt(at_level.sum()),
                    marker=marker,
                    facecolors=face,
                    edgecolors=colors[k],
                    zorder=3,
                )
    ax.axhline(0.5, color="0.8", lw=0.8, zorder=0)
    ax.axvline(0, color="0.8", lw=0.8, zorder=0)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("signed contrast (right - left)")
    ax.set_title(f"state {k}: {int(confident[..., k][responded].sum())} trials with p > 0.9")
axes[0].set_ylabel("p(rightward choice)")
axes[0].legend(
    handles=[
        Line2D([], [], color="0.3", ls="-", label="model, after a rightward choice"),
        Line2D([], [], color="0.3", ls="--", label="model, after a leftward choice"),
        Line2D([], [], color="0.3", marker="o", ls="none", label="data, after a rightward choice"),
        Line2D([], [], color="0.3", marker="s", markerfacecolor="white", ls="none", label="data, after a leftward"),
    ],
    loc="upper left",
    fontsize="x-small",
)
fig.suptitle(f"Psychometric curves per state (mean and {INTERVAL:.0%} band over posterior draws)")
display(fig)

# %% [markdown]
# In the full run the three states read as follows. State 0 is Ashwood et al.'s **engaged**
# state: a steep psychometric curve, shifted only a little by the previous choice. State 1
# hardly looks at the stimulus and **repeats its previous choice**: its curves after a left and
# after a right choice lie far apart (perseveration). State 2 is brief and **switches away** from
# the previous choice, more so after a reward. Ashwood et al.'s mice had, besides the engaged
# state, states biased to the left or to the right; this mouse's disengaged states are driven by
# its own recent choices instead, and no state's bias is clearly different from zero.
#
# ### The states of individual trials
#
# `posterior.state_probabilities()` gives $p(z_t = k \mid \text{all choices})$ for every trial,
# averaged over the posterior draws, so it carries the parameters' uncertainty too. Three
# sessions, the first, a middle and the last one; below each, the block (the prior probability
# of a left stimulus) and the errors.

# %%
shown = sorted({0, num_sessions // 2, num_sessions - 1})
fig = Figure(figsize=(13, 2.7 * len(shown)), layout="constrained")
axes = np.atleast_1d(fig.subplots(len(shown), 1))
for ax, n in zip(axes, shown, strict=True):
    length = int(design.lengths[n])
    trial_axis = np.arange(length)
    ax.stackplot(trial_axis, state_probs[n, :length].T, colors=colors, alpha=0.85, lw=0)
    if sessions["task_protocol"][design.session_ids[n]] == "biased":
        ax.plot(trial_axis, design.probability_left[n, :length], color="black", lw=1.0)
    correct_side = np.sign(contrast[n, :length])
    wrong = responded[n, :length] & (correct_side != 0) & ((design.choices[n, :length] == 1) != (correct_side > 0))
    ax.plot(trial_axis[wrong], np.full(wrong.sum(), -0.06), "|", color="black", ms=6)
    ax.set_xlim(0, length - 1)
    ax.set_ylim(-0.1, 1.0)
    ax.set_ylabel("p(state)")
    ax.set_title(f"session {design.session_ids[n]}: {session_labels[n]}", fontsize="medium")
axes[-1].set_xlabel("trial")
state_handles = [Patch(color=colors[k], label=f"state {k}") for k in range(CHOSEN_K)]
other_handles = [
    Line2D([], [], color="black", lw=1.0, label="p(stimulus left),\nbiased sessions"),
    Line2D([], [], color="black", marker="|", ls="none", label="error\n(non-zero contrast)"),
]
fig.legend(handles=state_handles + other_handles, loc="outside right upper", fontsize="small")
display(fig)

# %% [markdown]
# How sure are these state assignments? Per trial, the largest state probability: under the
# posterior (averaged over the parameters' draws), and under each EM estimate plugged into the
# smoother (the point estimate treated as exact). The two plug-ins tell *where* the parameters are
# from *averaging* over them.

# %%
em_probs = np.asarray(smoothed_state_probs(em_params, design.inputs, design.choices, design.mask))
map_probs = np.asarray(smoothed_state_probs(map_params, design.inputs, design.choices, design.mask))
certainty = {
    "posterior": state_probs[valid].max(axis=-1),
    "EM start, plug-in": em_probs[valid].max(axis=-1),
    "EM from posterior mean, plug-in": map_probs[valid].max(axis=-1),
}
thresholds = (0.8, 0.9, 0.99)
display(
    pd.DataFrame(
        {name: {f"max p > {t}": float(np.mean(values > t)) for t in thresholds} for name, values in certainty.items()}
    ).round(3)
)
agreement = np.mean(state_probs[valid].argmax(-1) == em_probs[valid].argmax(-1))
map_agreement = np.mean(state_probs[valid].argmax(-1) == map_probs[valid].argmax(-1))
fig = Figure(figsize=(6, 3.4), layout="constrained")
ax = fig.subplots()
bins = np.linspace(1.0 / CHOSEN_K, 1.0, 41)
styles = {
    "posterior": {"color": BAYES_COLOR, "lw": 1.8},
    "EM start, plug-in": {"color": EM_COLOR, "lw": 1.8},
    "EM from posterior mean, plug-in": {"color": "black", "lw": 1.0, "ls": ":"},
}
for name, values in certainty.items():
    ax.hist(values, bins=bins, histtype="step", label=name, **styles[name])
ax.set_yscale("log")
ax.set_xlabel("largest state probability of a trial")
ax.set_ylabel("trials")
ax.legend(loc="upper left", fontsize="small")
display(fig)
display(
    Markdown(
        f"The most probable state of a trial under the posterior is the same as under the chains' EM "
        f"start for {agreement:.1%} of the {int(valid.sum()):,} trials, and as under EM from the "
        f"posterior mean for {map_agreement:.1%}. More than 0.9 on one state: "
        + ", ".join(f"{name} {np.mean(values > 0.9):.1%} of trials" for name, values in certainty.items())
        + "."
    )
)

# %% [markdown]
# ### Time spent in each state
#
# The fraction of each session's trials spent in each state, with its uncertainty: for every
# posterior draw one joint path of states is drawn by forward-filtering backward-sampling
# (`posterior.sample_states`), and the fraction is computed on each path. Bars: the posterior
# mean; error bars: the 94 % interval over paths and draws.

# %%
paths = posterior.sample_states(jax.random.PRNGKey(1))  # (chain, draw, N, T)
paths = paths.reshape(-1, num_sessions, max_length)
occupancy = np.stack([np.sum((paths == k) & valid, axis=-1) for k in range(CHOSEN_K)], axis=-1)
occupancy = occupancy / design.lengths[None, :, None]  # (draws, N, K)
del paths
occupancy_low, occupancy_high = np.percentile(occupancy, [TAIL, 100 - TAIL], axis=0)
occupancy_mean = occupancy.mean(axis=0)

fig = Figure(figsize=(max(7, 0.9 * num_sessions + 3), 4), layout="constrained")
ax = fig.subplots()
width = 0.8 / CHOSEN_K
positions = np.arange(num_sessions)
for k in range(CHOSEN_K):
    offset = positions + (k - (CHOSEN_K - 1) / 2) * width
    error = np.stack([occupancy_mean[:, k] - occupancy_low[:, k], occupancy_high[:, k] - occupancy_mean[:, k]])
    ax.bar(offset, occupancy_mean[:, k], width=width, color=colors[k], label=f"state {k}")
    ax.errorbar(offset, occupancy_mean[:, k], yerr=error, fmt="none", ecolor="black", elinewidth=0.8, capsize=1.5)
ax.set_xticks(positions, session_labels, rotation=30, ha="right", fontsize="small")
ax.set_ylabel("fraction of the session's trials")
ax.set_ylim(0, 1)
ax.legend(loc="upper left", ncols=CHOSEN_K, fontsize="small")
ax.set_title("Time in each state per session (FFBS paths over posterior draws)")
display(fig)
pd.DataFrame(
    {
        f"state {k}": [
            f"{occupancy_mean[n, k]:.2f} [{occupancy_low[n, k]:.2f}, {occupancy_high[n, k]:.2f}]"
            for n in range(num_sessions)
        ]
        for k in range(CHOSEN_K)
    },
    index=pd.Index(session_labels, name="session"),
)

# %% [markdown]
# Overall, and by block in the biased sessions (the expected fraction of trials in each state,
# from the per-trial state probabilities):

# %%
overall = {f"state {k}": float(state_probs[valid][:, k].mean()) for k in range(CHOSEN_K)}
by_block = {
    block: {f"state {k}": float(state_probs[valid & (block_of_trial == block)][:, k].mean()) for k in range(CHOSEN_K)}
    for block in block_colors
    if np.any(valid & (block_of_trial == block))
}
pd.DataFrame({"all trials": overall, **by_block}).T.round(3)

# %% [markdown]
# Does the time spent engaged go with how well the mouse did? Across sessions, against the
# fraction of rewarded trials (session table of section 1):

# %%
reward_rate = session_table["rewarded"].to_numpy()
display(
    Markdown(
        ", ".join(
            f"state {k}: correlation {np.corrcoef(occupancy_mean[:, k], reward_rate)[0, 1]:+.2f}"
            for k in range(CHOSEN_K)
        )
        + f" (Pearson, over the {num_sessions} sessions' posterior mean fractions)."
    )
)

# %% [markdown]
# ### EM beside the posterior
#
# EM is the field's tool, and `fit_nuts` uses it to start its chains. How do the two EM
# estimates sit against the posterior? Their transition matrices beside the posterior mean
# (± posterior standard deviation):

# %%
plots.plot_transition_matrices(
    {
        "EM, the chains' start": np.asarray(em_params.transition_matrix),
        "EM from the posterior mean": np.asarray(map_params.transition_matrix),
        "posterior mean": posterior.samples["transition_matrix"].mean(axis=(0, 1)),
    },
    spreads={"posterior mean": posterior.samples["transition_matrix"].std(axis=(0, 1))},
)

# %%
draw_logliks = posterior.log_likelihood().sum(axis=-1).ravel()  # log p(all choices | theta_s) per draw


def compare_with_posterior(params, name):
    """Markdown: how an EM estimate sits against the posterior draws."""
    inside = (coefficients(params) >= low) & (coefficients(params) <= high)
    outside = [f"{REGRESSOR_NAMES[d].replace('_', ' ')} of state {k}" for k, d in np.argwhere(~inside)]
    stay = np.diagonal(np.asarray(params.transition_matrix))
    loglik = float(np.sum(log_likelihood(params, design.inputs, design.choices, design.mask)))
    return (
        f"* **{name}**: {int(inside.sum())} of {inside.size} coefficients inside the posterior's "
        f"{INTERVAL:.0%} intervals" + (f" (outside: {', '.join(outside)})" if outside else "") + "; "
        "probabilities of staying in each state " + ", ".join(f"{value:.2f}" for value in stay) + "; "
        f"log-likelihood of all choices {loglik:.1f} nats, below that of {np.mean(draw_logliks > loglik):.1%} "
        "of the posterior draws."
    )


display(
    Markdown(
        "\n".join(
            [
                compare_with_posterior(em_params, "EM, the chains' start"),
                compare_with_posterior(map_params, "EM from the posterior mean"),
                "* **Posterior**: probabilities of staying "
                + ", ".join(interval_text(self_transition[:, k]) for k in range(CHOSEN_K))
                + f"; log-likelihood {interval_text(draw_logliks)} over the draws.",
            ]
        )
    )
)

# %% [markdown]
# ## 4. What the posterior adds
#
# The summary below is computed from the fits above.

# %%
chosen = diagnostics_table.loc[CHOSEN_K]
lines = [
    f"* **Convergence** (K = {CHOSEN_K}): max R-hat {chosen['max R-hat']:.3f}, min bulk ESS "
    f"{chosen['min bulk ESS']:.0f}, {int(chosen['divergences'])} divergences, stuck chains "
    f"{chosen['stuck chains']}; over K = {', '.join(map(str, STATE_COUNTS))} the max R-hat ranges "
    f"from {diagnostics_table['max R-hat'].min():.3f} to {diagnostics_table['max R-hat'].max():.3f}.",
]
for k in range(CHOSEN_K):
    clear = [name.replace("_", " ") for d, name in enumerate(REGRESSOR_NAMES) if nonzero[k, d]]
    unclear = [name.replace("_", " ") for d, name in enumerate(REGRESSOR_NAMES) if not nonzero[k, d]]
    lines.append(
        f"* **State {k}** ({overall[f'state {k}']:.0%} of trials, expected dwell "
        f"{np.median(dwell[:, k]):.0f} trials (median)): contrast weight "
        f"{interval_text(draws[:, k, contrast_index])}, previous-choice weight "
        f"{interval_text(draws[:, k, previous_index])}; {INTERVAL:.0%} interval excludes zero: "
        f"{', '.join(clear) or 'none'}; compatible with zero: {', '.join(unclear) or 'none'}."
    )
lines.append(
    f"* **Per-trial states**: the posterior is at least 90 % sure of the state of "
    f"{np.mean(certainty['posterior'] > 0.9):.0%} of trials (EM's plug-in smoother: "
    f"{np.mean(certainty['EM start, plug-in'] > 0.9):.0%} at the chains' start, "
    f"{np.mean(certainty['EM from posterior mean, plug-in'] > 0.9):.0%} from the posterior mean).",
)
lines.append(
    f"* **EM**: the chains started from a log posterior of {em_start.log_probs[-1]:.1f} (converged: "
    f"{em_start.converged}); EM from the posterior mean reaches {em_refit.log_probs[-1]:.1f} "
    f"(converged: {em_refit.converged}), {em_refit.log_probs[-1] - em_start.log_probs[-1]:+.1f} nats."
)
display(Markdown("\n".join(lines)))

# %% [markdown]
# **Discussion.** Every K sampled cleanly (the table of section 2: R-hat at 1, more than a
# thousand effective draws of every parameter, no divergence, no stuck chain), so what follows is
# about the model and the data, not the sampler.
#
# *How well each number is known.* The engaged state's weights are pinned down closely and the
# perseverative state's fairly well; the brief third state, the least visited, has the widest
# intervals, and no state has a bias clearly different from zero. An EM estimate hands back one
# number per coefficient and says nothing of this.
#
# *Where the parameters are.* In the full run the EM fit that `fit_nuts` started its chains from,
# the best of its random restarts, had not converged and sat in an inferior place: it makes the
# third state a lapse of about one trial (a weak contrast weight, hardly any history effect,
# entered often from the engaged state and left at once). All four chains moved away from it and
# agree on another picture: a state that lasts a few trials and switches away from the previous
# choice. Those parameters fit the choices better: almost every posterior draw has a higher
# log-likelihood than that EM start. EM started again from the posterior mean climbs to a
# clearly higher log posterior, with coefficients inside the posterior's intervals. So here the
# sampler did more than add error bars: it found the better solution that EM's restarts missed,
# and its checks (R-hat across chains started apart, stuck chains) would have said so had the
# chains disagreed. A report built on the EM start alone would describe a different third state.
#
# *The states of single trials.* Averaging over parameters tends to blur state probabilities,
# yet the posterior assigns more trials firmly than the EM start plugged in, and about as many as
# the better EM estimate plugged in. Under the EM start's parameters the lapse state can strike
# on any trial, with little to tell it from the engaged state; at the posterior's, the third
# state has a signature (alternation) that the choices reveal. The difference comes from where
# the parameters are, more than from averaging over them; with this much data per state the
# averaging itself changes little.
#
# *Sessions.* The time spent engaged varies a lot between sessions and goes with the reward
# rate; the last three biased sessions, among those where the mouse earned least, are the ones
# with the most perseveration.
#
# **Caveats.** The biased sessions have blocks whose prior (`probability_left`) none of the
# inputs encodes; the hidden states can absorb block-driven behaviour (repeating the last choice
# pays inside a block), which Ashwood et al. avoided by fitting sessions of the unbiased task.
# The package's default Normal priors on weights and biases (printed in section 2) hardly matter
# for the two well-visited states but do shrink the third. This is one mouse. And the number of
# states was taken from the literature; the rough leave-one-session-out check of section 2 even
# prefers the largest K tried, with unreliable Pareto k's. Choosing K is a separate question.

# %% [markdown]
# ## 5. Does a reward change the state?
#
# So far the mouse moved between states with the same probabilities on every trial. Does what
# just happened to it change that? Here the transition probabilities depend on whether the last
# trial was rewarded (input-driven transitions, `fit_nuts(..., transition_inputs=U,
# transitions="full")`):
#
# $$p(z_{t+1} = j \mid z_t = i, u_t) = \mathrm{softmax}_j\left(\log A_{ij} + V_{ij}\, u_t\right), \qquad V_{ii} = 0,$$
#
# with the **transition input** $u_t = 1$ if trial $t$ was rewarded and $u_t = 0$ if it was not
# (an error, or no response), so the outcome of trial $t$ acts on the state of trial $t + 1$.
# $A$ is the transition matrix after an unrewarded trial, and $V_{ij}$ the change, after a
# reward, in the log-odds of moving from state $i$ to state $j$ rather than staying in $i$. Past
# a session's end the input is 0 and masked (no transition uses it). Priors: a flat Dirichlet
# on each row of $A$, as in the stationary model, and Normal(0, 1) on each $V_{ij}$; with
# $V = 0$ the model *is* the stationary one. The emission inputs keep their
# win-stay-lose-switch column, which acts on the choice *within* a state; $u$ acts on which state
# comes next.
#
# **Held-out comparison.** Does the input-driven model predict the choices of sessions it has not
# seen better than the stationary one? The sessions (in recording order) are dealt into 4 folds,
# session $s$ into fold $s \bmod 4$ (folds of 3, 3, 3 and 2 sessions, each mixing training and
# biased sessions); both models are fitted on the other folds' sessions and scored on the
# held-out ones, with the same folds. A held-out session is left out of the fit by masking all of
# its trials (they then contribute nothing to the likelihood), so every fold's fit has the same
# array shapes and reuses one compiled sampler. To keep the section short each fit has
# **2 chains of 500 draws after 500 warmup iterations** (the K = 3 model of the earlier sections,
# EM start with the same restarts). A session's score is its log predictive density,
# `Posterior.log_predictive_density`, log of the mean over draws of p(its choices | its inputs,
# draw), so the parameters' uncertainty is averaged over. EM's plug-in score beside it: the MAP
# EM estimate that `fit_nuts` started its chains from (`fit_em`, same priors, best of the
# restarts), continued for up to 1,000 more EM iterations so that it sits at its optimum,
# and `log_likelihood` of the held-out session at that single estimate.
#
# The **gain** of the input-driven model, in bits per trial, pools the held-out sessions $s$ of
# all folds, $n_s$ of them with responses and $d_s = (\mathrm{lpd}^{\text{input}}_s -
# \mathrm{lpd}^{\text{stationary}}_s) / \ln 2$ their paired difference in bits:
#
# $$G = \frac{\sum_s d_s}{\sum_s n_s}, \qquad
# \mathrm{SE}(G) = \frac{1}{\sum_s n_s}\sqrt{\frac{S}{S - 1}\sum_s \left(d_s - G\, n_s\right)^2},$$
#
# the standard error of a ratio estimator with sessions as the independent units ($S$ sessions);
# it says how much $G$ would move with another draw of sessions like these, which is the question.
# The Monte Carlo error of the lpd's is far smaller.

# %%
CV_CHAINS, CV_WARMUP, CV_SAMPLES = (2, 50, 50) if TINY else (2, 500, 500)
NUM_FOLDS = 2 if TINY else 4
EM_MORE_ITERS = 0 if TINY else 1000  # tiny: the EM start as it is
TRANSITION_INTERVAL = 0.90
TRANSITION_TAIL = 100 * (1 - TRANSITION_INTERVAL) / 2

feedback = np.where(valid, trials["feedback_type"][np.maximum(design.row_index, 0)], -1)  # +1 rewarded
reward_input = (feedback == 1).astype(float)[..., None]  # (N, T, 1): u_t; 0 past a session's end
TRANSITION_MODELS = {"stationary": None, "input-driven": reward_input}
fold_of_session = np.arange(num_sessions) % NUM_FOLDS
held_out_trials = design.mask.sum(axis=1)  # n_s: trials with a response
display(
    Markdown(
        f"Rewarded trials: {int(reward_input.sum()):,} of {int(valid.sum()):,} "
        f"({reward_input.sum() / valid.sum():.1%}); "
        + "; ".join(
            f"fold {f}: sessions {', '.join(map(str, np.flatnonzero(fold_of_session == f)))} "
            f"({int(held_out_trials[fold_of_session == f].sum()):,} trials)"
            for f in range(NUM_FOLDS)
        )
        + " (sessions numbered in recording order, 0 = first)."
    )
)


def fit_transitions(transition_inputs, mask, num_chains, num_warmup, num_samples):
    """NUTS fit of the chosen K with stationary (None) or reward-driven transitions."""
    return fit_nuts(
        design.inputs,
        design.choices,
        CHOSEN_K,
        family="bernoulli",
        mask=mask,
        lengths=design.lengths,
        num_chains=num_chains,
        num_warmup=num_warmup,
        num_samples=num_samples,
        em_restarts=EM_RESTARTS,
        seed=0,
        progress_bar=False,
        transition_inputs=transition_inputs,
        transitions="stationary" if transition_inputs is None else "full",
    )


def held_out_scores(fitted_posterior, transition_inputs, train_mask):
    """Per-session log predictive density (Bayes) and EM plug-in log-likelihood of all sessions."""
    extra = {} if transition_inputs is None else {"transition_inputs": transition_inputs}
    bayes = fitted_posterior.log_predictive_density(design.inputs, design.choices, design.mask, **extra)
    em = fitted_posterior.em
    if EM_MORE_ITERS:  # continue EM from the best restart, up to EM_MORE_ITERS iterations
        em = fit_em(
            design.inputs,
            design.choices,
            CHOSEN_K,
            family="bernoulli",
            mask=train_mask,
            priors=fitted_posterior.priors,
            init_params=em.params,
            num_iters=EM_MORE_ITERS,
            transition_inputs=transition_inputs,
            transitions="stationary" if transition_inputs is None else "full",
        )
    em_loglik = np.asarray(log_likelihood(em.params, design.inputs, design.choices, design.mask, **extra))
    return bayes, em_loglik, em


scores = {(method, name): np.full(num_sessions, np.nan) for method in ("Bayes", "EM") for name in TRANSITION_MODELS}
fold_rows = []
for fold in range(NUM_FOLDS):
    held = fold_of_session == fold
    train_mask = design.mask & ~held[:, None]
    for name, transition_inputs in TRANSITION_MODELS.items():
        fold_posterior = fit_transitions(transition_inputs, train_mask, CV_CHAINS, CV_WARMUP, CV_SAMPLES)
        bayes, em_loglik, em_fit = held_out_scores(fold_posterior, transition_inputs, train_mask)
        scores["Bayes", name][held] = bayes[held]
        scores["EM", name][held] = em_loglik[held]
        diagnostics = fold_posterior.diagnostics()
        fold_rows.append(
            {
                "fold": fold,
                "transitions": name,
                "max R-hat": diagnostics["max_rhat"],
                "min bulk ESS": diagnostics["min_ess_bulk"],
                "divergences": diagnostics["divergences"],
                "stuck chains": str(diagnostics["stuck_chains"]),
                "EM start converged": fold_posterior.em.converged,
                "EM continued: iterations": len(em_fit.log_probs) if EM_MORE_ITERS else 0,
                "converged": em_fit.converged,
                "EM (s)": diagnostics["wall_seconds"]["em"],
                "NUTS (s)": diagnostics["wall_seconds"]["nuts"],
            }
        )
        del fold_posterior
cv_diagnostics = pd.DataFrame(fold_rows).set_index(["fold", "transitions"])
cv_diagnostics.round(3)

# %% [markdown]
# The held-out scores, session by session (log predictive density per trial in bits, so higher
# is better; the last columns are the input-driven model's gain over the stationary one), and the
# pooled gain with its standard error:


# %%
def pooled_gain(lpd_input, lpd_stationary, num_trials):
    """(G, SE) in bits per trial: the sessions' summed paired differences over their trials."""
    differences = (lpd_input - lpd_stationary) / np.log(2)
    total = num_trials.sum()
    gain = differences.sum() / total
    count = differences.size
    se = np.sqrt(count / (count - 1) * np.sum((differences - gain * num_trials) ** 2)) / total
    return float(gain), float(se)


bits_per_trial = {key: value / np.log(2) / held_out_trials for key, value in scores.items()}
session_scores = pd.DataFrame(
    {
        "fold": fold_of_session,
        "trials": held_out_trials,
        **{f"{method}, {name}": bits_per_trial[method, name] for method, name in scores},
        **{
            f"{method}: gain": bits_per_trial[method, "input-driven"] - bits_per_trial[method, "stationary"]
            for method in ("Bayes", "EM")
        },
    },
    index=pd.Index(session_labels, name="session"),
)
display(session_scores.round(4))
reward_gains = {
    method: pooled_gain(scores[method, "input-driven"], scores[method, "stationary"], held_out_trials)
    for method in ("Bayes", "EM")
}
pooled = {
    method: {
        "stationary (bits/trial)": scores[method, "stationary"].sum() / np.log(2) / held_out_trials.sum(),
        "input-driven (bits/trial)": scores[method, "input-driven"].sum() / np.log(2) / held_out_trials.sum(),
        "gain (bits/trial)": reward_gains[method][0],
        "SE": reward_gains[method][1],
        "gain / SE": reward_gains[method][0] / reward_gains[method][1],
        "sessions with a gain": int(np.sum(scores[method, "input-driven"] > scores[method, "stationary"])),
        "total gain (bits)": (scores[method, "input-driven"] - scores[method, "stationary"]).sum() / np.log(2),
    }
    for method in ("Bayes", "EM")
}
pooled_table = pd.DataFrame.from_dict(pooled, orient="index").rename_axis("held-out score")
display(pooled_table)

# %% [markdown]
# ### The transition weights, on all the sessions
#
# The input-driven model fitted to all sessions with the settings of section 2 (4 chains of
# 1000 + 1000 draws), its states ordered by contrast weight as before. First, are they the same
# states as the stationary model's? Their emission weights side by side (posterior means):

# %%
reward_posterior = fit_transitions(reward_input, design.mask, NUM_CHAINS, NUM_WARMUP, NUM_SAMPLES)
reward_order = np.argsort(-reward_posterior.samples["weights"][..., contrast_index].mean(axis=(0, 1)))
reward_posterior = reward_posterior.permute(reward_order)
display(
    pd.DataFrame(
        {
            **{
                f"stationary, {name}": posterior.samples["weights"][..., d].mean(axis=(0, 1))
                for d, name in enumerate(design.input_names)
            },
            **{
                f"input-driven, {name}": reward_posterior.samples["weights"][..., d].mean(axis=(0, 1))
                for d, name in enumerate(design.input_names)
            },
        },
        index=pd.Index([f"state {k}" for k in range(CHOSEN_K)]),
    ).T.round(2)
)
reward_diagnostics = pd.DataFrame.from_dict(
    {"input-driven, all sessions": diagnostics_row(reward_posterior)}, orient="index"
)
reward_diagnostics.round(3)

# %% [markdown]
# The transition weights $V_{ij}$ (the change after a reward in the log-odds of moving from
# state $i$ to state $j$ rather than staying), with their 90 % intervals and the posterior
# probability that they are positive; then, per origin state, what they amount to: the
# probability of staying after an unrewarded and after a rewarded trial, and the change in the
# log-odds of *leaving* (to any other state) after a reward.

# %%
transition_draws = reward_posterior.samples["transition_weights"][..., 0].reshape(-1, CHOSEN_K, CHOSEN_K)
matrix_draws = reward_posterior.samples["transition_matrix"].reshape(-1, CHOSEN_K, CHOSEN_K)


def interval90(values):
    """'mean [5 %, 95 %]' of draws."""
    lo, hi = np.percentile(values, [TRANSITION_TAIL, 100 - TRANSITION_TAIL])
    return f"{np.mean(values):+.2f} [{lo:+.2f}, {hi:+.2f}]"


def excludes_zero(values):
    lo, hi = np.percentile(values, [TRANSITION_TAIL, 100 - TRANSITION_TAIL])
    return bool(lo > 0 or hi < 0)


weight_rows = []
for i in range(CHOSEN_K):
    for j in range(CHOSEN_K):
        if i == j:
            continue
        values = transition_draws[:, i, j]
        weight_rows.append(
            {
                "from": f"state {i}",
                "to": f"state {j}",
                f"V (mean, {TRANSITION_INTERVAL:.0%} interval)": interval90(values),
                "P(V > 0)": float(np.mean(values > 0)),
                "interval excludes 0": excludes_zero(values),
            }
        )
weight_table = pd.DataFrame(weight_rows).set_index(["from", "to"])
display(weight_table.round(3))


def next_state_probabilities(u):
    """(draws, K, K) p(z_{t+1} = j | z_t = i, u_t = u) = softmax_j(log A[i, j] + V[i, j] u) per draw."""
    logits = np.log(np.maximum(matrix_draws, np.finfo(float).tiny)) + transition_draws * u
    logits -= logits.max(axis=-1, keepdims=True)
    return np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)


after = {u: next_state_probabilities(u) for u in (0, 1)}
stay = {u: np.diagonal(after[u], axis1=-2, axis2=-1) for u in after}
leave_log_odds_change = np.log((1 - stay[1]) / stay[1]) - np.log((1 - stay[0]) / stay[0])
origin_table = pd.DataFrame(
    {
        f"state {i}": {
            "P(stay), after no reward": interval90(stay[0][:, i]),
            "P(stay), after a reward": interval90(stay[1][:, i]),
            "change in log-odds of leaving": interval90(leave_log_odds_change[:, i]),
            "P(change < 0)": f"{np.mean(leave_log_odds_change[:, i] < 0):.3f}",
        }
        for i in range(CHOSEN_K)
    }
)
display(origin_table)

# %% [markdown]
# The same as a figure, `plots.plot_transition_probabilities`: for each origin state, the
# probability of each next state after an unrewarded ($u = 0$) and after a rewarded trial
# ($u = 1$), posterior mean and 90 % band. The input takes only these two values, so the grid is
# just them; the line between them only guides the eye.

# %%
display(
    plots.plot_transition_probabilities(
        reward_posterior, input_index=0, grid=np.array([0.0, 1.0]), input_names=["reward on trial t (u)"], prob=0.9
    )
)

# %% [markdown]
# In numbers (computed from the fits above):


# %%
def verdict(gain, se):
    if abs(gain) < 2 * se:
        return "not distinguishable from zero (within 2 SE)"
    return "a clear gain (more than 2 SE above zero)" if gain > 0 else "a clear loss (more than 2 SE below zero)"


clear_weights = [f"{i} → {j}" for (i, j), row in weight_table.iterrows() if row["interval excludes 0"]]
(bayes_gain, bayes_se), (em_gain, em_se) = reward_gains["Bayes"], reward_gains["EM"]
summary_lines = [
    f"* **Held-out gain of reward-driven transitions** ({NUM_FOLDS}-fold over sessions, "
    f"{int(held_out_trials.sum()):,} held-out trials, K = {CHOSEN_K}): posterior predictive "
    f"{bayes_gain:+.4f} ± {bayes_se:.4f} bits per trial, {verdict(bayes_gain, bayes_se)}; EM plug-in "
    f"{em_gain:+.4f} ± {em_se:.4f}, {verdict(em_gain, em_se)}.",
    f"* **Transition weights** (all sessions): {TRANSITION_INTERVAL:.0%} intervals that exclude zero: "
    + (", ".join(clear_weights) if clear_weights else "none")
    + f" (of {len(weight_table)}).",
    "* **Change in the log-odds of leaving after a reward**: "
    + ", ".join(f"state {i} {interval90(leave_log_odds_change[:, i])}" for i in range(CHOSEN_K))
    + ".",
]
display(Markdown("\n".join(summary_lines)))
if not TINY:
    results_dir = Path("..") / "results"
    session_scores.assign(session_id=design.session_ids).to_csv(results_dir / "ibl_transitions.csv")
