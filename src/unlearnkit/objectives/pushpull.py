"""Push-pull top-K logit distillation (the project's method; arXiv 2604.15482, after DUET).

Notation (docs: METHOD.md): at response position t, ``z_S(t)`` and ``z_T(t)`` are the
student's and the teacher's raw logits, ``K_T(t)`` the teacher's top-K vocabulary indices and
``tau_T(t)`` the teacher's K-th largest logit.

* Pull:  L_pull = mean_t sum_{i in K_T(t)} Huber_delta(z_S^i(t) - z_T^i(t))
* Push:  L_push = mean_t sum_{j in H(t)} relu(z_S^j(t) - tau_T(t) + margin),
  H(t) = {y(t+1)} ∪ (top-M of z_S(t) minus K_T(t)): the true next token of the forget answer
  and the student's own strongest tokens that the teacher does not rank in its top K.
  A true next token that the teacher itself ranks in its top K is not knowledge-revealing
  (e.g. the copied name in "Ada was born in ...") and is left out of H (``push_true_in_topk``
  switches this off for ablations).

All terms are computed in fp32 and averaged over the positions where ``mask`` is true only;
a batch without such positions gives a zero loss that still carries a graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _masked_mean(per_pos: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(per_pos.dtype)
    return (per_pos * mask).sum() / mask.sum().clamp(min=1.0)


def pull_loss(student: torch.Tensor, teacher_values: torch.Tensor,
              teacher_indices: torch.Tensor, mask: torch.Tensor, *, delta: float = 1.0,
              first_only: bool = False) -> torch.Tensor:
    """Huber distance on the teacher's top-K logits.

    student: (B, T, V) raw logits; teacher_values, teacher_indices: (B, T, K); mask: (B, T).
    ``first_only`` keeps only each row's first masked position (DUET's setting).
    """
    if first_only:
        mask = first_position(mask)
    picked = student.float().gather(-1, teacher_indices)
    per_pos = F.huber_loss(picked, teacher_values.float(), delta=delta, reduction="none").sum(-1)
    return _masked_mean(per_pos, mask)


def first_position(mask: torch.Tensor) -> torch.Tensor:
    """Keep only the first true entry of each row of a (B, T) mask."""
    first = mask.long().cumsum(-1) == 1
    return first & mask.bool()


def push_loss(student: torch.Tensor, teacher_indices: torch.Tensor, tau: torch.Tensor,
              true_next: torch.Tensor, mask: torch.Tensor, *, top_m: int = 20,
              margin: float = 1.0, push_true_in_topk: bool = False) -> torch.Tensor:
    """Hinge that pushes knowledge-revealing logits below the teacher's top-K boundary.

    student: (B, T, V); teacher_indices: (B, T, K); tau: (B, T) the teacher's K-th logit;
    true_next: (B, T) the forget answer's next token at each position; mask: (B, T).
    """
    z = student.float()
    vocab = z.shape[-1]
    in_topk = torch.zeros_like(z, dtype=torch.bool).scatter_(-1, teacher_indices, True)
    revealing = torch.zeros_like(in_topk)
    if top_m > 0:
        student_top = z.topk(min(top_m, vocab), dim=-1).indices
        revealing.scatter_(-1, student_top, True)
        revealing &= ~in_topk
    true_hot = F.one_hot(true_next.clamp(min=0), vocab).bool()
    if not push_true_in_topk:
        true_hot &= ~in_topk
    revealing |= true_hot
    hinge = F.relu(z - tau.float().unsqueeze(-1) + margin) * revealing
    return _masked_mean(hinge.sum(-1), mask)


def topk_logits(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teacher summary at each position: top-K values, indices, and the K-th value (tau)."""
    values, indices = logits.float().topk(k, dim=-1)
    return values, indices, values[..., -1]
