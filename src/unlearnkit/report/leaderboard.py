"""The `unlearn bench` leaderboard: per method, mean and confidence interval over seeds.

Metrics of one run come from its ``results.json`` (the "after" model): forget, retain, neighbour
and general answer accuracy, the refusal rate on retain + neighbour questions (over-refusal),
the prefill attack's success rate, and the share of forget answers that are degenerate (empty,
mostly repeated word trigrams, or a loop that compresses,
:func:`~unlearnkit.evaluation.metrics.degenerate_rate`): a method that "forgets" by answering
the forget questions with gibberish (RMU's signature) shows there, not in the accuracy. The last
column is shown but is not one of the front's objectives, which METHOD.md fixes. Per method the
leaderboard has their mean and Student-t interval over seeds (:mod:`.stats`), and whether the
method is on the Pareto front of four objectives computed from the means, all higher-is-better:
forget = 1 - forget accuracy, utility = mean(retain, general accuracy), boundary = neighbour
accuracy, robustness = 1 - prefill success. Reference rows (the oracle) are shown but are not
candidates for the front. An objective no method measures (a setup without neighbours, such as
TOFU) is left out of the front; a method missing one that others measure is not a candidate.
With a ``forget_margin`` and an oracle row, a method whose mean forget accuracy exceeds the
oracle's by more than the margin has not unlearned and is not a candidate either: otherwise the
model that was never touched (or a method that does nothing at its rate) would sit on the front
by keeping everything. With ``floor_at_oracle`` the front's objectives also count forget
accuracy and prefill success as at least the oracle's (:func:`capped_means`): forgetting past
a model never trained on the forget set then earns nothing. When every method held keep people
out of training (``unlearn.holdout``), retain accuracy in utility and neighbour accuracy in the
boundary are those of the held-out people (:func:`held_out_splits`). When the runs attacked
with more than the prefill attack (``run.attacks``), robustness is 1 - the worst attack's leak
rate, or, when the oracle ran the same attacks, 1 - the largest amount by which an attack's
rate exceeds the oracle's (:func:`with_excess`): some attacks "succeed" on a model that never
learned the facts. When the runs ran the relearning attack, a table shows its success before
and after relearning and the test answers' NLL (whole and fact tokens) before and after."""

from __future__ import annotations

import datetime
import statistics
from collections.abc import Sequence
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from unlearnkit.errors import UnlearnError
from unlearnkit.evaluation.attacks.relearn import READINGS, READINGS_NOTE
from unlearnkit.evaluation.chance import leak_rates, worst_beyond
from unlearnkit.evaluation.metrics import degenerate_rate
from unlearnkit.report.plots import Point, colors_for, pareto_chart
from unlearnkit.report.runs import pipeline_attacks, pipeline_relearn
from unlearnkit.report.stats import dominates, mean_ci, pareto_indices

# key, column title, higher is better
METRICS = (
    ("forget", "forget acc", False),
    ("retain", "retain acc", True),
    ("neighbor", "neighbour acc", True),
    ("general", "general acc", True),
    ("keep_refusal", "refusal on retain+neighbour", False),
    ("prefill", "prefill attack success", False),
    # the worst case of the run's attacks (leak rates: a multiple-choice attack's above its
    # guessing rate), when it ran more than the prefill attack (RunConfig.attacks)
    ("attack_worst", "worst attack success", False),
    # the same, each attack's rate less the oracle's (floored at 0), when the oracle ran them
    ("attack_excess", "worst attack beyond the oracle", False),
    ("forget_degenerate", "degenerate forget answers", False),
    ("forget_unlikely", "unlikely forget answers", False),
    ("forget_fluent", "forget answers in language", True),
    # unlearn.holdout: the keep people left out of unlearning's training (columns shown only
    # when some run held people out)
    ("retain_held_out", "retain acc, held out", True),
    ("neighbor_held_out", "neighbour acc, held out", True),
)
OBJECTIVES = ("forget", "utility", "boundary", "robustness")
OBJECTIVE_TEXT = {"forget": "1 - forget", "utility": "mean(retain, general)",
                  "boundary": "neighbour", "robustness": "1 - prefill"}
