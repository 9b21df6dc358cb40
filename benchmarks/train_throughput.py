"""Training throughput per method: s/step, tokens/s and achieved FLOP/s against the matmul peak.

Usage: python benchmarks/train_throughput.py [--methods a,b] [--dtypes fp32,bf16]
       [--lora 0,16] [--warmup 1] [--steps 5] [--max-seconds 120] [--tiny]

Every step is a real optimizer step of :func:`unlearnkit.training.loop.train` (autocast,
forward, backward, clipping, AdamW), timed between the loop's ``on_step`` callbacks, on the
micro-batches and with the step functions a run uses:

* inject_sft: the injection recipe (``training.inject``: SFT, batch 8, embeddings frozen);
* sft: plain SFT (``training.sft.sft_step``) on push-pull's micro-batches (their pull inputs);
* sft_same_rows: plain SFT on every row push-pull forwards: the pull inputs and the forget
  items' true answers (what a push-pull step costs beyond a fine-tuning step on the same
  tokens: its losses and the cached teacher's top-K gathers);
* pushpull: ``objectives.pushpull.pushpull_step`` on ``training.unlearn.mixture_plan``
  (4 forget + 4 retain + 4 neighbour items) with the cached teacher top-K;
* pushpull_recompute: the same step, but the teacher top-K are recomputed at every step (the
  frozen teacher: a copy of the model for full fine-tuning, the model with its adapters
  disabled for LoRA) instead of read from the cache;
* every trainable baseline: ``BASELINES[name].make_step`` after ``prepare_items``, options from
  configs/baselines/NAME.yaml, micro-batches from ``pipeline.methods.split_plan``.

Each (method, dtype, LoRA rank) loads a fresh model; the first ``--warmup`` steps are dropped
and the figures are medians over the next ``--steps`` (fewer when a configuration's training
passes ``--max-seconds``: the "steps" field says how many). FLOPs are counted per nn.Linear call
(docs/BENCHMARKS.md has the formula); the adversarial-prefill refresh that a push-pull run
does every 5 steps is not part of a step and is timed on its own. The real default model is
the base model (throughput does not depend on the weights). Prints a table, the push-pull/SFT
ratio, the teacher cache's saving, and one JSON line.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import time
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate.state import AcceleratorState, GradientState

sys.path.insert(0, str(Path(__file__).parent))
from _flops import linear_flops
from _machine import describe
from _setup import Setup, make_setup
from peak import TINY_SIZES, matmul_peak

from unlearnkit.data.render import render_record
from unlearnkit.models.lora import LoraSettings, apply_lora, freeze
from unlearnkit.models.teacher import instruction
from unlearnkit.models.teacher_cache import teacher_topk
from unlearnkit.objectives.baselines import BASELINES, build_items
from unlearnkit.objectives.pushpull import pushpull_step
from unlearnkit.pipeline.methods import baseline_options, split_plan
from unlearnkit.pipeline.run import RunConfig
from unlearnkit.training.inject import InjectConfig, training_records
from unlearnkit.training.loop import train
from unlearnkit.training.sft import epoch_plan, sft_step
from unlearnkit.training.unlearn import (
    UnlearnConfig,
    _pair,
    _responses,
    _teacher_context,
    build_examples,
    mixture_plan,
    refresh_prefill,
)

PRESETS = Path(__file__).resolve().parents[1] / "configs" / "baselines"
OWN = ("inject_sft", "sft", "sft_same_rows", "pushpull", "pushpull_recompute")
METHODS = (*OWN, *sorted(n for n, b in BASELINES.items() if b.trainable))
DTYPES = {"fp32": "no", "bf16": "bf16"}  # --dtypes name -> optim.mixed_precision
PEAK_KIND = {"fp32": "fp32", "bf16": "bf16-autocast"}


class FlopCounter:
    """Matmul FLOPs of every nn.Linear call (``_flops.linear_flops``), and the real tokens of
    the gradient forwards: non-padding positions of the forwards run with gradients on (the
    student's, not a teacher's)."""

    def __init__(self, model, *others):
        self.flops = self.tokens = 0
        self.handles = [model.register_forward_pre_hook(self._count_tokens, with_kwargs=True)]
        for net in (model, *others):
            self.handles += [m.register_forward_hook(self._count_linear)
                             for m in net.modules() if isinstance(m, torch.nn.Linear)]

    def _count_linear(self, module, inputs, _output) -> None:
        self.flops += linear_flops(module, inputs[0])

    def _count_tokens(self, _module, args, kwargs) -> None:
        if torch.is_grad_enabled():
            mask = kwargs.get("attention_mask")
            ids = kwargs.get("input_ids", args[0] if args else None)
            self.tokens += int(mask.sum()) if mask is not None else ids.numel()

    def take(self) -> tuple[int, int]:
        out, self.flops, self.tokens = (self.flops, self.tokens), 0, 0
        return out

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


# ---------------------------------------------------------------------------------------------
# One method's model, plan and step, built as the pipeline builds them
# ---------------------------------------------------------------------------------------------


@dataclass
class Built:
    model: Any  # after apply_lora: what trains
    plan: list
    step: Any
    optim: Any  # OptimConfig
    teachers: list = field(default_factory=list)  # other modules whose FLOPs count
    extra: dict = field(default_factory=dict)  # figures measured while building


def _inject_sft(bench: Setup, model, rank: int, n: int):
    cfg = InjectConfig()
    model = apply_lora(freeze(model, embeddings=cfg.freeze_embeddings,
                              lower_layers=cfg.freeze_lower_layers),
                       replace(cfg.lora, rank=rank), first_layer=cfg.freeze_lower_layers)
    items = [render_record(bench.tokenizer, r)
             for r in training_records(bench.records, "injected")]
    epochs = math.ceil(n * cfg.batch_size / len(items)) + 1
    plan = epoch_plan(items, cfg.batch_size, epochs, cfg.seed, bucket=8)[:n]
    return Built(model, plan, sft_step(bench.tokenizer.pad_token_id), cfg.optim)


def _examples(bench: Setup, model):
    cfg = UnlearnConfig()  # the values of configs/run-scenario.yaml and configs/demo.yaml
    return cfg, build_examples(model, bench.tokenizer, bench.records, cfg.teacher, bench.model_id)


def _sft(bench: Setup, model, rank: int, n: int, true_answers: bool = False):
    cfg, examples = _examples(bench, model)
    model = apply_lora(model, LoraSettings(rank=rank))
    plan = [[e.pull_input for e in batch]
            + ([e.true_input for e in batch if e.true_input is not None] if true_answers else [])
            for batch in mixture_plan(examples, replace(cfg.mix, steps=n), cfg.seed)]
    return Built(model, plan, sft_step(bench.tokenizer.pad_token_id), RunConfig().optim)


def _sft_same_rows(bench: Setup, model, rank: int, n: int):
    return _sft(bench, model, rank, n, true_answers=True)


def _pushpull(bench: Setup, model, rank: int, n: int, examples=None):
    cfg = UnlearnConfig()
    if examples is None:
        examples = _examples(bench, model)[1]
    model = apply_lora(model, LoraSettings(rank=rank))
    start = time.perf_counter()
    refresh_prefill(model, bench.tokenizer, examples, cfg.method.prefill_candidates)
    seconds = time.perf_counter() - start
    plan = mixture_plan(examples, replace(cfg.mix, steps=n), cfg.seed)
    return Built(model, plan, pushpull_step(bench.tokenizer.pad_token_id, cfg.method),
                 RunConfig().optim, extra={"prefill_refresh_s": seconds})


def _teacher_inputs(bench: Setup, model, examples, cfg) -> dict[int, tuple]:
    """Per example (by id): the teacher's pull input, its true-answer input and ``promote``,
    rendered by the helpers ``build_examples`` uses (checked against the cached examples)."""
    forget = [r for r in bench.records if r.split == "forget"]
    keep = [r for r in bench.records if r.split in ("retain", "neighbor")]
    context = instruction(cfg, forget)
    keep_context = None if cfg.keep_context == "plain" else context
    answers = (_responses(model, bench.tokenizer, forget, cfg.forget_response, context, cfg,
                          True)
               + _responses(model, bench.tokenizer, keep, cfg.keep_response, keep_context, cfg,
                            False))
    out = {}
    for rec, answer, ex in zip(forget + keep, answers, examples, strict=True):
        student, teacher = _pair(bench.tokenizer, rec, answer, _teacher_context(cfg, rec, context))
        if student.input_ids != ex.pull_input.input_ids:
            raise RuntimeError("the teacher inputs do not match build_examples' items")
        true = _pair(bench.tokenizer, rec, rec.answer or "", context)[1] if ex.true_input else None
        out[id(ex)] = (teacher, true, rec.split == "forget" and cfg.forget_response == "template")
    return out


def _pushpull_recompute(bench: Setup, model, rank: int, n: int):
    cfg, examples = _examples(bench, model)
    inputs = _teacher_inputs(bench, model, examples, cfg.teacher)
    teacher = None if rank else copy.deepcopy(model).requires_grad_(False).eval()
    built = _pushpull(bench, model, rank, n, examples)
    inner = built.step
    tcfg, pad = cfg.teacher, bench.tokenizer.pad_token_id
    kw = {"k": tcfg.top_k, "guidance": tcfg.guidance, "pad_id": pad, "boost": tcfg.template_boost}

    def step(student, batch):
        with student.disable_adapter() if teacher is None else nullcontext():
            net = student if teacher is None else teacher
            pulls = teacher_topk(net, [inputs[id(e)][0] for e in batch],
                                 [e.pull_input for e in batch],
                                 promote=[inputs[id(e)][2] for e in batch], **kw)
            forget = [e for e in batch if e.true_input is not None]
            trues = iter(teacher_topk(net, [inputs[id(e)][1] for e in forget],
                                      [e.true_input for e in forget], **kw))
        fresh = [replace(e, pull_top=p, true_top=next(trues) if e.true_input else None)
                 for e, p in zip(batch, pulls, strict=True)]
        return inner(student, fresh)

    return replace(built, step=step, teachers=[teacher] if teacher is not None else [])


def _baseline_options(bench: Setup, name: str, rank: int):
    path = PRESETS / f"{name}.yaml"
    options = (yaml.safe_load(path.read_text()) if path.is_file() else None) or {}
    if name == "rmu" and bench.tiny:
        options = {**options, "layer": 1, "update_layers": [1]}
    if name == "rmu" and rank:
        options = {**options, "modules": ["lora_"]}  # the preset's advice for LoRA
    return baseline_options(name, options, seed=0)


def _baseline(bench: Setup, model, rank: int, n: int, name: str):
    base, cfg = BASELINES[name], UnlearnConfig()
    options = _baseline_options(bench, name, rank)
    model = apply_lora(model, LoraSettings(rank=rank))
    items = base.prepare_items(options, model, bench.tokenizer,
                               build_items(bench.tokenizer, bench.records),
                               model_id=bench.model_id)
    plan = split_plan(items, replace(cfg.mix, steps=n), cfg.seed)
    return Built(model, plan, base.make_step(options, bench.tokenizer.pad_token_id),
                 RunConfig().optim)


BUILDERS = {"inject_sft": _inject_sft, "sft": _sft, "sft_same_rows": _sft_same_rows,
            "pushpull": _pushpull,
            "pushpull_recompute": _pushpull_recompute}


def build(bench: Setup, method: str, model, rank: int, n: int) -> Built:
    """``method``'s model (LoRA-wrapped when ``rank``), plan of ``n`` steps and step."""
    if method in BUILDERS:
        return BUILDERS[method](bench, model, rank, n)
    return _baseline(bench, model, rank, n, method)


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


