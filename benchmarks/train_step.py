"""Seconds per SFT step (a batch of scenario answers, 16 by default) per injection variant.

Usage: python benchmarks/train_step.py [--repeats 4] [--batch 16] [--prefix] [variants...]
``--prefix`` times each variant with and without the shared-prefix forward
(``models.engine.forward_responses`` runs the rows' common system turn once), alternating the
two in one process, and prints the ratio.
Variants: full (all weights), frozen_emb (embedding matrix frozen), frozen_emb_low10 (also the
10 lowest blocks), frozen_emb_low15, lora16 (LoRA rank 16 on every block), lora32_from10
and lora32_from15 (rank 32 on the blocks from 10 or 15 up only). Prints the median of the
repeats after the first.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import describe

from unlearnkit.cli import _quiet_libraries
from unlearnkit.data.render import render_record
from unlearnkit.data.scenario import build_scenario
from unlearnkit.models import engine
from unlearnkit.models.loader import load_model
from unlearnkit.models.lora import LoraSettings, apply_lora, freeze
from unlearnkit.training.sft import sft_step

VARIANTS = {
    "full": lambda m: m,
    "frozen_emb": lambda m: freeze(m, embeddings=True),
    "frozen_emb_low10": lambda m: freeze(m, embeddings=True, lower_layers=10),
    "frozen_emb_low15": lambda m: freeze(m, embeddings=True, lower_layers=15),
    "lora16": lambda m: apply_lora(m, LoraSettings(rank=16)),
    "lora32_from10": lambda m: apply_lora(m, LoraSettings(rank=32), first_layer=10),
    "lora32_from15": lambda m: apply_lora(m, LoraSettings(rank=32), first_layer=15),
}


def time_variant(name: str, repeats: int, batch: int,
                 modes: tuple[bool, ...] = (True,)) -> dict[bool, list[float]]:
    """Seconds per step for each mode (True: shared-prefix forward allowed), alternating."""
    model, tok = load_model()
    model = VARIANTS[name](model)
    model.train()
    items = [render_record(tok, r) for r in build_scenario().records[:batch]]
    step = sft_step(tok.pad_token_id)
    default = engine.MIN_SHARED_PREFIX
    times: dict[bool, list[float]] = {mode: [] for mode in modes}
    for _ in range(repeats):
        for mode in modes:
            engine.MIN_SHARED_PREFIX = default if mode else 10**9
            start = time.perf_counter()
            loss, _ = step(model, items)
            loss.backward()
            model.zero_grad(set_to_none=True)
            times[mode].append(time.perf_counter() - start)
    engine.MIN_SHARED_PREFIX = default
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--prefix", action="store_true",
                        help="compare with and without the shared-prefix forward")
    parser.add_argument("variants", nargs="*", default=list(VARIANTS))
    args = parser.parse_args()
    _quiet_libraries()
    print(f"machine: {describe()}")
    modes = (True, False) if args.prefix else (True,)
    for name in args.variants:
        times = time_variant(name, args.repeats, args.batch, modes)
        medians = {mode: statistics.median(t[1:]) for mode, t in times.items()}
        for mode, t in times.items():
            label = name if mode else f"{name} (no shared prefix)"
            print(f"  {label:<36} median {medians[mode]:6.2f} s/step   "
                  f"(all: {', '.join(f'{x:.2f}' for x in t)})", flush=True)
        if args.prefix:
            print(f"  {name}: shared prefix / plain = {medians[True] / medians[False]:.2f}")


if __name__ == "__main__":
    main()
