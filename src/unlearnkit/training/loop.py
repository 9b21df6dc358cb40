"""An explicit training loop on accelerate (no Trainer subclass).

The caller supplies a *plan*: the list of micro-batches for the whole run, fixed in advance
from the seed, and a *step function* ``step_fn(model, micro_batch) -> (loss, logs)``. The loop
does the rest: AdamW, warmup + schedule, gradient accumulation, clipping, bf16 autocast,
a progress bar with rate/ETA and the live loss terms, TensorBoard logs, and atomic
checkpoints every N steps from which ``resume=True`` continues a killed run.

Because the plan is fixed, a resumed run sees exactly the batches the killed run would have.
Under ``accelerate launch`` each process takes its share of every global micro-batch
(rows ``rank::world_size``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from unlearnkit.errors import UnlearnError
from unlearnkit.models.engine import is_fsdp2
from unlearnkit.objectives.terms import forget_term
from unlearnkit.training.checkpoint import (
    gather_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)


@dataclass
class OptimConfig:
    """Optimisation settings shared by every method."""

    lr: float = 1e-5
    weight_decay: float = 0.0
    beta1: float = 0.9  # AdamW's moment decays and the epsilon added to its denominator
    beta2: float = 0.999
    eps: float = 1e-8
    warmup_ratio: float = 0.1
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    mixed_precision: Literal["no", "bf16"] = "no"
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    # sharpness-aware minimisation: each step's gradient is taken at the weights moved a
    # distance sam_rho along their normalised gradient (sam_shift); 0 = off. Two forward and
    # backward passes per step (docs/DESIGN.md, "Sharpness-aware steps")
    sam_rho: float = 0.0
    # what the shift climbs: "all", the step's whole loss (Foret et al. 2021), or "forget", the
    # method's forget term alone, the keep terms' gradient taken at the weights themselves (Fan
    # et al. 2025; methods that name their forget term: objectives.terms). Three passes a step
    sam_scope: Literal["all", "forget"] = "all"

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise UnlearnError(f"optim.lr must be positive, got {self.lr}")
        if self.grad_accum < 1:
            raise UnlearnError(f"optim.grad_accum must be >= 1, got {self.grad_accum}")
        if not 0 <= self.warmup_ratio < 1:
            raise UnlearnError(f"optim.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise UnlearnError(f"optim.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.eps <= 0:
            raise UnlearnError(f"optim.eps must be positive, got {self.eps}")
        for name, unit, zero in (("weight_decay", "", "none"),
                                 ("max_grad_norm", "", "no clipping"),
                                 ("checkpoint_every", " steps", "no checkpoints"),
                                 ("keep_checkpoints", "", "keep every one"),
                                 ("sam_rho", "", "plain steps")):
            if getattr(self, name) < 0:
                raise UnlearnError(f"optim.{name} must be >= 0{unit} (0: {zero}), got "
                                   f"{getattr(self, name)}")
        if self.sam_scope not in ("all", "forget"):
            raise UnlearnError(f"optim.sam_scope must be 'all' (the whole loss) or 'forget' "
                               f"(the forget term alone), got {self.sam_scope!r}")


StepFn = Callable[[Any, Any], tuple[torch.Tensor, dict[str, float]]]


def _lr_lambda(cfg: OptimConfig, total: int) -> Callable[[int], float]:
    warm = round(cfg.warmup_ratio * total)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        if cfg.schedule == "constant":
            return 1.0
        progress = (step - warm) / max(1, total - warm)
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        return max(0.0, 1.0 - progress)

    return factor


def make_accelerator(cfg: OptimConfig, log_dir: Path | None = None):
    """The run's Accelerator. Under DDP the model's buffers are not broadcast at each forward
    call: that broadcast is a collective, and the processes of a step need not call the model
    equally often (a shared prompt prefix runs as a second call on a process whose rows share
    one; a baseline skips its retain forward on a process without retain rows); a causal LM's
    buffers (rotary frequencies) are the same on every process anyway."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration

    kwargs: dict[str, Any] = {
        "mixed_precision": cfg.mixed_precision,
        "kwargs_handlers": [DistributedDataParallelKwargs(broadcast_buffers=False)]}
    if log_dir is not None:
        kwargs["log_with"] = "tensorboard"
        kwargs["project_config"] = ProjectConfiguration(project_dir=str(log_dir))
    return Accelerator(**kwargs)


