"""Composes data, backbones, model, strategy, trainer and evaluation into runs.

One *run* is (method, seed); a *comparison* is several runs on one dataset, written
into one run folder::

    <out>/<name>/config.yaml, run.lock (while a process writes the folder)
    <out>/<name>/<method>/seed<k>/{checkpoint.pt, checkpoint.prev.pt, model.safetensors,
                                   metrics.jsonl, epochs.jsonl, eval.json, tokenizer.json}
    <out>/<name>/{results.json, table.md, table.csv, table.json, gap_vs_ratio.png, ...}
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from balgrad.atomic import write_bytes, write_text
from balgrad.backbones._factory import BACKBONES, check_sample_rate
from balgrad.backbones.hf._tower import precheck_tower
from balgrad.config import (
    RESUME_MAY_GROW,
    RESUME_NEUTRAL,
    RESUME_ROUNDING_ONLY,
    ModalitySpec,
    RunConfig,
    dump_yaml,
    load_run_config,
    resume_differences,
)
from balgrad.config_upgrade import legacy_tokenizer_file
from balgrad.data._base import MultimodalDataset, known_texts, text_modality
from balgrad.data._catalog import DATASETS
from balgrad.data._conditioned_view import modalities_of, split_feature_std
from balgrad.data._kinds import declared_sample_rate, modality_kind
from balgrad.data._overlap import warn_split_overlap
from balgrad.data._pipeline import InputPipeline
from balgrad.data._splits import train_val_split
from balgrad.errors import BalgradError, ConfigError
from balgrad.evaluate._metrics import is_defined
from balgrad.evaluate._protocol import Evaluator, ProtocolConfig
from balgrad.models import MultimodalModel
from balgrad.names import check_modality_names
from balgrad.report._runfiles import RunFileError, read_eval
from balgrad.strategies import create_strategy
from balgrad.strategies._base import fusion_of
from balgrad.strategies._registry import strategy_info
from balgrad.train._distributed import (
    DistInfo,
    barrier,
    broadcast_parameters,
    check_device,
    init_distributed,
    resolve_device,
)
from balgrad.train._lock import RunLock
from balgrad.train._metrics_log import JsonlLogger, TensorBoardLogger, nan_to_null
from balgrad.train._precision import resolve_precision
from balgrad.train._trainer import Trainer, TrainSettings, check_precision_support

log = logging.getLogger("balgrad")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (the start of every run).

    Args:
        seed: The run's seed (NumPy gets it modulo 2**32).
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@dataclass
class Data:
    """A run's three splits (:func:`load_data`).

    Attributes:
        train: The training split.
        val: The validation split (model selection).
        test: The split the protocol scores.
    """

    train: MultimodalDataset
    val: MultimodalDataset
    test: MultimodalDataset

    @property
    def info(self):
        """The dataset's :class:`balgrad.data.DatasetInfo` (classes, task, metrics), the test split's."""
        return self.test.info


def load_data(cfg: RunConfig) -> Data:
    """Train/val/test splits; val is carved from train (never from test).

    A built-in dataset is generated with ``cfg.data_seed`` (into ``cfg.cache_dir`` where it
    caches); an on-disk one is read from ``cfg.data_dir``, every split's files checked now
    (a corrupt file fails before the first step, not after the training). Validation is
    the dataset's official split where it has one and ``cfg.test_split`` is not it, else
    ``cfg.val_fraction`` of train; a record found in two splits is warned about.

    Args:
        cfg: The run's settings.

    Returns:
        The :class:`Data`.

    Raises:
        ConfigError: An on-disk dataset without ``data_dir``, or bad dataset options.
        DataError: Missing or unreadable files, or a bad record (without ``skip_bad``).
    """
    opts = dict(cfg.dataset_options)
    meta = DATASETS.metadata(cfg.dataset)
    if meta["kind"] == "builtin":
        cache_option = meta["cache_option"]
        if cache_option and cache_option not in opts and cfg.data_dir is None:
            opts[cache_option] = str(Path(cfg.cache_dir) / "datasets")
        call = {"seed": cfg.data_seed, "data_dir": cfg.data_dir}
        train_full = DATASETS.build(cfg.dataset, ("train",), call, opts)
        test = DATASETS.build(cfg.dataset, ("test",), call, opts)
        train, val = train_val_split(train_full, cfg.val_fraction, cfg.data_seed)
        return Data(train, val, test)
    from balgrad.data.readers._registry_disk import MissingSplitError

    if cfg.data_dir is None:
        raise ConfigError(f"data_dir: dataset {cfg.dataset!r} is read from disk; pass --data-dir")

    def load(split: str) -> MultimodalDataset:
        return DATASETS.build(cfg.dataset, (cfg.data_dir, split), {"skip_bad": cfg.skip_bad}, opts)

    train_full, test = load("train"), load(cfg.test_split)
    warn_split_overlap(cfg.dataset, train_full, test)  # a clip in both: warned, kept
    # every split's files are checked now (headers, not decoded), so a corrupt file fails
    # before the first step, not in an epoch or after all the training
    _validate(train_full)
    _validate(test)
    if cfg.test_split in ("val", "dev"):  # the official validation split is the test set now
        train, val = train_val_split(train_full, cfg.val_fraction, cfg.data_seed)
        return Data(train, val, test)
    try:
        val = load("val")
        warn_split_overlap(cfg.dataset, val, test)  # model selection on test examples
        _validate(val)
        train = train_full
    except MissingSplitError:  # no official validation split: carve one from train
        train, val = train_val_split(train_full, cfg.val_fraction, cfg.data_seed)
    return Data(train, val, test)


def _validate(dataset: MultimodalDataset) -> None:
    """``dataset.validate()``, which a plug-in may lack (not every dataset subclasses
    MultimodalDataset): a bad record is an error now, or dropped with a warning under
    ``skip_bad``."""
    if callable(getattr(dataset, "validate", None)):
        dataset.validate()


def training_texts(dataset: MultimodalDataset, modality: str) -> list[str]:
    """The training texts of a text modality (what a vocabulary is fitted on).

    Args:
        dataset: The training split.
        modality: The name of a modality of kind text.

    Returns:
        One text per training example: the dataset's known texts where it holds them,
        else each example's input read in turn.
    """
    texts = known_texts(dataset, modality)
    if texts is not None:
        return list(texts)
    return [dataset[i].inputs[modality] for i in range(len(dataset))]


def input_features(dataset: MultimodalDataset, modality: str) -> int:
    """F of a feature-sequence modality: the last dimension of its first training item.

    Args:
        dataset: The training split.
        modality: A modality whose inputs are ``[T, F]`` tensors (or a mapping with
            ``"features"``).

    Returns:
        F.
    """
    x = dataset[0].inputs[modality]
    f = x["features"] if isinstance(x, dict) else x
    return int(f.shape[-1])


def encoder_options(
    cfg: RunConfig,
    spec: ModalitySpec,
    train: MultimodalDataset | list[str],
    run_dir: Path | None,
) -> dict:
    """A backbone's options in this run (``spec.backbone_options``), and what its
    registration asks the run for: one that fits a vocabulary gets the training texts (or
    reloads its :func:`tokenizer_file` from ``run_dir``); a pretrained one that takes
    ``finetune`` gets the run's setting; one that takes ``in_features`` and is not given
    it gets the data's feature size.

    Args:
        cfg: The run's settings.
        spec: The modality's resolved settings (``cfg.specs[m]``).
        train: The training split, or the training texts of the one text modality.
        run_dir: A ``<method>/seed<k>`` folder whose saved vocabulary is reloaded, or None
            to fit one.

    Returns:
        The keyword options of the backbone's factory.
    """
    registry, opts = BACKBONES[spec.kind], dict(spec.backbone_options)
    meta = registry.metadata(spec.backbone)
    if meta.get("fits_vocabulary"):
        saved = (
            None if run_dir is None else saved_tokenizer(run_dir, spec.name, modality_kinds(cfg))
        )
        if saved is not None:
            opts["tokenizer"] = str(saved)
        else:
            opts["texts"] = train if isinstance(train, list) else training_texts(train, spec.name)
    elif meta["pretrained"] and registry.accepts(spec.backbone, "finetune"):
        opts.setdefault("finetune", cfg.finetune)
    if (
        not isinstance(train, list)
        and "in_features" not in opts
        and registry.accepts(spec.backbone, "in_features")
    ):
        opts["in_features"] = input_features(train, spec.name)
    return opts


def modality_kinds(cfg: RunConfig) -> dict[str, str]:
    """The run's modalities and their kinds, in the dataset's order.

    Args:
        cfg: The run's settings.

    Returns:
        ``{modality: kind}``, e.g. ``{"audio": "audio", "visual": "image"}``.
    """
    return {m: spec.kind for m, spec in cfg.specs.items()}


def tokenizer_file(modality: str, kinds: dict[str, str]) -> str:
    """Where a run folder keeps ``modality``'s fitted vocabulary: ``tokenizer.json`` for
    the run's one modality of kind text, whatever its name; ``tokenizer-<m>.json`` when
    there are several.

    Args:
        modality: A modality of kind text.
        kinds: The run's ``{modality: kind}`` (:func:`modality_kinds`).

    Returns:
        The file name, relative to a ``<method>/seed<k>`` folder.
    """
    return "tokenizer.json" if text_modality(kinds) == modality else f"tokenizer-{modality}.json"


def saved_tokenizer(run_dir: Path, modality: str, kinds: dict[str, str]) -> Path | None:
    """The vocabulary file a run folder holds for ``modality`` (a folder written before
    the file was named by kind is read too:
    :func:`balgrad.config_upgrade.legacy_tokenizer_file`). None: none saved.

    Args:
        run_dir: A ``<method>/seed<k>`` folder.
        modality: A modality of kind text.
        kinds: The run's ``{modality: kind}`` (:func:`modality_kinds`).

    Returns:
        The file's path, or None.
    """
    for name in (tokenizer_file(modality, kinds), legacy_tokenizer_file(modality)):
        if (run_dir / name).exists():
            return run_dir / name
    return None


def build_encoders(
    cfg: RunConfig, train: MultimodalDataset | list[str], run_dir: Path | None = None
) -> dict[str, nn.Module]:
    """The backbone of every modality, by name; pretrained ones are frozen unless
    ``finetune``. ``train``: the training split (or the training texts of the run's one
    text modality).

    A vocabulary saved in ``run_dir`` that cannot be loaded is fitted again on the
    training texts, with a warning (it is derived from them, so it is the same).

    Args:
        cfg: The run's settings.
        train: The training split, or the one text modality's training texts.
        run_dir: A ``<method>/seed<k>`` folder whose saved vocabularies are reloaded, or
            None to fit them (:func:`encoder_options`).

    Returns:
        ``{modality: backbone}``, in the dataset's order.

    Raises:
        ConfigError: A backbone's options are refused by its factory.
        BackboneError: A backbone cannot be built (e.g. its weights are missing).
    """
    return {m: _encoder(cfg, spec, train, run_dir) for m, spec in cfg.specs.items()}


def _encoder(cfg: RunConfig, spec: ModalitySpec, train, run_dir):
    opts = encoder_options(cfg, spec, train, run_dir)
    registry = BACKBONES[spec.kind]
    try:
        return registry.create(spec.backbone, **opts)
    except BalgradError as err:
        if "tokenizer" not in opts:
            raise
        # the saved vocabulary is derived from the training texts: fitted again, it is the same
        log.warning("%s; fitting the vocabulary on the training texts again, as the run did", err)
        opts.pop("tokenizer")
        texts = train if isinstance(train, list) else training_texts(train, spec.name)
        return registry.create(spec.backbone, **opts, texts=texts)


def build_model(cfg: RunConfig, pipeline: InputPipeline, info) -> MultimodalModel:
    """The model of every modality's encoder (its state-dict keys, ``<m>_encoder.*`` and
    ``<m>_embedding.*``, are those of every run folder balgrad wrote).

    Args:
        cfg: The run's settings (embedding size, fusion, heads, dropout).
        pipeline: The run's input pipeline, whose encoders the model takes.
        info: The dataset's :class:`balgrad.data.DatasetInfo` (classes and task).

    Returns:
        The :class:`balgrad.models.MultimodalModel`, on the CPU.
    """
    return MultimodalModel(
        pipeline.model_encoders(),
        info.num_classes,
        task=info.task,
        embed_dim=cfg.embed_dim,
        fusion=cfg.fusion,
        unimodal_head=cfg.unimodal_head,
        head_hidden=cfg.head_hidden,
        dropout=cfg.dropout,
    )


def make_cache(cfg: RunConfig):
    """The run's feature cache of frozen backbones, under ``cfg.cache_dir``/features.

    Args:
        cfg: The run's settings.

    Returns:
        A :class:`balgrad.backbones.FeatureCache`.
    """
    from balgrad.backbones._cache import FeatureCache

    return FeatureCache(Path(cfg.cache_dir) / "features")


def protocol_config(cfg: RunConfig) -> ProtocolConfig:
    """The evaluation protocol's settings of a run: the missing ratio, the seed, the batch
    size, and every modality's kind and noise level.

    Args:
        cfg: The run's settings.

    Returns:
        The :class:`balgrad.evaluate.ProtocolConfig`.

    Raises:
        ConfigError: A noise level out of its modality kind's range.
    """
    return ProtocolConfig(
        missing_ratio=cfg.missing_ratio,
        seed=cfg.eval_seed,
        batch_size=cfg.eval_batch_size,
        modalities=modality_kinds(cfg),
        noise={m: spec.noise for m, spec in cfg.specs.items()},
    )


def method_strategy(cfg: RunConfig, method: str, seed: int):
    """The strategy of ``method`` in the run of ``seed`` (which fills a ``run_seed``
    strategy's ``seed`` option unless the config sets it).

    Args:
        cfg: The run's settings (``method_options``).
        method: A registered method name.
        seed: The run's seed.

    Returns:
        A new :class:`balgrad.strategies.Strategy`.

    Raises:
        ConfigError: An unknown method, or options it refuses.
    """
    opts = dict(cfg.method_options.get(method, {}))
    if strategy_info(method)["run_seed"]:
        opts.setdefault("seed", seed)
    return create_strategy(method, **opts)


def preflight(cfg: RunConfig, data: Data, methods: list[str]) -> None:
    """What would otherwise fail a run after training, checked before its first step: the
    modality names against every key the protocol and the ``methods``' statistics build
    from them, each method's supported number of modalities, each backbone's sample rate
    against the data's, and the per-split statistics the protocol will use.

    Args:
        cfg: The run's settings.
        data: The run's splits (:func:`load_data`).
        methods: The methods about to train (empty for ``balgrad evaluate``).

    Raises:
        ConfigError: A modality name that clashes with a key built from it, a method that
            supports fewer modalities than the dataset has, a backbone whose sample rate
            differs from the data's, or a noise level out of range.
    """
    modalities = modalities_of(data.test)
    strategies = {m: method_strategy(cfg, m, 0) for m in methods}
    declared = tuple(s.statistics for s in strategies.values() if s.statistics is not None)
    check_modality_names(modalities, f"dataset {cfg.dataset!r}", declared)
    for method, strategy in strategies.items():
        most = strategy.max_modalities
        if most is not None and len(modalities) > most:
            raise ConfigError(
                f"methods: {method!r} supports at most {most} modalities, and dataset "
                f"{cfg.dataset!r} has {len(modalities)} ({', '.join(modalities)}); leave "
                f"{method!r} out of --methods"
            )
    rate = declared_sample_rate(data.test)
    for m, spec in cfg.specs.items():
        check_sample_rate(m, spec.kind, spec.backbone, spec.backbone_options, rate)
    # the scale of the test split's feature noise, which the noisy conditions need
    # (computed once per split: the evaluation reuses it)
    protocol_config(cfg)  # the noise levels, checked for each modality's kind
    for m, kind in modalities.items():
        if modality_kind(kind).needs_feature_std:
            split_feature_std(data.test, m)


def check_writable_folder(path: str | Path, option: str) -> None:
    """Fail before any work when ``path`` cannot be a folder balgrad writes into: it is a
    file, lies under a file, is too long for the file system (:func:`check_folder_path`),
    or refuses a new file (tried for real: permission bits say nothing for root,
    read-only mounts or full disks).

    The folder (and its parents) is created if it does not exist.

    Args:
        path: The folder.
        option: The option that named it (``"--out"``), named in the error.

    Raises:
        ConfigError: ``path`` cannot be written into.
    """
    path = Path(path)
    check_folder_path(path, option)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".balgrad-write-test-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ConfigError(f"{option}: cannot write into {path}: {err.strerror or err}") from None


#: the longest name balgrad writes in a ``<method>/seed<k>`` folder, with room for a
#: temporary suffix
_LONGEST_FILE = "checkpoint.prev.pt" + ".tmp-XXXXXXXXXXXX"


#: the longest path balgrad writes below ``--cache-dir``: a feature-cache entry's
#: temporary, ``features/<2 hex>/.<64 hex>.safetensors.<8 random>.tmp``
_LONGEST_CACHE_FILE = "features/ab/." + "0" * 64 + ".safetensors.XXXXXXXX.tmp"


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long to look up: it does not exist
        return False


def remove_if_empty(path: Path) -> None:
    """Remove the folder ``path`` if it is empty (``rmdir`` refuses one that is not).

    Args:
        path: A folder; one that is not empty, or is gone, is left as it is.
    """
    with contextlib.suppress(OSError):  # not empty, or gone: leave it as it is
        path.rmdir()


def check_folder_path(path: Path, option: str, inner: int = 0, lengths_only: bool = False) -> None:
    """Fail, creating nothing, when ``path`` cannot be a folder: it is a file, lies under a
    file, has a name longer than the file system allows (NAME_MAX), or its paths with
    ``inner`` more bytes below it (the files a run writes) would pass PATH_MAX.
    ``lengths_only``: only the length limits (a cache that cannot be a folder degrades
    to memory with a warning instead).

    Args:
        path: The folder (it need not exist).
        option: The option that named it (``"--data-dir"``), named in the error.
        inner: The length in bytes of the longest path the run writes below ``path``.
        lengths_only: Check only NAME_MAX and PATH_MAX, not that it can be a folder.

    Raises:
        ConfigError: ``path`` cannot be a folder, or a name or path is too long.
    """
    existing = next((p for p in (path, *path.parents) if _exists(p)), Path("."))
    if not existing.is_dir() and lengths_only:
        return
    if not existing.is_dir():
        how = "is a file" if existing == path else f"lies under the file {existing}"
        raise ConfigError(f"{option}: {path} {how}; give a folder")
    try:
        name_max = os.pathconf(existing, "PC_NAME_MAX")
        path_max = os.pathconf(existing, "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows): the usual limits
        name_max, path_max = 255, 4096
    for part in path.parts:
        if len(os.fsencode(part)) > name_max:
            raise ConfigError(
                f"{option}: the name {part[:24]}... is {len(os.fsencode(part))} bytes, over "
                f"the file system's limit of {name_max} (NAME_MAX); give a shorter one"
            )
    total = len(os.fsencode(str(path.absolute()))) + (inner and 1 + inner)
    if total >= path_max:
        what = "with the files a run writes into it, its paths reach" if inner else "it is"
        raise ConfigError(
            f"{option}: {str(path)[:40]}... is too long: {what} {total} bytes, over the file "
            f"system's limit of {path_max} (PATH_MAX); give a shorter path"
        )


def check_run_folder(run_dir: Path, cfg: RunConfig) -> None:
    """:func:`check_folder_path` for a run folder and the longest file it will hold.

    Args:
        run_dir: The run folder (``<out>/<name>``).
        cfg: The run's settings (its methods and seeds name the folders below it).

    Raises:
        ConfigError: The folder cannot be one, or its files' paths would be too long.
    """
    inner = max(len(f"{m}/seed{s}/{_LONGEST_FILE}") for m in cfg.methods for s in cfg.seeds)
    check_folder_path(Path(run_dir), "run folder (--out/--name)", inner)


def stored_config(run_dir: Path) -> Path:
    """The ``config.yaml`` of a run folder to resume.

    Args:
        run_dir: The run folder.

    Returns:
        ``run_dir / "config.yaml"``.

    Raises:
        ConfigError: There is no such file (no run folder there to resume).
    """
    stored = run_dir / "config.yaml"
    if not stored.is_file():
        raise ConfigError(
            f"--resume: no run folder at {run_dir} (give the same --out and --name as the first run)"
        )
    return stored


def check_resumable(cfg: RunConfig, run_dir: Path) -> None:
    """``--resume`` continues a run only with the settings it was started with (except
    the fields of ``config.RESUME_NEUTRAL``/``RESUME_ROUNDING_ONLY``; seeds and methods may
    be added). ``cfg.precision`` must be resolved.

    A change that alters floating-point rounding only (another device, another evaluation
    batch size) is allowed with a warning (:func:`balgrad.config.resume_differences`).

    Args:
        cfg: The resume's settings.
        run_dir: The run folder.

    Raises:
        ConfigError: No ``config.yaml`` in ``run_dir``, a damaged one, or settings that
            differ from it (each listed, old → new).
    """
    stored = stored_config(run_dir)
    refused, allowed = resume_differences(load_run_config(stored), cfg)
    if refused:
        free = ", ".join([*RESUME_NEUTRAL, *RESUME_ROUNDING_ONLY])
        raise ConfigError(
            f"--resume: these settings differ from the run in {run_dir} (old → new):\n  "
            + "\n  ".join(refused)
            + f"\nResume with the run's settings (they are in {stored}), or start another "
            f"run folder with --name. A resume may change only {free}, and add "
            f"{' or '.join(RESUME_MAY_GROW)}."
        )
    for line in allowed:
        log.warning(
            "--resume: %s; the run continues, but is not bitwise equal to an uninterrupted one",
            line,
        )


@dataclass
class RunResult:
    """What :meth:`Experiment.train_one` returns for one (method, seed).

    Attributes:
        method: The method.
        seed: The seed.
        evaluation: The protocol's scores and settings (what ``eval.json`` holds besides
            the training record); empty on a rank other than 0.
        best_epoch: The epoch whose weights were kept.
        best_val: Their validation score.
        train_seconds: The training time, across resumes.
        history: Each epoch's record.
    """

    method: str
    seed: int
    evaluation: dict
    best_epoch: int
    best_val: float
    train_seconds: float
    history: list = field(default_factory=list)


class Experiment:
    """Trains and evaluates every (method, seed) of a config into one run folder.

    Holds the folder's ``run.lock`` (rank 0) from construction until :meth:`close` (or
    the end of a ``with`` block, or interpreter exit). With ``resume`` the settings are
    checked against the folder's ``config.yaml`` before anything is loaded or written.

    Construction checks everything that could fail a run late (the device, the folders,
    precision support, the data and :func:`preflight`) and loads the data; when it fails,
    a folder it created is removed again.

    Args:
        cfg: The settings (``precision`` is resolved for the device here; ``self.cfg``
            holds the resolved copy).
        run_dir: The run folder, ``<out>/<name>``.
        resume: Continue the run in ``run_dir`` (``--resume``): its settings must match.
        write_config: A training run: check each method's precision support and write
            ``config.yaml``; False for ``balgrad evaluate``, which reads the folder.

    Raises:
        ConfigError: A bad setting, device or folder, or a resume whose settings differ.
        DataError: Data that cannot be read.
        RunFolderLocked: Another live process writes the folder.

    Example:
        >>> from balgrad.config import build_config
        >>> from balgrad.experiment import Experiment
        >>> cfg = build_config({"methods": ["joint"], "epochs": 1, "progress": False})
        >>> with Experiment(cfg, "runs/demo") as exp:  # doctest: +SKIP
        ...     result = exp.train_one("joint", 0)
    """

    def __init__(
        self, cfg: RunConfig, run_dir: Path, resume: bool = False, write_config: bool = True
    ):
        self.run_dir, self.resume = Path(run_dir), resume
        check_device(cfg.device)  # before the process group, the folder and the data
        if int(os.environ.get("RANK", "0")) == 0:
            check_run_folder(self.run_dir, cfg)
        # a cache folder that is a file degrades to memory (one warning); a name too long
        # for the file system is a typo to name
        inner = len(_LONGEST_CACHE_FILE)  # its entries, not only the folder, must fit PATH_MAX
        check_folder_path(Path(cfg.cache_dir), "--cache-dir", inner, lengths_only=True)
        if cfg.data_dir is not None:
            check_folder_path(Path(cfg.data_dir), "--data-dir")
        self.dist: DistInfo = init_distributed(cfg.device)
        self.device = resolve_device(cfg.device, self.dist)
        # resolved once: config.yaml and eval.json record what actually ran
        self.cfg = cfg = cfg.model_copy(
            update={"precision": resolve_precision(cfg.precision, self.device)}
        )
        if resume and self.dist.is_main:
            stored_config(self.run_dir)  # before the lock creates the folder
        created = self.dist.is_main and not _exists(self.run_dir)
        self.lock = RunLock(self.run_dir) if self.dist.is_main else None
        if self.lock is not None:
            self.lock.acquire()
        try:
            if resume and self.dist.is_main:
                check_resumable(cfg, self.run_dir)
            if write_config:  # a training run: fail before the first method trains
                for method in cfg.methods:
                    check_precision_support(method_strategy(cfg, method, 0), cfg.precision)
            for spec in cfg.specs.values():
                precheck_tower(spec.backbone, spec.kind, spec.backbone_options)
            self.data = load_data(cfg)
            preflight(cfg, self.data, cfg.methods if write_config else [])
            self.cache = make_cache(cfg)
            self._frozen_memory: dict = {}
            if self.dist.is_main and write_config:  # only after the resume check
                dump_yaml(cfg, self.run_dir / "config.yaml")
        except BaseException:
            self.close()
            if created:  # the folder the lock made, left empty: remove it again
                remove_if_empty(self.run_dir)
            raise

    def close(self) -> None:
        """Release the run folder's lock."""
        if self.lock is not None:
            self.lock.release()

    def __enter__(self) -> Experiment:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def pipeline(self, run_dir: Path | None = None) -> InputPipeline:
        """A new input pipeline of the run's encoders (:func:`build_encoders`), sharing the
        feature cache and the frozen features kept in memory with every run.

        Args:
            run_dir: A ``<method>/seed<k>`` folder whose saved vocabularies are reloaded,
                or None to fit them on the training texts.

        Returns:
            The :class:`balgrad.data.InputPipeline`.
        """
        return InputPipeline(
            encoders=build_encoders(self.cfg, self.data.train, run_dir),
            missing=self.cfg.missing,
            cache=self.cache,
            num_workers=self.cfg.num_workers,
            progress=self.cfg.progress and self.dist.is_main,
            memory=self._frozen_memory,  # frozen features are shared by every run
        )

    def run_dir_of(self, method: str, seed: int) -> Path:
        """The folder of one run.

        Args:
            method: The method.
            seed: The seed.

        Returns:
            ``<run folder>/<method>/seed<seed>``.
        """
        return self.run_dir / method / f"seed{seed}"

    def train_one(self, method: str, seed: int) -> RunResult:
        """Train ``method`` with ``seed`` (from its checkpoint under ``--resume``), save its
        best weights and score them into ``eval.json``.

        Under torchrun every process trains; rank 0 writes the files and scores the model.

        Args:
            method: A method of the config.
            seed: A seed of the config.

        Returns:
            The :class:`RunResult`.

        Raises:
            NonFiniteLossError: The loss became NaN or infinite.
            WriteError: A file of the run folder cannot be written.
        """
        rdir = self.run_dir_of(method, seed)
        seed_everything(seed)
        pipeline = self.pipeline(rdir if self.resume else None)
        model = build_model(self.cfg, pipeline, self.data.info).to(self.device)
        for encoder in pipeline.encoders.values():
            encoder.to(self.device)
        broadcast_parameters(model)
        strategy = method_strategy(self.cfg, method, seed)
        observers = self._prepare_run_folder(rdir, pipeline, method, seed)
        trainer = Trainer(
            model,
            strategy,
            pipeline,
            self.data.train,
            self._train_settings(seed),
            rdir,
            self.device,
            self.dist,
            observers,
            validate=self.evaluator(pipeline, self.data.val, fusion_of(strategy)).modality_scores,
        )
        result = trainer.fit(resume=self.resume)
        model.load_state_dict(result.best_state)
        evaluation = {}
        if self.dist.is_main:
            evaluation = self._save_and_score(model, pipeline, strategy, result, method, seed)
        barrier()
        return RunResult(
            method,
            seed,
            evaluation,
            result.best_epoch,
            result.best_score,
            result.seconds,  # the whole run's, stored in the checkpoint across resumes
            result.history,
        )

    def _prepare_run_folder(self, rdir: Path, pipeline: InputPipeline, method: str, seed: int):
        """Rank 0: the run's folder, its fitted vocabularies and its step loggers."""
        if not self.dist.is_main:
            return []
        rdir.mkdir(parents=True, exist_ok=True)
        kinds = modality_kinds(self.cfg)
        for m, encoder in pipeline.encoders.items():
            if hasattr(encoder, "save_tokenizer"):
                encoder.save_tokenizer(rdir / tokenizer_file(m, kinds))
        # the trainer cuts metrics.jsonl back to its checkpoint (empties it when fresh)
        observers = [JsonlLogger(rdir / "metrics.jsonl", method=method, seed=seed)]
        if self.cfg.tensorboard:
            observers.append(TensorBoardLogger(rdir / "tensorboard", every=self.cfg.log_every))
        return observers

    def _train_settings(self, seed: int) -> TrainSettings:
        cfg = self.cfg
        return TrainSettings(
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            optimizer=cfg.optimizer,
            weight_decay=cfg.weight_decay,
            momentum=cfg.momentum,
            seed=seed,
            primary_metric=self.data.info.primary_metric,
            progress=cfg.progress,
            precision=cfg.precision,
            log_every=cfg.log_every,
        )

    def _save_and_score(self, model, pipeline, strategy, result, method: str, seed: int) -> dict:
        """Rank 0: ``model.safetensors`` of the best weights, then their scores in ``eval.json``."""
        rdir = self.run_dir_of(method, seed)
        # bytes first: safetensors' own writer reports a full disk as its own error type,
        # Python's write as an OSError that write_bytes names (WriteError)
        weights = {k: v.contiguous() for k, v in result.best_state.items()}
        write_bytes(rdir / "model.safetensors", safetensors_bytes(weights))
        evaluation = self.evaluate_model(model, pipeline, fusion_of(strategy))
        payload = {
            "method": method,
            "seed": seed,
            "dataset": self.cfg.dataset,
            "primary_metric": self.data.info.primary_metric,
            "best_epoch": result.best_epoch,
            "best_val": result.best_score,
            "selected_by": result.selected_by,  # the primary metric unless undefined
            "train_seconds": result.seconds,
            **evaluation,
        }
        write_text(rdir / "eval.json", json.dumps(nan_to_null(payload), indent=2))
        return evaluation

    def evaluator(
        self, pipeline: InputPipeline, dataset: MultimodalDataset, fuse=None
    ) -> Evaluator:
        """Scores models on ``dataset`` with the run's metrics, batch size and precision
        (and the method's test-time fusion ``fuse``: the strategy's, where it has one).

        Args:
            pipeline: The run's input pipeline.
            dataset: The split to score (validation or test).
            fuse: The method's test-time fusion ``fuse(model, output)``, or None for the
                fused logits.

        Returns:
            The :class:`balgrad.evaluate.Evaluator`.
        """
        cfg = self.cfg
        return Evaluator(
            pipeline,
            dataset,
            self.data.info.metrics,
            protocol_config(cfg),
            str(self.device),
            progress=cfg.progress,
            precision=cfg.precision,
            fuse=fuse,
        )

    def evaluate_model(self, model, pipeline, fuse=None) -> dict:
        """The protocol's scores, with the protocol settings that produced them.

        Args:
            model: The trained model.
            pipeline: Its input pipeline.
            fuse: The method's test-time fusion, or None.

        Returns:
            ``{"protocol": settings, **scores}``: the scores of every condition on the
            test split and, with ``sweep``, the missing-ratio sweep (what ``eval.json``
            holds).
        """
        cfg = self.cfg
        ev = self.evaluator(pipeline, self.data.test, fuse)
        protocol = {
            "missing": cfg.missing,
            "missing_ratio": cfg.missing_ratio,
            "modalities": modality_kinds(cfg),
            "noise": {m: spec.noise for m, spec in cfg.specs.items()},
            "eval_seed": cfg.eval_seed,
            "test_split": cfg.test_split,
            "precision": cfg.precision,
        }
        return {"protocol": protocol, **ev.run(model, sweep=cfg.sweep)}

    def finished(self, method: str, seed: int) -> bool:
        """Whether ``--resume`` may skip this run: its eval.json and model.safetensors are
        whole. A damaged one is derived from the checkpoint, so the run is redone: from its
        last checkpoint (no training when that is the final epoch), with a warning.

        Args:
            method: The method.
            seed: The seed.

        Returns:
            True when both files are whole (and the weights finite).
        """
        rdir = self.run_dir_of(method, seed)
        if not (rdir / "eval.json").exists():
            return False
        try:
            read_eval(rdir / "eval.json", complete=True)
            weights_header(rdir / "model.safetensors")
            finite_weights(load_file(str(rdir / "model.safetensors")), rdir / "model.safetensors")
        except RunFileError as err:
            log.warning(
                "%s seed %d: %s. Recomputing it from %s (training again only if no "
                "checkpoint is usable)",
                method,
                seed,
                err,
                rdir / "checkpoint.pt",
            )
            return False
        return True

    def load_trained(self, method: str, seed: int):
        """Rebuild a saved run's model (for ``balgrad evaluate``).

        The encoders are built as training built them (seeded, the saved vocabularies
        reloaded), then ``model.safetensors`` is loaded into the model.

        Args:
            method: The method.
            seed: The seed.

        Returns:
            ``(model, pipeline)``, the model on the run's device.

        Raises:
            ConfigError: The run has no ``model.safetensors``.
            RunFileError: The file is damaged, holds NaN or infinite weights, or does not
                fit the model ``config.yaml`` describes.
        """
        rdir = self.run_dir_of(method, seed)
        weights = rdir / "model.safetensors"
        if not weights.is_file():
            raise ConfigError(
                f"evaluate: {weights} does not exist; was {method!r} seed {seed} trained in this run?"
            )
        # the encoders as training built them: a frozen randomly initialised tower is
        # not in model.safetensors (its features are), so it must be drawn again
        seed_everything(seed)
        pipeline = self.pipeline(rdir)
        model = build_model(self.cfg, pipeline, self.data.info)
        weights_header(weights)
        state = load_file(str(weights))
        finite_weights(state, weights)
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise RunFileError(
                f"{weights} does not fit the model that {self.run_dir / 'config.yaml'} describes "
                f"({_first_line(err)}); delete it and {WEIGHTS_WAY_OUT}"
            ) from None
        return model.to(self.device), pipeline

    def reevaluate(self, methods: list[str]) -> None:
        """``balgrad evaluate``: score every saved model of ``methods`` again. Every model
        file is checked before the first is scored, and the eval.json files are written
        only once all are scored, so a failure leaves them all as they were.

        Scores that would turn a number of an ``eval.json`` into an undefined one are
        written beside it, to ``eval.undefined.json``, with a warning.

        Args:
            methods: The methods to score, each for every seed of the config.

        Raises:
            ConfigError: A run has no ``model.safetensors``.
            RunFileError: A model file is damaged or does not fit the model.
        """
        runs = [(method, seed) for seed in self.cfg.seeds for method in methods]
        for method, seed in runs:
            weights = self.run_dir_of(method, seed) / "model.safetensors"
            if not weights.is_file():
                raise ConfigError(
                    f"evaluate: {weights} does not exist; was {method!r} seed {seed} trained "
                    "in this run?"
                )
            weights_header(weights)
        scored = {}
        for method, seed in runs:
            model, pipeline = self.load_trained(method, seed)
            # the method (and its options, from config.yaml) decides what is scored
            fuse = fusion_of(method_strategy(self.cfg, method, seed))
            scored[method, seed] = self.evaluate_model(model, pipeline, fuse)
        for (method, seed), evaluation in scored.items():
            path = self.run_dir_of(method, seed) / "eval.json"
            old = {}
            if path.exists():
                try:
                    old = read_eval(path)
                except RunFileError as err:
                    log.warning("%s; its scores are rewritten, its training record is lost", err)
            lost = newly_undefined(old, evaluation)
            old.pop("sweep", None)  # a sweep under other protocol settings must not linger
            payload = {**old, "method": method, "seed": seed, **evaluation}
            if lost:  # never replace numbers by undefined scores: keep both files
                path = path.with_name(UNDEFINED_EVAL)
                log.warning(
                    "evaluate: %s seed %d scores undefined (n/a) in %s, where its eval.json "
                    "has numbers; eval.json is kept as it was and the new scores are written "
                    "beside it, to %s",
                    method,
                    seed,
                    ", ".join(lost),
                    path,
                )
            write_text(path, json.dumps(nan_to_null(payload), indent=2))


