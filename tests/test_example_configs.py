"""The example configs validate (names, values, strategy options, backbone options)."""

import warnings
from pathlib import Path

import pytest

from balgrad.backbones._factory import BACKBONES
from balgrad.config import build_config, load_yaml
from balgrad.strategies import create_strategy

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_config_is_valid(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # no 0.1 spelling in an example
        values = load_yaml(path)
    cfg = build_config(values, str(path))  # checks every registry option up front
    for method in cfg.methods:
        create_strategy(method, **cfg.method_options.get(method, {}))
    for spec in cfg.specs.values():
        BACKBONES[spec.kind].validate(spec.backbone, spec.backbone_options)


def test_there_are_examples():
    assert len(EXAMPLES) >= 3
