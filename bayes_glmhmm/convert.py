"""ArviZ InferenceData from a :class:`~bayes_glmhmm.posterior.Posterior`, and back.

ArviZ's NumPyro converter ignores ``numpyro.factor``, so it cannot build ``log_likelihood`` for a
marginalized HMM; we build every group ourselves:

* ``posterior``: relabeled parameters, dims ``state``, ``next_state``, ``input`` (and ``class``, the
  non-reference classes 1..C-1, for the categorical family);
* ``sample_stats``: ``diverging``, ``energy``, ``tree_depth``, ``n_steps``, ``step_size``, ``lp``
  and ``relabel_permutation`` (the permutation applied to each draw);
* ``log_likelihood``: ``emissions`` = log p(y[n] | x[n], theta) per draw and *sequence*, so that
  ``az.loo`` is leave-one-sequence-out;
* ``posterior_predictive``: ``emissions`` replicated with fresh states and emissions per draw;
* ``prior``: draws from the model's prior (one chain of ``prior_draws``, 500 by default), the
  posterior group's variables and dims (subjects' and transition weights included; in the data's
  units for a standardized fit); ``prior_predictive``: ``emissions`` simulated from each prior
  draw at the fitted inputs, as the posterior predictive is from each posterior draw;
* ``observed_data``: ``emissions`` (NaN where masked); ``constant_data``: ``inputs``, ``mask``;
* ``posterior_states`` (extra group): FFBS ``states`` per draw and the posterior mean
  ``state_probabilities``.

Input-driven transitions (:mod:`bayes_glmhmm.transitions`) add ``transition_weights`` to the
posterior group, dims ``state``, ``next_state``, ``transition_input`` (the coordinate holds the
transition inputs' names, ``u0``, ``u1``, ... when none are known), and ``transition_inputs``
(dims ``sequence``, ``time``, ``transition_input``) to ``constant_data``; the posterior's attrs
``transitions`` (JSON ``{"model": ..., "form": ...}``) and ``transition_input_names`` (JSON list)
record the transition model. A stationary posterior's groups are as before, with ``transitions``
recording ``"stationary"``.

A hierarchical posterior across subjects (:mod:`bayes_glmhmm.hierarchy`) adds ``weight_spread``,
``bias_spread``, ``subject_weights``, ``subject_biases`` (and ``subject_transition_matrix`` when
subjects have their own transitions) to the posterior group (dim ``subject``, whose coordinate
holds the subject ids) and ``subject_index`` (dim ``sequence``,
the subject of each sequence) to ``constant_data``.
"""

import json
import os

import arviz as az
import jax
import numpy as np
import numpyro
import numpyro.distributions as dist

from bayes_glmhmm import _host_prng as host_prng
from bayes_glmhmm._io import atomic_path
from bayes_glmhmm.em import EMResult
from bayes_glmhmm.emissions import get_family
from bayes_glmhmm.hierarchy import (
    SUBJECT_TRANSITIONS,
    Subjects,
    subject_param_dims,
    subject_param_names,
    subject_prior_distributions,
)
from bayes_glmhmm.model import prior_distributions
from bayes_glmhmm.params import Priors
from bayes_glmhmm.posterior import Posterior, host_split_key
from bayes_glmhmm.standardize import Standardization
from bayes_glmhmm.transitions import PARAM_DIMS as TRANSITION_PARAM_DIMS
from bayes_glmhmm.transitions import STATIONARY, TransitionModel, destination_to_full, free_to_full

__all__ = [
    "to_inference_data",
    "prior_samples",
    "posterior_from_inference_data",
    "write_netcdf_atomic",
    "PARAM_DIMS",
    "PRIOR_DRAWS",
]

PARAM_DIMS = get_family("gaussian").param_dims()  # the Gaussian family's; any family: family.param_dims()

#: Draws of the ``prior`` and ``prior_predictive`` groups by default: a prior mean's Monte Carlo
#: standard error is then 0.045 prior standard deviations, and each group is 1/8 the size of the
#: posterior's of 4 chains x 1000 draws. They add about 0.2 s to a first call (article data).
PRIOR_DRAWS = 500


def _transition_inputs(posterior):
    """The posterior's (N, T, M) transition inputs, or None for stationary transitions."""
    value = getattr(posterior, "transition_inputs", None)
    return None if value is None else np.asarray(value)


