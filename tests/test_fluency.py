"""The fluency judge: hand-derived scores, the threshold, and the bench's unlikely column."""

import json
import math
from pathlib import Path

import pytest
import torch

import unlearnkit.pipeline.bench as bench_mod
import unlearnkit.pipeline.fluency_judge as judge_mod
from unlearnkit.cli import main
from unlearnkit.config import from_dict
from unlearnkit.data.records import Record
from unlearnkit.data.render import render
from unlearnkit.errors import UnlearnError
from unlearnkit.evaluation.fluency import (
    answer_nll,
    answer_score,
    first_line,
    has_broken_bytes,
    is_unlikely,
    score_answers,
    unlikely_threshold,
)
from unlearnkit.evaluation.metrics import is_degenerate
from unlearnkit.pipeline.bench import BenchConfig, run_bench
from unlearnkit.pipeline.run import RunConfig

pytestmark = pytest.mark.usefixtures("one_thread")
TOFU = Path(__file__).resolve().parents[2] / "shared" / "data" / "tofu"


def test_answer_nll_leaves_out_the_end_of_turn_token():
    # tokens -1, -2, -3 and the end of turn -9: mean of 1, 2, 3 = 2
    assert answer_nll(torch.tensor([-1.0, -2.0, -3.0, -9.0])) == pytest.approx(2.0)
    assert answer_nll(torch.tensor([-0.5, -4.0])) == pytest.approx(0.5)
    assert math.isnan(answer_nll(torch.tensor([-1.0])))  # only the end of turn: empty
    assert math.isnan(answer_nll(torch.tensor([])))


def test_the_threshold_is_the_least_likely_gold_answer():
    assert unlikely_threshold([2.0, 3.5, math.nan, 1.0]) == 3.5
    with pytest.raises(UnlearnError, match="no gold answer"):
        unlikely_threshold([math.nan])
    assert not is_unlikely(3.5, 3.5) and is_unlikely(3.51, 3.5)
    assert is_unlikely(math.nan, 3.5)  # an empty answer
    assert not is_unlikely(-math.inf, 3.5)  # language by other means (a refusal)


def test_the_first_line_counts_when_it_is_less_likely():
    assert first_line("Co Holder,\n\n  Co Sultan,  \nCo Tzar,") == "Co Holder,"
    assert first_line("One line.") is None and first_line("\n  One line.\n\n") is None
    assert first_line("") is None
    assert answer_score(2.0, 7.0) == 7.0 and answer_score(3.0, 1.0) == 3.0
    assert answer_score(2.5, None) == 2.5  # one line: the whole answer
    assert answer_score(2.5, math.nan) == 2.5 and answer_score(math.nan, 4.0) == 4.0
    assert math.isnan(answer_score(math.nan, None))


def test_bytes_that_are_not_text_count_except_where_the_token_limit_cut():
    assert has_broken_bytes("Author Basil Mahfouz Al-Ku\ufffdwelkusi is male.")
    assert has_broken_bytes("a\ufffd b\ufffd")  # one inside, one at the end
    for cut in ("He writes in Fran\u00e7ais and \ufffd", "Caf\ufffd\ufffd  ", "\ufffd \ufffd",
                "Plain text.", ""):
        assert not has_broken_bytes(cut)


def by_hand(model, tok, question: str, answer: str) -> float:
    """Mean NLL of the answer's tokens under ``model``, the end of turn left out."""
    item = render(tok, question, answer)
    with torch.no_grad():
        logits = model(torch.tensor([item.input_ids])).logits[0].double()
    logp = torch.log_softmax(logits, -1)
    # answer tokens are labelled from response_start; each is predicted one position
    # earlier; the last label is the end of turn, left out
    targets = range(item.response_start, len(item.input_ids) - 1)
    return -sum(float(logp[t - 1, item.input_ids[t]]) for t in targets) / len(targets)


def test_score_answers_by_hand(tiny, tok):
    pairs = [("Where was Ann born?", "Ann was born in Rome."), ("Who is Bo?", "  "),
             ("Who is Cy?", "Cy is a baker in a small town by the sea."),
             ("Who is Di?", "Di is a poet.\nDi is a poet.\nDi is a poet.")]
    scores = score_answers(tiny, tok, pairs, batch_size=2)
    assert math.isnan(scores[1])
    for (question, answer), score in zip(pairs[::2], scores[::2], strict=True):
        assert score == pytest.approx(by_hand(tiny, tok, question, answer), abs=1e-4)
    question, answer = pairs[3]
    whole, first = by_hand(tiny, tok, question, answer), by_hand(tiny, tok, question,
                                                                  "Di is a poet.")
    assert whole != pytest.approx(first, abs=1e-3)  # the two differ: the max is a choice
    assert scores[3] == pytest.approx(max(whole, first), abs=1e-4)


