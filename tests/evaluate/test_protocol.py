import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from torch import nn

from balgrad.data._base import DatasetInfo, Example, MultimodalDataset
from balgrad.data._impairments import Condition
from balgrad.data._pipeline import InputPipeline
from balgrad.evaluate._metrics import compute_scores
from balgrad.evaluate._protocol import Evaluator, ProtocolConfig, summarize, sweep_gaps
from balgrad.models import MultimodalModel


class PixelEncoder(nn.Module):
    """Mean pixel value per channel: a missing (blank) image gives zeros."""

    trainable = True
    out_dim = 1
    identity = "pixel-mean"

    def preprocess(self, image):
        return image.mean(dim=(0, 1, 2)).reshape(1)

    def forward(self, x):
        return x


class LengthEncoder(nn.Module):
    trainable = True
    out_dim = 1
    identity = "length"
    vocab_size = 10
    special_ids = (0,)

    def tokenize(self, texts):
        return {
            "input_ids": torch.tensor([[len(t)] for t in texts]),
            "attention_mask": torch.ones(len(texts), 1),
        }

    def forward(self, tokens):
        return tokens["input_ids"].float()


class Toy(MultimodalDataset):
    """Bright images are class 1; text length also tells the class."""

    def __init__(self, n=200):
        self.info = DatasetInfo(
            "toy", "single_label", ["dark", "bright"], modalities={"image": "image", "text": "text"}
        )
        self.split = "test"
        g = torch.Generator().manual_seed(0)
        self.y = torch.randint(0, 2, (n,), generator=g)

    def __len__(self):
        return len(self.y)

    def get(self, i):
        y = int(self.y[i])
        inputs = {"image": torch.full((1, 4, 4), 0.2 + 0.6 * y), "text": "x" * (1 + 3 * y)}
        return Example(inputs, torch.tensor(y), i)


def image_only_model():
    """Predicts class 1 iff mean pixel > 0.5, ignoring the text entirely."""
    m = MultimodalModel({"image": PixelEncoder(), "text": LengthEncoder()}, 2, embed_dim=1)
    with torch.no_grad():
        m.image_embedding[0].weight.fill_(1.0)
        m.image_embedding[0].bias.zero_()
        m.text_embedding[0].weight.zero_()
        m.text_embedding[0].bias.zero_()
        lin = m.head.classifier[-1]
        lin.weight.copy_(torch.tensor([[-10.0, 0.0], [10.0, 0.0]]))
        lin.bias.copy_(torch.tensor([2.5, -2.5]))  # GELU(0.5) ~ 0.35: threshold 0.25 on GELU(mean)
    return m


def test_a_model_that_ignores_text_scores_the_same_with_and_without_text():
    ds = Toy()
    model = image_only_model()
    ev = Evaluator(
        InputPipeline({"image": PixelEncoder(), "text": LengthEncoder()}),
        ds,
        ["accuracy"],
        ProtocolConfig(modalities={"image": "image", "text": "text"}, sweep_ratios=(0.0, 0.5, 1.0)),
    )
    out = ev.run(model)
    c = out["conditions"]
    assert c["full"]["accuracy"] == pytest.approx(100.0)
    assert c["missing_text"]["accuracy"] == c["full"]["accuracy"]
    assert c["noisy_text"]["accuracy"] == c["full"]["accuracy"]
    # without the image it always says "dark": accuracy = share of dark samples
    dark = 100.0 * float((ds.y == 0).float().mean())
    assert c["missing_image"]["accuracy"] == pytest.approx(dark)
    # the sweep interpolates: at r = 0.5 exactly half the bright samples lose their image
    half = out["sweep"][1]
    assert half["missing_text"]["accuracy"] == pytest.approx(100.0)
    hit = Condition("missing_image", ratio=0.5).mask(len(ds))
    expect = 100.0 * (1 - float(((ds.y == 1) & torch.from_numpy(hit)).float().mean()))
    assert half["missing_image"]["accuracy"] == pytest.approx(expect)


def test_missing_as_zero_embedding_matches_the_blank_input_for_this_model():
    ds = Toy()
    model = image_only_model()
    ev = Evaluator(
        InputPipeline({"image": PixelEncoder(), "text": LengthEncoder()}, missing="embedding"),
        ds,
        ["accuracy"],
    )
    assert ev.score(model, Condition("missing_image"))["accuracy"] == pytest.approx(
        100.0 * float((ds.y == 0).float().mean())
    )


def test_summary_arithmetic():
    conds = {
        "full": {"accuracy": 80.0},
        "missing_image": {"accuracy": 20.0},
        "missing_text": {"accuracy": 65.0},
        "noisy_image": {"accuracy": 85.0},
        "noisy_text": {"accuracy": 70.0},
    }
    s = summarize(conds, "accuracy")
    assert s["missing_avg"] == pytest.approx(42.5)
    assert s["missing_gap"] == pytest.approx(45.0)
    assert s["noisy_avg"] == pytest.approx(77.5)
    assert s["noisy_gap"] == pytest.approx(15.0)
    assert s["noisy_image_negative_transfer"] is True
    assert s["missing_text_negative_transfer"] is False
    sweep = [
        {"ratio": 0.5, "missing_image": {"accuracy": 50.0}, "missing_text": {"accuracy": 70.0}}
    ]
    assert sweep_gaps(sweep, "accuracy") == [(0.5, 20.0)]


def test_scores_match_scikit_learn():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(300, 5, generator=g)
    y = torch.randint(0, 5, (300,), generator=g)
    acc = compute_scores(logits, y, "single_label", ["accuracy"])["accuracy"]
    assert acc == pytest.approx(100 * accuracy_score(y, logits.argmax(1)))

    lb = torch.randn(300, 2, generator=g)
    yb = torch.randint(0, 2, (300,), generator=g)
    auroc = compute_scores(lb, yb, "single_label", ["auroc"])["auroc"]
    assert auroc == pytest.approx(100 * roc_auc_score(yb, torch.softmax(lb, 1)[:, 1]), abs=1e-4)

    lm = torch.randn(300, 6, generator=g)
    ym = (torch.rand(300, 6, generator=g) > 0.6).float()
    f1 = compute_scores(lm, ym, "multi_label", ["f1_macro", "f1_micro"])
    pred = (torch.sigmoid(lm) > 0.5).int()
    assert f1["f1_macro"] == pytest.approx(
        100 * f1_score(ym, pred, average="macro", zero_division=0), abs=1e-4
    )
    assert f1["f1_micro"] == pytest.approx(100 * f1_score(ym, pred, average="micro"), abs=1e-4)
