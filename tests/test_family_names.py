"""Tests of :mod:`bayes_glmhmm.family_names`: the JAX-free names agree with the families themselves."""

import numpy as np
import pytest

from bayes_glmhmm import emissions
from bayes_glmhmm.family_names import CLASS_TARGET_FAMILIES, FAMILY_NAMES, csv_target_options


def test_the_families_use_these_names():
    assert emissions.FAMILY_NAMES is FAMILY_NAMES
    for name in FAMILY_NAMES:
        assert emissions.get_family(name, 3 if name == "categorical" else None).name == name


def test_a_fixed_number_of_classes_is_the_family_s():
    """bernoulli's 2 classes: the family takes codes 0 and 1 and refuses 2."""
    for name, num_classes in CLASS_TARGET_FAMILIES.items():
        if num_classes is None:
            continue
        family = emissions.get_family(name)
        observed = np.ones((1, 2), bool)
        family.prepare_emissions(np.array([[0.0, num_classes - 1.0]]), observed)
        with pytest.raises(ValueError):
            family.prepare_emissions(np.array([[0.0, float(num_classes)]]), observed)


def test_csv_target_options():
    assert csv_target_options("gaussian") == {"class_target": False, "num_classes": None}
    assert csv_target_options("poisson") == {"class_target": False, "num_classes": None}
    assert csv_target_options("bernoulli") == {"class_target": True, "num_classes": 2}
    assert csv_target_options("categorical") == {"class_target": True, "num_classes": None}
    assert csv_target_options("categorical", 4) == {"class_target": True, "num_classes": 4}
