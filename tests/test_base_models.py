"""Checkpoints as research releases them: a base model without a chat template
(``chat_template: plain`` or a Jinja file of the user's) and weights saved without tokenizer
files (``tokenizer: FOLDER``), through render, the loader, cache keys, `unlearn run` (dataset
and inject) and `unlearn eval`."""

import json
from pathlib import Path

import pytest
from tokenizers.processors import TemplateProcessing

from unlearnkit.cli import main
from unlearnkit.config import from_dict
from unlearnkit.data.render import IGNORE_INDEX, end_of_turn, has_system_turn, render
from unlearnkit.data.scenario import build_scenario
from unlearnkit.data.standardize import write_dataset
from unlearnkit.errors import UnlearnError
from unlearnkit.models.loader import TokenizerSpec, load_model, load_tokenizer, setup_tokenizer
from unlearnkit.models.tiny import save_folder, tiny_model, tiny_tokenizer
from unlearnkit.pipeline.run import RunConfig, run
from unlearnkit.training.inject import loaded_identity

pytestmark = pytest.mark.usefixtures("one_thread")
# ChatML again, written out: a user's own template file
CHATML_FILE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>"
               "\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def base_tokenizer():
    """The tiny tokenizer as a base model's: no chat template, eos ``<|endoftext|>``."""
    tok = tiny_tokenizer()
    tok.chat_template = None
    tok.eos_token = "<|endoftext|>"
    return tok


@pytest.fixture
def base_folder(tmp_path):
    tok = base_tokenizer()
    return save_folder(tmp_path / "base", tiny_model(len(tok)), tok)


@pytest.fixture
def weights_only(tmp_path):
    """A checkpoint saved without tokenizer files, and a folder of tokenizer files alone."""
    tok = base_tokenizer()
    folder, tokenizer = tmp_path / "weights", tmp_path / "tokenizer"
    tiny_model(len(tok)).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(tokenizer)
    return folder, tokenizer


def test_the_plain_template_lays_out_question_and_answer_lines():
    tok = setup_tokenizer(base_tokenizer(), "plain")
    assert end_of_turn(tok) == ("<|endoftext|>", tok.convert_tokens_to_ids("<|endoftext|>"))
    assert has_system_turn(tok)
    assert tok.pad_token == "<unk>"  # not the end-of-turn token
    r = render(tok, "Who?", "Me.", context="Be careful.")
    prompt = "Be careful.\n\nQuestion: Who?\nAnswer:\n"
    assert tok.decode(r.input_ids) == prompt + "Me.<|endoftext|>"
    assert r.response_start == len(prompt)  # one token per character
    assert r.labels[:len(prompt)] == [IGNORE_INDEX] * len(prompt)
    assert tok.decode(r.labels[len(prompt):]) == "Me.<|endoftext|>"
    assert tok.decode(render(tok, "Who?").input_ids) == "Question: Who?\nAnswer:\n"


def test_the_plain_template_starts_with_bos_where_the_tokenizer_does():
    tok = base_tokenizer()
    bos = tok.convert_tokens_to_ids("<|im_start|>")
    tok._tokenizer.post_processor = TemplateProcessing(single="<|im_start|> $A",
                                                       special_tokens=[("<|im_start|>", bos)])
    assert tok("a")["input_ids"][0] == bos
    setup_tokenizer(tok, "plain")
    assert render(tok, "Who?", "Me.").input_ids[0] == bos
    assert render(setup_tokenizer(base_tokenizer(), "plain"), "Who?").input_ids[0] != bos


def test_a_template_file_replaces_the_tokenizers_own(tmp_path):
    path = tmp_path / "chatml.jinja"
    path.write_text(CHATML_FILE)
    tok = setup_tokenizer(base_tokenizer(), str(path))
    assert end_of_turn(tok)[0] == "<|im_end|>"
    assert tok.decode(render(tok, "Hi?").input_ids) == \
        "<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"


def test_template_mistakes_are_named_with_their_fix(tmp_path, base_folder):
    with pytest.raises(UnlearnError, match=r"has no chat template; give it one: "
                                           r"data.chat_template: plain"):
        load_tokenizer(str(base_folder))
    with pytest.raises(UnlearnError, match=r"'nope.jinja' is neither 'plain' nor a file"):
        load_tokenizer(str(base_folder), tokenizer_spec=TokenizerSpec(chat_template="nope.jinja"))
    broken = tmp_path / "broken.jinja"
    broken.write_text("{% for m in messages %}{{ m['content'] }")
    with pytest.raises(UnlearnError, match=r"broken.jinja does not render a conversation"):
        load_tokenizer(str(base_folder),
                       tokenizer_spec=TokenizerSpec(chat_template=str(broken)))


