"""The hyperparameters of the GLM-HMM's priors, importable without JAX.

The command line builds and checks a :class:`Priors` from its options before it imports JAX;
:mod:`bayes_glmhmm.params` re-exports it beside the parameter containers.
"""

import math
from typing import NamedTuple

__all__ = ["Priors"]


class Priors(NamedTuple):
    """Hyperparameters of the priors; the defaults are the article's.

    Attributes:
        initial_concentration: initial_probs ~ Dirichlet(initial_concentration * ones(K)).
        transition_concentration: each row of transition_matrix ~ Dirichlet(concentration * ones(K)).
        weight_scale: weights[k, d] ~ Normal(0, weight_scale).
        bias_scale: biases[k] ~ Normal(0, bias_scale).
        noise_scale: scales[k] ~ HalfNormal(noise_scale) (Gaussian family only).
        transition_weight_scale: input-driven transitions only: each free transition weight
            transition_weights[i, j, m] (j != i) ~ Normal(0, transition_weight_scale); see
            :mod:`bayes_glmhmm.transitions` (the destination-only form's prior differs).
        subject_spread_scale: subjects only (a hierarchical model, :mod:`bayes_glmhmm.hierarchy`):
            the spread of each weight and bias across subjects ~ HalfNormal(subject_spread_scale).
        subject_transition_concentration: subjects with their own transitions only: row i of
            subject s's transition matrix ~ Dirichlet(subject_transition_concentration * A[i]),
            A the population's; its mean is A[i], and each probability's spread about it is
            sqrt(A[i, j] (1 - A[i, j]) / (concentration + 1)).
    """

    initial_concentration: float = 1.0
    transition_concentration: float = 1.0
    weight_scale: float = 1.0
    bias_scale: float = 1.0
    noise_scale: float = 1.0
    transition_weight_scale: float = 1.0
    subject_spread_scale: float = 1.0
    subject_transition_concentration: float = 20.0

    def problems(self) -> dict[str, str]:
        """What is wrong with each hyperparameter that is not a positive finite number.

        Returns:
            ``{field name: problem}``, e.g. ``{"weight_scale": "must be a positive finite number, got -1.0"}``,
            in field order; empty when every value is valid. :meth:`validate` leads a problem with
            ``Priors.<field>``, the command line with the field's flag.
        """
        problems = {}
        for name, value in self._asdict().items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                problems[name] = f"must be a positive number, got {value!r}"
                continue
            if not (math.isfinite(number) and number > 0):
                problems[name] = f"must be a positive finite number, got {value!r}"
        return problems

    def validate(self) -> "Priors":
        """Raise ValueError naming the field if any hyperparameter is not a positive finite number."""
        problems = self.problems()
        if problems:
            name, problem = next(iter(problems.items()))
            raise ValueError(f"Priors.{name} {problem}")
        return self
