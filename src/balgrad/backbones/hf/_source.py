"""Where a checkpoint comes from (local folder, local cache, the hub), the keyword
arguments every ``from_pretrained`` gets, the offline error, and the checkpoint's part
of an encoder's identity."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from balgrad.errors import BackboneError

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")
_PREPROCESSING_FILES = (
    "config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
)


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set (read at call time).

    Returns:
        Whether the Hub is off.
    """
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    return False


def _looks_like_path(name: str) -> bool:
    if name.startswith(("/", "./", "../", "~", "\\")) or (len(name) > 1 and name[1] == ":"):
        return True  # C:\... above
    try:
        return Path(name).expanduser().exists()
    except OSError:  # too long to be a file name: a hub id then (which fails by name)
        return False


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a name too long to look up
        return False


def _hf_cache_dir(cache_dir: str | None) -> str:
    if cache_dir:
        return str(cache_dir)
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # pragma: no cover - very old huggingface_hub
        return "~/.cache/huggingface/hub"


def local_checkpoint_hash(path: Path) -> str:
    """sha256 over the preprocessing/config files' bytes and the weight files' metadata.

    Weight files are hashed by (relative name, size, mtime) rather than read, so hashing a
    multi-GB checkpoint costs nothing; a rewritten weight file changes its mtime.

    Args:
        path: The checkpoint's directory.

    Returns:
        The hex digest.
    """
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        if f.name in _PREPROCESSING_FILES:
            h.update(f"{rel}\0".encode())
            h.update(f.read_bytes())
        elif f.suffix in _WEIGHT_SUFFIXES:
            st = f.stat()
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' loading reports and progress bars for the duration.

    Returns:
        A context manager.
    """
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


class CheckpointSource:
    """Where a checkpoint comes from, and the keyword arguments every ``from_pretrained`` gets.

    Args:
        label: The backbone's name as given (``hf:...``), for messages.
        name: A Hub id or a local path.
        revision: A Hub revision (branch, tag or commit).
        cache_dir: The Hugging Face cache to use.
        local_files_only: True: never download; False: always ask the Hub; None: the
            local cache first, then the Hub.
        trust_remote_code: Let ``from_pretrained`` run the checkpoint's own code.

    Raises:
        BackboneError: An empty name, or a local path that does not exist.
    """

    def __init__(
        self,
        label: str,
        name: str,
        revision: str | None = None,
        cache_dir: str | None = None,
        local_files_only: bool | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        if not name:
            raise BackboneError(f"backbone {label!r}: empty model name or path")
        self.label = label
        self.name = name
        self.is_local = _looks_like_path(name)
        self.path = Path(name).expanduser().resolve() if self.is_local else None
        if self.is_local and not _is_dir(self.path):
            raise BackboneError(
                f"backbone {label!r}: local path {str(self.path)!r} is not a directory "
                "(expected a folder written by save_pretrained, with config.json)"
            )
        self.trust_remote_code = bool(trust_remote_code)
        self.revision = revision
        self.cache_dir = cache_dir
        self.local_files_only = local_files_only

    @property
    def target(self) -> str:
        """What ``from_pretrained`` is given: the local path, or the Hub id."""
        return str(self.path) if self.is_local else self.name

    def kwargs(self, local: bool) -> dict[str, Any]:
        """The keyword arguments of a ``from_pretrained`` call.

        Args:
            local: Whether this attempt is from the local cache only.

        Returns:
            The arguments.
        """
        kw: dict[str, Any] = {"trust_remote_code": self.trust_remote_code}
        if self.revision is not None:
            kw["revision"] = self.revision
        if self.cache_dir is not None:
            kw["cache_dir"] = self.cache_dir
        if local:
            kw["local_files_only"] = True
        return kw

    def not_found(self, err: BaseException, what: str = "config") -> BackboneError:
        """The error for a checkpoint that is neither local nor downloadable: how to supply one.

        Args:
            err: The underlying error.
            what: What was being loaded.

        Returns:
            The error, to raise.
        """
        return BackboneError(
            f"backbone {self.label!r}: {self.name!r} ({what}) could not be found offline: it is not a "
            f"local directory and is not in the local Hugging Face cache "
            f"({_hf_cache_dir(self.cache_dir)}), and it could not be downloaded (no network, "
            "HF_HUB_OFFLINE set, local_files_only=True, or an unknown model id). Supply a local "
            "copy: on a machine with network run `hf download "
            f"{self.name} --local-dir DIR` (or from_pretrained(...).save_pretrained(DIR) for the "
            "model and its tokenizer / image processor), copy DIR here and use "
            f"'{self.label.split(':', 1)[0]}:/path/to/DIR'; or copy a populated Hugging Face cache "
            f"into HF_HOME. Underlying error: {type(err).__name__}: {err}"
        )

    def load(self, what: str, fn: Callable[..., Any]) -> Any:
        """Call ``fn(target, **kwargs)``: the local cache first, then the hub when allowed.

        Args:
            what: What is loaded, for the message (``"config"``, ``"tokenizer"``...).
            fn: A ``from_pretrained``.

        Returns:
            What ``fn`` returned.

        Raises:
            BackboneError: The checkpoint cannot be found (:meth:`not_found`).
        """
        if self.is_local or self.local_files_only or hub_offline():
            attempts = [True]
        elif self.local_files_only is False:
            attempts = [False]
        else:
            attempts = [True, False]
        last: BaseException | None = None
        for local in attempts:
            try:
                with quiet_transformers():
                    return fn(self.target, **self.kwargs(local))
            except OSError as e:  # not found locally / no network / missing file
                last = e
            except Exception as e:
                msg = str(e)
                if "trust_remote_code" in msg:
                    raise BackboneError(
                        f"backbone {self.label!r}: the checkpoint needs custom code from its "
                        "repository; pass the option trust_remote_code=True only if you trust "
                        f"it. ({msg})"
                    ) from e
                raise BackboneError(
                    f"backbone {self.label!r}: cannot load the {what}: {type(e).__name__}: {msg}"
                ) from e
        assert last is not None
        if self.is_local:
            raise BackboneError(
                f"backbone {self.label!r}: cannot load the {what} from {self.target!r}: {last}"
            ) from last
        raise self.not_found(last, what) from last

    def pins_weights(self, config: Any) -> bool:
        """Whether :meth:`identity` names the weights' exact version (a hub commit).

        Args:
            config: The loaded config.

        Returns:
            True for a Hub checkpoint at a known commit.
        """
        return not self.is_local and getattr(config, "_commit_hash", None) is not None

    def identity(self, config: Any) -> str:
        """The checkpoint: a local path with a hash of its files, or a hub id at a commit.

        Args:
            config: The loaded config.

        Returns:
            ``path#hash`` or ``id@commit``.
        """
        if self.is_local:
            return f"{self.path}#{local_checkpoint_hash(self.path)}"
        commit = getattr(config, "_commit_hash", None) or self.revision or "main"
        return f"{self.name}@{commit}"
