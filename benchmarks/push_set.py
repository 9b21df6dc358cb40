"""What does the push's top-M part push? Per forget fact, at its first revealing position
(the first token the run's reveal setting pushes), teacher-forced on the true answer.

Usage: python benchmarks/push_set.py [MODEL...] [--config configs/demo.yaml] [--top-m 20]

METHOD.md's push lowers H(t) = {the true next token} plus the student's top-M tokens outside
the instructed teacher's top-K. On people who share a question (everyone has a birth town, an
employer, an email handle), the student's strong alternatives at a forget person's value are
the values of other people. For the injected model (the starting point) and each MODEL, over
the forget records of the config's scenario, this counts:

* pushed: the mean number of top-M tokens in H(t) (the true token not counted);
* keep share: of those, the share that is a keep person's (retain or neighbour) value token at
  the same place of the value (same question, i.e. the record id's attribute);
* keep values hit: the keep records with such a token, out of the keep records asked the
  questions of the forget facts measured;
* true hits: for comparison, the keep records whose value has the forget fact's own token
  there (what a push of the true token alone lowers).

Prints one table row per model and one JSON line.
"""

import json
import sys
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _machine import describe
from _setup import injected_run, models_parser

from unlearnkit.cli import _quiet_libraries
from unlearnkit.config import load_config
from unlearnkit.models.engine import forward_responses
from unlearnkit.models.loader import load_model
from unlearnkit.pipeline.run import RunConfig
from unlearnkit.training.reveal import reveal_by_contrast


def attribute(record_id: str) -> str:
    """The question a scenario record asks: ``person-16-birth_town`` -> ``birth_town``."""
    return record_id.split("-", 2)[-1]


def value_tokens(tokenizer, records) -> dict[str, dict[tuple[int, int], set[str]]]:
    """Per attribute: (place in the value, token) -> the keep records with that token there."""
    table: dict[str, dict[tuple[int, int], set[str]]] = defaultdict(lambda: defaultdict(set))
    for r in records:
        if r.split in ("retain", "neighbor") and r.targets:
            ids = tokenizer(" " + r.targets[0], add_special_tokens=False).input_ids
            for j, tok in enumerate(ids):
                table[attribute(r.id)][j, tok].add(r.id)
    return table


def value_start(response: list[int], value: list[int]) -> int | None:
    """Where the value's tokens start inside the response's, if they appear there."""
    for s in range(len(response) - len(value) + 1):
        if response[s:s + len(value)] == value:
            return s
    return None


@torch.no_grad()
def pushed_sets(model, tokenizer, examples, records, top_m: int, table) -> dict:
    win = forward_responses(model, [e.true_input for e in examples], tokenizer.pad_token_id)
    by_id = {r.id: r for r in records}
    n_pushed = n_keep = measured = 0
    hit: set[str] = set()
    true_hit: set[str] = set()
    exposed: set[str] = set()
    for r, e in enumerate(examples):
        rec = by_id.get(e.record_id)
        if rec is None or not rec.targets or not e.reveal or True not in e.reveal:
            continue
        response = e.true_input.input_ids[e.true_input.response_start:]
        value = tokenizer(" " + rec.targets[0], add_special_tokens=False).input_ids
        start = value_start(response, value)
        t = e.reveal.index(True)
        if start is None or not start <= t < start + len(value):
            continue
        measured += 1
        z = win.logits[r, e.true_input.response_start - 1 - win.offset + t].float()
        teacher = set(e.true_top.indices[t].tolist())
        pushed = [i for i in z.topk(top_m).indices.tolist() if i not in teacher
                  and i != response[t]]
        keep = table.get(attribute(rec.id), {})
        for ids in keep.values():
            exposed |= ids
        found = [keep[t - start, i] for i in pushed if (t - start, i) in keep]
        n_pushed += len(pushed)
        n_keep += len(found)
        for ids in found:
            hit |= ids
        true_hit |= keep.get((t - start, response[t]), set())
    return {"pushed": n_pushed / max(measured, 1), "keep_share": n_keep / max(n_pushed, 1),
            "keep_values_hit": len(hit), "keep_values": len(exposed),
            "true_hits": len(true_hit), "facts": measured, "forget_items": len(examples)}


def main() -> None:
    parser = models_parser(__doc__, "*", "the run config (its scenario and teacher settings "
                           "find the injected model and the teacher cache)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, as `unlearn run --set`")
    parser.add_argument("--top-m", type=int, default=20)
    args = parser.parse_args()
    _quiet_libraries()
    print(f"machine: {describe()}")
    cfg = load_config(RunConfig, args.config, args.set)
    run = injected_run(cfg)
    teacher, tok, forget, records = run.model, run.tokenizer, run.forget, run.records
    if cfg.unlearn.method.reveal == "contrast":  # the positions the run pushes
        reveal_by_contrast(teacher, tok, forget, run.prepared.records, cfg.unlearn.method)
    table = value_tokens(tok, run.prepared.records)
    results = {"injected": pushed_sets(teacher, tok, forget, records, args.top_m, table)}
    for name in args.models:
        model, _ = load_model(name)
        results[name] = pushed_sets(model, tok, forget, records, args.top_m, table)
    print(f"\n{'model':<44}{'pushed':>8}{'keep share':>12}{'keep values hit':>17}"
          f"{'true hits':>11}")
    for name, r in results.items():
        print(f"{name[-44:]:<44}{r['pushed']:>8.1f}{r['keep_share']:>12.0%}"
              f"{r['keep_values_hit']:>9} of {r['keep_values']:<5}{r['true_hits']:>9}")
    print(f"({results['injected']['facts']} of {len(forget)} forget facts measured)")
    print(json.dumps({"top_m": args.top_m, "results": results}))


if __name__ == "__main__":
    main()
