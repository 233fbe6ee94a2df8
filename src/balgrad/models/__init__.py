from balgrad.models.declared import DeclaredModel
from balgrad.models.fusion import FUSIONS, create_fusion
from balgrad.models.multimodal import ModelOutput, MultimodalModel, Readout

__all__ = [
    "FUSIONS",
    "DeclaredModel",
    "ModelOutput",
    "MultimodalModel",
    "Readout",
    "create_fusion",
]
