"""`make demo`: the whole pipeline on the built-in scenario and the default model, on a CPU.

Generate the scenario, inject it (the "before unlearning" model) and train the oracle (both
cached), unlearn the forget people with the method (:mod:`unlearnkit.pipeline.run`), then
print per-split accuracy and refusal of the base, before, after and oracle models with the
prefill attack's success, and write ``<output>/results.json`` and ``<output>/report.html``.
"""

from __future__ import annotations

from dataclasses import dataclass

from unlearnkit.pipeline.run import RunConfig, run


@dataclass
class DemoConfig(RunConfig):
    """`unlearn run`'s settings with the demo's output folder and the base model evaluated."""

    output: str = "runs/demo"
    eval_base: bool = True


def run_demo(cfg: DemoConfig) -> dict:
    return run(cfg)
