"""Logit lens: can the answer be read off intermediate layers even when the output hides it?

Each layer's hidden state at the position that predicts the fact is decoded through the
model's final norm and output embedding: the norm is the module beside the decoder blocks named
as one of :data:`FINAL_NORMS` (``model.norm`` in Llama, Mistral, Qwen, Gemma, Phi-3 and OLMo;
``gpt_neox.final_layer_norm``; GPT-2's ``transformer.ln_f``). Layers are found generically with
``output_hidden_states=True``: ``hidden_states[0]`` is the embedding output, ``hidden_states[l]``
the output of layer l. HF applies the final norm to the last entry itself, so the last layer is
read from the model's own logits instead.

Only records whose answer contains one of their ``targets`` are attacked: without a fact token
to read, the probed token would be the answer's first one ("The", a name copied from the
question), which a model that never learned the fact ranks near the top, so the attack would
"succeed" on the oracle. TOFU's records have no targets: there the attack applies to no item
and its rate is None (left out of the worst case).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from unlearnkit.data.records import Record
from unlearnkit.data.render import Rendered, collate, render
from unlearnkit.errors import UnlearnError
from unlearnkit.evaluation.attacks.registry import register_attack
from unlearnkit.evaluation.attacks.scoring import Settings
from unlearnkit.models.lora import decoder_layers

FINAL_NORMS = ("norm", "final_layer_norm", "ln_f", "norm_f", "final_norm")


def final_norm(model):
    """The norm a causal LM applies after its last decoder block, or None when the module that
    holds the blocks has not exactly one child named as one of :data:`FINAL_NORMS`."""
    blocks = decoder_layers(model)
    for module in model.modules():
        children = dict(module.named_children())
        if any(child is blocks for child in children.values()):
            found = [children[name] for name in FINAL_NORMS if name in children]
            return found[0] if len(found) == 1 else None
    return None


def _lens_modules(model):
    """(final norm, output embedding) of a causal LM (PEFT wrappers unwrapped)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    norm = final_norm(base)
    head = base.get_output_embeddings()
    if norm is None or head is None:
        raise UnlearnError(
            f"the logit lens needs the final norm beside the decoder blocks (a module named "
            f"{' or '.join(FINAL_NORMS)}) and an output embedding; {type(base).__name__} has "
            f"{'no output embedding' if head is None else 'no such norm'}: drop 'logit_lens' "
            f"from the attacks"
        )
    return norm, head


def _target_start(record: Record) -> int | None:
    """Character offset of the earliest target inside the answer (None when none is found)."""
    answer = record.answer.lower()
    found = [answer.find(t.lower()) for t in record.targets if t.strip()]
    found = [i for i in found if i >= 0]
    return min(found) if found else None


def lens_input(tokenizer, record: Record, context: str | None = None) -> tuple[Rendered, int]:
    """The teacher-forced input and the index of the target token in it.

    The target token is the first non-blank token of the fact: the answer is cut just before
    its first target, the part before the cut (trailing space stripped, so the next token
    keeps its leading space) goes in as a prefill. A record whose answer holds none of its
    targets is refused (there is no fact token to read).
    """
    cut = _target_start(record)
    if cut is None:
        raise UnlearnError(f"record {record.id!r}: the logit lens needs one of its targets "
                           f"in its answer, and {record.targets!r} are not in {record.answer!r}")
    prefix = record.answer[:cut].rstrip()
    rest = record.answer[len(prefix):]
    rendered = render(tokenizer, record.question, rest, system=record.system, context=context,
                      prefill=prefix or None)
    answer_ids = rendered.input_ids[rendered.response_start:]
    j = next((i for i, t in enumerate(answer_ids) if tokenizer.decode([t]).strip()), 0)
    return rendered, rendered.response_start + j


def _layer_ranks(outputs, norm, head, positions, targets) -> torch.Tensor:
    """[batch, layers] 0-based rank of each target token (how many tokens score higher)."""
    rows = torch.arange(len(positions), device=positions.device)
    inner = [head(norm(h[rows, positions])).float() for h in outputs.hidden_states[1:-1]]
    logits = torch.stack([*inner, outputs.logits[rows, positions].float()], dim=1)
    target = logits.gather(-1, targets[:, None, None].expand(-1, logits.shape[1], 1))
    return (logits > target).sum(-1)


@torch.no_grad()
def logit_lens_ranks(model, tokenizer, records: Sequence[Record], *, context: str | None = None,
                     batch_size: int = 16) -> list[list[int]]:
    """Per record, the target token's rank at layers 1..L (L = the model's output), 0 = top."""
    norm, head = _lens_modules(model)
    device = next(model.parameters()).device
    out: list[list[int]] = []
    for start in range(0, len(records), batch_size):
        chunk = [lens_input(tokenizer, r, context) for r in records[start:start + batch_size]]
        batch = collate([rendered for rendered, _ in chunk], tokenizer.pad_token_id)
        ids = batch["input_ids"].to(device)
        outputs = model(input_ids=ids, attention_mask=batch["attention_mask"].to(device),
                        output_hidden_states=True)
        where = torch.tensor([t for _, t in chunk], device=device)
        targets = ids[torch.arange(len(chunk), device=device), where]
        out += _layer_ranks(outputs, norm, head, where - 1, targets).tolist()
    return out


@register_attack("logit_lens", kind="custom", family="logit-lens")
def logit_lens_attack(model, tokenizer, records: Sequence[Record], settings: Settings, *,
                      top_k: int = 10) -> dict:
    """Revealed when the fact's token ranks in the top ``top_k`` (rank < top_k) at some layer.

    Per item: the rank at every layer, the best (lowest) rank and the layer (1-based) where it
    occurs. Ranks are teacher-forced on the answer up to the fact (see :func:`lens_input`).
    Records whose answer holds none of their targets are skipped (counted in ``details``).
    """
    usable = [r for r in records if r.answer and _target_start(r) is not None]
    ranks = logit_lens_ranks(model, tokenizer, usable, context=settings.context,
                             batch_size=settings.batch_size)
    items = [{"id": r.id, "success": min(rk) < top_k, "ranks": rk, "best_rank": min(rk),
              "best_layer": rk.index(min(rk)) + 1} for r, rk in zip(usable, ranks, strict=True)]
    return {"items": items, "details": {"top_k": top_k, "layers": len(ranks[0]) if ranks else 0,
                                        "skipped_without_target": len(records) - len(usable)}}
