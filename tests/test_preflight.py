"""Everything that can be checked before training is (issue 23, item 5 / measured item
9): ``balgrad compare`` checks every requested method's support for the dataset's number
of modalities, the modality names against the methods' statistics, and the data's
sample rate against the backbones before the first step of the first method, so a run
that would fail after others trained fails first, writing no training output."""

from __future__ import annotations

import pytest
import torch

from balgrad.data._base import DatasetInfo, Example, MultimodalDataset
from balgrad.data._catalog import DATASETS
from balgrad.names import statistics
from balgrad.strategies._joint import Joint
from balgrad.strategies._registry import STRATEGY_REGISTRY
from test_bad_inputs import run_cli

SEVEN = "seven_modalities_test"
FEATURES = 3


class SevenModalities(MultimodalDataset):
    """Seven feature-sequence modalities m0..m6, two classes, a few samples."""

    def __init__(self, split: str, seed: int = 0, n: int = 12):
        gen = torch.Generator().manual_seed(seed * 2 + (split == "test"))
        self.split = split
        self.info = DatasetInfo(
            SEVEN, "single_label", ["a", "b"], modalities={f"m{i}": "features" for i in range(7)}
        )
        self.labels = [i % 2 for i in range(n)]
        self.x = torch.randn(n, 7, 4, FEATURES, generator=gen)

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, index: int) -> Example:
        inputs = {f"m{i}": {"features": self.x[index, i], "lengths": 4} for i in range(7)}
        return Example(inputs=inputs, label=torch.tensor(self.labels[index]), index=index)

    @property
    def fingerprint(self) -> str:
        return f"{SEVEN}:{self.split}:{len(self)}"


def _load(split, *, seed=0, data_dir=None, n: int = 12):
    return SevenModalities(split, seed, n)


@pytest.fixture
def seven():
    DATASETS.register(
        SEVEN,
        _load,
        kind="builtin",
        modalities={f"m{i}": "features" for i in range(7)},
        modality_backbones={f"m{i}": "gru" for i in range(7)},
    )
    yield
    DATASETS.unregister(SEVEN)


def _compare(tmp_path, *extra):
    return [
        "compare",
        "--dataset", SEVEN, "--out", str(tmp_path / "runs"), "--name", "r",
        "--cache-dir", str(tmp_path / "cache"), "--epochs", "1", "--seeds", "0",
        "--batch-size", "4", "--embed-dim", "4", "--no-progress",
        *(f"--backbone-option=m{i}.hidden=4" for i in range(7)),
        *extra,
    ]  # fmt: skip


def _trained(tmp_path) -> list[str]:
    run = tmp_path / "runs" / "r"
    names = ("metrics.jsonl", "epochs.jsonl", "checkpoint.pt", "eval.json", "model.safetensors")
    return [str(p) for n in names for p in run.rglob(n)]


def test_agm_on_seven_modalities_fails_before_joint_trains(seven, tmp_path, capsys):
    """AGM refused M > 6 at its first step, after joint training had trained and been
    evaluated; now before any method's first step."""
    code, _, err = run_cli(_compare(tmp_path, "--methods", "joint", "agm"), capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("balgrad: error: ")
    assert "'agm'" in lines[0] and "at most 6" in lines[0] and "has 7" in lines[0]
    assert _trained(tmp_path) == []  # nothing trained, evaluated or checkpointed


@pytest.fixture
def own_schemas(monkeypatch):
    """Schemas a test declares are dropped after it (they would reserve its names)."""
    from balgrad import names

    monkeypatch.setattr(names, "_SCHEMAS", dict(names._SCHEMAS))
    yield
    names._clashes.cache_clear()


def test_a_plugin_statistic_that_clashes_with_a_modality_fails_before_training(
    seven, tmp_path, capsys, own_schemas
):
    """A plug-in strategy whose global statistic ``gain_m3`` is what its own per-modality
    ``gain`` builds for the dataset's modality ``m3``: refused before the first step."""

    class Gain(Joint):
        name = "gain_test"
        statistics = statistics("gain_test", ["loss_task", "gain_m3"], ["loss", "score", "gain"])

    STRATEGY_REGISTRY.register("gain_test", Gain)
    try:
        code, _, err = run_cli(_compare(tmp_path, "--methods", "joint", "gain_test"), capsys)
    finally:
        STRATEGY_REGISTRY.unregister("gain_test")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "'gain_m3'" in lines[0] and "'m3'" in lines[0]
    assert _trained(tmp_path) == []
