"""The NUTS runner under :func:`~bayes_glmhmm.fit.fit_nuts`: compiled once, spread over devices.

NumPyro's ``MCMC`` driver re-traces and re-compiles its sampler on every call and runs parallel
chains with ``pmap`` only. This runner drives NumPyro's own NUTS kernel
(:func:`numpyro.infer.hmc.hmc`, the same transition and adaptation) with the data passed as
arguments, so that

- a second fit with the same shapes and settings reuses the compiled sampler (different data,
  priors, seeds and starting points included), and
- it runs under :func:`jax.shard_map` on a two-axis device mesh: chains along ``"chains"`` and
  the batch of sequences along ``"sequences"``. Each device holds one slice of the sequences,
  computes its part of the log-likelihood and its gradient, and a ``psum`` adds them, so every
  device of a chain follows the same trajectory. The same code runs on CPU host devices
  (``XLA_FLAGS=--xla_force_host_platform_device_count=8`` or
  ``numpyro.set_host_device_count``), on the GPUs of one process, and on the devices of many
  processes (a cluster).

Many processes: each process calls :func:`jax.distributed.initialize` before anything else uses
JAX, then every process calls :func:`run_nuts` (or :func:`~bayes_glmhmm.fit.fit_nuts`) with the
same arguments, the full data included. The mesh is laid over the global ``jax.devices()``
(process by process, so with S dividing a process's devices the ``psum`` of every gradient stays
within a process and the chains spread over processes); each process places on its own devices
only their shards of the sequences and of the chains' states; the chains' keys and starting
points are process 0's; and every chunk's draws are gathered onto every process, so each returns
all chains' draws. In one process none of this adds a compiled program.

The iterations run in chunks of one compiled length, so a progress bar can advance between them.
"""

import functools
import math
import threading
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import multihost_utils
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from numpyro.infer.hmc import hmc
from numpyro.infer.util import constrain_fn, potential_energy
from tqdm.auto import tqdm

from bayes_glmhmm import _host_prng as host_prng
from bayes_glmhmm._compile import jit_one_off
from bayes_glmhmm.convergence import tree_depths
from bayes_glmhmm.tempering import swap_round, validated_ladder

__all__ = ["NutsDraws", "compiled_programs", "curvature_inverse_mass_matrix", "run_nuts", "sequence_mesh"]

CHAIN_AXIS = "chains"
SEQUENCE_AXIS = "sequences"
NUM_CHUNKS = 20  # progress-bar resolution; every chunk reuses one compiled function
# The model arguments split along "sequences" (transition inputs and subjects only when the model has them).
SEQUENCE_FIELDS = ("inputs", "emissions", "mask", "transition_inputs", "transition_input_index", "subject_index")


class NutsDraws(NamedTuple):
    """What the runner returns, NumPy arrays with leading axes (chain, draw).

    Attributes:
        samples: constrained draws of every model site, ``biases`` included.
        diverging: whether the trajectory diverged.
        energy: Hamiltonian at the draw.
        num_steps: leapfrog steps (gradient evaluations) of the transition.
        step_size: the (adapted) leapfrog step size.
        potential_energy: minus the unnormalized log posterior density in the unconstrained space.
        warmup_num_steps: (chain,) leapfrog steps spent in warmup.
        num_devices: devices used, by mesh axis: ``{"chains": C, "sequences": S}``.
        temperatures: the inverse temperatures of each tempering ladder, ``(1.0,)`` without tempering.
        swap_acceptance: (chain, L - 1) with tempering, the fraction of the kept iterations'
            exchange proposals between rungs l and l + 1 of each chain's ladder that were
            accepted; None without tempering.
        ladder_num_steps: (chain,) leapfrog steps of all the rungs of each chain's ladder, warmup
            included: the cost of the chain (its own ``num_steps`` and ``warmup_num_steps`` count
            the beta = 1 rung only).
    """

    samples: dict
    diverging: np.ndarray
    energy: np.ndarray
    num_steps: np.ndarray
    step_size: np.ndarray
    potential_energy: np.ndarray
    warmup_num_steps: np.ndarray
    num_devices: dict
    temperatures: tuple = (1.0,)
    swap_acceptance: np.ndarray | None = None
    ladder_num_steps: np.ndarray | None = None


class _Settings(NamedTuple):
    """Static (compile-time) settings of one sampler."""

    model: Callable
    model_options: tuple  # ((name, value), ...) static keyword arguments of the model
    num_warmup: int
    chunk_length: int
    target_accept_prob: float
    max_tree_depth: int | tuple[int, int]  # one depth, or (during warmup, while sampling)
    dense_mass: bool
    within_device: str  # "map" or "vmap": how one device runs its share of the chains
    sequence_axis: str | None
    precondition: bool
    num_temperatures: int = 1  # rungs per tempering ladder (1: no tempering)


