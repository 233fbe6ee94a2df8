"""Typed run configuration: one set of names for flags, YAML files and Python.

``RunConfig`` is validated once, at the edge (pydantic, ``extra="forbid"``), so a
misspelt YAML key or a bad value fails with an error that names the field. Integers and
booleans are strict (``epochs: true`` or ``sweep: "no"`` is an error). The dataset, the
backbones, the fusion and every method are looked up in their registries there too, with
all their options checked against the registered signatures, so a typo in the last
method's options stops the run before the first method trains.

Modalities are set by the dataset's names for them (``modalities: {audio: {backbone: ...,
noise: 10dB}}``). What a run uses for each modality is resolved once, by the validator
(:func:`resolve_modalities`), into one :class:`ModalitySpec` per modality that everything downstream
reads (``cfg.specs``); ``config.yaml`` records them under ``modalities:``. The flat
spellings of balgrad 0.1 are read by :mod:`balgrad.config_upgrade` only.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from balgrad.atomic import write_text
from balgrad.config_upgrade import flat_key_hint, upgrade_config
from balgrad.errors import BalgradError, ConfigError
from balgrad.registry import check_value, type_name

MAX_SEED = 2**32 - 1
_LEVEL = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(dB)?\s*$", re.I)


def default_methods() -> list[str]:
    """The built-in strategies registered for the default run (all eight of the paper).

    Returns:
        Their names, in the registry's order (``RunConfig.methods``' default).
    """
    from balgrad.strategies._registry import default_methods as registered

    return registered()


def _registry_of(field: str):
    from balgrad.data._catalog import DATASETS
    from balgrad.models._fusion import FUSION_REGISTRY
    from balgrad.strategies._registry import STRATEGY_REGISTRY

    return {
        "methods": STRATEGY_REGISTRY,
        "dataset": DATASETS,
        "fusion": FUSION_REGISTRY,
    }[field]


def _has_number_or_bool(annotation: Any) -> bool:
    return annotation in (int, float, bool) or any(
        _has_number_or_bool(a) for a in typing.get_args(annotation)
    )


def parse_noise(value: Any) -> float | None:
    """A noise level: a number, or its text (``"0.3"``; an audio SNR also ``"10dB"``).

    Whether ``dB`` fits the modality's kind is checked elsewhere (by the config's validator).

    Args:
        value: The level as given: None, a number, or text.

    Returns:
        The level as a float; None for None.

    Raises:
        ValueError: A boolean, or text that is not a number (with an optional ``dB``);
            pydantic reports it as the field's error.

    Example:
        >>> from balgrad.config import parse_noise
        >>> parse_noise("10dB"), parse_noise(" .5 "), parse_noise(3)
        (10.0, 0.5, 3.0)
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (match := _LEVEL.match(value)):
        return float(match.group(1))
    raise ValueError(f"expected a number (an audio SNR may be written 10dB), got {value!r}")


def _in_decibels(value: Any) -> bool:
    return isinstance(value, str) and bool((m := _LEVEL.match(value)) and m.group(2))


