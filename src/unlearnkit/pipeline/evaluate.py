"""`unlearn eval MODEL --data DATASET --suite SUITE`: evaluate one model into a results file.

A suite (:data:`SUITES`) expands into steps: a metric on one split (``forget/correctness``),
an attack on the forget split (``attack/prefill``), membership inference (``mia``) or one
part of the TOFU protocol (``tofu/retain``). After every step the results file
(:mod:`unlearnkit.evaluation.results`) is rewritten atomically, so a killed evaluation resumes
where it stopped: steps already in the file are not recomputed unless ``recompute`` is set.
A file written for another model, dataset or generation setting is refused rather than mixed.

Splits map to objectives: forget -> forget; retain, general -> utility; neighbor, probe ->
boundary; attacks and membership inference -> robustness. TOFU's real-author and world-fact
sets are the ``general`` records whose ``source`` names real_authors / world_facts files.
TOFU's ``model_utility`` is reported only over all nine of its parts (the retain, real-author
and world-fact sets, every record with perturbed answers); otherwise it is skipped, the reason
naming what is missing. A TOFU metric computed from perturbed answers lists (ids, values) only
the records that have them.

Without ``output`` the file is ``runs/eval/<model>-<suite>.json`` (:func:`default_output_name`:
a run's ``model/`` or ``adapter/`` is named with its run). Degenerate-answer shares are shown
without a direction (:data:`SHOWN_NOT_JUDGED`), as ``unlearn run`` shows them.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from unlearnkit.data.adapters import LETTERS
from unlearnkit.data.records import SPLITS, Record
from unlearnkit.data.standardize import load_dataset
from unlearnkit.errors import UnlearnError
from unlearnkit.evaluation import muse, wmdp
from unlearnkit.evaluation.attacks import ATTACKS, get_attacks, run_attacks
from unlearnkit.evaluation.attacks.quantize import quantize_weights
from unlearnkit.evaluation.correctness import DEFAULT_ROUGE_THRESHOLD, check_threshold
from unlearnkit.evaluation.metrics import (
    METRICS,
    MODEL_UTILITY_KEYS,
    EvalContext,
    MetricResult,
    compute,
    forget_quality,
    mia_attacks,
    missing_utility_parts,
    model_utility,
    model_utility_gaps,
    tofu_metrics,
    tofu_perturbed_keys,
)
from unlearnkit.evaluation.mia import privleak
from unlearnkit.evaluation.refusal_judge import RefusalConfig, RefusalJudge, build_judge
from unlearnkit.evaluation.results import (
    AttackRecord,
    EvalResults,
    MetricRecord,
    direction,
    load_results,
    new_results,
    objective_of,
    save_results,
)
from unlearnkit.models.loader import DEFAULT_MODEL, TokenizerSpec, load_model
from unlearnkit.pipeline.data_source import check_model
from unlearnkit.pipeline.fluency_judge import GOLD_SPLITS, judge_answers
from unlearnkit.report.runs import SHOWN_NOT_JUDGED  # no direction, as unlearn run shows them


@dataclass(frozen=True)
class Suite:
    """Metrics per split (None: every registered one), attacks on the forget split (None:
    every registered one), and the membership-inference and TOFU protocols."""

    description: str
    metrics: tuple[str, ...] | None = ()
    attacks: tuple[str, ...] | None = ()
    mia: bool = False
    tofu: bool = False
    muse: bool = False
    wmdp: bool = False


SUITES: dict[str, Suite] = {
    "quick": Suite("correctness and refusal rate per split, and the prefill attack",
                   metrics=("correctness", "refusal_rate"), attacks=("prefill",)),
    "full": Suite("every registered metric per split, every attack, membership inference "
                  "(needs holdout=SPLIT)", metrics=None, attacks=None, mia=True),
    "tofu": Suite("the TOFU protocol (Maini et al., 2024) with OpenUnlearning's keys",
                  tofu=True),
    "muse": Suite("the MUSE protocol (Shi et al., 2024): KnowMem on the forget and retain QA, "
                  "VerbMem, and PrivLeak against the oracle's AUC", muse=True),
    "wmdp": Suite("multiple-choice accuracy per split as WMDP (Li et al., 2024) reports it with "
                  "lm-evaluation-harness: zero-shot, raw prompt, the likeliest letter",
                  wmdp=True),
}

DTYPES = ("float32", "bfloat16", "float16")  # the torch dtypes a model is evaluated in
# Settings that change the numbers: a results file written with others cannot be resumed.
RESUME_KEYS = ("model", "data", "limit", "seed", "max_new_tokens", "dtype", "attack_options",
               "correct_rouge_threshold", "refusal", "fluency_judge", "tokenizer",
               "chat_template", "quantize", "quantize_group")
UNLIKELY = "unlikely_rate"  # the fluency judge's metric (_run_fluency)
LIKELIHOOD_INPUTS = frozenset({"answer_logprobs", "argmax_match", "standardized_logprobs",
                               "paraphrased_logprobs", "perturbed_logprobs"})
TOFU_FORGET_FLIP = frozenset({"forget_Q_A_Prob", "forget_Q_A_ROUGE", "forget_Q_A_PARA_Prob",
                              "extraction_strength", "exact_memorization"})
RUN_WEIGHTS = ("model", "adapter")  # the folders unlearn run saves its model in


@dataclass
class EvalConfig:
    """What ``unlearn eval`` evaluates, and how (every field can be set with --set)."""

    model: str = DEFAULT_MODEL  # anything models.loader.load_model takes
    data: str = ""  # a dataset folder (unlearn data standardize)
    suite: str = "quick"
    output: str = ""  # default: runs/eval/<model>-<suite>.json (default_output_name)
    name: str = ""  # the label reports use (default: the file stem)
    recompute: bool = False
    seed: int = 0
    splits: list[str] = field(default_factory=list)  # empty: every split in the dataset
    limit: int = 0  # at most this many records per split, or per TOFU set (0: all)
    holdout: str = ""  # split of never-seen records for membership inference
    oracle_results: str = ""  # the oracle's results file, for TOFU forget quality
    attack_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    batch_size: int = 16
    max_new_tokens: int = 32
    dtype: str = "float32"
    device: str = ""
    # run the model's own code from its folder or the hub (config.json's auto_map): only for a
    # model whose code you trust, as with data.trust_remote_code in unlearn run
    trust_remote_code: bool = False
    # where the model's tokenizer comes from, for a checkpoint saved without one (a folder or a
    # hub id); "": the model's own files
    tokenizer: str = ""
    # the chat template the model is prompted through, replacing its tokenizer's own: plain
    # (Question/Answer lines, for a base model without one) or a Jinja file; "": its own
    chat_template: str = ""
    # evaluate the model with its linear weights rounded to this many bits (round to nearest,
    # symmetric; evaluation.attacks.quantize.quantize_weights): every suite's figures under
    # quantisation, the attack that restores unlearned knowledge when unlearning moved the
    # weights by less than a rounding step ("Catastrophic failure of LLM unlearning via
    # quantization", Zhang et al., 2024, read with MUSE's measures); 0: full precision
    quantize: int = 0
    quantize_group: int = 0  # with quantize: inputs per scale (128 as GPTQ and AWQ); 0: a row
    # correctness of a long answer without targets: ROUGE-L recall of the gold answer >= this
    # (evaluation.correctness.is_correct; metrics and attacks alike)
    correct_rouge_threshold: float = DEFAULT_ROUGE_THRESHOLD
    # refusal_rate's judge: refusal.mode patterns | judge | either | both, and the judge model
    # (evaluation.refusal_judge.RefusalConfig)
    refusal: RefusalConfig = field(default_factory=RefusalConfig)
    # a model that has not seen the forget facts: forget/unlikely_rate, the share of forget
    # answers it finds unlikelier than every gold forget and retain answer evaluated (word
    # salad; pipeline.fluency_judge). "": no judge
    fluency_judge: str = ""

    def __post_init__(self) -> None:
        if self.suite not in SUITES:
            raise UnlearnError(f"unknown suite {self.suite!r}; choose from {', '.join(SUITES)}")
        if not self.data:
            raise UnlearnError("no dataset: give --data DATASET_FOLDER "
                               "(make one with: unlearn data standardize CONFIG)")
        for key in ("limit", "batch_size", "max_new_tokens"):
            low = 0 if key == "limit" else 1
            if getattr(self, key) < low:
                raise UnlearnError(f"{key} must be at least {low}, got {getattr(self, key)}")
        check_threshold(self.correct_rouge_threshold)
        self.tokenizer_spec().check()
        if self.quantize and not 2 <= self.quantize <= 16:
            raise UnlearnError(f"quantize is a number of bits in [2, 16] (0: full precision), "
                               f"got {self.quantize}")
        if self.quantize_group < 0 or (self.quantize_group and not self.quantize):
            raise UnlearnError(f"quantize_group is the inputs per scale of quantize's rounding "
                               f"(>= 0, and only with quantize set), got {self.quantize_group}")
        if self.dtype not in DTYPES:
            raise UnlearnError(f"dtype {self.dtype!r} is not one of {', '.join(DTYPES)}; "
                               "set e.g. --set dtype=bfloat16")
        check_attack_options(self.attack_options)
        if self.oracle_results:
            _check_file_to_read(Path(self.oracle_results), "oracle_results",
                                "the oracle's results file of unlearn eval ORACLE --suite tofu")
        _check_file_to_write(self.output_path(), default_output_name(self.model, self.suite))
        if self.fluency_judge:
            check_model(self.fluency_judge, "fluency_judge")

    def tokenizer_spec(self) -> TokenizerSpec:
        """The tokenizer and chat template the model is loaded with."""
        return TokenizerSpec(self.tokenizer, self.chat_template)

    def output_path(self) -> Path:
        if self.output:
            return Path(self.output)
        return Path("runs/eval") / default_output_name(self.model, self.suite)


def check_attack_options(options: dict[str, Any]) -> None:
    """Each ``attack_options`` key names a registered attack, and each option one of the
    attack function's keyword parameters (what :func:`run_attacks` passes it), with a value
    of its default's type, so a typo fails before any step runs, not when the attack does."""
    for name, given in options.items():
        if name not in ATTACKS:
            raise UnlearnError(f"attack_options.{name}: no attack is named {name!r}; "
                               f"choose from {', '.join(sorted(ATTACKS))}")
        if not isinstance(given, dict):
            raise UnlearnError(f"attack_options.{name} must map option names to values, got "
                               f"{given!r}; e.g. --set attack_options.{name}.OPTION=VALUE")
        attack = ATTACKS[name]
        accepted = attack.option_names()
        unknown = sorted(set(given) - set(accepted))
        if unknown:
            raise UnlearnError(f"attack_options.{name}: attack {name!r} has no option(s) "
                               f"{', '.join(unknown)}; it accepts "
                               f"{', '.join(accepted) or 'none'}")
        params = inspect.signature(attack.fn).parameters
        for key, value in given.items():
            problem = _option_type_problem(value, params[key].default)
            allowed = attack.allowed(key)
            if not problem and allowed is not None and value not in allowed:
                problem = f"one of {', '.join(map(str, allowed))}"
            if problem:
                raise UnlearnError(f"attack_options.{name}.{key} must be {problem}, got "
                                   f"{value!r} (default {params[key].default!r})")


