"""Named modalities in the run settings (issue 16, item 2): the ``modalities`` section,
its flags, the image/text fields as its aliases, and the one resolution the run reads
(``config.modality_plan``)."""

from __future__ import annotations

import pytest
import yaml

from balgrad.backbones._factory import BACKBONES
from balgrad.cli import build_parser, config_from_args, evaluate_overrides, main
from balgrad.config import (
    ModalityPlan,
    RunConfig,
    build_config,
    dump_yaml,
    load_run_config,
    modality_plan,
    resume_differences,
)
from balgrad.data._catalog import DATASETS
from balgrad.data._kinds import KINDS
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


def plan_of(**values) -> dict[str, ModalityPlan]:
    return modality_plan(build_config(values))


def tri(**values) -> dict[str, ModalityPlan]:
    """A plan of the three-modality dataset, with the features backbone given."""
    mods = values.pop("modalities", {})
    mods.setdefault("text", {}).setdefault("backbone", "fake-features")
    return plan_of(dataset=TRI, modalities=mods, **values)


# -- resolution -----------------------------------------------------------------------
def test_the_default_run_resolves_to_its_flat_fields():
    cfg = RunConfig()
    assert cfg.modalities == {}
    assert modality_plan(cfg) == {
        "image": ModalityPlan("image", "image", cfg.image_backbone, {}, cfg.image_noise),
        "text": ModalityPlan("text", "text", cfg.text_backbone, {}, cfg.text_noise),
    }
    assert (cfg.image_backbone, cfg.text_backbone, cfg.image_noise, cfg.text_noise) == (
        "efficientnet-lite0", "minilm", 0.5, 0.5,
    )  # fmt: skip


def test_flat_fields_and_the_modalities_section_give_the_same_plan():
    flat = plan_of(
        image_backbone="cnn",
        text_backbone="small",
        image_noise=0.3,
        text_noise=0.2,
        backbone_options={"image": {"width": 8}, "text": {"max_length": 16}},
    )
    section = plan_of(
        modalities={
            "image": {"backbone": "cnn", "noise": 0.3, "backbone_options": {"width": 8}},
            "text": {"backbone": "small", "noise": 0.2, "backbone_options": {"max_length": 16}},
        }
    )
    assert flat == section
    assert flat["image"] == ModalityPlan("image", "image", "cnn", {"width": 8}, 0.3)
    assert flat["text"] == ModalityPlan("text", "text", "small", {"max_length": 16}, 0.2)


def test_the_section_wins_over_the_flat_fields_and_options_merge_under_it():
    plan = plan_of(
        image_backbone="efficientnet-lite0",
        image_noise=0.9,
        backbone_options={"image": {"width": 8, "channels": 1}},
        modalities={"image": {"backbone": "cnn", "noise": 0.1, "backbone_options": {"width": 4}}},
    )
    assert plan["image"] == ModalityPlan("image", "image", "cnn", {"width": 4, "channels": 1}, 0.1)
    assert plan["text"].backbone == "minilm"


def test_three_modalities_resolve_in_the_dataset_order(datasets):
    plan = tri(image_backbone="cnn", backbone_options={"audio": {"n_mels": 32}})
    assert list(plan) == ["image", "text", "audio"]
    assert plan["image"] == ModalityPlan("image", "image", "cnn", {}, 0.5)
    # text is of kind features here: text_backbone / text_noise (defaults) do not apply
    assert plan["text"] == ModalityPlan(
        "text", "features", "fake-features", {}, KINDS["features"].default_noise
    )
    # the registration's default backbone, the kind's default noise
    assert plan["audio"] == ModalityPlan(
        "audio", "audio", "fake-audio", {"n_mels": 32}, KINDS["audio"].default_noise
    )
    assert (KINDS["features"].default_noise, KINDS["audio"].default_noise) == (1.0, 0.0)


def test_a_given_backbone_replaces_the_registrations(datasets):
    plan = tri(modalities={"audio": {"backbone": "other-audio", "noise": 12}})
    assert (plan["audio"].backbone, plan["audio"].noise) == ("other-audio", 12.0)
    assert plan_of(dataset=AV)["visual"].backbone == "fake-video"


def test_a_modality_without_a_backbone_names_the_flag(datasets):
    with pytest.raises(
        ConfigError,
        match=rf"dataset '{TRI}': no backbone for its modality 'text' \(kind features\); "
        r"pass --backbone text=NAME .*backbones of kind features: fake-features, other-features",
    ):
        plan_of(dataset=TRI)


