"""Modality kinds (SPEC section 6): what a missing input is, and what noise means.

A dataset declares its modalities as ``name -> kind`` (``DatasetInfo.modalities``). The
kind fixes the raw input's form (see :mod:`balgrad.data._base`), the blank input that
stands for a missing modality (``missing = "input"``), and the noise of the
``noisy_<m>@level`` condition:

========  =====================  ==============================================  =======  ==========
kind      missing input          noise (``level``)                               default  range
========  =====================  ==============================================  =======  ==========
image     all-zero pixels        Gaussian pixel noise, std σ on [0, 1], clipped  σ = 0.5  [0, 10]
text      the empty string       each token replaced with probability p          p = 0.5  [0, 1]
audio     silence (zeros)        white noise at an SNR of ``level`` dB            0 dB     [-60, 120]
video     all-zero frames        Gaussian noise, std σ on the normalised frames  σ = 1.0  [0, 100]
features  all-zero features      Gaussian noise, std σ × each feature's std      σ = 1.0  [0, 100]
========  =====================  ==============================================  =======  ==========

A level outside its kind's range (:data:`NOISE_RANGES`) is refused when the run's config
is built; the evaluation still checks every impaired input and logit, and scores a
condition whose values are not finite as undefined (:mod:`balgrad.evaluate._protocol`).

Noise is seeded by (eval seed, sample index, modality), so every method and every run
sees the same impaired test set, whatever the batch order. Text noise is applied to the
token ids when the batch is collated (:mod:`balgrad.data._batch`); the others to the raw
input of each item.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from balgrad.data._kind_io import (
    AUDIO_CELL,
    FEATURES_CELL,
    IMAGE_CELL,
    TEXT_CELL,
    CellReader,
    check_features_input,
    check_text_input,
    tensor_form,
)
from balgrad.errors import ConfigError
from balgrad.names import check_modality_names


def sample_generator(seed: int, index: int, salt: int = 0) -> torch.Generator:
    """The generator of one sample's noise: the same for the same (seed, index, salt) in
    every run, whatever the order samples are drawn in.

    Args:
        seed: The run's noise seed.
        index: The sample's index.
        salt: The modality's salt.

    Returns:
        A seeded ``torch.Generator``.
    """
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + index * 7919 + salt) % (2**63 - 1))
    return g


#: noise salts of the two modalities of SPEC sections 1-5, as they were before
#: modalities were named: tables recorded with 0.1.x reproduce with this version because
#: these keep the noise draws of 0.1.0 (dropping them changes every Noisy number)
LEGACY_NOISE_SALTS = {"image": 1, "text": 2}


def noise_salt(modality: str) -> int:
    """The salt of ``modality``'s noise stream: distinct per name, stable across runs.

    Args:
        modality: The modality's name.

    Returns:
        The salt.
    """
    if modality in LEGACY_NOISE_SALTS:
        return LEGACY_NOISE_SALTS[modality]
    return 16 + int.from_bytes(hashlib.sha256(modality.encode()).digest()[:6], "big")


def _map_tensor(x: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``fn`` on a tensor input, or on the ``features`` of a mapping input."""
    if isinstance(x, Mapping):
        return {**x, "features": fn(x["features"])}
    return fn(x)


def _zeros(x: Any) -> Any:
    return _map_tensor(x, torch.zeros_like)


def _gaussian(x: torch.Tensor, std: Any, g: torch.Generator) -> torch.Tensor:
    return x + std * torch.randn(x.shape, generator=g, dtype=x.dtype)


def noisy_image(image: torch.Tensor, sigma: float, seed: int, index: int, salt: int = 1):
    """Gaussian pixel noise with std ``sigma`` on the [0, 1] scale, clipped to [0, 1].

    Args:
        image: ``[C, H, W]`` in [0, 1].
        sigma: σ.
        seed: The run's noise seed.
        index: The sample's index.
        salt: The modality's salt.

    Returns:
        The noisy image.
    """
    return _gaussian(image, sigma, sample_generator(seed, index, salt)).clamp_(0.0, 1.0)


def noisy_audio(wave: torch.Tensor, snr_db: float, seed: int, index: int, salt: int):
    """White Gaussian noise at ``snr_db`` dB below the clip's own mean power (a silent
    clip stays silent: there is no signal to set the level).

    Args:
        wave: The waveform.
        snr_db: The signal-to-noise ratio in dB.
        seed: The run's noise seed.
        index: The sample's index (each sample its own noise).
        salt: The modality's salt (:func:`noise_salt`).

    Returns:
        The noisy waveform.
    """
    power = wave.double().pow(2).mean()
    std = float(torch.sqrt(power / 10.0 ** (snr_db / 10.0)))
    return _gaussian(wave, std, sample_generator(seed, index, salt))


