"""Is an answer language? A judge model's likelihood of it, against the setup's gold answers.

The degenerate-answer test (:func:`unlearnkit.evaluation.metrics.is_degenerate`) catches
loops; word salad that does not repeat ("Nikii, like many others, in Irred meathee, was in
Abzd 'al' mere hours...") passes it. Here a judge model reads each answer after its question
(chat template, teacher-forced) and gives it a score: the mean negative log-likelihood per
answer token, the end-of-turn token left out (an answer cut at the token limit has none), or
that of its first line alone when higher (a list repeating a pattern predicts its own later
lines, which hides the nonsense of the first: :func:`answer_score`). An
answer is *unlikely* when it scores above every gold answer of the setup, scored the same
way, or when it holds bytes that are not text (:func:`has_broken_bytes`: a mangled name
"Al-Ku\ufffdwelkusi" the judge may pass, since it reads the replacement character as a
character): the gold answers are fluent by construction, and a judge that has never seen the forget
set's facts finds a true answer and a made-up fluent one equally new, so the line separates
language from salad rather than right from wrong. The judge must therefore not know the
forget facts: the base model before any injection, not the model that was unlearned.

Measured on both benches with the default model as judge (docs/RESULTS.md, "A judge of
language"): no answer of the oracle, prompt-only, refusal SFT, IdkDPO or ensemble rows is
unlikely; the judge flags invented words, mangled names and (by their first line) lists that
repeat a pattern, and passes salad of one line that reads like a list of names, so it is
shown beside the degenerate share, not judged. A refusal is language
by definition and is never counted (it is not scored).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch

from unlearnkit.data.render import render
from unlearnkit.errors import UnlearnError
from unlearnkit.models.engine import token_logprobs


def answer_nll(logprobs: torch.Tensor) -> float:
    """Mean negative log-probability of an answer's tokens, the last (end-of-turn) left out;
    NaN when no token is left (an empty answer)."""
    if len(logprobs) < 2:
        return math.nan
    return float(-logprobs[:-1].double().mean())


def unlikely_threshold(reference: Sequence[float]) -> float:
    """The highest score of the gold answers: an answer above it is unlikelier than all."""
    finite = [s for s in reference if math.isfinite(s)]
    if not finite:
        raise UnlearnError("the fluency judge has no gold answer to compare with: the setup's "
                           "forget and retain records need answers")
    return max(finite)


def is_unlikely(score: float, threshold: float) -> bool:
    """Above the threshold; an empty answer (NaN) counts as unlikely, -inf (an answer that is
    language by other means: a refusal) never does."""
    return math.isnan(score) or score > threshold


def first_line(text: str) -> str | None:
    """The first non-empty line of a text of several, stripped; None for one line or none."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if len(lines) > 1 else None


def answer_score(whole: float, first: float | None) -> float:
    """The higher of the whole answer's score and its first line's (None: one line; NaN:
    nothing to score). A list that repeats a pattern predicts itself after the first line
    ("Co Holder,\nCo Sultan,\nCo Tzar,..." 1.95 nats per token as a whole, 7.18 its first
    line, after a TOFU question): the copies hide the first line's nonsense."""
    if first is None or math.isnan(first):
        return whole
    return first if math.isnan(whole) else max(whole, first)


def has_broken_bytes(text: str) -> bool:
    """A replacement character (U+FFFD) before the end: the model emitted byte tokens that form
    no UTF-8 character ("Basil Mahfouz Al-Ku\ufffdwelkusi"), which no gold answer has. A whole
    generation decodes valid tokens into valid text, so only one cut at the token limit may
    end inside a character: trailing replacement characters (and spaces) do not count."""
    return "\ufffd" in _TRAILING.sub("", text)


_TRAILING = re.compile(r"[\s\ufffd]+$")


def score_parts(model, tokenizer, pairs: Sequence[tuple[str, str]], *,
                batch_size: int = 16) -> list[tuple[float, float | None]]:
    """Per (question, answer) under ``model``: :func:`answer_nll` of the answer (NaN when
    empty) and, for an answer of several lines, of its first line alone (else None)."""
    todo = [(i, q, a) for i, (q, a) in enumerate(pairs) if a.strip()]
    firsts = [(i, q, line) for i, q, a in todo if (line := first_line(a)) is not None]
    jobs = [(("whole", i), q, a) for i, q, a in todo] + [(("first", i), q, a)
                                                         for i, q, a in firsts]
    items = [render(tokenizer, q, a) for _, q, a in jobs]
    nll = {key: answer_nll(lp) for (key, _, _), lp in zip(
        jobs, token_logprobs(model, tokenizer, items, batch_size=batch_size), strict=True)}
    return [(nll.get(("whole", i), math.nan), nll.get(("first", i)))
            for i in range(len(pairs))]


def score_answers(model, tokenizer, pairs: Sequence[tuple[str, str]], *,
                  batch_size: int = 16) -> list[float]:
    """:func:`answer_score` of each (question, answer)'s :func:`score_parts`; empty answers
    NaN."""
    return [answer_score(whole, first) for whole, first in score_parts(
        model, tokenizer, pairs, batch_size=batch_size)]
