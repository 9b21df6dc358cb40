"""Which methods are on the Pareto front under each reading of the objectives.

Usage: python benchmarks/front_readings.py LEADERBOARD_JSON [LEADERBOARD_JSON ...]

For each bench leaderboard (``unlearn bench``'s ``leaderboard.json``), rebuilds the rows from
the per-seed metrics it records and prints the front with forget accuracy and attack success
as measured or floored at the oracle's (``floor_at_oracle``), and with utility as mean(retain,
general) or with the share of forget answers in language too (``utility_fluency``), with the
utility of each front member. Trains and scores nothing.
"""

import argparse
import json
from pathlib import Path

from unlearnkit.report.leaderboard import leaderboard


def entries(board: dict) -> list[dict]:
    """The leaderboard's input (per-seed metrics) from its rows."""
    out = []
    for row in board["methods"]:
        n = len(row["seeds"])
        runs = [{key: m["values"][i] for key, m in row["metrics"].items()} for i in range(n)]
        out.append({"label": row["label"], "method": row["method"], "seeds": row["seeds"],
                    "reference": row["reference"], "runs": runs})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("boards", nargs="+", type=Path)
    args = parser.parse_args()
    for path in args.boards:
        board = json.loads(path.read_text())
        margin = board["config"]["forget_margin"]
        print(f"{path}:")
        for floor in (False, True):
            for fluency in (False, True):
                rows = leaderboard(entries(board), board["confidence"], margin, floor, fluency)
                front = [f"{r['label']} ({r['objectives']['utility']:.3f})"
                         for r in rows if r["pareto"]]
                print(f"  floor_at_oracle {floor!s:5}  utility_fluency {fluency!s:5}  front: "
                      + ", ".join(front))


if __name__ == "__main__":
    main()
