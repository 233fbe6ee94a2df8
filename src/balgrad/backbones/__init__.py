"""Encoders by modality kind and name (``create_backbone(kind, name)``), with the
pretrained pip-shipped, Hugging Face (:mod:`balgrad.backbones.hf`), ResNet-18, sequence and
small towers, and the frozen-feature cache.
"""

from balgrad.backbones._audio import LogSpectrogram
from balgrad.backbones._base import ImageEncoder, TextEncoder, freeze
from balgrad.backbones._cache import FeatureCache
from balgrad.backbones._factory import (
    BACKBONES,
    CONTRACTS,
    BackboneContract,
    create_backbone,
    list_backbones,
    register_backbone,
)
from balgrad.backbones._pretrained_pip import EfficientNetLite0Encoder, MiniLMTextEncoder
from balgrad.backbones._resnet import AudioResNet18, VisualResNet18
from balgrad.backbones._sequence import SequenceEncoder
from balgrad.backbones._small import SmallCNN, SmallTextEncoder
from balgrad.backbones._spectrogram_image import SpectrogramImageEncoder

__all__ = [
    "AudioResNet18",
    "BACKBONES",
    "CONTRACTS",
    "BackboneContract",
    "EfficientNetLite0Encoder",
    "FeatureCache",
    "ImageEncoder",
    "LogSpectrogram",
    "MiniLMTextEncoder",
    "SequenceEncoder",
    "SmallCNN",
    "SmallTextEncoder",
    "SpectrogramImageEncoder",
    "TextEncoder",
    "VisualResNet18",
    "create_backbone",
    "freeze",
    "list_backbones",
    "register_backbone",
]
