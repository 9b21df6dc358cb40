"""The multiple-choice attack alone on several models' forget questions.

Usage: python benchmarks/choice_attack.py --data DATASET_FOLDER [--perturbed] [--score text]
    LABEL=MODEL ...

Runs the ``mcq`` attack (:mod:`unlearnkit.evaluation.attacks.prompts`) on the forget split of a
dataset folder (``unlearn data standardize``'s, or a run's ``data/``) for each model (any
folder or name ``load_model`` takes: a run's ``model/``, a cached injected model) and prints,
per model, the items asked, the share answered with the right letter, the guessing rate and
the rate above it, ``(rate - chance) / (1 - chance)``. ``--perturbed`` asks records without
choices (TOFU's) with their answer among their perturbed answers (``perturbed: true``);
``--score text`` picks the option whose text is likeliest instead of its letter. With
``--out FILE`` the per-model figures and each item's picked and right letters go to JSON.
Trains nothing.
"""

import argparse
import json
from pathlib import Path

from _machine import describe

from unlearnkit.data.standardize import load_dataset
from unlearnkit.evaluation.attacks import run_attacks
from unlearnkit.fsutil import atomic_write_text
from unlearnkit.models.loader import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", metavar="LABEL=MODEL")
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--perturbed", action="store_true")
    parser.add_argument("--score", choices=("letter", "text"), default="letter")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    pairs = [spec.split("=", 1) for spec in args.models]
    if any(len(p) != 2 or not all(p) for p in pairs):
        raise SystemExit("give each model as LABEL=MODEL, e.g. npo=results/x/npo/seed-0/model")
    forget = [r for r in load_dataset(args.data) if r.split == "forget"]
    if not forget:
        raise SystemExit(f"{args.data} has no forget records")
    print(f"machine: {describe()}")
    print(f"{len(forget)} forget records from {args.data}; perturbed: {args.perturbed}; "
          f"score: {args.score}\n")
    print("| model | items | right option | chance | above chance |")
    print("| --- | --- | --- | --- | --- |")
    out = {}
    for label, path in pairs:
        model, tokenizer = load_model(path)
        a = run_attacks(model, tokenizer, forget, ["mcq"], batch_size=args.batch_size,
                        mcq={"perturbed": args.perturbed, "score": args.score})["attacks"]["mcq"]
        above = a.get("above_chance")
        out[label] = {"model": path, "n": a["n"], "rate": a["success_rate"],
                      "chance": a.get("chance"), "above_chance": above,
                      "items": [{"id": i["id"], "picked": i["variants"][0]["picked"],
                                 "answer": i["variants"][0]["answer"]} for i in a["items"]]}
        if a["n"] == 0:
            print(f"| {label} | 0 | - | - | - |")
            continue
        print(f"| {label} | {a['n']} | {a['success_rate']:.3f} | {a['chance']:.3f} | "
              f"{above:+.3f} |", flush=True)
    if args.out:
        atomic_write_text(args.out, json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
