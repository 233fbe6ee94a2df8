"""balgrad_fast: BalGrad with its geometry taken at the embeddings (docs/spec.md §2b).

The exact method needs three backward passes through the towers (∇L_T, ∇(L_v + L_l),
∇D over the parameters). Every tower gradient it writes is J_m^T applied to some
cotangent at the embedding h_m (J_m = ∂h_m/∂θ_m), so the same update family can be
computed from the per-sample gradients at the embeddings, the [B, d] matrices

    G_T^m = ∂L_T/∂h_m,   G_u^m = ∂L_m/∂h_m,   G_k^m = ∂D/∂h_m   (m = 1..M),

which three passes through the head alone give (the idea of MGDA-UB: geometry at the
shared representation instead of the parameters). Contribution weights, norm
equalisation and the conflict projection are SPEC section 2's, with parameter-space
inner products replaced by inner products of these matrices (batch-global over the
[B, M·d] matrix [G^1, .., G^M] by default; ``projection_scope="per_sample"`` projects each
sample's row apart). The towers then get J_m^T c_m with

    c_m = G_T^m − α f_m G_k^m + μ G_u^m + λ f_m G_k^m

from ONE backward pass of L_T with the extra cotangent c_m − G_T^m seeded at h_m, so
θ_T gets ∇_{θ_T} L_T exactly. One backward means the model may be wrapped in
DistributedDataParallel, whose bucketed all-reduce overlaps it; the scalar statistics
(s_m, inner products, norms) are all-reduced before use, the [B, d] matrices never are.
"""

from __future__ import annotations

from typing import Literal

import torch

from balgrad._grad import grads_of
from balgrad.strategies._balgrad import BalGrad, projected_geometry, projection_coefficients


