"""Nothing non-finite is ever scored (issue 23, item 4).

A condition whose impaired inputs or logits hold a NaN or an infinity is undefined: null
in eval.json, "n/a" in the tables (and so its Avg and ΔGap), with a warning naming the
condition. Weights with a NaN are refused when loaded, naming the tensor, and
``balgrad evaluate`` never replaces a good eval.json's numbers with undefined ones.
"""

import dataclasses
import json
import logging
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from balgrad.cli import main
from balgrad.data import _kinds as kinds
from balgrad.evaluate._protocol import Evaluator, ProtocolConfig, summarize

KEYPAD = [
    "--dataset", "keypad", "--image-backbone", "cnn", "--text-backbone", "small",
    "--dataset-option", "n_train=60", "--dataset-option", "n_test=20", "--epochs", "1",
    "--batch-size", "32", "--no-progress", "--backbone-option", "image.width=4",
    "--embed-dim", "16", "--methods", "joint", "--no-sweep",
]  # fmt: skip


def nan_audio(monkeypatch):
    """Audio noise that makes every noisy clip NaN (as -1000 dB did before its level was
    bounded): a condition whose inputs are not finite at an accepted level."""
    kind = kinds.KINDS["audio"]
    monkeypatch.setitem(
        kinds.KINDS,
        "audio",
        dataclasses.replace(kind, noise=lambda x, *args, **kw: torch.full_like(x, math.nan)),
    )


@pytest.fixture(scope="module")
def keypad_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    argv = [*KEYPAD, "--out", str(out), "--name", "good", "--cache-dir", str(out / "cache")]
    assert main(["compare", *argv]) == 0
    return out / "good"


def test_a_nan_condition_is_null_and_na_with_a_warning(tmp_path, monkeypatch, caplog):
    nan_audio(monkeypatch)
    argv = [*KEYPAD, "--out", str(tmp_path), "--name", "run", "--cache-dir", str(tmp_path / "c")]
    with caplog.at_level(logging.WARNING):
        assert main(["compare", *argv]) == 0
    run = tmp_path / "run"
    ev = json.loads((run / "joint" / "seed0" / "eval.json").read_text())
    assert ev["conditions"]["noisy_audio"]["accuracy"] is None
    # the other conditions are numbers, the full one among them
    assert all(
        isinstance(s["accuracy"], float) for r, s in ev["conditions"].items() if r != "noisy_audio"
    )
    assert "condition noisy_audio@0" in caplog.text and "input audio" in caplog.text
    table = (run / "table.md").read_text()
    assert "| Noisy audio (SNR = 0 dB) | n/a |" in table
    assert "| Noisy Avg | n/a |" in table and "| Noisy ΔGap | n/a |" in table
    assert "| Missing Avg | n/a |" not in table
    assert (
        json.loads((run / "table.json").read_text())["table"]["joint"]["noisy_avg"]["mean"] is None
    )


class NaNForNoisy(torch.nn.Module):
    """A model whose logits are NaN for the samples of one noisy condition only."""

    task = "single_label"

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def forward(self, inputs, drop=None):
        x = inputs["image"]
        logits = torch.stack([x.flatten(1).mean(1), -x.flatten(1).mean(1)], 1) * self.w
        logits = torch.where(x.flatten(1).amax(1, keepdim=True) > 1.5, math.nan, logits)
        return type("Out", (), {"logits": logits, "unimodal": {}})()


