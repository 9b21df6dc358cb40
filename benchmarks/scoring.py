"""Teacher-forced scoring throughput: ``models.engine.token_logprobs`` batched vs one at a time.

Usage: python benchmarks/scoring.py [--n 64] [--batch 16] [--repeats 3] [--tiny] [--choices]
Scores the answer tokens of ``--n`` scenario records (what the evaluation's log-probability
metrics, the MIA attack and the adversarial-prefill refresh call) in batches of ``--batch``
(length-sorted, right padding) and one record at a time. Prints the median seconds over the
repeats (after one untimed warm-up of each mode), records/s, answer tokens/s and the
speed-up, then one JSON line.

``--choices``: the records' multiple-choice versions instead (the question with its lettered
options, each letter as the answer; what the ``mcq`` attack and MMLU-style accuracy score),
every letter's item scored (``token_logprobs``) against one pass per question that reads
every letter off its last position (``first_token_logprobs``), both batched; the two must
pick the same letters.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import describe
from _setup import make_setup

from unlearnkit.data.adapters import LETTERS, format_mcq
from unlearnkit.data.render import render_record
from unlearnkit.models.engine import first_token_logprobs, token_logprobs


def choices(model, tok, records, batch: int, repeats: int) -> dict:
    """Median seconds of the two ways of scoring every question's letters, and their picks."""
    groups = [[render_record(tok, r, question=format_mcq(r.question, r.choices), answer=letter)
               for letter in LETTERS[:len(r.choices)]] for r in records if r.choices]
    items = [it for g in groups for it in g]
    ways = {
        "every_letter": lambda: token_logprobs(model, tok, items, batch_size=batch),
        "one_pass_per_question": lambda: first_token_logprobs(model, tok, groups,
                                                              batch_size=batch),
    }
    timings = {way: [] for way in ways}
    last = {}  # each way's scores from its last repeat, compared below
    for i in range(repeats + 1):
        for way, fn in ways.items():
            start = time.perf_counter()
            last[way] = fn()
            if i:
                timings[way].append(time.perf_counter() - start)
    flat = iter(float(t[0]) for t in last["every_letter"])
    every = [[next(flat) for _ in g] for g in groups]
    one = last["one_pass_per_question"]
    same = sum(max(range(len(a)), key=a.__getitem__) == max(range(len(b)), key=b.__getitem__)
               for a, b in zip(every, one, strict=True))
    gap = max(abs(x - y) for a, b in zip(every, one, strict=True)
              for x, y in zip(a, b, strict=True))
    return {"questions": len(groups), "items": len(items),
            "median_s": {k: statistics.median(v) for k, v in timings.items()},
            "same_pick": same, "max_abs_logprob_gap": gap}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64, help="records scored")
    parser.add_argument("--batch", type=int, default=16, help="batch size of the batched mode")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="the tiny random model, 16 records")
    parser.add_argument("--choices", action="store_true",
                        help="score multiple-choice letters: every letter vs one pass")
    args = parser.parse_args()
    bench = make_setup(args.tiny)
    n, repeats = (16, 2) if args.tiny else (args.n, args.repeats)
    model, tok = bench.load(), bench.tokenizer
    if args.choices:
        got = choices(model, tok, bench.records[:n], args.batch, repeats)
        med = got["median_s"]
        print(f"machine: {describe()}\nmodel: {bench.name}; {got['questions']} questions, "
              f"{got['items']} letters, batch {args.batch}, {repeats} repeats (median s)")
        for way, value in med.items():
            print(f"  {way:<22} {value:7.3f} s  {got['questions'] / value:7.1f} questions/s")
        print(f"  speed-up {med['every_letter'] / med['one_pass_per_question']:.1f}x; same pick "
              f"on {got['same_pick']} of {got['questions']}; largest log-prob gap "
              f"{got['max_abs_logprob_gap']:.2e}")
        print(json.dumps({"machine": describe(), "model": bench.name, "batch": args.batch,
                          **got}))
        return
    items = [render_record(tok, r) for r in bench.records[:n]]
    answer_tokens = sum(len(it.input_ids) - it.response_start for it in items)
    modes = {"batched": args.batch, "one_at_a_time": 1}
    timings = {mode: [] for mode in modes}
    for i in range(repeats + 1):
        for mode, size in modes.items():
            start = time.perf_counter()
            token_logprobs(model, tok, items, batch_size=size)
            if i:
                timings[mode].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in timings.items()}
    print(f"machine: {describe()}\nmodel: {bench.name}; {len(items)} records, {answer_tokens} "
          f"answer tokens, {repeats} repeats (median s)")
    for mode, value in med.items():
        print(f"  {mode:<14} (batch {modes[mode]:>2}) {value:7.3f} s  "
              f"{len(items) / value:7.1f} records/s  {answer_tokens / value:8.0f} tokens/s")
    print(f"  speed-up       {med['one_at_a_time'] / med['batched']:.1f}x")
    print(json.dumps({"machine": describe(), "model": bench.name, "records": len(items),
                      "answer_tokens": answer_tokens, "batch": args.batch, "median_s": med}))


if __name__ == "__main__":
    main()
