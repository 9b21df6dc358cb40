"""Keep people held out of unlearning's training against those in it, per method.

Usage: python benchmarks/holdout_gap.py BENCH_FOLDER

Reads every ``<method>/seed-<k>/results.json`` under a bench folder whose runs set
``unlearn.holdout`` (e.g. results/bench-scenario-holdout) and prints, per method and keep split,
the accuracy on the people left out of training and on those in it: the mean over seeds with
the 95% Student-t half-width, the per-seed values, and the mean gap (in training minus held
out). Also the same split of the "before" model (the injected model every method starts from)
when a run evaluated it. Trains and scores nothing.
"""

import argparse
import json
from pathlib import Path

from unlearnkit.report.stats import mean_ci

SPLITS = ("neighbor", "retain")
PARTS = ("in_training", "held_out")


def parts(summary: dict, split: str) -> tuple[float, float] | None:
    """(accuracy in training, accuracy held out) of one model's split, None without a holdout."""
    s = summary.get(split) or {}
    if not s.get("held_out"):
        return None
    return s["in_training"]["accuracy"], s["held_out"]["accuracy"]


def fmt(values: list[float]) -> str:
    mean, half = mean_ci(values)
    spread = "" if half is None else f" ± {100 * half:.1f}"
    return f"{100 * mean:5.1f}{spread}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench", type=Path)
    args = parser.parse_args()
    rows: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for path in sorted(args.bench.glob("*/seed-*/results.json")):
        results = json.loads(path.read_text())["results"]
        method = path.parent.parent.name
        for name in ("after", "before"):
            if name not in results:
                continue
            label = method if name == "after" else f"before ({method} runs)"
            for split in SPLITS:
                if (pair := parts(results[name]["summary"], split)) is not None:
                    rows.setdefault(label, {}).setdefault(split, []).append(pair)
    if not rows:
        raise SystemExit(f"{args.bench}: no results.json with held-out keep people")
    print(f"{'method':<24}{'split':<10}{'seeds':>6}{'in training':>16}{'held out':>16}"
          f"{'gap':>8}   per seed (in / out)")
    for label, splits in rows.items():
        for split, pairs in splits.items():
            inside, out = [p[0] for p in pairs], [p[1] for p in pairs]
            gap = sum(i - o for i, o in pairs) / len(pairs)
            seeds = ", ".join(f"{100 * i:.0f}/{100 * o:.0f}" for i, o in pairs)
            print(f"{label:<24}{split:<10}{len(pairs):>6}{fmt(inside):>16}{fmt(out):>16}"
                  f"{100 * gap:>8.1f}   {seeds}")


if __name__ == "__main__":
    main()
