"""Why push-pull's steer term does not fall: its gradient beside the other terms', and alone.

Usage: python benchmarks/steer_terms.py RUN_FOLDER [--batches 3] [--steps 12]
RUN_FOLDER is a finished push-pull run with ``unlearn.method.steer`` > 0 (its config.json,
train_log.json and model/; its data and starting model come from the cache as the run's own
did). Prints:

1. the steer term the run logged at its first step, every tenth after it and its last (with
   TOFU forget01's 40 forget items, 4 a micro-batch, steps 1, 11 and 21 see the same items);
2. the gradient norm of each term (the pull over every row, the push, the prefill, and the
   steer term at weight 1) over the weights the run trained, at the starting model and at the
   run's unlearned model, averaged over the run's first ``--batches`` micro-batches: each is
   the method's step with every other switch off (as ``evaluation/gradients.py`` takes them);
3. the steer term over ``--steps`` AdamW steps on it alone (the run's rate, no warmup,
   gradients clipped at 1), the run's first micro-batch, from the starting model: whether it
   can fall at all (docs/RESULTS.md, "The steer term at RMU's rate on RMU's MLPs").
"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _machine import describe

from unlearnkit.cli import _quiet_libraries
from unlearnkit.config import from_dict
from unlearnkit.evaluation.gradients import _only, flat_grad
from unlearnkit.models.loader import load_model
from unlearnkit.models.lora import restrict
from unlearnkit.objectives.pushpull import hidden_terms
from unlearnkit.pipeline.run import RunConfig, prepare
from unlearnkit.training.inject import model_identity
from unlearnkit.training.reveal import reveal_by_contrast
from unlearnkit.training.unlearn import (
    attach_start_norms,
    build_examples,
    mixture_plan,
    refresh_prefill,
)

TERMS = {"pull (every row)": {"pull": True}, "push": {"push": True},
         "prefill": {"prefill": True}, "steer (weight 1)": {"steer": 1.0}}


def logged(run: Path) -> None:
    steps = json.loads((run / "train_log.json").read_text())  # one dict per step
    values = [(h["step"], h["steer"]) for h in steps if "steer" in h]
    if not values:
        raise SystemExit(f"{run}/train_log.json logs no steer term: not a run with steer > 0")
    print("steer term logged (step: value):",
          ", ".join(f"{s}: {v:.0f}" for s, v in values if s == 1 or s % 10 == 1 or
                    s == len(values)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    _quiet_libraries()
    print(describe())
    cfg = from_dict(RunConfig, json.loads((args.run / "config.json").read_text()))
    method = cfg.unlearn.method
    logged(args.run)
    prepared = prepare(cfg)
    start = prepared.models["injected"]
    model, tokenizer = load_model(start, **cfg.load_options())
    pad = tokenizer.pad_token_id
    examples = build_examples(model, tokenizer, prepared.records, cfg.unlearn.teacher,
                              model_identity(start))
    if method.reveal == "contrast":
        reveal_by_contrast(model, tokenizer, examples, prepared.records, method)
    attach_start_norms(model, pad, examples, method.steer_layer)
    plan = mixture_plan(examples, cfg.unlearn.mix, cfg.unlearn.seed)
    print(f"gradient norms over the trained weights, mean of {args.batches} micro-batches:")
    for name, path in (("start", start), ("unlearned", str(args.run / "model"))):
        model = restrict(load_model(path, **cfg.load_options())[0], cfg.train_only)
        if method.prefill:  # each model's own adversarial prefills, as training draws them
            refresh_prefill(model, tokenizer, examples, method.prefill_candidates)
        params = [p for p in model.parameters() if p.requires_grad]
        for term, switch in TERMS.items():
            losses = [_only(model, batch, pad, method, **switch) for batch in plan[:args.batches]]
            pairs = [(loss.item(), flat_grad(loss, params).norm().item()) for loss in losses]
            print(f"  {name:9s} {term:17s} loss {sum(p[0] for p in pairs) / len(pairs):9.3f}"
                  f"  gradient norm {sum(p[1] for p in pairs) / len(pairs):9.3f}", flush=True)
    model = restrict(load_model(start, **cfg.load_options())[0], cfg.train_only)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=0.0)
    forget = [e for e in plan[0] if e.kind == "forget"]
    print(f"the steer term alone, AdamW at {cfg.optim.lr:g} on the first micro-batch:")
    for i in range(args.steps):
        loss = _only(model, plan[0], pad, method, steer=1.0)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        with torch.no_grad():
            after = hidden_terms(model, forget, [], pad, method)[0].item()
        print(f"  step {i + 1}: {loss.item():.1f} before the step, {after:.1f} after", flush=True)


if __name__ == "__main__":
    main()
