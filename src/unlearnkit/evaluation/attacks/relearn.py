"""Relearning attack: fine-tune a copy on half the forget items, test the other half.

If unlearning only hid the knowledge, a few steps on *some* forget facts bring back the
*others* (which the copy never trained on). Each learning rate gets a fresh copy; the attack
reports the worst case (highest success rate) over the learning rates. A test item whose fact
a train item's question and answer already state (the leak judge, as the in-context attack
uses it) is left out: relearning it would be plain fine-tuning on its answer.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence

from unlearnkit.data.records import Record
from unlearnkit.errors import UnlearnError
from unlearnkit.evaluation.attacks.prompts import gives_away
from unlearnkit.evaluation.attacks.registry import register_attack
from unlearnkit.evaluation.attacks.scoring import Settings, score_plain
from unlearnkit.training.loop import OptimConfig
from unlearnkit.training.sft import finetune


def relearn_split(records: Sequence[Record], seed: int = 0) -> tuple[list[Record], list[Record]]:
    """(train half, test half): records sorted by id, shuffled by ``seed``, the first
    ``len // 2`` to train. Disjoint, and fixed by the seed whatever the input order."""
    order = sorted(records, key=lambda r: r.id)
    random.Random(seed).shuffle(order)
    half = len(order) // 2
    return order[:half], order[half:]


def _rate(items: list[dict]) -> float:
    return sum(item["success"] for item in items) / len(items) if items else 0.0


@register_attack("relearn", kind="custom", family="relearning")
def relearn_attack(model, tokenizer, records: Sequence[Record], settings: Settings, *,
                   lrs: Sequence[float] = (1e-5, 1e-4), epochs: int = 2, batch_size: int = 4,
                   seed: int = 0) -> dict:
    """For each lr: a deep copy, :func:`finetune` (constant lr, no warmup) for ``epochs`` over
    the train half, then the plain probes of the test half (less the items the train half
    states, listed in ``details`` as ``stated_by_train``). Items: those of the worst lr;
    ``details`` has the test half's rate before relearning and the rate at every lr."""
    if not lrs:
        raise UnlearnError("relearn: 'lrs' is empty; give at least one learning rate")
    answered = [r for r in records if r.answer]
    train_set, halves = relearn_split(answered, seed)
    test_set = [r for r in halves
                if not any(gives_away(t, r, settings.rouge_threshold) for t in train_set)]
    stated = [r.id for r in halves if r.id not in {x.id for x in test_set}]
    if not train_set or not test_set:
        return {"items": [], "details": {
            "skipped": "needs two answered forget records, one of whose facts no other states",
            "stated_by_train": stated}}
    before = _rate(score_plain(model, tokenizer, test_set, settings))
    runs = {}
    for lr in lrs:
        twin = copy.deepcopy(model)
        cfg = OptimConfig(lr=lr, warmup_ratio=0.0, schedule="constant")
        log = finetune(twin, tokenizer, train_set, cfg, epochs=epochs, batch_size=batch_size,
                       seed=seed, desc=f"relearn lr={lr:g}")
        runs[lr] = (score_plain(twin, tokenizer, test_set, settings), len(log))
        del twin
    worst = max(runs, key=lambda lr: _rate(runs[lr][0]))
    details = {
        "train_ids": [r.id for r in train_set], "test_ids": [r.id for r in test_set],
        "stated_by_train": stated,
        "rate_before": before,
        "rate_by_lr": {str(lr): _rate(items) for lr, (items, _) in runs.items()},
        "steps": runs[worst][1], "worst_lr": worst,
    }
    return {"items": runs[worst][0], "details": details}
