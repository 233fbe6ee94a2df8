from balgrad.models.fusion import FUSIONS, create_fusion
from balgrad.models.two_tower import ModelOutput, TwoTowerModel

__all__ = ["FUSIONS", "ModelOutput", "TwoTowerModel", "create_fusion"]
