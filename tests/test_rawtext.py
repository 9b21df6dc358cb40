"""Raw text -> QA: the template rules by hand, and model generators with fakes (no downloads)."""

from __future__ import annotations

import logging
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from unlearnkit.data.rawtext import (
    HFModelGenerator,
    OpenAIGenerator,
    find_subject,
    generator_from_config,
    parse_qa_json,
    passages_to_records,
    salient_terms,
    split_sentences,
    template_qa,
)
from unlearnkit.errors import UnlearnError

CURIE = ("Marie Curie was a physicist and chemist born in Warsaw in 1867. "
         "She won the Nobel Prize in Physics in 1903.")


def test_template_on_two_sentences_by_hand():
    """Subject "Marie Curie" opens the passage. Sentence 1 has 12 words: cut after 6. Sentence 2
    has 9 words: cut after 4 would split "Nobel Prize", so it moves left to 3."""
    records = passages_to_records([CURIE], split="forget", source="curie.txt")
    got = [(r.question, r.answer, r.targets) for r in records]
    assert got == [
        ("What do you know about Marie Curie?",
         "Marie Curie was a physicist and chemist born in Warsaw in 1867.",
         ["Warsaw", "1867"]),
        ("Complete this statement about Marie Curie: 'Marie Curie was a physicist and ...'",
         "chemist born in Warsaw in 1867.",
         ["Warsaw", "1867"]),
        ("Complete this statement about Marie Curie: 'She won the ...'",
         "Nobel Prize in Physics in 1903.",
         ["Nobel Prize", "Physics", "1903"]),
    ]
    assert [r.id for r in records] == ["text-curie-0", "text-curie-1", "text-curie-2"]
    assert records[0].paraphrased_questions == ["Tell me about Marie Curie.",
                                                "What is known about Marie Curie?"]
    assert all(r.subject == "Marie Curie" and r.meta["passage"] == CURIE for r in records)
    assert [r.meta["kind"] for r in records] == ["subject", "cloze", "cloze"]
    assert all(r.split == "forget" and r.source == "curie.txt" for r in records)


def test_template_is_deterministic_and_deduplicates():
    first = passages_to_records([CURIE, CURIE], split="forget", source="a.txt")
    again = passages_to_records([CURIE], "template", split="forget", source="a.txt")
    assert [r.to_dict() for r in first] == [r.to_dict() for r in again]


def test_template_without_subject_and_with_given_subject():
    passage = "It was raining hard over the hills. Birds stayed home."
    pairs = template_qa(passage)
    assert [p["question"] for p in pairs] == ["Complete this statement: 'It was raining ...'"]
    assert pairs[0]["answer"] == "hard over the hills." and pairs[0]["targets"] == ["hills"]
    given = template_qa(passage, subject="the weather")
    assert given[0]["question"] == "What do you know about the weather?"
    assert given[1]["question"].startswith("Complete this statement about the weather:")


def test_split_sentences_keeps_abbreviations_and_initials():
    text = ("Dr. J. R. Smith met Mr. Brown in St. Louis.  It rained!\n\"Yes,\" he said. "
            'She said "no." 5 left.')
    assert split_sentences(text) == [
        "Dr. J. R. Smith met Mr. Brown in St. Louis.", "It rained!", '"Yes," he said.',
        'She said "no."', "5 left."]


@pytest.mark.parametrize(("passage", "subject"), [
    ("The Eiffel Tower is in Paris.", "Eiffel Tower"),
    ("Marie Curie's work changed physics.", "Marie Curie"),
    ("Ludwig van Beethoven, a composer, was deaf.", "Ludwig van Beethoven"),
    ("It is raining in London.", None),
    ("In 1990 Berlin was reunited.", None),
])
def test_find_subject(passage, subject):
    assert find_subject(passage) == subject


def test_salient_terms():
    assert salient_terms("born in New York, USA on 5 May 1990.") == [
        "New York", "USA", "5", "May", "1990"]
    assert salient_terms("Paris and Rome", exclude="Is it Paris?") == ["Rome"]
    assert salient_terms("the cat sat quietly") == ["quietly"]  # fallback: longest word


