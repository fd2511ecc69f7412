"""NUTS for the GLM-HMM: robust initialization, stuck-chain detection, relabeling, posterior states.

:func:`fit_nuts` runs, in order:

1. a MAP EM fit with several restarts under the same priors (:func:`bayes_glmhmm.em.fit_em`);
2. NUTS chains started from that estimate with independent jitter in the unconstrained space,
   so that no chain starts in the basin of an inferior (merged-states) mode;
3. detection of chains whose log density sits far below the best chain's (a stuck chain);
4. relabeling of every draw of every chain to the EM labeling (:mod:`bayes_glmhmm.relabel`).

The returned :class:`Posterior` holds relabeled draws and computes, per posterior draw, FFBS
state paths, smoothed state probabilities, per-sequence log-likelihoods and predictive draws.
"""

import time
import warnings
from dataclasses import dataclass, field, replace

import jax
import jax.numpy as jnp
import numpy as np

from bayes_glmhmm.em import EMResult, fit_em
from bayes_glmhmm.inference import hmm_sample_states
from bayes_glmhmm.model import (
    batched_log_likelihoods,
    batched_marginal_loglik,
    batched_smoother,
    unconstrain_sites,
)
from bayes_glmhmm.params import PARAM_NAMES, GLMHMMParams, Priors, validate_data, validate_num_states
from bayes_glmhmm.relabel import relabel_draws, relabel_samples, state_features
from bayes_glmhmm.sampler import run_nuts
from bayes_glmhmm.simulate import simulate
from bayes_glmhmm.standardize import standardize_if_requested

__all__ = ["Posterior", "fit_nuts", "detect_stuck_chains", "PARAM_NAMES"]


def detect_stuck_chains(log_density: np.ndarray, threshold: float | None = None) -> tuple[list[int], float]:
    """Chains whose median log density sits far below the best chain's.

    Within one mode the log density of a d-dimensional posterior fluctuates with a standard
    deviation of about sqrt(d / 2); a chain in the same mode differs from the best only by Monte
    Carlo error in its median. A chain is flagged when its median is lower than the best chain's
    by more than ``threshold``, by default max(5, 3 x the within-chain spread), the spread being
    the median over chains of 1.4826 x the median absolute deviation: robust, so that one chain
    jumping between modes does not inflate the threshold past the gap it should detect.

    Args:
        log_density: (num_chains, num_draws) log density of the draws.
        threshold: nats below the best chain's median at which a chain counts as stuck.

    Returns:
        ``(stuck_chain_indices, threshold_used)``.
    """
    log_density = np.asarray(log_density, dtype=float)
    medians = np.median(log_density, axis=1)
    if threshold is None:
        deviations = np.abs(log_density - medians[:, None])
        within_sd = float(np.median(1.4826 * np.median(deviations, axis=1)))
        threshold = max(5.0, 3.0 * within_sd)
    best = np.max(medians)
    return [int(c) for c in np.flatnonzero(medians < best - threshold)], float(threshold)


def _draw_chunks(num_draws: int, chunk_size: int):
    for start in range(0, num_draws, chunk_size):
        yield start, min(start + chunk_size, num_draws)


@jax.jit
def _loglik_per_draw(params, inputs, emissions, mask):
    return jax.vmap(batched_marginal_loglik, in_axes=(0, None, None, None))(params, inputs, emissions, mask)


@jax.jit
def _smoothed_sum(params, inputs, emissions, mask):
    smoothed = jax.vmap(batched_smoother, in_axes=(0, None, None, None))(params, inputs, emissions, mask)
    return jnp.sum(smoothed.smoothed_probs, axis=0)


@jax.jit
def _ffbs_per_draw(keys, params, inputs, emissions, mask):
    def _one_draw(key, draw_params):
        log_likelihoods = batched_log_likelihoods(draw_params, inputs, emissions)
        sequence_keys = jax.random.split(key, emissions.shape[0])
        ffbs = jax.vmap(hmm_sample_states, in_axes=(0, None, None, 0, 0))
        return ffbs(sequence_keys, draw_params.initial_probs, draw_params.transition_matrix, log_likelihoods, mask)

    return jax.vmap(_one_draw)(keys, params)


@jax.jit
def _predictive_per_draw(keys, params, inputs):
    return jax.vmap(simulate, in_axes=(0, 0, None))(keys, params, inputs)


