import pytest
import torch
from toy_components import toy_trainer

from balgrad.errors import BalgradError, NonFiniteLossError
from balgrad.strategies import create_strategy
from balgrad.strategies._base import Strategy
from balgrad.strategies._joint import Joint
from balgrad.tasks import task_loss
from balgrad.train._checkpoint import load_checkpoint
from balgrad.train._metrics_log import JsonlLogger, read_jsonl
from balgrad.train._trainer import TrainSettings


def make_trainer(run_dir, epochs, method="balgrad"):
    settings = TrainSettings(epochs=epochs, batch_size=16, lr=1e-2, progress=False)
    return toy_trainer(run_dir, create_strategy(method), settings)


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
    trainer = make_trainer(tmp_path, epochs=3)
    start = trainer.strategy.on_epoch_start

    def nan_in_epoch_3(epoch, epochs):
        if epoch == 2:
            with torch.no_grad():
                trainer.model.head.classifier[-1].weight.fill_(float("nan"))
        start(epoch, epochs)

    trainer.strategy.on_epoch_start = nan_in_epoch_3
    with pytest.raises(NonFiniteLossError, match=r"epoch 3, step \d+: task loss") as err:
        trainer.fit()
    saved = tmp_path / "checkpoint.pt"
    assert f"The last complete epoch, 2, is saved in {saved}" in str(err.value)
    assert load_checkpoint(saved)["epoch"] == 1


def test_a_nan_stop_in_the_first_epoch_says_that_no_checkpoint_exists(tmp_path):
    trainer = make_trainer(tmp_path, epochs=2)
    trainer.fit()  # an older run's checkpoint, which the fresh run below removes
    with torch.no_grad():
        trainer.model.head.classifier[-1].weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="epoch 1, step") as err:
        trainer.fit(resume=False)
    assert "no checkpoint was saved" in str(err.value) and "is saved in" not in str(err.value)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_train_seconds_of_a_resumed_run_count_the_part_before_the_resume(tmp_path, monkeypatch):
    import balgrad.train._trainer as trainer_module

    clock = iter(range(0, 10_000, 10))  # every reading of the clock is 10 s after the last
    monkeypatch.setattr(trainer_module.time, "perf_counter", lambda: float(next(clock)))
    first = make_trainer(tmp_path, epochs=1).fit()
    resumed = make_trainer(tmp_path, epochs=3).fit(resume=True)
    assert first.seconds > 0
    assert resumed.seconds > first.seconds  # the first part counted, not only the resumed one
    assert load_checkpoint(tmp_path / "checkpoint.pt")["elapsed"] == resumed.seconds - 10


def test_checkpoints_load_with_weights_only(tmp_path):
    make_trainer(tmp_path, epochs=1).fit()
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 0 and "model" in state
    evil = tmp_path / "evil.pt"
    torch.save({"x": object()}, evil)
    with pytest.raises(BalgradError, match="evil.pt"):
        load_checkpoint(evil)


class HostReads(torch.Tensor):
    """A tensor that counts the ways its value can reach the host (each one a GPU sync)."""

    reads = 0

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in (
            torch.Tensor.item,
            torch.Tensor.tolist,
            torch.Tensor.__float__,
            torch.Tensor.__int__,
            torch.Tensor.__bool__,
            torch.Tensor.__format__,
        ):
            HostReads.reads += 1
        return super().__torch_function__(func, types, args, kwargs or {})


class TensorStatsJoint(Strategy):
    """The task loss; its statistics are 0-d tensors that count host reads."""

    name = "tensor_stats"

    def backward(self, model, output, target):
        loss = task_loss(output.logits, target, model.task)
        loss.backward()
        stats = {
            "loss_task": loss.detach().as_subclass(HostReads),
            "loss_image": task_loss(output.unimodal["image"], target, model.task)
            .detach()
            .as_subclass(HostReads),
        }
        for observer in self._observers:
            observer(self.step, stats)
        self.step += 1
        return stats


