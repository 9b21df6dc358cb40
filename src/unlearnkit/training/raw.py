"""The forget set left raw: each forget record's source passage as plain text (no chat template).

Used by ``unlearn.forget_format: raw`` (the ablation of the method's unified representation,
docs/METHOD.md) and by ``unlearn diagnose``. A passage has no question, so the forget terms work
along the passage itself: pull toward the instructed teacher's logits (the instruction as a
plain-text prefix), push and prefill on the tokens of the passage's facts.
"""

from __future__ import annotations

from collections.abc import Sequence

from unlearnkit.data.records import Record
from unlearnkit.data.render import IGNORE_INDEX, Rendered
from unlearnkit.errors import UnlearnError
from unlearnkit.models.teacher import TeacherConfig, instruction
from unlearnkit.models.teacher_cache import teacher_topk
from unlearnkit.objectives.pushpull import Example
from unlearnkit.training.unlearn import target_token_mask


def passage_of(record: Record, biographies: dict[str, str]) -> str | None:
    """The raw text a record came from: its scenario person's biography or ``meta.passage``."""
    return biographies.get(record.meta.get("person", "")) or record.meta.get("passage")


def render_raw(tokenizer, text: str, prefix: str = "") -> Rendered:
    """Plain text without a chat template, every token labelled but the first (nothing predicts
    it). An instruction ``prefix`` (tokenized on its own) goes in front, unlabelled."""
    pre = list(tokenizer(prefix, add_special_tokens=False)["input_ids"]) if prefix else []
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if len(ids) < 2:
        raise UnlearnError(f"raw passage {text[:40]!r} is too short to score")
    return Rendered(pre + ids, [IGNORE_INDEX] * (len(pre) + 1) + ids[1:], len(pre) + 1)


def raw_windows(tokenizer, text: str, size: int) -> list[Rendered]:
    """``text`` as :func:`render_raw` renders it, cut into windows of at most ``size`` tokens,
    each labelled but its first token (a last window of one token is dropped: nothing in it
    is predicted)."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if len(ids) < 2:
        raise UnlearnError(f"raw passage {text[:40]!r} is too short to score")
    windows = [ids[i:i + size] for i in range(0, len(ids), size)]
    return [Rendered(w, [IGNORE_INDEX, *w[1:]], 1) for w in windows if len(w) >= 2]


def raw_examples(model, tokenizer, forget: list[Record], passages: dict[str, str],
                 cfg: TeacherConfig, keep: Sequence[Record] = ()) -> dict[str, Example]:
    """Forget record id -> the method's example for its raw passage (one per passage): the
    instructed teacher's top-K along the passage, its records' targets marked as revealing.

    ``passages`` maps forget record ids to their source text; ``forget`` (all forget records)
    names the forget scope in the instruction; ``keep`` supplies its keep demonstrations."""
    texts = list(dict.fromkeys(passages.values()))
    if not texts:
        raise UnlearnError("no forget record has a raw passage (a scenario person's biography "
                           "or meta.passage): use unlearn.forget_format: unified")
    context = instruction(cfg, forget, keep)
    students = [render_raw(tokenizer, t) for t in texts]
    teachers = [render_raw(tokenizer, t, prefix=context + "\n\n") for t in texts]
    tops = teacher_topk(model, teachers, students, k=cfg.top_k, guidance=cfg.guidance,
                        pad_id=tokenizer.pad_token_id, desc="teacher: raw passages")
    by_text = {}
    for text, item, top in zip(texts, students, tops, strict=True):
        targets = [t for r in forget if passages.get(r.id) == text for t in r.targets]
        flags = target_token_mask(tokenizer, text, targets)
        by_text[text] = Example(kind="forget", pull_input=item, pull_top=top, true_input=item,
                                true_top=top,
                                reveal=None if flags is None else flags[1:len(item.input_ids)])
    return {rid: by_text[text] for rid, text in passages.items()}


def with_raw_forget(model, tokenizer, examples: list[Example], forget: list[Record],
                    biographies: dict[str, str], cfg: TeacherConfig,
                    keep: Sequence[Record] = ()) -> list[Example]:
    """``examples`` with the unified forget items replaced by one raw example per passage.

    Every forget record needs a passage (:func:`passage_of`): one without would silently never
    be trained on, so a forget set only partly made from raw text is an error."""
    passages = {r.id: p for r in forget if (p := passage_of(r, biographies))}
    check_passages_match(forget, passages)
    check_every_forget_record_has_a_passage(forget, passages)
    raw = raw_examples(model, tokenizer, forget, passages, cfg, keep)
    unique = list({id(e): e for e in raw.values()}.values())
    return unique + [e for e in examples if e.kind != "forget"]


def check_passages_match(forget: list[Record], passages: dict[str, str]) -> None:
    """A passage must mention its record's answer; else the passages come from another scenario
    than the records, and the raw format would train on the wrong text."""
    for r in forget:
        if r.id in passages and r.targets and not any(t in passages[r.id] for t in r.targets):
            raise UnlearnError(f"forget record {r.id!r}: its raw passage does not mention its "
                               f"answer {r.targets}; the passages come from another scenario "
                               "than the records (check setup.scenario)")


def check_every_forget_record_has_a_passage(forget: list[Record],
                                            passages: dict[str, str]) -> None:
    """The raw format trains on passages only: name the forget records without one (a few ids)
    and the two ways out, instead of leaving them out of training unsaid."""
    missing = [r.id for r in forget if r.id not in passages]
    if not missing:
        return
    shown = ", ".join(repr(i) for i in missing[:3]) + (", ..." if len(missing) > 3 else "")
    raise UnlearnError(
        f"unlearn.forget_format: raw trains on each forget record's source passage, but "
        f"{len(missing)} of {len(forget)} forget records have none ({shown}): no meta.passage "
        "(the text adapter writes one) and no scenario biography; use unlearn.forget_format: "
        "unified, or give every forget record a passage")
