"""Hugging Face backbones loaded from tiny random checkpoints on disk (no network)."""

from __future__ import annotations

import pytest
import torch

from balgrad.backbones import create_backbone
from balgrad.backbones.hf import HFImageEncoder, HFTextEncoder
from balgrad.errors import BackboneError, ConfigError

TEXTS = ["a photo of a dog", "the red cats", ""]


def _images(enc, n=2, size=(40, 24)):
    return torch.stack([enc.preprocess(torch.rand(3, *size)) for _ in range(n)])


@pytest.mark.parametrize("model", ["bert", "distilbert"])
def test_text_backbone_from_local_path(tiny_hf, model):
    enc = create_backbone("text", "hf:" + str(tiny_hf[model]))
    assert isinstance(enc, HFTextEncoder)
    tokens = enc.tokenize(TEXTS)
    assert set(tokens) == {"input_ids", "attention_mask"}
    assert tokens["input_ids"].dtype == torch.int64
    assert tokens["attention_mask"][2].sum() == 2  # "" -> [CLS] [SEP]
    out = enc(tokens)
    assert out.shape == (3, 32) and torch.isfinite(out).all()
    assert enc.pooling == ("pooler" if model == "bert" else "cls")
    assert enc.pad_id == 0 and {0, 1, 2, 3, 4} <= set(enc.special_ids)
    assert enc.vocab_size == 17


def test_text_mean_pooling_ignores_padding(tiny_hf):
    enc = create_backbone("text", "hf:" + str(tiny_hf["bert"]), pooling="mean", normalize=True)
    alone = enc(enc.tokenize(["a dog"]))
    padded = enc(enc.tokenize(["a dog", "the red cats of the photo"]))[:1]
    assert torch.allclose(alone, padded, atol=1e-5)
    assert torch.allclose(alone.norm(dim=-1), torch.ones(1))


def test_text_max_length_truncates(tiny_hf):
    enc = create_backbone("text", "hf:" + str(tiny_hf["bert"]), max_length=6)
    assert enc.tokenize(["dog " * 40])["input_ids"].shape == (1, 6)
    with pytest.raises(ConfigError, match="max_length"):
        create_backbone("text", "hf:" + str(tiny_hf["bert"]), max_length=1000)


def test_frozen_by_default_and_trainable_with_finetune(tiny_hf):
    frozen = create_backbone("text", "hf:" + str(tiny_hf["bert"]))
    assert not frozen.trainable and not frozen.training
    assert not any(p.requires_grad for p in frozen.parameters())
    torch.nn.Sequential(frozen).train()
    assert not frozen.training  # stays in eval (dropout off) under a training parent

    tuned = create_backbone("text", "hf:" + str(tiny_hf["bert"]), finetune=True)
    assert tuned.trainable and tuned.training
    tuned(tuned.tokenize(TEXTS)).sum().backward()
    grads = [p.grad for p in tuned.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)  # no unused trainable parameters


def test_unused_pooler_is_not_trainable(tiny_hf):
    enc = create_backbone("text", "hf:" + str(tiny_hf["bert"]), finetune=True, pooling="cls")
    enc(enc.tokenize(TEXTS)).sum().backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)
    assert not any(p.requires_grad for p in enc.model.pooler.parameters())


@pytest.mark.parametrize("model", ["vit", "vit_nopooler", "resnet"])
def test_image_backbone_from_local_path(tiny_hf, model):
    enc = create_backbone("image", "hf:" + str(tiny_hf[model]))
    assert isinstance(enc, HFImageEncoder)
    pixels = _images(enc)
    assert pixels.shape[1:] == ((3, 32, 32) if model.startswith("vit") else (3, 28, 28))
    out = enc(pixels)
    assert out.shape == (2, enc.out_dim) and torch.isfinite(out).all()
    expected = {"vit": ("pooler", 32), "vit_nopooler": ("cls", 32), "resnet": ("pooler", 16)}
    assert (enc.pooling, enc.out_dim) == expected[model]


def test_image_preprocess_normalises_with_processor_stats_and_handles_grayscale(tiny_hf):
    enc = create_backbone("image", "hf:" + str(tiny_hf["vit"]))
    assert enc.image_mean == (0.5, 0.5, 0.5) and enc.image_std == (0.5, 0.5, 0.5)
    white = enc.preprocess(torch.ones(1, 50, 50))
    assert white.shape == (3, 32, 32) and torch.allclose(white, torch.ones_like(white))
    assert torch.allclose(enc.preprocess(torch.zeros(3, 8, 8)), -torch.ones(3, 32, 32))
    overridden = create_backbone(
        "image", "hf:" + str(tiny_hf["vit"]), image_mean=0.0, image_std=1.0
    )
    assert torch.allclose(overridden.preprocess(torch.ones(3, 32, 32)), torch.ones(3, 32, 32))
    assert overridden.identity != enc.identity


