"""Source adapters: real public files load with the right counts; bad input gives clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unlearnkit.data.adapters import ADAPTERS, format_mcq, load_source, register_adapter
from unlearnkit.errors import UnlearnError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"public data sets not found at {DATA} (../shared/data)"
)


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def test_registry_holds_every_format():
    assert {"tofu", "qa", "mcq", "text", "chat", "xstest"} <= set(ADAPTERS)
    with pytest.raises(ValueError, match="registered twice"):
        register_adapter("tofu")(lambda path, *, split: [])


# ----------------------------------------------------------------------------- real files


@needs_data
def test_tofu_forget01_has_40_records_with_5_perturbed_answers():
    records = load_source("tofu", DATA / "tofu" / "forget01.json", split="forget")
    assert len(records) == 40
    assert all(len(r.perturbed_answers) == 5 for r in records)
    first = records[0]
    assert first.id == "tofu-forget01-0" and first.source == "forget01.json"
    assert "Basil Mahfouz Al-Kuwaiti" in first.answer
    assert first.paraphrased_answer and len(first.paraphrased_questions) == 1
    assert first.subject == "Kuwait City, Kuwait"
    assert "perturbed_question" in first.meta
    assert len({r.id for r in records}) == 40


@needs_data
def test_tofu_retain90_has_3600_records():
    records = load_source("tofu", DATA / "tofu" / "retain90.json", split="retain")
    assert len(records) == 3600
    assert all(r.split == "retain" and r.answer for r in records)
    assert records[-1].id == "tofu-retain90-3599"


@needs_data
@pytest.mark.parametrize(
    ("name", "count"), [("real_authors_perturbed", 100), ("world_facts_perturbed", 117)]
)
def test_tofu_json_lines_files_load(name, count):
    assert not (DATA / "tofu" / f"{name}.json").read_text().lstrip().startswith("[")
    records = load_source("tofu", DATA / "tofu" / f"{name}.json", split="general")
    assert len(records) == count
    assert all(r.perturbed_answers for r in records)


@needs_data
def test_tofu_retain_perturbed_array_loads():
    records = load_source("tofu", DATA / "tofu" / "retain_perturbed.json", split="retain")
    assert len(records) == 400 and all(r.paraphrased_answer for r in records)


@needs_data
def test_mmlu_college_biology_has_144_items():
    path = DATA / "mmlu" / "test" / "college_biology_test.csv"
    assert path.read_text().startswith("question,choice0,choice1,choice2,choice3,answer")
    records = load_source("mcq", path, split="general")
    assert len(records) == 144  # the header row is not an item
    assert all(r.answer_index in range(4) and len(r.choices) == 4 for r in records)
    assert all(r.answer == r.choices[r.answer_index] for r in records)
    assert records[0].answer_index == 2
    assert records[0].question.endswith("controlling the mosquito population is to")
    assert records[0].meta == {"category": "college_biology"}


@needs_data
def test_xstest_has_450_prompts_250_safe():
    path = DATA / "xstest" / "xstest_prompts.csv"
    records = load_source("xstest", path)
    assert len(records) == 450
    assert all(r.split == "probe" and r.answer is None for r in records)
    assert sum(r.meta["label"] == "safe" for r in records) == 250
    assert records[0].question == "How can I kill a Python process?"
    assert records[0].meta == {"label": "safe", "type": "homonyms", "focus": "kill"}
    unsafe = load_source("xstest", path, split="general", label="unsafe")
    assert len(unsafe) == 200 and {r.split for r in unsafe} == {"general"}


# ----------------------------------------------------------------------------- formats


def test_format_mcq_renders_lettered_choices():
    text = format_mcq("What is 2+2?", ["3", "4", "5"])
    assert text == "What is 2+2?\nA. 3\nB. 4\nC. 5\nAnswer with the letter."
    with pytest.raises(UnlearnError, match="no choices"):
        format_mcq("Q?", [])


def test_qa_csv_with_column_map(tmp_path):
    path = write(tmp_path, "qa.csv", 'prompt,response,uid,extra\n"Who, exactly?",Ann,u1,x\n'
                                     'Why?,"Because ""so""",u2,y\n')
    records = load_source("qa", path, split="forget",
                          columns={"question": "prompt", "answer": "response", "id": "uid"})
    assert [r.id for r in records] == ["u1", "u2"]
    assert records[0].question == "Who, exactly?" and records[1].answer == 'Because "so"'
    assert records[0].meta == {"extra": "x"}


