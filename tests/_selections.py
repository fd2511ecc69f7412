"""Selections for the tests of the outputs of select_num_states: a hand-made one (no fit) and a real one."""

import warnings

import numpy as np
import pandas as pd

from bayes_glmhmm.selection import Selection

#: The hand-made selection's table: Bayes chooses K = 2 (within one SE of K = 3, the best), EM
#: K = 3 (K = 2 is more than one SE below); Gaussian, so the accuracies are NaN; K = 3 has R-hat
#: above 1.01 and two sequences left unreliable by PSIS-LOO.
SYNTHETIC_COLUMNS = {
    "num_states": [1, 2, 3],
    "elpd": [-520.25, -480.5, -478.0],
    "elpd_se": [20.5, 18.25, 18.0],
    "elpd_diff": [42.25, 2.5, 0.0],
    "elpd_diff_se": [9.5, 3.0, 0.0],
    "bits_per_trial": [0.05, 0.1234, 0.125],
    "bits_per_trial_se": [0.011, 0.0123, 0.0125],
    "accuracy": [np.nan, np.nan, np.nan],
    "stacking_weight": [0.0, 0.25, 0.75],
    "em_loglik": [-522.0, -490.0, -481.0],
    "em_loglik_se": [20.0, 19.0, 18.5],
    "em_diff": [41.0, 9.0, 0.0],
    "em_diff_se": [9.0, 4.0, 0.0],
    "em_bits_per_trial": [0.045, 0.09, 0.11],
    "em_bits_per_trial_se": [0.01, 0.012, 0.013],
    "em_accuracy": [np.nan, np.nan, np.nan],
    "p_loo": [4.5, 9.25, np.inf],
    "max_pareto_k": [0.31, 0.52, 0.91],
    "num_high_pareto_k": [0, 0, 3],
    "num_refits": [0, 0, 1],
    "num_unreliable": [0, 0, 2],
    "max_rhat": [1.001, 1.004, 1.2],
    "min_ess_bulk": [812.0, 640.0, 45.0],
    "divergences": [0, 0, 4],
    "nuts_seconds": [10.0, 20.0, 30.0],
    "em_seconds": [1.0, 2.0, 3.0],
}


def synthetic_selection(method: str = "loo") -> Selection:
    """A Selection of K = 1, 2, 3 with :data:`SYNTHETIC_COLUMNS` (PSIS-LOO columns only for ``method="loo"``)."""
    columns = dict(SYNTHETIC_COLUMNS)
    if method != "loo":
        for name in ("p_loo", "max_pareto_k", "num_high_pareto_k", "num_refits", "num_unreliable"):
            del columns[name]
    table = pd.DataFrame(columns).set_index("num_states", drop=False)
    return Selection(
        table=table,
        best=2,
        best_em=3,
        rule="one_se",
        method=method,
        states=(1, 2, 3),
        folds=np.array([0, 1, 2, 0, 1, 2]),
        pointwise={},
        baseline_name="a one-state linear regression (least squares)",
        settings={
            "method": method,
            "num_folds": 3,
            "em_restarts": 4,
            "family": "gaussian",
            "num_sequences": 6,
            "num_trials": 600,
            "fit_nuts": {"num_chains": 2, "init_jitter": np.float32(0.5), "target": np.array([1.0, np.nan])},
        },
        wall_seconds={1: 11.0, 2: 22.0, 3: 33.0, "total": 66.0},
    )


def real_selection(**kwargs) -> Selection:
    """A quick select_num_states of simulated Bernoulli choices (8 sessions x 80 trials, K = 1, 2; about a minute).

    R-hat warnings of the short chains are silenced.
    """
    import jax

    from bayes_glmhmm import simulate
    from bayes_glmhmm.params import BernoulliGLMHMMParams
    from bayes_glmhmm.selection import select_num_states

    rng = np.random.default_rng(0)
    truth = BernoulliGLMHMMParams(
        np.full(2, 0.5),
        np.array([[0.95, 0.05], [0.05, 0.95]]),
        np.array([[4.0, 0.0], [0.5, 0.0]]),
        np.array([0.0, 1.5]),
    )
    inputs = rng.normal(size=(8, 80, 2)).astype(np.float32)
    _, choices = simulate(jax.random.PRNGKey(1), truth, inputs)
    settings = dict(num_chains=2, num_warmup=60, num_samples=60, num_folds=2, em_restarts=2, progress=False) | kwargs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return select_num_states(inputs, np.asarray(choices), (1, 2), family="bernoulli", **settings)
