"""Supervised fine-tuning on records (used to inject the scenario and by the oracle)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from unlearnkit.data.records import Record
from unlearnkit.data.render import Rendered, render_record
from unlearnkit.models.engine import forward_responses
from unlearnkit.objectives.nll import nll_loss
from unlearnkit.training.loop import OptimConfig, train


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


def sft_step(pad_id: int):
    """A step function for :func:`unlearnkit.training.loop.train`: mean answer-token NLL."""

    def step(model, items: list[Rendered]):
        win = forward_responses(model, items, pad_id)
        return nll_loss(win.logits, win.labels), {}

    return step


def finetune(model, tokenizer, records: Sequence[Record], cfg: OptimConfig, *, epochs: int,
             batch_size: int, seed: int = 0, out_dir: Path | None = None,
             desc: str = "finetune", bucket: int = 8) -> list[dict]:
    """Fine-tune ``model`` in place on the records' answers; returns the training log."""
    items = [render_record(tokenizer, r) for r in records]
    plan = epoch_plan(items, batch_size, epochs, seed, bucket=bucket)
    return train(model, plan, sft_step(tokenizer.pad_token_id), cfg, out_dir=out_dir, desc=desc)
