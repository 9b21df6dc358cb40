"""Refusal SFT: fine-tune the forget questions onto "I don't know" answers (TOFU's IDK baseline).

Maini et al., "TOFU: A Task of Fictitious Unlearning for LLMs", arXiv 2401.06121,
its "I don't know" variant (the answer replaced by a refusal), trained with the plain LM loss:

    L_IDK = NLL(y_idk | x) on forget questions x  +  lambda * L_R

Each forget record gets one phrasing from :data:`~.common.IDK_ANSWERS`, chosen by a hash of its
id (:func:`~.common.idk_answer`): the same answer in every run and every epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from unlearnkit.objectives.baselines.common import (
    FORGET,
    RetainConfig,
    add_retain,
    as_batch,
    forward,
    idk_rendering,
)
from unlearnkit.objectives.baselines.reference import attach_retain_reference
from unlearnkit.objectives.baselines.registry import register_baseline
from unlearnkit.objectives.nll import nll_loss


def refusal_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean answer-token NLL of the refusal answers.

    logits: (B, T, V); labels: (B, T), the refusal's tokens labelled, IGNORE_INDEX elsewhere.
    fp32; 0 (with a graph) when no token is labelled.
    """
    return nll_loss(logits, labels)


@dataclass
class RefusalConfig:
    """Refusal SFT: only the retain term is configurable (the refusal set is fixed)."""

    retain: RetainConfig = field(default_factory=RetainConfig)


def prepare(cfg: RefusalConfig, model, tokenizer, items, *, model_id=None):
    """Forget items train on their refusal; the true answer stays in ``ref["true"]``."""
    items = [replace(it, rendered=idk_rendering(tokenizer, it), ref={**it.ref, "true": it.rendered})
             if it.kind == FORGET else it for it in items]
    return attach_retain_reference(model, items, tokenizer.pad_token_id, cfg.retain,
                                   model_id=model_id)


@register_baseline("refusal", config=RefusalConfig, prepare=prepare, needs_question=True,
                   paper="TOFU (IDK)",
                   arxiv="2401.06121", equation="L = NLL(idk | x_F) + lambda L_R")
def make_step(cfg: RefusalConfig, pad_id: int):
    def step(model, micro):
        batch = as_batch(micro)
        win = forward(model, [it.rendered for it in batch[FORGET]], pad_id)
        loss = refusal_loss(win.logits, win.labels)
        logs = {"idk_nll": float(loss.detach())}
        return add_retain(loss, logs, model, batch, pad_id, cfg.retain), logs

    return step
