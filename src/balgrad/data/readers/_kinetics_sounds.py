"""Kinetics-Sounds (audio + visual action clips, 31 classes) in the layout the field's
balancing code reads.

Kinetics-Sounds is read by more of the official modality-balancing code than AVE or
VGGSound: OGM-GE (GeWu-Lab/OGM-GE_CVPR2022, which releases its split lists
``data/KineticSound/my_{train,test}.txt`` and the audio step
``data/KineticSound/process_audio.py``), BalanceBenchmark's
``balancemm/datasets/KS_dataset.py`` (GeWu-Lab/BalanceBenchmark, whose trainers include
OGM, AGM, PMR, MMPareto, ReconBoost, ...), and MMPareto, whose README says its data
follows OGM-GE. This module reads the layout of BalanceBenchmark's ``KS_dataset.py``, file
by file, with the default folder names below (each an option, ``{split}`` replaced by the
split)::

    my_train.txt, my_test.txt        one clip a line (``list_file``: "my_{split}.txt")
    audio/{split}/<clip>.npy         the clip's spectrogram (``audio_dir``)
    visual/{split}/<clip>/frame_00001.jpg ...   its frames, in name order (``visual_dir``)

* **Split lists.** BalanceBenchmark splits a line at spaces and takes the first field as
  the clip and the last as the integer label (other loaders of this layout take the
  last ``/`` component of the first field: a path). OGM-GE's released lists are
  comma-separated, ``<clip>,<seconds>,<label>`` (``--4-0ihtnBU_000058_000068,10,4``).
  Both are read: a line holding a comma is split at commas, any other at whitespace;
  the clip is the last ``/`` component of the first field, the label the last field, an
  integer in ``[0, num_classes)``. The release names no classes: they are the label
  indices ``"0"`` ... ``"30"``, in that (the official) order, unless ``classes_file``
  names a file holding one class name a line, in label order.
* **Audio.** ``audio_format="npy"`` (the default, what the official loaders read):
  ``<clip>.npy`` holds the log-mel filterbank that OGM-GE's ``process_audio.py`` writes
  (Kaldi fbank, 128 mel bins, 10 ms shift, padded or cut to 1024 frames, normalised as
  ``(fbank + 4.50) / (2 * 5.14)``: ``[1024, 128]``). It is returned as stored with the
  channel axis the official loader adds (``np.expand_dims(x, 0)``): float32
  ``[1, frames, mel bins]``, **a spectrogram, not a waveform**. ``audio_format="wav"``
  reads ``<clip>.wav`` instead (the audio before that step, as in OGM-GE's pre-processing
  tree) with the CREMA-D reader: a mono waveform ``[S]`` looped and cropped to ``seconds``
  (10 s, the clips' length) at the file's own rate (:func:`balgrad.data.readers._cremad.read_wav`,
  :func:`loop_to_length`); with ``sample_rate`` set, a file at another rate is an error
  (nothing is resampled), so every item has the same length.
* **Visual.** A clip needs more than ``num_frames`` frames (the official ``> 3`` at 3
  frames; the official loader counts every file, here ``.jpg``/``.jpeg``/``.png`` ones).
  ``num_frames`` (3, the official ``pick_num``) frames are read, one per segment of
  ``seg = n // num_frames`` frames. The test split reads frame
  ``i * seg + max(seg // 2, 1)`` (1-based) of segment ``i``, the official rule; the
  training split draws one frame at random in each segment (the official
  ``random.randint(i * seg + 1, i * seg + seg)``), seeded by ``(seed, epoch, index)``.
  As officially, a clip of at most ``2 * num_frames`` frames (``file_num > 6``) reads
  its first frame ``num_frames`` times. Each frame is resized to ``image_size`` (the
  official ``Resize((224, 224))``, PIL bilinear) and normalised with the ImageNet mean and
  std (its ``Normalize``; ``normalize=False`` keeps ``[0, 1]``): float32
  ``[3, T, H, W]``. The official training-time ``RandomResizedCrop`` and flip are left to
  the model, so an index always gives the same frames within an epoch.

Differences: the official loaders build frame names as ``'frame_0000' + str(t)``, which
stops matching at frame 10 (hence their ``t = 9`` clamp when training); here frames are
taken by position in name order, which is the same for ``frame_00001`` ... ``frame_00009``
and needs no clamp. They silently drop clips whose audio file is missing or whose frame
folder holds too few frames and fail with ``FileNotFoundError`` on a missing folder; here
each is a :class:`DataError` naming the list file and line (or, with ``skip_bad=True``,
one :class:`DataWarning` counting them), as in ``balgrad.data.readers._cremad``. OGM-GE's own
``AVDataset`` reads pickled spectrograms (``audio_spec/<clip>.pkl``); pickles are not read
here (loading one runs code), convert them to ``.npy``. Kinetics-Sounds has no official
validation split: ``split="val"`` raises :class:`MissingSplitError`, so balgrad carves one
from ``train``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from pydantic import Field

from balgrad.data._base import DatasetInfo, Example, MultimodalDataset
from balgrad.data._catalog import register_dataset
from balgrad.data._clip_folders import (
    Clip,
    ClipList,
    check_rate_option,
    clip_frames,
    clip_name_problem,
    frames_problem,
    read_frames,
    warn_dropped_and_repeated,
)
from balgrad.data._option_ranges import ClipSeconds, FrameSize, FramesPerClip, SampleRate
from balgrad.data._positions import checked_index
from balgrad.data._waveform import loop_to_length
from balgrad.data.decoders._image import header_error, image_error
from balgrad.data.decoders._npy import decode_npy
from balgrad.data.disk._layout import canonical_split
from balgrad.data.disk._paths import FolderBoundary
from balgrad.data.disk._readers import decode_text, split_lines, utf8_problem
from balgrad.data.disk._records import MissingSplitError, Problems
from balgrad.data.readers._cremad import check_clip_options, read_wav
from balgrad.errors import ConfigError, DataError

NAME = "Kinetics-Sounds"
SPLITS = ("train", "test")
NUM_CLASSES = 31  # OGM-GE's main.py and BalanceBenchmark's dataset_config.yaml
AUDIO_FORMATS = ("npy", "wav")
MODALITIES = {"audio": "audio", "visual": "video"}
_WARN_FROM_INIT = 2  # counted from KineticsSounds.__init__: 2 is its caller


def parse_line(line: str) -> tuple[str, str] | str:
    """``(clip, label text)`` of one split-list line, or why it cannot be read.

    A line with a comma is OGM-GE's ``<clip>,<seconds>,<label>``; any other is split at
    whitespace (BalanceBenchmark's ``<clip> ... <label>``). The clip is the last ``/``
    component of the first field.

    Args:
        line: The line.

    Returns:
        (clip, label text), or the reason.
    """
    fields = [f.strip() for f in line.split(",")] if "," in line else line.split()
    if len(fields) < 2:
        return f"expected at least 2 fields (clip ... label), got {len(fields)}: {line!r}"
    return fields[0].rsplit("/", 1)[-1], fields[-1]


def _fill(option: str, value: str, split: str) -> str:
    """``value`` with ``{split}`` replaced by the split name."""
    try:
        return value.format(split=split)
    except (KeyError, IndexError, ValueError, AttributeError) as e:
        raise ConfigError(
            f"{NAME}: option {option!r} ({value!r}) may only hold the field '{{split}}' ({e})"
        ) from None


def _check_options(
    split: str,
    num_frames: int,
    seconds: float,
    image_size: int | tuple[int, int],
    audio_format: str,
    sample_rate: int | None,
) -> tuple[int, int]:
    """The options checked, in the order a user meets them; the frame size (H, W)."""
    if split == "val":
        raise MissingSplitError(
            f"{NAME} has no official validation split (only {', '.join(SPLITS)}): "
            "carve one from 'train'"
        )
    h, w = check_clip_options(NAME, split, SPLITS, num_frames, seconds, image_size)
    if audio_format not in AUDIO_FORMATS:
        raise ConfigError(
            f"{NAME}: option 'audio_format' must be one of {AUDIO_FORMATS}, got {audio_format!r}"
        )
    check_rate_option(NAME, sample_rate)
    return h, w


def frame_positions(n: int, num_frames: int, rng: np.random.Generator | None) -> list[int]:
    """0-based positions of the frames read from a clip of ``n`` frames: the official
    segment rule (``rng`` None: the test split's middle-ish frame of each segment; else
    one drawn at random per segment), or the first frame repeated when ``n`` is at most
    ``2 * num_frames``.

    Args:
        n: The clip's frames.
        num_frames: The frames wanted.
        rng: The training split's draws, or None (evaluation).

    Returns:
        The positions.
    """
    if n <= 2 * num_frames:
        return [0] * num_frames
    seg = n // num_frames
    if rng is None:
        return [i * seg + max(seg // 2, 1) - 1 for i in range(num_frames)]
    return [i * seg + int(rng.integers(seg)) for i in range(num_frames)]


class KineticsSounds(ClipList, MultimodalDataset):
    """One split of Kinetics-Sounds; ``get(i)`` is an :class:`Example` with inputs
    ``{"audio": [1, frames, mel] spectrogram (or [S] waveform with audio_format="wav"),
    "visual": [3, T, H, W]}``, an int64 label and its index.

    Options: ``list_file`` ("my_{split}.txt"), ``audio_dir`` ("audio/{split}"),
    ``visual_dir`` ("visual/{split}"), ``audio_format`` ("npy" or "wav"), ``num_frames``
    (3), ``image_size`` (int or ``(H, W)``: 224), ``normalize`` (ImageNet mean/std: True),
    ``seconds`` (the wav length: 10.0), ``sample_rate`` (the rate every wav must have:
    any), ``num_classes`` (31), ``classes_file`` (one class name a line, in label order:
    none), ``skip_bad``, ``seed`` (the training split's frame draws: item ``i`` of epoch
    ``e`` uses ``(seed, e, i)``; ``set_epoch`` sets ``e``). Every path stays inside
    ``data_dir``.

    Args:
        data_dir: The dataset's folder (every path stays inside it).
        split: The split (``dev``/``validation`` name ``val``).
        list_file: The split list (``{split}`` is filled in).
        audio_dir: The audio folder.
        visual_dir: The frames' folder.
        audio_format: ``"npy"`` (spectrograms) or ``"wav"``.
        num_frames: Frames per clip.
        image_size: An int or (H, W).
        normalize: ImageNet-normalise the frames.
        seconds: The wav length.
        sample_rate: The rate every wav must have (None: any).
        num_classes: The number of classes.
        classes_file: A file of the class names, one a line in label order, or None.
        skip_bad: Drop bad clips with one warning instead of raising.
        seed: The training split's frame draws.
    """

    content_files_per_example = True

    def __init__(
        self,
        data_dir: str | os.PathLike,
        split: str = "train",
        *,
        list_file: str = "my_{split}.txt",
        audio_dir: str = "audio/{split}",
        visual_dir: str = "visual/{split}",
        audio_format: str = "npy",
        num_frames: FramesPerClip = 3,
        image_size: FrameSize = 224,
        normalize: bool = True,
        seconds: ClipSeconds = 10.0,
        sample_rate: SampleRate | None = None,
        num_classes: Annotated[int, Field(ge=2, le=100_000)] = NUM_CLASSES,
        classes_file: str | None = None,
        skip_bad: bool = False,
        seed: int = 0,
    ) -> None:
        split = canonical_split(split)
        h, w = _check_options(split, num_frames, seconds, image_size, audio_format, sample_rate)
        self.root = Path(data_dir)
        self.split = split
        self.audio_format = audio_format
        self.num_frames = num_frames
        self.image_size = (int(h), int(w))
        self.normalize = bool(normalize)
        self.seconds = float(seconds)
        self.sample_rate = sample_rate
        self.seed = int(seed)
        self.epoch = 0
        self.skip_bad = bool(skip_bad)
        boundary = FolderBoundary(self.root)
        classes = self._classes(boundary, num_classes, classes_file)
        self.info = DatasetInfo(
            name=NAME, task="single_label", classes=classes, modalities=dict(MODALITIES)
        )
        audio_root = boundary.check(
            NAME, "audio folder", self.root / _fill("audio_dir", audio_dir, split)
        )
        frames_root = boundary.check(
            NAME, "visual folder", self.root / _fill("visual_dir", visual_dir, split)
        )
        list_path = self.root / _fill("list_file", list_file, split)
        digest = self._read_list(boundary, list_path, audio_root, frames_root)
        self.labels = np.array([c.label for c in self.clips], dtype=np.int64)
        settings = (audio_format, num_frames, self.image_size, self.normalize, self.seconds)
        settings += (sample_rate,)
        digest.update(repr((settings, classes)).encode("utf-8", "replace"))
        self._fingerprint = f"{NAME}:{split}:{len(self.clips)}:{digest.hexdigest()[:16]}"

    def _read_list(
        self, boundary: FolderBoundary, list_path: Path, audio_root: Path, frames_root: Path
    ):
        """Read the split list into ``self.clips`` (the bad lines dropped with one warning
        under ``skip_bad``, else raised); the digest of the list's bytes and its clips."""
        raw = boundary.read_bytes(list_path, NAME, "split list")
        text = decode_text(raw, list_path)
        problems = Problems(self.skip_bad)
        self.clips: list[Clip] = []
        digest = hashlib.sha256(raw)
        for k, line in enumerate(split_lines(text), start=1):
            if not line.strip():
                continue
            clip = self._clip(boundary, audio_root, frames_root, f"{list_path} line {k}", line)
            if isinstance(clip, str):
                problems.bad(clip)
                continue
            self.clips.append(clip)
            names = [p.name for p in clip.frames]
            digest.update(
                repr((clip.name, clip.label, names, clip.sizes)).encode("utf-8", "replace")
            )
        if not self.clips:
            why = f" ({len(problems)} bad: {problems.reasons[0]}...)" if problems.reasons else ""
            raise DataError(f"{NAME}: split list {list_path} names no usable clip{why}")
        where = f"{NAME} split '{self.split}' ({self.root})"
        # + 1: counted from _read_list, which __init__ calls
        warn_dropped_and_repeated(problems, where, self.clips, stacklevel=_WARN_FROM_INIT + 1)
        return digest

    # -- parsing -----------------------------------------------------------------
    def _classes(
        self, boundary: FolderBoundary, num_classes: int, classes_file: str | None
    ) -> list[str]:
        if classes_file is None:
            if not isinstance(num_classes, int) or num_classes < 2:
                raise ConfigError(
                    f"{NAME}: option 'num_classes' must be an int >= 2, got {num_classes!r}"
                )
            return [str(i) for i in range(num_classes)]
        path = self.root / classes_file
        text = decode_text(boundary.read_bytes(path, NAME, "classes file"), path)
        names = []
        for k, line in enumerate(split_lines(text), start=1):
            problem = utf8_problem(line)
            if problem is not None:
                raise DataError(f"{path} line {k}: {problem}")
            if line.strip():
                names.append(line.strip())
        if len(names) < 2 or len(set(names)) != len(names):
            raise DataError(
                f"{path}: expected at least 2 distinct class names, one a line; got {names!r}"
            )
        return names

    def _clip(
        self, boundary: FolderBoundary, audio_root: Path, frames_root: Path, source: str, line: str
    ) -> Clip | str:
        """The clip a split-list line names, or why it is bad."""
        problem = utf8_problem(line)
        if problem is not None:
            return f"{source}: {problem}"
        parsed = parse_line(line)
        if isinstance(parsed, str):
            return f"{source}: {parsed}"
        name, label_text = parsed
        try:
            label = int(label_text)
        except ValueError:
            return f"{source}: label {label_text!r} is not an integer class index"
        if not 0 <= label < len(self.info.classes):
            return f"{source}: label {label} is out of range [0, {len(self.info.classes)})"
        problem = clip_name_problem(source, name)  # a "/" cannot be left: parse_line split at it
        if problem is not None:
            return problem
        audio = audio_root / f"{name}.{self.audio_format}"
        folder = frames_root / name
        frames = clip_frames(boundary, source, audio, folder)
        if isinstance(frames, str):
            return frames
        if len(frames) <= self.num_frames:
            return (
                f"{source}: frame folder {folder} holds {len(frames)} frame(s); the official "
                f"loader needs more than num_frames={self.num_frames}"
            )
        problem = frames_problem(boundary, source, frames)
        if problem is not None:
            return problem
        try:
            sizes = tuple(p.stat().st_size for p in (audio, *frames))
        except OSError as e:  # a dangling symlink among the frames
            return f"{source}: cannot read {e.filename} ({type(e).__name__}: {e.strerror})"
        return Clip(name, label, audio, frames, source, sizes)

    # -- Dataset API -------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """New random frame draws for the training split (as a sampler's ``set_epoch``).

        Args:
            epoch: The epoch.
        """
        self.epoch = int(epoch)

    def frame_indices(self, i: int) -> list[int]:
        """Which frames (0-based, in name order) of clip ``i`` are read.

        Args:
            i: The clip.

        Returns:
            The frame positions.
        """
        rng = None if self.split != "train" else np.random.default_rng([self.seed, self.epoch, i])
        return frame_positions(len(self.clips[i].frames), self.num_frames, rng)

    def read_audio(self, clip: Clip) -> torch.Tensor:
        """A clip's audio: its spectrogram (``audio_format="npy"``) or its waveform fitted
        to ``seconds``.

        Args:
            clip: The clip.

        Returns:
            ``[1, frames, mel]`` or ``[S]``.

        Raises:
            DataError: The file is missing or damaged.
        """
        if self.audio_format == "wav":
            wave, rate = read_wav(clip.audio, clip.source)
            if self.sample_rate is not None and rate != self.sample_rate:
                raise DataError(
                    f"{clip.source}: audio file {clip.audio} is at {rate} Hz, not "
                    f"sample_rate={self.sample_rate} (resample it, e.g. ffmpeg -ar "
                    f"{self.sample_rate})"
                )
            return loop_to_length(wave, max(1, round(self.seconds * rate)))
        return read_spectrogram(clip.audio, clip.source)

    def read_visual(self, clip: Clip, positions: list[int]) -> torch.Tensor:
        """A clip's frames at ``positions``, resized (and normalised with ``normalize``).

        Args:
            clip: The clip.
            positions: The frames read.

        Returns:
            ``[3, T, H, W]``.

        Raises:
            DataError: A frame is missing or damaged.
        """
        return read_frames(clip.frames, positions, clip.source, self.image_size, self.normalize)

    def get(self, index: int) -> Example:
        """One example: the clip's audio and frames, and its class.

        Args:
            index: Its position in the split (negative counts from the end).

        Returns:
            The :class:`~balgrad.data._base.Example`.

        Raises:
            IndexError: Out of range.
            DataError: A file is missing or damaged.
        """
        index = checked_index(index, len(self.clips), f"{NAME} {self.split}")
        clip = self.clips[index]
        inputs = {
            "audio": self.read_audio(clip),
            "visual": self.read_visual(clip, self.frame_indices(index)),
        }
        label = torch.tensor(clip.label, dtype=torch.int64)
        return Example(inputs=inputs, label=label, index=index)

    def validate(self) -> list[str]:
        """Read every clip's audio and check every frame's header now, not mid-training.
        A bad clip raises :class:`DataError` naming the list file and line; with
        ``skip_bad=True`` bad clips are dropped with one :class:`DataWarning`, and their
        reasons are returned."""
        problems = Problems(self.skip_bad)
        kept = []
        for clip in self.clips:
            try:
                self.read_audio(clip)
                for frame in clip.frames:
                    err = header_error(frame)
                    if err is not None:
                        raise DataError(image_error(frame, clip.source, err))
            except DataError as e:
                problems.bad(str(e))
                continue
            kept.append(clip)
        if problems.reasons:
            if not kept:
                raise DataError(f"{NAME} split '{self.split}' ({self.root}) has no usable clip")
            self.clips = kept
            self.labels = np.array([c.label for c in kept], dtype=np.int64)
            dropped = hashlib.sha256("\n".join(problems.reasons).encode()).hexdigest()[:8]
            self._fingerprint = f"{self._fingerprint}-{len(kept)}:{dropped}"
            problems.warn(f"{NAME} split '{self.split}' ({self.root})", stacklevel=2)
        return list(problems.reasons)

    @property
    def fingerprint(self) -> str:
        """Split list bytes, settings, clips and the size of each file read (content that
        keeps its size is covered by :meth:`content_files` for the audio only)."""
        return self._fingerprint

    def content_files(self) -> list[Path]:
        """One file per clip, in order: its audio file (the feature cache hashes these;
        a clip's frames enter the fingerprint by name and size)."""
        return [c.audio for c in self.clips]

    def __repr__(self) -> str:
        return (
            f"KineticsSounds(split={self.split!r}, n={len(self)}, audio={self.audio_format!r}, "
            f"root={str(self.root)!r})"
        )


def read_spectrogram(path: Path, source: str) -> torch.Tensor:
    """A ``.npy`` spectrogram ``[frames, bins]`` as float32 ``[1, frames, bins]`` (the
    official ``np.expand_dims(x, 0)``), read by :func:`balgrad.data.decoders._npy.decode_npy`
    (the header checked against the file's size, nothing unpickled); a missing,
    unreadable, non-2-D, empty, non-numeric or non-finite array is a :class:`DataError`
    naming the file and ``source``.

    Args:
        path: The ``.npy`` file.
        source: Where the path comes from, for the message.

    Returns:
        The spectrogram.
    """
    expected = "a 2-D numeric spectrogram [frames, bins]"
    arr = decode_npy(path, source, what="audio file", ndim=2, expected=expected)
    if arr.size == 0:
        raise DataError(
            f"{source}: audio file {path} holds a {arr.dtype} array of shape {arr.shape}; "
            f"expected {expected}"
        )
    spec = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    if not torch.isfinite(spec).all():  # a float64 value beyond float32's range
        raise DataError(f"{source}: audio file {path} holds NaN or infinite values")
    return spec.unsqueeze(0)


register_dataset(
    "kinetics_sounds",
    KineticsSounds,
    aliases=("ks", "kineticsound", "kinetics_sound", "kineticssounds"),
    kind="disk",
    description=(
        "Kinetics-Sounds: audio + video action clips, 31 classes (OGM-GE/BalanceBenchmark "
        "layout: split lists, .npy spectrograms or .wav, frame folders)"
    ),
    modalities=dict(MODALITIES),
    modality_backbones={"audio": "resnet18", "visual": "resnet18"},
)
