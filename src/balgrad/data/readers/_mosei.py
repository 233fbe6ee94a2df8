"""CMU-MOSEI / CMU-MOSI from their released pickles (the field's sentiment read-outs are
:mod:`balgrad.evaluate._sentiment`).

Two formats, both a dict of splits ``d[split]`` for split in ``train``, ``valid``, ``test``:

* **MulT** (``mosei_senti_data.pkl``, ``mosi_data.pkl``; read by MulT's ``src/dataset.py``,
  BalanceBenchmark, CGGM, MultiBench): ``vision`` (N, T, 35), ``audio`` (N, T, 74),
  ``text`` (N, T, 300 GloVe), ``labels`` (N, 1, 1) and, optionally, ``id`` (N, ...).
  T is 50 in the aligned files; the ``*_data_noalign.pkl`` files hold a different T per
  modality, which is read as is (only N must agree within a split).
* **MMSA** (``aligned_50.pkl`` / ``unaligned_50.pkl``; read by thuiar/MMSA
  ``src/MMSA/data_loader.py``): ``text`` (N, T, D) or ``text_bert`` (N, 3, L: token ids,
  mask, segment ids), ``audio``, ``vision``, ``regression_labels`` (N,), ``id``,
  ``raw_text`` and, in the unaligned file, ``audio_lengths`` / ``vision_lengths`` (N,).

A pickle can run code when loaded, so a user's file is never given to ``pickle.load``:
:class:`~balgrad.data._safe_pickle.SafeUnpickler` reads only plain numpy arrays in plain
containers, at a cost bounded by the file's size, and refuses anything else with a
:class:`DataError` naming the file and what was refused, before anything of it is called
or any array element is touched (``data/_safe_pickle.py``).

Features hold -inf (MulT's audio) and may hold NaN. Both official loaders set
``audio[audio == -inf] = 0`` (MMSA zeroes NaN too, when it normalizes); here every
non-finite feature of every modality (NaN, ±inf, or a value beyond float32's range) becomes
0, :attr:`MoseiSplit.cleaned` counts them per modality, and one ``DataWarning`` per split
names the count and share of each modality cleaned whenever their share exceeds
``CLEANED_WARN_SHARE`` (0: whenever any value is cleaned). A modality of a split with no
finite value at all, or with no real step (every length 0, or no steps), is refused with a
``DataError`` naming the split and the modality, at load, so before any training.

The user names the pickle itself and it references no other file, so there is no folder
to keep paths inside (``disk/_paths.py``); ids are decoded as strict UTF-8 per record as
``disk/_readers.py`` does. ``raw_text`` is not read. A missing split or key, a wrong rank or
a mismatched N always raises; a bad record (label, id, length) raises naming it, or with
``skip_bad=True`` is dropped from its split and counted in one ``DataWarning``
(``disk/_records.py``'s policy).

The pipeline's modality names are ``audio``, ``visual`` and ``text``; the files' key for
the visual features is ``vision``.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from balgrad.data._base import MultimodalDataset
from balgrad.data._positions import checked_index
from balgrad.data._safe_pickle import SafeUnpickler, safe_load_pickle  # noqa: F401 (API)
from balgrad.data.disk._records import DataWarning, Problems
from balgrad.errors import ConfigError, DataError

SPLITS = ("train", "valid", "test")
# pipeline modality name -> key in both pickles
FEATURE_KEYS = {"audio": "audio", "visual": "vision", "text": "text"}
LABEL_RANGE = (-3.0, 3.0)
#: the share of a modality's feature values set to 0 (non-finite) above which a split warns
CLEANED_WARN_SHARE = 0.0


@dataclass
class MoseiSplit:
    """One split: ``features[modality]`` float32 (N, T, D), ``labels`` float32 (N,) in
    [-3, 3], ``ids`` one string per record (a multi-part id joined by ``/``), ``lengths``
    int64 (N,) per modality where the file gives them, ``cleaned`` the count of non-finite
    feature values set to 0, per modality."""

    name: str
    features: dict[str, np.ndarray]
    labels: np.ndarray
    ids: list[str]
    lengths: dict[str, np.ndarray] = field(default_factory=dict)
    cleaned: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)


def load_mult_pickle(path: str | Path, skip_bad: bool = False) -> dict[str, MoseiSplit]:
    """The three splits of a MulT-format pickle (``mosei_senti_data.pkl``, ``mosi_data.pkl``).

    A bad record (label, id) raises a :class:`DataError` naming it; with ``skip_bad=True``
    it is dropped from every array of its split and one ``DataWarning`` counts the drops.

    Args:
        path: The pickle.
        skip_bad: Drop bad records with a warning.

    Returns:
        The splits, by name.

    Raises:
        DataError: The file is not a valid MulT pickle.
    """
    path = Path(path)
    return _read_mult(safe_load_pickle(path), path, skip_bad, stacklevel=3)


def _read_mult(obj: Any, path: Path, skip_bad: bool, stacklevel: int) -> dict[str, MoseiSplit]:
    return _read_splits(obj, path, FEATURE_KEYS, "labels", None, skip_bad, stacklevel)


def _read_splits(
    obj: Any,
    path: Path,
    keys: Mapping[str, str],
    label_key: str,
    lengths_of: Callable[..., dict[str, np.ndarray]] | None,
    skip_bad: bool,
    stacklevel: int,
) -> dict[str, MoseiSplit]:
    """The three splits of a pickle's ``obj``: the features of ``keys`` (modality ->
    key), the labels under ``label_key`` and, where ``lengths_of(d, features, n, where,
    bad)`` gives them, each record's lengths. Bad records are checked in that order, then
    the ids; ``stacklevel`` is counted from this function's caller."""
    data = _splits_of(obj, path)
    problems = Problems(skip_bad)
    out = {}
    for split in SPLITS:
        d, where, bad = data[split], f"{path} split {split!r}", {}
        features, cleaned = _features(d, keys, where)
        _warn_cleaned(features, cleaned, keys, where, stacklevel + 1)
        n = _common_n(features, where)
        labels = _labels(d, label_key, n, where, bad)
        lengths = lengths_of(d, features, n, where, bad) if lengths_of is not None else {}
        ids = _ids(d, n, where, bad)
        out[split] = _split(split, features, labels, ids, lengths, cleaned, bad, problems)
        _check_real_steps(out[split], keys, where)
    problems.warn(str(path), stacklevel=stacklevel + 1)
    return out


