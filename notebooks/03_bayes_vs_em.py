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
# # Full Bayes vs EM
#
# The article fits its GLM-HMM by EM, a maximum-likelihood point estimate, because full Bayes is
# "VERY expensive". What does the whole posterior give that EM does not, and what does it cost?
# `bayes_glmhmm.compare.compare_fits` puts the two side by side, against the truth:
#
# * **parameters**: the EM estimate against the posterior mean and its 94 % interval;
# * **states**: EM's Viterbi path against the posterior's most probable state per step;
# * **prediction**: the log density of *new* sequences, EM's plug-in $p(y_\text{new} \mid \hat\theta)$
#   against the posterior predictive $p(y_\text{new} \mid y) = \int p(y_\text{new} \mid \theta)\,
#   p(\theta \mid y)\, d\theta$;
# * **time**.
#
# First on the article's data (10 sequences of 100 balls), then on a tenth of it, where the
# difference grows. Set `BAYES_GLMHMM_NOTEBOOK_TINY=1` for tiny settings (the test suite does).

# %%
# %matplotlib inline
import os
import warnings

# Progress bars are off below; tqdm's note that ipywidgets is missing is noise here.
warnings.filterwarnings("ignore", message="IProgress not found")

TINY = os.environ.get("BAYES_GLMHMM_NOTEBOOK_TINY", "0") not in ("", "0")
NUM_CHAINS = 2 if TINY else 4
NUM_WARMUP, NUM_SAMPLES = (50, 50) if TINY else (1000, 1000)
NUM_SEQUENCES, NUM_TIMESTEPS = (4, 60) if TINY else (10, 100)
NUM_HELDOUT = 3 if TINY else 20
EM_RESTARTS = 2 if TINY else 10

import numpyro

numpyro.set_host_device_count(NUM_CHAINS)  # before JAX starts: one CPU device per chain

import jax
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from matplotlib.figure import Figure

from bayes_glmhmm import article_data, fit_em, fit_nuts, plots, smoothed_state_probs
from bayes_glmhmm.compare import compare_fits, comparison_to_markdown

# ArviZ announces its next major version on import; nothing here depends on it.
warnings.filterwarnings("ignore", message=".*ArviZ is undergoing a major refactor.*", category=FutureWarning)
plt.rcParams["figure.dpi"] = 72
EM_COLOR, BAYES_COLOR, TRUTH_COLOR = "#E69F00", "#0072B2", "0.35"  # Okabe-Ito orange, blue; grey

data = article_data(jax.random.PRNGKey(0), num_sequences=NUM_SEQUENCES, num_timesteps=NUM_TIMESTEPS)
heldout = article_data(jax.random.PRNGKey(1), num_sequences=NUM_HELDOUT, num_timesteps=NUM_TIMESTEPS)
truth = data.params
print(f"tiny={TINY}: train {data.emissions.shape}, held out {heldout.emissions.shape}")

# %% [markdown]
# ## 1. The two fits
#
# EM as in the article: maximum likelihood, here with 10 random restarts (the article uses one).
# NUTS under the article's priors, 4 chains of 1000 draws after 1000 warmup iterations.

# %%
em = fit_em(data.inputs, data.emissions, 3, num_restarts=EM_RESTARTS, seed=0)
posterior = fit_nuts(
    data.inputs,
    data.emissions,
    3,
    num_chains=NUM_CHAINS,
    num_warmup=NUM_WARMUP,
    num_samples=NUM_SAMPLES,
    em_restarts=EM_RESTARTS,
    seed=0,
    progress_bar=False,
)
print(f"EM {em.wall_seconds:.1f} s ({len(em.log_probs)} iterations); NUTS {posterior.wall_seconds['total']:.1f} s")
print({key: value for key, value in posterior.diagnostics().items() if key in ("max_rhat", "min_ess_bulk")})

# %%
plots.plot_em_log_probs(em.log_probs, title="EM training progress (the article's figure)")

# %%
comparison = compare_fits(
    posterior,
    em,
    truth=truth,
    true_states=data.states,
    heldout_inputs=heldout.inputs,
    heldout_emissions=heldout.emissions,
    heldout_states=heldout.states,
)
aligned = posterior.permute(comparison.permutations["posterior"])  # the truth's labels
pd.DataFrame(comparison.parameter_summary).T.round(3)

