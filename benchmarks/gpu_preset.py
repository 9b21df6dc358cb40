"""A GPU preset run briefly, through `unlearn run`'s own pipeline: what each phase costs.

Usage: python benchmarks/gpu_preset.py [--preset configs/gpu/tofu-llama-3.2-1b.yaml]
       [--model PATH | --shape llama-3.2-1b] [--tokenizer PATH] [--data runs/data/tofu]
       [--steps 30] [--warmup 3] [--lora 0,16] [--out DIR] [--tiny]

The preset's config (data, quotas, optimiser, mixed precision, evaluation) with only these
changed: the model (``--model``, a local folder with the real weights; or ``--shape``, the
preset model's architecture with random weights, since a GPU machine without the hub has no
weights and a step's time and memory do not depend on their values), ``unlearn.mix.steps``
(``--warmup + --steps``), ``lora.rank``, no oracle, no references or report, and a temporary
``UNLEARNKIT_CACHE`` (the teacher cache is really built). Each LoRA rank runs, through
:mod:`unlearnkit.pipeline.run`:

1. teacher cache (first rank; the others find it cached): ``build_examples`` on the loaded
   model, the instructed teacher's forget answers and every item's top-K;
2. training: ``unlearn`` (load, cached teacher, adversarial prefill, the push-pull steps, save);
   s/step is the median of the loop's per-step ``seconds`` after ``--warmup`` steps; FLOPs and
   positions (padding included) are counted by a process-wide nn.Linear / nn.Embedding hook on
   the gradient forwards (``_flops.linear_flops``), i.e. the training steps alone;
3. evaluation: ``evaluate`` of the trained model (answers per split and the prefill attack).

GPU memory is ``torch.cuda.max_memory_allocated`` per phase (reset before each). With
``--shape`` the tokenizer is the default model's (``--tokenizer``; SmolLM2's 49,152 tokens
split text into somewhat more tokens than Llama 3's); the embedding keeps the preset model's
vocabulary, so weights, FLOPs per position and memory are the real model's. ``--tiny`` runs a
2-block shape on the CPU with a few records and steps: it checks the script; its figures mean
nothing. Prints a line per rank and one JSON line (also written to ``--out``/gpu_preset.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _flops import linear_flops
from _machine import describe
from peak import TINY_SIZES, matmul_peak

ROOT = Path(__file__).resolve().parents[1]
# The preset models' architectures (their config.json on the hub); rope scaling, which costs
# nothing, is left at the plain rotary embedding.
SHAPES = {
    "llama-3.2-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=64,
                         vocab_size=128256, rms_norm_eps=1e-5, rope_theta=500000.0,
                         max_position_embeddings=131072, tie_word_embeddings=True),
    "llama-3.2-3b": dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
                         num_attention_heads=24, num_key_value_heads=8, head_dim=128,
                         vocab_size=128256, rms_norm_eps=1e-5, rope_theta=500000.0,
                         max_position_embeddings=131072, tie_word_embeddings=True),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=50000,
                 rms_norm_eps=1e-5, max_position_embeddings=2048, tie_word_embeddings=True),
}
TINY_OVERRIDES = ["optim.mixed_precision=no", "max_new_tokens=8", "eval_batch_size=8",
                  "unlearn.teacher.max_new_tokens=8", "unlearn.mix.forget=2",
                  "unlearn.mix.retain=2", "data.max_per_split={retain: 8, general: 4}"]


def random_model(shape: str, tokenizer_path: str, folder: Path) -> Path:
    """A model folder with the architecture ``shape``, random weights (bf16 safetensors) and
    the tokenizer at ``tokenizer_path``; built on the GPU when there is one."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    ids = {k: getattr(tokenizer, f"{k}_id") for k in ("bos_token", "eos_token", "pad_token")}
    config = LlamaConfig(**SHAPES[shape], **{k.replace("_token", "_token_id"): v
                                            for k, v in ids.items() if v is not None})
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    return folder