FLUENT_UTILITY = "mean(retain, general, forget answers in language)"
WORST_ROBUSTNESS = "1 - worst attack"
EXCESS_ROBUSTNESS = "1 - worst attack beyond the oracle's rate"
OPTIONAL = ("retain_held_out", "neighbor_held_out", "attack_worst", "attack_excess")
HELD_TEXT = {"retain": "retain", "neighbor": "neighbour"}


def shown_metrics(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    """:data:`METRICS` less the optional columns no row has a value for."""
    return [m for m in METRICS if m[0] not in OPTIONAL
            or any(r["metrics"][m[0]]["mean"] is not None for r in rows)]


def run_metrics(after: dict[str, Any]) -> dict[str, float | None]:
    """One run's metrics from its results' ``after`` entry (``summary``, ``prefill_attack``,
    and the judged answers, ``items``)."""
    summary = after["summary"]
    forget_answers = [item["generation"] for item in after.get("items", [])
                      if item["split"] == "forget"]

    def accuracy(split: str, part: str | None = None) -> float | None:
        found = summary.get(split)
        if found and part:
            found = found.get(part)
        return found["accuracy"] if found else None

    rates, chance = pipeline_attacks(after)
    leaks = leak_rates(rates, chance)
    keep = [summary[s] for s in ("retain", "neighbor") if s in summary]
    n = sum(s["n"] for s in keep)
    degenerate = degenerate_rate(forget_answers).aggregate if forget_answers else None
    return {"forget": accuracy("forget"), "retain": accuracy("retain"),
            "neighbor": accuracy("neighbor"), "general": accuracy("general"),
            "keep_refusal": sum(s["refusal"] * s["n"] for s in keep) / n if n else None,
            "prefill": after.get("prefill_attack"),
            "attack_worst": max(leaks.values()) if len(rates) > 1 and leaks else None,
            # per attack (the leaderboard's attack table), and a choice attack's chance
            "attacks": rates, "attack_chance": chance,
            # the relearning attack's figures before and after (the leaderboard's table)
            "relearn": pipeline_relearn(after),
            "forget_degenerate": degenerate,
            # the bench's fluency judge fills these in, when it has one: the unlikely share,
            # and the share in language counts its verdicts too
            "forget_unlikely": None,
            "forget_fluent": None if degenerate is None else 1 - degenerate,
            "retain_held_out": accuracy("retain", "held_out"),
            "neighbor_held_out": accuracy("neighbor", "held_out")}


CAPPED = ("forget", "prefill", "attack_worst")  # lower is better; the oracle sets a floor


def capped_means(means: dict[str, float | None], oracle: dict[str, float | None] | None
                 ) -> dict[str, float | None]:
    """``means`` with forget accuracy and prefill success raised to at least the oracle's
    (unchanged without an oracle, or where either value is missing): forgetting past a model
    never trained on the forget set earns nothing."""
    out = dict(means)
    for key in CAPPED:
        if oracle and out.get(key) is not None and oracle.get(key) is not None:
            out[key] = max(out[key], oracle[key])
    return out


def objective_scores(means: dict[str, float | None], fluency: bool = False,
                     held_out: frozenset[str] = frozenset()) -> dict[str, float | None]:
    """The four objectives (higher is better) from mean metrics; None where a metric is.
    ``fluency``: utility also averages the share of forget answers in language (METHOD.md's
    utility is "retain set, general knowledge, fluency"). ``held_out``: the keep splits
    (``retain``, ``neighbor``) judged on their people held out of training alone
    (:func:`held_out_splits`)."""
    means = {**means, **{k: means[f"{k}_held_out"] for k in held_out}}
    attack = next((means[k] for k in ("attack_excess", "attack_worst", "prefill")
                   if means.get(k) is not None), None)
    parts = ("retain", "general", "forget_fluent") if fluency else ("retain", "general")
    kept = [v for v in (means.get(k) for k in parts) if v is not None]
    return {
        "forget": None if means["forget"] is None else 1 - means["forget"],
        "utility": statistics.fmean(kept) if kept else None,
        "boundary": means["neighbor"],
        "robustness": None if attack is None else 1 - attack,
    }


def run_leaks(run: dict[str, Any]) -> dict[str, float]:
    """One run's leak rate per attack (:func:`~unlearnkit.evaluation.chance.leak_rates`)."""
    return leak_rates(run.get("attacks") or {}, run.get("attack_chance") or {})


def oracle_leaks(entries: Sequence[dict[str, Any]]) -> dict[str, float] | None:
    """The first reference entry's (the oracle's) mean leak rate per attack, when its runs ran
    more than the prefill attack; else None."""
    for entry in entries:
        runs = [run_leaks(r) for r in entry["runs"] if len(r.get("attacks") or {}) > 1]
        if entry.get("reference") and runs:
            names = dict.fromkeys(k for r in runs for k in r)
            return {k: statistics.fmean(r[k] for r in runs if k in r) for k in names}
    return None


def with_excess(run: dict[str, Any], oracle: dict[str, float]) -> dict[str, Any]:
    """``run`` with ``attack_excess``: the largest amount by which one of its attacks' leak
    rates exceeds the oracle's (0 when none does; None when it ran no attack the oracle ran).
    An attack a model that never learned the facts also "wins" (a multiple-choice guess, a
    common first token read off some layer) then counts only for what it recovers beyond."""
    excess = worst_beyond(run_leaks(run), oracle)[1]
    return {**run, "attack_excess": excess if len(run.get("attacks") or {}) > 1 else None}


def held_out_splits(rows: Sequence[dict[str, Any]]) -> frozenset[str]:
    """The keep splits whose people held out of training (``unlearn.holdout``) every method
    row measures: the front judges those splits on them alone, as what a method keeps of
    people it was shown says little about the people it was not."""
    methods = [r for r in rows if not r["reference"]]
    return frozenset(k for k in ("retain", "neighbor") if methods and all(
        r["metrics"][f"{k}_held_out"]["mean"] is not None for r in methods))


def front_objectives(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The objectives the Pareto front is judged on: those some non-reference row measures."""
    return [k for k in OBJECTIVES
            if any(r["objectives"][k] is not None for r in rows if not r["reference"])]


def front_note(rows: Sequence[dict[str, Any]]) -> str:
    """``1 - forget, mean(retain, general), ...``: the front's objectives in words."""
    words = OBJECTIVE_TEXT | ({"utility": FLUENT_UTILITY}
                              if rows and rows[0].get("fluent_utility") else {})
    for key, text in (("attack_worst", WORST_ROBUSTNESS), ("attack_excess", EXCESS_ROBUSTNESS)):
        if any(r["metrics"][key]["mean"] is not None for r in rows if not r["reference"]):
            words["robustness"] = text
    text = ", ".join(words[k] for k in front_objectives(rows)) or "no objective measured"
    held = sorted(held_out_splits(rows), reverse=True)  # retain, then neighbor
    if held:
        text += (f"; {' and '.join(HELD_TEXT[k] for k in held)} accuracy of the people held "
                 "out of training")
    if rows and rows[0].get("floored"):
        text += ("; forget accuracy and attack success counted as at least the oracle's")
    return text


def summarize(values: Sequence[float | None], confidence: float) -> dict[str, Any]:
    """Mean and CI half-width of the values that exist (both None when none does)."""
    present = [v for v in values if v is not None]
    mean, ci = mean_ci(present, confidence) if present else (None, None)
    return {"mean": mean, "ci": ci, "n": len(present), "values": list(values)}


def forget_limit(rows: Sequence[dict[str, Any]], margin: float | None) -> float | None:
    """The highest mean forget accuracy that counts as forgetting: the oracle's + ``margin``
    (None without a margin or an oracle row with a forget accuracy)."""
    oracle = [r["metrics"]["forget"]["mean"] for r in rows
              if r["reference"] and r["metrics"]["forget"]["mean"] is not None]
    return None if margin is None or not oracle else min(oracle) + margin


def reference_means(rows: Sequence[dict[str, Any]]) -> dict[str, float | None] | None:
    """The mean metrics of the first reference row (the oracle) with a forget accuracy."""
    return next(({k: v["mean"] for k, v in r["metrics"].items()} for r in rows
                 if r["reference"] and r["metrics"]["forget"]["mean"] is not None), None)


def leaderboard(entries: Sequence[dict[str, Any]], confidence: float = 0.95,
                forget_margin: float | None = None, floor_at_oracle: bool = False,
                utility_fluency: bool = False) -> list[dict]:
    """One row per entry (``label``, ``method``, ``seeds``, ``runs``: per-seed metrics, and
    ``reference``): metric summaries, objectives, ``forgets`` (mean forget accuracy within
    ``forget_margin`` of the oracle's; None when not judged), ``forget_limit``, ``pareto``
    (None: reference or missing) and ``dominated_by`` (the labels of the candidates that
    dominate the row, on means). ``floor_at_oracle``: the objectives (not the metrics) count
    forget accuracy and prefill success as at least the reference row's (:func:`capped_means`);
    ``utility_fluency``: utility averages the share of forget answers in language too
    (:func:`objective_scores`)."""
    rows = []
    oracle = oracle_leaks(entries)
    for entry in entries:
        if oracle and not entry.get("reference"):
            entry = {**entry, "runs": [with_excess(r, oracle) for r in entry["runs"]]}
        metrics = {key: summarize([r.get(key) for r in entry["runs"]], confidence)
                   for key, _, _ in METRICS}
        names = dict.fromkeys(k for r in entry["runs"] for k in r.get("attacks") or {})
        attacks = {k: summarize([(r.get("attacks") or {}).get(k) for r in entry["runs"]],
                                confidence) for k in names}
        chance = {k: statistics.fmean(c) for k in names
                  if (c := [r["attack_chance"][k] for r in entry["runs"]
                            if k in (r.get("attack_chance") or {})])}
        relearn = [r.get("relearn") or {} for r in entry["runs"]]
        protocol = [r.get("protocol") or {} for r in entry["runs"]]
        rows.append({"label": entry["label"], "method": entry["method"],
                     "seeds": list(entry["seeds"]), "reference": bool(entry.get("reference")),
                     "metrics": metrics, "attacks": attacks, "attack_chance": chance,
                     "relearn": {k: summarize([r.get(k) for r in relearn], confidence)
                                 for k, _ in READINGS} if any(relearn) else None,
                     "protocol": {k: summarize([(p.get(k) or {}).get("value") for p in protocol],
                                               confidence)
                                  for k in dict.fromkeys(k for p in protocol for k in p)},
                     "protocol_direction": {k: v.get("higher_is_better") for p in protocol
                                            for k, v in p.items()},
                     "pareto": None, "dominated_by": []})
    floor = reference_means(rows) if floor_at_oracle else None
    if floor_at_oracle and floor is None:
        raise UnlearnError("floor_at_oracle needs the oracle among the bench's methods "
                           "(a reference row with a forget accuracy)")
    held = held_out_splits(rows)
    for row in rows:
        row["objectives"] = objective_scores(capped_means(
            {k: v["mean"] for k, v in row["metrics"].items()}, floor), utility_fluency,
            held if not row["reference"] else frozenset())
        row["floored"] = floor is not None
        row["fluent_utility"] = utility_fluency
    limit = forget_limit(rows, forget_margin)
    for row in rows:
        forget = row["metrics"]["forget"]["mean"]
        row["forget_limit"] = limit
        row["forgets"] = (None if limit is None or row["reference"] or forget is None
                          else forget <= limit + 1e-9)
    keys = front_objectives(rows)
    candidates = [i for i, row in enumerate(rows) if not row["reference"] and keys
                  and row["forgets"] is not False
                  and all(row["objectives"][k] is not None for k in keys)]
    points = [[rows[i]["objectives"][k] for k in keys] for i in candidates]
    front = pareto_indices(points)
    for j, i in enumerate(candidates):
        rows[i]["pareto"] = j in front
        rows[i]["dominated_by"] = [rows[candidates[k]]["label"] for k, other in enumerate(points)
                                   if dominates(other, points[j])]
    return rows


def limit_note(rows: Sequence[dict[str, Any]]) -> str:
    """How a method qualifies for the front, when forgetting is judged against the oracle."""
    limit = rows[0]["forget_limit"] if rows else None  # the same on every row
    return ("" if limit is None else
            f", among the methods that forget (mean forget accuracy <= {limit:.3f}, the "
            "oracle's plus the bench's forget_margin)")


def cell(summary: dict[str, Any]) -> str:
    """``0.250 ± 0.031``; without an interval (one seed) just the mean; "-" when missing."""
    if summary["mean"] is None:
        return "-"
    return f"{summary['mean']:.3f}" + ("" if summary["ci"] is None else f" ± {summary['ci']:.3f}")


def pareto_text(row: dict[str, Any]) -> str:
    if row["reference"]:
        return "reference"
    if row["forgets"] is False:
        return (f"no (does not forget: {row['metrics']['forget']['mean']:.3f} > "
                f"{row['forget_limit']:.3f})")
    if row["pareto"] is False:
        return f"no (dominated by {', '.join(row['dominated_by'])})"
    return {True: "yes", None: "n/a"}[row["pareto"]]


def judge_note(judge: dict | None) -> str:
    """What the unlikely column means, or that no judge ran."""
    if judge is None:
        return "Unlikely forget answers: no fluency judge was set (bench fluency_judge)."
    return (f"Unlikely forget answers: scored by {judge['model']} (mean negative log-likelihood "
            "per answer token after the question, or of the first line alone when higher) "
            f"above all {judge['gold_answers']} gold forget and retain answers (above "
            f"{judge['threshold']:.2f} nats), or holding bytes that are not text (a replacement "
            "character before the end); refusals are never counted: word salad, mangled "
            "names; shown, not judged.")


def to_markdown(rows: Sequence[dict[str, Any]], confidence: float = 0.95,
                judge: dict | None = None) -> str:
    """A Markdown table, one row per method (``|`` in labels escaped)."""
    shown = shown_metrics(rows)
    head = ["method", "seeds", *[f"{t} {'↑' if hib else '↓'}" for _, t, hib in shown],
            "Pareto"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in rows:
        cells = [row["label"].replace("|", "\\|"), str(len(row["seeds"])),
                 *[cell(row["metrics"][k]) for k, _, _ in shown], pareto_text(row)]
        lines.append("| " + " | ".join(cells) + " |")
    note = (f"\nMean ± half-width of the {confidence:.0%} Student-t interval over seeds. Pareto: "
            f"not dominated on ({front_note(rows)}){limit_note(rows)}. Degenerate forget "
            "answers (empty, more than half their word trigrams repeated, or their last 400 "
            f"bytes compressing below 0.45) are shown, not judged. {judge_note(judge)} "
            f"{fluent_note(rows, judge)}\n")
    return ("\n".join(lines) + "\n" + note + attack_markdown(rows, confidence)
            + relearn_markdown(rows, confidence) + protocol_markdown(rows, confidence))


def attack_names(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The attacks some row ran, in the order they ran; empty when no row ran more than the
    prefill attack (the main table's column says all then)."""
    names = list(dict.fromkeys(k for r in rows for k in r.get("attacks") or {}))
    return names if len(names) > 1 else []


def attack_cell(row: dict[str, Any], name: str) -> str:
    """A row's mean success of one attack (with its interval; a multiple-choice attack's beside
    its guessing rate)."""
    text = cell(row["attacks"].get(name) or {"mean": None})
    chance = row.get("attack_chance", {}).get(name)
    return text if chance is None or text == "-" else f"{text} (chance {chance:.2f})"


def attack_markdown(rows: Sequence[dict[str, Any]], confidence: float) -> str:
    """Per method the success rate of every attack its runs ran (empty without more than the
    prefill attack)."""
    names = attack_names(rows)
    if not names:
        return ""
    lines = ["| method | " + " | ".join(f"{n} ↓" for n in names) + " |",
             "|" + " --- |" * (len(names) + 1)]
    for row in rows:
        lines.append("| " + " | ".join([row["label"].replace("|", "\\|"),
                                         *[attack_cell(row, n) for n in names]]) + " |")
    return ("\n## Attack success on the forget questions\n\n" + "\n".join(lines)
            + f"\n\n{ATTACK_NOTE} Mean ± half-width of the {confidence:.0%} Student-t "
            "interval over seeds.\n")


ATTACK_NOTE = ("Share of forget questions each attack makes the model answer (unlearn eval's "
               "attacks; the relearning attack: of the test half, at its worst learning rate). "
               "A multiple-choice attack always picks an option: a model that never learned "
               "the facts scores its chance, and the worst case counts it above chance, "
               "(rate - chance) / (1 - chance), floored at 0. With the oracle among the rows, "
               "the worst case beyond the oracle takes each attack's rate less the oracle's.")


def relearn_columns(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """The :data:`READINGS` some row has a value for (none: no row ran the attack)."""
    return [(k, t) for k, t in READINGS
            if any(r.get("relearn") and r["relearn"][k]["mean"] is not None for r in rows)]


def partial_cell(summary: dict[str, Any]) -> str:
    """:func:`cell`, saying how many seeds it holds when only some runs recorded the figure
    (runs older than it)."""
    n, of = summary["n"], len(summary["values"])
    return cell(summary) + (f" ({n} of {of} seeds)" if 0 < n < of else "")


def relearn_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per row that ran the relearning attack: its label and a cell per shown reading."""
    shown = relearn_columns(rows)
    return [{"label": r["label"], "cells": [partial_cell(r["relearn"][k]) for k, _ in shown]}
            for r in rows if r.get("relearn")]


def relearn_markdown(rows: Sequence[dict[str, Any]], confidence: float) -> str:
    """The relearning table (empty when no row ran the attack)."""
    return table_section("Relearning", [t for _, t in relearn_columns(rows)],
                         relearn_rows(rows), READINGS_NOTE, confidence)


def table_section(title: str, titles: list[str], shown: list[dict[str, Any]], note: str,
                  confidence: float) -> str:
    """A Markdown section: a table of ``shown`` rows (label and cells) under ``titles``, and
    its note (empty without rows)."""
    if not shown:
        return ""
    lines = ["| method | " + " | ".join(titles) + " |", "|" + " --- |" * (len(titles) + 1)]
    lines += ["| " + " | ".join([r["label"].replace("|", "\\|"), *r["cells"]]) + " |"
              for r in shown]
    return (f"\n## {title}\n\n" + "\n".join(lines) + f"\n\n{note} Mean ± half-width of "
            f"the {confidence:.0%} Student-t interval over seeds.\n")


def protocol_columns(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """The protocol's metrics some row has (``run.protocol``: unlearn eval's suite on each
    run's model), each with its direction's arrow (· when it has none)."""
    keys = dict.fromkeys(k for r in rows for k in r.get("protocol") or {})
    arrows = {True: "↑", False: "↓", None: "·"}
    return [(k, arrows[next((r["protocol_direction"].get(k) for r in rows
                             if k in (r.get("protocol_direction") or {})), None)])
            for k in keys]


def protocol_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per row with protocol results: its label and a cell per protocol metric."""
    shown = protocol_columns(rows)
    return [{"label": r["label"],
             "cells": [partial_cell(r["protocol"].get(k) or summarize([], 0.95))
                       for k, _ in shown]}
            for r in rows if r.get("protocol")]


PROTOCOL_NOTE = ("The benchmark's own protocol (the run's protocol stage: unlearn eval's suite on "
                 "the model each run trained), as its authors compute it.")


def protocol_markdown(rows: Sequence[dict[str, Any]], confidence: float) -> str:
    """The protocol table (empty when no run had a protocol stage)."""
    return table_section("The benchmark's protocol",
                         [f"{k} {arrow}" for k, arrow in protocol_columns(rows)],
                         protocol_rows(rows), PROTOCOL_NOTE, confidence)


def fluent_note(rows: Sequence[dict[str, Any]], judge: dict | None) -> str:
    """What the "in language" column counts, and whether the front uses it."""
    what = "neither degenerate nor unlikely" if judge else "not degenerate (no judge)"
    use = ("part of utility (utility_fluency)" if rows and rows[0].get("fluent_utility")
           else "shown, not judged")
    return f"Forget answers in language: {what}, refusals included; {use}."


def tradeoff_chart(rows: Sequence[dict[str, Any]]) -> str | None:
    """Forget score against utility (means), with the two-objective front drawn."""
    shown = [r for r in rows if r["objectives"]["forget"] is not None
             and r["objectives"]["utility"] is not None]
    if not shown:
        return None
    roles = ["oracle" if r["reference"] else "run" for r in shown]
    points = [Point(r["label"], r["objectives"]["forget"], r["objectives"]["utility"], color, role)
              for r, color, role in zip(shown, colors_for(roles), roles, strict=True)]
    retain = "held-out retain" if "retain" in held_out_splits(rows) else "retain"
    return pareto_chart(points, "forget score (1 - forget accuracy)",
                        f"utility (mean of {retain} and general accuracy)", "forget vs utility")


def render_html(rows: Sequence[dict[str, Any]], *, title: str = "Unlearning leaderboard",
                confidence: float = 0.95, judge: dict | None = None) -> str:
    """A self-contained HTML page (autoescaped; the chart is an inline PNG)."""
    env = Environment(loader=PackageLoader("unlearnkit", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    shown = shown_metrics(rows)
    table = [{"label": r["label"], "method": r["method"], "seeds": len(r["seeds"]),
              "cells": [cell(r["metrics"][k]) for k, _, _ in shown],
              "pareto": pareto_text(r)} for r in rows]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    names = attack_names(rows)
    return env.get_template("leaderboard.html.j2").render(
        title=title, generated=now, confidence=f"{confidence:.0%}",
        columns=[(t, "↑" if hib else "↓") for _, t, hib in shown], rows=table,
        attack_names=names, attack_note=ATTACK_NOTE,
        attack_rows=[{"label": r["label"], "cells": [attack_cell(r, n) for n in names]}
                     for r in rows] if names else [],
        relearn_columns=[t for _, t in relearn_columns(rows)], relearn_rows=relearn_rows(rows),
        relearn_note=READINGS_NOTE,
        protocol_columns=[f"{k} {arrow}" for k, arrow in protocol_columns(rows)],
        protocol_rows=protocol_rows(rows), protocol_note=PROTOCOL_NOTE,
        objectives=front_note(rows) + limit_note(rows), chart=tradeoff_chart(rows),
        judge=judge_note(judge))