def sequence_mesh(num_chain_devices: int, num_sequence_devices: int, devices=None) -> Mesh:
    """A (chains, sequences) device mesh over the first ``C * S`` devices.

    Args:
        num_chain_devices: C, device groups that run chains side by side.
        num_sequence_devices: S, devices that share the sequences of one chain.
        devices: devices to use; ``jax.devices()`` by default.

    With several processes ``jax.devices()`` lists every process's devices, process by process, so
    row c of the mesh (the devices of chain group c) lies within one process when S divides the
    number of devices per process.

    Raises:
        ValueError: if fewer than C * S devices are available, or, with several processes, if the
            first C * S devices leave a process without one (every process takes part in every step).
    """
    devices = jax.devices() if devices is None else list(devices)
    needed = num_chain_devices * num_sequence_devices
    if needed > len(devices):
        raise ValueError(
            f"need {num_chain_devices} x {num_sequence_devices} = {needed} devices, only {len(devices)} available "
            "(on CPU: numpyro.set_host_device_count or XLA_FLAGS=--xla_force_host_platform_device_count)"
        )
    left_out = sorted(
        {device.process_index for device in devices} - {device.process_index for device in devices[:needed]}
    )
    if left_out:
        raise ValueError(
            f"a {num_chain_devices} x {num_sequence_devices} mesh takes the first {needed} of {len(devices)} devices, "
            f"which leaves process(es) {left_out} without one; use every process's devices "
            "(num_chains x sequence_devices = all devices, or launch fewer processes)"
        )
    grid = np.asarray(devices[:needed], dtype=object).reshape(num_chain_devices, num_sequence_devices)
    return Mesh(grid, (CHAIN_AXIS, SEQUENCE_AXIS))


def _model(settings: _Settings, **extra):
    """The model with its static options bound (and ``extra``, e.g. the sequence axis name)."""
    return functools.partial(settings.model, **dict(settings.model_options), **extra)


def _potential_fn_gen(settings: _Settings):
    model = _model(settings, sequence_axis_name=settings.sequence_axis)

    def generate(**model_kwargs):
        return functools.partial(potential_energy, model, (), model_kwargs)

    return generate


def _nuts_kernels(settings: _Settings, z, model_kwargs):
    """NumPyro's NUTS init and transition functions, set up for ``settings``.

    ``hmc``'s ``init_kernel`` also configures the transition (adaptation schedule, tree depth)
    held in its closure, so every traced function that calls ``sample_kernel`` calls
    ``init_kernel`` first; its other outputs are unused there (at most one extra potential and
    gradient per chunk of ~100 transitions if XLA keeps them).
    """
    init_kernel, sample_kernel = hmc(potential_fn_gen=_potential_fn_gen(settings), algo="NUTS")

    def init(key, inverse_mass_matrix=None):
        return init_kernel(
            z,
            settings.num_warmup,
            inverse_mass_matrix=inverse_mass_matrix,
            dense_mass=settings.dense_mass,
            target_accept_prob=settings.target_accept_prob,
            trajectory_length=None,
            max_tree_depth=settings.max_tree_depth,
            model_kwargs=model_kwargs,
            rng_key=key,
        )

    return init, sample_kernel


def _numpyro_tree_depth(max_tree_depth) -> int | tuple[int, int]:
    """One depth as an int, two different ones as NumPyro's pair ``(warmup, sampling)``; validated."""
    warmup_depth, sampling_depth = tree_depths(max_tree_depth)
    return sampling_depth if warmup_depth == sampling_depth else (warmup_depth, sampling_depth)


def _over_local_chains(settings: _Settings, function, *batched):
    if settings.within_device == "vmap":
        return jax.vmap(function)(*batched)
    return lax.map(lambda args: function(*args), batched)


def curvature_inverse_mass_matrix(potential_fn, z, dense: bool, step: float = 1e-2, max_variance: float = 1.0):
    """A starting inverse mass matrix from the curvature of the potential at ``z``.

    The Hessian H of the potential (minus the log posterior density, unconstrained space) is
    taken by central differences of its gradient, 2 D gradient evaluations at once. Where H is
    positive definite, H^-1 approximates the posterior covariance near z: the returned matrix is
    H^-1 (``dense``) or its diagonal, with H's eigenvalues floored at 1 / max_variance, so no
    direction starts looser than NumPyro's identity start (nearly flat or noise-level directions
    get variance max_variance). Elsewhere (z far from a mode) it falls back to
    1 / max(H_ii, 1 / max_variance) per coordinate, and to max_variance where H_ii is not finite.
    The 2 D gradients are evaluated 8 at a time, so memory stays that of a few gradients.

    Args:
        potential_fn: z (dict) -> scalar potential energy.
        z: the point, a dict of arrays (flattened in ``ravel_pytree`` order, as NumPyro does).
        dense: return a (D, D) matrix instead of a (D,) diagonal.
        step: finite-difference step in the unconstrained space.
        max_variance: the largest starting variance of any direction.
    """
    flat, unravel = ravel_pytree(z)
    size = flat.shape[0]
    offsets = step * jnp.concatenate([jnp.eye(size, dtype=flat.dtype), -jnp.eye(size, dtype=flat.dtype)])
    gradients = lax.map(
        lambda offset: ravel_pytree(jax.grad(potential_fn)(unravel(flat + offset)))[0], offsets, batch_size=8
    )
    hessian = (gradients[:size] - gradients[size:]) / (2 * step)
    hessian = 0.5 * (hessian + hessian.T)
    eigenvalues, eigenvectors = jnp.linalg.eigh(hessian)
    positive_definite = jnp.all(eigenvalues > 0) & jnp.all(jnp.isfinite(hessian))
    floored = jnp.where(positive_definite, jnp.maximum(eigenvalues, 1.0 / max_variance), 1.0)
    inverse = (eigenvectors / floored) @ eigenvectors.T
    diagonal = jnp.diagonal(hessian)
    fallback = jnp.where(jnp.isfinite(diagonal), 1.0 / jnp.clip(diagonal, 1.0 / max_variance, None), max_variance)
    if dense:
        return jnp.where(positive_definite, inverse, jnp.diag(fallback))
    return jnp.where(positive_definite, jnp.diagonal(inverse), fallback)


