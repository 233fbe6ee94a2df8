"""MultimodalModel: any number of named modalities (SPEC section 6)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from balgrad.errors import ConfigError
from balgrad.models import FUSIONS, create_fusion
from balgrad.models._multimodal import MultimodalModel

DIMS = {"audio": 5, "visual": 7, "text": 3}


class Tower(nn.Module):
    def __init__(self, d_in, d_out=4):
        super().__init__()
        self.lin, self.out_dim = nn.Linear(d_in, d_out), d_out

    def forward(self, x):
        return torch.tanh(self.lin(x))


def make(fusion="concat", names=("audio", "visual", "text"), **kw):
    torch.manual_seed(0)
    return MultimodalModel(
        {m: Tower(DIMS[m]) for m in names}, 4, embed_dim=6, fusion=fusion, **kw
    ).double()


def inputs(names=("audio", "visual", "text"), n=5):
    g = torch.Generator().manual_seed(1)
    return {m: torch.randn(n, DIMS[m], generator=g, dtype=torch.float64) for m in names}


def test_fusions_over_m_embeddings():
    a, b, c = (torch.full((1, 2), float(v)) for v in (1, 10, 100))
    assert torch.equal(
        create_fusion("concat", 2, 3)(a, b, c), torch.tensor([[1.0, 1, 10, 10, 100, 100]])
    )
    assert torch.equal(create_fusion("sum", 2, 3)(a, b, c), torch.tensor([[111.0, 111.0]]))
    attention = create_fusion("attention", 4, 3)
    assert attention.type_embedding.shape == (3, 4) and attention.out_dim == 4
    with pytest.raises(ValueError, match="3 modalities got 2"):
        create_fusion("concat", 2, 3)(a, b)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_unimodal_logits_are_the_detached_head_with_every_other_embedding_zeroed(fusion):
    model = make(fusion)
    out = model(inputs())
    assert out.modalities == ("audio", "visual", "text")
    for m in model.modalities:
        alone = [
            out.embeddings[k] if k == m else torch.zeros_like(out.embeddings[k])
            for k in model.modalities
        ]
        torch.testing.assert_close(out.unimodal[m], model.head(*alone))
        assert not any(  # theta_T is detached in the unimodal passes
            g is not None
            for g in torch.autograd.grad(
                out.unimodal[m].sum(), list(model.head.parameters()), allow_unused=True
            )
        )
    torch.testing.assert_close(out.logits, model.head(*out.embeddings.values()))


def test_separate_heads_are_one_linear_head_per_modality():
    model = make(unimodal_head="separate")
    out = model(inputs())
    for m in model.modalities:
        torch.testing.assert_close(out.unimodal[m], getattr(model, f"{m}_head")(out.embeddings[m]))
    assert len(model.parameter_groups()["unimodal_heads"]) == 6


@pytest.mark.parametrize("fusion", FUSIONS)
def test_parameter_groups_partition_the_trainable_parameters_by_modality(fusion):
    model = make(fusion)
    groups = model.parameter_groups()
    assert list(groups) == ["audio", "visual", "text", "head"]
    ids = [id(p) for ps in groups.values() for p in ps]
    assert sorted(ids) == sorted(id(p) for p in model.parameters()) and len(set(ids)) == len(ids)
    for m in model.modalities:
        owned = {
            id(p) for p in [*model.encoders[m].parameters(), *model.embeddings[m].parameters()]
        }
        assert {id(p) for p in groups[m]} == owned


def test_frozen_encoders_leave_their_group():
    model = make()
    for p in model.encoders["visual"].parameters():
        p.requires_grad_(False)
    assert len(model.parameter_groups()["visual"]) == 2  # the embedding layer only


def test_state_dict_keys_name_each_modality():
    keys = set(make().state_dict())
    assert {
        "audio_encoder.lin.weight",
        "text_embedding.0.weight",
        "head.classifier.1.weight",
    } <= keys


def test_drop_zeroes_that_modalitys_embedding_for_those_samples():
    model = make()
    x = inputs()
    mask = torch.tensor([True, False, True, False, False])
    out = model(x, drop={"visual": mask})
    assert torch.count_nonzero(out.embeddings["visual"][mask]) == 0
    torch.testing.assert_close(out.embeddings["audio"], model(x).embeddings["audio"])


def test_readout_columns_reproduce_the_logits():
    for fusion in ("concat", "sum"):
        model = make(fusion)
        out = model(inputs())
        r = model.readout()
        z = sum(out.embeddings[m] @ r.weight[:, r.columns[m]].T for m in model.modalities) + r.bias
        torch.testing.assert_close(z, out.logits)
    assert make("attention").readout() is None
    assert make(head_hidden=3).readout() is None


@pytest.mark.parametrize(
    "names,match",
    [
        (("audio",), "at least two"),
        (("audio", "audio"), "more than once"),
        (("audio", "head"), "reserved"),
        (("audio", "2d"), "not a valid modality name"),
    ],
)
def test_bad_modality_names_are_refused(names, match):
    with pytest.raises(ConfigError, match=match):
        MultimodalModel(
            {m: Tower(3) for m in names} if len(set(names)) == len(names) else _dupes(names), 4
        )


def _dupes(names):
    class Dupes(dict):  # a mapping that yields the same key twice
        def __iter__(self):
            return iter(names)

        def __getitem__(self, k):
            return Tower(3)

    return Dupes({n: None for n in names})


def test_inputs_must_name_exactly_the_models_modalities():
    model = make()
    x = inputs()
    with pytest.raises(ConfigError, match=r"missing \['text'\]"):
        model({"audio": x["audio"], "visual": x["visual"]})
    with pytest.raises(ConfigError, match=r"unknown \['depth'\]"):
        model({**x, "depth": x["audio"]})
    with pytest.raises(ConfigError, match="unknown modalities"):
        model(x, drop={"depth": torch.zeros(5, dtype=torch.bool)})
    with pytest.raises(ConfigError, match="out_dim"):
        MultimodalModel({"a": nn.Linear(2, 2), "b": Tower(3)}, 4)
