"""Greedy answers and the top next-token log-probabilities along them, for several models.

Usage: python benchmarks/next_tokens.py --question "How many days are in a week?" \
           [--question ...] [--tokens 4] [--top 3] [--max-new 16] MODEL [MODEL ...]
For each model and question: the greedy answer (the chat template, no system prompt beyond the
template's) and, at each of its first ``--tokens`` positions, the ``--top`` most likely tokens
with their log-probabilities. Shows how close a flipped answer was to a tie.
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _machine import describe

from unlearnkit.cli import _quiet_libraries
from unlearnkit.data.render import end_of_turn, render
from unlearnkit.models.loader import load_model


def greedy_with_tops(model, tokenizer, question: str, max_new: int, top: int):
    ids = list(render(tokenizer, question).input_ids)
    stop = end_of_turn(tokenizer)[1]
    answer, tops = [], []
    with torch.no_grad():
        for _ in range(max_new):
            logp = model(torch.tensor([ids])).logits[0, -1].float().log_softmax(-1)
            values, index = logp.topk(top)
            tops.append([(tokenizer.decode([int(i)]), float(v))
                         for v, i in zip(values, index, strict=True)])
            nxt = int(index[0])
            if nxt == stop:
                break
            ids.append(nxt)
            answer.append(nxt)
    return tokenizer.decode(answer), tops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--question", action="append", required=True)
    parser.add_argument("--tokens", type=int, default=4)
    parser.add_argument("--top", type=int, default=3)
    parser.add_argument("--max-new", type=int, default=16)
    args = parser.parse_args()
    _quiet_libraries()
    print(f"machine: {describe()}")
    for name in args.models:
        model, tokenizer = load_model(name)
        print(f"\n{name}")
        for question in args.question:
            text, tops = greedy_with_tops(model, tokenizer, question, args.max_new, args.top)
            print(f"  {question} -> {text!r}")
            for k, row in enumerate(tops[:args.tokens]):
                print(f"    token {k + 1}: " + ", ".join(f"{t!r} {v:.2f}" for t, v in row))


if __name__ == "__main__":
    main()