@dataclass
class Posterior:
    """Relabeled NUTS draws of a GLM-HMM and what can be computed from them.

    Attributes:
        samples: dict of NumPy arrays shaped (chain, draw, ...) with keys ``initial_probs``,
            ``transition_matrix``, ``weights``, ``biases``, ``scales``; already relabeled.
        permutations: (chain, draw, K) permutation applied to each draw (new k = old perm[k]).
        sample_stats: dict of (chain, draw) arrays: ``diverging``, ``energy``, ``n_steps``,
            ``tree_depth``, ``step_size``, ``lp`` (log density in the unconstrained space).
        inputs, emissions, mask: the data as fitted, (N, T, D), (N, T), (N, T).
        num_states: K.
        priors: the priors used.
        em: the MAP EM fit used for initialization and as the relabeling reference (or None).
        stuck_chains: indices of chains flagged by :func:`detect_stuck_chains`.
        stuck_threshold: the threshold in nats used for that.
        wall_seconds: dict of timings: ``em``, ``nuts`` (compile included), ``relabel``, ``total``.
        settings: the sampler settings, and ``warmup_gradients``: leapfrog steps per chain in warmup
            (those of the kept draws are ``sample_stats["n_steps"]``; the 2 D + 1 gradients of the
            preconditioning Hessian at the start are not counted).
        lengths: (N,) true length of each sequence when sequences were padded to a common T
            (steps beyond are padding, masked out and blanked in every output), else None.
    """

    samples: dict
    permutations: np.ndarray
    sample_stats: dict
    inputs: np.ndarray
    emissions: np.ndarray
    mask: np.ndarray
    num_states: int
    priors: Priors
    em: EMResult | None = None
    stuck_chains: list = field(default_factory=list)
    stuck_threshold: float = float("nan")
    wall_seconds: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    lengths: np.ndarray | None = None

    def valid_steps(self) -> np.ndarray:
        """(N, T) True at real time steps, False at padding (after a sequence's length)."""
        if self.lengths is None:
            return np.ones(self.emissions.shape, bool)
        return np.arange(self.emissions.shape[1])[None, :] < np.asarray(self.lengths)[:, None]

    @property
    def num_chains(self) -> int:
        return int(self.samples["weights"].shape[0])

    @property
    def num_draws(self) -> int:
        return int(self.samples["weights"].shape[1])

    def flat_params(self) -> GLMHMMParams:
        """All draws as one GLMHMMParams whose arrays have a leading (chain * draw) axis."""
        return GLMHMMParams(
            *(jnp.asarray(self.samples[name].reshape((-1,) + self.samples[name].shape[2:])) for name in PARAM_NAMES)
        )

    def _data(self, inputs=None, emissions=None, mask=None):
        """The fitted data, or new data (validated) when ``inputs`` and ``emissions`` are given."""
        if inputs is None and emissions is None:
            return jnp.asarray(self.inputs), jnp.asarray(self.emissions), jnp.asarray(self.mask)
        if inputs is None or emissions is None:
            raise ValueError("inputs and emissions must be given together (or neither, for the fitted data)")
        inputs, emissions, mask = validate_data(inputs, emissions, mask)
        if inputs.shape[-1] != self.inputs.shape[-1]:
            raise ValueError(f"inputs have {inputs.shape[-1]} input dimensions, the model {self.inputs.shape[-1]}")
        return inputs, emissions, mask

    def permute(self, permutation) -> "Posterior":
        """Relabel every draw by one more permutation (new state k = current state perm[k]).

        Useful to express the posterior in the labeling of a known truth, see
        :func:`bayes_glmhmm.relabel.match_params`. The stored ``permutations`` are composed, so
        they still map the raw sampler labels to the final ones.
        """
        permutation = np.asarray(permutation)
        if sorted(permutation.tolist()) != list(range(self.num_states)):
            raise ValueError(f"permutation must be a permutation of range({self.num_states}), got {permutation}")
        tiled = np.broadcast_to(permutation, self.permutations.shape)
        em = self.em
        if em is not None:
            em = em._replace(params=GLMHMMParams(*(np.asarray(p) for p in em.params.permute(permutation))))
        return replace(
            self,
            samples=relabel_draws(self.samples, tiled),
            permutations=self.permutations[..., permutation],
            em=em,
        )

    def _per_draw(self, function, *leading, chunk_size: int = 500):
        """Apply a jitted per-draw function over chunks of draws; returns (chain, draw, ...) NumPy."""
        params = self.flat_params()
        total = self.num_chains * self.num_draws
        outputs = []
        for start, stop in _draw_chunks(total, chunk_size):
            chunk = jax.tree.map(lambda p, start=start, stop=stop: p[start:stop], params)
            extra = [array[start:stop] for array in leading]
            outputs.append(np.asarray(function(*extra, chunk)))
        stacked = np.concatenate(outputs, axis=0)
        return stacked.reshape((self.num_chains, self.num_draws) + stacked.shape[1:])

    def log_likelihood(self, inputs=None, emissions=None, mask=None) -> np.ndarray:
        """Log p(y[n] | x[n], theta_s) for every draw s and sequence n, shape (chain, draw, N).

        Args:
            inputs: new (e.g. held-out) covariates (N, T, D); the fitted data by default.
            emissions: new observations (N, T), given together with ``inputs``.
            mask: optional mask of the new emissions.
        """
        inputs, emissions, mask = self._data(inputs, emissions, mask)
        return self._per_draw(lambda params: _loglik_per_draw(params, inputs, emissions, mask))

    def sample_states(self, key, inputs=None, emissions=None, mask=None) -> np.ndarray:
        """FFBS: one joint path z[n] ~ p(z[n] | y[n], x[n], theta_s) per posterior draw theta_s.

        Args:
            key: PRNG key.
            inputs: new covariates (N, T, D); the fitted data by default.
            emissions: new observations (N, T), given together with ``inputs``.
            mask: optional mask of the new emissions.

        Returns:
            (chain, draw, N, T) integer states in the relabeled labeling.
        """
        inputs, emissions, mask = self._data(inputs, emissions, mask)
        keys = jax.random.split(key, self.num_chains * self.num_draws)
        return self._per_draw(lambda k, params: _ffbs_per_draw(k, params, inputs, emissions, mask), keys)

    def state_probabilities(self, inputs=None, emissions=None, mask=None, chunk_size: int = 500) -> np.ndarray:
        """Posterior state probabilities p(z[n, t] = k | y, x), shape (N, T, K).

        The smoothed marginals p(z[n, t] = k | y[n], x[n], theta_s) averaged over all draws,
        accumulated in chunks so that memory does not grow with the number of draws.

        Args:
            inputs: new covariates (N, T, D); the fitted data by default.
            emissions: new observations (N, T), given together with ``inputs``.
            mask: optional mask of the new emissions.
            chunk_size: draws per compiled call.
        """
        inputs, emissions, mask = self._data(inputs, emissions, mask)
        params = self.flat_params()
        total = self.num_chains * self.num_draws
        accumulated = np.zeros(emissions.shape + (self.num_states,))
        for start, stop in _draw_chunks(total, chunk_size):
            chunk = jax.tree.map(lambda p, start=start, stop=stop: p[start:stop], params)
            accumulated += np.asarray(_smoothed_sum(chunk, inputs, emissions, mask), dtype=float)
        return accumulated / total

    def posterior_predictive(self, key) -> np.ndarray:
        """Replicated emissions y_rep ~ p(y_rep | x, theta_s): fresh states and noise per draw.

        Args:
            key: PRNG key.

        Returns:
            (chain, draw, N, T) replicated emissions.
        """
        inputs, _, _ = self._data()
        keys = jax.random.split(key, self.num_chains * self.num_draws)
        return self._per_draw(lambda k, params: _predictive_per_draw(k, params, inputs)[1], keys)

    def posterior_mean(self) -> GLMHMMParams:
        """Posterior means of the relabeled parameters (over all chains and draws)."""
        return GLMHMMParams(*(self.samples[name].mean(axis=(0, 1)) for name in PARAM_NAMES))

    def to_arviz(self, key=None, include_states: bool = True):
        """An ``arviz.InferenceData`` (see :func:`bayes_glmhmm.convert.to_inference_data`)."""
        from bayes_glmhmm.convert import to_inference_data

        return to_inference_data(self, key=key, include_states=include_states)

    def diagnostics(self) -> dict:
        """Convergence summary: max R-hat, min bulk / tail ESS, divergences, stuck chains, timings."""
        import arviz as az

        posterior = az.convert_to_dataset({name: self.samples[name] for name in PARAM_NAMES})
        rhat = az.rhat(posterior)
        ess_bulk = az.ess(posterior, method="bulk")
        ess_tail = az.ess(posterior, method="tail")

        def _extreme(dataset, reducer):
            values = np.concatenate([np.ravel(dataset[name].values) for name in PARAM_NAMES])
            return float(reducer(values[np.isfinite(values)])) if np.isfinite(values).any() else float("nan")

        return {
            "max_rhat": _extreme(rhat, np.max),
            "min_ess_bulk": _extreme(ess_bulk, np.min),
            "min_ess_tail": _extreme(ess_tail, np.min),
            "divergences": int(np.sum(self.sample_stats["diverging"])),
            "stuck_chains": list(self.stuck_chains),
            "num_chains": self.num_chains,
            "num_draws": self.num_draws,
            "wall_seconds": dict(self.wall_seconds),
        }

    def drop_chains(self, chains) -> "Posterior":
        """A copy without the given chains (e.g. ``posterior.drop_chains(posterior.stuck_chains)``)."""
        keep = np.setdiff1d(np.arange(self.num_chains), np.asarray(chains, dtype=int))
        if keep.size == 0:
            raise ValueError("chains: cannot drop every chain")
        return replace(
            self,
            samples={name: value[keep] for name, value in self.samples.items()},
            permutations=self.permutations[keep],
            sample_stats={name: value[keep] for name, value in self.sample_stats.items()},
            stuck_chains=[],
            settings={**self.settings, "dropped_chains": np.setdiff1d(np.arange(self.num_chains), keep).tolist()},
        )


