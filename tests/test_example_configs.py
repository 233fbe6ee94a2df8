"""The example configs validate (names, values, strategy options, backbone options)."""

from pathlib import Path

import pytest

from balgrad.backbones._factory import BACKBONES
from balgrad.config import build_config, load_yaml, modality_plan
from balgrad.strategies import create_strategy

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_config_is_valid(path):
    cfg = build_config(load_yaml(path), str(path))  # checks every registry option up front
    for method in cfg.methods:
        create_strategy(method, **cfg.method_options.get(method, {}))
    for plan in modality_plan(cfg).values():
        BACKBONES[plan.kind].validate(plan.backbone, plan.backbone_options)


def test_there_are_examples():
    assert len(EXAMPLES) >= 3
