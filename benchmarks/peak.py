"""The machine's measured matmul peak: GFLOP/s of large square matmuls on the CPU (or a GPU).

Usage: python benchmarks/peak.py [--sizes 1024,2048,4096] [--repeats 5] [--device cpu] [--tiny]
For each kind and size n, a (n x n) @ (n x n) product counts 2 n^3 FLOPs; the figure is the
median over the repeats (after one untimed warm-up), and a kind's peak is its best size; a size
whose one matmul would take over 5 s (extrapolated from the size below) is skipped. Kinds:
fp32 (float32 tensors), bf16-autocast (float32 tensors under
``torch.autocast(device, dtype=torch.bfloat16)``, what ``optim.mixed_precision: bf16`` runs)
and bf16 (native bfloat16 tensors). Threads: ``torch.get_num_threads()`` (printed with the
machine). ``matmul_peak(kind)`` is what benchmarks/train_throughput.py divides by;
benchmarks/gpu_preset.py measures a GPU's with ``device="cuda"`` (each timing synchronised).
"""

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _machine import describe

KINDS = ("fp32", "bf16-autocast", "bf16")
SIZES = (1024, 2048, 4096)
TINY_SIZES = (128, 256)
MAX_SECONDS = 5.0  # longest single matmul a sweep starts


def matmul_gflops(kind: str, n: int, repeats: int = 5, device: str = "cpu") -> float:
    """Median GFLOP/s of ``repeats`` timed n x n matmuls of ``kind`` (one warm-up first)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    dtype = torch.bfloat16 if kind == "bf16" else torch.float32
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device, dtype)
    b = torch.randn(n, n, generator=gen).to(device, dtype)
    kind_of_device = device.split(":")[0]
    ctx = (lambda: torch.autocast(kind_of_device, dtype=torch.bfloat16)) \
        if kind == "bf16-autocast" else contextlib.nullcontext
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    with torch.no_grad():
        for i in range(repeats + 1):
            with ctx():
                sync()
                start = time.perf_counter()
                torch.matmul(a, b)
                sync()
                elapsed = time.perf_counter() - start
            if i:
                times.append(elapsed)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def sweep(kind: str, sizes=SIZES, repeats: int = 5, max_seconds: float = MAX_SECONDS,
          device: str = "cpu") -> dict[int, float]:
    """GFLOP/s per size, ascending; a size whose single matmul would take over ``max_seconds``
    (extrapolated as n^3 from the previous size) is skipped: on a CPU without bf16 matmul
    instructions a 4096 bf16 product takes minutes."""
    out: dict[int, float] = {}
    for n in sorted(sizes):
        if out:
            prev = max(out)
            if 2 * n ** 3 / (out[prev] * 1e9) > max_seconds:
                break
        out[n] = matmul_gflops(kind, n, repeats, device)
    return out


def matmul_peak(kind: str = "fp32", sizes=SIZES, repeats: int = 5, device: str = "cpu") -> float:
    """The measured peak, in GFLOP/s: the best size's median (see :func:`matmul_gflops`)."""
    return max(sweep(kind, sizes, repeats, device=device).values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)),
                        help="matrix sizes n, comma-separated (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="timed matmuls per size")
    parser.add_argument("--kinds", default=",".join(KINDS), help="default %(default)s")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default %(default)s)")
    parser.add_argument("--tiny", action="store_true",
                        help=f"sizes {TINY_SIZES}, 2 repeats: checks the script runs")
    args = parser.parse_args()
    sizes = TINY_SIZES if args.tiny else tuple(int(s) for s in args.sizes.split(","))
    repeats = 2 if args.tiny else args.repeats
    print(f"machine: {describe()}")
    print(f"median GFLOP/s of {repeats} matmuls per size, {torch.get_num_threads()} threads")
    print(f"  {'kind':<14}" + "".join(f"{f'n={n}':>10}" for n in sizes) + f"{'peak':>10}")
    result = {"machine": describe(), "threads": torch.get_num_threads(), "gflops": {}}
    for kind in args.kinds.split(","):
        row = sweep(kind, sizes, repeats, device=args.device)
        result["gflops"][kind] = {"per_size": row, "peak": max(row.values())}
        print(f"  {kind:<14}" + "".join(f"{row[n]:10.1f}" if n in row else f"{'skipped':>10}"
                                        for n in sizes) + f"{max(row.values()):10.1f}",
              flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
