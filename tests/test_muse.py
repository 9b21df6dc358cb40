"""The MUSE protocol: its source format, its measures by hand, and `unlearn eval --suite muse`
end to end on a tiny model (with the retrained model's results for PrivLeak)."""

import json
import math
from pathlib import Path

import pytest

from unlearnkit.cli import main
from unlearnkit.data.adapters import load_source
from unlearnkit.data.records import Record
from unlearnkit.data.standardize import write_dataset
from unlearnkit.errors import UnlearnError
from unlearnkit.evaluation import muse
from unlearnkit.evaluation.mia import min_k_score, token_stats
from unlearnkit.evaluation.results import new_results, save_results
from unlearnkit.models.loader import setup_tokenizer
from unlearnkit.models.tiny import save_folder, tiny_model, tiny_tokenizer
from unlearnkit.training.raw import render_raw

pytestmark = pytest.mark.usefixtures("one_thread")


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_the_muse_format_reads_each_subset_by_its_fields(tmp_path):
    qa = load_source("muse", jsonl(tmp_path / "knowmem-forget_qa.jsonl", [
        {"question": "Who is Harry's owl?", "answer": "Hedwig"}]), split="forget")
    icl = load_source("muse", jsonl(tmp_path / "icl.jsonl", [
        {"question": "Q?", "answer": "A"}]), split="forget", role="icl")
    verb = load_source("muse", jsonl(tmp_path / "verbmem-forget.jsonl", [
        {"prompt": "Mr and Mrs Dursley", "gt": " of number four"}]), split="forget")
    held = load_source("muse", jsonl(tmp_path / "privleak-holdout.jsonl", [
        {"text": "A passage never seen."}]), split="general", role="holdout")
    assert [(r.meta["muse"], r.question, r.answer) for r in qa + icl + verb + held] == [
        ("knowmem", "Who is Harry's owl?", "Hedwig"), ("icl", "Q?", "A"),
        ("verbmem", "Mr and Mrs Dursley", " of number four"),
        ("holdout", "A passage never seen.", None)]
    assert qa[0].id == "muse-knowmem-forget_qa-0" and held[0].split == "general"
    with pytest.raises(UnlearnError, match=r"has question and answer \(knowmem\), prompt and gt"):
        load_source("muse", jsonl(tmp_path / "odd.jsonl", [{"body": "x"}]), split="forget")
    with pytest.raises(UnlearnError, match="role 'shots' is not one of"):
        load_source("muse", tmp_path / "icl.jsonl", split="forget", role="shots")


def test_the_knowmem_prompt_and_cut_by_hand():
    shots = [Record(id="s1", split="forget", question="Q1?", answer="A1"),
             Record(id="s2", split="forget", question="Q2?", answer="A2")]
    assert muse.knowmem_prompt(shots, "Q3?") == \
        "Question: Q1?\nAnswer: A1\n\nQuestion: Q2?\nAnswer: A2\n\nQuestion: Q3?\nAnswer: "
    assert muse.knowmem_prompt([], "Q?") == "Question: Q?\nAnswer: "
    assert muse.cut_answer("Hedwig\n\nQuestion: next") == "Hedwig"
    assert muse.cut_answer("Hedwig, an owl\nQuestion: next") == "Hedwig, an owl"
    assert muse.cut_answer("Hedwig. Question: next") == "Hedwig. "
    assert muse.cut_answer("\n\nHedwig") == ""  # as MUSE cuts: nothing before the stop


def test_rouge_l_f1_by_hand():
    # LCS("the cat sat", "the cat sat on the mat") = 3 words: P = 3/3, R = 3/6, F1 = 2/3
    assert muse.rouge_l_f1("the cat sat", "the cat sat on the mat") == pytest.approx(2 / 3)
    assert muse.rouge_l_f1("The CAT, sat!", "the cat sat") == 1.0  # lower-cased words
    assert muse.rouge_l_f1("", "the cat") == 0.0


def test_first_tokens_counts_the_tokenizers_tokens():
    tok = tiny_tokenizer()  # one token per character, no special tokens added
    assert muse.first_tokens(tok, "abcdefgh", 5) == "abcde"


