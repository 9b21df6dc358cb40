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


def test_how_many_models_train_at_once(monkeypatch):
    import torch

    from unlearnkit.training.inject import side_by_side

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert side_by_side(2, 0) == 2  # a thread for each missing model
    assert side_by_side(1, 0) == 1 and side_by_side(2, 1) == 1 and side_by_side(2, 3) == 2
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert side_by_side(2, 0) == 1  # one thread (e.g. OMP_NUM_THREADS=1): one at a time
    assert side_by_side(2, 2) == 2  # unless asked
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert side_by_side(2, 0) == 1  # one GPU: one after the other


def _inject_case(folder):
    from unlearnkit.data.records import Record
    from unlearnkit.training.inject import InjectConfig

    records = [Record(id=f"p{i}", split=split, question=f"Where was person {i} born?",
                      answer=f"In town {i}.")
               for i, split in enumerate(["forget", "retain", "neighbor", "retain"])]
    return str(folder), records, InjectConfig(epochs=2, batch_size=2, replay=False)


def test_models_trained_side_by_side_match_the_ones_trained_in_turn(
        tiny_folder, tmp_path, monkeypatch):
    import pytest
    import torch
    from safetensors.torch import load_file

    import unlearnkit.training.inject as inject

    model, records, cfg = _inject_case(tiny_folder)
    assert inject.cache_key(model, cfg, records, "oracle") == inject.cache_key(
        model, inject.InjectConfig(epochs=2, batch_size=2, replay=False, processes=2), records,
        "oracle")  # how the work is spread is not part of the key
    folders = {}
    for processes in (1, 2):
        monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / f"cache-{processes}"))
        cfg.processes = processes
        if processes == 2:  # the children train; this process only finds their models
            monkeypatch.setattr(inject, "_train_injected",
                                lambda *a: pytest.fail("trained in the parent process"))
        before = torch.get_num_threads()
        torch.set_num_threads(1)  # the same thread count in turn as in each child
        try:
            folders[processes] = inject.build_variants(model, records, ["injected", "oracle"],
                                                       cfg)
        finally:
            torch.set_num_threads(before)
    for variant in ("injected", "oracle"):
        one, two = (load_file(folders[p][variant] / "model.safetensors") for p in (1, 2))
        assert one.keys() == two.keys()
        for key in one:
            torch.testing.assert_close(one[key], two[key], rtol=1e-5, atol=1e-6)
    assert folders[1]["injected"].name != folders[1]["oracle"].name
    start = load_file(tiny_folder / "model.safetensors")  # and both did train
    assert any(not torch.equal(start[k], two[k]) for k in start if k in two)


def test_a_model_that_fails_in_its_process_is_reported(tmp_path, monkeypatch):
    import pytest

    from unlearnkit.errors import UnlearnError
    from unlearnkit.training.inject import build_variants

    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "cache"))
    _, records, cfg = _inject_case(tmp_path)
    cfg.processes = 2
    broken = tmp_path / "broken"  # a folder that names no model: loading it fails in each child
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    (broken / "model.safetensors").write_bytes(b"")  # there, but no weights in it
    with pytest.raises(UnlearnError, match=r"(?s)training the injected model failed: .*"
                       r"training the oracle model failed"):
        build_variants(str(broken), records, ["injected", "oracle"], cfg)


def test_whole_sentences_by_hand():
    from unlearnkit.pipeline.scenario_models import whole_sentences

    text = "Pride and Prejudice was written by Jane Austen. It was published in 1813 and"
    assert whole_sentences(text) == "Pride and Prejudice was written by Jane Austen."
    assert whole_sentences("Is it? Yes! It is 3.5 m tall and") == "Is it? Yes!"  # 3.5: no end
    assert whole_sentences("Yes. And then it went on") == ""  # one word before the only end
    assert whole_sentences("no sentence ends here") == ""


def test_long_replay_answers_are_cut_to_sentences_cached_and_kept_apart(monkeypatch, cache_dir):
    """The replay prompts not replayed at injection are answered once, cut after their last
    whole sentence, cached; empty cuts are dropped."""
    import unlearnkit.pipeline.scenario_models as sm
    from unlearnkit.data.records import Record

    replay = [Record(id=f"replay-{i}", split="general", question=q, answer="A short answer.",
                     meta={"replay": True}) for i, q in enumerate(REPLAY_PROMPTS[2:])]
    asked = []

    def replies(model_name, prompts, tokenizer_spec):
        asked.append(list(prompts))
        return ["Jane Austen wrote it. She was born in", "no whole sentence"]

    monkeypatch.setattr(sm, "model_identity", lambda name: name)
    monkeypatch.setattr(sm, "_base_replies", replies)
    first = sm.long_replay_records("base", replay)
    assert asked == [REPLAY_PROMPTS[:2]]  # only the prompts missing from the replay
    assert [(r.question, r.answer) for r in first] == [(REPLAY_PROMPTS[0],
                                                         "Jane Austen wrote it.")]
    assert first[0].meta == {"replay": True, "cut": True} and first[0].split == "general"
    assert first[0].id not in {r.id for r in replay}
    again = sm.long_replay_records("base", replay)
    assert len(asked) == 1 and again == first  # from the cache


def test_injected_models_keep_their_cache_keys_across_new_optimiser_settings():
    """Keys computed by the code before ``optim.beta1/beta2/eps`` (and ``sam_rho``,
    ``sam_scope``) existed
    (commit 3c5ceb5): at their defaults the new settings stay out of the key, so cached models
    are found after an upgrade (an injection takes 10-20 minutes on 2 cores); another value
    makes a new key."""
    import dataclasses

    from unlearnkit.data.records import Record
    from unlearnkit.training.inject import InjectConfig, cache_key

    records = [Record(id="p-0", split="forget", question="Where was Ann born?", answer="Oslo.")]
    assert cache_key("acme/tiny-model", InjectConfig(), records, "injected") == "b61e910ca86cce66"
    assert cache_key("acme/tiny-model", InjectConfig(stop_after_epochs=5), records,
                     "oracle") == "a8e398edaba66a33"
    for change in ({"eps": 1e-6}, {"sam_rho": 0.05}, {"sam_scope": "forget"}):
        other = InjectConfig(optim=dataclasses.replace(InjectConfig().optim, **change))
        assert cache_key("acme/tiny-model", other, records, "injected") != "b61e910ca86cce66"
