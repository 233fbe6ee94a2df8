"""The feature-sequence encoder: masking by length, pooling, blanks, and MOSEI cleaning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from balgrad.backbones._resnet import AudioResNet18, VisualResNet18
from balgrad.backbones._sequence import SequenceEncoder, clean_features
from balgrad.errors import ConfigError
from balgrad.models._multimodal import MultimodalModel

KINDS = [
    {"kind": "gru"},
    {"kind": "gru", "bidirectional": True, "layers": 2},
    {"kind": "transformer", "heads": 2, "layers": 2},
]


def encoder(options, in_features=6, hidden=8) -> SequenceEncoder:
    torch.manual_seed(0)
    return SequenceEncoder(in_features, hidden=hidden, **options).double().eval()


def test_clean_features_replaces_every_non_finite_value_by_zero():
    raw = np.array([[1.5, -np.inf, np.nan], [np.inf, -2.0, 0.0]], dtype=np.float32)
    cleaned = clean_features(raw)
    assert cleaned.dtype == np.float32
    np.testing.assert_array_equal(cleaned, [[1.5, 0.0, 0.0], [0.0, -2.0, 0.0]])
    assert np.isneginf(raw[0, 1])  # the input is left as it was
    t = clean_features(torch.from_numpy(raw))
    assert isinstance(t, torch.Tensor) and torch.equal(t, torch.from_numpy(cleaned))


@pytest.mark.parametrize("options", KINDS)
def test_output_has_out_dim_and_gradients_reach_every_parameter(options):
    enc = SequenceEncoder(6, hidden=8, **options)
    out = enc({"features": torch.randn(3, 5, 6), "lengths": torch.tensor([5, 2, 1])})
    assert out.shape == (3, enc.out_dim)
    assert enc.out_dim == (16 if options.get("bidirectional") else 8)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())


@pytest.mark.parametrize("options", KINDS)
def test_garbage_padding_never_changes_the_output(options):
    enc = encoder(options)
    feats = torch.randn(3, 5, 6, dtype=torch.float64)
    lengths = torch.tensor([5, 3, 1])
    out = enc({"features": feats, "lengths": lengths})
    garbage = torch.randn(3, 4, 6, dtype=torch.float64) * 1e6
    garbage[0, 0, 0], garbage[1, 2, 3], garbage[2, 1, 1] = float("nan"), float("inf"), -float("inf")
    longer = torch.cat([feats, garbage], dim=1)
    assert torch.allclose(enc({"features": longer, "lengths": lengths}), out, atol=1e-12)
    # garbage in the padding already there, same length
    dirty = feats.clone()
    dirty[1, 3:], dirty[2, 1:] = float("nan"), 1e9
    assert torch.allclose(enc({"features": dirty, "lengths": lengths}), out, atol=1e-12)


@pytest.mark.parametrize("options", KINDS)
def test_each_sample_is_encoded_as_if_alone_and_unpadded(options):
    enc = encoder(options)
    feats = torch.randn(3, 5, 6, dtype=torch.float64)
    lengths = [5, 3, 2]
    out = enc({"features": feats, "lengths": torch.tensor(lengths)})
    for i, n in enumerate(lengths):
        alone = enc(feats[i : i + 1, :n])  # a plain tensor: every step real
        assert torch.allclose(out[i : i + 1], alone, atol=1e-10)


def test_gru_output_is_the_last_hidden_state_of_the_real_steps():
    enc = encoder({"kind": "gru"})
    feats = torch.randn(2, 4, 6, dtype=torch.float64)
    out = enc({"features": feats, "lengths": torch.tensor([4, 2])})
    # torch.nn.GRU's equations, one step at a time
    g = enc.gru
    w_ih, w_hh, b_ih, b_hh = g.weight_ih_l0, g.weight_hh_l0, g.bias_ih_l0, g.bias_hh_l0
    for i, n in enumerate([4, 2]):
        h = torch.zeros(8, dtype=torch.float64)
        for t in range(n):
            gi, gh = w_ih @ feats[i, t] + b_ih, w_hh @ h + b_hh
            r = torch.sigmoid(gi[:8] + gh[:8])
            z = torch.sigmoid(gi[8:16] + gh[8:16])
            c = torch.tanh(gi[16:] + r * gh[16:])
            h = (1 - z) * c + z * h
        assert torch.allclose(out[i], h, atol=1e-12)


@pytest.mark.parametrize("options", KINDS)
def test_lengths_mask_and_plain_tensor_forms_agree(options):
    enc = encoder(options)
    feats = torch.randn(2, 4, 6, dtype=torch.float64)
    by_length = enc({"features": feats, "lengths": torch.tensor([4, 3])})
    mask = torch.tensor([[True] * 4, [True, True, True, False]])
    assert torch.allclose(enc({"features": feats, "mask": mask}), by_length, atol=1e-12)
    assert torch.allclose(enc(feats)[0], by_length[0], atol=1e-12)


@pytest.mark.parametrize("options", KINDS)
def test_an_empty_sequence_encodes_to_zero_and_is_the_default_blank(options):
    enc = encoder(options)
    feats = torch.randn(2, 4, 6, dtype=torch.float64)
    out = enc({"features": feats, "lengths": torch.tensor([0, 4])})
    assert torch.equal(out[0], torch.zeros(enc.out_dim, dtype=torch.float64))
    assert torch.isfinite(out).all() and out[1].abs().sum() > 0
    blank = enc.blank_input({"features": feats, "lengths": torch.tensor([4, 2])})
    assert blank["features"].shape == (1, 4, 6) and blank["lengths"].tolist() == [0]
    assert torch.equal(enc(blank), torch.zeros(1, enc.out_dim, dtype=torch.float64))


def test_zeros_blank_keeps_every_step_with_zero_features():
    enc = SequenceEncoder(6, hidden=8, blank="zeros")
    feats = torch.randn(3, 4, 6)
    blank = enc.blank_input(feats)
    assert isinstance(blank, torch.Tensor) and blank.shape == (1, 4, 6) and not blank.any()
    blank = enc.blank_input({"features": feats, "lengths": torch.tensor([4, 1, 2])})
    assert set(blank) == {"features"} and not blank["features"].any()


def test_three_modality_model_embeds_the_blank_of_each_encoder():
    torch.manual_seed(0)
    text = SequenceEncoder(6, hidden=8)
    audio, visual = AudioResNet18(width=2), VisualResNet18(width=2)
    model = MultimodalModel({"audio": audio, "visual": visual, "text": text}, 3, embed_dim=4)
    inputs = {
        "audio": torch.randn(2, 32, 32),
        "visual": torch.randn(2, 3, 2, 16, 16),
        "text": {"features": torch.randn(2, 5, 6), "lengths": torch.tensor([5, 3])},
    }
    assert model(inputs).logits.shape == (2, 3)
    blanks = model.blank_embeddings(inputs)
    assert {m: tuple(h.shape) for m, h in blanks.items()} == {m: (1, 4) for m in inputs}
    model.eval()
    silence = torch.full((1, 32, 32), audio.silence)
    assert torch.allclose(blanks["audio"], model.embed({**inputs, "audio": silence})["audio"][:1])
    # the empty sequence's encoder output is 0, so its embedding is the layer's bias, GELU'd
    lin = model.text_embedding[0]
    assert torch.allclose(blanks["text"], torch.nn.functional.gelu(lin.bias)[None])


def test_bad_options_and_inputs_name_the_field():
    with pytest.raises(ConfigError, match="kind"):
        SequenceEncoder(6, kind="lstm")
    with pytest.raises(ConfigError, match="blank"):
        SequenceEncoder(6, blank="noise")
    with pytest.raises(ConfigError, match="heads"):
        SequenceEncoder(6, kind="transformer", hidden=10, heads=4)
    enc = SequenceEncoder(6, hidden=8)
    with pytest.raises(ConfigError, match="in_features"):
        enc(torch.randn(1, 3, 5))
    with pytest.raises(ConfigError, match="lengths"):
        enc({"features": torch.randn(2, 3, 6), "lengths": torch.tensor([4, 1])})
    with pytest.raises(ConfigError, match="mask"):
        enc({"features": torch.randn(1, 3, 6), "mask": torch.tensor([[False, True, True]])})
    with pytest.raises(ConfigError, match="features"):
        enc({"audio": torch.randn(1, 3, 6)})