def _with_temperature(model_kwargs: dict, temperature) -> dict:
    """The model arguments of a chain at inverse temperature ``temperature`` (None: the posterior)."""
    return model_kwargs if temperature is None else model_kwargs | {"likelihood_temperature": temperature}


def _local_init(settings, keys, z, model_kwargs, temperatures=None):
    def one_chain(key, chain_z, temperature=None):
        chain_kwargs = _with_temperature(model_kwargs, temperature)
        init, _ = _nuts_kernels(settings, chain_z, chain_kwargs)
        if not settings.precondition:
            return init(key)
        potential_fn = _potential_fn_gen(settings)(**chain_kwargs)
        return init(key, curvature_inverse_mass_matrix(potential_fn, chain_z, settings.dense_mass))

    batched = (keys, z) if temperatures is None else (keys, z, temperatures)
    return _over_local_chains(settings, one_chain, *batched)


def _transition_stats(state) -> tuple:
    return (state.diverging, state.energy, state.num_steps, state.adapt_state.step_size)


def _local_advance(settings, states, num_valid, model_kwargs):
    def one_chain(state):
        init, sample_kernel = _nuts_kernels(settings, state.z, model_kwargs)
        init(state.rng_key)  # configures sample_kernel; the state it builds is discarded

        def _transition(state):
            return sample_kernel(state, model_kwargs=model_kwargs)

        def _step(state, index):
            state = lax.cond(index < num_valid, _transition, lambda unchanged: unchanged, state)
            return state, (state.z, state.potential_energy, _transition_stats(state))

        return lax.scan(_step, state, jnp.arange(settings.chunk_length))

    return _over_local_chains(settings, one_chain, states)


def _exchanged(settings, states, temperatures, swap_keys, step, model_kwargs):
    """One round of replica exchange within every local ladder (:func:`~bayes_glmhmm.tempering.swap_round`).

    A rung's log-likelihood is read off its potential: U_beta(z) = U_0(z) - beta log p(y | z), so
    log p(y | z) = (U_0(z) - U_beta(z)) / beta: one more potential per chain and step, without its
    gradient (U_0 still runs the filter: the model multiplies its likelihood by 0). A rung that
    takes another's state gets its potential and gradient at its own temperature; its adapted step
    size and mass matrix stay with the rung.
    """
    num_rungs = settings.num_temperatures

    def log_likelihood(state, temperature):
        prior_potential = _potential_fn_gen(settings)(**_with_temperature(model_kwargs, jnp.zeros_like(temperature)))
        return (prior_potential(state.z) - state.potential_energy) / temperature

    log_likelihoods = _over_local_chains(settings, log_likelihood, states, temperatures)
    keys = jax.vmap(lambda key: jax.random.fold_in(key, step))(swap_keys)
    rounds = jax.vmap(swap_round, in_axes=(0, 0, 0, None))(
        keys, log_likelihoods.reshape(-1, num_rungs), temperatures.reshape(-1, num_rungs), step % 2
    )
    source = (rounds.permutation + num_rungs * jnp.arange(rounds.permutation.shape[0])[:, None]).reshape(-1)
    incoming = jax.tree.map(lambda value: value[source], states.z)
    swapped = source != jnp.arange(source.shape[0])

    def take(state, temperature, new_z, takes):
        def recompute(_):
            potential_fn = _potential_fn_gen(settings)(**_with_temperature(model_kwargs, temperature))
            potential, gradient = jax.value_and_grad(potential_fn)(new_z)
            return new_z, potential, gradient

        z, potential, gradient = lax.cond(
            takes, recompute, lambda _: (state.z, state.potential_energy, state.z_grad), None
        )
        return state._replace(z=z, potential_energy=potential, z_grad=gradient)

    states = _over_local_chains(settings, take, states, temperatures, incoming, swapped)
    return states, (rounds.proposed, rounds.accepted)


