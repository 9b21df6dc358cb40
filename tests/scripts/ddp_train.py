"""Train the tiny model on a fixed plan; run alone or under `accelerate launch` (DDP, gloo).

Usage: python ddp_train.py OUT.safetensors
"""

import sys

import torch
from safetensors.torch import save_file

from unlearnkit.data.render import render
from unlearnkit.models.tiny import tiny_model, tiny_tokenizer
from unlearnkit.training.loop import OptimConfig, make_accelerator, train
from unlearnkit.training.sft import sft_step


def main(out: str) -> None:
    torch.manual_seed(0)
    tok = tiny_tokenizer()
    model = tiny_model(len(tok), seed=0)
    # equal-length items: per-process token means average to the global token mean
    items = [render(tok, f"Question {i}?", f"Answer {i}.") for i in range(8)]
    plan = [items[:4], items[4:], items[2:6], [*items[6:], *items[:2]]]
    cfg = OptimConfig(lr=2e-3, warmup_ratio=0.0)
    accelerator = make_accelerator(cfg)
    train(model, plan, sft_step(tok.pad_token_id), cfg, accelerator=accelerator)
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        save_file({k: v.detach().clone() for k, v in unwrapped.named_parameters()}, out,
                  metadata={"processes": str(accelerator.num_processes)})
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1])
