"""The base of the on-disk loaders: a declaration plus one ``parse``.

A loader declares what it reads (name, expected layout, marker paths, nested folders,
splits, task, metrics, and its options with types and defaults, as a dataclass
``Options``) and implements ONE method::

    def parse(self, root, split, problems, options) -> tuple[list[Record], IndexInfo]

:class:`DiskLoader` does the rest once for all: it builds the constructor
``Cls(data_dir, split="train", *, skip_bad=False, allow_empty_text=False, <options>,
check_files=True, workers=None)`` from the declaration (a real signature, so
``inspect.signature`` lists the options), checks the options' values, finds the root,
maps the split name, refuses a split the dataset does not have, refuses a path option
(:func:`path_option`) that leads outside the data folder, and hands the parsed records to
:class:`~balgrad.data.disk._dataset.DiskDataset`.

Why the constructor is built here rather than written as a plain registered factory per
dataset: a plug-in registers its loader class alone, and the registry reads that class's
signature to check ``--dataset-option`` values by name and to list them in ``balgrad
list``; a factory per dataset would have to repeat the ``Options`` fields by hand, and a
plug-in that forgot would lose both (tried for issue 24, left as it is).

Containment: ``parse`` reads every file through ``self.boundary``
(:class:`~balgrad.data.disk._paths.FolderBoundary` of :meth:`DiskLoader.data_folder`), so
no index file, per-record file, folder listing or option leads outside the data folder.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from balgrad.data._base import IMAGE_TEXT, DatasetInfo, TaskKind
from balgrad.data.disk._dataset import DiskDataset
from balgrad.data.disk._layout import canonical_split, resolve_root
from balgrad.data.disk._paths import FolderBoundary
from balgrad.data.disk._records import MissingSplitError, Problems, Record
from balgrad.registry import validated


@validated
@dataclass(frozen=True)
class LoaderOptions:
    """The options ``parse`` gets; a loader's ``Options`` adds its own fields (with
    defaults: each is a keyword-only constructor argument), their choices and ranges in
    their annotations (``Literal[...]``, ``Annotated[float, Field(ge=0)]``), checked
    when the options are made (:func:`~balgrad.registry.validated`); a rule between
    fields goes in the dataclass's ``__post_init__``."""

    allow_empty_text: bool = False


def path_option(kind: str = "file") -> Any:
    """An ``Options`` field (default None) naming a ``kind`` ("file" or "folder"), relative
    to the data folder unless absolute; the skeleton refuses, before reading anything, one
    that leads outside the data folder. Read it with :meth:`DiskLoader.option_path`.

    Args:
        kind: ``"file"`` or ``"folder"``.

    Returns:
        A ``dataclasses.field``.
    """
    return dataclasses.field(default=None, metadata={"path": kind})


def path_options(options_cls: type[LoaderOptions]) -> dict[str, str]:
    """``name -> kind`` of the ``Options`` fields made with :func:`path_option`.

    Args:
        options_cls: An ``Options`` class.

    Returns:
        ``{field: kind}``.
    """
    return {
        f.name: f.metadata["path"] for f in dataclasses.fields(options_cls) if "path" in f.metadata
    }


@dataclass(frozen=True)
class IndexInfo:
    """What ``parse`` learned besides the records."""

    classes: list[str]
    # sha256 over the index file bytes and the options that change the content; it goes
    # into the fingerprint, and so into feature-cache keys: keep it stable
    content_hash: str
    task: TaskKind | None = None  # None: the declared task
    metrics: list[str] | None = None  # None: the declared metrics
    primary_metric: str | None = None  # None: the first metric


# options every loader takes besides its Options: they go to DiskDataset, not to parse
DATASET_OPTIONS = {"check_files": (True, bool), "workers": (None, int | None)}


