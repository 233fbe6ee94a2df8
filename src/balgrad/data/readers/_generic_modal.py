"""The generic dataset in the modalities its index declares: image files, text, WAV audio
and feature arrays, each decoded by its kind's checked decoder (:mod:`balgrad.data.decoders`).

::

    <data_dir>/
      train.csv | train.jsonl    e.g. header: photo:image,sound:audio,emb:features,label
      val.csv   | val.jsonl      (optional; also valid / validation / dev)
      test.csv  | test.jsonl
      classes.txt                (optional: one class name per line, in index order)

A CSV column (or JSONL field) named ``<name>:<kind>`` declares the modality ``name`` of
kind ``kind``; the option ``modalities`` (``{photo: image, sound: audio}``) declares them
instead, for columns named plainly ``photo``, ``sound``. The kinds read
(:func:`read_kinds`, each by its kind's
:class:`~balgrad.data._kind_io.CellReader`):

- ``image``: a path to an image file (any format PIL reads; :mod:`~.decoders.image`);
- ``text``: the text itself, in the cell;
- ``audio``: a path to a WAV file (:mod:`~.decoders.wav`), mono, brought to one sample rate
  (option ``sample_rate``; None: every file must have the first file's rate) and looped or
  cropped to ``audio_seconds`` (3.0), as CREMA-D's clips;
- ``features``: a path to a ``.npy`` array (:mod:`~.decoders.npy`), ``[F]`` (read as
  ``[1, F]``) or ``[L, F]``, the same shape in every row.

Paths are relative to the index file's folder and must stay inside ``data_dir``. Labels,
classes, task and metrics are as in the image+text form (:mod:`balgrad.data.readers._generic`).
An index that declares no modality is the image+text form, read by
:class:`~balgrad.data.readers._generic.GenericDataset` unchanged.

Errors name the file, the line and the column: a missing file, a column the header lacks,
an unknown kind, a corrupt file (found at load by :meth:`GenericModalDataset.validate`,
which reads every file's header, before the first training step).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from balgrad.data._base import DatasetInfo, Example, MultimodalDataset, text_modality
from balgrad.data._kind_io import CellReader
from balgrad.data._kinds import KINDS, check_modalities_of
from balgrad.data._positions import checked_index
from balgrad.data.decoders._wav import MAX_RATE, MIN_RATE
from balgrad.data.disk._content_hash import hash_bytes, options_hash
from balgrad.data.disk._layout import canonical_split, resolve_root
from balgrad.data.disk._paths import FolderBoundary
from balgrad.data.disk._readers import (
    class_index,
    decode_text,
    iter_csv_rows,
    iter_jsonl,
    string_field,
)
from balgrad.data.disk._records import MissingSplitError, Problems
from balgrad.data.readers._generic import (
    NAME,
    GenericDataset,
    _classes,
    _default_metrics,
    _looked_for,
    _read_rows,
    _record_label,
    _resolve_task,
    split_file,
)
from balgrad.errors import ConfigError, DataError


def read_kinds() -> dict[str, str]:
    """The kinds this reader decodes (those whose :class:`~balgrad.data._kinds.ModalityKind`
    has a ``cell`` reader, a registered kind included), and what a cell of each holds.

    Returns:
        ``{kind: what a cell holds}``, in the kind table's order.
    """
    return {name: k.cell.what for name, k in KINDS.items() if k.cell is not None}


# the skip_bad warning points at the caller of load_dataset_from_disk: __init__ (1) <-
# GenericDataset.__new__ (2) <- Registry.build (3) <- load_dataset_from_disk (4) <- (5)
_WARN_FROM_INIT = 5


def header_modalities(columns: list[str], where: str, lenient: bool = False) -> dict[str, str]:
    """``name -> kind`` of the ``<name>:<kind>`` columns, in header order; an unknown
    kind is a :class:`DataError` naming ``where`` and the column, unless ``lenient`` and
    no column declares a known kind (then none declares anything: an image+text index,
    or one declared by the option, whose other columns hold a colon).

    Args:
        columns: The header's columns.
        where: The file, for the message.
        lenient: Skip a column of an unknown kind.

    Returns:
        ``{name: kind}``.

    Raises:
        DataError: An unknown kind (unless ``lenient``).
    """
    declared: dict[str, str] = {}
    pairs = [(c, *(p.strip() for p in c.rsplit(":", 1))) for c in columns if ":" in c]
    readable = read_kinds()
    unknown = [(c, kind) for c, _, kind in pairs if kind not in readable]
    if unknown and (len(unknown) < len(pairs) or not lenient):
        column, kind = unknown[0]
        raise DataError(
            f"{where}: column {column!r} declares the kind {kind!r}; the generic reader "
            f"reads {', '.join(readable)}"
        )
    for _, name, kind in pairs if not unknown else ():
        if name in declared:
            raise DataError(f"{where}: the modality {name!r} is declared twice")
        declared[name] = kind
    return declared


def declared_modalities(data_dir: Any, options: dict[str, Any]) -> dict[str, str] | None:
    """``name -> kind`` of a generic dataset's modalities: the ``modalities`` option, else
    the ``<name>:<kind>`` columns of the train split's index (else val's, test's); None
    when neither declares any (the image+text form). Read where the run's config is
    resolved, so every modality's backbone and noise are known before data is loaded.

    Args:
        data_dir: The dataset's folder.
        options: The dataset's options.

    Returns:
        ``{name: kind}``, or None.
    """
    given = options.get("modalities")
    if given is not None:
        return _checked_option(given)
    if data_dir is None or not Path(data_dir).expanduser().is_dir():
        return None  # the load reports the folder
    root = Path(data_dir).expanduser()
    for split in ("train", "val", "test"):
        path = split_file(root, split)
        if path is not None:
            header = _header(path, _first_line(FolderBoundary(root), path))
            image_text = (options.get("image_field", "image"), options.get("text_field", "text"))
            legacy = all(f in header for f in image_text)
            return header_modalities(header, f"{path} line 1", lenient=legacy) or None
    return None


def _checked_option(given: Any) -> dict[str, str]:
    if not isinstance(given, dict) or not given:
        raise ConfigError(
            f"generic: option modalities must map each modality's name to its kind, "
            f"e.g. {{photo: image, sound: audio}}; got {given!r}"
        )
    readable = read_kinds()
    for name, kind in given.items():
        if kind not in readable:
            raise ConfigError(
                f"generic: option modalities: {name!r} has the kind {kind!r}; the generic "
                f"reader reads {', '.join(readable)}"
            )
    return {str(k): str(v) for k, v in given.items()}


def _first_line(boundary: FolderBoundary, path: Path) -> bytes:
    """The first line of an index file (what declares its modalities; read each time a
    run's config is resolved, so not the whole file)."""
    boundary.check(NAME, "split file", path)
    try:
        with path.open("rb") as f:
            return f.readline(1 << 20)
    except OSError as e:
        raise DataError(f"{NAME}: split file {path} cannot be read ({e})") from None


def _header(path: Path, raw: bytes) -> list[str]:
    """The CSV header's columns, or the first JSONL object's keys."""
    text = decode_text(raw, path)
    if path.suffix == ".jsonl":
        first = next(iter_jsonl(text, str(path), Problems(True)), None)
        return [] if first is None else list(first[1])
    first_row = next(iter_csv_rows(text, str(path)), None)
    return [] if first_row is None else [c.strip() for c in first_row[1]]


@dataclass(frozen=True)
class Row:
    """One kept index row: per modality a file path (file kinds) or the text."""

    inputs: dict[str, Path | str]
    label: int | tuple[int, ...]
    source: str  # "<index file> line N"


class GenericModalDataset(MultimodalDataset):
    """One split of a generic dataset whose index declares its modalities (module
    docstring). ``get(i)`` is ``Example(inputs={name: raw input of its kind}, label, index)``.

    ``options``: :class:`~balgrad.data.readers._generic.GenericDataset`'s (``image_field`` and
    ``text_field`` do not apply: the header names the columns).

    Args:
        data_dir: The dataset's folder.
        split: The split.
        declared: ``{name: kind}`` of the index's modalities.
        skip_bad: Drop bad records with one warning instead of raising.
        check_files: Check that every file exists.
        workers: Threads for the up-front checks.
        **options: :class:`~balgrad.data.readers._generic.GenericDataset`'s options.
    """

    content_files_per_example = False  # several files an example

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        split: str,
        declared: dict[str, str],
        *,
        skip_bad: bool = False,
        check_files: bool = True,
        workers: int | None = None,
        **options: Any,
    ) -> None:
        del workers  # one header read a file: no thread pool needed
        modalities = dict(declared)
        opts = _options(options)
        self.skip_bad = bool(skip_bad)
        self.allow_empty_text = bool(opts.allow_empty_text)  # the text cells read it
        name = opts.dataset_name
        self.root = resolve_root(data_dir, name, (), GenericDataset.layout)
        self.split = split = canonical_split(split)
        self.boundary = FolderBoundary(self.root)
        path = split_file(self.root, split)
        if path is None:
            raise MissingSplitError(
                f"{name}: split file for '{split}' is missing: no {_looked_for(split)}"
            )
        check_modalities_of(modalities, f"{path} line 1")
        raw = self.boundary.read_bytes(path, name, "split file")
        columns = _columns(_header(path, raw), modalities, path)
        label_fields = (None, None, opts.label_field, opts.labels_field)
        problems = Problems(skip_bad)
        rows = _read_rows(path, raw, label_fields, problems)
        task = _resolve_task(opts.task, rows, opts.label_field, opts.labels_field)
        label_key = opts.labels_field if task == "multi_label" else opts.label_field
        classes, classes_src = _classes(
            self.boundary, self.root, split, rows, label_key, label_fields, name, opts.classes
        )
        to_idx = class_index(classes)
        kept = []
        for line, obj in rows:
            where = f"{path} line {line}"
            try:
                inputs = self._inputs(
                    obj, where, path.parent, modalities, columns, check_files, opts
                )
                kept.append(Row(inputs, _record_label(obj, label_key, task, to_idx, where), where))
            except DataError as e:
                problems.bad(str(e))
        self.info = _info(name, task, classes, modalities, opts)
        self._content_hash = _index_hash(raw, classes, classes_src, self.info, columns, opts)
        self._sample_rate_option = opts.sample_rate
        self.audio_seconds = float(opts.audio_seconds)
        self.skipped: list[str] = list(problems.reasons)
        self._keep(kept)
        problems.warn(f"{name} split '{split}' ({self.root})", stacklevel=_WARN_FROM_INIT)
        self.sample_rate = self._common_rate()
        # each features modality's [L, F], and where it was first read
        self._shapes: dict[str, tuple[tuple[int, ...], str]] = {}
        self._label_fields = label_fields

    # -- reading the index ---------------------------------------------------------
    def _inputs(self, obj, where, folder, modalities, columns, check_files, opts) -> dict:
        """One index row's inputs: the accepted value (text), or the checked path of each
        file kind (as the kind's :class:`~balgrad.data._kind_io.CellReader` says)."""
        del opts  # the cell readers read the settings from the dataset
        inputs: dict[str, Path | str] = {}
        for m, kind in modalities.items():
            column = columns[m]
            if column not in obj:
                raise DataError(f"{where}: missing field '{column}'")
            value = string_field(obj, column, where)
            cell = _cell(kind)
            if not cell.is_file:
                accept = cell.accept
                where_cell = f"{where}, column '{column}'"
                inputs[m] = value if accept is None else accept(value, where_cell, self)
                continue
            if not value:
                raise DataError(f"{where}: empty column '{column}' (a {cell.what} path)")
            file = folder / value
            what = f"{cell.what} (column '{column}')"
            self.boundary.check(where, what, file)
            if check_files and not file.is_file():
                raise DataError(f"{where}: {what} {file} is missing")
            inputs[m] = file
        return inputs

    def _keep(self, rows: list[Row]) -> None:
        """Set the rows and what derives from them: labels, texts, the fingerprint."""
        if not rows:
            raise DataError(
                f"{self.info.name} split '{self.split}' under {self.root} has no usable records"
                + (f" ({len(self.skipped)} skipped as bad)" if self.skipped else "")
            )
        self.rows = rows
        if self.info.task == "multi_label":
            n = self.info.num_classes
            self.labels: list = [[int(c in _as_tuple(r.label)) for c in range(n)] for r in rows]
        else:
            self.labels = [int(r.label) for r in rows]  # type: ignore[arg-type]
        text = text_modality(self.info.modalities)
        # `texts`: the one text modality's texts, read without decoding the files
        self.texts = [r.inputs[text] for r in rows] if text is not None else None
        h = hashlib.sha256(self._content_hash.encode())
        for r in rows:
            parts = [_part(v, self.root) for v in r.inputs.values()]
            h.update(f"{parts}\0{r.label}\n".encode("utf-8", "surrogatepass"))
        self._fingerprint = f"{self.info.name}:{self.split}:{len(rows)}:{h.hexdigest()[:16]}"

    def _files(self, row: Row) -> list[tuple[str, str, Path]]:
        return [
            (m, k, row.inputs[m])  # type: ignore[misc]
            for m, k in self.info.modalities.items()
            if _cell(k).is_file
        ]

    def _cells(self) -> list[tuple[str, CellReader]]:
        """Each modality and its kind's cell reader."""
        return [(m, _cell(k)) for m, k in self.info.modalities.items()]

    def _common_rate(self) -> int | None:
        """The rate every clip is brought to: the option, else the first clip's own."""
        rated = [(m, c) for m, c in self._cells() if c.rate_of is not None]
        if self._sample_rate_option is not None or not rated:
            return self._sample_rate_option
        m, cell = rated[0]
        for row in self.rows:
            try:
                return cell.rate_of(row.inputs[m], f"{row.source}, column {m!r}")  # type: ignore[arg-type,misc]
            except DataError:
                if not self.skip_bad:
                    raise
        return None  # no clip reads: validate() drops every row, and says so

    # -- checks ------------------------------------------------------------------
    def validate(self) -> list[str]:
        """Check every row's files before they are needed, without decoding them: each
        image's header and completeness, each WAV's header (and its rate, when
        ``sample_rate`` is None), each array's header (a numeric ``[F]`` or ``[L, F]``, the
        shape of the split's first). A bad row raises :class:`DataError` naming the file,
        the index line and the column; with ``skip_bad`` it is dropped with one warning."""
        problems = Problems(self.skip_bad)
        self._train_shapes()
        kept = []
        for row in self.rows:
            problem = None
            for m, kind, file in self._files(row):
                problem = self._file_problem(m, kind, file, f"{row.source}, column {m!r}")
                if problem is not None:
                    break
            if problem is None:
                kept.append(row)
            else:
                problems.bad(problem)
        if problems.reasons:
            self.skipped.extend(problems.reasons)
            self._keep(kept)
            problems.warn(f"{self.info.name} split '{self.split}' ({self.root})", stacklevel=2)
        return list(problems.reasons)

    def _file_problem(self, m: str, kind: str, file: Path, where: str) -> str | None:
        probe = _cell(kind).probe
        try:
            if probe is not None:
                probe(file, where, m, self)
        except DataError as e:
            return str(e)
        return None

    def check_rate(self, rate: int, file: Path, where: str) -> None:
        """Refuse a clip at another rate than the split's first when the option
        ``sample_rate`` is None (every clip must then share one rate).

        Args:
            rate: The clip's rate (Hz).
            file: The clip.
            where: The row and column, for the message.

        Raises:
            DataError: Another rate.
        """
        if self._sample_rate_option is None and rate != self.sample_rate:
            raise DataError(
                f"{where}: audio file {file} is at {rate} Hz, the split's first clip at "
                f"{self.sample_rate} Hz; pass the option sample_rate to resample every clip "
                "to one rate"
            )

    def check_shape(self, m: str, shape: tuple[int, ...], file: Path, where: str) -> None:
        """Refuse a feature array whose shape (as ``[L, F]``) differs from the first of its
        modality (the training split's first, where known).

        Args:
            m: The modality.
            shape: The array's shape, ``[F]`` or ``[L, F]``.
            file: The array's file.
            where: The row and column, for the message.

        Raises:
            DataError: Another shape.
        """
        shape = (1, *shape) if len(shape) == 1 else shape
        first, first_where = self._shapes.setdefault(m, (shape, where))
        if shape != first:
            raise DataError(
                f"{where}: feature array {file} has the shape {list(shape)} (as [L, F]); the "
                f"first of {m!r} ({first_where}) has {list(first)}: every row of every split "
                "needs one shape"
            )

    def _train_shapes(self) -> None:
        """Another split's arrays must have the training split's shape (the model's
        ``in_features`` comes from it): its first row's array headers are the reference."""
        path = split_file(self.root, "train")
        shaped = [(m, c) for m, c in self._cells() if c.shape_of is not None]
        if self.split == "train" or path is None or not shaped:
            return
        raw = self.boundary.read_bytes(path, self.info.name, "split file")
        columns = _columns(_header(path, raw), self.info.modalities, path)
        rows = _read_rows(path, raw, self._label_fields, Problems(True))
        if not rows:
            return
        line, obj = rows[0]
        for m, cell in shaped:
            where = f"{path} line {line}, column {m!r}"
            file = path.parent / str(obj.get(columns[m], ""))
            if self.boundary.problem(where, cell.what, file) is None:
                try:
                    shape = cell.shape_of(file, where)  # type: ignore[misc]
                except DataError:
                    continue  # the train split's own load names it
                self._shapes.setdefault(m, ((1, *shape) if len(shape) == 1 else shape, where))

    # -- Dataset API ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.rows)

    def get(self, index: int) -> Example:
        """One example: each declared modality's raw input, and the label.

        Args:
            index: Its position in the split (negative counts from the end).

        Returns:
            The :class:`~balgrad.data._base.Example`.

        Raises:
            IndexError: Out of range.
            DataError: A file is missing or damaged.
        """
        index = checked_index(index, len(self.rows), f"{self.info.name} {self.split}")
        row = self.rows[index]
        inputs = {}
        for m, kind in self.info.modalities.items():
            value, where = row.inputs[m], f"{row.source}, column {m!r}"
            inputs[m] = _cell(kind).decode(value, where, m, self)
        dtype = torch.float32 if self.info.task == "multi_label" else torch.int64
        return Example(
            inputs=inputs, label=torch.tensor(self.labels[index], dtype=dtype), index=index
        )

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def content_files(self) -> list[Path]:
        """Every row's files, in order (the fingerprint covers their paths, not bytes)."""
        return [file for row in self.rows for _, _, file in self._files(row)]

    def __repr__(self) -> str:
        return (
            f"GenericModalDataset(name={self.info.name!r}, split={self.split!r}, n={len(self)}, "
            f"modalities={self.info.modalities}, root={str(self.root)!r})"
        )


