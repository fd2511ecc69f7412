"""The posterior of a fitted GLM-HMM: relabeled NUTS draws and what is computed from them per draw.

:class:`Posterior` holds relabeled draws and computes, per posterior draw, FFBS state paths,
smoothed state probabilities, per-sequence log-likelihoods and predictive draws, for any emission
family (the family's params type is rebuilt from the draws), and its convergence verdict
(:meth:`Posterior.diagnostics`, see :mod:`bayes_glmhmm.convergence`). :func:`detect_stuck_chains`
flags chains whose log density sits far below the best chain's.
"""

from dataclasses import dataclass, field, replace

import jax
import jax.numpy as jnp
import numpy as np

from bayes_glmhmm._compile import device_array, jit_per_draw
from bayes_glmhmm.convergence import ConvergenceThresholds, convergence_problems, sampler_diagnostics
from bayes_glmhmm.em import EMResult
from bayes_glmhmm.emissions import EmissionFamily, get_family
from bayes_glmhmm.hierarchy import (
    SUBJECT_TRANSITIONS,
    Subjects,
    subject_index_of,
    subject_param_names,
    with_subject_emissions,
)
from bayes_glmhmm.inference import hmm_sample_states
from bayes_glmhmm.model import batched_log_likelihoods, batched_marginal_loglik, batched_smoother, batched_transitions
from bayes_glmhmm.params import Priors, validate_data
from bayes_glmhmm.relabel import relabel_draws
from bayes_glmhmm.simulate import simulate, simulate_subjects
from bayes_glmhmm.transitions import STATIONARY, TransitionModel, validate_transition_inputs

__all__ = ["Posterior", "detect_stuck_chains", "host_split_key"]


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


def host_split_key(key, num_keys: int):
    """``num_keys`` new PRNG keys from ``key``, drawn in NumPy from a generator seeded by the key's data.

    Like ``jax.random.split`` (independent keys, the same for the same key) but without a
    compiled program: ``jax.random.split`` compiles one per number of keys (0.7 s for 500 keys
    on a 2-core CPU). The keys are of the kind of ``key``: raw ``uint32`` data for a
    ``jax.random.PRNGKey``, typed keys of its implementation for a ``jax.random.key``.

    Args:
        key: PRNG key.
        num_keys: how many keys.

    Returns:
        (num_keys, ...) keys.
    """
    data = np.asarray(jax.random.key_data(key))
    generator = np.random.default_rng(data.ravel().tolist())
    raw = generator.integers(0, 2**32, size=(num_keys, *data.shape), dtype=np.uint32)
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(raw, impl=jax.random.key_impl(key))
    return raw


def _draw_chunks(draws, chunk_size: int):
    """Consecutive chunks of at most ``chunk_size`` draws: ``(start, stop, chunk)``.

    ``draws`` is a pytree of arrays with a leading draw axis; each chunk is its slice start..stop - 1,
    split over the local devices (:func:`spread_draws`).
    """
    num_draws = int(jax.tree.leaves(draws)[0].shape[0])
    for start in range(0, num_draws, chunk_size):
        stop = min(start + chunk_size, num_draws)
        yield start, stop, spread_draws(jax.tree.map(lambda p, start=start, stop=stop: p[start:stop], draws))


