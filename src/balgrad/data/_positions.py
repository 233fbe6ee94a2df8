"""An example's position in a split, checked the one way the map-style readers share."""

from __future__ import annotations


def checked_index(index: int, length: int, where: str) -> int:
    """``index`` as a position in ``0 .. length - 1``, a negative one counting from the end.

    Args:
        index: The position asked for.
        length: How many examples the split holds.
        where: The dataset and split, for the message.

    Returns:
        The position, non-negative.

    Raises:
        IndexError: Out of range (the message names ``where`` and the index asked for,
            wrapped when it was negative).
    """
    if index < 0:
        index += length
    if not 0 <= index < length:
        raise IndexError(f"{where}: index {index} out of range")
    return index
