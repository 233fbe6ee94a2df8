"""balgrad: BalGrad (See-Saw Modality Balance, NAACL 2025) and its baselines as plug-in
PyTorch training strategies, with the paper's evaluation protocol."""

from balgrad import _moved

_moved.install()  # old import paths of moved modules, with a DeprecationWarning (0.2 only)

from balgrad.models import DeclaredModel, ModelOutput, MultimodalModel, TwoTowerModel  # noqa: E402
from balgrad.strategies import Strategy, create_strategy, list_strategies  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "DeclaredModel",
    "ModelOutput",
    "MultimodalModel",
    "Strategy",
    "TwoTowerModel",
    "__version__",
    "create_strategy",
    "list_strategies",
]
