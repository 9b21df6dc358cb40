"""Would the tune choose other rates if forgetting beyond the oracle's earned nothing?

Usage: python benchmarks/tune_capped.py TUNE_JSON ORACLE_RESULTS_JSON [--runs FOLDER ...]

TUNE_JSON: an `unlearn tune` record (``results/tune-tofu/tune.json``: every grid point's mean
metrics). ORACLE_RESULTS_JSON: the results of the oracle on the same validation setup (an
`unlearn run` with ``method: oracle`` on the tune's validation data). Per method, the tune's
choice by its selection score (:func:`unlearnkit.pipeline.tune.selection_score`), and the
choice by the same score with the forget accuracy and the prefill attack's success raised to
at least the oracle's (a model never trained on the forget set is the most forgetting that
can be told from generalisation; :func:`unlearnkit.pipeline.tune.capped_means`, what
``unlearn tune`` does with ``cap_at_oracle: true``); prints both and marks the methods whose
choice changes.
``--runs``: run folders of points swept outside the tune (``<label>--lr-<lr>/seed-0``), grouped
into methods by the label before ``--``. TUNE_JSON may instead be a Markdown file holding the
tune's table as docs/RESULTS.md does (``| method | lr | forget | neighbour | retain | general |
prefill attack | keep refusal | score |``, percentages, the chosen row's score in bold; for the
scenario's tune, whose first runs were not kept): each row's score is recomputed and checked
against the table's. ``--fluency JUDGE``: also the choice by the capped score with fluency
in utility (``utility_fluency``: the share of each point's forget answers that are neither
degenerate nor unlikely to JUDGE, read from its run folder, ``<tune folder>/<label>/seed-0``
or a ``--runs`` folder; scores cached in ``<tune folder>/fluency_judge.json``). Trains
nothing.
"""

import argparse
import json
import re
from pathlib import Path

from unlearnkit.config import from_dict
from unlearnkit.pipeline.fluency_judge import (
    SCORES_FILE,
    answer_form,
    forget_answers,
    judge_answers,
    setup_records,
)
from unlearnkit.pipeline.run import RunConfig
from unlearnkit.pipeline.tune import capped_means, measured_objectives, selection_score
from unlearnkit.report.leaderboard import run_metrics


def lr_of(point: dict) -> str:
    return f"{point['point']['optim']['lr']:g}"


def extra_points(folders: list[Path]) -> dict[str, dict]:
    """Tune-style entries (label -> {points, chosen: None}) from recorded run folders."""
    out: dict[str, dict] = {}
    for folder in folders:
        config = json.loads((folder / "config.json").read_text())
        after = json.loads((folder / "results.json").read_text())["results"]["after"]
        label = folder.parent.name.split("--")[0]
        out.setdefault(label, {"points": [], "chosen": None})["points"].append(
            {"point": {"optim": {"lr": config["optim"]["lr"]}}, "means": run_metrics(after),
             "folder": folder})
    return out


def add_fluency(choices: dict[str, dict], tune_folder: Path, judge: str) -> None:
    """Each point's ``forget_fluent`` mean: its forget answers neither degenerate nor unlikely
    to ``judge`` (pipeline.fluency_judge, the bench's judge), one judge call for them all."""
    folders = {}
    for label, entry in choices.items():
        for k, point in enumerate(entry["points"]):
            folders[label, k] = point.get("folder") or tune_folder / point["label"] / "seed-0"
    results = {key: json.loads((f / "results.json").read_text())["results"]["after"]
               for key, f in folders.items()}
    answers = {key: forget_answers(after["items"]) for key, after in results.items()}
    first = next(iter(folders.values()))
    cfg = from_dict(RunConfig, json.loads((first / "config.json").read_text()), "run config")
    verdicts, summary = judge_answers(judge, tune_folder / SCORES_FILE, setup_records(cfg),
                                      answers, cfg.load_options())
    print(f"fluency judge {judge}: line {summary['threshold']:.2f} over "
          f"{summary['gold_answers']} gold answers")
    for (label, k), form in answer_form(verdicts, answers).items():
        choices[label]["points"][k]["means"]["forget_fluent"] = form["forget_fluent"]


