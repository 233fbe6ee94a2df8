"""The example configs validate (names, values, strategy options, backbone options)."""

from pathlib import Path

import pytest

from balgrad.backbones.factory import _IMAGE, _TEXT, _options_of
from balgrad.config import build_config, load_yaml
from balgrad.strategies import create_strategy

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


def backbone_options_ok(name: str, table: dict, options: dict) -> None:
    key = name.split(":")[0] + ":" if ":" in name else name
    allowed = _options_of(table[key].builder, skip_first=key.endswith(":"))
    assert allowed is None or set(options) <= set(allowed), (name, options)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_config_is_valid(path):
    cfg = build_config(load_yaml(path), str(path))
    for method in cfg.methods:
        create_strategy(method, **cfg.method_options.get(method, {}))
    backbone_options_ok(cfg.image_backbone, _IMAGE, cfg.backbone_options.get("image", {}))
    backbone_options_ok(cfg.text_backbone, _TEXT, cfg.backbone_options.get("text", {}))


def test_there_are_examples():
    assert len(EXAMPLES) >= 3
