"""lowshot: transfer learning when labels and compute are scarce."""

__version__ = "0.1.0"

from lowshot._runtime import tune_malloc as _tune_malloc  # noqa: E402

# Fast CPU inference by default (see lowshot._runtime); LOWSHOT_TUNE_MALLOC=0 opts out.
_tune_malloc()

from lowshot.api import evaluate, fit, predict  # noqa: E402
from lowshot.backbones import create_backbone, list_backbones  # noqa: E402
from lowshot.registry import get_method, list_methods  # noqa: E402

__all__ = [
    "__version__",
    "create_backbone",
    "evaluate",
    "fit",
    "get_method",
    "list_backbones",
    "list_methods",
    "predict",
]
