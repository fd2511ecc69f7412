"""The compile-once NUTS runner and the (chains, sequences) device mesh.

conftest.py gives this process 2 host CPU devices, enough for a mesh with 2 sequence devices.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from numpyro.infer.util import potential_energy, unconstrain_fn

from bayes_glmhmm import GLMHMMParams, Priors, article_params, fit_nuts, simulate
from bayes_glmhmm.model import glmhmm_model, unconstrain_sites
from bayes_glmhmm.sampler import SEQUENCE_AXIS, _pad_sequences, compiled_programs, run_nuts, sequence_mesh


def _data(key, num_sequences=5, num_timesteps=40):
    inputs = jax.random.uniform(key, (num_sequences, num_timesteps, 1), minval=1, maxval=10)
    _, emissions = simulate(key, article_params(), inputs)
    mask = jnp.ones(emissions.shape, bool)
    return dict(inputs=inputs, emissions=emissions, mask=mask, priors=Priors(), input_mean=inputs.mean((0, 1)))


def _unconstrained(model_kwargs, params):
    constrained = {
        "initial_probs": params.initial_probs,
        "transition_matrix": params.transition_matrix,
        "weights": params.weights,
        "centred_biases": params.biases + params.weights @ model_kwargs["input_mean"],
        "scales": params.scales,
    }
    return unconstrain_fn(functools.partial(glmhmm_model, num_states=3), (), model_kwargs, constrained)


def _potential_and_grad(model_kwargs, z, axis_name=None, time_parallel=False):
    model = functools.partial(glmhmm_model, num_states=3, sequence_axis_name=axis_name, time_parallel=time_parallel)
    return jax.value_and_grad(lambda z: potential_energy(model, (), model_kwargs, z))(z)


def test_sharded_potential_and_gradient_equal_the_single_device_ones():
    """Oracle: with the sequences split over 2 devices (psum of the parts), value and gradient of the
    potential match the unsplit computation to float32 summation error (5 sequences: one device
    gets a padded, fully masked sequence, which must add nothing but rounding)."""
    model_kwargs = _data(jax.random.PRNGKey(0))
    params = article_params()._replace(initial_probs=jnp.array([0.5, 0.3, 0.2]))
    z = _unconstrained(model_kwargs, params)
    expected_value, expected_grad = _potential_and_grad(model_kwargs, z)

    mesh = sequence_mesh(1, 2)
    padded = _pad_sequences(model_kwargs, 2)
    assert padded["emissions"].shape[0] == 6 and not bool(padded["mask"][5].any())
    specs = dict(inputs=P(SEQUENCE_AXIS), emissions=P(SEQUENCE_AXIS), mask=P(SEQUENCE_AXIS), priors=P(), input_mean=P())
    sharded = jax.jit(
        jax.shard_map(
            lambda kwargs, z: _potential_and_grad(kwargs, z, SEQUENCE_AXIS),
            mesh=mesh,
            in_specs=(specs, P()),
            out_specs=P(),
            check_vma=False,
        )
    )
    value, grad = sharded(padded, z)
    np.testing.assert_allclose(value, expected_value, rtol=1e-5)
    for name in expected_grad:
        np.testing.assert_allclose(grad[name], expected_grad[name], rtol=1e-4, atol=1e-3, err_msg=name)
    # The scale of the check: a gradient counted twice (the naive psum transpose) would be far off.
    assert float(jnp.abs(expected_grad["centred_biases"]).max()) > 1.0


def test_sharded_input_driven_potential_equals_the_single_device_one():
    """The transition inputs are split with the sequences: with input-driven transitions (full
    form, M = 2), value and gradient of the sharded potential match the unsplit ones to float32
    summation error; the padded sequence's transition inputs (zeros) add nothing."""
    from bayes_glmhmm.model import centred_sites
    from bayes_glmhmm.transitions import input_driven

    transitions = input_driven("full")
    model_kwargs = _data(jax.random.PRNGKey(1))
    transition_inputs = jax.random.normal(jax.random.PRNGKey(2), (*model_kwargs["emissions"].shape, 2))
    model_kwargs |= dict(transition_inputs=transition_inputs, transition_input_mean=transition_inputs.mean((0, 1)))
    weights = 0.5 * jax.random.normal(jax.random.PRNGKey(3), (3, 3, 2)) * (1.0 - jnp.eye(3))[..., None]
    params = article_params()._replace(transition_weights=weights)
    sites = centred_sites(params, model_kwargs["input_mean"], model_kwargs["transition_input_mean"], transitions)
    z = unconstrain_sites(sites)
    model = functools.partial(glmhmm_model, num_states=3, transitions=transitions)

    def potential_and_grad(kwargs, z, axis_name=None):
        bound = functools.partial(model, sequence_axis_name=axis_name)
        return jax.value_and_grad(lambda z: potential_energy(bound, (), kwargs, z))(z)

    expected_value, expected_grad = potential_and_grad(model_kwargs, z)
    mesh = sequence_mesh(1, 2)
    padded = _pad_sequences(model_kwargs, 2)
    assert padded["transition_inputs"].shape[0] == 6
    split = ("inputs", "emissions", "mask", "transition_inputs")
    specs = {name: P(SEQUENCE_AXIS) if name in split else P() for name in model_kwargs}
    sharded = jax.jit(
        jax.shard_map(
            lambda kwargs, z: potential_and_grad(kwargs, z, SEQUENCE_AXIS),
            mesh=mesh,
            in_specs=(specs, P()),
            out_specs=P(),
            check_vma=False,
        )
    )
    value, grad = sharded(padded, z)
    np.testing.assert_allclose(value, expected_value, rtol=1e-5)
    assert set(grad) == {"initial_probs", "centred_transition_matrix", "free_transition_weights"} | {
        "weights",
        "centred_biases",
        "scales",
    }
    for name in expected_grad:
        np.testing.assert_allclose(grad[name], expected_grad[name], rtol=1e-4, atol=1e-3, err_msg=name)
    assert float(jnp.abs(expected_grad["free_transition_weights"]).max()) > 0.1