def _local_advance_tempered(settings, states, temperatures, swap_keys, first_step, num_valid, model_kwargs):
    """:func:`_local_advance` for tempering ladders.

    Every step, one NUTS transition per rung, then one round of exchanges within each ladder (the
    local chains are ladder-major: L rungs per ladder).
    """
    num_pairs = settings.num_temperatures - 1
    num_ladders = swap_keys.shape[0]
    # init_kernel configures sample_kernel (adaptation schedule, tree depth), alike for every rung;
    # the state it builds is discarded. The temperature reaches each rung through its model arguments.
    init, sample_kernel = _nuts_kernels(settings, jax.tree.map(lambda value: value[0], states.z), model_kwargs)
    init(states.rng_key[0])

    def _transition(state, temperature):
        return sample_kernel(state, model_kwargs=_with_temperature(model_kwargs, temperature))

    def _active_step(states, index):
        moved = _over_local_chains(settings, _transition, states, temperatures)
        return _exchanged(settings, moved, temperatures, swap_keys, first_step + index, model_kwargs)

    def _idle_step(states, index):
        no_pairs = jnp.zeros((num_ladders, num_pairs), bool)
        return states, (no_pairs, no_pairs)

    def _step(states, index):
        states, swaps = lax.cond(index < num_valid, _active_step, _idle_step, states, index)
        return states, (states.z, states.potential_energy, _transition_stats(states), swaps)

    states, outputs = lax.scan(_step, states, jnp.arange(settings.chunk_length))
    # (step, chain, ...) -> (chain, step, ...), as _local_advance returns them.
    return states, jax.tree.map(lambda value: jnp.moveaxis(value, 0, 1), outputs)


@functools.lru_cache(maxsize=16)
def _compiled(settings: _Settings, num_chain_devices: int, num_sequence_devices: int, replicated: tuple, split: tuple):
    """The mesh and the jitted init, chunk, constrain and gather functions, cached per setting and mesh shape.

    ``replicated`` names the model arguments every device holds whole, ``split`` those split
    along the sequences. ``gather`` copies chain-sharded outputs onto every device of the mesh; it
    is called (and compiled) only when the mesh spans several processes.

    Being cached, each function is traced and compiled once per data shape.
    """
    mesh = sequence_mesh(num_chain_devices, num_sequence_devices)
    data_specs = {name: P(SEQUENCE_AXIS) for name in split} | {name: P() for name in replicated}
    # check_vma=False: the chain state is replicated along "sequences" by construction (every
    # device adds the same psum), and glmhmm_model's psum carries its own gradient rule.
    if settings.num_temperatures > 1:
        # Tempering ladders: per-chain temperatures and per-ladder exchange keys ride along the chains.
        init_specs = (P(CHAIN_AXIS), P(CHAIN_AXIS), data_specs, P(CHAIN_AXIS))
        local_advance = _local_advance_tempered
        advance_specs = (P(CHAIN_AXIS), P(CHAIN_AXIS), P(CHAIN_AXIS), P(), P(), data_specs)
    else:
        init_specs = (P(CHAIN_AXIS), P(CHAIN_AXIS), data_specs)
        local_advance = _local_advance
        advance_specs = (P(CHAIN_AXIS), P(), data_specs)
    init = jax.shard_map(
        functools.partial(_local_init, settings),
        mesh=mesh,
        in_specs=init_specs,
        out_specs=P(CHAIN_AXIS),
        check_vma=False,
    )
    advance = jax.shard_map(
        functools.partial(local_advance, settings),
        mesh=mesh,
        in_specs=advance_specs,
        out_specs=P(CHAIN_AXIS),
        check_vma=False,
    )
    constrain_model = _model(settings)

    def constrain(z, model_kwargs):
        one = functools.partial(constrain_fn, constrain_model, (), model_kwargs, return_deterministic=True)
        return jax.vmap(jax.vmap(one))(z)

    gather = jit_one_off(lambda tree: tree, out_shardings=NamedSharding(mesh, P()))
    # The transitions run thousands of times and keep XLA's default optimization; the
    # initialization and the constraining run once.
    functions = (jit_one_off(init), jax.jit(advance), jit_one_off(constrain), gather)
    _JITTED.extend(functions)
    return (mesh, *functions)


_JITTED: list = []  # every jitted function _compiled has made, for compiled_programs()


def compiled_programs() -> int:
    """How many programs the runner has compiled in this process (one per function and shape)."""
    return sum(function._cache_size() for function in _JITTED)


def _on_host(tree, gather):
    """The values of a pytree of arrays, as the same pytree of NumPy arrays on this process.

    Arrays whose shards all lie on this process's devices are copied as they are (in one process,
    always: no program runs). Others, sharded over several processes' devices, are first copied
    onto every device by ``gather`` (a compiled all-gather), since a process can read only its own
    devices.
    """
    if all(leaf.is_fully_addressable for leaf in jax.tree.leaves(tree)):
        return jax.tree.map(np.asarray, tree)
    return jax.tree.map(np.asarray, gather(tree))


def _placed(value, sharding: NamedSharding) -> jax.Array:
    """``value`` (the whole array, as every process holds it) laid out by ``sharding``.

    Each process copies onto its own devices only their shards, sliced on the host; in one
    process this is ``jax.device_put(value, sharding)`` without a program to compile.
    """
    whole = np.asarray(value)
    return jax.make_array_from_callback(whole.shape, sharding, lambda index: whole[index])


