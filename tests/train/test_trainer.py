import pytest
import torch
from toy_components import BagEncoder, ToyData, VecEncoder

from balgrad.data.pipeline import InputPipeline
from balgrad.errors import BalgradError, NonFiniteLossError
from balgrad.models import TwoTowerModel
from balgrad.strategies import create_strategy
from balgrad.train.checkpoint import load_checkpoint
from balgrad.train.trainer import Trainer, TrainSettings


def make_trainer(run_dir, epochs, method="balgrad"):
    torch.manual_seed(0)
    img, txt = VecEncoder(), BagEncoder()
    pipe = InputPipeline(img, txt, progress=False)
    model = TwoTowerModel(img, txt, 3, embed_dim=8)
    settings = TrainSettings(epochs=epochs, batch_size=16, lr=1e-2, progress=False)
    return Trainer(
        model,
        create_strategy(method),
        pipe,
        ToyData(96),
        ToyData(30, seed=1, split="val"),
        settings,
        run_dir,
        torch.device("cpu"),
    )


@pytest.mark.parametrize("method", ["balgrad", "agm", "mslr"])
def test_resuming_from_a_checkpoint_gives_the_same_model_as_an_uninterrupted_run(tmp_path, method):
    straight = make_trainer(tmp_path / "a", epochs=3, method=method)
    straight.fit()
    first = make_trainer(tmp_path / "b", epochs=1, method=method)
    first.fit()
    resumed = make_trainer(tmp_path / "b", epochs=3, method=method)
    result = resumed.fit(resume=True)
    assert len(result.history) == 3
    for (k, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k
    assert resumed.strategy.state_dict() == straight.strategy.state_dict()
    assert len((tmp_path / "b" / "epochs.jsonl").read_text().splitlines()) == 3


def test_model_selection_keeps_the_best_validation_epoch(tmp_path):
    result = make_trainer(tmp_path, epochs=3).fit()
    scores = [row["val_accuracy"] for row in result.history]
    assert result.best_score == max(scores)
    assert result.best_epoch == scores.index(max(scores))


def test_a_nan_loss_names_the_step_and_how_to_resume(tmp_path):
    trainer = make_trainer(tmp_path, epochs=2)
    trainer.fit()  # leaves a checkpoint
    with torch.no_grad():
        trainer.model.head.classifier[-1].weight.fill_(float("nan"))
    trainer.s.epochs = 3
    with pytest.raises(NonFiniteLossError, match=r"epoch \d+, step \d+: task loss.*--resume"):
        trainer.fit(resume=False)


def test_checkpoints_load_with_weights_only(tmp_path):
    make_trainer(tmp_path, epochs=1).fit()
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 0 and "model" in state
    evil = tmp_path / "evil.pt"
    torch.save({"x": object()}, evil)
    with pytest.raises(BalgradError, match="evil.pt"):
        load_checkpoint(evil)
