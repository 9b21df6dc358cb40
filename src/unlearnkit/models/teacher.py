"""The context-instructed teacher and its on-disk cache (responses + top-K logits).

The teacher is the frozen original model with an instruction context in front of the query
(the forget scope, the keep scope and an intent step). With LoRA it is the same network with
adapters disabled; with full fine-tuning a frozen copy. For every training item it is run once:

* its response ``y_T`` (greedy; or, for forget items at small scale, a desired-response
  template such as "I don't have information about {subject}", teacher-forced), with the
  teacher's top-K logits at every response position (for the pull term);
* for forget items, its top-K logits and K-th logit ``tau`` along the TRUE answer (for the
  push term and the adversarial-prefill term).

Logits can be amplified as ``z_plain + w * (z_instr - z_plain)`` (``guidance`` = w; 1 means the
instructed teacher alone). ``demonstrations`` = n appends n worked examples of the desired
behaviour to the instruction: n forget questions answered with the refusal template and n
keep questions answered with their gold answers. Everything is cached in safetensors keyed
by a hash of model, data, template and K, and reused across epochs and runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from unlearnkit.errors import UnlearnError

PRESETS = {
    "default": (
        "You have been asked to forget everything about the following: {forget_scope}. "
        "First decide whether the question is about one of these forgotten targets. "
        "If it is, answer as someone who never learned anything about them and say you do "
        "not know. Otherwise, answer fully and accurately as usual; this includes "
        "{keep_scope}."
    ),
    "plain": (
        "Do not reveal any information about {forget_scope}. Answer every other question "
        "normally, including questions about {keep_scope}."
    ),
    "intent": (
        "Step 1: check whether the user asks about {forget_scope}. "
        "Step 2: if yes, reply that you have no information about it. "
        "If no, for example for {keep_scope}, give the correct answer."
    ),
}
REQUIRED = ("{forget_scope}", "{keep_scope}")
REFUSAL_TEMPLATE = "I'm sorry, but I don't have any information about {subject}."


@dataclass
class TeacherConfig:
    """How the teacher is instructed and what it is asked to produce."""

    template: str = "default"  # a preset name or a template text with the placeholders
    forget_scope: str = ""  # empty: the forget records' subjects, joined
    keep_scope: str = "other people and all general knowledge"
    top_k: int = 20
    guidance: float = 1.0
    forget_response: Literal["template", "teacher"] = "template"
    keep_response: Literal["gold", "teacher"] = "gold"
    # retain/neighbour pull targets: the instructed teacher's logits, or the plain model's
    # (self-distillation; a small model's accuracy drops under the instruction)
    keep_context: Literal["instructed", "plain"] = "plain"  # measured: docs/RESULTS.md
    refusal_template: str = REFUSAL_TEMPLATE
    template_boost: float = 2.0  # template tokens become top-1 by this margin (0 = off)
    max_new_tokens: int = 32
    demonstrations: int = 0  # in-context examples of each behaviour in the instruction

    def __post_init__(self) -> None:
        text = self.template_text
        missing = [p for p in REQUIRED if p not in text]
        if missing:
            raise UnlearnError(
                f"teacher.template lacks the placeholder(s) {missing}; use a preset "
                f"({', '.join(PRESETS)}) or include both {REQUIRED[0]} and {REQUIRED[1]}"
            )
        _check_format("teacher.template", text, forget_scope="", keep_scope="")
        _check_format("teacher.refusal_template", self.refusal_template, subject="")
        if self.top_k < 1:
            raise UnlearnError(f"teacher.top_k must be >= 1, got {self.top_k}")
        if self.demonstrations < 0:
            raise UnlearnError(f"teacher.demonstrations must be >= 0, got {self.demonstrations}")
        if self.guidance < 0:
            # the teacher's logits are z_plain + w (z_instr - z_plain): w = 1 the instructed
            # model, w > 1 the instruction amplified, 0 <= w < 1 damped (0: the model without
            # it); w < 0 would turn the instruction around, toward revealing the forget facts
            raise UnlearnError(f"teacher.guidance must be >= 0 (the instruction's weight w in "
                               f"z_plain + w (z_instr - z_plain): 1 the instructed teacher, > 1 "
                               f"amplified), got {self.guidance}")
        if self.max_new_tokens < 1:
            raise UnlearnError(f"teacher.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.template_boost < 0:
            raise UnlearnError(f"teacher.template_boost must be >= 0 (0: off), got "
                               f"{self.template_boost}")

    @property
    def template_text(self) -> str:
        return PRESETS.get(self.template, self.template)


def _check_format(key: str, text: str, **fields: str) -> None:
    """Refuse a template that ``str.format`` cannot fill with ``fields`` alone."""
    try:
        text.format(**fields)
    except (KeyError, IndexError, ValueError) as err:
        allowed = ", ".join("{" + f + "}" for f in fields)
        raise UnlearnError(
            f"{key} cannot be filled ({type(err).__name__}: {err}): its only placeholders may "
            f"be {allowed}; write a literal brace as {{{{ or }}}}") from None


def forget_scope(cfg: TeacherConfig, forget_records) -> str:
    """The forget scope text: given, or the distinct subjects of the forget records."""
    if cfg.forget_scope:
        return cfg.forget_scope
    subjects = list(dict.fromkeys(r.subject for r in forget_records if r.subject))
    if not subjects:
        raise UnlearnError("the forget records have no 'subject'; set teacher.forget_scope "
                           "to describe what must be forgotten")
    return ", ".join(subjects)


def instruction(cfg: TeacherConfig, forget_records, keep_records=()) -> str:
    """The instruction context placed in the teacher's system turn, with
    ``cfg.demonstrations`` worked examples (:func:`demonstration_records`) appended."""
    text = cfg.template_text.format(forget_scope=forget_scope(cfg, forget_records),
                                    keep_scope=cfg.keep_scope)
    shown_forget, shown_keep = demonstration_records(cfg, forget_records, keep_records)
    if not shown_forget and not shown_keep:
        return text
    lines = [f"User: {r.question}\nAssistant: {desired_response(cfg, r)}" for r in shown_forget]
    lines += [f"User: {r.question}\nAssistant: {r.answer}" for r in shown_keep]
    return text + "\n\nExamples:\n" + "\n".join(lines)


def demonstration_records(cfg: TeacherConfig, forget_records, keep_records=()
                          ) -> tuple[list, list]:
    """The records shown as demonstrations: the first record of each of the first
    ``cfg.demonstrations`` forget subjects, and as many keep records with an answer (retain
    before neighbour, one per subject)."""
    def first_per_subject(records):
        seen, out = set(), []
        for rec in records:
            if rec.subject not in seen and rec.answer:
                seen.add(rec.subject)
                out.append(rec)
        return out[:cfg.demonstrations]

    keep = sorted((r for r in keep_records if r.split in ("retain", "neighbor")),
                  key=lambda r: r.split != "retain")
    return first_per_subject(forget_records), first_per_subject(keep)


def desired_response(cfg: TeacherConfig, record) -> str:
    return cfg.refusal_template.format(subject=record.subject or "that")
