"""What the fluency judge flags, answer by answer (the evidence behind the bench's column).

Usage: python benchmarks/fluency_check.py [--judge smollm2-135m-instruct]
           [--data ../shared/data/tofu] [--gold 1000] [--show METHOD ...] FOLDER [FOLDER ...]

1. Gold answers: the first ``--gold`` TOFU retain90 answers scored by the judge
   (:func:`unlearnkit.evaluation.fluency.score_answers`); prints their median, 99% and 99.9%
   quantiles and maximum: the tail of fluent English under the judge.
   Then the line: the bench's threshold (its leaderboard.json, or ``--line``).
2. Per method (all seeds; a FOLDER is a bench output or one run's folder): its forget
   answers' median score (refusals left out: the bench never scores them) and the share of
   all its forget answers above the line, alone and together with the degenerate test.
3. ``--show``: that method's answers, sorted by score, each with its score (for an answer of
   several lines also its whole answer's and its first line's) and whether the degenerate
   test flags it: read them to see what the judge passes.
"""

import argparse
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

import torch

from unlearnkit.data.adapters import read_tofu
from unlearnkit.evaluation.fluency import answer_score, is_unlikely, score_answers, score_parts
from unlearnkit.evaluation.metrics import is_degenerate
from unlearnkit.models.loader import DEFAULT_MODEL, load_model


def tofu_rows(data: Path) -> dict[str, dict]:
    """TOFU ids -> {question, answer}, read by the project's TOFU adapter."""
    return {r.id: {"question": r.question, "answer": r.answer}
            for path in sorted(data.glob("*.json")) for r in read_tofu(path, split="retain")}


def forget_answers(folders: list[Path]) -> dict[str, list[tuple[str, str, bool]]]:
    """method -> [(item id, generation, refused)] over all seeds."""
    out: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for folder in folders:
        one = folder / "results.json"
        for results in [one] if one.exists() else sorted(folder.glob("*/seed-*/results.json")):
            method = folder.name if results == one else results.parent.parent.name
            out[method] += [(i["id"], i["generation"], i["refused"])
                            for i in json.loads(results.read_text())["results"]["after"]["items"]
                            if i["split"] == "forget"]
    return out


def bench_line(folders: list[Path]) -> float:
    for folder in folders:
        board = folder / "leaderboard.json"
        if board.exists() and (judge := json.loads(board.read_text()).get("fluency_judge")):
            return judge["threshold"]
    raise SystemExit("no leaderboard.json with a fluency judge among the folders: give --line")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--judge", default=DEFAULT_MODEL)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/tofu"))
    parser.add_argument("--gold", type=int, default=1000)
    parser.add_argument("--line", type=float, help="the threshold (default: the one in the "
                        "first FOLDER's leaderboard.json, from its fluency judge)")
    parser.add_argument("--show", nargs="*", default=[])
    args = parser.parse_args()
    torch.set_num_threads(2)
    model, tokenizer = load_model(args.judge)
    rows = tofu_rows(args.data)
    retain = [rows[f"tofu-retain90-{n}"] for n in range(args.gold)]
    gold = sorted(score_answers(model, tokenizer, [(r["question"], r["answer"]) for r in retain]))
    q = {p: gold[int(p / 100 * (len(gold) - 1))] for p in (50, 99, 99.9)}
    print(f"{len(gold)} gold retain90 answers: median {q[50]:.2f}, 99% {q[99]:.2f}, "
          f"99.9% {q[99.9]:.2f}, max {gold[-1]:.2f} nats per token")
    line = args.line or bench_line(args.folders)
    print(f"line: {line:.2f} ({sum(g > line for g in gold)} of the {len(gold)} above it)")
    for method, answers in sorted(forget_answers(args.folders).items()):
        # refusals are not scored and never unlikely, as in the bench
        scores = [-math.inf] * len(answers)
        parts: list[tuple[float, float | None]] = [(math.nan, None)] * len(answers)
        todo = [k for k, (_, _, refused) in enumerate(answers) if not refused]
        for k, part in zip(todo, score_parts(model, tokenizer, [
                (rows[answers[k][0]]["question"], answers[k][1]) for k in todo]), strict=True):
            parts[k], scores[k] = part, answer_score(*part)
        flagged = [is_unlikely(s, line) for s in scores]
        either = [f or is_degenerate(g) for f, (_, g, _) in zip(flagged, answers, strict=True)]
        n = len(answers)
        print(f"  {method:22s} n={n:4d} refusals {n - len(todo):3d} median "
              f"{statistics.median(scores[k] for k in todo) if todo else math.nan:5.2f}  "
              f"unlikely {sum(flagged) / n:6.1%}  unlikely or degenerate {sum(either) / n:6.1%}")
        if method in args.show:
            print("    score (whole answer / first line, for answers of several lines), "
                  "D: degenerate")
            for s, (whole, first), (_, g, _) in sorted(
                    zip(scores, parts, answers, strict=True), key=lambda p: p[0]):
                detail = f"{whole:5.2f} / {first:5.2f}" if first is not None else " " * 13
                print(f"    {s:5.2f} ({detail}) {'D' if is_degenerate(g) else ' '} {g[:120]!r}")

if __name__ == "__main__":
    main()
