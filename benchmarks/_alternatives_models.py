"""The competitors of ``benchmarks/alternatives.py``: the GLM-HMM as a plain user would write it.

All three share the article's priors (``Priors()``): Dirichlet(1) on the initial probabilities and
on each transition row, Normal(0, 1) on weights and biases, HalfNormal(1) on the noise scales, and
the Gaussian emission y[n, t] | z = k ~ Normal(x[n, t] . weights[k] + biases[k], scales[k]).

* :func:`naive_model`: NumPyro, the states summed out by a plain log-space ``lax.scan`` forward
  algorithm (vmapped over sequences, differentiated by autodiff), entering through
  ``numpyro.factor``; no centring, NumPyro's default initialization.
* :func:`enumeration_model`: NumPyro's own discrete enumeration: the state is a
  ``numpyro.sample`` site with ``infer={"enumerate": "parallel"}`` inside
  ``numpyro.contrib.control_flow.scan``, a ``numpyro.plate`` over sequences; funsor sums it out.
* ``stan/glmhmm.stan``: Stan's ``hmm_marginal`` (through pystan 3), see :func:`stan_program`.
"""

import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import logsumexp
from numpyro.contrib.control_flow import scan

from bayes_glmhmm.model import GAUSSIAN, prior_distributions

STAN_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stan", "glmhmm.stan")


def _sample_parameters(num_states, input_dim, priors):
    """The article's priors (:func:`bayes_glmhmm.model.prior_distributions`, the package's one
    definition, for the Gaussian family), sampled under the names the rest of the package uses."""
    distributions = prior_distributions(GAUSSIAN, num_states, input_dim, priors)
    return tuple(numpyro.sample(name, distributions[name]) for name in GAUSSIAN.param_names)


def _forward_log_marginal(log_initial, log_transition, log_likelihoods):
    """log p(y_{1:T}) of one sequence by the log-space forward algorithm; log_likelihoods is (T, K)."""

    def _step(log_alpha, log_likelihood):
        log_alpha = logsumexp(log_alpha[:, None] + log_transition, axis=0) + log_likelihood
        return log_alpha, None

    log_alpha, _ = jax.lax.scan(_step, log_initial + log_likelihoods[0], log_likelihoods[1:])
    return logsumexp(log_alpha)


def make_naive_model(num_states, priors):
    """The naive NumPyro model ``model(inputs, emissions)``: scanned forward algorithm + factor.

    ``num_states`` and ``priors`` are closed over so that ``MCMC(..., jit_model_args=True)`` can
    trace the data arguments.
    """

    def naive_model(inputs, emissions):
        initial_probs, transition_matrix, weights, biases, scales = _sample_parameters(
            num_states, inputs.shape[-1], priors
        )
        means = jnp.einsum("ntd,kd->ntk", inputs, weights) + biases
        log_likelihoods = dist.Normal(means, scales).log_prob(emissions[..., None])  # (N, T, K)
        per_sequence = jax.vmap(_forward_log_marginal, in_axes=(None, None, 0))(
            jnp.log(initial_probs), jnp.log(transition_matrix), log_likelihoods
        )
        numpyro.factor("marginal_loglik", jnp.sum(per_sequence))

    return naive_model


def make_enumeration_model(num_states, priors):
    """NumPyro's discrete enumeration ``model(inputs, emissions)``: z sampled in a scan, summed out.

    The first step draws from ``initial_probs`` through an extra row of the transition table
    (index K, the scan's starting carry), so one scan body covers every step.
    """

    def enumeration_model(inputs, emissions):
        num_sequences, _, input_dim = inputs.shape
        initial_probs, transition_matrix, weights, biases, scales = _sample_parameters(num_states, input_dim, priors)
        probs_table = jnp.concatenate([transition_matrix, initial_probs[None]], axis=0)

        def _step(previous_state, xs):
            inputs_t, emissions_t = xs
            with numpyro.plate("sequences", num_sequences, dim=-1):
                state = numpyro.sample(
                    "z", dist.Categorical(probs_table[previous_state]), infer={"enumerate": "parallel"}
                )
                mean = jnp.sum(weights[state] * inputs_t, axis=-1) + biases[state]
                numpyro.sample("y", dist.Normal(mean, scales[state]), obs=emissions_t)
            return state, None

        start = jnp.full((num_sequences,), num_states, dtype=jnp.int32)
        scan(_step, start, (jnp.swapaxes(inputs, 0, 1), jnp.swapaxes(emissions, 0, 1)))

    return enumeration_model


def stan_program() -> str:
    """The Stan program (``benchmarks/stan/glmhmm.stan``)."""
    with open(STAN_PATH, encoding="utf-8") as handle:
        return handle.read()


def stan_data(inputs, emissions, num_states: int) -> dict:
    """The data block of the Stan program from (N, T, D) inputs and (N, T) emissions."""
    num_sequences, num_timesteps, input_dim = np.shape(inputs)
    return {
        "N": num_sequences,
        "T": num_timesteps,
        "K": num_states,
        "D": input_dim,
        "x": np.asarray(inputs, dtype=float),
        "y": np.asarray(emissions, dtype=float),
    }


def stan_constrained(params) -> dict:
    """GLMHMMParams as the constrained values of the Stan program's parameters."""
    return {
        "initial_probs": np.asarray(params.initial_probs, dtype=float).tolist(),
        "transition_rows": np.asarray(params.transition_matrix, dtype=float).tolist(),
        "weights": np.asarray(params.weights, dtype=float).tolist(),
        "biases": np.asarray(params.biases, dtype=float).tolist(),
        "scales": np.asarray(params.scales, dtype=float).tolist(),
    }


def stan_draws(fit, num_warmup: int) -> tuple[dict, dict]:
    """(parameter draws, sampler stats) of a one-chain pystan fit run with ``save_warmup=True``.

    Parameter draws are the kept draws only, shaped (draw, ...) like NumPyro's, with the package's
    names; the stats hold ``n_leapfrog_warmup``, ``n_leapfrog``, ``diverging`` and ``lp``.
    """

    def _kept(name):
        value = np.asarray(fit[name])  # (stan dims..., draws)
        return np.moveaxis(value, -1, 0)[num_warmup:]

    leapfrog = np.asarray(fit["n_leapfrog__"]).ravel()
    draws = {
        "initial_probs": _kept("initial_probs"),
        "transition_matrix": _kept("transition_rows"),
        "weights": _kept("weights"),
        "biases": _kept("biases"),
        "scales": _kept("scales"),
    }
    stats = {
        "n_leapfrog_warmup": leapfrog[:num_warmup],
        "n_leapfrog": leapfrog[num_warmup:],
        "diverging": np.asarray(fit["divergent__"]).ravel()[num_warmup:].astype(bool),
        "lp": np.asarray(fit["lp__"]).ravel()[num_warmup:],
    }
    return draws, stats


def stan_elapsed_seconds(fit) -> dict:
    """Stan's own timing of the chain: ``{"warmup": s, "sampling": s, "total": s}`` (NaN if absent)."""
    found = {}
    pattern = re.compile(rb"([0-9.eE+-]+) seconds \((Warm-up|Sampling|Total)\)")
    for line in fit.stan_outputs[0].splitlines():
        if b'"logger"' not in line:
            continue
        match = pattern.search(line)
        if match:
            found.setdefault(match.group(2).decode(), float(match.group(1)))
    return {
        "warmup": found.get("Warm-up", float("nan")),
        "sampling": found.get("Sampling", float("nan")),
        "total": found.get("Total", float("nan")),
    }
