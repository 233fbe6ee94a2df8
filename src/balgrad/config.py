"""Typed run configuration: one set of names for flags, YAML files and Python.

``RunConfig`` is validated once, at the edge (pydantic, ``extra="forbid"``), so a
misspelt YAML key or a bad value fails with an error that names the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from balgrad.errors import ConfigError

DEFAULT_METHODS = [
    "joint",
    "mslr",
    "ogm_ge",
    "agm",
    "balgrad",
    "balgrad_reweight_only",
    "balgrad_projection_only",
    "balgrad_unimodal_only",
]


class RunConfig(BaseModel):
    """Every option of ``balgrad train`` / ``compare`` (flags use dashes: ``--image-backbone``)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # data
    dataset: str = Field(
        "digits",
        description="built-in (digits, fashion) or on-disk (food101, hateful_memes, mmimdb, memotion, cub, generic)",
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
    # the default benchmark (docs/default-benchmark.md): pretrained towers that ship in pip
    # packages, frozen, features cached; `--config digits-scratch` trains cnn + small instead
    image_backbone: str = Field(
        "efficientnet-lite0", description="efficientnet-lite0, cnn, hf:<id|path>, clip:<id|path>"
    )
    text_backbone: str = Field("minilm", description="minilm, small, hf:<id|path>, clip:<id|path>")
    backbone_options: dict[str, Any] = Field(
        default_factory=dict,
        description="options passed to both backbone factories, by tower: {image: {...}, text: {...}}",
    )
    finetune: bool = Field(
        False, description="fine-tune pretrained backbones (default: frozen, features cached)"
    )
    fusion: Literal["concat", "sum", "attention"] = "concat"
    embed_dim: int = Field(128, gt=0)
    unimodal_head: Literal["shared", "separate"] = "shared"
    head_hidden: int = Field(
        0, ge=0, description="0: linear classifier head; else one hidden layer of this width"
    )
    dropout: float = Field(0.0, ge=0, lt=1)
    missing: Literal["input", "embedding"] = Field(
        "input", description="how a missing modality reaches the model (SPEC section 4)"
    )
    # methods
    methods: list[str] = Field(default_factory=lambda: list(DEFAULT_METHODS))
    method_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per-method strategy options, e.g. {balgrad: {kl_weight: 0.5}}",
    )
    # optimisation
    epochs: int = Field(8, gt=0)
    batch_size: int = Field(64, gt=0, description="per process under torchrun")
    lr: float = Field(1e-3, gt=0)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    seeds: list[int] = Field(default_factory=lambda: [0])
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N")
    num_workers: int = Field(0, ge=0)
    # evaluation protocol
    missing_ratio: float = Field(1.0, ge=0, le=1)
    image_noise: float = Field(
        0.5, ge=0, description="σ of the noisy-image condition, [0, 1] pixel scale"
    )
    text_noise: float = Field(0.5, ge=0, le=1, description="p of the noisy-text condition")
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
    progress: bool = True

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: list[str]) -> list[str]:
        from balgrad.strategies.registry import resolve_name

        if not v:
            raise ValueError("at least one method is needed")
        for m in v:
            resolve_name(m)
        return v

    @field_validator("seeds")
    @classmethod
    def _some_seeds(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("at least one seed is needed")
        return v


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        lines.append(f"{source}: field {loc!r}: {e['msg']}")
    return "\n".join(lines)


def build_config(values: dict[str, Any], source: str = "config") -> RunConfig:
    try:
        return RunConfig(**values)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def config_file(name: str | Path) -> Path:
    """``name`` itself when it is a file, else the packaged preset of that name."""
    path = Path(name)
    if path.is_file():
        return path
    from balgrad.presets import list_presets, preset_path

    preset = preset_path(str(name))
    if preset is None:
        raise ConfigError(
            f"--config: file {path} does not exist, and no packaged preset has that name "
            f"(presets: {', '.join(list_presets())})"
        )
    return preset


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The options of a YAML file, or of a packaged preset given by name."""
    path = config_file(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option names to values at the top level")
    # YAML may spell names with dashes, as the flags do
    return {k.replace("-", "_"): v for k, v in data.items()}


def dump_yaml(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