class Counter:
    """Linear FLOPs and embedded positions of every gradient-enabled forward in the process
    (the student's training forwards; teachers, generation and evaluation run without)."""

    def __init__(self) -> None:
        self.flops = self.positions = 0
        self.handle = torch.nn.modules.module.register_module_forward_hook(self._hook)

    def _hook(self, module, inputs, _output) -> None:
        if not torch.is_grad_enabled() or not inputs:
            return
        if isinstance(module, torch.nn.Linear):
            self.flops += linear_flops(module, inputs[0])
        elif isinstance(module, torch.nn.Embedding):
            self.positions += inputs[0].numel()

    def remove(self) -> None:
        self.handle.remove()


class Phase:
    """Wall seconds and peak GPU memory (GiB; None on the CPU) of a ``with`` block."""

    def __enter__(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *_exc) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.start
        self.gib = (torch.cuda.max_memory_allocated() / 2**30
                    if torch.cuda.is_available() else None)


def run_rank(preset: str, overrides: list[str], rank: int, warmup: int, out: Path) -> dict:
    from unlearnkit.config import load_config
    from unlearnkit.models.loader import load_model
    from unlearnkit.pipeline import run as pipeline
    from unlearnkit.pipeline.methods import general_keep
    from unlearnkit.training.inject import model_identity
    from unlearnkit.training.unlearn import build_examples

    cfg = load_config(pipeline.RunConfig, preset,
                      [*overrides, f"lora.rank={rank}", f"output={out / f'lora-{rank}'}"])
    prepared = pipeline.prepare(cfg)
    start = prepared.models["injected"]
    records = prepared.records + general_keep(cfg.unlearn.mix, prepared)
    row: dict = {"lora": rank, "records": len(prepared.records)}
    with Phase() as teacher:  # builds the cache, or finds it built by an earlier rank
        model, tokenizer = load_model(start, **cfg.load_options())
        build_examples(model, tokenizer, records, cfg.unlearn.teacher, model_identity(start))
        del model
    row["teacher"] = {"seconds": teacher.seconds, "gpu_gib": teacher.gib}
    counter = Counter()
    try:
        with Phase() as training:
            after, history, context = pipeline.unlearn(cfg, prepared, Path(cfg.output))
    finally:
        counter.remove()
    steps = [h["seconds"] for h in history]
    measured = steps[warmup:] or steps
    median = statistics.median(measured)
    row["train"] = {
        "seconds": training.seconds, "gpu_gib": training.gib, "steps": len(steps),
        "s_per_step": median, "steps_seconds": sum(steps),
        "positions_per_step": counter.positions / len(steps),
        "positions_per_s": counter.positions / len(steps) / median,
        "tflop_per_step": counter.flops / len(steps) / 1e12,
        "tflops": counter.flops / len(steps) / median / 1e12,
        "final_loss": history[-1]["loss"],
    }
    with Phase() as evaluation:
        results = pipeline.evaluate({"after": after}, prepared.records, cfg,
                                    contexts={"after": context})
    items = len(results["after"]["items"])
    row["evaluate"] = {"seconds": evaluation.seconds, "gpu_gib": evaluation.gib,
                       "questions": items, "questions_per_s": items / evaluation.seconds,
                       "max_new_tokens": cfg.max_new_tokens,
                       "batch_size": cfg.eval_batch_size}
    return row


