"""Batched greedy generation (left padding, KV cache, stop at end-of-turn) and scoring.

Everything goes through :func:`unlearnkit.data.render.render`, so prompts are exactly the
ones the model was trained on.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from unlearnkit.data.render import IGNORE_INDEX, Rendered, answer_text, collate, end_of_turn
from unlearnkit.errors import UnlearnError
from unlearnkit.models.lora import decoder_layers


@dataclass
class Window:
    """Logits over the trailing columns that cover every response, with labels aligned.

    logits: (B, W, V); labels: (B, W); column c is absolute position ``offset + c``.
    """

    logits: torch.Tensor
    labels: torch.Tensor
    offset: int


def forward_responses(model, items: Sequence[Rendered], pad_id: int) -> Window:
    """Run ``model`` on right-padded ``items``, computing logits only where responses need them.

    Position t predicts token t + 1, so the window starts one before the earliest response;
    the vocabulary projection of the prompt positions is skipped (about a fifth of a 135M
    model's forward pass). When the rows start with the same tokens (the chat template's system
    turn), that prefix runs once and its key/value cache is shared by every row
    (:func:`_shared_prefix_logits`); logits and gradients are those of the plain forward.
    """
    batch = collate(list(items), pad_id)
    width = batch["input_ids"].shape[1]
    keep = int(width - batch["response_start"].min() + 1)
    device = next(model.parameters()).device
    ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    prefix = shared_prefix_length(batch["input_ids"], batch["attention_mask"], width - keep)
    if prefix >= MIN_SHARED_PREFIX and len(items) > 1 and _can_share(model):
        logits = _shared_prefix_logits(model, ids, mask, prefix, keep)
    else:
        logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits
    return Window(logits, batch["labels"][:, -keep:].to(device), width - keep)


def response_slice(item: Rendered, offset: int = 0) -> slice:
    """Columns (absolute position minus ``offset``) of ``item``'s response positions."""
    start = item.response_start - 1 - offset
    return slice(start, start + len(item.input_ids) - item.response_start)


