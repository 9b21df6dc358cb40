"""Robustness attacks on forget probes: does the knowledge stay gone under adversarial probing?

One module per attack family, each registering its attacks with
:func:`~unlearnkit.evaluation.attacks.registry.register_attack`:

- :mod:`.prompts`: plain (baseline), prefill, paraphrase, mcq, roleplay, ignore_instructions,
  hypothetical, reverse_prompt, in_context;
- :mod:`.quantize`: quantize_8bit, quantize_4bit;
- :mod:`.relearn`: relearn;
- :mod:`.logit_lens`: logit_lens.

:func:`run_attacks` runs them and reports per-attack success rates and the worst case.
"""

from unlearnkit.evaluation.attacks import logit_lens, prompts, quantize, relearn
from unlearnkit.evaluation.attacks.logit_lens import lens_input, logit_lens_ranks
from unlearnkit.evaluation.attacks.quantize import quantize_rtn, quantized_copy
from unlearnkit.evaluation.attacks.registry import (
    ATTACKS,
    KINDS,
    Attack,
    AttackPrompt,
    get_attacks,
    register_attack,
)
from unlearnkit.evaluation.attacks.relearn import relearn_split
from unlearnkit.evaluation.attacks.runner import run_attacks
from unlearnkit.evaluation.attacks.scoring import Settings, render_attack_prompt, reveals

__all__ = [
    "ATTACKS", "KINDS", "Attack", "AttackPrompt", "Settings", "get_attacks", "lens_input",
    "logit_lens", "logit_lens_ranks", "prompts", "quantize", "quantize_rtn", "quantized_copy",
    "register_attack", "relearn", "relearn_split", "render_attack_prompt", "reveals",
    "run_attacks",
]
