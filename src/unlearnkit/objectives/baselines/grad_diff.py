"""Gradient difference: ascend on the forget answers, descend on the retain set (TOFU).

Maini et al., "TOFU: A Task of Fictitious Unlearning for LLMs", arXiv 2401.06121,
its Gradient Difference (after Liu et al. 2022) and KL Minimization baselines:

    L_GD = -NLL(F) + lambda * L_R,   L_R = NLL(R)                          (retain.loss: nll)
                                      or mean_t KL(p_0(.|s_<t) || p_theta(.|s_<t)) on R  (kl)

where p_0 is the model before unlearning. Its next-token distributions on the retain items are
precomputed once (top ``retain.top_k`` logits; 0 = the full vocabulary) by ``prepare``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from unlearnkit.objectives.baselines.common import (
    FORGET,
    RETAIN,
    RetainConfig,
    as_batch,
    check,
    forward,
    retain_loss,
)
from unlearnkit.objectives.baselines.reference import attach_retain_reference
from unlearnkit.objectives.baselines.registry import register_baseline
from unlearnkit.objectives.nll import nll_loss
from unlearnkit.objectives.terms import with_forget_term


def grad_diff_loss(forget_logits: torch.Tensor, forget_labels: torch.Tensor,
                   retain_term: torch.Tensor, *, retain_weight: float = 1.0) -> torch.Tensor:
    """``-NLL(forget) + retain_weight * retain_term``.

    forget_logits: (B, T, V); forget_labels: (B, T) with IGNORE_INDEX off the answer;
    retain_term: a scalar (the retain NLL or KL, see :mod:`.common`). fp32; the forget NLL is 0
    when no token is labelled.
    """
    return -nll_loss(forget_logits, forget_labels) + retain_weight * retain_term


@dataclass
class GradDiffConfig:
    """GradDiff: the retain term's kind ("nll" or "kl") and weight lambda."""

    retain: RetainConfig = field(default_factory=RetainConfig)

    def __post_init__(self) -> None:
        check(self.retain.loss != "none",
              "grad_diff.retain.loss must be nll or kl (without one it is grad_ascent)")


def prepare(cfg: GradDiffConfig, model, tokenizer, items, *, model_id=None):
    return attach_retain_reference(model, items, tokenizer.pad_token_id, cfg.retain,
                                   model_id=model_id)


@register_baseline("grad_diff", config=GradDiffConfig, prepare=prepare, paper="TOFU",
                   arxiv="2401.06121", equation="L = -NLL(F) + lambda * (NLL(R) | KL(p0||p)(R))")
def make_step(cfg: GradDiffConfig, pad_id: int):
    def step(model, micro):
        batch = as_batch(micro)
        win = forward(model, [it.rendered for it in batch[FORGET]], pad_id)
        retain = retain_loss(model, batch[RETAIN], pad_id, cfg.retain.loss)
        retain = win.logits.new_zeros((), dtype=torch.float32) if retain is None else retain
        loss = grad_diff_loss(win.logits, win.labels, retain, retain_weight=cfg.retain.weight)
        logs = {"forget_nll": float(nll_loss(win.logits, win.labels).detach()),
                "retain": float(retain.detach())}
        return with_forget_term(loss, loss - cfg.retain.weight * retain), logs

    return step
