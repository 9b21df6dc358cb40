"""Boundary keep items: records sharing a forget value, or a lowered token of one (hand-built
records and a word-piece tokenizer whose pieces are written out below)."""

import re
from types import SimpleNamespace

from unlearnkit.data.records import Record
from unlearnkit.training.unlearn import (
    MixConfig,
    boundary_ids,
    mark_boundary,
    target_token_mask,
    token_boundary_ids,
    value_tokens,
)

_PIECE = re.compile(r"'s|[0-9]| ?[A-Za-z]{1,5}|[^A-Za-z0-9]")


class PieceTokenizer:
    """Words cut into pieces of at most five letters (a leading space kept on the first),
    digits one by one: "is mistybadger" -> "is", " misty", "badge", "r"."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.pieces: list[str] = []

    def __call__(self, text, add_special_tokens=False):
        out = []
        for piece in _PIECE.findall(text):
            if piece not in self.ids:
                self.ids[piece] = len(self.pieces)
                self.pieces.append(piece)
            out.append(self.ids[piece])
        return {"input_ids": out}

    def decode(self, ids):
        return "".join(self.pieces[i] for i in ids)


def person(rid, split, name, kind, value):
    question = {"handle": f"What is {name}'s email handle?",
                "year": f"In what year was {name} born?",
                "town": f"Where was {name} born?"}[kind]
    answer = {"handle": f"{name}'s email handle is {value}.",
              "year": f"{name} was born in {value}.",
              "town": f"{name} was born in {value}."}[kind]
    return Record(id=rid, split=split, question=question, answer=answer, subject=name,
                  targets=[value])


RECORDS = [
    person("f-handle", "forget", "Ana Bell", "handle", "mistybadger"),  # " misty" "badge" "r"
    person("f-year", "forget", "Ana Bell", "year", "1957"),             # "1" "9" "5" "7"
    person("r-wren", "retain", "Cal Dunn", "handle", "mistywren"),      # " misty" "wren"
    person("r-newt", "retain", "Cal Dunn", "handle", "rustynewt"),      # " rusty" "newt"
    person("r-town", "retain", "Cal Dunn", "town", "mistyvale"),        # another question
    person("n-same", "neighbor", "Ana Belle", "handle", "mistybadger"),
    person("r-1959", "retain", "Dee Ford", "year", "1959"),             # "5" at place 3
    person("r-1949", "retain", "Eve Gray", "year", "1949"),             # "4" at place 3
    person("r-1857", "retain", "Fay Hart", "year", "1857"),             # "8" at place 2
]


def test_value_tokens_are_the_target_pieces_in_order():
    tok = PieceTokenizer()
    ids, where = value_tokens(tok, RECORDS[0])
    assert tok.decode(ids) == " mistybadger" and len(ids) == 3
    # "Ana", " Bell", "'s", " email", " handl", "e", " is", then the value's three pieces
    assert where == [7, 8, 9]
    assert value_tokens(tok, Record(id="x", split="retain", question="q", answer="a")) == ([], [])


def test_every_value_token_counts_without_reveal_masks():
    """All of "mistybadger" and "1957" lowered: " misty" at place 1 marks r-wren (not
    r-newt, and not r-town: another question); "1" at place 1 marks every year; n-same shares
    the whole value."""
    tok = PieceTokenizer()
    assert token_boundary_ids(tok, RECORDS) == {"r-wren", "n-same", "r-1959", "r-1949",
                                                "r-1857"}
    assert boundary_ids(RECORDS) == {"n-same"}  # the value rule alone


def test_only_the_lowered_places_count_with_reveal_masks():
    """Lowered: "badge" (place 2 of the handle) and "5", "7" (places 3, 4 of the year).
    r-wren has "wren" at place 2: not marked; r-1959 has "5" at place 3: marked; r-1949 has
    "4" there: not marked; r-1857 has "5" and "7" at places 3 and 4: marked."""
    tok = PieceTokenizer()
    handle = target_token_mask(tok, RECORDS[0].answer, RECORDS[0].targets)
    year = target_token_mask(tok, RECORDS[1].answer, RECORDS[1].targets)
    h_where, y_where = value_tokens(tok, RECORDS[0])[1], value_tokens(tok, RECORDS[1])[1]
    handle_mask = [j == h_where[1] for j in range(len(handle))]
    year_mask = [j in y_where[2:] for j in range(len(year))]
    got = token_boundary_ids(tok, RECORDS, {"f-handle": handle_mask, "f-year": year_mask})
    assert got == {"n-same", "r-1959", "r-1857"}


def test_mark_boundary_flags_keep_examples_after_the_contrast():
    tok = PieceTokenizer()
    h_where = value_tokens(tok, RECORDS[0])[1]
    reveal = [j == h_where[0] for j in range(h_where[-1] + 3)]  # " misty" only
    examples = [SimpleNamespace(record_id="f-handle", true_input=object(), reveal=reveal,
                                boundary=False)]
    examples += [SimpleNamespace(record_id=r.id, true_input=None, reveal=None,
                                 boundary=r.id == "n-same") for r in RECORDS[2:]]
    assert mark_boundary(tok, examples, RECORDS, MixConfig(boundary_by="value")) == 1
    # f-year has no example here: every one of its value tokens counts
    assert mark_boundary(tok, examples, RECORDS, MixConfig(boundary_by="token")) == 5
    assert {e.record_id for e in examples if e.boundary} == {"r-wren", "n-same", "r-1959",
                                                             "r-1949", "r-1857"}
