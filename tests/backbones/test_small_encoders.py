"""The small from-scratch encoders: shapes, gradients, masking, empty text, tokenizer files."""

from __future__ import annotations

import pytest
import torch

from balgrad.backbones._base import freeze
from balgrad.backbones._small import (
    SmallCNN,
    SmallTextEncoder,
    build_word_tokenizer,
    load_word_tokenizer,
)
from balgrad.errors import BackboneError, ConfigError

TEXTS = [
    "A photo of a dog.",
    "a red car, parked outside",
    "The cat sat on the mat!",
    "dog dog dog",
]


@pytest.mark.parametrize("channels_in", [1, 3, 4])
@pytest.mark.parametrize("channels", [1, 3])
def test_cnn_preprocess_gives_fixed_shape_from_any_channel_count(channels_in, channels):
    enc = SmallCNN(image_size=28, channels=channels)
    x = enc.preprocess(torch.rand(channels_in, 40, 17))
    assert x.shape == (channels, 28, 28)
    assert x.min() >= -1.0 and x.max() <= 1.0


def test_cnn_maps_a_batch_to_out_dim_and_gradients_reach_every_parameter():
    enc = SmallCNN(out_dim=16, image_size=32, width=8)
    pixels = torch.stack([enc.preprocess(torch.rand(3, 32, 32)) for _ in range(4)])
    out = enc(pixels)
    assert out.shape == (4, 16)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())


def test_cnn_blank_image_goes_through():
    enc = SmallCNN(out_dim=8, width=8, norm="group")
    assert enc(enc.preprocess(enc.blank_image()).unsqueeze(0)).shape == (1, 8)


def test_cnn_rejects_bad_options():
    with pytest.raises(ConfigError, match="channels"):
        SmallCNN(channels=2)
    with pytest.raises(ConfigError, match="norm"):
        SmallCNN(norm="layer")


def test_frozen_encoder_stays_in_eval_mode_when_parent_trains():
    enc = freeze(SmallCNN(width=8))
    parent = torch.nn.Sequential(enc)
    parent.train()
    assert not enc.training
    assert not any(p.requires_grad for p in enc.parameters())


def test_word_tokenizer_has_fixed_special_ids_and_is_deterministic():
    tok = build_word_tokenizer(TEXTS)
    assert [tok.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]")] == [0, 1, 2, 3]
    # most frequent word first after the specials; ties alphabetical
    assert tok.id_to_token(4) == "dog"
    assert build_word_tokenizer(list(reversed(TEXTS))).to_str() == tok.to_str()


def test_word_tokenizer_lowercases_splits_punctuation_and_maps_unknown_words():
    tok = build_word_tokenizer(TEXTS)
    enc = tok.encode("DOG, zebra!")
    assert enc.tokens == ["[CLS]", "dog", ",", "[UNK]", "!", "[SEP]"]


def test_word_tokenizer_min_freq_and_max_vocab():
    tok = build_word_tokenizer(TEXTS, min_freq=2)
    assert tok.token_to_id("dog") is not None and tok.token_to_id("car") is None
    assert build_word_tokenizer(TEXTS, max_vocab=3).get_vocab_size() == 4 + 3


def test_text_encoder_tokenizes_empty_strings_to_cls_sep():
    enc = SmallTextEncoder.fit(TEXTS, out_dim=16)
    tokens = enc.tokenize(["", "a dog"])
    assert tokens["input_ids"][0].tolist()[:2] == [2, 3]
    assert tokens["attention_mask"][0].tolist() == [1, 1, 0, 0]
    assert enc(tokens).shape == (2, 16)
    assert enc.pad_id == 0 and set(enc.special_ids) == {0, 1, 2, 3}


def test_text_encoder_truncates_to_max_length():
    enc = SmallTextEncoder.fit(TEXTS, max_length=5)
    ids = enc.tokenize(["dog " * 50])["input_ids"]
    assert ids.shape == (1, 5) and ids[0, -1].item() == 3


@pytest.mark.parametrize("pooling", ["conv", "mean"])
def test_text_encoder_output_ignores_padding_and_gradients_flow(pooling):
    enc = SmallTextEncoder.fit(TEXTS, out_dim=8, pooling=pooling, dropout=0.0).eval()
    alone = enc(enc.tokenize(["a dog"]))
    padded = enc(enc.tokenize(["a dog", "the cat sat on the mat outside"]))[:1]
    assert torch.allclose(alone, padded, atol=1e-6)
    enc.train()
    enc(enc.tokenize(TEXTS)).sum().backward()
    assert enc.embed.weight.grad is not None and enc.embed.weight.grad.abs().sum() > 0


def test_tokenizer_json_round_trip_gives_the_same_encoder_inputs(tmp_path):
    enc = SmallTextEncoder.fit(TEXTS, max_length=12)
    path = enc.save_tokenizer(tmp_path)
    assert path.name == "tokenizer.json"
    again = SmallTextEncoder(load_word_tokenizer(path))
    same = SmallTextEncoder(tmp_path)  # a directory holding tokenizer.json also works
    probe = ["The dog sat, outside!", "", "unknown words here"]
    for other in (again, same):
        assert other.identity == enc.identity
        assert other.max_length == 12
        for k in ("input_ids", "attention_mask"):
            assert torch.equal(other.tokenize(probe)[k], enc.tokenize(probe)[k])


def test_missing_tokenizer_file_is_a_backbone_error(tmp_path):
    with pytest.raises(BackboneError, match="not found"):
        load_word_tokenizer(tmp_path / "nope.json")
