"""`unlearn report RUN... --out report.html`: one self-contained HTML file.

Columns are the model before unlearning (``--before`` or a run whose file marks it so), the
runs, and the oracle (``--oracle`` likewise). Sections: the runs, a summary of objective
scores, how each ``unlearn run`` model was made (settings, loss curves, the teacher's
problems), one table and chart per objective (forget, utility, boundary, robustness), trade-off
plots with the Pareto front, the attack table, example generations side by side, and
diagnostics when a results file has a ``diagnostics`` key. All text goes through Jinja2's
autoescaping; charts are inline PNGs; there are no scripts and no external URLs.
"""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from unlearnkit.errors import UnlearnError
from unlearnkit.evaluation.attacks.relearn import READINGS, READINGS_NOTE
from unlearnkit.evaluation.chance import worst_beyond
from unlearnkit.evaluation.results import OBJECTIVES
from unlearnkit.fsutil import atomic_write_text
from unlearnkit.report.compare import ARROWS, best_indices, cell_text, fmt
from unlearnkit.report.plots import Point, bar_chart, colors_for, line_chart, pareto_chart
from unlearnkit.report.runs import (
    Run,
    direction_of,
    load_many,
    load_runs,
    objective_score,
    ordered_keys,
    unique_labels,
)

OBJECTIVE_TITLES = {
    "forget": "Forget: is the target knowledge gone?",
    "utility": "Utility: is everything else kept?",
    "boundary": "Boundary: are neighbours and benign prompts still answered?",
    "robustness": "Robustness: does the knowledge stay gone under attack?",
}
SPLIT_ORDER = ("forget", "neighbor", "retain", "general", "probe")
MAX_CHART_ROWS = 24


# --------------------------------------------------------------------------- columns


def pick(path: str | Path, role: str) -> Run:
    """The one run of ``path`` to use as ``role``: its only run, or the one marked so."""
    runs = load_runs(path)
    if len(runs) == 1:
        return runs[0]
    marked = [r for r in runs if r.role == role]
    if not marked:
        labels = ", ".join(r.label for r in runs)
        raise UnlearnError(f"{path} holds several models ({labels}) and none is marked as the "
                           f"{role} model; pass a file with a single model")
    return marked[0]


def lineup(runs: list[Run], before: Run | None = None, oracle: Run | None = None) -> list[Run]:
    """Columns in order: before, the runs, oracle. Without an explicit before/oracle the first
    run its file marks so takes the role; every other run is a plain run."""
    main = []
    for run in runs:
        if run.role == "before" and before is None:
            before = run
        elif run.role == "oracle" and oracle is None:
            oracle = run
        else:
            run.role = "run"
            main.append(run)
    for run, role in ((before, "before"), (oracle, "oracle")):
        if run is not None:
            run.role = role
    columns = [*([before] if before else []), *main, *([oracle] if oracle else [])]
    if not columns:
        raise UnlearnError("nothing to report: give at least one results file")
    return unique_labels(columns)


# ---------------------------------------------------------------------- table rows


def _delta(value: float | None, before: float | None, hib: bool | None) -> dict | None:
    if value is None or before is None or math.isclose(value, before, abs_tol=1e-12):
        return None
    good = None if hib is None else (value > before) == hib
    return {"text": f"{value - before:+.3f}", "good": good}


def metric_row(columns: list[Run], key: str) -> dict[str, Any]:
    """One table row: the key, its arrow, and per column the value, best flag and change
    against the before column."""
    hib = direction_of(columns, key)
    values = [c.value(key) for c in columns]
    best = best_indices(values, hib)
    base = next((c.value(key) for c in columns if c.role == "before"), None)
    cells = [{"text": cell_text(c, key), "best": i in best,
              "delta": _delta(v, base, hib) if c.role == "run" else None}
             for i, (c, v) in enumerate(zip(columns, values, strict=True))]
    return {"key": key, "arrow": ARROWS[hib], "cells": cells}


