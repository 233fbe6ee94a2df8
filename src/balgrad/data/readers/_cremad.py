"""CREMA-D (audio + visual emotion clips) in the layout of the OGM-GE official code.

Follows ``dataset/CramedDataset.py`` and ``data/CREMAD/{train,test}.csv`` of
GeWu-Lab/OGM-GE_CVPR2022 (Peng et al., CVPR 2022). The data folder holds::

    train.csv, test.csv          one clip a line: "<clip>,<emotion>" (e.g. 1041_TIE_NEU_XX,NEU)
    AudioWAV/<clip>.wav          the clip's audio
    Image-01-FPS/<clip>/*.jpg    frames extracted at 1 frame/s (``Image-{fps:02d}-FPS``)

Labels follow the official ``class_dict``: NEU 0, HAP 1, SAD 2, FEA 3, DIS 4, ANG 5.

Per item, as the official loader does before its spectrogram and torchvision steps:

* audio: the waveform, mono (channels averaged, as ``librosa.load`` does), looped and
  cropped to ``seconds`` (3 s) and clipped to [-1, 1] (:func:`loop_to_length`; an empty
  file gives silence). It is kept
  at the file's own sample rate (``item["sample_rate"]`` says it): the official code
  resamples to 22050 Hz with librosa, which this library does not depend on;
  :class:`CremaDDataset` (the registered dataset) resamples with scipy first.
* visual: ``num_frames`` frames (the official ``args.fps``, 1 by default in its
  ``main.py``; its ``--use_video_frames`` is not read by the CREMA-D loader), RGB, resized to
  ``image_size`` (PIL bilinear, antialiased as torchvision's ``Resize``), float ``[0, 1]``
  ``[C, T, H, W]``; ImageNet normalisation and train-time crop/flip are left to the model.
  The official code draws ``num_frames`` sorted distinct indices at random, then (a known
  slip) reads the first ``num_frames`` entries of ``os.listdir`` instead. Here the
  training split draws sorted distinct frames at random (the evident intent) and every
  other split reads the first ``num_frames`` frames in name order (what the official
  code reads, made deterministic).

Differences: the official loader silently drops clips whose WAV or frame folder is
missing and fails with a ``KeyError`` on an unknown emotion; here each is a
:class:`DataError` naming the CSV line (or, with ``skip_bad=True``, one
:class:`DataWarning` listing them), as in ``balgrad.data.disk``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import Field

from balgrad.data._base import MultimodalDataset
from balgrad.data._clip_folders import (
    IMAGENET_MEAN,  # noqa: F401 (the frames' statistics, imported from here)
    IMAGENET_STD,  # noqa: F401
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
from balgrad.data.decoders._image import decode_image, image_error
from balgrad.data.decoders._wav import decode_wav, read_wav_header, resample
from balgrad.data.disk._paths import FolderBoundary
from balgrad.data.disk._readers import decode_text, iter_csv_rows, utf8_problem
from balgrad.data.disk._records import Problems
from balgrad.errors import ConfigError, DataError

NAME = "CREMA-D"
# the official class_dict, in its order
CLASSES = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")
CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}
SPLITS = ("train", "test")
_WARN_FROM_INIT = 2  # counted from CremaD.__init__: 2 is its caller


class CremaD(torch.utils.data.Dataset):
    """One split of CREMA-D; ``ds[i]`` is ``{"audio": [S], "visual": [3, T, H, W],
    "label": int, "sample_rate": int}``.

    Options: ``num_frames`` (frames per clip, the official ``--fps``: 1), ``fps`` (the
    rate the frames were extracted at, naming ``Image-{fps:02d}-FPS``: 1), ``image_size``
    (int or ``(H, W)``: 224), ``seconds`` (audio length: 3.0), ``audio_dir``
    (``"AudioWAV"``), ``visual_dir`` (the folder holding ``Image-XX-FPS``: the data
    folder), ``csv_dir`` (the folder holding ``train.csv``/``test.csv``, the official
    repository's ``data/CREMAD``: the data folder), ``skip_bad`` (drop bad clips with one warning instead of raising), ``seed``
    (the training split's frame draws: item ``i`` of epoch ``e`` uses ``seed + e``;
    ``set_epoch`` changes ``e``). All paths stay inside ``data_dir``.

    Args:
        data_dir: The dataset's folder (every path stays inside it).
        split: The split (``dev``/``validation`` name ``val``).
        num_frames: Frames per clip (the official ``--fps``).
        fps: The rate the frames were extracted at (``Image-{fps:02d}-FPS``).
        image_size: An int or (H, W).
        seconds: The audio length.
        audio_dir: The WAV folder.
        visual_dir: The folder holding ``Image-XX-FPS``.
        csv_dir: The folder holding ``train.csv``/``test.csv``.
        skip_bad: Drop bad clips with one warning instead of raising.
        seed: The training split's frame draws.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        split: str = "train",
        *,
        num_frames: int = 1,
        fps: int = 1,
        image_size: int | tuple[int, int] = 224,
        seconds: float = 3.0,
        audio_dir: str = "AudioWAV",
        visual_dir: str = ".",
        csv_dir: str = ".",
        skip_bad: bool = False,
        seed: int = 0,
    ) -> None:
        h, w = check_clip_options(NAME, split, SPLITS, num_frames, seconds, image_size)
        self.root = Path(data_dir)
        self.split = split
        self.num_frames = num_frames
        self.image_size = (int(h), int(w))
        self.seconds = float(seconds)
        self.seed = int(seed)
        self.epoch = 0
        boundary = FolderBoundary(self.root)
        audio_root = boundary.check(NAME, "audio folder", self.root / audio_dir)
        frames_root = boundary.check(
            NAME, "visual folder", self.root / visual_dir / f"Image-{fps:02d}-FPS"
        )
        csv_path = self.root / csv_dir / f"{split}.csv"
        text = decode_text(boundary.read_bytes(csv_path, NAME, "split file"), csv_path)
        problems = Problems(skip_bad)
        self.clips: list[Clip] = []
        for line, row in iter_csv_rows(text, str(csv_path)):
            clip = self._clip(boundary, audio_root, frames_root, f"{csv_path} line {line}", row)
            if isinstance(clip, str):
                problems.bad(clip)
            else:
                self.clips.append(clip)
        where = f"{NAME} split '{split}' ({self.root})"
        warn_dropped_and_repeated(problems, where, self.clips, stacklevel=_WARN_FROM_INIT)

    def _clip(
        self, boundary: FolderBoundary, audio_root: Path, frames_root: Path, source: str, row
    ) -> Clip | str:
        """The clip a CSV row names, or why it is bad."""
        if len(row) != 2:
            return f"{source}: expected 2 fields (clip,emotion), got {len(row)}: {row!r}"
        name, emotion = (c.strip() for c in row)
        problem = utf8_problem(name + emotion)
        if problem is not None:
            return f"{source}: {problem}"
        if emotion not in CLASS_INDEX:
            return f"{source}: unknown emotion {emotion!r} (expected one of {', '.join(CLASSES)})"
        problem = clip_name_problem(source, name)
        if problem is not None:
            return problem
        wav, folder = audio_root / f"{name}.wav", frames_root / name
        frames = clip_frames(boundary, source, wav, folder)
        if isinstance(frames, str):
            return frames
        if len(frames) < self.num_frames:
            return (
                f"{source}: frame folder {folder} holds {len(frames)} frame(s), "
                f"fewer than num_frames={self.num_frames}"
            )
        problem = frames_problem(boundary, source, frames)
        if problem is not None:
            return problem
        return Clip(name, CLASS_INDEX[emotion], wav, frames, source)

    def __len__(self) -> int:
        return len(self.clips)

    def set_epoch(self, epoch: int) -> None:
        """New random frame draws for the training split (as a sampler's ``set_epoch``).

        Args:
            epoch: The epoch.
        """
        self.epoch = int(epoch)

    def frame_indices(self, i: int) -> list[int]:
        """Which frames of clip ``i`` are read: random sorted distinct ones when training,
        else the first ``num_frames``.

        Args:
            i: The clip.

        Returns:
            The frame indices.
        """
        n = len(self.clips[i].frames)
        if self.split != "train":
            return list(range(self.num_frames))
        rng = np.random.default_rng([self.seed, self.epoch, i])
        return sorted(rng.choice(n, size=self.num_frames, replace=False).tolist())

    def __getitem__(self, i: int) -> dict:
        clip = self.clips[i]
        wave, rate = read_wav(clip.audio, clip.source)
        wave = loop_to_length(wave, max(1, round(self.seconds * rate)))
        frames = [
            read_frame(clip.frames[k], clip.source, self.image_size) for k in self.frame_indices(i)
        ]
        visual = torch.stack(frames, dim=1)  # [3, T, H, W]
        return {"audio": wave, "visual": visual, "label": clip.label, "sample_rate": rate}


