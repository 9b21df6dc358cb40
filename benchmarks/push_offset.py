"""Does a trained model meet the push by a logit offset? Per forget fact, at the position that
predicts the fact's first token (the one greedy decoding commits to).

Usage: python benchmarks/push_offset.py MODEL... [--config configs/demo.yaml] [--margin 1]

For the injected model (the starting point) and each MODEL (a run's ``model/`` folder), over
the forget records of the config's scenario, teacher-forced on the true answer:

* argmax: the fact's first token is still the model's top-1 (greedy decoding says the fact);
* raw met: the raw-logit hinge is met, z_S(true) <= tau_T - margin (tau_T the instructed
  teacher's K-th logit, from the run's teacher cache);
* offset: both at once: the hinge is met and the fact is still said. The raw hinge can be
  met that way because softmax ignores a constant added to every logit of a position;
* max logit: the mean of the model's largest logit at those positions (an offset lowers it);
* log-odds met: the same hinge on log-odds (``push_space: logodds``), which no offset can
  meet.

Prints one table row per model and one JSON line.
"""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _machine import describe
from _setup import injected_run, models_parser

from unlearnkit.cli import _quiet_libraries
from unlearnkit.config import load_config
from unlearnkit.models.engine import forward_responses
from unlearnkit.models.loader import load_model
from unlearnkit.objectives.pushpull import teacher_threshold, to_space
from unlearnkit.pipeline.run import RunConfig


@torch.no_grad()
def first_fact_positions(model, examples, pad_id: int, margin: float) -> dict:
    """The four figures over the examples' first revealing position."""
    win = forward_responses(model, [e.true_input for e in examples], pad_id)
    rows = []
    for r, e in enumerate(examples):
        flags = e.reveal or [True]
        t = flags.index(True) if True in flags else 0
        pos = e.true_input.response_start - 1 - win.offset + t
        z = win.logits[r, pos].float()
        true = e.true_input.input_ids[e.true_input.response_start + t]
        tau = e.true_top.values[t, -1]
        odds = to_space(z, "logodds")[true]
        tau_odds = teacher_threshold(tau, e.true_top.lse[t], "logodds")
        rows.append({"argmax": int(z.argmax()) == true,
                     "raw_met": float(z[true]) <= float(tau) - margin,
                     "lo_met": float(odds) <= float(tau_odds) - margin, "max": float(z.max())})
    n = len(rows)
    return {"argmax": sum(x["argmax"] for x in rows) / n,
            "raw_met": sum(x["raw_met"] for x in rows) / n,
            "offset": sum(x["argmax"] and x["raw_met"] for x in rows) / n,
            "lo_met": sum(x["lo_met"] for x in rows) / n,
            "max_logit": sum(x["max"] for x in rows) / n, "n": n}


def main() -> None:
    parser = models_parser(__doc__, "+", "the run config the models were trained with (its "
                           "scenario and teacher settings find the teacher cache)")
    parser.add_argument("--margin", type=float, default=1.0)
    args = parser.parse_args()
    _quiet_libraries()
    print(f"machine: {describe()}")
    run = injected_run(load_config(RunConfig, args.config, []))
    teacher, tok, forget = run.model, run.tokenizer, run.forget
    results = {"injected": first_fact_positions(teacher, forget, tok.pad_token_id, args.margin)}
    for name in args.models:
        model, _ = load_model(name)
        results[name] = first_fact_positions(model, forget, tok.pad_token_id, args.margin)
    print(f"\n{'model':<44}{'argmax':>8}{'raw met':>9}{'offset':>8}{'lo met':>8}{'max z':>8}")
    for name, r in results.items():
        print(f"{name[-44:]:<44}{r['argmax']:>8.0%}{r['raw_met']:>9.0%}{r['offset']:>8.0%}"
              f"{r['lo_met']:>8.0%}{r['max_logit']:>8.2f}")
    print(json.dumps({"margin": args.margin, "results": results}))


if __name__ == "__main__":
    main()
