import pytest
import yaml

from balgrad.cli import build_parser, config_from_args
from balgrad.config import RunConfig
from balgrad.errors import ConfigError


def parse(*argv):
    return config_from_args(build_parser().parse_args(["compare", *argv]))


def test_yaml_and_flags_give_the_same_config(tmp_path):
    values = {
        "dataset": "fashion",
        "epochs": 3,
        "lr": 0.01,
        "methods": ["joint", "balgrad"],
        "seeds": [1, 2, 3],
        "fusion": "attention",
        "sweep": False,
        "dataset_options": {"n_train": 500, "text_signal": 0.6},
        "method_options": {"balgrad": {"kl_weight": 0.5, "project": False}},
        "backbone_options": {"image": {"width": 8}},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(values))
    from_yaml = parse("--config", str(path))
    from_flags = parse(
        "--dataset",
        "fashion",
        "--epochs",
        "3",
        "--lr",
        "0.01",
        "--methods",
        "joint",
        "balgrad",
        "--seeds",
        "1",
        "2",
        "3",
        "--fusion",
        "attention",
        "--no-sweep",
        "--dataset-option",
        "n_train=500",
        "--dataset-option",
        "text_signal=0.6",
        "--method-option",
        "balgrad.kl_weight=0.5",
        "--method-option",
        "balgrad.project=false",
        "--backbone-option",
        "image.width=8",
    )
    assert from_yaml == from_flags == RunConfig(**values)


def test_flags_override_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("epochs: 3\nlr: 0.01\n")
    cfg = parse("--config", str(path), "--epochs", "5")
    assert (cfg.epochs, cfg.lr) == (5, 0.01)


def test_every_config_field_has_a_flag():
    help_text = build_parser()._subparsers._group_actions[0].choices["compare"].format_help()
    flags = {
        "dataset_options": "--dataset-option",
        "method_options": "--method-option",
        "backbone_options": "--backbone-option",
    }
    for name in RunConfig.model_fields:
        assert flags.get(name, "--" + name.replace("_", "-")) in help_text, name


def test_a_misspelt_yaml_key_is_named(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("epochz: 3\n")
    with pytest.raises(ConfigError, match="epochz"):
        parse("--config", str(path))


def test_a_bad_value_names_its_field():
    with pytest.raises(ConfigError, match="epochs"):
        parse("--epochs", "0")
    with pytest.raises(ConfigError, match="lr"):
        parse("--lr", "-1")


def test_an_unknown_method_is_named():
    with pytest.raises(ConfigError, match="balgradd"):
        parse("--methods", "joint", "balgradd")


def test_a_malformed_option_flag_is_named():
    with pytest.raises(ConfigError, match="--method-option"):
        parse("--method-option", "kl_weight=0.5")


def test_a_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        parse("--config", str(tmp_path / "nope.yaml"))
