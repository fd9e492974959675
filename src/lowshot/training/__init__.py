"""Training machinery shared by the families.

:mod:`.context` holds :class:`FitContext` and :class:`FitResult` (light); :mod:`.loop`
holds the Lightning module and trainer, imported only when a network is trained, so
that linear probing and prediction start without loading Lightning.
"""

from lowshot.training.context import FitContext, FitResult

__all__ = ["FitContext", "FitResult"]
