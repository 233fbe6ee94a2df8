"""InfoReg: Information Acquisition Regulation (Huang, Wei, Yang & Hu, "Adaptive Unimodal
Regulation for Balanced Multimodal Information Acquisition", CVPR 2025, arXiv 2503.18595).

Official code: github.com/GeWu-Lab/InfoReg_CVPR2025 @ 939b2ed, ``main.py::train_epoch``
(lines 231-604; the step at 348-543) and ``main``'s epoch loop (693-774).

While a modality still acquires information fast (its "prime learning window"), the
modality that currently fits the batch best is pulled back towards where it stood at the
start of the epoch, by a proximal term on its encoder's gradient.

**The step.** With h_m = φ_m(x_m), the fused logits z and the unimodal logits z_m through
the SAME head (``main.py:361-363``: the head's columns of modality m and half its bias,
z_m = W_m h_m + b/M; the gradient reaches the head),

    g = ∇ [ ℓ(z, y) + Σ_m ℓ(z_m, y) ]                      (l.456-458: three backwards)
    s_m = Σ_i softmax(z_m)_i[y_i]                          (l.460-461: batch sums)
    Δ_m = s_m − mean_{j≠m} s_j                             (M = 2: s_a − s_v)
    β_m = c_m · exp(tanh(Δ_m))   if Δ_m > 0 and the window is open, else 0
    g_{θ_m} ← g_{θ_m} + β_m (θ_m − θ̃_m)                    (l.489-495)

then the optimizer step. θ̃_m is θ_m at the start of the epoch (``global_model =
cp.deepcopy(model)``, l.259). At M = 2 at most one modality is regulated: the one with
the higher score (Δ_m > 0 for one of them; a tie regulates none), as the official
if/elif. The gradient of β_m/2 ‖θ_m − θ̃_m‖² is β_m (θ_m − θ̃_m): the proximal term.

**The information estimate.** Over each epoch e the official code sums, for every
weight of a linear or convolution layer of θ_m (l.501-523), the squared gradient g² of
every step, then takes each layer's mean over its elements and sums over layers
(l.569-577):

    T_m(e) = Σ_layers mean_elements Σ_steps g²            (the "trace of the FIM")

which is Σ_steps Σ_layers mean(g²): balgrad adds one number per step and modality, for
every parameter of θ_m with at least two dimensions (the weights of linear and
convolution layers; the official ``nn.Linear``/``nn.Conv2d`` weights, the same set for
its ResNet-18 encoders). No per-element accumulator is kept.

**The prime learning window** (l.237-243, 693-694). From the traces of the epochs before
e, zero-padded in front (the official list starts with ten zeros), with the window W = 10:

    k_m(e) = (mean(T_m[e−W .. e−1]) − mean(T_m[e−W−1 .. e−2])) / mean(T_m[e−W .. e−1])
           = (T_m(e−1) − T_m(e−W−1)) / Σ_{j=e−W}^{e−1} T_m(j)

k = 1 at epoch 0; the window is open while k > K (K = 0.05, l.465). When the last W
traces are all 0 the official code divides by zero; balgrad takes k = 0 (nothing is
acquired: the window is closed).

**Lifecycle.** ``needs_epoch_pass``: :meth:`prepare_epoch` at the start of every epoch
(after ``on_epoch_start``) closes the previous epoch's trace, computes k for the new
epoch and snapshots θ̃ from the model; it reads no batch (a training loop may hand it any
iterable). balgrad's Trainer, Lightning module and HF Trainer call it; an own loop calls
``strategy.prepare_epoch(model, [])`` after ``strategy.on_epoch_start(epoch)``, and a
step of an epoch without it raises ConfigError naming the hook. The snapshot, the
traces, the current epoch's partial trace and k are in :meth:`state_dict` (tensors and
ints: ``torch.load(weights_only=True)`` reads them), so a run resumed mid-epoch
regulates towards the same θ̃ with the same k.

``semantics`` (each difference below is decided by it; ``"official"`` is the default,
because it is the code the paper's numbers come from):

- *the window's modality*: ``"official"`` opens or closes the window for every modality
  on the FIRST modality's k (the code computes k from ``audio_trace_list`` alone);
  ``"paper"`` gives each modality its own window, k_m > K.
- *the coefficient scales* c_m: ``"official"`` c_1 = ``beta`` (0.95, audio) and c_m =
  ``beta2`` (0.1, visual) for every other modality, as hard-coded at l.468 and l.476;
  ``"paper"`` c_m = ``beta`` for every modality.
- *the trace's gradient*: ``"official"`` reads the gradient after the proximal term is
  added (l.489-504 run in that order); ``"paper"`` the gradient of the training loss
  alone, the quantity whose Fisher information the paper names.

The paper's equations could not be read from the sources available here (the stored
arXiv pages give the abstract and introduction only): ``"paper"`` is this library's
reading of the method as the paper's abstract and README describe it (the window, a
regulation towards the previous parameters scaled by the performance gap), without the
code's modality-specific constants. Say which one you ran.

**M > 2** (the official code is two-modal): Δ_m against the mean of the others' scores,
as above; every modality with Δ_m > 0 is regulated (the ones ahead of the rest). At
M = 2 this is the official if/elif exactly.

**Unimodal logits.** With a head that declares a :class:`~balgrad.models.Readout`
(concat or sum fusion with a linear classifier), z_m = W_m h_m + b/M as the official
code (gradient into W_m and b); a model with separate unimodal heads uses its own z_m
(each head trained by its ℓ(z_m)); any other head runs with the other embeddings zeroed,
its parameters not detached.

Not ported: the official per-epoch logging (TensorBoard scalars, the scatter plots), the
unused ``calculate_proximal_term`` functions and ``mu_a``. The official training loop's
SGD(lr 2e-3, momentum 0.9, weight decay 1e-4), StepLR(30, 0.1) and 50 epochs at batch
size 64 are the loop's settings, not the strategy's. The official release has one set
of defaults for every dataset (``--dataset`` changes only the class count), so no
per-dataset preset is shipped.

Under data-parallel training the gradient is averaged over ranks (the strategy reduces
it itself: pass the unwrapped model) and the scores are summed over ranks, so every rank
takes the same β.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from balgrad._grad import add_to_grads_
from balgrad.errors import ConfigError
from balgrad.names import stat_name, statistics
from balgrad.registry import validated
from balgrad.strategies._base import NonNegative, Strategy, checked_loss
from balgrad.tasks import task_loss, true_class_prob, widen

#: the official window of epochs the trace is averaged over (``audio_trace_list[-10:]``)
OFFICIAL_TRACE_WINDOW = 10


# -- the method's arithmetic ---------------------------------------------------------------
def step_trace(grads: Sequence[torch.Tensor | None]) -> torch.Tensor:
    """One step's share of T_m: Σ over the tensors of ≥ 2 dimensions (linear and
    convolution weights) of mean(g²); 0 when there is none.

    Args:
        grads: A modality's gradients (None where a loss did not reach one).

    Returns:
        The trace share, 0-d float64.
    """
    terms = [widen(g).square().mean() for g in grads if g is not None and g.dim() >= 2]
    if not terms:
        return torch.zeros((), dtype=torch.float64)
    return torch.stack(terms).sum()


def window_rates(traces: torch.Tensor, window: int = OFFICIAL_TRACE_WINDOW) -> torch.Tensor:
    """k [M] from the traces of the past epochs ``traces`` [E, M], zero-padded in front:
    (mean of the last ``window`` − mean of the ``window`` before the last one) / mean of
    the last ``window``. No past epoch: 1 (the official k at epoch 0); a zero mean: 0.

    Args:
        traces: T per past epoch ``[E, M]``.
        window: The number of epochs averaged.

    Returns:
        k ``[M]``.
    """
    if traces.shape[0] == 0:
        return torch.ones(traces.shape[1], dtype=traces.dtype)
    padded = torch.cat([traces.new_zeros(window, traces.shape[1]), traces])
    new = padded[-window:].mean(0)
    old = padded[-window - 1 : -1].mean(0)
    return torch.where(new != 0, (new - old) / torch.where(new != 0, new, 1.0), 0.0)


def window_open(rates: torch.Tensor, threshold: float, per_modality: bool) -> torch.Tensor:
    """[M] bool: k_m > K for each modality, or every modality on the first one's k (the
    official code's audio trace).

    Args:
        rates: k ``[M]``.
        threshold: K.
        per_modality: Decide per modality rather than on the first one's k.

    Returns:
        ``[M]`` bool.
    """
    first = rates[:1] > threshold
    return rates > threshold if per_modality else first.expand(rates.shape[0])


def score_gaps(scores: torch.Tensor) -> torch.Tensor:
    """Δ_m = s_m − mean_{j≠m} s_j (M = 2: s_1 − s_2 and s_2 − s_1).

    Args:
        scores: s ``[M]``.

    Returns:
        Δ ``[M]``.
    """
    rest = (scores.sum() - scores) / (scores.numel() - 1)
    return scores - rest


def regulation_coefficients(
    scores: torch.Tensor, scales: torch.Tensor, open_: torch.Tensor
) -> torch.Tensor:
    """β_m = c_m exp(tanh(Δ_m)) where Δ_m > 0 and the window is open, else 0.

    Args:
        scores: s_m ``[M]``.
        scales: c_m ``[M]``.
        open_: Whether each modality's window is open ``[M]`` bool.

    Returns:
        β ``[M]``.
    """
    gaps = score_gaps(scores)
    beta = scales.to(scores.dtype) * torch.exp(torch.tanh(gaps))
    return torch.where((gaps > 0) & open_.to(gaps.device), beta, torch.zeros_like(beta))


def proximal_terms(
    params: Sequence[torch.Tensor], snapshot: Sequence[torch.Tensor], beta: torch.Tensor
) -> list[torch.Tensor]:
    """β (θ − θ̃) for each tensor: the gradient of β/2 ‖θ − θ̃‖².

    Args:
        params: θ.
        snapshot: θ̃, one tensor per parameter.
        beta: β, 0-d.

    Returns:
        One gradient per parameter.
    """
    b = beta.to(params[0].dtype) if params else beta
    return [b * (p.detach() - s) for p, s in zip(params, snapshot)]


# -- the strategy -------------------------------------------------------------------------
class InfoReg(Strategy):
    """See the module docstring. Options (the official code's names and values):

    Args:
        beta: c_1, the scale of the first modality's coefficient (0.95, ``beta`` for
            audio); under ``"paper"`` the scale of every modality.
        beta2: c_m of every other modality under ``"official"`` (0.1, ``beta2`` for
            visual).
        k_threshold: K, the window is open while k > K (0.05).
        trace_window: W, the epochs whose traces k compares (10).
        semantics: ``"official"`` (default) or ``"paper"``: see the module docstring.
    """

    name = "inforeg"
    statistics = statistics(
        "InfoReg", ["loss_task", "regulated"], ["loss", "score", "coef", "rate"]
    )
    needs_epoch_pass = True
    full_precision_compute = True

    @validated
    def __init__(
        self,
        *,
        beta: NonNegative = 0.95,
        beta2: NonNegative = 0.1,
        k_threshold: Annotated[float, Field(allow_inf_nan=False)] = 0.05,
        trace_window: Annotated[int, Field(ge=1)] = OFFICIAL_TRACE_WINDOW,
        semantics: Literal["official", "paper"] = "official",
    ):
        super().__init__()
        self.beta = float(beta)
        self.beta2 = float(beta2)
        self.k_threshold = float(k_threshold)
        self.trace_window = int(trace_window)
        self.semantics = semantics
        self.snapshot: dict[str, list[torch.Tensor]] = {}  # θ̃_m, at the epoch's start
        self.traces: torch.Tensor | None = None  # [E, M] float64: T_m of the past epochs
        self.rates: torch.Tensor | None = None  # [M]: k_m of the current epoch
        self.trace_sum: torch.Tensor | None = None  # [M]: T_m of the epoch so far
        self.trace_steps = 0  # the steps in trace_sum

    def scales(self, m: int) -> torch.Tensor:
        """c_m per modality: ``beta`` for each under ``"paper"``; ``beta`` for the first and
        ``beta2`` for every other under ``"official"``.

        Args:
            m: The number of modalities.

        Returns:
            ``[m]``, float64.
        """
        if self.semantics == "paper":
            return torch.full((m,), self.beta, dtype=torch.float64)
        return torch.tensor([self.beta] + [self.beta2] * (m - 1), dtype=torch.float64)

    # -- the epoch start: close the last epoch's trace, k, the snapshot -------------------
    def epoch_pass(self, model, batches) -> dict[str, torch.Tensor]:
        """The epoch-start pass: each modality's score on the batches, the trace rates and the
        window, and the snapshot θ̃ the proximal terms pull towards.

        Args:
            model: The model.
            batches: Training batches.

        Returns:
            The pass's diagnostics.

        Raises:
            ConfigError: The state's traces are for another number of modalities.
        """
        modalities = self.modalities(model)
        m = len(modalities)
        if self.traces is None:
            self.traces = torch.zeros(0, m, dtype=torch.float64)
        if self.traces.shape[1] != m:
            raise ConfigError(
                f"inforeg: the state holds traces of {self.traces.shape[1]} modalities, the "
                f"model has {m} ({list(modalities)})"
            )
        if self.trace_steps > 0 and self.trace_sum is not None:
            closed = self.trace_sum.detach().to("cpu", torch.float64).reshape(1, m)
            self.traces = torch.cat([self.traces, closed])
        self.trace_sum, self.trace_steps = None, 0
        self.rates = window_rates(self.traces, self.trace_window)
        groups = self.layout(model).groups
        self.snapshot = {name: [p.detach().clone() for p in groups[name]] for name in modalities}
        last = self.traces[-1] if self.traces.shape[0] else torch.zeros(m, dtype=torch.float64)
        return {
            **{stat_name("trace", name): last[i] for i, name in enumerate(modalities)},
            **{stat_name("rate", name): self.rates[i] for i, name in enumerate(modalities)},
        }

    # -- the step -----------------------------------------------------------------------
    def unimodal_logits(self, model, output) -> dict[str, torch.Tensor]:
        """z_m with the head's parameters in the graph (see the module docstring).

        Args:
            model: The model.
            output: The batch's :class:`~balgrad.models.ModelOutput`.

        Returns:
            ``{modality: z_m}``.
        """
        layout = self.layout(model)
        if layout.groups.get("unimodal_heads"):
            return dict(output.unimodal)
        h = output.embeddings
        readout = getattr(model, "readout", None)
        layer = readout() if callable(readout) else None
        if layer is not None:
            w = widen(layer.weight)
            b = None if layer.bias is None else widen(layer.bias) / len(h)
            return {
                m: F.linear(widen(v).to(w.dtype), w[:, layer.columns[m]], b) for m, v in h.items()
            }
        return {
            m: model.classify({k: v if k == m else torch.zeros_like(v) for k, v in h.items()})
            for m in h
        }

    def _snapshot_for(self, name: str, params: list[torch.Tensor]) -> list[torch.Tensor]:
        snap = self.snapshot.get(name)
        if snap is None or len(snap) != len(params):
            raise ConfigError(
                f"inforeg: the epoch-start snapshot of {name!r} has "
                f"{0 if snap is None else len(snap)} tensors, the model {len(params)}: the "
                "parameters changed since prepare_epoch"
            )
        moved = []
        for s, p in zip(snap, params):
            if s.shape != p.shape:
                raise ConfigError(
                    f"inforeg: a parameter of {name!r} is {list(p.shape)} but its snapshot "
                    f"is {list(s.shape)}: the parameters changed since prepare_epoch"
                )
            moved.append(s.to(device=p.device, dtype=p.dtype))
        self.snapshot[name] = moved  # moved once (a loaded checkpoint sits on the CPU)
        return moved

    def compute(self, model, output, target, ctx):
        """One step: L_T + Σ_m L_m, plus the proximal term β_m (θ_m − θ̃_m) on each modality
        the regulation covers (see the module docstring).
        """
        task = model.task
        modalities = self.modalities(model)
        layout = ctx.layout
        loss_task = checked_loss("task loss L_T", task_loss(output.logits, target, task))
        z = self.unimodal_logits(model, output)
        uni = [task_loss(z[m], target, task) for m in modalities]
        ctx.check_finite(tuple(f"{m} loss L_{m}" for m in modalities), torch.stack(uni).detach())
        loss = loss_task + sum(uni)
        grads = ctx.loss_grads(loss, layout.params)
        with torch.no_grad():
            probs = [true_class_prob(z[m], target, task).sum() for m in modalities]
            scores = ctx.sync.sum(torch.stack(probs))
        device = scores.device
        rates = self.rates.to(device=device, dtype=scores.dtype)
        open_ = window_open(self.rates, self.k_threshold, self.semantics == "paper")
        beta = regulation_coefficients(scores, self.scales(len(modalities)).to(device), open_)
        scale = ctx.loss_scale(loss_task)
        traces = []
        for i, m in enumerate(modalities):
            idx = layout.index[m]
            params, g = layout.groups[m], grads[idx]
            if self.semantics == "paper":
                traces.append(self._step_trace(g, scale))
            prox = proximal_terms(params, self._snapshot_for(m, params), beta[i])
            if scale is not None:
                prox = [t * scale.to(t.dtype) for t in prox]
            g = [t if gi is None else gi + t for gi, t in zip(g, prox)]
            grads[idx] = g
            if self.semantics == "official":
                traces.append(self._step_trace(g, scale))
        ctx.check_gradients_finite("gradient", [g for g in grads if g is not None])
        add_to_grads_(layout.params, grads)
        step = torch.stack([t.to(device) for t in traces])
        step = torch.where(torch.isfinite(step), step, torch.zeros_like(step))  # skipped steps
        self.trace_sum = step if self.trace_sum is None else self.trace_sum.to(device) + step
        self.trace_steps += 1
        with torch.no_grad():
            stats = {stat_name("loss", m): u.detach() for m, u in zip(modalities, uni)}
            for i, m in enumerate(modalities):
                stats[stat_name("score", m)] = scores[i] / target.shape[0]
                stats[stat_name("coef", m)] = beta[i]
                stats[stat_name("rate", m)] = rates[i]
        regulated = (beta > 0).any().to(scores.dtype)
        return {"loss_task": loss_task.detach(), "regulated": regulated, **stats}

    @staticmethod
    def _step_trace(grads, scale) -> torch.Tensor:
        t = step_trace(grads)
        return t if scale is None else t / scale.to(t.dtype).square()

    # -- checkpointing --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The base state plus the traces, rates and snapshot.

        Returns:
            A dict of plain values and tensors.
        """
        state = {**super().state_dict(), "trace_steps": self.trace_steps}
        if self.traces is not None:
            state["traces"] = self.traces.clone()
        if self.rates is not None:
            state["rates"] = self.rates.clone()
        if self.trace_sum is not None:
            state["trace_sum"] = self.trace_sum.detach().to("cpu", torch.float64)
        if self.snapshot:
            state["snapshot"] = {
                m: [s.detach().cpu() for s in ts] for m, ts in self.snapshot.items()
            }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the traces, rates and snapshot.

        Args:
            state: What :meth:`state_dict` returned.
        """
        super().load_state_dict(state)
        self.trace_steps = int(state.get("trace_steps", 0))
        for key in ("traces", "rates", "trace_sum"):
            value = state.get(key)
            setattr(self, key, None if value is None else value.clone().to(torch.float64))
        snapshot = dict(state.get("snapshot", {}))
        self.snapshot = {m: [s.clone() for s in ts] for m, ts in snapshot.items()}
