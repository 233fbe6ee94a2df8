"""Backbones by name: the registry, aliases, option checking."""

from __future__ import annotations

import pytest
import torch

from balgrad.backbones.factory import (
    create_image_encoder,
    create_text_encoder,
    list_backbones,
)
from balgrad.backbones.small import SmallCNN, SmallTextEncoder
from balgrad.errors import BackboneError, ConfigError


def test_list_backbones_names_every_builtin():
    names = list_backbones()
    assert {"cnn", "efficientnet-lite0", "hf:<id|path>", "clip:<id|path>"} <= set(names["image"])
    assert {"small", "words", "minilm", "hf:<id|path>", "clip:<id|path>"} <= set(names["text"])


def test_cnn_by_name_with_options():
    enc = create_image_encoder("cnn", out_dim=12, image_size=28, channels=1)
    assert isinstance(enc, SmallCNN) and enc.out_dim == 12 and enc.channels == 1


def test_small_text_by_name_and_alias(tmp_path):
    enc = create_text_encoder("small", texts=["a dog", "a cat"], out_dim=10)
    assert isinstance(enc, SmallTextEncoder) and enc.out_dim == 10
    enc.save_tokenizer(tmp_path)
    again = create_text_encoder("words", tokenizer=tmp_path / "tokenizer.json", out_dim=10)
    assert again.identity == enc.identity


def test_small_text_needs_texts_or_tokenizer():
    with pytest.raises(ConfigError, match="texts"):
        create_text_encoder("small")


def test_finetune_false_freezes_a_small_encoder():
    enc = create_image_encoder("cnn", finetune=False)
    assert not enc.trainable and not any(p.requires_grad for p in enc.parameters())


def test_unknown_name_lists_known_names():
    with pytest.raises(BackboneError, match="known: .*cnn"):
        create_image_encoder("resnet-9000")
    with pytest.raises(BackboneError, match="minilm"):
        create_text_encoder("bert")
    with pytest.raises(BackboneError, match="must follow the colon"):
        create_text_encoder("hf:")


def test_unknown_option_is_named():
    with pytest.raises(ConfigError, match="'dropout_rate'"):
        create_image_encoder("cnn", dropout_rate=0.1)
    with pytest.raises(ConfigError, match="'trust_remote_code'"):
        create_text_encoder("minilm", trust_remote_code=True)


def test_created_encoders_run_end_to_end():
    img = create_image_encoder("cnn", out_dim=4, width=8)
    txt = create_text_encoder("small", texts=["x y z"], out_dim=4)
    assert img(img.preprocess(torch.rand(3, 10, 10)).unsqueeze(0)).shape == (1, 4)
    assert txt(txt.tokenize(["x", ""])).shape == (2, 4)
