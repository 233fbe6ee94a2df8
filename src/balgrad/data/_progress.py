"""Progress bars over DataLoaders that never iterate the loader themselves.

``tqdm(loader)`` must not be used: ``tqdm.auto``'s bar calls ``iter(loader)`` once when
it is created, a throw-away iterator that draws from the loader's generator and, with
workers, starts a throw-away worker pool that prefetches (and so draws the shuffling
permutation). The number of draws then depended on ``num_workers``, and so did the batch
order. These bars count batches (``total=len(loader)``) while the caller iterates.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def bar(loader, **kwargs) -> tqdm:
    """A bar of ``len(loader)`` steps; the caller calls ``update()`` per batch.

    Args:
        loader: Anything with a ``len()``.
        **kwargs: tqdm's keyword arguments (``desc``, ``disable``...).

    Returns:
        The bar.
    """
    return tqdm(total=len(loader), **kwargs)


def with_progress(loader: Iterable[T], **kwargs) -> Iterator[T]:
    """``loader``'s items, iterated once, with a bar (tqdm's keyword arguments).

    Args:
        loader: An iterable.
        **kwargs: tqdm's keyword arguments.

    Yields:
        The items.
    """
    b = bar(loader, **kwargs)
    try:
        for item in loader:
            yield item
            b.update()
    finally:
        b.close()
