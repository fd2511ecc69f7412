"""Emission families of the GLM-HMM, one module each, and their registry.

``"gaussian"`` (the article's switching linear regression), ``"bernoulli"`` (logistic, binary
choices), ``"categorical"`` (multinomial logit, class 0 the reference) and ``"poisson"`` (log link,
counts). A family is an :class:`~bayes_glmhmm.emissions.base.EmissionFamily`; the type of a params
NamedTuple names its family (:func:`family_of`), so functions that take params need no family.
"""

import numpy as np

from bayes_glmhmm.emission_support import infer_num_classes
from bayes_glmhmm.emissions import bernoulli, categorical, gaussian, poisson
from bayes_glmhmm.emissions.base import EmissionFamily
from bayes_glmhmm.emissions.gaussian import gaussian_glm_log_likelihoods, glm_means
from bayes_glmhmm.family_names import FAMILY_NAMES
from bayes_glmhmm.params import CategoricalGLMHMMParams

__all__ = [
    "FAMILY_NAMES",
    "EmissionFamily",
    "family_of",
    "gaussian_glm_log_likelihoods",
    "get_family",
    "glm_means",
    "resolve_family",
]

_FIXED = {family.name: family for family in (gaussian.FAMILY, bernoulli.FAMILY, poisson.FAMILY)}
_BY_PARAMS_TYPE = {family.params_type: family for family in _FIXED.values()}


def get_family(family="gaussian", num_classes: int | None = None) -> EmissionFamily:
    """The emission family named ``family`` (or ``family`` itself if it is one).

    Args:
        family: a name in :data:`FAMILY_NAMES` or an :class:`EmissionFamily`.
        num_classes: C, required for ``"categorical"`` (see :func:`resolve_family` to infer it from data).

    Raises:
        ValueError: for an unknown name, or a categorical family without ``num_classes``.
    """
    if isinstance(family, EmissionFamily):
        if num_classes is not None and family.num_classes != num_classes:
            raise ValueError(f"num_classes={num_classes} contradicts the family's {family.num_classes} classes")
        return family
    if family == "categorical":
        if num_classes is None:
            raise ValueError("family='categorical' needs num_classes (the number of classes C)")
        return categorical.family(num_classes)
    if family not in _FIXED:
        raise ValueError(f"family must be one of {', '.join(FAMILY_NAMES)} or an EmissionFamily, got {family!r}")
    if num_classes is not None:
        raise ValueError(f"num_classes applies to the categorical family only, got num_classes={num_classes!r}")
    return _FIXED[family]


def resolve_family(family, emissions=None, mask=None, num_classes: int | None = None) -> EmissionFamily:
    """Like :func:`get_family`, inferring a categorical family's C from the observed labels when not given.

    C is then 1 + the largest observed label (at least 2).
    """
    if family == "categorical" and num_classes is None and emissions is not None:
        num_classes = infer_num_classes(emissions, mask)
    return get_family(family, num_classes)


def family_of(params) -> EmissionFamily:
    """The family of a params NamedTuple (by its type; C from a categorical's biases' shape)."""
    if isinstance(params, CategoricalGLMHMMParams):
        return categorical.family(int(np.shape(params.biases)[-1]) + 1)
    try:
        return _BY_PARAMS_TYPE[type(params)]
    except KeyError:
        raise ValueError(
            f"params must be one of the families' parameter NamedTuples, got {type(params).__name__}"
        ) from None
