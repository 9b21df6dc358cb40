from unlearnkit.data.records import normalize_question
from unlearnkit.data.replay import REPLAY_PROMPTS
from unlearnkit.data.scenario import build_scenario, general_probes
from unlearnkit.pipeline.scenario_models import replay_records
from unlearnkit.training.inject import training_records


def test_replay_prompts_never_overlap_the_utility_probes():
    probes = {normalize_question(p.question) for p in general_probes()}
    assert not probes & {normalize_question(q) for q in REPLAY_PROMPTS}
    words = lambda text: set(normalize_question(text).split()) - {"the", "a", "is", "what", "of"}  # noqa: E731
    for q in REPLAY_PROMPTS:  # no near-duplicates either (same content words)
        assert all(words(q) != words(p.question) for p in general_probes()), q


def test_oracle_trains_on_everything_but_the_forget_people():
    people = build_scenario(n_people=12, n_forget=1, neighbors_per_forget=2).records
    replay = replay_records({"replay": [{"question": "Q?", "answer": "A."}]})
    injected = training_records(people + replay, "injected")
    oracle = training_records(people + replay, "oracle")
    assert len(injected) == len(people) + 1
    assert {r.split for r in oracle} == {"retain", "neighbor", "general"}
    assert len(oracle) == len(injected) - sum(r.split == "forget" for r in people)


NUMBER_WORDS = {"two", "three", "four", "six", "seven", "eight", "twelve", "twenty-four",
                "twenty four"}


def test_replay_prompts_never_mention_a_probe_answer():
    import re

    for probe in general_probes():
        for target in probe.targets:
            if target.isdigit() or target in NUMBER_WORDS:  # counting prompts use numbers too
                continue
            pattern = re.compile(rf"\b{re.escape(target.lower())}\b")
            hits = [q for q in REPLAY_PROMPTS if pattern.search(q.lower())]
            assert not hits, (probe.question, target, hits)