class DiskLoader(DiskDataset):
    """Base class of the loaders. Subclasses set the class attributes and ``parse``.

    A subclass's constructor is ``Cls(data_dir, split="train", *, skip_bad=False,
    allow_empty_text=False, <its options>, check_files=True, workers=None)``.

    Args:
        data_dir: The dataset's folder.
        split: ``train``, ``val`` (``dev``, ``validation``) or ``test``.
        skip_bad: Drop bad records with one warning instead of raising.
        allow_empty_text: Keep records whose text is empty.
        check_files: Check that every file exists before training.
        workers: Threads for the up-front checks (None: a default).
    """

    name: ClassVar[str]  # the registry name; info.name
    layout: ClassVar[str]  # the expected folder layout, shown in layout errors
    markers: ClassVar[Sequence[str]] = ()  # paths (relative to the root) that identify it
    nested: ClassVar[Sequence[str]] = ()  # sub-folders of data_dir that may be the root
    splits: ClassVar[Sequence[str] | None] = None  # None: parse decides (per split file)
    split_note: ClassVar[str] = ""  # the rest of the "no split" message
    task: ClassVar[TaskKind] = "single_label"
    metrics: ClassVar[Sequence[str]] = ("accuracy",)  # the first is the primary metric
    Options: ClassVar[type[LoaderOptions]] = LoaderOptions

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" not in cls.__dict__:  # unless a subclass writes its own constructor
            cls.__init__ = _constructor(cls)  # type: ignore[method-assign]
        if not hasattr(cls.Options.__init__, "__wrapped__"):  # its annotations checked
            validated(cls.Options)

    # -- hooks -------------------------------------------------------------------
    def parse(
        self, root: Path, split: str, problems: Problems, options: Any
    ) -> tuple[list[Record], IndexInfo]:
        """Read split ``split`` under ``root`` with ``options`` (an ``Options``): the records
        (bad ones go to ``problems``) and what else was learned. Raise
        :class:`MissingSplitError` when ``splits`` is None and the split's file is missing.

        Args:
            root: The dataset root.
            split: The canonical split name.
            problems: Where bad records go.
            options: The dataset's ``Options``.

        Returns:
            The records and the :class:`IndexInfo`.
        """
        raise NotImplementedError

    @classmethod
    def dataset_name(cls, options: Any) -> str:
        """The name shown in ``info`` and messages (an option may set it).

        Args:
            options: The dataset's options.

        Returns:
            The name.
        """
        return cls.name

    @classmethod
    def available_splits(cls, options: Any) -> Sequence[str] | None:
        """The splits the dataset has (the class's ``splits``), or None when any name may be
        asked for (its file then says).

        Args:
            options: The dataset's options.

        Returns:
            The split names, or None.
        """
        return cls.splits

    @classmethod
    def data_folder(cls, root: Path) -> Path:
        """The folder every file this dataset reads must lie in (default: the root).

        Args:
            root: The dataset root.

        Returns:
            The folder.
        """
        return root

    def option_path(self, value: str | os.PathLike[str]) -> Path:
        """A :func:`path_option`'s value as a path (relative ones under the data folder).

        Args:
            value: The option's value.

        Returns:
            The path.
        """
        return self._data_folder / Path(value).expanduser()

    # -- the shared skeleton -----------------------------------------------------
    def _load(
        self,
        data_dir: str | os.PathLike[str],
        split: str,
        skip_bad: bool,
        options: LoaderOptions,
        dataset_options: dict[str, Any],
    ) -> None:
        name = self.dataset_name(options)
        root = resolve_root(data_dir, name, self.markers, self.layout, nested=self.nested)
        split = canonical_split(split)
        splits = self.available_splits(options)
        if splits is not None and split not in splits:
            raise MissingSplitError(f"{name}: no split '{split}'; {self.split_note}")
        base = Path(data_dir).expanduser()
        if root != base:  # a nested layout folder (data_dir/hateful_memes) linked elsewhere
            FolderBoundary(base).check(name, "dataset folder", root)
        # every file parse reads goes through self.boundary; options first, before any read
        self._data_folder = self.data_folder(root)
        self.boundary = FolderBoundary(self._data_folder)
        for field, kind in path_options(type(options)).items():
            value = getattr(options, field)
            if value is not None:
                where = f"{name}: option {field}={str(value)!r}"
                self.boundary.check(where, kind, self.option_path(value))
        problems = Problems(skip_bad)
        records, index = self.parse(root, split, problems, options)
        metrics = list(index.metrics or self.metrics)
        info = DatasetInfo(
            name=name,
            task=index.task or self.task,
            classes=list(index.classes),
            primary_metric=index.primary_metric or metrics[0],
            metrics=metrics,
            modalities=dict(IMAGE_TEXT),  # a record is an image file and a text
        )
        DiskDataset.__init__(
            self,
            info=info,
            split=split,
            root=root,
            records=records,
            problems=problems,
            content_hash=index.content_hash,
            **dataset_options,
        )


def _constructor(cls: type[DiskLoader]):
    """``__init__(self, data_dir, split="train", *, skip_bad=False, <Options fields>,
    check_files=True, workers=None)`` of ``cls``."""
    types = typing.get_type_hints(cls.Options, include_extras=True)
    option_fields = [(f.name, f.default, types[f.name]) for f in dataclasses.fields(cls.Options)]
    dataset_fields = [(n, default, t) for n, (default, t) in DATASET_OPTIONS.items()]
    p = inspect.Parameter
    signature = inspect.Signature(
        [
            p("self", p.POSITIONAL_OR_KEYWORD),
            p("data_dir", p.POSITIONAL_OR_KEYWORD, annotation=str | os.PathLike),
            p("split", p.POSITIONAL_OR_KEYWORD, default="train", annotation=str),
            p("skip_bad", p.KEYWORD_ONLY, default=False, annotation=bool),
            *(
                p(n, p.KEYWORD_ONLY, default=default, annotation=t)
                for n, default, t in option_fields + dataset_fields
            ),
        ],
        return_annotation=None,
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)  # TypeError for an unknown option
        bound.apply_defaults()
        given = bound.arguments
        self._load(
            given["data_dir"],
            given["split"],
            given["skip_bad"],
            cls.Options(**{n: given[n] for n, _, _ in option_fields}),
            {n: given[n] for n in DATASET_OPTIONS},
        )

    __init__.__signature__ = signature  # type: ignore[attr-defined]
    __init__.__annotations__ = {
        q.name: q.annotation for q in signature.parameters.values() if q.name != "self"
    }
    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    __init__.__module__ = cls.__module__
    __init__.__doc__ = f"Load split ``split`` of {cls.name} from ``data_dir`` (see the class)."
    return __init__
