"""Small posteriors with input-driven transitions for the presentation tests (convert, plots, report).

:func:`random_transition_posterior` builds a :class:`Posterior` from random draws around a known
Bernoulli GLM-HMM whose transitions depend on two transition inputs, without any sampler (for tests
that only need draws to summarize, convert or draw). Callers must not mutate what they get.
"""

import functools

import jax
import numpy as np

from bayes_glmhmm import BernoulliGLMHMMParams, Posterior, Priors, simulate
from bayes_glmhmm.em import EMResult
from bayes_glmhmm.emissions import get_family
from bayes_glmhmm.transitions import input_driven

NUM_STATES, INPUT_DIM, NUM_TRANSITION_INPUTS = 2, 1, 2
NUM_SEQUENCES, NUM_TIMESTEPS = 3, 30
LENGTHS = np.array([30, 22, 26])

#: Two sticky states; the first transition input u0 pushes 0 -> 1 up and 1 -> 0 down, the second barely acts.
TRUTH = BernoulliGLMHMMParams(
    initial_probs=np.array([0.6, 0.4]),
    transition_matrix=np.array([[0.9, 0.1], [0.2, 0.8]]),
    weights=np.array([[3.0], [0.5]]),
    biases=np.array([0.0, 1.0]),
    transition_weights=np.array([[[0.0, 0.0], [1.5, 0.2]], [[-1.0, 0.1], [0.0, 0.0]]]),
)


@functools.cache
def transition_data(seed: int = 0):
    """``(inputs (N, T, 1), transition_inputs (N, T, 2), emissions (N, T))``; padding past ``LENGTHS`` is 0."""
    inputs = np.asarray(jax.random.normal(jax.random.PRNGKey(seed), (NUM_SEQUENCES, NUM_TIMESTEPS, INPUT_DIM)))
    rng = np.random.default_rng(seed)
    transition_inputs = np.stack(
        [rng.integers(0, 2, (NUM_SEQUENCES, NUM_TIMESTEPS)), rng.normal(size=(NUM_SEQUENCES, NUM_TIMESTEPS))], -1
    ).astype(float)
    _, emissions = simulate(jax.random.PRNGKey(seed + 1), TRUTH, inputs, transition_inputs)
    padding = np.arange(NUM_TIMESTEPS)[None, :] >= LENGTHS[:, None]
    transition_inputs[padding] = 0.0
    return inputs, transition_inputs, np.where(padding, 0.0, np.asarray(emissions))


def random_transition_posterior(num_chains: int = 2, num_draws: int = 20, seed: int = 0, form: str = "full"):
    """A :class:`Posterior` with input-driven transitions whose draws are :data:`TRUTH` plus noise.

    Probabilities are Dirichlet draws, the other parameters the truth plus Normal(0, 0.3) noise
    (the transition weights' diagonal kept at 0). No sampler runs; the EM estimate is the truth.
    """
    rng = np.random.default_rng(seed)
    inputs, transition_inputs, emissions = transition_data()
    lead = (num_chains, num_draws)
    samples = {}
    for name in get_family("bernoulli").param_names + ("transition_weights",):
        value = np.asarray(getattr(TRUTH, name), dtype=np.float32)
        if name in ("initial_probs", "transition_matrix"):
            draws = rng.dirichlet(20 * (value + 0.05), size=lead) if value.ndim == 1 else None
            if draws is None:
                draws = np.stack([rng.dirichlet(20 * row, size=lead) for row in value], axis=-2)
        else:
            draws = value + 0.3 * rng.standard_normal(lead + value.shape)
        samples[name] = draws.astype(np.float32)
    samples["transition_weights"][..., np.arange(NUM_STATES), np.arange(NUM_STATES), :] = 0.0
    mask = np.arange(NUM_TIMESTEPS)[None, :] < LENGTHS[:, None]
    return Posterior(
        samples=samples,
        permutations=np.broadcast_to(np.arange(NUM_STATES), lead + (NUM_STATES,)).copy(),
        sample_stats={"lp": rng.normal(size=lead), "diverging": np.zeros(lead, bool)},
        inputs=inputs,
        emissions=emissions,
        mask=mask,
        num_states=NUM_STATES,
        priors=Priors(),
        em=EMResult(TRUTH, np.array([]), True, np.array([]), float("nan")),
        lengths=LENGTHS,
        family=get_family("bernoulli"),
        transitions=input_driven(form),
        transition_inputs=transition_inputs,
    )
