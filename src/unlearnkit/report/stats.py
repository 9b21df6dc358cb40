"""Statistics over seeds: the mean with a Student-t confidence interval, and Pareto fronts."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float | None]:
    """The mean and the half-width of its two-sided Student-t confidence interval.

    ``half = t_{(1 + confidence) / 2, n - 1} * s / sqrt(n)`` with ``s`` the sample standard
    deviation (n - 1 in the denominator). With one value there is no interval: None.
    """
    if not values:
        raise ValueError("mean_ci needs at least one value")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    mean = statistics.fmean(values)
    n = len(values)
    if n < 2:
        return mean, None
    from scipy.stats import t

    return mean, float(t.ppf((1 + confidence) / 2, n - 1)) * statistics.stdev(values) / math.sqrt(n)


def dominates(q: Sequence[float], p: Sequence[float]) -> bool:
    """q dominates p (every coordinate maximised): no worse anywhere, better somewhere."""
    return all(a >= b for a, b in zip(q, p, strict=True)) and any(
        a > b for a, b in zip(q, p, strict=True))


def pareto_indices(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices, in input order, of the points no other point dominates (all maximised)."""
    return [i for i, p in enumerate(points) if not any(dominates(q, p) for q in points)]
