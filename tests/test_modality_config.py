"""Named modalities in the run settings (issues 16 and 24): the ``modalities`` section,
its flags, the 0.1 image/text spellings read at the edge only (``balgrad.config_upgrade``),
and the one resolution the run reads (``RunConfig.specs``)."""

from __future__ import annotations

import warnings

import pytest
import yaml

from balgrad.backbones._factory import BACKBONES
from balgrad.cli import build_parser, config_from_args, evaluate_overrides, main
from balgrad.config import (
    ModalitySpec,
    RunConfig,
    build_config,
    dump_yaml,
    load_run_config,
    load_yaml,
    resume_differences,
)
from balgrad.data._catalog import DATASETS
from balgrad.data._kinds import KINDS
from balgrad.data.readers._builtin import SMALL_IMAGE_BACKBONE_DEFAULTS
from balgrad.errors import BackboneError, ConfigError
from balgrad.registry import Registry

TRI = "tri_modal_cfg_test"  # image:image text:features audio:audio
AV = "av_cfg_test"  # audio:audio visual:video


def _never_loaded(split, *, seed=0, data_dir=None, n: int = 10):
    raise AssertionError("the config tests never load a dataset")


def _fake_registry(kind: str) -> Registry:
    def build(out_dim: int = 8, n_mels: int = 64, frames: int = 2):
        raise AssertionError("the config tests never build a backbone")

    reg = Registry(
        f"{kind} backbone",
        metadata={"description": "", "pretrained": False},
        normalize=str.lower,
        name_error=BackboneError,
    )
    reg.register(f"fake-{kind}", build, description=f"a fake {kind} backbone")
    reg.register(f"other-{kind}", build, description=f"another fake {kind} backbone")
    return reg


@pytest.fixture
def datasets(monkeypatch):
    """Two datasets of other modalities than (image, text), and fake audio/video/features
    backbone registries; all removed afterwards."""
    for kind in ("audio", "video", "features"):
        monkeypatch.setitem(BACKBONES, kind, _fake_registry(kind))
    DATASETS.register(
        TRI,
        _never_loaded,
        kind="builtin",
        description="three modalities",
        modalities={"image": "image", "text": "features", "audio": "audio"},
        modality_backbones={"audio": "fake-audio"},
        kind_backbones={"image": "cnn"},
    )
    DATASETS.register(
        AV,
        _never_loaded,
        kind="builtin",
        description="audio-visual",
        modalities={"audio": "audio", "visual": "video"},
        modality_backbones={"audio": "fake-audio", "visual": "fake-video"},
    )
    yield
    DATASETS.unregister(TRI)
    DATASETS.unregister(AV)


def parse(*argv):
    return config_from_args(build_parser().parse_args(["compare", *argv]))


def specs_of(**values) -> dict[str, ModalitySpec]:
    return build_config(values).specs


def spec(name, kind, backbone, options, noise) -> ModalitySpec:
    return ModalitySpec(
        name=name, kind=kind, backbone=backbone, backbone_options=options, noise=noise
    )


def tri(**values) -> dict[str, ModalitySpec]:
    """The specs of the three-modality dataset, with the features backbone given."""
    mods = values.pop("modalities", {})
    mods.setdefault("text", {}).setdefault("backbone", "fake-features")
    return specs_of(dataset=TRI, modalities=mods, **values)


#: the digits registration's options for cnn and small (applied under the user's)
CNN, SMALL = SMALL_IMAGE_BACKBONE_DEFAULTS["cnn"], SMALL_IMAGE_BACKBONE_DEFAULTS["small"]


# -- resolution -----------------------------------------------------------------------
def test_the_default_run_resolves_to_the_datasets_registration():
    cfg = RunConfig()
    assert cfg.modalities == {}
    # digits registers the default benchmark's towers (and its image size); the noise
    # levels are the kinds' defaults: what balgrad 0.1's flat fields defaulted to
    assert cfg.specs == {
        "image": spec("image", "image", "efficientnet-lite0", {"image_size": 112}, 0.5),
        "text": spec("text", "text", "minilm", {}, 0.5),
    }
    assert (KINDS["image"].default_noise, KINDS["text"].default_noise) == (0.5, 0.5)


def test_nothing_resolves_the_specs_again():
    cfg = RunConfig(methods=["joint"])
    first = cfg.specs["image"]
    cfg.epochs = 3  # another field assigned: validated again, the same specs
    assert cfg.specs["image"] == first
    copied = cfg.model_copy(update={"precision": "fp32"})
    assert copied.specs == cfg.specs


