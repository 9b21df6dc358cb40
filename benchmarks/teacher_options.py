"""How the instructed teacher behaves under each option, on the built-in scenario.

Usage: python benchmarks/teacher_options.py [--per-split 16] [--templates default,plain,intent]
       [--demos 0,2] [--guidance 0,1,2,4] [--no-generate]

The teacher is the scenario's injected model (the model unlearning starts from). For every
instruction template x number of in-context demonstrations x guidance w, teacher-forced
(`unlearnkit.models.teacher_behaviour`): on forget records, the share where the teacher prefers
the refusal template to the true answer (mean log-prob per token, "whole") and where its greedy
first token starts the template ("first"); on retain and neighbour records the same for the
gold answer. score = mean over the three splits of "first". w = 0 is the model without the
instruction (the reference). With generation (the default), also the teacher's greedy answers
at w = 1: refusal rate on forget, accuracy on retain and neighbour. The records shown as
demonstrations are left out of every option's sample.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import describe

from unlearnkit.cli import _quiet_libraries
from unlearnkit.evaluation.accuracy import answer_records, split_summary
from unlearnkit.models.loader import load_model
from unlearnkit.models.teacher import TeacherConfig, demonstration_records, instruction
from unlearnkit.models.teacher_behaviour import behaviour_summary, preferences
from unlearnkit.pipeline.scenario_models import ScenarioSetup, prepare_scenario

SPLITS = ("forget", "retain", "neighbor")


def sample(records, per_split: int, exclude: set[str]):
    """``per_split`` records per split, spread evenly over the split (fixed)."""
    out = []
    for split in SPLITS:
        pool = [r for r in records if r.split == split and r.id not in exclude]
        step = max(1, len(pool) // per_split)
        out += pool[::step][:per_split]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-split", type=int, default=16)
    parser.add_argument("--templates", default="default,plain,intent")
    parser.add_argument("--demos", default="0,2")
    parser.add_argument("--guidance", default="0,1,2,4")
    parser.add_argument("--no-generate", action="store_true")
    parser.add_argument("--json", default="", help="also write the results here")
    args = parser.parse_args()
    _quiet_libraries()
    prepared = prepare_scenario(ScenarioSetup(), variants=("injected",))
    model, tok = load_model(prepared.models["injected"])
    records = prepared.records
    forget = [r for r in records if r.split == "forget"]
    demos = [int(d) for d in args.demos.split(",")]
    shown = demonstration_records(TeacherConfig(demonstrations=max(demos)), forget, records)
    chosen = sample(records, args.per_split, {r.id for part in shown for r in part})
    guidances = [float(w) for w in args.guidance.split(",")]
    print(f"machine: {describe()}\nteacher: {prepared.models['injected']}\n"
          f"records: {', '.join(f'{s} {sum(r.split == s for r in chosen)}' for s in SPLITS)}",
          flush=True)
    header = (f"{'template':<9}{'demos':>6}{'w':>5} | " + " | ".join(
        f"{s[:7]:>7} whole first" for s in SPLITS) + " | score")
    if not args.no_generate:
        header += " | gen: forget refusal, retain acc, neighbor acc"
    print(header)
    rows = []
    for template in args.templates.split(","):
        for n in demos:
            cfg = TeacherConfig(template=template, demonstrations=n)
            context = instruction(cfg, forget, records)
            start = time.perf_counter()
            prefs = preferences(model, tok, chosen, context, cfg, guidances)
            gen = None
            if not args.no_generate:
                gen = split_summary(answer_records(model, tok, chosen, context=context,
                                                   max_new_tokens=24))
            seconds = time.perf_counter() - start
            for w in guidances:
                summary = behaviour_summary(chosen, prefs[w])
                rows.append({"template": template, "demonstrations": n, "guidance": w,
                             "summary": summary, "generation_w1": gen if w == 1 else None,
                             "seconds": round(seconds, 1)})
                cells = " | ".join(f"{'':>7} {summary[s]['whole']:5.0%} {summary[s]['first']:5.0%}"
                                   for s in SPLITS)
                line = f"{template:<9}{n:>6}{w:>5g} | {cells} | {summary['score']:5.0%}"
                if gen is not None and w == 1:
                    line += (f" | {gen['forget']['refusal']:5.0%} "
                             f"{gen['retain']['accuracy']:5.0%} {gen['neighbor']['accuracy']:5.0%}")
                print(line, flush=True)
    best = max((r for r in rows if r["guidance"] > 0), key=lambda r: r["summary"]["score"])
    print(f"best score: template {best['template']}, demonstrations "
          f"{best['demonstrations']}, guidance {best['guidance']:g}: "
          f"{best['summary']['score']:.1%}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
