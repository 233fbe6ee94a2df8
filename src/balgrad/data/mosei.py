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

Features hold -inf (MulT's audio) and NaN (COVAREP frames); like both official loaders,
which set ``audio[audio == -inf] = 0`` (MMSA also zeroes NaN), every non-finite feature
becomes 0, and :attr:`MoseiSplit.cleaned` counts them per modality.

The user names the pickle itself and it references no other file, so there is no folder
to keep paths inside (``disk/paths.py``); ids are decoded as strict UTF-8 per record as
``disk/readers.py`` does. ``raw_text`` is not read. A bad split, key or record raises at
once: the arrays of a split share N, so there is no record to skip.

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


def load_mult_pickle(path: str | Path) -> dict[str, MoseiSplit]:
    """The three splits of a MulT-format pickle (``mosei_senti_data.pkl``, ``mosi_data.pkl``)."""
    path = Path(path)
    data = _splits_of(safe_load_pickle(path), path)
    out = {}
    for split in SPLITS:
        d = data[split]
        where = f"{path} split {split!r}"
        features, cleaned = _features(d, FEATURE_KEYS, where)
        n = _common_n(features, where)
        labels = _labels(d, "labels", n, where)
        out[split] = MoseiSplit(split, features, labels, _ids(d, n, where), {}, cleaned)
    return out


def load_mmsa_pickle(path: str | Path, text: str = "text") -> dict[str, MoseiSplit]:
    """The three splits of an MMSA pickle (``aligned_50.pkl``, ``unaligned_50.pkl``).

    ``text="text"`` reads the text feature sequences, ``text="text_bert"`` the (N, 3, L)
    BERT inputs (ids, mask, segment ids; ``lengths["text"]`` is the mask's sum, as MMSA's
    models take it). ``audio_lengths`` / ``vision_lengths`` become ``lengths["audio"]`` /
    ``lengths["visual"]`` when present.
    """
    if text not in ("text", "text_bert"):
        raise ValueError(f"text must be 'text' or 'text_bert', not {text!r}")
    path = Path(path)
    data = _splits_of(safe_load_pickle(path), path)
    keys = dict(FEATURE_KEYS, text=text)
    out = {}
    for split in SPLITS:
        d = data[split]
        where = f"{path} split {split!r}"
        features, cleaned = _features(d, keys, where)
        n = _common_n(features, where)
        labels = _labels(d, "regression_labels", n, where)
        lengths = {}
        for modality in ("audio", "visual"):
            key = f"{keys[modality]}_lengths"
            if key in d:
                lengths[modality] = _lengths(
                    d[key], n, features[modality].shape[1], f"{where} key {key!r}"
                )
        if text == "text_bert":
            mask = features["text"][:, 1, :]
            if not np.isin(mask, (0.0, 1.0)).all():
                bad = int(np.flatnonzero(~np.isin(mask, (0.0, 1.0)).all(axis=1))[0])
                raise DataError(
                    f"{where} key 'text_bert' record {bad}: row 1 (the attention mask) is not 0/1"
                )
            lengths["text"] = mask.sum(axis=1).astype(np.int64)
        out[split] = MoseiSplit(split, features, labels, _ids(d, n, where), lengths, cleaned)
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


def _labels(d: Mapping[str, Any], key: str, n: int, where: str) -> np.ndarray:
    a = _array(d, key, where)
    if a.ndim == 0 or a.shape[0] != n or a.size != n:
        raise DataError(
            f"{where} key {key!r}: expected one label per record ({n}), found shape {a.shape}"
        )
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise DataError(f"{where} key {key!r}: expected real numbers, found dtype {a.dtype}")
    labels = a.reshape(n).astype(np.float32)
    lo, hi = LABEL_RANGE
    bad = ~(np.isfinite(labels) & (labels >= lo) & (labels <= hi))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{where} key {key!r} record {i}: label {labels[i]} is not a finite number in [{lo:g}, {hi:g}]"
        )
    return labels


def _lengths(value: Any, n: int, t: int, where: str) -> np.ndarray:
    a = np.asarray(value)
    if a.shape != (n,) or not np.issubdtype(a.dtype, np.number):
        raise DataError(
            f"{where}: expected {n} numbers (one length per record), found shape {a.shape} dtype {a.dtype}"
        )
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(a) & (a == np.round(a)) & (a >= 0) & (a <= t))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{where} record {i}: length {a[i]} is not a whole number in [0, {t}]")
    return a.astype(np.int64)


def _ids(d: Mapping[str, Any], n: int, where: str) -> list[str]:
    if "id" not in d:  # MulT's loader allows a file without ids
        return [str(i) for i in range(n)]
    raw = d["id"]
    if len(raw) != n:
        raise DataError(f"{where} key 'id': {len(raw)} ids for {n} records")
    return [_id_text(raw[i], f"{where} key 'id' record {i}") for i in range(n)]


def _id_text(value: Any, where: str) -> str:
    if isinstance(value, np.ndarray) and value.ndim > 0 or isinstance(value, (list, tuple)):
        return "/".join(_id_text(v, where) for v in value)
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{where}: the id is not UTF-8 ({e})") from None
    return str(value.item() if isinstance(value, np.generic) else value)


# --- metrics (as MMSA's MetricsTop.__eval_mosei_regression computes them) ----------------


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
        "acc7": acc7(preds, truth),
        "mae": mae(preds, truth),
        "pearson": pearson(preds, truth),
    }
