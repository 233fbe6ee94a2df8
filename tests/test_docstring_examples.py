"""The ``>>>`` examples in balgrad's docstrings run and print what they show (the docs'
pages run theirs in test_docs.py). An example that trains or needs files on disk is
marked ``# doctest: +SKIP`` where it stands."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import balgrad


def _modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(balgrad.__path__, "balgrad."):
        spec = importlib.util.find_spec(info.name)
        if spec and spec.origin and spec.origin.endswith(".py"):
            with open(spec.origin, encoding="utf-8") as f:
                if ">>> " in f.read():
                    names.append(info.name)
    return names


MODULES = _modules_with_examples()


def test_some_docstrings_have_examples():
    assert len(MODULES) >= 5, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(module, name) if t.examples]
    assert tests, f"{name}: has '>>> ' but no doctest was found"
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