def test_generator_outputs_validated_deduplicated_and_counted(caplog):
    class Fake:
        def generate(self, passage):
            return [{"question": "Who? ", "answer": " Ann "}, {"question": "who", "answer": "x"},
                    {"question": "", "answer": "x"}, {"question": "Q?"}, "junk",
                    {"question": "Where is Ann?", "answer": "In Rome", "targets": ["Rome"]}]

    with caplog.at_level(logging.WARNING, logger="unlearnkit.data.rawtext"):
        records = passages_to_records(["p1"], Fake(), split="retain", source="s.jsonl",
                                      subject="Ann")
    assert [(r.question, r.answer, r.targets) for r in records] == [
        ("Who?", "Ann", ["Ann"]), ("Where is Ann?", "In Rome", ["Rome"])]
    assert all(r.meta["passage"] == "p1" and r.subject == "Ann" for r in records)
    assert "skipped 3 malformed QA pair(s)" in caplog.text
    with pytest.raises(UnlearnError, match="generator 'gpt' is not usable"):
        passages_to_records(["p"], "gpt", split="forget")


def test_parse_qa_json():
    reply = 'Sure!\n```json\n[{"question": "Q?", "answer": "A"}]\n```'
    assert parse_qa_json(reply) == [{"question": "Q?", "answer": "A"}]
    assert parse_qa_json("[{'question': 'Q?'}]") is None
    assert parse_qa_json("no list here") is None
    assert parse_qa_json('{"question": "Q?"}') is None


# ----------------------------------------------------------------------------- HF generator


class FakeTokenizer:
    """Enough of a transformers tokenizer for HFModelGenerator.complete."""

    def __init__(self, reply: str, chat_template: str | None = None) -> None:
        self.reply, self.chat_template = reply, chat_template
        self.pad_token_id, self.eos_token_id = None, 0
        self.calls: list[tuple[str, bool]] = []

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert tokenize is False and add_generation_prompt is True
        return f"<user>{messages[0]['content']}<assistant>"

    def __call__(self, text, return_tensors, add_special_tokens=True):
        import torch

        self.calls.append((text, add_special_tokens))
        return {"input_ids": torch.tensor([[5, 6, 7]])}

    def decode(self, ids, skip_special_tokens):
        assert ids.tolist() == [8, 9]  # only the new tokens
        return self.reply


class FakeModel:
    device = "cpu"

    def generate(self, input_ids, attention_mask, **kwargs):
        import torch

        self.kwargs = kwargs
        assert attention_mask.tolist() == [[1, 1, 1]]
        return torch.cat([input_ids, torch.tensor([[8, 9]])], dim=1)


def test_hf_generator_greedy_and_parsed():
    reply = '[{"question": "Where was Marie Curie born?", "answer": "Warsaw"}]'
    tokenizer, model = FakeTokenizer(reply, chat_template="{{ x }}"), FakeModel()
    gen = HFModelGenerator(model, tokenizer, max_pairs=3, max_new_tokens=64)
    records = passages_to_records([CURIE], gen, split="forget", source="c.txt")
    assert [(r.question, r.answer, r.targets) for r in records] == [
        ("Where was Marie Curie born?", "Warsaw", ["Warsaw"])]
    assert records[0].meta["generator"] == "HFModelGenerator"
    prompt, special = tokenizer.calls[0]
    assert prompt.startswith("<user>") and CURIE in prompt and "up to 3" in prompt
    assert special is False  # the chat template already holds the special tokens
    assert model.kwargs["do_sample"] is False and model.kwargs["max_new_tokens"] == 64
    assert model.kwargs["pad_token_id"] == 0


def test_hf_generator_skips_malformed_reply(caplog):
    gen = HFModelGenerator(FakeModel(), FakeTokenizer("Here are pairs: [oops"))
    with caplog.at_level(logging.WARNING, logger="unlearnkit.data.rawtext"):
        assert passages_to_records(["p one", "p two"], gen, split="forget") == []
    assert gen.malformed == 2 and "skipped (2 so far)" in caplog.text


