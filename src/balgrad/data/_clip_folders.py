"""The steps every reader of audio-visual clip folders shares (CREMA-D, Kinetics-Sounds):
a clip's name, audio file and frame folder checked, its frames listed and read, and the
warnings about the clips a split list drops (``skip_bad``) or names twice."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from balgrad.data.decoders._image import decode_image
from balgrad.data.decoders._wav import MAX_RATE, MIN_RATE
from balgrad.data.disk._paths import FolderBoundary
from balgrad.data.disk._records import Problems
from balgrad.errors import ConfigError

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
#: torchvision's ImageNet statistics, the official ``transforms.Normalize`` of the frames
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Clip:
    name: str
    label: int
    audio: Path  # its audio file
    frames: tuple[Path, ...]  # every frame of the clip, in name order
    source: str  # "<list file> line N", in every error message about this clip
    sizes: tuple[int, ...] = ()  # byte sizes of the audio file and each frame, where read


def check_rate_option(dataset: str, sample_rate: int | None) -> None:
    """The ``sample_rate`` option: None (the files' own) or a rate a WAV may have."""
    if sample_rate is not None and not MIN_RATE <= sample_rate <= MAX_RATE:
        raise ConfigError(
            f"{dataset}: option 'sample_rate' must be None or in [{MIN_RATE}, {MAX_RATE}] Hz "
            f"(the rates a WAV may have), got {sample_rate!r}"
        )


def clip_name_problem(source: str, name: str) -> str | None:
    """Why ``name`` cannot name a clip's files (it must be one plain file name), or None."""
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        return f"{source}: clip name {name!r} is not a file name"
    return None


def clip_frames(
    boundary: FolderBoundary, source: str, audio: Path, folder: Path
) -> tuple[Path, ...] | str:
    """The frame files of ``folder`` in name order, once the clip's ``audio`` file and
    frame ``folder`` are checked (inside the data folder, present); or why they are bad."""
    for what, path in (("audio file", audio), ("frame folder", folder)):
        problem = boundary.problem(source, what, path)
        if problem is not None:
            return problem
    if not audio.is_file():
        return f"{source}: audio file {audio} is missing"
    if not folder.is_dir():
        return f"{source}: frame folder {folder} is missing"
    return tuple(sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES))


def frames_problem(boundary: FolderBoundary, source: str, frames: Sequence[Path]) -> str | None:
    """Why one of ``frames`` may not be read (a link out of the data folder, ...), or None."""
    for frame in frames:
        problem = boundary.problem(source, "frame", frame)
        if problem is not None:
            return problem
    return None


def warn_dropped_and_repeated(
    problems: Problems, where: str, clips: Sequence[Clip], stacklevel: int
) -> None:
    """The ``skip_bad`` warning counting the dropped clips, then one naming the clips
    listed twice; ``stacklevel`` as in ``warnings.warn``, counted from this function's
    caller."""
    from balgrad.data._overlap import warn_duplicates

    problems.warn(where, stacklevel=stacklevel + 1)
    names, sources = [c.name for c in clips], [c.source for c in clips]
    warn_duplicates(where, names, sources, stacklevel=stacklevel + 1)


def read_frames(
    frames: Sequence[Path],
    positions: Sequence[int],
    source: str,
    size: tuple[int, int],
    normalize: bool,
) -> torch.Tensor:
    """The ``frames`` at ``positions``, each resized to ``size`` (H, W): float32
    ``[3, T, H, W]`` in [0, 1], or ImageNet-normalised with ``normalize``; an unreadable
    frame is a :class:`DataError` naming it and ``source``."""
    visual = torch.stack([decode_image(frames[k], source, size) for k in positions], dim=1)
    if normalize:
        visual.sub_(torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1))
        visual.div_(torch.tensor(IMAGENET_STD).view(3, 1, 1, 1))
    return visual


class ClipList:
    """The length and example keys of a dataset that holds its split as ``clips``."""

    clips: list[Clip]

    def __len__(self) -> int:
        return len(self.clips)

    def example_keys(self) -> list[str]:
        """The clip names (:mod:`balgrad.data._overlap`: a clip in train and test is warned).

        Returns:
            The clip names.
        """
        return [c.name for c in self.clips]
