"""Feature-based transfer: maps that align source and target features.

Shallow adapters (scikit-learn transformers over arrays) live in
:mod:`lowshot.feature.shallow`; each takes ``sample_domain`` (see :mod:`lowshot.domains`).
Deep methods (alignment losses trained with the network: DANN, DAN, JAN, Deep CORAL,
CDAN, MCC, MDD) live in :mod:`lowshot.feature.alignment`, their trainer in
:mod:`lowshot.feature.deep`.
"""

from typing import Any

from lowshot.feature._base import BaseAdapter, DAClassifier
from lowshot.feature.alignment import Alignment
from lowshot.feature.shallow import CORAL, JDA, TCA, OTMapping, SubspaceAlignment
from lowshot.feature.source_free import SHOT, TENT, SourceFree
from lowshot.registry import Family, MethodInfo, register_family


def deep_names() -> list[str]:
    """Registered deep methods (alignment losses trained with the network), ``erm`` first."""
    from lowshot.registry import list_methods

    return [m.name for m in list_methods("feature")
            if isinstance(m.factory, type) and issubclass(m.factory, Alignment)]  # fmt: skip


def _check(info: MethodInfo) -> None:
    from sklearn.base import clone

    factory: Any = info.factory
    if isinstance(factory, type) and issubclass(factory, BaseAdapter):  # shallow: sklearn
        est = factory()
        assert clone(est).get_params() == est.get_params()
    elif isinstance(factory, type) and issubclass(factory, SourceFree):  # a trained model, no source
        m = factory()
        assert type(m)().set_params(**m.get_params()).get_params() == m.get_params()
    else:  # deep: an alignment loss trained with the network
        assert isinstance(factory, type) and issubclass(factory, Alignment), (
            f"{info.name}: neither adapter nor alignment"
        )


register_family(
    Family(
        "feature",
        "domain adaptation aligning features",
        (BaseAdapter, Alignment, SourceFree),
        ("adapt",),
        _check,
    )
)

__all__ = [
    "CORAL",
    "Alignment",
    "JDA",
    "TCA",
    "BaseAdapter",
    "DAClassifier",
    "deep_names",
    "OTMapping",
    "SHOT",
    "SourceFree",
    "TENT",
    "SubspaceAlignment",
]
