"""Reference quantities: computed ONCE on the starting model before training, cached on disk.

Methods that compare with the model before unlearning need something from it at every step:
NPO and IdkDPO its sequence log-probabilities, UNDIAL and GradDiff-KL its next-token
distributions, RMU its hidden states on the retain items. Instead of a frozen second model in
memory, their ``prepare`` computes these here once (no grad, eval mode, fp32) and attaches them
to the items (``Item.ref``). Results are keyed per item by :func:`~.common.item_key` and cached
as safetensors under ``cache_root()/baselines/<kind>/<hash>``, the hash covering ``model_id``,
the settings and every item's key (as :mod:`unlearnkit.models.teacher_cache` does for the
teacher). ``model_id=None`` computes without caching. The cache trusts ``model_id``: a different
model under the same id reuses stale values (clear the folder).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from safetensors.torch import load_file, save_file

from unlearnkit.data.render import Rendered
from unlearnkit.fsutil import atomic_dir, built_once
from unlearnkit.models.engine import eval_mode, layer_output
from unlearnkit.models.loader import cache_root
from unlearnkit.models.teacher_cache import TopK, cache_key, teacher_topk
from unlearnkit.objectives.baselines.common import (
    RETAIN,
    Item,
    RetainConfig,
    attach,
    forward,
    item_key,
    response_slice,
    sequence_logprob,
)

Tensors = dict[str, torch.Tensor]


def _cached(kind: str, model_id: str | None, settings: dict, items: Sequence[Rendered],
            compute: Callable[[], Tensors]) -> Tensors:
    if model_id is None:
        return compute()
    key = cache_key({"kind": kind, "model": model_id, "settings": settings,
                     "items": [item_key(it) for it in items]})
    path = cache_root() / "baselines" / kind / key
    done = path / "tensors.safetensors"

    def build():
        out = compute()
        with atomic_dir(path) as tmp:
            save_file({k: v.contiguous() for k, v in out.items()}, tmp / "tensors.safetensors")
        return out

    # another process may be computing the same cache
    return built_once(path, lambda: load_file(done) if done.is_file() else None, build)


@torch.no_grad()
def _each_chunk(model, items: Sequence[Rendered], batch_size: int,
                fn: Callable[[list[Rendered]], Tensors]) -> Tensors:
    out: Tensors = {}
    with eval_mode(model):
        for start in range(0, len(items), batch_size):
            out.update(fn(list(items[start:start + batch_size])))
    return out


def sequence_logprobs(model, items: Sequence[Rendered], pad_id: int, *,
                      model_id: str | None = None, batch_size: int = 8) -> Tensors:
    """``log p_ref(y | x)`` (summed over answer tokens) per item: ``{item_key: 0-d tensor}``."""

    def chunk(part: list[Rendered]) -> Tensors:
        win = forward(model, part, pad_id)
        logp, _ = sequence_logprob(win.logits, win.labels)
        return {item_key(it): lp.detach().cpu() for it, lp in zip(part, logp, strict=True)}

    return _cached("logp", model_id, {}, items,
                   lambda: _each_chunk(model, items, batch_size, chunk))


def response_topk(model, items: Sequence[Rendered], pad_id: int, *, k: int,
                  model_id: str | None = None, batch_size: int = 8) -> dict[str, TopK]:
    """Top-``k`` raw logits at each response position (k = 0: the full vocabulary, sorted), with
    the logsumexp of all logits there (``TopK.lse``)."""

    def compute() -> Tensors:
        tops = teacher_topk(model, list(items), None, k=k or 1 << 30, guidance=1.0,
                            pad_id=pad_id, batch_size=batch_size, desc="reference: top-k")
        out: Tensors = {}
        for it, top in zip(items, tops, strict=True):
            key = item_key(it)
            out[f"{key}/values"], out[f"{key}/indices"] = top.values, top.indices
            out[f"{key}/lse"] = top.lse
        return out

    with eval_mode(model):  # "lse": entries hold each position's log-normaliser too
        flat = _cached("topk", model_id, {"k": k, "lse": True}, items, compute)
    keys = {name.rsplit("/", 1)[0] for name in flat}
    return {key: TopK(flat[f"{key}/values"], flat[f"{key}/indices"].long(), flat[f"{key}/lse"])
            for key in keys}


def response_hidden(model, items: Sequence[Rendered], pad_id: int, *, layer: int,
                    model_id: str | None = None, batch_size: int = 8) -> Tensors:
    """Output of decoder block ``layer`` at each response position: ``{item_key: (L, H)}``."""

    def chunk(part: list[Rendered]) -> Tensors:
        hidden = layer_output(model, part, pad_id, layer).float()
        return {item_key(it): hidden[row, response_slice(it)].cpu()
                for row, it in enumerate(part)}

    return _cached("hidden", model_id, {"layer": layer}, items,
                   lambda: _each_chunk(model, items, batch_size, chunk))


def attach_retain_reference(model, items: Sequence[Item], pad_id: int, cfg: RetainConfig, *,
                            model_id: str | None = None) -> list[Item]:
    """For ``retain.loss == "kl"``: the starting model's top-K on each retain item (``ref_top``)."""
    if cfg.loss != "kl":
        return list(items)
    rendered = [it.rendered for it in items if it.kind == RETAIN]
    tops = response_topk(model, rendered, pad_id, k=cfg.top_k, model_id=model_id)
    return attach(items, RETAIN, "ref_top", tops)