# %% [markdown]
# ## 2. Parameters
#
# The article's bar charts, with the posterior added: generator, EM and posterior mean, the
# latter with its 94 % interval.

# %%
plots.plot_parameter_bars(truth, comparison.em_params, aligned.samples)

# %%
plots.plot_transition_matrices(
    {
        "truth": truth.transition_matrix,
        "EM (maximum likelihood)": comparison.em_params.transition_matrix,
        "posterior mean": aligned.samples["transition_matrix"].mean(axis=(0, 1)),
    },
    spreads={"posterior mean": aligned.samples["transition_matrix"].std(axis=(0, 1))},
)

# %% [markdown]
# With 1000 balls the point estimates agree closely: with flat Dirichlet priors and weak Normal
# priors, the posterior mean and the maximum-likelihood estimate are nearly the same number. What
# EM cannot say is how far from the truth it may be. The posterior can: its interval widths
# (initial probabilities known to about ± 0.2, weights to ± 0.05) are honest statements, and the
# generating values fall inside them, or just outside where this data set realized something
# else (see the walkthrough notebook).
#
# ## 3. States and prediction

# %%
states = comparison.states
pd.DataFrame(
    {
        "EM Viterbi path": [states["train_em_viterbi_accuracy"], states["heldout_em_viterbi_accuracy"]],
        "posterior, most probable state": [states["train_posterior_accuracy"], states["heldout_posterior_accuracy"]],
    },
    index=["training sequences", "held-out sequences"],
).round(4)

# %% [markdown]
# Both recover about 98 % of the belts, and the remaining 2 % are the hard, light balls of the
# quiz. The difference is what comes with the answer: EM's smoother (under its one estimate) and
# the posterior both give state probabilities; the posterior's also carry the parameters'
# uncertainty. On the held-out sequences, per step, the probability each gives to the **true** belt:

# %%
em_probs = np.asarray(smoothed_state_probs(comparison.em_params, heldout.inputs, heldout.emissions))
bayes_probs = aligned.state_probabilities(heldout.inputs, heldout.emissions)
true_em = np.take_along_axis(em_probs, heldout.states[..., None], -1)[..., 0].ravel()
true_bayes = np.take_along_axis(bayes_probs, heldout.states[..., None], -1)[..., 0].ravel()
fig = Figure(figsize=(5.5, 5), layout="constrained")
ax = fig.subplots()
ax.scatter(true_em, true_bayes, s=10, alpha=0.5, color=BAYES_COLOR, linewidths=0)
ax.plot([0, 1], [0, 1], color="black", lw=0.8, ls="--")
ax.set_xlabel("EM: p(true belt | y, x, theta_EM)")
ax.set_ylabel("posterior: p(true belt | y, x)")
ax.set_title(f"{true_em.size} held-out steps")
display(fig)
print(f"mean log probability of the true belt: EM {np.log(np.clip(true_em, 1e-12, 1)).mean():.4f}, ")
print(f"posterior {np.log(np.clip(true_bayes, 1e-12, 1)).mean():.4f} (higher is better)")

# %% [markdown]
# Now prediction: the log density each gives to every held-out sequence, relative to EM's. The
# generator's own density (grey) is the best any estimate can do on average.


# %%
def plot_heldout_gain(result, title):
    """Per held-out sequence: log p(y_n | y) - log p(y_n | theta_EM), and the generator's."""
    gain = np.subtract(result.heldout["posterior_predictive"], result.heldout["em_plugin"])
    oracle = np.subtract(result.heldout["truth"], result.heldout["em_plugin"])
    finite = np.isfinite(gain) & np.isfinite(oracle)
    order = np.arange(gain.size)
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    ax = fig.subplots()
    ax.bar(order[finite] - 0.2, gain[finite], width=0.4, color=BAYES_COLOR, label="posterior predictive - EM plug-in")
    ax.bar(order[finite] + 0.2, oracle[finite], width=0.4, color=TRUTH_COLOR, label="generator - EM plug-in")
    for n in order[~finite]:
        ax.text(n, 0, " EM's value not finite", rotation=90, ha="center", va="bottom", fontsize="small")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(order)
    ax.set_xlabel("held-out sequence")
    ax.set_ylabel("log density difference (nats)")
    mean = gain[finite].mean()
    se = gain[finite].std(ddof=1) / np.sqrt(finite.sum()) if finite.sum() > 1 else float("nan")
    left_out = f" ({(~finite).sum()} left out)" if not finite.all() else ""
    ax.set_title(f"{title}: the posterior gains {mean:.2f} ± {se:.2f} nats per sequence over EM{left_out}")
    ax.legend(loc="best", fontsize="small")
    return fig