def _gib(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def print_row(row: dict, peak_tflops: float) -> None:
    t, e, c = row["train"], row["evaluate"], row["teacher"]
    print(f"LoRA {row['lora']:>3}: teacher cache {c['seconds']:.1f} s ({_gib(c['gpu_gib'])} GiB)"
          f" | training {t['steps']} steps in {t['seconds']:.1f} s (steps alone "
          f"{t['steps_seconds']:.1f} s), {t['s_per_step']:.3f} s/step, "
          f"{t['positions_per_s']:,.0f} positions/s, {t['tflops']:.1f} TFLOP/s = "
          f"{100 * t['tflops'] / peak_tflops:.1f}% of peak, {_gib(t['gpu_gib'])} GiB"
          f" | evaluation {e['questions']} questions in {e['seconds']:.1f} s "
          f"({e['questions_per_s']:.1f}/s), {_gib(e['gpu_gib'])} GiB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=str(ROOT / "configs/gpu/tofu-llama-3.2-1b.yaml"))
    parser.add_argument("--model", help="a local model folder (default: --shape, random)")
    parser.add_argument("--shape", default="llama-3.2-1b", choices=sorted(SHAPES))
    parser.add_argument("--tokenizer", help="tokenizer folder for --shape (default: the "
                        "default model's)")
    parser.add_argument("--data", help="standardised dataset folder (default: the preset's "
                        "data.path; `unlearn data standardize configs/data-tofu.yaml`)")
    parser.add_argument("--steps", type=int, default=30, help="steps measured (median)")
    parser.add_argument("--warmup", type=int, default=3, help="steps dropped first")
    parser.add_argument("--lora", default="0,16", help="LoRA ranks; 0 = full fine-tuning")
    parser.add_argument("--out", help="also write gpu_preset.json there (the runs go to a "
                        "temporary folder, removed with their weights)")
    parser.add_argument("--tiny", action="store_true", help="2-block random model on the "
                        "CPU, few records and steps: checks the script")
    args = parser.parse_args()
    if args.tiny:
        args.shape, args.warmup, args.steps = "tiny", 1, 2
    from unlearnkit.cli import _quiet_libraries
    from unlearnkit.data.records import atomic_write_text
    from unlearnkit.models.loader import DEFAULT_MODEL, resolve_model_path

    _quiet_libraries()
    tokenizer = args.tokenizer or (None if args.model else resolve_model_path(DEFAULT_MODEL))
    work = Path(tempfile.mkdtemp(prefix="unlearnkit-gpu-"))
    os.environ["UNLEARNKIT_CACHE"] = str(work / "cache")  # the teacher cache is built anew
    try:
        if args.model:
            model, described = args.model, f"{args.model} (its own weights)"
        else:
            model = str(random_model(args.shape, tokenizer, work / f"random-{args.shape}"))
            described = f"{args.shape} architecture, random weights, tokenizer {tokenizer}"
        overrides = [f"data.model={model}", "data.oracle=", "eval_references=false",
                     "report=false", "teacher_report=false",
                     f"unlearn.mix.steps={args.warmup + args.steps}"]
        overrides += [f"data.path={args.data}"] if args.data else []
        overrides += TINY_OVERRIDES if args.tiny else []
        cuda = torch.cuda.is_available()
        kind = "fp32" if args.tiny else "bf16"  # the GPU's dense bf16 rate (the preset: bf16)
        sizes = ({"sizes": (4096, 8192)} if cuda else
                 {"sizes": TINY_SIZES, "repeats": 2} if args.tiny else {})
        peak = matmul_peak(kind, device="cuda" if cuda else "cpu", **sizes) / 1e3
        print(f"machine: {describe()}\npreset: {args.preset}\nmodel: {described}\n"
              f"{args.warmup} warm-up + {args.steps} measured steps; {kind} matmul peak "
              f"{peak:.1f} TFLOP/s", flush=True)
        payload = {"machine": describe(), "preset": args.preset, "model": described,
                   "peak_tflops": peak, "peak_kind": kind, "warmup": args.warmup, "runs": []}
        for rank in (int(r) for r in args.lora.split(",")):
            try:
                payload["runs"].append(run_rank(args.preset, overrides, rank, args.warmup,
                                                work))
                print_row(payload["runs"][-1], peak)
            except Exception as exc:  # one failing rank must not lose the other's figures
                traceback.print_exc()
                payload["runs"].append({"lora": rank, "error": f"{type(exc).__name__}: {exc}"})
            shutil.rmtree(work / f"lora-{rank}", ignore_errors=True)  # gigabytes of weights
            if args.out:  # after every rank: a run stopped at its time limit keeps the rest
                Path(args.out).mkdir(parents=True, exist_ok=True)
                atomic_write_text(Path(args.out) / "gpu_preset.json",
                                  json.dumps(payload, indent=1))
        print(json.dumps(payload))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
