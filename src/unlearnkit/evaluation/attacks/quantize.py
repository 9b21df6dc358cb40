"""Weight-level attack: round-to-nearest quantisation of a copy of the model's Linear layers.

Quantisation can undo unlearning that only nudged weights by less than a quantisation step
(the unlearned weights round back to where the original ones did). The attack quantises every
``nn.Linear`` weight of a deep copy, then re-scores the plain forget probes on the copy.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from unlearnkit.errors import UnlearnError
from unlearnkit.evaluation.attacks.registry import register_attack


def quantize_rtn(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Quantise then dequantise ``weight`` [out, ...] per output channel (row), symmetric absmax.

    With ``qmax = 2**(bits-1) - 1`` (7 for 4 bits, 127 for 8 bits), each row r gets
    ``scale_r = max|W_r| / qmax`` and ``W_hat = clamp(round(W / scale_r), -qmax, qmax) * scale_r``.
    The grid is symmetric, [-7, 7] for 4 bits (the two's-complement -8 is unused), so zero and
    the row's absmax are represented exactly. ``torch.round`` rounds halves to even. An all-zero
    row stays zero. Computed in fp32, returned in the weight's dtype; the input is not modified.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 16:
        raise UnlearnError(f"quantisation bits must be an integer in [2, 16], got {bits!r}")
    if weight.ndim < 1 or weight.numel() == 0:
        raise UnlearnError(f"cannot quantise a weight of shape {tuple(weight.shape)}")
    qmax = 2 ** (bits - 1) - 1
    rows = weight.detach().float().reshape(weight.shape[0], -1)
    absmax = rows.abs().amax(dim=1, keepdim=True)
    scale = torch.where(absmax > 0, absmax / qmax, torch.ones_like(absmax))
    q = torch.clamp(torch.round(rows / scale), -qmax, qmax)
    return (q * scale).reshape(weight.shape).to(weight.dtype)


def quantized_copy(model, bits: int, *, include_head: bool = False):
    """A deep copy of ``model`` with every ``nn.Linear`` weight replaced by :func:`quantize_rtn`.

    Embeddings, norms and biases stay in full precision, and so does the output head unless
    ``include_head`` (a head tied to the input embedding is never quantised: it *is* the
    embedding). The original model is untouched; the copy costs one more model in memory.
    """
    twin = copy.deepcopy(model)
    embed = twin.get_input_embeddings()
    skip = {id(embed.weight)} if embed is not None else set()
    head = twin.get_output_embeddings()
    if head is not None and not include_head:
        skip.add(id(head.weight))
    with torch.no_grad():
        for module in twin.modules():
            if isinstance(module, nn.Linear) and id(module.weight) not in skip:
                module.weight.copy_(quantize_rtn(module.weight, bits))
    return twin.eval()


@register_attack("quantize_8bit", kind="weights", family="quantisation")
def quantize_8bit(model, *, include_head: bool = False):
    """8-bit per-channel symmetric round-to-nearest weights (:func:`quantized_copy`)."""
    return quantized_copy(model, 8, include_head=include_head)


@register_attack("quantize_4bit", kind="weights", family="quantisation")
def quantize_4bit(model, *, include_head: bool = False):
    """4-bit per-channel symmetric round-to-nearest weights (:func:`quantized_copy`)."""
    return quantized_copy(model, 4, include_head=include_head)