def test_image_pooling_options(tiny_hf):
    path = "hf:" + str(tiny_hf["vit"])
    pixels = None
    outs = {}
    for pooling in ("pooler", "cls", "mean"):
        enc = create_backbone("image", path, pooling=pooling)
        pixels = _images(enc) if pixels is None else pixels
        outs[pooling] = enc(pixels)
    assert not torch.allclose(outs["cls"], outs["mean"])
    with pytest.raises(ConfigError, match="pooling"):
        create_backbone("image", path, pooling="max")
    with pytest.raises(ConfigError, match="feature map"):
        create_backbone("image", "hf:" + str(tiny_hf["resnet"]), pooling="cls")


def test_clip_towers_by_hf_and_clip_prefix(tiny_hf):
    path = str(tiny_hf["clip"])
    img = create_backbone("image", "clip:" + path)
    txt = create_backbone("text", "clip:" + path)
    assert type(img.model).__name__ == "CLIPVisionModel"
    assert type(txt.model).__name__ == "CLIPTextModel"
    assert img(_images(img)).shape == (2, 32)
    assert txt(txt.tokenize(TEXTS)).shape == (3, 32)
    assert txt.max_length == 16
    # "hf:" on a CLIP checkpoint routes to the same towers
    assert (
        create_backbone("image", "hf:" + path).identity.split("|")[1:]
        == img.identity.split("|")[1:]
    )
    # projected embeddings live in the shared space
    pimg = create_backbone("image", "clip:" + path, projection=True)
    ptxt = create_backbone("text", "clip:" + path, projection=True)
    assert pimg.out_dim == ptxt.out_dim == 16
    assert pimg(_images(pimg)).shape == (2, 16)


def test_clip_preprocess_keeps_aspect_and_center_crops(tiny_hf):
    enc = create_backbone("image", "clip:" + str(tiny_hf["clip"]))
    assert enc.input_size() == (32, 32)
    wide = torch.ones(3, 32, 64)
    wide[:, :, :8] = 0.0  # a dark border that the center crop removes
    x = enc.preprocess(wide)
    assert x.shape == (3, 32, 32)
    expected = (1.0 - enc._mean) / enc._std
    assert torch.allclose(x, expected.expand_as(x), atol=1e-5)


def test_clip_prefix_on_a_non_clip_checkpoint_is_an_error(tiny_hf):
    with pytest.raises(BackboneError, match="not a CLIP checkpoint"):
        create_backbone("image", "clip:" + str(tiny_hf["vit"]))


def test_identity_names_the_path_and_changes_with_the_weights(tiny_hf, tmp_path):
    import shutil

    copy = tmp_path / "bert"
    shutil.copytree(tiny_hf["bert"], copy)
    a = create_backbone("text", "hf:" + str(copy))
    assert str(copy) in a.identity
    assert create_backbone("text", "hf:" + str(copy)).identity == a.identity
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes() + b"")
    import os

    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert create_backbone("text", "hf:" + str(copy)).identity != a.identity


