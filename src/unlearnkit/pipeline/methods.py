"""`unlearn run` with a baseline (``method: NAME``) instead of push-pull, under the same budget.

A trainable baseline (:data:`~unlearnkit.objectives.baselines.BASELINES`) trains from the
run's starting model (the scenario's injected model, or ``data.model``) with push-pull's
optimiser settings (``optim``), LoRA settings (``lora``), number of steps and per-split quotas
(``unlearn.mix``), seed (``unlearn.seed``) and stopping rule (``unlearn.stop``):
:func:`split_plan` draws, for the same seed, the same records into every micro-batch as
push-pull's :func:`~unlearnkit.training.unlearn.mixture_plan`. Its options come from
``baseline`` (a mapping checked by the baseline's config dataclass). Two entries do not train:
``prompt_only`` evaluates the injected model with the instruction as its context, ``oracle``
evaluates the scenario's oracle model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unlearnkit.data.scenario import build_scenario
from unlearnkit.errors import UnlearnError
from unlearnkit.models.loader import load_model, save_trained
from unlearnkit.models.lora import apply_lora, restrict
from unlearnkit.models.teacher import TeacherConfig
from unlearnkit.objectives.baselines import BASELINES, Item, build_items, get_baseline
from unlearnkit.pipeline.scenario_models import long_replay_records
from unlearnkit.pipeline.stopping import stop_hook
from unlearnkit.training.inject import loaded_identity
from unlearnkit.training.loop import train
from unlearnkit.training.raw import (
    check_every_forget_record_has_a_passage,
    passage_of,
    raw_windows,
)
from unlearnkit.training.unlearn import MixConfig, boundary_ids, mixture_plan

if TYPE_CHECKING:
    from unlearnkit.pipeline.run import RunConfig
    from unlearnkit.pipeline.scenario_models import PreparedScenario

PUSHPULL = "pushpull"


def method_names() -> list[str]:
    """Every value ``RunConfig.method`` accepts: push-pull, then the baselines by name."""
    return [PUSHPULL, *sorted(BASELINES)]


def check_method(method: str, options: dict[str, Any]) -> None:
    """Raise :class:`UnlearnError` for an unknown method or options its config rejects."""
    if method == PUSHPULL:
        if options:
            raise UnlearnError(f"baseline options {sorted(options)} apply to a baseline method "
                               "only; push-pull's options live under unlearn.method")
        return
    if method not in BASELINES:
        raise UnlearnError(f"unknown method {method!r}; choose one of "
                           f"{', '.join(method_names())}")
    get_baseline(method).make_config(options)


SCOPES = ("forget_scope", "keep_scope")


def baseline_options(method: str, options: dict[str, Any], seed: int,
                     teacher: TeacherConfig | None = None):
    """The baseline's config from ``options``; a ``seed`` field not given follows ``seed``
    (RMU's random direction), so one seed drives all of a run's randomness. Likewise an
    instructed baseline's ``forget_scope`` and ``keep_scope`` not given or empty (under its
    ``teacher``, or at the top for prompt-only) follow the run's ``unlearn.teacher``: one
    scope per run, for push-pull and the baselines alike."""
    base = get_baseline(method)
    fields = {f.name for f in dataclasses.fields(base.config)}
    if "seed" in fields and "seed" not in options:
        options = {**options, "seed": seed}
    if teacher is not None:
        def scoped(own: dict[str, Any]) -> dict[str, Any]:
            return own | {k: getattr(teacher, k) for k in SCOPES if not own.get(k)}
        if "teacher" in fields:
            options = {**options, "teacher": scoped(options.get("teacher") or {})}
        elif set(SCOPES) <= fields:
            options = scoped(options)
    return base.make_config(options)


@dataclass(frozen=True)
class _Drawn:
    kind: str  # the record's split: what mixture_plan's quotas count
    item: Item
    boundary: bool = False  # a keep record that contains a forget target


def split_plan(items: Sequence[Item], mix: MixConfig, seed: int) -> list[list[Item]]:
    """Push-pull's mixture plan over baseline items: ``mix.forget`` forget, ``mix.retain``
    retain and ``mix.neighbor`` neighbour items per micro-batch (all neighbour and retain
    items are of kind "retain" to the step), drawn in the order ``mixture_plan`` draws them;
    ``mix.boundary`` draws from the same boundary records as push-pull's."""
    boundary = boundary_ids([it.record for it in items if it.record is not None])
    drawn = [_Drawn(it.record.split if it.record is not None else it.kind, it,
                    it.record is not None and it.record.id in boundary) for it in items]
    return [[d.item for d in batch] for batch in mixture_plan(drawn, mix, seed)]


