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
# # Diagnostics: can we trust these draws?
#
# A posterior is only as good as the sampler that drew it. This notebook goes through the checks a
# user of `bayes_glmhmm` should make, all one call away with ArviZ:
#
# 1. a healthy fit: summary table, trace, rank, energy, ESS and R-hat, pair plots;
# 2. **label switching**: the states of an HMM can be permuted without changing the likelihood, so
#    chains land in different labelings; shown on the raw draws, then fixed by relabeling;
# 3. **a stuck chain**: a chain trapped in an inferior mode where two belts are merged, shown and
#    detected;
# 4. the diagnostic report that puts all of it in one HTML file (`bayes-glmhmm report`).
#
# Set `BAYES_GLMHMM_NOTEBOOK_TINY=1` to run everything with tiny settings (the test suite does).

# %%
# %matplotlib inline
import os
import tempfile
import warnings

# Progress bars are off below; tqdm's note that ipywidgets is missing is noise here.
warnings.filterwarnings("ignore", message="IProgress not found")

TINY = os.environ.get("BAYES_GLMHMM_NOTEBOOK_TINY", "0") not in ("", "0")
NUM_CHAINS = 2 if TINY else 4
NUM_WARMUP, NUM_SAMPLES = (50, 50) if TINY else (1000, 1000)
SWITCH_WARMUP, SWITCH_SAMPLES = (50, 50) if TINY else (500, 500)
STUCK_WARMUP, STUCK_SAMPLES = (50, 50) if TINY else (300, 300)
EM_RESTARTS = 2 if TINY else 10

import numpyro

numpyro.set_host_device_count(NUM_CHAINS)  # before JAX starts: one CPU device per chain

import arviz as az
import jax
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from cycler import cycler
from IPython.display import display

from bayes_glmhmm import GLMHMMParams, article_data, fit_nuts, match_params, plots
from bayes_glmhmm.relabel import invert_permutation, relabel_draws
from bayes_glmhmm.report import report_checks, write_report

# ArviZ announces its next major version on import; nothing here depends on it.
warnings.filterwarnings("ignore", message=".*ArviZ is undergoing a major refactor.*", category=FutureWarning)
# ArviZ 0.23 calls a signature that Matplotlib 3.11 deprecates; harmless.
warnings.filterwarnings("ignore", message="Passing a dict or None as alias_mapping")
plt.rcParams["figure.dpi"] = 72
# ArviZ colours chains from the Matplotlib cycle: make it the colour-blind-safe Okabe-Ito one.
plt.rcParams["axes.prop_cycle"] = cycler(color=["#0072B2", "#E69F00", "#CC79A7", "#000000", "#56B4E9", "#D55E00"])
EMISSION = ["weights", "biases", "scales"]


class OneLineLabeller(az.labels.BaseLabeller):
    """ArviZ panel titles on one line, ``weights[0, 0]``: two-line titles collide in tall grids."""

    def make_label_vert(self, var_name, sel, isel):
        return self.make_label_flat(var_name, sel, isel)


LABELS = {"labeller": OneLineLabeller(), "backend_kwargs": {"layout": "constrained"}}

data = article_data(jax.random.PRNGKey(0))  # the article's 10 sequences x 100 balls, in tiny runs too
truth = data.params
print(f"tiny={TINY}: {NUM_CHAINS} chains; data {data.emissions.shape[0]} sequences x {data.emissions.shape[1]} steps")

# %% [markdown]
# ## 1. A healthy fit
#
# The default `fit_nuts` starts every chain near a MAP estimate found by EM with restarts. Its
# `to_arviz()` gives an `arviz.InferenceData` with every group ArviZ expects (and the FFBS state
# draws in an extra `posterior_states` group).

# %%
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
posterior = posterior.permute(match_params(posterior.posterior_mean(), truth))  # the truth's labels, for reading
idata = posterior.to_arviz(key=jax.random.PRNGKey(1))
print(idata)