def test_weights_rewritten_with_the_same_size_and_mtime_are_a_feature_cache_miss(tiny_hf, tmp_path):
    """A local checkpoint's identity has its weight files' sizes and mtimes only; the
    feature cache also keys on the sha256 of the frozen encoder's weights."""
    import os
    import shutil

    from safetensors.torch import load_file, save_file

    from balgrad.backbones._cache import FeatureCache
    from balgrad.backbones._small import SmallCNN
    from balgrad.data._impairments import Condition
    from balgrad.data._pipeline import InputPipeline
    from balgrad.data.readers._builtin import load_builtin

    copy = tmp_path / "bert"
    shutil.copytree(tiny_hf["bert"], copy)
    ds = load_builtin("digits", "test", n_train=20, n_test=10, image_size=16)

    def text_features():
        text = create_backbone("text", "hf:" + str(copy))
        assert not text.trainable and not text.identity_covers_weights
        live = SmallCNN(out_dim=4, image_size=16, width=4)
        encoders = {"image": live, "text": text}
        pipe = InputPipeline(encoders, cache=FeatureCache(tmp_path / "cache"), progress=False)
        return pipe.features(ds, Condition(), "text"), pipe, text.identity

    before, _, identity = text_features()
    weights = copy / "model.safetensors"
    st = weights.stat()
    tensors = load_file(str(weights))
    name = next(k for k in sorted(tensors) if "embeddings" in k and "weight" in k)
    tensors[name] = tensors[name] + 1.0
    save_file(tensors, str(weights), metadata={"format": "pt"})
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (weights.stat().st_size, weights.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    after, pipe, same_identity = text_features()
    assert same_identity == identity  # the identity cannot see the change
    assert pipe.encoded == 1 and not torch.equal(before, after)


def test_unresolvable_hub_name_offline_is_a_clear_backbone_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    name = "balgrad-tests/no-such-model"
    for kind in ("image", "text"):
        with pytest.raises(BackboneError) as err:
            create_backbone(kind, "hf:" + name)
        msg = str(err.value)
        assert f"hf:{name}" in msg and "could not be found offline" in msg
        assert "hf:/path/to/DIR" in msg


def test_missing_local_path_is_a_backbone_error(tmp_path):
    with pytest.raises(BackboneError, match="not a directory"):
        create_backbone("text", "hf:" + str(tmp_path / "missing"))


def test_image_checkpoint_without_processor_needs_explicit_preprocessing(tiny_hf, tmp_path):
    import shutil

    copy = tmp_path / "vit"
    shutil.copytree(tiny_hf["vit"], copy)
    (copy / "preprocessor_config.json").unlink()
    with pytest.raises(BackboneError, match="image_size, image_mean and image_std"):
        create_backbone("image", "hf:" + str(copy))
    enc = create_backbone("image", "hf:" + str(copy), image_size=32, image_mean=0.5, image_std=0.5)
    assert enc(_images(enc)).shape == (2, 32)


def _checkpoint_hash(folder) -> str:
    """The documented recipe of a local checkpoint's hash, written out again: sha256 over
    the config/preprocessing files (name, bytes) and the weight files (name, size, mtime)."""
    import hashlib

    config_files = {"config.json", "preprocessor_config.json", "tokenizer.json"}
    config_files |= {"tokenizer_config.json", "special_tokens_map.json", "vocab.txt"}
    config_files |= {"vocab.json", "merges.txt"}
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = f.relative_to(folder).as_posix()
        if f.name in config_files:
            h.update(f"{rel}\0".encode() + f.read_bytes())
        elif f.suffix == ".safetensors":
            st = f.stat()
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()[:16]


def test_identity_strings_are_the_feature_cache_keys_of_before(tiny_hf):
    """The identities keep the exact form the code of commit f829246 gave these tiny
    checkpoints (checked when hf.py became a package): a change would silently
    invalidate every feature cache built with a Hugging Face backbone."""
    vit, bert, clip = (tiny_hf[m].resolve() for m in ("vit", "bert", "clip"))
    image = create_backbone("image", f"hf:{vit}")
    assert image.identity == (
        f"hf-image:{vit}#{_checkpoint_hash(vit)}|tower=auto|pool=pooler"
        "|plan=('resize', (32, 32), None)|mean=(0.5, 0.5, 0.5)|std=(0.5, 0.5, 0.5)"
    )
    text = create_backbone("text", f"hf:{bert}", pooling="mean", normalize=True, max_length=12)
    assert text.identity == (
        f"hf-text:{bert}#{_checkpoint_hash(bert)}|tower=auto|pool=mean|max_length=12|normalize=True"
    )
    clip_text = create_backbone("text", f"clip:{clip}", projection=True)
    assert clip_text.identity == (
        f"hf-text:{clip}#{_checkpoint_hash(clip)}|tower=clip|pool=projection|max_length=16"
        "|normalize=False"
    )


@pytest.mark.parametrize(
    ("kind", "model", "words"),
    [
        ("image", "bert", ["is a text model", "'bert'", "of kind text"]),
        ("image", "distilbert", ["is a text model", "of kind text"]),
        ("text", "vit", ["is an image (vision) model", "'vit'", "of kind image"]),
        ("text", "resnet", ["is an image (vision) model", "of kind image"]),
    ],
)
def test_a_checkpoint_of_the_other_modality_is_refused_by_name(tiny_hf, kind, model, words):
    with pytest.raises(BackboneError) as err:
        create_backbone(kind, f"hf:{tiny_hf[model]}")
    for word in [*words, str(tiny_hf[model])]:
        assert word in str(err.value)
    assert "sentencepiece" not in str(err.value)


def test_the_cli_refuses_a_swapped_backbone_before_loading_data(
    tiny_hf, tmp_path, monkeypatch, capsys
):
    from balgrad.cli import main

    def no_data(cfg):
        raise AssertionError("the data was loaded before the backbone was checked")

    monkeypatch.setattr("balgrad.experiment.load_data", no_data)
    argv = ["compare", "--out", str(tmp_path), "--cache-dir", str(tmp_path / "cache")]
    argv += ["--image-backbone", f"hf:{tiny_hf['bert']}", "--text-backbone", "small"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("balgrad: error: backbone 'hf:") and "of kind text" in err
    assert "Traceback" not in err