def _distributed_kind(accelerator) -> str:
    """``DEEPSPEED``, ``FSDP``, ``MULTI_GPU``, ``NO``...: accelerate's distributed type."""
    return str(getattr(accelerator, "distributed_type", "")).rsplit(".", 1)[-1]


def make_adamw(params: list[torch.Tensor], cfg: OptimConfig, accelerator=None):
    """AdamW, fused (one kernel over every tensor) where torch has the kernel.

    The same update as torch's default AdamW up to rounding, and faster: on CPU the default is
    a loop over the tensors, which for the default model's 106 M trainable weights took
    0.22 s per step against 0.07 s fused, a tenth of an injection step (docs/BENCHMARKS.md,
    "The optimizer step"). DeepSpeed wraps the optimizer in its own engine, so it gets the
    default one.
    """
    fused = _distributed_kind(accelerator) != "DEEPSPEED" and bool(params) and all(
        p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                             weight_decay=cfg.weight_decay, fused=fused or None)


def _check_sam(cfg: OptimConfig, accelerator, step_fn=None) -> None:
    """Sharpness-aware steps move every trainable weight along the whole gradient, which
    FSDP's shards and DeepSpeed's engine hold apart from the parameters. The forget term's
    alone needs a step that leaves its backward pass to the loop."""
    if cfg.sam_rho <= 0:
        return
    name = {"FSDP": "FSDP", "DEEPSPEED": "DeepSpeed"}.get(_distributed_kind(accelerator))
    if name:
        raise UnlearnError(f"optim.sam_rho needs the whole gradient on every process, which "
                           f"{name} shards: set optim.sam_rho=0, or launch with "
                           "configs/accelerate/ddp.yaml")
    if cfg.sam_scope == "forget" and getattr(step_fn, "own_gradients", False):
        raise UnlearnError("optim.sam_scope=forget: this method takes its gradients itself, "
                           "so its forget term's cannot be taken apart; set "
                           "optim.sam_scope=all")


def _check_unsharded(accelerator) -> None:
    """Refuse set-ups whose sharded weights this loop cannot handle.

    DDP and DeepSpeed ZeRO-1/2 keep a full copy of the weights on every process, so the
    unwrapped module is the whole model. FSDP2 (``fsdp_version: 2``) shards the parameters of
    the module itself: the model is still called directly (the adversarial prefill's refresh,
    early-stopping checks) and its whole weights are gathered when it is saved
    (:func:`unlearnkit.models.loader.save_trained`; LoRA included), as they are for
    checkpoints. FSDP1 wraps the module (calls outside the wrapper would see shards) and ZeRO-3
    partitions it inside DeepSpeed's engine: both refused.
    """
    kind = _distributed_kind(accelerator)
    stage = 0
    if kind == "DEEPSPEED":
        stage = accelerator.state.deepspeed_plugin.zero_stage
    if kind == "FSDP" and getattr(accelerator.state.fsdp_plugin, "fsdp_version", 1) == 2:
        return
    if kind == "FSDP" or stage == 3:
        what = "FSDP1 wraps the model" if kind == "FSDP" else "ZeRO-3 partitions the weights"
        raise UnlearnError(f"{what}, and unlearnkit cannot train or save it that way; launch "
                           "with configs/accelerate/fsdp.yaml (FSDP2, fsdp_version: 2), or "
                           "ddp.yaml / deepspeed-zero2.yaml (full weights per GPU)")


def _row_kind(row) -> tuple:
    return (getattr(row, "kind", None), bool(getattr(row, "boundary", False)))