class BalGradFast(BalGrad):
    """BalGrad at the embeddings: one backward pass through the towers per step.

    Same options as :class:`BalGrad`; ``projection_scope`` also takes ``"per_sample"``
    (each sample's row of [G_T^1, .., G_T^M] is projected off its own row of the KL
    matrix).
    With ``projection_scope="per_sample"`` the ``conflict`` and ``projected`` statistics
    are the fractions of conflicting and projected rows, and they and
    ``cos_task_kl_projected`` are computed from this rank's rows only.
    """

    name = "balgrad_fast"
    statistics = BalGrad.statistics  # the same statistics, from the embeddings' geometry
    supports_ddp = True
    projection_scope: Literal["global", "per_modality", "per_sample"]  # one more option value

    def compute(self, model, output, target, ctx):
        """One step, with the gradients taken at the embeddings h_m: the same losses, weights
        and projection as :meth:`BalGrad.compute`, then one backward pass through the towers.
        """
        losses = self.losses(output, target, model.task, ctx)
        like = losses.task.detach()
        wide = torch.float32 if like.device.type == "mps" else torch.float64
        hs = tuple(output.embeddings.values())
        g_t, g_u, g_k = self._embedding_gradients(losses, hs, ctx, wide)
        scores, tk, kk, tt, uu = self._reduced_statistics(
            output, target, model.task, (g_t, g_u, g_k), ctx, wide
        )
        s, c, w = self.contribution_weights(scores)
        kl_norms = kk.sqrt()
        f, w = self.kl_factors(kl_norms, w.to(wide))
        f = f.to(wide)
        alpha, conflict, projected, dot_after, task_sq_after = self._projection(
            g_t, g_k, f, tk, kk, tt
        )
        self._backward_once(losses, hs, g_u, g_k, f, alpha, ctx)
        geometry = dict(
            dot=(f * tk).sum(),
            dot_after=dot_after,
            task_sq=tt.sum(),
            task_sq_after=task_sq_after,
            kl_sq=(f.square() * kk).sum(),
            conflict=conflict,
            projected=projected,
            kl_norms=kl_norms,
            uni_sq=uu,
            task_sq_m=tt,
        )
        return self.step_stats(model, output, target, ctx, losses, s, c, w, **geometry)

    def _embedding_gradients(self, losses, hs, ctx, wide):
        """(G_T, G_u, G_k): per modality the [B, d] gradient at h_m of L_T, Σ_m L_m and D,
        each from a pass through the head alone; zeros where a loss is not needed or h_m
        is not trained."""
        trained = [h for h in hs if h.requires_grad]

        def at_embeddings(loss):  # [∂loss/∂h_m for each m]
            grads = iter(grads_of(ctx.scaled(loss), trained))
            return [
                next(grads).reshape(h.shape[0], -1).to(wide)
                if h.requires_grad
                else h.new_zeros((h.shape[0], h[0].numel()), dtype=wide)
                for h in hs
            ]

        zeros = [h.new_zeros((h.shape[0], h[0].numel()), dtype=wide) for h in hs]
        g_t = at_embeddings(losses.task)
        g_u = at_embeddings(losses.unimodal_sum()) if self.unimodal_weight > 0 else zeros
        g_k = at_embeddings(losses.kl) if self.kl_weight > 0 or self.project else zeros
        return g_t, g_u, g_k

    def _reduced_statistics(self, output, target, task, grads, ctx, wide):
        """The global batch's scalar statistics, in one all-reduce: (s [M], and per
        modality <G_T, G_k>, ‖G_k‖², ‖G_T‖², ‖G_u‖²); each rank's matrices are 1/W of
        the global batch's rows (its losses are local means)."""
        g_t, g_u, g_k = grads
        sync = ctx.sync
        local = torch.cat(
            [
                self.score_sums(output, target, task).to(wide),
                torch.stack([(a * b).sum() for a, b in zip(g_t, g_k)]),
                torch.stack([(b * b).sum() for b in g_k]),
                torch.stack([(a * a).sum() for a in g_t]),
                torch.stack([(a * a).sum() for a in g_u]),
            ]
        )
        red = sync.sum(local)
        m_count = len(g_t)
        n = m_count + 1  # the score sums and the sample count
        tk, kk, tt, uu = (red[n:] / sync.world_size**2).split(m_count)
        return red[:m_count] / red[m_count].clamp_min(1), tk, kk, tt, uu

    def _backward_once(self, losses, hs, g_u, g_k, f, alpha, ctx) -> None:
        """The towers' update J_m^T c_m from ONE backward pass of L_T, with the extra
        cotangent c_m − G_T^m seeded at h_m (the backward of L_T brings G_T^m itself)."""
        layout, mu, lam = ctx.layout, self.unimodal_weight, self.kl_weight
        separate_heads = bool(layout.groups.get("unimodal_heads")) and mu > 0
        roots, cotangents = [ctx.scaled(losses.task)], [None]
        if separate_heads:  # their parameters need μ ∇L_m, which flows from the loss
            roots.append(ctx.scaled(mu * losses.unimodal_sum()))
            cotangents.append(None)
        for m, h in enumerate(hs):
            if not h.requires_grad:
                continue
            extra = (lam - alpha[m]) * f[m] * g_k[m]
            if not separate_heads:
                extra = extra + mu * g_u[m]
            roots.append(h)
            cotangents.append(extra.reshape(h.shape).to(h.dtype))
        ctx.backward_into(roots, cotangents, layout.params)
        ctx.check_gradients_finite(
            "gradient", [p.grad for p in layout.params if p.grad is not None]
        )

    def _projection(self, g_t, g_k, f, tk, kk, tt):
        """(α per modality, each [1] or [B, 1], conflict, projected, <G_T⊥, G_kl>,
        ‖G_T⊥‖²) for this step's scope; the update uses G_T⊥^m = G_T^m − α_m f_m G_k^m."""
        d_m, r2_m = f * tk, f.square() * kk
        zero = tk.new_zeros(())
        if not self.project:
            dot = d_m.sum()
            return [zero] * len(tk), (dot < 0).to(tk.dtype), zero, dot, tt.sum()
        if self.projection_scope == "per_sample":
            return self._per_sample_projection(g_t, g_k, f)
        alpha, projected = projection_coefficients(d_m, r2_m, self.projection_scope)
        # inner products after G_T^m −= α_m f_m G_k^m, from the reduced statistics
        dot_after, sq_after = projected_geometry(d_m, r2_m, tt, alpha)
        conflict = (d_m.sum() < 0).to(tk.dtype)
        return list(alpha.unbind()), conflict, projected.to(tk.dtype), dot_after, sq_after

    def _per_sample_projection(self, g_t, g_k, f):
        """Each row i of [G_T^1, .., G_T^M] projected off row i of [f_1 G_k^1, ..]."""
        d = sum(f[m] * (g_t[m] * g_k[m]).sum(-1) for m in range(len(g_t)))
        r2 = sum(f[m].square() * (g_k[m] * g_k[m]).sum(-1) for m in range(len(g_t)))
        hit = (d < 0) & (r2 > 0)
        alpha = torch.where(hit, d / torch.where(hit, r2, 1.0), 0.0).unsqueeze(-1)
        rows_t = sum((g * g).sum(-1) for g in g_t)
        a = alpha.squeeze(-1)
        dot_after = (d - a * r2).sum()
        sq_after = (rows_t - 2 * a * d + a.square() * r2).sum().clamp_min(0)
        rate = hit.to(d.dtype).mean() if d.numel() else d.new_zeros(())
        conflict = (d < 0).to(d.dtype).mean() if d.numel() else d.new_zeros(())
        return [alpha] * len(g_t), conflict, rate, dot_after, sq_after