def _equal_chunk_size(num_draws: int, chunk_size: int) -> int:
    """The size of :func:`_equal_draw_chunks`: as few chunks as ``chunk_size`` allows, as even as can be.

    Rounded up to a multiple of the number of local devices (so that :func:`spread_draws` can
    split every chunk over them); the repeats that fill the last chunk take up the difference.
    """
    num_chunks = -(-num_draws // chunk_size)
    size = -(-num_draws // num_chunks)
    num_devices = jax.local_device_count()
    return -(-size // num_devices) * num_devices


def spread_draws(chunk):
    """Place a chunk of per-draw arrays (a pytree, leading draw axis) split over the local devices.

    A per-draw program given such a chunk runs its draws on every device at once: on a CPU with
    several host devices (``numpyro.set_host_device_count``) that uses every core, where one device
    runs one thread (measured on 2 cores, 4 host devices, FFBS of 500 draws x 10 x 100 steps: 33 ->
    20 ms). The program is compiled once, partitioned over the devices; each draw's result is the
    same as on one device (no value crosses draws, except in a sum over draws). With one device,
    or a number of draws the devices do not divide, the chunk is returned as it is.

    Args:
        chunk: NumPy or JAX arrays (PRNG keys included) with the same leading draw axis.
    """
    leaves = jax.tree.leaves(chunk)
    devices = jax.local_devices()
    if not leaves or len(devices) < 2 or leaves[0].shape[0] % len(devices):
        return chunk
    mesh = jax.sharding.Mesh(np.asarray(devices), ("draw",))
    return jax.device_put(chunk, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("draw")))


def _draw_chunks_of_size(num_draws: int, size: int):
    """Chunks of exactly ``size`` draws: ``(start, stop, indices)``, the last chunk's repeats of its last draw."""
    for start in range(0, num_draws, size):
        stop = min(start + size, num_draws)
        yield start, stop, np.minimum(np.arange(start, start + size), num_draws - 1)


def _equal_draw_chunks(num_draws: int, chunk_size: int):
    """Chunks of draws of one size, so that a per-draw program compiles once for all of them.

    Yields ``(start, stop, indices)``: the draws start..stop - 1 are the chunk's real ones, and
    ``indices`` (all of one length: at most ``chunk_size``, rounded up to a multiple of the local
    devices) repeats the last draw to fill the final chunk; the outputs of the repeats are to be
    dropped (or weighted 0).
    """
    yield from _draw_chunks_of_size(num_draws, _equal_chunk_size(num_draws, chunk_size))


def _take_draws(array, indices):
    """``array[indices]`` cut on the host; typed PRNG keys, which NumPy cannot hold, are indexed as they are."""
    if jax.dtypes.issubdtype(array.dtype, jax.dtypes.prng_key):
        return array[indices]
    return np.asarray(array)[indices]


# The per-draw programs take ``subject_index`` (N,) for a hierarchical posterior, whose draws'
# weights and biases then have a subject axis (bayes_glmhmm.hierarchy); None otherwise.


@jit_per_draw
def _loglik_per_draw(params, inputs, emissions, mask, transition_inputs=None, subject_index=None):
    def _one_draw(draw_params):
        return batched_marginal_loglik(
            draw_params, inputs, emissions, mask, transition_inputs=transition_inputs, subject_index=subject_index
        )

    return jax.vmap(_one_draw)(params)


@jit_per_draw
def _smoothed_sum(params, draw_weights, inputs, emissions, mask, transition_inputs=None, subject_index=None):
    """sum_s draw_weights[s] p(z[n, t] = k | y[n], x[n], theta_s), shape (N, T, K)."""

    def _one_draw(draw_params):
        smoother = batched_smoother(
            draw_params, inputs, emissions, mask, transition_inputs, subject_index=subject_index
        )
        return smoother.smoothed_probs

    return jnp.sum(draw_weights[:, None, None, None] * jax.vmap(_one_draw)(params), axis=0)


@jit_per_draw
def _ffbs_per_draw(keys, params, inputs, emissions, mask, transition_inputs=None, subject_index=None):
    def _one_draw(key, draw_params):
        log_likelihoods = batched_log_likelihoods(draw_params, inputs, emissions, subject_index)
        transitions, transition_axis = batched_transitions(draw_params, transition_inputs, subject_index)
        sequence_keys = jax.random.split(key, emissions.shape[0])
        ffbs = jax.vmap(hmm_sample_states, in_axes=(0, None, transition_axis, 0, 0))
        return ffbs(sequence_keys, draw_params.initial_probs, transitions, log_likelihoods, mask)

    return jax.vmap(_one_draw)(keys, params)


@jit_per_draw
def _predictive_per_draw(keys, params, inputs, transition_inputs=None, subject_index=None):
    if subject_index is None:
        return jax.vmap(lambda key, draw_params: simulate(key, draw_params, inputs, transition_inputs))(keys, params)

    def _one_draw(key, draw_params):
        return simulate_subjects(key, draw_params, inputs, subject_index, transition_inputs)

    return jax.vmap(_one_draw)(keys, params)


@dataclass
class Posterior:
    """Relabeled NUTS draws of a GLM-HMM and what can be computed from them.

    Attributes:
        samples: dict of NumPy arrays shaped (chain, draw, ...) with keys ``initial_probs``,
            ``transition_matrix``, ``weights``, ``biases`` (+ ``scales`` for the Gaussian family);
            already relabeled.
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
            preconditioning Hessian at the start are not counted), ``convergence_thresholds`` (the
            thresholds of the verdict of :meth:`diagnostics`) and, after :meth:`drop_chains`,
            ``dropped_chains`` and ``dropped_stuck_chains``.
        lengths: (N,) true length of each sequence when sequences were padded to a common T
            (steps beyond are padding, masked out and blanked in every output), else None.
        family: the emission family (Gaussian by default).
        transitions: the transition model (stationary by default; input-driven adds
            ``samples["transition_weights"]``, (chain, draw, K, K, M)).
        transition_inputs: (N, T, M) the fitted transition inputs (input-driven only), else None.
        subjects: for a hierarchical posterior across subjects (:mod:`bayes_glmhmm.hierarchy`),
            the :class:`~bayes_glmhmm.hierarchy.Subjects` of the fitted sequences; ``weights`` and
            ``biases`` are then the population means and ``samples`` adds ``weight_spread``,
            ``bias_spread``, ``subject_weights`` (chain, draw, S, K, ..., D) and
            ``subject_biases``. None otherwise.
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
    family: EmissionFamily = field(default_factory=lambda: get_family("gaussian"))
    transitions: TransitionModel = STATIONARY
    transition_inputs: np.ndarray | None = None
    subjects: Subjects | None = None

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

    @property
    def param_names(self) -> tuple[str, ...]:
        """The names of the parameters (the keys of ``samples``): the family's, the transitions', the subjects'."""
        subject_names = () if self.subjects is None else subject_param_names(SUBJECT_TRANSITIONS in self.samples)
        return self.family.param_names + self.transitions.param_names + subject_names

    def flat_params(self):
        """All draws as one params NamedTuple (the family's type) with a leading (chain * draw) axis.

        For a hierarchical posterior, the population's (``weights`` and ``biases`` the means).
        """
        names = self.family.param_names + self.transitions.param_names
        return self.family.params_type(
            **{name: device_array(self.samples[name].reshape((-1,) + self.samples[name].shape[2:])) for name in names}
        )

    def _flat_samples(self, name: str) -> np.ndarray:
        return np.asarray(self.samples[name]).reshape((-1,) + self.samples[name].shape[2:])

    def _draw_params(self, with_new_subject: bool = False):
        """The params each draw's likelihood uses: the population's, or every subject's (hierarchical).

        Args:
            with_new_subject: append, per draw, one unseen subject's weights and biases drawn from
                the population (mu + tau * Normal(0, 1), a fixed seed; and, when subjects have their
                own transitions, a transition matrix with rows Dirichlet around the population's),
                as subject S: averaged over the draws, its likelihood is the population predictive
                of a new subject.
        """
        population = jax.tree.map(np.asarray, self.flat_params())
        if self.subjects is None:
            return population
        flat = population._asdict() | {
            name: self._flat_samples(name)
            for name in ("subject_weights", "subject_biases", SUBJECT_TRANSITIONS)
            if name in self.samples
        }
        if with_new_subject:
            flat |= self._with_new_subject(population, flat)
        return self._params_from_flat(flat)

    def _with_new_subject(self, population, flat: dict) -> dict:
        """The subjects' flat draws with one more subject, S, drawn per draw from the population.

        Args:
            population: the draws' population params (NumPy, a leading draw axis).
            flat: (draw, S, ...) ``subject_weights``, ``subject_biases`` (and ``subject_transition_matrix``).

        Returns:
            The same names, (draw, S + 1, ...): weights mu + tau * Normal(0, 1), rows of the
            transition matrix Dirichlet around the population's (a fixed seed).
        """
        generator = np.random.default_rng(0)
        weights, biases = flat["subject_weights"], flat["subject_biases"]
        new_weights = population.weights + self._flat_samples("weight_spread") * generator.standard_normal(
            population.weights.shape
        )
        new_biases = population.biases + self._flat_samples("bias_spread") * generator.standard_normal(
            population.biases.shape
        )
        extended = {
            "subject_weights": np.concatenate([weights, new_weights[:, None].astype(weights.dtype)], axis=1),
            "subject_biases": np.concatenate([biases, new_biases[:, None].astype(biases.dtype)], axis=1),
        }
        if SUBJECT_TRANSITIONS in flat:
            matrices = flat[SUBJECT_TRANSITIONS]
            concentration = self.priors.subject_transition_concentration * np.maximum(
                population.transition_matrix, 1e-6
            )
            new_matrices = generator.gamma(concentration)  # Dirichlet rows as normalized Gamma draws
            new_matrices /= new_matrices.sum(axis=-1, keepdims=True)
            extended[SUBJECT_TRANSITIONS] = np.concatenate(
                [matrices, new_matrices[:, None].astype(matrices.dtype)], axis=1
            )
        return extended

    def _params_from_flat(self, flat: dict):
        """The params each draw's likelihood uses, from (draw, ...) arrays under the names of :attr:`param_names`.

        The family's params type with the transitions' parameters; for a hierarchical posterior,
        every subject's weights and biases in place of the population's, and its own transition
        matrices when ``flat`` has ``subject_transition_matrix``. The arrays are kept as given
        (NumPy stays NumPy: ``jnp.asarray`` would compile a program per shape).
        """
        params = self.family.params_type(
            **{name: flat[name] for name in self.family.param_names + self.transitions.param_names}
        )
        if self.subjects is None:
            return params
        params = with_subject_emissions(params, flat["subject_weights"], flat["subject_biases"])
        if SUBJECT_TRANSITIONS in flat:
            params = params._replace(transition_matrix=flat[SUBJECT_TRANSITIONS])
        return params

    def _per_draw_params(self, subjects, num_sequences: int, new_data: bool):
        """The draws' params and the (N,) subject of each sequence (None without subjects).

        Args:
            subjects: the new sequences' subject ids (hierarchical posteriors, new data only).
            num_sequences: N.
            new_data: whether the sequences are new (else the fitted ones, whose subjects are known).
        """
        if self.subjects is None:
            if subjects is not None:
                raise ValueError("subjects were given but this posterior was fitted without subjects")
            return self._draw_params(), None
        if not new_data:
            if subjects is not None:
                raise ValueError("subjects are given only with new inputs and emissions (the fitted ones are known)")
            return self._draw_params(), jnp.asarray(self.subjects.index)
        if subjects is None:
            raise ValueError(
                "this posterior is hierarchical across subjects: new data need subjects= (one id per sequence; "
                "an id not fitted gets the population predictive of a new subject)"
            )
        index = subject_index_of(self.subjects, subjects, num_sequences)
        unseen = bool(np.any(index == self.subjects.num_subjects))
        return self._draw_params(with_new_subject=unseen), jnp.asarray(index)

    def _data(self, inputs=None, emissions=None, mask=None, transition_inputs=None):
        """The fitted data, or new data (validated) when ``inputs`` and ``emissions`` are given.

        Returns ``(inputs, emissions, mask, transition_inputs)``; the last is None for stationary
        transitions.
        """
        if inputs is None and emissions is None:
            if transition_inputs is not None:
                raise ValueError("transition_inputs are given only with new inputs and emissions")
            fitted_transition_inputs = None if self.transition_inputs is None else device_array(self.transition_inputs)
            return (
                device_array(self.inputs),
                device_array(self.emissions),
                device_array(self.mask),
                fitted_transition_inputs,
            )
        if inputs is None or emissions is None:
            raise ValueError("inputs and emissions must be given together (or neither, for the fitted data)")
        inputs, emissions, mask = validate_data(inputs, emissions, mask, self.family)
        if inputs.shape[-1] != self.inputs.shape[-1]:
            raise ValueError(f"inputs have {inputs.shape[-1]} input dimensions, the model {self.inputs.shape[-1]}")
        if self.transitions.is_input_driven:
            if transition_inputs is None:
                raise ValueError("this posterior has input-driven transitions: new data need transition_inputs")
            transition_inputs = validate_transition_inputs(
                transition_inputs, emissions.shape, int(self.transition_inputs.shape[-1])
            )
        elif transition_inputs is not None:
            raise ValueError("transition_inputs were given but this posterior has stationary transitions")
        return inputs, emissions, mask, transition_inputs

    def _in_fitted_shape(self, data: tuple, index) -> tuple[tuple, object, int]:
        """New data of fewer sequences than the fit, padded with whole masked sequences to the fit's shape.

        Sequences are independent in every per-sequence computation (likelihoods, smoothing), so
        padding changes nothing of the real ones, and the program compiled for the fitted data
        serves the new data: no compilation of its own (a cold quick demo compiles three
        programs fewer). Data of another length, or of as many sequences or more, are left as they
        are.

        Args:
            data: ``(inputs, emissions, mask, transition_inputs)`` of :meth:`_data`.
            index: the (N,) subject of each sequence, or None.

        Returns:
            The (padded) data, the (padded) index and N, the number of real sequences.
        """
        emissions = data[1]
        count, fitted = int(emissions.shape[0]), np.shape(self.emissions)
        if count >= fitted[0] or tuple(emissions.shape[1:]) != tuple(fitted[1:]):
            return data, index, count
        extra = fitted[0] - count

        def padded(array, fill=None):
            if array is None:
                return None
            array = np.asarray(array)
            rows = np.repeat(array[:1], extra, axis=0) if fill is None else np.full((extra,) + array.shape[1:], fill)
            return device_array(np.concatenate([array, rows.astype(array.dtype)]))

        inputs, emissions, mask, transition_inputs = data
        data = (padded(inputs), padded(emissions), padded(mask, False), padded(transition_inputs))
        return data, padded(index), count

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
            permuted = em.params.permute(permutation)
            em = em._replace(params=type(em.params)(*(None if p is None else np.asarray(p) for p in permuted)))
        return replace(
            self,
            samples=relabel_draws(self.samples, tiled),
            permutations=self.permutations[..., permutation],
            em=em,
        )

    def _param_chunks(self, chunk_size: int, params=None, num_draws: int | None = None):
        """The draws in chunks of one size: ``(start, stop, indices, params)``.

        The size is the one :func:`_equal_draw_chunks` gives this posterior's own draws, whatever
        ``num_draws``, so that a program compiled for this posterior's chunks serves other draws
        (e.g. the prior's) too; the last chunk repeats its last draw.

        Args:
            chunk_size: the most draws per chunk (of this posterior's own).
            params: the draws' params (:meth:`_draw_params` by default), NumPy arrays with a
                leading draw axis, so that the chunks are cut on the host (no gather programs).
            num_draws: how many draws ``params`` holds (this posterior's chains x draws by default).
        """
        own = self.num_chains * self.num_draws
        params = self._draw_params() if params is None else params
        num_draws = own if num_draws is None else int(num_draws)
        for start, stop, indices in _draw_chunks_of_size(num_draws, _equal_chunk_size(own, chunk_size)):
            yield start, stop, indices, spread_draws(jax.tree.map(lambda p, indices=indices: p[indices], params))

    def _per_draw(self, function, *leading, params=None, draw_shape=None, chunk_size: int = 500):
        """Apply a jitted per-draw function over chunks of draws; returns (chain, draw, ...) NumPy.

        Args:
            function: ``(*leading chunks, params chunk) -> (chunk, ...)`` outputs.
            leading: per-draw arrays (e.g. PRNG keys) with a leading draw axis, cut like the params.
            params: the draws' params (:meth:`_draw_params` by default), see :meth:`_param_chunks`.
            draw_shape: (chain, draw) of ``params``' draws (this posterior's by default).
            chunk_size: the most draws per compiled call (of this posterior's own).
        """
        draw_shape = (self.num_chains, self.num_draws) if draw_shape is None else tuple(draw_shape)
        outputs = []
        for start, stop, indices, chunk in self._param_chunks(chunk_size, params, int(np.prod(draw_shape))):
            extra = [spread_draws(_take_draws(array, indices)) for array in leading]
            outputs.append(np.asarray(function(*extra, chunk))[: stop - start])
        stacked = np.concatenate(outputs, axis=0)
        return stacked.reshape(draw_shape + stacked.shape[1:])

    def log_likelihood(
        self, inputs=None, emissions=None, mask=None, transition_inputs=None, subjects=None
    ) -> np.ndarray:
        """Log p(y[n] | x[n], u[n], theta_s) for every draw s and sequence n, shape (chain, draw, N).

        Args:
            inputs: new (e.g. held-out) covariates (N, T, D); the fitted data by default.
            emissions: new observations (N, T), given together with ``inputs``.
            mask: optional mask of the new emissions.
            transition_inputs: the new data's (N, T, M) transition inputs (input-driven only).
            subjects: hierarchical posteriors, new data: the (N,) subject ids of the new
                sequences. A fitted subject's sequence uses that subject's weights and biases; an
                id never fitted uses, per draw, one new subject drawn from the population
                (mu + tau * Normal(0, 1)), so that averaged over draws it is the population
                predictive.
        """
        new_data = inputs is not None or emissions is not None
        data = self._data(inputs, emissions, mask, transition_inputs)
        params, index = self._per_draw_params(subjects, data[1].shape[0], new_data)
        data, index, count = self._in_fitted_shape(data, index)
        per_draw = self._per_draw(lambda chunk: _loglik_per_draw(chunk, *data, index), params=params)
        return per_draw[..., :count]

    def log_predictive_density(
        self, inputs=None, emissions=None, mask=None, transition_inputs=None, subjects=None
    ) -> np.ndarray:
        """Log posterior predictive density of each sequence, log p(y_new[n] | x_new[n], u_new[n], data).

        The average over posterior draws of p(y_new[n] | x_new[n], u_new[n], theta_s), taken in
        probability space (log-mean-exp over all chains and draws); a new sequence's first state
        comes from the posterior's initial probabilities. On the fitted data it is the
        (in-sample) log pointwise predictive density of each sequence.

        Args:
            inputs: new (e.g. held-out) covariates (N, T, D); the fitted data by default.
            emissions: new observations (N, T), given together with ``inputs``.
            mask: optional mask of the new emissions.
            transition_inputs: the new data's (N, T, M) transition inputs (input-driven only).
            subjects: hierarchical posteriors, new data: the (N,) subject ids of the new sequences
                (see :meth:`log_likelihood`; an unseen subject gets the population predictive).

        Returns:
            (N,) log predictive densities in nats.
        """
        per_draw = self.log_likelihood(inputs, emissions, mask, transition_inputs, subjects)
        per_draw = per_draw.reshape(-1, per_draw.shape[-1]).astype(np.float64)
        highest = per_draw.max(axis=0)
        return highest + np.log(np.mean(np.exp(per_draw - highest), axis=0))

    def sample_states(
        self, key, inputs=None, emissions=None, mask=None, transition_inputs=None, subjects=None
    ) -> np.ndarray:
        """FFBS: one joint path z[n] ~ p(z[n] | y[n], x[n], theta_s) per posterior draw theta_s.

        Args:
            key: PRNG key.
            inputs: new covariates (N, T, D); the fitted data by default.
            emissions: new observations (N, T), given together with ``inputs``.
            mask: optional mask of the new emissions.
            transition_inputs: the new data's (N, T, M) transition inputs (input-driven only).
            subjects: hierarchical posteriors, new data: the (N,) subject ids (see :meth:`log_likelihood`).

        Returns:
            (chain, draw, N, T) integer states in the relabeled labeling.
        """
        new_data = inputs is not None or emissions is not None
        inputs, emissions, mask, transition_inputs = self._data(inputs, emissions, mask, transition_inputs)
        params, index = self._per_draw_params(subjects, emissions.shape[0], new_data)
        keys = host_split_key(key, self.num_chains * self.num_draws)
        return self._per_draw(
            lambda k, chunk: _ffbs_per_draw(k, chunk, inputs, emissions, mask, transition_inputs, index),
            keys,
            params=params,
        )

    def state_probabilities(
        self, inputs=None, emissions=None, mask=None, chunk_size: int = 500, transition_inputs=None, subjects=None
    ) -> np.ndarray:
        """Posterior state probabilities p(z[n, t] = k | y, x), shape (N, T, K).

        The smoothed marginals p(z[n, t] = k | y[n], x[n], theta_s) averaged over all draws,
        accumulated in chunks so that memory does not grow with the number of draws.

        Args:
            inputs: new covariates (N, T, D); the fitted data by default.
            emissions: new observations (N, T), given together with ``inputs``.
            mask: optional mask of the new emissions.
            chunk_size: draws per compiled call.
            transition_inputs: the new data's (N, T, M) transition inputs (input-driven only).
            subjects: hierarchical posteriors, new data: the (N,) subject ids (see :meth:`log_likelihood`).
        """
        new_data = inputs is not None or emissions is not None
        data = self._data(inputs, emissions, mask, transition_inputs)
        params, index = self._per_draw_params(subjects, data[1].shape[0], new_data)
        data, index, count = self._in_fitted_shape(data, index)
        accumulated = np.zeros(data[1].shape + (self.num_states,))
        for start, stop, indices, chunk in self._param_chunks(chunk_size, params):
            weights = spread_draws((np.arange(indices.size) < stop - start).astype(data[0].dtype))  # repeats count 0
            accumulated += np.asarray(_smoothed_sum(chunk, weights, *data, index), dtype=float)
        return accumulated[:count] / (self.num_chains * self.num_draws)

    def posterior_predictive(self, key) -> np.ndarray:
        """Replicated emissions y_rep ~ p(y_rep | x, theta_s): fresh states and emissions per draw.

        Args:
            key: PRNG key.

        Returns:
            (chain, draw, N, T) replicated emissions.
        """
        inputs, _, _, transition_inputs = self._data()
        index = None if self.subjects is None else jnp.asarray(self.subjects.index)
        keys = host_split_key(key, self.num_chains * self.num_draws)
        return self._per_draw(
            lambda k, params: _predictive_per_draw(k, params, inputs, transition_inputs, index)[1], keys
        )

    def prior_predictive(self, key, prior_samples: dict) -> np.ndarray:
        """Emissions y_rep ~ p(y_rep | x, theta_s) simulated from other draws theta_s, e.g. the prior's.

        The same per-draw simulation as :meth:`posterior_predictive`, at the fitted inputs (and
        transition inputs, and each sequence's subject), in chunks of exactly the size that
        :meth:`posterior_predictive` gives this posterior's own draws, so that its compiled
        program serves both.

        Args:
            key: PRNG key.
            prior_samples: (chain, draw, ...) arrays under the names of :attr:`param_names`, of the
                dtypes of ``samples`` (e.g. the prior draws of
                :func:`bayes_glmhmm.convert.to_inference_data`).

        Returns:
            (chain, draw, N, T) simulated emissions.
        """
        inputs, _, _, transition_inputs = self._data()
        index = None if self.subjects is None else jnp.asarray(self.subjects.index)
        draw_shape = prior_samples["weights"].shape[:2]
        num_draws = int(np.prod(draw_shape))
        flat = {
            name: np.asarray(value).reshape((num_draws,) + value.shape[2:]) for name, value in prior_samples.items()
        }
        return self._per_draw(
            lambda k, params: _predictive_per_draw(k, params, inputs, transition_inputs, index)[1],
            host_split_key(key, num_draws),
            params=self._params_from_flat(flat),
            draw_shape=draw_shape,
        )

    def posterior_mean(self):
        """Posterior means of the relabeled parameters (over all chains and draws), the family's params type.

        For a hierarchical posterior, the population's (``weights`` and ``biases`` the means).
        """
        names = self.family.param_names + self.transitions.param_names
        return self.family.params_type(**{name: self.samples[name].mean(axis=(0, 1)) for name in names})

    def to_arviz(self, key=None, include_states: bool = True, prior_draws: int | None = None):
        """An ``arviz.InferenceData`` (see :func:`bayes_glmhmm.convert.to_inference_data`).

        ``prior_draws``: draws of the ``prior`` and ``prior_predictive`` groups (None: the default
        of :func:`~bayes_glmhmm.convert.to_inference_data`; 0: no such groups).
        """
        from bayes_glmhmm.convert import PRIOR_DRAWS, to_inference_data

        prior_draws = PRIOR_DRAWS if prior_draws is None else prior_draws
        return to_inference_data(self, key=key, include_states=include_states, prior_draws=prior_draws)

    def diagnostics(self, thresholds: ConvergenceThresholds | None = None) -> dict:
        """Convergence summary and verdict: R-hat, ESS, divergences, tree depth, stuck chains, subject swaps, timings.

        Args:
            thresholds: the :class:`~bayes_glmhmm.convergence.ConvergenceThresholds` of the verdict;
                by default those the fit recorded (``settings["convergence_thresholds"]``, see
                :func:`~bayes_glmhmm.fit.fit_nuts`), else the defaults.

        Returns:
            A dict: ``max_rhat`` (NaN with one chain), ``min_ess_bulk``, ``min_ess_tail``,
            ``divergences``, ``tree_depth_saturated`` (transitions that reached
            ``max_tree_depth``), ``max_tree_depth``, ``stuck_chains``, ``stuck_threshold``,
            ``stuck_gaps``, ``dropped_stuck_chains``, ``subject_label_swaps`` (a hierarchical
            posterior's subjects whose states a chain labels the other way round from the
            reference chain, named by their ids; see
            :func:`~bayes_glmhmm.convergence.sampler_diagnostics`), ``num_chains``, ``num_draws``,
            ``wall_seconds``, ``swap_acceptance`` (a tempered fit only: exchange acceptance per
            adjacent pair of rungs), and the verdict: ``converged`` (bool), ``problems`` (plain sentences,
            empty when converged, see :func:`~bayes_glmhmm.convergence.convergence_problems`) and
            ``thresholds`` (the dict of thresholds applied).
        """
        thresholds = ConvergenceThresholds.from_settings(self.settings) if thresholds is None else thresholds
        diagnostics = sampler_diagnostics(
            {name: self.samples[name] for name in self.param_names},
            self.sample_stats,
            max_tree_depth=self.settings.get("max_tree_depth"),
            stuck_chains=self.stuck_chains,
            stuck_threshold=self.stuck_threshold,
            dropped_stuck_chains=self.settings.get("dropped_stuck_chains", []),
            subject_names=None if self.subjects is None else self.subjects.names,
        )
        tempering = self.settings.get("tempering")
        if tempering:
            diagnostics["swap_acceptance"] = list(tempering["swap_acceptance"])
        problems = convergence_problems(diagnostics, thresholds)
        return {
            **diagnostics,
            "wall_seconds": dict(self.wall_seconds),
            "converged": not problems,
            "problems": problems,
            "thresholds": thresholds.as_dict(),
        }

    def drop_chains(self, chains) -> "Posterior":
        """A copy without the given chains (e.g. ``posterior.drop_chains(posterior.stuck_chains)``).

        ``settings["dropped_chains"]`` records the chains removed, and
        ``settings["dropped_stuck_chains"]`` those of them that were stuck, which the verdict of
        :meth:`diagnostics` keeps reporting; stuck chains that are kept keep their flag (renumbered).
        """
        keep = np.setdiff1d(np.arange(self.num_chains), np.asarray(chains, dtype=int))
        if keep.size == 0:
            raise ValueError("chains: cannot drop every chain")
        kept = keep.tolist()
        dropped_stuck = set(self.stuck_chains) - set(kept)
        return replace(
            self,
            samples={name: value[keep] for name, value in self.samples.items()},
            permutations=self.permutations[keep],
            sample_stats={name: value[keep] for name, value in self.sample_stats.items()},
            stuck_chains=[kept.index(c) for c in self.stuck_chains if c in kept],
            settings={
                **self.settings,
                "dropped_chains": np.setdiff1d(np.arange(self.num_chains), keep).tolist(),
                "dropped_stuck_chains": sorted(set(self.settings.get("dropped_stuck_chains", [])) | dropped_stuck),
            },
        )
