"""DUET: first-position top-K logit distillation from a prefix-instructed teacher.

Zhong et al., DUET, arXiv 2601.21283 (the direct precursor of the project's method; see
docs/METHOD.md): the teacher is the starting model with an instruction in front of the query;
the student, without it, matches the teacher's top-K raw logits at the FIRST response position:

    L_DUET = mean_{x in F u R} sum_{i in K_T(x)} Huber_delta( z_S^i(x) - z_T^i(x) )

This is :func:`unlearnkit.objectives.pushpull.pull_loss` with ``first_only=True``, reused as
is, and the teacher's top-K come from the project's teacher cache
(:func:`unlearnkit.training.unlearn.build_examples`), computed once before training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from unlearnkit.models.teacher import TeacherConfig
from unlearnkit.objectives.baselines.common import (
    FORGET,
    RETAIN,
    as_batch,
    check,
    forward,
    need,
    place_topk,
    teacher_items,
)
from unlearnkit.objectives.baselines.registry import register_baseline
from unlearnkit.objectives.pushpull import pull_loss


def duet_loss(student: torch.Tensor, teacher_values: torch.Tensor,
              teacher_indices: torch.Tensor, mask: torch.Tensor, *,
              delta: float = 1.0) -> torch.Tensor:
    """Huber distance on the teacher's top-K at each row's first masked position only.

    student: (B, T, V) raw logits; teacher_values, teacher_indices: (B, T, K); mask: (B, T)
    response positions. fp32; 0 (with a graph) when no position is masked.
    """
    return pull_loss(student, teacher_values, teacher_indices, mask, delta=delta,
                     first_only=True)


@dataclass
class DuetConfig:
    """DUET: the instructed teacher (template, scope, K, responses) and the Huber delta."""

    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    delta: float = 1.0

    def __post_init__(self) -> None:
        check(self.delta > 0, f"duet.delta must be positive, got {self.delta}")


def prepare(cfg: DuetConfig, model, tokenizer, items, *, model_id=None):
    return teacher_items(model, tokenizer, items, cfg.teacher, model_id)


@register_baseline("duet", config=DuetConfig, prepare=prepare, needs_question=True,
                   paper="Zhong et al. (DUET)",
                   arxiv="2601.21283",
                   equation="L = sum_{i in top-K_T} Huber(z_S^i - z_T^i) at the first position")
def make_step(cfg: DuetConfig, pad_id: int):
    def step(model, micro):
        batch = as_batch(micro)
        items = batch[FORGET] + batch[RETAIN]
        rendered = [it.rendered for it in items]
        win = forward(model, rendered, pad_id)
        values, indices, mask = place_topk(rendered, [need(it, "top", "duet") for it in items],
                                           win)
        loss = duet_loss(win.logits, values, indices, mask, delta=cfg.delta)
        return loss, {"pull_first": float(loss.detach())}

    return step
