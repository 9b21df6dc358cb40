"""Atomic, pickle-free checkpoints: trainable weights, AdamW state, scheduler, RNG, step.

Tensors go to safetensors, everything else to JSON; a checkpoint folder appears only once it
is complete (written to a temporary folder, then renamed).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from unlearnkit.fsutil import atomic_dir


def _whole(tensor: torch.Tensor) -> torch.Tensor:
    """A tensor's whole value on the CPU; an FSDP2 shard (a DTensor) is gathered from every
    process, so under FSDP2 every process must call this, in the same order."""
    if hasattr(tensor, "full_tensor"):
        tensor = tensor.full_tensor()
    return tensor.detach().cpu().contiguous()


def _like(value: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """``value`` (a whole tensor) sharded as ``param`` is: each process keeps its own shard of
    the copy it read (no communication); a tensor for a whole parameter comes back as it is."""
    if not hasattr(param, "device_mesh") or value.shape != param.shape:
        return value
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(value.to(param.device), param.device_mesh, param.placements,
                             src_data_rank=None)


def trainable_state(model) -> dict[str, torch.Tensor]:
    params = model.named_parameters()
    return {n: _whole(p) for n, p in params if p.requires_grad}


def _optimizer_tensors(optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, slots in state["state"].items():
        for key, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{key}"] = _whole(value)
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def gather_checkpoint(model, optimizer) -> tuple[dict, dict, dict]:
    """What a checkpoint stores of the model and the optimizer: whole tensors on the CPU.
    Under FSDP2 every process must call this (it gathers the shards); others need not."""
    return (trainable_state(model), *_optimizer_tensors(optimizer))


def save_checkpoint(folder: Path, *, gathered: tuple[dict, dict, dict], scheduler, step: int,
                    extra: dict) -> Path:
    """Write checkpoint ``step`` (``gathered`` by :func:`gather_checkpoint`) under ``folder``
    atomically and return its path."""
    target = folder / f"step-{step:07d}"
    weights, opt_tensors, opt_meta = gathered
    with atomic_dir(target) as tmp:
        save_file(weights, tmp / "model.safetensors")
        rng = {"torch": torch.get_rng_state()}
        save_file(opt_tensors, tmp / "optimizer.safetensors")
        save_file(rng, tmp / "rng.safetensors")
        meta = {"step": step, "optimizer": opt_meta, "scheduler": scheduler.state_dict(), **extra}
        (tmp / "state.json").write_text(json.dumps(meta, default=float))
    return target


def latest_checkpoint(folder: Path) -> Path | None:
    done = sorted(p for p in folder.glob("step-*") if (p / "state.json").is_file())
    return done[-1] if done else None


def load_checkpoint(path: Path, *, model, optimizer, scheduler) -> dict:
    """Restore a checkpoint written by :func:`save_checkpoint`; returns its JSON state. Under
    FSDP2 every process reads the whole tensors and keeps its shards."""
    meta = json.loads((path / "state.json").read_text())
    weights = load_file(path / "model.safetensors")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(_like(value, params[name]))
    tensors = load_file(path / "optimizer.safetensors")
    ordered = [p for group in optimizer.param_groups for p in group["params"]]
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        pid, slot = key.split(".", 1)
        state.setdefault(int(pid), {})[slot] = _like(value, ordered[int(pid)])
    for key, value in meta["optimizer"]["scalars"].items():
        pid, slot = key.split(".", 1)
        state.setdefault(int(pid), {})[slot] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer"]["param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(load_file(path / "rng.safetensors")["torch"])
    return meta


def prune_checkpoints(folder: Path, keep: int) -> None:
    done = sorted(p for p in folder.glob("step-*") if (p / "state.json").is_file())
    for old in done[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
