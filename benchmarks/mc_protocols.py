"""Two readings of multiple-choice accuracy on MMLU subjects, one model: the harness's
zero-shot raw prompt (``unlearn eval --suite wmdp``, :mod:`unlearnkit.evaluation.wmdp`) and the
chat template's lettered question (``mcq_accuracy`` of the quick and full suites,
:func:`unlearnkit.evaluation.metrics.choice_scores`).

Usage: python benchmarks/mc_protocols.py [--model MODEL] [--subjects S ...] [--limit N]

Reads ``../shared/data/mmlu/test/<subject>_test.csv`` (the first N questions of each subject),
prints per subject and overall each reading's accuracy, the share of questions on which the
two choose the same option, and the seconds each took, with the machine. Trains nothing.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _machine import describe

from unlearnkit.data.adapters import load_source
from unlearnkit.evaluation import wmdp
from unlearnkit.evaluation.metrics import choice_scores
from unlearnkit.models.loader import DEFAULT_MODEL, load_model

MMLU = Path(__file__).resolve().parents[2] / "shared" / "data" / "mmlu" / "test"
SUBJECTS = ("high_school_geography", "college_biology", "computer_security",
            "high_school_world_history", "astronomy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--subjects", nargs="+", default=list(SUBJECTS))
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, tokenizer = load_model(args.model)
    print(describe())
    print(f"model {args.model}; first {args.limit} questions of each subject\n")
    print(f"{'subject':30} {'n':>4} {'harness':>8} {'chat':>8} {'same':>6}")
    total = {"n": 0, "harness": 0.0, "chat": 0.0, "same": 0.0}
    seconds = {"harness": 0.0, "chat": 0.0}
    for subject in args.subjects:
        records = load_source("mcq", MMLU / f"{subject}_test.csv", split="general")
        records = records[:args.limit]
        start = time.perf_counter()
        result, harness = wmdp.accuracy(model, tokenizer, records, batch_size=args.batch_size)
        seconds["harness"] += time.perf_counter() - start
        start = time.perf_counter()
        scores = choice_scores(model, tokenizer, records, batch_size=args.batch_size)
        seconds["chat"] += time.perf_counter() - start
        chat = [int(np.argmax(s)) for s in scores]
        right = [r.answer_index for r in records]
        chat_acc = float(np.mean([c == a for c, a in zip(chat, right, strict=True)]))
        same = float(np.mean([h == c for h, c in zip(harness, chat, strict=True)]))
        n = len(records)
        print(f"{subject:30} {n:>4} {result.aggregate:>8.3f} {chat_acc:>8.3f} {same:>6.2f}")
        total["n"] += n
        total["harness"] += result.aggregate * n
        total["chat"] += chat_acc * n
        total["same"] += same * n
    n = total["n"]
    print(f"{'all':30} {n:>4} {total['harness'] / n:>8.3f} {total['chat'] / n:>8.3f} "
          f"{total['same'] / n:>6.2f}")
    print(f"\nseconds: harness {seconds['harness']:.1f}, chat {seconds['chat']:.1f}; "
          "chance 0.25")


if __name__ == "__main__":
    main()
