"""A small simulation-based calibration run (the full one is benchmarks/sbc.py, 200 replications)."""

import importlib.util
import pathlib
from types import SimpleNamespace

import numpy as np
import pytest

from bayes_glmhmm import Priors

SBC_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "sbc.py"


def _load_sbc():
    spec = importlib.util.spec_from_file_location("sbc_benchmark", SBC_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stationary_distribution_is_invariant():
    sbc = _load_sbc()
    matrix = np.array([[0.5, 0.4, 0.1], [0.1, 0.5, 0.4], [0.4, 0.1, 0.5]])
    pi = sbc.stationary(matrix)
    np.testing.assert_allclose(pi @ matrix, pi, atol=1e-12)
    np.testing.assert_allclose(pi.sum(), 1.0)


@pytest.mark.slow
def test_small_sbc_ranks_are_uniform():
    """24 replications, 2 states, ranks among L = 19 thinned draws, 5 bins. A chi-square test per
    quantity at a Bonferroni-corrected 0.001 catches gross miscalibration only (e.g. a posterior
    that ignores the data or the prior); the 200-replication script is the real check."""
    sbc = _load_sbc()
    args = SimpleNamespace(
        num_states=2, num_sequences=3, num_timesteps=60, chains=1, warmup=200, samples=190, rank_draws=19
    )
    rows = [sbc.one_replication(seed, args, Priors()) for seed in range(24)]
    summary = sbc.summarize(rows, args.rank_draws, bins=5)
    assert summary["min_p_value"] > 0.001 / len(summary["quantities"]), summary
    for row in rows:
        assert all(0 <= row[name] <= args.rank_draws for name in row if name.startswith("rank_"))
