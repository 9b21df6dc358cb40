"""Compute and cache the teacher's top-K logits at response positions.

Position bookkeeping: for a rendered example with ``response_start`` s and length n, the
logits that predict the response tokens sit at positions s-1 .. n-2 (one per response token,
the end-of-turn token included). A student rendering ``chat(x) + y`` and a teacher rendering
``chat(c, x) + y`` share the response tokens, so their j-th response logits align: student
position s_S - 1 + j <-> teacher position s_T - 1 + j.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from unlearnkit.data.render import Rendered, collate
from unlearnkit.fsutil import atomic_dir
from unlearnkit.models.engine import eval_mode


@dataclass
class TopK:
    """Teacher summary for one item: (L, K) values and indices; tau = values[:, -1]. ``lse``
    (L,): the log-normaliser of the teacher's whole distribution at each position (logsumexp
    of every logit), so that ``values - lse[:, None]`` are log-probabilities; None in
    summaries made without it."""

    values: torch.Tensor
    indices: torch.Tensor
    lse: torch.Tensor | None = None

    @property
    def tau(self) -> torch.Tensor:
        return self.values[:, -1]


def response_length(item: Rendered) -> int:
    return len(item.input_ids) - item.response_start


@torch.no_grad()
def response_logits(model, items: Sequence[Rendered], pad_id: int) -> list[torch.Tensor]:
    """Full-vocabulary fp32 logits at each item's response positions, (L_i, V) per item."""
    device = next(model.parameters()).device
    batch = collate(list(items), pad_id)
    logits = model(input_ids=batch["input_ids"].to(device),
                   attention_mask=batch["attention_mask"].to(device)).logits.float()
    out = []
    for row, it in enumerate(items):
        start = it.response_start - 1
        out.append(logits[row, start:start + response_length(it)].cpu())
    return out


def guided(z_instr: torch.Tensor, z_plain: torch.Tensor, w: float) -> torch.Tensor:
    """The instruction's effect amplified: ``z_plain + w (z_instr - z_plain)``."""
    return z_plain + w * (z_instr - z_plain)


def promote_response(z: torch.Tensor, tokens: Sequence[int], boost: float) -> torch.Tensor:
    """Make each response token the teacher's top-1, ``boost`` above the best other logit.

    Used for desired-response templates: a weak teacher, teacher-forced on "I don't know ...",
    may still rank the true fact first; the template is what the student must learn to say.
    """
    z = z.clone()
    rows = torch.arange(len(tokens))
    target = torch.as_tensor(list(tokens))
    others = z.scatter(-1, target.unsqueeze(-1), float("-inf")).max(-1).values
    z[rows, target] = torch.maximum(z[rows, target], others + boost)
    return z


@torch.no_grad()
def teacher_topk(model, instructed: Sequence[Rendered], plain: Sequence[Rendered] | None,
                 *, k: int, guidance: float, pad_id: int, batch_size: int = 8,
                 promote: Sequence[bool] | None = None, boost: float = 2.0,
                 desc: str = "teacher") -> list[TopK]:
    """Top-K of ``z_plain + guidance * (z_instr - z_plain)`` (just z_instr when guidance=1).

    ``promote[i]`` makes item i's own response tokens top-1 (:func:`promote_response`).
    The model runs in eval mode (no dropout, e.g. LoRA's) and is left in the mode it was in.
    """
    with eval_mode(model):
        return _teacher_topk(model, instructed, plain, k=k, guidance=guidance, pad_id=pad_id,
                             batch_size=batch_size, promote=promote, boost=boost, desc=desc)


def _teacher_topk(model, instructed, plain, *, k, guidance, pad_id, batch_size, promote, boost,
                  desc) -> list[TopK]:
    out: list[TopK] = []
    use_plain = plain is not None and guidance != 1.0
    for start in tqdm(range(0, len(instructed), batch_size), desc=desc, unit="batch",
                      leave=False):
        chunk = instructed[start:start + batch_size]
        z_instr = response_logits(model, chunk, pad_id)
        if use_plain:
            z_plain = response_logits(model, plain[start:start + batch_size], pad_id)
            z_instr = [guided(zi, zp, guidance) for zi, zp in zip(z_instr, z_plain, strict=True)]
        for i, (item, z) in enumerate(zip(chunk, z_instr, strict=True)):
            if promote is not None and promote[start + i]:
                z = promote_response(z, item.input_ids[item.response_start:], boost)
            values, indices = z.topk(min(k, z.shape[-1]), dim=-1)
            out.append(TopK(values.contiguous(), indices.to(torch.int64).contiguous(),
                            torch.logsumexp(z, dim=-1).contiguous()))
    return out


def cache_key(payload: dict) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_topk(path: Path, entries: dict[str, TopK], meta: dict) -> None:
    """Write ``{name: TopK}`` and JSON metadata to ``path`` (a folder), atomically."""
    with atomic_dir(path) as tmp:
        tensors = {}
        for name, top in entries.items():
            tensors[f"{name}/values"] = top.values
            tensors[f"{name}/indices"] = top.indices.to(torch.int32)
            if top.lse is not None:
                tensors[f"{name}/lse"] = top.lse
        save_file(tensors, tmp / "topk.safetensors")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))


def load_topk(path: Path) -> tuple[dict[str, TopK], dict] | None:
    """Read a cache written by :func:`save_topk`, or ``None`` when absent."""
    if not (path / "meta.json").is_file():
        return None
    tensors = load_file(path / "topk.safetensors")
    names = {key.rsplit("/", 1)[0] for key in tensors}
    entries = {n: TopK(tensors[f"{n}/values"], tensors[f"{n}/indices"].to(torch.int64),
                       tensors.get(f"{n}/lse")) for n in names}
    return entries, json.loads((path / "meta.json").read_text())