def test_a_setting_wins_and_options_merge_over_the_datasets():
    specs = specs_of(
        modalities={
            "image": {"backbone": "cnn", "noise": 0.3, "backbone_options": {"width": 8}},
            "text": {"backbone": "small", "noise": 0.2, "backbone_options": {"max_length": 16}},
        }
    )
    assert specs["image"] == spec("image", "image", "cnn", {**CNN, "width": 8}, 0.3)
    assert specs["text"] == spec("text", "text", "small", {**SMALL, "max_length": 16}, 0.2)


def test_three_modalities_resolve_in_the_dataset_order(datasets):
    specs = tri(modalities={"audio": {"backbone_options": {"n_mels": 32}}})
    assert list(specs) == ["image", "text", "audio"]
    assert specs["image"] == spec("image", "image", "cnn", {}, 0.5)  # its kind_backbones
    # text is of kind features here: the kind, not the name, decides its default noise
    assert specs["text"] == spec(
        "text", "features", "fake-features", {}, KINDS["features"].default_noise
    )
    # the registration's default backbone, the kind's default noise
    assert specs["audio"] == spec(
        "audio", "audio", "fake-audio", {"n_mels": 32}, KINDS["audio"].default_noise
    )
    assert (KINDS["features"].default_noise, KINDS["audio"].default_noise) == (1.0, 0.0)


def test_a_given_backbone_replaces_the_registrations(datasets):
    specs = tri(modalities={"audio": {"backbone": "other-audio", "noise": 12}})
    assert (specs["audio"].backbone, specs["audio"].noise) == ("other-audio", 12.0)
    assert specs_of(dataset=AV)["visual"].backbone == "fake-video"


def test_a_modality_without_a_backbone_names_the_flag(datasets):
    with pytest.raises(
        ConfigError,
        match=rf"dataset '{TRI}': no backbone for its modality 'text' \(kind features\); "
        r"pass --backbone text=NAME .*backbones of kind features: fake-features, other-features",
    ):
        specs_of(dataset=TRI)


def test_a_kind_without_registered_backbones_is_named(datasets, monkeypatch):
    monkeypatch.delitem(BACKBONES, "features")
    with pytest.raises(
        ConfigError,
        match=r"modalities.text.backbone.*no backbones are registered for kind features",
    ):
        tri()


def test_a_dataset_must_declare_its_modalities():
    with pytest.raises(ConfigError, match=r"dataset 'no_modalities_test': declare its modalities"):
        DATASETS.register("no_modalities_test", _never_loaded, kind="builtin")
    assert "no_modalities_test" not in DATASETS


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        (
            "--text-backbone",
            "small",
            r"modalities.text.kind': dataset '.*' declares 'text' of kind features, not 'text'",
        ),
        ("--text-noise", "0.2", r"modalities.text.kind'.*of kind features"),
        ("--image-backbone", "cnn", None),
    ],
)
def test_a_shorthand_flag_sets_the_modality_of_its_name_and_kind(datasets, flag, value, expected):
    argv = ["--dataset", TRI, "--backbone", "text=fake-features", flag, value]
    if expected is None:
        assert parse(*argv).specs["image"].backbone == "cnn"
        return
    with pytest.raises(ConfigError, match=expected):
        parse(*argv)


def test_image_shorthands_on_an_audio_visual_set(datasets):
    for argv in (["--image-backbone", "cnn"], ["--image-noise", "0.1"]):
        with pytest.raises(
            ConfigError,
            match=rf"unknown modality 'image'; dataset '{AV}' has the modalities "
            "audio:audio visual:video",
        ):
            parse("--dataset", AV, *argv)


def test_settings_for_a_modality_the_dataset_lacks_are_an_error(datasets):
    with pytest.raises(
        ConfigError,
        match=rf"field 'modalities': unknown modality 'vision'; dataset '{AV}' has the "
        r"modalities audio:audio visual:video",
    ):
        specs_of(dataset=AV, modalities={"vision": {}})
    with pytest.raises(ConfigError, match=r"unknown modality 'vision'"):
        parse("--dataset", AV, "--backbone-option", "vision.width=3")


def test_a_kind_other_than_the_datasets_is_an_error(datasets):
    with pytest.raises(
        ConfigError,
        match=rf"'modalities.visual.kind': dataset '{AV}' declares 'visual' of kind video, not 'image'",
    ):
        specs_of(dataset=AV, modalities={"visual": {"kind": "image"}})
    assert specs_of(dataset=AV, modalities={"visual": {"kind": "video"}})["visual"].kind == "video"


