"""Packaged run configurations, usable by name: ``balgrad compare --config digits-scratch``.

Each preset is a YAML file in this folder with the same keys as any ``--config`` file;
``--config NAME`` reads the preset when NAME is not an existing file.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def list_presets() -> list[str]:
    """The names of the packaged presets.

    Returns:
        The names, sorted.
    """
    folder = resources.files(__name__)
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def preset_path(name: str) -> Path | None:
    """The file of preset ``name`` (with or without ``.yaml``), or None if there is none.

    Args:
        name: A preset's name.

    Returns:
        The file, or None.
    """
    stem = name[: -len(".yaml")] if name.endswith(".yaml") else name
    if "/" in stem or "\\" in stem or stem not in list_presets():
        return None
    return Path(str(resources.files(__name__) / f"{stem}.yaml"))


def preset_summary(name: str) -> str:
    """The first comment line after the usage line of a preset: what it is for.

    Args:
        name: A preset's name.

    Returns:
        The line, or "".
    """
    path = preset_path(name)
    if path is None:
        raise KeyError(name)
    for line in path.read_text().splitlines()[1:]:
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""