@pytest.fixture
def fixed_generations(monkeypatch):
    """The tiny model's greedy continuations replaced by set texts, in prompt order."""
    import unlearnkit.models.engine as engine

    said: dict[str, str] = {}
    tok = setup_tokenizer(tiny_tokenizer())

    def continue_(model, rows, **kwargs):
        out = []
        for row in rows:
            prompt = tok.decode(row)
            text = next(v for k, v in said.items() if prompt.endswith(k))
            out.append(tok(text, add_special_tokens=False)["input_ids"])
        return out

    monkeypatch.setattr(engine, "greedy_batch", continue_)
    return tok, said


def test_knowmem_and_verbmem_score_the_continuations(fixed_generations):
    tok, said = fixed_generations
    model = tiny_model(len(tok))
    shot = Record(id="s", split="forget", question="Q0?", answer="A0")
    qa = [Record(id="q1", split="forget", question="Owl?", answer="Hedwig the owl"),
          Record(id="q2", split="forget", question="Cat?", answer="Crookshanks")]
    said.update({"Owl?\nAnswer: ": "Hedwig\n\nQuestion: Cat?", "Cat?\nAnswer: ": "a dog"})
    result, answers = muse.knowmem(model, tok, qa, [shot])
    assert answers == ["Hedwig", "a dog"]
    # "Hedwig" vs "Hedwig the owl": P = 1, R = 1/3, F1 = 1/2; "a dog" shares nothing
    assert result.values == pytest.approx([0.5, 0.0]) and result.aggregate == pytest.approx(0.25)
    assert result.higher_is_better
    excerpt = Record(id="v", split="forget", question="Mr and Mrs", answer=" Dursley of four")
    said["Mr and Mrs"] = " Dursley of four, Privet Drive"
    result, texts = muse.verbmem(model, tok, [excerpt])
    assert texts == [" Dursley of four, Privet Drive"]  # as generated, not stripped or cut
    # LCS 3 of 5 generated words and 3 of 3 true ones: F1 = 2 * 0.6 * 1 / 1.6 = 0.75
    assert result.values == pytest.approx([0.75]) and result.higher_is_better


def test_min_k_scores_are_min_40_percent_of_each_passage():
    tok = setup_tokenizer(tiny_tokenizer())
    model = tiny_model(len(tok))
    passages = [Record(id=f"p{i}", split="forget", question=t)
                for i, t in enumerate(["A short passage.", "Another, somewhat longer one."])]
    stats = token_stats(model, tok, [render_raw(tok, r.question) for r in passages])
    assert muse.min_k_scores(model, tok, passages) == pytest.approx(
        [min_k_score(s.logprobs, k=0.4) for s in stats])
    assert muse.privleak_auc([1.0, 2.0], [3.0, 0.5]) == pytest.approx(0.5)


def muse_dataset(tmp_path):
    """Tiny MUSE-shaped sets through the muse format, standardised into a dataset folder."""
    sources = {
        "knowmem-forget_qa": ("forget", "", [{"question": f"Forget question {i}?",
                                              "answer": f"answer {i}"} for i in range(3)]),
        "knowmem-retain_qa": ("retain", "", [{"question": f"Retain question {i}?",
                                              "answer": f"kept {i}"} for i in range(3)]),
        "knowmem-forget_qa_icl": ("forget", "icl", [{"question": f"Shot {i}?", "answer": "shot"}
                                                    for i in range(2)]),
        "verbmem-forget": ("forget", "", [{"prompt": f"Once upon a time {i}",
                                           "gt": " there was a dragon."} for i in range(2)]),
        "privleak-forget": ("forget", "", [{"text": f"A forget passage number {i}."}
                                           for i in range(3)]),
        "privleak-holdout": ("general", "holdout", [{"text": f"A holdout passage, {i}."}
                                                    for i in range(3)]),
    }
    records = []
    for name, (split, role, rows) in sources.items():
        records += load_source("muse", jsonl(tmp_path / f"{name}.jsonl", rows), split=split,
                               **({"role": role} if role else {}))
    return str(write_dataset(records, tmp_path / "muse-eval", []))


