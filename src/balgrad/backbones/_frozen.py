"""Keeping a frozen encoder in eval mode (the complement of ``base.freeze``)."""

from __future__ import annotations


class KeepFrozen:
    """Mixin: a frozen encoder stays in eval mode when its parent calls ``.train()``."""

    def train(self, mode: bool = True):  # type: ignore[override]
        """Set training mode, except for a frozen encoder (``trainable = False``): it stays in
        eval mode.

        Args:
            mode: The mode asked for.

        Returns:
            The module.
        """
        return super().train(mode and getattr(self, "trainable", True))  # type: ignore[misc]
