"""Relearning attack: fine-tune a copy on half the forget items, test the other half.

If unlearning only hid the knowledge, a few steps on *some* forget facts bring back the
*others* (which the copy never trained on). Each learning rate gets a fresh copy; the attack
reports the worst case (highest success rate) over the learning rates. A test item whose fact
a train item's question and answer already state (the leak judge, as the in-context attack
uses it) is left out: relearning it would be plain fine-tuning on its answer.

Half of a small forget set is few facts (11 on the scenario), so one split measures coarsely:
``splits`` repeats the attack over several splits and pools them, and the details keep the
test answers' mean NLL before and after relearning, which moves before a greedy answer flips:
over the whole answer, and over the tokens of its fact alone (its ``targets``), as the whole
answer's template words ("... was born in") are relearned from any other answer of its form.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence

import torch

from unlearnkit.data.records import Record
from unlearnkit.data.render import render
from unlearnkit.errors import UnlearnError
from unlearnkit.evaluation.attacks.prompts import gives_away
from unlearnkit.evaluation.attacks.registry import register_attack
from unlearnkit.evaluation.attacks.scoring import Settings, score_plain
from unlearnkit.evaluation.mia import loss_score
from unlearnkit.models.engine import token_logprobs
from unlearnkit.training.loop import OptimConfig
from unlearnkit.training.sft import finetune
from unlearnkit.training.unlearn import target_token_mask


def relearn_split(records: Sequence[Record], seed: int = 0) -> tuple[list[Record], list[Record]]:
    """(train half, test half): records sorted by id, shuffled by ``seed``, the first
    ``len // 2`` to train. Disjoint, and fixed by the seed whatever the input order."""
    order = sorted(records, key=lambda r: r.id)
    random.Random(seed).shuffle(order)
    half = len(order) // 2
    return order[:half], order[half:]


def _rate(items: list[dict]) -> float:
    return sum(item["success"] for item in items) / len(items) if items else 0.0


def true_answer_nll(model, tokenizer, records: Sequence[Record], context: str | None = None
                    ) -> list[tuple[float, float | None]]:
    """Per record, the mean negative log-likelihood (nats per token) of its true answer after
    its question, teacher-forced: how far the model is from stating the fact, which moves
    before the greedy answer does. Two means: over the whole answer (end of turn included:
    :func:`~unlearnkit.evaluation.mia.loss_score`), and over the answer tokens that overlap
    one of its ``targets`` (:func:`~unlearnkit.training.unlearn.target_token_mask`; None when
    the answer states none of them)."""
    rendered = [render(tokenizer, r.question, r.answer, system=r.system, context=context)
                for r in records]
    out = []
    for rec, lp in zip(records, token_logprobs(model, tokenizer, rendered), strict=True):
        mask = target_token_mask(tokenizer, rec.answer or "", rec.targets)
        fact = None if mask is None else -float(lp[torch.tensor(mask)].mean())
        out.append((loss_score(lp), fact))
    return out


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _nll_means(pairs: list[tuple[float, float | None]]) -> tuple[float | None, float | None]:
    """(mean whole-answer NLL, mean fact-token NLL over the answers that state a target)."""
    return _mean([w for w, _ in pairs]), _mean([f for _, f in pairs if f is not None])


def _one_split(model, tokenizer, answered: list[Record], settings: Settings, lrs, epochs: int,
               batch_size: int, seed: int) -> dict | None:
    """One train/test split: the test half's items at every lr, its answers' NLL before and
    after, and what the details name. When the split leaves nothing to train or test: only
    the ids the train half states (``{"stated": [...]}``), or None when there are none."""
    train_set, halves = relearn_split(answered, seed)
    test_set = [r for r in halves
                if not any(gives_away(t, r, settings.rouge_threshold) for t in train_set)]
    stated = [r.id for r in halves if r.id not in {x.id for x in test_set}]
    if not train_set or not test_set:
        return {"stated": stated} if stated else None
    before = score_plain(model, tokenizer, test_set, settings)
    nll_before = true_answer_nll(model, tokenizer, test_set, settings.context)
    runs = {}
    for lr in lrs:
        twin = copy.deepcopy(model)
        cfg = OptimConfig(lr=lr, warmup_ratio=0.0, schedule="constant")
        log = finetune(twin, tokenizer, train_set, cfg, epochs=epochs, batch_size=batch_size,
                       seed=seed, desc=f"relearn lr={lr:g}")
        runs[lr] = (score_plain(twin, tokenizer, test_set, settings), len(log),
                    true_answer_nll(twin, tokenizer, test_set, settings.context))
        del twin
    return {"seed": seed, "train": train_set, "test": test_set, "stated": stated,
            "before": before, "nll_before": nll_before, "runs": runs}


