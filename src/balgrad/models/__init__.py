from balgrad.models.declared import DeclaredModel
from balgrad.models.fusion import FUSIONS, create_fusion
from balgrad.models.multimodal import ModelOutput, MultimodalModel, Readout
from balgrad.models.two_tower import TwoTowerModel

__all__ = [
    "FUSIONS",
    "DeclaredModel",
    "ModelOutput",
    "MultimodalModel",
    "Readout",
    "TwoTowerModel",
    "create_fusion",
]
