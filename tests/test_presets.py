"""Packaged presets (`--config NAME` reads a YAML shipped inside the package) and the
default towers."""

import sys
import warnings

import pytest

from balgrad.cli import build_parser, config_from_args, main
from balgrad.config import RunConfig, load_yaml
from balgrad.errors import ConfigError
from balgrad.presets import list_presets, preset_path, preset_summary


def parse(*argv):
    return config_from_args(build_parser().parse_args(["compare", *argv]))


def test_digits_scratch_is_the_old_default_with_towers_from_scratch():
    assert "digits-scratch" in list_presets()
    cfg = parse("--config", "digits-scratch")
    backbones = {m: spec.backbone for m, spec in cfg.specs.items()}
    assert (cfg.dataset, backbones) == ("digits", {"image": "cnn", "text": "small"})
    assert cfg.dataset_options == {"dominant": "text", "strength": 0.7}
    assert cfg.missing == "input"
    assert "complete dominance" in preset_summary("digits-scratch")


def test_flags_override_a_preset_and_a_file_wins_over_a_preset_name(tmp_path, monkeypatch):
    assert parse("--config", "digits-scratch", "--epochs", "2").epochs == 2
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits-scratch").write_text("epochs: 3\n")
    assert parse("--config", "digits-scratch").epochs == 3


def test_every_preset_is_a_valid_config():
    for name in list_presets():
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)  # no 0.1 spelling in a preset
            RunConfig(**load_yaml(name))
        assert preset_path(name + ".yaml") == preset_path(name)


def test_an_unknown_name_lists_the_presets(tmp_path):
    with pytest.raises(ConfigError, match="digits-scratch") as err:
        parse("--config", str(tmp_path / "nothing-here"))
    assert "nothing-here" in str(err.value)
    assert preset_path("../digits-scratch") is None


def test_the_default_command_names_a_missing_encoder_package(tmp_path, monkeypatch, capsys):
    # the digits registration's default towers, and the kinds' default noise levels
    specs = RunConfig().specs
    assert {m: (s.backbone, s.noise) for m, s in specs.items()} == {
        "image": ("efficientnet-lite0", 0.5),
        "text": ("minilm", 0.5),
    }
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)  # import now fails
    argv = ["compare", "--dataset-option", "n_train=60", "--dataset-option", "n_test=20"]
    argv += ["--out", str(tmp_path), "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "efficientnet-lite-pytorch" in err and "pip install" in err
