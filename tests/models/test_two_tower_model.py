"""The (image, text) model of SPEC section 1: fusions, unimodal logits, parameter groups."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from balgrad.errors import ConfigError
from balgrad.models import FUSIONS, MultimodalModel, create_fusion


class LinearEncoder(nn.Module):
    def __init__(self, in_dim, out_dim=5):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.out_dim = out_dim

    def forward(self, x):
        return self.linear(x)


def make(fusion="concat", task="single_label", unimodal_head="shared", embed_dim=6, **kw):
    torch.manual_seed(0)
    model = MultimodalModel(
        {"image": LinearEncoder(3), "text": LinearEncoder(4)},
        num_classes=3,
        task=task,
        embed_dim=embed_dim,
        fusion=fusion,
        unimodal_head=unimodal_head,
        **kw,
    ).double()
    if fusion == "attention":
        with torch.no_grad():
            model.head.fusion.type_embedding.normal_()
    return model


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(5, 3, generator=g).double(), torch.randn(5, 4, generator=g).double()


@pytest.fixture(autouse=True)
def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- fusion ----------------------------------------------------------------------------------
def test_concat_and_sum_by_hand():
    a = torch.tensor([[1.0, 2.0]])
    b = torch.tensor([[10.0, 20.0]])
    assert torch.equal(create_fusion("concat", 2)(a, b), torch.tensor([[1.0, 2.0, 10.0, 20.0]]))
    assert torch.equal(create_fusion("sum", 2)(a, b), torch.tensor([[11.0, 22.0]]))
    assert create_fusion("concat", 2).out_dim == 4 and create_fusion("sum", 2).out_dim == 2


@pytest.mark.parametrize("dim", [6, 8])
def test_attention_fusion_by_hand(dim):
    """Two tokens (+ type embeddings), one self-attention layer, residual, LayerNorm, mean."""
    torch.manual_seed(1)
    fusion = create_fusion("attention", dim).double()
    with torch.no_grad():
        fusion.type_embedding.normal_()
    h_v, h_l = torch.randn(4, dim).double(), torch.randn(4, dim).double()
    attn = fusion.attention
    heads = attn.num_heads
    tokens = torch.stack([h_v, h_l], 1) + fusion.type_embedding  # [B, 2, d]
    q, k, v = (tokens @ attn.in_proj_weight.T + attn.in_proj_bias).chunk(3, dim=-1)

    def split(x):  # [B, 2, d] -> [B, heads, 2, d/heads]
        return x.view(4, 2, heads, dim // heads).transpose(1, 2)

    scores = split(q) @ split(k).transpose(-1, -2) / (dim // heads) ** 0.5
    mixed = (scores.softmax(-1) @ split(v)).transpose(1, 2).reshape(4, 2, dim)
    attended = mixed @ attn.out_proj.weight.T + attn.out_proj.bias
    expected = torch.nn.functional.layer_norm(
        tokens + attended, (dim,), fusion.norm.weight, fusion.norm.bias
    ).mean(1)
    torch.testing.assert_close(fusion(h_v, h_l), expected)
    assert fusion.out_dim == dim


def test_unknown_fusion_is_named():
    with pytest.raises(ConfigError, match="fusion.*gated"):
        create_fusion("gated", 4)


# -- unimodal logits ---------------------------------------------------------------------------
@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("task", ["single_label", "multi_label"])
def test_unimodal_logits_are_the_head_with_the_other_embedding_zeroed(fusion, task):
    model = make(fusion, task)
    x_v, x_l = batch()
    out = model({"image": x_v, "text": x_l})
    h_v = model.image_embedding(model.image_encoder(x_v))
    h_l = model.text_embedding(model.text_encoder(x_l))
    torch.testing.assert_close(out.embeddings["image"], h_v)
    torch.testing.assert_close(out.logits, model.head(h_v, h_l))
    torch.testing.assert_close(out.unimodal["image"], model.head(h_v, torch.zeros_like(h_l)))
    torch.testing.assert_close(out.unimodal["text"], model.head(torch.zeros_like(h_v), h_l))


@pytest.mark.parametrize("fusion", FUSIONS)
def test_unimodal_losses_never_reach_the_head(fusion):
    model = make(fusion)
    x_v, x_l = batch()
    out = model({"image": x_v, "text": x_l})
    head = [p for p in model.head.parameters()]
    image = list(model.image_embedding.parameters()) + list(model.image_encoder.parameters())
    text = list(model.text_embedding.parameters()) + list(model.text_encoder.parameters())
    loss = (out.unimodal["image"] ** 2).sum() + (out.unimodal["text"] ** 3).sum()
    grads = torch.autograd.grad(loss, head + image + text, allow_unused=True)
    for g in grads[: len(head)]:
        assert g is None or torch.count_nonzero(g) == 0
    # but they reach the towers, each only its own
    assert any(
        g is not None and g.abs().sum() > 0 for g in grads[len(head) : len(head) + len(image)]
    )
    g_v = torch.autograd.grad(out.unimodal["image"].sum(), text, allow_unused=True)
    assert all(g is None or torch.count_nonzero(g) == 0 for g in g_v)
    # the fused logits do reach the head
    g_head = torch.autograd.grad(out.logits.sum(), head, allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in g_head)


def test_separate_heads():
    model = make("concat", unimodal_head="separate")
    x_v, x_l = batch()
    out = model({"image": x_v, "text": x_l})
    torch.testing.assert_close(out.unimodal["image"], model.image_head(out.embeddings["image"]))
    torch.testing.assert_close(out.unimodal["text"], model.text_head(out.embeddings["text"]))
    groups = model.parameter_groups()
    assert {id(p) for p in groups["unimodal_heads"]} == {
        id(p) for p in [*model.image_head.parameters(), *model.text_head.parameters()]
    }


def test_drop_zeroes_the_embedding_of_that_sample():
    model = make("concat")
    x_v, x_l = batch()
    drop = torch.tensor([True, False, False, True, False])
    h = model.embed({"image": x_v, "text": x_l}, drop={"image": drop})
    h_v = h["image"]
    assert torch.count_nonzero(h_v[drop]) == 0
    torch.testing.assert_close(h_v[~drop], model.image_embedding(model.image_encoder(x_v))[~drop])
    h_l2 = model.embed({"image": x_v, "text": x_l}, drop={"text": drop})["text"]
    assert torch.count_nonzero(h_l2[drop]) == 0


# -- parameter groups --------------------------------------------------------------------------
@pytest.mark.parametrize("fusion", FUSIONS)
def test_parameter_groups_partition_the_trainable_parameters(fusion):
    model = make(fusion)
    groups = model.parameter_groups()
    assert set(groups) == {"image", "text", "head"}
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    assert {id(p) for p in groups["head"]} == {id(p) for p in model.head.parameters()}
    if fusion == "attention":  # F's parameters belong to θ_T
        fusion_ids = {id(p) for p in model.head.fusion.parameters()}
        assert fusion_ids and fusion_ids <= {id(p) for p in groups["head"]}


def test_frozen_backbone_left_out():
    model = make("concat")
    model.text_encoder.requires_grad_(False)
    groups = model.parameter_groups()
    text_ids = {id(p) for p in groups["text"]}
    assert not text_ids & {id(p) for p in model.text_encoder.parameters()}
    assert text_ids == {id(p) for p in model.text_embedding.parameters()}


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"unimodal_head": "both"}, "unimodal_head"),
        ({"task": "regression"}, "task"),
        ({"fusion": "film"}, "fusion"),
    ],
)
def test_bad_options_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        make(**kwargs)


def test_single_class_rejected():
    with pytest.raises(ConfigError, match="num_classes"):
        MultimodalModel({"image": LinearEncoder(3), "text": LinearEncoder(4)}, num_classes=1)
