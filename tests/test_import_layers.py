"""The import graph flows one way (STYLE.md; issue 9):

    data -> models -> strategies -> train -> evaluate -> report -> cli

A module of ``balgrad`` imports from its own layer or from earlier ones, never from a
later one. Checked statically: every module under the imported ``balgrad`` package is
parsed with ``ast``, lazy imports inside functions included.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

#: the layers, earliest first; the names are the top-level modules and packages of balgrad
LAYERS = (
    ("errors", "registry", "atomic", "names", "_moved", "config_upgrade"),
    ("data",),
    ("models", "backbones", "tasks"),
    ("strategies", "_grad"),
    ("train",),
    ("evaluate",),
    ("integrations",),
    ("report",),
    ("config", "experiment", "presets"),
    ("cli",),
    ("compat",),
)
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}
#: ``balgrad/__init__.py`` re-exports the public names and may import anything, so a
#: module inside the package that imported it could reach every layer: it comes last
FACADE = "balgrad"
FACADE_LAYER = len(LAYERS)


def package_root() -> Path:
    """The source folder of the ``balgrad`` that the tests import (found without running it)."""
    spec = importlib.util.find_spec("balgrad")
    assert spec is not None and spec.submodule_search_locations, "balgrad is not importable"
    return Path(next(iter(spec.submodule_search_locations)))


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.Module, module: str, is_package: bool):
    """(line, module) of each ``balgrad`` import in ``tree``; relative imports resolved, and
    ``from balgrad import x`` read as ``balgrad.x`` where x is a top-level module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")
                if not is_package:
                    package = package[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            if base == FACADE:
                for alias in node.names:
                    yield node.lineno, f"balgrad.{alias.name}" if alias.name in LAYER_OF else FACADE
            else:
                yield node.lineno, base


def layer(module: str) -> int | None:
    """The layer of a ``balgrad`` module (``None`` for a top-level name in no layer)."""
    if module == FACADE:
        return FACADE_LAYER
    return LAYER_OF.get(module.split(".")[1])


def backward_imports(root: Path) -> tuple[list[str], list[str]]:
    """(imports from a later layer, modules in no layer), as readable lines."""
    back, unplaced = [], []
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        if module == FACADE:
            continue  # the facade may import anything
        own = layer(module)
        if own is None:
            unplaced.append(f"{module}: add its top-level name to a layer of LAYERS")
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, target in imported_modules(tree, module, path.name == "__init__.py"):
            if target.split(".")[0] != "balgrad":
                continue
            theirs = layer(target)
            if theirs is None:
                unplaced.append(f"{target} (imported by {module}): add it to a layer of LAYERS")
            elif theirs > own:
                rel = path.relative_to(root.parent)
                back.append(
                    f"{rel}:{line}: {module} (layer {own}) imports {target} (layer {theirs})"
                )
    return back, unplaced


def test_no_module_imports_from_a_later_layer():
    back, unplaced = backward_imports(package_root())
    assert not unplaced, "modules in no layer:\n" + "\n".join(unplaced)
    assert not back, (
        "imports against the flow "
        + " -> ".join("/".join(names) for names in LAYERS)
        + ":\n"
        + "\n".join(back)
    )


def test_the_check_sees_absolute_relative_lazy_and_facade_imports(tmp_path):
    root = tmp_path / "balgrad"
    (root / "data").mkdir(parents=True)
    (root / "__init__.py").write_text("from balgrad.cli import main\n")  # allowed
    (root / "data" / "__init__.py").write_text("")
    (root / "data" / "ok.py").write_text(
        "from balgrad.errors import ConfigError\nfrom . import ok\n"
    )
    (root / "data" / "bad.py").write_text(
        "import balgrad.report._tables\n"
        "from ..train import trainer\n"
        "def later():\n"
        "    from balgrad.evaluate._protocol import predict\n"
        "from balgrad import strategies, create_strategy\n"
    )
    back, unplaced = backward_imports(root)
    assert not unplaced
    targets = sorted(line.rsplit(" imports ", 1)[1].split(" (")[0] for line in back)
    assert targets == [
        "balgrad",
        "balgrad.evaluate._protocol",
        "balgrad.report._tables",
        "balgrad.strategies",
        "balgrad.train",
    ]
    assert all(line.startswith("balgrad/data/bad.py:") for line in back)


def test_a_module_in_no_layer_is_reported(tmp_path):
    root = tmp_path / "balgrad"
    root.mkdir()
    (root / "newthing.py").write_text("")
    assert backward_imports(root) == (
        [],
        ["balgrad.newthing: add its top-level name to a layer of LAYERS"],
    )


def test_every_name_in_the_layers_is_a_module_of_the_package():
    root = package_root()
    names = [name for names in LAYERS for name in names]
    missing = [n for n in names if not ((root / f"{n}.py").is_file() or (root / n).is_dir())]
    assert not missing, f"LAYERS names what balgrad does not have: {missing}"
