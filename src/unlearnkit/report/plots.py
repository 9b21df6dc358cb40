"""Charts for the HTML report, as ``data:image/png;base64,...`` URIs (nothing external).

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot, no global
state) and saved without the PNG "Software" metadata.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.figure import Figure

ROLE_COLORS = {"before": "#8d8d8d", "oracle": "#2e7d32"}
PALETTE = ("#1f5fa8", "#e07b00", "#7b3fa0", "#c62828", "#00838f", "#6d4c41", "#ad1457")
MAX_BARS = 24


def colors_for(roles: Sequence[str]) -> list[str]:
    """A colour per column: grey before, green oracle, the palette in turn for runs."""
    out, k = [], 0
    for role in roles:
        if role in ROLE_COLORS:
            out.append(ROLE_COLORS[role])
        else:
            out.append(PALETTE[k % len(PALETTE)])
            k += 1
    return out


def to_data_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def bar_chart(labels: Sequence[str], colors: Sequence[str], rows: Sequence[str],
              values: Sequence[Sequence[float | None]], title: str) -> str:
    """Horizontal grouped bars: one group per row, one bar per column (``values[row][col]``,
    all in [0, 1]; None leaves a gap)."""
    n = max(1, len(labels))
    height = 0.8 / n
    fig = Figure(figsize=(7.5, 1.2 + len(rows) * (0.16 * n + 0.14)))
    ax = fig.add_subplot()
    for j, (label, color) in enumerate(zip(labels, colors, strict=True)):
        ys = [i + (j - (n - 1) / 2) * height for i in range(len(rows))]
        xs = [row[j] if row[j] is not None else 0.0 for row in values]
        ax.barh(ys, xs, height=height * 0.92, color=color, label=label)
    ax.set_yticks(range(len(rows)), labels=list(rows), fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", framealpha=0.8)
    return to_data_uri(fig)


def line_chart(series: dict[str, Sequence[tuple[float, float]]], xlabel: str, ylabel: str,
               title: str) -> str:
    """One line per named series of (x, y) points, in the palette's colours."""
    fig = Figure(figsize=(7.5, 3.2))
    ax = fig.add_subplot()
    for (name, points), color in zip(series.items(), PALETTE * len(series), strict=False):
        ax.plot([x for x, _ in points], [y for _, y in points], color=color, label=name,
                linewidth=1.4)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, framealpha=0.8)
    return to_data_uri(fig)


@dataclass(frozen=True)
class Point:
    label: str
    x: float
    y: float
    color: str
    role: str = "run"


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (both coordinates maximised), by x.

    q dominates p when q.x >= p.x and q.y >= p.y with at least one strict."""
    front = []
    for i, (x, y) in enumerate(points):
        if not any(qx >= x and qy >= y and (qx > x or qy > y) for qx, qy in points):
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


MARKERS = {"before": "s", "oracle": "*", "run": "o"}


def pareto_chart(points: Sequence[Point], xlabel: str, ylabel: str, title: str) -> str:
    """Scatter of the models with the Pareto front (higher is better on both axes) drawn as
    a dashed staircase and its points ringed. The oracle is a reference, not a candidate: it
    is drawn (a star) but left out of the front."""
    fig = Figure(figsize=(5.6, 4.4))
    ax = fig.add_subplot()
    candidates = [p for p in points if p.role != "oracle"]
    front = [candidates[i] for i in pareto_front([(p.x, p.y) for p in candidates])]
    if front:
        fx, fy = [p.x for p in front], [p.y for p in front]
        ax.step(fx, fy, where="post", linestyle="--", color="#555555", linewidth=1,
                label="Pareto front")
        ax.scatter(fx, fy, s=260, facecolors="none", edgecolors="#555555", linewidths=1)
    for i, p in enumerate(points):
        ax.scatter([p.x], [p.y], s=90 if p.role != "oracle" else 200, color=p.color,
                   marker=MARKERS.get(p.role, "o"), zorder=3)
        ax.annotate(p.label, (p.x, p.y), textcoords="offset points", fontsize=8,
                    xytext=(6, 5 if i % 2 == 0 else -12))  # alternate to limit overlaps
    ax.set_xlim(-0.05, 1.1)
    ax.set_ylim(-0.05, 1.1)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if front:
        ax.legend(fontsize=7, loc="lower left")
    return to_data_uri(fig)
