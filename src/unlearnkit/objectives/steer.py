"""Activation steering: the targets and the distance of RMU and of push-pull's ``steer`` term.

RMU (Li et al. 2024, arXiv 2403.03218) moves the residual stream after one decoder block, at
the forget positions, toward c * u: u a fixed random unit vector, c the steering coefficient.
Adaptive RMU (Dang et al. 2024, arXiv 2408.06223) makes c follow the starting model's
activation norm at each position, c(t) = beta * ||h_0(t)||. The distance is the squared error
averaged over the hidden dimension (||h - c u||^2 / H), then over the masked positions.
"""

from __future__ import annotations

import torch

from unlearnkit.objectives.nll import masked_mean


def control_vector(hidden: int, seed: int) -> torch.Tensor:
    """The fixed random unit vector u: uniform [0, 1) entries, normalised, from ``seed``."""
    u = torch.rand(hidden, generator=torch.Generator().manual_seed(seed))
    return u / u.norm()


def adaptive_control(norms: torch.Tensor, u: torch.Tensor, beta: float) -> torch.Tensor:
    """Adaptive RMU's per-position target ``beta * ||h_0(t)|| * u``: norms (B, T), u (H,) ->
    (B, T, H)."""
    return beta * norms.float()[..., None] * u.float()


def activation_mse(hidden: torch.Tensor, target: torch.Tensor,
                   mask: torch.Tensor) -> torch.Tensor:
    """Masked mean over positions of the hidden-dimension mean of (hidden - target)^2, in fp32.

    hidden: (B, T, H); target: (H,) or (B, T, H); mask: (B, T) bool. No masked position: 0.
    """
    return masked_mean(((hidden.float() - target.float()) ** 2).mean(-1), mask)
