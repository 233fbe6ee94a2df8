"""One registry mechanism for everything balgrad creates by name, in the spirit of timm's
``register_model`` / ``create_model``::

    STRATEGIES = Registry("strategy", group="balgrad.strategies", metadata={"label": None})

    @STRATEGIES.register("grad_blend", label="Grad blend")
    class GradBlend(Strategy): ...

    STRATEGIES.create("grad_blend", blend=0.5)
    STRATEGIES.options("grad_blend")   # {"blend": Option(blend: float = 0.5)}

A name resolves to an :class:`Entry`: a registered class or factory, an alias, a *preset*
(another entry with some options fixed, e.g. a paper ablation), or a *prefix* entry
(``"hf:"`` passes what follows the colon as the first argument). Third-party packages
register through the entry points of the registry's group; they are looked up lazily, on
the first lookup of a name the registry does not know (or a listing), and one that fails
to import is reported with a :class:`RegistryWarning` naming its package, never breaking
the built-ins.

Options are the keyword parameters of the target's signature, with the types of its
annotations (``typing.get_type_hints``) and its defaults; an option's range is part of
its type (``n_fft: Annotated[int, Field(ge=2, le=65536)]``, and ``allow_inf_nan=False``
for a float that must be finite), checked and shown with it. :meth:`Registry.validate` checks
them with pydantic, strict for booleans and integers (``"false"`` is not a bool, ``True``
is not an int); every unknown name, unknown option or bad value is a
:class:`~balgrad.errors.ConfigError` naming the registry, the name, the option and the
valid choices. :func:`validated` applies the same checks to every direct call of a class
or function (``BalGrad(temperature=-1)``, a dataset's settings dataclass), so an option's
range is written once, in its annotation. This module imports nothing of balgrad but its
errors.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import operator
import os
import sys
import types
import typing
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, Strict, TypeAdapter, ValidationError

from balgrad.errors import ConfigError

__all__ = [
    "REQUIRED",
    "Entry",
    "Option",
    "Registry",
    "RegistryWarning",
    "check_options",
    "check_value",
    "strict_annotation",
    "type_name",
    "validated",
]

REQUIRED = inspect.Parameter.empty


class RegistryWarning(UserWarning):
    """An entry point that could not be loaded (the built-in entries keep working)."""


# -- types ------------------------------------------------------------------------------
def _refuse_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    return value


def _index(value: Any) -> Any:
    """A numpy (or other ``__index__``) integer as an int; bool and float stay refused."""
    if isinstance(value, bool | int | float) or not hasattr(type(value), "__index__"):
        return value
    try:
        return operator.index(value)
    except TypeError:  # numpy's bool
        return value


def _refuse_bool_or_float(value: Any) -> Any:
    if isinstance(value, bool | float):
        raise ValueError("an integer choice takes an integer")
    return value


_SCALARS: dict[Any, Any] = {
    bool: Annotated[bool, Strict()],
    int: Annotated[int, Strict(), BeforeValidator(_index)],
    float: Annotated[float, BeforeValidator(_refuse_bool)],  # "1e-3" (YAML 1.1: a string) is fine
    str: str,
    bytes: bytes,
    type(None): type(None),
    Path: Path,
}
_CONTAINERS = (list, tuple, dict, set, frozenset)


def strict_annotation(tp: Any) -> Any:
    """``tp`` as checked here: strict booleans and integers, floats that refuse booleans,
    and ``Any`` for what pydantic should not touch (classes, protocols, iterables).

    Args:
        tp: An annotation.

    Returns:
        The annotation to check with.
    """
    try:
        if tp in _SCALARS:
            return _SCALARS[tp]
    except TypeError:  # an unhashable annotation
        return Any
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:  # pydantic takes True or 3.0 for the literal 1 or 3: refused
        return (
            Annotated[tp, BeforeValidator(_refuse_bool_or_float)] if int in map(type, args) else tp
        )
    if origin is Annotated:  # the type made strict, its constraints (ranges) kept
        return Annotated[(strict_annotation(args[0]), *args[1:])]
    if origin in (Union, types.UnionType):
        return Union[tuple(strict_annotation(a) for a in args)]  # noqa: UP007
    if origin in _CONTAINERS:
        if not args:
            return origin
        return origin[tuple(a if a is Ellipsis else strict_annotation(a) for a in args)]
    if tp in _CONTAINERS:
        return tp
    return Any


def type_name(tp: Any) -> str:
    """A short readable name: ``bool``, ``float | None``, ``'global' | 'per_modality'``.

    Args:
        tp: An annotation.

    Returns:
        The name.
    """
    if tp is Any:
        return "any"
    if tp is type(None):
        return "None"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin is Annotated:
        return type_name(args[0]) + _range_text(args[1:])
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is not None and args:
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _constraints(metadata: Iterable[Any]) -> dict[str, Any]:
    """The bounds (``ge``, ``gt``, ``le``, ``lt``) and ``allow_inf_nan`` of an
    ``Annotated`` type's metadata: ``pydantic.Field(...)`` or ``annotated_types`` objects."""
    found: dict[str, Any] = {}
    for item in metadata:
        inner = getattr(item, "metadata", None)  # a FieldInfo holds its constraints
        if isinstance(inner, list):
            found.update(_constraints(inner))
            continue
        for key in ("ge", "gt", "le", "lt", "allow_inf_nan"):
            if getattr(item, key, None) is not None:
                found[key] = getattr(item, key)
    return found