display(plot_heldout_gain(comparison, "10 training sequences"))

# %% [markdown]
# With 1000 training balls the two predict about equally well: the difference is a fraction of
# a nat per sequence, comparable to its standard error, and both sit well below the generator.
# The posterior is narrow, so averaging over it changes little. The full tables:

# %%
display(Markdown(comparison_to_markdown(comparison)))

# %% [markdown]
# ## 4. With less data the difference grows
#
# Refit both on the first training sequence alone: 100 balls for 21 parameters. Maximum
# likelihood has no brakes here: one sequence has one first ball, so EM sets the initial
# probabilities to exactly 1 and 0, and a transition seen rarely or never gets a probability of
# (nearly) 0. The posterior keeps such values off the boundary, as far as 100 balls and the flat
# Dirichlet prior warrant, and widens every interval to match how little the data say.

# %%
small_em = fit_em(data.inputs[:1], data.emissions[:1], 3, num_restarts=EM_RESTARTS, seed=0)
small_posterior = fit_nuts(
    data.inputs[:1],
    data.emissions[:1],
    3,
    num_chains=NUM_CHAINS,
    num_warmup=NUM_WARMUP,
    num_samples=NUM_SAMPLES,
    em_restarts=EM_RESTARTS,
    seed=0,
    progress_bar=False,
)
small = compare_fits(
    small_posterior,
    small_em,
    truth=truth,
    true_states=data.states[:1],
    heldout_inputs=heldout.inputs,
    heldout_emissions=heldout.emissions,
    heldout_states=heldout.states,
)
small_aligned = small_posterior.permute(small.permutations["posterior"])
print("EM initial probabilities:", np.round(small.em_params.initial_probs, 3))
print("posterior mean:          ", np.round(small_aligned.posterior_mean().initial_probs, 3))
summaries = {"10 sequences": comparison.parameter_summary["all"], "1 sequence": small.parameter_summary["all"]}
pd.DataFrame(summaries).round(3)

# %%
plots.plot_parameter_bars(truth, small.em_params, small_aligned.samples)

# %% [markdown]
# And on the held-out sequences (a bar left out where EM's plug-in log density is not a finite
# number):

# %%
display(plot_heldout_gain(small, "1 training sequence"))

# %% [markdown]
# Trained on one sequence, the posterior predictive is far better than EM's plug-in on every
# held-out sequence, close to the generator itself: averaging over what 100 balls leave
# uncertain protects against the extreme values a single point estimate commits to.

# %% [markdown]
# ## 5. What it costs

# %%
runs = {
    "EM, 10 sequences": comparison.wall_seconds["em"],
    "NUTS, 10 sequences": comparison.wall_seconds["nuts_total"],
    "EM, 1 sequence": small.wall_seconds["em"],
    "NUTS, 1 sequence": small.wall_seconds["nuts_total"],
}
fig = Figure(figsize=(8, 3), layout="constrained")
ax = fig.subplots()
ax.barh(list(runs), list(runs.values()), color=[EM_COLOR, BAYES_COLOR, EM_COLOR, BAYES_COLOR])
for y, seconds in enumerate(runs.values()):
    ax.text(seconds, y, f" {seconds:.1f} s", va="center", fontsize="small")
ax.set_xlabel("wall time (seconds, compile included, this machine)")
ax.invert_yaxis()
ax.set_xlim(0, 1.2 * max(runs.values()))
display(fig)

# %% [markdown]
# **Summary.** On the article's data full Bayes costs about a minute on two CPU cores, not "VERY"
# much: the forward filter sums out the belts exactly, and NUTS handles the 21 remaining numbers
# easily. In return it gives intervals that tell how well each parameter is known, state
# probabilities that include that uncertainty, and predictions that average over it. With plenty
# of data the point estimates barely differ; with little data, maximum likelihood commits to
# extreme values that the posterior, and new data, do not support.
