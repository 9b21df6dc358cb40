"""Build the scenario's "before unlearning" model and its oracle by fine-tuning the base model.

* injected: trained on every scenario person (forget, retain, neighbour) so it knows the facts;
* oracle: the same training without the forget people, the gold standard for unlearning.

Both also replay the base model's own answers to generic prompts (see
:mod:`unlearnkit.data.replay`) to keep general utility: by NLL on those answers, or
(``replay_loss: kl``) by a top-K KL to the base model's next-token distributions along them, a
denser signal. Results are cached under ``<cache>/inject/<hash>`` where the hash covers the
model, the data and every setting.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch

from unlearnkit.data.records import Record
from unlearnkit.data.render import render_record
from unlearnkit.errors import UnlearnError
from unlearnkit.fsutil import built_once, held_elsewhere
from unlearnkit.models.adapter import ADAPTER_WEIGHTS, adapter_base, is_adapter_folder
from unlearnkit.models.loader import (
    OWN_TOKENIZER,
    TokenizerSpec,
    cache_root,
    load_model,
    resolve_model_path,
    save_model_folder,
    tokenizer_identity,
    weights_digest,
)
from unlearnkit.models.lora import LoraSettings, apply_lora, freeze, merged
from unlearnkit.models.teacher_cache import TopK, teacher_topk
from unlearnkit.training.loop import OptimConfig
from unlearnkit.training.sft import finetune

INJECT_RECIPE_VERSION = 2  # 2: length-bucketed batches
Variant = Literal["injected", "oracle"]


def _default_optim() -> OptimConfig:
    return OptimConfig(lr=1e-4, warmup_ratio=0.1)


@dataclass
class InjectConfig:
    """How the scenario is taught to the base model (sizes and rates chosen by measurement)."""

    epochs: int = 10
    batch_size: int = 8
    seed: int = 0
    replay: bool = True
    replay_loss: Literal["nll", "kl"] = "kl"
    replay_top_k: int = 100
    replay_weight: float = 1.0
    freeze_embeddings: bool = True
    freeze_lower_layers: int = 0
    lora: LoraSettings = field(default_factory=LoraSettings)
    optim: OptimConfig = field(default_factory=_default_optim)
    # > 0: from this epoch on, stop at the end of the first epoch after which greedy decoding
    # reproduces every scenario answer exactly (``training.sft.learned``); ``epochs`` is the cap
    stop_after_epochs: int = 0
    # how many models train at once (:func:`build_variants`): 0 = as many as are missing when
    # this process has a CPU thread for each and no GPU; 1 = one after the other. How the work
    # is spread, not what is learnt: not part of the cache key
    processes: int = 0

    def __post_init__(self) -> None:
        # first: the checks below (stop_after_epochs) read these
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise UnlearnError(f"inject.{name} must be at least 1, got "
                                   f"{getattr(self, name)}")
        if self.freeze_lower_layers < 0:
            raise UnlearnError(f"inject.freeze_lower_layers must be >= 0 (0: train every block), "
                               f"got {self.freeze_lower_layers}")
        if self.replay_loss not in ("nll", "kl"):
            raise UnlearnError(
                f"inject.replay_loss must be 'nll' or 'kl', got {self.replay_loss!r}")
        if self.replay_top_k < 1 or self.replay_weight < 0:
            raise UnlearnError("inject.replay_top_k must be >= 1 and inject.replay_weight >= 0")
        if not 0 <= self.stop_after_epochs <= self.epochs:
            raise UnlearnError(f"inject.stop_after_epochs must be in [0, epochs={self.epochs}] "
                               f"(0: no early stop), got {self.stop_after_epochs}")
        if self.processes < 0:
            raise UnlearnError(f"inject.processes must be >= 0 (0: automatic, 1: one model at "
                               f"a time), got {self.processes}")


def model_identity(name: str) -> str:
    """A string that changes when the model's weights change (for cache keys): a folder's name
    and the digest of its weights (:func:`~unlearnkit.models.loader.weights_digest`), or of
    the file that already names them in the cache's own folders; a LoRA adapter folder is named
    by its (small) weights file and its base model's identity; a hub id by itself."""
    path = Path(resolve_model_path(name))
    if is_adapter_folder(path):
        base = adapter_base(path)  # checks the weights file is there
        digest = hashlib.sha256((path / ADAPTER_WEIGHTS).read_bytes()).hexdigest()[:16]
        return f"{path.name}:{digest}+{model_identity(base)}"
    # folders of the cache, named by a digest of what made them and never rewritten: the
    # converted default model (unlearnkit.json holds its GGUF's digest) and injected models
    for marker, sidecar in (("unlearnkit.json", "unlearnkit.json"), ("config.json", "inject.json")):
        if (path / sidecar).is_file() and (path / marker).is_file():
            return f"{path.name}:{hashlib.sha256((path / marker).read_bytes()).hexdigest()[:16]}"
    if path.is_dir():  # any other folder: its weights (another run's model/ has the same name)
        return f"{path.name}:{weights_digest(path)[:16]}"
    return name


