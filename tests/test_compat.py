"""The names of 0.1 that :mod:`balgrad.compat` keeps for this release: each still works,
warns with a DeprecationWarning naming its replacement (at the caller's line), and gives
what its replacement gives; the replacements themselves never warn."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import balgrad
from balgrad.data._base import DatasetInfo, Example, MultimodalDataset
from balgrad.data._batch import Batch
from balgrad.data._impairments import Condition
from balgrad.data._pipeline import InputPipeline
from balgrad.integrations._collate import ExampleCollator
from balgrad.models import MultimodalModel
from balgrad.strategies import MSLR
from balgrad.strategies._registry import strategy_options


class Lin(nn.Module):
    def __init__(self, n_in: int, out_dim: int = 4):
        super().__init__()
        self.linear, self.out_dim = nn.Linear(n_in, out_dim), out_dim

    def forward(self, x):
        return self.linear(x)


class Mean(nn.Module):
    """A frozen image tower: mean pixel per channel (its features are cached)."""

    out_dim, trainable, identity = 3, False, "mean"

    def forward(self, x):
        return x.mean(dim=(2, 3))

    def preprocess(self, x):
        return x


class Length(nn.Module):
    """A live text tower: the string's length."""

    out_dim, trainable = 1, True
    vocab_size, special_ids = 10, (0,)

    def tokenize(self, texts):
        ids = torch.tensor([[len(t)] for t in texts])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def forward(self, tokens):
        return tokens["input_ids"].float()


class Tiny(MultimodalDataset):
    info = DatasetInfo(
        "tiny", "single_label", ["a", "b"], modalities={"image": "image", "text": "text"}
    )
    split = "test"

    def __len__(self):
        return 6

    def get(self, i):
        return Example({"image": torch.full((3, 2, 2), i / 6), "text": "x" * (i + 1)}, i % 2, i)


def deprecated(match: str):
    """pytest.warns for one of compat's warnings, which names the replacement."""
    return pytest.warns(DeprecationWarning, match=match)


def pair(seed: int = 0):
    torch.manual_seed(seed)
    return Lin(5), Lin(7)


def inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(4, 5, generator=g), "text": torch.randn(4, 7, generator=g)}


# -- TwoTowerModel ---------------------------------------------------------------------------
def test_two_tower_model_is_reachable_where_it_was_and_warns():
    with deprecated(r"balgrad\.TwoTowerModel is deprecated.*use balgrad\.MultimodalModel"):
        top = balgrad.TwoTowerModel
    with deprecated(r"balgrad\.models\.TwoTowerModel.*use balgrad\.models\.MultimodalModel"):
        from balgrad.models import TwoTowerModel
    assert top is TwoTowerModel and issubclass(TwoTowerModel, MultimodalModel)
    assert "TwoTowerModel" not in balgrad.__all__
    with pytest.raises(AttributeError, match="no attribute 'NoSuchName'"):
        balgrad.models.NoSuchName  # noqa: B018


def test_two_tower_model_warns_and_equals_the_multimodal_model_it_is():
    from balgrad.compat import TwoTowerModel

    with deprecated(r'TwoTowerModel\(image_encoder.*use MultimodalModel\(\{"image"') as rec:
        old = TwoTowerModel(*pair(), 3, embed_dim=6, fusion="sum")
    assert rec[0].filename == __file__  # at the caller's line
    new = MultimodalModel(dict(zip(("image", "text"), pair())), 3, embed_dim=6, fusion="sum")
    # the same construction order: equal weights under one seed, and the same keys
    assert list(old.state_dict()) == list(new.state_dict())
    for k, v in old.state_dict().items():
        assert torch.equal(v, new.state_dict()[k]), k
    x, drop = inputs(), {"image": torch.tensor([True, False, False, True])}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        named = old(x, drop=drop)  # the named form does not warn
        want = new(x, drop=drop)
    with deprecated(r"model\(x_v, x_l, drop_image, drop_text\).*drop="):
        positional = old(x["image"], x["text"], drop["image"])
    for out in (named, positional):
        torch.testing.assert_close(out.logits, want.logits)
        torch.testing.assert_close(out.unimodal["text"], want.unimodal["text"])


