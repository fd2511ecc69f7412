"""The emission-family interface: a family is a hashable NamedTuple of small pure functions.

A GLM-HMM is three components feeding one set of HMM kernels (initial distribution, transitions,
emissions). An emission family says how an observation y_t depends on its inputs x_t in state k:

    log p(y_t | x_t, z_t = k, theta) = family.log_likelihoods(params, inputs, emissions)[..., k]

through the linear predictor eta[k] = weights[k] @ x_t + biases[k] (one per class for the
categorical family) and, for the Gaussian, a noise scale. The model, EM, the sampler, relabeling,
ArviZ conversion and the presentation layers read everything family-specific from this object,
so a new family is one module. A family is hashable (usable as a static argument of ``jax.jit``).
"""

from collections.abc import Callable
from typing import NamedTuple

__all__ = ["EmissionFamily"]


class EmissionFamily(NamedTuple):
    """An emission family of the GLM-HMM.

    Attributes:
        name: registry name, e.g. ``"bernoulli"``.
        params_type: the NamedTuple of the family's model parameters; its first two fields are
            ``initial_probs`` and ``transition_matrix``, then ``weights``, ``biases`` and the
            family's extra emission parameters (:attr:`extra_names`).
        num_classes: C for the categorical family, else None.
        extra_names: emission parameters beyond weights and biases (``("scales",)`` for the Gaussian).
        log_likelihoods: ``(params, inputs (..., D), emissions (...)) -> (..., K)``, the per-state
            log p(y | x, z = k, theta).
        sample: ``(key, params, inputs (T, D), states (T,)) -> (T,)`` emissions y_t ~ p(y | x_t, z_t).
        mean: ``(params, inputs (..., D)) -> (..., K)`` E[y | x, z = k] (Gaussian and Poisson: the mean;
            Bernoulli: p(y = 1); categorical: (..., K, C) class probabilities).
        extra_priors: ``(num_states, priors) -> dict`` name -> NumPyro distribution (event shape the
            parameter's) of each extra parameter, e.g. HalfNormal(noise_scale) on the scales.
        extra_supports: ``((name, constraint_name), ...)`` the supports of the extra sites, named as in
            ``numpyro.distributions.constraints`` (names keep the family hashable).
        m_step: ``(params, design (N, T, D + 1), emissions, weights_per_step (N, T, K), priors | None)
            -> dict`` of new ``weights``, ``biases`` and extra parameters, not decreasing the
            expected complete-data log-likelihood (+ log prior). The GLM families also take
            ``prior_mean=(weights, biases)``, the mean of the Normal prior (zero by default), which
            the hierarchical EM uses (each subject's coefficients around the population's).
        initialize: ``(key, inputs, emissions, mask, num_states) -> dict`` random starting emission
            parameters on the data's own scale.
        prepare_emissions: ``(emissions (N, T) NumPy float, mask (N, T) bool) -> (N, T)`` the emissions in
            the family's coding (e.g. -1/+1 choices as 0/1), raising ValueError naming ``emissions`` and
            the first offending index for an observed value outside the support.
        relabel_features: ``(samples dict) -> (..., K, F)`` per-state features that identify a state.
        extra_dims: ``((name, dims), ...)`` ArviZ dims of the extra parameters.
        standardizes_emissions: whether ``standardize`` may rescale the emissions (Gaussian only).
        discrete: whether emissions are counts or classes (integers).
        mean_label: axis label of :attr:`mean` for plots, ``{c}`` standing for the class.
        mean_is_probability: whether :attr:`mean` is a probability (plots use a 0..1 axis).
        baseline: ``(train_inputs (S, D), train_emissions (S,), test_inputs (R, D), test_emissions (R,))
            -> (R,)`` NumPy float64 log p(y | baseline) of each test step under the family's
            one-state reference model fitted to the training steps: the "baseline" that the field's
            bits per trial are measured against (:mod:`bayes_glmhmm.selection`).
        baseline_name: what the baseline is, in words.
    """

    name: str
    params_type: type
    num_classes: int | None
    extra_names: tuple
    log_likelihoods: Callable
    sample: Callable
    mean: Callable
    extra_priors: Callable
    extra_supports: tuple
    m_step: Callable
    initialize: Callable
    prepare_emissions: Callable
    relabel_features: Callable
    extra_dims: tuple
    standardizes_emissions: bool
    discrete: bool
    mean_label: str = "E[y | x, z = k]"
    mean_is_probability: bool = False
    baseline: Callable | None = None
    baseline_name: str = ""

    @property
    def emission_names(self) -> tuple[str, ...]:
        """``("weights", "biases", *extra_names)``."""
        return ("weights", "biases", *self.extra_names)

    @property
    def param_names(self) -> tuple[str, ...]:
        """Every parameter name of a stationary model, in the params NamedTuple's order.

        The params' last field, ``transition_weights`` (input-driven transitions), is not the
        family's: :func:`bayes_glmhmm.transitions.param_names` adds it when a model has it.
        """
        return tuple(name for name in self.params_type._fields if name != "transition_weights")

    def weight_shape(self, num_states: int, input_dim: int) -> tuple[int, ...]:
        """Shape of ``weights``: (K, D), or (K, C - 1, D) for the categorical family."""
        if self.num_classes is None:
            return (num_states, input_dim)
        return (num_states, self.num_classes - 1, input_dim)

    def param_dims(self) -> dict[str, list[str]]:
        """ArviZ dims of every parameter (``state``, ``next_state``, ``class``, ``input``)."""
        per_class = [] if self.num_classes is None else ["class"]
        return {
            "initial_probs": ["state"],
            "transition_matrix": ["state", "next_state"],
            "weights": ["state", *per_class, "input"],
            "biases": ["state", *per_class],
            **{name: list(dims) for name, dims in self.extra_dims},
        }

    def param_shapes(self, num_states: int, input_dim: int) -> dict[str, tuple[int, ...]]:
        """Shape of every parameter."""
        weight_shape = self.weight_shape(num_states, input_dim)
        return {
            "initial_probs": (num_states,),
            "transition_matrix": (num_states, num_states),
            "weights": weight_shape,
            "biases": weight_shape[:-1],
            **{name: (num_states,) for name in self.extra_names},
        }