def test_nonfinite_logits_make_the_condition_undefined(caplog):
    """Inputs finite, logits not: undefined too (and the summary's Avg/ΔGap with it)."""
    from balgrad.data._batch import Batch

    class Loader(list):
        pass

    def loader(dataset, condition, batch_size):
        image = torch.rand(4, 3, 2, 2)
        if condition is not None and condition.kind == "noisy_image":
            image = image + 2.0  # above the model's threshold: its logits are NaN
        return Loader(
            [Batch({"image": image, "text": torch.zeros(4, 3)}, torch.tensor([0, 1, 0, 1]),
                   torch.arange(4))]
        )  # fmt: skip

    pipeline = type("P", (), {"loader": staticmethod(loader)})()
    ev = Evaluator(
        pipeline, None, ["accuracy"], ProtocolConfig(modalities={"image": "image", "text": "text"})
    )
    with caplog.at_level(logging.WARNING, logger="balgrad.evaluate"):
        result = ev.run(NaNForNoisy(), sweep=False)
    conds = result["conditions"]
    assert math.isnan(conds["noisy_image"]["accuracy"])
    assert conds["full"]["accuracy"] == pytest.approx(50.0)
    assert "condition noisy_image@0.5" in caplog.text and "logits" in caplog.text
    assert "condition full" not in caplog.text
    table = summarize(conds, "accuracy")
    assert math.isnan(table["noisy_avg"]) and math.isnan(table["noisy_gap"])
    assert table["missing_avg"] == pytest.approx(50.0)


def test_evaluate_refuses_weights_with_a_nan_naming_the_tensor(keypad_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(keypad_run, run)
    weights = run / "joint" / "seed0" / "model.safetensors"
    state = load_file(str(weights))
    name = sorted(state)[0]
    state[name] = state[name].clone()
    state[name].view(-1)[0] = math.nan
    save_file(state, str(weights))
    good = (run / "joint" / "seed0" / "eval.json").read_bytes()
    capsys.readouterr()
    assert main(["evaluate", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("balgrad: error: ") and err.count("\n") == 1, err
    assert repr(name) in err and "NaN" in err and "model.safetensors" in err
    assert (run / "joint" / "seed0" / "eval.json").read_bytes() == good


def test_evaluate_keeps_a_good_eval_json_and_writes_undefined_scores_beside_it(
    keypad_run, tmp_path, monkeypatch, caplog
):
    run = tmp_path / "run"
    shutil.copytree(keypad_run, run)
    seed = run / "joint" / "seed0"
    good = (seed / "eval.json").read_bytes()
    assert json.loads(good)["conditions"]["noisy_audio"]["accuracy"] is not None
    nan_audio(monkeypatch)
    argv = ["evaluate", str(run), "--no-progress", "--no-sweep", "--eval-seed", "1"]
    with caplog.at_level(logging.WARNING):  # another seed: the frozen audio tower's
        assert main(argv) == 0  # features of the noisy clips are not in the cache

    assert (seed / "eval.json").read_bytes() == good
    beside = json.loads((seed / "eval.undefined.json").read_text())
    assert beside["conditions"]["noisy_audio"]["accuracy"] is None
    assert "eval.json is kept" in caplog.text and "eval.undefined.json" in caplog.text
    assert "noisy_audio (accuracy)" in caplog.text


def test_an_infinite_noisy_input_reaches_the_towers_as_nan():
    """An SNR inside its range can still overflow float32 on a loud enough clip; such an
    input is NaN throughout, so a tower that clamps (inf -> its bound) cannot make a
    number of it, and the condition is undefined. A finite noisy input is untouched."""
    from balgrad.data._base import DatasetInfo, Example, MultimodalDataset
    from balgrad.data._conditioned_view import ConditionedView
    from balgrad.data._impairments import Condition

    class Loud(MultimodalDataset):
        info = DatasetInfo(
            "loud", "single_label", ["a", "b"], modalities={"audio": "audio", "v": "video"}
        )
        split = "test"

        def __len__(self):
            return 2

        def get(self, i):
            wave = torch.full((64,), 3e38 if i == 0 else 0.5)
            inputs = {"audio": wave, "v": torch.zeros(3, 1, 2, 2)}
            return Example(inputs=inputs, label=torch.tensor(i), index=i)

    view = ConditionedView(
        Loud(), Condition("noisy_audio", level=-60.0), encoders={"audio": None, "v": None},
        embedding_mode=False,
    )  # fmt: skip
    loud, quiet = view[0]["inputs"]["audio"], view[1]["inputs"]["audio"]
    assert torch.isnan(loud).all()
    expected = kinds.noisy_audio(torch.full((64,), 0.5), -60.0, 0, 1, kinds.noise_salt("audio"))
    assert torch.equal(quiet, expected)