def _check_shards(accelerator, plan: Sequence[Sequence]) -> None:
    """Every process needs rows in every micro-batch (a process without a loss would wait for
    the others' gradients forever). Under FSDP every forward call gathers the weights with the
    other processes, so they must also call the model alike: the same number of rows of each
    kind (forget, retain, ...) per micro-batch on every process."""
    n = accelerator.num_processes
    if n < 2:
        return
    fsdp = _distributed_kind(accelerator) == "FSDP"
    for index, batch in enumerate(plan):
        shards = [list(batch)[rank::n] for rank in range(n)]
        if min(len(shard) for shard in shards) == 0:
            raise UnlearnError(f"micro-batch {index + 1} has {len(batch)} rows for {n} "
                               "processes: every process needs at least one; raise the "
                               "batch (unlearn.mix quotas, or the method's batch size)")
        if fsdp:
            kinds = [sorted(map(_row_kind, shard), key=repr) for shard in shards]
            if any(k != kinds[0] for k in kinds):
                raise UnlearnError(
                    f"under FSDP every process must call the model alike, and micro-batch "
                    f"{index + 1} gives the {n} processes different kinds of rows: make every "
                    f"quota of unlearn.mix (forget, retain, neighbor, general, boundary) a "
                    f"multiple of {n}")


