"""The emission families' names and kinds of target, importable without JAX.

The command line checks its options and reads the CSV with these before it imports JAX, so that a
bad call fails at once; :mod:`bayes_glmhmm.emissions` holds the families themselves.
"""

__all__ = ["CLASS_TARGET_FAMILIES", "FAMILY_NAMES", "csv_target_options"]

FAMILY_NAMES = ("gaussian", "bernoulli", "categorical", "poisson")

#: The families whose targets are classes (text labels allowed), with their number of classes
#: (None: the family's own ``num_classes``, given or inferred). Every other family's target is a number.
CLASS_TARGET_FAMILIES = {"bernoulli": 2, "categorical": None}


def csv_target_options(family: str, num_classes: int | None = None) -> dict:
    """How a long CSV's target column is read for ``family``.

    The class arguments of :func:`bayes_glmhmm.tabular.read_long_csv`, as the fit reads the file.

    Args:
        family: a name in :data:`FAMILY_NAMES`.
        num_classes: C of the categorical family, when given.

    Returns:
        ``class_target`` (whether the target holds class labels, possibly text) and ``num_classes``
        (the most classes text labels may fill: ``num_classes`` when given, else the family's own,
        None for no limit).
    """
    return {
        "class_target": family in CLASS_TARGET_FAMILIES,
        "num_classes": num_classes if num_classes is not None else CLASS_TARGET_FAMILIES.get(family),
    }