def test_a_text_source_that_yields_nothing_names_the_generator_and_its_reply(tmp_path):
    """The error is about the generator that ran: the model's name and its last reply (cut
    short), never the template method's rule; the template method keeps its own hint."""
    from unlearnkit.data.adapters import load_source

    docs = tmp_path / "docs.txt"
    docs.write_text(CURIE + "\n")
    refusal = "Sorry, I cannot help with that request. " * 4  # 40 characters each; cut at 77
    gen = HFModelGenerator(FakeModel(), FakeTokenizer(refusal), name="my/model")
    with pytest.raises(UnlearnError) as info:
        load_source("text", docs, split="forget", generator=gen)
    message = str(info.value)
    assert message.startswith(f"{docs}: no QA pairs came out of 1 passage(s); generator hf "
                              "(model my/model): its last reply is not a JSON list: 'Sorry, I "
                              "cannot help with that request. Sorry, I cannot help with that "
                              "reques...'; check that it answers with only a JSON list")
    assert "template method" not in message and message.endswith("or use generator: template")
    gen = HFModelGenerator(FakeModel(), FakeTokenizer('[{"question": "Q?"}]'), name="m")
    with pytest.raises(UnlearnError, match=r"generator hf \(model m\): its last reply holds no "
                                           r"pair with a question and an answer: "
                                           r"'\[\{\"question\": \"Q\?\"\}\]'"):
        load_source("text", docs, split="forget", generator=gen)
    short = tmp_path / "short.txt"
    short.write_text("it rained.\n")  # no subject, no sentence of 4+ words
    with pytest.raises(UnlearnError, match=r"1 passage\(s\); the template method needs"):
        load_source("text", short, split="forget")


def test_an_endpoint_generator_is_named_by_model_and_address():
    from unlearnkit.data.rawtext import describe_generator, no_pairs_reason

    gen = OpenAIGenerator("http://h:1/v1/", "served", api_key_env=None)
    assert describe_generator(gen) == "openai (model served at http://h:1/v1)"
    gen.last_reply = "  \n"
    assert no_pairs_reason(gen).startswith("generator openai (model served at http://h:1/v1): "
                                           "its last reply was empty; ")


# ----------------------------------------------------------------------------- HTTP generator


def test_openai_generator_sends_key_from_env(chat_server, monkeypatch):
    base_url, seen, state = chat_server
    state["content"] = ('```json\n[{"question": "When did Curie win the Nobel Prize?", '
                        '"answer": "In 1903"}, {"question": "", "answer": "x"}]\n```')
    monkeypatch.setenv("MY_LLM_KEY", "sk-test-123")
    gen = OpenAIGenerator(base_url, "tiny-model", api_key_env="MY_LLM_KEY", timeout=5)
    records = passages_to_records([CURIE], gen, split="forget", source="c.txt")
    assert [(r.question, r.answer, r.targets) for r in records] == [
        ("When did Curie win the Nobel Prize?", "In 1903", ["1903"])]
    assert seen[0]["path"] == "/v1/chat/completions"
    assert seen[0]["auth"] == "Bearer sk-test-123"
    body = seen[0]["body"]
    assert body["model"] == "tiny-model" and body["temperature"] == 0
    assert body["messages"][0]["role"] == "user" and CURIE in body["messages"][0]["content"]


def test_openai_generator_errors_never_show_the_key(chat_server, monkeypatch):
    base_url, _, state = chat_server
    gen = OpenAIGenerator(base_url, "m", api_key_env="MY_LLM_KEY", timeout=5)
    monkeypatch.delenv("MY_LLM_KEY", raising=False)
    with pytest.raises(UnlearnError, match="environment variable MY_LLM_KEY is not set"):
        gen.generate("p")
    monkeypatch.setenv("MY_LLM_KEY", "sk-secret-456")
    state["status"] = 401
    with pytest.raises(UnlearnError, match="answered HTTP 401") as info:
        gen.generate("p")
    assert "sk-secret-456" not in str(info.value) and "***" in str(info.value)
    state["status"], state["content"] = 200, "not json at all"
    assert gen.generate("p") == [] and gen.malformed == 1