class _Enough(Exception):
    """Raised from ``on_step`` to end a configuration whose steps are too slow."""


def run_config(bench: Setup, method: str, dtype: str, rank: int, warmup: int, steps: int,
               on_prepared=None, max_seconds: float = float("inf")) -> dict:
    """Train ``warmup + steps`` steps (fewer once ``max_seconds`` of training have passed and
    one step was measured); the medians of the measured steps' seconds, FLOPs and tokens."""
    built = build(bench, method, bench.load(), rank, warmup + steps)
    model = built.model
    if on_prepared is not None:
        on_prepared()
    counter = FlopCounter(model, *built.teachers)
    rows, last = [], [time.perf_counter()]
    begun = last[0]

    def on_step(_step: int, _logs: dict) -> None:
        now = time.perf_counter()
        rows.append((now - last[0], *counter.take()))
        last[0] = now
        if len(rows) > warmup and now - begun > max_seconds:
            raise _Enough

    counter.take()
    # The loop's Accelerator is a process-wide singleton whose mixed precision is fixed once
    # set; accelerate's own tests reset it like this between runs.
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    with suppress(_Enough):
        train(model, built.plan, built.step,
              replace(built.optim, mixed_precision=DTYPES[dtype]), desc=method, on_step=on_step)
    counter.remove()
    rows = rows[warmup:]
    result = {"method": method, "dtype": dtype, "lora": rank, "steps": len(rows),
              "s_per_step": statistics.median(r[0] for r in rows),
              "tokens_per_step": statistics.median(r[2] for r in rows),
              "tokens_per_s": statistics.median(r[2] / r[0] for r in rows),
              "gflop_per_step": statistics.median(r[1] for r in rows) / 1e9,
              "gflops": statistics.median(r[1] / r[0] for r in rows) / 1e9,
              "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
              **built.extra}
    return result


