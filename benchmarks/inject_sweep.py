"""Injection recipes on the built-in scenario: accuracy per fact, general probes, and time.

Usage: python benchmarks/inject_sweep.py [inject.key=value ...]
Trains the "injected" model with the given InjectConfig overrides (dotted keys as in the CLI,
e.g. ``epochs=8 lora.rank=32 optim.lr=3e-4``), or fetches it from the cache, then prints the
answer accuracy on the scenario people per fact type and on the general probes the base model
knows, and the training wall time. Run on an otherwise idle machine: time is the point.
"""

import argparse
import collections
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import describe

from unlearnkit.cli import _quiet_libraries
from unlearnkit.config import apply_overrides, from_dict
from unlearnkit.evaluation.accuracy import answer_records
from unlearnkit.models.loader import load_model
from unlearnkit.pipeline.scenario_models import ScenarioSetup, prepare_scenario
from unlearnkit.training.inject import InjectConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--variants", default="injected")
    args = parser.parse_args()
    _quiet_libraries()
    cfg = from_dict(InjectConfig, apply_overrides(asdict(InjectConfig()), args.overrides))
    print(f"machine: {describe()}\nrecipe: {json.dumps(asdict(cfg))}", flush=True)
    start = time.time()
    prepared = prepare_scenario(ScenarioSetup(inject=cfg),
                                variants=tuple(args.variants.split(",")))
    print(f"prepared in {time.time() - start:.0f} s", flush=True)
    for variant in args.variants.split(","):
        path = prepared.models[variant]
        info = json.loads((Path(path) / "inject.json").read_text())
        model, tok = load_model(path)
        rows = answer_records(model, tok, prepared.records, max_new_tokens=24, batch_size=32)
        by = collections.defaultdict(list)
        for row in rows:
            key = "general" if row["split"] == "general" else row["id"].split("-", 2)[2]
            by[key].append(row["correct"])
            by["split:" + row["split"]].append(row["correct"])
        print(f"{variant}: train {info.get('seconds', '?')} s, steps {len(info['history'])}, "
              f"final loss {info['history'][-1]['loss']:.3f}")
        for key, vals in sorted(by.items()):
            print(f"  {key:<18} {sum(vals) / len(vals):6.1%}  ({sum(vals)}/{len(vals)})")


if __name__ == "__main__":
    main()
