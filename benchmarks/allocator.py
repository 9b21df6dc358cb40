"""Does backing PyTorch's large CPU tensors with transparent huge pages speed training up?

Usage: python benchmarks/allocator.py [--rounds 3] [--batch 16] [--variant full]
Runs ``benchmarks/train_step.py`` (an SFT step of the default model on scenario answers) in
fresh processes, alternating ``THP_MEM_ALLOC_ENABLE=0`` and ``=1`` (PyTorch's CPU allocator
then asks the kernel for 2 MiB pages, ``madvise(MADV_HUGEPAGE)``, for tensors of 2 MiB and
more), ``--rounds`` times each. Prints, per setting, the median of the rounds' median seconds
per step, the child processes' minor page faults and system CPU seconds per round, and the
ratio of the two medians. Every fresh allocation of a large tensor (logits over a 49k
vocabulary are hundreds of MiB) otherwise faults in 4 KiB pages one at a time.
"""

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import describe

STEP = Path(__file__).parent / "train_step.py"


def thp_mode() -> str:
    try:
        return Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().strip()
    except OSError:
        return "unknown"


def one_round(enabled: bool, batch: int, variant: str, repeats: int) -> dict[str, float]:
    env = {**os.environ, "THP_MEM_ALLOC_ENABLE": "1" if enabled else "0"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, str(STEP), "--repeats", str(repeats), "--batch",
                          str(batch), variant], env=env, check=True, capture_output=True,
                         text=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    found = re.search(r"median\s+([0-9.]+) s/step", out)
    if not found:
        raise SystemExit(f"could not read train_step.py's output:\n{out}")
    return {"seconds": float(found.group(1)),
            "minflt": after.ru_minflt - before.ru_minflt,
            "system": after.ru_stime - before.ru_stime}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=4, help="steps per process")
    parser.add_argument("--variant", default="full")
    args = parser.parse_args()
    print(f"machine: {describe()}\nkernel THP setting: {thp_mode()}\n"
          f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(default)')}")
    rows: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for k in range(args.rounds):
        for enabled in (False, True):
            row = one_round(enabled, args.batch, args.variant, args.repeats)
            rows[enabled].append(row)
            print(f"  round {k + 1} THP={int(enabled)}: {row['seconds']:.2f} s/step, "
                  f"{row['minflt'] / 1e6:.2f} M minor faults, {row['system']:.1f} s system",
                  flush=True)
    medians = {e: statistics.median(r["seconds"] for r in rows[e]) for e in rows}
    for enabled in (False, True):
        faults = statistics.median(r["minflt"] for r in rows[enabled]) / 1e6
        system = statistics.median(r["system"] for r in rows[enabled])
        print(f"THP_MEM_ALLOC_ENABLE={int(enabled)}: median {medians[enabled]:.2f} s/step, "
              f"{faults:.2f} M minor faults, {system:.1f} s system CPU per process")
    print(f"ratio huge pages / 4 KiB pages: {medians[True] / medians[False]:.2f}")


if __name__ == "__main__":
    main()
