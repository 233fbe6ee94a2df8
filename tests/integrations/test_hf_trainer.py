"""BalGradTrainer trains exactly like the plain loop (two modalities, audio-visual, three
modalities, every built-in strategy), puts the strategy's statistics in the Trainer's
logs, reports accuracies as fractions and calls the strategy's epoch hooks."""

from __future__ import annotations

from pathlib import Path

import integration_fixtures as fx
import pytest
import torch

from balgrad.errors import ConfigError, DataError
from balgrad.strategies import create_strategy

pytest.importorskip("accelerate", reason="needs the hf extra: pip install balgrad[hf]")
from transformers import TrainerCallback, TrainingArguments  # noqa: E402

from balgrad.integrations.hf import BalGradTrainer  # noqa: E402

BATCH = 8


class RecordingCollator:
    """Stacks samples into {modality: ..., "labels": ...} and keeps every batch it made."""

    def __init__(self):
        self.batches: list[dict] = []

    def __call__(self, samples):
        batch = {k: torch.stack([s[k] for s in samples]) for k in samples[0]}
        self.batches.append({k: v.clone() for k, v in batch.items()})
        return batch


class Trajectory(TrainerCallback):
    """The parameters after every optimizer step."""

    def __init__(self):
        self.params: list[list[torch.Tensor]] = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.params.append(fx.snapshot(model))


def samples(n: int, seed: int = 1, setup: str = "image_text") -> list[dict]:
    (b,) = fx.make_batches(1, batch_size=n, seed=seed, setup=setup)
    return [{k: v[i] for k, v in b.items()} for i in range(n)]


def fractions(model, batch: dict, strategy=None) -> dict[str, float]:
    """The fused and unimodal accuracies on ``batch``, by hand, as fractions; the fused
    prediction is ``strategy``'s test-time fusion where given, of each evaluation batch."""
    with torch.no_grad():
        out = model.eval()(fx.inputs_of(batch, model.modalities))
        fused = out.logits
        if strategy is not None:
            n = len(batch["labels"])
            chunks = [{k: v[i : i + BATCH] for k, v in batch.items()} for i in range(0, n, BATCH)]
            outs = [model(fx.inputs_of(c, model.modalities)) for c in chunks]
            fused = torch.cat([strategy.fuse(model, o) for o in outs])
    logits = {"accuracy": fused, **{f"{m}_accuracy": z for m, z in out.unimodal.items()}}
    n = len(batch["labels"])
    return {k: int((z.argmax(-1) == batch["labels"]).sum()) / n for k, z in logits.items()}


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


@pytest.mark.parametrize("setup", fx.NAMED)
@pytest.mark.parametrize("method", fx.builtin_strategies())
def test_every_strategy_trains_named_modalities_step_by_step_as_the_plain_loop(
    tmp_path, method, setup
):
    """Audio-visual and audio-visual-text models: the parameters after every step and the
    logged statistics are the plain loop's; evaluation scores every modality (MSLR's
    default dynamic mode needs those at the epoch's end)."""
    collate, steps = RecordingCollator(), Trajectory()
    data = samples(fx.STEPS * BATCH, setup=setup)
    trainer = BalGradTrainer(
        model=fx.make_model(setup),
        args=arguments(tmp_path, num_train_epochs=1),
        strategy=create_strategy(method),
        train_dataset=data,
        eval_dataset=data,
        data_collator=collate,
        callbacks=[steps],
    )
    trainer.train()

    # the Trainer shuffles: replay what it saw. A strategy that needs the epoch-start pass
    # (PMR) took the first of four batches from its own loader first, whose prefetch
    # (accelerate's) collated one more: the steps' batches are the last ones
    passed = trainer.strategy.needs_epoch_pass
    first = len(collate.batches) - fx.STEPS if passed else 0
    batches = collate.batches[first : first + fx.STEPS]
    logged = [row for row in trainer.state.log_history if "loss" in row]
    assert len(logged) == fx.STEPS // fx.EVERY
    fx.assert_matches_plain_loop(
        method,
        batches,
        trainer.model.parameters(),
        logged,
        "",
        setup,
        steps.params,
        # PMR takes the first tenth (one batch), G-Blend the whole pass (it holds out a part)
        pass_batches=collate.batches[: first if trainer.strategy.trains_copies else 1]
        if passed
        else None,
    )
    modalities = trainer.model.modalities
    for row in logged:
        fx.assert_every_modality_reported(row, modalities)
    metrics = trainer.evaluate()
    expected = fractions(trainer.model, RecordingCollator()(data), trainer.strategy)
    assert len(expected) == 1 + len(modalities)
    for key, value in expected.items():
        assert metrics[f"eval_{key}"] == pytest.approx(value)


