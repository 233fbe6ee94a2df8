"""CMU-MOSEI / CMU-MOSI from their released pickles, and the field's sentiment metrics.

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
:class:`SafeUnpickler` allows only the globals numpy arrays and plain containers need and
refuses any other with a :class:`DataError` naming the file and the global, before
anything of it is called.

Features hold -inf (MulT's audio) and may hold NaN. Both official loaders set
``audio[audio == -inf] = 0`` (MMSA zeroes NaN too, when it normalizes); here every
non-finite feature of every modality becomes 0, and :attr:`MoseiSplit.cleaned` counts them
per modality.

The user names the pickle itself and it references no other file, so there is no folder
to keep paths inside (``disk/paths.py``); ids are decoded as strict UTF-8 per record as
``disk/readers.py`` does. ``raw_text`` is not read. A missing split or key, a wrong rank or
a mismatched N always raises; a bad record (label, id, length) raises naming it, or with
``skip_bad=True`` is dropped from its split and counted in one ``DataWarning``
(``disk/records.py``'s policy).

The pipeline's modality names are ``audio``, ``visual`` and ``text``; the files' key for
the visual features is ``vision``.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from balgrad.data.disk.records import Problems
from balgrad.errors import DataError

SPLITS = ("train", "valid", "test")
# pipeline modality name -> key in both pickles
FEATURE_KEYS = {"audio": "audio", "visual": "vision", "text": "text"}
LABEL_RANGE = (-3.0, 3.0)

# (module, name) a numpy-array pickle needs: numpy 1.x and 2.x spell the module differently
_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")
_ALLOWED_GLOBALS = frozenset(
    [(m, "_reconstruct") for m in _NUMPY_CORE]
    + [(m, "scalar") for m in _NUMPY_CORE]
    + [("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")]
    + [("numpy", "ndarray"), ("numpy", "dtype")]
    # protocol <= 2 pickles spell bytes as _codecs.encode(str, "latin1")
    + [("_codecs", "encode")]
    + [("builtins", n) for n in ("dict", "list", "tuple", "set", "frozenset", "bytearray")]
    + [("collections", "OrderedDict")]
)


class SafeUnpickler(pickle.Unpickler):
    """An unpickler for numpy arrays in plain containers; any other global is refused.

    Follows the "Restricting Globals" recipe of the Python ``pickle`` documentation.
    """

    def __init__(self, file: Any, source: Path) -> None:
        # latin1: numpy's advice for pickles written by Python 2 (a no-op for Python 3 ones)
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise DataError(
            f"{self.source}: refused to unpickle global {module}.{name}; only numpy arrays "
            "and plain containers are read from a dataset pickle (a pickle can run code)"
        )


def safe_load_pickle(path: str | Path) -> Any:
    """The object in pickle file ``path``, read with :class:`SafeUnpickler`."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return SafeUnpickler(f, path).load()
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: the pickle file is missing") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read the pickle file: {e}") from None
    except Exception as e:  # truncated or not a pickle: UnpicklingError, EOFError, ValueError...
        raise DataError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None


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
    """
    path = Path(path)
    data = _splits_of(safe_load_pickle(path), path)
    problems = Problems(skip_bad)
    out = {}
    for split in SPLITS:
        d, where, bad = data[split], f"{path} split {split!r}", {}
        features, cleaned = _features(d, FEATURE_KEYS, where)
        n = _common_n(features, where)
        labels = _labels(d, "labels", n, where, bad)
        ids = _ids(d, n, where, bad)
        out[split] = _split(split, features, labels, ids, {}, cleaned, bad, problems)
    problems.warn(str(path), stacklevel=2)
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
    """
    if text not in ("text", "text_bert"):
        raise ValueError(f"text must be 'text' or 'text_bert', not {text!r}")
    path = Path(path)
    data = _splits_of(safe_load_pickle(path), path)
    keys = dict(FEATURE_KEYS, text=text)
    problems = Problems(skip_bad)
    out = {}
    for split in SPLITS:
        d, where, bad = data[split], f"{path} split {split!r}", {}
        features, cleaned = _features(d, keys, where)
        n = _common_n(features, where)
        labels = _labels(d, "regression_labels", n, where, bad)
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
        ids = _ids(d, n, where, bad)
        out[split] = _split(split, features, labels, ids, lengths, cleaned, bad, problems)
    problems.warn(str(path), stacklevel=2)
    return out


