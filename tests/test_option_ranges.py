"""Every noise level and every option that sizes memory or must be finite has a stated
range, checked when the config is built (issue 23, items 3, 4, 9 and 10): from the CLI
one `balgrad: error:` line naming the option and its range, exit 2, before any data is
loaded or any folder written."""

import math

import pytest

from balgrad.data._impairments import Condition
from balgrad.data._kinds import KINDS, NOISE_RANGES
from balgrad.errors import ConfigError
from test_bad_inputs import run_cli


def _no_data_loading(cfg):
    raise AssertionError("the data was loaded: the check came too late")


def refused(argv, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("balgrad.experiment.load_data", _no_data_loading)
    argv = [*argv, "--out", str(tmp_path / "runs"), "--name", "r", "--no-progress"]
    code, out, err = run_cli(argv, capsys)
    assert code == 2, (code, err)
    assert err.startswith("balgrad: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, (word, err)
    assert not (tmp_path / "runs" / "r").exists()


NOISE = {
    "keypad audio -1000 dB": (["--dataset", "keypad", "--noise", "audio=-1000dB"], "audio"),
    "keypad audio 4000 dB": (["--dataset", "keypad", "--noise", "audio=4000dB"], "audio"),
    "keypad image 1e999": (["--dataset", "keypad", "--noise", "image=1e999"], "image"),
    "digits image 11": (["--image-noise", "11"], "modalities.image.noise"),
    "digits image inf": (["--image-noise", "inf"], "modalities.image.noise"),
    "digits text 1.5": (["--noise", "text=1.5"], "text"),
    "cremad visual 1e999": (
        ["--dataset", "cremad", "--data-dir", ".", "--noise", "visual=1e999"],
        "visual",
    ),
    "mosei audio 1e39": (
        ["--dataset", "mosei", "--data-dir", ".", "--noise", "audio=1e39"],
        "audio",
    ),
}


@pytest.mark.parametrize(("argv", "modality"), list(NOISE.values()), ids=list(NOISE))
def test_a_noise_level_out_of_its_kinds_range_is_refused_up_front(
    argv, modality, tmp_path, monkeypatch, capsys
):
    refused(
        ["compare", *argv],
        [modality, "must be a finite number in ["],
        tmp_path,
        monkeypatch,
        capsys,
    )


def test_evaluate_checks_the_noise_level_too(tmp_path, monkeypatch, capsys):
    from test_bad_inputs import _run_folder

    run = _run_folder(tmp_path)
    monkeypatch.setattr("balgrad.experiment.load_data", _no_data_loading)
    code, _, err = run_cli(["evaluate", run, "--image-noise", "1e39"], capsys)
    assert code == 2 and "modalities.image.noise" in err and "[0, 10]" in err, err


@pytest.mark.parametrize("kind", list(NOISE_RANGES))
def test_each_kinds_range_is_finite_and_its_ends_are_accepted(kind):
    low, high = NOISE_RANGES[kind]
    assert math.isfinite(low) and math.isfinite(high) and low < high
    check = KINDS[kind].check_noise
    check(low), check(high), check(KINDS[kind].default_noise)
    for bad in (low - 1, high + 1, math.nan, math.inf, -math.inf):
        with pytest.raises(ConfigError, match=rf"in \[{low:g}, {high:g}\]"):
            check(bad)


def test_the_ends_of_the_audio_range_give_finite_noise():
    """The range is where the impaired input stays finite: -60 dB on a full-scale clip."""
    import torch

    wave = torch.ones(8000)
    for snr in NOISE_RANGES["audio"]:
        assert torch.isfinite(KINDS["audio"].noise(wave, snr, 0, 0, 5)).all()


def test_a_condition_level_must_be_finite():
    for level in (math.nan, math.inf):
        with pytest.raises(ConfigError, match="'level' expects float, finite"):
            Condition("noisy_audio", level=level)
    with pytest.raises(ConfigError, match=r"'ratio' expects float in \[0, 1\]"):
        Condition("missing_audio", ratio=math.nan)


CREMAD = ["--dataset", "cremad", "--data-dir", "."]
#: (argv, words the one error line must hold: the option and its range)
OPTIONS = {
    "cremad seconds": (
        [*CREMAD, "--dataset-option", "seconds=1e9"],
        ["'seconds'", "(0, 3600]"],
    ),
    "cremad seconds nan": ([*CREMAD, "--dataset-option", "seconds=.nan"], ["'seconds'"]),
    "cremad image_size": (
        [*CREMAD, "--dataset-option", "image_size=100000"],
        ["'image_size'", "[1, 4096]"],
    ),
    "cremad sample_rate": (
        [*CREMAD, "--dataset-option", "sample_rate=2147483647"],
        ["'sample_rate'", "[1000, 384000]"],
    ),
    "frontend n_fft": (
        [*CREMAD, "--backbone-option", "audio.frontend={n_fft: 100000000}"],
        ["'frontend'", "'n_fft'", "[2, 65536]"],
    ),
    "frontend hop_length": (
        [*CREMAD, "--backbone-option", "audio.frontend={hop_length: 0}"],
        ["'frontend'", "'hop_length'", "[1, 65536]"],
    ),
    "frontend win_length": (
        [*CREMAD, "--backbone-option", "audio.frontend={win_length: 10000000}"],
        ["'frontend'", "'win_length'", "[1, 65536]"],
    ),
    "frontend eps": (
        [*CREMAD, "--backbone-option", "audio.frontend={eps: .nan}"],
        ["'frontend'", "'eps'", "(0, 1]"],
    ),
    "frontend typo": (
        [*CREMAD, "--backbone-option", "audio.frontend={n_ftt: 512}"],
        ["'frontend'", "'n_ftt'", "did you mean 'n_fft'"],
    ),
    "audio tower width": (
        [*CREMAD, "--backbone-option", "audio.width=100000"],
        ["'width'", "[1, 256]"],
    ),
    "cnn width": (
        ["--image-backbone", "cnn", "--backbone-option", "image.width=10000000"],
        ["'width'", "[1, 1024]"],
    ),
    "keypad sample_rate": (
        ["--dataset", "keypad", "--dataset-option", "sample_rate=2000000000"],
        ["'sample_rate'", "[3250, 48000]"],
    ),
    "keypad mel n_fft": (
        ["--dataset", "keypad", "--backbone-option", "audio.n_fft=100000000"],
        ["'n_fft'", "[2, 65536]"],
    ),
    "keypad mel sample_rate": (
        ["--dataset", "keypad", "--backbone-option", "audio.sample_rate=1"],
        ["'sample_rate'", "[1000, 384000]"],
    ),
    "digits n_train": (
        ["--dataset-option", "n_train=1000000000"],
        ["'n_train'", "[1, 1000000]"],
    ),
    "digits image_size": (
        ["--dataset-option", "image_size=100000"],
        ["'image_size'", "[8, 256]"],
    ),
    "mosei gru hidden": (
        ["--dataset", "mosei", "--data-dir", ".", "--backbone-option", "audio.hidden=0"],
        ["'hidden'", "[1, 16384]"],
    ),
    "mslr lr_scales nan": (
        ["--methods", "mslr", "--method-option", "mslr.lr_scales={image: .nan}"],
        ["'lr_scales'", "float > 0, finite"],
    ),
    "mslr lr_scales inf": (
        ["--methods", "mslr", "--method-option", "mslr.lr_scales={text: .inf}"],
        ["'lr_scales'", "float > 0, finite"],
    ),
    "balgrad temperature nan": (
        ["--methods", "balgrad", "--method-option", "balgrad.temperature=.nan"],
        ["'temperature'", "float > 0, finite"],
    ),
    "lr inf": (["--lr", "inf"], ["'lr'", "finite"]),
    "weight decay nan": (["--weight-decay", "nan"], ["'weight_decay'", "finite"]),
    "embed dim": (["--embed-dim", "100000000"], ["'embed_dim'", "16384"]),
    "head hidden": (["--head-hidden", "100000000"], ["'head_hidden'", "16384"]),
    "agm alpha inf": (
        ["--methods", "agm", "--method-option", "agm.alpha=.inf"],
        ["'alpha'", "float >= 0, finite"],
    ),
    "agm prob_floor 1": (
        ["--methods", "agm", "--method-option", "agm.prob_floor=1.0"],
        ["prob_floor", "[0, 1)"],
    ),
    "dgl alpha inf": (
        ["--methods", "dgl", "--method-option", "dgl.alpha=.inf"],
        ["'alpha'", "float >= 0, finite"],
    ),
    "mmpareto gamma nan": (
        ["--methods", "mmpareto", "--method-option", "mmpareto.gamma=.nan"],
        ["'gamma'", "float > 0, finite"],
    ),
    "pmr momentum 2": (
        ["--methods", "pmr", "--method-option", "pmr.momentum_coef=2.0"],
        ["'momentum_coef'", "[0, 1]"],
    ),
}


@pytest.mark.parametrize(("argv", "words"), list(OPTIONS.values()), ids=list(OPTIONS))
def test_an_option_out_of_its_range_is_one_error_line_naming_it(
    argv, words, tmp_path, monkeypatch, capsys
):
    refused(["compare", *argv], words, tmp_path, monkeypatch, capsys)


def test_the_ranges_are_in_the_signatures_and_the_defaults_lie_inside():
    """Every built-in's options, with the range a listing shows, accept their defaults."""
    from balgrad.backbones._factory import BACKBONES
    from balgrad.data._catalog import DATASETS
    from balgrad.registry import check_value
    from balgrad.strategies._registry import STRATEGY_REGISTRY

    registries = [DATASETS, *BACKBONES.values(), STRATEGY_REGISTRY]
    ranged = 0
    for registry in registries:
        for entry in registry.entries(plugins=False):
            for option in registry.entry_options(entry).values():
                if " in [" in option.type_name or ">" in option.type_name:
                    ranged += 1
                if option.default is not inspect_empty():
                    check_value(option.annotation, option.default, option.name)
    assert ranged >= 60
    assert str(BACKBONES["audio"].options("resnet18")["width"]) == "width: int in [1, 256] = 64"


def inspect_empty():
    import inspect

    return inspect.Parameter.empty


def test_the_spectrogram_refuses_a_window_longer_than_its_fft():
    from balgrad.backbones._audio import LogSpectrogram

    with pytest.raises(ConfigError, match=r"'win_length' \(1024\) must be <= n_fft \(512\)"):
        LogSpectrogram(n_fft=512, win_length=1024)
    with pytest.raises(ConfigError, match=r"'eps' expects float in \(0, 1\]"):
        LogSpectrogram(eps=math.nan)


def test_mslr_created_in_python_refuses_a_nan_scale_by_name():
    from balgrad.strategies._mslr import MSLR

    with pytest.raises(ConfigError, match=r"'lr_scales'\['audio'\] expects float > 0, finite"):
        MSLR(lr_scales={"audio": math.nan})
    with pytest.raises(ConfigError, match=r"'lr_scales'\['head'\] expects float > 0, finite"):
        MSLR(lr_scales={"head": math.inf})