class ModalitySettings(BaseModel):
    """One modality's settings, under its dataset's name for it (YAML ``modalities: {audio:
    {backbone: ..., noise: 10}}``). What is left unset comes from the dataset's
    registration or the kind's defaults: see :func:`resolve_modalities`."""

    model_config = ConfigDict(extra="forbid")

    kind: str | None = Field(None, description="the dataset's kind of this modality (a check)")
    backbone: str | None = Field(None, description="backbone name, of the modality's kind")
    backbone_options: dict[str, Any] = Field(
        default_factory=dict, description="options of the backbone factory"
    )
    noise: float | None = Field(
        None, description="level of the noisy_<m> condition, in the kind's unit"
    )

    @field_validator("noise", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> float | None:
        return parse_noise(value)


class ModalitySpec(BaseModel):
    """What a run uses for one modality, resolved once (:func:`resolve_modalities`):
    its kind, its backbone with every option (the dataset's ``backbone_defaults`` under
    the user's), and the level of its noisy condition."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    kind: str
    backbone: str
    backbone_options: dict[str, Any] = Field(default_factory=dict)
    noise: float

    def settings(self) -> dict[str, Any]:
        """As ``config.yaml`` records it under ``modalities.<name>``.

        Returns:
            kind, backbone, backbone_options and noise, as JSON values.
        """
        return self.model_dump(mode="json", exclude={"name"})


class RunConfig(BaseModel):
    """Every option of ``balgrad train`` / ``compare`` (flags use dashes: ``--data-dir``).

    ``modalities`` holds what the user set; ``specs`` what the run uses for each of the
    dataset's modalities, resolved by the validator (serialised in place of ``modalities``,
    so a run folder's ``config.yaml`` records them)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    _specs: dict[str, ModalitySpec] = PrivateAttr(default_factory=dict)

    # data
    dataset: str = Field(
        "digits",
        description="built-in (digits, fashion, keypad) or on-disk (food101, hateful_memes, "
        "mmimdb, memotion, cub, generic, cremad, kinetics_sounds, mosei, mosi); "
        "`balgrad list` shows them",
    )
    data_dir: str | None = Field(
        None, description="dataset folder (on-disk datasets; fashion: the IDX files)"
    )
    dataset_options: dict[str, Any] = Field(
        default_factory=dict, description="extra dataset options, e.g. dominant=image"
    )
    data_seed: int = Field(
        0, description="seed of the built-in dataset's generation and of the validation split"
    )
    val_fraction: float = Field(
        0.1, gt=0, lt=1, description="fraction of training data held out for model selection"
    )
    test_split: str = Field(
        "test",
        description="split scored by the protocol; e.g. val for the public Hateful Memes release whose test file has no labels (validation is then carved from train)",
    )
    skip_bad: bool = Field(
        False, description="skip unreadable records with a counted warning instead of failing"
    )
    # model
    # each dataset's registration names its modalities' default backbones; for the
    # image-text ones the default benchmark's (docs/default-benchmark.md): pretrained towers
    # that ship in pip packages, frozen, features cached; `--config digits-scratch` trains
    # cnn + small instead
    modalities: dict[str, ModalitySettings] = Field(
        default_factory=dict,
        description="settings by modality name: {audio: {backbone: NAME, backbone_options: "
        "{...}, noise: LEVEL}} (flags: --backbone M=NAME, --backbone-option M.KEY=VALUE, "
        "--noise M=LEVEL); what is unset comes from the dataset's registration",
    )
    finetune: bool = Field(
        False, description="fine-tune pretrained backbones (default: frozen, features cached)"
    )
    fusion: str = Field("concat", description="concat, sum, attention (see `balgrad list`)")
    embed_dim: int = Field(128, gt=0, le=16384)
    unimodal_head: Literal["shared", "separate"] = "shared"
    head_hidden: int = Field(
        0,
        ge=0,
        le=16384,
        description="0: linear classifier head; else one hidden layer of this width",
    )
    dropout: float = Field(0.0, ge=0, lt=1)
    missing: Literal["input", "embedding"] = Field(
        "input", description="how a missing modality reaches the model (SPEC section 4)"
    )
    # methods
    methods: list[str] = Field(
        default_factory=default_methods,
        description="methods to train, or a set of them: all, field, paper (the default)",
    )
    method_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per-method strategy options, e.g. {balgrad: {kl_weight: 0.5}}",
    )
    # optimisation
    epochs: int = Field(8, gt=0)
    batch_size: int = Field(64, gt=0, description="per process under torchrun")
    lr: float = Field(1e-3, gt=0, allow_inf_nan=False)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False)
    momentum: float = Field(0.9, ge=0, lt=1)
    seeds: list[int] = Field(default_factory=lambda: [0])
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="autocast precision of training and evaluation: auto = bf16 on a CUDA device "
        "that supports it, else fp32; fp16 adds a gradient scaler (recorded resolved in config.yaml)",
    )
    num_workers: int = Field(0, ge=0, le=1024)
    # evaluation protocol
    missing_ratio: float = Field(1.0, ge=0, le=1)
    sweep: bool = Field(True, description="run the missing-ratio robustness sweep (paper Fig. 4)")
    eval_seed: int = Field(0, description="seed choosing impaired samples and noise")
    eval_batch_size: int = Field(256, gt=0)
    # output
    out: str = Field("runs", description="parent folder of run folders")
    name: str | None = Field(None, description="run folder name (default: <dataset>-<timestamp>)")
    cache_dir: str = Field(
        ".balgrad-cache", description="feature cache for frozen backbones and generated data"
    )
    tensorboard: bool = Field(False, description="also log step diagnostics to TensorBoard")
    log_every: int = Field(
        25,
        gt=0,
        description="steps between the training loop's host syncs: progress-bar loss, "
        "TensorBoard points, the lazy NaN check (metrics.jsonl still gets every step)",
    )
    progress: bool = True

    @field_validator("*", mode="before")
    @classmethod
    def _strict_integers_and_booleans(cls, value: Any, info: ValidationInfo) -> Any:
        """No ``true`` for a number, no ``"no"`` or ``1`` for a bool, no 3.0 for an int."""
        annotation = cls.model_fields[info.field_name].annotation
        if _has_number_or_bool(annotation):
            try:
                check_value(annotation, value, info.field_name)
            except ConfigError:
                raise ValueError(
                    f"expected {type_name(annotation)}, got {value!r} ({type(value).__name__})"
                ) from None
        return value

    @field_validator("methods", mode="before")
    @classmethod
    def _method_sets(cls, v: Any) -> Any:
        """``all``, ``field`` and ``paper`` stand for their methods (METHOD_SETS)."""
        from balgrad.strategies._registry import expand_method_sets

        return expand_method_sets(v) if isinstance(v, list) else v

    @field_validator("methods", "dataset", "fusion")
    @classmethod
    def _registered(cls, v: str | list[str], info: ValidationInfo) -> str | list[str]:
        """Each name is registered (an unknown one lists the known ones)."""
        if info.field_name == "methods" and not v:
            raise ValueError("at least one method is needed")
        registry = _registry_of(info.field_name)
        for name in v if isinstance(v, list) else [v]:
            registry.get(name)
        if info.field_name == "methods":
            _no_duplicate_methods(v, registry)
        return v

    @model_validator(mode="before")
    @classmethod
    def _no_flat_keys(cls, data: Any) -> Any:
        """A 0.1 key given in Python is named with its spelling now (files are upgraded)."""
        if isinstance(data, dict) and (hint := flat_key_hint(data)):
            raise ValueError(hint)
        return data

    @model_validator(mode="before")
    @classmethod
    def _decibels_for_audio_only(cls, data: Any) -> Any:
        """``10dB`` is an SNR, the unit of audio noise only (it is read as 10 otherwise)."""
        mods = data.get("modalities") if isinstance(data, dict) else None
        if not isinstance(mods, dict):
            return data
        dataset = data.get("dataset", cls.model_fields["dataset"].default)
        for name, settings in mods.items():
            noise = settings.get("noise") if isinstance(settings, dict) else None
            if not _in_decibels(noise):
                continue
            try:
                kinds = dataset_modalities(
                    dataset, data.get("data_dir"), data.get("dataset_options") or {}
                )
                kind = kinds.get(name)
            except (BalgradError, TypeError):
                return data  # an unknown dataset is reported by its own field
            if kind is not None and kind != "audio":
                from balgrad.data._kinds import KINDS

                k = KINDS[kind]
                raise ValueError(
                    f"field 'modalities.{name}.noise' (--noise {name}=LEVEL): {noise!r} is an "
                    f"SNR in dB, the unit of audio noise; modality {name!r} of dataset "
                    f"{dataset!r} is of kind {kind}, whose level is {k.noise_symbol} "
                    f"(e.g. {k.default_noise:g})"
                )
        return data

    @model_validator(mode="after")
    def _options_fit_their_registries(self) -> RunConfig:
        check_dataset_options(self.dataset, self.dataset_options)
        # resolved once, here: nothing downstream resolves them again
        self._specs = resolve_modalities(
            self.dataset, self.data_dir, self.dataset_options, self.modalities
        )
        check_method_options(self.methods, self.method_options)
        return self

    @property
    def specs(self) -> dict[str, ModalitySpec]:
        """Each of the dataset's modalities as this run uses it, in the dataset's order."""
        return dict(self._specs)

    @field_serializer("modalities")
    def _resolved(self, modalities: dict[str, ModalitySettings]) -> dict[str, Any]:
        """Dumped (config.yaml) as resolved: a run folder describes itself."""
        return {m: spec.settings() for m, spec in self._specs.items()}

    @field_validator("seeds")
    @classmethod
    def _some_seeds(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("at least one seed is needed")
        if dups := sorted({s for s in v if v.count(s) > 1}):
            # a seed run twice would count twice in the mean, std and paired interval
            raise ValueError(f"each seed may be listed once; duplicates: {dups}")
        return v

    @field_validator("seeds", "data_seed", "eval_seed")
    @classmethod
    def _seed_range(cls, v: int | list[int]) -> int | list[int]:
        """Seeds reach numpy's seed sequences (no negatives) and torch's 64-bit generators
        after some arithmetic: 32 bits leave the room."""
        for seed in v if isinstance(v, list) else [v]:
            if not 0 <= seed <= MAX_SEED:
                raise ValueError(
                    f"a seed is an integer from 0 to {MAX_SEED} (2**32 - 1), got {seed}"
                )
        return v


def check_methods(methods: list[str], option: str) -> list[str]:
    """The methods, with set names (``all``, ``field``, ``paper``) expanded; each
    registered and listed once (``balgrad evaluate --methods``).

    Args:
        methods: Method names or set names, as given.
        option: The option that gave them (``"--methods"``), named in the error.

    Returns:
        The method names, sets expanded, in the given order.

    Raises:
        ConfigError: An unknown method, or one listed twice (or with its alias).
    """
    from balgrad.strategies._registry import STRATEGY_REGISTRY, expand_method_sets

    methods = expand_method_sets(methods)
    try:
        for name in methods:
            STRATEGY_REGISTRY.get(name)
        _no_duplicate_methods(methods, STRATEGY_REGISTRY)
    except (ValueError, BalgradError) as err:
        raise ConfigError(f"{option}: {err}") from None
    return methods


def _no_duplicate_methods(methods: list[str], registry) -> None:
    """A method listed twice (or with its alias) would train twice into two folders and be
    compared with itself."""
    seen: dict[str, list[str]] = {}
    for name in methods:
        seen.setdefault(registry.canonical(name), []).append(name)
    dups = [
        f"{' and '.join(map(repr, names))} (both {key!r})"
        if len(set(names)) > 1
        else f"{names[0]!r} ({len(names)} times)"
        for key, names in seen.items()
        if len(names) > 1
    ]
    if dups:
        raise ValueError(f"each method may be listed once; duplicates: {', '.join(dups)}")


def check_dataset_options(dataset: str, options: dict[str, Any]) -> None:
    """``options`` fit the registered ``dataset``'s signature (``RunConfig.dataset_options``).

    Args:
        dataset: A registered dataset's name.
        options: Its options.

    Raises:
        ConfigError: ``options`` is not a mapping, names an option the dataset does not
            take, or gives one a value of the wrong type (the error names
            ``dataset_options``).
    """
    from balgrad.data._catalog import DATASETS

    _named("dataset_options", DATASETS.validate, dataset, options)


def dataset_modalities(
    dataset: str, data_dir: str | None = None, options: dict[str, Any] | None = None
) -> dict[str, str]:
    """``{name: kind}`` of a registered dataset, in its order: those its data declares
    (``generic``'s index header or ``modalities`` option), else the registered ones.

    Args:
        dataset: A registered dataset's name.
        data_dir: Its folder (read by a dataset whose data declares its modalities).
        options: Its options.

    Returns:
        ``{modality: kind}``, e.g. ``{"image": "image", "text": "text"}``.

    Raises:
        ConfigError: An unknown dataset, or modalities its data declares wrongly.
    """
    from balgrad.data._catalog import declared_modalities

    return declared_modalities(dataset, data_dir, options)


def _listing(kinds: dict[str, str]) -> str:
    return " ".join(f"{m}:{k}" for m, k in kinds.items())


def resolve_modalities(
    dataset: str,
    data_dir: str | None,
    dataset_options: dict[str, Any],
    settings: dict[str, ModalitySettings],
) -> dict[str, ModalitySpec]:
    """The :class:`ModalitySpec` of each of ``dataset``'s modalities (those its data
    declares, :func:`dataset_modalities`), in the dataset's order: the one place that
    reads the modality settings.

    - backbone: ``settings[m].backbone``; else the registration's ``modality_backbones[m]``,
      else its ``kind_backbones[kind]``; else an error.
    - backbone options: the registration's ``backbone_defaults`` for that backbone,
      updated with ``settings[m].backbone_options``.
    - noise: ``settings[m].noise``; else the kind's default (:data:`balgrad.data._kinds.KINDS`).

    Every name and option is checked against its registry; a modality or a kind the
    dataset does not declare is an error.

    Args:
        dataset: The registered dataset's name.
        data_dir: Its folder (a dataset whose data declares its modalities reads them there).
        dataset_options: Its options.
        settings: The user's settings by modality name (``RunConfig.modalities``).

    Returns:
        ``{modality: ModalitySpec}``, in the dataset's order.

    Raises:
        ConfigError: An unknown modality, backbone or option, a kind that differs from the
            declared one, a modality with no backbone, or a noise level out of range.
    """
    from balgrad.data._catalog import DATASETS

    meta = DATASETS.metadata(dataset)
    kinds = dataset_modalities(dataset, data_dir, dataset_options)
    where = f"dataset {dataset!r}"
    if stray := [m for m in settings if m not in kinds]:
        raise ConfigError(
            f"field 'modalities': unknown modality {stray[0]!r}; {where} has the modalities "
            f"{_listing(kinds)}"
        )
    registered = {
        **{n: meta["kind_backbones"][k] for n, k in kinds.items() if k in meta["kind_backbones"]},
        **meta["modality_backbones"],
    }
    specs = {}
    for m, kind in kinds.items():
        own = settings.get(m) or ModalitySettings()
        if own.kind is not None and own.kind != kind:
            raise ConfigError(
                f"field 'modalities.{m}.kind': {where} declares {m!r} of kind {kind}, "
                f"not {own.kind!r}"
            )
        backbone, source = _backbone_of(dataset, m, kind, own, registered)
        options_field = f"modalities.{m}.backbone_options"
        _check_backbone(m, kind, backbone, source, own.backbone_options, options_field)
        options = {**_backbone_defaults(meta, kind, backbone), **own.backbone_options}
        specs[m] = ModalitySpec(
            name=m, kind=kind, backbone=backbone, backbone_options=options,
            noise=_noise_of(m, kind, own),
        )  # fmt: skip
    return specs


def _backbone_of(
    dataset: str, m: str, kind: str, own: ModalitySettings, registered: dict[str, str]
) -> tuple[str, str]:
    """(backbone name, where it came from): the setting, else the registration's."""
    if own.backbone is not None:
        return own.backbone, f"modalities.{m}.backbone"
    if m in registered:
        return registered[m], f"dataset {dataset!r}'s default backbone of {m}"
    raise ConfigError(
        f"dataset {dataset!r}: no backbone for its modality {m!r} (kind {kind}); pass "
        f"--backbone {m}=NAME (YAML: modalities: {{{m}: {{backbone: NAME}}}})"
        + _known_backbones(kind)
    )


def _backbone_defaults(meta: dict[str, Any], kind: str, backbone: str) -> dict[str, Any]:
    """The dataset's options for ``backbone`` (its registration's ``backbone_defaults``)."""
    from balgrad.backbones._factory import BACKBONES

    key = BACKBONES[kind].canonical(backbone).rstrip(":")
    return dict(meta["backbone_defaults"].get(key, {}))


def _noise_of(m: str, kind: str, own: ModalitySettings) -> float:
    from balgrad.data._kinds import KINDS

    if own.noise is not None:
        noise, field = own.noise, f"modalities.{m}.noise"
    else:
        noise, field = KINDS[kind].default_noise, f"the default noise of kind {kind}"
    try:
        KINDS[kind].check_noise(noise)
    except ConfigError as err:
        raise ConfigError(f"field {field!r}: {err}") from None
    return float(noise)


def _known_backbones(kind: str) -> str:
    from balgrad.backbones._factory import BACKBONES

    registry = BACKBONES.get(kind)
    return f" (backbones of kind {kind}: {', '.join(registry.names())})" if registry else ""


def _check_backbone(
    modality: str, kind: str, name: str, source: str, options: dict[str, Any], opts_field: str
) -> None:
    """``name`` is a backbone of ``kind`` and takes ``options``."""
    from balgrad.backbones._factory import BACKBONES

    registry = BACKBONES.get(kind)
    if registry is None:
        raise ConfigError(
            f"field {source!r}: no backbones are registered for kind {kind} (the modality "
            f"{modality!r}); known kinds: {', '.join(BACKBONES)}"
        )
    try:
        registry.get(name)
    except BalgradError as err:
        others = [k for k, r in BACKBONES.items() if k != kind and name in r]
        if others:
            raise ConfigError(
                f"field {source!r}: {name!r} is a backbone of kind {' and '.join(others)}, "
                f"not {kind} (the modality {modality!r})"
            ) from None
        raise ConfigError(f"field {source!r}: {err}") from None
    _named(opts_field, registry.validate, name, options)


def check_method_options(methods: list[str], options: dict[str, dict[str, Any]]) -> None:
    """Every method's options, its own value checks included (each strategy is created
    once and dropped); options for a method that is not in ``methods`` are an error.

    Args:
        methods: The run's methods (``RunConfig.methods``).
        options: ``{method: {option: value}}`` (``RunConfig.method_options``).

    Raises:
        ConfigError: Options for a method not in ``methods``, a method's options that are
            not a mapping, an option the strategy does not take, or a value it refuses
            (the error names ``method_options``).
    """
    from balgrad.strategies._registry import validate_strategy

    stray = [m for m in options if m not in methods]
    if stray:
        raise ConfigError(
            f"field 'method_options': options for {', '.join(map(repr, stray))}, which "
            f"{'is' if len(stray) == 1 else 'are'} not in methods ({', '.join(methods)})"
        )
    for method in methods:
        _named("method_options", validate_strategy, method, options.get(method, {}))


def _named(field: str, check, name: str, options: Any) -> None:
    if not isinstance(options, dict):
        raise ConfigError(f"field {field!r}: expected a mapping of options, got {options!r}")
    try:
        check(name, options)
    except ConfigError as err:
        raise ConfigError(f"field {field!r}: {err}") from None


# -- resuming a run folder ------------------------------------------------------------
#: Fields a resumed run may change: none of them can change a trained model or a score
#: (tests/train/test_resume_neutral.py changes each and compares every file bitwise).
RESUME_NEUTRAL: dict[str, str] = {
    "progress": "progress bars only: they count batches and never iterate a DataLoader",
    "num_workers": "DataLoader worker processes only: balgrad's datasets and impairments are "
    "seeded per sample and the training order is a permutation seeded per epoch "
    "(data.pipeline.SeededPermutation) that no iterator or worker draws from",
    "tensorboard": "an extra log of the same statistics",
    "log_every": "how often the loop reads statistics on the host (progress bar, TensorBoard, "
    "the lazy NaN check); metrics.jsonl still gets every step",
    "out": "where the run folder is (it may have been moved)",
    "name": "the run folder's name (it may have been renamed)",
    "cache_dir": "a cache of generated data and features, keyed by content: a new folder is "
    "refilled with the same values",
}
#: Fields a resumed run may change that alter floating-point rounding only (another
#: kernel or batch blocking): allowed, with a warning that the result is then not bitwise
#: equal to an uninterrupted run. ``precision`` is not among them: bf16/fp16 change results.
RESUME_ROUNDING_ONLY: dict[str, str] = {
    "device": "another device computes the same steps with other kernels",
    "eval_batch_size": "validation and test scores computed in other batch sizes",
}
#: List fields a resumed run may extend (this is how a seed or a method is added to a run
#: folder; finished runs are skipped), never shrink: the folder keeps their results.
RESUME_MAY_GROW = ("seeds", "methods")
#: ``precision`` of a config.yaml written before the option existed (always fp32).
LEGACY_PRECISION = "fp32"


def resume_differences(old: RunConfig, new: RunConfig) -> tuple[list[str], list[str]]:
    """(refused, allowed) differences between a run folder's settings and a resume's, as
    ``field: old → new`` lines. ``refused`` is empty when the resume may go on; ``allowed``
    lists the rounding-only changes to warn about.

    The fields of :data:`RESUME_NEUTRAL` are ignored; those of :data:`RESUME_MAY_GROW` may
    gain entries but not lose any; the options of a method added on this resume are free;
    the modalities are compared as resolved (``specs``) when the dataset is the same.

    Args:
        old: The run folder's ``config.yaml`` (:func:`load_run_config`).
        new: The settings of the resume.

    Returns:
        ``(refused, allowed)``: lists of ``field: old → new`` lines.
    """
    refused, allowed = [], []
    for name in RunConfig.model_fields:
        a, b = getattr(old, name), getattr(new, name)
        if name in RESUME_NEUTRAL or a == b:
            continue
        if name == "modalities":
            continue  # compared as resolved below: the same specs, however spelt, are the same
        line = f"{name}: {a!r} → {b!r}"
        if name in RESUME_ROUNDING_ONLY:
            allowed.append(f"{line} ({RESUME_ROUNDING_ONLY[name]})")
        elif name in RESUME_MAY_GROW:
            dropped = [x for x in a if x not in b]
            if dropped:
                refused.append(f"{line} (a resume may add {name} but not drop {dropped})")
        elif name == "method_options":
            # options of methods added on this resume are free; those of trained ones are not
            for method in old.methods:
                oa, ob = a.get(method, {}), b.get(method, {})
                if oa != ob:
                    refused.append(f"method_options.{method}: {oa!r} → {ob!r}")
        else:
            refused.append(line)
    if old.dataset == new.dataset:
        refused += _spec_differences(old.specs, new.specs)
    return refused, allowed


def _spec_differences(old: dict[str, ModalitySpec], new: dict[str, ModalitySpec]) -> list[str]:
    """``modalities.<m>.<setting>: old → new`` per modality setting that differs."""
    lines = []
    for m, a in old.items():
        b = new.get(m)
        for attr in ("kind", "backbone", "backbone_options", "noise"):
            va, vb = getattr(a, attr), getattr(b, attr, None)
            if va != vb:
                lines.append(f"modalities.{m}.{attr}: {va!r} → {vb!r}")
    lines += [f"modalities.{m}: (none) → {new[m].kind}" for m in new if m not in old]
    return lines


def format_validation_error(err: ValidationError, source: str) -> str:
    """pydantic's errors as balgrad words them: one ``source: field 'x.y': message`` line each.

    Args:
        err: The validation error of a :class:`RunConfig`.
        source: Where the values came from (a file, ``"config"``, the flags), named first.

    Returns:
        The lines, joined by newlines.
    """
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{source}: field {loc!r}: {msg}" if loc else f"{source}: {msg}")
    return "\n".join(lines)


def build_config(values: dict[str, Any], source: str = "config") -> RunConfig:
    """A validated RunConfig of ``values`` (current spellings only: files with old ones
    pass :func:`balgrad.config_upgrade.upgrade_config` first, in :func:`load_yaml` and
    :func:`load_run_config`).

    Args:
        values: Field values by name (underscores: ``data_dir``).
        source: Where they came from, named in the error (a file, or ``"config"``).

    Returns:
        The :class:`RunConfig`, its modalities resolved (``specs``).

    Raises:
        ConfigError: Any invalid value, one line per field (:func:`format_validation_error`).

    Example:
        >>> from balgrad.config import build_config
        >>> cfg = build_config({"dataset": "digits", "methods": ["joint"], "epochs": 2})
        >>> cfg.epochs, list(cfg.specs)
        (2, ['image', 'text'])
    """
    try:
        return RunConfig(**values)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def config_file(name: str | Path) -> Path:
    """``name`` itself when it is a file, else the packaged preset of that name.

    Args:
        name: A file path, or the name of a packaged preset (:mod:`balgrad.presets`).

    Returns:
        The file to read.

    Raises:
        ConfigError: Neither a file nor a preset (the presets are listed), or a path that
            cannot be looked up.
    """
    path = Path(name)
    try:
        if path.is_file():
            return path
    except OSError as err:  # a name too long to look up, a loop of links
        raise ConfigError(f"--config: cannot read {str(path)[:60]}: {err.strerror}") from None
    from balgrad.presets import list_presets, preset_path

    preset = preset_path(str(name))
    if preset is None:
        raise ConfigError(
            f"--config: file {path} does not exist, and no packaged preset has that name "
            f"(presets: {', '.join(list_presets())})"
        )
    return preset


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but a key given twice in one mapping is an error (PyYAML
    keeps the last silently, so the first value would be ignored without a word)."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: construct_mapping reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"key {key!r} is given twice",
                    key_node.start_mark,
                )  # fmt: skip
        return super().construct_mapping(node, deep)


