"""The one place chat is tokenized: a record (or question/answer) -> input_ids, labels, mask.

Layout of a rendered example (``|`` marks token boundaries that never merge, because each part
is tokenized on its own)::

    [chat template prompt incl. system/context + generation header] [prefill] [answer] [EOT]
     labels = IGNORE_INDEX ........................................ IGNORE    label    label

Prompt and prefill positions carry ``IGNORE_INDEX``; the answer and the end-of-turn token are
labelled, so a model learns to answer and to stop. Because the answer is tokenized separately from
the prompt, the same answer has the same tokens under any prompt (a student prompt and a teacher
prompt with an instruction context): positions align by an offset, ``response_start``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from unlearnkit.errors import UnlearnError

IGNORE_INDEX = -100
_SENTINEL = "\x00UNLEARNKIT_SENTINEL\x00"


@dataclass(frozen=True)
class Rendered:
    input_ids: list[int]
    labels: list[int]
    response_start: int  # index of the first token after the prompt and any prefill

    @property
    def attention_mask(self) -> list[int]:
        return [1] * len(self.input_ids)

    def as_dict(self) -> dict[str, Any]:
        return {
            "input_ids": self.input_ids,
            "labels": self.labels,
            "attention_mask": self.attention_mask,
            "response_start": self.response_start,
        }


def end_of_turn(tokenizer) -> tuple[str, int]:
    """The token that closes an assistant turn in this tokenizer's chat template.

    Found by rendering a dummy assistant message and taking the first special token after it;
    falls back to the tokenizer's eos token.
    """
    cached = getattr(tokenizer, "_unlearnkit_eot", None)
    if cached is not None:
        return cached
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _SENTINEL}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    tail = text.split(_SENTINEL, 1)[1] if _SENTINEL in text else ""
    specials = sorted(set(tokenizer.all_special_tokens) | set(_added_special(tokenizer)), key=len)
    found = [(tail.find(s), s) for s in specials if s and s in tail]
    token = min(found)[1] if found else tokenizer.eos_token
    if token is None:
        raise UnlearnError("the tokenizer has no end-of-turn or eos token; set eos_token")
    result = (token, tokenizer.convert_tokens_to_ids(token))
    tokenizer._unlearnkit_eot = result
    return result


def _added_special(tokenizer) -> list[str]:
    decoder = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    return [t.content for t in decoder.values() if getattr(t, "special", False)]


def build_messages(question: str, system: str | None = None, context: str | None = None,
                   *, system_turn: bool = True):
    """Chat messages for one query. ``context`` (an instruction) goes before any system text.
    ``system_turn=False`` (a template without a system turn: :func:`has_system_turn`) puts
    that text at the top of the user turn instead, a blank line before the question."""
    system_text = "\n\n".join(part for part in (context, system) if part)
    if system_text and not system_turn:
        return [{"role": "user", "content": f"{system_text}\n\n{question}"}]
    messages = [{"role": "system", "content": system_text}] if system_text else []
    messages.append({"role": "user", "content": question})
    return messages


def has_system_turn(tokenizer) -> bool:
    """Whether the chat template renders a system message. Some refuse one (Gemma 2's raises
    "System role not supported", older Mistral templates demand strict user/assistant turns)
    and some drop it without a word; either way the teacher's instruction would be lost, so
    :func:`render` moves system text into the user turn for them."""
    template = tokenizer.chat_template
    cached = getattr(tokenizer, "_unlearnkit_system_turn", None)
    if cached is not None and cached[0] == template:
        return cached[1]
    from jinja2 import TemplateError

    messages = [{"role": "system", "content": _SENTINEL}, {"role": "user", "content": "hi"}]
    try:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                             tokenize=False)
        found = _SENTINEL in text
    except TemplateError:  # the template's raise_exception
        found = False
    tokenizer._unlearnkit_system_turn = (template, found)
    return found


# The built-in template for a base model (data.chat_template: plain), written in the order
# render reads: any system text (the teacher's instruction), then "Question: ..." and an
# "Answer:" line; the answer follows on its own line and the eos token closes it (the
# end-of-turn render finds). The prompt ends with a newline, so the answer, tokenized on its
# own, meets no token it could have merged with. It starts with the bos token where the
# tokenizer starts every text with one (Llama, Mistral), with nothing where not (GPT-2, Pythia).
_PLAIN = ("{%- for m in messages -%}"
          "{%- if m['role'] == 'system' -%}{{ m['content'] + '\\n\\n' }}"
          "{%- elif m['role'] == 'user' -%}{{ 'Question: ' + m['content'] + '\\n' }}"
          "{%- elif m['role'] == 'assistant' -%}"
          "{{ 'Answer:\\n' + m['content'] + eos_token + '\\n\\n' }}"
          "{%- endif -%}{%- endfor -%}"
          "{%- if add_generation_prompt -%}{{ 'Answer:\\n' }}{%- endif -%}")
PLAIN = "plain"
PLAIN_NEXT_TURN = "\nQuestion:"  # where a model goes on to a question of its own


def answer_text(tokenizer, text: str) -> str:
    """A decoded continuation as an answer: stripped and, under the plain template, cut where
    the model goes on to a question of its own (a base model seldom ends with eos, and reads
    the layout as a list of questions and answers to continue)."""
    if (getattr(tokenizer, "chat_template", None) or "").endswith(_PLAIN):
        text = text.split(PLAIN_NEXT_TURN, 1)[0]
    return text.strip()


def plain_template(tokenizer) -> str:
    """The ``plain`` chat template for this tokenizer (see ``_PLAIN``)."""
    ids = tokenizer("a")["input_ids"]
    starts = tokenizer.bos_token_id is not None and ids[:1] == [tokenizer.bos_token_id]
    return ("{{ bos_token }}" if starts else "") + _PLAIN


def check_chat_template(spec: str, key: str = "chat_template") -> None:
    """Raise :class:`UnlearnError` unless ``spec`` is ``plain`` or a file (config checks)."""
    if spec != PLAIN and not Path(spec).is_file():
        raise UnlearnError(f"{key}: {spec!r} is neither 'plain' nor a file; give "
                           "'plain' (Question/Answer lines for a base model) or the path of "
                           "a Jinja chat template")


def chat_template_for(tokenizer, spec: str) -> str:
    """The chat template ``spec`` names: ``plain`` (:func:`plain_template`) or a Jinja file."""
    check_chat_template(spec)
    if spec == PLAIN:
        return plain_template(tokenizer)
    try:
        return Path(spec).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UnlearnError(f"cannot read the chat template {spec}: {exc}; give a UTF-8 "
                           "text file") from None


def template_key(spec: str) -> str:
    """What names the template ``spec`` in cache keys: ``plain`` itself, a file's digest."""
    check_chat_template(spec)
    if spec == PLAIN:
        return PLAIN
    return hashlib.sha256(Path(spec).read_bytes()).hexdigest()[:16]


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def render(
    tokenizer,
    question: str,
    answer: str | None = None,
    *,
    system: str | None = None,
    context: str | None = None,
    prefill: str | int | None = None,
) -> Rendered:
    """Render one query (and optionally its answer) through the chat template.

    ``prefill`` starts the assistant turn: a string is inserted before the answer; an integer k
    moves the first k answer tokens into the (unlabelled) prefill. ``answer=None`` gives a
    generation prompt (with the prefill, if any, already in place).
    """
    if getattr(tokenizer, "chat_template", None) is None:
        raise UnlearnError(
            "the tokenizer has no chat template; add 'chat_template' to tokenizer_config.json "
            "or use an instruct/chat model"
        )
    messages = build_messages(question, system, context,
                              system_turn=has_system_turn(tokenizer))
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt = _encode(tokenizer, text)
    answer_ids = []
    if answer is not None:
        answer_ids = [*_encode(tokenizer, answer), end_of_turn(tokenizer)[1]]
    if isinstance(prefill, int) and not isinstance(prefill, bool):
        if answer is None or not 0 <= prefill < len(answer_ids):
            raise UnlearnError(f"prefill of {prefill} tokens needs an answer longer than that")
        pre, answer_ids = answer_ids[:prefill], answer_ids[prefill:]
    else:
        pre = _encode(tokenizer, prefill or "")
    ids = prompt + pre + answer_ids
    labels = [IGNORE_INDEX] * (len(prompt) + len(pre)) + answer_ids
    return Rendered(ids, labels, len(prompt) + len(pre))


