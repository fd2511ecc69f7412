"""Compatibility module for older imports.

:func:`fit_nuts` lives in :mod:`bayes_glmhmm.fit`, :class:`Posterior` in :mod:`bayes_glmhmm.posterior`.
"""

from bayes_glmhmm.fit import fit_nuts
from bayes_glmhmm.params import PARAM_NAMES
from bayes_glmhmm.posterior import Posterior, detect_stuck_chains

__all__ = ["Posterior", "fit_nuts", "detect_stuck_chains", "PARAM_NAMES"]