def loaded_identity(name: str, tokenizer) -> str:
    """:func:`model_identity` of a loaded model, with where its tokenizer and chat template
    came from when not from its own files (:func:`~unlearnkit.models.loader.tokenizer_identity`):
    the key of what it computes."""
    return model_identity(name) + tokenizer_identity(tokenizer)


# optimiser settings added after models were cached, with the values those models used: at
# these values they stay out of the cache key, so an upgrade does not inject again
OPTIM_ADDED = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "sam_rho": 0.0, "sam_scope": "all"}


def cache_key(model: str, cfg: InjectConfig, records: list[Record], variant: Variant,
              tokenizer_spec: TokenizerSpec = OWN_TOKENIZER) -> str:
    config = asdict(cfg)
    del config["processes"]
    if not cfg.stop_after_epochs:  # off: the key models had before the setting existed
        del config["stop_after_epochs"]
    for name, before in OPTIM_ADDED.items():  # likewise AdamW's settings at their defaults
        if config["optim"][name] == before:
            del config["optim"][name]
    payload = {
        "recipe": INJECT_RECIPE_VERSION, "model": model_identity(model), "variant": variant,
        "config": config, "records": [r.to_dict() for r in records],
    }
    if tokenizer_spec:  # (without one, the keys models had before the setting existed)
        payload["tokenizer"] = tokenizer_spec.key()
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def training_records(records: list[Record], variant: Variant) -> list[Record]:
    """What each variant trains on: scenario people (minus forget for the oracle) + replay."""
    keep = {"retain", "neighbor"} if variant == "oracle" else {"forget", "retain", "neighbor"}
    return [r for r in records if r.split in keep or r.meta.get("replay")]


def _target(model_name: str, records: list[Record], variant: Variant,
            cfg: InjectConfig, tokenizer_spec: TokenizerSpec = OWN_TOKENIZER) -> Path:
    key = cache_key(model_name, cfg, training_records(records, variant), variant, tokenizer_spec)
    return cache_root() / "inject" / f"{variant}-{key}"


def build_injected(model_name: str, records: list[Record], variant: Variant,
                   cfg: InjectConfig, tokenizer_spec: TokenizerSpec = OWN_TOKENIZER) -> Path:
    """Train (or fetch from the cache) the ``variant`` model and return its folder;
    ``tokenizer_spec`` takes the base model's tokenizer or chat template from elsewhere, and
    the model saved keeps them."""
    data = training_records(records, variant)
    target = _target(model_name, records, variant, cfg, tokenizer_spec)
    # another process (a second bench worker) training the same model: wait, then load it
    return built_once(target, lambda: target if (target / "inject.json").is_file() else None,
                      lambda: _train_injected(model_name, data, variant, cfg, target,
                                              tokenizer_spec=tokenizer_spec))


def build_variants(model_name: str, records: list[Record], variants: Sequence[Variant],
                   cfg: InjectConfig,
                   tokenizer_spec: TokenizerSpec = OWN_TOKENIZER) -> dict[str, Path]:
    """Every variant's folder (:func:`build_injected`). The missing ones train side by side,
    one process each, when :func:`side_by_side` says so: a model of this size gains less from
    a second thread than a second training does from the second core (its matrices are small),
    so two at once on one thread each finish sooner than one after the other on both threads
    (1.28x the throughput on 2 cores, docs/BENCHMARKS.md, "Side by side")."""
    targets = {v: _target(model_name, records, v, cfg, tokenizer_spec) for v in variants}
    missing = [v for v in variants if not (targets[v] / "inject.json").is_file()]
    if (at_once := side_by_side(len(missing), cfg.processes)) > 1:
        _train_in_processes(model_name, records, missing[:at_once], cfg, tokenizer_spec)
    # in turn, those no other process is training first: a second bench worker trains the
    # oracle while the first trains the injected model, instead of waiting for it
    turns = sorted(variants, key=lambda v: held_elsewhere(targets[v]))
    built = {v: build_injected(model_name, records, v, cfg, tokenizer_spec) for v in turns}
    return {v: built[v] for v in variants}