def _cell(kind: str) -> CellReader:
    """The generic reader's :class:`~balgrad.data._kind_io.CellReader` of ``kind`` (the
    modalities were checked against :func:`read_kinds` when the index was read)."""
    cell = KINDS[kind].cell
    if cell is None:  # a kind registered without one, named by a caller past the checks
        raise DataError(
            f"generic: the kind {kind!r} has no cell reader; the generic reader reads "
            f"{', '.join(read_kinds())}"
        )
    return cell


def _options(given: dict[str, Any]):
    """``GenericDataset.Options`` of ``given``; ``image_field``/``text_field`` refused."""
    names = {f.name for f in fields(GenericDataset.Options)}
    known = {k: v for k, v in given.items() if k in names}
    if stray := sorted(set(given) - names):
        raise ConfigError(f"generic: unknown option(s) {stray}")
    opts = GenericDataset.Options(**known)
    for field in ("image_field", "text_field"):
        if getattr(opts, field) != getattr(GenericDataset.Options, field):
            raise ConfigError(
                f"generic: option {field} applies to the image+text index; an index that "
                "declares its modalities names their columns in its header"
            )
    if opts.sample_rate is not None and not MIN_RATE <= opts.sample_rate <= MAX_RATE:
        raise ConfigError(
            f"generic: option sample_rate must be None or in [{MIN_RATE}, {MAX_RATE}] Hz, "
            f"got {opts.sample_rate}"
        )
    if not 0 < opts.audio_seconds <= 3600:
        raise ConfigError(
            f"generic: option audio_seconds must be in (0, 3600], got {opts.audio_seconds}"
        )
    return opts


