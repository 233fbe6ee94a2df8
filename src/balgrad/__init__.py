"""balgrad: BalGrad (See-Saw Modality Balance, NAACL 2025) and its baselines as plug-in
PyTorch training strategies, with the paper's evaluation protocol."""

from balgrad import _moved

_moved.install()  # old import paths of moved modules, with a DeprecationWarning (0.2 only)

from balgrad.models import DeclaredModel, ModelOutput, MultimodalModel  # noqa: E402
from balgrad.strategies import Strategy, create_strategy, list_strategies  # noqa: E402

__version__ = "0.2.0"
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
