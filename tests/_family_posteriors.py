"""Small posteriors of every emission family for the presentation tests (plots, report, compare).

NUTS compile time dominates, so :func:`short_fit` caches its fits for the whole session: test
modules that ask for the same family share one fit (and, through the sampler's compile cache, one
compiled sampler). :func:`random_posterior` builds a :class:`Posterior` from random draws without
any sampler, for tests that only need draws to summarize. Callers must not mutate what they get.
"""

import functools

import jax
import numpy as np

from bayes_glmhmm import Posterior, Priors, fit_nuts, simulate
from bayes_glmhmm.em import EMResult
from bayes_glmhmm.emissions import get_family
from bayes_glmhmm.params import BernoulliGLMHMMParams, CategoricalGLMHMMParams, GLMHMMParams, PoissonGLMHMMParams

NUM_STATES, INPUT_DIM, NUM_CLASSES = 2, 2, 3
NUM_SEQUENCES, NUM_TIMESTEPS = 3, 40
_INITIAL = np.array([0.5, 0.5])
_TRANSITION = np.array([[0.9, 0.1], [0.1, 0.9]])

#: Generators with two well-separated states and two inputs (the first strongly, the second weakly used).
TRUTHS = {
    "gaussian": GLMHMMParams(
        _INITIAL, _TRANSITION, np.array([[2.0, 0.5], [-1.0, 0.0]]), np.array([1.0, -1.0]), np.array([0.5, 0.8])
    ),
    "bernoulli": BernoulliGLMHMMParams(
        _INITIAL, _TRANSITION, np.array([[3.0, 0.5], [0.5, -1.0]]), np.array([0.0, 1.0])
    ),
    "poisson": PoissonGLMHMMParams(_INITIAL, _TRANSITION, np.array([[0.6, 0.2], [-0.4, 0.0]]), np.array([1.0, 2.0])),
    "categorical": CategoricalGLMHMMParams(
        _INITIAL,
        _TRANSITION,
        np.array([[[2.0, 0.5], [-2.0, 0.0]], [[0.0, 1.0], [1.5, 0.0]]]),
        np.array([[0.0, 0.5], [1.0, -1.0]]),
    ),
}


def family(name: str):
    return get_family(name, NUM_CLASSES if TRUTHS[name].weights.ndim == 3 else None)


@functools.cache
def family_data(name: str, seed: int = 0):
    """``(truth, inputs (N, T, D), states (N, T), emissions (N, T))`` simulated from ``TRUTHS[name]``."""
    truth = TRUTHS[name]
    inputs = jax.random.normal(jax.random.PRNGKey(seed), (NUM_SEQUENCES, NUM_TIMESTEPS, INPUT_DIM))
    states, emissions = simulate(jax.random.PRNGKey(seed + 1), truth, inputs)
    return truth, np.asarray(inputs), np.asarray(states), np.asarray(emissions)


@functools.cache
def short_fit(name: str) -> Posterior:
    """2 chains x (60 warmup + 30 draws) of NUTS on :func:`family_data` (enough draws to summarize, not to trust).

    60 warmup iterations, not 30: with 30, the categorical's chain 0 once adapted a step size (1.15)
    at which every proposal was rejected, so it never moved (its log density's sd 1.5e-5).
    """
    _, inputs, _, emissions = family_data(name)
    return fit_nuts(
        inputs,
        emissions,
        NUM_STATES,
        family=name,
        num_classes=family(name).num_classes,
        num_chains=2,
        num_warmup=60,
        num_samples=30,
        seed=0,
        progress_bar=False,
    )


def random_posterior(name: str, num_chains: int = 2, num_draws: int = 25, seed: int = 0) -> Posterior:
    """A :class:`Posterior` of :func:`family_data` whose draws are the truth plus Normal(0, 0.3) noise.

    Probabilities are drawn from Dirichlet distributions and noise scales kept positive. No sampler
    runs; the EM estimate is the truth.
    """
    rng = np.random.default_rng(seed)
    truth, inputs, _, emissions = family_data(name)
    lead = (num_chains, num_draws)
    samples = {}
    for parameter in family(name).param_names:
        value = np.asarray(getattr(truth, parameter), dtype=np.float32)
        if parameter in ("initial_probs", "transition_matrix"):
            draws = rng.dirichlet(20 * np.ones(NUM_STATES), size=lead + value.shape[:-1])
        else:
            draws = value + 0.3 * rng.standard_normal(lead + value.shape)
        samples[parameter] = np.abs(draws).astype(np.float32) if parameter == "scales" else draws.astype(np.float32)
    em = EMResult(truth, np.array([]), True, np.array([]), float("nan"))
    return Posterior(
        samples=samples,
        permutations=np.broadcast_to(np.arange(NUM_STATES), lead + (NUM_STATES,)).copy(),
        sample_stats={"lp": np.zeros(lead), "diverging": np.zeros(lead, bool)},
        inputs=inputs,
        emissions=emissions,
        mask=np.ones(emissions.shape, bool),
        num_states=NUM_STATES,
        priors=Priors(),
        em=em,
        family=family(name),
    )
