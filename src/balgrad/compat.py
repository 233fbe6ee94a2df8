"""The Python names of balgrad 0.1 that only knew the (image, text) pair, kept for this
release (0.2): each still works and emits a ``DeprecationWarning`` that names its
replacement. Release 0.3 deletes this module and nothing else. Old name, and its
replacement:

- ``TwoTowerModel(image_enc, text_enc, n, ...)``:
  ``MultimodalModel({"image": image_enc, "text": text_enc}, n, ...)``
- ``model(x_v, x_l, drop_image, drop_text)``:
  ``model({"image": x_v, "text": x_l}, drop={"image": ..., "text": ...})``
- ``output.logits_image``, ``output.h_image``:
  ``output.unimodal["image"]``, ``output.embeddings["image"]`` (and ``_text``)
- ``batch.image``, ``batch.drop_image``:
  ``batch.inputs["image"]``, ``batch.drop.get("image")`` (and ``text``)
- ``Example(image, text, label, index)``, ``example.image``:
  ``Example({"image": image, "text": text}, label, index)``, ``example.inputs["image"]``
- ``InputPipeline(image_enc, text_enc, ...)``, ``ExampleCollator(image_enc, text_enc)``:
  the same with ``{"image": image_enc, "text": text_enc}`` as the first argument
- ``MSLR(image_lr_scale=a, text_lr_scale=b, head_lr_scale=c)``:
  ``MSLR(lr_scales={"image": a, "text": b, "head": c})``
- ``create_image_encoder(name, ...)``, ``create_text_encoder(name, ...)``:
  ``create_backbone("image", name, ...)``, ``create_backbone("text", name, ...)``
- ``register_image_backbone(name, ...)``, ``register_text_backbone(name, ...)``:
  ``register_backbone("image", name, ...)``, ``register_backbone("text", name, ...)``

The classes themselves hold no legacy code: importing :mod:`balgrad` (whose ``__init__``
imports this module) attaches the old attributes and constructor forms to them here, and
``balgrad.TwoTowerModel``, ``balgrad.models.TwoTowerModel`` and the four backbone
functions of ``balgrad.backbones`` are found through module ``__getattr__``. An (image, text) ``MultimodalModel`` has the state-dict keys
``TwoTowerModel`` had, so checkpoints of either load into the other. Old ``config.yaml``
and ``eval.json`` files are upgraded where they are read, not here.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from balgrad import backbones, models
from balgrad.backbones import _factory
from balgrad.config_upgrade import MSLR_FLAT_SCALES
from balgrad.data._base import Example
from balgrad.data._batch import Batch
from balgrad.data._pipeline import InputPipeline
from balgrad.integrations._collate import ExampleCollator
from balgrad.models._multimodal import ModelOutput, MultimodalModel
from balgrad.strategies._mslr import MSLR

__all__ = ["TwoTowerModel", "deprecated_backbone_function"]

#: the release that removes these names
REMOVED_IN = "0.3"


def warn(old: str, new: str, stacklevel: int = 3) -> None:
    """The one warning of this module: ``old`` is deprecated, use ``new``. The default
    ``stacklevel`` names the line that called the function or property that warns."""
    warnings.warn(
        f"{old} is deprecated and will be removed in balgrad {REMOVED_IN}; use {new}",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


class TwoTowerModel(MultimodalModel):
    """Deprecated: ``MultimodalModel({"image": image_encoder, "text": text_encoder}, ...)``,
    which it is, key for key; it adds the positional forward of 0.1.

    Args:
        image_encoder: The image tower.
        text_encoder: The text tower.
        num_classes: Classes (or labels) of the head.
        *args: Passed to :class:`~balgrad.models.MultimodalModel`.
        **kwargs: Passed to :class:`~balgrad.models.MultimodalModel`.
    """

    def __init__(self, image_encoder, text_encoder, num_classes: int, *args, **kwargs):
        warn(
            "TwoTowerModel(image_encoder, text_encoder, ...)",
            'MultimodalModel({"image": image_encoder, "text": text_encoder}, ...)',
        )
        super().__init__(
            {"image": image_encoder, "text": text_encoder}, num_classes, *args, **kwargs
        )

    def forward(self, image, text=None, drop_image=None, drop_text=None, *, drop=None):
        """The named form ``model({"image": x_v, "text": x_l}, drop)``, or 0.1's positional
        ``model(x_v, x_l, drop_image, drop_text)`` with a DeprecationWarning."""
        if isinstance(image, Mapping) and {"image", "text"} <= image.keys():  # the named form
            return super().forward(image, drop if drop is not None else text)
        # nn.Module.__call__ and _call_impl stand between the caller and forward
        warn(
            "model(x_v, x_l, drop_image, drop_text)",
            'model({"image": x_v, "text": x_l}, drop={"image": ..., "text": ...})',
            stacklevel=5,
        )
        drops = {"image": drop_image, "text": drop_text, **(drop or {})}
        return super().forward({"image": image, "text": text}, drops)


def _module_getattr(module_name: str, fallback: Callable[[str], Any] | None = None):
    """A module ``__getattr__`` that gives ``TwoTowerModel`` with a warning."""

    def __getattr__(name: str) -> Any:
        if name == "TwoTowerModel":
            warn(f"{module_name}.TwoTowerModel", f"{module_name}.MultimodalModel")
            return TwoTowerModel
        if fallback is not None:
            return fallback(name)
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")

    return __getattr__


def deprecated_backbone_function(name: str) -> Callable[..., Any]:
    """One of the four backbone functions of 0.1, as the kind's current one, warning.

    Args:
        name: ``create_image_encoder``, ``create_text_encoder``,
            ``register_image_backbone`` or ``register_text_backbone``.

    Returns:
        The function: :func:`~balgrad.backbones.create_backbone` /
        :func:`~balgrad.backbones.register_backbone` with the kind bound, which emits a
        ``DeprecationWarning`` on each call.
    """
    verb, kind, _ = name.split("_")
    new = {"create": _factory.create_backbone, "register": _factory.register_backbone}[verb]

    @functools.wraps(new)
    def old(*args: Any, **kwargs: Any) -> Any:
        warn(f"{name}(...)", f'{new.__name__}("{kind}", ...)')
        return new(kind, *args, **kwargs)

    old.__name__ = old.__qualname__ = name
    old.__doc__ = f'Deprecated: ``{new.__name__}("{kind}", ...)``.'
    return old


_OLD_BACKBONE_FUNCTIONS = {
    f"{verb}_{kind}_{noun}"
    for kind in ("image", "text")
    for verb, noun in (("create", "encoder"), ("register", "backbone"))
}


def _backbone_getattr(module_name: str, fallback: Callable[[str], Any] | None):
    def __getattr__(name: str) -> Any:
        if name in _OLD_BACKBONE_FUNCTIONS:
            return deprecated_backbone_function(name)
        if fallback is not None:
            return fallback(name)
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")

    return __getattr__


for _module in (backbones, _factory):
    _module.__getattr__ = _backbone_getattr(_module.__name__, getattr(_module, "__getattr__", None))


#: ``balgrad.TwoTowerModel`` (``balgrad/__init__.py`` takes it as its ``__getattr__``)
facade_getattr = _module_getattr("balgrad")
models.__getattr__ = _module_getattr("balgrad.models", getattr(models, "__getattr__", None))


def _alias(cls: type, old: str, field: str, modality: str, new: str) -> None:
    """``cls.old``: a read-only property that warns and reads ``self.field[modality]``
    (``self.drop.get(modality)`` for a drop mask, which may be absent)."""

    def fget(self):
        warn(f"{cls.__name__}.{old}", new)
        values = getattr(self, field)
        return values.get(modality) if field == "drop" else values[modality]

    fget.__doc__ = f"Deprecated: {new}."
    setattr(cls, old, property(fget))


def _old_form(
    cls: type, old: str, new: str, is_old: Callable[..., bool], upgrade: Callable
) -> None:
    """``cls(...)`` also takes the arguments of 0.1 (those ``is_old`` recognises), with a
    warning: ``upgrade`` maps them to the current ``(args, kwargs)``. The signature that
    ``inspect`` reports (and the strategy registry checks options against) stays the
    current one."""
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        if is_old(args, kwargs):
            warn(old, new)
            args, kwargs = upgrade(*args, **kwargs)
        init(self, *args, **kwargs)

    cls.__init__ = __init__


def _pair_given(*names: str) -> Callable[..., bool]:
    """Old when a keyword of ``names`` is given or the first argument is not a mapping."""
    return lambda args, kwargs: (
        any(n in kwargs for n in names) or bool(args and not isinstance(args[0], Mapping))
    )


# -- model outputs, batches and examples ---------------------------------------------------
for _m in ("image", "text"):
    _alias(ModelOutput, f"logits_{_m}", "unimodal", _m, f'output.unimodal["{_m}"]')
    _alias(ModelOutput, f"h_{_m}", "embeddings", _m, f'output.embeddings["{_m}"]')
    _alias(Batch, _m, "inputs", _m, f'batch.inputs["{_m}"]')
    _alias(Batch, f"drop_{_m}", "drop", _m, f'batch.drop.get("{_m}")')
    _alias(Example, _m, "inputs", _m, f'example.inputs["{_m}"]')


# -- constructors -----------------------------------------------------------------------------
def _example(image=None, text=None, label=None, index=0):
    return ({"image": image, "text": text}, label, index), {}


_old_form(
    Example,
    "Example(image, text, label, index)",
    'Example({"image": image, "text": text}, label, index)',
    lambda args, kwargs: _pair_given("image", "text")(args, kwargs) or len(args) == 4,
    _example,
)


def _encoder_pair(image_encoder, text_encoder, *args, **kwargs):
    return ({"image": image_encoder, "text": text_encoder}, *args), kwargs


for _cls in (InputPipeline, ExampleCollator):
    _old_form(
        _cls,
        f"{_cls.__name__}(image_encoder, text_encoder, ...)",
        f'{_cls.__name__}({{"image": image_encoder, "text": text_encoder}}, ...)',
        _pair_given("image_encoder", "text_encoder"),
        _encoder_pair,
    )


def _mslr(*args, lr_scales=None, **kwargs):
    flat = {MSLR_FLAT_SCALES[k]: kwargs.pop(k) for k in list(kwargs) if k in MSLR_FLAT_SCALES}
    return args, {**kwargs, "lr_scales": {**flat, **(lr_scales or {})}}


_old_form(
    MSLR,
    "MSLR(image_lr_scale=..., text_lr_scale=..., head_lr_scale=...)",
    'MSLR(lr_scales={"image": ..., "text": ..., "head": ...})',
    lambda args, kwargs: any(k in kwargs for k in MSLR_FLAT_SCALES),
    _mslr,
)

# the loop variables are not names of this module
del _m, _cls, _module
