"""What each modality kind (:mod:`balgrad.data._kinds`) owns about its raw input: the
form the dataset contract checks (:func:`balgrad.data._contract.check_input`), and how the
generic reader (:mod:`balgrad.data.readers._generic_modal`) reads a cell of its kind.

Kept apart from the kind table so that the table stays a list of kinds, and so that the
contract and the generic reader ask the kind rather than test its name: a kind added with
:func:`~balgrad.data._kinds.register_kind` brings its own checks and decoder.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from balgrad.data._waveform import loop_to_length
from balgrad.data.decoders._image import decode_image, header_error, image_error
from balgrad.data.decoders._npy import decode_npy, read_npy_header
from balgrad.data.decoders._wav import decode_wav, read_wav_header, resample
from balgrad.errors import DataError

# -- the raw input's form (the dataset contract) ----------------------------------------


def check_text_input(x: Any, where: str) -> None:
    """A text input: a ``str``.

    Args:
        x: The input.
        where: The item, for the message.

    Raises:
        DataError: It is not a ``str``.
    """
    if not isinstance(x, str):
        raise DataError(f"{where} (kind text): a {type(x).__name__}, not a str")


def tensor_form(
    kind: str, ndims: tuple[int, ...], form: str, channels: tuple[int, ...] | None = None
) -> Callable[[Any, str], None]:
    """The check of a tensor kind's raw input: a float32 ``torch.Tensor`` of one of
    ``ndims`` dimensions (one sample, no batch dimension).

    Args:
        kind: The kind's name, for the message.
        ndims: The numbers of dimensions allowed.
        form: The shape as messages write it (``[C, H, W]``).
        channels: The sizes allowed for the first dimension; None: any.

    Returns:
        ``check(x, where)``, raising :class:`DataError` on an input of another form.
    """

    def check(x: Any, where: str) -> None:
        if not isinstance(x, torch.Tensor):
            raise DataError(
                f"{where} (kind {kind}): a {type(x).__name__}, not a torch.Tensor {form} "
                "(convert it with torch.as_tensor in get())"
            )
        if x.dtype != torch.float32:
            raise DataError(
                f"{where} (kind {kind}): dtype {str(x.dtype).removeprefix('torch.')}, not "
                "float32, which the backbones take (convert it with .float() in get())"
            )
        if x.ndim not in ndims:
            raise DataError(
                f"{where} (kind {kind}): shape {list(x.shape)}, not {form} (one sample, no "
                "batch dimension)"
            )
        if channels is not None and x.shape[0] not in channels:
            wanted = " or ".join(map(str, channels))
            raise DataError(f"{where} (kind {kind}): {x.shape[0]} channels, not {wanted} {form}")

    return check


_features_tensor = tensor_form("features", (2,), "[L, F]")


def check_features_input(x: Any, where: str) -> None:
    """A features input: a float32 ``[L, F]`` tensor, or a mapping with ``features``
    (that tensor) and optionally ``lengths`` (the real steps).

    Args:
        x: The input.
        where: The item, for the message.

    Raises:
        DataError: It is of another form.
    """
    if isinstance(x, Mapping):
        if "features" not in x:
            raise DataError(
                f"{where} (kind features): a mapping without 'features' (its keys: "
                f"{sorted(map(str, x))})"
            )
        _check_lengths(x.get("lengths"), x["features"], where)
        x, where = x["features"], f"{where}, 'features'"
    _features_tensor(x, where)


def _check_lengths(lengths: Any, features: Any, where: str) -> None:
    """A mapping's ``lengths``: one whole number of real steps in [0, L]."""
    if lengths is None:
        return
    value = lengths
    if isinstance(lengths, torch.Tensor):
        if lengths.numel() != 1 or lengths.is_floating_point():
            raise DataError(
                f"{where}, 'lengths': a tensor of shape {list(lengths.shape)} and dtype "
                f"{str(lengths.dtype).removeprefix('torch.')}, not one whole number of steps"
            )
        value = int(lengths)
    else:
        try:
            value = operator.index(lengths)  # int and numpy integers, not bool-like floats
        except TypeError:
            raise DataError(
                f"{where}, 'lengths': a {type(lengths).__name__}, not one whole number of steps"
            ) from None
    steps = features.shape[0] if isinstance(features, torch.Tensor) and features.ndim else None
    if value < 0 or (steps is not None and value > steps):
        raise DataError(f"{where}, 'lengths': {value}, not in [0, {steps}] (the steps given)")


# -- reading a cell of the generic reader's index ---------------------------------------