def _transition_input_names(posterior, names=None) -> list[str] | None:
    """Names of the posterior's M transition inputs: ``names`` if given, else ``u0``, ``u1``, ...

    Args:
        posterior: a :class:`~bayes_glmhmm.posterior.Posterior`.
        names: the names, e.g. the CSV columns; checked against M.

    Returns:
        M names, or None for a posterior with stationary transitions.

    Raises:
        ValueError: naming ``transition_input_names`` when names are given for a stationary
            posterior, or their number is not M, or they repeat.
    """
    inputs = _transition_inputs(posterior)
    if inputs is None:
        if names is not None:
            raise ValueError("transition_input_names were given but the posterior has stationary transitions")
        return None
    num_inputs = inputs.shape[-1]
    if names is None:
        return [f"u{m}" for m in range(num_inputs)]
    names = [str(name) for name in names]
    if len(names) != num_inputs:
        raise ValueError(f"transition_input_names has {len(names)} names, the posterior {num_inputs} transition inputs")
    if len(set(names)) != len(names):
        raise ValueError(f"transition_input_names must be distinct, got {names}")
    return names


def _numpy_draws(distribution, generator: np.random.Generator, shape: tuple) -> np.ndarray:
    """Draws of one of the priors' NumPyro distributions, made in NumPy: an array of ``shape``.

    ``shape`` is the sample shape + the distribution's batch shape + its event shape. NumPy, not
    the distribution's ``sample``: JAX's Gamma sampler (behind the Dirichlet) compiles a program
    per shape, about 1 s on a 2-core CPU, and to_inference_data would pay it in every new process.
    The kinds the priors use (:func:`~bayes_glmhmm.model.prior_distributions`,
    :func:`~bayes_glmhmm.hierarchy.subject_prior_distributions`) are covered, independent copies
    (``expand``, ``to_event``) included; any other raises.

    Raises:
        TypeError: for a distribution of another kind.
    """
    if isinstance(distribution, (dist.Independent, dist.ExpandedDistribution)):
        return _numpy_draws(distribution.base_dist, generator, shape)
    if isinstance(distribution, dist.Dirichlet):
        gammas = generator.gamma(np.broadcast_to(np.asarray(distribution.concentration, float), shape))
        return gammas / gammas.sum(axis=-1, keepdims=True)
    if isinstance(distribution, dist.Normal):
        return np.asarray(distribution.loc) + np.asarray(distribution.scale) * generator.standard_normal(shape)
    if isinstance(distribution, dist.HalfNormal):
        return np.asarray(distribution.scale) * np.abs(generator.standard_normal(shape))
    if isinstance(distribution, dist.ZeroSumNormal):
        # N(0, scale^2 (I - J / n)) along each zero-sum axis: iid Normal(0, scale) draws, centred on each.
        draws = np.asarray(distribution.scale) * generator.standard_normal(shape)
        for axis in range(-len(distribution.event_shape), 0):
            draws = draws - draws.mean(axis=axis, keepdims=True)
        return draws
    raise TypeError(f"no NumPy sampler for a prior of kind {type(distribution).__name__}")


def _sample_distributions(distributions: dict, generator: np.random.Generator, num_draws: int) -> dict:
    """``num_draws`` independent draws of each distribution of a dict, (num_draws, *event_shape) arrays."""
    return {
        name: _numpy_draws(distribution, generator, (num_draws, *distribution.batch_shape, *distribution.event_shape))
        for name, distribution in distributions.items()
    }


def _subject_prior_draws(population: dict, generator, num_subjects: int, priors: Priors, subject_transitions: bool):
    """Draws of the hierarchy given the population's draws (:mod:`bayes_glmhmm.hierarchy`, centred form).

    Spreads from :func:`~bayes_glmhmm.hierarchy.subject_prior_distributions`; subject s's
    weights Normal(mu_w, tau_w) and biases Normal(mu_b, tau_b) around the population's; with
    subject transitions, each row i of subject s's matrix Dirichlet(subject_transition_concentration
    * A[i]), A floored at 1e-6 as :func:`~bayes_glmhmm.hierarchy.sample_subject_transitions` does.
    """
    weights, biases = population["weights"], population["biases"]
    num_draws = weights.shape[0]
    with numpyro.validation_enabled(False):
        spreads = subject_prior_distributions(weights.shape[1:], num_subjects, priors, "centred")
    draws = _sample_distributions(spreads, generator, num_draws)
    for name, spread, mean in (("weights", "weight_spread", weights), ("biases", "bias_spread", biases)):
        shape = (num_draws, num_subjects, *mean.shape[1:])
        draws[f"subject_{name}"] = mean[:, None] + draws[spread][:, None] * generator.standard_normal(shape)
    if subject_transitions:
        concentration = priors.subject_transition_concentration * np.maximum(population["transition_matrix"], 1e-6)
        shape = (num_draws, num_subjects, *concentration.shape[1:])
        gammas = generator.gamma(np.broadcast_to(concentration[:, None], shape))
        draws[SUBJECT_TRANSITIONS] = gammas / gammas.sum(axis=-1, keepdims=True)
    return draws


