"""The image processor's settings (size, crop, mean, std) as a plan for torch ops."""

from __future__ import annotations

from typing import Any

from balgrad.errors import BackboneError, ConfigError


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


def resize_plan(processor: Any, image_size: Any, config: Any) -> tuple:
    """A hashable plan ``(mode, size, crop)``.

    ``("resize", (h, w), crop)``: resize to (h, w) (aspect not kept), then center crop.
    ``("shortest", s, crop)``: resize the shorter side to s (aspect kept), then center
    crop. ``crop`` is (h, w) or None; the model input is ``crop`` or ``size``.

    Args:
        processor: The image processor, or None.
        image_size: The ``image_size`` option, or None.
        config: The model's config (its ``image_size``, without a processor).

    Returns:
        The plan.

    Raises:
        ConfigError: A bad ``image_size``, or no size anywhere.
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


def norm_stats(processor: Any, mean: Any, std: Any, channels: int) -> tuple[tuple, tuple]:
    """(mean, std) per channel: the options, else the processor's (0 and 1 when it does
    not normalise).

    Args:
        processor: The image processor, or None.
        mean: The ``image_mean`` option, or None.
        std: The ``image_std`` option, or None.
        channels: The model's input channels.

    Returns:
        (mean, std), one value per channel each.

    Raises:
        ConfigError: An option has another number of values than channels.
    """

    def expand(v: Any, what: str) -> tuple[float, ...]:
        if isinstance(v, (int, float)):
            return (float(v),) * channels
        v = tuple(float(x) for x in v)
        if len(v) == 1:
            return v * channels
        if len(v) != channels:
            raise ConfigError(f"option {what!r} has {len(v)} values for {channels} channels")
        return v

    do_norm = processor is None or bool(getattr(processor, "do_normalize", True))
    if mean is None:
        mean = getattr(processor, "image_mean", None) if do_norm else 0.0
    if std is None:
        std = getattr(processor, "image_std", None) if do_norm else 1.0
    if mean is None or std is None:
        raise BackboneError("the image processor has no image_mean/image_std; pass them as options")
    return expand(mean, "image_mean"), expand(std, "image_std")
