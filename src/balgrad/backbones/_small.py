"""Small encoders that train from scratch on a CPU in seconds (the default backbones).

``SmallCNN`` is a four-layer convolutional image encoder; ``SmallTextEncoder`` embeds the
tokens of a word-level vocabulary fitted on the training texts (HF ``tokenizers``
``WordLevel`` model) and pools them with a masked 1-D convolution (or a masked mean).
The fitted tokenizer is saved as ``tokenizer.json`` next to a run, so the run can be
evaluated later with exactly the same vocabulary.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from torch import nn

from balgrad.atomic import write_text
from balgrad.backbones._base import ImageEncoder, TextEncoder
from balgrad.backbones._frozen import KeepFrozen
from balgrad.backbones._pixels import resize, to_channels
from balgrad.errors import BackboneError
from balgrad.registry import validated

PAD, UNK, CLS, SEP = "[PAD]", "[UNK]", "[CLS]", "[SEP]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP)  # ids 0, 1, 2, 3 in this order


class SmallCNN(KeepFrozen, ImageEncoder):
    """A small convolutional image encoder, trained from scratch.

    Pixels are normalised to [-1, 1] (mean = std = 0.5).

    Args:
        out_dim: The embedding size (128).
        image_size: The input's side (32; 28 suits MNIST-like data).
        channels: 3, or 1 for grayscale (input of the other kind is converted).
        width: Channels of the first conv (32); later layers use 2x and 4x.
        norm: ``"batch"``, ``"group"`` or ``"none"``.
    """

    @validated
    def __init__(
        self,
        out_dim: int = 128,
        image_size: Annotated[int, Field(ge=8)] = 32,
        channels: Literal[1, 3] = 3,
        width: int = 32,
        norm: Literal["batch", "group", "none"] = "batch",
    ) -> None:
        super().__init__()
        self.out_dim = int(out_dim)
        self.image_size = int(image_size)
        self.channels = int(channels)

        def block(cin: int, cout: int) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=norm == "none")]
            if norm == "batch":
                layers.append(nn.BatchNorm2d(cout))
            elif norm == "group":
                layers.append(nn.GroupNorm(min(8, cout), cout))
            layers.append(nn.ReLU(inplace=True))
            return layers

        w = int(width)
        self.features = nn.Sequential(
            *block(self.channels, w),
            nn.MaxPool2d(2),
            *block(w, 2 * w),
            nn.MaxPool2d(2),
            *block(2 * w, 4 * w),
            *block(4 * w, 4 * w),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.proj = nn.Linear(4 * w, self.out_dim)
        self.identity = (
            f"cnn(out_dim={self.out_dim},image_size={self.image_size},"
            f"channels={self.channels},width={w},norm={norm})"
        )

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """One raw image ``[C, H, W]`` in [0, 1] -> ``[channels, image_size, image_size]`` in
        [-1, 1].

        Args:
            image: The image.

        Returns:
            The model input.
        """
        x = to_channels(image.float(), self.channels)
        x = resize(x, (self.image_size, self.image_size))
        return (x - 0.5) / 0.5

    def blank_image(self) -> torch.Tensor:
        """A missing image on the raw scale: zeros with this encoder's channels and size.

        Returns:
            ``[channels, image_size, image_size]``.
        """
        return torch.zeros(3, self.image_size, self.image_size)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Embed a batch of preprocessed images.

        Args:
            pixels: ``[B, channels, image_size, image_size]``.

        Returns:
            ``[B, out_dim]``.
        """
        return self.proj(self.features(pixels))


# ---------------------------------------------------------------- word tokenizer


def _new_word_tokenizer(vocab: dict[str, int], max_length: int) -> Tokenizer:
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    # splits on whitespace and separates punctuation: "it's" -> "it", "'", "s"
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}",
        pair=f"{CLS} $A {SEP} $B {SEP}",
        special_tokens=[(CLS, vocab[CLS]), (SEP, vocab[SEP])],
    )
    configure_word_tokenizer(tok, max_length)
    return tok


@validated
def configure_word_tokenizer(
    tok: Tokenizer,
    max_length: Annotated[int, Field(ge=2)],  # [CLS] and [SEP]
) -> Tokenizer:
    """Truncate to ``max_length`` tokens (``[CLS]`` and ``[SEP]`` included), pad to the longest.

    Args:
        tok: The tokenizer (configured in place).
        max_length: Tokens per text.

    Returns:
        ``tok``.

    Raises:
        ConfigError: ``max_length < 2``.
    """
    tok.enable_truncation(max_length=int(max_length))
    tok.enable_padding(pad_id=tok.token_to_id(PAD), pad_token=PAD)
    return tok


