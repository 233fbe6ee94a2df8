"""Sphinx extension: the parts of balgrad's docs that are generated from the code, so they
cannot drift from it.

- At ``builder-inited`` it writes one API page per public module of ``balgrad`` into
  ``docs/api/generated/`` (private modules, ``_name.py``, are left out). A registered
  strategy's page adds its options, presets, hooks and cost from the registry.
- Directives for Markdown pages: ``balgrad-config-fields`` (the fields of
  :class:`balgrad.config.RunConfig`), ``balgrad-modality-fields``, ``balgrad-cli-help``
  (each subcommand's ``--help``), ``balgrad-list`` (what ``balgrad list`` prints),
  ``balgrad-strategy-hooks`` (the calls an own training loop makes, per method) and
  ``balgrad-strategy NAME`` (one strategy's registration).
"""

from __future__ import annotations

import contextlib
import io
import pkgutil
import re
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

DOCS = Path(__file__).resolve().parents[1]
GENERATED = DOCS / "api" / "generated"

#: API groups: the reference's index lists the pages of each under its title
GROUPS = {
    "core": "The package, configuration, errors and files",
    "strategies": "Strategies (one page per method)",
    "models": "Models",
    "data": "Datasets and input pipeline",
    "backbones": "Backbones",
    "train": "Training",
    "evaluate": "Evaluation",
    "report": "Reports",
    "integrations": "Integrations",
}


def public_modules() -> list[str]:
    """Every importable module of balgrad whose dotted path has no ``_private`` part."""
    import balgrad

    names = ["balgrad"]
    for info in pkgutil.walk_packages(balgrad.__path__, "balgrad."):
        if not any(part.startswith("_") for part in info.name.split(".")[1:]):
            names.append(info.name)
    return sorted(names)


def group_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in GROUPS) else "core"


def _title(text: str) -> str:
    return f"{text}\n{'=' * len(text)}\n"


def strategy_classes() -> dict[str, list[str]]:
    """class name -> the built-in strategy names (not presets) it implements; each class
    is exported by :mod:`balgrad.strategies` and gets a page of its own."""
    from balgrad.strategies import STRATEGY_REGISTRY

    found: dict[str, list[str]] = {}
    for entry in STRATEGY_REGISTRY.entries(plugins=False):
        if entry.base is None:
            found.setdefault(entry.load().__name__, []).append(entry.name)
    return found


def module_page(module: str, exclude: list[str]) -> str:
    """A public module's page: its docstring and, for a package, the names its
    ``__all__`` exports (documented at their public path, ``balgrad.data.Example``)."""
    directive = f".. automodule:: {module}\n"
    if module == "balgrad":
        directive += "   :no-members:\n"  # the facade: each name is on its package's page
    if exclude:
        directive += f"   :exclude-members: {', '.join(exclude)}\n"
    return "\n".join([_title(f"``{module}``"), directive])


def strategy_page(cls_name: str, strategies: list[str]) -> str:
    lines = [_title(f"``balgrad.strategies.{cls_name}``")]
    lines += [f".. balgrad-strategy:: {name}\n" for name in strategies]
    lines.append(f".. autoclass:: balgrad.strategies.{cls_name}\n")
    return "\n".join(lines)


def generate_api_pages(app) -> None:
    GENERATED.mkdir(parents=True, exist_ok=True)
    by_class = strategy_classes()
    wanted = {}
    for module in public_modules():
        exclude = sorted(by_class) if module == "balgrad.strategies" else []
        wanted[f"{module}.rst"] = module_page(module, exclude)
    for cls_name, names in by_class.items():
        wanted[f"balgrad.strategies.{cls_name}.rst"] = strategy_page(cls_name, names)
    for group, title in GROUPS.items():
        pages = [m for m in public_modules() if group_of(m) == group]
        if group == "strategies":
            pages += [f"balgrad.strategies.{c}" for c in sorted(by_class)]
        body = [_title(title), ".. toctree::", "   :maxdepth: 1", ""]
        body += [f"   {m}" for m in pages]
        wanted[f"group-{group}.rst"] = "\n".join(body) + "\n"
    for old in GENERATED.glob("*.rst"):
        if old.name not in wanted:
            old.unlink()
    for name, text in wanted.items():
        path = GENERATED / name
        if not path.exists() or path.read_text() != text:  # unchanged pages stay cached
            path.write_text(text)


