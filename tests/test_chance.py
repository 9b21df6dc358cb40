"""A multiple-choice attack judged above its guessing rate: hand-derived values, the runner's
worst case and any-attack rate, results files and the report."""

import math

import pytest

import unlearnkit.evaluation.attacks.scoring as scoring
from unlearnkit.data.records import Record
from unlearnkit.evaluation.attacks import run_attacks
from unlearnkit.evaluation.chance import (
    above_chance,
    chance_of,
    item_chance,
    leak_rate,
    leak_rates,
    worst_beyond,
)
from unlearnkit.evaluation.results import AttackRecord, new_results
from unlearnkit.report.build import attack_table, relearn_table
from unlearnkit.report.runs import from_results


def test_item_chance_by_hand():
    assert item_chance([4]) == 0.25
    # two prompts, 4 and 2 options: missed by both with 3/4 * 1/2 = 3/8
    assert item_chance([4, 2]) == pytest.approx(0.625)
    assert item_chance([1]) == 1.0
    for bad in ([], [0], [3, 0]):
        with pytest.raises(ValueError, match=">= 1"):
            item_chance(bad)


def test_chance_of_recorded_or_from_variants():
    recorded = [{"chance": 0.25}, {"chance": 0.5}]
    assert chance_of(recorded) == 0.375
    # written before the chance was recorded: one variant with three options' log-probs
    old = [{"variants": [{"logprobs": [-1.0, -2.0, -3.0]}]},
           {"variants": [{"logprobs": [-1.0, -2.0]}]}]
    assert chance_of(old) == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert chance_of([]) is None


def test_above_chance_and_leak_rate_by_hand():
    assert above_chance(0.25, 0.25) == 0.0
    assert above_chance(1.0, 0.25) == 1.0
    assert above_chance(0.625, 0.25) == 0.5  # (0.625 - 0.25) / 0.75
    assert above_chance(0.0, 0.25) == pytest.approx(-1 / 3)
    assert above_chance(0.4, None) == 0.4  # a generated-answer attack: its own rate
    assert above_chance(None, 0.25) is None and above_chance(1.0, 1.0) is None
    assert leak_rate(0.0, 0.25) == 0.0  # below chance is floored
    assert leak_rate(0.625, 0.25) == 0.5
    assert leak_rate(0.4, None) == 0.4 and leak_rate(None, None) is None


def test_leak_rates_and_worst_beyond_by_hand():
    # mcq 0.4 at chance 0.25: 0.2 above; an attack without a rate is dropped
    leaks = leak_rates({"prefill": 0.1, "mcq": 0.4, "lens": None}, {"mcq": 0.25})
    assert leaks == {"prefill": 0.1, "mcq": pytest.approx(0.2)}
    # beyond an oracle at prefill 0.3 (floored at 0) and mcq 0.05; "relearn" is not shared
    assert worst_beyond({**leaks, "relearn": 0.9}, {"prefill": 0.3, "mcq": 0.05}) == (
        "mcq", pytest.approx(0.15))
    assert worst_beyond(leaks, {"prefill": 0.5, "mcq": 0.5}) == ("prefill", 0.0)
    assert worst_beyond(leaks, {"relearn": 0.0}) == (None, None)


def test_runner_judges_multiple_choice_above_chance(tok, tiny, monkeypatch):
    records = [Record(id=f"p{i}", split="forget", question=f"Where was person {i} born?",
                      answer=f"Town{i}.", targets=[f"Town{i}"],
                      choices=["Town0", "Town1", "Town2"], answer_index=i) for i in range(3)]
    monkeypatch.setattr(scoring, "generate", lambda model, tokenizer, prompts, **kw:
                        ["I do not know."] * len(prompts))
    monkeypatch.setattr(scoring, "first_token_logprobs", lambda model, tokenizer, groups, **kw:
                        [[1.0 if k == 0 else 0.0 for k in range(len(g))] for g in groups])
    out = run_attacks(tiny, tok, records, ["plain", "mcq"])
    mcq = out["attacks"]["mcq"]
    # always letter A: right on the first record only, the guessing rate of 3 options
    assert [i["success"] for i in mcq["items"]] == [True, False, False]
    assert [i["chance"] for i in mcq["items"]] == pytest.approx([1 / 3] * 3)
    assert mcq["success_rate"] == pytest.approx(1 / 3) and mcq["chance"] == pytest.approx(1 / 3)
    assert mcq["above_chance"] == pytest.approx(0.0)
    assert out["worst_case"]["success_rate"] == pytest.approx(0.0)
    assert out["any_attack_rate"] == 0.0  # the guessed item is not counted as revealed
    assert "chance" not in out["attacks"]["plain"]
    # every letter right: above chance 1, the worst case
    monkeypatch.setattr(scoring, "first_token_logprobs", lambda model, tokenizer, groups, **kw:
                        [[1.0 if k == n else 0.0 for k in range(len(g))]
                         for n, g in enumerate(groups)])
    out = run_attacks(tiny, tok, records, ["plain", "mcq"])
    assert out["attacks"]["mcq"]["success_rate"] == 1.0
    assert out["worst_case"] == {"attack": "mcq", "success_rate": 1.0}