def test_a_two_tower_state_dict_loads_into_a_multimodal_model():
    from balgrad.compat import TwoTowerModel

    with deprecated("TwoTowerModel"):
        old = TwoTowerModel(*pair(seed=3), 4, embed_dim=6, unimodal_head="separate")
    new = MultimodalModel(
        dict(zip(("image", "text"), pair(seed=9))), 4, embed_dim=6, unimodal_head="separate"
    )
    x = inputs()
    assert not torch.allclose(new(x).logits, old(x).logits)  # other weights before loading
    new.load_state_dict(old.state_dict(), strict=True)
    torch.testing.assert_close(new(x).logits, old(x).logits, rtol=0, atol=0)
    torch.testing.assert_close(new(x).unimodal["image"], old(x).unimodal["image"], rtol=0, atol=0)


# -- attributes --------------------------------------------------------------------------------
def test_model_output_aliases_warn_and_read_the_named_fields():
    out = MultimodalModel(dict(zip(("image", "text"), pair())), 3, embed_dim=6)(inputs())
    for old, new in [
        ("logits_image", out.unimodal["image"]),
        ("logits_text", out.unimodal["text"]),
        ("h_image", out.embeddings["image"]),
        ("h_text", out.embeddings["text"]),
    ]:
        with deprecated(rf"ModelOutput\.{old} is deprecated.*use output\.") as rec:
            value = getattr(out, old)
        assert value is new and rec[0].filename == __file__


def test_batch_aliases_warn_and_read_the_named_fields():
    mask = torch.tensor([True, False])
    batch = Batch({"image": torch.ones(2, 3), "text": torch.zeros(2, 1)}, torch.zeros(2), None)
    batch.drop = {"text": mask}
    with deprecated(r'Batch\.image is deprecated.*use batch\.inputs\["image"\]'):
        assert batch.image is batch.inputs["image"]
    with deprecated(r"Batch\.text"):
        assert batch.text is batch.inputs["text"]
    with deprecated(r'Batch\.drop_image.*batch\.drop\.get\("image"\)'):
        assert batch.drop_image is None  # no sample of it dropped
    with deprecated(r"Batch\.drop_text"):
        assert batch.drop_text is mask


def test_old_example_forms_warn_and_build_the_named_example():
    image, label = torch.rand(3, 2, 2), torch.tensor(1)
    want = Example({"image": image, "text": "a cat"}, label, 5)
    for args, kwargs in [
        ((image, "a cat", label, 5), {}),
        ((), {"image": image, "text": "a cat", "label": label, "index": 5}),
    ]:
        with deprecated(r"Example\(image, text, label, index\).*use Example\(\{"):
            old = Example(*args, **kwargs)
        assert old.inputs == want.inputs and old.label is label and old.index == 5
    with deprecated(r'Example\.image is deprecated.*example\.inputs\["image"\]'):
        assert want.image is image
    with deprecated(r"Example\.text"):
        assert want.text == "a cat"


# -- constructors --------------------------------------------------------------------------------
def test_old_input_pipeline_warns_and_gives_the_same_batches():
    ds = Tiny()
    with deprecated(r"InputPipeline\(image_encoder, text_encoder.*use InputPipeline\(\{"):
        old = InputPipeline(Mean(), Length(), "embedding", progress=False)
    with deprecated("InputPipeline"):
        by_name = InputPipeline(image_encoder=Mean(), text_encoder=Length(), progress=False)
    new = InputPipeline({"image": Mean(), "text": Length()}, missing="embedding", progress=False)
    assert old.missing == "embedding" and by_name.missing == "input"
    assert list(old.encoders) == list(by_name.encoders) == ["image", "text"]
    condition = Condition("missing_image", ratio=0.5)
    got = next(iter(old.loader(ds, condition, batch_size=6)))
    want = next(iter(new.loader(ds, condition, batch_size=6)))
    for m in ("image", "text"):
        want_m, got_m = want.inputs[m], got.inputs[m]
        if isinstance(want_m, dict):
            want_m, got_m = want_m["input_ids"], got_m["input_ids"]
        assert torch.equal(got_m, want_m)
    assert torch.equal(got.drop["image"], want.drop["image"])