def _columns(header: list[str], modalities: dict[str, str], path: Path) -> dict[str, str]:
    """The column of each modality: ``<name>:<kind>``, or ``<name>`` (option-declared);
    the header's own declarations must agree with ``modalities`` (the run's)."""
    where = f"{path} line 1"
    own = header_modalities(header, where, lenient=True)
    if own and own != modalities:
        raise DataError(
            f"{where}: the header declares the modalities {own}, but the dataset's are "
            f"{modalities} (every split file must declare the same, as the train split's)"
        )
    columns = {}
    for m, kind in modalities.items():
        for column in (f"{m}:{kind}", m):
            if column in header:
                columns[m] = column
                break
        else:
            raise DataError(
                f"{where}: the header lacks the column of the modality {m!r} (kind {kind}): "
                f"expected '{m}:{kind}' or '{m}'; header is {header!r}"
            )
    return columns


def _info(
    name: str, task: str, classes: list[str], modalities: dict[str, str], opts
) -> DatasetInfo:
    metrics = list(opts.metrics) if opts.metrics else _default_metrics(task)
    return DatasetInfo(
        name=name,
        task=task,  # type: ignore[arg-type]
        classes=classes,
        primary_metric=opts.primary_metric or metrics[0],
        metrics=metrics,
        modalities=dict(modalities),
    )


def _index_hash(
    raw: bytes, classes: list[str], classes_src: str, info: DatasetInfo, columns: dict, opts
) -> str:
    """The content hash of an index: its bytes, the classes and the settings read with it."""
    settings = {
        "modalities": info.modalities,
        "columns": columns,
        "task": info.task,
        "allow_empty_text": opts.allow_empty_text,
        "sample_rate": opts.sample_rate,
        "audio_seconds": opts.audio_seconds,
    }
    return hash_bytes(raw, "\n".join(classes), classes_src, options_hash(settings))


def _as_tuple(label: int | tuple[int, ...]) -> tuple[int, ...]:
    return (label,) if isinstance(label, int) else label


def _part(value: Path | str, root: Path) -> str:
    if isinstance(value, str):
        return value
    try:
        rel = value.relative_to(root).as_posix()
    except ValueError:
        rel = value.as_posix()
    try:
        size = value.stat().st_size
    except OSError:
        size = -1  # reading it raises, naming it
    return f"{rel}:{size}"
