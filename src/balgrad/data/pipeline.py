"""From a dataset and an evaluation condition to model-ready batches.

Live towers (trainable backbones) get preprocessed pixels / token ids each batch.
Frozen towers are encoded once per (dataset, backbone, impairment) and their features
are cached (SPEC section 4: impaired inputs still go through the backbone), so training
and every evaluation condition after the first reuse them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from balgrad.data.base import MultimodalDataset
from balgrad.data.impairments import (
    MISSING_MODES,
    Condition,
    blank_image,
    noisy_image,
    noisy_tokens,
)
from balgrad.errors import ConfigError

log = logging.getLogger("balgrad.data")


@dataclass
class Batch:
    image: torch.Tensor  # pixels [B, ...] or cached features [B, D]
    text: dict[str, torch.Tensor] | torch.Tensor  # token ids or cached features [B, D]
    target: torch.Tensor
    index: torch.Tensor
    drop_image: torch.Tensor | None = None  # bool [B]: zero h_v ("missing = embedding")
    drop_text: torch.Tensor | None = None

    def to(self, device) -> Batch:
        def mv(x):
            if x is None:
                return None
            if isinstance(x, dict):
                return {k: v.to(device, non_blocking=True) for k, v in x.items()}
            return x.to(device, non_blocking=True)

        return Batch(
            mv(self.image),
            mv(self.text),
            mv(self.target),
            mv(self.index),
            mv(self.drop_image),
            mv(self.drop_text),
        )

    def __len__(self) -> int:
        return int(self.target.shape[0])


class FeatureInput(nn.Module):
    """The stand-in for a frozen backbone whose features are precomputed: identity."""

    trainable = False

    def __init__(self, out_dim: int, identity: str = "features"):
        super().__init__()
        self.out_dim = out_dim
        self.identity = identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def label_tensor(label) -> torch.Tensor:
    if isinstance(label, torch.Tensor):
        return label
    arr = np.asarray(label)
    if arr.ndim == 0:
        return torch.tensor(int(arr), dtype=torch.long)
    return torch.as_tensor(arr, dtype=torch.float32)


class _ConditionedView(Dataset):
    """Items of ``dataset`` under ``condition``; cached towers read precomputed features.

    ``load_images=False`` skips reading images altogether (encoding the text tower)."""

    def __init__(
        self,
        pipeline: InputPipeline,
        dataset: MultimodalDataset,
        condition: Condition,
        feats_image: torch.Tensor | None,
        feats_text: torch.Tensor | None,
        load_images: bool = True,
    ):
        self.p, self.ds, self.c = pipeline, dataset, condition
        self.hit = condition.mask(len(dataset))
        self.feats_image, self.feats_text = feats_image, feats_text
        self.load_images = load_images
        self.embedding_mode = pipeline.missing == "embedding"

    def __len__(self):
        return len(self.ds)

    def _text_and_label(self, i):
        texts, labels = getattr(self.ds, "texts", None), getattr(self.ds, "labels", None)
        if texts is not None and labels is not None:
            return texts[i], label_tensor(labels[i])
        ex = self.ds[i]
        return ex.text, label_tensor(ex.label)

    def __getitem__(self, i):
        c, hit = self.c, bool(self.hit[i])
        if not self.load_images:
            text, label = self._text_and_label(i)
            image = torch.zeros(0)
        elif self.feats_image is None:
            ex = self.ds[i]
            text, label = ex.text, label_tensor(ex.label)
            img = ex.image
            if hit and c.kind == "missing_image" and not self.embedding_mode:
                img = blank_image(img)
            elif hit and c.kind == "noisy_image":
                img = noisy_image(img, c.level, c.seed, i)
            image = self.p.image_encoder.preprocess(img)
        else:
            text, label = self._text_and_label(i)
            image = self.feats_image[i]
        if self.feats_text is None:
            if hit and c.kind == "missing_text" and not self.embedding_mode:
                text = ""
        else:
            text = self.feats_text[i]
        return {
            "image": image,
            "text": text,
            "label": label,
            "index": i,
            "drop_image": hit and c.kind == "missing_image" and self.embedding_mode,
            "drop_text": hit and c.kind == "missing_text" and self.embedding_mode,
            "text_noise": c.level
            if (hit and c.kind == "noisy_text" and self.feats_text is None)
            else 0.0,
            "seed": c.seed,
        }


class InputPipeline:
    """Turns (dataset, condition) into DataLoaders of :class:`Batch`.

    Args:
        image_encoder, text_encoder: balgrad encoders. A frozen one (``trainable`` false)
            is encoded once per condition and cached; a trainable one runs live.
        missing: ``"input"`` (blank image / empty string through the backbone) or
            ``"embedding"`` (zero h_m), SPEC section 4.
        cache: a ``FeatureCache`` (disk) or None (memory only).
        memory: an in-process dict of features shared between pipelines (e.g. across
            the runs of one comparison); a private one by default.
    """

    def __init__(
        self,
        image_encoder,
        text_encoder,
        missing: str = "input",
        cache=None,
        encode_batch_size: int = 64,
        num_workers: int = 0,
        progress: bool = True,
        memory: dict | None = None,
    ):
        if missing not in MISSING_MODES:
            raise ConfigError(
                f"missing: unknown value {missing!r}; expected one of {MISSING_MODES}"
            )
        self.image_encoder, self.text_encoder = image_encoder, text_encoder
        self.missing = missing
        self.cache = cache
        self.encode_batch_size = encode_batch_size
        self.num_workers = num_workers
        self.progress = progress
        self.cache_image = not getattr(image_encoder, "trainable", True)
        self.cache_text = not getattr(text_encoder, "trainable", True)
        # in-process feature store; pass one dict to several pipelines to share it
        self._memory: dict[str, torch.Tensor] = {} if memory is None else memory
        self.encoded = 0  # how many tower encodings were computed (not served from a cache)

    def model_encoders(self) -> tuple[nn.Module, nn.Module]:
        """The encoders the model should hold: live backbones, or identity over features."""
        img = (
            FeatureInput(self.image_encoder.out_dim, self.image_encoder.identity)
            if self.cache_image
            else self.image_encoder
        )
        txt = (
            FeatureInput(self.text_encoder.out_dim, self.text_encoder.identity)
            if self.cache_text
            else self.text_encoder
        )
        return img, txt

    # -- batching ------------------------------------------------------------------
    def collate(self, items: list[dict]) -> Batch:
        first = items[0]
        image = torch.stack([it["image"] for it in items])
        if isinstance(first["text"], torch.Tensor):
            text = torch.stack([it["text"] for it in items])
        else:
            text = self.text_encoder.tokenize([it["text"] for it in items])
            if any(it["text_noise"] > 0 for it in items):
                ids = text["input_ids"].clone()
                for row, it in enumerate(items):
                    if it["text_noise"] > 0:
                        ids[row] = noisy_tokens(
                            ids[row],
                            text["attention_mask"][row],
                            it["text_noise"],
                            self.text_encoder.vocab_size,
                            tuple(self.text_encoder.special_ids),
                            it["seed"],
                            it["index"],
                        )
                text = {**text, "input_ids": ids}
        target = torch.stack([it["label"] for it in items])
        drop_i = torch.tensor([it["drop_image"] for it in items])
        drop_t = torch.tensor([it["drop_text"] for it in items])
        return Batch(
            image,
            text,
            target,
            torch.tensor([it["index"] for it in items]),
            drop_i if drop_i.any() else None,
            drop_t if drop_t.any() else None,
        )

    def loader(
        self,
        dataset: MultimodalDataset,
        condition: Condition | None = None,
        *,
        batch_size: int = 64,
        shuffle: bool = False,
        seed: int = 0,
        sampler=None,
        drop_last: bool = False,
    ) -> DataLoader:
        condition = condition or Condition()
        feats_i = self.features(dataset, condition, "image") if self.cache_image else None
        feats_t = self.features(dataset, condition, "text") if self.cache_text else None
        view = _ConditionedView(self, dataset, condition, feats_i, feats_t)
        gen = torch.Generator()
        gen.manual_seed(seed)
        return DataLoader(
            view,
            batch_size=batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            collate_fn=self.collate,
            generator=gen,
            num_workers=self.num_workers,
            drop_last=drop_last,
        )

    # -- frozen towers -------------------------------------------------------------
    def features(
        self, dataset: MultimodalDataset, condition: Condition, tower: str
    ) -> torch.Tensor:
        """[N, D] features of one frozen tower under ``condition`` (cached)."""
        enc = self.image_encoder if tower == "image" else self.text_encoder
        if condition.kind == f"missing_{tower}" and self.missing == "input":
            # a blank image / empty string encodes to one constant vector: no need to
            # run the backbone over the whole split again for every missing ratio
            full = self.features(dataset, Condition(seed=condition.seed), tower)
            out = full.clone()
            out[torch.from_numpy(condition.mask(len(dataset)))] = self._blank_features(
                dataset, tower
            )
            return out
        part = condition.image_part() if tower == "image" else condition.text_part()
        if self.missing == "embedding" and condition.kind.startswith("missing"):
            part = "full"  # embedding mode zeroes h_m later; the backbone sees the real input
        parts = {
            "dataset": dataset.fingerprint,
            "tower": tower,
            "encoder": enc.identity,
            "condition": part,
            "missing": self.missing,
        }
        mem_key = repr(sorted(parts.items()))
        if mem_key in self._memory:
            return self._memory[mem_key]
        key = self.cache.key(**parts) if self.cache is not None else None
        feats = self.cache.get(key) if self.cache is not None else None
        if feats is None:
            feats = self._encode(dataset, condition, tower)
            self.encoded += 1
            if self.cache is not None:
                self.cache.put(key, feats, parts)
        self._memory[mem_key] = feats
        return feats

    def _blank_features(self, dataset, tower: str) -> torch.Tensor:
        enc = self.image_encoder if tower == "image" else self.text_encoder
        key = f"blank:{tower}:{enc.identity}:{dataset.fingerprint}"
        if key not in self._memory:
            enc.eval()
            with torch.no_grad():
                if tower == "image":
                    x = self.image_encoder.preprocess(blank_image(dataset[0].image)).unsqueeze(0)
                    self._memory[key] = enc(x).float().cpu()[0]
                else:
                    self._memory[key] = enc(self.text_encoder.tokenize([""])).float().cpu()[0]
        return self._memory[key]

    def _encode(self, dataset, condition, tower) -> torch.Tensor:
        from tqdm.auto import tqdm

        # a view with both towers live; only the requested one is run (text skips images)
        live = _ConditionedView(self, dataset, condition, None, None, load_images=tower == "image")
        enc = self.image_encoder if tower == "image" else self.text_encoder
        loader = DataLoader(
            live,
            batch_size=self.encode_batch_size,
            collate_fn=self.collate,
            num_workers=self.num_workers,
        )
        out = []
        enc.eval()
        desc = f"encode {tower} {dataset.info.name}/{dataset.split} [{condition.name}]"
        with torch.no_grad():
            for batch in tqdm(loader, desc=desc, disable=not self.progress, leave=False):
                out.append(enc(batch.image if tower == "image" else batch.text).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, enc.out_dim)
