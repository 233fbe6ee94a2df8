"""The documentation's examples run as written, its links lead somewhere, and the tables
that scripts rewrite have their markers.

Every ```python block of a page under docs/ runs, in page order in one namespace per page
(as a reader would paste them), unless the line before it is
``<!-- not run: REASON -->``; a reason must name what runs that code instead. Building
the site itself (``sphinx-build -W``) is .ci/run's job.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BLOCK = re.compile(r"(?:<!-- not run: (?P<reason>.*?) -->\n)?```python\n(?P<code>.*?)```", re.S)


def pages() -> list[Path]:
    skip = ("_build", "generated")
    return sorted(p for p in DOCS.rglob("*.md") if not any(s in p.parts for s in skip))


def blocks(page: Path) -> list[tuple[str | None, str]]:
    return [(m["reason"], m["code"]) for m in BLOCK.finditer(page.read_text())]


PAGES_WITH_CODE = [p for p in pages() if blocks(p)]


@pytest.fixture
def registries_restored():
    """An example that registers a plug-in (docs/extending.md) leaves no trace."""
    from balgrad.data._catalog import DATASETS
    from balgrad.data._kinds import KINDS
    from balgrad.strategies._registry import STRATEGY_REGISTRY

    before = {r: set(r.names(aliases=True)) for r in (STRATEGY_REGISTRY, DATASETS)}
    from balgrad.backbones._factory import BACKBONES, CONTRACTS

    saved = [(table, dict(table)) for table in (KINDS, BACKBONES, CONTRACTS)]
    yield
    for table, content in saved:
        table.clear()
        table.update(content)
    for registry, names in before.items():
        for name in set(registry.names(aliases=True)) - names:
            registry.unregister(name)


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: str(p.relative_to(DOCS)))
def test_every_python_example_of_a_page_runs(page, tmp_path, monkeypatch, registries_restored):
    monkeypatch.chdir(tmp_path)  # an example that writes files writes them here
    monkeypatch.syspath_prepend(str(ROOT / "examples"))  # the examples the pages import
    # a module of its own, as a pasted script's __main__ (dataclasses look their module up)
    module = types.ModuleType(f"docs_example_{page.stem.replace('-', '_')}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    ran = 0
    for reason, code in blocks(page):
        if reason is not None:
            assert re.search(r"(examples|tests)/\S+", reason), (
                f"{page.name}: a block not run must name what runs its code: {reason!r}"
            )
            continue
        exec(compile(code, str(page), "exec"), namespace)
        ran += 1
    assert ran or all(r for r, _ in blocks(page))


def test_the_docs_have_examples_and_every_skip_is_rare():
    found = [b for p in pages() for b in blocks(p)]
    assert len(found) >= 8, "the docs lost their examples"
    assert sum(r is not None for r, _ in found) <= 3


LINK = re.compile(r"\]\(((?!https?:|#|mailto:)[^)\s]+)\)")


@pytest.mark.parametrize("page", [ROOT / "README.md", *pages()], ids=lambda p: p.name)
def test_relative_links_lead_to_files(page):
    """A link to a page or file that moved fails here, before Sphinx runs (README links are
    read by GitHub, not by Sphinx)."""
    text = page.read_text()
    missing = []
    for target in LINK.findall(text):
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists():
            missing.append(target)
    assert not missing, f"{page.relative_to(ROOT)}: links to nothing: {missing}"


def test_the_benchmarks_page_has_every_table_block_the_script_rewrites():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import readme_tables
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    text = (DOCS / "benchmarks.md").read_text()
    for name in [*readme_tables.JOBS, "fast", *readme_tables.FIELD_JOBS]:
        readme_tables.replace_block(text, name, "")  # SystemExit when a block is missing


def test_the_methods_page_includes_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- methods-table -->")[1].split("<!-- /methods-table -->")[0]
    assert "| `balgrad` |" in table and "| `joint` |" in table
    assert "<!-- methods-table -->" in (DOCS / "methods.md").read_text()
