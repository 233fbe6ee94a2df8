"""Every failure is one ``balgrad: error:`` line with exit code 2 (issue 23, item 6):
write failures (a full disk, a file-size limit), plug-in datasets that break the
dataset contract, and a ``--cache-dir`` whose entries would pass PATH_MAX."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import balgrad.atomic
from balgrad.atomic import write_text
from balgrad.data._base import IMAGE_TEXT, DatasetInfo, Example, MultimodalDataset
from balgrad.data._catalog import DATASETS
from balgrad.errors import WriteError
from balgrad.train._lock import RunLock
from balgrad.train._metrics_log import JsonlLogger
from test_bad_inputs import run_cli
from test_end_to_end import TINY

SRC = Path(balgrad.atomic.__file__).resolve().parents[1]  # the balgrad under test
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def one_error_line(err: str) -> str:
    """The stderr of a refused command: exactly one ``balgrad: error:`` line, no traceback."""
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("balgrad: error:")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


# -- write failures ---------------------------------------------------------------------
def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_names_the_file_and_keeps_the_old_version(tmp_path, monkeypatch):
    target = tmp_path / "eval.json"
    target.write_text("old")
    monkeypatch.setattr(balgrad.atomic.os, "replace", _no_space)
    with pytest.raises(WriteError, match=f"cannot write {target}: No space left on device"):
        write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["eval.json"]  # no temporary left


def test_a_write_error_is_still_an_oserror_for_the_caches(tmp_path, monkeypatch):
    monkeypatch.setattr(balgrad.atomic.os, "replace", _no_space)
    with pytest.raises(OSError) as info:
        write_text(tmp_path / "x", "y")
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, WriteError)


def test_an_append_to_metrics_jsonl_on_a_full_disk_names_it(tmp_path, monkeypatch):
    log = JsonlLogger(tmp_path / "metrics.jsonl", method="joint")
    log(1, {"loss_task": 0.5})
    monkeypatch.setattr(Path, "open", lambda *a, **k: _no_space())
    with pytest.raises(WriteError, match="metrics.jsonl: No space left on device"):
        log.flush()


def test_a_lock_that_cannot_be_written_is_named_and_not_left_half_written(tmp_path, monkeypatch):
    monkeypatch.setattr("balgrad.train._lock.os.fsync", _no_space)
    lock = RunLock(tmp_path)
    with pytest.raises(WriteError, match="run.lock: No space left on device"):
        lock.acquire()
    assert not (tmp_path / "run.lock").exists()


def test_any_other_write_failure_reaching_the_cli_is_one_line(monkeypatch, capsys):
    def full(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/runs/r/joint")

    monkeypatch.setattr("balgrad.cli.cmd_report", full)
    code, _, err = run_cli(["report", "anything"], capsys)
    assert code == 2
    assert one_error_line(err) == (
        "balgrad: error: cannot write /runs/r/joint: No space left on device"
    )


def _limit_file_size(limit: int):
    def preexec():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="no file-size limit signal")
def test_a_file_size_limit_is_one_error_line_naming_the_checkpoint(tmp_path):
    """``ulimit -f``: the checkpoint passes the limit. The process is not killed by
    SIGXFSZ; it names the file, exits 2, and the files written before stay whole."""
    out = tmp_path / "runs"
    argv = ["compare", *TINY, "--methods", "joint", "--no-sweep"]
    argv += ["--out", str(out), "--name", "r", "--cache-dir", str(tmp_path / "cache")]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run(
        [sys.executable, "-m", "balgrad.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        preexec_fn=_limit_file_size(100_000),  # config.yaml fits; the checkpoint does not
        timeout=600,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = one_error_line(proc.stderr)
    assert line == (
        f"balgrad: error: cannot write {out / 'r' / 'joint' / 'seed0' / 'checkpoint.pt'}: "
        "File too large"
    )
    assert "digits cache" in proc.stderr  # the cache, too large as well, degraded with a warning
    assert "methods:" in (out / "r" / "config.yaml").read_text()  # written before: whole
    assert not list((out / "r").rglob("*.tmp"))  # no temporary left behind


# -- path options -----------------------------------------------------------------------
def _deep_folder(tmp_path: Path, total: int) -> Path:
    """A path of ``total`` bytes (absolute) below ``tmp_path``, each name within NAME_MAX."""
    parts, length = [], len(os.fsencode(str(tmp_path)))
    while length + 1 + 200 < total:
        parts.append("d" * 200)
        length += 201
    parts.append("e" * (total - length - 1))
    return tmp_path.joinpath(*parts)


def test_a_cache_dir_whose_entries_would_pass_path_max_is_refused_first(tmp_path, capsys):
    """The folder itself fits PATH_MAX, its cache files would not: named before any
    data is generated (it was an OSError traceback from the digits cache)."""
    path_max = os.pathconf(tmp_path, "PC_PATH_MAX")
    cache = _deep_folder(tmp_path, path_max - 20)
    code, _, err = run_cli(
        ["compare", *TINY, "--no-sweep", "--out", str(tmp_path / "o"), "--cache-dir", str(cache)],
        capsys,
    )
    assert code == 2
    line = one_error_line(err)
    assert "--cache-dir" in line and "PATH_MAX" in line and "with the files a run writes" in line
    out = tmp_path / "o"  # no run folder was started (an --out the run made is removed)
    assert not out.exists() or not list(out.iterdir())


def test_a_dataset_cache_dir_over_path_max_degrades_to_memory(tmp_path):
    """The dataset's own ``cache_dir`` option: a cache that cannot be written, so a miss
    and one warning, never an OSError from looking the entry up."""
    from balgrad.data._cache_files import CacheWarning

    cache = _deep_folder(tmp_path, os.pathconf(tmp_path, "PC_PATH_MAX") - 10)
    opts = {"n_train": 40, "n_test": 20, "cache_dir": str(cache)}
    with pytest.warns(CacheWarning, match="cannot be written"):
        ds = DATASETS.build("digits", ("train",), {"seed": 0, "data_dir": None}, opts)
    assert len(ds) == 40


# -- plug-in datasets that break the contract --------------------------------------------
PLUGIN = "contract_test"
MODALITIES = {"image": "image", "audio": "audio"}


class Faulty(MultimodalDataset):
    """Two modalities, image and audio; ``fault`` breaks one rule of the contract."""

    def __init__(self, split: str, fault: str, n: int = 48):
        self.split, self.fault, self.n = split, fault, n
        self.info = DatasetInfo(PLUGIN, "single_label", ["a", "b"], modalities=dict(MODALITIES))

    def __len__(self) -> int:
        return self.n

    def get(self, i: int) -> Example:
        g = torch.Generator().manual_seed(i)
        image, audio = torch.rand(1, 12, 12, generator=g), torch.rand(400, generator=g)
        inputs = {"image": image, "audio": audio}
        if self.fault == "missing":
            del inputs["audio"]
        elif self.fault == "float64":
            inputs["audio"] = audio.double()
        elif self.fault == "ragged":
            inputs["audio"] = torch.rand(400 + i % 3, generator=g)
        elif self.fault == "batched":
            inputs["audio"] = audio[None, None, None]  # [1, 1, 1, T]: not one sample
        elif self.fault == "numpy":
            inputs["audio"] = audio.numpy()
        elif self.fault == "text":
            inputs["image"] = "a caption"
        return Example(inputs=inputs, label=torch.tensor(i % 2), index=i)


@pytest.fixture
def plugin():
    """A dataset plug-in whose fault the test picks; unregistered afterwards."""
    state = {"fault": None, "info": None}

    def load(split, *, seed=0, data_dir=None):
        ds = Faulty(split, state["fault"])
        if state["info"] is not None:
            ds.info = state["info"]
        return ds

    DATASETS.register(
        PLUGIN,
        load,
        kind="builtin",
        modalities=MODALITIES,
        modality_backbones={"audio": "resnet18"},
    )
    yield state
    DATASETS.unregister(PLUGIN)


def plugin_run(tmp_path) -> list[str]:
    return [
        "compare", "--dataset", PLUGIN, "--image-backbone", "cnn", "--methods", "joint",
        "--backbone-option", "audio.width=4", "--epochs", "1", "--batch-size", "16",
        "--no-sweep", "--no-progress", "--out", str(tmp_path / "runs"), "--name", "r",
        "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("missing", ["no input for the modality 'audio'", "info.modalities declares"]),
        ("float64", ["modality 'audio'", "dtype float64, not float32"]),
        ("ragged", ["modality 'audio'", "shape [40", "must have one shape to be batched"]),
        ("batched", ["modality 'audio'", "shape [1, 1, 1, 400], not [T], [C, T] or"]),
        ("numpy", ["modality 'audio'", "a ndarray, not a torch.Tensor"]),
        ("text", ["modality 'image'", "a str, not a torch.Tensor"]),
    ],
)
def test_a_plugin_item_that_breaks_the_contract_is_named(
    plugin, fault, words, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    plugin["fault"] = fault
    code, _, err = run_cli(plugin_run(tmp_path), capsys)
    assert code == 2
    line = one_error_line(err)
    assert f"dataset '{PLUGIN}'" in line and "item " in line
    for word in words:
        assert word in line, line
    assert not list((tmp_path / "runs").rglob("model.safetensors"))  # it failed before training


def test_a_plugin_whose_info_declares_other_modalities_is_named(plugin, tmp_path, capsys):
    plugin["fault"] = None
    plugin["info"] = DatasetInfo(PLUGIN, "single_label", ["a", "b"], modalities={"image": "image"})
    code, _, err = run_cli(plugin_run(tmp_path), capsys)
    assert code == 2
    line = one_error_line(err)
    assert f"dataset '{PLUGIN}': its info.modalities" in line and "registered with" in line


class NoValidate(torch.utils.data.Dataset):
    """A disk-kind plug-in that is not a MultimodalDataset and has no validate()."""

    def __init__(self, data_dir, split, *, skip_bad=False):
        self.split = split
        self.info = DatasetInfo(
            "novalidate_test", "single_label", ["a", "b"], modalities=dict(IMAGE_TEXT)
        )
        self.labels = [i % 2 for i in range(24)]

    def __len__(self) -> int:
        return 24

    def __getitem__(self, i: int) -> Example:
        g = torch.Generator().manual_seed(i)
        image = torch.rand(3, 8, 8, generator=g)
        return Example({"image": image, "text": f"label {i % 2}"}, torch.tensor(i % 2), i)

    @property
    def fingerprint(self) -> str:
        return f"novalidate:{self.split}"


def test_a_disk_plugin_without_validate_trains(tmp_path, monkeypatch, capsys):
    """validate() is optional: the contract's items are checked as they are read."""
    from balgrad.data.readers._registry_disk import MissingSplitError

    def load(data_dir, split, *, skip_bad=False):
        if split == "val":
            raise MissingSplitError("no val split")
        return NoValidate(data_dir, split, skip_bad=skip_bad)

    DATASETS.register("novalidate_test", load, kind="disk", modalities=IMAGE_TEXT)
    monkeypatch.chdir(tmp_path)
    try:
        argv = [
            "compare", "--dataset", "novalidate_test", "--data-dir", str(tmp_path),
            "--image-backbone", "cnn", "--text-backbone", "small", "--methods", "joint",
            "--epochs", "1", "--batch-size", "8", "--no-sweep", "--no-progress",
            "--out", str(tmp_path / "runs"), "--name", "r", "--cache-dir", str(tmp_path / "c"),
        ]  # fmt: skip
        code, _, err = run_cli(argv, capsys)
    finally:
        DATASETS.unregister("novalidate_test")
    assert code == 0, err[-3000:]
    assert (tmp_path / "runs" / "r" / "joint" / "seed0" / "eval.json").is_file()
