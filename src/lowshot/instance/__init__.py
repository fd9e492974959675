"""Instance-based transfer: re-weight the source rows that resemble the target.

Every estimator follows scikit-learn's conventions (hyper-parameters in ``__init__``,
fitted state ending in ``_``, clone-able) and takes ``sample_domain`` (see
:mod:`lowshot.domains`) to know which rows are source and which target.
"""

from lowshot.instance._base import BaseReweighter
from lowshot.instance.boosting import TrAdaBoost, TrAdaBoostR2
from lowshot.instance.discriminative import DiscriminativeRatio
from lowshot.instance.kliep import KLIEP
from lowshot.instance.kmm import KMM
from lowshot.instance.nearest import NearestNeighborWeighting
from lowshot.instance.selection import ClusterSelection
from lowshot.instance.ulsif import ULSIF, RuLSIF
from lowshot.instance.weighted import ImportanceWeightedClassifier

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