def _process_zero_arguments(key, init_z: dict, model_kwargs: dict) -> tuple:
    """Process 0's key, starting points and model arguments, on every process (as NumPy arrays).

    The devices of one chain may lie on several processes, each of which copies the chain's key
    and starting point from its own arguments, so these must agree bitwise: they are taken from
    process 0 (an EM start computed on another process may differ in the last bits where
    reductions are not bitwise reproducible, e.g. on some GPUs). The model arguments are taken
    from process 0 too, and compared with each process's own: floats must agree to float32
    rounding (``rtol=1e-5``), the others exactly. Python scalars (e.g. the priors' fields) stay
    as given, so that they keep their weak type in the compiled programs. The data cross the
    network once per fit, in the broadcast.

    Raises:
        ValueError: on every process, if any process's model arguments differ from process 0's
            (e.g. each passed only its own sequences).
    """
    local = jax.tree.map(np.asarray, (key, init_z, model_kwargs))
    shared = jax.tree.map(
        lambda value, own: np.asarray(value, dtype=own.dtype), multihost_utils.broadcast_one_to_all(local), local
    )

    def agrees(value, own):
        if np.issubdtype(own.dtype, np.floating):
            return bool(np.allclose(value, own, rtol=1e-5, atol=1e-6, equal_nan=True))
        return bool(np.array_equal(value, own))

    agreement = np.asarray(jax.tree.leaves(jax.tree.map(agrees, shared[2], local[2])), dtype=bool).all()
    verdicts = multihost_utils.process_allgather(agreement)
    if not verdicts.all():
        raise ValueError(
            f"process(es) {np.flatnonzero(~verdicts).tolist()} passed other model arguments than process 0; "
            "every process must pass the same (whole) data"
        )
    return jax.tree.map(
        lambda value, given: given if isinstance(given, (bool, int, float)) else value,
        shared,
        (key, init_z, model_kwargs),
    )


def _pad_sequences(model_kwargs: dict, multiple: int) -> dict:
    """Append fully masked sequences so the batch splits evenly; they add 0 to the log-likelihood (up to rounding)."""
    num_sequences = model_kwargs["emissions"].shape[0]
    extra = (-num_sequences) % multiple
    padded = dict(model_kwargs)
    if extra == 0:
        return padded
    for name in SEQUENCE_FIELDS:
        if name not in model_kwargs:
            continue
        value = model_kwargs[name]
        padded[name] = jnp.concatenate([value, jnp.zeros((extra, *value.shape[1:]), value.dtype)])
    return padded


class _Layout(NamedTuple):
    """The arguments of :func:`_compiled` for one run: the runner's settings and its mesh shape."""

    settings: _Settings
    num_chain_devices: int
    num_sequence_devices: int
    replicated: tuple
    split: tuple


def _runner_layout(
    model,
    model_kwargs: dict,
    model_options: dict,
    *,
    num_chains: int,
    num_warmup: int,
    num_samples: int,
    target_accept_prob: float,
    max_tree_depth,
    dense_mass: bool,
    chain_method: str,
    sequence_devices: int,
    precondition: bool,
    num_rungs: int,
) -> _Layout:
    """The static settings and mesh shape that :func:`run_nuts` compiles its programs for."""
    settings = _Settings(
        model=model,
        model_options=tuple(sorted(model_options.items())),
        num_warmup=num_warmup,
        chunk_length=math.ceil((num_warmup + num_samples) / NUM_CHUNKS),
        target_accept_prob=float(target_accept_prob),
        max_tree_depth=_numpyro_tree_depth(max_tree_depth),
        dense_mass=bool(dense_mass),
        within_device="vmap" if chain_method == "vectorized" else "map",
        sequence_axis=SEQUENCE_AXIS if sequence_devices > 1 else None,
        precondition=bool(precondition),
        num_temperatures=num_rungs,
    )
    split = tuple(name for name in SEQUENCE_FIELDS if name in model_kwargs)
    replicated = tuple(sorted(set(model_kwargs) - set(split)))
    num_chain_devices = num_chains if chain_method == "parallel" else 1
    return _Layout(settings, num_chain_devices, sequence_devices, replicated, split)


def _sharded_model_kwargs(model_kwargs: dict, mesh: Mesh, layout: _Layout) -> dict:
    """The model arguments as the compiled programs take them: sequences padded and split over the mesh."""
    sharded_kwargs = _pad_sequences(model_kwargs, layout.num_sequence_devices)
    for name in layout.split:
        sharded_kwargs[name] = _placed(sharded_kwargs[name], NamedSharding(mesh, P(SEQUENCE_AXIS)))
    return sharded_kwargs


#: The name of the threads that compile a run's programs ahead (:func:`compile_in_background`).
_COMPILE_THREAD = "bayes-glmhmm-nuts-compile"


