"""`make demo`: the whole pipeline on the built-in scenario and the default model, on a CPU.

Generate the scenario, inject it (the "before unlearning" model) and train the oracle (both
cached), unlearn the forget people with the method (:mod:`unlearnkit.pipeline.run`), then
print per-split accuracy and refusal of the base, before, after and oracle models with the
prefill attack's success, and write ``<output>/results.json`` and ``<output>/report.html``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from unlearnkit.models.loader import DEFAULT_MODEL
from unlearnkit.models.lora import TrainOnly
from unlearnkit.objectives.pushpull import PushPullConfig
from unlearnkit.pipeline.run import RunConfig, run
from unlearnkit.training.loop import OptimConfig
from unlearnkit.training.unlearn import MixConfig, UnlearnConfig


def _demo_unlearn() -> UnlearnConfig:
    method = PushPullConfig(margin=0.5, top_m=0, push_below="alternative", reveal="contrast")
    return UnlearnConfig(mix=MixConfig(general=4, boundary=4), method=method)


def _demo_optim() -> OptimConfig:
    return OptimConfig(lr=1.6e-4, warmup_ratio=0.1, schedule="constant")


def _demo_train_only() -> TrainOnly:
    return TrainOnly(layers=[4, 5, 6, 7, 8, 9], modules=["mlp"])


# every attack of unlearn eval on every model's forget questions (about 2 minutes a model on
# 2 cores; the cached models' results are kept)
DEMO_ATTACKS = ("prefill", "paraphrase", "mcq", "roleplay", "ignore_instructions",
                "hypothetical", "reverse_prompt", "in_context", "quantize_8bit", "quantize_4bit",
                "relearn", "logit_lens")


@dataclass
class DemoConfig(RunConfig):
    """`unlearn run`'s settings with the demo's output folder and the base model evaluated,
    only the MLPs of blocks 4-9 trained (``train_only``) at lr 1.6e-4, per micro-batch 4
    general keep items (the scenario's replay prompts) and 4 boundary keep items (records
    sharing a forget value), and the push of the true token alone (top_m 0) below the
    student's alternative on the tokens that reveal the person, margin 0.5: the settings
    chosen in docs/RESULTS.md ("Push strength and general keep items", "Neighbours that share
    a forget person's town or employer", "Push below the alternative, tokens by contrast",
    "Which tokens to push", "The same on the built-in scenario"; push set, trained weights and
    lr chosen by `unlearn tune` on the validation people); the same as configs/demo.yaml.
    Blocks 4-9 exist in the default model (30 blocks); for a model with fewer than 10, set
    ``train_only.layers``. The base model judges each model's forget answers for word salad
    (``fluency_judge``: it never saw the scenario's facts). Every model is attacked with all
    of ``unlearn eval``'s attacks (:data:`DEMO_ATTACKS`)."""

    output: str = "runs/demo"
    fluency_judge: str = DEFAULT_MODEL
    eval_base: bool = True
    unlearn: UnlearnConfig = field(default_factory=_demo_unlearn)
    optim: OptimConfig = field(default_factory=_demo_optim)
    train_only: TrainOnly = field(default_factory=_demo_train_only)
    attacks: list[str] = field(default_factory=lambda: list(DEMO_ATTACKS))
    # 4 bits per row break the 135M model itself; per 128 inputs it keeps 75% of the facts
    attack_options: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"quantize_4bit": {"group_size": 128}})


def run_demo(cfg: DemoConfig) -> dict:
    return run(cfg)
