"""Two trainings side by side, one thread each, against one training on every thread.

Usage: python benchmarks/side_by_side.py [--rounds 3] [--repeats 5] [--batch 8]

What `inject.processes` relies on (docs/DESIGN.md, "Scenario injection"): on a small CPU the
default model gains little from a second thread, so two models trained at once on one thread
each finish in about the time of one. Each round times the injection's SFT step
(benchmarks/train_step.py: embedding matrix frozen, shared-prefix forward, as injection
runs it) twice: once in one process with as many threads as the machine has cores, once in
two processes started together with one thread each. Prints each round's medians and the
throughput ratio (steps per second of the pair over those of the single process), then the
median ratio over the rounds.
Run it on an otherwise idle machine.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import describe

STEP = Path(__file__).parent / "train_step.py"
MEDIAN = re.compile(r"median\s+([0-9.]+) s/step")


def _start(threads: int, repeats: int, batch: int) -> subprocess.Popen:
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return subprocess.Popen([sys.executable, str(STEP), "--repeats", str(repeats), "--batch",
                             str(batch), "frozen_emb"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def _median(proc: subprocess.Popen) -> float:
    out, _ = proc.communicate()
    found = MEDIAN.findall(out)
    if proc.returncode or not found:
        raise SystemExit(f"train_step.py failed (exit {proc.returncode}):\n{out}")
    return float(found[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"machine: {describe()}")
    print(f"SFT step of {args.batch} scenario rows, median of the last {args.repeats - 1} of "
          f"{args.repeats} steps per process")
    ratios, rounds = [], []
    for round_ in range(1, args.rounds + 1):
        alone = _median(_start(cores, args.repeats, args.batch))
        pair = [_start(1, args.repeats, args.batch) for _ in range(2)]
        first, second = (_median(p) for p in pair)
        ratio = (1 / first + 1 / second) / (1 / alone)
        ratios.append(ratio)
        rounds.append({"alone_s_per_step": alone, "pair_s_per_step": [first, second],
                       "throughput_ratio": round(ratio, 3)})
        print(f"round {round_}: one process, {cores} threads {alone:.2f} s/step; two processes, "
              f"1 thread each {first:.2f} and {second:.2f} s/step; throughput x{ratio:.2f}")
    print(f"median throughput of two side-by-side trainings over one: x"
          f"{statistics.median(ratios):.2f} ({args.rounds} rounds)")
    print(json.dumps({"machine": describe(), "batch": args.batch, "threads_alone": cores,
                      "rounds": rounds, "median_ratio": round(statistics.median(ratios), 3)}))


if __name__ == "__main__":
    main()
