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

import json
import logging
import os
from collections import Counter

from balgrad.data._io import (
    DiskDataset,
    MissingSplitError,
    Problems,
    Record,
    canonical_split,
    check_text,
    clean_text,
    decode_text,
    hash_bytes,
    options_hash,
    read_bytes,
    resolve_root,
)
from balgrad.data.base import DatasetInfo
from balgrad.errors import ConfigError, DataError

log = logging.getLogger(__name__)

NAME = "mmimdb"
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
PLOT_MODES = ("longest", "first", "join")
LAYOUT = """  <data_dir>/
    split.json          ({"train": [ids], "dev": [ids], "test": [ids]})
    dataset/<id>.jpeg
    dataset/<id>.json   ({"plot": [str, ...], "genres": [str, ...], ...})"""


class MMIMDbDataset(DiskDataset):
    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        split: str = "train",
        *,
        skip_bad: bool = False,
        allow_empty_text: bool = False,
        plot: str = "longest",
        check_files: bool = True,
        workers: int | None = None,
    ) -> None:
        if plot not in PLOT_MODES:
            raise ConfigError(f"{NAME}: option plot={plot!r} must be one of {PLOT_MODES}")
        root = resolve_root(data_dir, NAME, ["split.json", "dataset"], LAYOUT, nested=("mmimdb",))
        split = canonical_split(split)
        split_path = root / "split.json"
        raw = read_bytes(split_path, NAME, "split file")
        try:
            splits = json.loads(decode_text(raw, split_path))
        except json.JSONDecodeError as e:
            raise DataError(
                f"{split_path} line {e.lineno}: malformed JSON ({e.msg} at column {e.colno})"
            ) from None
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

        to_idx = {g: i for i, g in enumerate(GENRES)}
        ignored: Counter[str] = Counter()
        problems = Problems(skip_bad)
        records: list[Record] = []
        dataset_dir = root / "dataset"
        digest_parts: list[bytes] = [raw]
        for pos, movie_id in enumerate(ids):
            mid = str(movie_id).strip()
            meta = dataset_dir / f"{mid}.json"
            where = f"{meta} (listed in {split_path} '{key}' entry {pos})"
            try:
                if not mid:
                    raise DataError(f"{split_path} '{key}' entry {pos}: empty id")
                try:
                    meta_raw = meta.read_bytes()
                except FileNotFoundError:
                    raise DataError(f"{where}: metadata file is missing") from None
                digest_parts.append(meta_raw)
                try:
                    obj = json.loads(decode_text(meta_raw, meta))
                except json.JSONDecodeError as e:
                    raise DataError(
                        f"{meta} line {e.lineno}: malformed JSON ({e.msg} at column {e.colno})"
                    ) from None
                if not isinstance(obj, dict):
                    raise DataError(f"{where}: expected a JSON object")
                text = check_text(_plot_text(obj, plot, where), where, allow_empty_text)
                genres = obj.get("genres")
                if not isinstance(genres, list):
                    raise DataError(f"{where}: field 'genres' must be a list, got {genres!r}")
                kept = sorted({to_idx[g] for g in map(str, genres) if g in to_idx})
                ignored.update(str(g) for g in genres if str(g) not in to_idx)
                if not kept:
                    raise DataError(f"{where}: none of the 23 MM-IMDb genres in {genres!r}")
                records.append(Record(dataset_dir / f"{mid}.jpeg", text, tuple(kept), where))
            except DataError as e:
                problems.bad(str(e))

        self.ignored_genres: Counter[str] = ignored
        if ignored:
            log.info(
                "%s %s: ignored %d genre label(s) outside the 23: %s",
                NAME,
                split,
                sum(ignored.values()),
                dict(ignored.most_common()),
            )
        info = DatasetInfo(
            name=NAME,
            task="multi_label",
            classes=list(GENRES),
            primary_metric="f1_macro",
            metrics=["f1_macro", "f1_micro"],
        )
        super().__init__(
            info=info,
            split=split,
            root=root,
            records=records,
            problems=problems,
            content_hash=hash_bytes(
                *digest_parts, options_hash({"plot": plot, "allow_empty_text": allow_empty_text})
            ),
            check_files=check_files,
            workers=workers,
        )


def _plot_text(obj: dict, mode: str, where: str) -> str:
    if "plot" not in obj:
        raise DataError(f"{where}: missing field 'plot'")
    plot = obj["plot"]
    if isinstance(plot, str):
        return clean_text(plot)
    if not isinstance(plot, list):
        raise DataError(f"{where}: field 'plot' must be a list of strings, got {plot!r}")
    parts = [clean_text(p) for p in plot]
    parts = [p for p in parts if p]
    if not parts:
        return ""
    if mode == "first":
        return parts[0]
    if mode == "join":
        return " ".join(parts)
    return max(parts, key=len)  # first of the longest, as MMBT's argmax
