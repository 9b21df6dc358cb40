"""UNDIAL: self-distillation toward adjusted logits (Dong et al. 2024, arXiv 2402.10052).

"UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in Large Language
Models": the target at each forget-answer position t is the starting model's own
next-token distribution with the logit of the true next token lowered by gamma,

    z'(t) = z_0(t) - gamma * onehot(y_{t+1})
    L_UNDIAL = mean_t KL( softmax(z'(t)) || p_theta(. | t) )

(the paper's cross-entropy to the fixed target, less the target's constant entropy: the same
gradients). z_0 is precomputed once by ``prepare`` on the forget items (its top ``top_k``
logits; 0 = the full vocabulary, exact). The paper trains on the forget set only (retain
``none``); a retain term can be added.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from unlearnkit.objectives.baselines.common import (
    FORGET,
    RetainConfig,
    add_retain,
    as_batch,
    attach,
    check,
    forward,
    need,
    place,
    place_lse,
    place_topk,
    response_tokens,
    tail_logmass,
    topk_kl,
)
from unlearnkit.objectives.baselines.reference import attach_retain_reference, response_topk
from unlearnkit.objectives.baselines.registry import register_baseline


def adjusted_logits(values: torch.Tensor, indices: torch.Tensor, true_next: torch.Tensor, *,
                    gamma: float) -> torch.Tensor:
    """``values - gamma`` where ``indices`` is the true next token. (B, T, K), fp32."""
    return values.float() - gamma * (indices == true_next.unsqueeze(-1)).float()


def undial_loss(student: torch.Tensor, ref_values: torch.Tensor, ref_indices: torch.Tensor,
                true_next: torch.Tensor, mask: torch.Tensor, *, gamma: float,
                ref_lse: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over masked positions of KL(softmax(z_0 - gamma e_y) || softmax(z_S)) on the top-K.

    student: (B, T, V) raw logits; ref_values, ref_indices: (B, T, K) the starting model's
    top-K logits and ids (K = V: exact); true_next: (B, T) the answer's next token; mask: (B, T);
    ref_lse: (B, T) the logsumexp of all the starting model's logits. With it (K < V) the
    target keeps its mass outside the top K as one bin (:func:`topk_kl`); the lowered logit
    changes the normaliser to ``log(exp(tail) + sum_K exp(z'))``, and a true token outside the
    top K stays in the tail unlowered. fp32; 0 (with a graph) when no position is masked.
    """
    target = adjusted_logits(ref_values, ref_indices, true_next, gamma=gamma)
    lse = None
    if ref_lse is not None:
        lse = torch.logaddexp(tail_logmass(ref_values, ref_lse), target.logsumexp(-1))
    return topk_kl(student, target, ref_indices, mask, lse=lse)


@dataclass
class UndialConfig:
    """UNDIAL: the logit reduction gamma, how much of z_0 to keep, and an optional retain term."""

    gamma: float = 10.0
    top_k: int = 0  # 0: the full vocabulary (exact; V floats per answer token in the cache)
    retain: RetainConfig = field(default_factory=lambda: RetainConfig(loss="none"))

    def __post_init__(self) -> None:
        check(self.gamma > 0, f"undial.gamma must be positive, got {self.gamma}")
        check(self.top_k >= 0, f"undial.top_k must be >= 0 (0 = full vocabulary), got "
              f"{self.top_k}")


def prepare(cfg: UndialConfig, model, tokenizer, items, *, model_id=None):
    pad = tokenizer.pad_token_id
    forget = [it.rendered for it in items if it.kind == FORGET]
    tops = response_topk(model, forget, pad, k=cfg.top_k, model_id=model_id)
    items = attach(items, FORGET, "ref_top", tops)
    return attach_retain_reference(model, items, pad, cfg.retain, model_id=model_id)


@register_baseline("undial", config=UndialConfig, prepare=prepare,
                   paper="Dong et al. 2024 (UNDIAL)", arxiv="2402.10052",
                   equation="L = KL(softmax(z_0 - gamma onehot(y)) || p_theta) on forget answers")
def make_step(cfg: UndialConfig, pad_id: int):
    def step(model, micro):
        batch = as_batch(micro)
        rendered = [it.rendered for it in batch[FORGET]]
        win = forward(model, rendered, pad_id)
        tops = [need(it, "ref_top", "undial") for it in batch[FORGET]]
        values, indices, mask = place_topk(rendered, tops, win)
        nxt, _ = place(rendered, [response_tokens(r) for r in rendered], win.offset,
                       win.logits.shape[1])
        loss = undial_loss(win.logits, values, indices, nxt.to(mask.device), mask,
                           gamma=cfg.gamma, ref_lse=place_lse(rendered, tops, win))
        logs = {"undial": float(loss.detach())}
        return add_retain(loss, logs, model, batch, pad_id, cfg.retain), logs

    return step
