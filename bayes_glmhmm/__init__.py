"""bayes_glmhmm: fully Bayesian GLM-HMMs (input-driven HMMs, switching linear regression).

The hidden states are summed out by a forward filter inside NumPyro's NUTS; states are
recovered afterwards by forward-filtering backward-sampling for every posterior draw.

The names below are loaded from their modules on first use, so that importing the package (as
``bayes-glmhmm`` does before it has checked its arguments) does not import JAX.
"""

import importlib
import sys
import types

__version__ = "0.1.0"

#: Every public name of the package, by the module that defines it.
_EXPORTS = {
    "Comparison": "compare",
    "compare_fits": "compare",
    "ConvergenceThresholds": "convergence",
    "ConvergenceWarning": "convergence",
    "posterior_from_inference_data": "convert",
    "to_inference_data": "convert",
    "write_netcdf_atomic": "convert",
    "EMResult": "em",
    "fit_em": "em",
    "EmissionFamily": "emissions",
    "family_of": "emissions",
    "get_family": "emissions",
    "FAMILY_NAMES": "family_names",
    "fit_nuts": "fit",
    "Subjects": "hierarchy",
    "draw_subjects": "hierarchy",
    "glmhmm_model": "model",
    "log_likelihood": "model",
    "most_likely_states": "model",
    "sample_states": "model",
    "smoothed_state_probs": "model",
    "BernoulliGLMHMMParams": "params",
    "CategoricalGLMHMMParams": "params",
    "GLMHMMParams": "params",
    "PoissonGLMHMMParams": "params",
    "Priors": "priors",
    "Posterior": "posterior",
    "detect_stuck_chains": "posterior",
    "find_state_permutation": "relabel",
    "match_params": "relabel",
    "relabel_samples": "relabel",
    "Selection": "selection",
    "select_num_states": "selection",
    "ArticleData": "simulate",
    "article_data": "simulate",
    "article_params": "simulate",
    "simulate": "simulate",
    "simulate_subjects": "simulate",
    "TransitionModel": "transitions",
}

__all__ = sorted(_EXPORTS, key=str.lower)


class _Package(types.ModuleType):
    """The package module, loading each public name from its module on first use."""

    def __getattr__(self, name: str):
        if name not in _EXPORTS:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        super().__setattr__(name, value)
        return value

    def __setattr__(self, name: str, value) -> None:
        # Importing a submodule binds it to its name in the package; where a public name is also a
        # submodule's (simulate), the public name keeps it, as it did when the package imported everything.
        if name in _EXPORTS and isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.{name}":
            return
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *_EXPORTS})


sys.modules[__name__].__class__ = _Package
