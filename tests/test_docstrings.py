"""Every public name has a docstring the API reference can render (issue 25, item 4).

Public modules are those whose dotted path has no ``_private`` part (the ones
``docs/_ext/balgrad_docs.py`` gives a page). A module's public names are its ``__all__``,
or else its top-level names without a leading underscore; a name is checked in the module
that defines it (a re-export is checked once, where it lives; a name a public module's ``__all__``
re-exports from a private one is checked too, since the reference shows it).

The rules, per class and function, and per public method, property and ``__init__`` of a
class (methods it defines itself, not inherited ones):

- it has a docstring;
- a function or method with parameters has a Google-style ``Args:`` section naming each of
  them (a class documents its own ``__init__``'s parameters in its docstring or in
  ``__init__``'s); ``self``/``cls`` and ``_private`` parameters are exempt, and ``*args``/``**kwargs`` need only be
  mentioned somewhere in the docstring, prose included;
- a function whose return annotation is not ``None`` has a ``Returns:`` (or ``Yields:``)
  section;
- a method that overrides a method of a base class documented in the reference (or of
  ``torch.nn.Module``, ``forward``) needs a docstring of its own, but may leave the
  parameters to the base's page.

Generated ``__init__`` of dataclasses, pydantic models and named tuples are not checked:
their fields are the class's attributes.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import pkgutil
import re

import pytest

import balgrad

#: Public names allowed to lack a complete docstring: none. A new public name is documented
#: before it lands (this stays empty).
ALLOWED: frozenset[str] = frozenset()

SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Keyword Args|Keyword Arguments):\s*$")
HEADER = re.compile(r"^\s*[A-Z][A-Za-z ]+:\s*$")
ENTRY = re.compile(r"\s*(\**[A-Za-z_]\w*(?:\s*,\s*\**[A-Za-z_]\w*)*)\s*(\(.*?\))?\s*:")
RETURNS = re.compile(r"^\s*(Returns|Return|Yields|Yield):", re.M)


def public_modules() -> list[str]:
    names = ["balgrad"]
    for info in pkgutil.walk_packages(balgrad.__path__, "balgrad."):
        if not any(part.startswith("_") for part in info.name.split(".")[1:]):
            names.append(info.name)
    return sorted(names)


def _is_private_module(module: str) -> bool:
    return any(part.startswith("_") for part in module.split(".")[1:])


def documented_args(doc: str) -> set[str]:
    """The parameter names of a docstring's Args-like sections."""
    names: set[str] = set()
    lines = doc.expandtabs().splitlines()
    i = 0
    while i < len(lines):
        if SECTION.match(lines[i]):
            base = len(lines[i]) - len(lines[i].lstrip())
            i += 1
            entry_indent = None
            while i < len(lines):
                line = lines[i]
                if line.strip():
                    indent = len(line) - len(line.lstrip())
                    if indent <= base:
                        break
                    if entry_indent is None:
                        entry_indent = indent
                    if indent == entry_indent:
                        m = ENTRY.match(line)
                        if m:  # "a, b: ..." documents both
                            names.update(n.strip(" *") for n in m.group(1).split(","))
                i += 1
            continue
        i += 1
    return names


def _objects():
    """(module, qualname, object, kind) for every public class and function."""
    seen: set[tuple[str, str]] = set()
    for modname in public_modules():
        try:
            module = importlib.import_module(modname)
        except ImportError:  # an optional extra that is not installed
            continue
        exported = getattr(module, "__all__", None)
        names = exported or [n for n in vars(module) if not n.startswith("_")]
        for name in names:
            obj = getattr(module, name, None)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            home = getattr(obj, "__module__", "") or ""
            if not home.startswith("balgrad"):
                continue
            # a name imported from elsewhere is checked where it is defined, unless
            # ``__all__`` re-exports it from a private module (the reference shows it here)
            if home != modname and not (exported and _is_private_module(home)):
                continue
            key = (home, obj.__qualname__)
            if key in seen:
                continue
            seen.add(key)
            yield key, obj


def _overrides(cls: type, name: str) -> bool:
    return any(name in vars(base) for base in cls.__mro__[1:])


