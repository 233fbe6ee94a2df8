"""balgrad.atomic: a write replaces the whole file or leaves it as it was."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

import balgrad
from balgrad.atomic import atomic_open, stale_temporaries, write_text


def test_a_write_replaces_the_file_with_the_permissions_open_gives(tmp_path):
    target, plain = tmp_path / "eval.json", tmp_path / "plain.json"
    target.write_text("old")
    plain.write_text("x")
    write_text(target, "new")
    assert target.read_text() == "new"
    assert os.stat(target).st_mode == os.stat(plain).st_mode  # not mkstemp's 0600
    assert not stale_temporaries(target)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "eval.json"
    target.write_text("a good file")
    with pytest.raises(OSError, match="No space"), atomic_open(target, "w") as f:
        f.write("x" * 1024)
        raise OSError(28, "No space left on device")
    assert target.read_text() == "a good file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json"]


#: calls that write a file, by the name they are called with
WRITERS = {"write_text", "write_bytes", "savefig", "save_file", "save", "savez_compressed"}
#: context managers and helpers that hand out a temporary to write to
ATOMIC = {"atomic_path", "atomic_open", "_atomic_write"}
#: writes that are not atomic on purpose, with the reason
NOT_ATOMIC = {
    ("train/_metrics_log.py", "open"): "metrics.jsonl is appended; a resume cuts it back",
    # the generated-data caches (digits, keypad) write through CacheWriter into a temporary
    # that balgrad.atomic renames
    ("data/_cache_files.py", "savez_compressed"): "written to its own temporary, then renamed",
    # safetensors' save() returns bytes, which the cache writes through atomic_write
    ("backbones/_cache.py", "save"): "serialises to bytes in memory",
    # torch.save into a BytesIO, whose bytes balgrad.atomic then writes (a full disk is then
    # an OSError, not torch's opaque RuntimeError)
    ("train/_checkpoint.py", "save"): "serialises to bytes in memory",
    ("integrations/hf.py", "save"): "serialises to bytes in memory",
}


def _name(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")


def _writes(call: ast.Call) -> bool:
    name = _name(call)
    if name == "open":  # open(path, "w"...) / path.open("w"...)
        modes = [a.value for a in call.args if isinstance(a, ast.Constant)]
        modes += [
            k.value.value
            for k in call.keywords
            if k.arg == "mode" and isinstance(k.value, ast.Constant)
        ]
        return any(isinstance(m, str) and set(m) & set("wax") for m in modes)
    return name in WRITERS


def test_every_file_balgrad_writes_goes_through_a_temporary():
    root = Path(balgrad.__file__).parent
    bad = []
    for path in sorted(root.rglob("*.py")):
        rel = str(path.relative_to(root))
        if rel == "atomic.py":
            continue
        tree = ast.parse(path.read_text())
        helpers = {  # balgrad.atomic's write_text/write_bytes, called by name
            a.asname or a.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "balgrad.atomic"
            for a in node.names
        }
        inside = set()  # nodes within an atomic helper's with-block or call
        for node in ast.walk(tree):
            calls = []
            if isinstance(node, ast.With):
                calls = [i.context_expr for i in node.items]
            elif isinstance(node, ast.Call):
                calls = [node]
            if any(isinstance(c, ast.Call) and _name(c) in ATOMIC for c in calls):
                inside.update(id(n) for n in ast.walk(node))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not _writes(node) or id(node) in inside:
                continue
            helper = isinstance(node.func, ast.Name) and node.func.id in helpers
            if not helper and (rel, _name(node)) not in NOT_ATOMIC:
                bad.append(f"{rel}:{node.lineno} {_name(node)}")
    assert not bad, "write these through balgrad.atomic: " + ", ".join(bad)
