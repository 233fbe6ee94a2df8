"""``pixels``: a grey thumbnail of the image through one linear layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from balgrad.backbones import ImageEncoder, register_backbone


@register_backbone(
    "image", "pixels", description="grey thumbnail, one linear layer (example plug-in)"
)
class PixelEncoder(ImageEncoder):
    def __init__(self, *, size: int = 8, out_dim: int = 16):
        super().__init__()
        self.size, self.out_dim = size, out_dim
        self.identity = f"pixels:{size}:{out_dim}"
        self.linear = nn.Linear(size * size, out_dim)

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        grey = image.mean(dim=0, keepdim=True)[None]
        return F.interpolate(grey, size=(self.size, self.size), mode="area")[0]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(pixels.flatten(1)))
