"""The ``keypad`` built-in dataset: the digits job with a sound channel; see
:mod:`balgrad.data.readers._builtin`.

Three modalities of three kinds, generated offline: each sample is one ``digits`` sample
(the augmented handwritten digit and its generated caption, made by the digits
generator itself) plus the tone a telephone keypad plays for that digit (DTMF, ITU-T
Q.23): the sum of one *row* tone (697, 770, 852 or 941 Hz) and one *column* tone (1209,
1336 or 1477 Hz); 1 is 697 + 1209 Hz, 5 is 770 + 1336 Hz, 0 is 941 + 1336 Hz.

Every clip is jittered, seeded per sample: each tone's frequency is detuned, the
tone-pair starts at a random onset and lasts a random part of the clip, each tone has
its own gain and phase, and white noise is added at a signal-to-noise ratio (dB, relative
to the tone pair's power while it sounds). The tone parameters of every sample are cached
(content-keyed ``.npz``); each waveform, its noise included, is synthesised from them
when the sample is read.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from pydantic import Field

from balgrad.data._base import Example
from balgrad.data._cache_files import cached_npz_arrays, check_array_layout, load_npz_checked
from balgrad.data.readers._builtin_common import (
    Fraction,
    _ArrayDataset,
    _digest,
)
from balgrad.data.readers._digits import DIGITS_CLASSES, DigitsConfig, _digits_arrays, _take_split
from balgrad.data.readers._digits_options import _DigitsOptions
from balgrad.errors import ConfigError
from balgrad.registry import validated

# bump whenever the generator's output for a given config and seed changes
_KEYPAD_VERSION = 1

KEYPAD_CLASSES = list(DIGITS_CLASSES)
KEYPAD_MODALITIES = {"image": "image", "audio": "audio", "text": "text"}

#: DTMF row (low group) and column (high group) frequencies in Hz (ITU-T Q.23)
DTMF_ROWS = (697.0, 770.0, 852.0, 941.0)
DTMF_COLUMNS = (1209.0, 1336.0, 1477.0)
#: digit -> (row, column) on the keypad: 1 2 3 / 4 5 6 / 7 8 9 / * 0 #
_KEY_POSITION = {d: ((d - 1) // 3, (d - 1) % 3) for d in range(1, 10)} | {0: (3, 1)}

#: each tone's peak amplitude before its gain (the pair peaks at 0.7 at most)
_TONE_AMPLITUDE = 0.35
#: raised-cosine fade in and out of the tone pair, seconds (no clicks at the edges)
_RAMP_SECONDS = 0.005
_SPLIT_CODE = {"train": 0, "test": 1}

# the digits options, passed on to the digits generator as they are
_DIGITS_FIELDS = tuple(f.name for f in fields(_DigitsOptions))


def dtmf_frequencies(digit: int) -> tuple[float, float]:
    """The (row, column) tone frequencies in Hz of a digit's key.

    Args:
        digit: 0-9.

    Returns:
        (row, column) in Hz.

    Raises:
        ConfigError: Not a digit.
    """
    if int(digit) not in _KEY_POSITION:
        raise ConfigError(f"digit: expected 0-9, got {digit!r}")
    row, col = _KEY_POSITION[int(digit)]
    return DTMF_ROWS[row], DTMF_COLUMNS[col]


@validated
@dataclass(frozen=True)
class KeypadConfig(_DigitsOptions):
    """Options of the ``keypad`` dataset (all of them are :func:`load_builtin` options).

    The image and caption options are :class:`~balgrad.data.readers._digits.DigitsConfig`'s, with
    its defaults (``dominant``, ``strength``, ``text_signal``, ``image_noise``,
    ``image_size``, ``test_source_fraction``, ``n_train``, ``n_test``): the image and
    the caption of sample i are exactly those of ``digits`` sample i for the same options
    and seed.

    The sound (``audio``, a float32 waveform ``[T]``, ``T = round(sample_rate *
    duration)``):

    - ``sample_rate`` (8000 Hz) and ``duration`` (0.5 s);
    - ``snr_db`` (-5): the white noise's level, in dB relative to the tone pair's power
      while it sounds (lower is harder; the noise fills the whole clip);
    - ``detune``: the std of each tone's relative frequency offset (0.02: a 697 Hz tone
      lands within about ±14 Hz two times in three), clipped at 3 std;
    - ``min_tone``: the tone pair lasts a uniform fraction in [``min_tone``, 1] of the
      clip, starting at a uniform onset in what is left;
    - ``gain_jitter`` in [0, 1]: each tone's gain is uniform in [1 - ``gain_jitter``, 1].

    The defaults were chosen by the criteria of ``docs/three-modality-benchmark.md``
    (candidate K3) for the towers EfficientNet-Lite0 at 112 px, ``efficientnet-lite0-mel``
    (500-1700 Hz, 112 px) and MiniLM, frozen, joint training as the default job: alone,
    the image reaches ~72%, the sound ~66%, the caption ~98%; the jointly trained
    model's ``only_<m>`` scores are ~58 (image), ~47 (audio), ~81 (text).

    ``cache_dir``: where to cache the generated arrays as ``.npz`` (the digits part in
    its own ``digits-<key>.npz``, the tone parameters in ``keypad-<key>.npz``; ``None``
    = in memory only).
    """

    # telephone audio: the highest tone, detuned by up to 10%, stays below the Nyquist
    # frequency from 3,250 Hz; 48 kHz is far past what a DTMF tone needs
    sample_rate: Annotated[int, Field(ge=3250, le=48_000)] = 8000
    duration: Annotated[float, Field(ge=0.05, le=10)] = 0.5
    snr_db: Annotated[float, Field(ge=-60, le=120)] = -5.0
    detune: Annotated[float, Field(ge=0, le=0.1)] = 0.02
    min_tone: Annotated[float, Field(ge=0.05, le=1)] = 0.3
    gain_jitter: Fraction = 0.5
    cache_dir: str | None = None

    @property
    def num_samples(self) -> int:
        """T, the length of every waveform."""
        return int(round(self.sample_rate * self.duration))

    def digits_config(self) -> DigitsConfig:
        """The options of the digits generator that makes the images and captions.

        Returns:
            The :class:`~balgrad.data.readers._digits.DigitsConfig`.
        """
        return DigitsConfig(
            **{k: getattr(self, k) for k in _DIGITS_FIELDS}, cache_dir=self.cache_dir
        )

    def content_parts(self, seed: int) -> dict:
        """Everything that determines the generated data.

        Args:
            seed: The generation seed.

        Returns:
            The parts, JSON-serialisable.
        """
        return {
            "version": _KEYPAD_VERSION,
            "digits": self.digits_config().content_parts(seed),
            "sample_rate": self.sample_rate,
            "num_samples": self.num_samples,
            "snr_db": float(self.snr_db),
            "detune": float(self.detune),
            "min_tone": float(self.min_tone),
            "gain_jitter": float(self.gain_jitter),
        }

    def content_key(self, seed: int) -> str:
        """A digest of :meth:`content_parts` (it names the ``.npz`` cache file).

        Args:
            seed: The generation seed.

        Returns:
            The hex digest.
        """
        return _digest(self.content_parts(seed))


# ---------------------------------------------------------------------------------------
# the tones
# ---------------------------------------------------------------------------------------

#: the per-sample tone parameters: name -> (dtype kind, itemsize)
_TONE_ARRAYS = {
    "low_hz": ("f", 8),
    "high_hz": ("f", 8),
    "onset": ("i", 8),
    "length": ("i", 8),
    "gain_low": ("f", 8),
    "gain_high": ("f", 8),
    "phase_low": ("f", 8),
    "phase_high": ("f", 8),
    "noise_seed": ("u", 8),
}


def _tone_parameters(
    labels: np.ndarray, config: KeypadConfig, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """The tone pair of every sample: detuned frequencies, onset and length (in
    samples), gains, phases, and the seed of its noise."""
    n, t = len(labels), config.num_samples
    nominal = np.array([dtmf_frequencies(int(y)) for y in labels], dtype=np.float64).reshape(n, 2)
    offset = np.clip(rng.standard_normal((n, 2)), -3.0, 3.0) * config.detune
    freqs = nominal * (1.0 + offset)
    length = np.round(rng.uniform(config.min_tone, 1.0, n) * t).astype(np.int64).clip(1, t)
    onset = np.floor(rng.uniform(0.0, 1.0, n) * (t - length + 1)).astype(np.int64)
    gains = rng.uniform(1.0 - config.gain_jitter, 1.0, (n, 2))
    phases = rng.uniform(0.0, 2 * np.pi, (n, 2))
    return {
        "low_hz": freqs[:, 0],
        "high_hz": freqs[:, 1],
        "onset": onset,
        "length": np.minimum(length, t - onset),
        "gain_low": gains[:, 0],
        "gain_high": gains[:, 1],
        "phase_low": phases[:, 0],
        "phase_high": phases[:, 1],
        "noise_seed": rng.integers(0, 2**63, n, dtype=np.uint64),
    }


def synthesize(tones: dict[str, np.ndarray], i: int, config: KeypadConfig) -> np.ndarray:
    """Sample ``i``'s waveform, float32 ``[T]``: its tone pair (raised-cosine edges) plus
    its white noise at ``config.snr_db`` (seeded by the sample's ``noise_seed``).

    Args:
        tones: The tone parameters of every sample.
        i: The sample.
        config: The dataset's configuration.

    Returns:
        The waveform.
    """
    t, sr = config.num_samples, float(config.sample_rate)
    onset, length = int(tones["onset"][i]), int(tones["length"][i])
    time = np.arange(length, dtype=np.float64) / sr
    a_low = _TONE_AMPLITUDE * float(tones["gain_low"][i])
    a_high = _TONE_AMPLITUDE * float(tones["gain_high"][i])
    pair = a_low * np.sin(2 * np.pi * float(tones["low_hz"][i]) * time + tones["phase_low"][i])
    pair += a_high * np.sin(2 * np.pi * float(tones["high_hz"][i]) * time + tones["phase_high"][i])
    ramp = min(int(round(_RAMP_SECONDS * sr)), length // 2)
    if ramp > 0:
        edge = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
        pair[:ramp] *= edge
        pair[length - ramp :] *= edge[::-1]
    wave = np.zeros(t, dtype=np.float64)
    wave[onset : onset + length] = pair
    power = (a_low**2 + a_high**2) / 2.0  # of the pair while it sounds
    std = np.sqrt(power / 10.0 ** (config.snr_db / 10.0))
    noise_rng = np.random.default_rng(int(tones["noise_seed"][i]))
    wave += std * noise_rng.standard_normal(t)
    return wave.astype(np.float32)


def _generate_tones(config: KeypadConfig, seed: int, labels: dict[str, np.ndarray]):
    root = np.random.SeedSequence([int(seed), 0x7E1E])
    out: dict[str, np.ndarray] = {}
    for split, ss in zip(("train", "test"), root.spawn(2)):
        params = _tone_parameters(labels[split], config, np.random.default_rng(ss))
        out.update({f"{split}_{k}": v for k, v in params.items()})
    return out


_KEYPAD_MEMORY: dict[str, dict[str, np.ndarray]] = {}


def _keypad_tones(config: KeypadConfig, seed: int, labels: dict[str, np.ndarray]):
    """The tone parameters: from memory, from the ``.npz`` cache in ``cache_dir`` (an
    unreadable or mismatched file is a miss with a warning and is overwritten) or newly
    generated (a cache folder that cannot be written: one warning, memory only)."""
    return cached_npz_arrays(
        "keypad",
        config,
        seed,
        _KEYPAD_MEMORY,
        lambda: _generate_tones(config, seed, labels),
        lambda path: _read_npz(path, config, seed),
    )


def _read_npz(path: Path, config: KeypadConfig, seed: int) -> dict[str, np.ndarray]:
    """The tone arrays of a keypad ``.npz``, checked against what ``config`` and ``seed``
    generate: the content parts it records, every array's name, dtype and shape, and that
    every tone lies inside the clip. Raises ``ValueError`` naming the difference."""
    arrays = load_npz_checked(path, config.content_parts(seed))
    expected = {
        f"{split}_{name}": (kind, size, (n,))
        for split, n in (("train", config.n_train), ("test", config.n_test))
        for name, (kind, size) in _TONE_ARRAYS.items()
    }
    check_array_layout(arrays, expected)
    t, nyquist = config.num_samples, config.sample_rate / 2
    for split in ("train", "test"):
        onset, length = arrays[f"{split}_onset"], arrays[f"{split}_length"]
        if onset.size and (onset.min() < 0 or length.min() < 1 or (onset + length).max() > t):
            raise ValueError(f"{split}: a tone lies outside the {t}-sample clip")
        for f in ("low_hz", "high_hz"):
            hz = arrays[f"{split}_{f}"]
            if hz.size and not (np.isfinite(hz).all() and hz.min() > 0 and hz.max() < nyquist):
                raise ValueError(f"{split}_{f} holds frequencies outside (0, {nyquist}) Hz")
    return arrays


class KeypadDataset(_ArrayDataset):
    """Digits with a phone-keypad sound: ``image``, ``audio`` and ``text`` (see
    :class:`KeypadConfig`).

    ``get(i).inputs``: ``image`` float ``[1, H, W]`` in [0, 1], ``audio`` float32 ``[T]``,
    ``text`` str. Extra attributes: ``images``, ``texts``, ``labels``, ``sources`` and
    ``reveal`` as :class:`~balgrad.data.readers._digits.DigitsDataset` has them, ``tones`` (the
    tone parameters of every sample, arrays of length N) and ``sample_rate``.

    Args:
        split: ``"train"`` or ``"test"``.
        seed: The generation seed.
        config: The :class:`KeypadConfig` (default: its defaults).

    Raises:
        ConfigError: A bad split or seed.
    """

    def __init__(self, split: str = "train", *, seed: int = 0, config: KeypadConfig | None = None):
        config = config if config is not None else KeypadConfig()
        self._start("keypad", split, seed, config, KEYPAD_CLASSES, KEYPAD_MODALITIES)
        digits = _digits_arrays(self.config.digits_config(), self.seed)
        labels = {s: digits[f"{s}_labels"] for s in ("train", "test")}
        tones = _keypad_tones(self.config, self.seed, labels)
        _take_split(self, digits, split)
        self.tones = {k: tones[f"{split}_{k}"] for k in _TONE_ARRAYS}
        self.sample_rate = self.config.sample_rate
        self._fingerprint = self._keyed_fingerprint()

    def waveform(self, index: int) -> torch.Tensor:
        """Sample ``index``'s waveform, float32 ``[T]``.

        Args:
            index: The sample.

        Returns:
            The waveform.

        Raises:
            IndexError: Out of range.
        """
        i = int(index)
        if not 0 <= i < len(self.labels):
            raise IndexError(f"keypad/{self.split}: index {index} out of range")
        return torch.from_numpy(synthesize(self.tones, i, self.config))

    def get(self, index: int) -> Example:
        """One example: the digit's image and caption, and its key's waveform.

        Args:
            index: Its position in the split.

        Returns:
            The :class:`~balgrad.data._base.Example`.
        """
        pair = super().get(index)  # the image and the caption, range-checked
        audio = self.waveform(pair.index)
        inputs = {"image": pair.inputs["image"], "audio": audio, "text": pair.inputs["text"]}
        return Example(inputs=inputs, label=pair.label, index=pair.index)