def test_time_parallel_model_has_the_same_potential_and_runs():
    """The parallel-in-time likelihood gives the model the same potential and gradient (to float32
    rounding), and the runner samples with it."""
    model_kwargs = _data(jax.random.PRNGKey(6))
    z = _unconstrained(model_kwargs, article_params()._replace(initial_probs=jnp.array([0.2, 0.5, 0.3])))
    expected_value, expected_grad = _potential_and_grad(model_kwargs, z)
    value, grad = jax.jit(functools.partial(_potential_and_grad, time_parallel=True))(model_kwargs, z)
    np.testing.assert_allclose(value, expected_value, rtol=1e-5)
    for name in expected_grad:
        np.testing.assert_allclose(grad[name], expected_grad[name], rtol=1e-4, atol=1e-3, err_msg=name)
    draws = run_nuts(
        jax.random.PRNGKey(0),
        jax.tree.map(lambda v: v[None], z),
        glmhmm_model,
        model_kwargs,
        {"num_states": 3, "time_parallel": True},
        num_warmup=10,
        num_samples=5,
    )
    assert np.all(np.isfinite(draws.potential_energy))


def test_second_fit_with_new_data_reuses_the_compiled_sampler():
    """Compile once: new data, priors, starting points and seed with the same shapes add no
    entry to the jit caches of the init and chunk functions."""
    kwargs_a = _data(jax.random.PRNGKey(1))
    kwargs_b = _data(jax.random.PRNGKey(2))
    kwargs_b["priors"] = Priors(2.0, 2.0, 3.0, 3.0, 2.0)
    z_a = jax.tree.map(lambda v: v[None], _unconstrained(kwargs_a, article_params()))
    z_b = jax.tree.map(lambda v: v + 0.1, z_a)
    settings = dict(num_warmup=20, num_samples=20, chain_method="sequential")
    first = run_nuts(jax.random.PRNGKey(0), z_a, glmhmm_model, kwargs_a, {"num_states": 3}, **settings)
    programs = compiled_programs()
    second = run_nuts(jax.random.PRNGKey(5), z_b, glmhmm_model, kwargs_b, {"num_states": 3}, **settings)
    assert compiled_programs() == programs
    run_nuts(jax.random.PRNGKey(5), z_b, glmhmm_model, kwargs_b, {"num_states": 3}, **{**settings, "num_warmup": 21})
    assert compiled_programs() > programs  # the check can fail: new static settings do compile
    assert first.samples["weights"].shape == second.samples["weights"].shape == (1, 20, 3, 1)
    assert not np.allclose(first.samples["weights"], second.samples["weights"])


