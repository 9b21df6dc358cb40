"""Gradient ascent on the forget answers (Jang et al. 2022; the GA baseline of TOFU).

Jang et al., "Knowledge Unlearning for Mitigating Privacy Risks in Language Models",
arXiv 2210.01504 (negate the LM loss on the target sequences); Maini et al., "TOFU: A Task of
Fictitious Unlearning for LLMs", arXiv 2401.06121, its Gradient Ascent baseline:

    L_GA(theta) = - (1/|F|) sum_{(x, y) in F} NLL(y | x; theta)

Here the NLL is the mean over every answer token of the micro-batch (as the retain NLL is).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearnkit.objectives.baselines.common import FORGET, as_batch, check, forward
from unlearnkit.objectives.baselines.registry import register_baseline
from unlearnkit.objectives.nll import nll_loss
from unlearnkit.objectives.terms import with_forget_term


def grad_ascent_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Negative mean answer-token NLL: ``-mean_{t: labels[t+1] != IGNORE} -log p(y_{t+1})``.

    logits: (B, T, V) raw scores; labels: (B, T), IGNORE_INDEX off the answer. fp32; 0 (with a
    graph) when no token is labelled.
    """
    return -nll_loss(logits, labels)


@dataclass
class GradAscentConfig:
    """Gradient ascent has one knob: the scale of the ascent term."""

    weight: float = 1.0  # multiplies L_GA (the learning rate does the same; kept for symmetry)

    def __post_init__(self) -> None:
        check(self.weight > 0, f"grad_ascent.weight must be positive, got {self.weight}")


@register_baseline("grad_ascent", config=GradAscentConfig, paper="Jang et al. 2022; TOFU",
                   arxiv="2210.01504", equation="L = -NLL(forget)")
def make_step(cfg: GradAscentConfig, pad_id: int):
    def step(model, micro):
        forget = as_batch(micro)[FORGET]
        win = forward(model, [it.rendered for it in forget], pad_id)
        loss = grad_ascent_loss(win.logits, win.labels)
        total = cfg.weight * loss
        return with_forget_term(total, total), {"forget_nll": -float(loss.detach())}

    return step
