import pytest
import torch
from torch import nn

from balgrad.backbones._cache import FeatureCache
from balgrad.data._base import DatasetInfo, Example, MultimodalDataset
from balgrad.data._impairments import Condition
from balgrad.data._pipeline import InputPipeline


class CountingImageEncoder(nn.Module):
    """A frozen encoder that counts the images it encodes."""

    trainable = False
    out_dim = 2
    identity = "counting-image"

    def __init__(self):
        super().__init__()
        self.seen = 0

    def preprocess(self, image):
        return image

    def forward(self, x):
        self.seen += x.shape[0]
        return torch.stack([x.mean(dim=(1, 2, 3)), x.amax(dim=(1, 2, 3))], 1)


class CountingTextEncoder(nn.Module):
    trainable = False
    out_dim = 1
    identity = "counting-text"
    vocab_size = 50
    special_ids = (0,)

    def __init__(self):
        super().__init__()
        self.seen = 0

    def tokenize(self, texts):
        return {
            "input_ids": torch.tensor([[len(t) + 1] for t in texts]),
            "attention_mask": torch.ones(len(texts), 1),
        }

    def forward(self, tokens):
        self.seen += tokens["input_ids"].shape[0]
        return tokens["input_ids"].float() - 1


class Tiny(MultimodalDataset):
    def __init__(self):
        self.info = DatasetInfo(
            "tiny", "single_label", ["a", "b"], modalities={"image": "image", "text": "text"}
        )
        self.split = "test"
        self.texts = ["one", "three", "fives", "x"] * 5
        self.labels = [0, 1, 1, 0] * 5

    def __len__(self):
        return 20

    def get(self, i):
        inputs = {"image": torch.full((3, 2, 2), i / 20), "text": self.texts[i]}
        return Example(inputs, torch.tensor(self.labels[i]), i)


def first_batch(pipe, ds, cond):
    return next(iter(pipe.loader(ds, cond, batch_size=20)))


def test_frozen_towers_are_encoded_once_and_reused_from_disk(tmp_path):
    ds = Tiny()
    img, txt = CountingImageEncoder(), CountingTextEncoder()
    pipe = InputPipeline({"image": img, "text": txt}, cache=FeatureCache(tmp_path), progress=False)
    full = first_batch(pipe, ds, Condition())
    assert img.seen == 20 and txt.seen == 20
    # the image features are the encoder's on the real images; text features are lengths
    assert torch.allclose(full.inputs["image"][:, 0], torch.arange(20) / 20)
    assert full.inputs["text"][:, 0].tolist() == [float(len(t)) for t in ds.texts]

    # missing text changes only the text tower, and an empty string encodes to one
    # constant vector: one extra backbone call, not another pass over the split
    miss = first_batch(pipe, ds, Condition("missing_text", ratio=1.0))
    assert img.seen == 20 and txt.seen == 21
    assert (miss.inputs["text"] == 0).all()  # the empty string went through the backbone

    # a new pipeline (a second `compare`) over the same cache encodes nothing
    img2, txt2 = CountingImageEncoder(), CountingTextEncoder()
    pipe2 = InputPipeline(
        {"image": img2, "text": txt2}, cache=FeatureCache(tmp_path), progress=False
    )
    again = first_batch(pipe2, ds, Condition("missing_text", ratio=1.0))
    assert img2.seen == 0 and txt2.seen == 1 and pipe2.encoded == 0
    assert pipe2.cache.hits == 2
    assert torch.equal(again.inputs["image"], miss.inputs["image"]) and torch.equal(
        again.inputs["text"], miss.inputs["text"]
    )


def test_noisy_images_are_encoded_through_the_backbone(tmp_path):
    ds = Tiny()
    encoders = {"image": CountingImageEncoder(), "text": CountingTextEncoder()}
    pipe = InputPipeline(encoders, cache=FeatureCache(tmp_path), progress=False)
    clean = first_batch(pipe, ds, Condition())
    noisy = first_batch(pipe, ds, Condition("noisy_image", level=0.3))
    assert not torch.allclose(clean.inputs["image"], noisy.inputs["image"])
    assert torch.equal(clean.inputs["text"], noisy.inputs["text"])


def test_embedding_mode_keeps_real_inputs_and_flags_the_dropped_samples(tmp_path):
    ds = Tiny()
    encoders = {"image": CountingImageEncoder(), "text": CountingTextEncoder()}
    pipe = InputPipeline(encoders, missing="embedding", progress=False)
    b = first_batch(pipe, ds, Condition("missing_image", ratio=0.5))
    assert "image" in b.drop and int(b.drop["image"].sum()) == 10
    assert torch.equal(b.inputs["image"], first_batch(pipe, ds, Condition()).inputs["image"])


def test_the_constant_blank_shortcut_equals_encoding_the_impaired_split(tmp_path):
    ds = Tiny()
    encoders = {"image": CountingImageEncoder(), "text": CountingTextEncoder()}
    pipe = InputPipeline(encoders, progress=False)
    for tower in ("image", "text"):
        cond = Condition(f"missing_{tower}", ratio=0.45, seed=3)
        assert torch.equal(
            pipe.features(ds, cond, tower), pipe.frozen_features.encode(ds, cond, tower)
        )


@pytest.mark.parametrize("seed", [0, 7, 10_007 * 3 + 2])
def test_the_training_order_is_the_one_the_loader_gave_before(seed):
    """SeededPermutation reproduces the order of the shuffled single-process loader as the
    trainer iterated it before (through tqdm.auto, whose throw-away iterator drew a base
    seed too), so results recorded then reproduce; and it is the same on every pass."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from balgrad.data._pipeline import SeededPermutation

    g = torch.Generator()
    g.manual_seed(seed)
    loader = DataLoader(list(range(37)), batch_size=37, shuffle=True, generator=g)
    before = next(iter(tqdm(loader, disable=True))).tolist()
    sampler = SeededPermutation(37, seed)
    assert list(sampler) == before and list(sampler) == before