def prior_samples(key, posterior, num_draws: int = PRIOR_DRAWS) -> dict:
    """Draws from the prior of a posterior's model, shaped and named like its ``samples``.

    The model's priors (``posterior.priors``, :func:`~bayes_glmhmm.model.prior_distributions`),
    family, transition model and subjects; input-driven transitions' ``transition_weights`` are
    made from the free weights as the model makes them. A fit on standardized data
    (``posterior.settings["standardization"]``) had its priors on the standardized parameters, so
    the draws are mapped to the data's units as the posterior's were. Drawn in NumPy from a
    generator seeded by ``key`` (no compiled program, see :func:`_numpy_draws`).

    Args:
        key: PRNG key.
        posterior: a :class:`~bayes_glmhmm.posterior.Posterior`.
        num_draws: how many draws.

    Returns:
        dict of NumPy arrays shaped (1, num_draws, ...), one per name of ``posterior.param_names``,
        each of the dtype of the posterior's draws of it.
    """
    generator = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    transitions = posterior.transitions
    transition_inputs = _transition_inputs(posterior)
    # The fit checked the priors; NumPyro's checks of the distributions' arguments would each compile a program.
    with numpyro.validation_enabled(False):
        distributions = prior_distributions(
            posterior.family,
            posterior.num_states,
            int(posterior.inputs.shape[-1]),
            posterior.priors,
            transitions,
            0 if transition_inputs is None else int(transition_inputs.shape[-1]),
        )
    draws = _sample_distributions(distributions, generator, num_draws)
    if transitions.is_input_driven:
        # The model's own map from the free weights (jnp): a few small operations, no sampler.
        to_full = destination_to_full if transitions.form == "destination" else free_to_full
        site = "destination_weights" if transitions.form == "destination" else "free_transition_weights"
        draws["transition_weights"] = np.asarray(jax.vmap(to_full)(draws.pop(site)))
    if posterior.subjects is not None:
        draws |= _subject_prior_draws(
            draws,
            generator,
            posterior.subjects.num_subjects,
            posterior.priors,
            SUBJECT_TRANSITIONS in posterior.samples,
        )
    recorded = posterior.settings.get("standardization")
    if recorded is not None:
        draws = Standardization(
            np.asarray(recorded["input_mean"]),
            np.asarray(recorded["input_scale"]),
            recorded["emission_mean"],
            recorded["emission_scale"],
        ).samples_to_original(draws)
    return {name: np.asarray(draws[name], dtype=posterior.samples[name].dtype)[None] for name in posterior.param_names}


