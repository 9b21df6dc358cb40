"""Geometry of gradients and representations: cosine matrices and distances between two sets.

Pure functions on tensors, computed in float64. Sets are (n, d) tensors, one row per item.

* :func:`cosine_matrix`: pairwise cosine similarities of gradient vectors (does one objective's
  step help or hurt another's?).
* :func:`cosine_distance`: 1 - cos(mean x, mean y), the angle between the sets' centroids.
* :func:`mmd2_linear`: the unbiased squared maximum mean discrepancy with the linear kernel
  k(a, b) = a . b (Gretton et al. 2012, eq. 3): the biased estimate is ||mean x - mean y||^2;
  the unbiased one drops each set's self-similarities k(x_i, x_i), so it can dip below 0 when
  the sets come from one distribution.
* :func:`frechet_distance`: ||mu_x - mu_y||^2 + Tr(S_x + S_y - 2 (S_x S_y)^(1/2)), the Frechet
  (2-Wasserstein) distance between Gaussians fitted to the sets (the FID formula).

The distances need at least two items per set and return NaN otherwise.
"""

from __future__ import annotations

import math

import torch


def cosine_matrix(vectors: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N, N) cosine similarities of the rows.

    A zero row has no direction: its row and column are NaN, its diagonal entry included.
    """
    v = vectors.double()
    norms = v.norm(dim=-1)
    unit = v / norms.clamp(min=torch.finfo(torch.float64).tiny).unsqueeze(-1)
    sim = (unit @ unit.T).clamp(-1.0, 1.0)
    sim.fill_diagonal_(1.0)
    zero = norms == 0
    sim[zero, :] = math.nan
    sim[:, zero] = math.nan
    return sim


def mean_std(stack: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Elementwise mean and population standard deviation over the first dimension."""
    stack = stack.double()
    return stack.mean(0), stack.std(0, correction=0)


def _enough(*sets: torch.Tensor) -> bool:
    return all(s.shape[0] >= 2 for s in sets)


def cosine_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """1 - cosine similarity of the two sets' means (0: same direction, 2: opposite)."""
    mx, my = x.double().mean(0), y.double().mean(0)
    denom = mx.norm() * my.norm()
    if denom == 0:
        return math.nan
    return float(1.0 - (mx @ my) / denom)


def mmd2_linear(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased linear-kernel MMD^2 of x (n, d) and y (m, d).

    mean_{i != j} x_i.x_j + mean_{i != j} y_i.y_j - 2 mean_{i, j} x_i.y_j.
    """
    if not _enough(x, y):
        return math.nan
    x, y = x.double(), y.double()
    n, m = x.shape[0], y.shape[0]
    kxx, kyy = x @ x.T, y @ y.T
    xx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    yy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(xx + yy - 2.0 * (x @ y.T).mean())


def frechet_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to x (n, d) and y (m, d) (covariances / (n-1)).

    With centred data A (n, d) and B (m, d), S_x = A^T A / (n-1) and S_y = B^T B / (m-1); the
    eigenvalues of S_x S_y are the squared singular values of A B^T / sqrt((n-1)(m-1)), so
    Tr (S_x S_y)^(1/2) is that matrix's nuclear norm: exact, and only (n, m)-sized.
    """
    if not _enough(x, y):
        return math.nan
    x, y = x.double(), y.double()
    n, m = x.shape[0], y.shape[0]
    a, b = x - x.mean(0), y - y.mean(0)
    mean_term = (x.mean(0) - y.mean(0)).square().sum()
    tr_x, tr_y = a.square().sum() / (n - 1), b.square().sum() / (m - 1)
    cross = torch.linalg.matrix_norm(a @ b.T, ord="nuc") / math.sqrt((n - 1) * (m - 1))
    return float(mean_term + tr_x + tr_y - 2.0 * cross)


def set_distances(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """All three distances between two sets, by name."""
    return {"cosine": cosine_distance(x, y), "mmd2": mmd2_linear(x, y),
            "frechet": frechet_distance(x, y)}