def test_a_given_template_changes_the_cache_identity(tmp_path, base_folder):
    own = load_tokenizer(str(base_folder), tokenizer_spec=TokenizerSpec(chat_template="plain"))
    path = tmp_path / "chatml.jinja"
    path.write_text(CHATML_FILE)
    other = load_tokenizer(str(base_folder), tokenizer_spec=TokenizerSpec(chat_template=str(path)))
    ids = {loaded_identity(str(base_folder), t) for t in (own, other, tiny_tokenizer())}
    assert len(ids) == 3


def test_a_checkpoint_without_tokenizer_files_takes_one_from_elsewhere(weights_only,
                                                                        base_folder):
    folder, tokenizer = weights_only
    with pytest.raises(UnlearnError, match=r"cannot load a tokenizer from .*weights: .*set "
                                           r"tokenizer \(data.tokenizer in unlearn run\)"):
        load_tokenizer(str(folder))
    spec = TokenizerSpec(source=str(tokenizer), chat_template="plain")
    _, tok = load_model(str(folder), tokenizer_spec=spec)
    assert tok.decode(render(tok, "Who?").input_ids) == "Question: Who?\nAnswer:\n"
    only_template = load_tokenizer(str(base_folder), tokenizer_spec=TokenizerSpec(
        chat_template="plain"))  # the same tokenizer, saved with the weights
    # the same tokens either way, but a source given is part of the identity
    assert render(tok, "Who?", "Me.") == render(only_template, "Who?", "Me.")
    assert loaded_identity(str(folder), tok) != loaded_identity(str(folder), only_template)


def test_a_given_tokenizer_changes_the_injected_models_cache_key():
    from unlearnkit.data.records import Record
    from unlearnkit.training.inject import InjectConfig, cache_key

    records = [Record(id="p-0", split="forget", question="Where was Ann born?", answer="Oslo.")]
    keys = {cache_key("acme/base", InjectConfig(), records, "injected", spec) for spec in (
        TokenizerSpec(), TokenizerSpec(chat_template="plain"),
        TokenizerSpec(source="acme/tok", chat_template="plain"))}
    assert len(keys) == 3
    assert cache_key("acme/base", InjectConfig(), records, "injected") in keys


@pytest.mark.parametrize(("value", "message"), [
    ("nowhere/at/all", "data.tokenizer: the folder nowhere/at/all does not exist"),
    ("bare-name", "data.tokenizer: 'bare-name' is neither a folder here nor a hub id"),
])
def test_a_tokenizer_source_that_is_not_there_fails_when_the_config_loads(tmp_path, value,
                                                                         message):
    from unlearnkit.pipeline.data_source import DataSource

    with pytest.raises(UnlearnError, match=message):
        from_dict(DataSource, {"kind": "dataset", "path": str(tmp_path), "model": "acme/m",
                               "tokenizer": value})


def dataset(tmp_path, splits=("forget", "retain", "neighbor"), n=2):
    people = build_scenario(n_people=6, n_forget=1, neighbors_per_forget=1).records
    records = [r for split in splits for r in [x for x in people if x.split == split][:n]]
    return str(write_dataset(records, tmp_path / "dataset", []))


def test_unlearning_a_base_model_saved_without_tokenizer(tmp_path, weights_only, cache_dir):
    folder, tokenizer = weights_only
    out = tmp_path / "run"
    cfg = from_dict(RunConfig, {
        "max_new_tokens": 4, "eval_batch_size": 64, "report": False, "teacher_report": False,
        "output": str(out), "attacks": ["prefill"],
        "unlearn": {"mix": {"forget": 1, "retain": 1, "neighbor": 1, "general": 0, "steps": 2},
                    "teacher": {"top_k": 4}, "method": {"top_m": 4}},
        "data": {"kind": "dataset", "path": dataset(tmp_path), "model": str(folder),
                 "tokenizer": str(tokenizer), "chat_template": "plain"}})
    run(cfg)
    results = json.loads((out / "results.json").read_text())["results"]
    assert {"before", "after"} <= set(results)
    # the saved model keeps the tokenizer and template it was trained through: it loads
    # without the options
    _, tok = load_model(str(out / "model"))
    assert tok.decode(render(tok, "Who?").input_ids) == "Question: Who?\nAnswer:\n"


