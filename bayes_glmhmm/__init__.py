"""bayes_glmhmm: fully Bayesian GLM-HMMs (input-driven HMMs, switching linear regression).

The hidden states are summed out by a forward filter inside NumPyro's NUTS; states are
recovered afterwards by forward-filtering backward-sampling for every posterior draw.
"""

from bayes_glmhmm.compare import Comparison, compare_fits
from bayes_glmhmm.convergence import ConvergenceThresholds, ConvergenceWarning
from bayes_glmhmm.convert import posterior_from_inference_data, to_inference_data, write_netcdf_atomic
from bayes_glmhmm.em import EMResult, fit_em
from bayes_glmhmm.emissions import FAMILY_NAMES, EmissionFamily, family_of, get_family
from bayes_glmhmm.fit import fit_nuts
from bayes_glmhmm.model import glmhmm_model, log_likelihood, most_likely_states, sample_states, smoothed_state_probs
from bayes_glmhmm.params import (
    BernoulliGLMHMMParams,
    CategoricalGLMHMMParams,
    GLMHMMParams,
    PoissonGLMHMMParams,
    Priors,
)
from bayes_glmhmm.posterior import Posterior, detect_stuck_chains
from bayes_glmhmm.relabel import find_state_permutation, match_params, relabel_samples
from bayes_glmhmm.selection import Selection, select_num_states
from bayes_glmhmm.simulate import ArticleData, article_data, article_params, simulate
from bayes_glmhmm.transitions import TransitionModel

__version__ = "0.1.0"

__all__ = [
    "ArticleData",
    "BernoulliGLMHMMParams",
    "CategoricalGLMHMMParams",
    "EmissionFamily",
    "FAMILY_NAMES",
    "PoissonGLMHMMParams",
    "family_of",
    "get_family",
    "Comparison",
    "compare_fits",
    "ConvergenceThresholds",
    "ConvergenceWarning",
    "EMResult",
    "GLMHMMParams",
    "Posterior",
    "Priors",
    "article_data",
    "article_params",
    "detect_stuck_chains",
    "find_state_permutation",
    "fit_em",
    "fit_nuts",
    "glmhmm_model",
    "log_likelihood",
    "match_params",
    "most_likely_states",
    "posterior_from_inference_data",
    "relabel_samples",
    "sample_states",
    "Selection",
    "select_num_states",
    "simulate",
    "smoothed_state_probs",
    "to_inference_data",
    "TransitionModel",
    "write_netcdf_atomic",
]