@validated
def build_word_tokenizer(
    texts: Iterable[str],
    min_freq: Annotated[int, Field(ge=1)] = 1,
    max_vocab: Annotated[int, Field(ge=1)] | None = 30000,
    max_length: int = 64,
) -> Tokenizer:
    """Fit a word-level tokenizer on ``texts``.

    Words are NFKC-normalised and lower-cased, split on whitespace with punctuation as
    separate tokens. A word enters the vocabulary when it occurs at least ``min_freq``
    times; at most ``max_vocab`` words are kept (the most frequent, ties broken
    alphabetically, so the result is deterministic). Ids: ``[PAD]`` 0, ``[UNK]`` 1,
    ``[CLS]`` 2, ``[SEP]`` 3, words from 4. Every encoding is ``[CLS] words [SEP]``,
    truncated to ``max_length`` and padded to the longest in the batch.

    Args:
        texts: The training texts.
        min_freq: The fewest occurrences a word needs.
        max_vocab: The most words kept, or None for all.
        max_length: Tokens per text.

    Returns:
        The tokenizer.

    Raises:
        ConfigError: ``min_freq < 1`` or ``max_vocab < 1``.
    """
    probe = _new_word_tokenizer({t: i for i, t in enumerate(SPECIAL_TOKENS)}, max_length)
    counts: Counter[str] = Counter()
    for text in texts:
        normalised = probe.normalizer.normalize_str(text or "")
        counts.update(w for w, _ in probe.pre_tokenizer.pre_tokenize_str(normalised))
    for special in SPECIAL_TOKENS:
        counts.pop(special.lower(), None)
        counts.pop(special, None)
    words = sorted((w for w, n in counts.items() if n >= min_freq), key=lambda w: (-counts[w], w))
    if max_vocab is not None:
        words = words[:max_vocab]
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    for w in words:
        vocab[w] = len(vocab)
    return _new_word_tokenizer(vocab, max_length)


