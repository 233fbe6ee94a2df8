"""BalGradTrainer trains exactly like the plain loop, puts the strategy's statistics in
the Trainer's logs and calls the strategy's epoch hooks."""

from __future__ import annotations

from pathlib import Path

import integration_fixtures as fx
import pytest
import torch

from balgrad.errors import ConfigError
from balgrad.strategies import create_strategy

pytest.importorskip("accelerate", reason="needs the hf extra: pip install balgrad[hf]")
from transformers import TrainingArguments  # noqa: E402

from balgrad.integrations.hf import BalGradTrainer  # noqa: E402

BATCH = 8


class RecordingCollator:
    """Stacks samples into {"image", "text", "labels"} and keeps every batch it made."""

    def __init__(self):
        self.batches: list[dict] = []

    def __call__(self, samples):
        batch = {k: torch.stack([s[k] for s in samples]) for k in ("image", "text", "labels")}
        self.batches.append({k: v.clone() for k, v in batch.items()})
        return batch


def samples(n: int, seed: int = 1) -> list[dict]:
    (b,) = fx.make_batches(1, batch_size=n, seed=seed)
    return [{k: v[i] for k, v in b.items()} for i in range(n)]


def arguments(tmp_path, **overrides) -> TrainingArguments:
    options = {
        "output_dir": str(tmp_path),
        "per_device_train_batch_size": BATCH,
        "per_device_eval_batch_size": BATCH,
        "learning_rate": fx.LR,
        "optim": "sgd",
        "lr_scheduler_type": "constant",
        "weight_decay": 0.0,
        "max_grad_norm": 0.0,  # the plain loop does not clip
        "logging_steps": fx.EVERY,
        "save_strategy": "no",
        "report_to": [],
        "use_cpu": True,
        "disable_tqdm": True,
        **overrides,
    }
    return TrainingArguments(**options)


@pytest.mark.parametrize("method", fx.methods())
def test_parameters_and_logged_statistics_match_the_plain_loop(tmp_path, method):
    collate = RecordingCollator()
    trainer = BalGradTrainer(
        model=fx.make_model(),
        args=arguments(tmp_path, max_steps=fx.STEPS),
        strategy=fx.build_strategy(method),
        train_dataset=samples(4 * BATCH),
        data_collator=collate,
    )
    trainer.train()

    batches = collate.batches[: fx.STEPS]  # the Trainer shuffles: replay what it saw
    logged = [row for row in trainer.state.log_history if "loss" in row]
    assert len(logged) == fx.STEPS // fx.EVERY
    fx.assert_matches_plain_loop(method, batches, trainer.model.parameters(), logged)
    for row in logged:
        assert row["loss"] == pytest.approx(row["loss_task"], rel=1e-5)


def test_mslr_rates_follow_the_unimodal_accuracies_through_the_lr_scheduler(tmp_path):
    data = samples(2 * BATCH)
    trainer = BalGradTrainer(
        model=fx.make_model(),
        args=arguments(tmp_path, num_train_epochs=3, learning_rate=0.5),
        strategy=create_strategy("mslr", mode="dynamic"),
        train_dataset=data,
        eval_dataset=data,  # validated on the training data: accuracies move
        data_collator=RecordingCollator(),
    )
    trainer.train()

    epochs = [row for row in trainer.state.log_history if "lr_factor_image" in row]
    assert len(epochs) == 3
    # the last accuracies were measured on the final parameters: recompute them by hand
    batch = RecordingCollator()(data)
    with torch.no_grad():
        out = trainer.model.eval()(batch["image"], batch["text"])
    for name, logits in (("image", out.logits_image), ("text", out.logits_text)):
        acc = [row[f"eval_{name}_accuracy"] for row in epochs]
        correct = int((logits.argmax(-1) == batch["labels"]).sum())
        assert acc[-1] == pytest.approx(100 * correct / len(data))
        factors = [row[f"lr_factor_{name}"] for row in epochs]
        # MSLR: this epoch's accuracy over the mean of the earlier ones (window 5)
        assert factors == pytest.approx([1.0, acc[1] / acc[0], acc[2] / ((acc[0] + acc[1]) / 2)])
        # the constant LambdaLR stepped through epoch 3 without undoing epoch 2's change
        for group in trainer.optimizer.param_groups:
            if group["name"] == name:
                assert group["lr"] == pytest.approx(0.5 * factors[1] * factors[2])
    moved = [row[f"lr_factor_{m}"] != 1.0 for row in epochs[1:] for m in ("image", "text")]
    assert any(moved), "the accuracies did not move: the test would prove nothing"


