"""The table of a tuning sweep from its recorded runs, with each method's best point.

Usage: python benchmarks/tune_table.py [results/tune-scenario | results/tune-tofu]

Reads every ``<folder>/<method>--<key>-<value>/seed-*/results.json`` (the folders `unlearn
tune` writes; results/README.md), whichever invocations of the tune made them, and prints one
Markdown row per method and point: forget, neighbour, retain and general accuracy, prefill
attack success, refusal on keep items, and the tune's selection score (forgetting and keeping
half each, :func:`unlearnkit.pipeline.tune.selection_score`) over the point's seeds. The best
point per method is in bold (the first, in grid order, on a tie), and a method whose best
point is its largest or smallest value is flagged: the grid wants extending there.
"""

import argparse
import json
from collections import defaultdict
from pathlib import Path

from unlearnkit.pipeline.tune import measured_objectives, selection_score
from unlearnkit.report.leaderboard import METRICS, run_metrics, summarize

COLUMNS = ("forget", "neighbor", "retain", "general", "prefill", "keep_refusal")


def points(folder: Path) -> dict[str, list[tuple[float, dict]]]:
    """Per method: (value, mean metrics over seeds) for every point with a recorded run."""
    runs: dict[tuple[str, float], list[dict]] = defaultdict(list)
    for path in sorted(folder.glob("*--*/seed-*/results.json")):
        method, _, point = path.parents[1].name.partition("--")
        value = float(point.partition("-")[2])  # "lr-1e-05": key, then value
        runs[method, value].append(run_metrics(json.loads(path.read_text())["results"]["after"]))
    out: dict[str, list[tuple[float, dict]]] = defaultdict(list)
    for (method, value), metrics in runs.items():
        out[method].append((value, {k: summarize([m.get(k) for m in metrics], 0.95)["mean"]
                                    for k, _, _ in METRICS}))  # as the leaderboard averages
    return {m: sorted(rows, key=lambda r: r[0]) for m, rows in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", nargs="?", default="results/tune-scenario")
    folder = Path(parser.parse_args().folder)
    table = points(folder)
    if not table:
        raise SystemExit(f"no recorded runs under {folder}")
    print("| method | value | forget | neighbour | retain | general | prefill attack | "
          "keep refusal | score |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    edges = []
    objectives = measured_objectives([m for rows in table.values() for _, m in rows])
    for method, rows in table.items():
        scores = [selection_score(m, objectives) for _, m in rows]
        best = max(range(len(rows)), key=lambda i: (scores[i] is not None, scores[i] or 0, -i))
        if len(rows) > 1 and best in (0, len(rows) - 1):
            edges.append(method)
        for i, ((value, m), score) in enumerate(zip(rows, scores, strict=True)):
            cells = ["-" if m[k] is None else f"{100 * m[k]:.1f}" for k in COLUMNS]
            text = "-" if score is None else f"{score:.3f}"
            print(f"| {method} | {value:g} | " + " | ".join(cells) + " | "
                  + (f"**{text}**" if i == best else text) + " |")
    if edges:
        print(f"\nbest at the grid's edge (extend the grid there): {', '.join(edges)}")


if __name__ == "__main__":
    main()