def _option_type_problem(value: Any, default: Any) -> str | None:
    """What ``value`` should be to stand in for an option's ``default`` (None: it may)."""
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, int):
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else "a number"
    if isinstance(default, tuple | list):
        if not isinstance(value, list | tuple):
            return f"a list like {list(default)}"
        if default:
            inner = [_option_type_problem(v, default[0]) for v in value]
            problem = next((p for p in inner if p), None)
            return f"a list whose items are each {problem}" if problem else None
    return None


def _check_file_to_read(path: Path, key: str, what: str) -> None:
    if path.is_dir():
        raise UnlearnError(f"{key} {path} is a folder; give {what}")
    if not path.is_file():
        raise UnlearnError(f"{key} {path} not found; give {what}")


def _check_file_to_write(out: Path, name: str) -> None:
    """The results file can be written: not a folder, under no file."""
    if out.is_dir():
        raise UnlearnError(f"output (--out) {out} is a folder; give the results file to "
                           f"write, e.g. --out {out / name}")
    above = next((p for p in out.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise UnlearnError(f"cannot write {out}: {above} is a file, not a folder; choose "
                           "another --out")


def default_output_name(model: str, suite: str) -> str:
    """``<model>-<suite>.json``, <model> the model folder's (or hub id's) last name. A run's
    ``model/`` or ``adapter/`` folder (:data:`RUN_WEIGHTS`) is named with its run folder
    (``runs/full/model`` -> ``full-model``), and a bench run's with its method too
    (``runs/bench/npo/seed-0/model`` -> ``npo-seed-0-model``), so two runs' models do not
    share a file."""
    path = Path(os.path.abspath(model)) if Path(model).is_dir() else Path(model)
    names = [path.name or model]
    if names[0] in RUN_WEIGHTS:
        for folder in path.parents:
            if not folder.name:
                break
            names.insert(0, folder.name)
            if not re.fullmatch(r"seed-\d+", folder.name):
                break
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(names)).strip("-")
    return f"{slug}-{suite}.json"


@dataclass(frozen=True)
class Step:
    """One unit of work. A ``derived`` step only combines stored results: it needs no model
    and runs every time (so a later --set oracle_results=FILE still takes effect)."""

    key: str
    kind: str  # metric | attack | mia | tofu | tofu_summary | muse | muse_summary | wmdp
    name: str = ""
    split: str | None = None
    derived: bool = False


# ------------------------------------------------------------------------- planning


def load_splits(cfg: EvalConfig) -> tuple[dict[str, list[Record]], list[Record]]:
    """The records to evaluate by split (in :data:`SPLITS` order, at most ``limit`` each),
    and the membership-inference holdout records (empty without ``holdout``). MUSE's records
    other than its QA (few-shot examples, excerpts, passages) are the muse suite's alone."""
    by_split: dict[str, list[Record]] = {}
    for rec in load_dataset(cfg.data):
        if cfg.suite == "muse" or muse.role(rec) in (None, "knowmem"):  # the others: raw text
            by_split.setdefault(rec.split, []).append(rec)
    wanted = cfg.splits or list(by_split)
    missing = [s for s in [*wanted, cfg.holdout] if s and s not in by_split]
    if missing:
        raise UnlearnError(f"split(s) {missing} are not in {cfg.data}; it has "
                           f"{', '.join(by_split)}")
    splits = {s: _limited(by_split[s], cfg) for s in SPLITS if s in wanted}
    return splits, (_limited(by_split[cfg.holdout], cfg) if cfg.holdout else [])


def _limited(records: list[Record], cfg: EvalConfig) -> list[Record]:
    """The first ``limit`` records; in the tofu suite the first ``limit`` of each TOFU set,
    so a limited ``general`` split keeps both real authors and world facts, and in the muse
    suite of each part (a split's questions, excerpts, passages; not its few-shot examples)."""
    if not cfg.limit:
        return records
    if cfg.suite not in ("tofu", "muse"):
        return records[: cfg.limit]
    seen: dict[str | None, int] = {}
    out = []
    for rec in records:
        group = tofu_prefix(rec) if cfg.suite == "tofu" else muse.role(rec)
        seen[group] = seen.get(group, 0) + 1
        if seen[group] <= cfg.limit or group == "icl":  # the few-shot prompt stays whole
            out.append(rec)
    return out


def tofu_prefix(rec: Record) -> str | None:
    """TOFU's split name of a record: forget, retain, ra (real authors), wf (world facts)."""
    if rec.split in ("forget", "retain"):
        return rec.split
    source = rec.source.lower()
    if rec.split == "general" and "real_author" in source:
        return "ra"
    if rec.split == "general" and "world_fact" in source:
        return "wf"
    return None


def _cannot_compute(metric: str, records: list[Record]) -> str | None:
    if LIKELIHOOD_INPUTS & set(METRICS[metric].needs) and not all(r.answer for r in records):
        return "some records have no reference answer, which likelihood metrics need"
    return None


def _metric_steps(suite: Suite, splits: dict, cfg: EvalConfig, skipped: dict) -> list[Step]:
    names = list(METRICS) if suite.metrics is None else list(suite.metrics)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise UnlearnError(f"suite {cfg.suite!r} names unknown metric(s) {unknown}")
    steps = []
    for split in splits:
        for name in names:
            key, reason = f"{split}/{name}", _cannot_compute(name, splits[split])
            if reason:
                skipped[key] = reason
            else:
                steps.append(Step(key, "metric", name, split))
    return steps


def _attack_steps(suite: Suite, splits: dict, skipped: dict) -> list[Step]:
    names = [a.name for a in get_attacks(None if suite.attacks is None else list(suite.attacks))]
    if names and "forget" not in splits:
        skipped |= {f"attack/{n}": "the dataset has no forget records to attack" for n in names}
        return []
    return [Step(f"attack/{n}", "attack", n) for n in names]


def tofu_sets(splits: dict[str, list[Record]]) -> dict[str, list[Record]]:
    """The records of each TOFU set present (:func:`tofu_prefix`), in protocol order."""
    sets: dict[str, list[Record]] = {}
    for rec in (r for recs in splits.values() for r in recs):
        prefix = tofu_prefix(rec)
        if prefix:
            sets.setdefault(prefix, []).append(rec)
    return {p: sets[p] for p in ("forget", "retain", "ra", "wf") if p in sets}


def _model_utility_skip(sets: dict[str, list[Record]]) -> str | None:
    """Why TOFU's model utility cannot be computed here, with the fix (None: it can)."""
    gaps = model_utility_gaps(sets)
    if not gaps:
        return None
    return ("TOFU's model utility is the harmonic mean of 9 parts over the retain, real-author "
            f"and world-fact sets, and here {'; '.join(gaps)} (the parts present are reported "
            "on their own); for TOFU's number evaluate on its evaluation sets "
            "(configs/data-tofu-eval.yaml: retain_perturbed.json as the retain split, as "
            "retain90 has no perturbed answers, and real_authors_perturbed.json and "
            "world_facts_perturbed.json as general records)")


def _tofu_steps(splits: dict, cfg: EvalConfig, skipped: dict) -> list[Step]:
    sets = tofu_sets(splits)
    if not sets:
        skipped["tofu"] = "no forget, retain, real-author or world-fact records"
        return []
    for prefix, records in sets.items():
        if not any(r.perturbed_answers for r in records):
            skipped |= {key: f"no {prefix} record has perturbed answers"
                        for key in tofu_perturbed_keys(prefix)}
    if "forget" not in sets:
        skipped["forget_quality"] = "no forget records"
    elif "forget_truth_ratio" in skipped:
        skipped["forget_quality"] = ("no forget record has perturbed answers, so there are no "
                                     "forget truth ratios to compare with the oracle's")
    elif not cfg.oracle_results:
        skipped["forget_quality"] = ("give the oracle's results file (unlearn eval ORACLE "
                                     "--suite tofu): --set oracle_results=FILE")
    reason = _model_utility_skip(sets)
    if reason:
        skipped["model_utility"] = reason
    return [*[Step(f"tofu/{p}", "tofu", p) for p in sets],
            Step("tofu/summary", "tofu_summary", derived=True)]


def muse_parts(splits: dict[str, list[Record]]) -> dict[tuple[str, str], list[Record]]:
    """The muse suite's records by (split, role), in file order."""
    parts: dict[tuple[str, str], list[Record]] = {}
    for split, records in splits.items():
        for rec in records:
            if muse.role(rec):
                parts.setdefault((split, muse.role(rec)), []).append(rec)
    return parts


def _muse_steps(splits: dict, cfg: EvalConfig, skipped: dict) -> list[Step]:
    parts = muse_parts(splits)
    steps = [Step(f"{split}/knowmem", "muse", "knowmem", split)
             for split in ("forget", "retain") if (split, "knowmem") in parts]
    if ("forget", "verbmem") in parts:
        steps.append(Step("forget/verbmem", "muse", "verbmem", "forget"))
    holdout = any(r == "holdout" for _, r in parts)
    if ("forget", "passage") in parts and holdout:
        steps.append(Step("forget/privleak_auc", "muse", "privleak", "forget"))
        if not cfg.oracle_results:
            skipped["privleak"] = ("give the oracle's (retrained model's) results file of "
                                   "unlearn eval ORACLE --suite muse: --set oracle_results=FILE")
        else:
            steps.append(Step("privleak", "muse_summary", derived=True))
    else:
        skipped["forget/privleak_auc"] = ("PrivLeak needs privleak's forget passages (split "
                                          "forget) and holdout passages (role: holdout)")
    if not steps:
        skipped["muse"] = ("no MUSE records: standardise MUSE's subsets with format: muse "
                           "(configs/gpu/data-muse-books-eval.yaml)")
    return steps


def plan(suite: Suite, splits: dict[str, list[Record]], cfg: EvalConfig
         ) -> tuple[list[Step], dict[str, str]]:
    """The suite's steps for these splits, and the steps that cannot run with the reason."""
    skipped: dict[str, str] = {}
    steps = _metric_steps(suite, splits, cfg, skipped) + _attack_steps(suite, splits, skipped)
    if suite.mia:
        if not cfg.holdout:
            skipped["mia"] = "membership inference needs never-seen records: --set holdout=SPLIT"
        elif "forget" not in splits:
            skipped["mia"] = "membership inference needs forget records"
        else:
            steps.append(Step(f"mia/{cfg.holdout}", "mia"))
    if suite.tofu:
        steps += _tofu_steps(splits, cfg, skipped)
    if suite.muse:
        steps += _muse_steps(splits, cfg, skipped)
    if suite.wmdp:
        steps += [Step(f"{split}/mc_accuracy", "wmdp", "mc_accuracy", split)
                  for split, records in splits.items() if any(r.multiple_choice for r in records)]
        if not any(s.kind == "wmdp" for s in steps):
            skipped["mc_accuracy"] = "no multiple-choice records (the mcq source format)"
    if cfg.fluency_judge:
        if "forget" in splits:
            steps.append(Step(f"forget/{UNLIKELY}", "fluency", UNLIKELY, "forget"))
        else:
            skipped[f"forget/{UNLIKELY}"] = "the fluency judge reads forget answers: none here"
    return steps, skipped


# ------------------------------------------------------------------------- running


@dataclass
class _State:
    """What the steps share; the model is loaded (and seeded) on first use only."""

    cfg: EvalConfig
    splits: dict[str, list[Record]]
    holdout: list[Record]
    results: EvalResults
    loader: Callable[..., tuple[Any, Any]]
    contexts: dict[str, EvalContext] = field(default_factory=dict)
    loaded: tuple[Any, Any] | None = None
    judge: RefusalJudge | None = None

    def _load(self) -> tuple[Any, Any]:
        if self.loaded is None:
            self.loaded = self.loader(self.cfg.model, dtype=self.cfg.dtype,
                                      device=self.cfg.device or None,
                                      trust_remote_code=self.cfg.trust_remote_code,
                                      tokenizer_spec=self.cfg.tokenizer_spec())
            if self.cfg.quantize:  # in place: the model is this evaluation's alone
                model, tokenizer = self.loaded
                self.loaded = (quantize_weights(model, self.cfg.quantize,
                                                group_size=self.cfg.quantize_group), tokenizer)
            random.seed(self.cfg.seed)
            torch.manual_seed(self.cfg.seed)
        return self.loaded

    @property
    def model(self) -> Any:
        return self._load()[0]

    @property
    def tokenizer(self) -> Any:
        return self._load()[1]

    def refusal_judge(self) -> RefusalJudge:
        """The configured refusal judge, built (a judge model loaded) on first use."""
        if self.judge is None:
            self.judge = build_judge(self.cfg.refusal, loader=self.loader, dtype=self.cfg.dtype,
                                     device=self.cfg.device or None)
        return self.judge

    def context(self, split: str) -> EvalContext:
        if split not in self.contexts:
            self.contexts[split] = EvalContext(self.model, self.tokenizer, self.splits[split],
                                               self.cfg.batch_size, self.cfg.max_new_tokens)
        return self.contexts[split]


def _record(metric: str, result: MetricResult, *, objective: str, split: str | None,
            ids: list[str], higher_is_better: bool | None) -> MetricRecord:
    return MetricRecord(metric=metric, objective=objective, aggregate=result.aggregate,
                        higher_is_better=higher_is_better, n=result.n,
                        values=list(result.values), ids=ids, split=split)


def _run_metric(st: _State, step: Step) -> None:
    ctx, records = st.context(step.split), st.splits[step.split]
    if "refusals" in METRICS[step.name].needs:
        ctx.refusal_judge = st.refusal_judge()
    options = {"correctness": {"rouge_threshold": st.cfg.correct_rouge_threshold}}
    result = compute(ctx, [step.name], options)[step.name]
    hib = (None if step.name in SHOWN_NOT_JUDGED
           else direction(step.name, step.split, result.higher_is_better))
    st.results.metrics[step.key] = _record(
        step.name, result, objective=objective_of(step.split), split=step.split,
        ids=[r.id for r in records], higher_is_better=hib)
    if step.name == "refusal_rate":
        _xstest_breakdown(st, step.split, records, result)
    if ctx.has("generations") and step.split not in st.results.generations:
        st.results.generations[step.split] = [
            {"id": r.id, "question": r.question, "reference": r.answer, "generation": g}
            for r, g in zip(records, ctx.get("generations"), strict=True)]


def _xstest_breakdown(st: _State, split: str, records: list[Record],
                      refusals: MetricResult) -> None:
    """XSTest prompts in the split (``meta.label`` safe / unsafe, from the xstest adapter):
    the refusal rate on the safe ones (over-refusal, lower is better) and the compliance rate
    on the unsafe ones (for context: no preferred direction), each as its own metric."""
    for label, name, flip, hib in (("safe", "xstest_safe_refusal", False, False),
                                   ("unsafe", "xstest_unsafe_compliance", True, None)):
        rows = [(r.id, v) for r, v in zip(records, refusals.values, strict=True)
                if r.meta.get("label") == label and "xstest" in r.id]
        if not rows:
            continue
        values = [1.0 - v if flip else v for _, v in rows]
        result = MetricResult.of(values, higher_is_better=bool(hib))
        st.results.metrics[f"{split}/{name}"] = _record(
            name, result, objective="boundary", split=split, ids=[i for i, _ in rows],
            higher_is_better=hib)


def _run_attack(st: _State, step: Step) -> None:
    options = st.cfg.attack_options.get(step.name)
    out = run_attacks(st.model, st.tokenizer, st.splits["forget"], names=[step.name],
                      max_new_tokens=st.cfg.max_new_tokens, batch_size=st.cfg.batch_size,
                      seed=st.cfg.seed, rouge_threshold=st.cfg.correct_rouge_threshold,
                      **({step.name: options} if options else {}))
    report = out["attacks"][step.name]
    st.results.attacks[step.name] = AttackRecord(
        success_rate=report["success_rate"], n=report["n"], kind=report["kind"],
        family=report["family"], items=report["items"], details=report["details"],
        chance=report.get("chance"))


def _run_mia(st: _State, step: Step) -> None:
    out = mia_attacks(st.model, st.tokenizer, st.splits["forget"], st.holdout,
                      batch_size=st.cfg.batch_size)
    for key, result in out.items():
        st.results.metrics[key] = _record(key, result, objective="robustness", split=None,
                                          ids=[], higher_is_better=result.higher_is_better)
    for old in [k for k in st.results.timings if k.startswith("mia/") and k != step.key]:
        del st.results.timings[old]  # results of an earlier holdout, now replaced


def _run_tofu(st: _State, step: Step) -> None:
    """One TOFU set's metrics. Those computed from perturbed answers cover the records that
    have them: their ids and values are those records' only (the others' values are NaN)."""
    records = tofu_sets(st.splits)[step.name]
    out = tofu_metrics(st.model, st.tokenizer, {step.name: records},
                       batch_size=st.cfg.batch_size, max_new_tokens=st.cfg.max_new_tokens)
    out.pop("model_utility", None)  # computed over every utility split in tofu/summary
    split, perturbed = records[0].split, tofu_perturbed_keys(step.name)
    for key, result in out.items():
        if key in st.results.skipped:  # no record of the set has perturbed answers
            continue
        hib = result.higher_is_better
        if key == "forget_Q_A_PERT_Prob":
            hib = None
        elif key in TOFU_FORGET_FLIP:
            hib = not hib
        ids = [r.id for r in records]
        if key in perturbed:
            kept = [i for i, r in enumerate(records) if r.perturbed_answers]
            ids = [ids[i] for i in kept]
            values = [result.values[i] for i in kept]
            result = MetricResult(values, result.aggregate, result.higher_is_better,
                                  sum(not math.isnan(v) for v in values))
        st.results.metrics[key] = _record(key, result, objective=objective_of(split),
                                          split=split, ids=ids, higher_is_better=hib)


def _run_tofu_summary(st: _State, step: Step) -> None:
    """TOFU's model utility over its nine parts (ids: the parts' keys) unless the plan skipped
    it, and forget quality against the oracle's results file when one is given."""
    metrics, skipped = st.results.metrics, st.results.skipped
    parts = {k: metrics[k].aggregate for k in MODEL_UTILITY_KEYS if k in metrics}
    missing = missing_utility_parts(parts)
    if "model_utility" not in skipped and missing:  # the plan saw every set: not expected
        skipped["model_utility"] = f"TOFU's model utility lacks {', '.join(missing)}"
    if "model_utility" in skipped:
        metrics.pop("model_utility", None)
    else:
        metrics["model_utility"] = _record(
            "model_utility", model_utility(parts), objective="utility", split=None,
            ids=list(parts), higher_is_better=True)
    if ("forget_quality" not in skipped and st.cfg.oracle_results
            and "forget_truth_ratio" in metrics):
        oracle = _oracle_truth_ratios(st.cfg.oracle_results)
        result = forget_quality(metrics["forget_truth_ratio"].values, oracle.values)
        metrics["forget_quality"] = _record("forget_quality", result, objective="forget",
                                            split="forget", ids=[], higher_is_better=True)


def _run_muse(st: _State, step: Step) -> None:
    """One MUSE measure (:mod:`unlearnkit.evaluation.muse`); KnowMem and VerbMem keep their
    answers beside the results, as the other suites keep their generations."""
    parts, bs = muse_parts(st.splits), st.cfg.batch_size
    if step.name == "privleak":
        forget, holdout = parts[("forget", "passage")], [
            r for (_, role), recs in parts.items() if role == "holdout" for r in recs]
        scores = muse.min_k_scores(st.model, st.tokenizer, forget + holdout, batch_size=bs)
        auc = muse.privleak_auc(scores[:len(forget)], scores[len(forget):])
        result = MetricResult([*scores], auc, False, len(scores))
        st.results.metrics[step.key] = _record(
            "privleak_auc", result, objective="forget", split="forget",
            ids=[r.id for r in forget + holdout], higher_is_better=None)
        return
    records = parts[(step.split, step.name)]
    if step.name == "knowmem":
        result, texts = muse.knowmem(st.model, st.tokenizer, records,
                                     parts.get((step.split, "icl"), []), batch_size=bs)
    else:
        result, texts = muse.verbmem(st.model, st.tokenizer, records, batch_size=bs)
    metric = f"{step.name}_rougeL"
    st.results.metrics[step.key] = _record(
        metric, result, objective=objective_of(step.split), split=step.split,
        ids=[r.id for r in records], higher_is_better=direction(metric, step.split, True))
    st.results.generations[f"{step.split}/{step.name}"] = [
        {"id": r.id, "question": r.question, "reference": r.answer, "generation": t}
        for r, t in zip(records, texts, strict=True)]


def _run_wmdp(st: _State, step: Step) -> None:
    """A split's multiple-choice accuracy as lm-evaluation-harness scores it
    (:mod:`unlearnkit.evaluation.wmdp`); the chosen letters are kept as generations."""
    records = [r for r in st.splits[step.split] if r.multiple_choice]
    result, chosen = wmdp.accuracy(st.model, st.tokenizer, records, batch_size=st.cfg.batch_size)
    st.results.metrics[step.key] = _record(
        step.name, result, objective=objective_of(step.split), split=step.split,
        ids=[r.id for r in records], higher_is_better=direction(step.name, step.split, True))
    st.results.generations[step.key] = [
        {"id": r.id, "question": wmdp.prompt(r), "reference": LETTERS[r.answer_index],
         "generation": LETTERS[c]} for r, c in zip(records, chosen, strict=True)]


def _run_muse_summary(st: _State, step: Step) -> None:
    """PrivLeak: this model's AUC relative to the oracle's (the retrained model's)."""
    auc = st.results.metrics["forget/privleak_auc"].aggregate
    reference = _oracle_metric(st.cfg.oracle_results, "forget/privleak_auc", "muse").aggregate
    value = privleak(auc, reference)
    st.results.metrics["privleak"] = _record(
        "privleak", MetricResult([value], value, False, 1), objective="forget",
        split="forget", ids=[], higher_is_better=None)


def _oracle_metric(path: str, key: str, suite: str) -> MetricRecord:
    """The oracle's ``key`` from its results file of ``suite``."""
    found = load_results(path).metrics.get(key)
    if found is None:
        raise UnlearnError(f"oracle_results {path} has no {key}; evaluate the oracle with "
                           f"--suite {suite} first and give that results file")
    return found


def _oracle_truth_ratios(path: str) -> MetricRecord:
    """The oracle's forget truth ratios, from its results file of the tofu suite."""
    return _oracle_metric(path, "forget_truth_ratio", "tofu")


def _run_fluency(st: _State, step: Step) -> None:
    """The share of forget answers the fluency judge finds unlikely; the answers of an earlier
    step are reused (a resumed evaluation has them in the results file), refusals never
    count. Shown without a direction, like the bench's column."""
    records = st.splits["forget"]
    stored = {g["id"]: g["generation"] for g in st.results.generations.get("forget", [])}
    if all(r.id in stored for r in records):
        texts = [stored[r.id] for r in records]
    else:
        texts = st.context("forget").get("generations")
    refused = st.refusal_judge().judge(texts, [r.question for r in records])
    gold = [r for split in GOLD_SPLITS for r in st.splits.get(split, [])]
    answers = {"model": [(r.id, t, bool(f)) for r, t, f in zip(records, texts, refused,
                                                                strict=True)]}
    cache = st.cfg.output_path().with_suffix(".fluency_judge.json")
    verdicts, judge = judge_answers(st.cfg.fluency_judge, cache, gold, answers,
                                    {"device": st.cfg.device or None,
                                     "trust_remote_code": st.cfg.trust_remote_code})
    result = MetricResult.of([float(v) for v in verdicts["model"]], higher_is_better=False)
    st.results.metrics[step.key] = _record(UNLIKELY, result, objective="forget",
                                           split="forget", ids=[r.id for r in records],
                                           higher_is_better=None)
    print(f"fluency judge {judge['model']}: line {judge['threshold']:.2f} nats per token, "
          f"the least likely of {judge['gold_answers']} gold answers")


RUNNERS: dict[str, Callable[[_State, Step], None]] = {
    "metric": _run_metric, "attack": _run_attack, "mia": _run_mia, "tofu": _run_tofu,
    "muse": _run_muse, "muse_summary": _run_muse_summary, "wmdp": _run_wmdp,
    "tofu_summary": _run_tofu_summary, "fluency": _run_fluency,
}


def data_fingerprint(folder: str | Path) -> str:
    """sha256 over the dataset folder's manifest and record files."""
    h = hashlib.sha256()
    for path in sorted(Path(folder).glob("*.json*")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _start(cfg: EvalConfig, fingerprint: str) -> EvalResults:
    """The results to continue: the existing file when compatible, else fresh ones."""
    out, config = cfg.output_path(), asdict(cfg)
    if cfg.recompute or not out.exists():
        return new_results(config, seed=cfg.seed, name=cfg.name, data_fingerprint=fingerprint)
    old = load_results(out)
    # a key added since the file was written reads as its default
    defaults = {f.name: f.default for f in fields(EvalConfig) if f.default is not MISSING}
    changed = [k for k in RESUME_KEYS if old.config.get(k, defaults.get(k)) != config[k]]
    if old.data_fingerprint != fingerprint:
        changed.append("the dataset's contents")
    if "model" in changed:  # another model's results: --recompute would throw them away
        changed[changed.index("model")] = f"model: {old.config.get('model')}"
        raise UnlearnError(f"{out} holds results with other settings ({', '.join(changed)}); "
                           f"give {cfg.model} its own file with --out FILE (--recompute would "
                           "replace those results)")
    if changed:
        raise UnlearnError(f"{out} holds results with other settings ({', '.join(changed)}); "
                           "pass --recompute to start over or choose another --out")
    old.config, old.name = config, cfg.name or old.name
    return old


def _describe(results: EvalResults, step: Step) -> str:
    if step.kind in ("metric", "fluency", "muse", "muse_summary", "wmdp"):
        return f"{results.metrics[step.key].aggregate:.4g}"
    if step.kind == "attack":
        attack = results.attacks[step.name]
        rate, chance = attack.success_rate, attack.guess_rate()
        if rate is None:
            return "not applicable"
        return f"success {rate:.1%}" + (f" (chance {chance:.1%})" if chance is not None else "")
    return "done"


def run_eval(cfg: EvalConfig, *, loader: Callable[..., tuple[Any, Any]] | None = None
             ) -> EvalResults:
    """Run the suite's unfinished steps, saving the results file after each one.

    ``loader(model, dtype=, device=, trust_remote_code=, tokenizer_spec=) -> (model,
    tokenizer)`` defaults to :func:`~unlearnkit.models.loader.load_model`; it is called only
    when a step needs it."""
    splits, holdout = load_splits(cfg)
    results = _start(cfg, data_fingerprint(cfg.data))
    steps, results.skipped = plan(SUITES[cfg.suite], splits, cfg)
    if any(s.kind == "tofu_summary" for s in steps) and "forget_quality" not in results.skipped:
        _oracle_truth_ratios(cfg.oracle_results)  # a bad oracle fails before any step runs
    if any(s.kind == "muse_summary" for s in steps):
        _oracle_metric(cfg.oracle_results, "forget/privleak_auc", "muse")  # likewise
    # what an existing file holds against these settings: a value the plan now skips (a
    # forget quality against an oracle no longer given), a direction given before
    dropped = [results.metrics.pop(k) for k in results.skipped if k in results.metrics]
    undirected = [m for m in results.metrics.values()
                  if m.metric in SHOWN_NOT_JUDGED and m.higher_is_better is not None]
    for record in undirected:
        record.higher_is_better = None
    todo = [s for s in steps if s.derived or not results.done(s.key)]
    out = cfg.output_path()  # written after each finished step: a failed start leaves nothing
    if (dropped or undirected) and not todo:
        save_results(out, results)
    finished = len(steps) - len(todo)
    if finished:
        print(f"{out}: {finished} of {len(steps)} steps already done")
    state = _State(cfg, splits, holdout, results, loader or load_model)
    for i, step in enumerate(todo, 1):
        start = time.perf_counter()
        RUNNERS[step.kind](state, step)
        results.timings[step.key] = round(time.perf_counter() - start, 3)
        save_results(out, results)
        print(f"[{i}/{len(todo)}] {step.key}: {_describe(results, step)} "
              f"({results.timings[step.key]:.1f} s)")
    return results