def test_evaluate_reports_fused_and_unimodal_accuracy(tmp_path):
    data = samples(BATCH)
    trainer = BalGradTrainer(
        model=fx.make_model(),
        args=arguments(tmp_path),
        strategy=create_strategy("joint"),
        eval_dataset=data,
        data_collator=RecordingCollator(),
    )
    metrics = trainer.evaluate()
    batch = RecordingCollator()(data)
    with torch.no_grad():
        out = trainer.model(batch["image"], batch["text"])
    for key, logits in (("", out.logits), ("image_", out.logits_image), ("text_", out.logits_text)):
        correct = int((logits.argmax(-1) == batch["labels"]).sum())
        assert metrics[f"eval_{key}accuracy"] == pytest.approx(100 * correct / BATCH)


def test_gradient_accumulation_is_refused_with_the_option_named(tmp_path):
    with pytest.raises(ConfigError, match="gradient_accumulation_steps"):
        BalGradTrainer(
            model=fx.make_model(),
            args=arguments(tmp_path, gradient_accumulation_steps=2),
            strategy=create_strategy("balgrad"),
        )


WORKER = Path(__file__).with_name("hf_ddp_worker.py")


def test_two_ddp_processes_match_one_process_on_the_batches_they_shared(tmp_path):
    """accelerate's DDP (torch.distributed.run, gloo on CPU): a strategy that reduces its
    own gradients runs under no_sync, one that leaves it to DDP's reducer does not; both
    average each gradient exactly once."""
    ddp_methods = ["balgrad", "reducer_joint", *(["balgrad_fast"] if fx.HAS_FAST else [])]
    fx.run_two_processes(WORKER, tmp_path, fx.STEPS, ddp_methods)
    for method in ddp_methods:
        ranks = [torch.load(tmp_path / f"{method}_rank{r}.pt", weights_only=True) for r in (0, 1)]
        assert ranks[0]["distributed"] == "DistributedType.MULTI_CPU"
        # each step's whole batch is what the two processes saw together
        whole = [
            {k: torch.cat([a[k], b[k]]) for k in a}
            for a, b in zip(ranks[0]["batches"], ranks[1]["batches"])
        ]
        assert len(whole) == fx.STEPS
        for saved in ranks:
            fx.assert_matches_plain_loop(method, whole, saved["params"], saved["logs"])
            assert (saved["reducer_calls"] > 0) == (method == "reducer_joint")


def test_resuming_from_a_checkpoint_restores_the_strategy_state(tmp_path):
    def trainer(max_steps):
        return BalGradTrainer(
            model=fx.make_model(),
            args=arguments(tmp_path, max_steps=max_steps, save_strategy="steps", save_steps=2),
            strategy=create_strategy("agm"),  # its running means are state
            train_dataset=samples(4 * BATCH),
            data_collator=RecordingCollator(),
        )

    first = trainer(2)
    first.train()
    saved = torch.load(tmp_path / "checkpoint-2" / "balgrad_strategy.pt", weights_only=True)
    assert saved == first.strategy.state_dict() and saved["count"] == 2
    resumed = trainer(4)
    resumed.train(resume_from_checkpoint=True)
    assert resumed.strategy.count == 4  # 2 restored + 2 trained
    assert resumed.strategy.step == 4