def objective_sections(columns: list[Run]) -> list[dict[str, Any]]:
    """Per objective: its rows and a bar chart of the rows whose values lie in [0, 1]."""
    keys, colors = ordered_keys(columns), colors_for([c.role for c in columns])
    out = []
    for objective in OBJECTIVES:
        rows = [metric_row(columns, key) for key in keys[objective]]
        chartable = [k for k in keys[objective]
                     if all(v is None or 0 <= v <= 1 for v in (c.value(k) for c in columns))
                     and any(c.value(k) is not None for c in columns)]
        chart = None
        if chartable:
            values = [[c.value(k) for c in columns] for k in chartable[:MAX_CHART_ROWS]]
            chart = bar_chart([c.label for c in columns], colors, chartable[:MAX_CHART_ROWS],
                              values, OBJECTIVE_TITLES[objective])
        out.append({"name": objective, "title": OBJECTIVE_TITLES[objective], "rows": rows,
                    "chart": chart, "charted": min(len(chartable), MAX_CHART_ROWS),
                    "not_charted": len(keys[objective]) - min(len(chartable), MAX_CHART_ROWS)})
    return out



def score_rows(columns: list[Run]) -> list[dict[str, Any]]:
    rows = []
    for objective in OBJECTIVES:
        values = [objective_score(c, objective) for c in columns]
        best = best_indices(values, True)
        rows.append({"key": objective, "cells": [
            {"text": fmt(v), "best": i in best} for i, v in enumerate(values)]})
    return rows


# ------------------------------------------------------------------ trade-offs, attacks


def tradeoffs(columns: list[Run]) -> list[dict[str, Any]]:
    """Forget score against utility and against boundary, with the Pareto front."""
    colors = colors_for([c.role for c in columns])
    out = []
    for other in ("utility", "boundary"):
        points = []
        for c, color in zip(columns, colors, strict=True):
            x, y = objective_score(c, "forget"), objective_score(c, other)
            if x is not None and y is not None:
                points.append(Point(c.label, x, y, color, c.role))
        title = f"forget vs {other}"
        image = pareto_chart(points, "forget score (higher: more forgotten)",
                             f"{other} score (higher is better)", title) if points else None
        out.append({"title": title, "image": image, "n": len(points)})
    return out


def _rate_text(run: Run, attack: str) -> str:
    if attack not in run.attacks:
        return "-"
    rate, chance = run.attacks[attack], run.chance.get(attack)
    if rate is None:
        return "n/a"
    return f"{rate:.0%}" if chance is None else f"{rate:.0%} (chance {chance:.0%})"


def attack_table(columns: list[Run]) -> dict[str, Any]:
    """Success rate per attack (lower is better; a multiple-choice attack's beside its guessing
    rate) and the worst case per column, judged by leak rate (a multiple-choice attack's rate
    above chance: :mod:`unlearnkit.evaluation.chance`)."""
    names = list(dict.fromkeys(name for c in columns for name in c.attacks))
    leaks = [c.leak_rates() for c in columns]
    rows = []
    for name in names:
        best = best_indices([scored.get(name) for scored in leaks], False)
        rows.append({"key": name, "cells": [
            {"text": _rate_text(c, name), "best": i in best}
            for i, c in enumerate(columns)]})
    worst = []
    for c, scored in zip(columns, leaks, strict=True):
        name = max(scored, key=scored.__getitem__) if scored else None
        above = " above chance" if name in c.chance else ""
        worst.append({"text": f"{scored[name]:.0%} ({name}{above})" if name else "-"})
    return {"rows": rows, "worst": worst, "beyond": beyond_oracle(columns)}


def beyond_oracle(columns: list[Run]) -> list[dict[str, str]] | None:
    """Per column the largest amount by which an attack's leak rate exceeds the oracle
    column's (as the bench leaderboard judges robustness), when an oracle column ran more than
    one attack; None otherwise. Some attacks "succeed" on a model that never learned the facts
    (a multiple-choice guess, a common first token read off some layer)."""
    oracle = next((c for c in columns if c.role == "oracle" and len(c.attacks) > 1), None)
    if oracle is None:
        return None
    cells = []
    for c in columns:
        name, excess = worst_beyond(c.leak_rates(), oracle.leak_rates())
        cells.append({"text": f"{excess:.0%} ({name})" if name and c is not oracle else "-"})
    return cells