@pytest.mark.parametrize(
    ("modality", "noise", "expected"),
    [
        ("audio", float("inf"), r"'modalities.audio.noise': the SNR in dB must be a finite number"),
        (
            "image",
            -1,
            r"'modalities.image.noise': σ \(pixel-noise std\) must be a finite number in \[0, 10\]",
        ),
        (
            "visual",
            -0.5,
            r"'modalities.visual.noise': σ \(frame-noise std\) must be a finite number in \[0, 100\]",
        ),
        ("text", 1.5, r"'modalities.text.noise': p .* must be a finite number in \[0, 1\]"),
        ("text", True, r"modalities.text.noise.*expected a number, got True"),
        ("audio", "loud", r"modalities.audio.noise.*expected a number .*got 'loud'"),
    ],
)
def test_noise_is_checked_by_its_kind(datasets, modality, noise, expected):
    dataset = AV if modality in ("audio", "visual") else "digits"
    with pytest.raises(ConfigError, match=expected):
        specs_of(dataset=dataset, modalities={modality: {"noise": noise}})


def test_decibels_are_for_audio_only(datasets):
    for spelt in ("10db", "10dB", " 10 DB", "-3.5dB"):
        assert specs_of(dataset=AV, modalities={"audio": {"noise": spelt}})["audio"].noise == float(
            spelt.lower().replace("db", "")
        )
    with pytest.raises(
        ConfigError, match=r"'modalities.visual.noise'.*'10db' is an SNR in dB.*kind video"
    ):
        specs_of(dataset=AV, modalities={"visual": {"noise": "10db"}})
    assert specs_of(dataset=AV, modalities={"visual": {"noise": "0.25"}})["visual"].noise == 0.25


def test_backbones_are_checked_against_their_kind(datasets):
    with pytest.raises(
        ConfigError,
        match=r"'modalities.audio.backbone': 'cnn' is a backbone of kind image, not audio",
    ):
        specs_of(dataset=AV, modalities={"audio": {"backbone": "cnn"}})
    with pytest.raises(ConfigError, match=r"'modalities.audio.backbone'.*'fake-audi'"):
        specs_of(dataset=AV, modalities={"audio": {"backbone": "fake-audi"}})
    with pytest.raises(
        ConfigError,
        match=r"field 'modalities.audio.backbone_options': audio backbone 'fake-audio': "
        r"unknown option 'n_melz'",
    ):
        specs_of(dataset=AV, modalities={"audio": {"backbone_options": {"n_melz": 1}}})
    with pytest.raises(
        ConfigError, match=r"field 'modalities.audio.backbone_options': audio backbone 'fake-audio'"
    ):
        parse("--dataset", AV, "--backbone-option", "audio.n_mels=many")
    with pytest.raises(
        ConfigError, match=r"field 'modalities.image.backbone_options': image backbone 'cnn'"
    ):
        parse("--image-backbone", "cnn", "--backbone-option", "image.widht=8")


def test_a_misspelt_setting_is_named():
    with pytest.raises(ConfigError, match=r"modalities.image.nosie"):
        specs_of(modalities={"image": {"nosie": 0.1}})


# -- flags and YAML -----------------------------------------------------------------------
def test_flags_and_yaml_give_the_same_config(datasets, tmp_path):
    section = {
        "audio": {"backbone": "other-audio", "noise": "10dB", "backbone_options": {"n_mels": 32}},
        "visual": {"noise": 0.25},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"dataset": AV, "modalities": section}))
    from_yaml = parse("--config", str(path))
    from_flags = parse(
        "--dataset", AV, "--backbone", "audio=other-audio", "--noise", "audio=10dB",
        "--noise", "visual=0.25", "--backbone-option",
        "audio.n_mels=32",
    )  # fmt: skip
    assert (
        from_yaml.specs
        == from_flags.specs
        == {
            "audio": spec("audio", "audio", "other-audio", {"n_mels": 32}, 10.0),
            "visual": spec("visual", "video", "fake-video", {}, 0.25),
        }
    )
    assert from_flags.modalities["audio"].backbone_options == {"n_mels": 32}


def test_flags_override_the_file_per_key(datasets, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "dataset": AV,
                "modalities": {
                    "audio": {
                        "backbone": "other-audio",
                        "noise": 5,
                        "backbone_options": {"n_mels": 16, "frames": 3},
                    }
                },
            }
        )
    )
    specs = parse(
        "--config", str(path), "--noise", "audio=10db", "--backbone-option", "audio.n_mels=32"
    ).specs
    assert specs["audio"] == spec(
        "audio", "audio", "other-audio", {"n_mels": 32, "frames": 3}, 10.0
    )


