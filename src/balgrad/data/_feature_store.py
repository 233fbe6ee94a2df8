"""Features of the frozen towers, computed once and reused.

A frozen backbone maps the same input to the same features, so its features on a split
under a condition are encoded once (SPEC section 4: impaired inputs still go through
the backbone) and kept in memory and, when a ``FeatureCache`` is given, on disk. The
model then holds :class:`FeatureInput`, an identity, in place of the backbone.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Mapping

import torch
from torch import nn
from torch.utils.data import DataLoader

from balgrad.data._base import MultimodalDataset
from balgrad.data._batch import collate
from balgrad.data._conditioned_view import ConditionedView, modalities_of
from balgrad.data._impairments import Condition
from balgrad.data._kinds import KINDS


class FeatureInput(nn.Module):
    """The stand-in for a frozen backbone whose features are precomputed: identity.

    Args:
        out_dim: The features' size.
        identity: The frozen backbone's identity (for the feature cache).
    """

    trainable = False

    def __init__(self, out_dim: int, identity: str = "features"):
        super().__init__()
        self.out_dim = out_dim
        self.identity = identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The precomputed features, as they are.

        Args:
            x: ``[B, out_dim]``.

        Returns:
            ``x``.
        """
        return x


class FrozenFeatures:
    """``[N, D]`` features of a frozen tower per (dataset, condition): from ``memory``, from
    the disk ``cache``, or encoded (counted in ``encoded``).

    The cache key parts are the dataset fingerprint, the tower, the encoder's identity
    (with a sha256 of its weights unless ``identity_covers_weights``), the part of the
    condition that reaches this tower, the missing mode and, for a
    dataset with ``content_files()`` (its images), the sha256 of their content
    (``FeatureCache.content_digest``); changing them invalidates every cache already
    written. The cache checks each entry it serves against the request (these parts,
    the shape ``[N, out_dim]`` and the dtype).

    Args:
        encoders: The frozen backbones, by modality.
        missing: ``"input"`` or ``"embedding"`` (SPEC section 4).
        cache: A ``FeatureCache``, or None.
        memory: The in-process features, by key.
        batch_size: The encoding pass's batch size.
        num_workers: ``DataLoader`` worker processes.
        progress: Show a progress bar.
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        missing: str,
        cache,
        memory: dict[str, torch.Tensor],
        *,
        batch_size: int,
        num_workers: int,
        progress: bool,
    ):
        self.encoders = encoders  # by modality name
        self.missing = missing
        self.cache = cache
        self.memory = memory  # in-process store, possibly shared by several pipelines
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.progress = progress
        self.encoded = 0  # how many tower encodings were computed (not served from a cache)
        # frozen: an encoder's weights never change, so their sha256 is taken once
        self._weights: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def encoder(self, tower: str):
        """A modality's backbone.

        Args:
            tower: The modality.

        Returns:
            The encoder.
        """
        return self.encoders[tower]

    def features(
        self, dataset: MultimodalDataset, condition: Condition, tower: str
    ) -> torch.Tensor:
        """[N, D] features of one frozen tower under ``condition`` (cached).

        Args:
            dataset: A split.
            condition: The impairment.
            tower: The modality.

        Returns:
            ``[N, out_dim]``.
        """
        if condition.missing_for(tower) and self.missing == "input":
            # a blank input (image, string, silence, ...) encodes to one constant vector:
            # no need to run the backbone over the whole split again for every ratio
            full = self.features(dataset, Condition(seed=condition.seed), tower)
            out = full.clone()
            hit = torch.from_numpy(condition.mask(len(dataset)))
            out[hit] = self._blank_features(dataset, tower)
            return out
        part = condition.part(tower)
        if self.missing == "embedding" and condition.missing_for(tower):
            part = "full"  # embedding mode zeroes h_m later; the backbone sees the real input
        enc = self.encoder(tower)
        parts = {
            "dataset": dataset.fingerprint,
            "tower": tower,
            **self._encoder_parts(tower),
            "condition": part,
            "missing": self.missing,
        }
        content = None if self.cache is None else self.cache.content_digest(dataset)
        if content is not None:  # the bytes of the files it decodes (the fingerprint has sizes)
            parts["content"] = content
        memory_key = repr(sorted(parts.items()))
        if memory_key not in self.memory:

            def compute() -> torch.Tensor:
                self.encoded += 1
                return self.encode(dataset, condition, tower)

            if self.cache is None:
                self.memory[memory_key] = compute()
            else:
                key = self.cache.key(**parts)
                # the full request: an entry whose metadata or shape differs is a miss
                request = {**parts, "shape": [len(dataset), enc.out_dim], "dtype": "float32"}
                self.memory[memory_key] = self.cache.get_or_compute(key, compute, request)
        return self.memory[memory_key]

    def _encoder_parts(self, tower: str) -> dict[str, str]:
        """The encoder's identity and, unless that pins its weights, their sha256."""
        enc = self.encoder(tower)
        parts = {"encoder": enc.identity}
        if not getattr(enc, "identity_covers_weights", False):
            if enc not in self._weights:
                self._weights[enc] = weights_digest(enc)
            parts["weights"] = self._weights[enc]
        return parts

    def _blank_features(self, dataset: MultimodalDataset, tower: str) -> torch.Tensor:
        enc = self.encoder(tower)
        key = f"blank:{tower}:{sorted(self._encoder_parts(tower).items())}:{dataset.fingerprint}"
        if key not in self.memory:
            enc.eval()
            kind = KINDS[modalities_of(dataset)[tower]]
            with torch.no_grad():
                x = kind.blank(dataset[0].inputs[tower])
                if kind.tokenized:  # a raw text is tokenized, as in collation
                    x = enc.tokenize([x])
                else:
                    if callable(getattr(enc, "preprocess", None)):
                        x = enc.preprocess(x)
                    x = _one_sample_batch(x)
                self.memory[key] = enc(x).float().cpu()[0]
        return self.memory[key]

    def encode(self, dataset: MultimodalDataset, condition: Condition, tower: str) -> torch.Tensor:
        """Run the tower's backbone over the split under ``condition`` (no cache).

        Args:
            dataset: A split.
            condition: The impairment.
            tower: The modality.

        Returns:
            ``[N, out_dim]``.
        """
        from balgrad.data._progress import with_progress

        # only the requested modality's raw inputs are read (a text tower skips images)
        live = ConditionedView(
            dataset,
            condition,
            encoders=self.encoders,
            embedding_mode=self.missing == "embedding",
            load=[tower],
        )
        enc = self.encoder(tower)
        loader = DataLoader(
            live,
            batch_size=self.batch_size,
            collate_fn=self._collate,
            num_workers=self.num_workers,
        )
        out = []
        enc.eval()
        desc = f"encode {tower} {dataset.info.name}/{dataset.split} [{condition.name}]"
        with torch.no_grad():
            for batch in with_progress(loader, desc=desc, disable=not self.progress, leave=False):
                out.append(enc(batch.inputs[tower]).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, enc.out_dim)

    def _collate(self, items: list[dict]):
        return collate(items, self.encoders)


def _one_sample_batch(x):
    """One model input as a batch of one (a mapping input key by key)."""
    if isinstance(x, Mapping):
        return {k: torch.as_tensor(v).unsqueeze(0) for k, v in x.items()}
    return x.unsqueeze(0)


def weights_digest(module: nn.Module) -> str:
    """sha256 over a module's ``state_dict`` (names, dtypes, shapes and bytes, in name order).

    Args:
        module: A module.

    Returns:
        The hex digest.
    """
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}\0{t.dtype}\0{list(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()
