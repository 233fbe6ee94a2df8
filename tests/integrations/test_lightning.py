"""BalGradModule trains exactly like the plain loop (two modalities, audio-visual, three
modalities, every built-in strategy), logs the strategy's statistics and the unimodal
accuracies of every modality and calls the strategy's epoch hooks."""

from __future__ import annotations

from pathlib import Path

import integration_fixtures as fx
import pytest
import torch
from torch.utils.data import DataLoader

from balgrad.errors import ConfigError
from balgrad.strategies import create_strategy

pl = pytest.importorskip(
    "lightning.pytorch", reason="needs the lightning extra: pip install balgrad[lightning]"
)
from lightning.pytorch.loggers import Logger  # noqa: E402

from balgrad.integrations.lightning import BalGradModule  # noqa: E402


class MemoryLogger(Logger):
    """Keeps every row Lightning sends to a logger."""

    def __init__(self):
        super().__init__()
        self.rows: list[dict[str, float]] = []

    @property
    def name(self):
        return "memory"

    @property
    def version(self):
        return 0

    def log_metrics(self, metrics, step=None):
        self.rows.append(dict(metrics))

    def log_hyperparams(self, params, *args, **kwargs):
        pass


class Trajectory(pl.Callback):
    """The parameters after every optimizer step."""

    def __init__(self):
        self.params: list[list[torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.params.append(fx.snapshot(pl_module.model))


def fit(module, train, val=None, ckpt_path=None, **trainer_options):
    logger = MemoryLogger()
    options = {"max_steps": len(train), **trainer_options}
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=logger,
        log_every_n_steps=fx.EVERY,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **options,
    )
    loader = DataLoader(train, batch_size=None)
    val_loader = DataLoader(val, batch_size=None) if val else None
    trainer.fit(module, loader, val_loader, ckpt_path=ckpt_path)
    return trainer, logger


def accuracy(model, batches, modality=None, strategy=None) -> float:
    """Percent of ``batches`` the fused prediction (the fused logits, or ``strategy``'s
    test-time fusion) or ``modality``'s own logits get right."""
    correct = 0
    with torch.no_grad():
        for b in batches:
            out = model.eval()(fx.inputs_of(b, model.modalities))
            fused = out.logits if strategy is None else strategy.fuse(model, out)
            z = fused if modality is None else out.unimodal[modality]
            correct += int((z.argmax(-1) == b["labels"]).sum())
    return 100 * correct / sum(len(b["labels"]) for b in batches)


@pytest.mark.parametrize("method", fx.methods())
def test_parameters_and_logged_statistics_match_the_plain_loop(method):
    batches = fx.make_batches(fx.STEPS)
    strategy = fx.build_strategy(method)
    module = BalGradModule(fx.make_model(), strategy, lr=fx.LR, optimizer=torch.optim.SGD)
    trainer, logger = fit(module, batches)

    logged = [r for r in logger.rows if "train/loss_task" in r]
    assert len(logged) == fx.STEPS // fx.EVERY
    fx.assert_matches_plain_loop(method, batches, module.model.parameters(), logged, "train/")
    assert "train/loss_task" in trainer.callback_metrics


@pytest.mark.parametrize("setup", fx.NAMED)
@pytest.mark.parametrize("method", fx.builtin_strategies())
def test_every_strategy_trains_named_modalities_step_by_step_as_the_plain_loop(method, setup):
    """Audio-visual and audio-visual-text models: the parameters after every step and the
    logged statistics are the plain loop's; validation scores every modality (MSLR's
    default dynamic mode needs those at the epoch's end)."""
    batches = fx.make_batches(fx.STEPS, setup=setup)
    module = BalGradModule(
        fx.make_model(setup), create_strategy(method), lr=fx.LR, optimizer=torch.optim.SGD
    )
    steps = Trajectory()
    _, logger = fit(module, batches, batches, max_steps=-1, max_epochs=1, callbacks=[steps])

    logged = [r for r in logger.rows if "train/loss_task" in r]
    assert len(logged) == fx.STEPS // fx.EVERY
    fx.assert_matches_plain_loop(
        method, batches, module.model.parameters(), logged, "train/", setup, steps.params
    )
    modalities = module.model.modalities
    for row in logged:
        fx.assert_every_modality_reported(row, modalities, prefix="train/")
    (scores,) = [r for r in logger.rows if "val/accuracy" in r]
    fused = accuracy(module.model, batches, strategy=module.strategy)
    assert scores["val/accuracy"] == pytest.approx(fused)
    for m in modalities:
        assert scores[f"val/{m}_accuracy"] == pytest.approx(accuracy(module.model, batches, m))


def test_mslr_gets_the_unimodal_validation_accuracies_of_each_epoch():
    data, lr = fx.make_batches(2), 0.5  # validated on the training batches: accuracies move
    strategy = create_strategy("mslr", mode="dynamic")
    module = BalGradModule(fx.make_model(), strategy, lr=lr, optimizer=torch.optim.SGD)
    _, logger = fit(module, data, data, max_steps=-1, max_epochs=2)

    # the last validation saw the final parameters: recompute its accuracies by hand
    factors = []
    for name in ("image", "text"):
        per_epoch = [r[f"val/{name}_accuracy"] for r in logger.rows if f"val/{name}_accuracy" in r]
        assert len(per_epoch) == 2
        assert per_epoch[-1] == pytest.approx(accuracy(module.model, data, name))
        # MSLR: factor 1 after the first epoch, acc_2 / acc_1 after the second
        factors.append(per_epoch[1] / per_epoch[0])
        group = next(g for g in module.optimizers().optimizer.param_groups if g["name"] == name)
        assert group["lr"] == pytest.approx(lr * factors[-1])
    assert factors != [1.0, 1.0], "the accuracies did not move: the test would prove nothing"


def test_mslr_without_validation_data_says_what_to_pass():
    strategy = create_strategy("mslr", mode="dynamic")
    module = BalGradModule(fx.make_model(), strategy, lr=fx.LR)
    with pytest.raises(ConfigError, match="val_dataloaders"):
        fit(module, fx.make_batches(2), max_steps=-1, max_epochs=1)


def test_ogm_ge_sees_the_epoch_and_the_number_of_epochs():
    strategy = create_strategy("ogm_ge")
    module = BalGradModule(fx.make_model(), strategy, lr=fx.LR)
    fit(module, fx.make_batches(1), max_steps=-1, max_epochs=3)
    assert (strategy.epoch, strategy.num_epochs) == (2, 3)


WORKER = Path(__file__).with_name("lightning_ddp_worker.py")


def test_two_ddp_ranks_on_half_batches_match_one_process_on_the_whole_batches(tmp_path):
    """Lightning's own DDP strategy (launched by torch.distributed.run, gloo on CPU): a
    strategy that reduces its own gradients and one that leaves it to DDP's reducer
    both average each gradient exactly once."""
    ddp_methods = fx.methods()
    fx.run_two_processes(WORKER, tmp_path, fx.STEPS, ddp_methods)
    for method in ddp_methods:
        for rank in (0, 1):
            saved = torch.load(tmp_path / f"{method}_rank{rank}.pt", weights_only=True)
            # parameters of the whole batches; the last statistics averaged over ranks
            # are those of the whole batches too
            batches = fx.make_batches(fx.STEPS)
            fx.assert_matches_plain_loop(
                method, batches, saved["params"], [saved["metrics"]], "train/"
            )
            # DDP's reducer communicates only for the strategy that leaves averaging to it
            assert (saved["reducer_calls"] > 0) == (method == "reducer_joint")


def test_lightning_checkpoints_carry_the_strategy_state(tmp_path):
    first = BalGradModule(fx.make_model(), create_strategy("agm"), lr=fx.LR)
    trainer, _ = fit(first, fx.make_batches(2))
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    resumed = BalGradModule(fx.make_model(), create_strategy("agm"), lr=fx.LR)
    fit(resumed, fx.make_batches(2), ckpt_path=tmp_path / "last.ckpt", max_steps=4)
    assert (resumed.strategy.count, resumed.strategy.step) == (4, 4)  # 2 restored + 2 trained
