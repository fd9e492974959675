"""Instance-based transfer: re-weight the source rows that resemble the target.

Every estimator follows scikit-learn's conventions (hyper-parameters in ``__init__``,
fitted state ending in ``_``, clone-able) and takes ``sample_domain`` (see
:mod:`lowshot.domains`) to know which rows are source and which target.
"""

from sklearn.base import BaseEstimator

from lowshot.instance._base import BaseReweighter
from lowshot.instance.boosting import TrAdaBoost, TrAdaBoostR2
from lowshot.instance.discriminative import DiscriminativeRatio
from lowshot.instance.kliep import KLIEP
from lowshot.instance.kmm import KMM
from lowshot.instance.nearest import NearestNeighborWeighting
from lowshot.instance.selection import ClusterSelection
from lowshot.instance.ulsif import ULSIF, RuLSIF
from lowshot.instance.weighted import ImportanceWeightedClassifier
from lowshot.registry import Family, MethodInfo, register_family


def _check(info: MethodInfo) -> None:
    from sklearn.base import clone

    est = info.factory()
    assert clone(est).get_params() == est.get_params()  # hyper-parameters only in __init__
    assert not [k for k in vars(est) if k.endswith("_") and not k.startswith("_")], (
        "fitted state before fit"
    )


register_family(
    Family(
        "instance",
        "importance weighting, boosting, selection",
        BaseEstimator,
        ("adapt", "reweight", "fit"),
        _check,
    )
)

__all__ = [
    "KLIEP",
    "KMM",
    "ULSIF",
    "BaseReweighter",
    "ClusterSelection",
    "DiscriminativeRatio",
    "ImportanceWeightedClassifier",
    "NearestNeighborWeighting",
    "RuLSIF",
    "TrAdaBoost",
    "TrAdaBoostR2",
]
