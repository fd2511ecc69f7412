"""The core issue's acceptance run: the article's data, 4 chains x (1000 + 1000) draws."""

import jax
import numpy as np
import pytest

from bayes_glmhmm import article_data, fit_nuts, match_params
from bayes_glmhmm.summaries import complete_data_estimate, coverage_summary, parameter_table


@pytest.mark.slow
def test_article_data_full_run():
    data = article_data(jax.random.PRNGKey(0))
    posterior = fit_nuts(data.inputs, data.emissions, 3, num_chains=4, seed=0, progress_bar=False)
    diagnostics = posterior.diagnostics()
    assert diagnostics["max_rhat"] <= 1.01
    assert diagnostics["min_ess_bulk"] >= 400
    assert diagnostics["divergences"] == 0
    assert diagnostics["stuck_chains"] == []
    posterior = posterior.permute(match_params(posterior.posterior_mean(), data.params))
    # The 94% intervals must contain what this data set realized (its empirical transition
    # frequencies, complete-data regressions): the states are nearly identified, so the posterior
    # centres on those with about their sampling spread; allow one miss in 21 scalars.
    realized = complete_data_estimate(data.states, data.inputs, data.emissions, 3)
    assert coverage_summary(parameter_table(posterior.samples, truth=realized))["fraction_covered"] >= 20 / 21
    # Against the generating values: weights and biases are covered; this seed's realized
    # transition frequencies sit up to 3 standard errors from the generator's (0.32 vs 0.4 with
    # 364 transitions), so transition coverage is judged across data sets in
    # benchmarks/replicated_study.py, not on one.
    generator = coverage_summary(parameter_table(posterior.samples, truth=data.params))
    assert generator["per_parameter"]["weights"] == 1.0
    assert generator["per_parameter"]["biases"] == 1.0
    state_probabilities = posterior.state_probabilities()
    assert np.mean(state_probabilities.argmax(-1) == data.states) > 0.95
