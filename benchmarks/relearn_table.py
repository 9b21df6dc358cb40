"""Relearning, 4-bit and the four objectives per method of a bench folder, per seed and mean.

Usage: python benchmarks/relearn_table.py [BENCH_FOLDER]   (default results/bench-scenario-relearn)

Reads each finished run's results.json (``<label>/seed-<n>``) and prints a Markdown table: the
forget, retain, neighbour and general accuracy of the unlearned model, the prefill,
hypothetical and 4-bit attacks' success, and the relearning attack's success over its test
items with the mean NLL (nats per token) of the test answers before relearning and after it at
the worst learning rate, and of their fact tokens alone where the run recorded it (runs from
the twenty-sixth session on; docs/RESULTS.md, "Sharpness-aware push-pull against relearning").
Trains and evaluates nothing.
"""

import argparse
import json
from pathlib import Path
from statistics import mean

from unlearnkit.report.runs import pipeline_relearn

COLUMNS = ("forget", "retain", "neighbor", "general", "prefill", "hypothetical",
           "quantize_4bit", "relearn", "relearn tests", "NLL before", "NLL after",
           "fact NLL before", "fact NLL after")


def row(results: dict) -> dict:
    after = results["results"]["after"]
    attacks = after.get("attacks", {})
    out = {split: after["summary"][split]["accuracy"]
           for split in ("forget", "retain", "neighbor", "general") if split in after["summary"]}
    out |= {name: attacks[name]["success_rate"] for name in ("prefill", "hypothetical",
                                                              "quantize_4bit", "relearn")
            if name in attacks and attacks[name]["success_rate"] is not None}
    if "relearn" in attacks:
        out["relearn tests"] = attacks["relearn"]["n"]
    # the attack's figures at its worst rate, as the leaderboard reads them
    names = {"answer_nll_before": "NLL before", "answer_nll": "NLL after",
             "target_nll_before": "fact NLL before", "target_nll": "fact NLL after"}
    out |= {names[k]: v for k, v in (pipeline_relearn(after) or {}).items()
            if k in names and v is not None}
    return out


def fmt(value) -> str:
    if value is None:
        return "-"
    return str(value) if isinstance(value, int) else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", nargs="?", default="results/bench-scenario-relearn", type=Path)
    args = parser.parse_args()
    runs: dict[str, dict[str, dict]] = {}
    for path in sorted(args.bench.glob("*/seed-*/results.json")):
        runs.setdefault(path.parent.parent.name, {})[path.parent.name] = row(
            json.loads(path.read_text()))
    if not runs:
        raise SystemExit(f"no finished run under {args.bench}")
    print("| method | seed | " + " | ".join(COLUMNS) + " |")
    print("| --- " * (len(COLUMNS) + 2) + "|")
    for label, seeds in runs.items():
        lines = list(seeds.items())
        if len(lines) > 1:
            lines.append(("mean", {c: mean(r[c] for r in seeds.values())
                                   for c in COLUMNS if all(c in r for r in seeds.values())}))
        for seed, values in lines:
            cells = [fmt(values.get(c)) for c in COLUMNS]
            print(f"| {label} | {seed} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
