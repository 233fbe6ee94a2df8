"""Hugging Face backbones by name or local path (``hf:<id|path>``, ``clip:<id|path>``).

Images: any ``AutoModel`` vision model with a pooled output or token/feature-map outputs
(ViT, ResNet, ConvNeXt, ...); a CLIP checkpoint uses its vision tower (``CLIPVisionModel``).
Preprocessing reads the checkpoint's image processor (size, crop, mean, std) but runs as
torch ops on a ``[C, H, W]`` tensor in [0, 1], so no PIL round trip is needed.

Texts: any ``AutoModel`` text encoder (BERT, DistilBERT, RoBERTa, ...) with the checkpoint's
``AutoTokenizer``; a CLIP checkpoint uses its text tower (``CLIPTextModel``).

Nothing is downloaded when the checkpoint is a local directory or already in the local
Hugging Face cache. Otherwise a download is tried unless ``HF_HUB_OFFLINE`` /
``TRANSFORMERS_OFFLINE`` is set or ``local_files_only=True``; when the checkpoint cannot be
found a :class:`~balgrad.errors.BackboneError` says so and how to supply a local path.

Frozen by default (``finetune=False``): parameters get no gradient and the encoder stays in
eval mode even when its parent module is put in training mode.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from balgrad.backbones.base import ImageEncoder, TextEncoder, freeze
from balgrad.backbones.small import _KeepFrozen, resize, to_channels
from balgrad.errors import BackboneError, ConfigError

log = logging.getLogger("balgrad.backbones")

IMAGE_POOLINGS = ("auto", "pooler", "cls", "mean")
TEXT_POOLINGS = ("auto", "pooler", "cls", "mean")
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


# ------------------------------------------------------------------------ resolution


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set (read at call time)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    return False


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", "./", "../", "~", "\\"))
        or (len(name) > 1 and name[1] == ":")  # C:\...
        or Path(name).expanduser().exists()
    )


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
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' loading reports and progress bars for the duration."""
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


class _Source:
    """Where a checkpoint comes from, and the keyword arguments every ``from_pretrained`` gets."""

    def __init__(
        self,
        label: str,
        name: str,
        *,
        revision: str | None,
        cache_dir: str | None,
        local_files_only: bool | None,
        trust_remote_code: bool,
    ) -> None:
        if not name:
            raise BackboneError(f"backbone {label!r}: empty model name or path")
        self.label = label
        self.name = name
        self.is_local = _looks_like_path(name)
        self.path = Path(name).expanduser().resolve() if self.is_local else None
        if self.is_local and not self.path.is_dir():
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
        return str(self.path) if self.is_local else self.name

    def kwargs(self, local: bool) -> dict[str, Any]:
        kw: dict[str, Any] = {"trust_remote_code": self.trust_remote_code}
        if self.revision is not None:
            kw["revision"] = self.revision
        if self.cache_dir is not None:
            kw["cache_dir"] = self.cache_dir
        if local:
            kw["local_files_only"] = True
        return kw

    def not_found(self, err: BaseException, what: str = "config") -> BackboneError:
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
        """Call ``fn(target, **kwargs)``: the local cache first, then the hub when allowed."""
        if self.is_local or self.local_files_only or hub_offline():
            attempts = [True]
        elif self.local_files_only is False:
            attempts = [False]
        else:
            attempts = [True, False]
        last: BaseException | None = None
        for local in attempts:
            try:
                with _quiet_transformers():
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

    def identity(self, config: Any) -> str:
        if self.is_local:
            return f"{self.path}#{local_checkpoint_hash(self.path)}"
        commit = getattr(config, "_commit_hash", None) or self.revision or "main"
        return f"{self.name}@{commit}"


