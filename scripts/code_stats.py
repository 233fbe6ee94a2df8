"""Size of the package, for the before/after of a refactor: modules (public and private),
lines, files over 300 lines, public names, and the longest functions.

    python scripts/code_stats.py [--top 15]
"""

from __future__ import annotations

import argparse
import ast
import importlib
import pkgutil
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "balgrad"


def _functions(tree: ast.AST, prefix: str = ""):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield f"{prefix}{node.name}", node.end_lineno - node.lineno + 1
            yield from _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")


def _public_names() -> tuple[int, int]:
    """(names in ``balgrad.__all__``, names a user may import: each public module's
    ``__all__``, or its top-level names without a leading underscore)."""
    import balgrad

    seen = set()
    for info in pkgutil.walk_packages(balgrad.__path__, "balgrad."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        try:
            module = importlib.import_module(info.name)
        except Exception:  # an optional extra that is not installed
            continue
        names = getattr(module, "__all__", None)
        if names is None:
            names = [n for n in vars(module) if not n.startswith("_")]
        seen.update(f"{info.name}.{n}" for n in names)
    return len(balgrad.__all__), len(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    files = sorted(SRC.rglob("*.py"))
    public = [
        f
        for f in files
        if not any(p.startswith("_") and p != "__init__.py" for p in f.relative_to(SRC).parts)
    ]
    lines = {f: len(f.read_text().splitlines()) for f in files}
    funcs = []
    for f in files:
        rel = f.relative_to(SRC.parent)
        funcs += [(n, f"{rel}:{name}") for name, n in _functions(ast.parse(f.read_text()))]
    funcs.sort(reverse=True)
    top_all, importable = _public_names()
    print(f"modules: {len(files)} ({len(public)} public)")
    print(f"lines: {sum(lines.values())}")
    print(f"files over 300 lines: {sum(n > 300 for n in lines.values())}")
    print(f"balgrad.__all__: {top_all}; importable public names: {importable}")
    print(f"functions over 60 lines: {sum(n > 60 for n, _ in funcs)}")
    for n, where in funcs[: args.top]:
        print(f"  {n:4d}  {where}")


if __name__ == "__main__":
    main()