def _set_deepspeed_micro_batch(accelerator, plan: Sequence[Sequence]) -> None:
    """DeepSpeed needs its per-process micro-batch size; without a dataloader, set it here."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is None:
        return
    rows = max(1, len(plan[0]) // max(1, accelerator.num_processes))
    plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = rows


def _shard(micro_batch: Sequence, accelerator) -> list:
    return list(micro_batch)[accelerator.process_index::accelerator.num_processes]


def train(model, plan: Sequence[Sequence], step_fn: StepFn, cfg: OptimConfig, *,
          out_dir: Path | None = None, resume: bool = False, accelerator=None,
          desc: str = "train", on_step: Callable[[int, dict], bool | None] | None = None,
          state: tuple[Callable[[], dict], Callable[[dict], None]] | None = None) -> list[dict]:
    """Run ``plan`` (micro-batches; ``grad_accum`` of them per optimizer step); return the log.

    ``on_step(step, logs)`` runs after every optimizer step with that step's log entry, which
    it may extend (e.g. with a check's result); when it returns True, training stops there
    (early stopping; the schedule is not stretched). ``state = (get, set)`` carries a
    step function's own state (e.g. the adversarial prefill lengths) through checkpoints:
    ``get()`` is saved with each one, ``set(saved)`` restores it.
    """
    total = len(plan) // cfg.grad_accum
    if total < 1:
        raise UnlearnError(f"the plan has {len(plan)} micro-batches, fewer than grad_accum "
                           f"({cfg.grad_accum}): add data or lower optim.grad_accum")
    accelerator = accelerator or make_accelerator(cfg, out_dir)
    _check_unsharded(accelerator)
    _check_sam(cfg, accelerator, step_fn)
    fsdp = _distributed_kind(accelerator) == "FSDP"
    if getattr(step_fn, "own_gradients", False) and fsdp:
        raise UnlearnError("this method takes its gradients itself (torch.autograd.grad), and "
                           "FSDP shards them: launch it with configs/accelerate/ddp.yaml")
    if getattr(on_step, "generates", False) and fsdp:
        # each forward call under FSDP is a collective, and generation stops when a process's
        # answers end, which may differ between processes by a kernel's rounding
        raise UnlearnError("early stopping (unlearn.stop.every) generates answers with the "
                           "sharded model, and FSDP's processes must call it alike: set "
                           "unlearn.stop.every=0, or launch with configs/accelerate/ddp.yaml")
    _check_shards(accelerator, plan)
    _set_deepspeed_micro_batch(accelerator, plan)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_adamw(params, cfg, accelerator)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, total))
    model, optimizer = accelerator.prepare(model, optimizer)  # together, as DeepSpeed needs
    # FSDP2 replaces the parameters by sharded ones (and points the optimizer at them)
    params = [p for p in model.parameters() if p.requires_grad]
    sharded = is_fsdp2(accelerator.unwrap_model(model))  # checkpoints gather on every process
    ckpt_dir = out_dir / "checkpoints" if out_dir else None
    start, history = 0, []
    if resume and ckpt_dir and (last := latest_checkpoint(ckpt_dir)):
        meta = load_checkpoint(last, model=accelerator.unwrap_model(model),
                               optimizer=optimizer, scheduler=scheduler)
        start, history = meta["step"], meta.get("history", [])
        if state is not None:
            state[1](meta.get("state", {}))
    if out_dir is not None:
        accelerator.init_trackers("tensorboard")
    bar = tqdm(total=total, initial=start, desc=desc, unit="step",
               disable=not accelerator.is_main_process)
    model.train()
    for step in range(start, total):
        began = time.perf_counter()
        logs = _optimizer_step(model, plan, step, step_fn, cfg, accelerator, optimizer, params)
        scheduler.step()
        logs["lr"] = scheduler.get_last_lr()[0]
        if accelerator.device.type == "cuda":
            torch.cuda.synchronize(accelerator.device)  # the optimizer's kernels are queued
        seconds = round(time.perf_counter() - began, 4)  # the step itself, not on_step's checks
        stop = _agreed(accelerator, bool(on_step(step + 1, logs))) if on_step else False
        history.append({"step": step + 1, **logs, "seconds": seconds})
        bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items()}, refresh=False)
        bar.update(1)
        if out_dir is not None:
            accelerator.log(logs, step=step + 1)
        if ckpt_dir and cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 \
                and step + 1 < total and (accelerator.is_main_process or sharded):
            gathered = gather_checkpoint(accelerator.unwrap_model(model), optimizer)
            if accelerator.is_main_process:
                save_checkpoint(ckpt_dir, gathered=gathered, scheduler=scheduler,
                                step=step + 1, extra={"history": history,
                                                      "state": state[0]() if state else {}})
                prune_checkpoints(ckpt_dir, cfg.keep_checkpoints)
        accelerator.wait_for_everyone()
        if stop:
            break
    bar.close()
    model.eval()
    for tracker in accelerator.trackers:  # not end_training(): it ends the process group,
        tracker.finish()                  # which saving the model still needs
    return history


def _agreed(accelerator, stop: bool) -> bool:
    """Stop when any process says so: every process must leave the loop at the same step, or
    the others wait forever for its gradients. Each process judges early stopping on its own
    copy, and greedy answers can differ between GPUs by a kernel's rounding."""
    if accelerator.num_processes < 2:
        return stop
    flag = torch.tensor([float(stop)], device=accelerator.device)
    return bool(accelerator.reduce(flag, reduction="sum").item() > 0)


def _part(loss: torch.Tensor, part: str) -> torch.Tensor:
    """The part of a step's loss a pass backpropagates: all of it, its forget term, or the
    rest (``keep``)."""
    if part == "all":
        return loss
    forget = forget_term(loss)
    if forget is None:
        raise UnlearnError("optim.sam_scope=forget: this method does not name its forget term "
                           "(objectives.terms.with_forget_term), so the shift cannot climb it "
                           "alone; set optim.sam_scope=all")
    return forget if part == "forget" else loss - forget


def _accumulate(model, plan, step, step_fn, cfg, accelerator, part: str = "all") -> dict:
    """Forward and backward over the step's micro-batches (gradients of ``part`` of the loss,
    :func:`_part`, summed into ``.grad``); the mean of their logs, with ``forget_term`` when
    the pass backpropagates a part."""
    sums: dict[str, float] = {}
    for micro in range(cfg.grad_accum):
        batch = _shard(plan[step * cfg.grad_accum + micro], accelerator)
        with accelerator.autocast():
            loss, logs = step_fn(model, batch)
        if not torch.isfinite(loss):
            raise UnlearnError(f"non-finite loss at step {step + 1} ({logs}); lower optim.lr "
                               "or switch off mixed precision")
        target = _part(loss, part)
        if part != "all" and loss.requires_grad:
            # through the whole loss's graph at weight 0: under DDP every process then
            # backpropagates alike, one whose rows hold no forget item too
            target = target + 0.0 * loss
        if target.requires_grad:
            accelerator.backward(target / cfg.grad_accum)
        if part != "all":
            logs = {**logs, "forget_term": float(forget_term(loss).detach())}
        for key, value in {"loss": float(loss.detach()), **logs}.items():
            sums[key] = sums.get(key, 0.0) + value / cfg.grad_accum
    return sums


def sam_shift(grads: Sequence[torch.Tensor | None], rho: float,
              eps: float = 1e-12) -> list[torch.Tensor | None]:
    """SAM's ascent step (Foret et al. 2021, eq. 2): ``rho * g / ||g||``, per tensor, with
    ``||g||`` the norm of all of them together (None stays None: a weight without a gradient
    does not move). A zero gradient gives zero shifts."""
    present = [g.float() for g in grads if g is not None]
    if not present:
        return [None for _ in grads]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in present]))
    scale = rho / norm.clamp(min=eps)
    return [None if g is None else (g.float() * scale).to(g.dtype) for g in grads]


