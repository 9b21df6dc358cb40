"""`make demo`: the built-in scenario end to end on the default model, on a laptop CPU.

At this stage: generate the scenario, inject it (the "before unlearning" model), train the
oracle, and print per-split accuracy and refusal of the base, injected and oracle models.
Writes ``<output>/results.json`` and the standardised dataset under ``<output>/data``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from unlearnkit.data.records import atomic_write_text
from unlearnkit.data.standardize import write_dataset
from unlearnkit.evaluation.accuracy import answer_records, split_summary
from unlearnkit.models.loader import load_model
from unlearnkit.pipeline.scenario_models import ScenarioSetup, prepare_scenario

SPLIT_ORDER = ("forget", "neighbor", "retain", "general")


@dataclass
class DemoConfig:
    setup: ScenarioSetup = field(default_factory=ScenarioSetup)
    output: str = "runs/demo"
    batch_size: int = 32
    max_new_tokens: int = 24


def evaluate_models(models: dict[str, str], records, cfg: DemoConfig) -> dict[str, dict]:
    results = {}
    for name, path in models.items():
        model, tokenizer = load_model(path)
        rows = answer_records(model, tokenizer, records, max_new_tokens=cfg.max_new_tokens,
                              batch_size=cfg.batch_size, progress=True)
        results[name] = {"summary": split_summary(rows), "items": rows}
    return results


def format_table(results: dict[str, dict]) -> str:
    """Accuracy (refusal) per split and model, as a plain-text table."""
    names = list(results)
    lines = [f"{'split':<10}" + "".join(f"{n:>20}" for n in names)]
    for split in SPLIT_ORDER:
        cells = []
        for name in names:
            s = results[name]["summary"].get(split)
            cells.append(f"{s['accuracy']:>8.1%} ({s['refusal']:.0%} ref)" if s else "-")
        n = next((results[m]["summary"][split]["n"] for m in names
                  if split in results[m]["summary"]), 0)
        lines.append(f"{split:<10}" + "".join(f"{c:>20}" for c in cells) + f"   n={n}")
    return "\n".join(lines)


def run_demo(cfg: DemoConfig) -> dict:
    start = time.time()
    out = Path(cfg.output)
    prepared = prepare_scenario(cfg.setup)
    write_dataset(prepared.records, out / "data", [{"format": "scenario",
                                                    "options": asdict(cfg.setup.scenario)}])
    results = evaluate_models(prepared.models, prepared.records, cfg)
    table = format_table(results)
    print("\nanswer accuracy (refusal rate) per split:\n" + table)
    payload = {"config": asdict(cfg), "models": prepared.models,
               "probes": prepared.probe_report, "seconds": round(time.time() - start, 1),
               "results": results}
    atomic_write_text(out / "results.json", json.dumps(payload, indent=1))
    print(f"\nwrote {out / 'results.json'} ({payload['seconds']} s)")
    return payload
