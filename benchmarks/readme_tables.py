"""Regenerate the README's result tables: the default benchmark and fashion, 5 seeds each.

Runs ``balgrad compare --seeds 0 1 2 3 4`` with every default (digits) and with
``--dataset fashion``, one shared feature cache, then copies each run's ``table.md``
(Table 1 with mean ± std, and the paired change versus Baseline with 95% t-intervals)
into README.md between the markers ``<!-- readme_tables:NAME -->`` and
``<!-- /readme_tables:NAME -->``.

    python benchmarks/readme_tables.py                  # train, then rewrite README.md
    python benchmarks/readme_tables.py --reuse          # keep run folders that are complete
    python benchmarks/readme_tables.py --only fashion   # one of the two
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ["0", "1", "2", "3", "4"]
JOBS = {"digits": [], "fashion": ["--dataset", "fashion"]}


def marker(name: str) -> tuple[str, str]:
    return f"<!-- readme_tables:{name} -->", f"<!-- /readme_tables:{name} -->"


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with the lines between ``name``'s two markers replaced by ``body``."""
    begin, end = marker(name)
    pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), flags=re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no block {begin} ... {end}")
    return pattern.sub(lambda _: f"{begin}\n{body.rstrip()}\n{end}", text, count=1)


def run(name: str, out: Path, cache: Path, reuse: bool) -> Path:
    run_dir = out / f"readme-{name}"
    if reuse and (run_dir / "table.md").is_file():
        return run_dir
    cmd = [sys.executable, "-m", "balgrad.cli", "compare", *JOBS[name], "--seeds", *SEEDS]
    cmd += ["--out", str(out), "--name", run_dir.name, "--cache-dir", str(cache), "--no-progress"]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return run_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=list(JOBS), nargs="+", default=list(JOBS))
    p.add_argument("--out", default=str(ROOT / "runs"), help="parent of the run folders")
    p.add_argument("--cache-dir", default=str(ROOT / ".balgrad-cache"))
    p.add_argument("--reuse", action="store_true", help="keep run folders with a table.md")
    p.add_argument("--readme", default=str(ROOT / "README.md"))
    args = p.parse_args(argv)
    readme = Path(args.readme)
    text = readme.read_text()
    for name in args.only:
        run_dir = run(name, Path(args.out), Path(args.cache_dir), args.reuse)
        text = replace_block(text, name, (run_dir / "table.md").read_text())
        print(f"README.md: {name} tables from {run_dir / 'table.md'}")
    readme.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