def _chain_method(requested: str, num_chains: int, sequence_devices: int) -> str:
    available = jax.local_device_count()
    if sequence_devices > available:
        raise ValueError(f"sequence_devices={sequence_devices} exceeds the {available} available devices")
    if requested == "auto":
        return "parallel" if num_chains > 1 and available >= num_chains * sequence_devices else "sequential"
    if requested == "parallel" and available < num_chains * sequence_devices:
        raise ValueError(
            f"chain_method='parallel' needs num_chains x sequence_devices = {num_chains * sequence_devices} devices, "
            f"{available} available (on CPU: numpyro.set_host_device_count before JAX starts)"
        )
    return requested


def _uniform_initial_values(key, model_kwargs, num_chains: int) -> dict:
    """NumPyro's ``init_to_uniform``: every unconstrained coordinate ~ Uniform(-2, 2), per chain."""
    num_states = model_kwargs["num_states"]
    prototype = unconstrain_sites(
        {
            "initial_probs": jnp.full(num_states, 1.0 / num_states),
            "transition_matrix": jnp.full((num_states, num_states), 1.0 / num_states),
            "weights": jnp.zeros((num_states, model_kwargs["inputs"].shape[-1])),
            "centred_biases": jnp.zeros(num_states),
            "scales": jnp.ones(num_states),
        },
    )
    keys = jax.random.split(key, len(prototype))
    return {
        name: jax.random.uniform(k, (num_chains, *jnp.shape(value)), jnp.result_type(value), -2.0, 2.0)
        for k, (name, value) in zip(keys, sorted(prototype.items()), strict=True)
    }