# %% [markdown]
# ### Summary table, ESS and R-hat
#
# `az.summary` gives, per parameter, the posterior mean and sd, a 94 % HDI, the Monte Carlo standard
# error, the bulk and tail **effective sample sizes** and the rank-normalized split **R-hat**. The
# usual thresholds (Vehtari et al. 2021): R-hat at most 1.01, and ESS of at least 100 per chain
# (400 for four chains) before trusting the intervals.

# %%
summary = az.summary(idata, var_names=["weights", "biases", "scales", "initial_probs", "transition_matrix"])
flagged = summary[(summary["r_hat"] > 1.01) | (summary["ess_bulk"] < 100 * NUM_CHAINS)]
print(f"max R-hat {summary['r_hat'].max():.3f}; min bulk ESS {summary['ess_bulk'].min():.0f}; ")
print(f"min tail ESS {summary['ess_tail'].min():.0f}; flagged rows: {len(flagged)}")
display(summary)

# %% [markdown]
# A forest plot puts each parameter's interval next to its R-hat and bulk ESS, so a parameter
# that needs attention stands out at a glance.

# %%
axes = az.plot_forest(idata, var_names=EMISSION, r_hat=True, ess=True, combined=True, figsize=(11, 6))
axes[0].set_xlabel("parameter value (94% HDI per chain)")
axes[0].figure.suptitle("Forest plot with R-hat and bulk ESS")
plt.show()

# %% [markdown]
# ESS should grow in proportion to the number of draws; a flattening curve means the chains
# explore more slowly than they run.

# %%
axes = az.plot_ess(
    idata, var_names=["weights"], kind="evolution", n_points=5 if TINY else 20, figsize=(11, 3.5), **LABELS
)
for ax in np.ravel(axes):
    ax.set_xlabel("total number of draws")
    ax.set_ylabel("effective sample size")

# %% [markdown]
# ### Trace and rank plots
#
# Traces should look like stationary noise and every chain's density the same. Rank plots are the
# sharper test: rank all draws of a parameter together; if the chains sample one distribution,
# each chain's ranks are uniform (flat histograms).

# %%
axes = az.plot_trace(idata, var_names=EMISSION, compact=True, legend=True, figsize=(11, 6), **LABELS)
axes[0, 0].figure.suptitle("Trace plot: per-chain densities (left) and traces (right)")
plt.show()

# %%
axes = az.plot_rank(idata, var_names=["weights"], figsize=(11, 3), **LABELS)
axes[0].figure.suptitle("Rank plots: flat when the chains agree")
plt.show()

# %% [markdown]
# ### Energy and divergences
#
# NUTS moves along Hamiltonian trajectories. If the energy changes between iterations are narrow
# compared with the marginal energy distribution (E-BFMI below 0.3), the sampler cannot reach the
# tails. Divergent transitions flag regions of high curvature where the integrator breaks down.

# %%
ax = az.plot_energy(idata, figsize=(7, 4))
ax.set_xlabel("energy, centred")
print("E-BFMI per chain:", np.round(az.bfmi(idata), 2), "; divergences:", int(idata.sample_stats["diverging"].sum()))

# %% [markdown]
# ### Pair plots
#
# Within one belt, the weight and bias are strongly correlated in the posterior: the inputs lie in
# [1, 10], far from x = 0 where the bias lives, so a steeper line must start lower. (The sampler
# moves the intercept at the mean input instead, which removes this correlation from its own
# coordinates; the posterior above is unchanged by that.)

# %%
axes = az.plot_pair(
    idata,
    var_names=["weights", "biases", "scales"],
    coords={"state": [1]},
    kind="scatter",
    marginals=True,
    divergences=True,
    scatter_kwargs={"alpha": 0.2},
    figsize=(7, 7),
    labeller=OneLineLabeller(),
)
axes[0, 0].figure.suptitle("Belt 1: weight, bias and noise scale")
plt.show()