def biographies(cfg: RunConfig) -> dict[str, str]:
    """The built-in scenario's person -> biography (the forget set's raw source); other data
    carries its passages in ``meta.passage``."""
    if cfg.data.kind != "scenario":
        return {}
    return build_scenario(**dataclasses.asdict(cfg.setup.scenario)).biographies


def raw_forget_items(tokenizer, items: list[Item], records, bios: dict[str, str],
                     window: int) -> list[Item]:
    """The forget items replaced by the distinct source passages, plain text with every token
    labelled, in windows of at most ``window`` tokens (:func:`~unlearnkit.training.raw.
    raw_windows`), one item each: the forget set as a corpus, as MUSE's baselines train on it
    (``unlearn.forget_format: raw``); keep items unchanged."""
    forget = [r for r in records if r.split == "forget"]
    passages = {r.id: p for r in forget if (p := passage_of(r, bios))}
    check_every_forget_record_has_a_passage(forget, passages)
    raw = [Item("forget", w) for p in dict.fromkeys(passages.values())
           for w in raw_windows(tokenizer, p, window)]
    return raw + [it for it in items if it.kind != "forget"]


def train_baseline(cfg: RunConfig, start_model: str, records, out: Path) -> tuple[Path, list]:
    """Train baseline ``cfg.method`` from ``start_model``; the folder to evaluate (as
    :func:`~unlearnkit.models.loader.save_trained` saves it) and the log.

    LoRA wraps the model before ``prepare`` (its adapters start as the identity, so the
    reference quantities are the starting model's), so that RMU can select adapter weights.
    """
    base = get_baseline(cfg.method)
    options = baseline_options(cfg.method, cfg.baseline, cfg.unlearn.seed, cfg.unlearn.teacher)
    model, tokenizer = load_model(start_model, **cfg.load_options())
    model = restrict(apply_lora(model, cfg.lora), cfg.train_only)
    items = build_items(tokenizer, records)
    if cfg.unlearn.forget_format == "raw":
        items = raw_forget_items(tokenizer, items, records, biographies(cfg),
                                 cfg.unlearn.raw_window)
    items = base.prepare_items(options, model, tokenizer, items,
                               model_id=loaded_identity(start_model, tokenizer))
    plan = split_plan(items, cfg.unlearn.mix, cfg.unlearn.seed)
    history = train(model, plan, base.make_step(options, tokenizer.pad_token_id), cfg.optim,
                    out_dir=out, resume=cfg.resume, desc=cfg.method,
                    on_step=stop_hook(cfg, model, tokenizer, records))
    folder = save_trained(model, tokenizer, out, base=start_model, lora_output=cfg.lora_output,
                          trust_remote_code=cfg.data.trust_remote_code)
    return folder, history


def general_keep(mix: MixConfig, prepared: PreparedScenario) -> list:
    """The general keep items a run draws (``mix.general``): the scenario's replay records,
    and with ``mix.general_long`` the replay prompts answered at length, cut to whole
    sentences (:func:`long_replay_records`), for push-pull and the baselines alike."""
    if not mix.general:
        return []
    if not prepared.replay:
        raise UnlearnError("unlearn.mix.general draws general keep items from the built-in "
                           "scenario's replay prompts, and this data has none; set it to 0")
    if mix.general_long:
        return [*prepared.replay, *long_replay_records(prepared.models["base"], prepared.replay,
                                                       prepared.tokenizer_spec)]
    return list(prepared.replay)


def run_baseline(cfg: RunConfig, prepared: PreparedScenario, out: Path,
                 keep: list | None = None) -> tuple[str, list, str | None]:
    """The model to evaluate as "after", the training log and the evaluation context;
    ``keep``: the run's general keep items (:func:`general_keep`, drawn here when None)."""
    base = get_baseline(cfg.method)
    if base.trainable:
        keep = general_keep(cfg.unlearn.mix, prepared) if keep is None else keep
        folder, history = train_baseline(cfg, prepared.models["injected"],
                                         prepared.records + keep, out)
        return str(folder), history, None
    options = baseline_options(cfg.method, cfg.baseline, cfg.unlearn.seed, cfg.unlearn.teacher)
    if cfg.method == "prompt_only":
        forget = [r for r in prepared.records if r.split == "forget"]
        return prepared.models["injected"], [], base.fn(options, forget)
    if cfg.method == "oracle":
        return base.fn(options, prepared.models), [], None
    raise UnlearnError(f"baseline {cfg.method!r} does not train and unlearn run does not know "
                       "which model to evaluate for it")