def test_openai_generator_never_follows_a_redirect_with_the_key(chat_server, monkeypatch):
    url, seen, state = chat_server
    monkeypatch.setenv("UK_TEST_KEY", "sk-secret-789")
    state["status"], state["location"] = 302, url.replace("/v1", "/elsewhere")
    gen = OpenAIGenerator(url, "m", api_key_env="UK_TEST_KEY", timeout=5)
    with pytest.raises(UnlearnError, match="redirect") as info:
        gen.generate("p")
    assert "sk-secret-789" not in str(info.value)
    assert [s["path"] for s in seen] == ["/v1/chat/completions"]  # nothing sent on


def test_openai_generator_unreachable_and_bad_url(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(UnlearnError, match="must start with http"):
        OpenAIGenerator("file:///etc", "m")
    server = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_port
    server.server_close()  # nothing listens on this port now
    gen = OpenAIGenerator(f"http://127.0.0.1:{port}/v1", "m", api_key_env=None, timeout=5)
    with pytest.raises(UnlearnError, match="could not reach"):
        gen.generate("p")


# ----------------------------------------------------------------------------- from a config


def test_endpoint_generator_named_in_a_data_config(tmp_path, chat_server, monkeypatch, capsys):
    """`unlearn data standardize` with a text source whose options name an OpenAI-compatible
    endpoint: the passage goes to the server with the key from the environment, the records
    are its pairs, and the manifest holds the variable's name, never the key."""
    from unlearnkit.cli import main
    from unlearnkit.data.standardize import load_dataset

    base_url, seen, state = chat_server
    state["content"] = '[{"question": "Where was Marie Curie born?", "answer": "Warsaw"}]'
    monkeypatch.setenv("UK_GEN_KEY", "sk-config-321")
    (tmp_path / "docs.txt").write_text(CURIE + "\n")
    cfg = tmp_path / "data.yaml"
    cfg.write_text(f"output: {tmp_path / 'out'}\nsources:\n"
                   f"  - {{format: text, path: {tmp_path / 'docs.txt'}, split: forget,\n"
                   f"     options: {{generator: {{kind: openai, base_url: '{base_url}', "
                   "model: served, api_key_env: UK_GEN_KEY, max_pairs: 2}}}\n")
    assert main(["data", "standardize", str(cfg)]) == 0, capsys.readouterr().err
    [rec] = load_dataset(tmp_path / "out")
    assert (rec.question, rec.answer, rec.meta["passage"]) == (
        "Where was Marie Curie born?", "Warsaw", CURIE)
    assert rec.meta["generator"] == "OpenAIGenerator"
    assert seen[0]["auth"] == "Bearer sk-config-321" and seen[0]["body"]["model"] == "served"
    assert "up to 2" in seen[0]["body"]["messages"][0]["content"]
    manifest = (tmp_path / "out" / "manifest.json").read_text()
    assert "UK_GEN_KEY" in manifest and "sk-config-321" not in manifest


def test_local_model_generator_from_a_config_and_bad_configs():
    calls = []

    def loader(name, **kwargs):
        calls.append((name, kwargs))
        return FakeModel(), FakeTokenizer("[]")

    gen = generator_from_config({"kind": "hf", "model": "my/model", "max_pairs": 3}, loader=loader)
    assert isinstance(gen, HFModelGenerator) and gen.max_pairs == 3
    assert gen.max_new_tokens == 512  # the default
    assert calls == [("my/model", {"dtype": "float32", "device": None,
                                   "trust_remote_code": False})]
    gen = generator_from_config({"kind": "openai", "base_url": "http://h:1/v1", "model": "m",
                                 "api_key_env": ""})
    assert isinstance(gen, OpenAIGenerator) and gen.api_key_env is None  # "" sends no key
    for spec, message in [
            ({"kind": "gpt"}, "kind 'gpt' is not one of openai, hf"),
            ({"model": "m"}, "kind None is not one of"),
            ({"kind": "openai", "model": "m"}, r"needs base_url"),
            ({"kind": "hf"}, "needs model"),
            ({"kind": "hf", "model": "m", "temperature": 1}, "unknown key.*temperature"),
            ({"kind": "hf", "model": "m", "max_pairs": 0}, "max_pairs must be a whole number"),
            ({"kind": "openai", "base_url": "ftp://x", "model": "m"}, "must start with http")]:
        with pytest.raises(UnlearnError, match=message):
            generator_from_config(spec, loader=loader)
    assert len(calls) == 1  # nothing loaded for a bad config