def compile_in_background(
    key,
    init_z_like: dict,
    model: Callable,
    model_kwargs: dict,
    model_options: dict,
    *,
    num_warmup: int,
    num_samples: int,
    target_accept_prob: float = 0.8,
    max_tree_depth: int | tuple[int, int] = 10,
    dense_mass: bool = False,
    chain_method: str = "sequential",
    sequence_devices: int = 1,
    precondition: bool = True,
) -> threading.Thread | None:
    """Start compiling the init and chunk programs of a later :func:`run_nuts` call, in a daemon thread.

    A fit's NUTS programs depend on the shapes of its starting points, not on their values, so
    they can compile while the starting points are still being computed (EM): XLA compiles with
    Python's lock released, on the core the EM leaves idle. The programs land in the same jitted
    functions' caches that :func:`run_nuts` calls, so it compiles nothing more, provided it gets
    the same arguments as here (``init_z`` of ``init_z_like``'s shapes and dtypes). Join the
    thread before that call. Any error in the thread is dropped: :func:`run_nuts` then compiles
    as usual.

    Args:
        key: the PRNG key that :func:`run_nuts` will get.
        init_z_like: the starting points' structure: arrays or ``jax.ShapeDtypeStruct`` with a
            leading chain axis.
        model: the NumPyro model, as for :func:`run_nuts`.
        model_kwargs: its array arguments, as :func:`run_nuts` will get them.
        model_options: its static keyword arguments, as for :func:`run_nuts`.
        num_warmup: as for :func:`run_nuts`.
        num_samples: as for :func:`run_nuts`.
        target_accept_prob: as for :func:`run_nuts`.
        max_tree_depth: as for :func:`run_nuts`.
        dense_mass: as for :func:`run_nuts`.
        chain_method: as for :func:`run_nuts`.
        sequence_devices: as for :func:`run_nuts`.
        precondition: as for :func:`run_nuts` (tempering is not compiled ahead).

    Returns:
        The started thread, or None where nothing was started (several processes, whose programs
        compile collectively with their arguments).
    """
    if jax.process_count() > 1:
        return None
    layout = _runner_layout(
        model,
        model_kwargs,
        model_options,
        num_chains=jax.tree.leaves(init_z_like)[0].shape[0],
        num_warmup=num_warmup,
        num_samples=num_samples,
        target_accept_prob=target_accept_prob,
        max_tree_depth=max_tree_depth,
        dense_mass=dense_mass,
        chain_method=chain_method,
        sequence_devices=sequence_devices,
        precondition=precondition,
        num_rungs=1,
    )
    thread = threading.Thread(
        target=_compile_quietly,
        args=(layout, key, init_z_like, dict(model_kwargs)),  # a copy: the caller may add to its dict
        name=_COMPILE_THREAD,
        daemon=True,
    )
    thread.start()
    return thread


def _compile_quietly(layout: _Layout, key, init_z_like: dict, model_kwargs: dict) -> None:
    """:func:`_compile_ahead`, its errors dropped (the run compiles what is missing).

    Warnings are left alone: ``warnings.catch_warnings`` swaps the process's filters and is not
    safe beside another thread doing the same.
    """
    try:
        _compile_ahead(layout, key, init_z_like, model_kwargs)
    except Exception:  # noqa: BLE001 -- an optimization: run_nuts compiles whatever is missing
        pass


def _compile_ahead(layout: _Layout, key, init_z_like: dict, model_kwargs: dict) -> None:
    """Compile the init and chunk programs for these argument shapes, exactly as :func:`run_nuts` calls them."""
    mesh, init, advance, _, _ = _compiled(*layout)
    sharded_kwargs = _sharded_model_kwargs(model_kwargs, mesh, layout)
    chain_sharding = NamedSharding(mesh, P(CHAIN_AXIS))
    num_chains = jax.tree.leaves(init_z_like)[0].shape[0]
    chain_keys = _placed(host_prng.split(key, num_chains), chain_sharding)

    def chain_sharded(tree):
        return jax.tree.map(lambda value: jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=chain_sharding), tree)

    lowered_init = init.trace(chain_keys, chain_sharded(init_z_like), sharded_kwargs).lower()
    # The chain states are chain-sharded (init's out_specs): the chunk program can be lowered
    # and compiled from their shapes while init's program compiles beside it.
    compiling_init = threading.Thread(target=lowered_init.compile, name=_COMPILE_THREAD + "-init", daemon=True)
    compiling_init.start()
    try:
        advance.trace(chain_sharded(lowered_init.out_info), np.int32(0), sharded_kwargs).lower().compile()
    finally:
        compiling_init.join()