class Rows(torch.utils.data.Dataset):
    """A map-style dataset of dict rows, as a user would write one."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


def test_default_arguments_train_on_dict_rows_with_a_warning_for_the_column_pruning(
    tmp_path, caplog
):
    """TrainingArguments' default remove_unused_columns=True would prune every modality
    column (the forward takes one inputs mapping): the trainer turns it off and says so."""
    args = TrainingArguments(
        str(tmp_path), max_steps=2, logging_steps=1, use_cpu=True, report_to=[]
    )
    assert args.remove_unused_columns  # the Trainer's default
    model = fx.make_model("audio_visual_text")
    before = fx.snapshot(model)
    with caplog.at_level("WARNING", logger="balgrad.integrations.hf"):
        trainer = BalGradTrainer(
            model=model,
            args=args,
            strategy=create_strategy("balgrad"),
            train_dataset=Rows(samples(4 * BATCH, setup="audio_visual_text")),
        )  # the Trainer's default collator
    assert "remove_unused_columns" in caplog.text
    assert not trainer.args.remove_unused_columns
    trainer.train()
    assert all(not torch.equal(p, q) for p, q in zip(model.parameters(), before))
    (first, *_) = [row for row in trainer.state.log_history if "loss" in row]
    fx.assert_every_modality_reported(first, model.modalities)


def test_a_batch_of_other_modalities_is_refused_naming_the_models(tmp_path):
    trainer = BalGradTrainer(
        model=fx.make_model("audio_visual"),
        args=arguments(tmp_path, max_steps=1),
        strategy=create_strategy("joint"),
        train_dataset=samples(BATCH),  # image and text columns
        data_collator=RecordingCollator(),
    )
    with pytest.raises(
        DataError, match=r"missing key\(s\) \['audio', 'visual'\].*\['audio', 'visual'\]"
    ):
        trainer.train()


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
    by_hand = fractions(trainer.model, RecordingCollator()(data))
    for name in ("image", "text"):
        acc = [row[f"eval_{name}_accuracy"] for row in epochs]
        assert acc[-1] == pytest.approx(by_hand[f"{name}_accuracy"])
        factors = [row[f"lr_factor_{name}"] for row in epochs]
        # MSLR: this epoch's accuracy over the mean of the earlier ones (window 5)
        assert factors == pytest.approx([1.0, acc[1] / acc[0], acc[2] / ((acc[0] + acc[1]) / 2)])
        # the constant LambdaLR stepped through epoch 3 without undoing epoch 2's change
        for group in trainer.optimizer.param_groups:
            if group["name"] == name:
                assert group["lr"] == pytest.approx(0.5 * factors[1] * factors[2])
    moved = [row[f"lr_factor_{m}"] != 1.0 for row in epochs[1:] for m in ("image", "text")]
    assert any(moved), "the accuracies did not move: the test would prove nothing"


def test_evaluate_reports_fused_and_unimodal_accuracy_as_fractions(tmp_path):
    data = samples(BATCH)
    trainer = BalGradTrainer(
        model=fx.make_model(),
        args=arguments(tmp_path),
        strategy=create_strategy("joint"),
        eval_dataset=data,
        data_collator=RecordingCollator(),
    )
    metrics = trainer.evaluate()
    by_hand = fractions(trainer.model, RecordingCollator()(data))
    assert set(by_hand) == {"accuracy", "image_accuracy", "text_accuracy"}
    for key, value in by_hand.items():  # fractions, as the Trainer's metrics are
        assert 0 <= metrics[f"eval_{key}"] <= 1
        assert metrics[f"eval_{key}"] == pytest.approx(value)


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
    ddp_methods = ["balgrad", "reducer_joint", "balgrad_fast"]
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
