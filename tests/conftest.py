"""Shared fixtures. JAX compile time dominates, so fitted objects are built once per session."""

import os

import numpyro

# The suite never touches the user's compilation cache: the command line's cache is off, and the
# tests of the cache turn it on in a temporary folder (set before anything imports the CLI).
os.environ["BAYES_GLMHMM_COMPILE_CACHE"] = "off"

# Two host devices so that two chains run in parallel on the 2-core CI machine. Must run before
# JAX initializes its backend, which importing this conftest first guarantees.
numpyro.set_host_device_count(2)

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bayes_glmhmm import article_data, fit_nuts  # noqa: E402


@pytest.fixture(scope="session")
def small_article_data():
    """The article's generator, shrunk to 4 sequences x 60 steps."""
    return article_data(jax.random.PRNGKey(3), num_sequences=4, num_timesteps=60)


@pytest.fixture(scope="session")
def small_posterior(small_article_data):
    """A short two-chain NUTS fit of the small article data (shared by several test modules)."""
    data = small_article_data
    return fit_nuts(
        data.inputs, data.emissions, 3, num_chains=2, num_warmup=200, num_samples=200, seed=1, progress_bar=False
    )


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module", autouse=True)
def _free_compiled_programs():
    """Drop JAX's compiled programs after each test module.

    The suite compiles several hundred programs (four emission families, the sampler's settings);
    kept in one process, XLA's CPU code memory runs out and the process aborts (seen at ~80% of the
    suite). Session fixtures keep their results; a later call recompiles what it needs.
    """
    yield
    jax.clear_caches()
