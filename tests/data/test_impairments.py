import numpy as np
import pytest
import torch

from balgrad.data._impairments import Condition, noisy_image, noisy_tokens
from balgrad.errors import ConfigError


@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.25, 0.5, 0.7, 1.0])
@pytest.mark.parametrize("n", [7, 100, 2000])
def test_mask_hits_exactly_the_requested_fraction(ratio, n):
    mask = Condition("missing_image", ratio=ratio, seed=3).mask(n)
    assert mask.sum() == int(np.floor(ratio * n + 0.5))


def test_mask_is_fixed_by_seed_and_differs_between_kinds_and_seeds():
    a = Condition("missing_image", ratio=0.5, seed=1).mask(500)
    assert np.array_equal(a, Condition("missing_image", ratio=0.5, seed=1).mask(500))
    assert not np.array_equal(a, Condition("missing_image", ratio=0.5, seed=2).mask(500))
    assert not np.array_equal(a, Condition("missing_text", ratio=0.5, seed=1).mask(500))


def test_full_condition_hits_nothing():
    assert not Condition().mask(50).any()


def test_parse_and_names():
    assert Condition.parse("missing_text@0.3").ratio == pytest.approx(0.3)
    assert Condition.parse("missing_image").ratio == 1.0
    assert Condition.parse("noisy_image").level == 0.5
    assert Condition.parse("noisy_text@0.2").name == "noisy_text@0.2"
    with pytest.raises(ConfigError, match="blurry"):
        Condition.parse("blurry@0.2")
    with pytest.raises(ConfigError, match="ratio"):
        Condition("missing_image", ratio=1.5)


def test_noisy_image_is_deterministic_clipped_and_has_the_requested_std():
    img = torch.full((3, 64, 64), 0.5)
    a = noisy_image(img, 0.1, seed=0, index=4)
    assert torch.equal(a, noisy_image(img, 0.1, seed=0, index=4))
    assert not torch.equal(a, noisy_image(img, 0.1, seed=0, index=5))
    assert (a - img).std().item() == pytest.approx(0.1, rel=0.05)
    b = noisy_image(img, 2.0, seed=0, index=4)
    assert b.min() >= 0 and b.max() <= 1 and ((b == 0) | (b == 1)).float().mean() > 0.5


def test_noisy_tokens_replace_only_real_tokens_with_non_special_ones():
    special = (0, 1, 2, 3)
    ids = torch.tensor([2] + list(range(10, 60)) + [3, 0, 0, 0])
    mask = torch.tensor([1] * 52 + [0, 0, 0])
    assert torch.equal(noisy_tokens(ids, mask, 0.0, 100, special, 0, 0), ids)
    out = noisy_tokens(ids, mask, 1.0, 100, special, 0, 0)
    assert out[0] == 2 and out[51] == 3 and (out[52:] == 0).all()
    assert not torch.isin(out[1:51], torch.tensor(special)).any()
    # with p = 0.5 about half the real tokens change (a replacement may draw the same id)
    changed = (
        (noisy_tokens(ids, mask, 0.5, 10_000, special, 0, 1)[1:51] != ids[1:51]).float().mean()
    )
    assert 0.25 < changed < 0.75