class CellContext(Protocol):
    """What a cell's decoder may ask of the dataset reading it (the generic reader's
    split): the settings read with the index, and the checks that span rows."""

    #: the rate (Hz) every clip is brought to; None: each file's own
    sample_rate: int | None
    #: the length every clip is looped or cropped to
    audio_seconds: float
    #: keep a row whose text is empty
    allow_empty_text: bool

    def check_rate(self, rate: int, file: Path, where: str) -> None:
        """Refuse a clip at another rate than the split's first when no rate is set.

        Args:
            rate: The clip's rate (Hz).
            file: The clip.
            where: The row and column, for the message.
        """

    def check_shape(self, modality: str, shape: tuple[int, ...], file: Path, where: str) -> None:
        """Refuse an array whose shape differs from the modality's first.

        Args:
            modality: The modality.
            shape: The array's shape.
            file: The array's file.
            where: The row and column, for the message.
        """


@dataclass(frozen=True)
class CellReader:
    """How the generic reader reads the cell of a modality of one kind: a path to a file
    (checked to exist and to stay inside the dataset's folder), or the value itself.

    Args:
        what: What a cell holds, as messages write it (``image file``, ``text``).
        decode: ``decode(value, where, modality, context)``: the raw input of a cell (the
            file's path, or the accepted value), read when the item is; ``context`` is a
            :class:`CellContext`.
        is_file: The cell holds a file's path (relative to the index's folder).
        probe: ``probe(file, where, modality, context)``: check a file without decoding
            it (its header), raising :class:`DataError`; run by ``validate()``. None: no
            check before the file is read.
        accept: ``accept(value, where, context)``: a value cell (not a file) checked when
            the index is read, returning what the row keeps. None: kept as it is.
        rate_of: ``rate_of(file, where)``: a file's sample rate (Hz) from its header; the
            split's first sets the rate every file is brought to when no ``sample_rate``
            is set (audio). None: the kind has no rate.
        shape_of: ``shape_of(file, where)``: a file's array shape from its header; another
            split's files must have the training split's first's (features). None: no
            shape shared across splits.
    """

    what: str
    decode: Callable[[Any, str, str, Any], Any]
    is_file: bool = True
    probe: Callable[[Path, str, str, Any], None] | None = None
    accept: Callable[[str, str, Any], Any] | None = None
    rate_of: Callable[[Path, str], int] | None = None
    shape_of: Callable[[Path, str], tuple[int, ...]] | None = None


def _accept_text(value: str, where: str, context: Any) -> str:
    # imported here: balgrad.data.disk imports the dataset contract, which imports the kinds
    from balgrad.data.disk._dataset import _text_problem
    from balgrad.data.disk._readers import check_text

    problem = _text_problem(value, None)  # a NUL, a lone surrogate
    if problem is not None:
        raise DataError(f"{where}: {problem}")
    return check_text(value, where, context.allow_empty_text)


def _probe_image(file: Path, where: str, modality: str, context: Any) -> None:
    err = header_error(file)
    if err is not None:
        raise DataError(image_error(file, where, err))


def _probe_wav(file: Path, where: str, modality: str, context: Any) -> None:
    context.check_rate(read_wav_header(file, where).rate, file, where)


def _decode_wav(file: Path, where: str, modality: str, context: Any) -> torch.Tensor:
    wave, rate = decode_wav(file, where)
    context.check_rate(rate, file, where)
    wave = resample(wave, rate, context.sample_rate, f"{where}: audio file {file}")
    return loop_to_length(wave, max(1, round(context.audio_seconds * context.sample_rate)))


def _npy_shape(file: Path, where: str) -> tuple[int, ...]:
    return read_npy_header(file, where, what="feature array", ndim=(1, 2))[1]


def _probe_npy(file: Path, where: str, modality: str, context: Any) -> None:
    _, shape = read_npy_header(
        file, where, what="feature array", ndim=(1, 2), expected="[F] or [L, F]"
    )
    context.check_shape(modality, shape, file, where)


def _decode_npy(file: Path, where: str, modality: str, context: Any) -> torch.Tensor:
    arr = decode_npy(file, where, what="feature array")
    if arr.ndim not in (1, 2):
        raise DataError(
            f"{where}: feature array {file} has the shape {arr.shape}; expected [F] or [L, F]"
        )
    context.check_shape(modality, arr.shape, file, where)
    return torch.from_numpy(np.atleast_2d(arr).astype(np.float32))


IMAGE_CELL = CellReader(
    "image file", lambda file, where, m, c: decode_image(file, where), probe=_probe_image
)
TEXT_CELL = CellReader("text", lambda value, where, m, c: value, is_file=False, accept=_accept_text)
AUDIO_CELL = CellReader(
    "WAV file",
    _decode_wav,
    probe=_probe_wav,
    rate_of=lambda file, where: read_wav_header(file, where).rate,
)
FEATURES_CELL = CellReader(".npy feature array", _decode_npy, probe=_probe_npy, shape_of=_npy_shape)
