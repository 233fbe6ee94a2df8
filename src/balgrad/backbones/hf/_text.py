"""A Hugging Face text model as a balgrad text encoder."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from pydantic import Field

from balgrad.backbones._base import TextEncoder
from balgrad.backbones.hf._source import CheckpointSource
from balgrad.backbones.hf._tower import HFTower, Pooling
from balgrad.errors import BackboneError, ConfigError
from balgrad.registry import validated

TEXT_POOLINGS = typing.get_args(Pooling)
# the longest max_length used when neither the tokenizer nor the model states a limit
DEFAULT_MAX_LENGTH = 512


class HFTextEncoder(HFTower, TextEncoder):
    """A Hugging Face text model (``hf:<id|path>``; ``clip:<id|path>`` forces the CLIP tower).

    Args:
        name: The Hub id or local path of the checkpoint.
        finetune: False (default) freezes the model; True keeps it trainable.
        pooling: ``"auto"`` (the pooled output when the model has one whose weights are in
            the checkpoint, e.g. BERT's pooler or CLIP's end-of-text token; otherwise the
            first token when the tokenizer has a CLS token, else the masked mean),
            ``"pooler"``, ``"cls"`` (first token) or ``"mean"`` (masked mean).
        max_length: tokens per text (default: the model's limit, at most 512).
        normalize: L2-normalise the output (False).
        projection: CLIP only: output the projected ``text_embeds``.
        trust_remote_code, revision, cache_dir, local_files_only: passed to
            ``from_pretrained`` (``trust_remote_code`` is False by default).
        clip: Force the CLIP tower (what the ``clip:`` prefix sets).

    ``_label`` and ``_identity`` let a named backbone built on this class (``minilm``)
    show its own name in messages and key the feature cache on its own identity.
    """

    @validated
    def __init__(
        self,
        name: str,
        finetune: bool = False,
        pooling: Pooling = "auto",
        max_length: Annotated[int, Field(ge=2, le=100_000)] | None = None,  # [CLS], [SEP]
        normalize: bool = False,
        projection: bool = False,
        trust_remote_code: bool = False,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool | None = None,
        clip: bool = False,
        _label: str | None = None,
        _identity: str | None = None,
    ) -> None:
        super().__init__()
        label = _label or f"{'clip' if clip else 'hf'}:{name}"
        src = CheckpointSource(
            label, name, revision, cache_dir, local_files_only, trust_remote_code
        )
        loaded = self._open_tower(src, "text", pooling, clip=clip, projection=projection)
        from transformers import AutoTokenizer

        tokenizer = loaded.source.load("tokenizer", AutoTokenizer.from_pretrained)
        if tokenizer.pad_token is None:
            fallback = tokenizer.eos_token or tokenizer.unk_token
            if fallback is None:
                raise BackboneError(f"backbone {self.label!r}: the tokenizer has no padding token")
            tokenizer.pad_token = fallback
        self.tokenizer = tokenizer
        self.max_length = self._max_length(max_length, tokenizer, loaded.model_config)
        self.normalize = bool(normalize)

        emb = self.model.get_input_embeddings()
        n_rows = getattr(emb, "num_embeddings", None) or len(tokenizer)
        self.vocab_size = int(min(len(tokenizer), n_rows))
        self.pad_id = int(tokenizer.pad_token_id)
        self.special_ids = tuple(sorted({int(i) for i in tokenizer.all_special_ids}))

        self.model.eval()
        with torch.no_grad():
            probe = self.tokenize(["probe", ""])
            out = self.model(**probe)
        fallback = "cls" if tokenizer.cls_token is not None else "mean"
        self._set_pooling(pooling, out, loaded, fallback, hint="; use 'cls' or 'mean'")
        self.out_dim = int(self._pool(out, probe["attention_mask"]).shape[-1])
        self.identity = _identity or (
            f"{self._identity_prefix('text', loaded)}"
            f"|max_length={self.max_length}|normalize={self.normalize}"
        )
        self._freeze_unless(finetune)

    def _max_length(self, requested: int | None, tokenizer: Any, model_config: Any) -> int:
        """``requested``, checked against the tokenizer's and the model's limits; by default
        the smallest of those and 512."""
        limits = [DEFAULT_MAX_LENGTH]
        mml = getattr(tokenizer, "model_max_length", None)
        if isinstance(mml, int) and 0 < mml < 100_000:
            limits.append(mml)
        mpe = getattr(model_config, "max_position_embeddings", None)
        if isinstance(mpe, int) and mpe > 0:
            limits.append(mpe)
        limit = min(limits)
        if requested is None:
            return int(limit)
        if requested > limit and limit != DEFAULT_MAX_LENGTH:
            raise ConfigError(
                f"backbone {self.label!r}: option 'max_length'={requested} exceeds the model's "
                f"limit of {limit} tokens"
            )
        return int(requested)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Tokenise with the checkpoint's tokenizer, padded to the longest and truncated to
        ``max_length``; None becomes "".

        Args:
            texts: The strings.

        Returns:
            ``{"input_ids": [B, T], "attention_mask": [B, T]}``.

        Raises:
            BackboneError: ``texts`` is one string.
        """
        if isinstance(texts, str):
            raise BackboneError("tokenize takes a list of strings, got one string")
        texts = ["" if t is None else str(t) for t in texts]
        if not texts:
            empty = torch.zeros(0, 2, dtype=torch.long)
            return {"input_ids": empty, "attention_mask": empty.clone()}
        enc = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        ids = enc["input_ids"].long()
        mask = enc.get("attention_mask")
        mask = (ids != self.pad_id).long() if mask is None else mask.long()
        return {"input_ids": ids, "attention_mask": mask}

    def _pool(self, out: Any, mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "projection":
            f = out.text_embeds
        elif self.pooling == "pooler":
            f = out.pooler_output
        elif self.pooling == "cls":
            f = out.last_hidden_state[:, 0]
        else:
            h = out.last_hidden_state
            m = mask.unsqueeze(-1).to(h.dtype)
            f = (h * m).sum(1) / m.sum(1).clamp_min(1e-9)
        return F.normalize(f, dim=-1) if self.normalize else f

    def forward(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Embed a batch of tokenised texts (pooled by ``pooling``).

        Args:
            tokens: What :meth:`tokenize` returns.

        Returns:
            ``[B, out_dim]``.
        """
        ids = tokens["input_ids"]
        mask = tokens.get("attention_mask")
        if mask is None:
            mask = (ids != self.pad_id).long()
        out = self.model(input_ids=ids, attention_mask=mask)
        return self._pool(out, mask)
