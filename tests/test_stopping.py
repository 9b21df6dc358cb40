"""``unlearn.stop``: train until the forget questions are forgotten, for every method."""

import json

import pytest

import unlearnkit.pipeline.stopping as stopping
from unlearnkit.data.records import Record
from unlearnkit.errors import UnlearnError
from unlearnkit.pipeline.run import run
from unlearnkit.pipeline.stopping import chain, forget_check
from unlearnkit.training.loop import OptimConfig, train
from unlearnkit.training.unlearn import MixConfig, StopConfig

pytestmark = pytest.mark.usefixtures("one_thread")

FORGET = [Record(id=f"f{i}", split="forget", question=f"Where was person {i} born?",
                 answer=f"Town{i}.", targets=[f"Town{i}"]) for i in range(4)]


@pytest.mark.parametrize(("field", "value", "message"), [
    ("every", -1, "stop.every must be >= 0"),
    ("forget_accuracy", 1.5, "fraction in \\[0, 1\\]"),
    ("forget_accuracy", -0.1, "fraction in \\[0, 1\\]"),
])
def test_stop_config_is_checked(field, value, message):
    with pytest.raises(UnlearnError, match=message):
        StopConfig(**{field: value})


def test_forget_check_logs_the_accuracy_and_stops_at_the_threshold(tiny, tok, monkeypatch):
    """Checks run on multiples of ``every`` only; 2 of 4 correct (50%) does not stop at a 25%
    threshold, 1 of 4 (25%) does; the model goes back to training mode after each check."""
    answers = iter([[True, True, False, False], [True, False, False, False]])
    seen = []

    def fake(model, tokenizer, records, **kwargs):
        seen.append((model.training, [r.id for r in records], kwargs["max_new_tokens"]))
        return [{"correct": c} for c in next(answers)]

    monkeypatch.setattr(stopping, "answer_records", fake)
    assert forget_check(tiny, tok, FORGET, StopConfig(every=0), max_new_tokens=8,
                        rouge_threshold=0.5) is None
    assert forget_check(tiny, tok, [], StopConfig(every=2), max_new_tokens=8,
                        rouge_threshold=0.5) is None
    hook = forget_check(tiny, tok, FORGET, StopConfig(every=2, forget_accuracy=0.25),
                        max_new_tokens=8, rouge_threshold=0.5)
    tiny.train()
    logs = [{} for _ in range(4)]
    assert [hook(step, logs[step - 1]) for step in (1, 2, 3, 4)] == [False, False, False, True]
    assert logs == [{}, {"forget_check": 0.5}, {}, {"forget_check": 0.25}]
    assert seen == [(False, ["f0", "f1", "f2", "f3"], 8)] * 2  # generated in eval mode
    assert tiny.training


def test_forget_check_judges_real_generations(tiny, tok):
    """On a tiny random model the answers are wrong: accuracy 0, which meets a 0 threshold."""
    hook = forget_check(tiny, tok, FORGET, StopConfig(every=1, forget_accuracy=0.0),
                        max_new_tokens=3, rouge_threshold=0.5)
    logs = {}
    assert hook(1, logs) is True and logs == {"forget_check": 0.0}


def test_chain_runs_every_hook_and_stops_when_any_does():
    calls = []

    def first(step, logs):
        calls.append(("first", step))
        return step == 2

    def second(step, logs):
        calls.append(("second", step))
        logs["second"] = step

    hook = chain(None, first, second)
    entry = {}
    assert hook(1, entry) is False and hook(2, entry) is True
    assert calls == [("first", 1), ("second", 1), ("first", 2), ("second", 2)]
    assert entry == {"second": 2}
    assert chain(None, None) is None


def test_the_loop_keeps_what_a_hook_logs_and_stops_where_it_says(tiny, tok):
    from unlearnkit.data.render import render_record
    from unlearnkit.training.sft import epoch_plan, sft_step

    items = [render_record(tok, r) for r in FORGET]
    plan = epoch_plan(items, 2, epochs=3, seed=0)  # 6 steps

    def hook(step, logs):
        logs["seen"] = step * 10
        return step == 3

    history = train(tiny, plan, sft_step(tok.pad_token_id), OptimConfig(lr=1e-3), on_step=hook)
    assert [h["step"] for h in history] == [1, 2, 3]
    assert [h["seen"] for h in history] == [10, 20, 30]


@pytest.mark.parametrize("method", ["pushpull", "grad_ascent"])
def test_a_run_stops_once_forgotten_and_logs_the_checks(method, tiny_scenario, tmp_path):
    """A tiny random model never answers a forget question: with checks every 2 steps and a
    0% threshold, a 6-step budget ends at step 2, for push-pull and a baseline alike."""
    from unlearnkit.pipeline.run import RunConfig

    cfg = RunConfig(method=method, output=str(tmp_path / method), max_new_tokens=4,
                    eval_batch_size=64, eval_references=False, report=False,
                    teacher_report=False)
    cfg.unlearn.mix = MixConfig(forget=1, retain=1, neighbor=1, steps=6)
    cfg.unlearn.stop = StopConfig(every=2, forget_accuracy=0.0)
    cfg.unlearn.teacher.top_k = cfg.unlearn.method.top_m = 4
    run(cfg)
    log = json.loads((tmp_path / method / "train_log.json").read_text())
    assert [h["step"] for h in log] == [1, 2]
    assert "forget_check" not in log[0] and log[1]["forget_check"] == 0.0
