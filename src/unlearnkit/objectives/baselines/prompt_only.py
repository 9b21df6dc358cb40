"""Prompt-only: no training; the unchanged model evaluated with the instruction in its context.

The instructed model of arXiv 2604.15482 / DUET (arXiv 2601.21283) used as a baseline by
itself (the teacher the distillation methods learn from; docs/METHOD.md reports how weak it is
at 135M). :func:`prompt_context` returns the context to evaluate with, e.g.
``render(tokenizer, question, context=prompt_context(cfg, forget_records))``.
"""

from __future__ import annotations

from dataclasses import dataclass

from unlearnkit.models.teacher import TeacherConfig, instruction
from unlearnkit.objectives.baselines.registry import register_baseline


@dataclass
class PromptOnlyConfig:
    """The instruction: a preset (default, plain, intent) or a template with both placeholders."""

    template: str = "default"
    forget_scope: str = ""  # empty: the forget records' subjects
    keep_scope: str = "other people and all general knowledge"

    def __post_init__(self) -> None:
        self.teacher  # noqa: B018 (TeacherConfig checks the template's placeholders)

    @property
    def teacher(self) -> TeacherConfig:
        return TeacherConfig(template=self.template, forget_scope=self.forget_scope,
                             keep_scope=self.keep_scope)


@register_baseline("prompt_only", config=PromptOnlyConfig, trainable=False,
                   paper="instructed model (arXiv 2604.15482, 2601.21283)", arxiv="2604.15482")
def prompt_context(cfg: PromptOnlyConfig, forget_records) -> str:
    """The instruction context (system text) for evaluating the model without training."""
    return instruction(cfg.teacher, forget_records)
