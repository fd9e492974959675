"""Feature-based transfer: maps that align source and target features.

Shallow adapters (scikit-learn transformers over arrays) live in
:mod:`lowshot.feature.shallow`; each takes ``sample_domain`` (see :mod:`lowshot.domains`).
"""

from lowshot.feature._base import BaseAdapter, DAClassifier
from lowshot.feature.shallow import CORAL, JDA, TCA, OTMapping, SubspaceAlignment

__all__ = ["CORAL", "JDA", "TCA", "BaseAdapter", "DAClassifier", "OTMapping", "SubspaceAlignment"]