CHAIN_METHODS = ("sequential", "vectorized", "parallel")
#: How far the chain methods' draws may differ. They run the same arithmetic batched differently, so
#: they differ by float32 rounding, which the trajectories amplify: over 8 + 8 iterations by at most
#: 7e-4 (measured); by 30 warmup iterations the step sizes have drifted apart by 4% and the draws by
#: up to 2, which is why the runs are this short.
TOLERANCE = 5e-3


@pytest.fixture(scope="module")
def chain_method_runs():
    """The same two chains (same key, same starts) run by every chain method, 8 warmup + 8 draws."""
    model_kwargs = _data(jax.random.PRNGKey(3))
    z = jax.tree.map(lambda v: jnp.stack([v, v + 0.05]), _unconstrained(model_kwargs, article_params()))
    runs = {
        method: run_nuts(
            jax.random.PRNGKey(0),
            z,
            glmhmm_model,
            model_kwargs,
            {"num_states": 3},
            num_warmup=8,
            num_samples=8,
            chain_method=method,
        )
        for method in CHAIN_METHODS
    }
    return model_kwargs, runs


@pytest.mark.parametrize("chain_method", CHAIN_METHODS)
def test_chain_methods_give_valid_draws(chain_method, chain_method_runs):
    """Every chain method returns (chains, draws) arrays of constrained draws and NUTS statistics, and the
    same draws: chain c uses the c-th split of the key whichever way the chains are laid out, so the
    methods differ only by rounding (see TOLERANCE), with the same number of leapfrog steps. A method
    that mixed up keys or the order of the chains fails: the two chains' draws differ by far more."""
    model_kwargs, runs = chain_method_runs
    draws = runs[chain_method]
    assert draws.samples["transition_matrix"].shape == (2, 8, 3, 3)
    np.testing.assert_allclose(draws.samples["transition_matrix"].sum(-1), 1.0, rtol=1e-5)
    assert np.all(draws.samples["scales"] > 0)
    np.testing.assert_allclose(
        draws.samples["biases"],
        draws.samples["centred_biases"]
        - np.einsum("cskd,d->csk", draws.samples["weights"], model_kwargs["input_mean"]),
        rtol=1e-5,
        atol=1e-5,
    )
    for stat in (draws.diverging, draws.energy, draws.num_steps, draws.step_size, draws.potential_energy):
        assert stat.shape == (2, 8)
    assert np.all(draws.num_steps >= 1) and np.all(np.isfinite(draws.potential_energy))
    assert draws.warmup_num_steps.shape == (2,) and np.all(draws.warmup_num_steps >= 8)
    assert draws.num_devices == {"chains": 2 if chain_method == "parallel" else 1, "sequences": 1}

    reference = runs["sequential"]
    assert max(np.abs(value[0] - value[1]).max() for value in reference.samples.values()) > 10 * TOLERANCE
    for name, value in reference.samples.items():
        np.testing.assert_allclose(draws.samples[name], value, rtol=TOLERANCE, atol=TOLERANCE, err_msg=name)
    np.testing.assert_array_equal(draws.num_steps, reference.num_steps)
    np.testing.assert_array_equal(draws.warmup_num_steps, reference.warmup_num_steps)