def _initial_values(key, starts: list, model_kwargs, jitter: float) -> dict:
    """Unconstrained starting points, one per chain: each start plus independent Normal(0, jitter) noise.

    Args:
        key: PRNG key of the jitter.
        starts: one GLMHMMParams per chain.
        model_kwargs: the model's keyword arguments (for the centring and the transforms).
        jitter: standard deviation of the noise in the unconstrained space.
    """
    dtype = model_kwargs["inputs"].dtype
    stacked = GLMHMMParams(*(np.stack([np.asarray(v, dtype) for v in values]) for values in zip(*starts, strict=True)))
    return _jittered_starts(key, stacked, model_kwargs["input_mean"], jitter)


@jax.jit
def _jittered_starts(key, starts: GLMHMMParams, input_mean, jitter) -> dict:
    """The work of :func:`_initial_values`, vmapped over chains (one compiled program)."""

    def _one_chain(chain_key, start):
        constrained = {
            "initial_probs": start.initial_probs,
            "transition_matrix": start.transition_matrix,
            "weights": start.weights,
            "centred_biases": start.biases + start.weights @ input_mean,
            "scales": start.scales,
        }
        # Keep the starting point off the simplex boundary, where the unconstrained value is infinite.
        for name in ("initial_probs", "transition_matrix"):
            value = jnp.clip(constrained[name], 1e-4, None)
            constrained[name] = value / value.sum(axis=-1, keepdims=True)
        unconstrained = unconstrain_sites(constrained)
        keys = jax.random.split(chain_key, len(unconstrained))
        return {
            name: value + jitter * jax.random.normal(k, jnp.shape(value), dtype=jnp.result_type(value))
            for k, (name, value) in zip(keys, sorted(unconstrained.items()), strict=True)
        }

    num_chains = starts.initial_probs.shape[0]
    return jax.vmap(_one_chain)(jax.random.split(key, num_chains), starts)