def load_mmsa_pickle(
    path: str | Path, text: str = "text", skip_bad: bool = False
) -> dict[str, MoseiSplit]:
    """The three splits of an MMSA pickle (``aligned_50.pkl``, ``unaligned_50.pkl``).

    ``text="text"`` reads the text feature sequences, ``text="text_bert"`` the (N, 3, L)
    BERT inputs (ids, mask, segment ids; ``lengths["text"]`` is the mask's sum, as MMSA's
    models take it). ``audio_lengths`` / ``vision_lengths`` become ``lengths["audio"]`` /
    ``lengths["visual"]`` when present. ``skip_bad`` as in :func:`load_mult_pickle`; a bad
    length or BERT mask is a bad record too.

    Args:
        path: The pickle.
        text: The text features' key.
        skip_bad: Drop bad records with a warning.

    Returns:
        The splits, by name.

    Raises:
        DataError: The file is not a valid MMSA pickle.
    """
    if text not in ("text", "text_bert"):
        raise ValueError(f"text must be 'text' or 'text_bert', not {text!r}")
    path = Path(path)
    return _read_mmsa(safe_load_pickle(path), path, text, skip_bad, stacklevel=3)


def _read_mmsa(
    obj: Any, path: Path, text: str, skip_bad: bool, stacklevel: int
) -> dict[str, MoseiSplit]:
    keys = dict(FEATURE_KEYS, text=text)

    def lengths_of(d, features, n, where, bad) -> dict[str, np.ndarray]:
        lengths = {}
        for modality in ("audio", "visual"):
            key = f"{keys[modality]}_lengths"
            if key in d:
                t = features[modality].shape[1]
                lengths[modality] = _lengths(d[key], n, t, f"{where} key {key!r}", bad)
        if text == "text_bert":
            mask = features["text"][:, 1, :]
            for i in np.flatnonzero(~np.isin(mask, (0.0, 1.0)).all(axis=1)):
                note = "row 1 (the attention mask) is not 0/1"
                bad.setdefault(int(i), f"{where} key 'text_bert' record {i}: {note}")
            lengths["text"] = mask.sum(axis=1).astype(np.int64)
        return lengths

    return _read_splits(obj, path, keys, "regression_labels", lengths_of, skip_bad, stacklevel)