def summary(results: list[dict]) -> list[dict]:
    """Per (dtype, rank): push-pull s/step over SFT's (same micro-batches; same rows, the
    forget items' true answers included) and over the recomputing step (the teacher cache's
    saving)."""
    by = {(r["method"], r["dtype"], r["lora"]): r["s_per_step"] for r in results}
    out = []
    for dtype, rank in dict.fromkeys((r["dtype"], r["lora"]) for r in results):
        pp = by.get(("pushpull", dtype, rank))
        sft = by.get(("sft", dtype, rank))
        same = by.get(("sft_same_rows", dtype, rank))
        again = by.get(("pushpull_recompute", dtype, rank))
        out.append({"dtype": dtype, "lora": rank,
                    "pushpull_over_sft": pp / sft if pp and sft else None,
                    "pushpull_over_sft_same_rows": pp / same if pp and same else None,
                    "recompute_over_cached": again / pp if pp and again else None})
    return out


HEADER = (f"  {'method':<19}{'dtype':>6}{'lora':>5}{'s/step':>9}{'tok/step':>9}{'tok/s':>9}"
          f"{'GFLOP/step':>11}{'GFLOP/s':>9}{'% peak':>8}")


def format_row(r: dict, peaks: dict[str, float]) -> str:
    head = f"  {r['method']:<19}{r['dtype']:>6}{r['lora']:>5}"
    if "error" in r:
        return f"{head}  failed: {r['error']}"
    return (f"{head}{r['s_per_step']:9.3f}{r['tokens_per_step']:9.0f}{r['tokens_per_s']:9.0f}"
            f"{r['gflop_per_step']:11.2f}{r['gflops']:9.1f}"
            f"{100 * r['gflops'] / peaks[r['dtype']]:7.1f}%")


