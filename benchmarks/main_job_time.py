"""How long does the README's first command take? Criterion 5 of docs/default-benchmark.md.

Runs ``balgrad compare`` as a fresh user meets it (every default, in a new process) and
prints the wall time of each job against its target:

- ``first``: one seed into an EMPTY cache folder, so generating the data and encoding the
  features with the frozen pretrained towers are included (target: 3 minutes);
- ``warm``: the same command again, every feature from the cache (no target; for the record);
- ``seeds``: ``--seeds 0 1 2 3 4`` into another EMPTY cache folder (target: 6 minutes); it
  must encode each feature once, shared by every method and seed, which the script checks
  by counting the cached feature files against the one-seed run's.

The machine's load (``os.getloadavg``), its core count and the CPU time the job used
(user + sys, all its threads) are printed beside the times: on a machine shared with other
work the wall times are provisional (and CPU time is inflated by threads that spin while
they wait for a core).

    python benchmarks/main_job_time.py                       # all three jobs
    python benchmarks/main_job_time.py --jobs first warm      # skip the 5-seed job
    python benchmarks/main_job_time.py -- --dataset fashion   # extra flags for compare
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"first": 180.0, "warm": None, "seeds": 360.0}
SEEDS = ["0", "1", "2", "3", "4"]


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.1f} / {five:.1f} / {fifteen:.1f} (1/5/15 min) on {os.cpu_count()} cores"


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def compare(args: list[str], cache: Path, out: Path, name: str, quiet: bool) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of ``balgrad compare ARGS`` in a new Python process."""
    cmd = [sys.executable, "-m", "balgrad.cli", "compare", *args]
    cmd += ["--cache-dir", str(cache), "--out", str(out), "--name", name]
    sink = subprocess.DEVNULL if quiet else None
    cpu0, t0 = child_cpu(), time.perf_counter()
    subprocess.run(cmd, check=True, stdout=sink, stderr=sink)
    return time.perf_counter() - t0, child_cpu() - cpu0


def feature_files(cache: Path) -> int:
    return sum(1 for _ in (cache / "features").rglob("*.safetensors"))


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:04.1f} s"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    p.add_argument("--workdir", help="keep caches and run folders here (default: a temp dir)")
    p.add_argument("--verbose", action="store_true", help="show balgrad's own output")
    p.add_argument("extra", nargs="*", help="flags passed to balgrad compare (after --)")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        print(f"before: {load()}", flush=True)
        rows = []
        counts = {}
        for job in args.jobs:
            cache = work / ("cache-seeds" if job == "seeds" else "cache-one")
            if job in ("first", "seeds") and cache.exists() and any(cache.iterdir()):
                print(f"{job}: {cache} is not empty; give an empty --workdir", file=sys.stderr)
                return 2
            extra = [*args.extra, "--seeds", *SEEDS] if job == "seeds" else list(args.extra)
            if job == "warm" and not cache.exists():
                print("warm: run `first` before it (same --workdir)", file=sys.stderr)
                return 2
            seconds, cpu = compare(extra, cache, work / "runs", job, quiet=not args.verbose)
            counts[job] = feature_files(cache)
            rows.append((job, seconds, cpu, load()))
            print(f"{job}: {minutes(seconds)} wall, {cpu:.0f} s CPU  [{rows[-1][3]}]", flush=True)

    print()
    print("| job | wall | target | CPU time (user + sys) | load after (1/5/15 min) |")
    print("|---|---|---|---|---|")
    what = {
        "first": "`balgrad compare`, 1 seed, empty cache",
        "warm": "the same, warm cache",
        "seeds": "`balgrad compare --seeds 0 1 2 3 4`, empty cache",
    }
    for job, seconds, cpu, machine in rows:
        target = TARGETS[job]
        verdict = "–" if target is None else ("PASS" if seconds <= target else "FAIL")
        goal = "–" if target is None else f"≤ {minutes(target)} {verdict}"
        print(
            f"| {what[job]} | {minutes(seconds)} | {goal} | {minutes(cpu)} "
            f"| {machine.split(' (')[0][5:]} |"
        )
    if "first" in counts and "seeds" in counts:
        shared = counts["seeds"] == counts["first"]
        print(
            f"\ncached feature files: {counts['first']} after one seed, {counts['seeds']} after "
            f"five seeds ({'shared across methods and seeds' if shared else 'NOT shared'})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
