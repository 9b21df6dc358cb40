"""`unlearn bench CONFIG`: every method x seed through `unlearn run`, then the leaderboard.

Each method runs once per seed (``unlearn.seed``: the mixture plan's order, LoRA's
initialisation and a baseline's own ``seed`` such as RMU's direction) from the same starting
model, with the shared ``run`` settings (data, optimiser, steps and quotas, LoRA); methods
that do not train (prompt_only, oracle) are deterministic and run once (at the first seed, or
the seed of a finished run of theirs, when seeds are added later). Run folders are
``<output>/<label>/seed-<seed>``; one with a ``results.json`` is finished and skipped, and a
killed one resumes from its last checkpoint. ``<output>`` then gets ``leaderboard.json``,
``leaderboard.md`` and ``leaderboard.html`` (:mod:`unlearnkit.report.leaderboard`).

Several processes may work through one bench at once (one per GPU or per core): each skips
the runs another live process holds (:mod:`unlearnkit.pipeline.claims`). A process that ends
with runs still held elsewhere writes no leaderboard and returns None; the last one to finish
writes it (or run the command again once they have finished).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from unlearnkit.config import deep_merge, from_dict, load_yaml
from unlearnkit.errors import UnlearnError
from unlearnkit.evaluation.results import load_results
from unlearnkit.fsutil import atomic_write_text, check_replaceable
from unlearnkit.objectives.baselines import BASELINES
from unlearnkit.pipeline.claims import claimed, holder
from unlearnkit.pipeline.data_source import check_model
from unlearnkit.pipeline.fluency_judge import (
    SCORES_FILE,
    answer_form,
    forget_answers,
    judge_answers,
    setup_records,
)
from unlearnkit.pipeline.methods import method_names
from unlearnkit.pipeline.run import RUN_MARKERS, RunConfig, config_json, differing_keys, run
from unlearnkit.report.leaderboard import (
    METRICS,
    OBJECTIVES,
    front_objectives,
    leaderboard,
    render_html,
    run_metrics,
    to_markdown,
)

REFERENCES = ("oracle",)  # rows shown for comparison, not candidates for the Pareto front


merge_options = deep_merge  # a preset's options, then the bench config's overrides


@dataclass
class BenchMethod:
    """One leaderboard row: a method with its options (a preset file, then ``options``)."""

    name: str
    label: str = ""  # the row's name and folder (default: ``name``)
    preset: str = ""  # a baseline preset YAML, e.g. configs/baselines/npo.yaml
    options: dict[str, Any] = field(default_factory=dict)
    # this method's own `unlearn run` settings over the shared ``run`` (e.g. {optim: {lr:
    # 4.0e-5}}, what `unlearn tune` chose for it)
    run: dict[str, Any] = field(default_factory=dict)
    # the seeds this row runs, among the bench's (None: all of them), e.g. to leave an
    # expensive row that an earlier bench settled at fewer seeds
    seeds: list[int] | None = None

    def __post_init__(self) -> None:
        self.label = self.label or self.name
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]*", self.label):
            raise UnlearnError(f"bench label {self.label!r} must be a plain folder name "
                               "(letters, digits, '.', '_', '-')")
        if self.seeds is not None and (not self.seeds or len(set(self.seeds)) != len(self.seeds)):
            raise UnlearnError(f"bench method {self.label!r}: seeds {self.seeds} must list one "
                               "or more seeds, none twice (or leave seeds out: every seed)")

    def resolved_options(self) -> dict[str, Any]:
        return merge_options(load_yaml(self.preset) if self.preset else {}, self.options)


def _every_method() -> list[BenchMethod]:
    return [BenchMethod(name) for name in method_names()]


@dataclass
class BenchConfig:
    """Methods x seeds on ``run.data`` (default: the built-in scenario); ``run`` holds the
    settings all runs share (its ``method``, ``baseline``, ``output`` and ``unlearn.seed`` are
    set per run)."""

    methods: list[BenchMethod] = field(default_factory=_every_method)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    run: RunConfig = field(default_factory=RunConfig)
    output: str = "runs/bench"
    confidence: float = 0.95
    title: str = "Unlearning leaderboard"
    # False: delete a run's trained weights (model/, adapter/) once its results are written,
    # keeping its generations, metrics and config (a bench of a 7B model otherwise keeps
    # ~14 GB per run)
    keep_models: bool = True
    # a method forgets when its mean forget accuracy is at most the oracle's plus this; only
    # those are candidates for the Pareto front (None: every method is). Needs the oracle
    # among the methods
    forget_margin: float | None = 0.05
    # a model that has not seen the forget facts (e.g. the base model before injection): its
    # per-token likelihood of each forget answer, against the setup's gold answers, gives
    # the "unlikely forget answers" column (word salad; shown, not judged). "": no judge
    fluency_judge: str = ""
    # the front's objectives count forget accuracy and prefill success as at least the
    # oracle's (forgetting past a model never trained on the forget set earns nothing; the
    # tune's cap_at_oracle); the metrics are shown as measured. Needs the oracle
    floor_at_oracle: bool = False
    # utility averages the share of forget answers in language (not degenerate, not unlikely
    # to the fluency judge) with retain and general accuracy: METHOD.md's utility is "retain
    # set, general knowledge, fluency", and a method that forgets in word salad has lost the
    # last. Off by default, so the recorded fronts stay as they were judged
    utility_fluency: bool = False

    def __post_init__(self) -> None:
        if not self.methods or not self.seeds:
            raise UnlearnError("bench needs at least one method and one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise UnlearnError(f"bench seeds {self.seeds} repeat a seed")
        labels = [m.label for m in self.methods]
        if len(set(labels)) != len(labels):
            raise UnlearnError(f"bench method labels {labels} repeat; give each a unique label")
        if not 0 < self.confidence < 1:
            raise UnlearnError(f"confidence must lie in (0, 1), got {self.confidence}")
        if self.forget_margin is not None and not 0 <= self.forget_margin <= 1:
            raise UnlearnError(f"forget_margin must lie in [0, 1] (or be null: no forgetting "
                               f"check), got {self.forget_margin}")
        for method in self.methods:  # each run's config, checked as `unlearn run` checks it
            if extra := sorted(set(method.seeds or []) - set(self.seeds)):
                raise UnlearnError(f"bench method {method.label!r} lists seeds {extra}, which "
                                   f"are not among the bench's seeds {self.seeds}: add them "
                                   "there or drop them")
            run_config(self, method, self.seeds[0])
        if self.fluency_judge:
            check_model(self.fluency_judge, "fluency_judge")


def trains(method: BenchMethod) -> bool:
    """Whether the method trains (prompt_only and the oracle do not: they run once)."""
    return method.name not in BASELINES or BASELINES[method.name].trainable


def seeds_for(method: BenchMethod, seeds: list[int]) -> list[int]:
    """The seeds a method runs, in the bench's order: its own ``seeds`` among ``seeds`` (all
    of them without), and of those the first alone for a method that does not train."""
    chosen = [s for s in seeds if method.seeds is None or s in method.seeds]
    return chosen if trains(method) else chosen[:1]


def run_config(cfg: BenchConfig, method: BenchMethod, seed: int) -> RunConfig:
    """The `unlearn run` config of one method and seed (validated like a loaded one)."""
    data = deep_merge(asdict(cfg.run), method.run)
    data.update(method=method.name, baseline=method.resolved_options(), resume=True,
                output=str(Path(cfg.output) / method.label / f"seed-{seed}"),
                eval_references=False, fluency_judge="")  # the bench judges every run at once
    data["unlearn"]["seed"] = seed
    return from_dict(RunConfig, data)


def is_finished(cfg: RunConfig) -> bool:
    return (Path(cfg.output) / "results.json").is_file()


def saved_config(folder: Path) -> dict:
    """A finished run's config as ``config_json`` writes it today."""
    saved = json.loads((folder / "config.json").read_text())
    # through the dataclass, so that options added since then read as their defaults (an
    # option removed since fails to load: compared as written, it differs)
    with contextlib.suppress(UnlearnError):
        saved = config_json(from_dict(RunConfig, saved, "saved config"))
    return saved


