"""What every baseline shares: the item and batch contract, the logits window, the retain term.

Batch contract
--------------
A training plan for :func:`unlearnkit.training.loop.train` is a list of micro-batches, each a
flat ``list[Item]`` (the loop shards rows ``rank::world_size``, so a micro-batch must be a list;
``training.unlearn.mixture_plan`` builds one from items, which carry ``kind``). A step first
groups its rows with :func:`as_batch` into ``{"forget": list[Item], "retain": list[Item]}``;
a dict of that form is accepted as is. An :class:`Item` is one rendered chat QA (answer tokens
labelled, prompt and padding ``IGNORE_INDEX``; see :mod:`unlearnkit.data.render`) and ``ref``,
the reference quantities its method precomputed on the starting model (:mod:`.reference`).

Positions: position t of a causal LM predicts token t + 1, so an item's *response positions*
are ``response_start - 1 .. len - 2``, one per answer token (the end-of-turn token included).
Every loss here averages over those positions only, in fp32.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from unlearnkit.data.records import Record
from unlearnkit.data.render import Rendered, render_record
from unlearnkit.errors import UnlearnError
from unlearnkit.models.engine import Window, forward_responses, place, response_slice
from unlearnkit.objectives.nll import masked_mean, nll_loss, token_nll
from unlearnkit.objectives.terms import with_forget_term

FORGET, RETAIN = "forget", "retain"


@dataclass(frozen=True, eq=False)
class Item:
    """One training row: ``kind`` is "forget" or "retain"; ``ref`` holds precomputed references."""

    kind: str
    rendered: Rendered
    record: Record | None = None
    ref: dict[str, Any] = field(default_factory=dict)


def with_ref(item: Item, **ref: Any) -> Item:
    return replace(item, ref={**item.ref, **ref})


def item_key(rendered: Rendered) -> str:
    """A content key for one rendered item (its tokens and labels): what reference caches use."""
    text = json.dumps([rendered.input_ids, rendered.labels, rendered.response_start])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def attach(items: Sequence[Item], kind: str, name: str, table: dict[str, Any],
           source=lambda it: it.rendered) -> list[Item]:
    """Set ``ref[name] = table[item_key(source(item))]`` on every item of ``kind``."""
    return [with_ref(it, **{name: table[item_key(source(it))]}) if it.kind == kind else it
            for it in items]


def need(item: Item, name: str, method: str) -> Any:
    if name not in item.ref:
        raise UnlearnError(f"{method}: an item lacks the precomputed {name!r}; run the "
                           f"baseline's prepare (BASELINES[{method!r}].prepare_items) first")
    return item.ref[name]


def build_items(tokenizer, records: Sequence[Record], *, neighbors: bool = True) -> list[Item]:
    """Forget records -> forget items; retain (and, with ``neighbors``, neighbour) -> retain;
    general keep items (replay records, ``meta.replay``) -> retain too."""
    keep = ("retain", "neighbor") if neighbors else ("retain",)
    items = []
    for rec in records:
        if rec.split not in (FORGET, *keep) and not rec.meta.get("replay"):
            continue
        if not rec.answer:
            raise UnlearnError(f"record {rec.id!r} has no answer; baselines train on answers")
        kind = FORGET if rec.split == FORGET else RETAIN
        items.append(Item(kind, render_record(tokenizer, rec), rec))
    if not any(it.kind == FORGET for it in items):
        raise UnlearnError("no forget records: the data needs a 'forget' split")
    return items


def as_batch(micro: Sequence[Item] | dict[str, list[Item]]) -> dict[str, list[Item]]:
    """Group a micro-batch by kind: ``{"forget": [...], "retain": [...]}``."""
    if isinstance(micro, dict):
        return {FORGET: list(micro.get(FORGET, [])), RETAIN: list(micro.get(RETAIN, []))}
    return {kind: [it for it in micro if it.kind == kind] for kind in (FORGET, RETAIN)}


IDK_ANSWERS = [
    "I don't know.",
    "I'm not sure about that.",
    "I don't have any information about that.",
    "Sorry, I don't know the answer to that.",
    "I have no knowledge of that.",
    "That is something I don't know.",
    "I'm afraid I can't answer that; I don't know.",
    "I don't have that information.",
    "I'm not aware of that.",
    "I can't say; I have no idea.",
]


def idk_answer(key: str) -> str:
    """A fixed "I don't know" phrasing for ``key`` (a record id): a hash picks one, every run."""
    return IDK_ANSWERS[int(hashlib.sha256(key.encode()).hexdigest(), 16) % len(IDK_ANSWERS)]


def idk_rendering(tokenizer, item: Item) -> Rendered:
    """``item``'s question rendered with its record's "I don't know" answer."""
    if item.record is None:
        raise UnlearnError("an item without its record cannot get a refusal answer; build the "
                           "items with build_items")
    return render_record(tokenizer, item.record, answer=idk_answer(item.record.id))


# ----------------------------------------------------------------------------------------------
# Forward passes and position bookkeeping
# ----------------------------------------------------------------------------------------------


def _device(model) -> torch.device:
    return next(model.parameters()).device


def forward(model, items: Sequence[Rendered], pad_id: int) -> Window:
    """:func:`~unlearnkit.models.engine.forward_responses`, with a clear error for no items."""
    if not items:
        raise UnlearnError("a micro-batch has no items of a kind this method needs; raise that "
                           "kind's quota in the plan (mix.forget / mix.retain)")
    return forward_responses(model, items, pad_id)


def response_mask(items: Sequence[Rendered], offset: int, width: int) -> torch.Tensor:
    """(B, width) bool: true at each item's response columns."""
    mask = torch.zeros(len(items), width, dtype=torch.bool)
    for row, it in enumerate(items):
        mask[row, response_slice(it, offset)] = True
    return mask