def test_the_loop_reads_statistics_on_the_host_only_every_log_every_steps(tmp_path):
    settings = TrainSettings(epochs=2, batch_size=4, lr=1e-2, progress=True, log_every=8)
    strategy = TensorStatsJoint()
    trainer = toy_trainer(tmp_path, strategy, settings, [JsonlLogger(tmp_path / "metrics.jsonl")])
    assert strategy.check_every == 8
    HostReads.reads = 0
    result = trainer.fit()
    # 2 epochs x 24 steps: 3 progress-bar reads, 1 epoch mean and 1 log flush per epoch
    assert HostReads.reads == 2 * (3 + 1 + 1)
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(48))
    assert set(rows[0]) == {"step", "epoch", "loss_task", "loss_image"}
    mean = sum(r["loss_task"] for r in rows[:24]) / 24
    assert result.history[0]["train_loss_task"] == pytest.approx(mean, rel=1e-6)


def test_a_nan_in_the_last_steps_of_an_epoch_is_caught_before_the_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path, epochs=1, method="joint")
    trainer.s.log_every = 1000  # the strategy's lazy check would come too late

    def poison(step, stats):
        if step == 5:  # the epoch's last step: weights go NaN after the optimizer step
            for p in trainer.model.parameters():
                p.grad = torch.full_like(p, float("nan"))

    trainer.strategy.add_observer(poison)
    with pytest.raises(NonFiniteLossError, match="model parameters"):
        trainer.fit()
    assert not (tmp_path / "checkpoint.pt").exists()


class RecordsUnimodalScores(Joint):
    def on_epoch_end(self, epoch, optimizer, unimodal_scores=None):
        self.received = [*getattr(self, "received", []), unimodal_scores]
        return {}


def test_the_injected_validation_picks_the_best_epoch_and_feeds_the_strategy(tmp_path):
    fused, image, text = [50.0, 80.0, 60.0], [10.0, 20.0, 30.0], [40.0, 50.0, 70.0]
    states = []

    def validate(model):  # scripted scores; snapshots the weights each epoch is scored with
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        i = len(states) - 1
        return {"accuracy": fused[i], "image_accuracy": image[i], "text_accuracy": text[i]}

    strategy = RecordsUnimodalScores()
    settings = TrainSettings(epochs=3, batch_size=16, lr=1e-2, progress=False)
    result = toy_trainer(tmp_path, strategy, settings, validate=validate).fit()
    assert result.best_epoch == 1 and result.best_score == 80.0
    assert all(torch.equal(result.best_state[k], v) for k, v in states[1].items())
    assert any(not torch.equal(v, states[2][k]) for k, v in states[1].items())  # not the last
    assert strategy.received == [{"image": a, "text": b} for a, b in zip(image, text)]
    rows = read_jsonl(tmp_path / "epochs.jsonl")
    assert [
        (r["val_accuracy"], r["val_image_accuracy"], r["val_text_accuracy"]) for r in rows
    ] == list(zip(fused, image, text))


def test_a_validation_without_the_primary_metric_is_a_clear_error(tmp_path):
    settings = TrainSettings(epochs=1, batch_size=16, lr=1e-2, progress=False)

    def validate(model):
        return {"accuracy": 50.0, "image_accuracy": 40.0}

    trainer = toy_trainer(tmp_path, Joint(), settings, validate=validate)
    with pytest.raises(BalgradError, match="no text_accuracy"):
        trainer.fit()
    with pytest.raises(TypeError, match="validate must be a callable"):
        toy_trainer(tmp_path, Joint(), settings, validate={"accuracy": 50.0})


def test_a_resume_removes_the_temporary_of_a_save_that_a_kill_cut_short(tmp_path):
    make_trainer(tmp_path, epochs=1).fit()
    stale = tmp_path / ".checkpoint.pt.k1lled.tmp"  # the name balgrad.atomic gives it
    stale.write_bytes(b"half a checkpoint")
    make_trainer(tmp_path, epochs=2).fit(resume=True)
    assert not stale.exists() and not list(tmp_path.glob(".*.tmp"))