def print_summary(results: list[dict], ratios: list[dict]) -> None:
    for row in ratios:
        cells = [f"{k} {row[k]:.2f}x" for k in ("pushpull_over_sft", "pushpull_over_sft_same_rows",
                                                 "recompute_over_cached")
                 if row[k] is not None]
        if cells:
            print(f"  {row['dtype']}, lora {row['lora']}: " + ", ".join(cells))
    for r in results:
        if r["method"] == "pushpull" and "prefill_refresh_s" in r:
            print(f"  pushpull {r['dtype']}, lora {r['lora']}: adversarial-prefill refresh "
                  f"{r['prefill_refresh_s']:.2f} s (a run does one every 5 steps)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(METHODS), help="default: all")
    parser.add_argument("--dtypes", default="fp32,bf16", help="fp32 and/or bf16 (autocast)")
    parser.add_argument("--lora", default="0,16", help="LoRA ranks; 0 = full fine-tuning")
    parser.add_argument("--warmup", type=int, default=1, help="steps dropped first")
    parser.add_argument("--steps", type=int, default=5, help="steps measured (median)")
    parser.add_argument("--max-seconds", type=float, default=120,
                        help="stop measuring a configuration after this much training time "
                             "(once one step is measured; default %(default)s)")
    parser.add_argument("--tiny", action="store_true", help="tiny random model, 1 + 2 steps")
    args = parser.parse_args()
    unknown = [m for m in args.methods.split(",") if m not in METHODS]
    if unknown or not set(args.dtypes.split(",")) <= set(DTYPES):
        parser.error(f"unknown methods {unknown} or dtypes {args.dtypes!r}; methods: "
                     f"{', '.join(METHODS)}; dtypes: {', '.join(DTYPES)}")
    bench = make_setup(args.tiny)
    warmup, steps = (1, 2) if args.tiny else (args.warmup, args.steps)
    dtypes = args.dtypes.split(",")
    sizes = {"sizes": TINY_SIZES, "repeats": 2} if args.tiny else {}
    peaks = {d: matmul_peak(PEAK_KIND[d], **sizes) for d in dtypes}
    print(f"machine: {describe()}\nmodel: {bench.name}; {warmup} warm-up + {steps} measured "
          f"steps; matmul peak GFLOP/s: " + ", ".join(f"{d} {v:.1f}" for d, v in peaks.items()))
    if "bf16" in peaks and "fp32" in peaks and peaks["bf16"] < peaks["fp32"] / 4:
        print("  note: bf16 matmuls are far slower than fp32 on this CPU (no bf16 matmul "
              "instructions?); bf16 rows will be slow, --dtypes fp32 skips them")
    print(HEADER, flush=True)
    results = []
    for method in args.methods.split(","):
        for rank in (int(x) for x in args.lora.split(",")):
            for dtype in dtypes:
                try:
                    results.append(run_config(bench, method, dtype, rank, warmup, steps,
                                              max_seconds=args.max_seconds))
                except Exception as exc:  # one failing method must not lose the others
                    results.append({"method": method, "dtype": dtype, "lora": rank,
                                    "error": f"{type(exc).__name__}: {exc}"})
                print(format_row(results[-1], peaks), flush=True)
    ratios = summary([r for r in results if "error" not in r])
    print_summary(results, ratios)
    print(json.dumps({"machine": describe(), "model": bench.name, "peak_gflops": peaks,
                      "warmup": warmup, "results": results, "ratios": ratios}))


if __name__ == "__main__":
    main()