def run_once(cfg: RunConfig) -> dict:
    """``run(cfg)``, or the results of a finished run made with the same config."""
    folder = Path(cfg.output)
    if not is_finished(cfg):
        return run(cfg)
    if differ := differing_keys(saved_config(folder), config_json(cfg)):
        raise UnlearnError(f"{folder} holds a finished run made with another config (it differs "
                           f"in {', '.join(differ)}); give the bench another output folder, or "
                           "move that run away to train it again")
    return json.loads((folder / "results.json").read_text())


WEIGHTS = ("model", "adapter")  # what `unlearn run` saves the trained model as


def drop_weights(folder: Path) -> None:
    """Delete a finished run's trained weights; its results.json stays."""
    for name in WEIGHTS:
        shutil.rmtree(folder / name, ignore_errors=True)


class Progress:
    """One line per run of a bench: which of how many, and the time left, estimated from the
    runs this process trained (finished runs that are skipped take no time)."""

    def __init__(self, configs: list[RunConfig], clock=time.monotonic) -> None:
        self.todo = sum(not is_finished(c) for c in configs)
        self.total, self.done, self.trained, self.clock = len(configs), 0, 0, clock
        self.start = clock()

    def line(self, cfg: RunConfig) -> str:
        self.done += 1
        if is_finished(cfg):
            return f"bench: run {self.done} of {self.total} ({cfg.output}): finished"
        left = self.todo - self.trained
        eta = ""
        if self.trained:
            per_run = (self.clock() - self.start) / self.trained
            eta = f", about {per_run * left / 60:.0f} min left at {per_run / 60:.1f} min per run"
        self.trained += 1
        return f"bench: run {self.done} of {self.total} ({cfg.output}), {left} to train{eta}"

    def held(self, cfg: RunConfig) -> str:
        """A run another process trains: it leaves this process's count of runs to train."""
        self.done += 1
        self.todo -= 1
        return (f"bench: run {self.done} of {self.total} ({cfg.output}): being trained by "
                f"{holder(cfg.output)}")


