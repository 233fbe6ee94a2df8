"""Names cannot collide (issue 23, item 4 / measured item 6): a modality name is checked
once, where a dataset or a model declares it, against every key balgrad builds from it
(statistics, evaluation conditions and rows, parameter groups), and by one rule (ASCII
identifiers), so that ``task`` never becomes the task loss and a unicode name never
fails only after training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from balgrad.data._catalog import DATASETS
from balgrad.errors import ConfigError
from balgrad.evaluate._protocol import ProtocolConfig, condition_modalities, summarize
from balgrad.models._multimodal import MultimodalModel
from balgrad.names import (
    check_modality_names,
    condition_name,
    name_clashes,
    parse_condition,
    reserved_names,
    stat_name,
)
from balgrad.strategies import create_strategy
from balgrad.strategies._base import model_modalities

#: a name on its own, or two names together, that would build a key twice
CLASHING = {
    "task": (("audio", "task"), "loss_task"),  # the task loss
    "avg": (("audio", "avg"), "missing_avg"),  # Table 1's Avg row
    "gap": (("gap", "audio"), "missing_gap"),
    "head": (("audio", "head"), "head"),  # a parameter group
    "unimodal_heads": (("unimodal_heads", "audio"), "unimodal_heads"),
    "lr_factor": (("audio", "factor_audio"), "lr_factor_audio"),  # MSLR's lr of factor_audio
    "negative_transfer": (("a", "a_negative_transfer"), "missing_a_negative_transfer"),
    "labels": (("audio", "labels"), "labels"),  # a batch dict's labels (integrations)
    "drop_": (("audio", "drop_audio"), "drop_audio"),  # and its drop mask of audio
}


def _never_loaded(split, *, seed=0, data_dir=None):
    raise AssertionError("never loaded")


@pytest.mark.parametrize(("names", "key"), list(CLASHING.values()), ids=list(CLASHING))
def test_a_clashing_modality_name_is_refused_at_dataset_registration(names, key):
    with pytest.raises(ConfigError) as err:
        DATASETS.register(
            "names_clash_test",
            _never_loaded,
            kind="builtin",
            modalities={m: "features" for m in names},
        )
    message = str(err.value)
    assert "names_clash_test" in message and repr(key) in message
    assert all(repr(m) in message for m in names)
    with pytest.raises(ConfigError):
        DATASETS.get("names_clash_test")  # nothing was registered


@pytest.mark.parametrize(("names", "key"), list(CLASHING.values()), ids=list(CLASHING))
def test_a_clashing_modality_name_is_refused_by_a_model_and_a_strategy(names, key):
    with pytest.raises(ConfigError, match=key):
        MultimodalModel({m: _Tower() for m in names}, num_classes=3)

    class Plain:  # a user's own model: the strategy checks its names
        modalities = names
        task = "single_label"

    with pytest.raises(ConfigError, match=key):
        model_modalities(Plain())


def test_task_can_no_longer_replace_the_task_loss():
    """Before, a modality ``task`` made joint training return one ``loss_task``: the
    unimodal loss, written over the task loss in metrics.jsonl."""
    with pytest.raises(ConfigError, match="'task'"):
        create_strategy("joint").backward(_Plain(("audio", "task")), None, torch.zeros(2))


@pytest.mark.parametrize("name", ["vídeo", "ﬁle", "áudio", "2d", "a-b", "a b", ""])
def test_one_rule_refuses_non_ascii_and_non_identifier_names_at_registration(name):
    """Unicode names passed ``str.isidentifier`` at registration and failed in the
    protocol after every method trained; now the same rule refuses them first."""
    with pytest.raises(ConfigError, match="not a valid modality name") as err:
        DATASETS.register(
            "names_unicode_test",
            _never_loaded,
            kind="builtin",
            modalities={"audio": "audio", name: "video"},
        )
    assert repr(name) in str(err.value) and "ASCII" in str(err.value)
    with pytest.raises(ConfigError, match="not a valid modality name"):
        MultimodalModel({"audio": _Tower(), name: _Tower()}, num_classes=3)
    with pytest.raises(ConfigError, match="protocol: .*not a valid modality name"):
        ProtocolConfig(modalities={"audio": "audio", name: "video"})


def test_the_reserved_names_derive_from_the_declared_schemas():
    assert {"task", "avg", "gap", "head", "unimodal_heads", "labels"} <= set(reserved_names())
    for name in reserved_names():
        assert name_clashes(("audio", name)), name
    # ordinary names, underscores included, are free
    assert name_clashes(("image", "text")) == []
    assert name_clashes(("audio_left", "audio_right", "visual", "text_tokens")) == []
    assert check_modality_names(("audio_left", "kl"), "x") == ("audio_left", "kl")


def test_names_with_underscores_build_and_parse_back():
    names = ("audio_left", "audio_right", "only_visual")
    for m in names:
        assert stat_name("loss", m) == f"loss_{m}"
        for action in ("missing", "noisy", "only"):
            assert parse_condition(condition_name(action, m)) == (action, m)
    assert parse_condition("missing_") is None and parse_condition("full") is None
    # the protocol's conditions and rows, built and read back through the same helpers
    protocol = ProtocolConfig(modalities={m: "features" for m in names})
    conditions = {
        role: {"accuracy": 50.0 + i} for i, role in enumerate(protocol.table_conditions())
    }
    assert condition_modalities(conditions) == list(names)
    rows = summarize(conditions, "accuracy")
    assert rows["missing_audio_left"] == conditions["missing_audio_left"]["accuracy"]
    assert rows["only_only_visual"] == conditions["only_only_visual"]["accuracy"]
    expect = [conditions[f"missing_{m}"]["accuracy"] for m in names]
    assert rows["missing_avg"] == pytest.approx(sum(expect) / 3)
    assert rows["missing_gap"] == pytest.approx(max(expect) - min(expect))


class _Tower(nn.Module):
    out_dim = 4

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 4)

    def forward(self, x):
        return self.linear(x)


class _Plain:
    task = "single_label"

    def __init__(self, names):
        self.modalities = names

    def parameter_groups(self):
        return {}


def test_model_selection_tells_a_modality_f1_from_the_fused_f1_macro():
    """The fused metrics were told from a tower's by the prefix ``val_<m>_``: with a
    modality ``f1`` the fused ``f1_macro`` looked like one of its scores, and the
    fallback metric for an undefined primary one was never found."""
    from balgrad.train._trainer import selection_metric

    row = {"val_accuracy": float("nan"), "val_f1_macro": 60.0}
    for m in ("f1", "audio"):
        row |= {f"val_{m}_accuracy": 50.0, f"val_{m}_f1_macro": 40.0}
    assert selection_metric(row, "accuracy", ("f1", "audio")) == "f1_macro"