def test_a_kind_without_registered_backbones_is_named(datasets, monkeypatch):
    monkeypatch.delitem(BACKBONES, "features")
    with pytest.raises(
        ConfigError,
        match=r"modalities.text.backbone.*no backbones are registered for kind features",
    ):
        tri()


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"text_backbone": "small"},
            r"field 'text_backbone' \(--text-backbone small\).*--backbone M=NAME",
        ),
        ({"text_noise": 0.2}, r"field 'text_noise' \(--text-noise 0.2\).*--noise M=LEVEL"),
    ],
)
def test_a_flat_field_that_cannot_apply_is_an_error(datasets, values, expected):
    with pytest.raises(ConfigError, match=expected):
        tri(**values)
    with pytest.raises(
        ConfigError, match=r"has the modalities image:image text:features audio:audio"
    ):
        tri(**values)


def test_image_fields_on_an_audio_visual_set(datasets):
    with pytest.raises(
        ConfigError, match=r"'image_backbone' \(--image-backbone cnn\) sets the modality 'image'"
    ):
        plan_of(dataset=AV, image_backbone="cnn")
    with pytest.raises(ConfigError, match=r"'image_noise'"):
        plan_of(dataset=AV, image_noise=0.1)
    # the defaults are silently not applied (a config.yaml has them all)
    assert list(plan_of(dataset=AV, image_backbone="efficientnet-lite0")) == ["audio", "visual"]


def test_settings_for_a_modality_the_dataset_lacks_are_an_error(datasets):
    for field in ("modalities", "backbone_options"):
        with pytest.raises(
            ConfigError,
            match=rf"field '{field}': unknown modality 'vision'; dataset '{AV}' has the "
            r"modalities audio:audio visual:video",
        ):
            plan_of(dataset=AV, **{field: {"vision": {}}})


def test_a_kind_other_than_the_datasets_is_an_error(datasets):
    with pytest.raises(
        ConfigError,
        match=rf"'modalities.visual.kind': dataset '{AV}' declares 'visual' of kind video, not 'image'",
    ):
        plan_of(dataset=AV, modalities={"visual": {"kind": "image"}})
    assert plan_of(dataset=AV, modalities={"visual": {"kind": "video"}})["visual"].kind == "video"


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
        plan_of(dataset=dataset, modalities={modality: {"noise": noise}})


def test_decibels_are_for_audio_only(datasets):
    for spelt in ("10db", "10dB", " 10 DB", "-3.5dB"):
        assert plan_of(dataset=AV, modalities={"audio": {"noise": spelt}})["audio"].noise == float(
            spelt.lower().replace("db", "")
        )
    with pytest.raises(
        ConfigError, match=r"'modalities.visual.noise'.*'10db' is an SNR in dB.*kind video"
    ):
        plan_of(dataset=AV, modalities={"visual": {"noise": "10db"}})
    assert plan_of(dataset=AV, modalities={"visual": {"noise": "0.25"}})["visual"].noise == 0.25


def test_backbones_are_checked_against_their_kind(datasets):
    with pytest.raises(
        ConfigError,
        match=r"'modalities.audio.backbone': 'cnn' is a backbone of kind image, not audio",
    ):
        plan_of(dataset=AV, modalities={"audio": {"backbone": "cnn"}})
    with pytest.raises(ConfigError, match=r"'modalities.audio.backbone'.*'fake-audi'"):
        plan_of(dataset=AV, modalities={"audio": {"backbone": "fake-audi"}})
    with pytest.raises(
        ConfigError,
        match=r"field 'modalities.audio.backbone_options': audio backbone 'fake-audio': "
        r"unknown option 'n_melz'",
    ):
        plan_of(dataset=AV, modalities={"audio": {"backbone_options": {"n_melz": 1}}})
    with pytest.raises(ConfigError, match=r"field 'backbone_options': audio backbone 'fake-audio'"):
        plan_of(dataset=AV, backbone_options={"audio": {"n_mels": "many"}})
    with pytest.raises(ConfigError, match=r"field 'backbone_options': image backbone 'cnn'"):
        plan_of(image_backbone="cnn", backbone_options={"image": {"widht": 8}})