def test_chunking_matches_the_requested_counts():
    """Warmup and draw counts that do not divide into chunks: exactly num_samples draws come back,
    and the run is bitwise reproducible."""
    model_kwargs = _data(jax.random.PRNGKey(4))
    z = jax.tree.map(lambda v: v[None], _unconstrained(model_kwargs, article_params()))
    runs = [
        run_nuts(
            jax.random.PRNGKey(9),
            z,
            glmhmm_model,
            model_kwargs,
            {"num_states": 3},
            num_warmup=7,
            num_samples=13,
            progress_bar=True,
        )
        for _ in range(2)
    ]
    assert runs[0].samples["scales"].shape == (1, 13, 3)
    np.testing.assert_array_equal(runs[0].samples["scales"], runs[1].samples["scales"])


def test_fit_with_sequences_split_over_devices_agrees_with_one_device(small_article_data):
    """The same posterior from 1 and 2 sequence devices: posterior means agree within 5 Monte Carlo
    standard errors (the draws differ after the first steps because the psum adds in another order)."""
    data = small_article_data
    fits = [
        fit_nuts(
            data.inputs,
            data.emissions,
            3,
            num_chains=2,
            num_warmup=200,
            num_samples=300,
            seed=4,
            progress_bar=False,
            chain_method="sequential",
            sequence_devices=devices,
        )
        for devices in (1, 2)
    ]
    assert fits[1].settings["sequence_devices"] == 2
    for name in ("weights", "biases", "scales"):
        draws = [fit.samples[name].reshape(-1, *fit.samples[name].shape[2:]) for fit in fits]
        ess = [float(fit.diagnostics()["min_ess_bulk"]) for fit in fits]
        standard_error = np.sqrt(sum(d.var(axis=0) / e for d, e in zip(draws, ess, strict=True)))
        difference = np.abs(draws[0].mean(axis=0) - draws[1].mean(axis=0))
        assert np.all(difference < 5 * standard_error + 1e-6), (name, difference, standard_error)


def test_device_requests_beyond_the_devices_are_clear_errors(small_article_data):
    data = small_article_data
    with pytest.raises(ValueError, match="sequence_devices=3 exceeds"):
        fit_nuts(data.inputs, data.emissions, 3, num_chains=1, sequence_devices=3, progress_bar=False)
    with pytest.raises(ValueError, match="chain_method='parallel' needs"):
        fit_nuts(
            data.inputs,
            data.emissions,
            3,
            num_chains=2,
            chain_method="parallel",
            sequence_devices=2,
            progress_bar=False,
        )
    with pytest.raises(ValueError, match="sequence_devices must be an integer"):
        fit_nuts(data.inputs, data.emissions, 3, sequence_devices=0, progress_bar=False)
    with pytest.raises(ValueError, match="need 2 x 2 = 4 devices"):
        sequence_mesh(2, 2)


def test_auto_chain_method_falls_back_to_sequential_without_enough_devices(small_article_data):
    data = small_article_data
    posterior = fit_nuts(
        data.inputs,
        data.emissions,
        3,
        num_chains=2,
        num_warmup=20,
        num_samples=10,
        progress_bar=False,
        sequence_devices=2,
        precondition=False,
    )
    assert posterior.settings["chain_method"] == "sequential"
    assert posterior.settings["precondition"] is False
    assert isinstance(posterior.posterior_mean(), GLMHMMParams)


FOUR_DEVICE_SCRIPT = """
import numpyro
numpyro.set_host_device_count(4)
import jax, json
import numpy as np
from bayes_glmhmm import article_data, fit_nuts
assert jax.local_device_count() == 4
data = article_data(jax.random.PRNGKey(3), num_sequences=5, num_timesteps=60)
posterior = fit_nuts(data.inputs, data.emissions, 3, num_chains=2, num_warmup=150, num_samples=150, seed=2,
                     progress_bar=False, sequence_devices=2)
diagnostics = posterior.diagnostics()
print(json.dumps(dict(chain_method=posterior.settings["chain_method"], rhat=diagnostics["max_rhat"],
                      weights=np.asarray(posterior.posterior_mean().weights).ravel().tolist())))
"""


