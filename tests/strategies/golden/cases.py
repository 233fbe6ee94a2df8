"""The two-modality golden cases: every strategy and option set on several (image, text)
model shapes, three SGD steps each (see ``make_m2_golden.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from strategy_reference import make_batch, make_model

from balgrad.errors import ConfigError
from balgrad.strategies import create_strategy

STEPS = 3
LR = 0.5

#: model shapes: (name, make_model options)
SHAPES = {
    "concat": {},
    "sum": {"fusion": "sum"},
    "attention": {"fusion": "attention"},
    "separate": {"unimodal_head": "separate"},
    "multilabel": {"task": "multi_label"},
    "hidden": {"head_hidden": 3},
}

#: (strategy, options) run on every shape
EVERY_SHAPE = [
    ("joint", {}),
    ("balgrad", {}),
    ("balgrad", {"projection_scope": "per_modality"}),
    ("balgrad_fast", {}),
    ("ogm_ge", {}),
    ("ogm_ge", {"fusion_bias": "half"}),
    ("agm", {}),
    ("agm", {"zero": "input"}),
]
#: (strategy, options) run on the concat shape only
CONCAT_ONLY = [
    ("mslr", {"mode": "keep", "lr_scales": {"image": 2.0, "text": 0.5}}),
    ("mslr", {"mode": "dynamic"}),
    ("balgrad", {"contribution_ema": 0.5}),
    ("balgrad", {"equalize_norms": False}),
    ("balgrad", {"kl_weight": 0.3, "unimodal_weight": 2.0, "temperature": 2.0}),
    ("balgrad", {"reweight": "none", "project": False}),
    ("balgrad_reweight_only", {}),
    ("balgrad_projection_only", {}),
    ("balgrad_unimodal_only", {}),
    ("balgrad_fast", {"projection_scope": "per_sample"}),
    ("balgrad_fast", {"projection_scope": "per_modality"}),
    ("balgrad_fast", {"contribution_ema": 0.5, "project": False}),
    ("ogm_ge", {"noise": False, "alpha": 0.5}),
    ("ogm_ge", {"scale_params": "conv4d"}),
    ("ogm_ge", {"modulation_end": 0}),
    ("agm", {"clip": "none", "alpha": 0.5}),
    ("agm", {"max_gap": 0.1, "modulation_end": 0}),
]


#: options the golden file records under their 0.1 spelling (the same rates)
RECORDED_AS = {"lr_scales": lambda scales: {f"{m}_lr_scale": v for m, v in scales.items()}}


@dataclass
class Case:
    shape: str
    strategy: str
    options: dict

    @property
    def key(self) -> str:
        recorded = {}
        for k, v in self.options.items():
            recorded.update(RECORDED_AS[k](v) if k in RECORDED_AS else {k: v})
        opts = ",".join(f"{k}={v}" for k, v in sorted(recorded.items()))
        return f"{self.shape}/{self.strategy}/{opts}"


CASES = [Case(s, n, o) for s in SHAPES for n, o in EVERY_SHAPE] + [
    Case("concat", n, o) for n, o in CONCAT_ONLY
]


@dataclass
class Result:
    error: str | None = None
    grads: list[dict[str, torch.Tensor]] = field(default_factory=list)
    stats: list[dict[str, float]] = field(default_factory=list)
    lrs: list[list[float]] = field(default_factory=list)


def run_case(case: Case, legacy: bool = False) -> Result:
    """Three steps of ``case``; ``legacy`` calls the model as ``model(x_v, x_l)`` (the
    code before named modalities, commit 94872c8, where ``make_m2_golden.py`` ran once), else
    with the named inputs."""
    shape = SHAPES[case.shape]
    task = shape.get("task", "single_label")
    model = make_model(seed=3, **shape)
    result = Result()
    try:
        strategy = create_strategy(case.strategy, **case.options)
    except ConfigError as err:
        result.error = str(err)
        return result
    groups = strategy.param_groups(model, LR)
    optimizer = torch.optim.SGD(groups, lr=LR)
    names = {id(p): n for n, p in model.named_parameters()}
    strategy.on_epoch_start(0, 2)
    for step in range(STEPS):
        if step == 2:  # the second epoch
            strategy.on_epoch_end(0, optimizer, {"image": 0.6, "text": 0.3})
            strategy.on_epoch_start(1, 2)
        x_v, x_l, y = make_batch(task=task, seed=step)
        optimizer.zero_grad(set_to_none=True)
        out = model(x_v, x_l) if legacy else model({"image": x_v, "text": x_l})
        try:
            stats = strategy.backward(model, out, y)
        except ConfigError as err:
            result.error = str(err)
            return result
        result.grads.append(
            {
                names[id(p)]: p.grad.detach().clone()
                for p in model.parameters()
                if p.grad is not None
            }
        )
        result.stats.append({k: float(v) for k, v in sorted(stats.items())})
        result.lrs.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
    return result