def _starting_params(init, num_states: int, input_dim: int, num_chains: int) -> list:
    """Validate a user-given ``init`` (one GLMHMMParams, or one per chain) and return one per chain."""
    if isinstance(init, GLMHMMParams):
        starts = [init] * num_chains
    elif isinstance(init, (list, tuple)):
        starts = list(init)
    else:
        raise ValueError(f"init must be 'em', 'prior' or GLMHMMParams, got {type(init).__name__}")
    if len(starts) != num_chains:
        raise ValueError(f"init must give one GLMHMMParams per chain ({num_chains}), got {len(starts)}")
    for start in starts:
        if not isinstance(start, GLMHMMParams):
            raise ValueError(f"init must be 'em', 'prior' or GLMHMMParams, got {type(start).__name__}")
        expected = GLMHMMParams(
            (num_states,), (num_states, num_states), (num_states, input_dim), (num_states,), (num_states,)
        )
        for name, shape in expected._asdict().items():
            if np.shape(getattr(start, name)) != shape:
                raise ValueError(f"init.{name} must have shape {shape}, got {np.shape(getattr(start, name))}")
    return starts


def fit_nuts(
    inputs,
    emissions,
    num_states: int,
    *,
    mask=None,
    lengths=None,
    priors: Priors | None = None,
    num_chains: int = 4,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    seed: int = 0,
    progress_bar: bool = True,
    chain_method: str = "auto",
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    dense_mass: bool = False,
    init="em",
    em_restarts: int = 10,
    init_jitter: float = 0.1,
    on_stuck: str = "warn",
    standardize="auto",
    sequence_devices: int = 1,
    time_parallel: bool = False,
    precondition: bool = True,
) -> Posterior:
    """Sample the posterior of a K-state Gaussian GLM-HMM with NUTS, states marginalized.

    Args:
        inputs: covariates, (N, T, D) or (T, D).
        emissions: observations, (N, T) or (T,).
        num_states: K >= 1.
        mask: optional, False where an emission is missing or padding.
        lengths: optional (N,) lengths of sequences padded at the end to a common T: steps past
            a length are padding, excluded from the likelihood and blanked (NaN / -1) in the
            InferenceData, while missing steps inside a sequence keep state probabilities and
            predictive draws.
        priors: :class:`Priors`; the article's by default.
        num_chains: number of chains.
        num_warmup: warmup (adaptation) iterations per chain.
        num_samples: kept draws per chain.
        seed: seed of everything random (EM restarts, jitter, NUTS).
        progress_bar: show NumPyro's progress bar.
        chain_method: ``"auto"`` (parallel when there are enough JAX devices, see
            ``numpyro.set_host_device_count``), ``"parallel"``, ``"sequential"`` or ``"vectorized"``.
        target_accept_prob: NUTS target acceptance probability.
        max_tree_depth: NUTS maximum tree depth.
        dense_mass: adapt a dense mass matrix.
        init: ``"em"`` (MAP EM with restarts, then jitter), ``"prior"`` (NumPyro's default
            uniform initialization, no EM), or starting parameters: one GLMHMMParams for all
            chains or a list with one per chain (jitter added). Without EM, relabeling uses the
            best chain's last draw as reference.
        em_restarts: restarts of the initializing EM.
        init_jitter: standard deviation of the unconstrained jitter around the EM estimate.
        standardize: ``"auto"`` (default), True or False. When applied, the fit runs on
            standardized inputs and emissions, the priors apply to the standardized parameters,
            and every draw is mapped back exactly to the data's units
            (:mod:`bayes_glmhmm.standardize`). ``"auto"`` applies it only to data far from unit
            scale (a spread outside [0.1, 10] or a mean beyond +-10), so the article's data keep
            the article's priors exactly. ``posterior.settings["standardization"]`` records it.
        sequence_devices: number of devices that share each chain's batch of sequences
            (``jax.shard_map`` over a (chains, sequences) mesh; each device computes the
            likelihood and gradient of its slice). With ``chain_method="parallel"`` the fit uses
            ``num_chains * sequence_devices`` devices. On CPU, create host devices with
            ``numpyro.set_host_device_count`` before JAX starts; on GPUs they are the GPUs.
            Results agree with one device up to floating-point summation order.
        time_parallel: compute the likelihood with the parallel-in-time (associative) reduction,
            O(log T) sequential depth instead of O(T). Same posterior; it pays on accelerators with
            few long sequences and is 1.6-8x slower per gradient on CPUs
            (``results/benchmarks/scaling.csv``).
        precondition: start each chain's mass matrix from the curvature of the log posterior at
            its starting point (finite-difference Hessian; its inverse, or diagonal thereof)
            instead of the identity. From the EM start this roughly halves the gradients spent
            in warmup on the article's data; adaptation then proceeds as usual.
        on_stuck: what to do with chains detected as stuck: ``"warn"`` (keep, warn), ``"drop"``
            (warn and remove them) or ``"raise"``.

    Returns:
        A :class:`Posterior`.
    """
    total_start = time.perf_counter()
    num_states = validate_num_states(num_states)
    priors = Priors().validate() if priors is None else Priors(*priors).validate()
    for name, value, minimum in (
        ("num_chains", num_chains, 1),
        ("num_warmup", num_warmup, 0),
        ("num_samples", num_samples, 1),
        ("sequence_devices", sequence_devices, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if isinstance(init, str) and init not in ("em", "prior"):
        raise ValueError(f"init must be 'em', 'prior' or GLMHMMParams, got {init!r}")
    if on_stuck not in ("warn", "drop", "raise"):
        raise ValueError(f"on_stuck must be 'warn', 'drop' or 'raise', got {on_stuck!r}")
    if chain_method not in ("auto", "parallel", "sequential", "vectorized"):
        raise ValueError(f"chain_method must be auto, parallel, sequential or vectorized, got {chain_method!r}")
    method = _chain_method(chain_method, num_chains, sequence_devices)
    inputs, emissions, mask = validate_data(inputs, emissions, mask)
    if lengths is not None:
        lengths = np.asarray(lengths)
        if lengths.shape != (emissions.shape[0],) or np.any(lengths < 1) or np.any(lengths > emissions.shape[1]):
            raise ValueError(f"lengths must hold one length in [1, {emissions.shape[1]}] per sequence, got {lengths}")
        mask = mask & jnp.asarray(np.arange(emissions.shape[1])[None, :] < lengths[:, None])
    if num_states > int(mask.sum()):
        raise ValueError(f"num_states={num_states} exceeds the number of observed emissions ({int(mask.sum())})")
    original_inputs, original_emissions = inputs, emissions
    inputs, emissions, standardization = standardize_if_requested(inputs, emissions, mask, standardize)

    key = jax.random.PRNGKey(seed)
    key_jitter, key_nuts = jax.random.split(key)
    input_mean = jnp.sum(inputs * mask[..., None], axis=(0, 1)) / jnp.sum(mask)
    model_kwargs = dict(
        inputs=inputs, emissions=emissions, mask=mask, num_states=num_states, priors=priors, input_mean=input_mean
    )

    wall = {}
    em_result = None
    init_params = None
    if init == "em":
        em_result = fit_em(
            inputs,
            emissions,
            num_states,
            mask=mask,
            priors=priors,
            num_restarts=em_restarts,
            seed=seed,
            standardize=False,
        )
        wall["em"] = em_result.wall_seconds
        init_params = _initial_values(key_jitter, [em_result.params] * num_chains, model_kwargs, init_jitter)
    elif not isinstance(init, str):
        starts = _starting_params(init, num_states, inputs.shape[-1], num_chains)
        if standardization is not None:
            starts = [
                start._replace(
                    **dict(
                        zip(
                            ("weights", "biases", "scales"),
                            standardization.to_standardized(start.weights, start.biases, start.scales),
                            strict=True,
                        )
                    )
                )
                for start in starts
            ]
        init_params = _initial_values(key_jitter, starts, model_kwargs, init_jitter)

    if init_params is None:  # init="prior": NumPyro's init_to_uniform, Uniform(-2, 2) in the unconstrained space
        init_params = _uniform_initial_values(key_jitter, model_kwargs, num_chains)
    nuts_start = time.perf_counter()
    draws = run_nuts(
        key_nuts,
        init_params,
        {name: value for name, value in model_kwargs.items() if name != "num_states"},
        num_states,
        num_warmup=num_warmup,
        num_samples=num_samples,
        target_accept_prob=target_accept_prob,
        max_tree_depth=max_tree_depth,
        dense_mass=dense_mass,
        chain_method=method,
        sequence_devices=sequence_devices,
        time_parallel=time_parallel,
        precondition=precondition,
        progress_bar=progress_bar,
    )
    wall["nuts"] = time.perf_counter() - nuts_start
    raw = draws.samples

    sample_stats = {
        "diverging": draws.diverging,
        "energy": draws.energy,
        "n_steps": draws.num_steps,
        "tree_depth": np.floor(np.log2(np.maximum(draws.num_steps, 1))).astype(int) + 1,
        "step_size": draws.step_size,
        "lp": -draws.potential_energy,
    }
    stuck, threshold = detect_stuck_chains(sample_stats["lp"]) if num_chains > 1 else ([], float("nan"))

    relabel_start = time.perf_counter()
    samples = {name: raw[name] for name in PARAM_NAMES}
    if em_result is not None:
        reference = state_features({k: np.asarray(v) for k, v in em_result.params._asdict().items()})
    else:
        best_chain = int(np.argmax(np.median(sample_stats["lp"], axis=1)))
        reference = state_features({k: v[best_chain, -1] for k, v in samples.items()})
    relabeled = relabel_samples(samples, reference=reference)
    wall["relabel"] = time.perf_counter() - relabel_start
    final_samples = relabeled.samples
    if standardization is not None:
        final_samples = standardization.samples_to_original(final_samples)
        if em_result is not None:
            em_result = em_result._replace(params=standardization.params_to_original(em_result.params))

    posterior = Posterior(
        samples=final_samples,
        permutations=relabeled.permutations,
        sample_stats=sample_stats,
        inputs=np.asarray(original_inputs),
        emissions=np.asarray(original_emissions),
        mask=np.asarray(mask),
        num_states=num_states,
        priors=priors,
        em=em_result,
        stuck_chains=stuck,
        stuck_threshold=threshold,
        wall_seconds=wall,
        lengths=lengths,
        settings=dict(
            num_chains=num_chains,
            num_warmup=num_warmup,
            num_samples=num_samples,
            seed=seed,
            chain_method=method,
            sequence_devices=sequence_devices,
            time_parallel=bool(time_parallel),
            precondition=bool(precondition),
            warmup_gradients=draws.warmup_num_steps.tolist(),
            target_accept_prob=target_accept_prob,
            max_tree_depth=max_tree_depth,
            dense_mass=dense_mass,
            init=init if isinstance(init, str) else "user",
            init_jitter=init_jitter,
            standardization=None if standardization is None else standardization.as_dict(),
        ),
    )
    if stuck:
        medians = np.median(sample_stats["lp"], axis=1)
        message = (
            f"chain(s) {stuck} look stuck in an inferior mode: median log density "
            f"{np.round(medians[stuck], 1).tolist()} vs best {medians.max():.1f} (threshold {threshold:.1f} nats)"
        )
        if on_stuck == "raise":
            raise RuntimeError(message)
        warnings.warn(message + ("; dropped" if on_stuck == "drop" else "; kept (on_stuck='warn')"), stacklevel=2)
        if on_stuck == "drop":
            posterior = posterior.drop_chains(stuck)
    wall["total"] = time.perf_counter() - total_start
    posterior.wall_seconds = wall
    return posterior
