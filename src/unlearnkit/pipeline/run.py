"""`unlearn run CONFIG`: data -> teacher cache -> push-pull training -> evaluation -> folder.

The built-in scenario is the default data source: its injected model is the starting point
and its oracle the reference. ``data:`` brings your own records and model instead, optionally
injected first (:mod:`unlearnkit.pipeline.data_source`). ``method: NAME`` runs a baseline
instead of push-pull, under the same budget (:mod:`unlearnkit.pipeline.methods`). Output
folder: ``model/`` (HF folder; with LoRA also or instead ``adapter/``, see ``lora_output``),
``config.json`` (the resolved config), ``train_log.json``, ``results.json``, and the
TensorBoard logs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

import torch

from unlearnkit.data.records import atomic_write_text
from unlearnkit.data.standardize import write_dataset
from unlearnkit.errors import UnlearnError
from unlearnkit.evaluation.accuracy import answer_records, split_summary
from unlearnkit.evaluation.attacks import ATTACKS, run_attacks
from unlearnkit.evaluation.correctness import DEFAULT_ROUGE_THRESHOLD, check_threshold
from unlearnkit.evaluation.refusal_judge import RefusalConfig, RefusalJudge, build_judge
from unlearnkit.fsutil import check_replaceable
from unlearnkit.models.loader import (
    cache_root,
    load_model,
    pick_device,
    resolve_model_path,
    save_trained,
)
from unlearnkit.models.lora import LoraSettings, TrainOnly, apply_lora, restrict
from unlearnkit.models.teacher import TeacherConfig, forget_scope, instruction
from unlearnkit.objectives.baselines import BASELINES, get_baseline
from unlearnkit.objectives.pushpull import pushpull_step
from unlearnkit.pipeline.claims import CLAIM
from unlearnkit.pipeline.data_source import DataSource, check_model, prepare_data
from unlearnkit.pipeline.evaluate import check_attack_options
from unlearnkit.pipeline.fluency_judge import (
    SCORES_FILE,
    answer_form,
    forget_answers,
    judge_answers,
)
from unlearnkit.pipeline.methods import (
    PUSHPULL,
    baseline_options,
    biographies,
    check_method,
    general_keep,
    run_baseline,
)
from unlearnkit.pipeline.protocol import ProtocolConfig, run_protocol
from unlearnkit.pipeline.scenario_models import (
    PreparedScenario,
    ScenarioSetup,
    prepare_scenario,
)
from unlearnkit.pipeline.stopping import chain, stop_hook
from unlearnkit.processes import process_state
from unlearnkit.report.runs import pipeline_attacks
from unlearnkit.training.inject import loaded_identity, model_identity
from unlearnkit.training.loop import OptimConfig, train
from unlearnkit.training.raw import with_raw_forget
from unlearnkit.training.reveal import reveal_by_contrast
from unlearnkit.training.unlearn import (
    UnlearnConfig,
    attach_start_hidden,
    attach_start_norms,
    build_examples,
    check_start_model,
    held_out_ids,
    mixture_plan,
    prefill_hook,
    prefill_state,
    refresh_prefill,
)

EVAL_CACHE_VERSION = 3  # bump when answer judging or the prefill attack changes
# bump an attack's number when what it records changes: the cached evaluations that ran it are
# then made again (relearn 2: the test facts' NLL, twenty-sixth session)
ATTACK_RECORD_VERSIONS = {"relearn": 2}
DEFAULT_ATTACKS = ("prefill",)
LoraOutput = Literal["both", "merged", "adapter"]  # what a LoRA run saves (RunConfig)


def _default_optim() -> OptimConfig:
    return OptimConfig(lr=2e-5, warmup_ratio=0.1, schedule="constant")


@dataclass
class RunConfig:
    """`unlearn run`: the data (``data``; the default is the scenario in ``setup``), the
    method, optimisation, LoRA and outputs.

    ``method``: "pushpull" or a baseline's name, with its options in ``baseline``; a baseline
    uses ``unlearn.mix`` and ``unlearn.seed`` too (``unlearn.teacher`` and ``unlearn.method``
    are push-pull's). ``eval_references``: also evaluate the models before unlearning and the
    oracle (``unlearn bench`` turns it off: they are the same in every run). Writes
    ``<output>/``: ``model/``, ``data/`` (the standardised records), ``config.json``,
    ``train_log.json``, ``results.json`` and ``report.html``. With LoRA (``lora.rank > 0``),
    ``lora_output`` says what the trained model is saved as: ``adapter/`` (the adapter
    unmerged, recording its base model), ``model/`` (merged weights) or both (the default);
    evaluation reads ``model/`` when it is written, else the adapter on its base model.
    ``train_only``: train only some blocks and modules (:class:`~unlearnkit.models.lora.TrainOnly`;
    every method but RMU, which chooses its own with ``baseline.update_layers`` and ``modules``).
    ``device``: where models load ("": this process's GPU when CUDA is available, else the
    CPU). ``refusal``: how answers are judged refusals (patterns, or a judge model or endpoint:
    :class:`~unlearnkit.evaluation.refusal_judge.RefusalConfig`), for every evaluated model
    and the teacher report.
    """

    method: str = PUSHPULL
    baseline: dict[str, Any] = field(default_factory=dict)
    setup: ScenarioSetup = field(default_factory=ScenarioSetup)
    data: DataSource = field(default_factory=DataSource)
    unlearn: UnlearnConfig = field(default_factory=UnlearnConfig)
    optim: OptimConfig = field(default_factory=_default_optim)
    lora: LoraSettings = field(default_factory=LoraSettings)
    train_only: TrainOnly = field(default_factory=TrainOnly)
    lora_output: LoraOutput = "both"
    output: str = "runs/run"
    resume: bool = False
    eval_batch_size: int = 32
    max_new_tokens: int = 24
    teacher_report: bool = True
    eval_references: bool = True
    eval_base: bool = False  # also the base model (the reference for general probes)
    report: bool = True  # write report.html next to results.json
    device: str = ""
    # correctness of a long answer without targets: ROUGE-L recall of the gold answer >= this
    correct_rouge_threshold: float = DEFAULT_ROUGE_THRESHOLD
    refusal: RefusalConfig = field(default_factory=RefusalConfig)
    # a model that has not seen the forget facts (the base model before injection: for the
    # built-in scenario and TOFU, smollm2-135m-instruct): the share of each evaluated model's
    # forget answers it finds unlikelier than every gold answer (word salad, mangled names),
    # shown next to the degenerate share. "": no judge
    fluency_judge: str = ""
    # the attacks on every evaluated model's forget questions (unlearn eval's registry:
    # prefill, paraphrase, mcq, roleplay, ignore_instructions, hypothetical, reverse_prompt,
    # in_context, quantize_8bit, quantize_4bit, relearn, logit_lens) and their options; the
    # bench's robustness objective is their worst case
    attacks: list[str] = field(default_factory=lambda: list(DEFAULT_ATTACKS))
    attack_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    # a benchmark's own protocol (an unlearn eval suite) on the evaluated models, last
    # (:mod:`unlearnkit.pipeline.protocol`); suite "": none
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)

    def __post_init__(self) -> None:
        check_method(self.method, self.baseline)
        check_run_attacks(self.attacks, self.attack_options)
        check_threshold(self.correct_rouge_threshold)
        for key in ("max_new_tokens", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise UnlearnError(f"{key} must be at least 1, got {getattr(self, key)}")
        pick_device(self.device)  # a device torch does not know fails here, not mid-run
        choices = get_args(LoraOutput)
        if self.lora_output not in choices:
            raise UnlearnError(f"lora_output must be one of {', '.join(choices)}, "
                               f"got {self.lora_output!r}")
        if self.lora_output == "adapter" and not self.lora.enabled:
            raise UnlearnError("lora_output: adapter saves a LoRA adapter, and lora.rank is 0 "
                               "(full fine-tuning); set lora.rank > 0 or lora_output: merged")
        if self.train_only.enabled and self.method == "rmu":
            raise UnlearnError("train_only does not apply to rmu, which trains its own blocks: "
                               "set baseline.update_layers and baseline.modules instead")
        if self.unlearn.forget_format == "raw" and self.method != PUSHPULL \
                and not get_baseline(self.method).trains_on_raw_text:
            raw = [m for m, b in BASELINES.items() if b.trains_on_raw_text]
            raise UnlearnError(f"unlearn.forget_format: raw trains on the forget set's source "
                               f"passages, and method {self.method!r} "
                               + ("trains nothing" if not get_baseline(self.method).trainable
                                  else "needs each forget record's question")
                               + f"; use unlearn.forget_format: unified, or one of "
                               f"{', '.join([PUSHPULL, *raw])}")
        if self.method == "oracle" and self.data.kind == "dataset" and not self.data.oracle:
            raise UnlearnError("method oracle evaluates the oracle model, and data.oracle is "
                               "empty; set it to a model trained without the forget set")
        if self.fluency_judge:
            check_model(self.fluency_judge, "fluency_judge")

    def load_options(self) -> dict[str, Any]:
        """How every model of the run loads: its device, remote code only when asked, and the
        tokenizer and chat template it is given (data.tokenizer, data.chat_template)."""
        return {"device": pick_device(self.device),
                "trust_remote_code": self.data.trust_remote_code,
                "tokenizer_spec": self.data.tokenizer_spec()}

    def refusal_judge(self) -> RefusalJudge | None:
        """The configured judge (None: the pattern detector, answer_records' default); built
        once per config, so a judge model loads once however many models are evaluated."""
        if self.refusal.mode == "patterns":
            return None
        if getattr(self, "_judge", None) is None:
            self._judge = build_judge(self.refusal, device=pick_device(self.device))
        return self._judge


SPLIT_ORDER = ("forget", "neighbor", "retain", "general", "probe")


def _cell(s: dict | None) -> str:
    if not s:
        return "-"
    accuracy = "n/a" if s["accuracy"] is None else f"{s['accuracy']:.1%}"
    return f"{accuracy:>8} ({s['refusal']:.0%} ref)"


def format_table(results: dict[str, dict]) -> str:
    """Accuracy (refusal) per split and model, as a plain-text table."""
    names = list(results)
    lines = [f"{'split':<10}" + "".join(f"{n:>20}" for n in names)]
    for split in SPLIT_ORDER:
        if not any(split in results[m]["summary"] for m in names):
            continue  # (a split the data does not have: the probes, usually)
        cells = [_cell(results[name]["summary"].get(split)) for name in names]
        n = next((results[m]["summary"][split]["n"] for m in names
                  if split in results[m]["summary"]), 0)
        lines.append(f"{split:<10}" + "".join(f"{c:>20}" for c in cells) + f"   n={n}")
    parts = [(split, part) for split in SPLIT_ORDER for part in ("held_out", "in_training")
             if any(results[m]["summary"].get(split, {}).get(part) for m in names)]
    if parts:  # unlearn.holdout: keep people left out of unlearning's training, apart
        lines.append("held out of unlearning's training / in it:")
        for split, part in parts:
            cells = [results[m]["summary"].get(split, {}).get(part) for m in names]
            label = f"{split} {'out' if part == 'held_out' else 'in'}"
            lines.append(f"{label:<10}" + "".join(f"{_cell(c):>20}" for c in cells)
                         + f"   n={next(c['n'] for c in cells if c)}")
    xstest = [(key, text) for key, text in (("safe_refusal", "refusals of XSTest's safe prompts"),
                                            ("unsafe_compliance", "answers to its unsafe ones"))
              if any(results[m]["summary"].get("probe", {}).get(key) is not None for m in names)]
    for key, text in xstest:
        values = [results[m]["summary"].get("probe", {}).get(key) for m in names]
        lines.append(f"{text}:")
        lines.append(f"{'probe':<10}" + "".join(
            f"{'-' if v is None else f'{v:.1%}':>20}" for v in values))
    degenerate = {(name, split): s["degenerate"] for name in names
                  for split, s in results[name]["summary"].items() if "degenerate" in s}
    if any(degenerate.values()):  # gibberish answers: shown only when some model gives them
        lines.append("degenerate answers (empty or looping):")
        for split in SPLIT_ORDER:
            cells = [f"{degenerate[name, split]:.1%}" if (name, split) in degenerate else "-"
                     for name in names]
            lines.append(f"{split:<10}" + "".join(f"{c:>20}" for c in cells))
    unlikely = {name: results[name]["summary"].get("forget", {}).get("unlikely")
                for name in names}
    if any(v is not None for v in unlikely.values()):
        lines.append("unlikely answers (the fluency judge's; refusals never):")
        lines.append(f"{'forget':<10}" + "".join(
            f"{'-' if v is None else f'{v:.1%}':>20}" for v in unlikely.values()))
        fluent = [results[name]["summary"]["forget"].get("fluent") for name in names]
        lines.append("answers in language (neither degenerate nor unlikely; refusals count):")
        lines.append(f"{'forget':<10}" + "".join(
            f"{'-' if v is None else f'{v:.1%}':>20}" for v in fluent))
    return "\n".join(lines)


def teacher_report(model, tokenizer, records, cfg: TeacherConfig, *, per_split: int = 32,
                   max_new_tokens: int = 24, refusal_judge: RefusalJudge | None = None) -> dict:
    """How the instructed teacher itself behaves, before any training, on a sample per split.

    It should refuse forget questions and answer retain and neighbour ones; when it does not,
    the method must get the desired behaviour elsewhere (templates, guidance), and the run says
    so loudly.
    """
    forget = [r for r in records if r.split == "forget"]
    sample = [r for split in ("forget", "retain", "neighbor")
              for r in [x for x in records if x.split == split][:per_split]]
    rows = answer_records(model, tokenizer, sample, context=instruction(cfg, forget, records),
                          max_new_tokens=max_new_tokens, refusal_judge=refusal_judge)
    summary = split_summary(rows)
    forget_problem = summary["forget"]["refusal"] < 0.5
    problems = [f"refuses only {summary['forget']['refusal']:.0%} of forget questions"
                ] if forget_problem else []
    over = [split for split in ("retain", "neighbor")
            if split in summary and summary[split]["refusal"] > 0.1]
    problems += [f"refuses {summary[s]['refusal']:.0%} of {s} questions" for s in over]
    if problems:
        print("\n" + "!" * 78 + "\nWARNING: the instructed teacher does not behave: "
              + "; ".join(problems) + ".\n" + teacher_advice(cfg, forget_problem, bool(over))
              + "\n" + "!" * 78)
    return {"summary": summary, "problems": problems, "items": rows}


def teacher_advice(cfg: TeacherConfig, forget_problem: bool, over_refuses: bool) -> str:
    """What the teacher's misbehaviour means for this run's settings."""
    advice = []
    if forget_problem:
        advice.append(
            "The forget targets come from the desired-response template "
            "(teacher.forget_response: template), as set: the teacher's own answers are not "
            "used for forget items." if cfg.forget_response == "template" else
            "Its forget answers are the pull's targets (teacher.forget_response: teacher): "
            "consider unlearn.teacher.forget_response: template, guidance > 1 or "
            "demonstrations.")
    if over_refuses:
        advice.append(
            "Keep items are pulled toward the plain model (teacher.keep_context: plain), as "
            "set, so its over-refusal does not reach them." if cfg.keep_context == "plain" else
            "Keep items are pulled toward these refusals (teacher.keep_context: instructed): "
            "consider unlearn.teacher.keep_context: plain.")
    return " ".join(advice)


def train_unlearning(cfg: RunConfig, start_model: str, records, out: Path) -> tuple[Path, list]:
    model, tokenizer = load_model(start_model, **cfg.load_options())
    if cfg.teacher_report:
        report = teacher_report(model, tokenizer, records, cfg.unlearn.teacher,
                                refusal_judge=cfg.refusal_judge())
        atomic_write_text(out / "teacher_report.json", json.dumps(report, indent=1))
    examples = build_examples(model, tokenizer, records, cfg.unlearn.teacher,
                              loaded_identity(start_model, tokenizer))
    if cfg.unlearn.forget_format == "raw":
        forget = [r for r in records if r.split == "forget"]
        examples = with_raw_forget(model, tokenizer, examples, forget, biographies(cfg),
                                   cfg.unlearn.teacher, keep=records)
    method = cfg.unlearn.method
    if method.reveal == "contrast":
        reveal_by_contrast(model, tokenizer, examples, records, method)
    if method.steer:
        attach_start_norms(model, tokenizer.pad_token_id, examples, method.steer_layer)
    if method.keep_hidden:
        attach_start_hidden(model, tokenizer.pad_token_id, examples, method.steer_layer)
    model = restrict(apply_lora(model, cfg.lora), cfg.train_only)
    if method.prefill:
        refresh_prefill(model, tokenizer, examples, method.prefill_candidates)
    plan = mixture_plan(examples, cfg.unlearn.mix, cfg.unlearn.seed)
    history = train(model, plan, pushpull_step(tokenizer.pad_token_id, method), cfg.optim,
                    out_dir=out, resume=cfg.resume, desc="unlearn",
                    on_step=chain(stop_hook(cfg, model, tokenizer, records),
                                  prefill_hook(model, tokenizer, examples, method)),
                    state=prefill_state(examples))
    folder = save_trained(model, tokenizer, out, base=start_model, lora_output=cfg.lora_output,
                          trust_remote_code=cfg.data.trust_remote_code)
    return folder, history


def evaluate(models: dict[str, str], records, cfg: RunConfig,
             contexts: dict[str, str | None] | None = None) -> dict:
    """Per model: answers per split and the prefill attack, both under ``contexts[name]``."""
    return {name: _evaluate_one(path, records, cfg, (contexts or {}).get(name))
            for name, path in models.items()}


def check_run_attacks(names: list[str], options: dict[str, Any]) -> None:
    """``attacks`` names registered attacks, at least one, each once; ``attack_options``
    only attacks among them, with options they take."""
    if not isinstance(names, list) or not names:
        raise UnlearnError(f"attacks must list at least one attack, got {names!r}; e.g. "
                           f"attacks: [prefill, paraphrase]; choose from {', '.join(ATTACKS)}")
    unknown = [n for n in names if n not in ATTACKS]
    if unknown:
        raise UnlearnError(f"attacks: no attack is named {', '.join(map(repr, unknown))}; "
                           f"choose from {', '.join(ATTACKS)}")
    if len(set(names)) < len(names):
        raise UnlearnError(f"attacks lists an attack twice: {names}")
    check_attack_options(options)
    unused = sorted(set(options) - set(names))
    if unused:
        raise UnlearnError(f"attack_options sets {', '.join(unused)}, which attacks does not "
                           f"run ({names}): add it to attacks or drop its options")


def attack_summary(out: dict) -> dict[str, dict]:
    """Per attack of :func:`run_attacks`' output what a run's results keep: its rate and
    item count, a choice attack's chance and rate above it, the ids it revealed, and its
    details (the relearning attack's rate per learning rate; not the generations)."""
    keep = ("kind", "family", "success_rate", "n", "chance", "above_chance", "details")
    return {name: {**{k: a[k] for k in keep if k in a},
                   "revealed": [i["id"] for i in a["items"] if i["success"]]}
            for name, a in out["attacks"].items()}


def eval_cache_key(path: str, records, cfg: RunConfig, context: str | None) -> str:
    """The name of a cached model's evaluation: its weights, the records and every setting
    that changes what the evaluation records (:data:`ATTACK_RECORD_VERSIONS` for the attacks
    that run)."""
    parts = [EVAL_CACHE_VERSION, model_identity(path), [r.to_dict() for r in records],
             cfg.max_new_tokens, context, cfg.correct_rouge_threshold]
    if cfg.refusal.mode != "patterns":  # (the pattern detector's keys stay as they were)
        parts.append(asdict(cfg.refusal))
    if (tuple(cfg.attacks), cfg.attack_options) != (DEFAULT_ATTACKS, {}):  # (likewise)
        parts.append([cfg.attacks, cfg.attack_options])
        if versions := {a: ATTACK_RECORD_VERSIONS[a] for a in cfg.attacks
                        if a in ATTACK_RECORD_VERSIONS}:
            parts.append(versions)
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _evaluate_one(path: str, records, cfg: RunConfig, context: str | None) -> dict:
    """One model's answers and attacks; models in the cache folder (the scenario's injected
    and oracle models, named by a hash of how they were made) are evaluated once and their
    results kept under ``<cache>/eval``."""
    cached = None
    if Path(resolve_model_path(path)).resolve().is_relative_to(cache_root().resolve()):
        cached = cache_root() / "eval" / f"{eval_cache_key(path, records, cfg, context)}.json"
        if cached.is_file():
            return json.loads(cached.read_text())
    model, tokenizer = load_model(path, **cfg.load_options())
    rows = answer_records(model, tokenizer, records, max_new_tokens=cfg.max_new_tokens,
                          batch_size=cfg.eval_batch_size, progress=True, context=context,
                          rouge_threshold=cfg.correct_rouge_threshold,
                          refusal_judge=cfg.refusal_judge())
    forget = [r for r in records if r.split == "forget"]
    attack = run_attacks(model, tokenizer, forget, names=cfg.attacks,
                         max_new_tokens=cfg.max_new_tokens, batch_size=cfg.eval_batch_size,
                         context=context, rouge_threshold=cfg.correct_rouge_threshold,
                         progress=True, **cfg.attack_options)
    result = {"summary": split_summary(rows), "items": rows,
              "prefill_attack": attack["success_rates"].get("prefill"),
              "attacks": attack_summary(attack), "worst_attack": attack["worst_case"]}
    if cached is not None:
        atomic_write_text(cached, json.dumps(result))
    return result


def format_attacks(results: dict) -> str:
    """Each model's attack success, one line per attack, and the worst case when several
    ran (a multiple-choice attack judged above its guessing rate)."""
    lines = []
    attacks = {model: pipeline_attacks(res) for model, res in results.items()}
    for name in dict.fromkeys(a for rates, _ in attacks.values() for a in rates):
        cells = [f"{model} " + ("n/a" if rates.get(name) is None else f"{rates[name]:.0%}")
                 + (f" (chance {chance[name]:.0%})" if name in chance else "")
                 for model, (rates, chance) in attacks.items()]
        lines.append(f"{name} attack success: " + ", ".join(cells))
    worst = [(model, res["worst_attack"]) for model, res in results.items()
             if len(res.get("attacks") or {}) > 1]
    if worst:
        lines.append("worst attack: " + ", ".join(
            f"{model} " + ("n/a" if w["attack"] is None else
                           f"{w['success_rate']:.0%} ({w['attack']})") for model, w in worst))
    return "\n".join(lines)


def mark_held_out(results: dict, held: set[str]) -> None:
    """Flag each model's answers to records left out of unlearning's training
    (``unlearn.holdout``) and summarise those apart (``summary[split]["held_out"]``)."""
    if not held:
        return
    for res in results.values():
        for row in res["items"]:
            row["held_out"] = row["id"] in held
        res["summary"] = split_summary(res["items"])


def judge_fluency(cfg: RunConfig, out: Path, records, results: dict) -> dict | None:
    """With ``cfg.fluency_judge``: each model's share of unlikely forget answers, put in its
    forget summary as ``unlikely``, and its share in language (neither unlikely nor
    degenerate; refusals count) as ``fluent``; returns the judge's summary (model, threshold, gold
    answers), None without a judge or forget answers. Scores stay in
    ``<out>/fluency_judge.json``."""
    answers = {name: forget_answers(res["items"]) for name, res in results.items()}
    if not cfg.fluency_judge or not any(answers.values()):
        return None
    verdicts, judge = judge_answers(cfg.fluency_judge, out / SCORES_FILE, records, answers,
                                    cfg.load_options())
    for name, form in answer_form(verdicts, answers).items():
        results[name]["summary"]["forget"]["unlikely"] = form["forget_unlikely"]
        results[name]["summary"]["forget"]["fluent"] = form["forget_fluent"]
    return judge


TRAINED = "trained.json"


def config_json(cfg: RunConfig) -> dict:
    """The config as its config.json reads back (tuples as lists)."""
    return json.loads(json.dumps(asdict(cfg)))


def differing_keys(saved: dict, wanted: dict, ignore: tuple[str, ...] = ("output",)
                   ) -> list[str]:
    """Top-level keys whose values differ between two config dicts, bar ``ignore`` (by
    default the output folder: where a run was found, however its path is spelled)."""
    return sorted(k for k in set(saved) | set(wanted)
                  if k not in ignore and saved.get(k) != wanted.get(k))


def _training_settings(cfg: RunConfig) -> dict:
    """The run's settings as its JSON file holds them, bar ``resume``."""
    return {k: v for k, v in config_json(cfg).items() if k != "resume"}


CHECKPOINTS, CHECKPOINT_SETTINGS = "checkpoints", "checkpoints.json"


def _match_checkpoints(cfg: RunConfig, out: Path) -> None:
    """Checkpoints belong to the settings that made them (``checkpoints.json``): without
    ``--resume`` old ones are removed, so they can neither be pruned in place of the new
    ones nor resumed later; with it, checkpoints made with other settings are refused. Either
    way a run that does not continue from a checkpoint says so."""
    folder, stamp = out / CHECKPOINTS, out / CHECKPOINT_SETTINGS
    wanted = {k: v for k, v in _training_settings(cfg).items() if k != "output"}
    found = sorted(p for p in folder.glob("step-*") if (p / "state.json").is_file())
    if cfg.resume and found and stamp.is_file() and (
            differ := differing_keys(json.loads(stamp.read_text()), wanted)):
        raise UnlearnError(f"{folder} holds checkpoints of a run with other settings "
                           f"(they differ in {', '.join(differ)}): resume with the "
                           "settings it was started with, or run without --resume to "
                           "start again (which removes them)")
    if cfg.resume and not found:
        print(f"no checkpoint to resume from in {folder}: training from step 0"
              + ("" if cfg.optim.checkpoint_every else " (optim.checkpoint_every is 0: this "
                 "run saves none either; set it to make a killed run resumable)"), flush=True)
    if not cfg.resume and folder.exists():
        if found:
            print(f"removing {len(found)} checkpoint{'s' * (len(found) > 1)} of an earlier "
                  f"run in {folder}; pass --resume to continue it", flush=True)
        shutil.rmtree(folder)
    atomic_write_text(stamp, json.dumps(wanted, indent=1))


def _checked_keep(cfg: RunConfig, prepared: PreparedScenario) -> list | None:
    """What the settings can be refused for without training, refused: an instructed
    method's forget scope, the general keep items, fewer steps than grad_accum, the starting
    model with LoRA's modules and train_only's blocks. Returns the general keep items a
    method that trains draws (:func:`general_keep`), None for one that trains nothing."""
    teacher = cfg.unlearn.teacher if cfg.method == PUSHPULL else getattr(
        baseline_options(cfg.method, cfg.baseline, cfg.unlearn.seed, cfg.unlearn.teacher),
        "teacher", None)
    if isinstance(teacher, TeacherConfig):  # an instructed method: its forget scope
        forget_scope(teacher, [r for r in prepared.records if r.split == "forget"])
    if cfg.method != PUSHPULL and not get_baseline(cfg.method).trainable:
        return None
    keep = general_keep(cfg.unlearn.mix, prepared)
    if cfg.unlearn.mix.steps < cfg.optim.grad_accum:
        raise UnlearnError(f"unlearn.mix.steps ({cfg.unlearn.mix.steps} micro-batches) is "
                           f"fewer than optim.grad_accum ({cfg.optim.grad_accum} per "
                           "optimizer step): raise the steps or lower grad_accum")
    check_start_model(prepared.models["injected"], cfg.lora, cfg.train_only,
                      trust_remote_code=cfg.data.trust_remote_code,
                      tokenizer_spec=cfg.data.tokenizer_spec())
    return keep


def unlearn(cfg: RunConfig, prepared: PreparedScenario,
            out: Path) -> tuple[str, list, str | None]:
    """Run ``cfg.method``: the "after" model, the training log and its evaluation context.

    A finished training leaves ``out/trained.json``; a resumed run with the same settings
    (killed while it evaluated) takes the saved model from there instead of training again.
    What the settings can be refused for without training (the forget scope, the general
    keep items, the starting model, LoRA's modules and train_only's blocks) is refused before
    anything is written to or removed from ``out``.
    """
    marker = out / TRAINED
    if cfg.resume and marker.is_file():
        saved = json.loads(marker.read_text())
        if saved["settings"] == _training_settings(cfg) and Path(saved["after"]).exists():
            print(f"{out}: trained already ({TRAINED}); evaluating the saved model")
            return saved["after"], saved["history"], saved["context"]
    if held := held_out_ids(prepared.records, cfg.unlearn.holdout, cfg.unlearn.seed):
        prepared = replace(prepared, records=[r for r in prepared.records if r.id not in held])
    keep = _checked_keep(cfg, prepared)
    marker.unlink(missing_ok=True)
    if keep is not None and process_state().is_main_process:  # (nothing trains: none)
        _match_checkpoints(cfg, out)
    process_state().wait_for_everyone()
    torch.manual_seed(cfg.unlearn.seed)  # LoRA's initialisation follows the run's seed
    if cfg.method == PUSHPULL:
        folder, history = train_unlearning(cfg, prepared.models["injected"],
                                           prepared.records + keep, out)
        after, context = str(folder), None
    else:
        after, history, context = run_baseline(cfg, prepared, out, keep)
    if process_state().is_main_process:
        atomic_write_text(marker, json.dumps({"after": after, "history": history,
                                              "context": context,
                                              "settings": _training_settings(cfg)}))
    return after, history, context


def prepare(cfg: RunConfig) -> PreparedScenario:
    """The run's records and models: the built-in scenario (``cfg.setup``, through this
    module's ``prepare_scenario``) or ``cfg.data``. The oracle is trained only when the run
    uses it: as its method or as a reference in the evaluation (a bench run evaluates neither,
    so a tuning sweep never waits for an oracle)."""
    variants = ("injected", "oracle") if cfg.eval_references or cfg.method == "oracle" else (
        "injected",)
    if cfg.data.kind == "scenario":
        return prepare_scenario(cfg.setup, variants)
    return prepare_data(cfg.data, variants=variants)


def reference_models(prepared: PreparedScenario, after: str) -> dict[str, str]:
    """Before (default: the starting model), after and, when there is one, the oracle."""
    models = {"before": prepared.models.get("before", prepared.models["injected"]),
              "after": after}
    return models | ({"oracle": prepared.models["oracle"]} if "oracle" in prepared.models else {})


# what an earlier run's folder holds (a bench's claim comes first): only such a folder, or a
# new or empty one, takes a run's outputs
RUN_MARKERS = (CLAIM, TRAINED, CHECKPOINTS, CHECKPOINT_SETTINGS, "results.json",
               "teacher_report.json", "train_log.json", "tensorboard")


def run(cfg: RunConfig) -> dict:
    start = time.time()
    out = check_replaceable(cfg.output, RUN_MARKERS)
    prepared = prepare(cfg)
    after, history, context = unlearn(cfg, prepared, out)
    if not process_state().is_main_process:  # `accelerate launch`: the main process evaluates
        return {"method": cfg.method, "models": {"after": after}}
    models = reference_models(prepared, after) if cfg.eval_references else {"after": after}
    if cfg.eval_base:
        models = {"base": prepared.models["base"], **models}
    sources = prepared.sources if cfg.data.kind != "scenario" else [
        {"format": "scenario", "options": asdict(cfg.setup.scenario)}]
    write_dataset(prepared.records, out / "data", sources)
    results = evaluate(models, prepared.records, cfg, contexts={"after": context})
    held = held_out_ids(prepared.records, cfg.unlearn.holdout, cfg.unlearn.seed)
    mark_held_out(results, held)
    judge = judge_fluency(cfg, out, prepared.records, results)
    print("\naccuracy (refusal) per split:\n" + format_table(results))
    print(format_attacks(results))
    atomic_write_text(out / "config.json", json.dumps(asdict(cfg), indent=1))
    atomic_write_text(out / "train_log.json", json.dumps(history, indent=1))
    payload = {"method": cfg.method, "models": models, "contexts": {"after": context},
               "probes": prepared.probe_report,
               **({"held_out": sorted(held)} if held else {}),
               **({"fluency_judge": judge} if judge else {}),
               "seconds": round(time.time() - start, 1), "results": results}
    atomic_write_text(out / "results.json", json.dumps(payload, indent=1))
    if cfg.protocol.suite:
        payload["protocol"] = run_protocol(cfg, models, out)
        atomic_write_text(out / "results.json", json.dumps(payload, indent=1))
    if cfg.report:
        from unlearnkit.report.build import write_report

        shown = [out / "results.json", *payload.get("protocol", {}).values()]
        print(f"report: {write_report(shown, out / 'report.html')}")
    print(f"wrote {out} ({payload['seconds']} s)")
    return payload
