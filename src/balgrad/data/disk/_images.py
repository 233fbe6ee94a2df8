"""Where the image decoder used to live; it is now :mod:`balgrad.data.decoders._image`,
which every reader uses. These names stay importable from here."""

from balgrad.data.decoders._image import (
    EIGHT_BIT_MODES,
    IMAGE_ERRORS,
    SIXTEEN_BIT_MODES,
    SUPPORTED_MODES,
    ImageModeError,
    check_mode,
    check_mode_range,
    decode_error,
    decode_image,
    header_error,
    image_error,
    load_image,
)

__all__ = [
    "EIGHT_BIT_MODES",
    "IMAGE_ERRORS",
    "SIXTEEN_BIT_MODES",
    "SUPPORTED_MODES",
    "ImageModeError",
    "check_mode",
    "check_mode_range",
    "decode_error",
    "decode_image",
    "header_error",
    "image_error",
    "load_image",
]
