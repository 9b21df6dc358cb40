"""Supervised fine-tuning on records (used to inject the scenario and by the oracle)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from unlearnkit.data.records import Record
from unlearnkit.data.render import IGNORE_INDEX, Rendered, render_record
from unlearnkit.models.engine import Window, eval_mode, forward_responses
from unlearnkit.models.teacher_cache import TopK
from unlearnkit.objectives.baselines.common import place_topk, topk_kl
from unlearnkit.objectives.nll import nll_loss
from unlearnkit.training.loop import OptimConfig, train


@dataclass(frozen=True, eq=False)
class Distilled:
    """An item whose answer positions are pulled toward a reference's top-K (KL) instead of
    trained by NLL on its answer tokens (e.g. replay prompts, kept close to the base model)."""

    rendered: Rendered
    top: TopK

    @property
    def input_ids(self) -> list[int]:
        return self.rendered.input_ids


def epoch_plan(items: Sequence, batch_size: int, epochs: int, seed: int, *,
               bucket: int = 0) -> list[list]:
    """Shuffled micro-batches for ``epochs`` passes, fixed by ``seed`` (the last may be short).

    ``bucket > 0`` groups items of similar length: each run of ``bucket`` batches is sorted by
    ``len(item.input_ids)`` before it is cut, then the epoch's batches are shuffled. Less
    padding, the same items per epoch.
    """
    rng = random.Random(seed)
    plan = []
    for _ in range(epochs):
        order = list(items)
        rng.shuffle(order)
        if bucket > 0:
            span = batch_size * bucket
            order = [x for i in range(0, len(order), span)
                     for x in sorted(order[i:i + span], key=lambda it: len(it.input_ids))]
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        if bucket > 0:
            rng.shuffle(batches)
        plan += batches
    return plan


def sft_step(pad_id: int, kd_weight: float = 1.0):
    """A step function for :func:`unlearnkit.training.loop.train`.

    Loss: mean answer-token NLL over the plain :class:`Rendered` rows, plus ``kd_weight`` times
    the mean top-K KL (:func:`~unlearnkit.objectives.baselines.common.topk_kl`) over the
    :class:`Distilled` rows; one forward pass for both.
    """

    def step(model, items: list):
        rendered = [it.rendered if isinstance(it, Distilled) else it for it in items]
        win = forward_responses(model, rendered, pad_id)
        plain = [r for r, it in enumerate(items) if not isinstance(it, Distilled)]
        kept = [r for r, it in enumerate(items) if isinstance(it, Distilled)]
        total = win.logits.new_zeros(())
        logs: dict[str, float] = {}
        if plain:
            part = _rows(win, plain)
            nll = nll_loss(part.logits, part.labels)
            total, logs["nll"] = total + nll, float(nll.detach())
        if kept:
            part = _rows(win, kept)
            kl = topk_kl(part.logits, *place_topk([rendered[r] for r in kept],
                                                  [items[r].top for r in kept], part))
            total, logs["kd"] = total + kd_weight * kl, float(kl.detach())
        return total, logs

    return step


def _rows(win: Window, rows: list[int]) -> Window:
    """``win`` restricted to ``rows``; the window itself (no copy of its logits) for all rows."""
    if len(rows) == win.logits.shape[0]:
        return win
    return Window(win.logits[rows], win.labels[rows], win.offset)


@torch.no_grad()
def learned(model, items: Sequence[Rendered], pad_id: int, batch_size: int = 32) -> list[bool]:
    """Per item: does greedy decoding reproduce its answer exactly? Teacher-forced, the argmax
    at every labelled position (the end-of-turn token included) is the label; that is exactly
    when greedy generation from the prompt returns the answer and stops."""
    out = []
    with eval_mode(model):
        for start in range(0, len(items), batch_size):
            win = forward_responses(model, items[start:start + batch_size], pad_id)
            out += greedy_reproduces(win.logits, win.labels).tolist()
    return out


def greedy_reproduces(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B,) bool: position t's argmax is label t + 1 wherever that label is not ignored."""
    nxt = labels[:, 1:]
    hit = (logits[:, :-1].argmax(-1) == nxt) | (nxt == IGNORE_INDEX)
    return hit.all(-1)


def stop_when_learned(model, items: Sequence[Rendered], pad_id: int, *, every: int,
                      after: int, log: list[dict] | None = None
                      ) -> Callable[[int, dict], bool]:
    """An ``on_step`` hook for :func:`~unlearnkit.training.loop.train`: every ``every`` steps
    from step ``after`` on, check :func:`learned` on ``items``; True (stop) when all are.
    Each check is appended to ``log`` (step, learned count)."""

    def on_step(step: int, logs: dict) -> bool:
        if step < after or step % every:
            return False
        flags = learned(model, items, pad_id)
        if log is not None:
            log.append({"step": step, "learned": sum(flags), "of": len(flags)})
        return all(flags)

    return on_step


def finetune(model, tokenizer, records: Sequence[Record], cfg: OptimConfig, *, epochs: int,
             batch_size: int, seed: int = 0, out_dir: Path | None = None,
             desc: str = "finetune", bucket: int = 8,
             references: Sequence[TopK | None] | None = None, kd_weight: float = 1.0,
             stop_after_epochs: int = 0, checks: list[dict] | None = None) -> list[dict]:
    """Fine-tune ``model`` in place on the records' answers; returns the training log.

    ``references[i]`` (optional, aligned with ``records``): a reference top-K for record i's
    answer positions; such records are distilled (KL) rather than trained by NLL.
    ``stop_after_epochs > 0``: from that epoch on, check at the end of every epoch whether
    greedy decoding reproduces every NLL-trained answer (:func:`learned`) and stop when it
    does; the checks go to ``checks``.
    """
    items: list = [render_record(tokenizer, r) for r in records]
    if references is not None:
        items = [Distilled(it, top) if top is not None else it
                 for it, top in zip(items, references, strict=True)]
    plan = epoch_plan(items, batch_size, epochs, seed, bucket=bucket)
    hook = None
    if stop_after_epochs > 0:
        targets = [it for it in items if not isinstance(it, Distilled)]
        per_epoch = -(-len(items) // batch_size) // cfg.grad_accum
        hook = stop_when_learned(model, targets, tokenizer.pad_token_id, every=per_epoch,
                                 after=per_epoch * stop_after_epochs, log=checks)
    return train(model, plan, sft_step(tokenizer.pad_token_id, kd_weight), cfg,
                 out_dir=out_dir, desc=desc, on_step=hook)
