"""Regenerate the result tables of the docs' benchmarks page (docs/benchmarks.md, where
the README's tables moved): the default benchmark, fashion, the three-modality keypad
job, fast vs exact.

Runs ``balgrad compare --seeds 0 1 2 3 4`` with every default (digits), with
``--dataset fashion`` and with ``--dataset keypad``, one shared feature cache (and, with
``--only field-digits field-fashion field-keypad``, the same with ``--methods all``), then copies each run's ``table.md``
(Table 1 with mean ± std, and the paired change versus Baseline with 95% t-intervals)
into docs/benchmarks.md between the markers ``<!-- readme_tables:NAME -->`` and
``<!-- /readme_tables:NAME -->``. The ``fast`` job trains joint, BalGrad and
balgrad_fast on both datasets (5 seeds) and writes one table of the two BalGrads side by
side with balgrad_fast's paired change versus the exact method.

    python benchmarks/readme_tables.py                  # train, then rewrite docs/benchmarks.md
    python benchmarks/readme_tables.py --reuse          # keep run folders that are complete
    python benchmarks/readme_tables.py --only fashion   # one of the three
    python benchmarks/readme_tables.py --only field-digits field-fashion field-keypad
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ["0", "1", "2", "3", "4"]
JOBS = {"digits": [], "fashion": ["--dataset", "fashion"], "keypad": ["--dataset", "keypad"]}
#: every registered method (``--methods all``) on each built-in dataset, 5 seeds
FIELD_JOBS = {f"field-{name}": [*flags, "--methods", "all"] for name, flags in JOBS.items()}
FAST_METHODS = ["joint", "balgrad", "balgrad_fast"]
FAST_DATASETS = ("digits", "fashion")


def marker(name: str) -> tuple[str, str]:
    return f"<!-- readme_tables:{name} -->", f"<!-- /readme_tables:{name} -->"


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with the lines between ``name``'s two markers replaced by ``body``."""
    begin, end = marker(name)
    pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), flags=re.S)
    if not pattern.search(text):
        raise SystemExit(f"the page has no block {begin} ... {end}")
    return pattern.sub(lambda _: f"{begin}\n{body.rstrip()}\n{end}", text, count=1)


def run(name: str, out: Path, cache: Path, reuse: bool, flags: list[str] | None = None) -> Path:
    run_dir = out / f"readme-{name}"
    if reuse and (run_dir / "table.md").is_file():
        return run_dir
    flags = {**JOBS, **FIELD_JOBS}[name] if flags is None else flags
    cmd = [sys.executable, "-m", "balgrad.cli", "compare", *flags, "--seeds", *SEEDS]
    cmd += ["--out", str(out), "--name", run_dir.name, "--cache-dir", str(cache), "--no-progress"]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return run_dir


def fast_table(run_dirs: dict[str, Path]) -> str:
    """Markdown: per dataset, Baseline, BalGrad and balgrad_fast (mean ± std) and
    balgrad_fast minus BalGrad paired by seed with its 95% t-interval."""
    from balgrad.report import (
        aggregate,
        format_cell,
        format_change,
        load_results,
        paired_table,
        run_layout,
    )
    from balgrad.report._grid import Table

    out = Table(["Dataset", "Condition", "Baseline", "BalGrad", "balgrad_fast"])
    out.header.append("fast − exact [95% CI]")
    n = 0
    for dataset, run_dir in run_dirs.items():
        results = load_results(run_dir, FAST_METHODS)
        table = aggregate(results, "accuracy")
        n = max(n, table["balgrad"]["full"]["n"])
        paired = paired_table(results, "accuracy", ["balgrad", "balgrad_fast"], "balgrad")
        for key, label in run_layout(results).paired_rows():
            cells = [format_cell(table[m].get(key)) for m in FAST_METHODS]
            out.add(dataset, label, *cells, format_change(paired["balgrad_fast"].get(key)))
    intro = f"accuracy (%), {n} seeds (mean ± std); n.s. = the interval contains 0"
    return f"{intro}\n\n{out.markdown()}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--only", choices=[*JOBS, "fast", *FIELD_JOBS], nargs="+", default=[*JOBS, "fast"]
    )
    p.add_argument("--out", default=str(ROOT / "runs"), help="parent of the run folders")
    p.add_argument("--cache-dir", default=str(ROOT / ".balgrad-cache"))
    p.add_argument("--reuse", action="store_true", help="keep run folders with a table.md")
    p.add_argument(
        "--page",
        "--readme",  # the tables' old home, kept as a spelling
        dest="readme",
        default=str(ROOT / "docs" / "benchmarks.md"),
        help="the Markdown page whose readme_tables blocks are rewritten",
    )
    args = p.parse_args(argv)
    readme = Path(args.readme)
    for name in args.only:  # a missing marker fails before any training
        replace_block(readme.read_text(), name, "")
    out, cache = Path(args.out), Path(args.cache_dir)
    for name in args.only:
        if name == "fast":
            dirs = {
                ds: run(f"fast-{ds}", out, cache, args.reuse, [*flags, "--methods", *FAST_METHODS])
                for ds, flags in JOBS.items()
                if ds in FAST_DATASETS
            }
            body, source = fast_table(dirs), ", ".join(map(str, dirs.values()))
        else:
            run_dir = run(name, out, cache, args.reuse)
            body, source = (run_dir / "table.md").read_text(), str(run_dir / "table.md")
        # read the page again now: edits made while the jobs trained are kept
        readme.write_text(replace_block(readme.read_text(), name, body))
        print(f"{readme}: {name} tables from {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