# -- directives ------------------------------------------------------------------------


class _Generated(SphinxDirective):
    """A directive whose body is reStructuredText generated from the code."""

    def rst(self) -> list[str]:
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        lines = self.rst()
        if type(self.state).__module__.startswith("myst_parser"):
            # in a Markdown page, nested content is parsed as Markdown: say it is rST
            lines = ["```{eval-rst}", *lines, "```"]
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source="balgrad_docs"), 0, container)
        return container.children


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ") or " "


def list_table(header: list[str], rows: list[list[str]], widths: str = "auto") -> list[str]:
    out = [".. list-table::", "   :header-rows: 1", f"   :widths: {widths}", ""]
    for row in [header, *rows]:
        out.append(f"   * - {row[0]}")
        out += [f"     - {c}" for c in row[1:]]
    return out


def _literal(text: str) -> str:
    return f"``{text}``" if text.strip() else " "


def compare_flags() -> dict[str, str]:
    """Each setting's flags in ``balgrad compare``, read from the real parser."""
    from balgrad.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    flags: dict[str, list[str]] = {}
    for action in sub.choices["compare"]._actions:
        for option in action.option_strings:
            if option.startswith("--"):
                flags.setdefault(action.dest, []).append(option)
    # the `modalities` section's flags have dests of their own
    flags["modalities"] = [
        option
        for dest in [d for d in flags if d.startswith(("modality_", "shorthand_"))]
        for option in flags.pop(dest)
    ]
    return {dest: ", ".join(options) for dest, options in flags.items()}


def _field_rows(model: Any) -> list[list[str]]:
    from pydantic_core import PydanticUndefined

    from balgrad.registry import type_name

    rows = []
    flags = compare_flags()
    for name, info in model.model_fields.items():
        if info.default_factory is not None:
            default = repr(info.default_factory())
        elif info.default is PydanticUndefined:
            default = "(required)"
        else:
            default = repr(info.default)
        constraints = ", ".join(
            f"{k} {getattr(m, k)}"
            for m in info.metadata
            for k in ("gt", "ge", "lt", "le")
            if getattr(m, k, None) is not None
        )
        kind = type_name(info.annotation) + (f" ({constraints})" if constraints else "")
        flag = flags.get(name, "")
        rows.append(
            [
                _literal(name),
                _literal(flag) if flag else "YAML only",
                _literal(kind),
                _literal(default),
                _cell(info.description or ""),
            ]
        )
    return rows


class ConfigFields(_Generated):
    """The fields of :class:`balgrad.config.RunConfig`: a YAML key and a flag each."""

    def rst(self) -> list[str]:
        from balgrad.config import RunConfig

        header = ["key", "flag", "type", "default", "meaning"]
        return list_table(header, _field_rows(RunConfig), "15 15 20 15 35")


class ModalityFields(_Generated):
    def rst(self) -> list[str]:
        from balgrad.config import ModalitySettings

        rows = [[r[0], r[2], r[3], r[4]] for r in _field_rows(ModalitySettings)]
        return list_table(["key", "type", "default", "meaning"], rows, "20 25 15 40")


def _literal_block(text: str) -> list[str]:
    return ["::", ""] + ["   " + line for line in text.rstrip().splitlines()] + [""]


class CliHelp(_Generated):
    """``balgrad --help`` and each subcommand's ``--help``, as argparse prints them."""

    def rst(self) -> list[str]:
        import os

        from balgrad.cli import build_parser

        parser = build_parser()
        old = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = "100"
        try:
            out = []
            sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
            out += [".. rubric:: balgrad --help", ""] + _literal_block(parser.format_help())
            for name, p in sub.choices.items():
                out += [f".. rubric:: balgrad {name} --help", ""] + _literal_block(p.format_help())
            return out
        finally:
            if old is None:
                os.environ.pop("COLUMNS", None)
            else:
                os.environ["COLUMNS"] = old


