import json

import pytest

from unlearnkit.data.records import Record, read_jsonl, validate_records, write_jsonl
from unlearnkit.errors import UnlearnError


def rec(i, split="retain", q=None, **kw):
    return Record(id=str(i), split=split, question=q or f"Question {i}?", answer="A.", **kw)


def test_round_trip_keeps_every_field(tmp_path):
    r = rec(1, paraphrased_questions=["P?"], perturbed_answers=["W."], choices=["A", "B"],
            answer_index=1, targets=["A"], meta={"k": [1, 2]}, system="S.")
    write_jsonl(tmp_path / "x.jsonl", [r, rec(2, "forget")])
    assert read_jsonl(tmp_path / "x.jsonl") == [r, rec(2, "forget")]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id": ""}, "'id' must be a non-empty string"),
        ({"split": "train"}, "split 'train' is not one of"),
        ({"question": "  "}, "'question' must be a non-empty string"),
        ({"choices": ["a"], "answer_index": 2}, "answer_index 2 is outside its 1 choices"),
        ({"targets": "abc"}, "'targets' must be a list of strings"),
    ],
)
def test_invalid_records_are_rejected(kwargs, message):
    base = {"id": "x", "split": "retain", "question": "Q?", "answer": "A."} | kwargs
    with pytest.raises(UnlearnError, match=message):
        Record(**base)


def test_duplicate_ids_and_forget_retain_overlap():
    with pytest.raises(UnlearnError, match="duplicate record id '1'"):
        validate_records([rec(1), rec(1, "forget", q="Other?")])
    with pytest.raises(UnlearnError, match="in both forget"):
        validate_records([rec(1, "forget", q="Who is Ada?"), rec(2, "retain", q="who is  ada")])
    assert len(validate_records([rec(1, "forget"), rec(2)])) == 2


def test_reading_malformed_or_unknown_fields(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "1", "split": "retain", "question": "Q"}\n{not json\n')
    with pytest.raises(UnlearnError, match=r"bad.jsonl:2: malformed JSON"):
        read_jsonl(path)
    path.write_text(json.dumps({"id": "1", "split": "retain", "question": "Q", "colour": 1}))
    with pytest.raises(UnlearnError, match="unknown record field"):
        read_jsonl(path)
    path.write_text(json.dumps({"id": "1", "split": "retain"}))
    with pytest.raises(UnlearnError, match="missing required field 'question'"):
        read_jsonl(path)


def test_a_line_that_is_not_utf8_is_a_user_error_naming_the_file_and_line(tmp_path):
    path = tmp_path / "forget.jsonl"
    good = json.dumps({"id": "1", "split": "forget", "question": "Q"}) + "\n"
    bad = json.dumps({"id": "2", "split": "forget", "question": "Where is Zoé?"},
                     ensure_ascii=False) + "\n"
    path.write_bytes(good.encode() + bad.encode("latin-1"))
    with pytest.raises(UnlearnError, match=r"forget.jsonl:2: not UTF-8 text \(byte 0xe9 .*"
                                           r"re-encode the file as UTF-8"):
        read_jsonl(path)
    # the same text in UTF-8 (with a byte-order mark an editor may add) reads
    path.write_bytes("\ufeff".encode() + good.encode() + bad.encode())
    assert [r.question for r in read_jsonl(path)] == ["Q", "Where is Zoé?"]
