"""Hugging Face backbones by name or local path (``hf:<id|path>``, ``clip:<id|path>``).

Images: any ``AutoModel`` vision model with a pooled output or token/feature-map outputs
(ViT, ResNet, ConvNeXt, ...); a CLIP checkpoint uses its vision tower (``CLIPVisionModel``).
Preprocessing reads the checkpoint's image processor (size, crop, mean, std) but runs as
torch ops on a ``[C, H, W]`` tensor in [0, 1], so no PIL round trip is needed.

Texts: any ``AutoModel`` text encoder (BERT, DistilBERT, RoBERTa, ...) with the checkpoint's
``AutoTokenizer``; a CLIP checkpoint uses its text tower (``CLIPTextModel``).

Nothing is downloaded when the checkpoint is a local directory or already in the local
Hugging Face cache. Otherwise a download is tried unless ``HF_HUB_OFFLINE`` /
``TRANSFORMERS_OFFLINE`` is set or ``local_files_only=True``; when the checkpoint cannot be
found a :class:`~balgrad.errors.BackboneError` says so and how to supply a local path.

Frozen by default (``finetune=False``): parameters get no gradient and the encoder stays in
eval mode even when its parent module is put in training mode.

Modules: :mod:`.source` (where a checkpoint comes from, offline errors, identity),
:mod:`.tower` (loading a model tower and what both encoders share), :mod:`.image_preprocess`
(the image processor's settings as torch ops), :mod:`.image`, :mod:`.text`.
"""

from balgrad.backbones.hf._image import IMAGE_POOLINGS, HFImageEncoder
from balgrad.backbones.hf._source import hub_offline, local_checkpoint_hash
from balgrad.backbones.hf._text import TEXT_POOLINGS, HFTextEncoder

__all__ = [
    "IMAGE_POOLINGS",
    "TEXT_POOLINGS",
    "HFImageEncoder",
    "HFTextEncoder",
    "hub_offline",
    "local_checkpoint_hash",
]