def _range_text(metadata: Iterable[Any]) -> str:
    """`` in [2, 65536]``, `` in (0, 1]``, `` > 0, finite``: an option's range as its
    type shows it (in errors and ``balgrad list``)."""
    c = {k: _number(v) for k, v in _constraints(metadata).items()}
    low = ("[", c["ge"]) if "ge" in c else ("(", c["gt"]) if "gt" in c else None
    high = (c["le"], "]") if "le" in c else (c["lt"], ")") if "lt" in c else None
    if low and high:
        return f" in {low[0]}{low[1]}, {high[0]}{high[1]}"
    finite = ", finite" if c.get("allow_inf_nan") is False else ""
    if low:
        return f" {'>=' if low[0] == '[' else '>'} {low[1]}{finite}"
    if high:
        return f" {'<=' if high[1] == ']' else '<'} {high[0]}{finite}"
    return finite


def _number(v: Any) -> Any:
    """An integer in full (4294967295, not 4.29497e+09), another number short."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return v
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e18 else f"{v:g}"


@functools.lru_cache(maxsize=512)
def _adapter(tp: Any) -> TypeAdapter | None:
    try:
        return TypeAdapter(tp)
    except Exception:  # noqa: BLE001 - a type pydantic cannot check is left to the callee
        return None


def check_value(annotation: Any, value: Any, what: str) -> Any:
    """``value`` checked (and converted, e.g. ``"1e-3"`` -> 0.001) against ``annotation``;
    a mismatch is a ConfigError that starts with ``what`` and names the expected type.

    Args:
        annotation: The type.
        value: The value.
        what: The messages' start.

    Returns:
        The converted value.

    Raises:
        ConfigError: The value does not fit.
    """
    tp = strict_annotation(annotation)
    if tp is Any:
        return value
    try:
        adapter = _adapter(tp)
    except TypeError:  # unhashable annotation
        adapter = _adapter.__wrapped__(tp)
    if adapter is None:
        return value
    try:
        return adapter.validate_python(value)
    except ValidationError as err:
        # a check of the annotation's own (``AfterValidator``) that names what is wrong
        for e in err.errors():
            if isinstance(cause := (e.get("ctx") or {}).get("error"), ConfigError):
                raise ConfigError(f"{what}: {cause}") from None
        _check_items(annotation, value, what)  # names the bad item of a list or dict
        raise ConfigError(
            f"{what} expects {type_name(annotation)}, got {value!r} ({type(value).__name__})"
        ) from None


def _check_items(annotation: Any, value: Any, what: str) -> None:
    """Each item of a list, tuple or dict ``value`` checked against its annotation's item
    type (``dict[str, float]``, ``list[float] | None``): the first bad one is named."""
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            _check_items(members[0], value, what)
        return
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is dict and len(args) == 2 and isinstance(value, Mapping):
        items, item_type = value.items(), args[1]
    elif origin in (list, tuple) and len(args) == 1 and isinstance(value, list | tuple):
        items, item_type = enumerate(value), args[0]
    else:
        return
    for key, item in items:
        check_value(item_type, item, f"{what}[{key!r}]")


def check_options(
    target: Any, options: Mapping[str, Any], what: str | None = None
) -> dict[str, Any]:
    """``options`` checked against the keyword parameters of ``target``'s signature (their
    types and ranges), as a registry checks an entry's: for options passed on to a class
    that is not registered itself (a backbone's ``frontend`` dict). ``what`` starts each
    message.

    Args:
        target: A callable.
        options: The options.
        what: The messages' start.

    Returns:
        The converted options.

    Raises:
        ConfigError: An unknown option or a bad value.
    """
    known, open_ended = _signature_options(target, (), False, {})
    return _checked(known, open_ended, options, what)


def _checked(
    known: Mapping[str, Option], open_ended: bool, options: Mapping[str, Any], what: str | None
) -> dict[str, Any]:
    out = {}
    where = f"{what}: " if what else ""
    for key, value in options.items():
        option = known.get(key)
        if option is not None:
            out[key] = check_value(option.annotation, value, f"{where}option {key!r}")
        elif open_ended:
            out[key] = value
        else:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{where}unknown option {key!r}{hint}; valid options: {', '.join(known) or 'none'}"
            )
    return out


def validated(target: Any) -> Any:
    """Check the annotated parameters of a function, an ``__init__`` or a class's
    ``__init__`` (a dataclass's) on every call, direct or through a registry, as a registry
    checks options: strict types, the ranges of ``Annotated[..., Field(...)]``, ``Literal``
    choices; a bad value is a ConfigError naming the option and what it allows. Only the
    values passed are checked (and converted, ``"1e-3"`` -> 0.001), never the defaults. A
    subclass retypes an inherited option with a class annotation of the same name.

    Args:
        target: The function or class to check.

    Returns:
        ``target`` checked: the wrapped function, or the class with its ``__init__``
        wrapped.

    Example:
        >>> @validated
        ... def scale(x: Annotated[float, Field(gt=0)]) -> float:
        ...     return 2 * x
        >>> scale(-1)  # doctest: +SKIP
        ConfigError: scale: option 'x' expects float > 0, got -1 (int)
    """
    if inspect.isclass(target):
        target.__init__ = validated(target.__init__)
        return target
    signature = inspect.signature(target)
    method = next(iter(signature.parameters), None) == "self"

    @functools.wraps(target)
    def checked(*args: Any, **kwargs: Any) -> Any:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            return target(*args, **kwargs)  # Python's own message for a wrong call
        cls = type(args[0]) if method else None
        known = _call_options(target, cls)
        what = checked.__name__ if cls is None else cls.__qualname__.rpartition(">.")[2]
        for name, value in bound.arguments.items():
            if name in known:
                bound.arguments[name] = check_value(
                    known[name].annotation, value, f"{what}: option {name!r}"
                )
        return target(*bound.args, **bound.kwargs)

    return checked


@functools.lru_cache(maxsize=256)
def _call_options(target: Any, cls: type | None) -> dict[str, Option]:
    known, _ = _signature_options(target, (), cls is not None, {})
    for name, annotation in _retyped(cls).items() if cls is not None else ():
        if name in known:
            known[name] = Option(name, annotation, known[name].default)
    return known


def _retyped(cls: type) -> dict[str, Any]:
    """The class annotations of ``cls`` and its bases below the class that defines its
    ``__init__``: how a subclass retypes an inherited option (``BalGradFast``'s scopes)."""
    own: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            break
        own.update(vars(klass).get("__annotations__", {}))
    if not own:
        return {}
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception:  # noqa: BLE001 - unresolvable class annotations retype nothing
        return {}
    return {name: hints[name] for name in own if name in hints}


# -- entries and options ------------------------------------------------------------------
@dataclass(frozen=True)
class Option:
    """One option of an entry: its name, type (``Any`` when unannotated) and default."""

    name: str
    annotation: Any = Any
    default: Any = REQUIRED

    @property
    def required(self) -> bool:
        """Whether the option has no default."""
        return self.default is REQUIRED

    @property
    def type_name(self) -> str:
        """The option's type, readable (:func:`type_name`)."""
        return type_name(self.annotation)

    def __str__(self) -> str:
        default = " (required)" if self.required else f" = {self.default!r}"
        return f"{self.name}: {self.type_name}{default}"


@dataclass
class Entry:
    """A registered name. ``target`` is a class or factory, or ``"module:attr"`` imported
    on first use; ``fixed`` holds a preset's option values (overridable), ``bound`` the
    arguments always passed (not options); ``origin`` says where the entry comes from
    (``"balgrad"`` or the entry point that registered it)."""

    name: str
    target: Any
    metadata: dict[str, Any]
    fixed: dict[str, Any] = field(default_factory=dict)
    options_from: Any = None
    bound: dict[str, Any] = field(default_factory=dict)
    base: str | None = None
    origin: str = "balgrad"
    aliases: tuple[str, ...] = ()
    noun: str = "entry"

    @property
    def prefix(self) -> bool:
        """Whether the name is a prefix (ends with ``:``, e.g. ``hf:``)."""
        return self.name.endswith(":")

    @property
    def display_name(self) -> str:
        """The name as listed: a prefix shows ``<id|path>`` after its colon."""
        return self.name + "<id|path>" if self.prefix else self.name

    def load(self) -> Callable[..., Any]:
        """The target, imported on first use where it was given as ``"module:attr"``.

        Returns:
            The class or factory.

        Raises:
            ConfigError: The target cannot be imported.
        """
        if isinstance(self.target, str):
            module, _, attr = self.target.partition(":")
            try:
                self.target = getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError) as err:
                raise ConfigError(
                    f"{self.noun} {self.name!r}: cannot import {self.target!r} "
                    f"({type(err).__name__}: {err})"
                ) from None
        return self.target


def _type_hints(obj: Any) -> dict[str, Any]:
    """Resolved annotations of a function, or of a class's ``__init__`` and fields."""
    hints: dict[str, Any] = {}
    for source in (obj, obj.__init__) if inspect.isclass(obj) else (obj,):
        try:
            hints.update(typing.get_type_hints(source, include_extras=True))  # ranges too
        except Exception:  # noqa: BLE001 - resolve one by one; what fails stays untyped
            module = sys.modules.get(getattr(source, "__module__", ""), None)
            namespace = getattr(source, "__globals__", vars(module) if module else {})
            for name, ann in getattr(source, "__annotations__", {}).items():
                try:
                    hints[name] = eval(ann, namespace) if isinstance(ann, str) else ann
                except Exception:  # noqa: BLE001
                    continue
    return {**hints, **_retyped(obj)} if inspect.isclass(obj) else hints


def _signature_options(
    source: Any, skip: Iterable[str], drop_first: bool, fixed: Mapping[str, Any]
) -> tuple[dict[str, Option], bool]:
    """({name: Option}, whether ``**kwargs`` accepts anything else); a callable without
    a signature (a builtin type) takes anything, unchecked."""
    try:
        params = list(inspect.signature(source).parameters.values())
    except (TypeError, ValueError):
        return {}, True
    if drop_first and params:
        params = params[1:]
    hints, skip = _type_hints(source), set(skip)
    options, open_ended = {}, False
    for p in params:
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            open_ended = True
        elif (
            p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            and p.name not in skip
            and not p.name.startswith("_")
        ):
            annotation = hints.get(p.name, Any)
            options[p.name] = Option(p.name, annotation, fixed.get(p.name, p.default))
    return options, open_ended


def _same(name: str) -> str:
    return name


class Registry:
    """Names -> classes or factories, with typed options, aliases, presets and plug-ins.

    Args:
        noun: Names the registry in messages ("strategy", "image backbone").
        group: The entry-point group of third-party packages (plug-ins).
        metadata: The registration fields and their defaults (a misspelt field is an
            error).
        inherit: The fields a preset takes from its base.
        skip: Parameters the caller passes itself (not options), or a function of an
            entry's metadata giving them.
        normalize: Maps a spelling to its key.
        name_error: The exception raised for a bad or unknown name (ConfigError).
        check: ``check(name, obj)`` vets what an entry built.
        check_metadata: ``check_metadata(name, metadata)`` vets a registration.
        adopt: ``adopt(obj)`` says whether a plug-in object registered without the
            decorator belongs here.
        builtins: Modules whose import registers more built-ins, imported on first lookup.
    """

    def __init__(
        self,
        noun: str,
        *,
        group: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        inherit: Iterable[str] = (),
        skip: Iterable[str] | Callable[[Mapping[str, Any]], Iterable[str]] = (),
        normalize: Callable[[str], str] = _same,
        name_error: type[Exception] = ConfigError,
        check: Callable[[str, Any], None] | None = None,
        check_metadata: Callable[[str, Mapping[str, Any]], None] | None = None,
        adopt: Callable[[Any], bool] = callable,
        builtins: Iterable[str] = (),
    ) -> None:
        self.noun, self.group = noun, group
        self._meta_defaults = dict(metadata or {})
        self._inherit = set(inherit)
        self._skip = skip
        self._normalize = normalize
        self._name_error = name_error
        self._check = check
        self._check_metadata = check_metadata
        self._adopt = adopt
        self._builtins = list(builtins)
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}
        self._plugins: dict[str, importlib_metadata.EntryPoint] | None = None
        self._failed: dict[str, str] = {}
        self._loading: str | None = None  # the entry point being imported, if any
        self._option_cache: dict[str, tuple[dict[str, Option], bool]] = {}

    # -- registration -------------------------------------------------------------------
    def register(
        self,
        name: str,
        target: Any = None,
        *,
        aliases: Iterable[str] = (),
        options_from: Any = None,
        bind: Mapping[str, Any] | None = None,
        **metadata: Any,
    ) -> Any:
        """Register ``target`` (a class, a factory, or ``"module:attr"``) under ``name``;
        without ``target`` a decorator. A name ending in ``:`` is a prefix. ``options_from``:
        a callable whose signature lists the options instead of the target's; ``bind``:
        keyword arguments always passed to the target (hidden from the options).

        Args:
            name: The name.
            target: The class, factory or ``"module:attr"``; omitted, a decorator is
                returned.
            aliases: Other spellings.
            options_from: A callable whose signature lists the options.
            bind: Keyword arguments always passed.
            **metadata: Registration fields (see the registry's ``metadata``).

        Returns:
            ``target``, or a decorator.

        Raises:
            ConfigError: The name is taken, or a field is unknown or bad.
        """

        def add(obj: Any) -> Any:
            meta = self._metadata(name, metadata)
            entry = Entry(name, obj, meta, options_from=options_from, bound=dict(bind or {}))
            self._add(entry, aliases)
            return obj

        return add if target is None else add(target)

    def register_preset(
        self,
        name: str,
        base: str,
        options: Mapping[str, Any],
        *,
        aliases: Iterable[str] = (),
        **metadata: Any,
    ) -> None:
        """``name`` is ``base`` with ``options`` fixed (they stay overridable).

        Args:
            name: The preset's name.
            base: A registered name.
            options: The option values it fixes.
            aliases: Other spellings.
            **metadata: Registration fields (those ``inherit`` names come from the base).

        Raises:
            ConfigError: An unknown base, option or field, or a bad value.
        """
        parent, _ = self.resolve(base)
        fixed = {**parent.fixed, **self._validate(parent, base, options)}
        inherited = {k: v for k, v in parent.metadata.items() if k in self._inherit}
        meta = self._metadata(name, {**inherited, **metadata})
        entry = Entry(name, parent.target, meta, fixed, parent.options_from, parent.bound)
        entry.base = parent.name
        self._add(entry, aliases)

    def alias(self, alias: str, name: str) -> None:
        """Another spelling of the registered ``name``.

        Args:
            alias: The other spelling.
            name: A registered name.
        """
        entry, key = self.get(name), self._normalize(alias)
        self._aliases[key] = entry.name
        entry.aliases = (*entry.aliases, key)

    def unregister(self, name: str) -> None:
        """Forget ``name`` and its aliases (tests, interactive sessions).

        Args:
            name: The name.
        """
        key = self._normalize(name)
        self._entries.pop(key, None)
        self._option_cache.pop(key, None)
        self._aliases = {a: t for a, t in self._aliases.items() if t != key}

    def _metadata(self, name: str, given: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(given) - set(self._meta_defaults))
        if unknown:
            raise TypeError(
                f"{self.noun} {name!r}: unknown registration field(s) {', '.join(unknown)}; "
                f"known: {', '.join(self._meta_defaults) or 'none'}"
            )
        metadata = {**self._meta_defaults, **given}
        if self._check_metadata is not None:
            self._check_metadata(name, metadata)
        return metadata

    def _add(self, entry: Entry, aliases: Iterable[str]) -> None:
        key = self._normalize(entry.name)
        entry.name, entry.noun = key, self.noun
        entry.aliases = tuple(self._normalize(a) for a in aliases)
        if self._loading is not None:
            entry.origin = self._loading
        existing = self._entries.get(key)
        if existing is not None:
            if self._loading is not None:  # a plug-in never replaces what is there
                warnings.warn(
                    f"{self._loading} registers the {self.noun} {key!r}, which "
                    f"{existing.origin} already provides; it is ignored",
                    RegistryWarning,
                    stacklevel=3,
                )
                return
            raise ConfigError(f"{self.noun} {key!r} is already registered (by {existing.origin})")
        self._entries[key] = entry
        for alias in entry.aliases:
            self._aliases[alias] = key

    # -- lookup -------------------------------------------------------------------------
    def _ensure_builtins(self) -> None:
        while self._builtins:
            importlib.import_module(self._builtins.pop(0))

    def _key(self, name: Any) -> tuple[str, str | None]:
        if not isinstance(name, str) or not name.strip():
            raise self._name_error(f"{self.noun} name must be a non-empty string, got {name!r}")
        name = name.strip()
        head, colon, rest = name.partition(":")
        if colon and not os.path.isabs(name):
            prefix = self._normalize(head) + ":"
            if prefix in self._entries or prefix in self._entry_points():
                return prefix, rest
        key = self._normalize(name)
        return self._aliases.get(key, key), None

    def resolve(self, name: str) -> tuple[Entry, str | None]:
        """(entry, what follows a prefix's colon or None); unknown names raise.

        Args:
            name: A name, alias or prefixed name.

        Returns:
            The entry and the prefix's rest.

        Raises:
            ConfigError: An unknown name.
        """
        self._ensure_builtins()
        key, rest = self._key(name)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._load_plugin(key)
            if entry is None:  # a plug-in may have registered an alias
                key, rest = self._key(name)
                entry = self._entries.get(key)
        if entry is None and key in self._entry_points():
            raise self._name_error(
                f"unknown {self.noun} {name!r}: the entry point '{key}' of group {self.group} "
                f"registers no {self.noun} of that name"
            )
        if entry is None:
            raise self._name_error(self._unknown_message(name))
        if entry.prefix and not rest:
            raise self._name_error(
                f"unknown {self.noun} {name!r} (a name or path must follow the colon); "
                f"known: {self._known_text()}"
            )
        return entry, rest

    def get(self, name: str) -> Entry:
        """The entry of a name, alias or prefixed name.

        Args:
            name: The name.

        Returns:
            The entry.

        Raises:
            ConfigError: An unknown name (the message lists the known ones).
        """
        return self.resolve(name)[0]

    def __contains__(self, name: object) -> bool:
        try:
            self.resolve(name)  # type: ignore[arg-type]
        except (ConfigError, self._name_error):
            return False
        return True

    def canonical(self, name: str) -> str:
        """The registered key of ``name`` (an alias resolved; ``"hf:"`` for ``"hf:bert"``).

        Args:
            name: A name or alias.

        Returns:
            The key.
        """
        return self.get(name).name

    def metadata(self, name: str) -> dict[str, Any]:
        """A registered name's registration fields.

        Args:
            name: The name.

        Returns:
            A copy of its metadata.
        """
        return dict(self.get(name).metadata)

    def entries(self, plugins: bool = True) -> list[Entry]:
        """Every entry, built-ins first, then (``plugins``) those of the installed plug-ins.

        Args:
            plugins: Include the installed plug-ins' entries.

        Returns:
            The entries.
        """
        self._ensure_builtins()
        for key in list(self._entry_points()) if plugins else ():
            if key not in self._entries:
                try:
                    self._load_plugin(key)
                except Exception:  # noqa: BLE001 - reported by a RegistryWarning already
                    continue
        return list(self._entries.values())

    def names(self, aliases: bool = False) -> list[str]:
        """Every registered name, plug-ins included.

        Args:
            aliases: Add the aliases.

        Returns:
            The names.
        """
        names = [e.name for e in self.entries()]
        return names + list(self._aliases) if aliases else names

    def _known_text(self) -> str:
        known = [e.display_name for e in self.entries()]
        known += [f"{a} (= {t})" for a, t in self._aliases.items()]
        return ", ".join(known)

    def _unknown_message(self, name: str) -> str:
        keys = [*self._entries, *self._aliases]
        close = difflib.get_close_matches(self._normalize(name.strip()), keys, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.noun} {name!r}{hint}; known: {self._known_text()}"

    # -- plug-ins -----------------------------------------------------------------------
    def _entry_points(self) -> dict[str, importlib_metadata.EntryPoint]:
        if self._plugins is None:
            self._plugins = {}
            if self.group:
                for ep in importlib_metadata.entry_points(group=self.group):
                    self._plugins.setdefault(self._normalize(ep.name), ep)
        return self._plugins

    def _load_plugin(self, key: str) -> Entry | None:
        """Import the entry point named ``key``; its import registers it (decorator) or
        the object it names is registered under ``key``. None when there is none."""
        ep = self._entry_points().get(key)
        if ep is None:
            return None
        if key in self._failed:
            raise self._name_error(self._failed[key])
        dist = getattr(ep.dist, "name", None) or "an unknown package"
        where = f"entry point '{ep.name} = {ep.value}' of package {dist!r} (group {self.group})"
        self._loading = where
        try:
            obj = ep.load()
            if self._normalize(ep.name) not in self._entries and self._adopt(obj):
                self.register(ep.name, obj)
        except Exception as err:  # noqa: BLE001 - a broken plug-in must not break balgrad
            self._failed[key] = (
                f"{self.noun} {ep.name!r} comes from the {where}, which failed to load: "
                f"{type(err).__name__}: {err}"
            )
            warnings.warn(self._failed[key], RegistryWarning, stacklevel=3)
            raise self._name_error(self._failed[key]) from None
        finally:
            self._loading = None
        return self._entries.get(self._aliases.get(key, key))

    # -- options ------------------------------------------------------------------------
    def _options(self, entry: Entry) -> tuple[dict[str, Option], bool]:
        if entry.name not in self._option_cache:
            if entry.options_from is not None:
                found = _signature_options(entry.options_from, (), False, entry.fixed)
            else:
                skip = self._skip(entry.metadata) if callable(self._skip) else self._skip
                skip = [*skip, *entry.bound]
                found = _signature_options(entry.load(), skip, entry.prefix, entry.fixed)
            self._option_cache[entry.name] = found
        return self._option_cache[entry.name]

    def options(self, name: str) -> dict[str, Option]:
        """``{option: Option(type, default)}`` of ``name`` (a preset's fixed values as defaults).

        Args:
            name: A registered name.

        Returns:
            The options.
        """
        return self.entry_options(self.get(name))

    def entry_options(self, entry: Entry) -> dict[str, Option]:
        """An entry's options, read from its target's signature.

        Args:
            entry: An entry.

        Returns:
            ``{option: Option}``.
        """
        return dict(self._options(entry)[0])

    def defaults(self, name: str) -> dict[str, Any]:
        """Each option's default (a preset's fixed values included).

        Args:
            name: A registered name.

        Returns:
            ``{option: default}``.
        """
        return {k: o.default for k, o in self.options(name).items()}

    def accepts(self, name: str, option: str) -> bool:
        """Whether ``name`` takes ``option`` (or takes any keyword).

        Args:
            name: A registered name.
            option: An option name.

        Returns:
            True when it does.
        """
        opts, open_ended = self._options(self.get(name))
        return option in opts or open_ended

    def validate(self, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` checked against ``name``'s signature, converted to their types.

        Args:
            name: A registered name.
            options: The options.

        Returns:
            The converted options.

        Raises:
            ConfigError: An unknown option or a bad value.
        """
        return self._validate(self.get(name), name, options)

    def _validate(self, entry: Entry, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        known, open_ended = self._options(entry)
        return _checked(known, open_ended, options, f"{self.noun} {name!r}")

    # -- creation -----------------------------------------------------------------------
    def create(self, name: str, /, *args: Any, **options: Any) -> Any:
        """``name``'s target called with ``args`` and the validated ``options``.

        Args:
            name: A registered name.
            *args: Positional arguments for the target.
            **options: The options, checked against the target's signature.

        Returns:
            What the target built.

        Raises:
            ConfigError: An unknown name or option, or a bad value.
        """
        return self.build(name, args, options=options)

    def build(
        self,
        name: str,
        args: tuple = (),
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Any:
        """Like :meth:`create`, with ``kwargs`` the caller's own (unchecked) arguments
        kept apart from the user's ``options`` (e.g. a dataset's ``skip_bad``).

        Args:
            name: A registered name.
            args: Positional arguments for the target.
            kwargs: The caller's own keyword arguments (not checked).
            options: The user's options (checked).

        Returns:
            What the target built.
        """
        entry, rest = self.resolve(name)
        values = {**entry.fixed, **self._validate(entry, name, options or {})}
        lead = (rest,) if entry.prefix else ()
        obj = entry.load()(*lead, *args, **entry.bound, **dict(kwargs or {}), **values)
        if self._check is not None:
            self._check(name, obj)
        return obj
