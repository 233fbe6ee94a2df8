"""Tiny random-initialised Hugging Face checkpoints saved to disk (no network needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

WORDS = ["a", "photo", "of", "dog", "cat", "the", "picture", "puppy", "red", "blue"]


def write_bert_vocab(folder: Path) -> None:
    """A tiny WordPiece vocabulary, written by hand, loadable by AutoTokenizer."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "##s", "."]
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True}), encoding="utf-8"
    )


def write_clip_tokenizer(folder: Path) -> int:
    """A tiny CLIP BPE tokenizer (every word of WORDS is one merged token); returns its size."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    chars = sorted(set("".join(WORDS)))
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    merges: list[tuple[str, str]] = []
    for w in WORDS:
        toks = [*w[:-1], w[-1] + "</w>"]
        while len(toks) > 1:
            pair = (toks[0], toks[1])
            if pair not in merges:
                merges.append(pair)
            vocab.setdefault(pair[0] + pair[1], len(vocab))
            toks = [pair[0] + pair[1], *toks[2:]]
    CLIPTokenizer(vocab=vocab, merges=merges).save_pretrained(folder)
    return len(vocab)


def save_processor(folder: Path, size: int) -> None:
    from transformers import ViTImageProcessor

    ViTImageProcessor(size={"height": size, "width": size}).save_pretrained(folder)


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory) -> dict[str, Path]:
    """Folders of tiny BERT, DistilBERT, ViT, ResNet and CLIP checkpoints."""
    import torch

    from balgrad.backbones.hf._source import quiet_transformers

    root = tmp_path_factory.mktemp("tiny_hf")
    with quiet_transformers(), torch.random.fork_rng():
        torch.manual_seed(0)
        return _build(root)


def _build(root: Path) -> dict[str, Path]:
    from transformers import (
        BertConfig,
        BertModel,
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        ConvNextImageProcessor,
        DistilBertConfig,
        DistilBertModel,
        ResNetConfig,
        ResNetModel,
        ViTConfig,
        ViTModel,
    )

    out: dict[str, Path] = {}
    n_vocab = len(WORDS) + 7
    tiny = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64)

    out["bert"] = d = root / "bert"
    d.mkdir()
    BertModel(
        BertConfig(vocab_size=n_vocab, num_hidden_layers=2, max_position_embeddings=64, **tiny)
    ).save_pretrained(d)
    write_bert_vocab(d)

    out["distilbert"] = d = root / "distilbert"
    d.mkdir()
    DistilBertModel(
        DistilBertConfig(
            vocab_size=n_vocab,
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=64,
            max_position_embeddings=64,
        )
    ).save_pretrained(d)
    write_bert_vocab(d)

    out["vit"] = d = root / "vit"
    d.mkdir()
    ViTModel(ViTConfig(image_size=32, patch_size=8, num_hidden_layers=2, **tiny)).save_pretrained(d)
    save_processor(d, 32)

    out["vit_nopooler"] = d = root / "vit_nopooler"
    d.mkdir()
    ViTModel(
        ViTConfig(image_size=32, patch_size=8, num_hidden_layers=1, **tiny), add_pooling_layer=False
    ).save_pretrained(d)
    save_processor(d, 32)

    out["resnet"] = d = root / "resnet"
    d.mkdir()
    ResNetModel(
        ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    ).save_pretrained(d)
    ConvNextImageProcessor(size={"shortest_edge": 28}, crop_pct=0.875).save_pretrained(d)

    out["clip"] = d = root / "clip"
    d.mkdir()
    n_clip = write_clip_tokenizer(d)
    CLIPModel(
        CLIPConfig(
            text_config=dict(
                vocab_size=n_clip,
                max_position_embeddings=16,
                num_hidden_layers=1,
                eos_token_id=1,
                bos_token_id=0,
                pad_token_id=1,
                projection_dim=16,
                **tiny,
            ),
            vision_config=dict(
                image_size=32, patch_size=8, num_hidden_layers=1, projection_dim=16, **tiny
            ),
            projection_dim=16,
        )
    ).save_pretrained(d)
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(d)
    return out
