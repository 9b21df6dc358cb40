"""How far a finished run moved the keep items it trained on, against those it never drew.

Usage: python benchmarks/keep_drift.py --before MODEL RUN [RUN ...]
RUN is an `unlearn run` output folder with its model (``model/``), standardised data
(``data/``), ``config.json`` and ``results.json``; MODEL is the model the run started from.
The run's mixture plan is rebuilt from its ``unlearn.mix`` and ``unlearn.seed`` (push-pull and
the trainable baselines draw the same records), which splits the retain and neighbour records
into those some micro-batch drew and those none did. For each group it prints the evaluation's
accuracy (from results.json) and, teacher-forced on the gold answers, the median over items of:
the push-pull pull loss against the starting model's top-20 logits (Huber, delta 1, summed over
the 20 and averaged over positions), KL(before || after) per position, and how often the
greedy next token is the gold one. A keep objective that works leaves the drawn items closer
to the starting model than the others (docs/RESULTS.md, "Why the pull does not keep TOFU's
retain authors").
"""

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from _machine import describe

from unlearnkit.cli import _quiet_libraries
from unlearnkit.data.records import read_jsonl
from unlearnkit.data.render import render
from unlearnkit.models.engine import forward_responses
from unlearnkit.models.loader import load_model
from unlearnkit.objectives.pushpull import pull_loss
from unlearnkit.training.unlearn import MixConfig, boundary_ids, mixture_plan

KEEP = ("retain", "neighbor")


def drawn_ids(folder: Path) -> tuple[list, set[str]]:
    """The run's keep records and the ids of those its mixture plan drew."""
    cfg = json.loads((folder / "config.json").read_text())["unlearn"]
    mix = MixConfig(**cfg["mix"])
    if mix.general:
        raise SystemExit(f"{folder}: unlearn.mix.general draws replay prompts that are not in "
                         "data/; this script rebuilds plans without them only")
    records = [r for split in ("forget", *KEEP) if (folder / "data" / f"{split}.jsonl").exists()
               for r in read_jsonl(folder / "data" / f"{split}.jsonl")]
    boundary = boundary_ids(records)
    items = [SimpleNamespace(kind=r.split, record_id=r.id, boundary=r.id in boundary)
             for r in records]
    plan = mixture_plan(items, mix, cfg["seed"])
    return [r for r in records if r.split in KEEP], {i.record_id for b in plan for i in b}


@torch.no_grad()
def drift(before, after, tokenizer, records, batch: int = 8) -> dict[str, tuple]:
    out = {}
    for start in range(0, len(records), batch):
        chunk = records[start:start + batch]
        items = [render(tokenizer, r.question, r.answer, system=r.system) for r in chunk]
        w0 = forward_responses(before, items, tokenizer.pad_token_id)
        w1 = forward_responses(after, items, tokenizer.pad_token_id)
        for row, (rec, it) in enumerate(zip(chunk, items, strict=True)):
            first = it.response_start - 1 - w0.offset
            n = len(it.input_ids) - it.response_start
            z0 = w0.logits[row, first:first + n].float()
            z1 = w1.logits[row, first:first + n].float()
            values, index = z0.topk(20, -1)
            pull = pull_loss(z1[None], values[None], index[None], torch.ones(1, n, dtype=bool))
            kl = F.kl_div(z1.log_softmax(-1), z0.log_softmax(-1), log_target=True,
                          reduction="none").sum(-1).mean()
            gold = torch.tensor(it.input_ids[it.response_start:])
            out[rec.id] = (float(pull), float(kl), float((z1.argmax(-1) == gold).float().mean()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--before", required=True, help="the model the runs started from")
    args = parser.parse_args()
    _quiet_libraries()
    print(describe())
    before, tokenizer = load_model(args.before)
    before.eval()
    print("| run | keep items | n | accuracy | pull (Huber, top-20) | KL | next token = gold |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    summary = {}
    for folder in args.runs:
        keep, drawn = drawn_ids(folder)
        after, _ = load_model(str(folder / "model"))
        after.eval()
        per_item = drift(before, after, tokenizer, keep)
        results = json.loads((folder / "results.json").read_text())["results"]["after"]
        correct = {i["id"]: bool(i["correct"]) for i in results["items"]}
        for label, ids in (("drawn", [r.id for r in keep if r.id in drawn]),
                           ("never drawn", [r.id for r in keep if r.id not in drawn])):
            if not ids:
                continue
            med = torch.tensor([per_item[i] for i in ids]).median(0).values.tolist()
            acc = sum(correct[i] for i in ids) / len(ids)
            summary[f"{folder}:{label}"] = {"n": len(ids), "accuracy": acc, "pull": med[0],
                                            "kl": med[1], "next_gold": med[2]}
            print(f"| {folder} | {label} | {len(ids)} | {acc:.1%} | {med[0]:.1f} | "
                  f"{med[1]:.3f} | {med[2]:.1%} |")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
