"""Is an answer language? A judge model's likelihood of it, against the setup's gold answers.

The degenerate-answer test (:func:`unlearnkit.evaluation.metrics.is_degenerate`) catches
loops; word salad that does not repeat ("Nikii, like many others, in Irred meathee, was in
Abzd 'al' mere hours...") passes it. Here a judge model reads each answer after its question
(chat template, teacher-forced) and gives it a score: the mean negative log-likelihood per
answer token, the end-of-turn token left out (an answer cut at the token limit has none). An
answer is *unlikely* when it scores above every gold answer of the setup, scored the same
way: the gold answers are fluent by construction, and a judge that has never seen the forget
set's facts finds a true answer and a made-up fluent one equally new, so the line separates
language from salad rather than right from wrong. The judge must therefore not know the
forget facts: the base model before any injection, not the model that was unlearned.

Measured on both benches with the default model as judge (docs/RESULTS.md, "A judge of
language"): no answer of the oracle, prompt-only, refusal SFT, IdkDPO or ensemble rows is
unlikely; the judge flags invented words and mangled names and passes salad that reads like a
list of names, so it is shown beside the degenerate share, not judged. A refusal is language
by definition and is never counted (it is not scored).
"""

from __future__ import annotations

import math
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


def score_answers(model, tokenizer, pairs: Sequence[tuple[str, str]], *,
                  batch_size: int = 16) -> list[float]:
    """:func:`answer_nll` of each (question, answer) under ``model``; empty answers NaN."""
    scores = [math.nan] * len(pairs)
    todo = [i for i, (_, answer) in enumerate(pairs) if answer.strip()]
    items = [render(tokenizer, pairs[i][0], pairs[i][1]) for i in todo]
    for i, logprobs in zip(todo, token_logprobs(model, tokenizer, items,
                                                batch_size=batch_size), strict=True):
        scores[i] = answer_nll(logprobs)
    return scores