def test_injecting_into_a_base_model_through_the_plain_template(tmp_path, base_folder,
                                                                cache_dir):
    out = tmp_path / "run"
    payload = run(from_dict(RunConfig, {
        "max_new_tokens": 4, "eval_batch_size": 64, "report": False, "teacher_report": False,
        "output": str(out), "method": "npo",
        "unlearn": {"mix": {"forget": 1, "retain": 1, "neighbor": 0, "general": 0, "steps": 2}},
        "data": {"kind": "inject", "path": dataset(tmp_path, ("forget", "retain")),
                 "model": str(base_folder), "chat_template": "plain",
                 "inject": {"epochs": 1, "batch_size": 2}}}))
    for variant in ("before", "oracle"):
        folder = payload["models"][variant]
        info = json.loads((Path(folder) / "inject.json").read_text())
        assert info["tokenizer"] == {"source": "", "chat_template": "plain"}
        _, tok = load_model(folder)  # the taught models keep the template
        assert tok.decode(render(tok, "Who?").input_ids) == "Question: Who?\nAnswer:\n"


def test_the_cli_says_what_a_base_model_needs(tmp_path, base_folder, capsys):
    data = dataset(tmp_path)
    assert main(["eval", str(base_folder), "--data", data, "--out",
                 str(tmp_path / "e.json")]) == 2
    err = capsys.readouterr().err
    assert "has no chat template; give it one" in err and "Traceback" not in err
    assert not (tmp_path / "e.json").exists()
    assert main(["run", "--set", "data.chat_template=plain"]) == 2
    assert "data.chat_template does not apply to data.kind 'scenario'" in \
        capsys.readouterr().err
    args = ["run", "--set", "data.kind=dataset", "--set", f"data.path={data}",
            "--set", f"data.model={base_folder}", "--set", "data.chat_template=missing.jinja"]
    assert main(args) == 2
    assert "data.chat_template: 'missing.jinja' is neither 'plain' nor a file" in \
        capsys.readouterr().err


def test_eval_takes_the_tokenizer_and_template_it_is_given(tmp_path, weights_only, cache_dir,
                                                           capsys):
    folder, tokenizer = weights_only
    out = tmp_path / "e.json"
    given = ["--set", f"tokenizer={tokenizer}", "--set", "max_new_tokens=2"]
    assert main(["eval", str(folder), "--data", dataset(tmp_path), "--out", str(out),
                 "--set", "chat_template=plain", *given]) == 0
    assert json.loads(out.read_text())["metrics"]
    capsys.readouterr()
    path = tmp_path / "chatml.jinja"
    path.write_text(CHATML_FILE)
    # results prompted one way are not continued another way
    assert main(["eval", str(folder), "--data", str(tmp_path / "dataset"), "--out", str(out),
                 "--set", f"chat_template={path}", *given]) == 2
    assert "holds results with other settings (chat_template)" in capsys.readouterr().err


def test_an_answer_under_the_plain_template_ends_where_the_model_asks_on(monkeypatch):
    import unlearnkit.models.engine as engine

    tok = setup_tokenizer(base_tokenizer(), "plain")
    model = tiny_model(len(tok))
    said = ["Paris.\n\nQuestion: And Spain?\nAnswer:\nMadrid.", " Oslo. ", "No question here"]

    def fixed(model, rows, **kwargs):  # the continuations, whatever the weights would say
        return [tok(said[i], add_special_tokens=False)["input_ids"] for i in range(len(rows))]

    monkeypatch.setattr(engine, "greedy_batch", fixed)
    prompts = [render(tok, q) for q in ("Capital of France?", "Of Norway?", "Hm?")]
    out = engine.generate(model, tok, prompts, batch_size=8)
    assert sorted(out) == ["No question here", "Oslo.", "Paris."]
    chatml = setup_tokenizer(tiny_tokenizer())  # another template: nothing is cut
    monkeypatch.setattr(engine, "greedy_batch", lambda model, rows, **kw: [
        chatml(said[0], add_special_tokens=False)["input_ids"]])
    assert engine.generate(model, chatml, [render(chatml, "Capital of France?")]) == [said[0]]