def load_yaml(path: str | Path, *, upgrade: str = "warn") -> dict[str, Any]:
    """The options of a YAML file, or of a packaged preset given by name, in the current
    spelling (``upgrade``: ``"warn"`` for a user's file, ``"silent"`` for a run folder's
    own config.yaml; :mod:`balgrad.config_upgrade`).

    Option names may be spelt with dashes, as the flags are. The values are not validated
    here: :func:`build_config` does that.

    Args:
        path: A YAML file, or a preset's name (:func:`config_file`).
        upgrade: ``"warn"`` to warn (DeprecationWarning) about 0.1 spellings it upgrades;
            anything else upgrades them silently.

    Returns:
        ``{option: value}``, names with underscores, in the current spelling.

    Raises:
        ConfigError: No such file or preset, a file that cannot be read, is not UTF-8 or
            not YAML, a key given twice, a top level that is not a mapping, or an option
            name that is not text.
    """
    path = config_file(path)
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {raw[err.start]:#04x} on line {line}); save it as UTF-8"
        ) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option names to values at the top level")
    if bad := [k for k in data if not isinstance(k, str)]:
        raise ConfigError(
            f"{path}: option names must be text, got {', '.join(map(repr, bad))} "
            "(YAML reads unquoted numbers, yes/no/on/off and null as values; quote the name)"
        )
    # YAML may spell names with dashes, as the flags do
    values = {k.replace("-", "_"): v for k, v in data.items()}
    return upgrade_config(values, str(path), warn=upgrade == "warn")


