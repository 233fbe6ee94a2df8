"""AGM (Li et al., "Boosting Multi-modal Model Performance with Adaptive Gradient
Modulation", ICCV 2023), as in its official code (SPEC section 3).

Mono-modal responses from the head with embeddings zeroed:
    o_v = ½[f(v,l) − f(0,l) + f(v,0)],   o_l = ½[f(v,l) − f(v,0) + f(0,l)],
so o_v + o_l = f(v,l) is the fused output. Scores s_m = mean −log softmax(o_m)[y];
r_v = exp(s_l − s_v), r_l = 1 / r_v; running means S_m over all iterations give
r̄_v = exp(S_l − S_v); κ_m = exp(α · min(r̄_m − r_m, 10)) scales the gradient flowing
through o_m. Running means update after κ is computed. The head's gradient is clipped
to norm 1 when any entry leaves [−1, 1]. One backward pass per step (two extra
forward passes through the head only).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from balgrad._grad import norm
from balgrad.errors import ConfigError
from balgrad.strategies.base import Strategy, checked_loss
from balgrad.tasks import task_loss


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def scale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward; multiplies the incoming gradient by ``scale``."""
    return _ScaleGrad.apply(x, scale)


def agm_responses(model, h_v, h_l, fused):
    """(o_v, o_l): the AGM decomposition of the fused logits ``fused`` = f(v, l)."""
    f_0l = model.classify(torch.zeros_like(h_v), h_l)
    f_v0 = model.classify(h_v, torch.zeros_like(h_l))
    o_v = 0.5 * (fused - f_0l + f_v0)
    o_l = 0.5 * (fused - f_v0 + f_0l)
    return o_v, o_l


def response_score(o: torch.Tensor, target: torch.Tensor, task: str) -> torch.Tensor:
    """Per-sample −log p(true label | o), probabilities clamped at 1e-8."""
    if task == "single_label":
        p = F.softmax(o, dim=-1).gather(-1, target.view(-1, 1)).squeeze(-1)
        return -torch.log(p.clamp_min(1e-8))
    p = torch.sigmoid(o)
    t = target.to(p.dtype)
    return -torch.log((t * p + (1 - t) * (1 - p)).clamp_min(1e-8)).mean(-1)


class AGM(Strategy):
    name = "agm"

    def __init__(self, *, alpha: float = 1.0, clip_head: bool = True, max_gap: float = 10.0):
        super().__init__()
        if alpha < 0:
            raise ConfigError(f"alpha: must be >= 0, got {alpha}")
        self.alpha = float(alpha)
        self.clip_head = bool(clip_head)
        self.max_gap = float(max_gap)
        self.running = [0.0, 0.0]  # S_v, S_l
        self.count = 0

    def coefficients(self, s_v: float, s_l: float) -> tuple[float, float, float, float]:
        """(κ_v, κ_l, r_v, r̄_v) for this step's scores; updates the running means after."""
        if self.count == 0:
            self.running = [s_v, s_l]
        r_v, r_l = math.exp(s_l - s_v), math.exp(s_v - s_l)
        rbar_v = math.exp(self.running[1] - self.running[0])
        rbar_l = 1.0 / rbar_v
        k_v = math.exp(self.alpha * min(rbar_v - r_v, self.max_gap))
        k_l = math.exp(self.alpha * min(rbar_l - r_l, self.max_gap))
        n = self.count + 1
        self.running = [r + (x - r) / n for r, x in zip(self.running, (s_v, s_l))]
        self.count = n
        return k_v, k_l, r_v, rbar_v

    def compute(self, model, output, target):
        task = model.task
        o_v, o_l = agm_responses(model, output.h_image, output.h_text, output.logits)
        with torch.no_grad():
            scores = torch.stack(
                [
                    self.batch_mean(response_score(o_v, target, task)),
                    self.batch_mean(response_score(o_l, target, task)),
                ]
            )
        # before the running means see them: a NaN batch must not poison later steps
        checked_loss("task loss L_T (AGM response scores)", scores)
        s_v, s_l = scores.tolist()
        k_v, k_l, r_v, rbar_v = self.coefficients(s_v, s_l)
        fused = scale_grad(o_v, k_v) + scale_grad(o_l, k_l)
        loss = checked_loss("task loss L_T", task_loss(fused, target, task))

        layout = self.layout(model)
        g = self.sync.mean(layout.grad(loss, retain_graph=False))
        clipped = False
        if self.clip_head and "head" in layout.slices:
            sl = layout.slices["head"]
            head = g[sl]
            if head.numel() and head.abs().max() > 1:
                n = norm(head)
                if n > 1:
                    g[sl] = head / n
                    clipped = True
        layout.write_grads(g)
        return {
            "loss_task": loss.item(),
            **self.unimodal_monitor(model, output, target),
            "agm_score_image": s_v,
            "agm_score_text": s_l,
            "ratio_image": r_v,
            "running_ratio_image": rbar_v,
            "kappa_image": k_v,
            "kappa_text": k_l,
            "head_clipped": float(clipped),
        }

    def state_dict(self) -> dict:
        return {**super().state_dict(), "running": list(self.running), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.running = [float(x) for x in state.get("running", [0.0, 0.0])]
        self.count = int(state.get("count", 0))
