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
* ``observed_data``: ``emissions`` (NaN where masked); ``constant_data``: ``inputs``, ``mask``;
* ``posterior_states`` (extra group): FFBS ``states`` per draw and the posterior mean
  ``state_probabilities``.
"""

import json
import os

import arviz as az
import jax
import numpy as np

from bayes_glmhmm._io import atomic_path
from bayes_glmhmm.em import EMResult
from bayes_glmhmm.emissions import get_family
from bayes_glmhmm.params import Priors
from bayes_glmhmm.posterior import Posterior

__all__ = ["to_inference_data", "posterior_from_inference_data", "write_netcdf_atomic", "PARAM_DIMS"]

PARAM_DIMS = get_family("gaussian").param_dims()  # the Gaussian family's; any family: family.param_dims()


def to_inference_data(posterior, key=None, include_states: bool = True) -> az.InferenceData:
    """Build the InferenceData of a fitted posterior.

    Args:
        posterior: a :class:`~bayes_glmhmm.posterior.Posterior`.
        key: PRNG key for the posterior predictive and FFBS draws (default: PRNGKey(0)).
        include_states: add the ``posterior_states`` group (FFBS draws, state probabilities).

    Returns:
        An ``arviz.InferenceData``.
    """
    family = posterior.family
    key = jax.random.PRNGKey(0) if key is None else key
    key_predictive, key_states = jax.random.split(key)
    num_sequences, num_timesteps, input_dim = posterior.inputs.shape
    coords = {
        "state": np.arange(posterior.num_states),
        "next_state": np.arange(posterior.num_states),
        "input": np.arange(input_dim),
        "sequence": np.arange(num_sequences),
        "time": np.arange(num_timesteps),
    }
    if family.num_classes is not None:
        coords["class"] = np.arange(1, family.num_classes)  # the non-reference classes; class 0 is the reference
    observed = np.where(posterior.mask, posterior.emissions, np.nan)
    # Padding (steps past a sequence's length) is blanked everywhere; missing steps are not.
    padding = ~posterior.valid_steps()
    predictive = posterior.posterior_predictive(key_predictive)
    predictive[..., padding] = np.nan
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
    }
    idata = az.from_dict(
        posterior={name: posterior.samples[name] for name in family.param_names},
        sample_stats=stats,
        posterior_predictive={"emissions": predictive},
        observed_data={"emissions": observed},
        constant_data={
            "inputs": posterior.inputs,
            "mask": posterior.mask.astype(np.int8),
            "lengths": np.sum(posterior.valid_steps(), axis=1),
        },
        coords=coords,
        dims={
            **family.param_dims(),
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
    return {name: np.asarray(value).tolist() for name, value in params._asdict().items()}


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
    samples = {name: idata.posterior[name].values for name in family.param_names}
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