def check_clip_options(
    name: str, split: str, splits: tuple[str, ...], num_frames: Any, seconds: Any, image_size: Any
) -> tuple[int, int]:
    """The options an audio-visual clip reader shares, checked: the split, the frames per
    clip, the clip length and the frame size; (height, width).

    Args:
        name: The dataset, for the message.
        split: The split asked for.
        splits: The splits it has.
        num_frames: Frames per clip.
        seconds: The audio length.
        image_size: An int or (H, W).

    Returns:
        The image size as (H, W).

    Raises:
        ConfigError: A bad value or an unknown split.
    """
    if split not in splits:
        raise ConfigError(f"{name}: split must be one of {splits}, got {split!r}")
    if not isinstance(num_frames, int) or num_frames < 1:
        raise ConfigError(f"{name}: option 'num_frames' must be an int >= 1, got {num_frames!r}")
    if not 0 < seconds <= 3600:  # NaN and inf too: a clip is read into memory whole
        raise ConfigError(f"{name}: option 'seconds' must be in (0, 3600], got {seconds!r}")
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if not (1 <= h <= 4096 and 1 <= w <= 4096):
        raise ConfigError(f"{name}: option 'image_size' must be in [1, 4096], got {image_size!r}")
    return int(h), int(w)


def read_wav(path: Path, source: str) -> tuple[torch.Tensor, int]:
    """``(float32 mono waveform in [-1, 1], sample rate)`` of a WAV file (PCM 8/16/24/32
    bit or float), channels averaged: :func:`balgrad.data.decoders._wav.decode_wav`; a
    missing, unreadable or malformed file is a :class:`DataError` naming it and
    ``source``.

    Args:
        path: The WAV file.
        source: Where the path comes from, for the message.

    Returns:
        (waveform, rate).
    """
    return decode_wav(path, source)


