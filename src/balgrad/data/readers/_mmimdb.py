"""MM-IMDb (Arevalo et al., 2017) in its released layout.

::

    <data_dir>/                   (or its sub-folder mmimdb/)
      split.json                  {"train": ["0000008", ...], "dev": [...], "test": [...]}
      dataset/<id>.jpeg           the poster
      dataset/<id>.json           {"plot": ["...", ...], "genres": ["Drama", ...], ...}

Multi-label over the 23 genres of the MM-IMDb paper (Table 1 order, by frequency).
Genres outside those 23 (News, Adult, Talk-Show, Reality-TV in the real data) are
ignored and counted in ``ignored_genres``; a movie left with none of the 23 is a bad
record. ``plot`` is a list of plot summaries: option ``plot`` picks ``"longest"``
(default; what MMBT's preprocessing does), ``"first"`` or ``"join"`` (all, space-joined).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from balgrad.data.disk._content_hash import hash_bytes, options_hash
from balgrad.data.disk._loader import DiskLoader, IndexInfo, LoaderOptions
from balgrad.data.disk._readers import (
    check_text,
    class_index,
    json_type,
    parse_json,
)
from balgrad.data.disk._records import MissingSplitError, Problems, Record
from balgrad.errors import DataError

log = logging.getLogger(__name__)

# MM-IMDb paper, Table 1: the 23 genres kept, in decreasing frequency
GENRES = [
    "Drama",
    "Comedy",
    "Romance",
    "Thriller",
    "Crime",
    "Action",
    "Adventure",
    "Horror",
    "Documentary",
    "Mystery",
    "Sci-Fi",
    "Fantasy",
    "Family",
    "Biography",
    "War",
    "History",
    "Music",
    "Animation",
    "Musical",
    "Western",
    "Sport",
    "Short",
    "Film-Noir",
]
SPLIT_KEYS = {"train": "train", "val": "dev", "test": "test"}
PlotMode = Literal["longest", "first", "join"]
_GENRE_INDEX = class_index(GENRES)


class MMIMDbDataset(DiskLoader):
    """The ``mmimdb`` on-disk dataset (the module docstring gives the layout): multi-label
    over 23 genres, poster and plot per movie.

    The options are also ``--dataset-option KEY=VALUE`` flags; the arguments every disk
    dataset takes are :class:`~balgrad.data.disk.DiskLoader`'s.

    Args:
        plot: Which plot summary is the text.
    """

    name = "mmimdb"
    layout = """  <data_dir>/
    split.json          ({"train": [ids], "dev": [ids], "test": [ids]})
    dataset/<id>.jpeg
    dataset/<id>.json   ({"plot": [str, ...], "genres": [str, ...], ...})"""
    markers = ("split.json", "dataset")
    nested = ("mmimdb",)
    splits = None  # the keys of split.json
    task = "multi_label"
    metrics = ("f1_macro", "f1_micro")

    @dataclass(frozen=True)
    class Options(LoaderOptions):
        plot: PlotMode = "longest"  # which plot summary is the text

    def parse(
        self, root: Path, split: str, problems: Problems, options: Options
    ) -> tuple[list[Record], IndexInfo]:
        """Read a split's index under ``root``: its records (bad ones to ``problems``) and what
        else was learned (classes, counts). See :meth:`balgrad.data.disk.DiskLoader.parse`."""
        split_path = root / "split.json"
        raw = self.boundary.read_bytes(split_path, self.name, "split file")
        key, ids = _split_ids(raw, split_path, split)
        ignored: Counter[str] = Counter()
        records: list[Record] = []
        digest_parts: list[bytes] = [raw]
        for pos, movie_id in enumerate(ids):
            entry = f"{split_path} '{key}' entry {pos}"
            if isinstance(movie_id, bool) or not isinstance(movie_id, (str, int)):
                problems.bad(
                    f"{entry}: an id must be a string or a number, got {json_type(movie_id)} {movie_id!r}"
                )
                continue
            mid = str(movie_id).strip()
            try:
                records.append(
                    self._record(root / "dataset", mid, entry, options, digest_parts, ignored)
                )
            except DataError as e:
                problems.bad(str(e))
        self.ignored_genres: Counter[str] = ignored
        if ignored:
            log.info(
                "%s %s: ignored %d genre label(s) outside the 23: %s",
                self.name,
                split,
                sum(ignored.values()),
                dict(ignored.most_common()),
            )
        settings = {"plot": options.plot, "allow_empty_text": options.allow_empty_text}
        content_hash = hash_bytes(*digest_parts, options_hash(settings))
        return records, IndexInfo(list(GENRES), content_hash)

    def _record(
        self,
        dataset_dir: Path,
        mid: str,
        entry: str,
        options: Options,
        digest_parts: list[bytes],
        ignored: Counter[str],
    ) -> Record:
        """The record of movie ``mid`` (listed at ``entry``) from its metadata file. The
        file's bytes go to ``digest_parts`` and its genres outside the 23 to ``ignored``
        as soon as they are read, whether the record is then kept or not."""
        meta = dataset_dir / f"{mid}.json"
        where = f"{meta} (listed in {entry})"
        if not mid:
            raise DataError(f"{entry}: empty id")
        # an id such as "../../x" must not read x.json
        self.boundary.check(where, "metadata file", meta)
        try:
            meta_raw = meta.read_bytes()
        except FileNotFoundError:
            raise DataError(f"{where}: metadata file is missing") from None
        digest_parts.append(meta_raw)
        obj = parse_json(meta_raw, meta)
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected a JSON object")
        text = check_text(_plot_text(obj, options.plot, where), where, options.allow_empty_text)
        genres = obj.get("genres")
        if not isinstance(genres, list) or not all(isinstance(g, str) for g in genres):
            raise DataError(f"{where}: field 'genres' must be a list of strings, got {genres!r}")
        kept = sorted({_GENRE_INDEX[g] for g in genres if g in _GENRE_INDEX})
        ignored.update(g for g in genres if g not in _GENRE_INDEX)
        if not kept:
            raise DataError(f"{where}: none of the 23 MM-IMDb genres in {genres!r}")
        return Record(dataset_dir / f"{mid}.jpeg", text, tuple(kept), where)


def _split_ids(raw: bytes, split_path: Path, split: str) -> tuple[str, list]:
    """(the key of ``split`` in ``split.json``, its list of ids)."""
    splits = parse_json(raw, split_path)
    if not isinstance(splits, dict):
        raise DataError(f"{split_path}: expected a JSON object of split name -> list of ids")
    key = SPLIT_KEYS.get(split, split)
    if key not in splits:
        raise MissingSplitError(
            f"{split_path}: no split '{key}' (for split '{split}'); keys present: "
            f"{', '.join(map(str, splits))}"
        )
    ids = splits[key]
    if not isinstance(ids, list):
        raise DataError(f"{split_path}: split '{key}' must be a list of ids")
    return key, ids


def _plot_text(obj: dict, mode: str, where: str) -> str:
    if "plot" not in obj:
        raise DataError(f"{where}: missing field 'plot'")
    plot = obj["plot"]
    if isinstance(plot, str):
        return plot.strip()
    if not isinstance(plot, list) or not all(isinstance(p, str) for p in plot):
        raise DataError(
            f"{where}: field 'plot' must be a list of strings, got {json_type(plot)} {plot!r:.80}"
        )
    parts = [p.strip() for p in plot]
    parts = [p for p in parts if p]
    if not parts:
        return ""
    if mode == "first":
        return parts[0]
    if mode == "join":
        return " ".join(parts)
    return max(parts, key=len)  # first of the longest, as MMBT's argmax
