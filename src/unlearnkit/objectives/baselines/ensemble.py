"""An ensemble of per-objective teachers: top-K distillation toward several instructed teachers.

The multi-teacher baseline of arXiv 2604.15482 (docs/METHOD.md, "an ensemble of per-objective
teachers"), kept simple: one teacher per instruction context c_1..c_n (each a preset name or a
template with {forget_scope} and {keep_scope}), each the starting model with that context,
cached by :func:`unlearnkit.training.unlearn.build_examples`; the student's pull loss
(:func:`unlearnkit.objectives.pushpull.pull_loss`) toward each, averaged:

    L_ens = (1/n) sum_c mean_t sum_{i in K_c(t)} Huber_delta( z_S^i(t) - z_c^i(t) )

All teachers must share the responses y_T (forget_response "template", keep_response "gold").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

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


def ensemble_pull_loss(student: torch.Tensor, teacher_values: Sequence[torch.Tensor],
                       teacher_indices: Sequence[torch.Tensor], mask: torch.Tensor, *,
                       delta: float = 1.0, first_only: bool = False) -> torch.Tensor:
    """Mean over teachers c of ``pull_loss(student, values_c, indices_c, mask)``.

    student: (B, T, V); each teacher's values, indices: (B, T, K); mask: (B, T). fp32.
    """
    losses = [pull_loss(student, v, i, mask, delta=delta, first_only=first_only)
              for v, i in zip(teacher_values, teacher_indices, strict=True)]
    return torch.stack(losses).mean()


@dataclass
class EnsembleConfig:
    """The teachers' contexts, their shared settings, the Huber delta and the position switch."""

    contexts: list[str] = field(default_factory=lambda: ["default", "plain", "intent"])
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    delta: float = 1.0
    first_only: bool = False

    def __post_init__(self) -> None:
        check(bool(self.contexts), "ensemble.contexts needs at least one context")
        check(self.teacher.forget_response == "template" and self.teacher.keep_response == "gold",
              "ensemble.teacher needs forget_response: template and keep_response: gold, so that "
              "every teacher distils the same responses")
        check(self.delta > 0, f"ensemble.delta must be positive, got {self.delta}")
        for context in self.contexts:
            replace(self.teacher, template=context)  # validates the placeholders


def prepare(cfg: EnsembleConfig, model, tokenizer, items, *, model_id=None):
    per_teacher = [teacher_items(model, tokenizer, items, replace(cfg.teacher, template=c),
                                 model_id) for c in cfg.contexts]
    first = per_teacher[0]
    for other in per_teacher[1:]:
        check(all(a.rendered == b.rendered for a, b in zip(first, other, strict=True)),
              "ensemble teachers produced different responses; use template/gold responses")
    return [replace(it, ref={**it.ref, "tops": [t[n].ref["top"] for t in per_teacher]})
            for n, it in enumerate(first)]


@register_baseline("ensemble", config=EnsembleConfig, prepare=prepare, needs_question=True,
                   paper="arXiv 2604.15482 baseline", arxiv="2604.15482",
                   equation="L = mean_c pull(z_S, top-K of teacher c)")
def make_step(cfg: EnsembleConfig, pad_id: int):
    def step(model, micro):
        batch = as_batch(micro)
        items = batch[FORGET] + batch[RETAIN]
        rendered = [it.rendered for it in items]
        win = forward(model, rendered, pad_id)
        per_item = [need(it, "tops", "ensemble") for it in items]
        placed = [place_topk(rendered, [tops[c] for tops in per_item], win)
                  for c in range(len(per_item[0]))]
        loss = ensemble_pull_loss(win.logits, [p[0] for p in placed], [p[1] for p in placed],
                                  placed[0][2], delta=cfg.delta, first_only=cfg.first_only)
        return loss, {"pull_ensemble": float(loss.detach())}

    return step