def noisy_video(frames: torch.Tensor, sigma: float, seed: int, index: int, salt: int):
    """Gaussian noise with std ``sigma`` on the normalised frames (no clipping: they are
    not on a bounded scale).

    Args:
        frames: The clip.
        sigma: σ.
        seed: The run's noise seed.
        index: The sample's index.
        salt: The modality's salt.

    Returns:
        The noisy clip.
    """
    return _gaussian(frames, sigma, sample_generator(seed, index, salt))


def noisy_features(x: Any, sigma: float, seed: int, index: int, salt: int, std: torch.Tensor):
    """Gaussian noise with std ``sigma * std[f]`` on feature f (``std`` [F]: each
    feature's std over the split).

    Args:
        x: The features (a tensor, or a mapping with ``"features"``).
        sigma: σ, in feature stds.
        seed: The run's noise seed.
        index: The sample's index.
        salt: The modality's salt.
        std: Each feature's std ``[F]``.

    Returns:
        The noisy features, as ``x``.
    """
    g = sample_generator(seed, index, salt)
    return _map_tensor(x, lambda f: _gaussian(f, sigma * std.to(f.dtype), g))


def _in_range(what: str, low: float, high: float) -> Callable[[float], None]:
    """A check that a noise level is a finite number in [low, high]: beyond the range the
    impaired input is no longer a number (an SNR of -1000 dB makes the noise std overflow
    to inf, and the input NaN) or cannot differ from the range's end (σ = 10 on [0, 1]
    pixels, clipped, is already pure noise)."""

    def check(level: float) -> None:
        if not (math.isfinite(level) and low <= level <= high):
            raise ConfigError(f"{what} must be a finite number in [{low:g}, {high:g}], got {level}")

    return check


#: each kind's range of noise levels (a level outside it is refused when the config is built)
NOISE_RANGES = {
    "image": (0.0, 10.0),
    "text": (0.0, 1.0),
    "audio": (-60.0, 120.0),
    "video": (0.0, 100.0),
    "features": (0.0, 100.0),
}


def _noise_check(kind: str, what: str) -> Callable[[float], None]:
    return _in_range(what, *NOISE_RANGES[kind])


@dataclass(frozen=True)
class ModalityKind:
    """How the protocol treats one kind of modality: everything that depends on the kind
    is asked of this object, never decided on the kind's name, so a kind added with
    :func:`register_kind` is checked, read and impaired as the built-in ones.

    ``blank(x)``: the missing input shaped like ``x``. ``noise``: ``fn(x, level, seed,
    index, salt)`` on one raw input; None with ``token_noise`` (text: the token ids get it
    at collation), or None for a kind without noise (the protocol then has no noisy row for
    it). ``noise_symbol``/``noise_unit`` describe ``level`` in tables and help.
    ``needs_feature_std``: the noise takes the split's per-feature std as ``std=``.
    ``input_form``: ``check(x, where)`` of one raw input's form, raising ``DataError``
    (the dataset contract; None: not checked). ``tokenized``: the raw input is a ``str``
    that a tokenizer fitted on the training split's texts turns into token ids (the text
    kind). ``cell``: how the generic reader reads a cell of this kind
    (:class:`~balgrad.data._kind_io.CellReader`; None: that reader does not read it).
    """

    name: str
    blank: Callable[[Any], Any]
    noise: Callable[..., Any] | None
    default_noise: float
    check_noise: Callable[[float], None]
    noise_symbol: str
    noise_unit: str
    needs_feature_std: bool = False
    token_noise: bool = False
    input_form: Callable[[Any, str], None] | None = None
    tokenized: bool = False
    cell: CellReader | None = None

    @property
    def has_noise(self) -> bool:
        """Whether the kind has a noise impairment."""
        return self.noise is not None or self.token_noise

    def check_input(self, x: Any, where: str) -> None:
        """Check one raw input's form (type, dtype, dimensions), not its values.

        Args:
            x: The input.
            where: The item and modality, for the message.

        Raises:
            DataError: It is not in the kind's form.
        """
        if self.input_form is not None:
            self.input_form(x, where)

    def describe_noise(self, level: float) -> str:
        """A noise level as reports write it (``σ = 0.1``, ``SNR = 10 dB``).

        Args:
            level: The level.

        Returns:
            The text.
        """
        return f"{self.noise_symbol} = {level:g}{self.noise_unit}"


