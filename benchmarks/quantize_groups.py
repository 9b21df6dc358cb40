"""4-bit quantization per row against per group of inputs, on a run's models.

Usage: python benchmarks/quantize_groups.py [RUN_FOLDER] [--groups 0 128] [--models ...]

For each model of an ``unlearn run`` / ``make demo`` folder (default runs/demo: before, after
and oracle) the share of forget questions answered by the plain probes, by the 8-bit attack
and by the 4-bit attack at each group size (0: one scale per row), with the same judge as the
run. Prints one line per model and group size with the seconds it took.
"""

import argparse
import json
import time
from pathlib import Path

from unlearnkit.data.standardize import load_dataset
from unlearnkit.evaluation.attacks import run_attacks
from unlearnkit.models.loader import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default="runs/demo", type=Path)
    parser.add_argument("--groups", type=int, nargs="+", default=[0, 128])
    parser.add_argument("--models", nargs="+", default=["before", "after", "oracle"])
    args = parser.parse_args()
    payload = json.loads((args.run / "results.json").read_text())
    config = json.loads((args.run / "config.json").read_text())
    records = [r for r in load_dataset(args.run / "data") if r.split == "forget"]
    for name in args.models:
        model, tokenizer = load_model(payload["models"][name])
        for group in args.groups:
            began = time.perf_counter()
            out = run_attacks(model, tokenizer, records, ["plain", "quantize_8bit",
                                                          "quantize_4bit"],
                              max_new_tokens=config["max_new_tokens"],
                              rouge_threshold=config["correct_rouge_threshold"],
                              quantize_4bit={"group_size": group})
            rates = {k: round(v, 3) for k, v in out["success_rates"].items()}
            print(f"{name:8s} group_size {group:4d}  {rates}  "
                  f"{time.perf_counter() - began:.0f} s", flush=True)


if __name__ == "__main__":
    main()