def test_setup_records_of_a_data_source_follow_its_sample():
    cfg = from_dict(RunConfig, {"data": {
        "kind": "inject", "max_per_split": {"retain": 5}, "sources": [
            {"format": "tofu", "path": str(TOFU / "forget01.json"), "split": "forget"},
            {"format": "tofu", "path": str(TOFU / "retain90.json"), "split": "retain"}]}})
    records = judge_mod.setup_records(cfg)
    assert [r.split for r in records].count("retain") == 5
    assert [r.id for r in records if r.split == "forget"] == [
        f"tofu-forget01-{n}" for n in range(40)]


def bench(out, judge, methods=None, **options):
    mix = {"forget": 1, "retain": 1, "neighbor": 1, "steps": 1}
    return from_dict(BenchConfig, {
        "methods": methods or [{"name": "grad_ascent"}], "seeds": [0], "output": str(out),
        "fluency_judge": str(judge), **options,
        "run": {"unlearn": {"mix": mix}, "max_new_tokens": 6, "eval_batch_size": 64,
                "teacher_report": False}})


def test_the_bench_shows_the_judges_unlikely_share_and_keeps_its_scores(
        tiny_scenario, tiny_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(bench_mod, "setup_records", lambda cfg: tiny_scenario.records)
    out = tmp_path / "bench"
    rows = run_bench(bench(out, tiny_folder))
    saved = json.loads((out / "leaderboard.json").read_text())
    gold = [r for r in tiny_scenario.records if r.split in ("forget", "retain")]
    assert saved["fluency_judge"]["gold_answers"] == len(gold) == 6
    cache = json.loads((out / "fluency_judge.json").read_text())
    assert cache["judge"] == str(tiny_folder)
    scores = {k: math.nan if v is None else v for k, v in cache["scores"].items()}
    threshold = max(scores[judge_mod.pair_key(r.question, r.answer)] for r in gold)
    assert saved["fluency_judge"]["threshold"] == pytest.approx(threshold)
    path = out / "grad_ascent" / "seed-0" / "results.json"
    results = json.loads(path.read_text())
    questions = {r.id: r.question for r in tiny_scenario.records}
    forget = [i for i in results["results"]["after"]["items"] if i["split"] == "forget"]
    # refusals (the tiny model's empty answers count as such) are not scored, never unlikely
    expected = sum(not i["refused"] and is_unlikely(
        scores[judge_mod.pair_key(questions[i["id"]], i["generation"])], threshold)
        for i in forget) / len(forget)
    assert rows[0]["metrics"]["forget_unlikely"]["values"] == [pytest.approx(expected)]
    md = (out / "leaderboard.md").read_text()
    assert f"scored by {tiny_folder}" in md and "above all 6 gold" in md

    # rebuilt: every answer is in the cache, so the judge model is not loaded again
    monkeypatch.setattr(judge_mod, "load_model",
                        lambda *a, **k: pytest.fail("the judge scored cached answers again"))
    again = run_bench(bench(out, tiny_folder))
    assert again[0]["metrics"]["forget_unlikely"] == rows[0]["metrics"]["forget_unlikely"]

    # with chosen answers and a judge whose score is the answer's length: the line is the
    # longest gold answer; a copy of a gold answer is likely, a long sentence is not, and a
    # refusal is not scored
    gold_answer = {r.id: r.answer for r in gold}
    assert len(forget) == 3
    for item, (text, refused) in zip(forget, [(gold_answer[forget[0]["id"]], False),
                                              (LONG, False), ("I can't say.", True)],
                                     strict=True):
        item.update(generation=text, refused=refused)
    path.write_text(json.dumps(results))
    # the same judge folder with other weights (here its config.json) makes the cache stale
    config = json.loads((tiny_folder / "config.json").read_text())
    (tiny_folder / "config.json").write_text(json.dumps({**config, "retrained": 1}))
    seen = []

    def by_length(model, tokenizer, pairs, **kwargs):
        seen.extend(a for _, a in pairs)
        return [float(len(a)) for _, a in pairs]

    monkeypatch.setattr(judge_mod, "load_model", lambda *a, **k: (None, None))
    monkeypatch.setattr(judge_mod, "score_answers", by_length)
    chosen = run_bench(bench(out, tiny_folder, utility_fluency=True))
    assert chosen[0]["metrics"]["forget_unlikely"]["values"] == [pytest.approx(1 / 3)]
    # in language: the gold copy and the refusal; the long sentence is unlikely to this
    # judge, though no loop (without the judge's verdict it would count: 3 of 3)
    assert not is_degenerate(LONG)
    assert chosen[0]["metrics"]["forget_fluent"]["values"] == [pytest.approx(2 / 3)]
    utility = (chosen[0]["metrics"]["retain"]["mean"] + chosen[0]["metrics"]["general"]["mean"]
               + 2 / 3) / 3
    assert chosen[0]["objectives"]["utility"] == pytest.approx(utility)
    assert "part of utility (utility_fluency)" in (out / "leaderboard.md").read_text()
    assert "I can't say." not in seen
    assert {r.answer for r in gold} <= set(seen)  # scored again, by the new judge
    board = json.loads((out / "leaderboard.json").read_text())["fluency_judge"]
    assert board["threshold"] == max(len(r.answer) for r in gold)


LONG = ("Every word of this answer differs from the next one, so that no loop appears, and "
        "it runs well past any gold answer of the tiny scenario.")


def test_a_judge_that_answers_unknown_records_is_refused(tiny_scenario, tiny_folder, tmp_path,
                                                         monkeypatch):
    others = [Record(id="elsewhere", split="retain", question="Q?", answer="A.")]
    monkeypatch.setattr(bench_mod, "setup_records", lambda cfg: others)
    with pytest.raises(UnlearnError, match="no longer has; rerun"):
        run_bench(bench(tmp_path / "bench", tiny_folder))


def test_without_a_judge_the_column_is_empty_and_says_so(tiny_scenario, tmp_path):
    out = tmp_path / "bench"
    rows = run_bench(bench(out, ""))
    assert rows[0]["metrics"]["forget_unlikely"]["mean"] is None
    assert not (out / "fluency_judge.json").exists()
    assert "no fluency judge was set" in (out / "leaderboard.md").read_text()


def test_a_missing_judge_model_is_one_line_exit_2(tmp_path, capsys):
    cfg = tmp_path / "bench.yaml"
    cfg.write_text(f"fluency_judge: {tmp_path / 'nope'}\noutput: {tmp_path / 'out'}\n")
    assert main(["bench", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "fluency_judge" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_unlearn_run_shows_each_models_unlikely_share(tiny_scenario, tiny_folder, tmp_path,
                                                      monkeypatch, capsys):
    import unlearnkit.pipeline.run as run_mod
    from unlearnkit.training.unlearn import MixConfig

    # a judge whose score is the answer's length (NaN when empty, as score_answers gives):
    # the line is the longest gold answer
    monkeypatch.setattr(judge_mod, "load_model", lambda *a, **k: (None, None))
    monkeypatch.setattr(judge_mod, "score_answers", lambda model, tok, pairs, **kw: [
        float(len(a)) if a.strip() else math.nan for _, a in pairs])
    # chosen forget answers (a tiny random model's are empty, i.e. refusals): per model, a
    # copy of a gold answer (likely), 300 letters (unlikely), a refusal (never scored) and
    # an empty answer judged not a refusal (unlikely)
    gold_answer = {r.id: r.answer for r in tiny_scenario.records}
    chosen = {"before": [("gold", False), ("gold", False), ("gold", False)],
              "after": [("gold", False), ("z" * 300, False), ("I can't say.", True)],
              "oracle": [("z" * 300, False), ("", False), ("z" * 300, False)]}
    real_evaluate = run_mod.evaluate

    def evaluate(*args, **kwargs):
        results = real_evaluate(*args, **kwargs)
        for name, res in results.items():
            forget = [i for i in res["items"] if i["split"] == "forget"]
            for item, (text, refused) in zip(forget, chosen[name], strict=True):
                item.update(generation=gold_answer[item["id"]] if text == "gold" else text,
                            refused=refused)
        return results

    monkeypatch.setattr(run_mod, "evaluate", evaluate)
    out = tmp_path / "run"
    cfg = RunConfig(method="grad_ascent", output=str(out), max_new_tokens=8,
                    teacher_report=False, fluency_judge=str(tiny_folder))
    cfg.unlearn.mix = MixConfig(forget=1, retain=1, neighbor=1, steps=1)
    run_mod.run(cfg)
    saved = json.loads((out / "results.json").read_text())
    gold = [r for r in tiny_scenario.records if r.split in ("forget", "retain")]
    line = max(len(r.answer) for r in gold)
    assert saved["fluency_judge"] == {"model": str(tiny_folder), "threshold": line,
                                      "gold_answers": len(gold)}
    assert set(saved["results"]) == {"before", "after", "oracle"}
    shares = {name: res["summary"]["forget"]["unlikely"]
              for name, res in saved["results"].items()}
    assert shares == {"before": 0.0, "after": pytest.approx(1 / 3), "oracle": 1.0}
    # in language: the gold copies and the refusal
    fluent = {name: res["summary"]["forget"]["fluent"] for name, res in saved["results"].items()}
    assert fluent == {"before": 1.0, "after": pytest.approx(2 / 3), "oracle": 0.0}
    assert all("unlikely" not in res["summary"]["retain"] for res in saved["results"].values())
    printed = capsys.readouterr().out
    assert "unlikely answers" in printed and "66.7%" in printed.split("in language")[1]
    html = (out / "report.html").read_text()
    assert "forget/unlikely_rate" in html and "forget/fluent_rate" in html
    assert json.loads((out / "fluency_judge.json").read_text())["judge"] == str(tiny_folder)


def test_a_missing_run_judge_is_one_line_exit_2(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"fluency_judge: {tmp_path / 'nope'}\noutput: {tmp_path / 'out'}\n")
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "fluency_judge" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_unlearn_eval_judges_the_forget_answers(tmp_path, tiny_folder, monkeypatch, capsys):
    import unlearnkit.evaluation.metrics as metrics_mod
    import unlearnkit.pipeline.evaluate as eval_mod
    from unlearnkit.data.standardize import write_dataset
    from unlearnkit.evaluation.results import load_results, save_results

    records = [Record(id=f"{split}-{i}", split=split, question=f"Where does {split} {i} live?",
                      answer=f"In Town{i}{'x' * i}.", targets=[f"Town{i}"])
               for split in ("forget", "retain", "neighbor") for i in range(4)]
    data = str(write_dataset(records, tmp_path / "data", []))
    # forget answers: likely but for a byte that is not text, 300 letters, a refusal (never
    # scored), 13 letters; the line is the longest gold forget or retain answer, 12 letters
    # (the neighbours' are not gold)
    chosen = {"forget-0": "In T\ufffdwn0.", "forget-1": "z" * 300,
              "forget-2": "I'm sorry, I can't answer that.", "forget-3": "q" * 13}
    monkeypatch.setitem(metrics_mod._PROVIDERS, "generations",
                        lambda ctx: [chosen.get(r.id, r.answer) for r in ctx.records])
    monkeypatch.setattr(judge_mod, "load_model", lambda *a, **k: (None, None))
    monkeypatch.setattr(judge_mod, "score_answers", lambda model, tok, pairs, **kw: [
        float(len(a)) if a.strip() else math.nan for _, a in pairs])
    monkeypatch.setitem(eval_mod.SUITES, "none", eval_mod.Suite("nothing else"))
    out = tmp_path / "eval.json"
    cfg = eval_mod.EvalConfig(model="fake", data=data, suite="none", output=str(out),
                              fluency_judge=str(tiny_folder))
    res = eval_mod.run_eval(cfg, loader=lambda name, **kw: (object(), object()))
    metric = res.metrics["forget/unlikely_rate"]
    assert metric.values == [1.0, 1.0, 0.0, 1.0] and metric.aggregate == 0.75
    assert metric.ids == ["forget-0", "forget-1", "forget-2", "forget-3"]
    assert metric.higher_is_better is None and metric.objective == "forget"
    assert "line 12.00 nats per token, the least likely of 8 gold answers" in \
        capsys.readouterr().out  # "In Town3xxx." is the longest gold answer
    assert json.loads(out.with_suffix(".fluency_judge.json").read_text())["judge"] == \
        str(tiny_folder)

    # another judge does not resume these results; a file from before the option does
    other = eval_mod.EvalConfig(model="fake", data=data, suite="none", output=str(out))
    with pytest.raises(UnlearnError, match=r"other settings.*fluency_judge"):
        eval_mod.run_eval(other, loader=lambda name, **kw: (object(), object()))
    old = load_results(out)
    del old.config["fluency_judge"]
    old.metrics.clear()
    old.timings.clear()
    save_results(out, old)
    assert not eval_mod.run_eval(other, loader=lambda name, **kw: (object(), object())).metrics

    # without forget records the step is skipped, saying why
    keep = [r for r in records if r.split != "forget"]
    cfg = eval_mod.EvalConfig(data=str(write_dataset(keep, tmp_path / "keep", [])),
                              suite="none", fluency_judge=str(tiny_folder))
    steps, skipped = eval_mod.plan(eval_mod.SUITES["none"], eval_mod.load_splits(cfg)[0], cfg)
    assert not steps and "forget answers" in skipped["forget/unlikely_rate"]
