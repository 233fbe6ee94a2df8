"""balgrad: BalGrad (See-Saw Modality Balance, NAACL 2025) and its baselines as plug-in
PyTorch training strategies, with the paper's evaluation protocol."""

from balgrad.models import DeclaredModel, ModelOutput, MultimodalModel, TwoTowerModel
from balgrad.strategies import Strategy, create_strategy, list_strategies

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
