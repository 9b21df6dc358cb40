"""Runs for comparison and reports: one shape for every kind of results file.

A :class:`Run` is one evaluated model: aggregates by key (each with its objective and desired
direction), attack success rates, generations by item id and optional diagnostics.
:func:`load_runs` reads

- a results file of ``unlearn eval`` (:mod:`unlearnkit.evaluation.results`): one run,
  labelled by its ``name`` or else the file stem;
- a ``results.json`` of ``unlearn demo`` / ``unlearn run`` (:func:`from_pipeline`): one run per
  model in it, labelled ``<folder>/<model>``; its per-split ``accuracy`` becomes
  ``<split>/correctness`` and ``refusal`` becomes ``<split>/refusal_rate``, the same keys the
  quick suite writes, so old and new files line up.

Attack rates appear among the aggregates as ``attack/<name>`` and ``attack/worst_case``
(robustness, lower is better). A multiple-choice attack's rate is its raw accuracy, with its
guessing rate in :attr:`Run.chance`; the worst case judges it above chance
(:mod:`unlearnkit.evaluation.chance`).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearnkit.data.standardize import load_dataset
from unlearnkit.errors import UnlearnError
from unlearnkit.evaluation.attacks.relearn import readings
from unlearnkit.evaluation.chance import leak_rates
from unlearnkit.evaluation.results import (
    OBJECTIVES,
    EvalResults,
    direction,
    load_results,
    objective_of,
    read_json,
)
from unlearnkit.report.diagnose import load_beside

ROLES = ("before", "run", "oracle")
# Shown without a direction in every table, as unlearn run shows them: a degenerate answer is
# how some methods "forget", and is in no objective's score
SHOWN_NOT_JUDGED = frozenset({"degenerate_rate"})
PIPELINE_ROLES = {"before": "before", "injected": "before", "oracle": "oracle"}


@dataclass(frozen=True)
class Aggregate:
    value: float
    higher_is_better: bool | None
    objective: str


@dataclass
class Run:
    """One evaluated model. ``role`` is what its file suggests (``before`` for the model
    before unlearning, ``oracle``, else ``run``); the report may assign roles explicitly."""

    label: str
    source: Path
    role: str = "run"
    aggregates: dict[str, Aggregate] = field(default_factory=dict)
    attacks: dict[str, float | None] = field(default_factory=dict)
    chance: dict[str, float] = field(default_factory=dict)  # choice attacks' guessing rates
    generations: dict[str, dict[str, Any]] = field(default_factory=dict)
    diagnostics: Any = None
    info: dict[str, Any] = field(default_factory=dict)
    # the relearning attack's figures (evaluation.attacks.relearn.readings), when it ran
    relearn: dict[str, float | None] | None = None

    def value(self, key: str) -> float | None:
        agg = self.aggregates.get(key)
        return None if agg is None or math.isnan(agg.value) else agg.value

    def leak_rates(self) -> dict[str, float]:
        """Per attack that applied, the rate it is judged by: the success rate, or a choice
        attack's rate above chance floored at 0."""
        return leak_rates(self.attacks, self.chance)


def _add_attacks(run: Run, rates: dict[str, float | None],
                 chance: dict[str, float] | None = None) -> None:
    run.attacks, run.chance = dict(rates), dict(chance or {})
    scored = {k: v for k, v in rates.items() if v is not None}
    for name, rate in scored.items():
        run.aggregates[f"attack/{name}"] = Aggregate(rate, False, "robustness")
    if leaks := run.leak_rates():
        run.aggregates["attack/worst_case"] = Aggregate(max(leaks.values()), False,
                                                        "robustness")


def pipeline_attacks(res: dict[str, Any]) -> tuple[dict[str, float | None], dict[str, float]]:
    """(success rate per attack, a choice attack's chance) of one model's entry in an
    ``unlearn run`` results file; files written before ``attacks`` was recorded (and cached
    evaluations of the references) have the prefill attack's rate alone."""
    if "attacks" in res:
        attacks = res["attacks"]
        return ({k: a["success_rate"] for k, a in attacks.items()},
                {k: a["chance"] for k, a in attacks.items() if a.get("chance") is not None})
    return ({"prefill": res["prefill_attack"]} if "prefill_attack" in res else {}), {}


def pipeline_relearn(res: dict[str, Any]) -> dict[str, float | None] | None:
    """The relearning attack's figures (:func:`~unlearnkit.evaluation.attacks.relearn.readings`)
    of one model's entry in an ``unlearn run`` results file; None when it did not run."""
    relearn = (res.get("attacks") or {}).get("relearn")
    return readings(relearn.get("success_rate"), relearn.get("details") or {}) if relearn else None


