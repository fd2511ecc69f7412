"""Subjects: a hierarchical GLM-HMM across animals, the GLM weights partially pooled.

Labs fit one GLM-HMM to many animals. With subjects, subject s has its own GLM weights and
biases, drawn around population values:

    weights[s, k] = mu_w[k] + tau_w[k] * eps_w[s, k],   eps_w[s, k] ~ Normal(0, 1)
    biases[s, k]  = mu_b[k] + tau_b[k] * eps_b[s, k],   eps_b[s, k] ~ Normal(0, 1)
    mu_w ~ Normal(0, weight_scale),  mu_b ~ Normal(0, bias_scale),
    tau_w, tau_b ~ HalfNormal(subject_spread_scale)

with one spread per state and coefficient (``weight_spread`` has the shape of the population
``weights``, ``bias_spread`` that of ``biases``). The initial probabilities and the family's
other parameters (the Gaussian's noise scales) are shared by all subjects; so are the
transitions, unless each subject gets its own transition matrix, partially pooled:

    subject_transition_matrix[s, i] ~ Dirichlet(subject_transition_concentration * A[i])

around the population's rows A[i] (mean A[i]; the larger the concentration, the closer). State k
is state k of every subject by construction, so relabeling moves each subject's parameters with
their state.

Two parametrizations of the same model: ``"noncentred"`` (the default) samples the offsets
eps and makes the subject weights deterministic, which suits subjects with little data each;
``"centred"`` samples weights[s, k] ~ Normal(mu_w[k], tau_w[k]) directly, which suits subjects
whose own data pin their weights down (thousands of trials each).

The pieces here are pure: validation of subject ids, the sites of the hierarchy, the gathering
of each sequence's subject parameters for the likelihood, and a new subject's draw for the
population predictive. :func:`bayes_glmhmm.model.glmhmm_model` declares the sites.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jaxtyping import Array, Float, Int

__all__ = [
    "PARAMETRIZATIONS",
    "SUBJECT_PARAM_NAMES",
    "subject_param_names",
    "sample_subject_transitions",
    "sequence_transition_matrices",
    "Subjects",
    "validate_subjects",
    "subject_index_of",
    "subject_prior_distributions",
    "sample_subject_sites",
    "sequence_log_likelihoods",
    "with_subject_emissions",
    "draw_subjects",
    "subject_param_dims",
]

PARAMETRIZATIONS = ("noncentred", "centred")

#: What a hierarchical posterior holds beyond the population parameters (whose ``weights`` and
#: ``biases`` are the population means mu_w, mu_b).
SUBJECT_PARAM_NAMES = ("weight_spread", "bias_spread", "subject_weights", "subject_biases")
SUBJECT_TRANSITIONS = "subject_transition_matrix"


def subject_param_names(subject_transitions: bool) -> tuple[str, ...]:
    """The hierarchy's parameter names, with ``subject_transition_matrix`` when subjects have their own."""
    return SUBJECT_PARAM_NAMES + ((SUBJECT_TRANSITIONS,) if subject_transitions else ())


class Subjects(NamedTuple):
    """Which subject each sequence belongs to.

    Attributes:
        index: (N,) integers in 0..S-1, the subject of each sequence.
        names: the S subject ids as given (as strings), ``names[index[n]]`` that of sequence n.
    """

    index: np.ndarray
    names: tuple[str, ...]

    @property
    def num_subjects(self) -> int:
        return len(self.names)


def validate_subjects(subjects, num_sequences: int) -> Subjects:
    """One subject id per sequence, as a :class:`Subjects` (ids numbered by first appearance).

    Args:
        subjects: (N,) ids of any kind (strings, integers), one per sequence.
        num_sequences: N.

    Raises:
        ValueError: naming ``subjects`` when they are not one id per sequence or an id is missing.
    """
    ids = np.asarray(subjects, dtype=object)
    if ids.ndim != 1 or ids.shape[0] != num_sequences:
        raise ValueError(f"subjects must give one id per sequence ({num_sequences}), got shape {ids.shape}")
    names = [_id_text(value) for value in ids]
    if any(name in ("", "nan", "None") for name in names):
        raise ValueError("subjects must not contain missing ids (None, NaN or empty)")
    order = list(dict.fromkeys(names))
    position = {name: s for s, name in enumerate(order)}
    return Subjects(np.array([position[name] for name in names], dtype=np.int32), tuple(order))