def test_the_muse_suite_end_to_end_with_the_oracles_auc(tmp_path, tiny_folder, cache_dir,
                                                       capsys):
    from unlearnkit.models.tiny import tiny_model as build

    data = muse_dataset(tmp_path)
    oracle_folder = tmp_path / "oracle"
    save_folder(oracle_folder, build(len(tiny_tokenizer()), seed=1), tiny_tokenizer())
    oracle = tmp_path / "oracle.json"
    assert main(["eval", str(oracle_folder), "--data", data, "--suite", "muse", "--out",
                 str(oracle)]) == 0
    first = json.loads(oracle.read_text())
    assert set(first["metrics"]) == {"forget/knowmem", "retain/knowmem", "forget/verbmem",
                                     "forget/privleak_auc"}
    assert "give the oracle's" in first["skipped"]["privleak"]
    knowmem = first["metrics"]["forget/knowmem"]
    assert knowmem["metric"] == "knowmem_rougeL" and knowmem["n"] == 3
    assert knowmem["higher_is_better"] is False  # on the forget split
    assert first["metrics"]["retain/knowmem"]["higher_is_better"] is True
    assert len(first["generations"]["forget/verbmem"]) == 2
    auc = first["metrics"]["forget/privleak_auc"]
    assert auc["n"] == 6 and 0 <= auc["aggregate"] <= 1 and auc["higher_is_better"] is None
    capsys.readouterr()

    out = tmp_path / "model.json"
    assert main(["eval", str(tiny_folder), "--data", data, "--suite", "muse", "--out", str(out),
                 "--set", f"oracle_results={oracle}"]) == 0
    second = json.loads(out.read_text())
    mine, ref = second["metrics"]["forget/privleak_auc"]["aggregate"], auc["aggregate"]
    assert second["metrics"]["privleak"]["aggregate"] == pytest.approx((mine - ref) / ref * 100)
    assert not math.isnan(second["metrics"]["retain/knowmem"]["aggregate"])
    # a limit applies to each part but the few-shot examples
    limited = tmp_path / "limited.json"
    assert main(["eval", str(tiny_folder), "--data", data, "--suite", "muse", "--out",
                 str(limited), "--set", "limit=1"]) == 0
    rows = json.loads(limited.read_text())["generations"]["forget/knowmem"]
    assert len(rows) == 1 and rows[0]["question"] == "Forget question 0?"
    assert json.loads(limited.read_text())["metrics"]["forget/privleak_auc"]["n"] == 2
    from unlearnkit.pipeline.evaluate import EvalConfig, load_splits, muse_parts

    parts = muse_parts(load_splits(EvalConfig(data=data, suite="muse", limit=1))[0])
    assert {k: len(v) for k, v in parts.items()} == {
        ("forget", "knowmem"): 1, ("forget", "icl"): 2, ("forget", "verbmem"): 1,
        ("forget", "passage"): 1, ("retain", "knowmem"): 1, ("general", "holdout"): 1}
    # the quick suite reads the knowmem QA alone (through the chat template)
    quick = tmp_path / "quick.json"
    assert main(["eval", str(tiny_folder), "--data", data, "--out", str(quick),
                 "--set", "max_new_tokens=2"]) == 0
    ids = json.loads(quick.read_text())["metrics"]["forget/correctness"]["ids"]
    assert ids == [f"muse-knowmem-forget_qa-{i}" for i in range(3)]


def test_privleak_needs_an_oracle_file_of_the_muse_suite(tmp_path, tiny_folder, capsys):
    data = muse_dataset(tmp_path)
    other = tmp_path / "other.json"  # a results file of another suite: no AUC in it
    save_results(other, new_results({"suite": "tofu"}, seed=0))
    assert main(["eval", str(tiny_folder), "--data", data, "--suite", "muse", "--out",
                 str(tmp_path / "x.json"), "--set", f"oracle_results={other}"]) == 2
    err = capsys.readouterr().err
    assert "has no forget/privleak_auc; evaluate the oracle with --suite muse" in err
    assert not (tmp_path / "x.json").exists()  # refused before any step ran