def from_results(results: EvalResults, path: Path) -> Run:
    """The run of an ``unlearn eval`` results file."""
    run = Run(label=results.name or path.stem, source=path, diagnostics=results.diagnostics)
    for key, m in results.metrics.items():
        # shown, not judged, whatever direction an older unlearn eval wrote in the file
        better = None if m.metric in SHOWN_NOT_JUDGED else m.higher_is_better
        run.aggregates[key] = Aggregate(m.aggregate, better, m.objective)
    _add_attacks(run, {k: a.success_rate for k, a in results.attacks.items()},
                 {k: c for k, a in results.attacks.items() if (c := a.guess_rate()) is not None})
    if relearn := results.attacks.get("relearn"):
        run.relearn = readings(relearn.success_rate, relearn.details)
    for split, rows in results.generations.items():
        judged = results.metrics.get(f"{split}/correctness")
        correct = dict(zip(judged.ids, judged.values, strict=False)) if judged else {}
        for row in rows:
            ok = correct.get(row["id"], math.nan)
            run.generations[row["id"]] = {**row, "split": split,
                                          "correct": None if math.isnan(ok) else bool(ok)}
    run.info = {"model": results.config.get("model"), "suite": results.config.get("suite"),
                "created": results.created, "git_commit": results.git_commit,
                "versions": results.versions}
    return run


def _check(condition: bool, path: Path, problem: str) -> None:
    if not condition:
        raise UnlearnError(f"{path}: {problem}; expected the results.json of unlearn demo/run")


def _dataset_items(folder: Path) -> dict[str, Any]:
    """Records by id of the dataset folder next to a pipeline results.json (unlearn demo
    writes one to ``<output>/data``), for the questions and references; {} without one."""
    if not (folder / "manifest.json").is_file():
        return {}
    try:
        return {r.id: r for r in load_dataset(folder)}
    except (UnlearnError, OSError, ValueError):
        return {}


def _pipeline_run(model: str, res: Any, path: Path, records: dict[str, Any]) -> Run:
    _check(isinstance(res, dict) and isinstance(res.get("summary"), dict), path,
           f"model {model!r} has no 'summary' of per-split accuracy and refusal")
    run = Run(label=f"{path.parent.name or path.stem}/{model}", source=path,
              role=PIPELINE_ROLES.get(model, "run"), info={"model": model})
    for split, s in res["summary"].items():
        _check(isinstance(s, dict) and {"accuracy", "refusal"} <= set(s), path,
               f"summary of {model!r} split {split!r} lacks accuracy/refusal")
        if s["accuracy"] is not None:  # None: nothing to judge against (XSTest prompts)
            run.aggregates[f"{split}/correctness"] = Aggregate(
                float(s["accuracy"]), direction("correctness", split, True), objective_of(split))
        xstest = s.get("safe_refusal") is not None or s.get("unsafe_compliance") is not None
        # refusing XSTest's unsafe prompts is right: their split's overall rate has no direction
        run.aggregates[f"{split}/refusal_rate"] = Aggregate(
            float(s["refusal"]), None if xstest else direction("refusal_rate", split, False),
            objective_of(split))
        for key, name, better in (("safe_refusal", "xstest_safe_refusal", False),
                                  ("unsafe_compliance", "xstest_unsafe_compliance", None)):
            if s.get(key) is not None:  # as unlearn eval names them
                run.aggregates[f"{split}/{name}"] = Aggregate(float(s[key]), better, "boundary")
        if "degenerate" in s:  # shown without a direction: not part of any objective score
            run.aggregates[f"{split}/degenerate_rate"] = Aggregate(
                float(s["degenerate"]), None, objective_of(split))
        for part in ("held_out", "in_training"):  # unlearn.holdout's two parts, no direction
            if s.get(part):
                run.aggregates[f"{split}/correctness_{part}"] = Aggregate(
                    float(s[part]["accuracy"]), None, objective_of(split))
        for key, metric in (("unlikely", "unlikely_rate"), ("fluent", "fluent_rate")):
            if key in s:  # the fluency judge's shares (unlearn run's fluency_judge)
                run.aggregates[f"{split}/{metric}"] = Aggregate(
                    float(s[key]), None, objective_of(split))
    rates, chance = pipeline_attacks(res)
    if rates:
        _add_attacks(run, rates, chance)
    run.relearn = pipeline_relearn(res)
    for row in res.get("items") or []:
        _check(isinstance(row, dict) and "id" in row, path, f"an item of {model!r} has no id")
        rec = records.get(row["id"])
        run.generations[row["id"]] = {
            "id": row["id"], "split": row.get("split", ""),
            "question": rec.question if rec else "", "reference": rec.answer if rec else None,
            "generation": row.get("generation", ""), "correct": row.get("correct")}
    run.diagnostics = res.get("diagnostics")
    return run