class MoseiDataset:
    """A torch-style dataset over one split: item ``i`` is ``(features, label)`` with
    ``features = {"audio": (T, D) float32 tensor, "visual": ..., "text": ...}`` and
    ``label`` a float32 scalar tensor.

    Args:
        split: One split of a loaded pickle.
    """

    def __init__(self, split: MoseiSplit) -> None:
        self.split = split
        self._features = {m: torch.from_numpy(a) for m, a in split.features.items()}
        self._labels = torch.from_numpy(split.labels)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[dict[str, Any], Any]:
        return {m: a[i] for m, a in self._features.items()}, self._labels[i]


# --- validation -------------------------------------------------------------------------


def _splits_of(obj: Any, path: Path) -> Mapping[str, Mapping[str, Any]]:
    if not isinstance(obj, Mapping):
        raise DataError(
            f"{path}: expected a dict of splits {list(SPLITS)}, found {type(obj).__name__}"
        )
    for split in SPLITS:
        if split not in obj:
            raise DataError(f"{path}: split {split!r} is missing (found {sorted(map(str, obj))})")
        if not isinstance(obj[split], Mapping):
            raise DataError(
                f"{path} split {split!r}: expected a dict of arrays, found {type(obj[split]).__name__}"
            )
    return obj


def _array(d: Mapping[str, Any], key: str, where: str) -> np.ndarray:
    if key not in d:
        raise DataError(f"{where}: key {key!r} is missing (found {sorted(map(str, d))})")
    try:
        return np.asarray(d[key])
    except (ValueError, TypeError) as e:  # ragged lists
        raise DataError(f"{where} key {key!r}: not an array ({e})") from None


