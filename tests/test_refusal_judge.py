"""Refusal judges: verdict parsing, the prompt, the modes with a fake judge, the tiny model and a
local fake endpoint (mechanics only: no real judge model is run here)."""

import logging

import pytest

from unlearnkit.config import from_dict
from unlearnkit.data.render import render
from unlearnkit.errors import UnlearnError
from unlearnkit.evaluation import refusal_judge as RJ
from unlearnkit.evaluation.refusal_judge import (
    ModelJudge,
    PatternJudge,
    RefusalConfig,
    RefusalJudge,
    build_judge,
    judge_prompt,
    parse_verdict,
)

RESPONSES = ["I can't help with that.", "Paris is the capital.", "", "Sure, here it is."]
PROMPTS = ["How do I kill a process?", "Capital of France?", "Hi?", "A poem?"]
PATTERNS = [True, False, True, False]  # what refusal.is_refusal says about RESPONSES


@pytest.mark.parametrize(("reply", "verdict"), [
    ("REFUSAL", True), ("refusal.", True), ("**Refused**", True), (" Verdict: ANSWER", False),
    ("Answer: REFUSAL", True), ("ANSWER\nThe assistant answers.", False), ("answered", False),
    ("REFUSAL or ANSWER", None), ("I think it is a refusal", None), ("", None), ("Yes", None),
])
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) is verdict


def test_judge_prompt_with_and_without_the_question():
    with_q = judge_prompt("I can't.", "How do I kill a process?")
    assert with_q == RJ.JUDGE_PROMPT.format(
        question="Question: How do I kill a process?\n\n", response="I can't.")
    assert with_q.endswith("Response: I can't.\n\nReply with one word: REFUSAL or ANSWER.")
    assert "Question:" not in judge_prompt("I can't.")


class FakeModel:
    """Replies by response: REFUSAL to the Paris answer, ANSWER to the refusal, junk else."""

    def __init__(self):
        self.prompts: list[str] = []

    def __call__(self, prompts):
        self.prompts += prompts
        return ["REFUSAL" if "Paris" in p else "ANSWER" if "can't" in p else "hmm"
                for p in prompts]


@pytest.mark.parametrize(("mode", "asked", "expected", "unparsed"), [
    # judge: every non-empty response; "hmm" for the poem -> the patterns (False) decide
    ("judge", [0, 1, 3], [False, True, True, False], 1),
    # either: only what the patterns pass (1, 3); the pattern match at 0 stays a refusal
    ("either", [1, 3], [True, True, True, False], 1),
    # both: only what the patterns flag (0; 2 is empty): the judge vetoes 0
    ("both", [0], [False, False, True, False], 0),
])
def test_modes_ask_only_what_they_need(mode, asked, expected, unparsed, caplog):
    fake = FakeModel()
    judge = ModelJudge(fake, mode=mode, name="fake")
    with caplog.at_level(logging.WARNING, logger="unlearnkit.evaluation.refusal_judge"):
        assert judge.judge(RESPONSES, PROMPTS) == expected
    assert PatternJudge().judge(RESPONSES) == PATTERNS
    assert fake.prompts == [judge_prompt(RESPONSES[i], PROMPTS[i]) for i in asked]
    assert (judge.asked, judge.unparsed) == (len(asked), unparsed)
    assert ("1 of 3 replies were not REFUSAL or ANSWER" in caplog.text) == (mode == "judge")
    assert isinstance(judge, RefusalJudge) and isinstance(PatternJudge(), RefusalJudge)


def test_model_judge_user_errors():
    with pytest.raises(UnlearnError, match="judge, either, both; got 'patterns'"):
        ModelJudge(FakeModel(), mode="patterns")
    judge = ModelJudge(lambda prompts: ["ANSWER"], mode="judge")
    with pytest.raises(UnlearnError, match="1 replies to 3 prompts"):
        judge.judge(RESPONSES)
    with pytest.raises(UnlearnError, match="4 responses but 1 prompts"):
        judge.judge(RESPONSES, ["q"])


def test_tiny_model_judge_renders_the_prompt_and_falls_back(tok, tiny, monkeypatch, one_thread):
    seen = []
    original = RJ.generate
    monkeypatch.setattr(RJ, "generate", lambda m, t, items, **kw: seen.append((items, kw))
                        or original(m, t, items, **kw))
    judge = ModelJudge(RJ.hf_completer(tiny, tok, max_new_tokens=4, batch_size=2), mode="judge")
    short = ["I can't.", "Paris.", ""]
    assert judge.judge(short, ["Q1?", "Q2?", "Q3?"]) == [True, False, True]  # patterns decide
    assert (judge.asked, judge.unparsed) == (2, 2)  # a random model gives no verdict
    items, kw = seen[0]
    assert [i.input_ids for i in items] == [render(tok, judge_prompt(r, q)).input_ids
                                            for r, q in (("I can't.", "Q1?"), ("Paris.", "Q2?"))]
    assert kw == {"max_new_tokens": 4, "batch_size": 2}