def test_a_misspelt_setting_is_named():
    with pytest.raises(ConfigError, match=r"modalities.image.nosie"):
        plan_of(modalities={"image": {"nosie": 0.1}})


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
        modality_plan(from_yaml)
        == modality_plan(from_flags)
        == {
            "audio": ModalityPlan("audio", "audio", "other-audio", {"n_mels": 32}, 10.0),
            "visual": ModalityPlan("visual", "video", "fake-video", {}, 0.25),
        }
    )
    assert from_flags.modalities["audio"].backbone == "other-audio"
    assert from_flags.backbone_options == {"audio": {"n_mels": 32}}


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
    plan = modality_plan(
        parse(
            "--config", str(path), "--noise", "audio=10db", "--backbone-option", "audio.n_mels=32"
        )
    )
    assert plan["audio"] == ModalityPlan(
        "audio", "audio", "other-audio", {"n_mels": 32, "frames": 3}, 10.0
    )


def test_a_flat_flag_overrides_the_files_section(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("modalities: {image: {backbone: cnn, noise: 0.1}}\n")
    plan = modality_plan(parse("--config", str(path), "--image-noise", "0.3"))
    assert (plan["image"].backbone, plan["image"].noise) == ("cnn", 0.3)
    plan = modality_plan(parse("--config", str(path), "--image-backbone", "efficientnet-lite0"))
    assert (plan["image"].backbone, plan["image"].noise) == ("efficientnet-lite0", 0.1)


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


# -- run folders --------------------------------------------------------------------------
def test_an_old_config_yaml_without_modalities_loads_equal(tmp_path):
    cfg = RunConfig(image_backbone="cnn", backbone_options={"image": {"width": 8}})
    path = tmp_path / "config.yaml"
    dump_yaml(cfg, path)
    values = yaml.safe_load(path.read_text())
    assert values["modalities"] == {}
    del values["modalities"]
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    old = load_run_config(path)
    assert old == cfg
    assert resume_differences(old, cfg) == ([], [])


def test_a_written_section_round_trips(datasets, tmp_path):
    cfg = build_config(
        {"dataset": AV, "modalities": {"audio": {"noise": "6dB", "backbone": "other-audio"}}}
    )
    dump_yaml(cfg, tmp_path / "config.yaml")
    again = load_run_config(tmp_path / "config.yaml")
    assert again == cfg and modality_plan(again)["audio"].noise == 6.0


def test_a_resume_compares_what_the_settings_resolve_to(datasets):
    flat = RunConfig(image_backbone="cnn", image_noise=0.3)
    section = build_config({"modalities": {"image": {"backbone": "cnn", "noise": 0.3}}})
    assert resume_differences(flat, section) == ([], [])
    refused, _ = resume_differences(flat, RunConfig(image_backbone="cnn", image_noise=0.4))
    assert refused == ["image_noise: 0.3 → 0.4"]
    refused, _ = resume_differences(
        build_config({"dataset": AV}),
        build_config({"dataset": AV, "modalities": {"audio": {"backbone": "other-audio"}}}),
    )
    assert refused == ["modalities.audio.backbone: 'fake-audio' → 'other-audio'"]
    refused, _ = resume_differences(
        RunConfig(), RunConfig(backbone_options={"text": {"max_length": 8}})
    )
    assert refused == ["backbone_options.text: {} → {'max_length': 8}"]


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
    def rescored(cfg: RunConfig, *flags: str) -> dict[str, ModalityPlan]:
        values = cfg.model_dump()
        evaluate_overrides(values, build_parser().parse_args(["evaluate", "run", *flags]))
        return modality_plan(build_config(values))

    av = build_config({"dataset": AV, "modalities": {"audio": {"noise": 3}}})
    plan = rescored(av, "--noise", "audio=10db", "--noise", "visual=0.2")
    assert (plan["audio"].noise, plan["visual"].noise) == (10.0, 0.2)
    assert rescored(av)["audio"].noise == 3.0
    section = build_config({"modalities": {"image": {"noise": 0.1, "backbone": "cnn"}}})
    plan = rescored(section, "--image-noise", "0.3")  # replaces the run's modalities.image.noise
    assert (plan["image"].noise, plan["image"].backbone) == (0.3, "cnn")
    with pytest.raises(ConfigError, match=r"--noise: expected M=LEVEL, got 'audio'"):
        rescored(av, "--noise", "audio")


def test_balgrad_list_names_a_kind_without_backbones(datasets, monkeypatch, capsys):
    monkeypatch.delitem(BACKBONES, "video")
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert f"video backbones: none registered (needed by {AV};" in out
    assert "features backbones: none" not in out
