"""Peak resident memory (RSS) per training method, each in a fresh process.

Usage: python benchmarks/memory.py [--methods a,b] [--lora 0,16] [--dtype fp32] [--steps 2]
       [--tiny]

Every (method, LoRA rank) runs in its own subprocess, which builds the method exactly as
benchmarks/train_throughput.py does (the pipeline's own code: teacher cache, prepare_items,
training.loop.train) and trains 1 + ``--steps`` steps. Figures per run:

* process peak: ``ru_maxrss`` of that child (``os.wait4``), everything included (imports, the
  model load, the teacher / reference computation if its cache is cold, training);
* after prepare: VmRSS once the model, plan and precomputed references are ready;
* training peak: VmHWM over the training steps only (the peak is reset through
  /proc/self/clear_refs after prepare; "n/a" where the kernel does not allow it).

``load`` is the reference row: imports + the model loaded, nothing else. The teacher check:
push-pull never holds a teacher while training (its outputs are cached), and
``pushpull_recompute - pushpull`` per rank shows what one costs: the teacher forward's
activations for both, plus, with full fine-tuning, a frozen copy of the model. With LoRA the
teacher is the same network with its adapters disabled (shared weights), so full minus LoRA
should be about one fp32 copy of the model.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import describe

MARK = "memory-result: "


def _status(field: str) -> int | None:
    """A /proc/self/status field in KiB (VmRSS, VmHWM), or None off Linux."""
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))
    except (OSError, StopIteration):
        return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def child(args) -> None:
    from _setup import make_setup
    from train_throughput import run_config

    bench = make_setup(args.tiny)
    out = {"method": args.child, "lora": args.rank, "dtype": args.dtype}
    if args.child == "load":
        model = bench.load()
        out["params"] = sum(p.numel() for p in model.parameters())
        out["after_prepare_kib"] = _status("VmRSS")
        out["process_peak_kib"] = _status("VmHWM")
    else:
        state = {}

        def prepared() -> None:
            state["prepare_peak_kib"] = _status("VmHWM")
            state["after_prepare_kib"] = _status("VmRSS")
            state["reset"] = _reset_peak()

        run_config(bench, args.child, args.dtype, args.rank, 1, args.steps, on_prepared=prepared)
        end = _status("VmHWM")
        out["after_prepare_kib"] = state["after_prepare_kib"]
        out["training_peak_kib"] = end if state["reset"] else None
        out["process_peak_kib"] = max(end, state["prepare_peak_kib"])
    print(MARK + json.dumps(out), flush=True)


def measure(method: str, rank: int, args) -> dict:
    """Run one method in a fresh interpreter and read back its result line."""
    cmd = [sys.executable, __file__, "--child", method, "--rank", str(rank),
           "--dtype", args.dtype, "--steps", str(args.steps)] + (["--tiny"] if args.tiny else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"method": method, "lora": rank, "error": tail}
    return json.loads(lines[-1][len(MARK):])


def _mib(kib: int | None) -> str:
    return f"{kib / 1024:9.0f}" if kib is not None else f"{'n/a':>9}"


def teacher_check(results: list[dict]) -> list[dict]:
    """Training peak of push-pull recomputing its teacher minus push-pull with the cache."""
    by = {(r["method"], r["lora"]): r for r in results if "error" not in r}
    load = by.get(("load", 0))
    copy_mib = load["params"] * 4 / 2 ** 20 if load else None  # one fp32 copy of the weights
    out = []
    for rank in sorted({r["lora"] for r in results}):
        cached, again = by.get(("pushpull", rank)), by.get(("pushpull_recompute", rank))
        if cached and again:
            key = "training_peak_kib" if cached.get("training_peak_kib") else "process_peak_kib"
            out.append({"lora": rank, "measure": key, "model_fp32_mib": copy_mib,
                        "teacher_extra_mib": (again[key] - cached[key]) / 1024})
    return out


def print_checks(checks: list[dict]) -> None:
    """Each rank's teacher cost, then full minus LoRA: both pay the teacher's activations (its
    full-vocabulary logits), so their difference is the frozen copy's weights alone."""
    for c in checks:
        print(f"  teacher held while training, lora {c['lora']}: "
              f"{c['teacher_extra_mib']:+.0f} MiB ({c['measure']})")
    full = next((c for c in checks if c["lora"] == 0), None)
    for c in checks:
        if full is not None and c["lora"]:
            size = f" (one fp32 copy of the model: {c['model_fp32_mib']:.0f} MiB)" \
                if c["model_fp32_mib"] is not None else ""
            print(f"  frozen copy = full - lora {c['lora']}: "
                  f"{full['teacher_extra_mib'] - c['teacher_extra_mib']:+.0f} MiB{size}")


def main() -> None:
    from train_throughput import DTYPES, METHODS

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(("load", *METHODS)), help="default: all")
    parser.add_argument("--lora", default="0,16", help="LoRA ranks; 0 = full fine-tuning")
    parser.add_argument("--dtype", default="fp32", choices=list(DTYPES))
    parser.add_argument("--steps", type=int, default=2, help="training steps after 1 warm-up")
    parser.add_argument("--tiny", action="store_true", help="the tiny random model")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    print(f"machine: {describe()}\nmodel: {'tiny random Llama' if args.tiny else 'default'}; "
          f"{args.dtype}; 1 + {args.steps} steps; one fresh process per row (MiB)")
    print(f"  {'method':<19}{'lora':>5}{'process':>9}{'prepared':>9}{'training':>9}")
    results = []
    for method in args.methods.split(","):
        for rank in [0] if method == "load" else [int(x) for x in args.lora.split(",")]:
            r = measure(method, rank, args)
            results.append(r)
            head = f"  {method:<19}{rank:>5}"
            print(f"{head}  failed: {r['error']}" if "error" in r else
                  f"{head}{_mib(r['process_peak_kib'])}{_mib(r['after_prepare_kib'])}"
                  f"{_mib(r.get('training_peak_kib'))}", flush=True)
    checks = teacher_check(results)
    print_checks(checks)
    print(json.dumps({"machine": describe(), "tiny": args.tiny, "dtype": args.dtype,
                      "results": results, "teacher_check": checks}))


if __name__ == "__main__":
    main()
