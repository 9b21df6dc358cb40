"""Wall time of `make demo`: the first run on an empty cache, then the cached re-run.

Usage: python benchmarks/demo_time.py [--runs 2] [--keep] [--tiny]
Runs ``make demo`` (in the project root) ``--runs`` times with ``UNLEARNKIT_CACHE`` pointing
at a new empty temporary folder, and prints each run's wall time and exit code. The first run
does everything: it converts the default model from its GGUF file into the cache, asks the
base model the general probes, trains two models (the injected "before" model and the oracle),
computes the teacher cache, unlearns with push-pull and evaluates base, before, after and
oracle. A re-run finds the converted model, both trained models, the teacher cache and the
evaluations of base, before and oracle in the cache: it trains push-pull and evaluates the
"after" model again. ``make demo`` writes runs/demo/ (it is overwritten). Each run's output
goes to a log in the temporary folder, deleted at the end unless ``--keep``.

``--tiny`` runs ``unlearn demo`` instead, on the tiny random model saved to a folder, a
6-person scenario, 1 injection epoch and 2 unlearning steps, writing to the temporary folder:
it checks this script, not the demo's time.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import describe

ROOT = Path(__file__).resolve().parents[1]


def tiny_command(tmp: Path) -> list[str]:
    """``unlearn demo`` on a tiny random model folder (written here), small and fast."""
    from unlearnkit.cli import _quiet_libraries
    from unlearnkit.models.tiny import tiny_model, tiny_tokenizer

    _quiet_libraries()
    folder = tmp / "tiny-model"
    tok = tiny_tokenizer()
    tiny_model(len(tok)).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    sets = {"setup.model": folder, "setup.scenario.n_people": 6, "setup.scenario.n_forget": 1,
            "setup.scenario.neighbors_per_forget": 1, "setup.inject.epochs": 1,
            "unlearn.mix.steps": 2, "max_new_tokens": 8, "output": tmp / "demo",
            "train_only.layers": "[1]",  # the demo trains blocks 4-9; the tiny model has 2
            # a random model's replay answers never end, so it has no general keep items
            "unlearn.mix.general": 0}
    unlearn = Path(sys.executable).parent / "unlearn"
    return [str(unlearn), "demo", *(f"--set={k}={v}" for k, v in sets.items())]


def timed(cmd: list[str], env: dict, log: Path) -> tuple[float, int]:
    start = time.perf_counter()
    with log.open("w") as fh:
        code = subprocess.run(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                              check=False).returncode
    return time.perf_counter() - start, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2, help="first run + cached re-runs")
    parser.add_argument("--keep", action="store_true", help="keep the cache and the logs")
    parser.add_argument("--tiny", action="store_true", help="unlearn demo on the tiny model")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="unlearnkit-demo-time-"))
    env = {**os.environ, "UNLEARNKIT_CACHE": str(tmp / "cache"),
           "TOKENIZERS_PARALLELISM": "false"}
    cmd = tiny_command(tmp) if args.tiny else ["make", "demo"]
    if args.tiny:
        env["OMP_NUM_THREADS"] = "1"  # a tiny model runs as fast on one thread
    print(f"machine: {describe()}\ncommand: {' '.join(cmd)}\nUNLEARNKIT_CACHE={tmp / 'cache'}",
          flush=True)
    runs = []
    for i in range(args.runs):
        log = tmp / f"run{i + 1}.log"
        seconds, code = timed(cmd, env, log)
        runs.append({"run": i + 1, "cache": "empty" if i == 0 else "warm",
                     "seconds": round(seconds, 1), "exit_code": code})
        print(f"  run {i + 1} ({runs[-1]['cache']} cache): {seconds:8.1f} s  exit {code}",
              flush=True)
        if code:
            print("    " + "\n    ".join(log.read_text().splitlines()[-15:]))
            break
    print(json.dumps({"machine": describe(), "command": cmd, "runs": runs}))
    if args.keep:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
