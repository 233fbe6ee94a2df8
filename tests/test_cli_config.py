import os
from pathlib import Path

import pytest
import yaml

from balgrad.cli import build_parser, config_from_args, main
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
        "modalities": {"image": {"backbone": "cnn", "backbone_options": {"width": 8}}},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(values))
    from_yaml = parse("--config", str(path))
    from_flags = parse(
        "--backbone",
        "image=cnn",
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
    # the same resolved settings (what config.yaml records), however spelt
    assert from_yaml.model_dump() == from_flags.model_dump() == RunConfig(**values).model_dump()
    assert from_flags.specs["image"].backbone_options["width"] == 8
    # the 0.1 spellings: the file's flat keys (with a warning naming the new one) and the
    # documented shorthand flag give the same settings
    old = {k: v for k, v in values.items() if k != "modalities"}
    path.write_text(
        yaml.safe_dump(
            {**old, "image_backbone": "cnn", "backbone_options": {"image": {"width": 8}}}
        )
    )
    with pytest.warns(DeprecationWarning, match=r"modalities: \{image: \{backbone: 'cnn'\}\}"):
        from_old_yaml = parse("--config", str(path))
    (tmp_path / "rest.yaml").write_text(yaml.safe_dump(old))
    rest = ["--config", str(tmp_path / "rest.yaml"), "--backbone-option", "image.width=8"]
    shorthand = parse(*rest, "--image-backbone", "cnn")
    assert from_old_yaml.model_dump() == shorthand.model_dump() == from_yaml.model_dump()


def test_python_refuses_a_flat_key_and_names_its_new_spelling():
    with pytest.raises(Exception, match=r"image_noise.*modalities: \{image: \{noise: 0.3\}\}"):
        RunConfig(image_noise=0.3)


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
    }
    for name in RunConfig.model_fields:
        if name == "modalities":
            assert "--backbone M=NAME" in help_text and "--noise M=LEVEL" in help_text
            assert "--backbone-option M.KEY=VALUE" in help_text
            assert "shorthand of --backbone image=NAME" in help_text
            continue
        assert flags.get(name, "--" + name.replace("_", "-")) in help_text, name


def test_an_item_flag_leaves_a_files_malformed_section_to_its_own_error(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("method_options: {balgrad: 3}\n")
    with pytest.raises(ConfigError, match=r"run.yaml / flags: field 'method_options.balgrad'"):
        parse("--config", str(path), "--method-option", "balgrad.kl_weight=0.5")
    path.write_text("method_options: null\n")  # an empty section: the flag fills it
    cfg = parse("--config", str(path), "--method-option", "balgrad.kl_weight=0.5")
    assert cfg.method_options == {"balgrad": {"kl_weight": 0.5}}


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


def test_precision_is_a_choice_of_flag_and_yaml(tmp_path):
    assert parse("--precision", "bf16").precision == "bf16"
    assert parse().precision == "auto"
    path = tmp_path / "run.yaml"
    path.write_text("precision: fp16\nlog_every: 5\n")
    assert (parse("--config", str(path)).precision, parse("--config", str(path)).log_every) == (
        "fp16",
        5,
    )
    path.write_text("precision: half\n")
    with pytest.raises(ConfigError, match="precision"):
        parse("--config", str(path))


def out_error(tmp_path, capsys, out):
    argv = ["train", "--method", "joint", "--out", str(out), "--cache-dir", str(tmp_path / "c")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_an_out_that_is_a_file_is_named(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    assert f"--out: {afile} is a file" in out_error(tmp_path, capsys, afile)
    under = afile / "runs"
    assert f"--out: {under} lies under the file {afile}" in out_error(tmp_path, capsys, under)


def unwritable_folder(tmp_path):
    """A folder that refuses new files: permission bits, or for root (whom they do not
    stop) a kernel file system that refuses any new file."""
    if os.geteuid() != 0:
        folder = tmp_path / "readonly"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    for folder in (Path("/sys/kernel"), Path("/sys")):
        try:
            os.close(os.open(folder / "balgrad-probe", os.O_CREAT | os.O_WRONLY))
        except OSError:
            return folder
        os.unlink(folder / "balgrad-probe")
    pytest.skip("running as root with no read-only folder to try (/sys is writable here)")


def test_an_unwritable_out_is_named(tmp_path, capsys):
    folder = unwritable_folder(tmp_path)
    err = out_error(tmp_path, capsys, folder / "runs")
    assert f"--out: cannot write into {folder / 'runs'}" in err


def test_method_sets_stand_for_their_methods():
    from balgrad.strategies._registry import list_strategies, strategy_info

    paper = RunConfig().methods
    assert parse("--methods", "paper").methods == paper
    everything = parse("--methods", "all").methods
    assert everything == list_strategies() and set(paper) < set(everything)
    assert "balgrad_fast" in everything and "balgrad_fast" not in paper
    field = parse("--methods", "field").methods
    assert [m for m in everything if strategy_info(m)["role"] != "ablation"] == field
    assert "balgrad_reweight_only" not in field and "agm" in field
    # a set after a method: the method keeps its place, and nothing trains twice
    mixed = parse("--methods", "balgrad_fast", "paper").methods
    assert mixed == ["balgrad_fast", *paper]


def test_a_strategy_cannot_take_a_method_sets_name():
    from balgrad.strategies import Joint, register_strategy

    with pytest.raises(ConfigError, match="stands for a set of methods"):
        register_strategy("all", Joint)


def test_version_prints_the_installed_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"balgrad {version('balgrad')}"


def test_docs_prints_the_built_site_or_how_to_build_it(tmp_path, monkeypatch, capsys):
    import balgrad.cli as cli

    docs = tmp_path / "docs"
    docs.mkdir()
    monkeypatch.setattr(cli, "DOCS_DIR", docs)
    # no sources (an install from a wheel): where they are and the build command
    assert main(["docs"]) == 0
    out = capsys.readouterr().out
    assert "no documentation sources" in out and "sphinx-build -W" in out
    # a checkout not built yet: the commands, run in that checkout
    (docs / "conf.py").write_text("")
    assert main(["docs"]) == 0
    out = capsys.readouterr().out
    assert "not built yet" in out and str(tmp_path) in out and "'.[docs]'" in out
    # built: the index page's path, alone on its line (for `xdg-open $(balgrad docs)`)
    index = docs / "_build" / "html" / "index.html"
    index.parent.mkdir(parents=True)
    index.write_text("<html></html>")
    assert main(["docs"]) == 0
    assert capsys.readouterr().out == f"{index}\n"


def test_docs_looks_in_this_checkout():
    import balgrad.cli as cli

    assert (cli.DOCS_DIR / "conf.py").is_file()