def place(items: Sequence[Rendered], per_item: Sequence[torch.Tensor], offset: int,
          width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Put per-item (L_i, ...) tensors at their response columns: (B, width, ...) and a mask."""
    tail = tuple(per_item[0].shape[1:])
    out = per_item[0].new_zeros((len(items), width, *tail))
    mask = torch.zeros(len(items), width, dtype=torch.bool)
    for row, (it, value) in enumerate(zip(items, per_item, strict=True)):
        cols = response_slice(it, offset)
        if value.shape[0] != cols.stop - cols.start:
            raise UnlearnError("a cached reference does not match its item's response length; "
                               "clear the baseline cache ($UNLEARNKIT_CACHE/baselines)")
        out[row, cols] = value
        mask[row, cols] = True
    return out, mask


class _Stop(Exception):
    pass


def layer_output(model, items: Sequence[Rendered], pad_id: int, layer: int) -> torch.Tensor:
    """Residual stream after decoder block ``layer``, (B, T, H); blocks above it never run."""
    layers = decoder_layers(model)
    if not 0 <= layer < len(layers):
        raise UnlearnError(f"layer {layer} does not exist: the model has {len(layers)} blocks")
    batch = collate(list(items), pad_id)
    seen: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        seen.append(output[0] if isinstance(output, tuple) else output)
        raise _Stop

    handle = layers[layer].register_forward_hook(hook)
    try:
        dev = next(model.parameters()).device
        model(input_ids=batch["input_ids"].to(dev), attention_mask=batch["attention_mask"].to(dev))
    except _Stop:
        pass
    finally:
        handle.remove()
    return seen[0]


MIN_SHARED_PREFIX = 8  # shorter shared prefixes are not worth a second call


def shared_prefix_length(ids: torch.Tensor, mask: torch.Tensor, limit: int) -> int:
    """How many leading tokens every row of a right-padded batch shares, at most ``limit``."""
    same = (ids == ids[:1]).all(0) & mask.bool().all(0)
    differ = (~same).nonzero()
    first = int(differ[0]) if len(differ) else ids.shape[1]
    return max(0, min(first, limit))


@functools.cache
def _fsdp2_class() -> type | None:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # a torch built without distributed support
        return None
    return FSDPModule


def is_fsdp2(model) -> bool:
    """Whether ``model`` is sharded in place by FSDP2 (``fully_shard``; accelerate's
    ``fsdp_version: 2``): its parameters are shards, gathered per forward call."""
    cls = _fsdp2_class()  # looked up once: every training forward asks
    return cls is not None and isinstance(model, cls)


def _can_share(model) -> bool:
    """Cache sharing needs a plain forward per call: not under FSDP, whose sharded parameters
    are gathered per call, nor with gradient checkpointing (which turns the cache off), and
    only for models that build a key/value cache."""
    if "FullyShardedDataParallel" in type(model).__name__ or is_fsdp2(model):
        return False
    inner = getattr(model, "module", model)
    # transformers 5.x calls it activation checkpointing (the old name warns)
    flag = "is_activation_checkpointing" if hasattr(type(inner), "is_activation_checkpointing") \
        else "is_gradient_checkpointing"
    if getattr(inner, flag, False):
        return False
    return bool(getattr(getattr(inner, "config", None), "use_cache", False))


@functools.cache
def _cache_keyword() -> str:
    """transformers renamed ``past_key_values`` to ``cache`` (5.x); use what is installed."""
    import inspect

    from transformers import LlamaForCausalLM

    return "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters \
        else "past_key_values"


def _output_cache(out):
    """The key/value cache a forward returned (``cache`` in transformers 5.x)."""
    return out.cache if _cache_keyword() == "cache" else out.past_key_values


def _shared_prefix_logits(model, ids: torch.Tensor, mask: torch.Tensor, prefix: int,
                          keep: int) -> torch.Tensor:
    """Logits of the last ``keep`` positions, with the first ``prefix`` tokens run once (row 0)
    and their key/value cache repeated for every row; gradients flow through the cache."""
    head = model(input_ids=ids[:1, :prefix], use_cache=True, logits_to_keep=1)
    cache = _output_cache(head)
    cache.batch_repeat_interleave(ids.shape[0])
    return model(input_ids=ids[:, prefix:], attention_mask=mask, use_cache=True,
                 logits_to_keep=keep, **{_cache_keyword(): cache}).logits


def _batches(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield start, items[start:start + size]


def _length_order(prompts: Sequence[Rendered]) -> list[int]:
    """Indices sorted by length: batches of similar length waste less compute on padding."""
    return sorted(range(len(prompts)), key=lambda i: len(prompts[i].input_ids))


@contextlib.contextmanager
def eval_mode(model):
    """Run a block with ``model`` in eval mode (no dropout), restoring its mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def generate(model, tokenizer, prompts: Sequence[Rendered], *, max_new_tokens: int = 32,
             batch_size: int = 32, progress: bool = False,
             backend: str = "auto", as_answer: bool = True) -> list[str]:
    """Greedy continuations of rendered prompts (answer=None), decoded without special tokens
    (``as_answer``: as answers, :func:`~unlearnkit.data.render.answer_text`; else as they are).

    Deterministic: greedy decoding, no sampling. Stops at the chat template's end-of-turn token
    (and under the plain template, cuts where the model starts a question: ``answer_text``).
    Prompts are batched by length; :func:`greedy_batch` runs each batch (shared prefix once,
    finished rows dropped), or transformers' ``generate`` for models it cannot drive or with
    ``backend="transformers"`` (the reference ``benchmarks/generation.py`` compares with).
    """
    eot_id = end_of_turn(tokenizer)[1]
    order = _length_order(prompts)
    out: list[str] = [""] * len(prompts)
    bar = tqdm(total=len(prompts), desc="generate", unit="q", disable=not progress)
    own_loop = backend != "transformers" and _can_drive(model)
    for _, idx in _batches(order, batch_size):
        rows = [list(prompts[i].input_ids) for i in idx]
        if own_loop:
            new_tokens = greedy_batch(model, rows, eot_id=eot_id, pad_id=tokenizer.pad_token_id,
                                      max_new_tokens=max_new_tokens)
        else:
            new_tokens = hf_generate(model, rows, eot_id=eot_id, pad_id=tokenizer.pad_token_id,
                                     max_new_tokens=max_new_tokens)
        for i, new in zip(idx, new_tokens, strict=True):
            text = tokenizer.decode(new, skip_special_tokens=True)
            out[i] = answer_text(tokenizer, text) if as_answer else text
        bar.update(len(idx))
    bar.close()
    return out


def _can_drive(model) -> bool:
    """Our greedy loop needs a key/value cache that can be repeated and subset by row, and a
    forward that takes position ids and ``logits_to_keep`` (every decoder-only model of
    transformers that generates with a cache)."""
    import inspect

    if not _can_share(model):
        return False
    params = inspect.signature(type(model).forward).parameters
    return "position_ids" in params and "logits_to_keep" in params


def _until_eot(tokens: list[int], eot_id: int) -> list[int]:
    return tokens[:tokens.index(eot_id)] if eot_id in tokens else tokens


@torch.no_grad()
def hf_generate(model, rows: list[list[int]], *, eot_id: int, pad_id: int,
                max_new_tokens: int) -> list[list[int]]:
    """New tokens (end-of-turn excluded) from transformers' ``generate`` on left-padded rows."""
    device = next(model.parameters()).device
    batch = collate([Rendered(r, [IGNORE_INDEX] * len(r), len(r)) for r in rows], pad_id,
                    side="left")
    ids = batch["input_ids"].to(device)
    gen = model.generate(input_ids=ids, attention_mask=batch["attention_mask"].to(device),
                         max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eot_id,
                         pad_token_id=pad_id, use_cache=True)
    return [_until_eot(gen[row, ids.shape[1]:].tolist(), eot_id) for row in range(len(rows))]


@torch.no_grad()
def greedy_batch(model, rows: list[list[int]], *, eot_id: int, pad_id: int,
                 max_new_tokens: int) -> list[list[int]]:
    """Greedy decoding of token rows with a key/value cache; new tokens without end-of-turn.

    The rows' common prefix (the chat template's system turn) runs once and its cache is
    repeated for every row; the rest is left-padded, with position ids counted over real tokens
    only, so each row sees what it would see alone. A row that emits end-of-turn leaves the
    batch (its cache rows are dropped), so later steps cost only the unfinished rows.
    """
    device = next(model.parameters()).device
    n = len(rows)
    prefix = _common_prefix(rows, limit=min(len(r) for r in rows) - 1)
    if prefix < MIN_SHARED_PREFIX or n == 1:
        prefix = 0
    cache_kw: dict = {}
    if prefix:
        head = model(input_ids=torch.tensor([rows[0][:prefix]], device=device), use_cache=True,
                     logits_to_keep=1)
        cache = _output_cache(head)
        cache.batch_repeat_interleave(n)
        cache_kw = {_cache_keyword(): cache}
    width = max(len(r) for r in rows) - prefix
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    tail_mask = torch.zeros((n, width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) + prefix:] = torch.tensor(r[prefix:])
        tail_mask[i, width - len(r) + prefix:] = 1
    mask = torch.cat([torch.ones((n, prefix), dtype=torch.long), tail_mask], 1).to(device)
    positions = (prefix + tail_mask.cumsum(1) - 1).masked_fill(tail_mask == 0, 1).to(device)
    out = model(input_ids=ids.to(device), attention_mask=mask, position_ids=positions,
                use_cache=True, logits_to_keep=1, **cache_kw)
    active = torch.arange(n, device=device)
    last = positions[:, -1]
    new: list[list[int]] = [[] for _ in rows]
    for step in range(max_new_tokens):
        token = out.logits[:, -1].argmax(-1)
        for row, tok in zip(active.tolist(), token.tolist(), strict=True):
            if tok != eot_id:
                new[row].append(tok)
        going = token != eot_id
        if step == max_new_tokens - 1 or not bool(going.any()):
            break
        cache = _output_cache(out)
        if not bool(going.all()):
            keep = going.nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            active, token, mask, last = active[keep], token[keep], mask[keep], last[keep]
        mask = torch.cat([mask, mask.new_ones((len(active), 1))], 1)
        last = last + 1
        out = model(input_ids=token[:, None], attention_mask=mask, position_ids=last[:, None],
                    use_cache=True, **{_cache_keyword(): cache})
    return new


def _common_prefix(rows: list[list[int]], limit: int) -> int:
    """Length of the leading tokens all ``rows`` share, at most ``limit``."""
    first = rows[0]
    length = 0
    while length < limit and all(r[length] == first[length] for r in rows):
        length += 1
    return length


@torch.no_grad()
def token_logprobs(model, tokenizer, items: Sequence[Rendered], *, batch_size: int = 16
                   ) -> list[torch.Tensor]:
    """Per-token log-probabilities of the labelled (answer) tokens, teacher-forced, per item.

    Through :func:`forward_responses`: the rows' shared prefix runs once and the vocabulary
    projection covers only the response window."""
    order = _length_order(items)
    out: list[torch.Tensor] = [torch.empty(0)] * len(items)
    for _, idx in _batches(order, batch_size):
        win = forward_responses(model, [items[i] for i in idx], tokenizer.pad_token_id)
        logp = torch.log_softmax(win.logits[:, :-1].float(), dim=-1)
        labels = win.labels[:, 1:]
        picked = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        for row, i in enumerate(idx):
            out[i] = picked[row][labels[row] != IGNORE_INDEX].cpu()
    return out


def grouped_token_logprobs(model, tokenizer, groups: Sequence[Sequence[Rendered]], *,
                           batch_size: int = 16) -> list[list[torch.Tensor]]:
    """:func:`token_logprobs` per group of items that share a prompt (a question's options or
    perturbed answers), each group batched on its own: the prompt, which is most of each
    item, runs once per batch (:func:`forward_responses`' shared prefix) instead of once per
    item, as it would in batches that mix groups."""
    return [token_logprobs(model, tokenizer, group, batch_size=batch_size) if group else []
            for group in groups]


@torch.no_grad()
def first_token_logprobs(model, tokenizer, groups: Sequence[Sequence[Rendered]], *,
                         batch_size: int = 16) -> list[list[float]]:
    """Per group of items that share their prompt (every token before ``response_start``), the
    log-probability of each item's first response token, teacher-forced.

    What the letters of a multiple-choice question need: the prompt runs once per group, not
    once per item, and only its last position is projected onto the vocabulary. Equal, up to
    float rounding, to ``token_logprobs(...)[i][0]`` of each item.
    """
    out: list[list[float]] = [[] for _ in groups]  # (an empty group scores nothing)
    prompts, firsts, where = [], [], []
    for n, group in enumerate(groups):
        if not group:
            continue
        head = group[0].input_ids[:group[0].response_start]
        for it in group:
            if it.input_ids[:it.response_start] != head or it.response_start >= len(it.input_ids):
                raise ValueError(f"group {n}: its items do not share one prompt followed by a "
                                 "response")
        prompts.append(Rendered(head, [IGNORE_INDEX] * len(head), len(head)))
        firsts.append([it.input_ids[it.response_start] for it in group])
        where.append(n)
    for _, idx in _batches(_length_order(prompts), batch_size):
        # response_start past each prompt's end: the window starts at the shortest one's last
        # position and holds every row's last position
        win = forward_responses(model, [prompts[i] for i in idx], tokenizer.pad_token_id)
        for row, i in enumerate(idx):
            last = win.logits[row, len(prompts[i].input_ids) - 1 - win.offset].float()
            logp = torch.log_softmax(last, dim=-1)
            out[where[i]] = [float(logp[t]) for t in firsts[i]]
    return out