def run_nuts(
    key,
    init_z: dict,
    model: Callable,
    model_kwargs: dict,
    model_options: dict,
    *,
    num_warmup: int,
    num_samples: int,
    target_accept_prob: float = 0.8,
    max_tree_depth: int | tuple[int, int] = 10,
    dense_mass: bool = False,
    chain_method: str = "sequential",
    sequence_devices: int = 1,
    precondition: bool = True,
    progress_bar: bool = False,
    temperatures=None,
    more_draws: Callable[[NutsDraws], int] | None = None,
) -> NutsDraws:
    """Run NUTS chains on a NumPyro model (e.g. :func:`~bayes_glmhmm.model.glmhmm_model`), return the kept draws.

    Args:
        key: PRNG key; chain c uses ``jax.random.split(key, num_chains)[c]``.
        init_z: starting points in the unconstrained space, each leaf with a leading chain axis.
        model: the NumPyro model, a function of ``**model_kwargs, **model_options`` that accepts a
            ``sequence_axis_name`` keyword (the mesh axis along which its sequences are split, or None).
        model_kwargs: the model's array arguments (traced: a new value reuses the compiled sampler);
            the fields of ``SEQUENCE_FIELDS`` present (``inputs``, ``emissions``, ``mask``, and the
            transition inputs and subjects when given) have a leading sequence axis and are split
            over devices. With several processes every process passes all of them, whole.
        model_options: the model's static keyword arguments (hashable values, e.g. ``num_states``, the
            family); a new value compiles a new sampler.
        num_warmup: adaptation iterations per chain (discarded).
        num_samples: kept draws per chain.
        target_accept_prob: NUTS target acceptance probability.
        max_tree_depth: NUTS maximum tree depth, or a pair ``(warmup, sampling)``: the depth
            during warmup and while drawing (NumPyro's convention, see
            :func:`~bayes_glmhmm.convergence.tree_depths`).
        dense_mass: adapt a dense mass matrix.
        chain_method: ``"parallel"`` (one device group per chain), ``"sequential"`` (one after the
            other) or ``"vectorized"`` (all chains batched in one program).
        sequence_devices: devices sharing each chain's batch of sequences (S of the mesh).
        precondition: start the mass matrix from the curvature of the potential at each chain's
            starting point (:func:`curvature_inverse_mass_matrix`) instead of the identity, so the
            first adaptation window does not crawl with long trajectories; adaptation goes on as usual.
        progress_bar: show a progress bar over the iterations.
        temperatures: parallel tempering (:mod:`bayes_glmhmm.tempering`): a ladder of inverse
            temperatures 1 = beta_0 > beta_1 > ... > 0. Each chain becomes a ladder of L chains, the
            rung at beta sampling p(theta) p(y | theta)^beta (the model takes
            ``likelihood_temperature``), exchanging states with adjacent rungs after every step;
            only the beta = 1 rungs' draws are returned. With ``"parallel"`` each ladder gets a
            device group. None: plain NUTS.
        more_draws: sample on after ``num_samples`` draws: called with the draws so far, it
            returns how many more draws per chain to take (0 or less: stop), and is called again
            after those. The chains go on from where they stopped (adaptation ended with the
            warmup), in chunks of the compiled length: no program is compiled again. None: stop
            after ``num_samples``.

    Returns:
        A :class:`NutsDraws`, all chains' draws on every process.

    Raises:
        ValueError: if the settings are invalid, the mesh needs more devices than there are, or
            (several processes) the processes' model arguments differ.
    """
    if chain_method not in ("parallel", "sequential", "vectorized"):
        raise ValueError(f"chain_method must be parallel, sequential or vectorized, got {chain_method!r}")
    if num_warmup < 0 or num_samples < 1:
        raise ValueError(f"need num_warmup >= 0 and num_samples >= 1, got {num_warmup} and {num_samples}")
    ladder = (1.0,) if temperatures is None else validated_ladder(temperatures)
    num_rungs = len(ladder)
    num_chains = jax.tree.leaves(init_z)[0].shape[0]
    total = num_warmup + num_samples
    layout = _runner_layout(
        model,
        model_kwargs,
        model_options,
        num_chains=num_chains,
        num_warmup=num_warmup,
        num_samples=num_samples,
        target_accept_prob=target_accept_prob,
        max_tree_depth=max_tree_depth,
        dense_mass=dense_mass,
        chain_method=chain_method,
        sequence_devices=sequence_devices,
        precondition=precondition,
        num_rungs=num_rungs,
    )
    settings, num_chain_devices = layout.settings, layout.num_chain_devices
    mesh, init, advance, constrain, gather = _compiled(*layout)
    if jax.process_count() > 1:
        key, init_z, model_kwargs = _process_zero_arguments(key, init_z, model_kwargs)
    sharded_kwargs = _sharded_model_kwargs(model_kwargs, mesh, layout)
    # Placed on the chain devices from the host, so that no resharding program is compiled.
    chain_sharding = NamedSharding(mesh, P(CHAIN_AXIS))
    if num_rungs == 1:
        chain_keys, init_z = jax.tree.map(
            lambda value: _placed(value, chain_sharding), (host_prng.split(key, num_chains), init_z)
        )
        states = init(chain_keys, init_z, sharded_kwargs)
        ladder_arguments = ()
    else:
        # Ladder-major: chain c's ladder holds rungs c * L ... c * L + L - 1, all starting at chain c's start.
        key, swap_key = host_prng.split(key)
        chain_keys, init_z, chain_temperatures, swap_keys = jax.tree.map(
            lambda value: _placed(value, chain_sharding),
            (
                host_prng.split(key, num_chains * num_rungs),
                jax.tree.map(lambda value: np.repeat(np.asarray(value), num_rungs, axis=0), init_z),
                np.tile(np.asarray(ladder, dtype=jax.tree.leaves(init_z)[0].dtype), num_chains),
                host_prng.split(swap_key, num_chains),
            ),
        )
        states = init(chain_keys, init_z, sharded_kwargs, chain_temperatures)
        ladder_arguments = (chain_temperatures, swap_keys)
    chunks = []
    done = 0
    with tqdm(total=total, disable=not progress_bar, desc="NUTS") as bar:
        while True:
            while done < total:
                num_valid = min(settings.chunk_length, total - done)
                if num_rungs == 1:
                    states, outputs = advance(states, np.int32(num_valid), sharded_kwargs)
                else:
                    states, outputs = advance(
                        states, *ladder_arguments, np.int32(done), np.int32(num_valid), sharded_kwargs
                    )
                # On the host, so that slicing and joining compile no programs of their own.
                chunks.append(_kept_chunk(done, num_valid, num_warmup, _on_host(outputs, gather)))
                done += num_valid
                bar.update(num_valid)
            draws = _collected_draws(chunks, ladder, constrain, model_kwargs, num_chain_devices, sequence_devices)
            extra = 0 if more_draws is None else int(more_draws(draws))
            if extra <= 0:
                return draws
            total += extra
            bar.total = total
            bar.refresh()


