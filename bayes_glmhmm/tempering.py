"""Parallel tempering: replica exchange between chains at a ladder of likelihood temperatures.

A multimodal posterior (say a three-state fit whose spare state can split either of two
well-separated clusters) has modes that NUTS cannot cross: each chain stays where it started, and
the share of chains in a mode says nothing of its mass. Tempering flattens the barriers: the chain
at inverse temperature beta samples

    p_beta(theta | y)  proportional to  p(theta) p(y | theta)^beta,

so beta = 1 is the posterior and beta -> 0 the prior, whose modes are connected. A ladder
1 = beta_0 > beta_1 > ... > beta_{L-1} > 0 of such chains runs side by side (NUTS within each), and
after every NUTS step adjacent rungs (l, l+1) propose to exchange their states, accepted with
probability

    min(1, exp((beta_l - beta_{l+1}) (log p(y | theta_{l+1}) - log p(y | theta_l)))),

which leaves the product of the rungs' distributions invariant, so the beta = 1 chain samples the
posterior, with its mode masses, while the hot rungs carry it between modes. Proposals alternate
between the even pairs (0-1, 2-3, ...) and the odd pairs (1-2, 3-4, ...), the non-reversible
"deterministic even-odd" scheme of Syed, Bouchard-Cote, Deligiannidis and Doucet (2022, JRSS B),
which moves states along the ladder in O(L) instead of O(L^2) rounds.

This module holds the pure pieces (the ladder, one round of swaps); the sampler
(:func:`~bayes_glmhmm.sampler.run_nuts` with ``temperatures=``) runs them between NUTS steps.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

__all__ = [
    "DEFAULT_MIN_TEMPERATURE",
    "SwapRound",
    "geometric_ladder",
    "swap_round",
    "tempering_ladder",
    "validated_ladder",
]

#: The hottest rung of a ladder given by its length only (``fit_nuts(tempering=L)``).
DEFAULT_MIN_TEMPERATURE = 0.05


class SwapRound(NamedTuple):
    """One round of exchange proposals within one ladder.

    Attributes:
        permutation: (L,) rung l takes the state of rung ``permutation[l]`` (the identity where
            nothing was exchanged).
        proposed: (L - 1,) whether the pair (l, l + 1) was proposed this round.
        accepted: (L - 1,) whether it was exchanged.
    """

    permutation: Int[Array, " num_temperatures"]
    proposed: Bool[Array, " num_pairs"]
    accepted: Bool[Array, " num_pairs"]


def geometric_ladder(num_temperatures: int, min_temperature: float) -> tuple[float, ...]:
    """Inverse temperatures 1 = beta_0 > ... > beta_{L-1} = ``min_temperature``, evenly spaced in log beta.

    Args:
        num_temperatures: L >= 1.
        min_temperature: beta_{L-1}, in (0, 1).
    """
    if num_temperatures < 1:
        raise ValueError(f"num_temperatures must be >= 1, got {num_temperatures}")
    if not 0.0 < min_temperature < 1.0:
        raise ValueError(f"min_temperature must lie in (0, 1), got {min_temperature}")
    if num_temperatures == 1:
        return (1.0,)
    return tuple(float(beta) for beta in np.geomspace(1.0, min_temperature, num_temperatures))


def validated_ladder(temperatures) -> tuple[float, ...]:
    """``temperatures`` as a tuple of floats, checked: starts at 1, strictly decreasing, all > 0.

    Raises:
        ValueError: naming ``temperatures`` and what is wrong.
    """
    ladder = tuple(float(beta) for beta in np.atleast_1d(np.asarray(temperatures, dtype=float)))
    if not ladder or ladder[0] != 1.0:
        raise ValueError(f"temperatures must start at 1.0 (the posterior), got {ladder}")
    if not all(np.isfinite(ladder)) or min(ladder) <= 0.0:
        raise ValueError(f"temperatures must be finite inverse temperatures in (0, 1], got {ladder}")
    if any(later >= earlier for earlier, later in zip(ladder, ladder[1:], strict=False)):
        raise ValueError(f"temperatures must be strictly decreasing, got {ladder}")
    return ladder


def tempering_ladder(tempering) -> tuple[float, ...] | None:
    """The ladder of ``fit_nuts(tempering=...)``: None or 1 (no tempering), L, or a ladder.

    Raises:
        ValueError: naming ``tempering`` and what is wrong.
    """
    if tempering is None or (isinstance(tempering, (int, np.integer)) and not isinstance(tempering, bool)):
        if tempering is None or tempering == 1:
            return None
        if tempering < 1:
            raise ValueError(f"tempering must be a number of temperatures >= 1 or a ladder, got {tempering}")
        return geometric_ladder(int(tempering), DEFAULT_MIN_TEMPERATURE)
    if isinstance(tempering, (bool, str, float)):
        raise ValueError(f"tempering must be None, a number of temperatures or a ladder, got {tempering!r}")
    try:
        ladder = validated_ladder(tempering)
    except (TypeError, ValueError) as error:
        raise ValueError(f"tempering: {error}") from None
    return None if len(ladder) == 1 else ladder


def swap_round(
    key: Array,
    log_likelihoods: Float[Array, " num_temperatures"],
    temperatures: Float[Array, " num_temperatures"],
    parity: Int[Array, ""],
) -> SwapRound:
    """One round of exchange proposals between adjacent rungs of one ladder.

    The pairs (l, l + 1) with l = ``parity`` mod 2 are proposed (disjoint pairs, so they are
    decided independently), each accepted with probability
    min(1, exp((beta_l - beta_{l+1}) (loglik_{l+1} - loglik_l))).

    Args:
        key: PRNG key of the acceptance draws.
        log_likelihoods: (L,) log p(y | theta_l) at each rung's current state.
        temperatures: (L,) the ladder's inverse temperatures, decreasing.
        parity: 0 (pairs 0-1, 2-3, ...) or 1 (pairs 1-2, 3-4, ...).
    """
    num_temperatures = log_likelihoods.shape[0]
    lower = jnp.arange(num_temperatures - 1)
    proposed = (lower % 2) == (parity % 2)
    log_ratio = (temperatures[:-1] - temperatures[1:]) * (log_likelihoods[1:] - log_likelihoods[:-1])
    # Not-a-number (a state where the likelihood cannot be evaluated) is never exchanged.
    log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
    uniforms = jax.random.uniform(key, (num_temperatures - 1,), dtype=log_likelihoods.dtype)
    accepted = proposed & (jnp.log(uniforms) < log_ratio)
    rungs = jnp.arange(num_temperatures)
    # Rung l takes l + 1's state where pair (l, l + 1) swaps, and l - 1's where (l - 1, l) does.
    takes_upper = jnp.concatenate([accepted, jnp.zeros(1, bool)])
    takes_lower = jnp.concatenate([jnp.zeros(1, bool), accepted])
    permutation = jnp.where(takes_upper, rungs + 1, jnp.where(takes_lower, rungs - 1, rungs))
    return SwapRound(permutation, proposed, accepted)
