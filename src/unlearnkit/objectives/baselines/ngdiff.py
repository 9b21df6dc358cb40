"""NGDiff: normalised gradient difference (Jin, Bu et al. 2024, arXiv 2410.22086).

"Unlearning as multi-task optimization: A normalized gradient difference approach with an
adaptive learning rate", the NGDiff update: with g_F = grad NLL(forget), g_R = grad NLL(retain),

    d = g_R / ||g_R|| - g_F / ||g_F||     (norms over all trainable parameters together)

and the update theta <- theta - lr * d (descend on retain, ascend on forget, each at unit
scale). The paper's automatic learning rate (GeN) is not implemented: the loop's schedule is used.

How it meets the loop: the step computes g_F and g_R itself (two backward passes through
``torch.autograd.grad``) and returns a SURROGATE loss ``S = v + sum_p <p, d_p> - (same).detach()``
whose value is v = NLL(R) - NLL(F) (what is logged as "loss") and whose gradient is exactly d;
the loop's ``backward`` then only multiplies leaves. Consequences: gradient accumulation
averages per-micro-batch directions; with several processes each rank normalises its own
shard's gradients and the loop averages the directions (DDP; FSDP, which shards the gradients,
is refused); and since ||d|| <= 2, the loop's
clipping (optim.max_grad_norm, default 1) rescales d unless it is set to 0 or >= 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from unlearnkit.objectives.baselines.common import FORGET, RETAIN, as_batch, forward
from unlearnkit.objectives.baselines.registry import register_baseline
from unlearnkit.objectives.nll import nll_loss

Grads = Sequence[torch.Tensor | None]


def _norm(grads: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(sum((g.float() ** 2).sum() for g in grads))


def ngdiff_direction(g_forget: Grads, g_retain: Grads, params: Sequence[torch.Tensor], *,
                     normalize: bool = True, eps: float = 1e-12) -> list[torch.Tensor]:
    """``g_R/||g_R|| - g_F/||g_F||`` per parameter (``g_R - g_F`` when not ``normalize``).

    g_forget, g_retain: one gradient (or None: zero) per tensor of ``params``. A zero gradient
    stays zero (its norm is clamped at ``eps``). Returns tensors shaped like ``params``.
    """
    g_f = [torch.zeros_like(p) if g is None else g for g, p in zip(g_forget, params, strict=True)]
    g_r = [torch.zeros_like(p) if g is None else g for g, p in zip(g_retain, params, strict=True)]
    scale_f = 1 / _norm(g_f).clamp(min=eps) if normalize else 1.0
    scale_r = 1 / _norm(g_r).clamp(min=eps) if normalize else 1.0
    return [r * scale_r - f * scale_f for f, r in zip(g_f, g_r, strict=True)]


def ngdiff_surrogate(params: Sequence[torch.Tensor], direction: Sequence[torch.Tensor],
                     value: torch.Tensor) -> torch.Tensor:
    """A scalar equal to ``value`` whose gradient with respect to ``params`` is ``direction``."""
    inner = sum((p * d.detach().to(p.dtype)).sum() for p, d in zip(params, direction,
                                                                    strict=True))
    return value.detach() + inner - inner.detach()


@dataclass
class NGDiffConfig:
    """NGDiff has no loss weights (the normalisation replaces them); ``normalize`` ablates it."""

    normalize: bool = True  # false: the plain gradient difference g_R - g_F


@register_baseline("ngdiff", config=NGDiffConfig, paper="Jin, Bu et al. 2024 (NGDiff)",
                   arxiv="2410.22086", equation="d = g_R/||g_R|| - g_F/||g_F||")
def make_step(cfg: NGDiffConfig, pad_id: int):
    def step(model, micro):
        batch = as_batch(micro)
        params = [p for p in model.parameters() if p.requires_grad]
        win_f = forward(model, [it.rendered for it in batch[FORGET]], pad_id)
        nll_f = nll_loss(win_f.logits, win_f.labels)
        g_f = torch.autograd.grad(nll_f, params, allow_unused=True)
        win_r = forward(model, [it.rendered for it in batch[RETAIN]], pad_id)
        nll_r = nll_loss(win_r.logits, win_r.labels)
        g_r = torch.autograd.grad(nll_r, params, allow_unused=True)
        direction = ngdiff_direction(g_f, g_r, params, normalize=cfg.normalize)
        loss = ngdiff_surrogate(params, direction, nll_r - nll_f)
        return loss, {"forget_nll": float(nll_f.detach()), "retain_nll": float(nll_r.detach()),
                      "grad_cos": _cosine(g_f, g_r)}

    # it takes gradients itself (torch.autograd.grad), which FSDP's sharded parameters do not
    # give whole: the training loop refuses FSDP for such a step
    step.own_gradients = True
    return step


def _cosine(g_f: Grads, g_r: Grads) -> float:
    """Cosine between the two gradients (a diagnostic: negative means they conflict)."""
    pairs = [(f.float(), r.float()) for f, r in zip(g_f, g_r, strict=True)
             if f is not None and r is not None]
    if not pairs:
        return 0.0
    dot = sum((f * r).sum() for f, r in pairs)
    norm = _norm([f for f, _ in pairs]) * _norm([r for _, r in pairs])
    return float(dot / norm.clamp(min=1e-12))