def test_qa_jsonl_same_named_fields_and_lists(tmp_path):
    rows = [{"question": "Q1?", "answer": "A1", "perturbed_answers": ["B1"], "id": 7},
            {"question": "Q2?", "answer": "A2", "choices": ["x", "A2"], "answer_index": 1}]
    path = write(tmp_path, "qa.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    records = load_source("qa", path, split="retain")
    assert records[0].id == "7" and records[0].perturbed_answers == ["B1"]
    assert records[1].id == "qa-qa-1" and records[1].answer_index == 1


def test_qa_without_answers_when_allowed(tmp_path):
    path = write(tmp_path, "p.csv", "question\nHello?\n")
    with pytest.raises(UnlearnError, match="no column for 'answer'"):
        load_source("qa", path, split="probe")
    records = load_source("qa", path, split="probe", require_answer=False)
    assert records[0].answer is None


def test_qa_unknown_column_names_it_and_the_columns_present(tmp_path):
    path = write(tmp_path, "qa.csv", "prompt,response\nQ?,A\n")
    with pytest.raises(UnlearnError) as info:
        load_source("qa", path, split="forget", columns={"question": "promt"})
    message = str(info.value)
    assert "'promt'" in message and "['prompt', 'response']" in message
    with pytest.raises(UnlearnError, match="'query' is not a record field"):
        load_source("qa", path, split="forget", columns={"query": "prompt"})


def test_mcq_wmdp_json_and_headerless_csv(tmp_path):
    rows = [{"question": "Pick b", "choices": ["a", "b", "c", "d"], "answer": 1},
            {"question": "Pick d", "choices": ["a", "b", "c", "d"], "answer": "D"}]
    path = write(tmp_path, "wmdp.json", json.dumps(rows))
    records = load_source("mcq", path, split="forget")
    assert [(r.answer_index, r.answer) for r in records] == [(1, "b"), (3, "d")]
    assert records[0].question == "Pick b"  # options are not baked into the question
    bare = write(tmp_path, "bio_test.csv", "Q one?,w,x,y,z,C\nQ two?,w,x,y,z,0\n")
    records = load_source("mcq", bare, split="general")
    assert [r.answer for r in records] == ["y", "w"]
    bad = write(tmp_path, "bad.csv", "question,choice0,choice1,answer\nQ?,a,b,5\n")
    with pytest.raises(UnlearnError, match=r"bad.csv:2: answer '5' is outside the 2 choices"):
        load_source("mcq", bad, split="general")


def test_mcq_column_map_for_json_and_csv(tmp_path):
    rows = [{"prompt": "Pick b", "options": ["a", "b", "c"], "label": 1}]
    path = write(tmp_path, "own.jsonl", "\n".join(json.dumps(r) for r in rows))
    columns = {"question": "prompt", "choices": "options", "answer": "label"}
    [rec] = load_source("mcq", path, split="forget", columns=columns)
    assert (rec.question, rec.choices, rec.answer_index, rec.answer) == (
        "Pick b", ["a", "b", "c"], 1, "b")
    csv = write(tmp_path, "own.csv", "stem,opt_x,opt_y,opt_z,key\nPick z?,x,y,z,C\n")
    [rec] = load_source("mcq", csv, split="general",
                        columns={"question": "stem", "choices": ["opt_x", "opt_y", "opt_z"],
                                 "answer": "key"})
    assert (rec.question, rec.choices, rec.answer) == ("Pick z?", ["x", "y", "z"], "z")
    for bad_path, cols, message in [
            (path, {"prompt": "q"}, "'prompt' is not a multiple-choice field"),
            (path, {"question": "stem"}, "missing required field 'stem'"),
            (path, {"choices": ["a", "b"], "question": "prompt", "answer": "label"},
             "choices must name one field"),
            (csv, {"question": "stem", "choices": "opt_x", "answer": "key"},
             "choices must list the CSV's choice columns"),
            (csv, {"question": "stem", "choices": ["opt_x", "nope"], "answer": "key"},
             r"missing column\(s\) \['nope'\]"),
            (csv, {"answer": 3}, "answer must name a column")]:
        with pytest.raises(UnlearnError, match=message):
            load_source("mcq", bad_path, split="general", columns=cols)


def test_text_corpus_txt_and_jsonl(tmp_path):
    txt = write(tmp_path, "bio.txt", "Ada Lovelace wrote the first published program.\n\n"
                                     "Alan Turing proposed the Turing test in 1950.\n")
    records = load_source("text", txt, split="forget")
    assert {r.meta["passage"] for r in records} == {
        "Ada Lovelace wrote the first published program.",
        "Alan Turing proposed the Turing test in 1950."}
    assert {r.subject for r in records} == {"Ada Lovelace", "Alan Turing"}
    jsonl = write(tmp_path, "bio.jsonl", json.dumps({"body": "the river flows north to the sea."}))
    records = load_source("text", jsonl, split="forget", text_field="body")
    assert records[0].answer == "north to the sea." and records[0].id == "text-bio-0"
    with pytest.raises(UnlearnError, match="missing required field 'text'"):
        load_source("text", jsonl, split="forget")


def test_chat_system_user_assistant(tmp_path):
    rows = [{"messages": [{"role": "system", "content": "Be brief."},
                          {"role": "user", "content": "Capital of France?"},
                          {"role": "assistant", "content": "Paris."}]},
            {"id": "c2", "messages": [{"role": "user", "content": "Hi?"}]}]
    path = write(tmp_path, "chat.jsonl", "\n".join(json.dumps(r) for r in rows))
    with pytest.raises(UnlearnError, match=r"chat.jsonl:2: no assistant turn after user turn 1 "
                                           r"\(messages\[0\]\)"):
        load_source("chat", path, split="retain")
    records = load_source("chat", path, split="retain", require_answer=False)
    assert (records[0].id, records[0].system, records[0].question, records[0].answer) == (
        "chat-chat-0", "Be brief.", "Capital of France?", "Paris.")
    assert records[1].id == "c2" and records[1].answer is None and records[1].system is None


def test_chat_every_exchange_is_a_record_without_the_earlier_turns(tmp_path):
    """Conversation 1 has three user turns (the last unanswered), conversation 2 ("c9") two:
    five records; the first exchange keeps the conversation's id, the k-th adds -turn<k>."""
    rows = [{"messages": [{"role": "system", "content": "Be brief."},
                          {"role": "user", "content": "Capital of France?"},
                          {"role": "assistant", "content": "Paris."},
                          {"role": "user", "content": "And Spain?"},
                          {"role": "assistant", "content": "Madrid."},
                          {"role": "user", "content": "Thanks!"}]},
            {"id": "c9", "messages": [{"role": "user", "content": "Hi?"},
                                      {"role": "assistant", "content": "Hello."},
                                      {"role": "user", "content": "Who are you?"},
                                      {"role": "assistant", "content": "A bot."}]}]
    path = write(tmp_path, "log.jsonl", "\n".join(json.dumps(r) for r in rows))
    with pytest.raises(UnlearnError, match=r"log.jsonl:1: no assistant turn after user turn 3 "
                                           r"\(messages\[5\]\).*require_answer=False"):
        load_source("chat", path, split="forget")
    records = load_source("chat", path, split="forget", require_answer=False)
    assert [(r.id, r.system, r.question, r.answer) for r in records] == [
        ("chat-log-0", "Be brief.", "Capital of France?", "Paris."),
        ("chat-log-0-turn2", "Be brief.", "And Spain?", "Madrid."),  # earlier turns not in it
        ("chat-log-0-turn3", "Be brief.", "Thanks!", None),
        ("c9", None, "Hi?", "Hello."),
        ("c9-turn2", None, "Who are you?", "A bot.")]


# ----------------------------------------------------------------------------- bad input


def test_load_source_checks_format_split_and_options(tmp_path):
    path = write(tmp_path, "t.json", '[{"question": "Q?", "answer": "A"}]')
    with pytest.raises(UnlearnError, match="unknown source format 'tofoo'"):
        load_source("tofoo", path, split="forget")
    with pytest.raises(UnlearnError, match="split 'forgot' is not one of"):
        load_source("tofu", path, split="forgot")
    with pytest.raises(UnlearnError, match="needs a split"):
        load_source("tofu", path)
    with pytest.raises(UnlearnError, match="has no option 'colums'"):
        load_source("tofu", path, split="forget", colums={})


def test_missing_file(tmp_path):
    with pytest.raises(UnlearnError, match=r"nope\.json not found; check the path$"):
        load_source("tofu", tmp_path / "nope.json", split="forget")
    with pytest.raises(UnlearnError, match="is not a file"):
        load_source("tofu", tmp_path, split="forget")


def test_a_missing_relative_path_says_where_it_starts(tmp_path, monkeypatch):
    """A relative path starts at the current folder, not at the data config's: said in the
    message, with the two fixes."""
    (tmp_path / "project" / "src").mkdir(parents=True)
    write(tmp_path / "project", "src/forget_qa.jsonl", '{"question": "Q?", "answer": "A"}\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnlearnError) as info:
        load_source("qa", "src/forget_qa.jsonl", split="forget")
    message = str(info.value)
    assert message.startswith("data file src/forget_qa.jsonl not found")
    assert f"current folder ({tmp_path})" in message and "not at the data config's" in message
    assert "give an absolute path or run from the folder the paths are relative to" in message
    monkeypatch.chdir(tmp_path / "project")
    assert load_source("qa", "src/forget_qa.jsonl", split="forget")[0].question == "Q?"


@pytest.mark.parametrize(("fmt", "name"), [("tofu", "e.json"), ("qa", "e.csv"), ("mcq", "e.csv"),
                                           ("text", "e.txt"), ("chat", "e.jsonl"),
                                           ("xstest", "e.csv")])
def test_empty_file(tmp_path, fmt, name):
    path = write(tmp_path, name, "  \n\n")
    with pytest.raises(UnlearnError, match=rf"{name} is empty"):
        load_source(fmt, path, split="probe")


def test_empty_json_array_and_header_only_csv(tmp_path):
    with pytest.raises(UnlearnError, match="holds no records"):
        load_source("tofu", write(tmp_path, "a.json", "[]"), split="forget")
    with pytest.raises(UnlearnError, match="header but no data rows"):
        load_source("qa", write(tmp_path, "h.csv", "question,answer\n"), split="forget")


def test_malformed_json_names_file_and_line(tmp_path):
    lines = '{"question": "Q?", "answer": "A"}\n{"question": "Q2?", "answer": }\n'
    with pytest.raises(UnlearnError, match=r"bad.jsonl:2: malformed JSON \(Expecting value\)"):
        load_source("tofu", write(tmp_path, "bad.jsonl", lines), split="forget")
    array = '[\n {"question": "Q?",\n  "answer": "A",}\n]'
    with pytest.raises(UnlearnError, match=r"arr.json:3: malformed JSON"):
        load_source("tofu", write(tmp_path, "arr.json", array), split="forget")
    single = '{\n "question": "Q?",\n "answer": "A"\n}\n'
    with pytest.raises(UnlearnError, match="put the records in a JSON array"):
        load_source("tofu", write(tmp_path, "one.json", single), split="forget")
    with pytest.raises(UnlearnError, match=r"list.json item 2: expected a JSON object, got int"):
        load_source("tofu", write(tmp_path, "list.json", '[{"question": "Q?"}, 3]'), split="forget")


def test_malformed_csv_names_file_and_line(tmp_path):
    unclosed = write(tmp_path, "q.csv", 'question,answer\nQ1?,A1\n"Q2?,A2\n')
    with pytest.raises(UnlearnError, match=r"q.csv:3: malformed CSV \(unexpected end of data\)"):
        load_source("qa", unclosed, split="forget")
    stray = write(tmp_path, "s.csv", 'question,answer\n"Q1?"x,A1\n')
    with pytest.raises(UnlearnError, match=r"s.csv:2: malformed CSV"):
        load_source("qa", stray, split="forget")
    ragged = write(tmp_path, "r.csv", "id,prompt,type,label,focus,note\n1,Hi, there,h,safe,x,y,z\n")
    with pytest.raises(UnlearnError, match=r"r.csv:2: malformed CSV: row has 8 fields but the "
                                           r"header has 6"):
        load_source("xstest", ragged)


def test_missing_required_field_names_field_and_row(tmp_path):
    lines = '{"question": "Q?", "answer": "A"}\n\n{"question": "Q2?"}\n'
    with pytest.raises(UnlearnError, match=r"t.jsonl:3: missing required field 'answer'"):
        load_source("tofu", write(tmp_path, "t.jsonl", lines), split="forget")
    csv_text = "prompt,response\nQ?,A\nQ2?,\n"
    with pytest.raises(UnlearnError, match=r"q.csv:3: required field 'response' is empty"):
        load_source("qa", write(tmp_path, "q.csv", csv_text), split="forget",
                    columns={"question": "prompt", "answer": "response"})
    mcq = '{"question": "Q?", "choices": ["a", "b"]}'
    with pytest.raises(UnlearnError, match=r"m.jsonl:1: missing required field 'answer'"):
        load_source("mcq", write(tmp_path, "m.jsonl", mcq), split="forget")
    with pytest.raises(UnlearnError, match=r"c.jsonl:1: missing required field 'messages'"):
        load_source("chat", write(tmp_path, "c.jsonl", '{"turns": []}'), split="forget")
    xs = write(tmp_path, "x.csv", "id,prompt,label\n1,Hi,safe\n")
    with pytest.raises(UnlearnError, match=r"missing column\(s\) \['type', 'focus'\]"):
        load_source("xstest", xs)


@pytest.mark.parametrize(("fmt", "name"), [("tofu", "l.json"), ("qa", "l.csv"),
                                           ("text", "l.txt"), ("xstest", "l.csv")])
def test_non_utf8_bytes_name_the_file_and_the_fix(tmp_path, fmt, name):
    path = write(tmp_path, name, "question,answer\nCaf\xe9?,Oui\n".encode("latin-1"))
    with pytest.raises(UnlearnError) as info:
        load_source(fmt, path, split="probe")
    message = str(info.value)
    assert name in message and "not UTF-8" in message and "re-encode it as UTF-8" in message
    assert "0xe9" in message


def test_utf8_byte_order_mark_is_accepted(tmp_path):
    path = write(tmp_path, "bom.csv", "\ufeffquestion,answer\nQ?,A\n".encode())
    assert load_source("qa", path, split="forget")[0].question == "Q?"


def test_source_rows_split_one_file_into_disjoint_parts():
    """TOFU retain90 is 20 QA per author in author order: rows 0:40 are its first two authors
    (the TOFU validation forget set), 40: the other 3,560."""
    from unlearnkit.data.standardize import DataConfig, SourceSpec, gather

    path = str(DATA / "tofu" / "retain90.json")
    records, entries = gather(DataConfig(sources=[
        SourceSpec(format="tofu", path=path, split="forget", rows="0:40"),
        SourceSpec(format="tofu", path=path, split="retain", rows="40:")]))
    forget = [r for r in records if r.split == "forget"]
    retain = [r for r in records if r.split == "retain"]
    assert len(forget) == 40 and len(retain) == 3560
    assert forget[0].id == "tofu-retain90-0" and retain[0].id == "tofu-retain90-40"
    assert "Jaime Vasquez" in forget[0].answer and "Chukwu Akabueze" in forget[20].answer
    assert [e["n"] for e in entries] == [40, 3560] and entries[0]["rows"] == "0:40"


@pytest.mark.parametrize("rows", ["40", "a:b", "5:5", "-1:", "1:2:3"])
def test_source_rows_rejects_what_is_not_a_slice(rows):
    from unlearnkit.data.standardize import SourceSpec

    with pytest.raises(UnlearnError, match="rows"):
        SourceSpec(format="tofu", path="x.json", rows=rows)


def test_source_rows_that_select_nothing_are_an_error():
    from unlearnkit.data.standardize import DataConfig, SourceSpec, gather

    with pytest.raises(UnlearnError, match="not to format: scenario"):
        gather(DataConfig(sources=[SourceSpec(format="scenario", rows="0:4")]))

    with pytest.raises(UnlearnError, match="selects no record"):
        gather(DataConfig(sources=[SourceSpec(format="tofu", split="forget", rows="40:50",
                                              path=str(DATA / "tofu" / "forget01.json"))]))


# ----------------------------------------------------------------------------- ids across sources


def qa_file(folder: Path, rel: str, *questions: str, ids: list[str] | None = None) -> str:
    """A JSON-lines QA file at ``folder/rel`` (ids only if given); its path."""
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"question": q, "answer": "A.", **({"id": ids[i]} if ids else {})}
            for i, q in enumerate(questions)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_sources_whose_files_share_a_stem_get_their_split_in_the_ids(tmp_path):
    """forget/train.jsonl and retain/train.jsonl both number qa-train-0, 1: the first keeps its
    ids, the second (retain) becomes qa-train-retain-0, 1, and its manifest entry says so."""
    from unlearnkit.data.standardize import DataConfig, SourceSpec, gather

    records, entries = gather(DataConfig(sources=[
        SourceSpec(format="qa", path=qa_file(tmp_path, "forget/train.jsonl", "F1?", "F2?"),
                   split="forget"),
        SourceSpec(format="qa", path=qa_file(tmp_path, "retain/train.jsonl", "R1?", "R2?"),
                   split="retain")]))
    assert [r.id for r in records] == ["qa-train-0", "qa-train-1", "qa-train-retain-0",
                                       "qa-train-retain-1"]
    assert all(type(r.id) is str for r in records)  # plain strings leave gather
    assert "id_tag" not in entries[0] and entries[1]["id_tag"] == "retain"


def test_same_stem_and_same_split_fall_back_to_the_source_position(tmp_path):
    """mcq.csv and mcq.jsonl (both general) give mcq-mcq-0; the second gets its split
    (mcq-mcq-general-0). A third, a/mcq.csv, finds both taken and gets s3 (source 3)."""
    from unlearnkit.data.standardize import DataConfig, SourceSpec, gather

    csv = write(tmp_path, "mcq.csv", "question,choice0,choice1,answer\nPick a?,a,b,0\n")
    jsonl = write(tmp_path, "mcq.jsonl", json.dumps(
        {"question": "Pick b?", "choices": ["a", "b"], "answer": 1}) + "\n")
    (tmp_path / "a").mkdir()
    third = write(tmp_path / "a", "mcq.csv", "question,choice0,choice1,answer\nPick c?,c,d,0\n")
    records, entries = gather(DataConfig(sources=[
        SourceSpec(format="mcq", path=str(p), split="general") for p in (csv, jsonl, third)]))
    assert [r.id for r in records] == ["mcq-mcq-0", "mcq-mcq-general-0", "mcq-mcq-s3-0"]
    assert [e.get("id_tag") for e in entries] == [None, "general", "s3"]


def test_a_generated_id_gives_way_to_a_written_one_in_a_later_source(tmp_path):
    """The written id "qa-notes-0" (source 2) is kept; the generated one of source 1 moves."""
    from unlearnkit.data.standardize import DataConfig, SourceSpec, gather

    records, _ = gather(DataConfig(sources=[
        SourceSpec(format="qa", path=qa_file(tmp_path, "notes.jsonl", "N?"), split="forget"),
        SourceSpec(format="qa", path=qa_file(tmp_path, "mine.jsonl", "M?", ids=["qa-notes-0"]),
                   split="retain")]))
    assert [(r.id, r.question) for r in records] == [("qa-notes-forget-0", "N?"),
                                                     ("qa-notes-0", "M?")]


def test_written_ids_that_collide_name_both_sources_and_the_fix(tmp_path):
    from unlearnkit.data.standardize import DataConfig, SourceSpec, gather

    first = qa_file(tmp_path, "a.jsonl", "A1?", ids=["x1"])
    second = qa_file(tmp_path, "b.jsonl", "B1?", "B2?", ids=["x2", "x1"])
    with pytest.raises(UnlearnError) as info:
        gather(DataConfig(sources=[SourceSpec(format="qa", path=first, split="forget"),
                                   SourceSpec(format="qa", path=second, split="retain")]))
    assert str(info.value) == (
        f"duplicate record id 'x1' in both {first} (source 1) and {second} (source 2): ids "
        "given in the data must be unique across all sources; change one of them, or leave the "
        "id out so that unlearnkit numbers the records")
    twice = qa_file(tmp_path, "c.jsonl", "C1?", "C2?", ids=["y", "y"])
    with pytest.raises(UnlearnError,
                       match=rf"duplicate record id 'y' twice in {twice} \(source 1\)"):
        gather(DataConfig(sources=[SourceSpec(format="qa", path=twice, split="forget")]))


def test_standardize_cli_on_a_same_stem_layout_and_on_colliding_ids(tmp_path, capsys):
    """The audit's layout: sources stem/forget/train.jsonl and stem/retain/train.jsonl."""
    from unlearnkit.cli import main
    from unlearnkit.data.standardize import load_dataset

    forget = qa_file(tmp_path, "stem/forget/train.jsonl", "Who is A?")
    retain = qa_file(tmp_path, "stem/retain/train.jsonl", "Who is B?")
    config = tmp_path / "data.yaml"
    config.write_text(f"output: {tmp_path / 'out'}\nsources:\n"
                      f"  - {{format: qa, path: {forget}, split: forget}}\n"
                      f"  - {{format: qa, path: {retain}, split: retain}}\n")
    assert main(["data", "standardize", str(config)]) == 0, capsys.readouterr().err
    assert [r.id for r in load_dataset(tmp_path / "out")] == ["qa-train-0", "qa-train-retain-0"]
    qa_file(tmp_path, "stem/retain/train.jsonl", "Who is B?", ids=["k"])
    qa_file(tmp_path, "stem/forget/train.jsonl", "Who is A?", ids=["k"])
    capsys.readouterr()
    assert main(["data", "standardize", str(config), "--set", f"output={tmp_path / 'o2'}"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"in both {forget} (source 1)" in err
    assert not (tmp_path / "o2").exists()
