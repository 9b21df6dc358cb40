"""The gradient of each objective's loss term, as one flat fp32 vector (for cosine diagnostics).

A term is a loss on one batch, a mapping from set name ("forget", "retain", "neighbor") to
:class:`~unlearnkit.objectives.pushpull.Example` lists. The method's terms are computed by
:func:`~unlearnkit.objectives.pushpull.pushpull_step` itself with all but one switch off, so they
are exactly what training optimises (with beta = gamma = 1); two plain NLL terms give the naive
contrast (gradient ascent on forget, descent on retain, as GradDiff sums them).

Terms register themselves with :func:`term`; :data:`TERMS` maps name -> loss function.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

import torch

from unlearnkit.errors import UnlearnError
from unlearnkit.models.engine import forward_responses
from unlearnkit.objectives.nll import nll_loss
from unlearnkit.objectives.pushpull import (
    Example,
    PushPullConfig,
    _aligned,
    _reveal_mask,
    _window,
    pull_loss,
    pushpull_step,
)

Batch = dict[str, list[Example]]
TermFn = Callable[[torch.nn.Module, Batch, int, PushPullConfig], torch.Tensor]
TERMS: dict[str, TermFn] = {}
_OFF = {"pull": False, "push": False, "prefill": False, "adv_pull": False, "steer": 0.0,
        "keep_hidden": 0.0}


def term(name: str) -> Callable[[TermFn], TermFn]:
    def register(fn: TermFn) -> TermFn:
        TERMS[name] = fn
        return fn

    return register


def _only(model, examples: list[Example], pad_id: int, cfg: PushPullConfig, **switch):
    """The method's step on ``examples`` with only the given switch(es) on."""
    step = pushpull_step(pad_id, replace(cfg, **{**_OFF, **switch}, beta=1.0, gamma=1.0))
    return step(model, examples)[0]


@term("forget_pull")
def forget_pull(model, batch: Batch, pad_id: int, cfg: PushPullConfig) -> torch.Tensor:
    return _only(model, batch["forget"], pad_id, cfg, pull=True)


@term("forget_push")
def forget_push(model, batch: Batch, pad_id: int, cfg: PushPullConfig) -> torch.Tensor:
    return _only(model, batch["forget"], pad_id, cfg, push=True)


@term("adv_push")
def adv_push(model, batch: Batch, pad_id: int, cfg: PushPullConfig) -> torch.Tensor:
    return _only(model, batch["forget"], pad_id, cfg, prefill=True)


@term("adv_pull")
def adv_pull(model, batch: Batch, pad_id: int, cfg: PushPullConfig) -> torch.Tensor:
    """Pull toward the teacher along the true answer after the adversarial prefill (the
    method's ``adv_pull`` switch, here without the push it is added to in training)."""
    forget = batch["forget"]
    items = [e.true_input for e in forget]
    logits, _, off = _window(model, items, pad_id)
    values, indices, _, _ = _aligned(items, [e.true_top for e in forget], off, logits.shape[:2])
    _, _, after, _ = _aligned(items, [e.true_top for e in forget], off, logits.shape[:2],
                              start_at=[e.prefill_k for e in forget])
    mask = after & _reveal_mask(forget, off, logits.shape[:2])
    dev = logits.device
    return pull_loss(logits, values.to(dev), indices.to(dev), mask.to(dev), delta=cfg.delta)


@term("retain_pull")
def retain_pull(model, batch: Batch, pad_id: int, cfg: PushPullConfig) -> torch.Tensor:
    return _only(model, batch["retain"], pad_id, cfg, pull=True)


@term("neighbor_pull")
def neighbor_pull(model, batch: Batch, pad_id: int, cfg: PushPullConfig) -> torch.Tensor:
    return _only(model, batch["neighbor"], pad_id, cfg, pull=True)


def _nll(model, items, pad_id: int) -> torch.Tensor:
    win = forward_responses(model, items, pad_id)
    return nll_loss(win.logits, win.labels)


@term("ga_forget")
def ga_forget(model, batch: Batch, pad_id: int, cfg: PushPullConfig) -> torch.Tensor:
    """-NLL of the true forget answers: descending it is gradient ascent (the naive forget)."""
    return -_nll(model, [e.true_input for e in batch["forget"]], pad_id)


@term("nll_retain")
def nll_retain(model, batch: Batch, pad_id: int, cfg: PushPullConfig) -> torch.Tensor:
    """NLL of the retain items' responses (gold answers with the default teacher config)."""
    return _nll(model, [e.pull_input for e in batch["retain"]], pad_id)


# ------------------------------------------------------------------ parameters and gradients

_BLOCK = re.compile(r"\.(?:layers|h|blocks|block)\.(\d+)\.")


def block_of(name: str) -> int | None:
    """The transformer block index in a parameter name (``model.layers.3.mlp...`` -> 3)."""
    found = _BLOCK.search(f".{name}")
    return int(found.group(1)) if found else None


def select_params(model, upper_blocks: int) -> list[tuple[str, torch.nn.Parameter]]:
    """Trainable parameters of the last ``upper_blocks`` transformer blocks (0: all of them)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if upper_blocks <= 0:
        return named
    blocks = sorted({b for n, _ in named if (b := block_of(n)) is not None})
    if not blocks:
        raise UnlearnError("the model's parameter names show no numbered transformer blocks; "
                           "set grad_blocks=0 to use every parameter")
    keep = set(blocks[-upper_blocks:])
    return [(n, p) for n, p in named if block_of(n) in keep]


def flat_grad(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> torch.Tensor:
    """d loss / d params as one flat fp32 CPU vector (zeros for parameters it does not reach)."""
    if not loss.requires_grad:
        return torch.zeros(sum(p.numel() for p in params))
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1).float().cpu()
                      for g, p in zip(grads, params, strict=True)])


def term_gradients(model, batch: Batch, pad_id: int, cfg: PushPullConfig, names: list[str],
                   params: list[torch.nn.Parameter]) -> tuple[torch.Tensor, dict[str, float]]:
    """(len(names), D) gradients of the named terms on one batch, and each term's loss value."""
    rows, losses = [], {}
    for name in names:
        loss = TERMS[name](model, batch, pad_id, cfg)
        losses[name] = float(loss.detach())
        rows.append(flat_grad(loss, params))
    return torch.stack(rows), losses