# %% [markdown]
# ## 2. Label switching, before and after relabeling
#
# Permuting the belts' labels leaves the likelihood unchanged, and the article's priors are the
# same for every belt, so the posterior has 3! = 6 identical copies of each mode. A chain picks
# one; different chains pick different ones. We provoke it by starting the chains from NumPyro's
# random initialization instead of the EM estimate.
#
# `fit_nuts` then relabels every draw to a common labeling. It keeps the permutation it applied
# to each draw (`posterior.permutations`, new belt k = raw belt `perm[k]`), so the raw draws come
# back by applying the inverse permutations.

# %%
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    switched = fit_nuts(
        data.inputs,
        data.emissions,
        3,
        init="prior",
        num_chains=NUM_CHAINS,
        num_warmup=SWITCH_WARMUP,
        num_samples=SWITCH_SAMPLES,
        seed=0,
        progress_bar=False,
    )
for warning in caught:
    if "stuck" in str(warning.message):
        print("fit_nuts warned:", warning.message)
switched = switched.permute(match_params(switched.posterior_mean(), truth))
raw = relabel_draws(switched.samples, invert_permutation(switched.permutations))
# The round trip is exact: relabeling the raw draws again gives the stored draws.
for name, value in relabel_draws(raw, switched.permutations).items():
    np.testing.assert_array_equal(value, switched.samples[name])

rows = []
for c in range(switched.num_chains):
    permutations, counts = np.unique(switched.permutations[c], axis=0, return_counts=True)
    rows.append(
        {
            "chain": c,
            "usual permutation (belt k = raw belt perm[k])": tuple(int(v) for v in permutations[counts.argmax()]),
            "draws with another permutation": f"{100 * (1 - counts.max() / counts.sum()):.1f}%",
            "median log density": round(float(np.median(switched.sample_stats["lp"][c])), 1),
            "stuck": c in switched.stuck_chains,
        }
    )
pd.DataFrame(rows).set_index("chain")

# %% [markdown]
# The raw weights: each chain has found the three belts, but not under the same labels, so one
# label's trace jumps between values from chain to chain.

# %%
raw_idata = az.from_dict(posterior={"weights": raw["weights"]})
axes = az.plot_trace(raw_idata, compact=False, legend=True, figsize=(11, 5), **LABELS)
axes[0, 0].figure.suptitle("BEFORE relabeling: raw draws of the weights, label by label")
plt.show()

# %%
relabeled_idata = az.from_dict(posterior={"weights": switched.samples["weights"]})
axes = az.plot_trace(relabeled_idata, compact=False, legend=True, figsize=(11, 5), **LABELS)
axes[0, 0].figure.suptitle("AFTER relabeling: the same draws in one labeling")
plt.show()


# %%
def max_rhat(samples, chains=None):
    """Largest R-hat over the emission parameters, optionally of a subset of chains."""
    chains = slice(None) if chains is None else chains
    dataset = az.convert_to_dataset({name: samples[name][chains] for name in EMISSION})
    return float(max(az.rhat(dataset)[name].max() for name in EMISSION))


healthy = [c for c in range(switched.num_chains) if c not in switched.stuck_chains]
pd.DataFrame(
    {
        "max R-hat, emission parameters": [
            max_rhat(raw),
            max_rhat(switched.samples),
            max_rhat(switched.samples, healthy) if len(healthy) > 1 else float("nan"),
        ]
    },
    index=["raw draws", "relabeled", "relabeled, stuck chains dropped"],
).round(3)

# %% [markdown]
# Relabeling repairs label switching, but not everything: when a chain is stuck in a different
# *mode* (not merely a different labeling of the same mode), R-hat stays high until that chain is
# dropped; the last row drops the chains `fit_nuts` flagged as stuck, if any (the warning above
# names them). Random initialization does land chains in such a mode (with the identity starting
# mass matrix, one chain in 3 of 4 seeds in an earlier measurement), which is why `fit_nuts`
# starts from EM by default. The next section looks at such a chain on purpose.
#
# ## 3. A stuck chain, shown and detected
#
# Besides the good mode, this posterior has an inferior one where two belts are merged into a
# single wide state (noise sd of about 6) and the remaining belt split in two. We start chain 0 at
# the truth and chain 1 in that merged mode.