class BalgradList(_Generated):
    """What ``balgrad list`` prints (the installed plug-ins included)."""

    def rst(self) -> list[str]:
        from balgrad.cli import cmd_list

        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            cmd_list(None)
        return _literal_block(buffer.getvalue())


def _overrides(cls: type, name: str) -> bool:
    from balgrad.strategies import Strategy

    return getattr(cls, name, None) is not getattr(Strategy, name, None)


def _reads_epoch(cls: type) -> bool:
    """Whether the method's own code reads the epoch that ``on_epoch_start`` records (a
    modulation window, a schedule over ``num_epochs``)."""
    import inspect

    from balgrad.strategies import Strategy

    for klass in cls.__mro__:
        if klass is Strategy or not issubclass(klass, Strategy):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        if re.search(r"self\.(epoch|num_epochs)\b", source):
            return True
    return False


def hook_row(name: str) -> list[str]:
    """Which calls an own training loop makes for strategy ``name``, read from its class."""
    from balgrad.strategies import STRATEGY_REGISTRY, Strategy

    cls = STRATEGY_REGISTRY.get(name).load()
    yes = "yes"
    extra = sorted(
        n
        for n in vars(cls)
        if (n.startswith("on_") or n.startswith("prepare_"))
        and callable(getattr(cls, n))
        and not hasattr(Strategy, n)
    )
    return [
        f":doc:`{name} </api/generated/{_public_path(cls)}>`",
        yes if _overrides(cls, "on_epoch_start") or _reads_epoch(cls) else "no (optional)",
        yes if _overrides(cls, "on_epoch_end") else "no (optional)",
        yes if getattr(cls, "needs_epoch_pass", False) else "no",
        ", ".join(f"``{n}``" for n in extra) or "–",
        "yes" if getattr(cls, "reduces_own_gradients", True) else "no: plain DDP",
        str(cls.max_modalities) if cls.max_modalities else "any",
    ]


class StrategyHooks(_Generated):
    """One row per built-in or installed strategy (presets share their base's row)."""

    def rst(self) -> list[str]:
        from balgrad.strategies import STRATEGY_REGISTRY

        header = [
            "method",
            "``on_epoch_start(epoch, num_epochs)``",
            "``on_epoch_end(epoch, optimizer, accuracies)``",
            "``prepare_epoch(model, batches)``",
            "other hooks",
            "all-reduces its own gradients",
            "most modalities",
        ]
        rows = [hook_row(e.name) for e in STRATEGY_REGISTRY.entries() if e.base is None]
        return list_table(header, rows)


def _cost_of(name: str) -> str | None:
    """The "backward passes per step" cell of ``name``'s row in the methods table (README.md,
    which docs/methods.md includes)."""
    text = (DOCS.parent / "README.md").read_text()
    match = re.search(rf"^\| `{re.escape(name)}` \|.*\| ([^|]+) \|\s*$", text, flags=re.M)
    return match.group(1).strip() if match else None