def test_a_shorthand_flag_overrides_the_files_section_and_the_general_flag_wins(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("modalities: {image: {backbone: cnn, noise: 0.1}}\n")
    image = parse("--config", str(path), "--image-noise", "0.3").specs["image"]
    assert (image.backbone, image.noise) == ("cnn", 0.3)
    image = parse("--config", str(path), "--image-backbone", "efficientnet-lite0").specs["image"]
    assert (image.backbone, image.noise) == ("efficientnet-lite0", 0.1)
    image = parse("--image-noise", "0.3", "--noise", "image=0.2").specs["image"]
    assert image.noise == 0.2


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--backbone", "audio"], r"--backbone: expected M=NAME, got 'audio'"),
        (["--backbone", "=cnn"], r"--backbone: expected M=NAME, got '=cnn'"),
        (["--noise", "image=loud"], r"--noise image=loud: expected a number"),
        (["--noise", "image="], r"--noise: expected M=LEVEL, got 'image='"),
        (["--noise", "image=10db"], r"modalities.image.noise' \(--noise image=LEVEL\).*SNR in dB"),
        (["--backbone", "vision=cnn"], r"unknown modality 'vision'; dataset 'digits'"),
    ],
)
def test_bad_modality_flags_are_named(argv, expected):
    with pytest.raises(ConfigError, match=expected):
        parse(*argv)


def test_a_bad_flag_exits_2_without_a_traceback(capsys):
    assert main(["compare", "--noise", "image=loud"]) == 2
    err = capsys.readouterr().err
    assert "--noise image=loud" in err and "Traceback" not in err


# -- run folders and the 0.1 spellings -------------------------------------------------------
#: balgrad 0.1's flat keys, as its config.yaml wrote them (every field, defaults included)
OLD_FLAT = {
    "image_backbone": "cnn",
    "text_backbone": "small",
    "backbone_options": {"image": {"width": 8}},
    "image_noise": 0.3,
    "text_noise": 0.5,
}


def old_config_yaml(tmp_path, values: dict, **flat):
    """A config.yaml as balgrad 0.1 wrote it: flat keys, no ``modalities``."""
    cfg = build_config(values)
    written = cfg.model_dump(mode="json")
    del written["modalities"]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**written, **flat}, sort_keys=False))
    return path


def test_an_old_config_yaml_is_upgraded_silently(tmp_path):
    new = build_config(
        {"modalities": {"image": {"backbone": "cnn", "noise": 0.3, "backbone_options": {"width": 8}},
                        "text": {"backbone": "small"}}}
    )  # fmt: skip
    path = old_config_yaml(tmp_path, {}, **OLD_FLAT)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # a run folder's own file: silent
        old = load_run_config(path)
    assert old.specs == new.specs
    assert resume_differences(old, new) == ([], [])
    # the same file given by a user (--config) warns, naming the new spelling
    with pytest.warns(
        DeprecationWarning, match=r"image_noise: 0.3 -> modalities: \{image: \{noise: 0.3\}\}"
    ):
        assert build_config(load_yaml(path)).specs == new.specs


