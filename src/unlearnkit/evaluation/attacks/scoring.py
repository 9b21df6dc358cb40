"""Shared scoring: render attack prompts, generate greedily in batches, judge each item.

An item (one forget record) is *revealed* under an attack when at least one of its attack
prompts reveals the fact: :func:`~unlearnkit.evaluation.correctness.is_correct` on the
greedy generation (for a prefill, on prefill text + continuation), with the run's
``rouge_threshold`` for long answers without targets. An attack's success rate is
the fraction of revealed items among the items it applies to.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from unlearnkit.data.adapters import LETTERS
from unlearnkit.data.records import Record
from unlearnkit.data.render import IGNORE_INDEX, Rendered, render
from unlearnkit.evaluation.attacks.prompts import plain_prompts
from unlearnkit.evaluation.attacks.registry import Attack, AttackPrompt
from unlearnkit.evaluation.chance import item_chance
from unlearnkit.evaluation.correctness import (
    DEFAULT_ROUGE_THRESHOLD,
    is_correct,
    judged_by_rouge,
    rouge_l_recall,
    withheld_rest,
)
from unlearnkit.models.engine import first_token_logprobs, generate, grouped_token_logprobs


@dataclass(frozen=True)
class Settings:
    """Settings every attack shares (see :func:`run_attacks`)."""

    max_new_tokens: int = 32
    batch_size: int = 32
    context: str | None = None
    seed: int = 0
    progress: bool = False
    rouge_threshold: float = DEFAULT_ROUGE_THRESHOLD


def resolve_prefill(prefill: int | float, n_answer_tokens: int) -> int | None:
    """Prefill length in tokens: k itself, or floor(fraction * n) but at least 1.

    None when it would not leave at least one answer token to generate.
    """
    fraction = isinstance(prefill, float)
    k = max(1, int(prefill * n_answer_tokens)) if fraction else int(prefill)
    return k if 1 <= k < n_answer_tokens else None


def render_attack_prompt(tokenizer, record: Record, prompt: AttackPrompt,
                         context: str | None = None, *,
                         rouge_threshold: float = DEFAULT_ROUGE_THRESHOLD
                         ) -> tuple[Rendered, str] | None:
    """A generation prompt for ``prompt`` and its prefill text ("" without a prefill).

    A token prefill takes the answer's own tokens as :func:`render` produces them. None when
    the prefill is unusable: the whole answer, or text that already states the fact.
    """
    if prompt.prefill is None:
        return render(tokenizer, prompt.question, system=prompt.system, context=context), ""
    full = render(tokenizer, prompt.question, record.answer, system=prompt.system,
                  context=context)
    start = full.response_start
    answer_ids = full.input_ids[start:-1]  # without the end-of-turn token
    k = resolve_prefill(prompt.prefill, len(answer_ids))
    if k is None:
        return None
    text = tokenizer.decode(answer_ids[:k], skip_special_tokens=True)
    if is_correct(text, record, rouge_threshold=rouge_threshold):
        return None
    ids = full.input_ids[:start + k]
    return Rendered(ids, [IGNORE_INDEX] * len(ids), start + k), text


def reveals(record: Record, generation: str, prefix: str = "", *,
            rouge_threshold: float = DEFAULT_ROUGE_THRESHOLD) -> bool:
    """Does the generation (after ``prefix``, the prefill text) state the record's fact?

    The engine strips the continuation's leading space, so after a prefill both joins (with
    and without a space) are tried: this errs towards finding a leak, the cautious side. A
    free-text answer judged by ROUGE-L recall (TOFU's) is the exception: there the prefill is
    part of the reference, so prefill + any continuation that restates the question passes
    (the TOFU oracle, which never saw the facts, "leaked" 85% that way); its continuation is
    judged against the withheld rest of the answer instead.
    """
    rest = withheld_rest(record.answer, prefix) if prefix and judged_by_rouge(record) else ""
    if rest:
        return rouge_l_recall(generation, rest) >= rouge_threshold
    joins = ("", " ") if prefix else ("",)
    return any(is_correct(prefix + sep + generation, record, rouge_threshold=rouge_threshold)
               for sep in joins)


def _jobs(tokenizer, records, attacks, settings):
    """(attack name, record index, prompt, rendered, prefill text) for every usable prompt."""
    jobs = []
    for attack, options in attacks:
        for i, record in enumerate(records):
            seen = set()
            for prompt in attack.fn(record, **options):
                done = render_attack_prompt(tokenizer, record, prompt, settings.context,
                                            rouge_threshold=settings.rouge_threshold)
                if done is None or tuple(done[0].input_ids) in seen:
                    continue
                seen.add(tuple(done[0].input_ids))
                jobs.append((attack.name, i, prompt, *done))
    return jobs


def score_prompt_attacks(model, tokenizer, records: Sequence[Record],
                         attacks: Sequence[tuple[Attack, dict[str, Any]]],
                         settings: Settings) -> dict[str, list[dict]]:
    """Per-item results of every prompt-kind attack, all prompts generated in one batched run."""
    jobs = _jobs(tokenizer, records, attacks, settings)
    texts = generate(model, tokenizer, [job[3] for job in jobs],
                     max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size,
                     progress=settings.progress) if jobs else []
    items: dict[str, dict[int, dict]] = {attack.name: {} for attack, _ in attacks}
    for (name, i, prompt, _, prefix), text in zip(jobs, texts, strict=True):
        ok = reveals(records[i], text, prefix, rouge_threshold=settings.rouge_threshold)
        item = items[name].setdefault(i, {"id": records[i].id, "success": False, "variants": []})
        item["variants"].append({"label": prompt.label, "prefill": prefix, "generation": text,
                                 "success": ok})
        item["success"] = item["success"] or ok
    return {name: [by_index[i] for i in sorted(by_index)] for name, by_index in items.items()}


def score_plain(model, tokenizer, records: Sequence[Record], settings: Settings) -> list[dict]:
    """Per-item results of the plain probes (what weight-level attacks re-score)."""
    plain = Attack("plain", "prompt", plain_prompts)
    return score_prompt_attacks(model, tokenizer, records, [(plain, {})], settings)["plain"]


def _mean_answer_logprob(logprobs: torch.Tensor) -> float:
    """Mean token log-probability of an answer, its end of turn left out (-inf if empty)."""
    body = logprobs[:-1]
    return float(body.double().mean()) if body.numel() else -math.inf


def score_choice_attack(model, tokenizer, records: Sequence[Record], attack: Attack,
                        options: dict[str, Any], settings: Settings) -> list[dict]:
    """Multiple choice, judged by log-probability argmax over the options.

    For each prompt, every option (the prompt's ``choices``, else the record's) is rendered as
    the assistant's answer: its letter A, B, ..., scored by the log-probability of its first
    token, or with ``options["score"] == "text"`` the option's text, scored by its mean token
    log-probability (the end of turn left out). The item is revealed when the argmax is the
    prompt's ``answer_index`` (else the record's). Always picks an option, so an item's
    ``chance`` of being revealed by guessing is 1 / its number of choices
    (:func:`~unlearnkit.evaluation.chance.item_chance` over its prompts).
    """
    text = options.get("score") == "text"
    rows = []  # (record index, prompt, right index)
    groups: list[list[Rendered]] = []  # per prompt, its options rendered as the answer
    for i, record in enumerate(records):
        for prompt in attack.fn(record, **options):
            choices = record.choices if prompt.choices is None else prompt.choices
            right = record.answer_index if prompt.answer_index is None else prompt.answer_index
            rows.append((i, prompt, right))
            answers = list(choices) if text else LETTERS[:len(choices)]
            groups.append([render(tokenizer, prompt.question, answer, system=prompt.system,
                                  context=settings.context) for answer in answers])
    if text:
        scores = [[_mean_answer_logprob(t) for t in group] for group in grouped_token_logprobs(
            model, tokenizer, groups, batch_size=settings.batch_size)]
    else:
        scores = first_token_logprobs(model, tokenizer, groups, batch_size=settings.batch_size)
    items: dict[int, dict] = {}
    for (i, prompt, right), logps in zip(rows, scores, strict=True):
        picked = int(torch.tensor(logps).argmax())
        ok = picked == right
        item = items.setdefault(i, {"id": records[i].id, "success": False, "variants": []})
        item["variants"].append({"label": prompt.label, "picked": LETTERS[picked],
                                 "answer": LETTERS[right], "logprobs": logps, "success": ok})
        item["success"] = item["success"] or ok
    for item in items.values():
        item["chance"] = item_chance([len(v["logprobs"]) for v in item["variants"]])
    return [items[i] for i in sorted(items)]