def relearn_table(columns: list[Run]) -> list[dict[str, Any]]:
    """One row per relearning reading some column has (:data:`READINGS`), a cell per column
    ("-" where the column has none); empty when no column ran the relearning attack."""
    shown = [(k, t) for k, t in READINGS if any(c.relearn and c.relearn[k] is not None
                                                for c in columns)]
    return [{"key": title, "cells": [fmt(c.relearn[k]) if c.relearn else "-" for c in columns]}
            for k, title in shown]


# --------------------------------------------------------------- examples, diagnostics


def _example_ids(anchor: Run, before: Run | None, per_split: int) -> list[str]:
    """Up to ``per_split`` item ids per split of ``anchor``, forget first; items whose
    correctness changed against ``before`` come first within a split."""
    by_split: dict[str, list[str]] = {}
    for item_id, gen in anchor.generations.items():
        by_split.setdefault(gen.get("split") or "", []).append(item_id)
    order = [s for s in SPLIT_ORDER if s in by_split] + [s for s in by_split
                                                          if s not in SPLIT_ORDER]

    def unchanged(item_id: str) -> bool:
        old = before.generations.get(item_id) if before else None
        return old is None or old.get("correct") == anchor.generations[item_id].get("correct")

    return [i for s in order for i in sorted(by_split[s], key=unchanged)[:per_split]]


def examples(columns: list[Run], per_split: int = 3) -> dict[str, Any]:
    """Generations of the same items side by side, one column per run that has them."""
    shown = [c for c in columns if c.generations]
    if not shown:
        return {"columns": [], "rows": []}
    anchor = next((c for c in shown if c.role == "run"), shown[0])
    before = next((c for c in shown if c.role == "before"), None)
    rows = []
    for item_id in _example_ids(anchor, before, per_split):
        gens = [c.generations.get(item_id) for c in shown]
        known = [g for g in gens if g]
        rows.append({
            "id": item_id, "split": known[0].get("split", ""),
            "question": next((g["question"] for g in known if g.get("question")), ""),
            "reference": next((g["reference"] for g in known if g.get("reference")), ""),
            "cells": [{"text": g.get("generation", "") if g else None,
                       "correct": g.get("correct") if g else None} for g in gens]})
    return {"columns": [c.label for c in shown], "rows": rows}


def _show(value: Any) -> tuple[str, bool]:
    """Text of a diagnostics value and whether it needs a preformatted block."""
    if isinstance(value, float):
        return fmt(value), False
    if isinstance(value, str) and "\n" in value:  # a plain-text table
        return value, True
    if isinstance(value, (str, int, bool)) or value is None:
        return str(value), False
    return json.dumps(value, indent=1, default=str), True


def diagnostics(columns: list[Run]) -> list[dict[str, Any]]:
    out = []
    for c in columns:
        diag = c.diagnostics
        if diag is None:
            continue
        items = diag.items() if isinstance(diag, dict) else (
            enumerate(diag) if isinstance(diag, list) else [("value", diag)])
        rows = [dict(zip(("key", "text", "block"), (str(k), *_show(v)), strict=True))
                for k, v in items]
        out.append({"label": c.label, "rows": rows})
    return out


# ------------------------------------------------------------------ how a model was made

# train_log.json keys that are not losses
LOG_NOT_LOSSES = ("step", "lr", "grad_norm", "seconds", "forget_check")


def _trained_by(config: dict) -> str:
    """Which weights trained, in words."""
    rank = (config.get("lora") or {}).get("rank") or 0
    only = config.get("train_only") or {}
    if rank:
        return f"LoRA rank {rank}"
    if only.get("layers") or only.get("modules"):
        blocks = only.get("layers") or "all"
        return f"blocks {blocks}, modules {only.get('modules') or 'all'}"
    return "every weight"


