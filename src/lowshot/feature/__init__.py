"""Feature-based transfer: maps that align source and target features.

Shallow adapters (scikit-learn transformers over arrays) live in
:mod:`lowshot.feature.shallow`; each takes ``sample_domain`` (see :mod:`lowshot.domains`).
Deep methods (alignment losses trained with the network: DANN, DAN, JAN, Deep CORAL,
CDAN, MCC, MDD) live in :mod:`lowshot.feature.alignment`, their trainer in
:mod:`lowshot.feature.deep`.
"""

from lowshot.feature._base import BaseAdapter, DAClassifier
from lowshot.feature.alignment import Alignment
from lowshot.feature.shallow import CORAL, JDA, TCA, OTMapping, SubspaceAlignment

__all__ = [
    "CORAL",
    "Alignment",
    "JDA",
    "TCA",
    "BaseAdapter",
    "DAClassifier",
    "OTMapping",
    "SubspaceAlignment",
]