def to_inference_data(
    posterior,
    key=None,
    include_states: bool = True,
    transition_input_names: list[str] | None = None,
    prior_draws: int = PRIOR_DRAWS,
) -> az.InferenceData:
    """Build the InferenceData of a fitted posterior.

    Args:
        posterior: a :class:`~bayes_glmhmm.posterior.Posterior`.
        key: PRNG key for the posterior predictive, FFBS and prior draws (default: PRNGKey(0)).
        include_states: add the ``posterior_states`` group (FFBS draws, state probabilities).
        transition_input_names: input-driven transitions only: the names of the M transition
            inputs, the coordinate ``transition_input`` (default ``u0``, ``u1``, ...).
        prior_draws: draws of the ``prior`` group (:func:`prior_samples`, one chain) and of the
            ``prior_predictive`` group (one simulation at the fitted inputs per prior draw);
            0 leaves both groups out.

    Returns:
        An ``arviz.InferenceData``.

    Raises:
        ValueError: for ``transition_input_names`` of a stationary posterior or of the wrong length,
            or a ``prior_draws`` that is not an integer >= 0.
    """
    if isinstance(prior_draws, bool) or not isinstance(prior_draws, (int, np.integer)) or prior_draws < 0:
        raise ValueError(f"prior_draws must be an integer >= 0, got {prior_draws!r}")
    family = posterior.family
    key = host_prng.prng_key(0) if key is None else key
    key_predictive, key_states = host_prng.split(key)
    num_sequences, num_timesteps, input_dim = posterior.inputs.shape
    transitions = getattr(posterior, "transitions", STATIONARY)
    transition_inputs = _transition_inputs(posterior)
    names = _transition_input_names(posterior, transition_input_names)
    coords = {
        "state": np.arange(posterior.num_states),
        "next_state": np.arange(posterior.num_states),
        "input": np.arange(input_dim),
        "sequence": np.arange(num_sequences),
        "time": np.arange(num_timesteps),
    }
    dims = {}
    constant_data = {}
    if transition_inputs is not None:
        coords["transition_input"] = np.array(names)
        dims = {**TRANSITION_PARAM_DIMS, "transition_inputs": ["sequence", "time", "transition_input"]}
        constant_data["transition_inputs"] = transition_inputs
    if family.num_classes is not None:
        coords["class"] = np.arange(1, family.num_classes)  # the non-reference classes; class 0 is the reference
    subjects = getattr(posterior, "subjects", None)
    if subjects is not None:
        coords["subject"] = np.array(subjects.names)
        dims |= subject_param_dims(family.param_dims()) | {"subject_index": ["sequence"]}
        constant_data["subject_index"] = np.asarray(subjects.index)
    observed = np.where(posterior.mask, posterior.emissions, np.nan)
    # Padding (steps past a sequence's length) is blanked everywhere; missing steps are not.
    padding = ~posterior.valid_steps()
    predictive = posterior.posterior_predictive(key_predictive)
    predictive[..., padding] = np.nan
    prior_groups = {}
    if prior_draws:
        # Split on the host: the posterior predictive and FFBS streams stay as they were, and no
        # program is compiled for a new split.
        key_prior, key_prior_predictive = host_split_key(key, 2)
        prior = prior_samples(key_prior, posterior, prior_draws)
        prior_predictive = posterior.prior_predictive(key_prior_predictive, prior)
        prior_predictive[..., padding] = np.nan
        prior_groups = {"prior": prior, "prior_predictive": {"emissions": prior_predictive}}
    stats = dict(posterior.sample_stats)
    stats["relabel_permutation"] = posterior.permutations
    attrs = {
        "num_states": posterior.num_states,
        "family": family.name,
        "num_classes": -1 if family.num_classes is None else family.num_classes,
        "priors": json.dumps(posterior.priors._asdict()),
        "stuck_chains": json.dumps(list(posterior.stuck_chains)),
        "stuck_threshold": float(posterior.stuck_threshold),
        "settings": json.dumps(posterior.settings),
        "wall_seconds": json.dumps(posterior.wall_seconds),
        "em_params": json.dumps(None if posterior.em is None else _params_to_json(posterior.em.params)),
        "inference_library": "bayes_glmhmm",
        "transitions": json.dumps({"model": transitions.name, "form": transitions.form}),
        "transition_input_names": json.dumps(names),
    }
    idata = az.from_dict(
        posterior={name: posterior.samples[name] for name in posterior.param_names},
        sample_stats=stats,
        posterior_predictive={"emissions": predictive},
        **prior_groups,
        observed_data={"emissions": observed},
        constant_data={
            "inputs": posterior.inputs,
            "mask": posterior.mask.astype(np.int8),
            "lengths": np.sum(posterior.valid_steps(), axis=1),
            **constant_data,
        },
        coords=coords,
        dims={
            **family.param_dims(),
            **dims,
            "emissions": ["sequence", "time"],
            "inputs": ["sequence", "time", "input"],
            "mask": ["sequence", "time"],
            "lengths": ["sequence"],
            "relabel_permutation": ["state"],
        },
    )
    idata.posterior.attrs.update(attrs)
    # Added apart from from_dict, whose dims would give it the observed emissions' (sequence, time).
    log_likelihood = az.convert_to_dataset(
        {"emissions": posterior.log_likelihood()}, coords=coords, dims={"emissions": ["sequence"]}
    )
    idata.add_groups({"log_likelihood": log_likelihood})
    if include_states:
        states = posterior.sample_states(key_states).astype(np.int8 if posterior.num_states < 128 else np.int32)
        states[..., padding] = -1
        probabilities = posterior.state_probabilities()
        probabilities[padding] = np.nan
        group = az.convert_to_dataset({"states": states}, coords=coords, dims={"states": ["sequence", "time"]})
        group["state_probabilities"] = (("sequence", "time", "state"), probabilities)
        idata.add_groups({"posterior_states": group})
    return idata


