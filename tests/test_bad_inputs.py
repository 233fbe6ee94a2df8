"""The CLI over a table of bad inputs: each is refused with one `balgrad: error:` line
naming the culprit, exit code 2 and no traceback, before any data is loaded. Ctrl-C
anywhere exits 130 with one line saying what is saved."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from balgrad.cli import main
from test_end_to_end import TINY as TINY_RUN

#: the end-to-end test's tiny run, without its table (no bad input gets that far)
TINY = [*TINY_RUN, "--no-sweep"]


def _file(name: str, data: bytes):
    def make(tmp: Path) -> str:
        (tmp / name).write_bytes(data)
        return str(tmp / name)

    return make


def _run_folder(tmp: Path) -> str:  # enough of a run folder for evaluate to read it
    from balgrad.config import RunConfig

    (tmp / "r").mkdir()
    config = RunConfig(methods=["joint", "balgrad"]).model_dump(mode="json")
    (tmp / "r" / "config.yaml").write_text(yaml.safe_dump(config))  # every setting
    return str(tmp / "r")


A_FILE = _file("a_file", b"")
LONG = "x" * 300
DEEP = "/".join(["d" * 200] * 20)  # each name fits NAME_MAX, the whole passes PATH_MAX
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
NO_MPS = pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")

#: (argv, where a callable gets tmp_path and gives an argument; words the error must hold)
BAD = {
    "unknown option": (["compare", "--no-such-flag"], ["--no-such-flag"]),
    "bad int": (["compare", "--epochs", "x"], ["--epochs", "'x'"]),
    "bad choice": (["compare", "--optimizer", "adamm"], ["--optimizer", "adamm"]),
    "no command": ([], ["command"]),
    "bad dict flag": (["compare", "--method-option", "kl_weight=0.5"], ["--method-option"]),
    "dict flag without =": (["compare", "--dataset-option", "dominant"], ["--dataset-option"]),
    "unknown method": (["compare", "--methods", "jiont"], ["jiont"]),
    "unknown dataset": (["compare", "--dataset", "digitz"], ["digitz"]),
    "option of a method not run": (
        ["compare", "--methods", "joint", "--method-option", "balgrad.kl_weight=1"],
        ["method_options", "balgrad"],
    ),
    "disk dataset without --data-dir": (["compare", "--dataset", "generic"], ["--data-dir"]),
    "missing dataset folder": (
        ["compare", "--dataset", "generic", "--data-dir", lambda t: str(t / "nope")],
        ["nope"],
    ),
    "duplicate method": (["compare", "--methods", "joint", "joint"], ["methods", "'joint'"]),
    "method and its alias": (
        ["compare", "--methods", "joint", "baseline"],
        ["methods", "'joint' and 'baseline'"],
    ),
    "duplicate method in YAML": (
        ["compare", "--config", _file("m.yaml", b"methods: [balgrad, joint, baseline]\n")],
        ["m.yaml", "methods", "'baseline'"],
    ),
    "duplicate method to evaluate": (
        ["evaluate", _run_folder, "--methods", "joint", "joint"],
        ["evaluate --methods", "'joint'"],
    ),
    "seed beyond 64 bits": (["compare", "--seeds", str(2**64)], ["seeds", str(2**64)]),
    "negative seed": (["compare", "--seeds", "0", "-1"], ["seeds", "-1"]),
    "negative eval seed": (["compare", "--eval-seed", "-3"], ["eval_seed", "-3"]),
    "data seed in YAML beyond 32 bits": (
        ["compare", "--config", _file("s.yaml", b"data_seed: 4294967296\n")],
        ["s.yaml", "data_seed"],
    ),
    "YAML not UTF-8": (
        ["compare", "--config", _file("latin.yaml", b"epochs: 1\nname: caf\xe9\n")],
        ["latin.yaml", "UTF-8", "line 2"],
    ),
    "YAML with a number as a key": (
        ["compare", "--config", _file("k.yaml", b"1: 2\nepochs: 1\n")],
        ["k.yaml", "option names", "1"],
    ),
    "YAML with a nested number key": (
        ["compare", "--config", _file("n.yaml", b"dataset_options: {1: 2}\n")],
        ["n.yaml", "dataset_options"],
    ),
    "YAML with null as a key": (
        ["compare", "--config", _file("null.yaml", b"null: 2\n")],
        ["null.yaml", "None"],
    ),
    "YAML syntax": (["compare", "--config", _file("b.yaml", b"epochs: [1\n")], ["b.yaml"]),
    "YAML list": (["compare", "--config", _file("l.yaml", b"- 1\n")], ["l.yaml", "mapping"]),
    "YAML misspelt key": (
        ["compare", "--config", _file("t.yaml", b"epocs: 1\n")],
        ["t.yaml", "epocs"],
    ),
    "config that does not exist": (["compare", "--config", "nope.yaml"], ["nope.yaml"]),
    "device garbage": (["compare", *TINY, "--device", "gpu0"], ["--device", "gpu0", "cpu"]),
    "device index beyond the GPUs": (["compare", *TINY, "--device", "cuda:99"], ["cuda:99"]),
    "device cuda without CUDA": pytest.param(
        ["compare", *TINY, "--device", "cuda"], ["--device", "'cuda'", "CUDA"], marks=NO_CUDA
    ),
    "device mps off a Mac": pytest.param(
        ["compare", *TINY, "--device", "mps"], ["--device", "'mps'"], marks=NO_MPS
    ),
    "evaluate with a bad device": (
        ["evaluate", _run_folder, "--device", "cuda:99"],
        ["--device", "cuda:99"],
    ),
    "run folder name over NAME_MAX": (["compare", *TINY, "--name", LONG], ["--name", "NAME_MAX"]),
    "run folder under a file": (
        ["compare", *TINY, "--name", lambda t: A_FILE(t) + "/sub"],
        ["run folder", "lies under the file"],
    ),
    "run folder path over PATH_MAX": (
        ["compare", *TINY, "--name", DEEP],
        ["run folder", "PATH_MAX"],
    ),
    "--out is a file": (["compare", *TINY, "--out", A_FILE], ["--out", "is a file"]),
    "--out name over NAME_MAX": (["compare", *TINY, "--out", LONG], ["--out", "NAME_MAX"]),
    "--cache-dir name over NAME_MAX": (
        ["compare", *TINY, "--cache-dir", LONG],
        ["--cache-dir", "NAME_MAX"],
    ),
    "--data-dir under a file": (
        ["compare", "--dataset", "generic", "--data-dir", lambda t: A_FILE(t) + "/d"],
        ["--data-dir", "lies under the file"],
    ),
    "--config name over NAME_MAX": (["compare", "--config", LONG], ["--config", "too long"]),
    "evaluate a path over NAME_MAX": (["evaluate", LONG], ["evaluate RUN_DIR", "NAME_MAX"]),
    "report a path over NAME_MAX": (["report", LONG], ["report RUN_DIR", "NAME_MAX"]),
    "hf backbone path over NAME_MAX": (
        ["compare", *TINY, "--image-backbone", "hf:" + LONG],
        ["backbone", "hf:xxx"],
    ),
    "text backbone as the image backbone": (
        ["compare", "--image-backbone", "minilm"],
        ["modalities.image.backbone", "'minilm' is a backbone of kind text, not image"],
    ),
    "image backbone as the text backbone": (
        ["compare", "--text-backbone", "cnn"],
        ["modalities.text.backbone", "'cnn' is a backbone of kind image, not text"],
    ),
    "duplicate seed": (["compare", "--seeds", "0", "1", "0"], ["seeds", "duplicates: [0]"]),
    "YAML key given twice": (
        ["compare", "--config", _file("d.yaml", b"epochs: 1\nlr: 0.1\nepochs: 2\n")],
        ["d.yaml", "'epochs' is given twice", "line 3"],
    ),
    "resume without a run folder": (["compare", *TINY, "--resume"], ["--resume"]),
    "evaluate a folder that is no run": (["evaluate", "."], ["not a run folder"]),
    "report a folder that is no run": (["report", "."], ["not a run folder"]),
}


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("argv", "words"), list(BAD.values()), ids=list(BAD))
def test_a_bad_input_is_one_error_line_naming_it(argv, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # nothing lands in the working tree
    if not any("--data-dir" in w or "nope" in w for w in words):  # the data's own errors
        monkeypatch.setattr("balgrad.experiment.load_data", _no_data_loading)
    argv = [a(tmp_path) if callable(a) else a for a in argv]
    if argv and argv[0] in ("compare", "train"):
        for flag, default in (("--cache-dir", "cache"), ("--out", "runs")):
            if flag not in argv:
                argv += [flag, str(tmp_path / default)]
    code, out, err = run_cli(argv, capsys)
    assert code == 2, (out, err)
    assert err.startswith("balgrad: error:"), err
    assert "Traceback" not in out + err
    for word in words:
        assert word in err, (word, err)


def _no_data_loading(cfg):
    raise AssertionError("the bad input was not caught before the data was loaded")


# -- Ctrl-C ---------------------------------------------------------------------------
def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def _ctrl_c_argv(tmp_path, *extra):
    return [
        "compare",
        *TINY,
        "--out",
        str(tmp_path / "runs"),
        "--name",
        "r",
        "--cache-dir",
        str(tmp_path / "cache"),
        *extra,
    ]


@pytest.mark.parametrize(
    "where",
    [
        "balgrad.experiment.load_data",  # loading the data
        "balgrad.data._feature_store.FrozenFeatures.encode",  # encoding with a frozen tower
        "balgrad.evaluate._protocol.Evaluator.modality_scores",  # validation
    ],
)
def test_ctrl_c_before_any_checkpoint_says_nothing_is_saved(where, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(where, _interrupt)
    argv = _ctrl_c_argv(tmp_path, "--methods", "joint", "--backbone-option", "image.finetune=false")
    code, out, err = run_cli(argv, capsys)
    assert code == 130
    assert err == "balgrad: interrupted; nothing saved yet\n"
    assert not (tmp_path / "runs" / "r" / "run.lock").exists()


def test_ctrl_c_in_the_test_evaluation_names_what_is_saved(tmp_path, monkeypatch, capsys):
    import balgrad.evaluate._protocol as protocol

    run = protocol.Evaluator.run
    calls = []

    def second_run_interrupted(self, *args, **kwargs):  # joint finishes, balgrad is cut off
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return run(self, *args, **kwargs)

    monkeypatch.setattr(protocol.Evaluator, "run", second_run_interrupted)
    argv = _ctrl_c_argv(tmp_path, "--methods", "joint", "balgrad", "--epochs", "2")
    code, out, err = run_cli(argv, capsys)
    folder = tmp_path / "runs" / "r"
    assert code == 130
    assert err == (
        f"balgrad: interrupted; saved in {folder}: balgrad seed 0 checkpoint of epoch 2, "
        "joint seed 0 finished; rerun the same command with --resume to continue\n"
    )
    assert main([*argv, "--resume"]) == 0  # and the resume finishes the run


@pytest.mark.slow
def test_a_real_sigint_during_evaluation_exits_130_with_one_line(tmp_path):
    """SIGINT itself (not a raised KeyboardInterrupt), in a process of its own: the
    process sends it to itself when the test evaluation starts."""
    script = (
        "import os, signal, sys\n"
        # a shell starts a background job with SIGINT ignored, and Python keeps an ignored
        # SIGINT ignored: give the child the handler an interactive terminal would
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import balgrad.evaluate._protocol as p\n"
        "from balgrad.cli import main\n"
        "def run(self, *a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    while True: pass\n"
        "p.Evaluator.run = run\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    src = str(Path(__file__).parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = _ctrl_c_argv(tmp_path, "--methods", "joint")
    proc = subprocess.run(
        [sys.executable, "-c", script, *argv], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 130, proc.stderr[-2000:]  # 128 + SIGINT, as a shell reports it
    lines = [line for line in proc.stderr.splitlines() if line.startswith("balgrad:")]
    folder = tmp_path / "runs" / "r"
    assert lines == [
        f"balgrad: interrupted; saved in {folder}: joint seed 0 checkpoint of epoch 1; "
        "rerun the same command with --resume to continue"
    ], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_a_gpu_index_beyond_the_machines_gpus_lists_the_ones_there(monkeypatch):
    from balgrad.errors import ConfigError
    from balgrad.train._distributed import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for ok in ("auto", "cpu", "cuda", "cuda:0", "cuda:1"):
        check_device(ok)
    with pytest.raises(ConfigError, match=r"'cuda:2'.*available: auto, cpu, cuda, cuda:0, cuda:1"):
        check_device("cuda:2")