def _features(
    d: Mapping[str, Any], keys: Mapping[str, str], where: str
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    features, cleaned = {}, {}
    for modality, key in keys.items():
        a = _array(d, key, where)
        if a.ndim != 3:
            raise DataError(
                f"{where} key {key!r}: expected a rank-3 array (N, T, D), found shape {a.shape}"
            )
        if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
            raise DataError(f"{where} key {key!r}: expected real numbers, found dtype {a.dtype}")
        with np.errstate(over="ignore"):  # beyond float32's range: inf, cleaned and counted
            a = np.array(a, dtype=np.float32)  # a copy: the cleaning must not alter the caller's
        bad = ~np.isfinite(a)
        cleaned[modality] = int(bad.sum())
        if a.size and cleaned[modality] == a.size:
            raise DataError(
                f"{where} key {key!r}: every value is NaN, infinite or beyond float32's range; "
                f"modality {modality!r} has no real values"
            )
        a[bad] = 0.0
        features[modality] = a
    return features, cleaned


def _warn_cleaned(
    features: Mapping[str, np.ndarray],
    cleaned: Mapping[str, int],
    keys: Mapping[str, str],
    where: str,
    stacklevel: int,
) -> None:
    """One DataWarning for the split when a modality's cleaned share exceeds
    CLEANED_WARN_SHARE, with every modality's count and share."""
    share = {m: cleaned[m] / features[m].size if features[m].size else 0.0 for m in cleaned}
    if not any(s > CLEANED_WARN_SHARE for s in share.values()):
        return
    counts = ", ".join(
        f"{m} (key {keys[m]!r}) {cleaned[m]} of {features[m].size} ({100 * share[m]:.3g}%)"
        for m in cleaned
        if cleaned[m]
    )
    warnings.warn(
        f"{where}: set non-finite feature values (NaN, inf, or beyond float32's range) to 0: "
        f"{counts}",
        DataWarning,
        stacklevel=stacklevel + 1,
    )


def _check_real_steps(split: MoseiSplit, keys: Mapping[str, str], where: str) -> None:
    """Refuse a modality with no real step in a non-empty split: no steps at all, or
    every record's length 0 (all padding). Every split is read at once, so a test split
    fails here, before any training."""
    if not len(split):
        return
    for modality, a in split.features.items():
        lengths = split.lengths.get(modality)
        if a.shape[1] == 0 or (lengths is not None and not lengths.any()):
            raise DataError(
                f"{where} modality {modality!r} (key {keys[modality]!r}): no real steps in "
                f"any of its {len(split)} records (every length is 0: all padding)"
            )


def _common_n(features: Mapping[str, np.ndarray], where: str) -> int:
    sizes = {m: a.shape[0] for m, a in features.items()}
    if len(set(sizes.values())) != 1:
        raise DataError(f"{where}: the modalities hold different numbers of records {sizes}")
    return next(iter(sizes.values()))


def _labels(d: Mapping[str, Any], key: str, n: int, where: str, bad: dict[int, str]) -> np.ndarray:
    a = _array(d, key, where)
    if a.ndim == 0 or a.shape[0] != n or a.size != n:
        raise DataError(
            f"{where} key {key!r}: expected one label per record ({n}), found shape {a.shape}"
        )
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise DataError(f"{where} key {key!r}: expected real numbers, found dtype {a.dtype}")
    labels = a.reshape(n).astype(np.float32)
    lo, hi = LABEL_RANGE
    for i in np.flatnonzero(~(np.isfinite(labels) & (labels >= lo) & (labels <= hi))):
        note = f"label {labels[i]} is not a finite number in [{lo:g}, {hi:g}]"
        bad.setdefault(int(i), f"{where} key {key!r} record {i}: {note}")
    return labels


def _lengths(value: Any, n: int, t: int, where: str, bad: dict[int, str]) -> np.ndarray:
    a = np.asarray(value)
    if a.shape != (n,) or not np.issubdtype(a.dtype, np.number):
        raise DataError(
            f"{where}: expected {n} numbers (one length per record), "
            f"found shape {a.shape} dtype {a.dtype}"
        )
    with np.errstate(invalid="ignore"):
        wrong = ~(np.isfinite(a) & (a == np.round(a)) & (a >= 0) & (a <= t))
    for i in np.flatnonzero(wrong):
        bad.setdefault(
            int(i), f"{where} record {i}: length {a[i]} is not a whole number in [0, {t}]"
        )
    return np.where(wrong, 0, a).astype(np.int64)


def _ids(d: Mapping[str, Any], n: int, where: str, bad: dict[int, str]) -> list[str]:
    if "id" not in d:  # MulT's loader allows a file without ids
        return [str(i) for i in range(n)]
    raw = d["id"]
    if not (isinstance(raw, (list, tuple)) or isinstance(raw, np.ndarray) and raw.ndim > 0):
        raise DataError(
            f"{where} key 'id': expected one id per record (a list or an array), found "
            f"{type(raw).__name__}" + (f" of shape {raw.shape}" if hasattr(raw, "shape") else "")
        )
    if len(raw) != n:
        raise DataError(f"{where} key 'id': {len(raw)} ids for {n} records")
    ids = []
    for i in range(n):
        try:
            ids.append(_id_text(raw[i]))
        except UnicodeDecodeError as e:
            bad.setdefault(i, f"{where} key 'id' record {i}: the id is not UTF-8 ({e})")
            ids.append("")
        except TypeError as e:
            bad.setdefault(i, f"{where} key 'id' record {i}: {e}")
            ids.append("")
    return ids


def _id_text(value: Any) -> str:
    """A record's id: text, bytes (UTF-8) or a number, or a sequence of those joined by
    ``/``; anything else is a TypeError naming its type."""
    if isinstance(value, np.ndarray) and value.ndim > 0 or isinstance(value, (list, tuple)):
        return "/".join(_id_text(v) for v in value)
    if isinstance(value, np.ndarray):  # 0-d
        value = value[()]
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8")
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (str, int, float)):
        return str(value)
    raise TypeError(f"an id must be text, bytes or a number, not {type(value).__name__}")