def _results(chance):
    res = new_results({"model": "m"}, seed=0, name="after")
    items = [{"id": str(i), "success": i == 0,
              "variants": [{"logprobs": [0.0, -1.0, -2.0, -3.0], "success": i == 0}]}
             for i in range(4)]
    res.attacks["mcq"] = AttackRecord(0.25, 4, "choice", "multiple-choice", items, chance=chance)
    res.attacks["prefill"] = AttackRecord(0.1, 10, "prompt", "prefilling", [])
    return res


@pytest.mark.parametrize("chance", [0.25, None])  # recorded, or an older file's items
def test_results_and_report_judge_choice_attacks_above_chance(tmp_path, chance):
    res = _results(chance)
    assert res.attacks["mcq"].guess_rate() == 0.25
    assert res.attacks["mcq"].leak_rate() == 0.0 and res.attacks["prefill"].leak_rate() == 0.1
    assert res.worst_attack() == ("prefill", 0.1)  # the raw 0.25 of mcq is guessing
    run = from_results(res, tmp_path / "after.json")
    assert run.attacks == {"mcq": 0.25, "prefill": 0.1} and run.chance == {"mcq": 0.25}
    assert math.isclose(run.value("attack/worst_case"), 0.1)
    table = attack_table([run])
    assert [r["cells"][0]["text"] for r in table["rows"]] == ["25% (chance 25%)", "10%"]
    assert table["worst"][0]["text"] == "10% (prefill)"
    res.attacks["mcq"].success_rate = 0.7  # (0.7 - 0.25) / 0.75 = 0.6 above chance
    table = attack_table([from_results(res, tmp_path / "after.json")])
    assert table["worst"][0]["text"] == "60% (mcq above chance)"


def test_run_results_with_several_attacks_feed_the_report(tmp_path):
    import json

    from unlearnkit.report.runs import load_runs

    after = {"summary": {"forget": {"accuracy": 0.0, "refusal": 0.0, "n": 4}}, "items": [],
             "prefill_attack": 0.1,
             "attacks": {"prefill": {"success_rate": 0.1, "n": 4},
                         "mcq": {"success_rate": 0.5, "n": 4, "chance": 0.25,
                                 "above_chance": 1 / 3}},
             "worst_attack": {"attack": "mcq", "success_rate": 1 / 3}}
    path = tmp_path / "run" / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"results": {"after": after}}))
    (run,) = load_runs(path)
    assert run.attacks == {"prefill": 0.1, "mcq": 0.5} and run.chance == {"mcq": 0.25}
    assert run.value("attack/worst_case") == pytest.approx(1 / 3)
    assert attack_table([run])["worst"][0]["text"] == "33% (mcq above chance)"
    assert run.relearn is None and relearn_table([run]) == []
    # the relearning attack: its figures at the worst lr, per column
    after["attacks"]["relearn"] = {"success_rate": 0.25, "n": 4, "details": {
        "rate_before": 0.0, "rate_by_lr": {"0.0001": 0.25}, "answer_nll_before": 2.5,
        "answer_nll_by_lr": {"0.0001": 1.25}, "target_nll_before": None,
        "target_nll_by_lr": {"0.0001": None}, "worst_lr": 0.0001}}
    path.write_text(json.dumps({"results": {"after": after}}))
    (run,) = load_runs(path)
    res = new_results({"model": "m"}, seed=0, name="skipped")  # relearning had too few items
    res.attacks["relearn"] = AttackRecord(None, 0, "custom", "relearning",
                                          details={"skipped": "too few"})
    skipped = from_results(res, tmp_path / "skipped.json")
    assert skipped.relearn is None
    assert relearn_table([run, skipped]) == [
        {"key": "success before", "cells": ["0.000", "-"]},
        {"key": "success after", "cells": ["0.250", "-"]},
        {"key": "answer NLL before", "cells": ["2.500", "-"]},
        {"key": "answer NLL after", "cells": ["1.250", "-"]}]  # no fact NLL: no rows
    from unlearnkit.report.build import render_report
    html = render_report([run, skipped])
    assert "<h3>Relearning</h3>" in html and "answer NLL after" in html
    assert "<h3>Relearning</h3>" not in render_report([skipped])


def test_the_report_names_the_worst_attack_beyond_the_oracle(tmp_path):
    from unlearnkit.report.build import beyond_oracle

    def column(label, role, lens, relearn, mcq):
        res = new_results({"model": label}, seed=0, name=label)
        res.attacks["logit_lens"] = AttackRecord(lens, 10, "custom", "logit-lens")
        res.attacks["relearn"] = AttackRecord(relearn, 10, "custom", "relearning")
        res.attacks["mcq"] = AttackRecord(mcq, 10, "choice", "multiple-choice", chance=0.25)
        run = from_results(res, tmp_path / f"{label}.json")
        run.role = role
        return run

    # the oracle reads 0.6 off some layer and guesses the choices at chance; "after" 0.7 and
    # 0.3 relearned (0.1 and 0.3 beyond), its mcq 0.55 is (0.55 - 0.25) / 0.75 = 0.4 above
    # chance: 0.4 beyond the oracle's 0
    cols = [column("after", "run", 0.7, 0.3, 0.55), column("oracle", "oracle", 0.6, 0.0, 0.25)]
    assert attack_table(cols)["worst"][0]["text"] == "70% (logit_lens)"
    assert [c["text"] for c in beyond_oracle(cols)] == ["40% (mcq)", "-"]
    assert beyond_oracle(cols[:1]) is None  # no oracle column