class MoseiDataset:
    """A torch-style dataset over one split: item ``i`` is ``(features, label)`` with
    ``features = {"audio": (T, D) float32 tensor, "visual": ..., "text": ...}`` and
    ``label`` a float32 scalar tensor."""

    def __init__(self, split: MoseiSplit) -> None:
        import torch  # here, so reading the pickle needs no torch

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
        a = np.array(a, dtype=np.float32)  # a copy: the cleaning below must not alter the caller's
        bad = ~np.isfinite(a)
        cleaned[modality] = int(bad.sum())
        a[bad] = 0.0
        features[modality] = a
    return features, cleaned


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
    if len(raw) != n:
        raise DataError(f"{where} key 'id': {len(raw)} ids for {n} records")
    ids = []
    for i in range(n):
        try:
            ids.append(_id_text(raw[i]))
        except UnicodeDecodeError as e:
            bad.setdefault(i, f"{where} key 'id' record {i}: the id is not UTF-8 ({e})")
            ids.append("")
    return ids


def _id_text(value: Any) -> str:
    if isinstance(value, np.ndarray) and value.ndim > 0 or isinstance(value, (list, tuple)):
        return "/".join(_id_text(v) for v in value)
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8")
    return str(value.item() if isinstance(value, np.generic) else value)


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


# --- metrics, as MMSA's MetricsTop.__eval_mosei_regression computes them -----------------


def _pair(preds: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(preds, dtype=np.float64).reshape(-1)
    y = np.asarray(truth, dtype=np.float64).reshape(-1)
    if p.shape != y.shape or p.size == 0:
        raise ValueError(f"need as many predictions as labels, at least one: {p.size} and {y.size}")
    return p, y


def acc2_non_negative(preds: Any, truth: Any) -> float:
    """Binary accuracy with label >= 0 positive, every record counted (MMSA "Has0_acc_2")."""
    p, y = _pair(preds, truth)
    return float(np.mean((p >= 0) == (y >= 0)))


def acc2_non_zero(preds: Any, truth: Any) -> float:
    """Binary accuracy over records whose label is not 0, > 0 positive (MMSA "Non0_acc_2",
    MulT's ``binary_truth = test_truth[non_zeros] > 0``). NaN when every label is 0."""
    p, y = _pair(preds, truth)
    keep = y != 0
    return float(np.mean((p[keep] > 0) == (y[keep] > 0))) if keep.any() else math.nan


def _weighted_f1(pred_pos: np.ndarray, true_pos: np.ndarray) -> float:
    # sklearn's f1_score(average="weighted"): per class 2 TP / (predicted + true), weighted by
    # the class's share of the truth
    total = 0.0
    for c in (False, True):
        tp = np.sum((pred_pos == c) & (true_pos == c))
        denom = np.sum(pred_pos == c) + np.sum(true_pos == c)
        total += np.sum(true_pos == c) * (2 * tp / denom if denom else 0.0)
    return float(total / len(true_pos))


def f1_non_negative(preds: Any, truth: Any) -> float:
    """Weighted F1 of the :func:`acc2_non_negative` classes (MMSA "Has0_F1_score")."""
    p, y = _pair(preds, truth)
    return _weighted_f1(p >= 0, y >= 0)


def f1_non_zero(preds: Any, truth: Any) -> float:
    """Weighted F1 of the :func:`acc2_non_zero` classes (MMSA "Non0_F1_score"); NaN when
    every label is 0."""
    p, y = _pair(preds, truth)
    keep = y != 0
    return _weighted_f1(p[keep] > 0, y[keep] > 0) if keep.any() else math.nan


def acc7(preds: Any, truth: Any) -> float:
    """Seven-class accuracy: both sides clipped to [-3, 3] and rounded to an integer."""
    p, y = _pair(preds, truth)
    lo, hi = LABEL_RANGE
    return float(np.mean(np.round(np.clip(p, lo, hi)) == np.round(np.clip(y, lo, hi))))


def mae(preds: Any, truth: Any) -> float:
    """Mean absolute error."""
    p, y = _pair(preds, truth)
    return float(np.mean(np.abs(p - y)))


def pearson(preds: Any, truth: Any) -> float:
    """Pearson correlation; NaN when either side is constant."""
    p, y = _pair(preds, truth)
    dp, dy = p - p.mean(), y - y.mean()
    denom = math.sqrt(float(dp @ dp) * float(dy @ dy))
    return float(dp @ dy) / denom if denom > 0 else math.nan


def sentiment_metrics(preds: Any, truth: Any) -> dict[str, float]:
    """All of the above, keyed by name."""
    return {
        "acc2_non_negative": acc2_non_negative(preds, truth),
        "acc2_non_zero": acc2_non_zero(preds, truth),
        "f1_non_negative": f1_non_negative(preds, truth),
        "f1_non_zero": f1_non_zero(preds, truth),
        "acc7": acc7(preds, truth),
        "mae": mae(preds, truth),
        "pearson": pearson(preds, truth),
    }
