"""balgrad: BalGrad (See-Saw Modality Balance, NAACL 2025) and its baselines as plug-in
PyTorch training strategies, with the paper's evaluation protocol."""

from balgrad.models import DeclaredModel, ModelOutput, MultimodalModel
from balgrad.strategies import Strategy, create_strategy, list_strategies

__version__ = "0.1.0"
__all__ = [
    "DeclaredModel",
    "ModelOutput",
    "MultimodalModel",
    "Strategy",
    "__version__",
    "create_strategy",
    "list_strategies",
]

# the names of 0.1 kept for this release, with a DeprecationWarning (balgrad.TwoTowerModel
# among them); importing the module attaches them
from balgrad.compat import facade_getattr as __getattr__  # noqa: E402, F401