# %%
MERGED_MODE = GLMHMMParams(
    initial_probs=np.array([0.121, 0.693, 0.186]),
    transition_matrix=np.array([[0.233, 0.351, 0.416], [0.05, 0.911, 0.039], [0.215, 0.575, 0.21]]),
    weights=np.array([[0.158], [0.247], [0.253]]),
    biases=np.array([0.226, 0.196, -0.459]),
    scales=np.array([0.684, 5.926, 0.624]),
)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    stuck = fit_nuts(
        data.inputs,
        data.emissions,
        3,
        init=[truth, MERGED_MODE],
        num_chains=2,
        num_warmup=STUCK_WARMUP,
        num_samples=STUCK_SAMPLES,
        seed=2,
        progress_bar=False,
    )
for warning in caught:
    if "stuck" in str(warning.message):
        print("fit_nuts warned:", warning.message)
print("detected stuck chains:", stuck.stuck_chains, f"(threshold {stuck.stuck_threshold:.1f} nats)")

# %% [markdown]
# The log density tells the two chains apart at a glance: chain 1 sits hundreds of nats below
# chain 0 and never comes up. `detect_stuck_chains` flags a chain whose median log density lies
# more than max(5, 3 sd) below the best chain's. (The merged mode is metastable: with other seeds
# a chain may leave it after some hundred draws, which shows here as a jump in the trace and in
# R-hat as a failed check.)

# %%
plots.plot_lp_by_chain(stuck.sample_stats["lp"], stuck_chains=stuck.stuck_chains)

# %%
axes = az.plot_trace(
    az.from_dict(posterior={name: stuck.samples[name] for name in EMISSION}),
    var_names=["scales"],
    compact=False,
    legend=True,
    figsize=(11, 4),
    **LABELS,
)
axes[0, 0].figure.suptitle("The stuck chain has one very wide belt: two belts merged")
plt.show()

# %%
kept = stuck.drop_chains(stuck.stuck_chains)
print(f"max R-hat with both chains: {stuck.diagnostics()['max_rhat']:.2f}; chains kept: {kept.num_chains}")
per_chain = {"truth": np.concatenate([truth.weights[:, 0], truth.biases, truth.scales])}
for c in range(stuck.num_chains):
    means = [stuck.samples[name][c].mean(axis=0).ravel() for name in EMISSION]
    per_chain[f"chain {c} mean" + (" (stuck)" if c in stuck.stuck_chains else "")] = np.concatenate(means)
names = [f"{name}[{k}]" for name in EMISSION for k in range(3)]
pd.DataFrame(per_chain, index=names).round(2)

# %% [markdown]
# The stuck chain explains the data with one wide belt (noise sd near 6) that absorbs the
# steep belts 0 and 1, and two flat belts near weight 0.2: a worse explanation by nearly 700 nats
# of log density, but a local optimum that NUTS does not leave. `fit_nuts(on_stuck="drop")` drops
# such chains; better still, run more chains from good starting points (the default EM
# initialization) than trust the one that is left: with one chain R-hat cannot compare chains.
#
# ## 4. Everything in one report
#
# `bayes-glmhmm report posterior.nc --out DIR` (or `write_report(idata, DIR)`) writes a
# self-contained HTML file (figures embedded) and a Markdown version: the checks below with their
# thresholds, the summary table with R-hat and ESS flagged, per-chain divergences, E-BFMI and tree
# depth, the energy plot, log density by chain, trace and rank plots, the relabeling that was
# applied, and the posterior state probabilities. The demo's report is in `results/report/`.

# %%
report_dir = tempfile.mkdtemp(prefix="glmhmm-report-")
paths = write_report(idata, report_dir, title="Diagnostics notebook: the healthy fit")
print("wrote", paths["html"], f"({os.path.getsize(paths['html']) / 1e6:.1f} MB, self-contained)")
pd.DataFrame(report_checks(idata)).set_index("check")
