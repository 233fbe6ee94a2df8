"""The built-in generated datasets with fewer samples than classes (issue 23, item 10),
and a failed start that leaves no empty run folder behind (item 7)."""

import hashlib
import json

import numpy as np
import pytest

from balgrad.cli import main
from balgrad.data.readers._builtin import DIGITS_CLASSES, load_builtin
from test_bad_inputs import run_cli


# -- item 10: fewer samples than classes ---------------------------------------------------
@pytest.mark.parametrize("name", ["digits", "keypad"])
@pytest.mark.parametrize("n", [1, 5, 9])
def test_a_split_smaller_than_the_class_count_is_generated(name, n):
    """Before: ``ValueError: need at least one array to concatenate``. Now n samples of n
    distinct classes (as balanced as possible), as for any other n."""
    ds = load_builtin(name, "test", n_train=10, n_test=n)
    labels = np.asarray(ds.labels)
    assert len(ds) == n and len(set(labels.tolist())) == n
    assert set(labels.tolist()) <= set(range(len(DIGITS_CLASSES)))


def test_a_split_of_at_least_one_sample_per_class_is_generated_as_before():
    """The labels, source digits and captions of n >= 10 are those of the code before the
    fix (the branch it adds is never taken for them). Hashed: they come from numpy's seeded
    generators and Python's, so they are deterministic by construction, on any CPU; the
    pixels go through torch's resampling and are not hashed."""
    from balgrad.data.readers._digits import DigitsConfig, _generate_digits

    out = _generate_digits(DigitsConfig(n_train=37, n_test=23), 5)
    h = hashlib.sha256()
    for key in ("train_labels", "train_sources", "test_labels", "test_sources", "test_reveal"):
        h.update(np.ascontiguousarray(out[key]).tobytes())
    h.update("".join(out["test_texts"]).encode())
    # computed with the code of commit 444368e (before the fix)
    assert h.hexdigest() == "1f05ecfbbd941ad6d866d16ad60990ab1e171d0ce2b6ee4652d2355cd7e12478"


TINY = [
    "--image-backbone", "cnn", "--text-backbone", "small", "--epochs", "1",
    "--batch-size", "16", "--no-progress", "--backbone-option", "image.width=4",
    "--embed-dim", "8", "--methods", "joint", "--no-sweep",
]  # fmt: skip


def test_digits_with_five_test_samples_runs_from_the_cli(tmp_path, capsys):
    argv = ["compare", *TINY, "--dataset-option", "n_train=40", "--dataset-option", "n_test=5"]
    argv += ["--out", str(tmp_path), "--name", "r", "--cache-dir", str(tmp_path / "c")]
    assert main(argv) == 0
    ev = json.loads((tmp_path / "r" / "joint" / "seed0" / "eval.json").read_text())
    assert ev["conditions"]["full"]["accuracy"] in {0.0, 20.0, 40.0, 60.0, 80.0, 100.0}


def test_digits_with_five_training_samples_is_one_error_line(tmp_path, capsys):
    """Five samples of five classes leave no class with two: no validation split can be
    carved, which is said in one line (and the run folder is not left behind)."""
    argv = ["compare", *TINY, "--dataset-option", "n_train=5", "--dataset-option", "n_test=5"]
    argv += ["--out", str(tmp_path), "--name", "r", "--cache-dir", str(tmp_path / "c")]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and err.startswith("balgrad: error: ") and err.count("\n") == 1, err
    assert "val_fraction" in err and "5 samples" in err
    assert not (tmp_path / "r").exists()


# -- item 7: a failed start's run folder ---------------------------------------------------
def test_a_failed_start_removes_the_run_folder_it_created(tmp_path, capsys):
    empty = tmp_path / "data"
    empty.mkdir()  # a data folder without the dataset's files: load_data fails
    argv = ["compare", "--dataset", "generic", "--data-dir", str(empty), "--methods", "joint"]
    argv += ["--out", str(tmp_path / "runs"), "--name", "r", "--no-progress"]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and err.startswith("balgrad: error: "), err
    assert not (tmp_path / "runs").exists()  # nor the --out folder it made for it
    (tmp_path / "runs").mkdir()  # an --out folder that was there is kept
    assert run_cli(argv, capsys)[0] == 2
    assert (tmp_path / "runs").is_dir() and not (tmp_path / "runs" / "r").exists()


def test_a_failed_start_keeps_a_folder_that_was_there(tmp_path, capsys):
    empty = tmp_path / "data"
    empty.mkdir()
    (tmp_path / "runs" / "r").mkdir(parents=True)  # the user's own, empty folder
    argv = ["compare", "--dataset", "generic", "--data-dir", str(empty), "--methods", "joint"]
    argv += ["--out", str(tmp_path / "runs"), "--name", "r", "--no-progress"]
    assert run_cli(argv, capsys)[0] == 2
    assert (tmp_path / "runs" / "r").is_dir()