@pytest.mark.slow
def test_chains_and_sequences_across_four_host_devices(tmp_path):
    """A 2 x 2 mesh in a fresh process with 4 CPU host devices: 2 chains side by side, each on 2
    devices that split the 5 sequences (one padded). The fit converges (R-hat < 1.1 on 2 x 150
    draws) and recovers the generator's slopes to within 0.15 (their posterior sd here is ~0.03)."""
    import json
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", FOUR_DEVICE_SCRIPT], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["chain_method"] == "parallel"
    assert report["rhat"] < 1.1
    np.testing.assert_allclose(sorted(report["weights"]), sorted(article_params().weights.ravel()), atol=0.15)


def test_curvature_inverse_mass_matrix_inverts_a_gaussian_precision():
    """Oracle: for the potential 0.5 z' P z the Hessian is P, so the start is P^-1 (dense) or its
    diagonal, to finite-difference rounding (float32, step 1e-2: exact for a quadratic up to ~1e-4)."""
    from bayes_glmhmm.sampler import curvature_inverse_mass_matrix

    root = jax.random.normal(jax.random.PRNGKey(0), (4, 4))
    precision = root @ root.T + 4.0 * jnp.eye(4)
    z = {"a": jnp.array([0.3, -1.0]), "b": jnp.array([2.0, 0.5])}

    def potential(point):
        flat = jnp.concatenate([point["a"], point["b"]])
        return 0.5 * flat @ precision @ flat

    expected = jnp.linalg.inv(precision)
    dense = curvature_inverse_mass_matrix(potential, z, dense=True)
    np.testing.assert_allclose(dense, expected, rtol=1e-3, atol=1e-5)
    diagonal = curvature_inverse_mass_matrix(potential, z, dense=False)
    np.testing.assert_allclose(diagonal, jnp.diagonal(expected), rtol=1e-3)


def test_curvature_inverse_mass_matrix_falls_back_away_from_a_mode():
    """Not positive definite (a saddle): per-coordinate 1 / max(H_ii, 1 / max_variance)."""
    from bayes_glmhmm.sampler import curvature_inverse_mass_matrix

    def potential(point):
        x, y = point["z"]
        return 2.0 * x**2 - 0.5 * y**2

    diagonal = curvature_inverse_mass_matrix(potential, {"z": jnp.array([0.1, 0.2])}, dense=False)
    np.testing.assert_allclose(diagonal, [0.25, 1.0], rtol=1e-3)


def test_runner_reproduces_numpyro_mcmc_with_the_same_kernel():
    """Oracle: NumPyro's own MCMC driver on the same potential, key and start gives the same chain
    (identity starting mass matrix, i.e. precondition=False): first draws equal to float32
    rounding. Covers num_warmup=0 (no adaptation) and a short warmup crossing a chunk boundary."""
    from numpyro.infer import MCMC, NUTS

    model_kwargs = _data(jax.random.PRNGKey(7))
    z = _unconstrained(model_kwargs, article_params())
    potential = functools.partial(potential_energy, functools.partial(glmhmm_model, num_states=3), (), model_kwargs)
    key = jax.random.PRNGKey(11)
    for num_warmup in (0, 5):
        ours = run_nuts(
            key,
            jax.tree.map(lambda v: v[None], z),
            glmhmm_model,
            model_kwargs,
            {"num_states": 3},
            num_warmup=num_warmup,
            num_samples=3,
            precondition=False,
        )
        mcmc = MCMC(NUTS(potential_fn=potential), num_warmup=num_warmup, num_samples=3, progress_bar=False)
        mcmc.run(key, init_params=z)  # HMC.init hands the kernel split(key)[0], our chain 0's key
        theirs = mcmc.get_samples()  # unconstrained draws (a potential_fn has no transforms)
        ours_unconstrained = unconstrain_sites({name: ours.samples[name][0] for name in theirs})
        for name, value in theirs.items():
            np.testing.assert_allclose(
                ours_unconstrained[name], value, rtol=1e-4, atol=1e-4, err_msg=f"{name}, warmup {num_warmup}"
            )