ROW = re.compile(r"^\| ([\w-]+) \| ([\d.e-]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| "
                 r"([\d.]+) \| ([\d.]+) \| [\d.]+ \| (\**)([\d.]+)\** \|$", re.M)


def table_points(text: str) -> dict[str, dict]:
    """Tune-style entries from a Markdown tune table (see the module docstring)."""
    out: dict[str, dict] = {}
    for label, lr, forget, neighbor, retain, general, prefill, bold, score in ROW.findall(text):
        means = {"forget": float(forget) / 100, "neighbor": float(neighbor) / 100,
                 "retain": float(retain) / 100, "general": float(general) / 100,
                 "prefill": float(prefill) / 100}
        if abs(selection_score(means) - float(score)) > 0.0015:
            raise SystemExit(f"{label} at lr {lr}: the table's score {score} is not "
                             f"{selection_score(means):.4f}")
        point = {"point": {"optim": {"lr": float(lr)}}, "means": means}
        entry = out.setdefault(label, {"points": [], "chosen": None})
        entry["points"].append(point)
        if bold:
            entry["chosen"] = point["point"]
    if not out:
        raise SystemExit("no tune table rows found")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tune", type=Path)
    parser.add_argument("oracle", type=Path)
    parser.add_argument("--runs", nargs="*", type=Path, default=[])
    parser.add_argument("--fluency", metavar="JUDGE", default="")
    args = parser.parse_args()
    after = json.loads(args.oracle.read_text())["results"]["after"]
    oracle = {"forget": after["summary"]["forget"]["accuracy"],
              "prefill": after.get("prefill_attack")}
    print(f"oracle on the validation setup: forget {oracle['forget']:.3f}, prefill attack "
          f"{oracle['prefill']:.3f}")
    recorded = (table_points(args.tune.read_text()) if args.tune.suffix == ".md"
                else json.loads(args.tune.read_text())["choices"])
    choices = recorded | extra_points(args.runs)
    if args.fluency:
        if args.tune.suffix == ".md":
            raise SystemExit("--fluency reads each point's answers from its run folder: give "
                             "the tune.json of a tune whose run folders are kept")
        add_fluency(choices, args.tune.parent, args.fluency)
    objectives = measured_objectives([p["means"] for c in choices.values() for p in c["points"]])
    for label, entry in choices.items():
        points = sorted(entry["points"], key=lambda p: p["point"]["optim"]["lr"])
        plain = [selection_score(p["means"], objectives) for p in points]
        cap = [selection_score(capped_means(p["means"], oracle), objectives) for p in points]
        fluent = [selection_score(capped_means(p["means"], oracle), objectives, True)
                  for p in points] if args.fluency else cap
        best = [max(range(len(points)), key=lambda i: s[i]) for s in (plain, cap, fluent)]
        mark = "CHANGES" if len(set(best)) > 1 else ""
        if entry["chosen"] and points[best[0]]["point"] != entry["chosen"]:  # a tie
            mark += f" (the tune recorded {entry['chosen']['optim']['lr']:g})"
        print(f"{label:20s} plain {lr_of(points[best[0]]):>8s}  capped "
              f"{lr_of(points[best[1]]):>8s}" + (
                  f"  capped+fluency {lr_of(points[best[2]]):>8s}" if args.fluency else "")
              + f"  {mark}")
        for p, s, c, f in zip(points, plain, cap, fluent, strict=True):
            m = p["means"]
            extra = (f" in language {m['forget_fluent']:.3f}  capped+fluency {f:.3f}"
                     if args.fluency else "")
            print(f"    lr {lr_of(p):>8s} forget {m['forget']:.3f} retain {m['retain']:.3f} "
                  f"general {m['general']:.3f} prefill {m['prefill']:.3f}  score {s:.3f} "
                  f"capped {c:.3f}{extra}")


if __name__ == "__main__":
    main()
