"""Is a generation correct? One judge for every place that asks (metrics, accuracy, attacks).

:func:`is_correct` is the rule:

1. A record with short ``targets`` (names, numbers, dates): normalised whole-word containment
   of any target in the generation (:func:`contains_answer`).
2. Without targets, a short answer (at most :data:`SHORT_ANSWER_WORDS` words) is its own
   target: containment of the whole answer.
3. Without targets, a longer answer (TOFU's free-text answers): ROUGE-L recall of the gold
   answer in the generation (:func:`rouge_l_recall`) at least ``rouge_threshold``.

Why containment for short answers: a 2-word gold answer has recall 0, 0.5 or 1, so "Michelle
Obama" would pass as "Barack Obama" at 0.5. Containment implies recall 1, so rule 3 only ever
adds generations to what rule 2 would accept.

Choice of :data:`DEFAULT_ROUGE_THRESHOLD` = 0.5, measured on TOFU forget01 (40 records; see
docs/RESULTS.md, "Correctness of long answers", and ``benchmarks/tofu_rouge_threshold.py``).
No threshold separates a correct paraphrase from a wrong one: TOFU's perturbed answers are the
paraphrased answer with the fact swapped, and ROUGE-L scores wording, not facts (paraphrased
answers score 0.21-0.80 against the gold answer, perturbed ones 0.16-0.71; the best
threshold, 0.35, classifies only 63% of each correctly on average). What a threshold can
separate is the gold wording from a wrong answer: 0.5 accepts 38 of 40 gold answers cut to
the first 32 tokens of the default model's tokenizer (what ``max_new_tokens=32`` leaves of a
verbatim answer) and rejects 86.5% of the 200 perturbed answers; 0.6 would reject 92% of the
perturbed answers but accept only 85% of the cut gold answers. 0.5 errs towards counting a
leak, the cautious side for a forget evaluation. Give short ``targets`` where facts matter.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Protocol

from unlearnkit.errors import UnlearnError

_PUNCT = re.compile(r"[^\w\s]")
DEFAULT_ROUGE_THRESHOLD = 0.5
SHORT_ANSWER_WORDS = 4


class Judgeable(Protocol):
    """What :func:`is_correct` reads from a record."""

    targets: list[str]
    answer: str | None


def normalize(text: str) -> str:
    """Lower-case, strip accents and punctuation, collapse whitespace."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def contains_answer(generation: str, targets: list[str], answer: str | None = None) -> bool:
    """True when any target (or, without targets, the whole answer) appears as whole words."""
    refs = targets or ([answer] if answer else [])
    gen = f" {normalize(generation)} "
    return any(f" {normalize(ref)} " in gen for ref in refs if normalize(ref))


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l_recall(generation: str, reference: str) -> float:
    """ROUGE-L recall: LCS(generation, reference) / |reference| in rouge-score's tokens
    (lower-cased alphanumeric words, no stemming). Empty output scores 0."""
    if not generation.strip():
        return 0.0
    return float(_rouge_scorer().score(reference, generation)["rougeL"].recall)


def judgeable(record: Judgeable) -> bool:
    """Whether :func:`is_correct` can judge the record: it has targets or an answer."""
    return bool(record.targets or record.answer)


def is_correct(generation: str, record: Judgeable, *,
               rouge_threshold: float = DEFAULT_ROUGE_THRESHOLD) -> bool:
    """Does ``generation`` state the record's fact (rules 1-3 of the module docstring)?

    False for a record that is not :func:`judgeable`; callers that must tell "wrong" from
    "cannot judge" check :func:`judgeable` first.
    """
    if record.targets or not record.answer:
        return contains_answer(generation, record.targets)
    if not judged_by_rouge(record):
        return contains_answer(generation, [], record.answer)
    return rouge_l_recall(generation, record.answer) >= rouge_threshold


def judged_by_rouge(record: Judgeable) -> bool:
    """Rule 3 applies: no targets and an answer longer than :data:`SHORT_ANSWER_WORDS`."""
    return (not record.targets and bool(record.answer)
            and len(normalize(record.answer).split()) > SHORT_ANSWER_WORDS)


def withheld_rest(answer: str, prefix: str) -> str:
    """The answer's words after as many words as ``prefix`` has (normalised; a prefix that
    ends inside a word counts that word as given)."""
    return " ".join(normalize(answer).split()[len(normalize(prefix).split()):])


def check_threshold(value: float, key: str = "correct_rouge_threshold") -> float:
    """``value`` when it lies in (0, 1]; else a clear error naming ``key``."""
    if not 0.0 < value <= 1.0:
        raise UnlearnError(f"{key} must be in (0, 1] (a ROUGE-L recall), got {value}")
    return value
