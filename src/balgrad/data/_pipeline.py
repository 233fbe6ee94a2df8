"""From a dataset and an evaluation condition to model-ready batches.

Live towers (trainable backbones) get preprocessed pixels / token ids each batch
(:mod:`balgrad.data._conditioned_view`, :mod:`balgrad.data._batch`). Frozen towers are
encoded once per (dataset, backbone, impairment) and their features are cached
(:mod:`balgrad.data._feature_store`), so training and every evaluation condition after
the first reuse them.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler

from balgrad.data._base import MultimodalDataset
from balgrad.data._batch import Batch, collate
from balgrad.data._conditioned_view import ConditionedView, modalities_of
from balgrad.data._feature_store import FeatureInput, FrozenFeatures
from balgrad.data._impairments import MISSING_MODES, Condition
from balgrad.errors import ConfigError

__all__ = ["Batch", "FeatureInput", "InputPipeline"]


class InputPipeline:
    """Turns (dataset, condition) into DataLoaders of :class:`Batch`.

    Args:
        image_encoder, text_encoder: the (image, text) case's encoders, positionally as
            before modalities were named; or
        encoders: balgrad encoders by modality name (the dataset's ``info.modalities``).
            A frozen one (``trainable`` false) is encoded once per condition and cached; a
            trainable one runs live.
        missing: ``"input"`` (the kind's blank input through the backbone) or
            ``"embedding"`` (zero h_m), SPEC section 4.
        cache: a ``FeatureCache`` (disk) or None (memory only).
        encode_batch_size: the batch size of a frozen tower's encoding pass.
        num_workers: ``DataLoader`` worker processes.
        progress: show a progress bar while a frozen tower encodes.
        memory: an in-process dict of features shared between pipelines (e.g. across
            the runs of one comparison); a private one by default.
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
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
        if not isinstance(encoders, Mapping):
            raise ConfigError(
                f"InputPipeline: encoders must map modality name to encoder, got "
                f"{type(encoders).__name__}, e.g. InputPipeline({{'image': v, 'text': t}})"
            )
        self.encoders = dict(encoders)
        self.missing = missing
        self.cache = cache
        self.num_workers = num_workers
        # a frozen tower's features are precomputed (once per condition) and cached
        self.precomputed = {m: not getattr(e, "trainable", True) for m, e in self.encoders.items()}
        self.frozen_features = FrozenFeatures(
            self.encoders,
            missing,
            cache,
            {} if memory is None else memory,
            batch_size=encode_batch_size,
            num_workers=num_workers,
            progress=progress,
        )

    @property
    def modalities(self) -> list[str]:
        """The modalities, in the encoders' order."""
        return list(self.encoders)

    @property
    def encoded(self) -> int:
        """How many tower encodings were computed (not served from a cache)."""
        return self.frozen_features.encoded

    def model_encoders(self) -> dict[str, nn.Module]:
        """The encoder the model should hold for each modality: its live backbone, or an
        identity over its precomputed features.

        Returns:
            ``{modality: module}``.
        """
        return {
            m: FeatureInput(e.out_dim, e.identity) if self.precomputed[m] else e
            for m, e in self.encoders.items()
        }

    def collate(self, items: list[dict] | Batch) -> Batch:
        # a view of cached features gathers its batch itself (ConditionedView.__getitems__)
        """A :class:`Batch` of a loader's items (a view of cached features gathers its own).

        Args:
            items: The items, or a gathered batch.

        Returns:
            The batch.
        """
        return items if isinstance(items, Batch) else collate(items, self.encoders)

    def features(
        self, dataset: MultimodalDataset, condition: Condition, tower: str
    ) -> torch.Tensor:
        """[N, D] features of one frozen tower under ``condition`` (cached).

        Args:
            dataset: A split.
            condition: The impairment.
            tower: The modality.

        Returns:
            The features.
        """
        return self.frozen_features.features(dataset, condition, tower)

    def check_dataset(self, dataset: MultimodalDataset) -> None:
        """The encoders are exactly the dataset's modalities.

        Args:
            dataset: A split.

        Raises:
            ConfigError: They differ.
        """
        expected = list(modalities_of(dataset))
        if sorted(expected) != sorted(self.encoders):
            raise ConfigError(
                f"dataset {dataset.info.name!r} has the modalities {expected}, but the "
                f"pipeline has encoders for {list(self.encoders)}"
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
        """A ``DataLoader`` of :class:`Batch` over ``dataset`` under ``condition``.

        Args:
            dataset: A split.
            condition: The impairment (None: the full data).
            batch_size: The batch size.
            shuffle: Shuffle each epoch.
            seed: The shuffle's seed.
            sampler: A sampler instead (``DistributedSampler`` under torchrun).
            drop_last: Drop the last incomplete batch.

        Returns:
            The loader.

        Raises:
            ConfigError: The encoders are not the dataset's modalities.
        """
        condition = condition or Condition()
        self.check_dataset(dataset)
        view = ConditionedView(
            dataset,
            condition,
            encoders=self.encoders,
            embedding_mode=self.missing == "embedding",
            features={
                m: self.features(dataset, condition, m)
                for m in self.encoders
                if self.precomputed[m]
            },
        )
        if shuffle and sampler is None:
            sampler = SeededPermutation(len(view), seed)
        gen = torch.Generator()  # the workers' base seed only: the order is the sampler's
        gen.manual_seed(seed)
        return DataLoader(
            view,
            batch_size=batch_size,
            sampler=sampler,
            collate_fn=self.collate,
            generator=gen,
            num_workers=self.num_workers,
            drop_last=drop_last,
        )


class SeededPermutation(Sampler[int]):
    """The same random order of ``range(n)`` on every iteration, a function of ``seed``
    alone: how many iterators were made, by how many workers, draws nothing from it
    (``RandomSampler`` draws from a generator that the loader's iterators share).

    It is the order the single-process loader gave before this sampler existed, so
    results recorded then (the README's tables) reproduce bit for bit: each loader
    iterator drew a 64-bit base seed from the generator, a progress bar made a throw-away
    iterator first, and the permutation came third."""

    #: the generator draws before the permutation, as the loader made them before: tables
    #: recorded with 0.1.x reproduce with this version because these keep the draws of
    #: 0.1.0's loader (dropping them reshuffles every training order and changes the numbers)
    LEGACY_DRAWS = 2

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(self.seed)
        for _ in range(self.LEGACY_DRAWS):
            torch.empty((), dtype=torch.int64).random_(generator=g)
        return iter(torch.randperm(self.n, generator=g).tolist())
