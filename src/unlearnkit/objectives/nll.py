"""Next-token negative log-likelihood on the labelled (answer) positions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unlearnkit.data.render import IGNORE_INDEX


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position NLL and mask for a causal LM.

    logits: (B, T, V) raw scores; labels: (B, T) with ``IGNORE_INDEX`` on unlabelled positions.
    Position t predicts labels[t + 1]. Returns ``(nll, mask)``, both (B, T - 1), in fp32; nll is
    0 where mask is 0.
    """
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    mask = shift_labels != IGNORE_INDEX
    nll = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]),
        shift_labels.clamp(min=0).reshape(-1),
        reduction="none",
    ).view_as(shift_labels)
    return nll * mask, mask


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` (same shape; None = everywhere) is true; 0 (with a
    graph) when none is."""
    mask = torch.ones_like(values) if mask is None else mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def nll_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean NLL over every labelled token in the batch (0 when there are none)."""
    nll, mask = token_nll(logits, labels)
    return nll.sum() / mask.sum().clamp(min=1)


def sequence_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sequence mean NLL over its labelled tokens, shape (B,) (0 for a sequence with none)."""
    nll, mask = token_nll(logits, labels)
    return nll.sum(-1) / mask.sum(-1).clamp(min=1)
