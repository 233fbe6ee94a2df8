"""A Hugging Face vision model as a balgrad image encoder."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import Field

from balgrad.backbones._base import ImageEncoder
from balgrad.backbones._pixels import center_crop, resize, resize_shortest, to_channels
from balgrad.backbones.hf._image_preprocess import norm_stats, resize_plan
from balgrad.backbones.hf._source import CheckpointSource
from balgrad.backbones.hf._tower import HFTower, Pooling
from balgrad.errors import BackboneError, ConfigError
from balgrad.registry import validated

#: an image side in pixels (the size option's range)
Pixels = Annotated[int, Field(ge=1, le=4096)]

IMAGE_POOLINGS = typing.get_args(Pooling)


class HFImageEncoder(HFTower, ImageEncoder):
    """A Hugging Face vision model (``hf:<id|path>``; ``clip:<id|path>`` forces the CLIP tower).

    Args:
        name: The Hub id or local path of the checkpoint.
        finetune: False (default) freezes the model; True keeps it trainable.
        pooling: ``"auto"`` (the model's pooled output when it has one whose weights are in
            the checkpoint, else the CLS token, else the spatial mean), ``"pooler"``,
            ``"cls"`` or ``"mean"`` (mean over tokens or over the feature map).
        projection: CLIP only: use ``CLIPVisionModelWithProjection`` and output the
            projected ``image_embeds`` (the space shared with the text tower).
        image_size, image_mean, image_std: override the image processor's values (needed
            when the checkpoint has no ``preprocessor_config.json``).
        trust_remote_code, revision, cache_dir, local_files_only: passed to
            ``from_pretrained`` (``trust_remote_code`` is False by default).
        clip: Force the CLIP tower (what the ``clip:`` prefix sets).
    """

    @validated
    def __init__(
        self,
        name: str,
        finetune: bool = False,
        pooling: Pooling = "auto",
        projection: bool = False,
        image_size: Pixels | tuple[Pixels, Pixels] | None = None,
        image_mean: float | tuple[float, ...] | None = None,
        image_std: float | tuple[float, ...] | None = None,
        trust_remote_code: bool = False,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool | None = None,
        clip: bool = False,
    ) -> None:
        super().__init__()
        label = f"{'clip' if clip else 'hf'}:{name}"
        src = CheckpointSource(
            label, name, revision, cache_dir, local_files_only, trust_remote_code
        )
        loaded = self._open_tower(src, "vision", pooling, clip=clip, projection=projection)
        self.channels = int(getattr(loaded.model_config, "num_channels", 3) or 3)
        processor = None
        if image_size is None or image_mean is None or image_std is None:
            processor = self._image_processor(loaded.source)
        self._plan = resize_plan(processor, image_size, loaded.model_config)
        self.image_mean, self.image_std = norm_stats(
            processor, image_mean, image_std, self.channels
        )
        # plain tensors, not buffers: preprocessing runs on the CPU (data loader workers)
        self._mean = torch.tensor(self.image_mean).view(-1, 1, 1)
        self._std = torch.tensor(self.image_std).view(-1, 1, 1)

        # probe once: output kinds decide "auto" pooling and the output size
        self.model.eval()
        with torch.no_grad():
            out = self.model(pixel_values=self.preprocess(self.blank_image()).unsqueeze(0))
        hidden = getattr(out, "last_hidden_state", None)
        fallback = "cls" if hidden is not None and hidden.dim() == 3 else "mean"
        self._set_pooling(pooling, out, loaded, fallback)
        if self.pooling in ("cls", "mean") and hidden is None:
            raise ConfigError(
                f"backbone {self.label!r}: pooling={self.pooling!r} needs last_hidden_state"
            )
        if self.pooling == "cls" and hidden.dim() != 3:
            raise ConfigError(
                f"backbone {self.label!r}: pooling='cls' needs token outputs, this model gives "
                "a feature map; use pooling='mean'"
            )
        self.out_dim = int(self._pool(out).shape[-1])
        self.identity = (
            f"{self._identity_prefix('image', loaded)}"
            f"|plan={self._plan}|mean={self.image_mean}|std={self.image_std}"
        )
        self._freeze_unless(finetune)

    def _image_processor(self, src: CheckpointSource) -> Any:
        from transformers import AutoImageProcessor

        try:
            return src.load("image processor", AutoImageProcessor.from_pretrained)
        except BackboneError as e:
            raise BackboneError(
                f"backbone {self.label!r}: no usable image processor in the checkpoint; pass "
                f"the options image_size, image_mean and image_std. ({e})"
            ) from e

    # preprocessing ---------------------------------------------------------

    def input_size(self) -> tuple[int, int]:
        """The model input's (height, width), after resizing and cropping.

        Returns:
            (h, w).
        """
        mode, size, crop = self._plan
        return crop or size

    def blank_image(self) -> torch.Tensor:
        """A missing image on the raw scale: zeros at the model's input size.

        Returns:
            ``[3, H, W]``.
        """
        h, w = self.input_size()
        return torch.zeros(3, h, w)

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """One raw image ``[C, H, W]`` in [0, 1] -> the model's input: channels converted,
        resized and cropped as the image processor does, normalised.

        Args:
            image: The image.

        Returns:
            ``[channels, h, w]``.
        """
        x = to_channels(image.float(), self.channels)
        mode, size, crop = self._plan
        x = resize(x, size) if mode == "resize" else resize_shortest(x, size)
        if crop is not None:
            x = center_crop(x, crop)
        return (x - self._mean.to(x.device)) / self._std.to(x.device)

    # forward ---------------------------------------------------------------

    def _pool(self, out: Any) -> torch.Tensor:
        if self.pooling == "projection":
            return out.image_embeds
        if self.pooling == "pooler":
            return out.pooler_output.flatten(1)
        h = out.last_hidden_state
        if self.pooling == "cls":
            return h[:, 0]
        return h.mean(1) if h.dim() == 3 else h.flatten(2).mean(-1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Embed a batch of preprocessed images (pooled by ``pooling``).

        Args:
            pixels: ``[B, C, H, W]``, as :meth:`preprocess` makes them.

        Returns:
            ``[B, out_dim]``.
        """
        return self._pool(self.model(pixel_values=pixels))
