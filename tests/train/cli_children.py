"""Run ``balgrad`` commands in child processes that can SIGKILL (or pause) themselves at a
chosen point: the n-th training step this process runs, or the n-th checkpoint rename.

Children are forked from a ``forkserver`` that has imported balgrad once, so each run
starts in milliseconds instead of re-importing torch; every child forks from the same
state, so runs are deterministic across children. A child's stdout/stderr go to a file.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

TINY = [
    "--image-backbone",  # the small scratch towers keep these runs fast
    "cnn",
    "--text-backbone",
    "small",
    "--dataset-option",
    "n_train=160",
    "--dataset-option",
    "n_test=60",
    "--batch-size",
    "32",
    "--no-progress",
    "--no-sweep",
    "--backbone-option",
    "image.width=4",
    "--embed-dim",
    "16",
    "--eval-batch-size",
    "64",
]

_CTX = mp.get_context("forkserver")
_CTX.set_forkserver_preload(["balgrad.cli", "balgrad.experiment", "balgrad.report._build"])


def _at_nth(n: int, action):
    calls = [0]

    def hit() -> None:
        calls[0] += 1
        if calls[0] == n:
            action()

    return hit


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _pause_until(release: str):
    def pause() -> None:
        Path(release + ".paused").write_text(str(os.getpid()))
        while not Path(release).exists():
            time.sleep(0.05)

    return pause


def _child(argv: list[str], point: tuple | None, log_path: str) -> None:
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    import torch

    torch.set_num_threads(1)  # the same arithmetic in every child, and no oversubscription
    import balgrad.experiment as experiment
    from balgrad.cli import main

    if point is not None:
        where, n, what = point
        action = _die if what == "kill" else _pause_until(what)
        hit = _at_nth(n, action)
        if where == "step":  # after the step's gradients, before the optimizer step
            make = experiment.method_strategy

            def method_strategy(*args, **kwargs):
                strategy = make(*args, **kwargs)
                strategy.add_observer(lambda step, stats: hit())
                return strategy

            experiment.method_strategy = method_strategy
        elif where == "save":  # between the renames of a checkpoint save
            replace = os.replace

            def patched(src, dst, *args, **kwargs):
                if "checkpoint" in os.fspath(dst):
                    hit()
                return replace(src, dst, *args, **kwargs)

            os.replace = patched
    os._exit(main(argv))


def start(argv: list[str], log_path: Path, point: tuple | None = None):
    """Start ``balgrad *argv`` in a child; ``point`` = (``"step"``|``"save"``, n,
    ``"kill"`` or a release-file path to pause on until it exists)."""
    proc = _CTX.Process(target=_child, args=(list(argv), point, str(log_path)))
    proc.start()
    return proc


def run(argv: list[str], log_path: Path, point: tuple | None = None, timeout: float = 120) -> int:
    """Run to the end; the exit code (-9 when the child SIGKILLed itself)."""
    proc = start(argv, log_path, point)
    proc.join(timeout)
    if proc.exitcode is None:
        proc.kill()
        proc.join()
        raise TimeoutError(f"balgrad {' '.join(argv)} ran over {timeout} s; log: {log_path}")
    return proc.exitcode
