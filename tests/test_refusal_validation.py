"""The refusal detector against XSTest's human labels (Röttger et al., 2024).

Measured with the patterns in evaluation/refusal.py: llama2orig 94.0%, mistralinstruct 92.0%,
overall 93.0% agreement (900 completions); printed by
``unlearn refusal-agreement ../shared/data/xstest/completions_*.csv``. The thresholds sit just
below those numbers so a pattern change that loses agreement fails here. Any other mode
(``--set refusal.mode=judge|either|both`` with a judge) is measured by the same function; here
only with fake judges, whose results follow from the patterns' by hand.
"""

from pathlib import Path

import pytest

from unlearnkit.cli import main
from unlearnkit.errors import UnlearnError
from unlearnkit.evaluation.metrics import validate_refusal_detector
from unlearnkit.evaluation.refusal import is_refusal
from unlearnkit.evaluation.refusal_judge import ModelJudge, judge_prompt

XSTEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "xstest"
FILES = sorted(XSTEST.glob("completions_*.csv"))

needs_data = pytest.mark.skipif(not FILES, reason=f"XSTest completions not found in {XSTEST}")


@needs_data
def test_agreement_with_human_labels():
    report = validate_refusal_detector(FILES)
    assert report["overall"]["n"] == sum(r["n"] for r in report["files"].values())
    assert report["overall"]["agreement"] >= 0.925
    for name, stats in report["files"].items():
        assert stats["agreement"] >= 0.9, (name, stats)


def test_claimed_ignorance_and_plain_answers():
    for text in ("I don't know.", "I'm not sure who that is.", "I have no information about her.",
                 "I'm not familiar with that author.", "Sorry, I can't help with that.", ""):
        assert is_refusal(text), text
    for text in ("The capital of France is Paris.", "She was born in 1975 in Lisbon.",
                 "I can tell you that he wrote three novels."):
        assert not is_refusal(text), text


def test_validation_reports_bad_input(tmp_path):
    with pytest.raises(UnlearnError, match="at least one"):
        validate_refusal_detector([])
    bad = tmp_path / "x.csv"
    bad.write_text("id,completion,final_label\n1,I can't,4_other\n", encoding="utf-8")
    with pytest.raises(UnlearnError, match="unknown final_label"):
        validate_refusal_detector([bad])


def always(word):
    """A fake judge model that gives the same reply to every prompt, and keeps the prompts."""
    def complete(prompts):
        complete.prompts += prompts
        return [word] * len(prompts)

    complete.prompts = []
    return complete


def test_any_mode_by_hand(tmp_path):
    """Patterns flag rows 1 and 3 ("I can't", "I won't"), as the humans do: agreement 4/4.
    A judge that always says REFUSAL: all four flagged, agreement 2/4, precision 2/4, recall 1;
    in mode both it can only confirm the two pattern matches: 4/4 again."""
    path = tmp_path / "completions_fake.csv"
    path.write_text("prompt,completion,final_label\n"
                    "Q1?,I can't help.,2_full_refusal\nQ2?,Sure: do X.,1_full_compliance\n"
                    "Q3?,\"I won't, but X.\",3_partial_refusal\n"
                    "Q4?,Here you go.,1_full_compliance\n",
                    encoding="utf-8")
    patterns = validate_refusal_detector([path])
    assert patterns["mode"] == "patterns" and patterns["overall"]["agreement"] == 1.0
    fake = always("REFUSAL")
    judged = validate_refusal_detector([path], ModelJudge(fake, mode="judge"))
    assert judged["mode"] == "judge" and judged["files"]["completions_fake.csv"] == {
        "n": 4, "agreement": 0.5, "precision": 0.5, "recall": 1.0}
    assert fake.prompts == [judge_prompt(c, q) for q, c in (
        ("Q1?", "I can't help."), ("Q2?", "Sure: do X."), ("Q3?", "I won't, but X."),
        ("Q4?", "Here you go."))]
    both = validate_refusal_detector([path], ModelJudge(always("REFUSAL"), mode="both"))
    assert both["overall"]["agreement"] == 1.0


@needs_data
def test_combined_modes_reduce_to_the_patterns_on_xstest():
    """either + a judge that never flags, and both + a judge that always flags, are the
    pattern detector: the same agreement on the 900 completions."""
    patterns = validate_refusal_detector(FILES)["overall"]
    either = validate_refusal_detector(FILES, ModelJudge(always("ANSWER"), mode="either"))
    both = validate_refusal_detector(FILES, ModelJudge(always("REFUSAL"), mode="both"))
    assert either["overall"] == patterns == both["overall"]
    assert (either["mode"], both["mode"]) == ("either", "both")


@needs_data
def test_cli_prints_the_pattern_agreement(capsys):
    assert main(["refusal-agreement", *map(str, FILES)]) == 0
    out = capsys.readouterr().out
    assert "mode patterns" in out and "overall: agreement 93.0% (n 900" in out
    assert "completions_llama2orig.csv: agreement 94.0%" in out


def test_cli_rejects_bad_settings(tmp_path, capsys):
    csv = tmp_path / "c.csv"
    csv.write_text("completion,final_label\nNo.,2_full_refusal\n", encoding="utf-8")
    assert main(["refusal-agreement", str(csv), "--set", "refusal.mode=vote"]) == 2
    assert "refusal.mode 'vote' is not one of" in capsys.readouterr().err
    assert main(["refusal-agreement", str(csv), "--set", "mode=judge"]) == 2
    assert "give refusal.KEY=VALUE" in capsys.readouterr().err


def test_a_file_not_in_utf8_is_a_one_line_error_naming_it(tmp_path, capsys):
    """A completion saved in Latin-1 (byte 0xe9): an error naming the file, line and byte
    with the fix, from the function and the command alike; a BOM is fine."""
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"completion,final_label\nNo.,2_full_refusal\n"
                      b"Caf\xe9 open.,1_full_compliance\n")
    with pytest.raises(UnlearnError, match=r"latin\.csv:3: not UTF-8 text \(byte 0xe9\); "
                                           "re-encode"):
        validate_refusal_detector([latin])
    assert main(["refusal-agreement", str(latin)]) == 2
    err = capsys.readouterr().err
    assert "latin.csv:3: not UTF-8" in err and len(err.strip().splitlines()) == 1
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffcompletion,final_label\nNo.,2_full_refusal\n".encode())
    assert validate_refusal_detector([bom])["overall"]["n"] == 1
    with pytest.raises(UnlearnError, match="is a folder"):
        validate_refusal_detector([tmp_path])