class StrategyInfo(_Generated):
    """A registered strategy: label, description, options, presets, hooks and cost."""

    required_arguments = 1

    def rst(self) -> list[str]:
        from balgrad.strategies import STRATEGY_REGISTRY

        name = self.arguments[0]
        entry = STRATEGY_REGISTRY.get(name)
        meta = entry.metadata
        out = [f".. rubric:: ``{name}``: {meta['label'] or name}", ""]
        if meta["description"]:
            out += [_cell(meta["description"]) + ".", ""]
        if entry.aliases:
            out += ["Also named " + ", ".join(f"``{a}``" for a in entry.aliases) + ".", ""]
        cost = _cost_of(name)
        out += (
            [f"**Cost**: {cost} backward pass(es) per step (:doc:`/methods`).", ""] if cost else []
        )
        options = STRATEGY_REGISTRY.entry_options(entry)
        if options:
            out += [
                f"**Options** (``--method-option {name}.KEY=VALUE``, YAML "
                f"``method_options: {{{name}: {{KEY: VALUE}}}}``, or "
                f"``balgrad.create_strategy({name!r}, KEY=VALUE)``):",
                "",
            ]
            rows = [
                [_literal(o.name), _literal(o.type_name), _literal(repr(o.default))]
                for o in options.values()
            ]
            out += list_table(["option", "type", "default"], rows) + [""]
        presets = [e for e in STRATEGY_REGISTRY.entries() if e.base == name]
        if presets:
            out += ["**Presets**:", ""]
            for p in presets:
                fixed = ", ".join(f"``{k}={v!r}``" for k, v in p.fixed.items())
                out.append(f"- ``{p.name}`` ({p.metadata['label']}): {fixed}")
            out.append("")
        row = hook_row(name)
        out += [
            "**Own loop**: ``on_epoch_start``: "
            f"{row[1]}; ``on_epoch_end``: {row[2]}; ``prepare_epoch``: {row[3]} "
            "(:doc:`/own-loop`).",
            "",
        ]
        return out


def _public_path(obj: Any) -> str:
    """Where ``obj`` is documented: ``balgrad.strategies.BalGrad`` ->
    ``balgrad.strategies.BalGrad``, the deepest public package above its private module
    whose ``__all__`` exports it (or its own path, if its module is public)."""
    import importlib

    module, name = obj.__module__, obj.__qualname__
    parts = module.split(".")
    if not any(p.startswith("_") for p in parts[1:]):
        return f"{module}.{name}"
    for i in range(len(parts) - 1, 0, -1):
        package = ".".join(parts[:i])
        if any(p.startswith("_") for p in parts[1:i]):
            continue
        pkg = importlib.import_module(package)
        head = name.split(".")[0]
        if (
            package != "balgrad"
            and head in getattr(pkg, "__all__", ())
            and getattr(pkg, head) is getattr(importlib.import_module(module), head)
        ):
            return f"{package}.{name}"
    return f"{module}.{name}"


def _documented(target: str) -> str | None:
    """The documented path of what ``target`` names, if that is another path: a name
    re-exported by the facade (``balgrad.MultimodalModel``), a name at its private
    module (``balgrad.models.MultimodalModel``), a private module (its
    package's page) or an old module path (:mod:`balgrad._moved`)."""
    import importlib

    from balgrad._moved import MOVED

    original = target
    for old in sorted(MOVED, key=len, reverse=True):  # old path -> new path
        if target == old or target.startswith(old + "."):
            target = MOVED[old] + target[len(old) :]
            break
    parts = target.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        if i == len(parts):  # a module: a private one is shown on its package's page
            private = [k for k, p in enumerate(parts) if k and p.startswith("_")]
            found = ".".join(parts[: private[0]]) if private else target
            return found if found != original else None
        if getattr(obj, "__module__", None) and getattr(obj, "__qualname__", None):
            documented = _public_path(obj)
            return documented if documented != original else None
        return None
    return None


def resolve_reexport(app, env, node, contnode):
    """A reference to a balgrad name resolves to where it is documented."""
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.lstrip("~.").startswith("balgrad."):
        return None
    documented = _documented(target.lstrip("~."))
    if documented is None:
        return None
    domain = env.get_domain("py")
    return domain.resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], documented, node, contnode
    )


def setup(app) -> dict[str, Any]:
    app.connect("builder-inited", generate_api_pages)
    app.connect("missing-reference", resolve_reexport)
    app.add_directive("balgrad-config-fields", ConfigFields)
    app.add_directive("balgrad-modality-fields", ModalityFields)
    app.add_directive("balgrad-cli-help", CliHelp)
    app.add_directive("balgrad-list", BalgradList)
    app.add_directive("balgrad-strategy-hooks", StrategyHooks)
    app.add_directive("balgrad-strategy", StrategyInfo)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
