"""The ranges of the data readers' size options, as types for their signatures.

The registry checks an option's type and range when the run's config is built (see
:mod:`balgrad.registry`), so a clip length, frame size or sample rate outside these
ranges is refused by name before anything is read, rather than asking for an unbounded
allocation (or a traceback) once the first clip is decoded.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

#: an image or frame side in pixels
Pixels = Annotated[int, Field(ge=1, le=4096)]
#: a frame size: one side (square) or (height, width)
FrameSize = Pixels | tuple[Pixels, Pixels]
#: frames sampled per clip
FramesPerClip = Annotated[int, Field(ge=1, le=256)]
#: a clip's length in seconds (a finite, positive number: an hour at most)
ClipSeconds = Annotated[float, Field(gt=0, le=3600)]
#: a sample rate in Hz, telephone band to studio audio
SampleRate = Annotated[int, Field(ge=1000, le=384_000)]
#: worker threads of a reader
Workers = Annotated[int, Field(ge=1, le=1024)]
