"""Generation throughput: batched (left padding, KV cache) vs one prompt at a time.

Usage: python benchmarks/generation.py [--n 32] [--batch 32] [--repeats 3] [--tokens 24]
Prints the median seconds of each mode over the repeats and their ratio, on the default model.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import describe

from unlearnkit.cli import _quiet_libraries
from unlearnkit.data.render import render
from unlearnkit.data.scenario import build_scenario
from unlearnkit.models.engine import generate
from unlearnkit.models.loader import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=24)
    args = parser.parse_args()
    _quiet_libraries()
    model, tok = load_model()
    prompts = [render(tok, r.question) for r in build_scenario().records[: args.n]]
    timings = {"batched": [], "one_at_a_time": []}
    for _ in range(args.repeats):
        for mode, size in (("batched", args.batch), ("one_at_a_time", 1)):
            start = time.perf_counter()
            generate(model, tok, prompts, max_new_tokens=args.tokens, batch_size=size)
            timings[mode].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in timings.items()}
    print(f"machine: {describe()}")
    print(f"{args.n} prompts, max {args.tokens} new tokens, {args.repeats} repeats (median s)")
    for mode, value in med.items():
        print(f"  {mode:<14} {value:7.2f} s   {args.n / value:6.2f} prompts/s")
    print(f"  speed-up       {med['one_at_a_time'] / med['batched']:.1f}x")


if __name__ == "__main__":
    main()
