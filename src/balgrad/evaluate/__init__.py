"""The paper's evaluation protocol: every modality condition and noise sweep of a
trained model (:class:`Evaluator`), its metrics, and the summary of a run's scores.
"""

from balgrad.evaluate._metrics import METRICS, compute_scores
from balgrad.evaluate._protocol import (
    Evaluator,
    Predictions,
    ProtocolConfig,
    predict,
    summarize,
    sweep_gaps,
)
from balgrad.evaluate._sentiment import sentiment_metrics

__all__ = [
    "Evaluator",
    "METRICS",
    "Predictions",
    "ProtocolConfig",
    "compute_scores",
    "predict",
    "sentiment_metrics",
    "summarize",
    "sweep_gaps",
]
