"""Seconds per AdamW step on the default model's trainable weights: torch's default vs fused.

Usage: python benchmarks/optimizer_step.py [--repeats 12] [--weights frozen_emb|mlp_4_9]
``frozen_emb``: every weight but the (tied) embedding matrix, as the injection trains;
``mlp_4_9``: the MLPs of blocks 4-9, as ``make demo`` trains. Gradients are random and fixed;
the implementations alternate in one process and the first two steps of each are not counted.
Implementations: ``default`` (what ``torch.optim.AdamW`` picks: on CPU a loop over the
tensors), ``foreach`` (multi-tensor) and ``fused`` (``training.loop.make_adamw``).
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _machine import describe

from unlearnkit.cli import _quiet_libraries
from unlearnkit.models.loader import load_model
from unlearnkit.models.lora import freeze, train_only
from unlearnkit.training.loop import OptimConfig, make_adamw

IMPLEMENTATIONS = ("default", "foreach", "fused")


def trainable(weights: str) -> list[torch.Tensor]:
    model, _ = load_model()
    if weights == "mlp_4_9":
        train_only(model, layers=[4, 5, 6, 7, 8, 9], modules=["mlp"])
    else:
        model = freeze(model, embeddings=True)
    return [p for p in model.parameters() if p.requires_grad]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--weights", choices=("frozen_emb", "mlp_4_9"), default="frozen_emb")
    args = parser.parse_args()
    _quiet_libraries()
    print(f"machine: {describe()}")
    groups = {name: trainable(args.weights) for name in IMPLEMENTATIONS}
    n = sum(p.numel() for p in groups["fused"])
    cfg = OptimConfig(lr=1e-6)
    optimizers = {
        "default": torch.optim.AdamW(groups["default"], lr=cfg.lr),
        "foreach": torch.optim.AdamW(groups["foreach"], lr=cfg.lr, foreach=True),
        "fused": make_adamw(groups["fused"], cfg),
    }
    assert optimizers["fused"].defaults["fused"], "make_adamw did not fuse on this machine"
    generator = torch.Generator().manual_seed(0)
    for params in groups.values():
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator)
    times: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
    for _ in range(args.repeats):
        for name, optimizer in optimizers.items():
            start = time.perf_counter()
            optimizer.step()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t[2:]) for name, t in times.items()}
    print(f"{args.weights}: {n / 1e6:.1f} M trainable weights, median of {args.repeats - 2} steps")
    for name, median in medians.items():
        print(f"  {name:<8} {median * 1000:7.1f} ms/step   "
              f"({medians['default'] / median:.2f}x the default's speed)")


if __name__ == "__main__":
    main()
