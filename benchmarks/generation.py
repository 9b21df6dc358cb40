"""Generation throughput: our batched greedy loop vs one prompt at a time through `generate`.

Usage: python benchmarks/generation.py [--n 32] [--batch 32] [--repeats 3] [--tokens 24]
Prints the median seconds of each mode over the repeats, on the default model:
  batched        unlearnkit's engine.generate (shared prefix once, finished rows dropped)
  hf_batched     transformers' generate on the same left-padded batches
  one_at_a_time  transformers' generate, one prompt per call (the reference of the speed-up)
All three must produce the same answers; the script says so or exits with an error.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

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

    def run(size: int, backend: str = "auto") -> list[str]:
        return generate(model, tok, prompts, max_new_tokens=args.tokens, batch_size=size,
                        backend=backend)

    modes = {
        "batched": lambda: run(args.batch),
        "hf_batched": lambda: run(args.batch, "transformers"),
        "one_at_a_time": lambda: run(1, "transformers"),
    }
    timings = {mode: [] for mode in modes}
    answers = {}
    with torch.no_grad():
        for _ in range(args.repeats):
            for mode, fn in modes.items():
                start = time.perf_counter()
                answers[mode] = fn()
                timings[mode].append(time.perf_counter() - start)
    differ = sum(a != b for a, b in zip(answers["batched"], answers["one_at_a_time"],
                                        strict=True))
    if differ:
        sys.exit(f"batched and one-at-a-time answers differ on {differ} of {args.n} prompts")
    med = {k: statistics.median(v) for k, v in timings.items()}
    print(f"machine: {describe()}")
    print(f"{args.n} prompts, max {args.tokens} new tokens, {args.repeats} repeats (median s)")
    for mode, value in med.items():
        print(f"  {mode:<14} {value:7.2f} s   {args.n / value:6.2f} prompts/s")
    print(f"  speed-up       {med['one_at_a_time'] / med['batched']:.1f}x "
          f"(transformers' batched generate: {med['one_at_a_time'] / med['hf_batched']:.1f}x); "
          "the same answers in every mode")


if __name__ == "__main__":
    main()
