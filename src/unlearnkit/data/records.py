"""The one record type every corpus is standardised into (chat QA).

A :class:`Record` is a user turn (``question``, optional ``system``) and an assistant turn
(``answer``), plus optional extras used by metrics and attacks: paraphrased questions, a
paraphrased answer, perturbed (wrong) answers, multiple-choice ``choices`` with
``answer_index``, the ``subject`` and the ``targets`` (short strings whose presence in a
generation means the fact was revealed). ``split`` says which role the record plays.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from unlearnkit.errors import UnlearnError
from unlearnkit.fsutil import atomic_write_text

__all__ = ["FORMAT_VERSION", "SPLITS", "Record", "atomic_write_text", "read_jsonl",
           "records_to_jsonl", "validate_records", "write_jsonl"]

SPLITS = ("forget", "retain", "neighbor", "general", "probe")
FORMAT_VERSION = 1


@dataclass
class Record:
    """One chat-QA item. ``answer`` may be ``None`` only for prompts without a reference."""

    id: str
    split: str
    question: str
    answer: str | None = None
    system: str | None = None
    paraphrased_questions: list[str] = field(default_factory=list)
    paraphrased_answer: str | None = None
    perturbed_answers: list[str] = field(default_factory=list)
    choices: list[str] = field(default_factory=list)
    answer_index: int | None = None
    subject: str | None = None
    targets: list[str] = field(default_factory=list)
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"record {self.id!r}" if isinstance(self.id, str) and self.id else "a record"
        if not isinstance(self.id, str) or not self.id.strip():
            raise UnlearnError(f"{where}: 'id' must be a non-empty string")
        if self.split not in SPLITS:
            raise UnlearnError(f"{where}: split {self.split!r} is not one of {', '.join(SPLITS)}")
        if not isinstance(self.question, str) or not self.question.strip():
            raise UnlearnError(f"{where}: 'question' must be a non-empty string")
        for name in ("answer", "system", "paraphrased_answer", "subject"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise UnlearnError(
                    f"{where}: {name!r} must be a string, got {type(value).__name__}"
                )
        for name in ("paraphrased_questions", "perturbed_answers", "choices", "targets"):
            value = getattr(self, name)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise UnlearnError(f"{where}: {name!r} must be a list of strings")
        if self.answer_index is not None:
            if isinstance(self.answer_index, bool) or not isinstance(self.answer_index, int):
                raise UnlearnError(f"{where}: 'answer_index' must be an integer")
            if not 0 <= self.answer_index < len(self.choices):
                raise UnlearnError(
                    f"{where}: answer_index {self.answer_index} is outside its "
                    f"{len(self.choices)} choices"
                )
        if not isinstance(self.meta, dict):
            raise UnlearnError(f"{where}: 'meta' must be a JSON object")

    @property
    def multiple_choice(self) -> bool:
        """A multiple-choice item (MMLU, WMDP): its answer is one of its choices, so the
        question is asked with them (an open question with choices as extras, e.g. the
        scenario's, answers in a sentence of its own)."""
        return (self.answer_index is not None and bool(self.choices)
                and self.answer == self.choices[self.answer_index])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "") -> Record:
        if not isinstance(data, dict):
            raise UnlearnError(f"{where}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UnlearnError(
                f"{where}: unknown record field(s) {unknown}; known: {sorted(known)}"
            )
        for required in ("id", "split", "question"):
            if required not in data:
                raise UnlearnError(f"{where}: missing required field {required!r}")
        return cls(**data)


def normalize_question(text: str) -> str:
    """Lower-case, collapse whitespace and drop trailing punctuation, for overlap checks."""
    return " ".join(text.lower().split()).rstrip(" ?.!")


def validate_records(records: Iterable[Record]) -> list[Record]:
    """Check a whole dataset: unique ids, and no question in both forget and another split.

    A question that is both forgotten and kept is a contradiction the trainer cannot satisfy.
    """
    records = list(records)
    seen: dict[str, Record] = {}
    for rec in records:
        if rec.id in seen:
            raise UnlearnError(f"duplicate record id {rec.id!r}: ids must be unique across splits")
        seen[rec.id] = rec
    forget = {normalize_question(r.question): r for r in records if r.split == "forget"}
    for rec in records:
        if rec.split in ("retain", "neighbor") and normalize_question(rec.question) in forget:
            other = forget[normalize_question(rec.question)]
            raise UnlearnError(
                f"question {rec.question!r} is in both forget ({other.id}) and {rec.split} "
                f"({rec.id}); remove it from one of them"
            )
    return records


def records_to_jsonl(records: Iterable[Record]) -> str:
    return "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in records)


def write_jsonl(path: str | Path, records: Iterable[Record]) -> None:
    atomic_write_text(path, records_to_jsonl(records))


def read_jsonl(path: str | Path) -> list[Record]:
    """Read records written by :func:`write_jsonl` (UTF-8: a line in another encoding is
    refused, naming the file, the line and the byte)."""
    path = Path(path)
    out = []
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UnlearnError(
                    f"{path}:{n}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                    f"{exc.start} of the line); re-encode the file as UTF-8, e.g. iconv -f "
                    "latin1 -t utf-8") from None
            if n == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark an editor added
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UnlearnError(f"{path}:{n}: malformed JSON ({exc.msg})") from None
            out.append(Record.from_dict(data, where=f"{path}:{n}"))
    return out
