"""Backbones by name: the registry, aliases, option checking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from balgrad.backbones import create_backbone, list_backbones
from balgrad.backbones._small import SmallCNN, SmallTextEncoder
from balgrad.errors import BackboneError, ConfigError


def test_list_backbones_names_every_builtin():
    names = list_backbones()
    assert {"cnn", "efficientnet-lite0", "hf:<id|path>", "clip:<id|path>"} <= set(names["image"])
    assert {"small", "words", "minilm", "hf:<id|path>", "clip:<id|path>"} <= set(names["text"])


def test_cnn_by_name_with_options():
    enc = create_backbone("image", "cnn", out_dim=12, image_size=28, channels=1)
    assert isinstance(enc, SmallCNN) and enc.out_dim == 12 and enc.channels == 1


def test_small_text_by_name_and_alias(tmp_path):
    enc = create_backbone("text", "small", texts=["a dog", "a cat"], out_dim=10)
    assert isinstance(enc, SmallTextEncoder) and enc.out_dim == 10
    enc.save_tokenizer(tmp_path)
    again = create_backbone("text", "words", tokenizer=tmp_path / "tokenizer.json", out_dim=10)
    assert again.identity == enc.identity


def test_small_text_needs_texts_or_tokenizer():
    with pytest.raises(ConfigError, match="texts"):
        create_backbone("text", "small")


def test_finetune_false_freezes_a_small_encoder():
    enc = create_backbone("image", "cnn", finetune=False)
    assert not enc.trainable and not any(p.requires_grad for p in enc.parameters())


def test_unknown_name_lists_known_names():
    with pytest.raises(BackboneError, match="known: .*cnn"):
        create_backbone("image", "resnet-9000")
    with pytest.raises(BackboneError, match="minilm"):
        create_backbone("text", "bert")
    with pytest.raises(BackboneError, match="must follow the colon"):
        create_backbone("text", "hf:")


def test_unknown_option_is_named():
    with pytest.raises(ConfigError, match="'dropout_rate'"):
        create_backbone("image", "cnn", dropout_rate=0.1)
    with pytest.raises(ConfigError, match="'trust_remote_code'"):
        create_backbone("text", "minilm", trust_remote_code=True)


def test_created_encoders_run_end_to_end():
    img = create_backbone("image", "cnn", out_dim=4, width=8)
    txt = create_backbone("text", "small", texts=["x y z"], out_dim=4)
    assert img(img.preprocess(torch.rand(3, 10, 10)).unsqueeze(0)).shape == (1, 4)
    assert txt(txt.tokenize(["x", ""])).shape == (2, 4)


# ------------------------------------------------ the audio, video and features kinds


def test_every_modality_kind_has_a_registry_of_from_scratch_backbones():
    from balgrad.backbones._factory import BACKBONES
    from balgrad.data._kinds import KINDS

    assert set(BACKBONES) == set(KINDS)
    names = list_backbones()
    assert set(names["audio"]) == {"resnet18", "efficientnet-lite0-mel"}
    assert set(names["video"]) == {"resnet18"}
    assert set(names["features"]) == {"gru", "transformer"}
    pretrained = {"efficientnet-lite0-mel"}  # the pip-shipped ImageNet network over spectrograms
    for kind in ("audio", "video", "features"):
        for entry in BACKBONES[kind].entries():
            assert entry.metadata["pretrained"] is (entry.name in pretrained)
            assert entry.metadata["description"]


def test_audio_resnet18_takes_the_waveform_through_the_ogm_ge_spectrogram():
    from balgrad.backbones._factory import OGM_GE_FRONTEND, create_backbone
    from balgrad.backbones._resnet import AudioResNet18

    enc = create_backbone("audio", "resnet18", width=4)
    assert isinstance(enc, AudioResNet18) and enc.out_dim == 32
    assert "n_fft=512,hop=353" in enc.identity and "sr=22050" in enc.identity
    wave = torch.rand(2, 3 * 22050, dtype=torch.float64) * 2 - 1
    spec = enc.frontend(wave)
    # log(|STFT| + 1e-7) computed another way: zero-padded by n_fft / 2, periodic Hann
    # frames every 353 samples, numpy's rfft
    x = np.pad(wave[0].numpy(), 256)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(512) / 512)
    frames = np.stack([x[s : s + 512] * window for s in range(0, len(x) - 511, 353)], axis=1)
    expected = np.log(np.abs(np.fft.rfft(frames, axis=0)) + 1e-7)
    assert spec.shape == (2, 1, 257, 188) and expected.shape == (257, 188)
    np.testing.assert_allclose(spec[0, 0].numpy(), expected, atol=1e-8)
    assert enc.eval()(wave.float()).shape == (2, 32)
    mel = create_backbone("audio", "resnet18", width=4, frontend={"kind": "mel", "n_mels": 16})
    assert mel.frontend.n_bins == 16 and mel.identity != enc.identity
    assert OGM_GE_FRONTEND["hop_length"] == 353  # the default is left as it was


def test_video_resnet18_and_the_sequence_encoders():
    from balgrad.backbones._factory import create_backbone
    from balgrad.backbones._resnet import VisualResNet18
    from balgrad.backbones._sequence import SequenceEncoder

    vid = create_backbone("video", "resnet18", width=4)
    assert isinstance(vid, VisualResNet18)
    assert vid.eval()(torch.randn(2, 3, 2, 16, 16)).shape == (2, 32)
    x = {"features": torch.randn(3, 5, 7), "lengths": torch.tensor([5, 2, 0])}
    for name, hidden, out_dim in (("gru", 6, 12), ("transformer", 8, 8)):
        enc = create_backbone(
            "features", name, in_features=7, hidden=hidden, bidirectional=name == "gru"
        )
        assert isinstance(enc, SequenceEncoder) and enc.kind == name
        assert enc.out_dim == out_dim and enc(x).shape == (3, out_dim)


def test_features_backbones_say_in_features_is_needed():
    from balgrad.backbones._factory import create_backbone

    for name in ("gru", "transformer"):
        with pytest.raises(ConfigError, match=rf"'{name}' needs the option 'in_features'.*from"):
            create_backbone("features", name)


def test_a_wrong_kind_name_or_option_is_named():
    from balgrad.backbones._factory import create_backbone

    with pytest.raises(ConfigError, match="unknown backbone kind 'sound'.*audio, video, features"):
        create_backbone("sound", "resnet18")
    with pytest.raises(BackboneError, match="unknown features backbone 'lstm'.*known: gru"):
        create_backbone("features", "lstm", in_features=3)
    with pytest.raises(ConfigError, match="video backbone 'resnet18': unknown option 'frontend'"):
        create_backbone("video", "resnet18", frontend={})
    with pytest.raises(ConfigError, match="option 'frontend': unknown option 'n_ftt'"):
        create_backbone("audio", "resnet18", frontend={"n_ftt": 256})
    with pytest.raises(ConfigError, match=r"'layout' expects 'bcthw' \| 'btchw'"):
        create_backbone("video", "resnet18", layout="thwc")


def test_register_backbone_by_kind_checks_what_it_builds():
    from torch import nn

    from balgrad.backbones._factory import BACKBONES, create_backbone, register_backbone

    class Pool(nn.Module):
        out_dim, identity = 3, "pool"

        def forward(self, x):
            return x.mean(-1)

    register_backbone("audio", "pool_test", Pool, "mean over time")
    register_backbone("audio", "bare_test", lambda: nn.Identity())
    try:
        assert create_backbone("audio", "pool_test")(torch.ones(2, 3, 4)).shape == (2, 3)
        assert BACKBONES["audio"].metadata("pool_test")["description"] == "mean over time"
        with pytest.raises(BackboneError, match="'bare_test' built a Identity, without out_dim"):
            create_backbone("audio", "bare_test")
    finally:
        BACKBONES["audio"].unregister("pool_test")
        BACKBONES["audio"].unregister("bare_test")
    with pytest.raises(ConfigError, match="unknown backbone kind 'smell'"):
        register_backbone("smell", "nose", Pool)


def test_each_kind_checks_its_own_contract():
    from torch import nn

    from balgrad.backbones import BACKBONES, register_backbone

    class Plain(nn.Module):
        out_dim, identity = 2, "plain"

    register_backbone("text", "plain_test", Plain, fits_vocabulary=True)
    register_backbone("audio", "plain_test", Plain)
    try:
        assert BACKBONES["text"].metadata("plain_test")["fits_vocabulary"] is True
        with pytest.raises(BackboneError, match="built a Plain, not a TextEncoder"):
            create_backbone("text", "plain_test")
        assert isinstance(create_backbone("audio", "plain_test"), Plain)  # nn.Module suffices
        with pytest.raises(TypeError, match="fits_vocabulary"):  # a field of text only
            register_backbone("audio", "vocab_test", Plain, fits_vocabulary=True)
    finally:
        BACKBONES["text"].unregister("plain_test")
        BACKBONES["audio"].unregister("plain_test")
    with pytest.raises(ConfigError, match="unknown backbone kind 'smell'"):
        create_backbone("smell", "nose")
