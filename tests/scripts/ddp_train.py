"""Train the tiny model on a fixed plan; run alone or under `accelerate launch` (DDP, gloo).

Usage: python ddp_train.py OUT.safetensors [fsdp2|stop0|sam|fsam] [--checkpoints DIR] [--resume]

With ``fsdp2`` (under `accelerate launch`, 2 CPU processes) the model is sharded in place by
FSDP2 (:mod:`fsdp2`) and saved through ``save_trained``, which gathers the shards.
``--checkpoints DIR`` checkpoints every 2 steps under DIR (``--resume``: from the last one).
With ``stop0`` only the main process asks to stop early, after step 2; each process writes
how many steps it ran to OUT-<rank>.json. With ``sam`` the steps are sharpness-aware
(``optim.sam_rho`` 0.05); with ``fsam`` on the forget term alone (``optim.sam_scope: forget``):
the answers to questions 0-3 are the forget items, the second micro-batch holds none, and the
third's are all on the first of two processes (rows ``rank::2``).
"""

import json
import sys
from pathlib import Path

import torch
from fsdp2 import as_fsdp2
from safetensors.torch import save_file

from unlearnkit.data.render import render
from unlearnkit.models.loader import save_trained
from unlearnkit.models.tiny import tiny_model, tiny_tokenizer
from unlearnkit.objectives.terms import with_forget_term
from unlearnkit.training.loop import OptimConfig, make_accelerator, train
from unlearnkit.training.sft import sft_step


def split_step(step_fn, forget: set[int]):
    """``step_fn``'s mean NLL as forget rows' share plus keep rows' share (equal-length rows:
    the same loss), marked with the forget rows' share as the forget term."""

    def step(model, batch):
        parts = {}
        for name, rows in (("forget", [it for it in batch if id(it) in forget]),
                           ("keep", [it for it in batch if id(it) not in forget])):
            loss = step_fn(model, rows)[0] * (len(rows) / len(batch)) if rows else None
            parts[name] = loss
        zero = torch.zeros(())
        forget_loss = parts["forget"] if parts["forget"] is not None else zero
        keep_loss = parts["keep"] if parts["keep"] is not None else zero
        return with_forget_term(forget_loss + keep_loss, forget_loss), {}

    return step


def main(out: str, mode: str = "", ckpt: str | None = None, resume: bool = False) -> None:
    torch.manual_seed(0)
    tok = tiny_tokenizer()
    model = tiny_model(len(tok), seed=0)
    # equal-length items: per-process token means average to the global token mean
    items = [render(tok, f"Question {i}?", f"Answer {i}.") for i in range(8)]
    plan = [items[:4], items[4:], items[2:6], [*items[6:], *items[:2]]]
    cfg = OptimConfig(lr=2e-3, warmup_ratio=0.0, checkpoint_every=2 if ckpt else 0,
                      sam_rho=0.05 if mode in ("sam", "fsam") else 0.0,
                      sam_scope="forget" if mode == "fsam" else "all")
    accelerator = make_accelerator(cfg)
    if mode == "fsdp2":
        as_fsdp2(accelerator)
    step_fn, calls = sft_step(tok.pad_token_id), []
    if mode == "fsam":
        step_fn = split_step(step_fn, {id(it) for it in items[:4]})
        plan[2] = [items[0], items[4], items[1], items[5]]

    def counted(model, batch):
        calls.append(len(batch))
        return step_fn(model, batch)

    # stop0: only the main process asks to stop, after step 2
    stop = (lambda step, logs: step == 2 and accelerator.is_main_process) \
        if mode == "stop0" else None
    history = train(model, plan, counted, cfg, accelerator=accelerator,
                    out_dir=Path(ckpt) if ckpt else None, resume=resume, on_step=stop)
    if mode == "stop0":
        Path(out).with_name(f"{Path(out).stem}-{accelerator.process_index}.json").write_text(
            json.dumps({"steps_run": len(calls)}))
        return
    if mode == "fsdp2":
        weight = model.model.layers[0].mlp.up_proj.weight
        folder = save_trained(model, tok, Path(out).parent / f"{Path(out).stem}-model",
                              base="tiny")
        if accelerator.is_main_process:
            Path(out).write_text(json.dumps({
                "folder": str(folder), "processes": accelerator.num_processes,
                "local_rows": weight.to_local().shape[0], "rows": weight.shape[0],
                "steps_run": len(calls), "rows_per_process": calls[0],
                "grad_norms": [h["grad_norm"] for h in history]}))
        return
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        save_file({k: v.detach().clone() for k, v in unwrapped.named_parameters()}, out,
                  metadata={"processes": str(accelerator.num_processes),
                            "grad_norms": json.dumps([h["grad_norm"] for h in history])})
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    args = sys.argv[1:]
    resume = "--resume" in args
    ckpt = args[args.index("--checkpoints") + 1] if "--checkpoints" in args else None
    positional = [a for a in args if a != "--resume" and a not in ("--checkpoints", ckpt)]
    main(*positional, ckpt=ckpt, resume=resume)