def from_pipeline(data: dict[str, Any], path: Path) -> list[Run]:
    """Adapter for the ``results.json`` of :mod:`pipeline.demo` and :mod:`pipeline.run`: one
    run per model (``results.<model>.summary`` and ``.items``). Questions and references come
    from the dataset folder ``data/`` beside the file when there is one. A top-level
    ``diagnostics`` (else the tables of a ``diagnose.json`` beside the file) goes to the first
    run that is neither before nor oracle (else the first).
    """
    _check(isinstance(data.get("results"), dict) and data["results"], path,
           "no 'results' mapping of model name -> results")
    records = _dataset_items(path.parent / "data")
    runs = [_pipeline_run(model, res, path, records) for model, res in data["results"].items()]
    diagnostics = data.get("diagnostics")
    if diagnostics is None:
        diagnostics = load_beside(path)  # unlearn diagnose's diagnose.json in the run folder
    if diagnostics is not None:
        target = next((r for r in runs if r.info.get("model") == "after"),
                      next((r for r in runs if r.role == "run"), runs[0]))
        target.diagnostics = diagnostics
    return runs


def load_runs(path: str | Path) -> list[Run]:
    """The runs in one results file of either kind (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        raise UnlearnError(_folder_problem(path))
    data = read_json(path)
    if "schema_version" in data:
        return [from_results(load_results(path), path)]
    if "results" in data:
        return from_pipeline(data, path)
    raise UnlearnError(f"{path} is neither a results file of unlearn eval (no schema_version) "
                       "nor the results.json of unlearn demo/run (no 'results')")


def _folder_problem(path: Path) -> str:
    """What to pass instead of folder ``path``: a run's results.json, or a results file of
    ``unlearn eval`` (made from a model folder first)."""
    if (path / "results.json").is_file():
        return (f"{path} is a folder, not a results file; pass the results of the run in it: "
                f"{path / 'results.json'}")
    saved = [path / sub for sub in ("model", "adapter") if (path / sub).is_dir()]
    if (path / "config.json").is_file() and any(path.glob("*.safetensors")):
        saved = [path]  # a model folder itself
    if saved:
        return (f"{path} is a folder with a model but no results; evaluate it first (unlearn "
                f"eval {saved[0]} --data DATASET) and pass the results file it writes")
    found = sorted(f.name for f in path.glob("*.json")
                   if not f.name.endswith(".fluency_judge.json"))  # evaluate.py's judge cache
    return (f"{path} is a folder, not a results file; pass results files by name"
            + (f", e.g. {path / found[0]}" if found else ""))


def load_many(paths: list[str | Path]) -> list[Run]:
    """The runs of several files in order, with labels made unique (``label #2``)."""
    runs = [run for path in paths for run in load_runs(path)]
    return unique_labels(runs)


def unique_labels(runs: list[Run], depth: int = 3) -> list[Run]:
    """Labels that tell the runs apart: runs that share a label get the names of the folders
    above their files' (``seed-0/after`` -> ``rmu/seed-0/after``, then
    ``bench-tofu/rmu/seed-0/after``), as few as tell them apart and at most ``depth``; what
    still clashes (the same file twice) gets a count (``#2``)."""
    counts = Counter(run.label for run in runs)
    clashing = [run for run in runs if counts[run.label] > 1]
    base = {id(run): run.label for run in clashing}
    for level in range(1, depth + 1):
        for run in clashing:
            above = [_ancestor_name(run.source, k) for k in range(level, 0, -1)]
            run.label = "/".join([*(name for name in above if name), base[id(run)]])
        if len({run.label for run in runs}) == len(runs):
            return runs
    for run in clashing:  # the folders did not tell them apart: the short label and a count
        run.label = base[id(run)]
    seen: dict[str, int] = {}
    for run in runs:
        seen[run.label] = seen.get(run.label, 0) + 1
        if seen[run.label] > 1:
            run.label = f"{run.label} #{seen[run.label]}"
    return runs


def _ancestor_name(source: Path, level: int) -> str:
    """The name of the folder ``level`` above the one holding ``source`` ("" past the top)."""
    parents = Path(source).resolve().parent.parents
    return parents[level - 1].name if level <= len(parents) else ""


def ordered_keys(runs: list[Run]) -> dict[str, list[str]]:
    """Aggregate keys per objective, in first-seen order across ``runs``."""
    out: dict[str, list[str]] = {o: [] for o in OBJECTIVES}
    for run in runs:
        for key, agg in run.aggregates.items():
            if key not in out[agg.objective]:
                out[agg.objective].append(key)
    return out


def direction_of(runs: list[Run], key: str) -> bool | None:
    """The desired direction of ``key`` (from the first run that has it)."""
    return next((r.aggregates[key].higher_is_better for r in runs if key in r.aggregates), None)


def objective_score(run: Run, objective: str) -> float | None:
    """A rough one-number summary, higher is better: for robustness 1 - the worst attack's
    success rate when attacks ran; otherwise the mean of the objective's aggregates that lie in
    [0, 1] and have a direction, each flipped (1 - x) when lower is better."""
    if objective == "robustness" and run.value("attack/worst_case") is not None:
        return 1.0 - run.value("attack/worst_case")
    vals = [a.value if a.higher_is_better else 1.0 - a.value
            for a in run.aggregates.values()
            if a.objective == objective and a.higher_is_better is not None
            and 0.0 <= a.value <= 1.0]
    return sum(vals) / len(vals) if vals else None
