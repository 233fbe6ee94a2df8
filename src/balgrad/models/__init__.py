"""The M-modal model (one tower per modality, a fusion, a head per modality and
one fused), declared existing models and the fusions.
"""

from balgrad.models._declared import DeclaredModel
from balgrad.models._fusion import FUSIONS, create_fusion, register_fusion
from balgrad.models._multimodal import ModelOutput, MultimodalModel, Readout

__all__ = [
    "DeclaredModel",
    "FUSIONS",
    "ModelOutput",
    "MultimodalModel",
    "Readout",
    "create_fusion",
    "register_fusion",
]