class _Chunk(NamedTuple):
    """One chunk's outputs on the host, as :func:`_collected_draws` needs them."""

    outputs: tuple  # (z, potential, transition stats[, swaps]), each (chain, chunk step, ...), all rungs
    keep: slice  # the kept steps: after the warmup, before the chunk's idle tail
    constrained: dict | None  # the beta = 1 rungs' kept draws, constrained (filled in once)


def _kept_chunk(done: int, num_valid: int, num_warmup: int, outputs) -> _Chunk:
    return _Chunk(outputs=outputs, keep=slice(max(0, num_warmup - done), num_valid), constrained=None)


def _constrained_chunk(chunk: _Chunk, cold: slice, constrain, model_kwargs) -> dict:
    """The chunk's kept beta = 1 draws in the constrained space.

    All the chunk's steps are constrained, so that every chunk has the compiled shape and one
    program serves them all, also the chunks of :func:`run_nuts`'s ``more_draws``.
    """
    z = jax.tree.map(lambda value: value[cold], chunk.outputs[0])
    return {name: np.asarray(value)[:, chunk.keep] for name, value in constrain(z, model_kwargs).items()}


def _collected_draws(chunks, ladder, constrain, model_kwargs, num_chain_devices, sequence_devices):
    """The chunks' outputs joined into :class:`NutsDraws`: kept draws of the beta = 1 rungs, warmup counted apart.

    Each chunk is constrained once (:func:`_constrained_chunk`); the result is kept in ``chunks``.
    """
    num_rungs = len(ladder)
    cold = slice(None, None, num_rungs)  # rung 0 of every ladder, beta = 1
    for index, chunk in enumerate(chunks):
        if chunk.constrained is None and chunk.keep.start < chunk.keep.stop:
            chunks[index] = chunk._replace(constrained=_constrained_chunk(chunk, cold, constrain, model_kwargs))
    warmup_steps = np.sum([chunk.outputs[2][2][:, : chunk.keep.start].sum(axis=1) for chunk in chunks], axis=0)
    kept = [jax.tree.map(lambda value, keep=chunk.keep: value[:, keep], chunk.outputs) for chunk in chunks]
    _, potential, (diverging, energy, num_steps, step_size), *swaps = jax.tree.map(
        lambda *parts: np.concatenate(parts, axis=1), *kept
    )
    ladder_num_steps = (warmup_steps + num_steps.sum(axis=1)).reshape(-1, num_rungs).sum(axis=1)
    potential, diverging, energy, num_steps, step_size = jax.tree.map(
        lambda value: value[cold], (potential, diverging, energy, num_steps, step_size)
    )
    swap_acceptance = None
    if swaps:
        proposed, accepted = swaps[0]
        swap_acceptance = accepted.sum(axis=1) / np.maximum(proposed.sum(axis=1), 1)
    constrained = [chunk.constrained for chunk in chunks if chunk.constrained is not None]
    samples = jax.tree.map(lambda *parts: np.concatenate(parts, axis=1), *constrained)
    return NutsDraws(
        samples=samples,
        diverging=diverging.astype(bool),
        energy=energy,
        num_steps=num_steps,
        step_size=step_size,
        potential_energy=potential,
        warmup_num_steps=warmup_steps[cold].astype(np.int64),
        num_devices={CHAIN_AXIS: num_chain_devices, SEQUENCE_AXIS: sequence_devices},
        temperatures=ladder,
        swap_acceptance=swap_acceptance,
        ladder_num_steps=None if num_rungs == 1 else ladder_num_steps.astype(np.int64),
    )
