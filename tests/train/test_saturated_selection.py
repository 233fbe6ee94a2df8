"""Model selection among epochs tied at the highest validation score (100%) is warned
about (issue 23, item 7): the first of them is kept, often a barely trained epoch 0."""

import logging

import pytest
from toy_components import toy_trainer

from balgrad.strategies._joint import Joint
from balgrad.train._trainer import TrainSettings


def scripted(scores):
    def validate(model):
        i = validate.calls
        validate.calls += 1
        return {"accuracy": scores[i], "image_accuracy": 50.0, "text_accuracy": 50.0}

    validate.calls = 0
    return validate


def test_selection_among_epochs_tied_at_100_percent_is_warned_about(tmp_path, caplog):
    settings = TrainSettings(epochs=3, batch_size=16, lr=1e-2, progress=False)
    trainer = toy_trainer(tmp_path, Joint(), settings, validate=scripted([100.0, 100.0, 100.0]))
    with caplog.at_level(logging.WARNING, logger="balgrad.train"):
        result = trainer.fit()
    assert result.best_epoch == 0  # the first of the tied epochs, as before
    assert "validation accuracy is 100% in epochs 0, 1, 2" in caplog.text
    assert "epoch 0, is kept" in caplog.text


@pytest.mark.parametrize("scores", [[90.0, 100.0, 95.0], [100.0, 90.0, 95.0], [80.0, 90.0, 95.0]])
def test_a_selection_without_a_tie_at_100_percent_is_silent(tmp_path, caplog, scores):
    settings = TrainSettings(epochs=3, batch_size=16, lr=1e-2, progress=False)
    trainer = toy_trainer(tmp_path, Joint(), settings, validate=scripted(scores))
    with caplog.at_level(logging.WARNING, logger="balgrad.train"):
        trainer.fit()
    assert "cannot tell them apart" not in caplog.text
