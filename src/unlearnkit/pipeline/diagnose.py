"""`unlearn diagnose [CONFIG]`: the method's two claims (docs/METHOD.md) as measurements.

On one model (default: the built-in scenario's injected model, or ``data``'s starting model:
:mod:`unlearnkit.pipeline.data_source`) and its data, twice: with the
forget set in the unified chat-QA form, and left raw (each forget person's biography as plain
text, no chat template, every token but the first labelled):

* gradients: each loss term's gradient (:mod:`unlearnkit.evaluation.gradients`) on the same
  sampled batches, restricted to the upper ``grad_blocks`` transformer blocks, and the matrix
  of pairwise cosines (mean and standard deviation over batches). The push-pull terms should
  conflict less (cosine less negative) with the keep-side terms than gradient ascent on forget
  does with plain NLL on retain;
* representations: per layer, each set's response-averaged hidden states, and distances between
  the sets (:mod:`unlearnkit.evaluation.geometry`); the unified form should bring the forget
  set closer to the others.

A raw passage has no question, so there its forget terms work along the passage itself: pull
toward the instructed teacher's logits (the instruction as a plain-text prefix), push and
prefill on the tokens of the person's facts, gradient ascent on the whole passage. Retain and
neighbour items, and the batches' people, are the same in both forms.

With ``unlearn.teacher.keep_context: plain`` (the default) the retain and neighbour pulls are
self-distillation: at the starting model their gradient is zero and their cosines are
undefined (NaN, written as null); set ``keep_context: instructed`` to measure them against
the instructed teacher, or diagnose a model part-way through unlearning.

Writes ``<output>/diagnose.json`` and prints the tables (:mod:`unlearnkit.report.diagnose`).
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Any, Literal

import torch

from unlearnkit.data.records import Record
from unlearnkit.data.render import render_record
from unlearnkit.data.scenario import build_scenario, general_probes
from unlearnkit.errors import UnlearnError
from unlearnkit.evaluation.geometry import cosine_matrix, mean_std, set_distances
from unlearnkit.evaluation.gradients import TERMS, Batch, select_params, term_gradients
from unlearnkit.evaluation.hidden import layer_indices, pooled_hidden
from unlearnkit.fsutil import atomic_write_text, check_replaceable
from unlearnkit.models.loader import load_model, pick_device
from unlearnkit.objectives.pushpull import Example
from unlearnkit.pipeline.data_source import DataSource, prepare_data
from unlearnkit.pipeline.scenario_models import ScenarioSetup, prepare_scenario
from unlearnkit.report.diagnose import tables
from unlearnkit.training.inject import loaded_identity
from unlearnkit.training.raw import passage_of, raw_examples, render_raw
from unlearnkit.training.reveal import reveal_by_contrast
from unlearnkit.training.unlearn import UnlearnConfig, build_examples, refresh_prefill

SETS = ("forget", "retain", "neighbor", "general")
TRAIN_SETS = ("forget", "retain", "neighbor")


@dataclass
class DiagnoseConfig:
    """`unlearn diagnose`: model and data, the terms, batches, parameters and layers."""

    setup: ScenarioSetup = field(default_factory=ScenarioSetup)
    model: str = ""  # empty: the scenario's injected model (built and cached like unlearn
    # inject); a model folder skips injection and takes every general probe unfiltered
    data: DataSource = field(default_factory=DataSource)  # default: the scenario in setup
    unlearn: UnlearnConfig = field(default_factory=UnlearnConfig)  # teacher, method, seed
    terms: list[str] = field(default_factory=lambda: list(TERMS))
    batches: int = 3
    batch_size: int = 4  # items per set and batch
    grad_blocks: int = 4  # gradients of the upper N transformer blocks only; 0: every parameter
    layers: list[int] = field(default_factory=list)  # hidden_states indices; empty: middle, last
    pool: Literal["response", "all"] = "response"
    max_items: int = 32  # items per set (records drawn once, for the teacher and the distances)
    device: str = ""  # empty: cuda when available, else cpu
    output: str = "runs/diagnose"

    def __post_init__(self) -> None:
        if self.model and self.data.kind != "scenario":
            raise UnlearnError("model applies to the built-in scenario; with data.kind "
                               f"{self.data.kind!r} set data.model instead")
        unknown = [t for t in self.terms if t not in TERMS]
        if unknown or len(self.terms) < 2:
            raise UnlearnError(f"terms must name at least two of {', '.join(TERMS)}; "
                               f"got {self.terms}")
        for name, low in (("batches", 1), ("batch_size", 1), ("max_items", 2)):
            if getattr(self, name) < low:
                raise UnlearnError(f"{name} must be at least {low}, got {getattr(self, name)}")
        if self.grad_blocks < 0:
            raise UnlearnError(f"grad_blocks must be >= 0 (the upper N transformer blocks; 0: "
                               f"every parameter), got {self.grad_blocks}")
        pick_device(self.device)  # a device torch does not know fails here, not after the data


@dataclass
class DiagnoseData:
    model: str
    sets: dict[str, list[Record]]  # forget / retain / neighbor / general, max_items each
    passages: dict[str, str]  # forget record id -> the raw passage it was made from


def load_data(cfg: DiagnoseConfig) -> DiagnoseData:
    scenario = build_scenario(**asdict(cfg.setup.scenario))
    biographies = scenario.biographies
    if cfg.data.kind != "scenario":
        prepared = prepare_data(cfg.data, variants=("injected",))
        model, records, biographies = prepared.models["injected"], prepared.records, {}
    elif cfg.model:
        model, records = cfg.model, scenario.records + general_probes()
    else:
        prepared = prepare_scenario(cfg.setup, variants=("injected",))
        model, records = prepared.models["injected"], prepared.records
    rng = random.Random(cfg.unlearn.seed)
    sets = {}
    for split in SETS:
        pool = [r for r in records if r.split == split]
        if len(pool) < 2:
            raise UnlearnError(f"diagnose needs at least 2 {split!r} records, found {len(pool)}")
        sets[split] = rng.sample(pool, min(cfg.max_items, len(pool)))
    passages = {r.id: p for r in sets["forget"] if (p := passage_of(r, biographies))}
    return DiagnoseData(model, sets, passages)


def sample_ids(sets: dict[str, list[Record]], n: int, size: int, seed: int
               ) -> list[dict[str, list[str]]]:
    """``n`` batches of record ids, ``size`` (or all) per training set, drawn without
    replacement within a batch."""
    rng = random.Random(seed)
    return [{s: [r.id for r in rng.sample(sets[s], min(size, len(sets[s])))]
             for s in TRAIN_SETS} for _ in range(n)]


def to_batch(ids: dict[str, list[str]], by_id: dict[str, Example],
             forget: dict[str, Example]) -> Batch:
    """Examples of a batch of ids; forget ids map through ``forget`` (several records may share
    one raw passage, which then appears once)."""
    chosen = [forget[i] for i in ids["forget"] if i in forget]
    return {"forget": list({id(e): e for e in chosen}.values()),
            "retain": [by_id[i] for i in ids["retain"]],
            "neighbor": [by_id[i] for i in ids["neighbor"]]}


def gradient_stats(model, batches: list[Batch], pad_id: int, cfg: DiagnoseConfig,
                   params: list[torch.nn.Parameter]) -> dict[str, Any]:
    mats, norms, losses = [], [], []
    for batch in batches:
        grads, loss = term_gradients(model, batch, pad_id, cfg.unlearn.method, cfg.terms, params)
        mats.append(cosine_matrix(grads))
        norms.append(grads.double().norm(dim=-1))
        losses.append(loss)
    mean, std = mean_std(torch.stack(mats))
    norm = torch.stack(norms).mean(0).tolist()
    return {"terms": list(cfg.terms), "batches": len(batches), "cosine_mean": mean.tolist(),
            "cosine_std": std.tolist(), "grad_norm": dict(zip(cfg.terms, norm, strict=True)),
            "loss": {t: sum(x[t] for x in losses) / len(losses) for t in cfg.terms}}


def representation_stats(pooled: dict[str, dict[int, torch.Tensor]], forget_key: str
                         ) -> dict[str, dict[str, dict[str, float]]]:
    """Per layer, distances between every pair of sets (the forget set from ``forget_key``)."""
    sets = {s: pooled[forget_key if s == "forget" else s] for s in SETS}
    layers = next(iter(pooled.values())).keys()
    return {str(layer): {f"{a}~{b}": set_distances(sets[a][layer], sets[b][layer])
                         for a, b in combinations(SETS, 2)} for layer in layers}


FORGET_SIDE = ("forget_pull", "forget_push", "adv_push", "adv_pull")
KEEP_SIDE = ("retain_pull", "neighbor_pull")


def gradient_summary(stats: dict[str, Any]) -> dict[str, float | None]:
    """The conflict numbers: naive GA-vs-NLL cosine and the forget-vs-keep push-pull cosines."""
    idx = {t: i for i, t in enumerate(stats["terms"])}
    cos = stats["cosine_mean"]
    pairs = [cos[idx[a]][idx[b]] for a in FORGET_SIDE for b in KEEP_SIDE if a in idx and b in idx]
    pairs = [p for p in pairs if not math.isnan(p)]
    out: dict[str, float | None] = {}
    if "ga_forget" in idx and "nll_retain" in idx:
        out["naive ga_forget~nll_retain"] = cos[idx["ga_forget"]][idx["nll_retain"]]
    if pairs:
        out["push-pull forget~keep mean"] = sum(pairs) / len(pairs)
        out["push-pull forget~keep min"] = min(pairs)
        out["push-pull forget~keep negative share"] = sum(p < 0 for p in pairs) / len(pairs)
    return out


def _finite(value: Any) -> Any:
    """NaN -> None, recursively (JSON has no NaN)."""
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _pooled(model, tokenizer, data: DiagnoseData, cfg: DiagnoseConfig, layers: list[int]):
    items = {s: [render_record(tokenizer, r) for r in data.sets[s]] for s in SETS}
    items["forget_raw"] = [render_raw(tokenizer, t) for t in dict.fromkeys(data.passages.values())]
    pad = tokenizer.pad_token_id
    pooled = {k: pooled_hidden(model, v, pad, layers, pool=cfg.pool) for k, v in items.items()}
    return pooled, {k: len(v) for k, v in items.items()}


def measure(model, tokenizer, data: DiagnoseData, cfg: DiagnoseConfig) -> dict[str, Any]:
    """Both conditions' gradient and representation statistics on a loaded model."""
    train_recs = [r for s in TRAIN_SETS for r in data.sets[s]]
    built = build_examples(model, tokenizer, train_recs, cfg.unlearn.teacher,
                           loaded_identity(data.model, tokenizer))
    if cfg.unlearn.method.reveal == "contrast":
        reveal_by_contrast(model, tokenizer, built, train_recs, cfg.unlearn.method)
    unified = dict(zip([r.id for r in train_recs], built, strict=True))
    raw = raw_examples(model, tokenizer, data.sets["forget"], data.passages,
                       cfg.unlearn.teacher) if data.passages else {}
    forget_all = [*built, *{id(e): e for e in raw.values()}.values()]
    refresh_prefill(model, tokenizer, forget_all, cfg.unlearn.method.prefill_candidates)
    params = [p for _, p in select_params(model, cfg.grad_blocks)]
    ids = sample_ids(data.sets, cfg.batches, cfg.batch_size, cfg.unlearn.seed)
    layers = layer_indices(model.config.num_hidden_layers, cfg.layers)
    pooled, counts = _pooled(model, tokenizer, data, cfg, layers)
    conditions = {}
    for name, forget_map, key in (("unified", unified, "forget"), ("raw", raw, "forget_raw")):
        if not forget_map:
            conditions[name] = {"skipped": "no forget record has a raw passage"}
            continue
        grads = gradient_stats(model, [to_batch(b, unified, forget_map) for b in ids],
                               tokenizer.pad_token_id, cfg, params)
        conditions[name] = {"gradients": grads, "summary": gradient_summary(grads),
                            "representations": representation_stats(pooled, key)}
    return {"parameters": {"grad_blocks": cfg.grad_blocks, "tensors": len(params),
                           "count": sum(p.numel() for p in params)},
            "layers": layers, "pool": cfg.pool, "sets": counts, "conditions": conditions}


# the folders diagnose.json may go to: an earlier diagnose's, or a run's (`unlearn report`
# shows it beside the run's results.json); a new or empty one too, never another folder
OUTPUT_MARKERS = ("diagnose.json", "results.json")


def run_diagnose(cfg: DiagnoseConfig) -> dict[str, Any]:
    start = time.time()
    out = check_replaceable(cfg.output, OUTPUT_MARKERS) / "diagnose.json"  # before the work
    data = load_data(cfg)
    model, tokenizer = load_model(data.model, device=pick_device(cfg.device),
                                  trust_remote_code=cfg.data.trust_remote_code,
                                  tokenizer_spec=cfg.data.tokenizer_spec())
    result = {"model": data.model, **measure(model, tokenizer, data, cfg),
              "config": asdict(cfg), "seconds": round(time.time() - start, 1)}
    result = _finite(result)
    atomic_write_text(out, json.dumps(result, indent=1))
    for title, table in tables(result).items():
        print(f"\n{title}:\n{table}")
    print(f"\nwrote {out} ({result['seconds']} s)")
    return result