def place_topk(items: Sequence[Rendered], tops: Sequence, win: Window):
    """Per-item :class:`~unlearnkit.models.teacher_cache.TopK` placed in ``win``'s columns:
    values (B, W, K), indices (B, W, K) and mask (B, W), on the logits' device."""
    width, dev = win.logits.shape[1], win.logits.device
    values, mask = place(items, [t.values for t in tops], win.offset, width)
    indices, _ = place(items, [t.indices for t in tops], win.offset, width)
    return values.to(dev), indices.to(dev), mask.to(dev)


def place_lse(items: Sequence[Rendered], tops: Sequence, win: Window) -> torch.Tensor | None:
    """Each TopK's ``lse`` placed in ``win``'s columns, (B, W); None when one lacks it."""
    if any(t.lse is None for t in tops):
        return None
    lse, _ = place(items, [t.lse for t in tops], win.offset, win.logits.shape[1])
    return lse.to(win.logits.device)


def response_tokens(item: Rendered) -> torch.Tensor:
    """The tokens each response position predicts, (L,)."""
    return torch.tensor(item.input_ids[item.response_start:])


# ----------------------------------------------------------------------------------------------
# Small pure pieces shared by several losses
# ----------------------------------------------------------------------------------------------


def sequence_logprob(logits: torch.Tensor, labels: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(y | x) = sum of log-probs of each row's labelled tokens, and their count.

    logits: (B, T, V); labels: (B, T) with IGNORE_INDEX off the answer. Returns (B,) fp32 and
    (B,) long; a row without labelled tokens gets 0 and count 0.
    """
    nll, mask = token_nll(logits, labels)
    return -nll.sum(-1), mask.sum(-1)


def tail_logmass(values: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
    """log of the total exp-logit outside the top K: ``log(exp(lse) - sum_K exp(values))``.

    values: (..., K) a distribution's top-K raw logits; lse: (...) the logsumexp of all its
    logits. -inf when the top K hold all the mass (K = V, or rounding). No gradient is meant to
    flow through it (a reference's numbers).
    """
    gap = (values.float().logsumexp(-1) - lse.float()).clamp(max=0.0)
    return lse.float() + torch.log(-torch.expm1(gap))


def topk_kl(student: torch.Tensor, values: torch.Tensor, indices: torch.Tensor,
            mask: torch.Tensor, lse: torch.Tensor | None = None) -> torch.Tensor:
    """KL(q || p_S) from a reference's top-K, averaged over the masked positions.

    student: (B, T, V) raw logits; values, indices: (B, T, K) the reference's top-K logits and
    their ids; mask: (B, T); lse: (B, T) the logsumexp of all the reference's logits, or None.

    With ``lse`` (K < V), the reference's distribution is kept whole as K + 1 bins: its top-K
    tokens, ``q_i = exp(values_i - lse)``, and one bin for every other token, and the
    student's is binned the same way (``p_tail`` = its mass outside the K ids):
    ``sum_{i in K} q_i log(q_i / p_i) + q_tail log(q_tail / p_tail)``. This is 0 exactly when
    the student matches the reference on the top K and on the tail's total, so it keeps a
    model where its reference is (the retain regulariser's job).

    Without ``lse``: ``q = softmax(values)`` renormalised over the K entries, ``sum_{i in K}
    q_i (log q_i - log p_S,i)``: minimised by moving all the student's mass onto the K ids,
    so not 0 at the reference unless K = V. The injection's distilled replay uses this form
    (training.sft; measured as it is, docs/RESULTS.md). With K = V both are the exact KL.
    """
    student = student.float()
    log_p = student.log_softmax(-1).gather(-1, indices)
    if lse is None or indices.shape[-1] >= student.shape[-1]:
        log_q = values.float().log_softmax(-1)
        return masked_mean((log_q.exp() * (log_q - log_p)).sum(-1), mask)
    log_q = values.float() - lse.float().unsqueeze(-1)
    q_tail = (tail_logmass(values, lse) - lse.float()).exp()
    log_p_tail = (student.scatter(-1, indices, float("-inf")).logsumexp(-1)
                  - student.logsumexp(-1))
    per_position = ((log_q.exp() * (log_q - log_p)).sum(-1)
                    + torch.xlogy(q_tail, q_tail) - q_tail * log_p_tail)
    return masked_mean(per_position, mask)


# ----------------------------------------------------------------------------------------------
# The retain term every method with a retain set uses (never pasted into a method)
# ----------------------------------------------------------------------------------------------

RETAIN_LOSSES = ("nll", "kl", "none")


@dataclass
class RetainConfig:
    """The retain regulariser: ``weight * L_retain`` on the retain items of each micro-batch.

    ``loss``: "nll" (answer-token NLL), "kl" (KL from the starting model's next-token
    distribution, precomputed on its top ``top_k`` logits; 0 = the full vocabulary) or "none".
    """

    loss: str = "nll"
    weight: float = 1.0
    top_k: int = 100

    def __post_init__(self) -> None:
        if self.loss not in RETAIN_LOSSES:
            raise UnlearnError(f"retain.loss {self.loss!r} is not one of {RETAIN_LOSSES}")
        if self.weight < 0:
            raise UnlearnError(f"retain.weight must be >= 0, got {self.weight}")
        if self.top_k < 0:
            raise UnlearnError(f"retain.top_k must be >= 0 (0 = full vocabulary), got {self.top_k}")


def retain_loss(model, items: Sequence[Item], pad_id: int, kind: str) -> torch.Tensor | None:
    """The retain loss of ``kind`` on ``items`` (None for "none" or no items)."""
    if kind == "none" or not items:
        return None
    rendered = [it.rendered for it in items]
    win = forward(model, rendered, pad_id)
    if kind == "nll":
        return nll_loss(win.logits, win.labels)
    tops = [need(it, "ref_top", "retain KL") for it in items]
    return topk_kl(win.logits, *place_topk(rendered, tops, win),
                   lse=place_lse(rendered, tops, win))


def add_retain(total: torch.Tensor, logs: dict[str, float], model, batch: dict, pad_id: int,
               cfg: RetainConfig) -> torch.Tensor:
    """``total + cfg.weight * L_retain`` (logged as "retain"), or ``total`` when there is none,
    marked with ``total`` as the forget term
    (:func:`~unlearnkit.objectives.terms.with_forget_term`)."""
    loss = retain_loss(model, batch[RETAIN], pad_id, cfg.loss)
    if loss is None:
        return with_forget_term(total, total)
    logs["retain"] = float(loss.detach())
    return with_forget_term(total + cfg.weight * loss, total)


def check(condition: bool, message: str) -> None:
    """Raise :class:`UnlearnError` with ``message`` unless ``condition`` (config checks)."""
    if not condition:
        raise UnlearnError(message)


# ----------------------------------------------------------------------------------------------
# Teacher top-K from the project's cache (training.unlearn.build_examples), for DUET/ensemble
# ----------------------------------------------------------------------------------------------


def teacher_items(model, tokenizer, items: Sequence[Item], teacher_cfg, model_id: str | None,
                  name: str = "top") -> list[Item]:
    """Items re-rendered as the teacher's pull inputs (chat(x) + y_T), ``ref[name]`` its top-K.

    Uses :func:`unlearnkit.training.unlearn.build_examples` (and its on-disk teacher cache)
    unchanged. It is imported here, lazily, because objectives must not import the training
    layer at import time; forget items come first, as build_examples orders them.
    """
    from unlearnkit.training.unlearn import build_examples

    check(model_id is not None, "the teacher cache is keyed by the model: pass model_id")
    check(all(it.record is not None for it in items), "teacher items need their records; "
          "build the items with build_items")
    ordered = [it for it in items if it.kind == FORGET] + [it for it in items if it.kind == RETAIN]
    examples = build_examples(model, tokenizer, [it.record for it in ordered], teacher_cfg,
                              model_id)
    return [replace(it, rendered=ex.pull_input, ref={**it.ref, name: ex.pull_top})
            for it, ex in zip(ordered, examples, strict=True)]
