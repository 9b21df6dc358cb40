"""Mean-pooled hidden states: one vector per item and layer, for distances between sets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from unlearnkit.data.render import Rendered, collate
from unlearnkit.errors import UnlearnError

Pool = Literal["response", "all"]


def layer_indices(n_layers: int, wanted: Sequence[int]) -> list[int]:
    """Indices into ``hidden_states`` (0: embeddings, n_layers: the last block's output).

    Negative values count from the end (-1: the last). Empty: the middle and the last layer.
    """
    if not wanted:
        return sorted({n_layers // 2, n_layers})
    out = []
    for w in wanted:
        idx = w + n_layers + 1 if w < 0 else w
        if not 0 <= idx <= n_layers:
            raise UnlearnError(f"layer {w} is out of range: the model has hidden states "
                               f"0..{n_layers} (or -1..-{n_layers + 1})")
        out.append(idx)
    return sorted(set(out))


@torch.no_grad()
def pooled_hidden(model, items: Sequence[Rendered], pad_id: int, layers: Sequence[int], *,
                  pool: Pool = "response", batch_size: int = 16) -> dict[int, torch.Tensor]:
    """Per layer, an (N, H) fp32 CPU tensor: each item's hidden states averaged over its
    response positions (``response_start`` to its end) or over all its positions."""
    device = next(model.parameters()).device
    out: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    for start in range(0, len(items), batch_size):
        chunk = list(items[start:start + batch_size])
        batch = collate(chunk, pad_id)
        hidden = model(input_ids=batch["input_ids"].to(device),
                       attention_mask=batch["attention_mask"].to(device),
                       output_hidden_states=True).hidden_states
        mask = batch["attention_mask"].bool()
        if pool == "response":
            cols = torch.arange(mask.shape[1]).unsqueeze(0)
            mask &= cols >= batch["response_start"].unsqueeze(1)
        weights = mask.float().unsqueeze(-1).to(device)
        for layer in layers:
            h = hidden[layer].float()
            out[layer].append(((h * weights).sum(1) / weights.sum(1).clamp(min=1.0)).cpu())
    return {layer: torch.cat(parts) for layer, parts in out.items()}
