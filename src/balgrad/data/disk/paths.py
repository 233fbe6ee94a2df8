"""Keeping every file a record names inside the data folder.

An index file is data, not code: a record such as ``"img": "../../OUTSIDE.jpg"`` or
``"/etc/hostname"``, or a symlink inside the folder that points elsewhere, must not make
the loader read a file outside the folder the user named. Paths are compared after
``Path.resolve()`` (symlinks and ``..`` resolved) with the resolved folder.
"""

from __future__ import annotations

import os
from pathlib import Path


class FolderBoundary:
    """Resolves paths and says whether they stay inside ``folder``.

    Each parent folder is resolved once (a dataset has few folders and many files); a
    file is resolved again only when it is itself a symlink (one ``lstat``).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder).resolve()
        # a string prefix test: Path.is_relative_to costs ~20x more, per file
        self._prefix = os.path.join(str(self.folder), "")
        self._resolved_dirs: dict[Path, Path] = {}

    def resolve(self, path: Path) -> Path:
        if path.name in ("", ".", ".."):
            return path.resolve()
        parent = self._resolved_dirs.get(path.parent)
        if parent is None:
            parent = self._resolved_dirs[path.parent] = path.parent.resolve()
        resolved = parent / path.name
        return resolved.resolve() if resolved.is_symlink() else resolved

    def outside(self, path: Path) -> Path | None:
        """The resolved path when ``path`` leads outside the folder, else None."""
        resolved = self.resolve(path)
        return None if str(resolved).startswith(self._prefix) else resolved

    def escape_message(self, source: str, what: str, path: Path, resolved: Path) -> str:
        return (
            f"{source}: {what} {path} resolves to {resolved}, outside the data folder "
            f"{self.folder} (symlinks are followed; keep the files inside the folder, or "
            "point data_dir at the folder that really holds them)"
        )