def render_record(tokenizer, record, *, with_answer: bool = True, question: str | None = None,
                  answer: str | None = None, **kwargs) -> Rendered:
    """Render a :class:`~unlearnkit.data.records.Record` (question/answer can be swapped in)."""
    text = record.answer if answer is None else answer
    return render(
        tokenizer,
        question if question is not None else record.question,
        text if with_answer else None,
        system=kwargs.pop("system", record.system),
        **kwargs,
    )


def collate(items: list[Rendered], pad_id: int, *, side: str = "right") -> dict[str, torch.Tensor]:
    """Pad a batch. The attention mask comes from the lengths, never from ``ids != pad_id``."""
    if not items:
        raise UnlearnError("cannot collate an empty batch")
    width = max(len(it.input_ids) for it in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    starts = torch.zeros(len(items), dtype=torch.long)
    for row, it in enumerate(items):
        n = len(it.input_ids)
        sl = slice(width - n, width) if side == "left" else slice(0, n)
        ids[row, sl] = torch.tensor(it.input_ids)
        labels[row, sl] = torch.tensor(it.labels)
        mask[row, sl] = 1
        starts[row] = it.response_start + (width - n if side == "left" else 0)
    return {"input_ids": ids, "labels": labels, "attention_mask": mask, "response_start": starts}
