"""The sentiment read-outs (balgrad.evaluate._sentiment, moved from data/mosei.py onto
sklearn and scipy): against hand-worked values, and against an independent per-class
transcription of the weighted F1 and numpy's correlation on random arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from balgrad.errors import ConfigError
from balgrad.evaluate import _sentiment as sentiment

# --- metrics, against hand-worked values -----------------------------------------------

PREDS = [2.6, -0.4, 0.0, 1.4, -3.9, 0.3]
TRUTH = [3.0, 0.0, -0.2, 1.6, -2.5, 0.0]


def test_acc2_both_conventions():
    # >= 0 positive, all six: (T,T) (F,T) (T,F) (T,T) (F,F) (T,T) -> 4 of 6 agree
    assert sentiment.acc2_non_negative(PREDS, TRUTH) == pytest.approx(4 / 6)
    # zeros in the truth dropped (records 1 and 5); > 0 positive on the other four:
    # (T,T) (F,F) (T,T) (F,F) -> 4 of 4
    assert sentiment.acc2_non_zero(PREDS, TRUTH) == 1.0
    assert math.isnan(sentiment.acc2_non_zero([1.0], [0.0]))


def test_weighted_f1_both_conventions():
    # >= 0: preds T F T T F T, truth T T F T F T. Class T: 3 TP, 4 predicted, 4 true -> 6/8;
    # class F: 1 TP, 2 predicted, 2 true -> 2/4; weighted by truth (4, 2) -> 4/6
    assert sentiment.f1_non_negative(PREDS, TRUTH) == pytest.approx(4 / 6)
    assert sentiment.f1_non_zero(PREDS, TRUTH) == 1.0
    # T: 2 TP, 3 predicted, 2 true -> 4/5; F: 1 TP, 1 predicted, 2 true -> 2/3; (2, 2) -> 11/15
    assert sentiment.f1_non_negative([1, 1, 1, -1], [1, 1, -1, -1]) == pytest.approx(11 / 15)
    # a class never predicted scores 0 (sklearn's zero_division default)
    assert sentiment.f1_non_zero([1, 1], [1, -1]) == pytest.approx(0.5 * (2 / 3))


def test_acc7_clips_then_rounds():
    # preds -> 3, -0, 0, 1, -3 (clipped), 0; truth -> 3, 0, -0, 2, -2 (round half to even), 0
    assert sentiment.acc7(PREDS, TRUTH) == pytest.approx(4 / 6)
    assert sentiment.acc7([5.0, -9.0], [2.6, -3.0]) == 1.0


def test_mae_and_pearson():
    # |diffs| = .4 .4 .2 .2 1.4 .3 -> 2.9 / 6
    assert sentiment.mae(PREDS, TRUTH) == pytest.approx(2.9 / 6)
    # x = 1, 2, 3 and y = 2, 4, 7: dx = -1, 0, 1; dy = -7/3, -1/3, 8/3; sum dx dy = 5,
    # sum dx^2 = 2, sum dy^2 = (49 + 1 + 64) / 9 = 38/3 -> r = 5 / sqrt(76/3)
    assert sentiment.pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(5 / math.sqrt(76 / 3))
    assert math.isnan(sentiment.pearson([1, 1], [0, 2]))
    m = sentiment.sentiment_metrics(PREDS, TRUTH)
    assert m["acc2_non_zero"] == 1.0 and m["mae"] == pytest.approx(2.9 / 6)


def test_metrics_refuse_mismatched_lengths():
    with pytest.raises(ValueError, match="as many predictions as labels"):
        sentiment.mae([1.0, 2.0], [1.0])


def _weighted_f1_by_hand(pred_pos, true_pos) -> float:
    # per class 2 TP / (predicted + true), weighted by the class's share of the truth
    total = 0.0
    for c in (False, True):
        tp = np.sum((pred_pos == c) & (true_pos == c))
        denom = np.sum(pred_pos == c) + np.sum(true_pos == c)
        total += np.sum(true_pos == c) * (2 * tp / denom if denom else 0.0)
    return float(total / len(true_pos))


def test_f1_and_pearson_match_hand_formulas_on_random_arrays():
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = rng.uniform(-3, 3, 15)
        y = np.round(rng.uniform(-3, 3, 15) * 2) / 2  # half steps, so some labels are 0
        keep = y != 0
        want = _weighted_f1_by_hand(p >= 0, y >= 0)
        assert sentiment.f1_non_negative(p, y) == pytest.approx(want, abs=1e-12)
        want = _weighted_f1_by_hand(p[keep] > 0, y[keep] > 0)
        assert sentiment.f1_non_zero(p, y) == pytest.approx(want, abs=1e-12)
        assert sentiment.pearson(p, y) == pytest.approx(np.corrcoef(p, y)[0, 1], abs=1e-12)
        assert sentiment.mae(p, y) == pytest.approx(np.abs(p - y).mean(), abs=1e-12)
    assert math.isnan(sentiment.pearson([1.0], [2.0]))  # one record: undefined, no error


class _Truth:
    """A dataset's side of the read-out: the real-valued score of each sample."""

    dataset = "mosei"

    def __init__(self, scores):
        self.scores = np.asarray(scores, dtype=np.float64)

    def sentiment_truth(self, index):
        return self.scores[index.numpy()]


def test_readouts_of_a_dataset_without_truth_are_only_its_own_hook():
    class Plugin:
        def readout_scores(self, logits, index):
            return {"custom": 1.0}

    logits, index = torch.zeros(2, 7), torch.tensor([0, 1])
    assert sentiment.dataset_readouts(Plugin(), logits, index) == {"custom": 1.0}
    assert sentiment.dataset_readouts(object(), logits, index) == {}
    assert sentiment.readout_scores(_Truth([1.0, 2.0]), logits[:0], index[:0]) == {}
    with pytest.raises(ConfigError, match=r"mosei: the acc7 read-out needs 7 logits"):
        sentiment.readout_scores(_Truth([1.0, 2.0]), logits[:, :5], index)