#: where ``balgrad evaluate`` writes scores that would turn a good eval.json's numbers n/a
UNDEFINED_EVAL = "eval.undefined.json"


def newly_undefined(old: dict, new: dict) -> list[str]:
    """``role (metric)`` for each score that is a number in the eval.json payload ``old``
    and undefined (NaN or null) in the new evaluation ``new``.

    Args:
        old: An ``eval.json``'s content (empty when there was none).
        new: A new evaluation (:meth:`Experiment.evaluate_model`).

    Returns:
        The lost scores, e.g. ``["full (auroc)"]``; empty when none.
    """
    lost = []
    for role, scores in (new.get("conditions") or {}).items():
        before = (old.get("conditions") or {}).get(role) or {}
        for metric, value in scores.items():
            if metric != "condition" and is_defined(before.get(metric)) and not is_defined(value):
                lost.append(f"{role} ({metric})")
    return lost


def finite_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse weights with a NaN or an infinity, naming the first such tensor: a model
    with one scores every condition as a constant guess, never as the run it came from.

    Args:
        state: A state dict.
        path: The file it came from, named in the error.

    Raises:
        RunFileError: A floating-point tensor holds a NaN or an infinity.
    """
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise RunFileError(
                f"{path}: tensor {name!r} holds {bad} NaN or infinite value(s) of "
                f"{tensor.numel()}; these weights cannot be scored. {WEIGHTS_WAY_OUT[0].upper()}"
                f"{WEIGHTS_WAY_OUT[1:]}"
            )


#: what rewrites a damaged model.safetensors
WEIGHTS_WAY_OUT = (
    "rerun the training command with --resume: it rewrites the file from the run's checkpoint"
)


def weights_header(path: Path) -> None:
    """A whole safetensors file (its header read, its size checked against it).

    Args:
        path: The ``model.safetensors``.

    Raises:
        RunFileError: The file is missing, cut off or not safetensors.
    """
    try:
        with safe_open(str(path), "pt"):
            pass
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
        raise RunFileError(
            f"{path} is damaged: not a whole safetensors file ({_first_line(err)}); "
            f"{WEIGHTS_WAY_OUT}"
        ) from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
