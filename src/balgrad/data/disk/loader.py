"""The base of the on-disk loaders: a declaration plus one ``parse``.

A loader declares what it reads (name, expected layout, marker paths, nested folders,
splits, task, metrics, options with types and defaults) and implements ONE method::

    def parse(self, root, split, problems, *, allow_empty_text, <its options>)
        -> tuple[list[Record], IndexInfo]

:class:`DiskLoader` does the rest once for all: it builds the constructor
``Cls(data_dir, split="train", *, skip_bad=False, allow_empty_text=False, <options>,
check_files=True, workers=None)`` from the declaration (a real signature, so
``inspect.signature`` lists the options), checks the options' values, finds the root,
maps the split name, refuses a split the dataset does not have, and hands the parsed
records to :class:`~balgrad.data.disk.dataset.DiskDataset`.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from balgrad.data.base import DatasetInfo, TaskKind
from balgrad.data.disk.dataset import DiskDataset
from balgrad.data.disk.layout import canonical_split, resolve_root
from balgrad.data.disk.records import MissingSplitError, Problems, Record
from balgrad.errors import ConfigError


@dataclass(frozen=True)
class Option:
    """A loader option: a keyword-only constructor argument."""

    name: str
    default: Any
    type: Any  # the annotation shown in the signature
    choices: tuple[Any, ...] | None = None  # the allowed values, when there is a short list


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


# options every loader takes; allow_empty_text goes to parse, the others to DiskDataset
ALLOW_EMPTY_TEXT = Option("allow_empty_text", False, bool)
DATASET_OPTIONS = (Option("check_files", True, bool), Option("workers", None, int | None))


class DiskLoader(DiskDataset):
    """Base class of the loaders. Subclasses set the class attributes and ``parse``."""

    name: ClassVar[str]  # the registry name; info.name
    layout: ClassVar[str]  # the expected folder layout, shown in layout errors
    markers: ClassVar[Sequence[str]] = ()  # paths (relative to the root) that identify it
    nested: ClassVar[Sequence[str]] = ()  # sub-folders of data_dir that may be the root
    splits: ClassVar[Sequence[str] | None] = None  # None: parse decides (per split file)
    split_note: ClassVar[str] = ""  # the rest of the "no split" message
    task: ClassVar[TaskKind] = "single_label"
    metrics: ClassVar[Sequence[str]] = ("accuracy",)  # the first is the primary metric
    options: ClassVar[Sequence[Option]] = ()  # besides skip_bad and the common ones

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:  # a subclass with a hand-written constructor
            return
        declared = (ALLOW_EMPTY_TEXT, *cls.options, *DATASET_OPTIONS)
        parse_params = {
            p.name
            for p in inspect.signature(cls.parse).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }
        wanted = {o.name for o in declared} - {o.name for o in DATASET_OPTIONS}
        if parse_params != wanted:
            raise TypeError(
                f"{cls.__qualname__}.parse must take the keyword-only options {sorted(wanted)}, "
                f"takes {sorted(parse_params)}"
            )
        cls.__init__ = _constructor(cls, declared)  # type: ignore[method-assign]

    # -- hooks -------------------------------------------------------------------
    def parse(
        self, root: Path, split: str, problems: Problems, **options: Any
    ) -> tuple[list[Record], IndexInfo]:
        """Read split ``split`` under ``root``: the records (bad ones go to ``problems``)
        and what else was learned. Raise :class:`MissingSplitError` when ``splits`` is
        None and the split's file is missing."""
        raise NotImplementedError

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """Raise :class:`ConfigError` for a bad option value (before the disk is read)."""
        for opt in cls.options:
            value = options[opt.name]
            if opt.choices is not None and value not in opt.choices:
                raise ConfigError(
                    f"{cls.name}: option {opt.name}={value!r} must be one of {opt.choices}"
                )

    @classmethod
    def dataset_name(cls, options: Mapping[str, Any]) -> str:
        """The name shown in ``info`` and messages (an option may set it)."""
        return cls.name

    @classmethod
    def available_splits(cls, options: Mapping[str, Any]) -> Sequence[str] | None:
        return cls.splits

    # -- the shared skeleton -----------------------------------------------------
    def _load(
        self,
        data_dir: str | os.PathLike[str],
        split: str,
        skip_bad: bool,
        options: dict[str, Any],
    ) -> None:
        self.check_options(options)
        name = self.dataset_name(options)
        root = resolve_root(data_dir, name, self.markers, self.layout, nested=self.nested)
        split = canonical_split(split)
        splits = self.available_splits(options)
        if splits is not None and split not in splits:
            raise MissingSplitError(f"{name}: no split '{split}'; {self.split_note}")
        problems = Problems(skip_bad)
        dataset_options = {o.name: options.pop(o.name) for o in DATASET_OPTIONS}
        records, index = self.parse(root, split, problems, **options)
        metrics = list(index.metrics or self.metrics)
        info = DatasetInfo(
            name=name,
            task=index.task or self.task,
            classes=list(index.classes),
            primary_metric=index.primary_metric or metrics[0],
            metrics=metrics,
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


def _constructor(cls: type[DiskLoader], declared: Sequence[Option]):
    """``__init__(self, data_dir, split="train", *, skip_bad=False, <declared>)`` of ``cls``."""
    kw = inspect.Parameter.KEYWORD_ONLY
    signature = inspect.Signature(
        [
            inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
            inspect.Parameter(
                "data_dir", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str | os.PathLike
            ),
            inspect.Parameter(
                "split", inspect.Parameter.POSITIONAL_OR_KEYWORD, default="train", annotation=str
            ),
            inspect.Parameter("skip_bad", kw, default=False, annotation=bool),
            *(
                inspect.Parameter(o.name, kw, default=o.default, annotation=o.type)
                for o in declared
            ),
        ],
        return_annotation=None,
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)  # TypeError for an unknown option
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        options = {o.name: arguments[o.name] for o in declared}
        self._load(arguments["data_dir"], arguments["split"], arguments["skip_bad"], options)

    __init__.__signature__ = signature  # type: ignore[attr-defined]
    __init__.__annotations__ = {
        p.name: p.annotation for p in signature.parameters.values() if p.name != "self"
    }
    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    __init__.__module__ = cls.__module__
    __init__.__doc__ = (
        f"Load split ``split`` of {cls.name} from ``data_dir``; options: "
        + ", ".join(f"{o.name}={o.default!r}" for o in declared)
    )
    return __init__
