"""The protocol for three named modalities of different kinds: which inputs each condition
changes (and only those), blank inputs per kind, frozen towers' features, embedding mode,
and the table's and sweep's roles (SPEC section 6)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from balgrad.data._base import DatasetInfo, Example, MultimodalDataset
from balgrad.data._impairments import Condition
from balgrad.data._pipeline import InputPipeline
from balgrad.errors import ConfigError
from balgrad.evaluate._protocol import Evaluator, ProtocolConfig
from balgrad.models import MultimodalModel

MODALITIES = {"image": "image", "audio": "audio", "motion": "features"}


class Three(MultimodalDataset):
    def __init__(self, n=40):
        self.info = DatasetInfo("three", "single_label", ["a", "b"], modalities=MODALITIES)
        self.split = "test"
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, 1, 4, 4, generator=g)
        self.waves = torch.randn(n, 32, generator=g)
        self.motion = torch.randn(n, 5, 3, generator=g) * torch.tensor([1.0, 4.0, 0.5])
        self.labels = [i % 2 for i in range(n)]

    def __len__(self):
        return len(self.labels)

    def get(self, i):
        inputs = {
            "image": self.images[i],
            "audio": self.waves[i],
            "motion": {"features": self.motion[i], "lengths": 5},
        }
        return Example(inputs=inputs, label=torch.tensor(self.labels[i]), index=i)


class Flat(nn.Module):
    """Flattens its input to a feature; ``frozen`` ones are encoded once and cached."""

    def __init__(self, out_dim, frozen=False):
        super().__init__()
        self.out_dim, self.identity, self.trainable = out_dim, f"flat{out_dim}", not frozen
        self.scale = nn.Parameter(torch.ones(()), requires_grad=not frozen)

    def forward(self, x):
        x = x["features"] if isinstance(x, dict) else x
        return self.scale * x.reshape(x.shape[0], -1).float()


def encoders(frozen=()):
    dims = {"image": 16, "audio": 32, "motion": 15}
    return {m: Flat(d, m in frozen) for m, d in dims.items()}


def batch_of(pipeline, ds, condition):
    return next(iter(pipeline.loader(ds, condition, batch_size=len(ds))))


def raw(ds, m):
    return {"image": ds.images, "audio": ds.waves, "motion": ds.motion}[m]


def flat_input(batch, m):
    x = batch.inputs[m]
    return x["features"] if isinstance(x, dict) else x


@pytest.mark.parametrize("m", list(MODALITIES))
def test_missing_m_blanks_exactly_its_hit_samples_and_nothing_else(m):
    ds, pipe = Three(), InputPipeline(encoders=encoders())
    cond = Condition(f"missing_{m}", ratio=0.5, seed=3)
    hit = torch.from_numpy(cond.mask(len(ds)))
    b = batch_of(pipe, ds, cond)
    assert torch.equal(flat_input(b, m)[hit], torch.zeros_like(raw(ds, m)[hit]))
    assert torch.equal(flat_input(b, m)[~hit], raw(ds, m)[~hit])
    for other in MODALITIES:
        if other != m:
            assert torch.equal(flat_input(b, other), raw(ds, other))


@pytest.mark.parametrize("m", list(MODALITIES))
def test_only_m_blanks_every_other_modality_on_every_sample(m):
    ds, pipe = Three(), InputPipeline(encoders=encoders())
    b = batch_of(pipe, ds, Condition(f"only_{m}"))
    assert torch.equal(flat_input(b, m), raw(ds, m))
    for other in MODALITIES:
        if other != m:
            assert not flat_input(b, other).any()


def test_noise_reaches_only_the_named_modality_and_is_the_same_every_time():
    ds, pipe = Three(), InputPipeline(encoders=encoders())
    cond = Condition("noisy_motion", level=0.5, seed=1)
    b1, b2 = batch_of(pipe, ds, cond), batch_of(pipe, ds, cond)
    assert torch.equal(flat_input(b1, "motion"), flat_input(b2, "motion"))
    assert torch.equal(flat_input(b1, "image"), ds.images)
    assert torch.equal(flat_input(b1, "audio"), ds.waves)
    added = flat_input(b1, "motion") - ds.motion
    real_std = ds.motion.reshape(-1, 3).std(0, unbiased=False)
    # relative to each feature's std: the noise of the 4x-wide feature is 4x as wide
    ratio = added.reshape(-1, 3).std(0) / (0.5 * real_std)
    assert ratio.numpy() == pytest.approx([1.0, 1.0, 1.0], abs=0.25)
    # in a shuffled order each sample still gets its own noise
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(5)).tolist()
    shuffled = next(iter(pipe.loader(ds, cond, batch_size=len(ds), sampler=order)))
    assert torch.equal(flat_input(shuffled, "motion"), flat_input(b1, "motion")[order])


def test_a_frozen_towers_missing_features_are_its_full_features_with_the_blank_encoding():
    ds = Three()
    pipe = InputPipeline(encoders=encoders(frozen=("audio",)))
    cond = Condition("missing_audio", ratio=0.3, seed=2)
    hit = torch.from_numpy(cond.mask(len(ds)))
    feats = pipe.features(ds, cond, "audio")
    full = pipe.encoders["audio"](ds.waves).detach()  # computed another way: the tower itself
    blank = pipe.encoders["audio"](torch.zeros(1, 32)).detach()[0]
    assert torch.equal(feats[~hit], full[~hit])
    assert torch.equal(feats[hit], blank.expand(int(hit.sum()), -1))
    assert torch.equal(batch_of(pipe, ds, cond).inputs["audio"], feats)
    # only_image blanks the frozen audio tower for every sample, from the same cache
    assert torch.equal(
        pipe.features(ds, Condition("only_image"), "audio"), blank.expand(len(ds), -1)
    )


def test_embedding_mode_drops_the_missing_modalities_instead():
    ds = Three()
    pipe = InputPipeline(encoders=encoders(), missing="embedding")
    b = batch_of(pipe, ds, Condition("only_audio"))
    assert set(b.drop) == {"image", "motion"} and all(d.all() for d in b.drop.values())
    assert torch.equal(flat_input(b, "image"), ds.images)  # the real input, zeroed later


def test_table_roles_and_sweep_for_three_modalities_and_two():
    three = ProtocolConfig(modalities=MODALITIES, noise={"audio": 10.0})
    assert list(three.table_conditions()) == [
        "full",
        *(f"missing_{m}" for m in MODALITIES),
        *(f"noisy_{m}" for m in MODALITIES),
        *(f"only_{m}" for m in MODALITIES),
    ]
    levels = {c.modality: c.level for c in three.table_conditions().values() if c.action == "noisy"}
    assert levels == {"image": 0.5, "audio": 10.0, "motion": 1.0}
    two = ProtocolConfig(modalities={"image": "image", "text": "text"}, noise={"image": 0.3})
    assert list(two.table_conditions()) == [
        "full", "missing_image", "missing_text", "noisy_image", "noisy_text"
    ]  # fmt: skip
    assert two.table_conditions()["noisy_image"].level == 0.3
    with pytest.raises(Exception, match="p"):
        ProtocolConfig(modalities={"image": "image", "text": "text"}, noise={"text": 2.0})


def test_evaluator_scores_every_role_and_every_sweep_point():
    ds = Three()
    pipe = InputPipeline(encoders=encoders())
    model = MultimodalModel(pipe.model_encoders(), 2, embed_dim=4)
    cfg = ProtocolConfig(modalities=MODALITIES, sweep_ratios=(0.0, 0.5, 1.0), batch_size=16)
    result = Evaluator(pipe, ds, ["accuracy"], cfg).run(model)
    assert list(result["conditions"]) == list(cfg.table_conditions())
    assert [sorted(row) for row in result["sweep"]] == [
        sorted(["ratio", *(f"missing_{m}" for m in MODALITIES)])
    ] * 3
    # r = 0 impairs nothing: every modality's point is the full score
    full = result["conditions"]["full"]["accuracy"]
    assert all(result["sweep"][0][f"missing_{m}"]["accuracy"] == full for m in MODALITIES)


class WithReadout(Three):
    """Records what the protocol hands its read-out: the logits and the split indices."""

    def __init__(self, key="seen"):
        super().__init__()
        self.key, self.calls = key, []

    def readout_scores(self, logits, index):
        self.calls.append((logits.clone(), index.clone()))
        return {self.key: float(index.sum())}


def test_a_datasets_readout_gets_every_sample_index_with_its_logits_in_every_condition():
    ds = WithReadout()
    pipe = InputPipeline(encoders=encoders())
    model = MultimodalModel(pipe.model_encoders(), 2, embed_dim=4).eval()
    cfg = ProtocolConfig(modalities=MODALITIES, sweep_ratios=(0.0, 1.0), batch_size=16)
    result = Evaluator(pipe, ds, ["accuracy"], cfg).run(model)
    n = len(ds)
    every = [s for role, s in result["conditions"].items()]
    every += [row[f"missing_{m}"] for row in result["sweep"] for m in MODALITIES]
    assert [s["seen"] for s in every] == [n * (n - 1) / 2] * len(every)
    # the full condition's logits, sample by sample, against a forward of the whole split
    logits, index = ds.calls[0]
    assert index.tolist() == list(range(n))  # batches of 16 in order, as the targets
    with torch.no_grad():
        direct = model(batch_of(pipe, ds, Condition("full", seed=0)).inputs).logits
    torch.testing.assert_close(logits, direct)


def test_a_readout_may_not_overwrite_a_metric():
    ds = WithReadout(key="accuracy")
    pipe = InputPipeline(encoders=encoders())
    model = MultimodalModel(pipe.model_encoders(), 2, embed_dim=4)
    cfg = ProtocolConfig(modalities=MODALITIES, batch_size=16)
    with pytest.raises(ConfigError, match="readout_scores .* repeats metrics \\['accuracy'\\]"):
        Evaluator(pipe, ds, ["accuracy"], cfg).score(model, Condition("full", seed=0))