def finished_elsewhere(cfg: BenchConfig, method: BenchMethod) -> int | None:
    """The seed of a finished run of a method that does not train, made under another seed
    with the same config but for the seed (the lowest such seed), or None. Such a method
    runs once: a bench extended with ``--set seeds=[2]`` reuses its run instead of making
    the same one again under seed 2."""
    if trains(method):
        return None
    seeds = sorted(int(m[1]) for f in Path(cfg.output, method.label).glob("seed-*")
                   if (m := re.fullmatch(r"seed-(\d+)", f.name)))
    for seed in seeds:
        made = run_config(cfg, method, seed)
        if is_finished(made) and not differing_keys(saved_config(Path(made.output)),
                                                    config_json(made)):
            return seed
    return None


def _plan(cfg: BenchConfig) -> tuple[list[tuple[BenchMethod, list[int]]], dict]:
    """Each method with its seeds, and the `unlearn run` config of every (label, seed)."""
    plan = [(method, [seed] if (seed := finished_elsewhere(cfg, method)) is not None
             else seeds_for(method, cfg.seeds)) for method in cfg.methods]
    configs = {(m.label, seed): run_config(cfg, m, seed) for m, seeds in plan for seed in seeds}
    return plan, configs


LEADERBOARDS = ("leaderboard.json", "leaderboard-partial.json")


def bench_markers(out: Path) -> list[str]:
    """What an earlier bench's (or tune's) folder holds: a leaderboard, or a method folder
    with runs (``<label>/seed-<n>`` holding a run's own files, a claim at least); only such a
    folder, or a new or empty one, takes a bench's outputs (:func:`check_replaceable`)."""
    runs = sorted(f"{seed.parent.name}/{seed.name}" for seed in out.glob("*/seed-*")
                  if seed.is_dir() and any((seed / m).exists() for m in RUN_MARKERS))
    return [*LEADERBOARDS, *runs]


def run_bench(cfg: BenchConfig) -> list[dict] | None:
    """Run what is not finished, write the three leaderboard files; returns the rows, or None
    when other processes still hold some runs (then nothing is written)."""
    plan, configs = _plan(cfg)
    check_replaceable(cfg.output, bench_markers(Path(cfg.output)))  # before any run
    progress = Progress(list(configs.values()))
    payloads = {}
    for key, run_cfg in configs.items():
        if is_finished(run_cfg):
            print(progress.line(run_cfg), flush=True)
            payloads[key] = run_once(run_cfg)
            continue
        with claimed(run_cfg.output) as mine:
            print(progress.line(run_cfg) if mine else progress.held(run_cfg), flush=True)
            if mine:
                payloads[key] = run_once(run_cfg)
                if not cfg.keep_models:
                    drop_weights(Path(run_cfg.output))
    for key in configs.keys() - payloads.keys():  # held elsewhere; finished since?
        if is_finished(configs[key]):
            payloads[key] = run_once(configs[key])
    if held := [configs[k].output for k in configs if k not in payloads]:
        print(f"bench: {len(held)} run(s) still being trained by other processes "
              f"({', '.join(held)}); the last process to finish writes the leaderboard, or run "
              "this command again once they have finished", flush=True)
        return None
    rows, judge = _board(cfg, plan, payloads)
    write_leaderboard(Path(cfg.output), rows, cfg, judge=judge)
    return rows