def read_frame(path: Path, source: str, size: tuple[int, int]) -> torch.Tensor:
    """Frame ``path`` as float32 ``[3, H, W]`` in [0, 1] (each image mode scaled by its
    real range: :func:`balgrad.data.decoders._image.decode_image`), resized to ``size``
    (H, W); an unreadable image is a :class:`DataError` naming it and ``source``.

    Args:
        path: The frame file.
        source: Where the path comes from, for the message.
        size: (H, W).

    Returns:
        The frame.
    """
    return decode_image(path, source, size)


# --- the dataset contract (registered as "cremad" in balgrad.data.readers._registry_av) ----------
FRAME_CHOICES = ("spread", "first")


def spread_indices(available: int, count: int) -> list[int]:
    """``count`` distinct frame indices out of ``available``: the centre of each of
    ``count`` equal segments of the clip (one frame: the middle one).

    Args:
        available: The frames the clip has.
        count: The frames wanted.

    Returns:
        The indices, sorted.
    """
    return [int((k + 0.5) * available / count) for k in range(count)]


class CremaDDataset(ClipList, MultimodalDataset):
    """One split of CREMA-D as a :class:`~balgrad.data._base.MultimodalDataset`:
    ``get(i)`` is ``Example(inputs={"audio": [S], "visual": [3, T, H, W]}, label, index)``.

    Splits ``train`` and ``test`` (the official CSVs); ``val`` (``dev``, ``validation``)
    raises :class:`~balgrad.data.disk._records.MissingSplitError`, and a run carves it from
    ``train``. Options, with the OGM-GE defaults: ``num_frames`` (1: the official
    ``--fps``), ``fps`` (1: the ``Image-01-FPS`` folder), ``image_size`` (224),
    ``seconds`` (3.0), ``sample_rate`` (22050: every clip is resampled to it, as the
    official ``librosa.load(sr=22050)``; None keeps the files' own rate, which must then be
    the same for every clip), ``frame_choice``, ``normalize`` (True: the frames are
    ImageNet-normalised, as the official transform does, so a zero frame, the video
    kind's blank, is the mean colour), ``audio_dir``, ``visual_dir``, ``csv_dir`` (as
    :class:`CremaD`).

    Audio: the clip resampled, then looped and cropped to ``seconds`` and clipped to
    [-1, 1] (the official order: load at 22050 Hz, tile, crop, clip): ``[seconds *
    sample_rate]`` float32, the raw form of the ``audio`` kind; the ``resnet18`` audio
    backbone computes the official spectrogram from it.

    Frames are a pure function of (split, index), in every split: ``frame_choice="spread"``
    (default) reads the centre frame of each of ``num_frames`` equal segments of the clip,
    ``"first"`` the first ``num_frames`` in name order (what the official loader actually
    reads, ``os.listdir`` order aside). The official training loader means to draw
    frames at random each epoch (and its train transform crops and flips at random); a
    random draw here would make the feature cache and a resumed run see other inputs than
    the run that wrote them, and a draw seeded by the index is one fixed arbitrary choice,
    so the choice is one that covers the clip. Augmentation is the model's business.

    ``fingerprint`` covers the options, each clip's name, label, WAV and chosen frames
    (paths and sizes); ``content_files()`` lists those files, every clip's in order (more
    than one per example, so ``content_files_per_example`` is False and a subset keys on
    the files of the whole split; ``content_files_by_example()`` gives them per clip).

    Args:
        data_dir: The dataset's folder (every path stays inside it).
        split: The split (``dev``/``validation`` name ``val``).
        skip_bad: Drop bad clips with one warning instead of raising.
        num_frames: Frames per clip.
        fps: The frames' extraction rate (the ``Image-XX-FPS`` folder).
        image_size: An int or (H, W).
        seconds: The audio length.
        sample_rate: The rate every clip is resampled to (None: the files' own rate).
        frame_choice: ``"spread"`` or ``"first"`` (see above).
        normalize: ImageNet-normalise the frames.
        audio_dir, visual_dir, csv_dir: As :class:`CremaD` takes them.
    """

    content_files_per_example = False

    def __init__(
        self,
        data_dir: str | os.PathLike,
        split: str = "train",
        *,
        skip_bad: bool = False,
        num_frames: FramesPerClip = 1,
        fps: Annotated[int, Field(ge=1, le=120)] = 1,
        image_size: FrameSize = 224,
        seconds: ClipSeconds = 3.0,
        sample_rate: SampleRate | None = 22050,
        frame_choice: Literal["spread", "first"] = "spread",
        normalize: bool = True,
        audio_dir: str = "AudioWAV",
        visual_dir: str = ".",
        csv_dir: str = ".",
    ) -> None:
        from balgrad.data._base import DatasetInfo

        canonical = _checked_split(split, frame_choice, sample_rate)
        self.reader = CremaD(
            data_dir,
            canonical,
            num_frames=num_frames,
            fps=fps,
            image_size=image_size,
            seconds=seconds,
            audio_dir=audio_dir,
            visual_dir=visual_dir,
            csv_dir=csv_dir,
            skip_bad=skip_bad,
        )
        self.split = canonical
        self.root = self.reader.root
        self.skip_bad = bool(skip_bad)
        self.frame_choice = frame_choice
        self.normalize = bool(normalize)
        self.info = DatasetInfo(
            name="cremad",
            task="single_label",
            classes=list(CLASSES),
            modalities={"audio": "audio", "visual": "video"},
        )
        self._options = {
            "num_frames": num_frames,
            "fps": fps,
            "image_size": list(self.reader.image_size),
            "seconds": self.reader.seconds,
            "sample_rate": sample_rate,
            "frame_choice": frame_choice,
            "normalize": self.normalize,
        }
        self._set_clips(self.reader.clips)
        # the rate every clip is brought to; None keeps the files' own (clip 0's sets it)
        self.sample_rate = sample_rate if sample_rate is not None else self._file_rate(0)

    def _set_clips(self, clips: list[Clip]) -> None:
        if not clips:
            raise DataError(f"{NAME} split '{self.split}' under {self.root} has no usable clips")
        self.clips = list(clips)
        self.labels = [c.label for c in self.clips]
        self._chosen = [self._frame_indices(c) for c in self.clips]
        h = hashlib.sha256(json.dumps(self._options, sort_keys=True).encode())
        for clip, files in zip(self.clips, self.content_files_by_example()):
            sizes = [_size(p) for p in files]
            rels = [p.relative_to(self.root).as_posix() for p in files]
            h.update(
                f"{clip.name}\0{clip.label}\0{rels}\0{sizes}\n".encode("utf-8", "surrogatepass")
            )
        self._fingerprint = f"cremad:{self.split}:{len(self.clips)}:{h.hexdigest()[:16]}"

    def _frame_indices(self, clip: Clip) -> list[int]:
        n, t = len(clip.frames), self.reader.num_frames
        return list(range(t)) if self.frame_choice == "first" else spread_indices(n, t)

    def _file_rate(self, i: int) -> int:
        return read_wav(self.clips[i].audio, self.clips[i].source)[1]

    def frame_indices(self, i: int) -> list[int]:
        """Which frames of clip ``i`` are read (the same every call).

        Args:
            i: The clip.

        Returns:
            The frame indices.
        """
        return list(self._chosen[i])

    def audio(self, i: int) -> torch.Tensor:
        """Clip ``i``'s waveform, resampled to ``sample_rate`` and fitted to ``seconds``.

        Args:
            i: The clip.

        Returns:
            float32 ``[S]``.

        Raises:
            DataError: The WAV file is missing or damaged.
        """
        clip = self.clips[i]
        wave, rate = read_wav(clip.audio, clip.source)
        if self._options["sample_rate"] is None and rate != self.sample_rate:
            raise DataError(
                f"{clip.source}: audio file {clip.audio} is at {rate} Hz, the split's first clip "
                f"at {self.sample_rate} Hz; with option sample_rate=None every clip must share "
                "one rate (give sample_rate to resample them)"
            )
        # the official code resamples with librosa (soxr); scipy's polyphase filter agrees
        # with it up to the filters' pass-band ripple
        wave = resample(wave, rate, self.sample_rate, f"{clip.source}: audio file {clip.audio}")
        return loop_to_length(wave, max(1, round(self.reader.seconds * self.sample_rate)))

    def frames(self, i: int) -> torch.Tensor:
        """Clip ``i``'s frames, resized (and normalised with ``normalize``).

        Args:
            i: The clip.

        Returns:
            float32 ``[3, T, H, W]``.

        Raises:
            DataError: A frame is missing or damaged.
        """
        clip = self.clips[i]
        size = self.reader.image_size
        return read_frames(clip.frames, self._chosen[i], clip.source, size, self.normalize)

    def get(self, index: int):
        """One example: the clip's audio and frames, and its emotion label.

        Args:
            index: Its position in the split.

        Returns:
            The :class:`~balgrad.data._base.Example`.
        """
        from balgrad.data._base import Example

        index = checked_index(index, len(self.clips), f"{NAME} {self.split}")
        label = torch.tensor(self.labels[index], dtype=torch.int64)
        inputs = {"audio": self.audio(index), "visual": self.frames(index)}
        return Example(inputs=inputs, label=label, index=index)

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def content_files_by_example(self) -> list[list[Path]]:
        """Per clip: its WAV, then the frames it reads.

        Returns:
            One list of files per clip.
        """
        return [
            [c.audio, *(c.frames[k] for k in chosen)] for c, chosen in zip(self.clips, self._chosen)
        ]

    def content_files(self) -> list[Path]:
        """Every file the examples are decoded from (each clip's WAV and frames).

        Returns:
            The files.
        """
        return [p for files in self.content_files_by_example() for p in files]

    def validate(self) -> list[str]:
        """Check every clip before it is needed, without decoding it: its WAV's header and
        chunks (:func:`~balgrad.data.decoders._wav.read_wav_header`: every declared size
        against the file, the rate and channels in range) and its chosen frames are complete images
        (:func:`~balgrad.data.disk._images.header_error`). A bad clip raises
        :class:`DataError` naming the CSV line; with ``skip_bad=True`` bad clips are
        dropped with one ``DataWarning`` and their reasons returned."""
        from balgrad.data.decoders._image import header_error

        problems = Problems(self.skip_bad)
        kept = []
        for clip, files in zip(self.clips, self.content_files_by_example()):
            problem = _wav_header_problem(clip)
            for frame in files[1:]:
                if problem is None:
                    err = header_error(frame)
                    problem = None if err is None else image_error(frame, clip.source, err)
            if problem is None:
                kept.append(clip)
            else:
                problems.bad(problem)
        if problems.reasons:
            self._set_clips(kept)
            problems.warn(f"{NAME} split '{self.split}' ({self.root})", stacklevel=2)
        return list(problems.reasons)

    def __repr__(self) -> str:
        return f"CremaDDataset(split={self.split!r}, n={len(self)}, root={str(self.root)!r})"


def _checked_split(split: str, frame_choice: str, sample_rate: int | None) -> str:
    """The canonical name of ``split``, once it and the dataset's own options are checked."""
    from balgrad.data.disk._layout import canonical_split
    from balgrad.data.disk._records import MissingSplitError

    canonical = canonical_split(split)
    if canonical not in SPLITS:
        raise MissingSplitError(
            f"{NAME}: no split {split!r}; the OGM-GE layout has only train, test (no "
            "official validation split: carve one from 'train')"
        )
    if frame_choice not in FRAME_CHOICES:
        raise ConfigError(
            f"{NAME}: option 'frame_choice' must be one of {FRAME_CHOICES}, got {frame_choice!r}"
        )
    check_rate_option(NAME, sample_rate)
    return canonical


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1  # reading it raises, naming it


def _wav_header_problem(clip: Clip) -> str | None:
    try:
        read_wav_header(clip.audio, clip.source)
    except DataError as e:
        return str(e)
    return None
