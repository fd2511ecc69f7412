"""Host data reach JAX without compiled programs: ``device_array``, a fit's data preparation and keys."""

import threading
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bayes_glmhmm.fit as fit_module
from bayes_glmhmm import _host_prng as host_prng
from bayes_glmhmm import fit_nuts
from bayes_glmhmm._compile import device_array
from bayes_glmhmm.emissions import get_family
from bayes_glmhmm.fit import _prepared_data

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class _CompileCounter:
    def __init__(self):
        self.count = 0

    def __call__(self, event, duration, **kwargs):
        self.count += event == _COMPILE_EVENT


@pytest.fixture
def compiles():
    """The number of XLA compilations during the test (so far), from JAX's monitoring events."""
    counter = _CompileCounter()
    jax.monitoring.register_event_duration_secs_listener(counter)
    yield counter
    jax.monitoring.unregister_event_duration_listener(counter)


def test_the_counter_sees_an_eager_operation(compiles):
    # Shapes no other test uses, so JAX's caches cannot hide the program.
    jnp.asarray(np.ones((3, 13, 7))) * 2.0
    assert compiles.count >= 1


def test_device_array_compiles_nothing_and_keeps_jax_arrays(compiles):
    values = np.arange(3 * 17, dtype=np.float64).reshape(3, 17)
    array = device_array(values, jnp.float32)
    assert isinstance(array, jax.Array) and array.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(array), values.astype(np.float32))
    assert device_array(array) is array
    assert device_array(array, jnp.float32) is array
    assert compiles.count == 0
    # Inside grad, a tracer passes through (a cast stays in the trace).
    gradient = jax.grad(lambda x: device_array(x, jnp.float32).sum())(jnp.ones(3))
    np.testing.assert_array_equal(np.asarray(gradient), np.ones(3))


def test_preparing_a_fits_data_and_keys_compiles_nothing(compiles):
    # Odd shapes, lengths and a mask: the masking, the input mean and the key splits all run on the host.
    generator = np.random.default_rng(0)
    inputs = generator.normal(size=(3, 19, 5))
    emissions = generator.normal(size=(3, 19))
    mask = generator.random((3, 19)) > 0.1
    data = _prepared_data(inputs, emissions, mask, [19, 12, 7], 2, get_family("gaussian"), standardize=False)
    key_jitter, key_nuts = host_prng.split(host_prng.prng_key(5))
    host_prng.split(key_nuts, 3)
    assert compiles.count == 0
    # The prepared values are those of the JAX computation they replace.
    expected_mask = mask & (np.arange(19)[None, :] < np.array([19, 12, 7])[:, None])
    np.testing.assert_array_equal(np.asarray(data.mask), expected_mask)
    expected_mean = (inputs * expected_mask[..., None]).sum(axis=(0, 1)) / expected_mask.sum()
    np.testing.assert_allclose(np.asarray(data.input_mean), expected_mean, rtol=1e-6)


class _CompileLog:
    """(thread name, program name) of every XLA compilation, from JAX's monitoring events."""

    def __init__(self):
        self.entries = []

    def __call__(self, event, duration, **kwargs):
        if event == _COMPILE_EVENT:
            self.entries.append((threading.current_thread().name, str(kwargs.get("fun_name", ""))))

    def threads_of(self, program: str) -> list[str]:
        return [thread for thread, name in self.entries if program in name]


def test_a_fits_nuts_programs_compile_during_em_once():
    # The NUTS init and chunk programs depend on shapes only: they compile in a helper thread while
    # EM runs, into the caches run_nuts calls, so run_nuts compiles neither again. Odd shapes and
    # iteration counts no other test uses, so that JAX's caches cannot hide the programs.
    generator = np.random.default_rng(3)
    inputs = generator.normal(size=(2, 29, 1))
    emissions = generator.normal(size=(2, 29))
    log = _CompileLog()
    jax.monitoring.register_event_duration_secs_listener(log)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # 2 x 13 draws do not converge
            posterior = fit_nuts(
                inputs, emissions, 2, num_chains=2, num_warmup=13, num_samples=13, em_restarts=2, seed=1
            )
    finally:
        jax.monitoring.unregister_event_duration_listener(log)
    assert log.threads_of("_local_init") == ["bayes-glmhmm-nuts-compile-init"]
    assert log.threads_of("_local_advance") == ["bayes-glmhmm-nuts-compile"]
    assert np.all(np.isfinite(posterior.samples["weights"]))
    assert posterior.samples["weights"].shape[:2] == (2, 13)


def test_compiling_ahead_gives_the_same_draws_as_compiling_in_the_run():
    # The ahead-of-time programs are the run's own: the same seed gives the same draws either way.
    generator = np.random.default_rng(4)
    inputs = generator.normal(size=(2, 31, 1))
    emissions = generator.normal(size=(2, 31))
    settings = dict(num_chains=2, num_warmup=11, num_samples=11, em_restarts=2, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ahead = fit_nuts(inputs, emissions, 2, **settings)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(fit_module, "compile_in_background", lambda *args, **kwargs: None)
            in_the_run = fit_nuts(inputs, emissions, 2, **settings)
    for name in ("weights", "biases", "transition_matrix"):
        np.testing.assert_array_equal(ahead.samples[name], in_the_run.samples[name])