@register_attack("relearn", kind="custom", family="relearning")
def relearn_attack(model, tokenizer, records: Sequence[Record], settings: Settings, *,
                   lrs: Sequence[float] = (1e-5, 1e-4), epochs: int = 2, batch_size: int = 4,
                   seed: int = 0, splits: int = 1) -> dict:
    """For each lr: a deep copy, :func:`finetune` (constant lr, no warmup) for ``epochs`` over
    the train half, then the plain probes of the test half (less the items the train half
    states, listed in ``details`` as ``stated_by_train``). Items: those of the worst lr;
    ``details`` has the test half's rate before relearning and the rate at every lr, and the
    mean NLL of the test answers before and at every lr (``answer_nll_before``, ``_by_lr``),
    and of their fact tokens alone (``target_nll_before``, ``_by_lr``; None when no test
    answer states one of its ``targets``).

    ``splits`` > 1 repeats that over that many splits (seeds ``seed``, ``seed + 1``, ...), each
    relearning from the unlearned model: the items are every split's test items at the lr that
    is worst over all of them (a record tested in two splits counts twice), and ``details``
    pools the rates and NLLs and lists each split's own under ``splits``."""
    if not lrs:
        raise UnlearnError("relearn: 'lrs' is empty; give at least one learning rate")
    if splits < 1:
        raise UnlearnError(f"relearn: 'splits' is the number of train/test splits, at least 1; "
                           f"got {splits}")
    answered = [r for r in records if r.answer]
    done = [_one_split(model, tokenizer, answered, settings, lrs, epochs, batch_size, seed + i)
            for i in range(splits)]
    used = [d for d in done if d is not None and "runs" in d]
    stated = sorted({i for d in done if d for i in d["stated"]})
    if not used:
        return {"items": [], "details": {
            "skipped": "needs two answered forget records, one of whose facts no other states",
            "stated_by_train": stated}}
    pooled = {lr: [it for d in used for it in d["runs"][lr][0]] for lr in lrs}
    worst = max(lrs, key=lambda lr: _rate(pooled[lr]))
    before = _nll_means([x for d in used for x in d["nll_before"]])
    after = {str(lr): _nll_means([x for d in used for x in d["runs"][lr][2]]) for lr in lrs}
    details = {
        "rate_before": _rate([it for d in used for it in d["before"]]),
        "rate_by_lr": {str(lr): _rate(items) for lr, items in pooled.items()},
        "answer_nll_before": before[0],
        "answer_nll_by_lr": {lr: pair[0] for lr, pair in after.items()},
        "target_nll_before": before[1],
        "target_nll_by_lr": {lr: pair[1] for lr, pair in after.items()},
        "worst_lr": worst,
    }
    if splits == 1:
        one = used[0]
        details = {"train_ids": [r.id for r in one["train"]],
                   "test_ids": [r.id for r in one["test"]], "stated_by_train": stated,
                   **details, "steps": one["runs"][worst][1]}
    else:
        details |= {"stated_by_train": stated, "splits": [
            {"seed": d["seed"], "train_ids": [r.id for r in d["train"]],
             "test_ids": [r.id for r in d["test"]],
             "rate_by_lr": {str(lr): _rate(d["runs"][lr][0]) for lr in lrs},
             "steps": d["runs"][worst][1]}
            for d in used]}
    return {"items": pooled[worst], "details": details}


# what reports show of the attack: its key in readings(), and its title; and what they say
READINGS = (("rate_before", "success before"), ("rate", "success after"),
            ("answer_nll_before", "answer NLL before"), ("answer_nll", "answer NLL after"),
            ("target_nll_before", "fact NLL before"), ("target_nll", "fact NLL after"))
READINGS_NOTE = ("The relearning attack fine-tunes a copy of the model on half the forget "
                 "questions and asks the other half: success of that half before and after "
                 "(at the worst learning rate), and the mean NLL (nats per token) of its true "
                 "answers, whole and over the fact's tokens alone, before and after. An "
                 "answer's template words are relearned from any answer of its form, so the "
                 "fact tokens' NLL is the closer reading of the fact itself.")


def readings(success_rate: float | None, details: dict) -> dict[str, float | None] | None:
    """The attack's figures at its worst learning rate, keyed as :data:`READINGS`: the test
    items' success rate before relearning and after it, and the mean NLL of their whole
    answers and of their fact tokens, before and after (None where no test answer states a
    target, or the results predate the figure). None when the attack was skipped."""
    if success_rate is None or "worst_lr" not in details:
        return None
    worst = str(details["worst_lr"])
    return {"rate_before": details.get("rate_before"), "rate": success_rate,
            "answer_nll_before": details.get("answer_nll_before"),
            "answer_nll": (details.get("answer_nll_by_lr") or {}).get(worst),
            "target_nll_before": details.get("target_nll_before"),
            "target_nll": (details.get("target_nll_by_lr") or {}).get(worst)}