def test_mslr_flat_options_of_0_1_become_lr_scales(tmp_path):
    """0.1's ``MSLR(image_lr_scale=...)`` options in a config.yaml: lr_scales, which wins."""
    flat = {"image_lr_scale": 2.0, "head_lr_scale": 0.5, "text_lr_scale": 3.0}
    path = old_config_yaml(
        tmp_path,
        {"methods": ["mslr"]},
        method_options={"mslr": {**flat, "lr_scales": {"text": 1.5}, "mode": "keep"}},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # a run folder's own file: silent
        old = load_run_config(path)
    assert old.method_options["mslr"] == {
        "mode": "keep",
        "lr_scales": {"image": 2.0, "head": 0.5, "text": 1.5},
    }
    with pytest.warns(DeprecationWarning, match=r"lr_scales: \{image: 2.0, text: 3.0, head: 0.5"):
        load_yaml(path)


def test_old_defaults_resolve_as_the_dataset_registers_them(datasets, tmp_path):
    """A 0.1 config.yaml of an audio-visual run holds the image/text defaults too: they
    never applied there, and do not now."""
    defaults = {"image_backbone": "efficientnet-lite0", "text_backbone": "minilm",
                "image_noise": 0.5, "text_noise": 0.5, "backbone_options": {}}  # fmt: skip
    path = old_config_yaml(tmp_path, {"dataset": AV}, **defaults)
    assert load_run_config(path).specs == build_config({"dataset": AV}).specs


def test_python_refuses_flat_keys():
    with pytest.raises(
        ConfigError, match=r"text_backbone: 'small' -> modalities: \{text: \{backbone"
    ):
        build_config({"text_backbone": "small"})


def test_a_written_config_records_the_resolved_specs(datasets, tmp_path):
    cfg = build_config(
        {"dataset": AV, "modalities": {"audio": {"noise": "6dB", "backbone": "other-audio"}}}
    )
    dump_yaml(cfg, tmp_path / "config.yaml")
    written = yaml.safe_load((tmp_path / "config.yaml").read_text())["modalities"]
    assert written == {
        "audio": {"kind": "audio", "backbone": "other-audio", "backbone_options": {}, "noise": 6.0},
        "visual": {"kind": "video", "backbone": "fake-video", "backbone_options": {}, "noise": 1.0},
    }
    again = load_run_config(tmp_path / "config.yaml")
    assert again.specs == cfg.specs and again.specs["audio"].noise == 6.0
    assert resume_differences(again, cfg) == ([], [])


def test_a_resume_compares_what_the_settings_resolve_to(datasets):
    short = parse("--image-backbone", "cnn", "--image-noise", "0.3")
    section = build_config({"modalities": {"image": {"backbone": "cnn", "noise": 0.3}}})
    assert resume_differences(short, section) == ([], [])
    refused, _ = resume_differences(short, parse("--image-backbone", "cnn", "--image-noise", "0.4"))
    assert refused == ["modalities.image.noise: 0.3 → 0.4"]
    refused, _ = resume_differences(
        build_config({"dataset": AV}),
        build_config({"dataset": AV, "modalities": {"audio": {"backbone": "other-audio"}}}),
    )
    assert refused == ["modalities.audio.backbone: 'fake-audio' → 'other-audio'"]
    refused, _ = resume_differences(RunConfig(), parse("--backbone-option", "text.max_length=8"))
    assert refused == ["modalities.text.backbone_options: {} → {'max_length': 8}"]


def test_balgrad_list_shows_modalities_and_backbones_by_kind(datasets, capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert next(x for x in lines if x.startswith(f"  {AV}:")) == (
        f"  {AV}: built in; audio:audio=fake-audio visual:video=fake-video; audio-visual"
    )
    assert any(
        x.startswith(f"  {TRI}: built in; image:image text:features audio:audio=fake-audio;")
        for x in lines
    )
    assert any(x.startswith("  digits: built in; image:image text:text;") for x in lines)
    for kind in ("image", "text", "audio", "video", "features"):
        header = next(i for i, x in enumerate(lines) if x.startswith(f"{kind} backbones ("))
        assert "--backbone M=NAME" in lines[header]
        if kind in ("audio", "video", "features"):
            assert lines[header + 1].startswith(f"  fake-{kind}: a fake {kind} backbone")


def test_evaluate_changes_a_modalitys_noise(datasets):
    def rescored(cfg: RunConfig, *flags: str) -> dict[str, ModalitySpec]:
        values = cfg.model_dump()
        evaluate_overrides(values, build_parser().parse_args(["evaluate", "run", *flags]))
        return build_config(values).specs

    av = build_config({"dataset": AV, "modalities": {"audio": {"noise": 3}}})
    specs = rescored(av, "--noise", "audio=10db", "--noise", "visual=0.2")
    assert (specs["audio"].noise, specs["visual"].noise) == (10.0, 0.2)
    assert rescored(av)["audio"].noise == 3.0
    section = build_config({"modalities": {"image": {"noise": 0.1, "backbone": "cnn"}}})
    specs = rescored(section, "--image-noise", "0.3")  # replaces the run's modalities.image.noise
    assert (specs["image"].noise, specs["image"].backbone) == (0.3, "cnn")
    with pytest.raises(ConfigError, match=r"--noise: expected M=LEVEL, got 'audio'"):
        rescored(av, "--noise", "audio")


def test_balgrad_list_names_a_kind_without_backbones(datasets, monkeypatch, capsys):
    monkeypatch.delitem(BACKBONES, "video")
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert f"video backbones: none registered (needed by {AV};" in out
    assert "features backbones: none" not in out


def test_an_old_eval_json_is_read_in_the_current_schema():
    from balgrad.config_upgrade import upgrade_eval

    old = {"method": "joint", "protocol": {"missing_ratio": 1.0, "image_noise": 0.4,
           "text_noise": 0.3, "eval_seed": 0}, "conditions": {}}  # fmt: skip
    new = upgrade_eval(old)
    assert new["protocol"] == {
        "missing_ratio": 1.0,
        "modalities": {"image": "image", "text": "text"},
        "noise": {"image": 0.4, "text": 0.3},
        "eval_seed": 0,
    }
    assert old["protocol"]["image_noise"] == 0.4  # the record read is not changed
    assert upgrade_eval(new) == new  # the current schema passes as it is
