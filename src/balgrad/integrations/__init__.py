"""balgrad strategies inside other training frameworks.

- :mod:`balgrad.integrations.lightning`: ``BalGradModule``, a PyTorch Lightning
  ``LightningModule`` (``pip install balgrad[lightning]``).
- :mod:`balgrad.integrations.hf`: ``BalGradTrainer``, a Hugging Face ``Trainer``
  (``pip install balgrad[hf]``).

Importing :mod:`balgrad` or this package never imports Lightning or accelerate; each
integration is imported on its own.
"""

from balgrad.integrations._collate import ExampleCollator

__all__ = [
    "ExampleCollator",
]
