"""Every dataset by name: the built-in ones, those read from disk, and those of installed
packages (entry-point group ``balgrad.datasets``), in one registry.

A registration says how the dataset is called, by its ``kind``:

- ``"builtin"``: generated or installed with balgrad, no ``--data-dir`` needed. Called as
  ``fn(split, *, seed=0, data_dir=None, **options)`` with ``split`` ``"train"`` or
  ``"test"`` (the validation split is carved from train).
- ``"disk"``: read from ``--data-dir``. Called as
  ``Cls(data_dir, split, *, skip_bad=False, **options)`` (a ``DiskDataset``).

and carries ``description`` (for ``balgrad list``), ``backbone_defaults`` (backbone name ->
options that suit its images and texts, applied under the user's own),
``cache_option`` (the option that receives balgrad's cache folder when neither it nor
``--data-dir`` is given), ``modalities`` (modality name -> kind, in the dataset's order;
required: there is no default set), ``modality_backbones`` (modality name -> the backbone
a run uses unless told otherwise), ``kind_backbones`` (kind -> that backbone, for a
modality ``modality_backbones`` does not name; :data:`IMAGE_TEXT_BACKBONES` for the
image-text datasets) and ``modalities_from`` (for a dataset whose data declares its modalities, such as
``generic``: ``fn(data_dir, options) -> {name: kind}`` or None for the registered ones;
see :func:`declared_modalities`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from balgrad.data._base import IMAGE_TEXT
from balgrad.errors import ConfigError
from balgrad.registry import Registry

KINDS = ("builtin", "disk")
#: the image-text datasets' default backbones: the default benchmark's pretrained towers
#: that ship in pip packages (docs/default-benchmark.md)
IMAGE_TEXT_BACKBONES = {"image": "efficientnet-lite0", "text": "minilm"}
#: the registration of an image-text dataset's modalities and their default backbones
IMAGE_TEXT_DATASET = {
    "modalities": dict(IMAGE_TEXT),
    "kind_backbones": IMAGE_TEXT_BACKBONES,
}
#: the arguments each kind's loader gets from balgrad itself (not user options)
CALL_ARGUMENTS = {
    "builtin": ("split", "seed", "data_dir"),
    "disk": ("data_dir", "split", "skip_bad"),
}


def _normalize(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _call_arguments(metadata: Mapping[str, Any]) -> tuple[str, ...]:
    return CALL_ARGUMENTS[metadata["kind"]]


def _check_kind(name: str, metadata: Mapping[str, Any]) -> None:
    if metadata["kind"] not in KINDS:
        raise ConfigError(
            f"dataset {name!r}: kind must be one of {KINDS}, got {metadata['kind']!r}"
        )
    from balgrad.data._kinds import check_modalities_of, modality_kind

    for kind in metadata["kind_backbones"]:
        modality_kind(kind, f"dataset {name!r}: kind_backbones")
    modalities = metadata["modalities"]
    if modalities is None:
        raise ConfigError(
            f"dataset {name!r}: declare its modalities in its registration "
            "(modalities={name: kind, ...}, e.g. {'image': 'image', 'text': 'text'})"
        )
    check_modalities_of(modalities, f"dataset {name!r}")
    if stray := sorted(set(metadata["modality_backbones"]) - set(modalities)):
        raise ConfigError(
            f"dataset {name!r}: modality_backbones names {stray}, which are not among its "
            f"modalities {list(modalities)}"
        )


def _check_dataset(name: str, dataset: Any) -> None:
    """What a loader returned honours the dataset contract (a plug-in's included)."""
    from balgrad.data._contract import check_dataset
    from balgrad.data._kinds import check_modalities_of

    meta = DATASETS.metadata(name)
    modalities = meta["modalities"]
    if meta["modalities_from"] is not None:  # its data declared them: they are its own
        modalities = getattr(getattr(dataset, "info", None), "modalities", None) or modalities
        check_modalities_of(modalities, f"dataset {name!r}")
    check_dataset(name, dataset, modalities)


DATASETS = Registry(
    "dataset",
    group="balgrad.datasets",
    metadata={
        "kind": "disk",
        "description": "",
        "backbone_defaults": {},
        "cache_option": None,
        "modalities": None,
        "modality_backbones": {},
        "kind_backbones": {},
        "modalities_from": None,
    },
    skip=_call_arguments,
    check_metadata=_check_kind,
    check=_check_dataset,
    normalize=_normalize,
    builtins=(
        "balgrad.data.readers._builtin",
        "balgrad.data.readers._registry_disk",
        "balgrad.data.readers._registry_av",
        "balgrad.data.readers._kinetics_sounds",
    ),
)
#: ``@register_dataset("name", kind="builtin", description=...)``
register_dataset = DATASETS.register


def dataset_kind(name: str) -> str:
    """``"builtin"`` or ``"disk"`` (needs a data folder).

    Args:
        name: A dataset.

    Returns:
        Its kind.
    """
    return DATASETS.get(name).metadata["kind"]


def dataset_names(kind: str | None = None) -> list[str]:
    """The registered datasets, plug-ins included.

    Args:
        kind: ``"builtin"`` or ``"disk"`` to list one kind, None for all.

    Returns:
        The names.
    """
    return [e.name for e in DATASETS.entries() if kind is None or e.metadata["kind"] == kind]


def lookup(name: str, kind: str) -> str:
    """The registered name of ``name``, a dataset of ``kind``, or ConfigError.

    Args:
        name: A dataset name or alias.
        kind: ``"builtin"`` or ``"disk"``.

    Returns:
        The name.

    Raises:
        ConfigError: Unknown, or of the other kind.
    """
    what = {"builtin": "built-in dataset", "disk": "on-disk dataset"}[kind]
    try:
        entry = DATASETS.get(name)
    except ConfigError:
        entry = None
    if entry is None or entry.metadata["kind"] != kind:
        raise ConfigError(f"unknown {what} {name!r}; known: {', '.join(dataset_names(kind))}")
    return entry.name


def declared_modalities(
    name: str, data_dir: Any = None, options: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """``{modality: kind}`` of dataset ``name`` in a run with ``data_dir`` and ``options``:
    what its data declares (a registration with ``modalities_from``), else the registered
    modalities.

    Args:
        name: A dataset.
        data_dir: Its folder, where it has one.
        options: Its options.

    Returns:
        ``{modality: kind}``.
    """
    from balgrad.data._kinds import check_modalities_of

    meta = DATASETS.metadata(name)
    hook = meta["modalities_from"]
    found = hook(data_dir, dict(options or {})) if hook is not None else None
    if found is None:
        return dict(meta["modalities"])
    check_modalities_of(found, f"dataset {name!r}")
    return dict(found)