def load_word_tokenizer(path: str | os.PathLike[str], max_length: int | None = None) -> Tokenizer:
    """Load a ``tokenizer.json`` (a file, or a directory that holds one).

    Args:
        path: The file or directory.
        max_length: Tokens per text (default: what the file holds, else 64).

    Returns:
        The tokenizer.

    Raises:
        BackboneError: The file is missing, unreadable or lacks the special tokens.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "tokenizer.json"
    if not p.is_file():
        raise BackboneError(f"word tokenizer file not found: {p}")
    try:
        tok = Tokenizer.from_file(str(p))
    except Exception as e:  # tokenizers raises a bare Exception on bad JSON
        raise BackboneError(f"cannot read word tokenizer {p}: {e}") from e
    missing = [t for t in SPECIAL_TOKENS if tok.token_to_id(t) is None]
    if missing:
        raise BackboneError(f"word tokenizer {p} lacks the special tokens {missing}")
    if max_length is not None:
        configure_word_tokenizer(tok, max_length)
    elif tok.truncation is None or tok.padding is None:
        configure_word_tokenizer(tok, 64)
    return tok


class SmallTextEncoder(KeepFrozen, TextEncoder):
    """Token embedding + masked 1-D convolution (or masked mean) + MLP, trained from scratch.

    Build it with :meth:`fit` on the training texts, or from a fitted tokenizer.

    Args:
        tokenizer: A ``tokenizers.Tokenizer``, or the path of its ``tokenizer.json``.
        out_dim: The embedding size (128).
        embed_dim: The token embedding size (128).
        hidden: The MLP's width (128).
        pooling: ``"conv"`` (a kernel-3 conv over the embeddings, then masked mean and masked
            max concatenated) or ``"mean"`` (masked mean of the embeddings).
        max_length: Tokens per text including ``[CLS]``/``[SEP]`` (default: what the
            tokenizer holds, else 64).
        dropout: The dropout rate (0.1).
    """

    @validated
    def __init__(
        self,
        tokenizer: Tokenizer | str | os.PathLike[str],
        out_dim: int = 128,
        embed_dim: int = 128,
        hidden: int = 128,
        pooling: Literal["conv", "mean"] = "conv",
        max_length: int | None = None,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if isinstance(tokenizer, Tokenizer):
            tok = Tokenizer.from_str(tokenizer.to_str())  # own copy: padding is set below
            if max_length is not None or tok.truncation is None or tok.padding is None:
                configure_word_tokenizer(tok, max_length or 64)
        else:
            tok = load_word_tokenizer(tokenizer, max_length)
        missing = [t for t in SPECIAL_TOKENS if tok.token_to_id(t) is None]
        if missing:
            raise BackboneError(f"SmallTextEncoder: the tokenizer lacks special tokens {missing}")
        self.tokenizer = tok
        self.max_length = int(tok.truncation["max_length"])
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
        self.pad_id = tok.token_to_id(PAD)
        self.special_ids = tuple(sorted(tok.token_to_id(t) for t in SPECIAL_TOKENS))
        self.out_dim = int(out_dim)
        self.pooling = pooling

        self.embed = nn.Embedding(self.vocab_size, embed_dim, padding_idx=self.pad_id)
        if pooling == "conv":
            self.conv = nn.Conv1d(embed_dim, hidden, kernel_size=3, padding=1)
            pooled = 2 * hidden
        else:
            self.conv = None
            pooled = embed_dim
        self.mlp = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(pooled, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, self.out_dim),
        )
        vocab_hash = hashlib.sha256(self.tokenizer_json().encode()).hexdigest()[:16]
        self.identity = (
            f"small-text(vocab={vocab_hash},size={self.vocab_size},max_length={self.max_length},"
            f"out_dim={self.out_dim},embed_dim={embed_dim},hidden={hidden},pooling={pooling})"
        )

    @classmethod
    def fit(
        cls,
        texts: Iterable[str],
        min_freq: int = 1,
        max_vocab: int | None = 30000,
        max_length: int = 64,
        **options,
    ) -> SmallTextEncoder:
        """Fit the word vocabulary on ``texts`` (see :func:`build_word_tokenizer`) and build.

        Args:
            texts: The training texts.
            min_freq: The fewest occurrences a word needs to enter the vocabulary.
            max_vocab: The most words kept (the most frequent), or None for all.
            max_length: Tokens per text.
            **options: The encoder's other arguments (``out_dim``, ``pooling``...).

        Returns:
            The encoder.
        """
        tok = build_word_tokenizer(
            texts, min_freq=min_freq, max_vocab=max_vocab, max_length=max_length
        )
        return cls(tok, **options)

    def tokenizer_json(self) -> str:
        """The fitted tokenizer, serialised.

        Returns:
            Its ``tokenizer.json`` text.
        """
        return self.tokenizer.to_str()

    def save_tokenizer(self, path: str | os.PathLike[str]) -> Path:
        """Write ``tokenizer.json`` (``path`` is a file, or a directory to hold one); atomic.

        Args:
            path: A ``.json`` file, or a directory.

        Returns:
            The file written.
        """
        p = Path(path)
        if p.is_dir() or p.suffix != ".json":
            p = p / "tokenizer.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        write_text(p, self.tokenizer_json())
        return p

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Tokenise with the fitted word vocabulary.

        Args:
            texts: The strings.

        Returns:
            ``{"input_ids": [B, T], "attention_mask": [B, T]}``, int64.
        """
        if isinstance(texts, str):
            raise BackboneError("tokenize takes a list of strings, got one string")
        encodings = self.tokenizer.encode_batch([t if t is not None else "" for t in texts])
        if not encodings:
            empty = torch.zeros(0, 2, dtype=torch.long)
            return {"input_ids": empty, "attention_mask": empty.clone()}
        return {
            "input_ids": torch.tensor([e.ids for e in encodings], dtype=torch.long),
            "attention_mask": torch.tensor([e.attention_mask for e in encodings], dtype=torch.long),
        }

    def forward(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Embed a batch of tokenised texts.

        Args:
            tokens: What :meth:`tokenize` returns.

        Returns:
            ``[B, out_dim]``.
        """
        ids = tokens["input_ids"]
        mask = tokens.get("attention_mask")
        if mask is None:
            mask = (ids != self.pad_id).long()
        m = mask.unsqueeze(-1).to(self.embed.weight.dtype)  # [B, T, 1]
        x = self.embed(ids) * m
        count = m.sum(1).clamp_min(1.0)
        if self.conv is None:
            pooled = x.sum(1) / count
        else:
            h = F.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)  # [B, T, hidden]
            mean = (h * m).sum(1) / count
            # h >= 0 after ReLU, so masking with 0 is a valid masked max
            mx = (h * m).amax(1)
            pooled = torch.cat([mean, mx], dim=-1)
        return self.mlp(pooled)