def _generated_init(cls: type) -> bool:
    if dataclasses.is_dataclass(cls) or issubclass(cls, enum.Enum):
        return True
    if hasattr(cls, "model_fields") or hasattr(cls, "_fields"):  # pydantic, NamedTuple
        return True
    if getattr(cls, "_is_protocol", False):  # typing's own __init__
        return True
    return "__init__" not in vars(cls)


def _params(func) -> list[inspect.Parameter]:
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return []
    return [p for p in sig.parameters.values() if p.name not in ("self", "cls")]


def _returns_something(func) -> bool:
    ann = inspect.signature(func).return_annotation
    if ann is inspect.Signature.empty:
        return False
    text = ann if isinstance(ann, str) else getattr(ann, "__name__", repr(ann))
    return text not in ("None", "NoReturn", "Never", "NoneType")


def problems_of_function(func, doc: str | None, *, params_elsewhere: str = "") -> list[str]:
    if not doc:
        return ["no docstring"]
    out = []
    named = documented_args(doc) | documented_args(params_elsewhere)
    for p in _params(func):
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            if p.name not in doc + params_elsewhere:
                out.append(f"*{p.name} not mentioned")
        elif p.name not in named and not p.name.startswith("_"):  # `_x`: private
            out.append(f"Args: {p.name}")
    if _returns_something(func) and not RETURNS.search(doc):
        out.append("Returns:")
    return out


def problems() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for (module, qualname), obj in _objects():
        where = f"{module}.{qualname}"
        if inspect.isfunction(obj):
            issues = problems_of_function(obj, inspect.getdoc(obj))
            if issues:
                found[where] = issues
            continue
        doc = obj.__doc__ if "__doc__" in vars(obj) else None
        if doc and dataclasses.is_dataclass(obj) and doc.startswith(f"{obj.__name__}("):
            doc = None  # the signature @dataclass writes where no docstring was given
        if not doc:
            found[where] = ["no docstring"]
        elif not _generated_init(obj):
            init = vars(obj)["__init__"]
            # a balgrad base class may document the arguments every subclass takes
            bases = "".join(
                vars(base).get("__doc__") or ""
                for base in obj.__mro__[1:]
                if base.__module__.startswith("balgrad")
            )
            issues = problems_of_function(
                init, init.__doc__ or doc, params_elsewhere=(doc if init.__doc__ else "") + bases
            )
            issues = [i for i in issues if i != "Returns:"]
            if issues:
                found[f"{where}.__init__"] = issues
        for name, member in vars(obj).items():
            if name.startswith("_"):
                continue
            what = f"{where}.{name}"
            if isinstance(member, property):
                if not member.__doc__ and not _overrides(obj, name):
                    found[what] = ["no docstring"]
                continue
            func = member.__func__ if isinstance(member, staticmethod | classmethod) else member
            if not inspect.isfunction(func):
                continue
            if _overrides(obj, name):
                if not func.__doc__:
                    found[what] = ["no docstring (an override)"]
                continue
            issues = problems_of_function(func, func.__doc__ and inspect.cleandoc(func.__doc__))
            if issues:
                found[what] = issues
    return found


def test_documented_args_reads_google_sections():
    doc = inspect.cleandoc(
        """Summary.

        Args:
            a: first
                continued: not a name
            b (int): second
            c, d: third and fourth
            *rest: extra

        Returns:
            c: not a parameter
        """
    )
    assert documented_args(doc) == {"a", "b", "c", "d", "rest"}


def test_every_public_name_has_a_complete_docstring():
    found = problems()
    stale = sorted(n for n in ALLOWED if n not in found)
    missing = sorted(f"{k}: {', '.join(v)}" for k, v in found.items() if k not in ALLOWED)
    assert not stale, f"allowed but documented now, take off ALLOWED: {stale}"
    assert not missing, f"{len(missing)} public names lack a complete docstring:\n" + "\n".join(
        missing
    )


if __name__ == "__main__":  # python tests/test_docstrings.py: the count, by module
    import collections

    found = problems()
    total = sum(1 for _ in _objects())
    by_module = collections.Counter(k.rsplit(".", 1)[0] for k in found)
    print(f"{len(found)} entries fail ({total} public classes/functions checked)")
    for k, v in sorted(found.items()):
        print(f"{k}: {', '.join(v)}")
    pytest  # noqa: B018  (imported for the test runner)