def side_by_side(missing: int, processes: int) -> int:
    """How many models to train at once: ``processes`` when set, else every missing one when
    this process has a CPU thread for each and no GPU (one GPU trains one after the other)."""
    if missing < 2 or processes == 1:
        return 1
    if processes:
        return min(missing, processes)
    if torch.cuda.is_available() or torch.get_num_threads() < missing:
        return 1
    return missing


def _train_in_processes(model_name: str, records: list[Record], variants: list[Variant],
                        cfg: InjectConfig, tokenizer_spec: TokenizerSpec = OWN_TOKENIZER) -> None:
    """Train ``variants`` at once, one spawned process each with an equal share of this
    process's threads and its own progress-bar line; a failure in one is raised here."""
    threads = max(1, torch.get_num_threads() // len(variants))
    ctx = multiprocessing.get_context("spawn")
    errors = ctx.Queue()
    saved = {k: os.environ.get(k) for k in ("TQDM_POSITION", "OMP_NUM_THREADS")}
    procs = []
    try:
        for position, variant in enumerate(variants):  # a spawned child copies os.environ
            os.environ.update(TQDM_POSITION=str(position), OMP_NUM_THREADS=str(threads))
            procs.append(ctx.Process(target=_train_in_child, name=f"inject-{variant}",
                                     args=(model_name, records, variant, cfg, threads, errors,
                                           tokenizer_spec)))
            procs[-1].start()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    try:
        for proc in procs:
            proc.join()
    except BaseException:  # Ctrl-C: stop the children too (their locks free themselves)
        for proc in procs:
            proc.terminate()
            proc.join()
        raise
    failures = {}
    while not errors.empty():
        variant, why = errors.get()
        failures[variant] = why
    for variant, proc in zip(variants, procs, strict=True):
        if proc.exitcode and variant not in failures:
            failures[variant] = f"its process exited with code {proc.exitcode}"
    if failures:  # in the order asked, whichever child failed first
        raise UnlearnError("; ".join(f"training the {v} model failed: {failures[v]}"
                                     for v in variants if v in failures))


def _train_in_child(model_name: str, records: list[Record], variant: Variant,
                    cfg: InjectConfig, threads: int, errors, tokenizer_spec: TokenizerSpec) -> None:
    torch.set_num_threads(threads)
    try:
        build_injected(model_name, records, variant, cfg, tokenizer_spec)
    except Exception as exc:  # reported by the parent, which exits with the message
        why = str(exc) if isinstance(exc, UnlearnError) else f"{type(exc).__name__}: {exc}"
        errors.put((variant, why))
        raise SystemExit(1) from None


def _train_injected(model_name: str, data: list[Record], variant: Variant, cfg: InjectConfig,
                    target: Path, tokenizer_spec: TokenizerSpec = OWN_TOKENIZER) -> Path:
    model, tokenizer = load_model(model_name, tokenizer_spec=tokenizer_spec)
    references = replay_references(model, tokenizer, data, cfg)
    model = apply_lora(freeze(model, embeddings=cfg.freeze_embeddings,
                              lower_layers=cfg.freeze_lower_layers), cfg.lora,
                       first_layer=cfg.freeze_lower_layers)
    start = time.perf_counter()
    checks: list[dict] = []
    history = finetune(model, tokenizer, data, cfg.optim, epochs=cfg.epochs,
                       batch_size=cfg.batch_size, seed=cfg.seed, desc=f"inject:{variant}",
                       references=references, kd_weight=cfg.replay_weight,
                       stop_after_epochs=cfg.stop_after_epochs, checks=checks)
    info = {"variant": variant, "config": asdict(cfg), "n_records": len(data),
            "seconds": round(time.perf_counter() - start, 1),
            "model": model_name, "learned_checks": checks, "history": history}
    if tokenizer_spec:
        info["tokenizer"] = asdict(tokenizer_spec)
    return save_model_folder(merged(model), tokenizer, target, info, info_name="inject.json")


def replay_references(model, tokenizer, records: list[Record], cfg: InjectConfig
                      ) -> list[TopK | None] | None:
    """With ``replay_loss: kl``: the base model's top-K logits along each replay answer (None
    for the other records); else None. Computed on the untouched base model."""
    if cfg.replay_loss != "kl":
        return None
    rows = [i for i, r in enumerate(records) if r.meta.get("replay")]
    tops = teacher_topk(model, [render_record(tokenizer, records[i]) for i in rows], None,
                        k=cfg.replay_top_k, guidance=1.0, pad_id=tokenizer.pad_token_id,
                        desc="replay reference")
    out: list[TopK | None] = [None] * len(records)
    for i, top in zip(rows, tops, strict=True):
        out[i] = top
    return out