def _split(
    name: str,
    features: dict[str, np.ndarray],
    labels: np.ndarray,
    ids: list[str],
    lengths: dict[str, np.ndarray],
    cleaned: dict[str, int],
    bad: dict[int, str],
    problems: Problems,
) -> MoseiSplit:
    """The split, less its bad records (each reported to ``problems``, lowest index first)."""
    for i in sorted(bad):
        problems.bad(bad[i])  # raises unless skip_bad
    if not bad:
        return MoseiSplit(name, features, labels, ids, lengths, cleaned)
    keep = np.ones(len(labels), dtype=bool)
    keep[list(bad)] = False
    return MoseiSplit(
        name,
        {m: a[keep] for m, a in features.items()},
        labels[keep],
        [s for s, k in zip(ids, keep) if k],
        {m: a[keep] for m, a in lengths.items()},
        cleaned,
    )


# --- the dataset contract (registered as "mosei" and "mosi" in balgrad.data.readers._registry_av) ---

FORMATS = ("auto", "mult", "mmsa")
LABEL_MODES = ("acc7", "acc2")
#: the MulT file of each dataset, then the MMSA files, in the order ``format="auto"`` looks
MULT_FILES = {"mosei": "mosei_senti_data.pkl", "mosi": "mosi_data.pkl"}
MMSA_FILES = ("aligned_50.pkl", "unaligned_50.pkl")
#: the pipeline's modality order for these datasets
MODALITIES = ("text", "audio", "visual")
#: split name (canonical, as balgrad spells it) -> the pickles' key
SPLIT_KEYS = {"train": "train", "val": "valid", "test": "test"}

# the last pickle read: the three splits are built one after another from the same file
_LAST: dict[tuple, dict[str, MoseiSplit]] = {}