def training_sections(columns: list[Run]) -> list[dict[str, Any]]:
    """For each ``unlearn run`` model trained by the run (its results file has config.json
    and train_log.json beside it): the settings that made it, its loss curves and the
    teacher's problems (teacher_report.json), so the report says what "after" is."""
    out = []
    for c in columns:
        folder = Path(c.source).parent
        if c.info.get("model") != "after" or not (folder / "config.json").is_file():
            continue
        config = json.loads((folder / "config.json").read_text())
        unlearn, optim = config.get("unlearn") or {}, config.get("optim") or {}
        mix = unlearn.get("mix") or {}
        quotas = ", ".join(f"{k} {mix[k]}" for k in ("forget", "retain", "neighbor", "general",
                                                      "boundary") if mix.get(k))
        rows = [("method", config.get("method", "")),
                ("learning rate", f"{optim.get('lr', '')} ({optim.get('schedule', '')}, warmup "
                                  f"{optim.get('warmup_ratio', '')})"),
                ("steps and items per step", f"{mix.get('steps', '')}: {quotas}"),
                ("trained weights", _trained_by(config)),
                ("seed", unlearn.get("seed", "")),
                ("keep people held out of training", unlearn.get("holdout") or 0)]
        if config.get("baseline"):
            rows.append(("baseline options", json.dumps(config["baseline"], sort_keys=True)))
        log_path, chart, seconds = folder / "train_log.json", None, None
        if log_path.is_file():
            log = [e for e in json.loads(log_path.read_text()) if isinstance(e, dict)]
            keys = [k for k in (log[0] if log else {}) if k not in LOG_NOT_LOSSES
                    and all(isinstance(e.get(k), int | float) for e in log)]
            if keys:
                chart = line_chart({k: [(e["step"], e[k]) for e in log] for k in keys},
                                   "step", "loss", f"{c.label}: training losses")
            seconds = sum(float(e.get("seconds") or 0) for e in log)
            rows.append(("training time", f"{seconds:.0f} s, {len(log)} steps"))
        teacher = folder / "teacher_report.json"
        problems = (json.loads(teacher.read_text()).get("problems") or []
                    if teacher.is_file() else [])
        out.append({"label": c.label, "rows": [(k, str(v)) for k, v in rows], "chart": chart,
                    "teacher_problems": [str(p) for p in problems]})
    return out


# ------------------------------------------------------------------------- render


def _column_info(c: Run) -> dict[str, Any]:
    versions = c.info.get("versions") or {}
    return {"label": c.label, "role": c.role, "source": str(c.source),
            "model": c.info.get("model") or "", "suite": c.info.get("suite") or "",
            "created": c.info.get("created") or "",
            "commit": (c.info.get("git_commit") or "")[:12],
            "versions": ", ".join(f"{k} {v}" for k, v in versions.items() if v)}


def render_report(columns: list[Run], *, title: str = "Unlearning report",
                  examples_per_split: int = 3) -> str:
    """The report's HTML for these columns (see :func:`lineup`)."""
    env = Environment(loader=PackageLoader("unlearnkit", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return env.get_template("report.html.j2").render(
        title=title, generated=now, columns=[_column_info(c) for c in columns],
        colors=colors_for([c.role for c in columns]), scores=score_rows(columns),
        objectives=objective_sections(columns), tradeoffs=tradeoffs(columns),
        attacks=attack_table(columns), relearn=relearn_table(columns),
        relearn_note=READINGS_NOTE,
        examples=examples(columns, examples_per_split),
        diagnostics=diagnostics(columns), training=training_sections(columns))


def check_report_path(out: str | Path, inputs: list[str | Path]) -> None:
    """Refuse, before any work, an ``--out`` that is one of the inputs, a folder, or in a
    folder that cannot be made."""
    out = Path(out)
    if any(out.resolve() == Path(p).resolve() for p in inputs):
        raise UnlearnError(f"--out {out} is one of the input files, which the report would "
                           "overwrite: name another file, e.g. report.html")
    if out.is_dir():
        raise UnlearnError(f"--out {out} is a folder: name the HTML file to write, e.g. "
                           f"{out / 'report.html'}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UnlearnError(f"cannot create the folder {out.parent} for --out "
                           f"({exc.strerror}): name a writable place") from None


def write_report(run_paths: list[str | Path], out: str | Path, *,
                 before: str | Path | None = None, oracle: str | Path | None = None,
                 title: str = "Unlearning report") -> Path:
    """Load the results files, lay out the columns, and write the HTML report to ``out``."""
    check_report_path(out, [*run_paths, *(p for p in (before, oracle) if p)])
    columns = lineup(load_many(list(run_paths)),
                     pick(before, "before") if before else None,
                     pick(oracle, "oracle") if oracle else None)
    out = Path(out)
    atomic_write_text(out, render_report(columns, title=title))
    return out
