"""Weight-level attack: round-to-nearest quantisation of a copy of the model's linear layers.

Quantisation can undo unlearning that only nudged weights by less than a quantisation step
(the unlearned weights round back to where the original ones did). The attack quantises every
linear weight of a deep copy (``nn.Linear``; GPT-2's ``Conv1D``), then re-scores the plain
forget probes on the copy.
"""

from __future__ import annotations

import copy

import torch

from unlearnkit.errors import UnlearnError
from unlearnkit.evaluation.attacks.registry import register_attack
from unlearnkit.models.lora import linear_types


def quantize_rtn(weight: torch.Tensor, bits: int, group_size: int = 0) -> torch.Tensor:
    """Quantise then dequantise ``weight`` [out, ...] per output channel (row), symmetric absmax;
    with ``group_size`` > 0 per group of that many consecutive inputs of a row instead (a row
    whose length is not a multiple has a shorter last group), as 4-bit formats do (GPTQ and
    AWQ use 128).

    With ``qmax = 2**(bits-1) - 1`` (7 for 4 bits, 127 for 8 bits), each row r gets
    ``scale_r = max|W_r| / qmax`` and ``W_hat = clamp(round(W / scale_r), -qmax, qmax) * scale_r``.
    The grid is symmetric, [-7, 7] for 4 bits (the two's-complement -8 is unused), so zero and
    the row's absmax are represented exactly. ``torch.round`` rounds halves to even. An all-zero
    row (group) stays zero. Computed in fp32, returned in the weight's dtype; the input is not
    modified.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 16:
        raise UnlearnError(f"quantisation bits must be an integer in [2, 16], got {bits!r}")
    if weight.ndim < 1 or weight.numel() == 0:
        raise UnlearnError(f"cannot quantise a weight of shape {tuple(weight.shape)}")
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 0:
        raise UnlearnError(f"quantisation group_size must be an integer >= 0 (0: one group per "
                           f"row), got {group_size!r}")
    qmax = 2 ** (bits - 1) - 1
    rows = weight.detach().float().reshape(weight.shape[0], -1)
    width = rows.shape[1] if group_size == 0 else group_size
    groups = [_round_group(part, qmax) for part in rows.split(width, dim=1)]
    return torch.cat(groups, dim=1).reshape(weight.shape).to(weight.dtype)


def _round_group(part: torch.Tensor, qmax: int) -> torch.Tensor:
    absmax = part.abs().amax(dim=1, keepdim=True)
    scale = torch.where(absmax > 0, absmax / qmax, torch.ones_like(absmax))
    return torch.clamp(torch.round(part / scale), -qmax, qmax) * scale


def quantized_copy(model, bits: int, *, include_head: bool = False, group_size: int = 0):
    """A deep copy of ``model`` with its linear weights rounded by :func:`quantize_weights`;
    the original model is untouched, and the copy costs one more model in memory."""
    return quantize_weights(copy.deepcopy(model), bits, include_head=include_head,
                            group_size=group_size)


def quantize_weights(model, bits: int, *, include_head: bool = False, group_size: int = 0):
    """``model`` itself (returned, in eval mode) with every linear weight (``nn.Linear``, and
    GPT-2's ``Conv1D`` taken as its transpose, so the rows are output channels either way)
    replaced by :func:`quantize_rtn` (per row, or per ``group_size`` inputs).

    Embeddings, norms and biases stay in full precision, and so does the output head unless
    ``include_head`` (a head tied to the input embedding is never quantised: it *is* the
    embedding). A model without any such layer is refused: it would come out unchanged, and
    the attack would read as failing.
    """
    embed = model.get_input_embeddings()
    skip = {id(embed.weight)} if embed is not None else set()
    head = model.get_output_embeddings()
    if head is not None and not include_head:
        skip.add(id(head.weight))
    linear, conv1d = linear_types()
    done = 0
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, (linear, conv1d)) or id(module.weight) in skip:
                continue
            if isinstance(module, conv1d):  # [in, out]: round its transpose's rows
                module.weight.copy_(quantize_rtn(module.weight.t(), bits, group_size).t())
            else:
                module.weight.copy_(quantize_rtn(module.weight, bits, group_size))
            done += 1
    if not done:
        raise UnlearnError(f"{type(model).__name__} has no linear layer to quantise (nn.Linear "
                           "or Conv1D); drop the quantize attacks from the attacks")
    return model.eval()


@register_attack("quantize_8bit", kind="weights", family="quantisation")
def quantize_8bit(model, *, include_head: bool = False, group_size: int = 0):
    """8-bit per-channel symmetric round-to-nearest weights (:func:`quantized_copy`);
    ``group_size`` > 0: per group of that many inputs."""
    return quantized_copy(model, 8, include_head=include_head, group_size=group_size)


@register_attack("quantize_4bit", kind="weights", family="quantisation")
def quantize_4bit(model, *, include_head: bool = False, group_size: int = 0):
    """4-bit per-channel symmetric round-to-nearest weights (:func:`quantized_copy`);
    ``group_size`` > 0: per group of that many inputs (128 as GPTQ and AWQ). Per channel, 4
    bits break a small model itself (SmolLM2-135M before unlearning keeps 21% of the forget
    facts it states at full precision, per 128 inputs 75%; docs/RESULTS.md), so its 0 after
    unlearning says nothing; ``attack_options.quantize_4bit.group_size: 128`` (the demo's)
    keeps the model working."""
    return quantized_copy(model, 4, include_head=include_head, group_size=group_size)