def find_pickle(data_dir: Path, dataset: str, fmt: str, file: str | None) -> tuple[Path, str]:
    """``(path, format)`` of the pickle to read from ``data_dir``. ``file`` names it
    (relative to ``data_dir``); else ``format`` says which names to look for (``auto``:
    the MulT file, then ``aligned_50.pkl``, then ``unaligned_50.pkl``).

    Args:
        data_dir: The data folder.
        dataset: The dataset, for the message.
        fmt: ``"auto"``, ``"mult"`` or ``"mmsa"``.
        file: The pickle's name, or None.

    Returns:
        (path, format).

    Raises:
        DataError: No pickle is found.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"{dataset}: option 'format' must be one of {FORMATS}, got {fmt!r}")
    from balgrad.data.disk._paths import FolderBoundary

    boundary = FolderBoundary(data_dir)
    if file is not None:
        path = boundary.check(f"{dataset}: option file={file!r}", "pickle file", data_dir / file)
        if not path.is_file():
            raise DataError(f"{dataset}: option file={file!r}: the pickle file {path} is missing")
        return path, fmt
    names = {
        "mult": [MULT_FILES[dataset]],
        "mmsa": list(MMSA_FILES),
        "auto": [MULT_FILES[dataset], *MMSA_FILES],
    }[fmt]
    for name in names:
        path = data_dir / name
        if path.is_file():
            return boundary.check(dataset, "pickle file", path), fmt
    raise DataError(
        f"{dataset}: no pickle in {data_dir} (looked for {', '.join(names)}; give option "
        "'file' to name another)"
    )


def _format_of(obj: Any, path: Path) -> str:
    """``mult`` or ``mmsa``, from the label key of the train split."""
    train = obj.get("train") if isinstance(obj, Mapping) else None
    if isinstance(train, Mapping):
        if "regression_labels" in train:
            return "mmsa"
        if "labels" in train:
            return "mult"
    raise DataError(
        f"{path}: cannot tell the format: split 'train' holds neither 'labels' (MulT) nor "
        "'regression_labels' (MMSA); give option 'format'"
    )


def read_splits(path: Path, fmt: str, skip_bad: bool) -> dict[str, MoseiSplit]:
    """The three splits of the pickle at ``path`` in format ``fmt`` (``auto``: told by its
    keys). The last file read is remembered (by path, size, mtime and inode), so building
    train, val and test reads it once.

    Args:
        path: The pickle.
        fmt: ``"auto"``, ``"mult"`` or ``"mmsa"``.
        skip_bad: Drop bad records with a warning.

    Returns:
        The splits, by name.
    """
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino, fmt, skip_bad)
    if key not in _LAST:
        obj = safe_load_pickle(path)
        if fmt == "auto":
            fmt = _format_of(obj, path)
        if fmt == "mult":
            splits = _read_mult(obj, path, skip_bad, stacklevel=4)
        else:
            splits = _read_mmsa(obj, path, "text", skip_bad, stacklevel=4)
        _LAST.clear()
        _LAST[key] = splits
    return _LAST[key]


def class_labels(scores: np.ndarray, mode: str) -> np.ndarray:
    """int64 classes of sentiment scores in [-3, 3]: ``acc7``: ``round(clip(y, -3, 3)) + 3``
    (0..6 for -3..3, numpy's round half to even, as :func:`acc7`); ``acc2``: 1 for
    ``y >= 0`` (non-negative), 0 for ``y < 0``.

    Args:
        scores: Sentiment scores.
        mode: ``"acc7"`` or ``"acc2"``.

    Returns:
        The classes.
    """
    if mode == "acc7":
        lo, hi = LABEL_RANGE
        return (np.round(np.clip(scores, lo, hi)) - lo).astype(np.int64)
    if mode == "acc2":
        return (scores >= 0).astype(np.int64)
    raise ConfigError(f"option 'label' must be one of {LABEL_MODES}, got {mode!r}")


def _sentiment_classes(label: str, exclude_zero: bool) -> list[str]:
    """The class names of the sentiment scores as classes (``label``: acc7 or acc2)."""
    if label == "acc7":
        return [str(c) for c in range(-3, 4)]
    return ["negative", "positive" if exclude_zero else "non-negative"]


class MoseiSentiment(MultimodalDataset):
    """One split of CMU-MOSEI as a :class:`~balgrad.data._base.MultimodalDataset` of three
    feature-sequence modalities (``text``, ``audio``, ``visual``): ``get(i)`` is
    ``Example(inputs={m: {"features": [L, F] float32, "lengths": int}}, label, index)``.

    ``data_dir`` holds the MulT pickle (``mosei_senti_data.pkl``; ``mosi_data.pkl`` for
    :class:`MosiSentiment`) or the MMSA pickles (``aligned_50.pkl``, ``unaligned_50.pkl``).
    Splits ``train``, ``val``, ``test`` are the pickles' ``train``, ``valid``, ``test``.
    Options: ``format`` (``auto``: the MulT file, else ``aligned_50.pkl``, else
    ``unaligned_50.pkl``, the format told by the keys; ``mult``; ``mmsa``), ``file`` (the
    pickle's name under ``data_dir``, instead of the usual ones), ``label`` and
    ``exclude_zero``. ``lengths`` are MMSA's ``audio_lengths`` / ``vision_lengths`` where
    the file has them, else the full L; the features are cleaned (every NaN and inf is 0,
    with a ``DataWarning`` counting them), and a modality with no real step is refused.

    Labels: the sentiment score y in [-3, 3] as classes, for the classification protocol:

    * ``label="acc7"`` (default): 7 classes, ``round(clip(y, -3, 3))`` = -3 .. 3;
    * ``label="acc2"``: 2 classes, negative (y < 0) and non-negative (y >= 0): the
      field's "Has0" acc2 convention (MMSA ``Has0_acc_2``), every sample counted;
    * ``exclude_zero=True`` drops the samples whose score is exactly 0 from every split:
      with ``acc2`` this is the field's other, "non-zero" convention (MMSA
      ``Non0_acc_2``, MulT's ``binary_truth``: negative vs positive).

    ``scores`` keeps each sample's real-valued y. The regression read-outs (MAE, Pearson
    correlation, and the acc2/acc7/F1 of a regressor's outputs) are library functions of
    this module (:func:`sentiment_metrics`); a regression trainer is not part of balgrad.

    Args:
        data_dir: The dataset's folder (every path stays inside it).
        split: The split (``dev``/``validation`` name ``val``).
        skip_bad: Drop bad samples with one warning instead of raising.
        format: ``"auto"``, ``"mult"`` or ``"mmsa"``.
        file: The pickle's name under ``data_dir``.
        label: ``"acc7"`` or ``"acc2"`` (see above).
        exclude_zero: Drop the samples whose score is 0.
    """

    dataset = "mosei"
    content_files_per_example = False

    def __init__(
        self,
        data_dir: str | os.PathLike,
        split: str = "train",
        *,
        skip_bad: bool = False,
        format: Literal["auto", "mult", "mmsa"] = "auto",
        file: str | None = None,
        label: Literal["acc7", "acc2"] = "acc7",
        exclude_zero: bool = False,
    ) -> None:
        from balgrad.data._base import DatasetInfo
        from balgrad.data.disk._layout import canonical_split
        from balgrad.data.disk._records import MissingSplitError

        name = self.dataset
        canonical = canonical_split(split)
        if canonical not in SPLIT_KEYS:
            raise MissingSplitError(f"{name}: no split {split!r}; it has train, val, test")
        if label not in LABEL_MODES:
            raise ConfigError(f"{name}: option 'label' must be one of {LABEL_MODES}, got {label!r}")
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise DataError(f"{name}: data folder {root} is missing")
        self.path, fmt = find_pickle(root, name, format, file)
        part = read_splits(self.path, fmt, skip_bad)[SPLIT_KEYS[canonical]]
        keep = part.labels != 0 if exclude_zero else np.ones(len(part), dtype=bool)
        if not keep.any():
            raise DataError(
                f"{self.path} split {SPLIT_KEYS[canonical]!r}: no samples"
                + (" with a non-zero label (option exclude_zero)" if exclude_zero else "")
            )
        self.split = canonical
        self.root = root
        self.label_mode = label
        self.exclude_zero = bool(exclude_zero)
        self.cleaned = dict(part.cleaned)
        self.scores = part.labels[keep]
        self.ids = [s for s, k in zip(part.ids, keep) if k]
        self._warn_duplicate_ids(part.ids)
        self.labels = class_labels(self.scores, label).tolist()
        # every record kept: the arrays themselves (views), not copies of a GB of features
        rows = slice(None) if keep.all() else keep
        self._features = {m: torch.from_numpy(part.features[m][rows]) for m in MODALITIES}
        self._lengths = {m: self._kept_lengths(part, keep, m) for m in MODALITIES}
        self.info = DatasetInfo(
            name=name,
            task="single_label",
            classes=_sentiment_classes(label, exclude_zero),
            modalities={m: "features" for m in MODALITIES},
        )
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def _kept_lengths(self, part: MoseiSplit, keep: np.ndarray, m: str) -> np.ndarray:
        """int64 [N]: the real steps of each kept sample's ``m`` sequence (the file's
        lengths, else the full L); a modality whose every length is 0 is refused."""
        t = self._features[m].shape[1]
        given = part.lengths.get(m)
        lengths = (given[keep] if given is not None else np.full(int(keep.sum()), t)).astype(
            np.int64
        )
        if not lengths.any():
            raise DataError(
                f"{self.path} split {SPLIT_KEYS[self.split]!r} modality {m!r}: no real steps "
                f"in any of its {len(self.labels)} samples (every length is 0)"
                + (
                    " once the zero labels are excluded (option exclude_zero)"
                    if self.exclude_zero
                    else ""
                )
            )
        return lengths

    def _warn_duplicate_ids(self, read: list[str]) -> None:
        from balgrad.data._overlap import warn_duplicates

        # a pickle without ids gets each record's position as its id: those name no segment
        self._named_ids = not all(s == str(i) for i, s in enumerate(read))
        if self._named_ids:
            where = f"{self.dataset} split {self.split!r} ({self.path})"
            warn_duplicates(where, self.ids, stacklevel=3)  # 3: the caller of __init__

    def example_keys(self) -> list[str] | None:
        """The segment ids (:mod:`balgrad.data._overlap`), or None when the pickle has none.

        Returns:
            The ids, or None.
        """
        return list(self.ids) if self._named_ids else None

    def get(self, index: int):
        """One example: each modality's features and length, and the class label.

        Args:
            index: Its position in the split.

        Returns:
            The :class:`~balgrad.data._base.Example`.
        """
        from balgrad.data._base import Example

        index = checked_index(index, len(self), f"{self.dataset} {self.split}")
        inputs = {
            m: {"features": self._features[m][index], "lengths": int(self._lengths[m][index])}
            for m in MODALITIES
        }
        label = torch.tensor(self.labels[index], dtype=torch.int64)
        return Example(inputs=inputs, label=label, index=index)

    def lengths(self, modality: str) -> np.ndarray:
        """int64 ``[N]``: the real steps of each sample's ``modality`` sequence.

        Args:
            modality: ``text``, ``audio`` or ``visual``.

        Returns:
            The lengths.
        """
        return self._lengths[modality].copy()

    def feature_std(self, modality: str) -> torch.Tensor:
        """float64 ``[F]``: each feature's std over the real steps of every sample of the
        split (population std; a constant feature gets 1, as
        :func:`balgrad.data._kinds.feature_std` does).

        Args:
            modality: ``text``, ``audio`` or ``visual``.

        Returns:
            The stds.
        """
        if modality not in self._features:
            raise ConfigError(
                f"{self.dataset}: no modality {modality!r} (it has {', '.join(MODALITIES)})"
            )
        feats = self._features[modality].numpy()
        real = np.arange(feats.shape[1])[None, :] < self._lengths[modality][:, None]
        steps = feats[real].astype(np.float64)  # [real steps, F]
        if not len(steps):
            raise ConfigError(f"{self.dataset} {self.split}: {modality!r} has no real steps")
        std = steps.std(axis=0)
        return torch.from_numpy(np.where(std > 0, std, 1.0))

    @property
    def fingerprint(self) -> str:
        """Covers the content itself: options, ids, scores, lengths and every feature."""
        if self._fingerprint is None:
            h = hashlib.sha256(
                f"{self.path.name}\0{self.label_mode}\0{self.exclude_zero}\0".encode()
            )
            h.update("\0".join(self.ids).encode("utf-8", "surrogatepass"))
            h.update(self.scores.tobytes())
            for m in MODALITIES:
                h.update(f"{m}{tuple(self._features[m].shape)}".encode())
                h.update(self._lengths[m].tobytes())
                h.update(np.ascontiguousarray(self._features[m].numpy()).tobytes())
            self._fingerprint = f"{self.dataset}:{self.split}:{len(self)}:{h.hexdigest()[:16]}"
        return self._fingerprint

    def validate(self) -> list[str]:
        """Nothing left to check: the pickle was read and checked whole at construction."""
        return []

    def sentiment_truth(self, index: torch.Tensor) -> np.ndarray | None:
        """The real-valued score of each sample at ``index``, for a 7-class model's
        regression read-outs (:func:`balgrad.evaluate._sentiment.readout_scores`); None for
        a two-class model (``label="acc2"``), which has no score to read out.

        Args:
            index: Sample indices.

        Returns:
            The scores in [-3, 3], or None.
        """
        return self.scores[index.cpu().numpy()] if self.label_mode == "acc7" else None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(split={self.split!r}, n={len(self)}, file={str(self.path)!r})"
        )


class MosiSentiment(MoseiSentiment):
    """CMU-MOSI, as :class:`MoseiSentiment` (its MulT file is ``mosi_data.pkl``)."""

    dataset = "mosi"
