"""Teacher-forced scoring throughput: ``models.engine.token_logprobs`` batched vs one at a time.

Usage: python benchmarks/scoring.py [--n 64] [--batch 16] [--repeats 3] [--tiny]
Scores the answer tokens of ``--n`` scenario records (what the evaluation's log-probability
metrics, the MIA attack and the adversarial-prefill refresh call) in batches of ``--batch``
(length-sorted, right padding) and one record at a time. Prints the median seconds over the
repeats (after one untimed warm-up of each mode), records/s, answer tokens/s and the
speed-up, then one JSON line.
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

from unlearnkit.data.render import render_record
from unlearnkit.models.engine import token_logprobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64, help="records scored")
    parser.add_argument("--batch", type=int, default=16, help="batch size of the batched mode")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="the tiny random model, 16 records")
    args = parser.parse_args()
    bench = make_setup(args.tiny)
    n, repeats = (16, 2) if args.tiny else (args.n, args.repeats)
    model, tok = bench.load(), bench.tokenizer
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
