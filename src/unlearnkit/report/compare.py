"""`unlearn compare RUN...`: aggregates side by side as a plain-text table.

One column per run, rows grouped by objective. The arrow after a key says which direction
is better (↑ higher, ↓ lower, · neither); ``*`` marks the best value of a row when there are
at least two runs. "-": the run lacks the key; "n/a": the value is undefined (NaN).
"""

from __future__ import annotations

import math

from unlearnkit.report.runs import Run, direction_of, ordered_keys

ARROWS = {True: "↑", False: "↓", None: "·"}


def fmt(value: float | None) -> str:
    """Three decimals, or four significant digits for large values; "-" when missing."""
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    return f"{value:.3f}" if abs(value) < 1000 else f"{value:.4g}"


def cell_text(run: Run, key: str) -> str:
    """A run's value of ``key`` as table text: "-" when it lacks the key, "n/a" for NaN."""
    agg = run.aggregates.get(key)
    return "-" if agg is None else ("n/a" if math.isnan(agg.value) else fmt(agg.value))


def best_indices(values: list[float | None], higher_is_better: bool | None) -> set[int]:
    """Indices holding the best value; empty without a direction, with fewer than two values,
    or when every value is the same (nothing to prefer)."""
    present = {i: v for i, v in enumerate(values) if v is not None and not math.isnan(v)}
    if higher_is_better is None or len(set(present.values())) < 2:
        return set()
    best = (max if higher_is_better else min)(present.values())
    return {i for i, v in present.items() if v == best}


def compare_rows(runs: list[Run]) -> list[tuple[str, list[str]]]:
    """(row label, cells) per row: an objective heading row has no cells."""
    rows: list[tuple[str, list[str]]] = []
    for objective, keys in ordered_keys(runs).items():
        if not keys:
            continue
        rows.append((objective, []))
        for key in keys:
            hib = direction_of(runs, key)
            values = [run.value(key) for run in runs]
            best = best_indices(values, hib)
            cells = [cell_text(run, key) + ("*" if i in best else " ")
                     for i, run in enumerate(runs)]
            rows.append((f"  {key} {ARROWS[hib]}", cells))
    return rows


def compare_table(runs: list[Run]) -> str:
    """The table ``unlearn compare`` prints."""
    rows = compare_rows(runs)
    first = max([len("metric"), *(len(label) for label, _ in rows)])
    widths = [max(9, len(run.label) + 1) for run in runs]
    header = "metric".ljust(first) + "".join(
        f"  {run.label:>{w}}" for run, w in zip(runs, widths, strict=True))
    lines = [header, "-" * len(header)]
    for label, cells in rows:
        lines.append(label.ljust(first) + "".join(
            f"  {c:>{w}}" for c, w in zip(cells, widths, strict=False)))
    lines.append("↑ higher is better, ↓ lower is better, · no preferred direction; "
                 "* best of the row")
    return "\n".join(lines)