def load_run_config(path: str | Path) -> RunConfig:
    """A run folder's ``config.yaml``, which balgrad writes with every field: a file that
    lacks one (empty, cut off, hand-edited) is refused rather than read as defaults, which
    would rebuild another model and score it on another test set.

    A file written by an older balgrad is read as it ran: 0.1 spellings are upgraded
    silently, a missing ``precision`` is fp32 and missing ``modalities`` are resolved as
    the dataset registers them.

    Args:
        path: The ``config.yaml``.

    Returns:
        The validated :class:`RunConfig`.

    Raises:
        ConfigError: A file that cannot be read or parsed, that lacks a field, or holds an
            invalid value (the message says how to recover).
    """
    path = Path(path)
    way_out = "restore it, or train the run again into a new folder (--name)"
    try:
        values = load_yaml(path, upgrade="silent")  # written by an older balgrad: as it ran
    except ConfigError as err:
        raise ConfigError(f"run folder config damaged: {err}; {way_out}") from None
    values.setdefault("precision", LEGACY_PRECISION)
    values.setdefault("modalities", {})  # written before modalities were named
    if missing := [name for name in RunConfig.model_fields if name not in values]:
        named = ", ".join(missing[:4]) + (
            f" and {len(missing) - 4} more" if len(missing) > 4 else ""
        )
        raise ConfigError(
            f"{path}: run folder config damaged: no {named} (balgrad writes every setting "
            f"there); {way_out}"
        )
    return build_config(values, str(path))


def dump_yaml(cfg: RunConfig, path: str | Path) -> None:
    """Write ``cfg`` with every field to ``path``, atomically (a run folder's ``config.yaml``).

    The modalities are written as resolved (``specs``), so the file describes the run and
    :func:`load_run_config` reads it back to the same settings.

    Args:
        cfg: The settings.
        path: The YAML file.

    Raises:
        WriteError: The file cannot be written.
    """
    write_text(path, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