def _entries(plan: list[tuple[BenchMethod, list[int]]], payloads: dict,
             form: dict[tuple, dict] | None = None) -> list[dict]:
    """Leaderboard entries of the methods with at least one run in ``payloads``; ``form``:
    the fluency judge's answer-form shares per (label, seed) (:func:`answer_form`)."""
    out = []
    for method, seeds in plan:
        done = [s for s in seeds if (method.label, s) in payloads]
        if done:
            runs = [run_metrics(payloads[method.label, s]["results"]["after"]) for s in done]
            for seed, metrics in zip(done, runs, strict=True):
                metrics["protocol"] = protocol_figures(payloads[method.label, seed])
            for seed, metrics in zip(done, runs, strict=True):
                metrics.update((form or {}).get((method.label, seed), {}))
            out.append({"label": method.label, "method": method.name, "seeds": done,
                        "reference": method.name in REFERENCES, "runs": runs})
    return out


def protocol_figures(payload: dict) -> dict[str, dict]:
    """The protocol stage's figures of a run's trained model (``RunConfig.protocol``): metric
    key -> value and direction, its quantised reading's keys prefixed ("4bit forget/knowmem");
    empty without the stage, or when its files are gone."""
    figures: dict[str, dict] = {}
    for label, path in (payload.get("protocol") or {}).items():
        if (label != "after" and not label.startswith("after-")) or not Path(path).is_file():
            continue
        prefix = "" if label == "after" else label.removeprefix("after-") + " "
        figures.update({prefix + k: {"value": m.aggregate, "higher_is_better": m.higher_is_better}
                        for k, m in load_results(path).metrics.items()})
    return figures


def _board(cfg: BenchConfig, plan: list[tuple[BenchMethod, list[int]]], payloads: dict
           ) -> tuple[list[dict], dict | None]:
    """The leaderboard rows, and the fluency judge's summary (None without a judge)."""
    form, judge = None, None
    if cfg.fluency_judge:
        setup = run_config(cfg, plan[0][0], cfg.seeds[0])  # the data every run shares
        answers = {key: forget_answers(p["results"]["after"]["items"])
                   for key, p in payloads.items()}
        verdicts, judge = judge_answers(cfg.fluency_judge, Path(cfg.output) / SCORES_FILE,
                                        setup_records(setup), answers, setup.load_options())
        form = answer_form(verdicts, answers)
    return (leaderboard(_entries(plan, payloads, form), cfg.confidence, cfg.forget_margin,
                        cfg.floor_at_oracle, cfg.utility_fluency), judge)


def partial_bench(cfg: BenchConfig) -> list[dict]:
    """The leaderboard of the runs finished so far, trains nothing: ``leaderboard-partial.*``
    in the output folder, titled with how many runs it holds and listing the missing ones."""
    plan, configs = _plan(cfg)
    payloads = {key: run_once(c) for key, c in configs.items() if is_finished(c)}
    if not payloads:
        raise UnlearnError(f"no run of this bench has finished yet under {cfg.output}")
    missing = [f"{label}/seed-{seed}" for label, seed in configs if (label, seed) not in payloads]
    rows, judge = _board(cfg, plan, payloads)
    write_leaderboard(Path(cfg.output), rows, cfg, judge=judge, name="leaderboard-partial",
                      missing=missing,
                      title=f"{cfg.title} (partial: {len(payloads)} of {len(configs)} runs)")
    return rows


def write_leaderboard(out: Path, rows: list[dict], cfg: BenchConfig, *,
                      name: str = "leaderboard", missing: list[str] | None = None,
                      title: str = "", judge: dict | None = None) -> None:
    title = title or cfg.title
    table = to_markdown(rows, cfg.confidence, judge)
    if missing:
        table += f"\nNot finished yet ({len(missing)} runs): {', '.join(missing)}.\n"
    payload = {"title": title, "confidence": cfg.confidence,
               "metrics": [{"key": k, "title": t, "higher_is_better": hib}
                           for k, t, hib in METRICS],
               "objectives": list(OBJECTIVES), "front_objectives": front_objectives(rows),
               "methods": rows, "config": asdict(cfg), "fluency_judge": judge,
               **({"missing": missing} if missing is not None else {})}
    atomic_write_text(out / f"{name}.json", json.dumps(payload, indent=1))
    atomic_write_text(out / f"{name}.md", f"# {title}\n\n{table}")
    atomic_write_text(out / f"{name}.html",
                      render_html(rows, title=title, confidence=cfg.confidence, judge=judge))
    print("\n" + table + f"\nwrote {out / name}.md, .json and .html")
