"""Strategy, backbone and dataset options are typed and checked before anything trains
(issue 10, item 2), and the run settings are strict about integers and booleans."""

from __future__ import annotations

import re

import pytest

from balgrad.backbones import BACKBONES, register_backbone
from balgrad.backbones._base import ImageEncoder
from balgrad.cli import build_parser, config_from_args, main
from balgrad.config import RunConfig, build_config
from balgrad.errors import ConfigError
from balgrad.experiment import build_encoders, method_strategy
from balgrad.strategies import Joint, create_strategy, register_strategy
from balgrad.strategies._registry import STRATEGY_REGISTRY

TINY = ["--dataset-option", "n_train=60", "--dataset-option", "n_test=20", "--epochs", "1"]


def parse(*argv):
    return config_from_args(build_parser().parse_args(["compare", *argv]))


def test_a_string_for_a_boolean_option_in_yaml_is_an_error(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text('methods: [balgrad]\nmethod_options: {balgrad: {project: "false"}}\n')
    with pytest.raises(
        ConfigError,
        match=r"run.yaml.*method_options.*strategy 'balgrad': option 'project' expects bool, "
        r"got 'false' \(str\)",
    ):
        parse("--config", str(path))


def test_a_non_boolean_flag_value_is_an_error():
    with pytest.raises(ConfigError, match=r"option 'project' expects bool, got 'maybe'"):
        parse("--methods", "balgrad", "--method-option", "balgrad.project=maybe")
    # the YAML spellings of a boolean still work
    assert parse("--methods", "balgrad", "--method-option", "balgrad.project=no").method_options


def test_a_non_number_is_named_without_a_traceback(capsys):
    argv = ["compare", "--methods", "balgrad", "--method-option", "balgrad.kl_weight=abc"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "option 'kl_weight' expects float >= 0, finite, got 'abc' (str)" in err
    assert "Traceback" not in err


def test_a_strategy_created_in_python_checks_types_too():
    with pytest.raises(ConfigError, match="option 'project' expects bool"):
        create_strategy("balgrad", project="false")
    with pytest.raises(ConfigError, match="option 'window' expects int >= 1, got 2.5"):
        create_strategy("mslr", window=2.5)


def test_options_for_a_method_that_does_not_run_are_an_error():
    with pytest.raises(ConfigError, match=r"options for 'foo', which is not in methods"):
        parse("--methods", "joint", "balgrad", "--method-option", "foo.x=1")


def test_an_unknown_tower_is_an_error():
    with pytest.raises(
        ConfigError,
        match=r"modalities.*unknown modality 'imgae'; dataset 'digits' has the "
        r"modalities image:image text:text",
    ):
        parse("--backbone-option", "imgae.width=8")


def test_backbone_and_dataset_options_are_checked_against_their_registries():
    with pytest.raises(ConfigError, match=r"image backbone 'cnn': unknown option 'widht'"):
        parse("--image-backbone", "cnn", "--backbone-option", "image.widht=8")
    with pytest.raises(ConfigError, match=r"image backbone 'cnn': option 'width' expects int"):
        parse("--image-backbone", "cnn", "--backbone-option", "image.width=wide")
    with pytest.raises(ConfigError, match=r"dataset 'digits': option 'n_train' expects int"):
        parse("--dataset-option", "n_train=many")
    with pytest.raises(ConfigError, match=r"dataset 'fashion': unknown option 'dominant'"):
        parse("--dataset", "fashion", "--dataset-option", "dominant=image")


def test_a_typo_in_the_second_method_stops_the_run_before_the_first_trains(tmp_path, capsys):
    argv = ["compare", "--methods", "joint", "balgrad", "--method-option", "balgrad.kl_weigth=1"]
    argv += [*TINY, "--out", str(tmp_path), "--name", "run", "--no-progress", "--no-sweep"]
    assert main(argv) == 2
    assert "unknown option 'kl_weigth' (did you mean 'kl_weight'?)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing trained, not even a config written


def test_a_bad_value_checked_by_the_strategy_itself_is_reported_up_front():
    with pytest.raises(
        ConfigError, match=r"method_options.*strategy 'agm': modulation_end: must be >= mod"
    ):
        options = {"modulation_start": 5, "modulation_end": 2}  # each in range, not together
        build_config({"methods": ["joint", "agm"], "method_options": {"agm": options}})


@pytest.mark.parametrize(
    "values,field,expected",
    [
        ({"epochs": True}, "epochs", "expected int, got True"),
        ({"epochs": 2.0}, "epochs", "expected int, got 2.0"),
        ({"sweep": "no"}, "sweep", "expected bool, got 'no'"),
        ({"progress": 1}, "progress", "expected bool, got 1"),
        ({"seeds": [0, True]}, "seeds", "expected list[int]"),
        ({"lr": True}, "lr", "expected float, got True"),
    ],
)
def test_run_settings_are_strict_about_integers_and_booleans(values, field, expected):
    with pytest.raises(ConfigError, match=rf"run.yaml: field '{field}': {re.escape(expected)}"):
        build_config(values, "run.yaml")


def test_flags_still_convert_to_the_field_types():
    cfg = parse("--epochs", "3", "--no-sweep", "--lr", "0.01", "--seeds", "1", "2")
    assert (cfg.epochs, cfg.sweep, cfg.lr, cfg.seeds) == (3, False, 0.01, [1, 2])
    assert build_config({"lr": "1e-3"}).lr == 0.001  # YAML 1.1 reads 1e-3 as a string


def test_train_keeps_the_file_options_of_its_one_method(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "methods: [joint, agm, balgrad]\n"
        "method_options: {agm: {alpha: 2.0}, balgrad: {kl_weight: 0.5}}\n"
    )
    args = build_parser().parse_args(["train", "--method", "balgrad", "--config", str(path)])
    cfg = config_from_args(args, {"methods": ["balgrad"]})
    assert cfg.methods == ["balgrad"] and cfg.method_options == {"balgrad": {"kl_weight": 0.5}}
    path.write_text("method_options: {agm: {alpha: 2.0}}\n")  # the default run has agm
    assert config_from_args(args, {"methods": ["balgrad"]}).method_options == {}
    path.write_text("methods: [joint]\nmethod_options: {agm: {alpha: 2.0}}\n")
    with pytest.raises(ConfigError, match="options for 'agm', which is not in methods"):
        config_from_args(args, {"methods": ["balgrad"]})


# -- registration metadata drives the experiment ----------------------------------------------
class _FixedEncoder(ImageEncoder):
    out_dim, identity = 4, "fixed"

    def preprocess(self, image):
        return image.mean(0, keepdim=True)

    def forward(self, pixels):
        return pixels.flatten(1)[:, :4]


def test_a_pretrained_backbone_without_finetune_gets_no_finetune_option():
    def build(*, scale: float = 1.0) -> ImageEncoder:
        return _FixedEncoder()

    register_backbone("image", "fixed_test", build, "no finetune parameter", pretrained=True)
    try:
        cfg = RunConfig(
            modalities={"image": {"backbone": "fixed_test"}}, finetune=True, methods=["joint"]
        )
        img = build_encoders(cfg, ["a b", "c d"])["image"]
        assert isinstance(img, _FixedEncoder)
    finally:
        BACKBONES["image"].unregister("fixed_test")


def test_a_pretrained_backbone_with_finetune_gets_the_run_setting_and_a_scratch_one_not():
    mods = {"image": {"backbone": "cnn"}, "text": {"backbone": "small"}}
    cfg = RunConfig(modalities=mods, methods=["joint"])
    img, txt = build_encoders(cfg, ["a b", "c d"]).values()
    assert img.trainable and txt.trainable  # cnn and small train from scratch regardless
    assert BACKBONES["image"].metadata("efficientnet-lite0")["pretrained"]


def test_run_seed_metadata_gives_a_strategy_the_run_seed():
    @register_strategy("seeded_test", run_seed=True)
    class Seeded(Joint):
        def __init__(self, *, seed: int = 0):
            super().__init__()
            self.seed = seed

    try:
        cfg = RunConfig(methods=["seeded_test", "joint"])
        assert method_strategy(cfg, "seeded_test", 7).seed == 7
        cfg = RunConfig(methods=["seeded_test"], method_options={"seeded_test": {"seed": 3}})
        assert method_strategy(cfg, "seeded_test", 7).seed == 3
        assert not hasattr(method_strategy(cfg, "joint", 7), "seed")
    finally:
        STRATEGY_REGISTRY.unregister("seeded_test")
