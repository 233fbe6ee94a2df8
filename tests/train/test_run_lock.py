"""One writer per run folder: a lock held by a live process refuses a second one, a dead
process's lock is taken over, and the lock goes away on success, errors and Ctrl-C."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from cli_children import TINY, start

from balgrad.cli import main
from balgrad.config import RunConfig, dump_yaml
from balgrad.train._lock import RunFolderLocked, RunLock

HOLD = """
import sys, time
from pathlib import Path
from balgrad.train._lock import RunLock
with RunLock(sys.argv[1]):
    Path(sys.argv[2]).write_text("held")
    time.sleep(120)
"""


def wait_for(path, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None if hasattr(proc, "poll") else proc.is_alive()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_a_second_process_is_refused_and_a_dead_holders_lock_is_taken_over(tmp_path, caplog):
    run_dir, ready = tmp_path / "run", tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir), str(ready)])
    try:
        wait_for(ready, holder)
        record = json.loads((run_dir / "run.lock").read_text())
        assert record["pid"] == holder.pid and record["host"] == socket.gethostname()
        assert "started" in record
        with pytest.raises(RunFolderLocked, match=rf"pid {holder.pid}\b"):
            RunLock(run_dir).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding the lock
        holder.wait()
    assert (run_dir / "run.lock").exists()
    with caplog.at_level(logging.WARNING, logger="balgrad"), RunLock(run_dir) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert "stale lock" in caplog.text and str(holder.pid) in caplog.text
    assert not (run_dir / "run.lock").exists()


def test_a_lock_from_another_host_is_never_taken_over(tmp_path):
    (tmp_path / "run.lock").write_text(
        json.dumps({"pid": 1, "host": "elsewhere.example", "started": "x"})
    )
    with pytest.raises(RunFolderLocked, match="elsewhere.example"):
        RunLock(tmp_path).acquire()


def cli_argv(tmp_path, *extra):
    return [
        "train",
        "--method",
        "joint",
        *TINY,
        "--epochs",
        "1",
        "--out",
        str(tmp_path),
        "--name",
        "r",
        "--cache-dir",
        str(tmp_path / "cache"),
        *extra,
    ]


@pytest.mark.slow
def test_two_commands_on_one_run_folder(tmp_path, capsys):
    release = tmp_path / "release"
    first = start(cli_argv(tmp_path), tmp_path / "first.log", ("step", 2, str(release)))
    try:
        wait_for(tmp_path / "release.paused", first)  # the first is training now
        assert main(cli_argv(tmp_path, "--resume")) == 2
        err = capsys.readouterr().err
        assert f"pid {first.pid}" in err and "in use by another balgrad process" in err
        assert "Traceback" not in err
    finally:
        release.write_text("go")
        first.join(120)
    assert first.exitcode == 0, (tmp_path / "first.log").read_text()[-2000:]
    assert not (tmp_path / "r" / "run.lock").exists()


def test_the_lock_is_released_on_errors_and_ctrl_c(tmp_path, monkeypatch):
    import balgrad.experiment as experiment

    make = experiment.method_strategy

    def interrupted(*args, **kwargs):
        strategy = make(*args, **kwargs)

        def ctrl_c(step, stats):
            if step == 1:
                raise KeyboardInterrupt

        strategy.add_observer(ctrl_c)
        return strategy

    monkeypatch.setattr(experiment, "method_strategy", interrupted)
    assert main(cli_argv(tmp_path)) == 130  # Ctrl-C: the shell's code for SIGINT
    assert (tmp_path / "r" / "config.yaml").exists()
    assert not (tmp_path / "r" / "run.lock").exists()
    # a refused resume (an error after the lock is taken) releases it too
    assert main(cli_argv(tmp_path, "--resume", "--lr", "0.5")) == 2
    assert not (tmp_path / "r" / "run.lock").exists()


def test_report_and_evaluate_respect_the_lock(tmp_path, capsys):
    dump_yaml(RunConfig(methods=["joint"]), tmp_path / "config.yaml")  # a whole run config
    with RunLock(tmp_path) as held:  # a live holder (this process, through another lock)
        for argv in (["report", str(tmp_path)], ["evaluate", str(tmp_path)]):
            assert main(argv) == 2
            assert f"pid {os.getpid()}" in capsys.readouterr().err
        assert json.loads((tmp_path / "run.lock").read_text()) == held.record  # left alone


def test_a_leftover_record_without_a_holder_is_taken_over_and_the_lock_is_released(
    tmp_path, caplog
):
    # what a process killed while holding the folder leaves (or balgrad < 0.2's lock file):
    # the OS dropped its flock, so the folder is free, with a warning naming it
    left = {"pid": os.getpid(), "host": socket.gethostname(), "started": "then"}
    (tmp_path / "run.lock").write_text(json.dumps(left))
    with caplog.at_level(logging.WARNING, logger="balgrad"), RunLock(tmp_path) as lock:
        assert "stale lock" in caplog.text and "started then" in caplog.text
        with pytest.raises(RunFolderLocked):
            RunLock(tmp_path).acquire()
    assert not lock.held and not (tmp_path / "run.lock").exists()
    assert not (tmp_path / ".run.flock").exists()  # removed on release, while still held
    with RunLock(tmp_path) as again:  # free again
        assert again.held
