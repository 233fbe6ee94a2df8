"""Loading one tower (vision or text) of a checkpoint, and what the image and text
encoders share: options checks, pooling choice, the identity prefix, freezing."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import torch

from balgrad.backbones._base import freeze
from balgrad.backbones._frozen import KeepFrozen
from balgrad.backbones.hf._source import CheckpointSource
from balgrad.errors import BackboneError, ConfigError

log = logging.getLogger("balgrad.backbones")


@dataclass
class LoadedTower:
    source: CheckpointSource
    model: Any
    missing_keys: set[str]  # weights not in the checkpoint, randomly initialised
    model_config: Any  # the tower's own config
    config: Any  # the checkpoint's config
    is_clip: bool


def load_tower(src: CheckpointSource, tower: str, *, clip: bool, projection: bool) -> LoadedTower:
    """The ``tower`` ("vision" or "text") of a checkpoint: a CLIP checkpoint yields its
    CLIP tower, anything else ``AutoModel``; ``clip`` insists on CLIP, ``projection``
    needs it.

    Args:
        src: The checkpoint.
        tower: ``"vision"`` or ``"text"``.
        clip: Insist on a CLIP checkpoint.
        projection: Load the CLIP tower with its projection.

    Returns:
        The loaded tower: the model, its configs and whether it is CLIP.

    Raises:
        BackboneError: The checkpoint cannot be found, is of the other kind, or is not
            CLIP where ``clip`` or ``projection`` needs it.
    """
    import transformers
    from transformers import AutoConfig, AutoModel

    config = src.load("config", AutoConfig.from_pretrained)
    check_tower_kind(src, config, tower)
    is_clip = _is_clip(config) or getattr(config, "model_type", None) == f"clip_{tower}_model"
    if clip and not is_clip:
        raise BackboneError(
            f"backbone {src.label!r}: not a CLIP checkpoint (model_type={config.model_type!r}); "
            f"use 'hf:{src.name}'"
        )
    if projection and not is_clip:
        raise ConfigError(f"backbone {src.label!r}: option 'projection' needs a CLIP checkpoint")
    if is_clip:
        kind = "Vision" if tower == "vision" else "Text"
        cls = getattr(transformers, f"CLIP{kind}Model{'WithProjection' if projection else ''}")
        model_config = getattr(config, f"{tower}_config") if _is_clip(config) else config
        if projection and _is_clip(config):
            model_config.projection_dim = config.projection_dim

        def load_model(target: str, **kw: Any) -> Any:
            return cls.from_pretrained(target, config=model_config, output_loading_info=True, **kw)

    else:
        model_config = config

        def load_model(target: str, **kw: Any) -> Any:
            return AutoModel.from_pretrained(target, output_loading_info=True, **kw)

    model, info = src.load("model", load_model)
    missing = set((info or {}).get("missing_keys") or ())
    _warn_missing(src.label, missing)
    return LoadedTower(src, model, missing, model_config, config, is_clip)


#: the balgrad modality kind whose backbone a checkpoint of each kind of model can be
_MODALITY_KIND = {"vision": "image", "text": "text"}
_KIND = {"vision": "an image (vision) model", "text": "a text model"}


def checkpoint_kinds(config: Any) -> set[str]:
    """The towers a checkpoint's config can give: ``vision`` (pixel input: ``num_channels``
    or ``image_size``, or a ``vision_config``), ``text`` (a vocabulary and no pixel input,
    or a ``text_config``). Empty when the config says neither (then loading decides).

    Args:
        config: A checkpoint's config.

    Returns:
        A subset of {"vision", "text"}.
    """
    pixels = any(hasattr(config, a) for a in ("num_channels", "image_size"))
    kinds = set()
    if pixels or getattr(config, "vision_config", None) is not None:
        kinds.add("vision")
    if getattr(config, "text_config", None) is not None or (
        getattr(config, "vocab_size", None) is not None and not pixels
    ):
        kinds.add("text")
    return kinds


def check_tower_kind(src: CheckpointSource, config: Any, tower: str) -> None:
    """A text checkpoint given as the image backbone (or the reverse) is refused by name,
    before its model, tokenizer or image processor is loaded.

    Args:
        src: The checkpoint.
        config: Its config.
        tower: ``"vision"`` or ``"text"``: the tower wanted.

    Raises:
        BackboneError: The checkpoint is of the other kind only.
    """
    kinds = checkpoint_kinds(config)
    if not kinds or tower in kinds:
        return
    (kind,) = kinds
    arch = ", ".join(getattr(config, "architectures", None) or []) or "no architectures listed"
    raise BackboneError(
        f"backbone {src.label!r} is {_KIND[kind]} (model_type {config.model_type!r}, {arch}), "
        f"not {_KIND[tower]}; give it to a modality of kind {_MODALITY_KIND[kind]} "
        f"(--backbone <modality>={src.label})"
    )


def precheck_tower(name: str, kind: str, options: dict[str, Any]) -> None:
    """:func:`check_tower_kind` for a ``hf:``/``clip:`` backbone of a modality of ``kind``
    from its config alone (cheap: no weights), so a run can refuse the mismatch before
    loading data. Silent for a kind without Hugging Face towers (only image and text have
    them), and when the config cannot be read: loading the backbone later reports why.

    Args:
        name: The backbone's name (``hf:...``, ``clip:...``; others are not checked).
        kind: The modality's kind.
        options: The backbone's options (revision, cache_dir...).

    Raises:
        BackboneError: The checkpoint is of the other kind.
    """
    tower = {v: k for k, v in _MODALITY_KIND.items()}.get(kind)
    prefix, colon, rest = name.partition(":")
    if tower is None or not colon or prefix.lower() not in ("hf", "clip"):
        return
    try:
        from transformers import AutoConfig

        keys = ("revision", "cache_dir", "local_files_only", "trust_remote_code")
        src = CheckpointSource(name, rest, **{k: options[k] for k in keys if k in options})
        config = src.load("config", AutoConfig.from_pretrained)
    except (ImportError, BackboneError):
        return
    check_tower_kind(src, config, tower)


def _is_clip(config: Any) -> bool:
    return getattr(config, "model_type", None) == "clip"


def _warn_missing(label: str, missing: set[str]) -> None:
    missing = {k for k in missing if "pooler" not in k}
    if missing:
        shown = ", ".join(sorted(missing)[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        log.warning(
            "backbone %r: %d weights were not in the checkpoint and are randomly initialised: %s%s",
            label,
            len(missing),
            shown,
            more,
        )


#: the ``pooling`` option of both towers
Pooling = Literal["auto", "pooler", "cls", "mean"]


class HFTower(KeepFrozen):
    """The part :class:`HFImageEncoder` and :class:`HFTextEncoder` share."""

    label: str
    model: torch.nn.Module
    pooling: str

    def _open_tower(
        self,
        src: CheckpointSource,
        tower: str,
        pooling: str,
        *,
        clip: bool,
        projection: bool,
    ) -> LoadedTower:
        """Load the tower into ``self.model``; the loaded tower."""
        self.label = src.label
        loaded = load_tower(src, tower, clip=clip, projection=projection)
        self.model = loaded.model
        self.projection = bool(projection)
        return loaded

    def _set_pooling(
        self, requested: str, probe: Any, loaded: LoadedTower, fallback: str, hint: str = ""
    ) -> None:
        """Resolve ``"auto"`` from a probe output: the pooled output when the model has one
        whose weights are in the checkpoint, else ``fallback``. A pooler left unused gets
        no gradient (unused trainable parameters upset DDP when fine-tuning)."""
        has_pooler = getattr(probe, "pooler_output", None) is not None
        pooler_loaded = not any("pooler" in k for k in loaded.missing_keys)
        if self.projection:
            pooling = "projection"
        elif requested == "auto":
            pooling = "pooler" if has_pooler and pooler_loaded else fallback
        else:
            pooling = requested
        if pooling == "pooler" and not has_pooler:
            raise ConfigError(
                f"backbone {self.label!r}: pooling='pooler' but the model has no pooled output"
                + hint
            )
        self.pooling = pooling
        if pooling != "pooler":
            pooler = getattr(self.model, "pooler", None)
            if isinstance(pooler, torch.nn.Module):
                for p in pooler.parameters():
                    p.requires_grad_(False)

    def _identity_prefix(self, kind: str, loaded: LoadedTower) -> str:
        """``hf-<kind>:<checkpoint>|tower=...|pool=...``: part of the feature-cache key."""
        tower = "clip" if loaded.is_clip else "auto"
        # a hub commit pins the weights; a local folder's hash has only their sizes and mtimes
        self.identity_covers_weights = loaded.source.pins_weights(loaded.config)
        return (
            f"hf-{kind}:{loaded.source.identity(loaded.config)}|tower={tower}|pool={self.pooling}"
        )

    def _freeze_unless(self, finetune: bool) -> None:
        if finetune:
            self.trainable = True
            self.model.train()
        else:
            freeze(self)  # type: ignore[arg-type]