def _params_to_json(params) -> dict:
    """The parameters as JSON lists; a stationary model's absent ``transition_weights`` (None) is left out."""
    return {name: np.asarray(value).tolist() for name, value in params._asdict().items() if value is not None}


def _transition_model(attrs) -> TransitionModel:
    """The transition model the posterior's attrs record (stationary for files written before issue 12)."""
    recorded = json.loads(attrs.get("transitions", "null"))
    if recorded is None:
        return STATIONARY
    return TransitionModel(recorded["model"], recorded.get("form", "full"))


def posterior_from_inference_data(idata: az.InferenceData):
    """Rebuild a :class:`~bayes_glmhmm.posterior.Posterior` from InferenceData written by this package.

    Args:
        idata: InferenceData made by :func:`to_inference_data` (possibly read back from netCDF).

    Returns:
        A Posterior whose methods (FFBS, state probabilities, ...) work again.

    Raises:
        ValueError: if a required group or variable is missing.
    """
    for group in ("posterior", "sample_stats", "observed_data", "constant_data"):
        if group not in idata.groups():
            raise ValueError(f"idata lacks the {group!r} group; was it written by bayes_glmhmm?")
    attrs = idata.posterior.attrs
    num_classes = int(attrs.get("num_classes", -1))
    family = get_family(attrs.get("family", "gaussian"), None if num_classes < 0 else num_classes)
    transitions = _transition_model(attrs)
    names = family.param_names + transitions.param_names
    hierarchical = "subject_index" in idata.constant_data
    names += subject_param_names(SUBJECT_TRANSITIONS in idata.posterior) if hierarchical else ()
    missing = [name for name in names if name not in idata.posterior]
    if missing:
        raise ValueError(
            f"idata's posterior group lacks {missing} of its {family.name} family, transition model and subjects"
        )
    subjects = None
    if hierarchical:
        subjects = Subjects(
            idata.constant_data["subject_index"].values.astype(np.int32),
            tuple(str(name) for name in idata.posterior["subject"].values),
        )
    samples = {name: idata.posterior[name].values for name in names}
    transition_inputs = None
    if transitions.is_input_driven:
        if "transition_inputs" not in idata.constant_data:
            raise ValueError("idata records input-driven transitions but its constant_data lacks transition_inputs")
        transition_inputs = idata.constant_data["transition_inputs"].values
    stats = {name: idata.sample_stats[name].values for name in idata.sample_stats.data_vars}
    permutations = stats.pop("relabel_permutation")
    mask = idata.constant_data["mask"].values.astype(bool)
    em_json = json.loads(attrs.get("em_params", "null"))
    em = None
    if em_json is not None:
        em_params = family.params_type(**{name: np.asarray(value) for name, value in em_json.items()})
        em = EMResult(em_params, np.array([]), True, np.array([]), float("nan"))
    return Posterior(
        samples=samples,
        permutations=permutations,
        sample_stats=stats,
        inputs=idata.constant_data["inputs"].values,
        emissions=np.where(mask, idata.observed_data["emissions"].values, 0.0),
        mask=mask,
        num_states=int(attrs["num_states"]),
        priors=Priors(**json.loads(attrs["priors"])),
        em=em,
        stuck_chains=json.loads(attrs.get("stuck_chains", "[]")),
        stuck_threshold=float(attrs.get("stuck_threshold", np.nan)),
        wall_seconds=json.loads(attrs.get("wall_seconds", "{}")),
        settings=json.loads(attrs.get("settings", "{}")),
        lengths=idata.constant_data["lengths"].values if "lengths" in idata.constant_data else None,
        family=family,
        transitions=transitions,
        transition_inputs=transition_inputs,
        subjects=subjects,
    )


def write_netcdf_atomic(idata: az.InferenceData, path) -> str:
    """Write InferenceData to ``path`` so that the file is either complete or absent.

    The data go to a temporary file in the same directory, which then replaces ``path`` in one
    ``os.replace``; an interrupted write never leaves a truncated ``path``.

    Args:
        idata: the InferenceData.
        path: destination file.

    Returns:
        The path written.
    """
    with atomic_path(path, suffix=".nc") as temporary:
        idata.to_netcdf(temporary)
    return os.fspath(path)