def _sam_pass(model, plan, step, step_fn, cfg, accelerator, optimizer, params,
              part: str = "all") -> dict:
    """Replace the step's gradient (of ``part`` of the loss) by SAM's: the gradient at the
    weights shifted by :func:`sam_shift` of the current one, the weights then moved back.
    Under DDP the first gradient is already averaged over the processes, so every process
    shifts alike. Logs ``sam_loss``: the loss (or forget term) at the shifted weights."""
    shifts = sam_shift([p.grad for p in params], cfg.sam_rho)
    with torch.no_grad():
        for p, e in zip(params, shifts, strict=True):
            if e is not None:
                p.add_(e)
    optimizer.zero_grad(set_to_none=True)
    try:
        logs = _accumulate(model, plan, step, step_fn, cfg, accelerator, part)
    finally:
        with torch.no_grad():
            for p, e in zip(params, shifts, strict=True):
                if e is not None:
                    p.sub_(e)
    return {"sam_loss": logs["loss" if part == "all" else "forget_term"]}


def _optimizer_step(model, plan, step, step_fn, cfg, accelerator, optimizer, params) -> dict:
    if cfg.sam_rho > 0 and cfg.sam_scope == "forget":
        # Fan et al. 2025: the forget term's gradient at the shifted weights, the keep terms'
        # at the weights themselves, summed
        sums = _accumulate(model, plan, step, step_fn, cfg, accelerator, "forget")
        sums |= _sam_pass(model, plan, step, step_fn, cfg, accelerator, optimizer, params,
                          "forget")
        _accumulate(model, plan, step, step_fn, cfg, accelerator, "keep")
    else:
        sums = _accumulate(model, plan, step, step_fn, cfg, accelerator)
        if cfg.sam_rho > 0:
            sums |= _sam_pass(model, plan, step, step_fn, cfg, accelerator, optimizer, params)
    if cfg.max_grad_norm > 0:
        norm = accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
        if norm is not None:  # DeepSpeed clips inside its engine and returns None
            # under FSDP2 a replicated DTensor
            sums["grad_norm"] = float(norm.full_tensor() if hasattr(norm, "full_tensor")
                                      else norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return sums


def write_log(path: Path, history: list[dict], config: dict) -> None:
    from unlearnkit.data.records import atomic_write_text

    atomic_write_text(path, json.dumps({"config": config, "history": history}, indent=1))


def config_dict(cfg) -> dict:
    return asdict(cfg)