def test_one_chunk_and_many_chunks_give_identical_draws(monkeypatch):
    """Splitting the iterations into chunks (for the progress bar) changes nothing, bitwise,
    including the adaptation state carried across chunk boundaries and the warmup step count."""
    from bayes_glmhmm import sampler

    model_kwargs = _data(jax.random.PRNGKey(8))
    z = jax.tree.map(lambda v: v[None], _unconstrained(model_kwargs, article_params()))
    chunked = run_nuts(
        jax.random.PRNGKey(2), z, glmhmm_model, model_kwargs, {"num_states": 3}, num_warmup=30, num_samples=7
    )
    monkeypatch.setattr(sampler, "NUM_CHUNKS", 1)
    whole = run_nuts(
        jax.random.PRNGKey(2), z, glmhmm_model, model_kwargs, {"num_states": 3}, num_warmup=30, num_samples=7
    )
    for name in chunked.samples:
        np.testing.assert_array_equal(chunked.samples[name], whole.samples[name], err_msg=name)
    np.testing.assert_array_equal(chunked.warmup_num_steps, whole.warmup_num_steps)
    np.testing.assert_array_equal(chunked.step_size, whole.step_size)


@pytest.mark.parametrize("temperatures", [None, (1.0, 0.5)], ids=["plain", "tempered"])
def test_more_draws_continue_the_chains_as_one_longer_run(temperatures):
    """Sampling on (``more_draws``) continues every chain where it stopped: 7 draws and then 6 more
    are bitwise the 13 draws of one run (also the tempered ladders' exchanges, whose even-odd
    parity follows the step count), the callback sees the draws so far, and the extension compiles
    no program (the chunks keep their compiled length)."""
    model_kwargs = _data(jax.random.PRNGKey(8))
    z = jax.tree.map(lambda v: jnp.stack([v, v + 0.05]), _unconstrained(model_kwargs, article_params()))
    settings = dict(num_warmup=30, temperatures=temperatures, chain_method="vectorized")
    seen, programs = [], []

    def more_draws(draws):
        seen.append(draws.samples["scales"].shape[1])
        programs.append(compiled_programs())
        return 6 if len(seen) == 1 else 0

    run = functools.partial(run_nuts, jax.random.PRNGKey(2), z, glmhmm_model, model_kwargs, {"num_states": 3})
    extended = run(num_samples=7, more_draws=more_draws, **settings)
    whole = run(num_samples=13, **settings)
    assert seen == [7, 13] and programs[0] == programs[1]
    for name in whole.samples:
        np.testing.assert_array_equal(extended.samples[name], whole.samples[name], err_msg=name)
    for field in ("potential_energy", "num_steps", "step_size", "warmup_num_steps"):
        np.testing.assert_array_equal(getattr(extended, field), getattr(whole, field), err_msg=field)
    if temperatures is not None:
        np.testing.assert_array_equal(extended.swap_acceptance, whole.swap_acceptance)
        np.testing.assert_array_equal(extended.ladder_num_steps, whole.ladder_num_steps)


def test_curvature_start_floors_nearly_flat_directions():
    """A positive definite but nearly flat direction (curvature 1e-6) starts at variance 1 (the
    identity's), not 1e6."""
    from bayes_glmhmm.sampler import curvature_inverse_mass_matrix

    def potential(point):
        x, y = point["z"]
        return 0.5 * (4.0 * x**2 + 1e-6 * y**2)

    diagonal = curvature_inverse_mass_matrix(potential, {"z": jnp.array([0.1, 0.2])}, dense=False)
    np.testing.assert_allclose(diagonal, [0.25, 1.0], rtol=1e-3)