def _id_text(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def subject_index_of(fitted: Subjects, subjects, num_sequences: int) -> np.ndarray:
    """The fitted subject of each new sequence, S (one past the last) for a subject never fitted.

    Args:
        fitted: the subjects of the fit.
        subjects: (N,) ids of the new sequences' subjects.
        num_sequences: N.
    """
    new = validate_subjects(subjects, num_sequences)
    position = {name: s for s, name in enumerate(fitted.names)}
    lookup = np.array([position.get(name, fitted.num_subjects) for name in new.names], dtype=np.int32)
    return lookup[new.index]


def subject_prior_distributions(weight_shape: tuple, num_subjects: int, priors, parametrization: str) -> dict:
    """The hierarchy's priors: HalfNormal spreads, and Normal(0, 1) offsets (non-centred).

    Args:
        weight_shape: the population weights' shape (K, [C - 1,] D).
        num_subjects: S.
        priors: :class:`~bayes_glmhmm.params.Priors` (``subject_spread_scale``).
        parametrization: ``"noncentred"`` or ``"centred"`` (no offsets: the subject weights are
            sampled around the population values inside :func:`sample_subject_sites`).
    """
    bias_shape = weight_shape[:-1]
    spread = dist.HalfNormal(priors.subject_spread_scale)
    distributions = {
        "weight_spread": spread.expand(list(weight_shape)).to_event(len(weight_shape)),
        "bias_spread": spread.expand(list(bias_shape)).to_event(len(bias_shape)),
    }
    if parametrization == "noncentred":
        unit = dist.Normal(0.0, 1.0)
        distributions["subject_weight_offsets"] = unit.expand([num_subjects, *weight_shape]).to_event(
            1 + len(weight_shape)
        )
        distributions["subject_bias_offsets"] = unit.expand([num_subjects, *bias_shape]).to_event(1 + len(bias_shape))
    return distributions


def sample_subject_sites(
    distributions: dict, weights: Array, biases: Array, num_subjects: int, parametrization: str
) -> tuple[Array, Array]:
    """Declare the hierarchy's sites (inside a NumPyro model); return the subjects' weights and biases.

    Args:
        distributions: :func:`subject_prior_distributions`.
        weights: population weights mu_w, (K, [C - 1,] D).
        biases: population biases mu_b, (K, [C - 1]).
        num_subjects: S.
        parametrization: ``"noncentred"`` or ``"centred"``.

    Returns:
        ``(subject_weights (S, K, [C - 1,] D), subject_biases (S, K, [C - 1]))``.
    """
    weight_spread = numpyro.sample("weight_spread", distributions["weight_spread"])
    bias_spread = numpyro.sample("bias_spread", distributions["bias_spread"])
    if parametrization == "centred":
        weight_event, bias_event = 1 + weights.ndim, 1 + biases.ndim
        subject_weights = numpyro.sample(
            "subject_weights",
            dist.Normal(weights, weight_spread).expand([num_subjects, *weights.shape]).to_event(weight_event),
        )
        subject_biases = numpyro.sample(
            "subject_biases",
            dist.Normal(biases, bias_spread).expand([num_subjects, *biases.shape]).to_event(bias_event),
        )
        return subject_weights, subject_biases
    weight_offsets = numpyro.sample("subject_weight_offsets", distributions["subject_weight_offsets"])
    bias_offsets = numpyro.sample("subject_bias_offsets", distributions["subject_bias_offsets"])
    subject_weights = numpyro.deterministic("subject_weights", weights + weight_spread * weight_offsets)
    subject_biases = numpyro.deterministic("subject_biases", biases + bias_spread * bias_offsets)
    return subject_weights, subject_biases


def sample_subject_transitions(transition_matrix: Array, num_subjects: int, priors) -> Array:
    """Declare each subject's transition matrix (inside a NumPyro model), rows Dirichlet around the population's.

    Args:
        transition_matrix: the population's (K, K).
        num_subjects: S.
        priors: :class:`~bayes_glmhmm.params.Priors` (``subject_transition_concentration``).

    Returns:
        (S, K, K) matrices, row i of subject s ~ Dirichlet(concentration * transition_matrix[i]).
    """
    # Floored so that a population probability of exactly 0 leaves a proper Dirichlet.
    concentration = priors.subject_transition_concentration * jnp.maximum(transition_matrix, 1e-6)
    return numpyro.sample(
        SUBJECT_TRANSITIONS,
        dist.Dirichlet(concentration).expand([num_subjects, *transition_matrix.shape[:-1]]).to_event(2),
    )


def sequence_transition_matrices(transition_matrix: Array, subject_index) -> tuple[Array, int | None]:
    """The transition matrices the kernels take, and their ``vmap`` axis over sequences.

    A shared (K, K) matrix as it is (axis None); subjects' own (S, K, K) matrices gathered per
    sequence, (N, K, K) (axis 0).
    """
    if transition_matrix.ndim == 2:
        return transition_matrix, None
    return jnp.take(transition_matrix, subject_index, axis=0), 0


def with_subject_emissions(params, subject_weights, subject_biases):
    """The params with each subject's weights and biases, (S, K, ...), in place of the population's."""
    return params._replace(weights=subject_weights, biases=subject_biases)


def sequence_log_likelihoods(
    log_likelihoods,
    params,
    inputs: Float[Array, "num_sequences num_timesteps input_dim"],
    emissions: Float[Array, "num_sequences num_timesteps"],
    subject_index: Int[Array, " num_sequences"],
) -> Float[Array, "num_sequences num_timesteps num_states"]:
    """Log p(y[n, t] | x[n, t], z = k, theta_{subject(n)}): each sequence under its subject's GLM.

    Args:
        log_likelihoods: the family's ``(params, inputs, emissions) -> (..., K)``.
        params: the family's params with subject-level ``weights`` (S, K, ...) and ``biases``
            (S, K, ...) (:func:`with_subject_emissions`); the other fields are shared.
        inputs: (N, T, D).
        emissions: (N, T).
        subject_index: (N,) the subject of each sequence.
    """
    weights = jnp.take(params.weights, subject_index, axis=0)
    biases = jnp.take(params.biases, subject_index, axis=0)

    def one_sequence(sequence_weights, sequence_biases, sequence_inputs, sequence_emissions):
        sequence_params = params._replace(weights=sequence_weights, biases=sequence_biases)
        return log_likelihoods(sequence_params, sequence_inputs, sequence_emissions)

    return jax.vmap(one_sequence)(weights, biases, inputs, emissions)


def draw_subjects(key, num_subjects: int, weights, biases, weight_spread, bias_spread) -> tuple[Array, Array]:
    """Draw subjects' weights and biases around population values: mu + tau * Normal(0, 1).

    Args:
        key: PRNG key.
        num_subjects: S, how many subjects to draw.
        weights: population mean weights mu_w, (K, ..., D).
        biases: population mean biases mu_b, (K, ...).
        weight_spread: tau_w, the weights' spread across subjects (shape of ``weights``).
        bias_spread: tau_b, the biases' spread (shape of ``biases``).

    Returns:
        ``(subject_weights (S, K, ..., D), subject_biases (S, K, ...))``.
    """
    weights, biases = jnp.asarray(weights), jnp.asarray(biases)
    key_weights, key_biases = jax.random.split(key)
    weight_noise = jax.random.normal(key_weights, (num_subjects, *weights.shape), weights.dtype)
    bias_noise = jax.random.normal(key_biases, (num_subjects, *biases.shape), biases.dtype)
    return weights + weight_spread * weight_noise, biases + bias_spread * bias_noise


def subject_param_dims(param_dims: dict) -> dict:
    """ArviZ dims of the hierarchy's parameters, from the family's (``weights``, ``biases``)."""
    return {
        "weight_spread": list(param_dims["weights"]),
        "bias_spread": list(param_dims["biases"]),
        "subject_weights": ["subject", *param_dims["weights"]],
        "subject_biases": ["subject", *param_dims["biases"]],
        SUBJECT_TRANSITIONS: ["subject", "state", "next_state"],
    }