def test_old_example_collator_warns_and_collates_the_same():
    examples = [Tiny()[i] for i in range(3)]
    with deprecated(r"ExampleCollator\(image_encoder, text_encoder.*use ExampleCollator\(\{"):
        old = ExampleCollator(Mean(), Length())
    got = old(examples)
    want = ExampleCollator({"image": Mean(), "text": Length()})(examples)
    assert torch.equal(got["image"], want["image"]) and torch.equal(got["labels"], want["labels"])
    assert torch.equal(got["text"]["input_ids"], want["text"]["input_ids"])


def test_old_mslr_scales_warn_and_set_the_same_rates():
    model = MultimodalModel(dict(zip(("image", "text"), pair())), 3)
    with deprecated(r"MSLR\(image_lr_scale=.*use MSLR\(lr_scales="):
        old = MSLR(mode="keep", image_lr_scale=2.0, text_lr_scale=0.5, head_lr_scale=3.0)
    new = MSLR(mode="keep", lr_scales={"image": 2.0, "text": 0.5, "head": 3.0})
    rates = {g["name"]: g["lr"] for g in new.param_groups(model, 0.1)}
    assert rates == pytest.approx({"image": 0.2, "text": 0.05, "head": 0.3})
    assert {g["name"]: g["lr"] for g in old.param_groups(model, 0.1)} == rates
    with deprecated("MSLR"):  # lr_scales wins where both name a group, as in 0.1
        both = MSLR(image_lr_scale=2.0, lr_scales={"image": 4.0})
    assert both.scales == {"image": 4.0}
    # the options the registry (config files, the CLI) checks are the current ones only
    assert "image_lr_scale" not in strategy_options("mslr") and "lr_scales" in strategy_options(
        "mslr"
    )


def test_the_current_forms_never_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Example({"image": torch.zeros(1), "text": ""}, 0, 0)
        InputPipeline({"image": Mean(), "text": Length()}, progress=False)
        ExampleCollator({"image": Mean(), "text": Length()})
        MSLR(lr_scales={"image": 2.0})
        MultimodalModel(dict(zip(("image", "text"), pair())), 3)(inputs())


# -- backbone functions -----------------------------------------------------------------------
def test_old_backbone_functions_warn_and_call_the_kind_registry():
    from balgrad import backbones
    from balgrad.backbones import create_text_encoder  # found; it warns when called

    with deprecated(r'create_image_encoder\(\.\.\.\).*use create_backbone\("image", \.\.\.\)'):
        old = backbones.create_image_encoder("cnn", out_dim=5, width=4, image_size=8)
    new = backbones.create_backbone("image", "cnn", out_dim=5, width=4, image_size=8)
    assert type(old) is type(new) and old.identity == new.identity and old.out_dim == 5
    with deprecated(r'create_text_encoder.*use create_backbone\("text"'):
        text = create_text_encoder("small", texts=["a b", "c"], out_dim=3)
    assert text.out_dim == 3 and text.identity.startswith("small-text(")
    try:
        with deprecated(r'register_text_backbone.*use register_backbone\("text"'):
            backbones.register_text_backbone("old_text_test", lambda: None, "returns nothing")
        assert "old_text_test" in backbones.BACKBONES["text"]
        assert "old_text_test" not in backbones.BACKBONES["image"]
    finally:
        backbones.BACKBONES["text"].unregister("old_text_test")
    with pytest.raises(AttributeError, match="create_audio_encoder"):
        backbones.create_audio_encoder  # noqa: B018 - never a name of 0.1