def _check_choice(label: str, option: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(
            f"backbone {label!r}: option {option!r} must be one of {allowed}, got {value!r}"
        )


def _missing_keys(info: dict | None) -> set[str]:
    if not info:
        return set()
    return set(info.get("missing_keys") or ())


def _warn_missing(label: str, missing: set[str]) -> None:
    missing = {k for k in missing if "pooler" not in k}
    if missing:
        shown = ", ".join(sorted(missing)[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        log.warning(
            "backbone %r: %d weights were not in the checkpoint and are randomly initialised: %s%s",
            label,
            len(missing),
            shown,
            more,
        )


def _pooler_params(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    pooler = getattr(model, "pooler", None)
    if isinstance(pooler, torch.nn.Module):
        return list(pooler.parameters())
    return []


def _is_clip(config: Any) -> bool:
    return getattr(config, "model_type", None) == "clip"


def _load_tower(
    src: _Source, label: str, name: str, tower: str, clip: bool, projection: bool
) -> tuple[Any, set[str], Any, Any, bool]:
    """(model, missing weight keys, the tower's config, the checkpoint's config, is CLIP)
    of a checkpoint's ``tower``
    ("vision" or "text"). A CLIP checkpoint yields its CLIP tower, anything else
    ``AutoModel``; ``clip`` insists on CLIP, ``projection`` needs it."""
    import transformers
    from transformers import AutoConfig, AutoModel

    config = src.load("config", AutoConfig.from_pretrained)
    is_clip = _is_clip(config) or getattr(config, "model_type", None) == f"clip_{tower}_model"
    if clip and not is_clip:
        raise BackboneError(
            f"backbone {label!r}: not a CLIP checkpoint (model_type={config.model_type!r}); "
            f"use 'hf:{name}'"
        )
    if projection and not is_clip:
        raise ConfigError(f"backbone {label!r}: option 'projection' needs a CLIP checkpoint")
    if is_clip:
        kind = "Vision" if tower == "vision" else "Text"
        cls = getattr(transformers, f"CLIP{kind}Model{'WithProjection' if projection else ''}")
        model_config = getattr(config, f"{tower}_config") if _is_clip(config) else config
        if projection and _is_clip(config):
            model_config.projection_dim = config.projection_dim

        def load_model(target: str, **kw: Any) -> Any:
            return cls.from_pretrained(target, config=model_config, output_loading_info=True, **kw)

    else:
        model_config = config

        def load_model(target: str, **kw: Any) -> Any:
            return AutoModel.from_pretrained(target, output_loading_info=True, **kw)

    model, info = src.load("model", load_model)
    missing = _missing_keys(info)
    _warn_missing(label, missing)
    return model, missing, model_config, config, is_clip


def _size_get(size: Any, key: str) -> Any:
    if size is None:
        return None
    if isinstance(size, dict):
        return size.get(key)
    return getattr(size, key, None)


def _pair(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int):
        return (value, value)
    h, w = _size_get(value, "height"), _size_get(value, "width")
    if h is not None and w is not None:
        return (int(h), int(w))
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return (int(value[0]), int(value[1]))
    return None


def _center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Center crop ``[C, H, W]`` to ``size``, zero-padding where the image is smaller."""
    th, tw = size
    h, w = x.shape[-2:]
    if h < th or w < tw:
        ph, pw = max(0, th - h), max(0, tw - w)
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        h, w = x.shape[-2:]
    top, left = (h - th) // 2, (w - tw) // 2
    return x[..., top : top + th, left : left + tw]


def _resize_shortest(x: torch.Tensor, shortest: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    scale = shortest / min(h, w)
    return resize(x, (max(1, round(h * scale)), max(1, round(w * scale))))


# ------------------------------------------------------------------------ images


class HFImageEncoder(_KeepFrozen, ImageEncoder):
    """A Hugging Face vision model (``hf:<id|path>``; ``clip:<id|path>`` forces the CLIP tower).

    Options:
        finetune: False (default) freezes the model; True keeps it trainable.
        pooling: ``"auto"`` (the model's pooled output when it has one whose weights are in
            the checkpoint, else the CLS token, else the spatial mean), ``"pooler"``,
            ``"cls"`` or ``"mean"`` (mean over tokens or over the feature map).
        projection: CLIP only: use ``CLIPVisionModelWithProjection`` and output the
            projected ``image_embeds`` (the space shared with the text tower).
        image_size, image_mean, image_std: override the image processor's values (needed
            when the checkpoint has no ``preprocessor_config.json``).
        trust_remote_code (False), revision, cache_dir, local_files_only: passed to
            ``from_pretrained``.
    """

    def __init__(
        self,
        name: str,
        finetune: bool = False,
        pooling: str = "auto",
        projection: bool = False,
        image_size: int | tuple[int, int] | None = None,
        image_mean: float | tuple[float, ...] | None = None,
        image_std: float | tuple[float, ...] | None = None,
        trust_remote_code: bool = False,
        revision: str | None = None,
        cache_dir: str | None = None,
        local_files_only: bool | None = None,
        clip: bool = False,
    ) -> None:
        super().__init__()
        self.label = label = f"{'clip' if clip else 'hf'}:{name}"
        _check_choice(label, "pooling", pooling, IMAGE_POOLINGS)
        src = _Source(
            label,
            name,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            trust_remote_code=trust_remote_code,
        )
        from transformers import AutoImageProcessor

        model, missing, model_config, config, is_clip = _load_tower(
            src, label, name, "vision", clip, projection
        )
        self.model = model
        self.projection = bool(projection)
        self.channels = int(getattr(model_config, "num_channels", 3) or 3)

        processor = None
        if image_size is None or image_mean is None or image_std is None:
            try:
                processor = src.load("image processor", AutoImageProcessor.from_pretrained)
            except BackboneError as e:
                raise BackboneError(
                    f"backbone {label!r}: no usable image processor in the checkpoint; pass the "
                    f"options image_size, image_mean and image_std. ({e})"
                ) from e
        self._plan = self._resize_plan(processor, image_size, model_config)
        self.image_mean, self.image_std = self._norm_stats(processor, image_mean, image_std)
        # plain tensors, not buffers: preprocessing runs on the CPU (data loader workers)
        self._mean = torch.tensor(self.image_mean).view(-1, 1, 1)
        self._std = torch.tensor(self.image_std).view(-1, 1, 1)

        # probe once: output kinds decide "auto" pooling and the output size
        self.model.eval()
        with torch.no_grad():
            out = self.model(pixel_values=self.preprocess(self.blank_image()).unsqueeze(0))
        has_pooler = getattr(out, "pooler_output", None) is not None
        pooler_loaded = not any("pooler" in k for k in missing)
        hidden = getattr(out, "last_hidden_state", None)
        if projection:
            pooling = "projection"
        elif pooling == "auto":
            if has_pooler and pooler_loaded:
                pooling = "pooler"
            elif hidden is not None and hidden.dim() == 3:
                pooling = "cls"
            else:
                pooling = "mean"
        if pooling == "pooler" and not has_pooler:
            raise ConfigError(
                f"backbone {label!r}: pooling='pooler' but the model has no pooled output"
            )
        if pooling in ("cls", "mean") and hidden is None:
            raise ConfigError(f"backbone {label!r}: pooling={pooling!r} needs last_hidden_state")
        if pooling == "cls" and hidden.dim() != 3:
            raise ConfigError(
                f"backbone {label!r}: pooling='cls' needs token outputs, this model gives a "
                "feature map; use pooling='mean'"
            )
        self.pooling = pooling
        if pooling != "pooler":  # unused parameters would upset DDP when fine-tuning
            for p in _pooler_params(self.model):
                p.requires_grad_(False)
        self.out_dim = int(self._pool(out).shape[-1])
        self.identity = (
            f"hf-image:{src.identity(config)}|tower={'clip' if is_clip else 'auto'}"
            f"|pool={pooling}|plan={self._plan}|mean={self.image_mean}|std={self.image_std}"
        )
        if finetune:
            self.trainable = True
            self.model.train()
        else:
            freeze(self)

    # preprocessing ---------------------------------------------------------

    @staticmethod
    def _resize_plan(processor: Any, image_size: Any, config: Any) -> tuple:
        """A hashable plan ``(mode, size, crop)``.

        ``("resize", (h, w), crop)``: resize to (h, w) (aspect not kept), then center crop.
        ``("shortest", s, crop)``: resize the shorter side to s (aspect kept), then center
        crop. ``crop`` is (h, w) or None; the model input is ``crop`` or ``size``.
        """
        if image_size is not None:
            size = _pair(image_size)
            if size is None:
                raise ConfigError(
                    f"option 'image_size' must be an int or (height, width), got {image_size!r}"
                )
            return ("resize", size, None)
        size = getattr(processor, "size", None)
        do_crop = bool(getattr(processor, "do_center_crop", False))
        crop = _pair(getattr(processor, "crop_size", None)) if do_crop else None
        hw = _pair(size)
        shortest = _size_get(size, "shortest_edge")
        if hw is not None:
            return ("resize", hw, crop)
        if shortest is not None:
            shortest = int(shortest)
            crop_pct = getattr(processor, "crop_pct", None)
            if crop is None and crop_pct is not None and shortest < 384:
                # ConvNeXt / ResNet processors: shorter side to shortest/crop_pct, crop shortest
                return ("shortest", int(shortest / crop_pct), (shortest, shortest))
            # without a crop the output would not have a fixed shape: crop a square
            return ("shortest", shortest, crop or (shortest, shortest))
        cs = _pair(getattr(config, "image_size", None))
        if cs is not None:
            return ("resize", cs, None)
        raise BackboneError(
            f"cannot read an input size from the image processor {type(processor).__name__}; "
            "pass the option image_size"
        )

    def _norm_stats(self, processor: Any, mean: Any, std: Any) -> tuple[tuple, tuple]:
        def expand(v: Any, what: str) -> tuple[float, ...]:
            if isinstance(v, (int, float)):
                return (float(v),) * self.channels
            v = tuple(float(x) for x in v)
            if len(v) == 1:
                return v * self.channels
            if len(v) != self.channels:
                raise ConfigError(
                    f"option {what!r} has {len(v)} values for {self.channels} channels"
                )
            return v

        do_norm = processor is None or bool(getattr(processor, "do_normalize", True))
        if mean is None:
            mean = getattr(processor, "image_mean", None) if do_norm else 0.0
        if std is None:
            std = getattr(processor, "image_std", None) if do_norm else 1.0
        if mean is None or std is None:
            raise BackboneError(
                "the image processor has no image_mean/image_std; pass them as options"
            )
        return expand(mean, "image_mean"), expand(std, "image_std")

    def input_size(self) -> tuple[int, int]:
        mode, size, crop = self._plan
        return crop or size

    def blank_image(self) -> torch.Tensor:
        h, w = self.input_size()
        return torch.zeros(3, h, w)

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        x = to_channels(image.float(), self.channels)
        mode, size, crop = self._plan
        x = resize(x, size) if mode == "resize" else _resize_shortest(x, size)
        if crop is not None:
            x = _center_crop(x, crop)
        return (x - self._mean.to(x.device)) / self._std.to(x.device)

    # forward ---------------------------------------------------------------

    def _pool(self, out: Any) -> torch.Tensor:
        if self.pooling == "projection":
            return out.image_embeds
        if self.pooling == "pooler":
            return out.pooler_output.flatten(1)
        h = out.last_hidden_state
        if self.pooling == "cls":
            return h[:, 0]
        return h.mean(1) if h.dim() == 3 else h.flatten(2).mean(-1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._pool(self.model(pixel_values=pixels))


# ------------------------------------------------------------------------ texts


class HFTextEncoder(_KeepFrozen, TextEncoder):
    """A Hugging Face text model (``hf:<id|path>``; ``clip:<id|path>`` forces the CLIP tower).

    Options:
        finetune: False (default) freezes the model; True keeps it trainable.
        pooling: ``"auto"`` (the pooled output when the model has one whose weights are in
            the checkpoint, e.g. BERT's pooler or CLIP's end-of-text token; otherwise the
            first token when the tokenizer has a CLS token, else the masked mean),
            ``"pooler"``, ``"cls"`` (first token) or ``"mean"`` (masked mean).
        max_length: tokens per text (default: the model's limit, at most 512).
        normalize: L2-normalise the output (False).
        projection: CLIP only: output the projected ``text_embeds``.
        trust_remote_code (False), revision, cache_dir, local_files_only: passed to
            ``from_pretrained``.
    """

    def __init__(
        self,
        name: str,
        finetune: bool = False,
        pooling: str = "auto",
        max_length: int | None = None,
        normalize: bool = False,
        projection: bool = False,
        trust_remote_code: bool = False,
        revision: str | None = None,
        cache_dir: str | None = None,
        local_files_only: bool | None = None,
        clip: bool = False,
        _label: str | None = None,
        _identity: str | None = None,
    ) -> None:
        super().__init__()
        self.label = label = _label or f"{'clip' if clip else 'hf'}:{name}"
        _check_choice(label, "pooling", pooling, TEXT_POOLINGS)
        src = _Source(
            label,
            name,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            trust_remote_code=trust_remote_code,
        )
        from transformers import AutoTokenizer

        model, missing, model_config, config, is_clip = _load_tower(
            src, label, name, "text", clip, projection
        )
        self.model = model
        tokenizer = src.load("tokenizer", AutoTokenizer.from_pretrained)
        if tokenizer.pad_token is None:
            fallback = tokenizer.eos_token or tokenizer.unk_token
            if fallback is None:
                raise BackboneError(f"backbone {label!r}: the tokenizer has no padding token")
            tokenizer.pad_token = fallback
        self.tokenizer = tokenizer

        limits = [512]
        mml = getattr(tokenizer, "model_max_length", None)
        if isinstance(mml, int) and 0 < mml < 100_000:
            limits.append(mml)
        mpe = getattr(model_config, "max_position_embeddings", None)
        if isinstance(mpe, int) and mpe > 0:
            limits.append(mpe)
        limit = min(limits)
        if max_length is None:
            max_length = limit
        elif max_length < 2:
            raise ConfigError(
                f"backbone {label!r}: option 'max_length' must be >= 2, got {max_length}"
            )
        elif max_length > limit and limit != 512:
            raise ConfigError(
                f"backbone {label!r}: option 'max_length'={max_length} exceeds the model's "
                f"limit of {limit} tokens"
            )
        self.max_length = int(max_length)
        self.normalize = bool(normalize)
        self.projection = bool(projection)

        emb = self.model.get_input_embeddings()
        n_rows = getattr(emb, "num_embeddings", None) or len(tokenizer)
        self.vocab_size = int(min(len(tokenizer), n_rows))
        self.pad_id = int(tokenizer.pad_token_id)
        self.special_ids = tuple(sorted({int(i) for i in tokenizer.all_special_ids}))

        self.model.eval()
        with torch.no_grad():
            probe = self.tokenize(["probe", ""])
            out = self.model(**probe)
        has_pooler = getattr(out, "pooler_output", None) is not None
        pooler_loaded = not any("pooler" in k for k in missing)
        if projection:
            pooling = "projection"
        elif pooling == "auto":
            if has_pooler and pooler_loaded:
                pooling = "pooler"
            elif tokenizer.cls_token is not None:
                pooling = "cls"
            else:
                pooling = "mean"
        if pooling == "pooler" and not has_pooler:
            raise ConfigError(
                f"backbone {label!r}: pooling='pooler' but the model has no pooled output; "
                "use 'cls' or 'mean'"
            )
        self.pooling = pooling
        if pooling != "pooler":
            for p in _pooler_params(self.model):
                p.requires_grad_(False)
        self.out_dim = int(self._pool(out, probe["attention_mask"]).shape[-1])
        self.identity = _identity or (
            f"hf-text:{src.identity(config)}|tower={'clip' if is_clip else 'auto'}"
            f"|pool={pooling}|max_length={self.max_length}|normalize={self.normalize}"
        )
        if finetune:
            self.trainable = True
            self.model.train()
        else:
            freeze(self)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        if isinstance(texts, str):
            raise BackboneError("tokenize takes a list of strings, got one string")
        texts = ["" if t is None else str(t) for t in texts]
        if not texts:
            empty = torch.zeros(0, 2, dtype=torch.long)
            return {"input_ids": empty, "attention_mask": empty.clone()}
        enc = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        ids = enc["input_ids"].long()
        mask = enc.get("attention_mask")
        mask = (ids != self.pad_id).long() if mask is None else mask.long()
        return {"input_ids": ids, "attention_mask": mask}

    def _pool(self, out: Any, mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "projection":
            f = out.text_embeds
        elif self.pooling == "pooler":
            f = out.pooler_output
        elif self.pooling == "cls":
            f = out.last_hidden_state[:, 0]
        else:
            h = out.last_hidden_state
            m = mask.unsqueeze(-1).to(h.dtype)
            f = (h * m).sum(1) / m.sum(1).clamp_min(1e-9)
        return F.normalize(f, dim=-1) if self.normalize else f

    def forward(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        ids = tokens["input_ids"]
        mask = tokens.get("attention_mask")
        if mask is None:
            mask = (ids != self.pad_id).long()
        out = self.model(input_ids=ids, attention_mask=mask)
        return self._pool(out, mask)