#: the registered modality kinds by name (image, text, audio, video, features)
KINDS: dict[str, ModalityKind] = {
    k.name: k
    for k in (
        ModalityKind(
            "image", torch.zeros_like, noisy_image, 0.5,
            _noise_check("image", "σ (pixel-noise std)"), "σ", "",
            input_form=tensor_form("image", (3,), "[C, H, W]", channels=(1, 3)),
            cell=IMAGE_CELL,
        ),
        ModalityKind(
            "text", lambda x: "", None, 0.5,
            _noise_check("text", "p (token-replacement probability)"), "p", "", token_noise=True,
            input_form=check_text_input, tokenized=True, cell=TEXT_CELL,
        ),
        ModalityKind(
            "audio", _zeros, noisy_audio, 0.0, _noise_check("audio", "the SNR in dB"), "SNR", " dB",
            # a spectrogram [C, F, N] too: Kinetics-Sounds
            input_form=tensor_form("audio", (1, 2, 3), "[T], [C, T] or a spectrogram [C, F, N]"),
            cell=AUDIO_CELL,
        ),
        ModalityKind(
            "video", _zeros, noisy_video, 1.0, _noise_check("video", "σ (frame-noise std)"), "σ",
            "", input_form=tensor_form("video", (4,), "[C, T, H, W]"),
        ),
        ModalityKind(
            "features", _zeros, noisy_features, 1.0,
            _noise_check("features", "σ (noise std in units of each feature's std)"), "σ",
            "×std", needs_feature_std=True, input_form=check_features_input, cell=FEATURES_CELL,
        ),
    )
}  # fmt: skip


def register_kind(kind: ModalityKind) -> ModalityKind:
    """Add a modality kind (a dataset may then declare modalities of it).

    Args:
        kind: The kind.

    Returns:
        ``kind``.

    Raises:
        ConfigError: The name is taken.
    """
    if kind.name in KINDS:
        raise ConfigError(f"modality kind {kind.name!r} is already registered")
    KINDS[kind.name] = kind
    return kind


def modality_kind(kind: str, where: str = "modality kind") -> ModalityKind:
    """The registered kind of a name.

    Args:
        kind: ``image``, ``text``, ``audio``, ``video``, ``features`` or a registered kind.
        where: What names it, for the message.

    Returns:
        The kind.

    Raises:
        ConfigError: An unknown kind.
    """
    try:
        return KINDS[kind]
    except KeyError:
        raise ConfigError(
            f"{where}: unknown kind {kind!r}; expected one of {', '.join(KINDS)}"
        ) from None


def check_modalities_of(modalities: Mapping[str, str], where: str) -> None:
    """A dataset's ``name -> kind`` map: at least two, each kind known, the names checked
    once here against everything balgrad builds from them
    (:func:`balgrad.names.check_modality_names`: ASCII identifiers; no ``task``, whose
    ``loss_task`` is the task loss; ...).

    Args:
        modalities: ``{name: kind}``.
        where: The dataset, for the message.

    Raises:
        ConfigError: Fewer than two modalities, an unknown kind, or a bad name.
    """
    if len(modalities) < 2:
        raise ConfigError(
            f"{where}: a multimodal dataset needs at least two modalities, got {list(modalities)}"
        )
    check_modality_names(modalities, where)
    for name, kind in modalities.items():
        modality_kind(kind, f"{where}: modality {name!r}")


def feature_std(dataset, modality: str) -> torch.Tensor:
    """``[F]``: each feature's std over every sample and step of ``dataset``'s modality (the
    scale of ``features`` noise). A dataset may provide ``feature_std(modality)`` itself;
    otherwise it is computed from the items (real steps only for a mapping with
    ``lengths``). A constant feature gets std 1 rather than 0 noise.

    Args:
        dataset: A dataset.
        modality: A ``features`` modality.

    Returns:
        ``[F]``, float64.
    """
    own = getattr(dataset, "feature_std", None)
    if callable(own):
        return torch.as_tensor(own(modality), dtype=torch.float64)
    total = sq = None
    count = 0
    for i in range(len(dataset)):
        x = dataset[i].inputs[modality]
        f = x["features"] if isinstance(x, Mapping) else x
        if isinstance(x, Mapping) and x.get("lengths") is not None:
            f = f[: int(x["lengths"])]
        f = torch.as_tensor(f, dtype=torch.float64).reshape(-1, f.shape[-1])
        total = f.sum(0) if total is None else total + f.sum(0)
        sq = (f * f).sum(0) if sq is None else sq + (f * f).sum(0)
        count += f.shape[0]
    if not count:
        raise ConfigError(f"feature noise on {modality!r}: the split has no feature steps")
    var = (sq / count - (total / count) ** 2).clamp_min(0.0)
    std = var.sqrt()
    return torch.where(std > 0, std, torch.ones_like(std))


def declared_sample_rate(dataset) -> int | None:
    """The rate (Hz) of a dataset's waveforms where it declares one in ``sample_rate``
    (keypad; CREMA-D; Kinetics-Sounds with that option set); a split carved from a dataset
    (``base``) has its rate. None: not declared (the rate of each file is its own).

    Args:
        dataset: A dataset.

    Returns:
        The rate, or None.
    """
    while dataset is not None:
        rate = getattr(dataset, "sample_rate", None)
        if isinstance(rate, int) and not isinstance(rate, bool):
            return rate
        dataset = getattr(dataset, "base", None)
    return None