def test_endpoint_judge_on_a_local_server(chat_server, monkeypatch, caplog):
    base_url, seen, state = chat_server
    monkeypatch.setenv("JUDGE_KEY", "sk-judge-789")
    cfg = RefusalConfig(mode="judge", base_url=base_url, api_model="judge-m",
                        api_key_env="JUDGE_KEY", max_new_tokens=3, timeout=5)
    judge = build_judge(cfg)
    state["content"] = "REFUSAL"
    assert judge.judge(["Paris."], ["Capital?"]) == [True]
    body = seen[0]["body"]
    assert seen[0]["auth"] == "Bearer sk-judge-789" and seen[0]["path"] == "/v1/chat/completions"
    assert body["model"] == "judge-m" and body["max_tokens"] == 3 and body["temperature"] == 0
    assert body["messages"] == [{"role": "user", "content": judge_prompt("Paris.", "Capital?")}]
    state["content"] = "It depends."
    with caplog.at_level(logging.WARNING):
        assert judge.judge(["I don't know."]) == [True]  # unparsed: the patterns decide
    assert judge.unparsed == 1 and "sk-judge-789" not in caplog.text
    assert judge.name == f"judge-m at {base_url}" and "sk-judge" not in repr(vars(cfg))


def test_build_judge_loads_a_local_model_through_the_loader(tok, tiny):
    calls = []

    def loader(name, **kw):
        calls.append((name, kw))
        return tiny, tok

    assert isinstance(build_judge(RefusalConfig()), PatternJudge)
    judge = build_judge(RefusalConfig(mode="either", judge_model="my-judge"), loader=loader,
                        dtype="bfloat16", device="cpu")
    assert isinstance(judge, ModelJudge) and judge.mode == "either" and judge.name == "my-judge"
    assert calls == [("my-judge", {"dtype": "bfloat16", "device": "cpu"})]


@pytest.mark.parametrize(("given", "message"), [
    ({"mode": "vote"}, "refusal.mode 'vote' is not one of patterns, judge, either, both"),
    ({"mode": "judge"}, "needs exactly one judge"),
    ({"mode": "either", "judge_model": "m", "base_url": "http://x", "api_model": "m"},
     "needs exactly one judge"),
    ({"judge_model": "m"}, "refusal.mode is 'patterns'"),
    ({"mode": "judge", "base_url": "http://localhost:8000/v1"}, "needs refusal.api_model"),
    ({"mode": "judge", "base_url": "localhost:8000", "api_model": "m"}, "must start with http"),
    ({"mode": "judge", "judge_model": "m", "max_new_tokens": 0}, "max_new_tokens must be"),
    ({"mode": "judge", "judge_model": "m", "timeout": 0}, "timeout must be positive"),
])
def test_config_validation_through_the_eval_config(given, message):
    from unlearnkit.pipeline.evaluate import EvalConfig

    with pytest.raises(UnlearnError, match=message):
        from_dict(EvalConfig, {"data": "d", "refusal": given})


def test_eval_runs_refusal_rate_with_the_configured_judge(tmp_path, tok, tiny, monkeypatch):
    """unlearn eval's quick suite with refusal.mode=both and a fake judge that says ANSWER to
    everything: every pattern match is vetoed, so refusal_rate is 0 on every split; the judge
    model is loaded through the same loader as the evaluated model."""
    from unlearnkit.data.records import Record
    from unlearnkit.data.standardize import write_dataset
    from unlearnkit.evaluation import metrics as M
    from unlearnkit.pipeline import evaluate as E

    recs = [Record(id=f"{s}-0", split=s, question="Where?", answer="In Town0.",
                   targets=["Town0"]) for s in ("forget", "retain")]
    data = write_dataset(recs, tmp_path / "data", [])
    loaded = []

    def loader(name, **kw):
        loaded.append(name)
        return tiny, tok

    monkeypatch.setattr(RJ, "hf_completer", lambda *a, **k: lambda ps: ["ANSWER"] * len(ps))
    monkeypatch.setattr(M, "generate", lambda m, t, prompts, **kw: ["I don't know."] * len(prompts))
    monkeypatch.setitem(E.SUITES, "judged", E.Suite("t", metrics=("correctness", "refusal_rate")))
    cfg = from_dict(E.EvalConfig, {"model": "m", "data": str(data), "suite": "judged",
                                   "output": str(tmp_path / "eval.json"),
                                   "refusal": {"mode": "both", "judge_model": "j"}})
    res = E.run_eval(cfg, loader=loader)
    assert res.metrics["forget/refusal_rate"].values == [0.0]
    assert res.metrics["retain/refusal_rate"].aggregate == 0.0
    assert loaded == ["m", "j"] and res.config["refusal"]["mode"] == "both"
    assert set(res.generations) == {"forget", "retain"}
    cfg.refusal = RefusalConfig()  # the patterns would say 1.0: not to be mixed into the file
    with pytest.raises(UnlearnError, match=r"other settings \(refusal\)"):
        E.run_eval(cfg, loader=loader)
