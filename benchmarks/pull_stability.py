"""Does the pull hold a model where it already is? Pull-only training from the teacher itself.

Usage: python benchmarks/pull_stability.py --model MODEL --data DATASET_FOLDER \
           [--items 40] [--drawn 20] [--steps 12] [--batch 4] [--lr 1.6e-4] \
           [--schedule constant] [--train-layers 5,6,7] [--train-modules mlp] \
           [--eps 1e-8] [--beta1 0.9] [--beta2 0.999]
The teacher is MODEL itself, plain and teacher-forced on the gold answers of the first
``--items`` retain records of DATASET_FOLDER (``retain.jsonl``), so the pull starts at zero.
It then trains push-pull's step with the push and the prefill off, for ``--steps`` steps of
``--batch`` items drawn from the first ``--drawn``, with the project's loop (AdamW, clipping
at 1, 10% warmup). An optimiser the pull can steer keeps the loss near zero. Prints the pull
at every step, then the pull of the drawn items and of the never-drawn ones on the final model.
``--train-layers``/``--train-modules`` restrict what trains as
the run option ``train_only`` does (docs/RESULTS.md, "Why the pull does not keep TOFU's
retain authors"); ``--eps``/``--beta1``/``--beta2`` set AdamW's (the run options ``optim.eps``,
``optim.beta1``, ``optim.beta2``).
"""

import argparse
import json
import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _machine import describe

from unlearnkit.cli import _quiet_libraries
from unlearnkit.data.records import read_jsonl
from unlearnkit.data.render import render
from unlearnkit.models.loader import load_model
from unlearnkit.models.lora import train_only
from unlearnkit.models.teacher_cache import teacher_topk
from unlearnkit.objectives.pushpull import Example, PushPullConfig, pushpull_step
from unlearnkit.training.loop import OptimConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--drawn", type=int, default=20)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1.6e-4)
    parser.add_argument("--schedule", default="constant")
    parser.add_argument("--train-layers", default="")
    parser.add_argument("--train-modules", default="")
    parser.add_argument("--eps", type=float, default=OptimConfig.eps)
    parser.add_argument("--beta1", type=float, default=OptimConfig.beta1)
    parser.add_argument("--beta2", type=float, default=OptimConfig.beta2)
    args = parser.parse_args()
    _quiet_libraries()
    print(describe())
    model, tokenizer = load_model(args.model)
    model.eval()
    records = read_jsonl(args.data / "retain.jsonl")[:args.items]
    items = [render(tokenizer, r.question, r.answer, system=r.system) for r in records]
    tops = teacher_topk(model, items, items, k=20, guidance=1.0, pad_id=tokenizer.pad_token_id)
    examples = [Example(kind="retain", pull_input=i, pull_top=t)
                for i, t in zip(items, tops, strict=True)]
    if args.train_layers or args.train_modules:
        layers = [int(x) for x in args.train_layers.split(",") if x]
        train_only(model, layers, [m for m in args.train_modules.split(",") if m])
    step = pushpull_step(tokenizer.pad_token_id, PushPullConfig(push=False, prefill=False))
    plan = [random.Random(s).sample(examples[:args.drawn], args.batch)
            for s in range(args.steps)]
    optim = OptimConfig(lr=args.lr, schedule=args.schedule, warmup_ratio=0.1, eps=args.eps,
                        beta1=args.beta1, beta2=args.beta2)
    history = train(model, plan, step, optim, desc="pull")
    model.eval()
    with torch.no_grad():
        final = [float(step(model, [e])[0]) for e in examples]
    drawn = sum(final[:args.drawn]) / args.drawn
    never = sum(final[args.drawn:]) / max(1, len(final) - args.drawn)
    print("pull per step:", " ".join(f"{h['pull']:.3g}" for h in history))
    print(f"final pull: drawn items {drawn:.2f}, never-drawn items {never:.2f}")
    print(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                      "pull": [h["pull"] for h in history], "drawn": drawn, "never": never}))


if __name__ == "__main__":
    main()