def test_the_suites_read_a_quantised_model_when_asked(tmp_path, tiny_folder, cache_dir, capsys):
    from unlearnkit.evaluation.attacks.quantize import quantized_copy
    from unlearnkit.models.loader import load_model

    data = muse_dataset(tmp_path)
    passages = load_source("muse", tmp_path / "privleak-forget.jsonl", split="forget")
    passages += load_source("muse", tmp_path / "privleak-holdout.jsonl", split="general",
                            role="holdout")
    model, tok = load_model(str(tiny_folder))
    full = muse.min_k_scores(model, tok, passages)
    rounded = muse.min_k_scores(quantized_copy(model, 4, group_size=16), tok, passages)
    assert rounded != pytest.approx(full)  # 4 bits move a random tiny model's scores
    out = tmp_path / "q4.json"
    args = ["eval", str(tiny_folder), "--data", data, "--suite", "muse", "--out", str(out)]
    assert main([*args, "--set", "quantize=4", "--set", "quantize_group=16"]) == 0
    values = json.loads(out.read_text())["metrics"]["forget/privleak_auc"]["values"]
    assert values == pytest.approx(rounded, abs=1e-4)
    capsys.readouterr()
    assert main([*args, "--set", "quantize=8"]) == 2  # other settings: not continued
    assert "holds results with other settings (quantize, quantize_group)" in \
        capsys.readouterr().err
    assert main([*args, "--set", "quantize=1"]) == 2
    assert "quantize is a number of bits in [2, 16]" in capsys.readouterr().err
    assert main([*args, "--set", "quantize_group=128"]) == 2
    assert "only with quantize set" in capsys.readouterr().err


def test_a_run_ends_with_the_benchmarks_protocol_on_its_models(tmp_path, tiny_folder, tok,
                                                              cache_dir):
    """`unlearn run` with protocol {suite: muse, data: ...}: the oracle's results first, then
    the others' with PrivLeak against it; the report shows them beside the run's."""
    from unlearnkit.config import from_dict
    from unlearnkit.data.scenario import build_scenario
    from unlearnkit.pipeline.run import RunConfig, run

    data = muse_dataset(tmp_path)
    oracle = tmp_path / "oracle-model"
    save_folder(oracle, tiny_model(len(tok), seed=3), tok)
    people = build_scenario(n_people=6, n_forget=1, neighbors_per_forget=1).records
    records = [r for split in ("forget", "retain") for r in
               [x for x in people if x.split == split][:2]]
    train = str(write_dataset(records, tmp_path / "train", []))
    out = tmp_path / "run"
    payload = run(from_dict(RunConfig, {
        "max_new_tokens": 4, "eval_batch_size": 64, "teacher_report": False,
        "output": str(out), "method": "npo", "attacks": ["prefill"],
        "unlearn": {"mix": {"forget": 1, "retain": 1, "neighbor": 0, "general": 0, "steps": 2}},
        "data": {"kind": "dataset", "path": train, "model": str(tiny_folder),
                 "oracle": str(oracle)},
        "protocol": {"suite": "muse", "data": data}}))
    files = payload["protocol"]
    assert list(files) == ["oracle", "before", "after"]  # the reference first
    read = {name: json.loads(Path(path).read_text()) for name, path in files.items()}
    assert "privleak" in read["oracle"]["skipped"]  # the oracle is its own reference
    ref = read["oracle"]["metrics"]["forget/privleak_auc"]["aggregate"]
    for name in ("before", "after"):
        auc = read[name]["metrics"]["forget/privleak_auc"]["aggregate"]
        assert read[name]["metrics"]["privleak"]["aggregate"] == pytest.approx(
            (auc - ref) / ref * 100)
        assert read[name]["config"]["model"] == payload["models"][name]
    assert json.loads((out / "results.json").read_text())["protocol"] == files
    assert "knowmem" in (out / "report.html").read_text()
    with pytest.raises(UnlearnError, match="protocol needs both suite"):
        from_dict(RunConfig, {"protocol": {"suite": "muse"}})
    with pytest.raises(UnlearnError, match=r"protocol\.suite 'musee' is not one of"):
        from_dict(RunConfig, {"protocol": {"suite": "musee", "data": data}})
