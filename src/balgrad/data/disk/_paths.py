"""Keeping every file a dataset reads inside its data folder.

An index file is data, not code, and an option is not a licence either: a record such as
``"img": "../../OUTSIDE.jpg"`` or ``"/etc/hostname"``, an option such as
``split_file="../../x.jsonl"``, or a symlink inside the folder that points elsewhere, must
not make the loader read a file outside the folder the user named. Paths are compared
after ``Path.resolve()`` (symlinks and ``..`` resolved) with the resolved folder; a path
that cannot be resolved (a symlink loop) is refused the same way, naming it.
"""

from __future__ import annotations

import os
from pathlib import Path

from balgrad.errors import DataError


class FolderBoundary:
    """Resolves paths and says whether they stay inside ``folder``.

    Each parent folder is resolved once (a dataset has few folders and many files); a
    file is resolved again only when it is itself a symlink (one ``lstat``).

    Args:
        folder: The folder (resolved once).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder).resolve()
        # a string prefix test: Path.is_relative_to costs ~20x more, per file
        self._prefix = os.path.join(str(self.folder), "")
        self._resolved_dirs: dict[Path, Path] = {}

    def resolve(self, path: Path) -> Path:
        """``path`` resolved; RuntimeError/OSError for a symlink loop.

        Args:
            path: A path.

        Returns:
            The resolved path.
        """
        if path.name in ("", ".", ".."):
            return path.resolve()
        parent = self._resolved_dirs.get(path.parent)
        if parent is None:
            parent = self._resolved_dirs[path.parent] = path.parent.resolve()
        resolved = parent / path.name
        return resolved.resolve() if resolved.is_symlink() else resolved

    def outside(self, path: Path) -> Path | None:
        """The resolved path when ``path`` leads outside the folder, else None.

        Args:
            path: A path.

        Returns:
            The resolved path, or None.
        """
        resolved = self.resolve(path)
        return None if self.holds(resolved) else resolved

    def holds(self, resolved: Path) -> bool:
        """Whether a resolved path is inside the folder.

        Args:
            resolved: A resolved path.

        Returns:
            True inside (or the folder itself).
        """
        return str(resolved).startswith(self._prefix) or resolved == self.folder

    def problem(self, source: str, what: str, path: Path) -> str | None:
        """Why ``path`` (named by ``source``) may not be read, or None when it may.

        Args:
            source: What names the path, for the message.
            what: What the file is, for the message.
            path: The path.

        Returns:
            The reason, or None.
        """
        try:
            if "\0" in str(path):
                raise ValueError("it holds a NUL character")
            os.fsencode(path)  # a lone surrogate has no bytes to name a file with
        except ValueError as e:
            return f"{source}: {what} {str(path)!r} is not a valid file name ({e})"
        try:
            outside = self.outside(path)
        except (RuntimeError, OSError) as e:  # a symlink loop (RuntimeError before 3.13)
            return f"{source}: {what} {path} cannot be resolved ({e}): fix or remove the symlink"
        return None if outside is None else self.escape_message(source, what, path, outside)

    def check(self, source: str, what: str, path: Path) -> Path:
        """``path``, or :class:`DataError` when it may not be read.

        Args:
            source: What names the path (a CSV line), for the message.
            what: What the file is, for the message.
            path: The path.

        Returns:
            ``path``.

        Raises:
            DataError: It may not be read.
        """
        problem = self.problem(source, what, path)
        if problem is not None:
            raise DataError(problem)
        return path

    def read_bytes(self, path: Path, dataset: str, what: str = "index file") -> bytes:
        """The bytes of ``path`` after :meth:`check`; a missing or unreadable file is a
        :class:`DataError` naming it.

        Args:
            path: The file.
            dataset: The dataset, for the message.
            what: What the file is, for the message.

        Returns:
            Its bytes.

        Raises:
            DataError: It may not be read, is missing or unreadable.
        """
        from balgrad.data.disk._readers import read_bytes  # readers build on this module

        self.check(dataset, what, path)
        return read_bytes(path, dataset, what)

    def escape_message(self, source: str, what: str, path: Path, resolved: Path) -> str:
        """The message for a path that resolves outside the folder.

        Args:
            source: What names the path.
            what: What the file is.
            path: The path as given.
            resolved: Where it leads.

        Returns:
            The message.
        """
        return (
            f"{source}: {what} {path} resolves to {resolved}, outside the data folder "
            f"{self.folder} (symlinks are followed; keep the files inside the folder, or "
            "point data_dir at the folder that really holds them)"
        )
