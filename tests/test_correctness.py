"""The one correctness judge (containment for short facts, ROUGE-L recall for long answers),
by hand, in every place that uses it, and the TOFU measurement behind its default threshold."""

import math
from pathlib import Path

import pytest

from unlearnkit.data.records import Record
from unlearnkit.errors import UnlearnError
from unlearnkit.evaluation import metrics as M
from unlearnkit.evaluation.attacks import prompts as P
from unlearnkit.evaluation.attacks import reveals, run_attacks
from unlearnkit.evaluation.correctness import (
    DEFAULT_ROUGE_THRESHOLD,
    is_correct,
    judgeable,
    judged_by_rouge,
    rouge_l_recall,
    withheld_rest,
)

TOFU = Path(__file__).resolve().parents[2] / "shared" / "data" / "tofu" / "forget01.json"

# 11 rouge-score tokens: the author was born in paris in the spring of 1970
GOLD = "The author was born in Paris in the spring of 1970."
# LCS with GOLD: the author was born in paris in 1970 = 8 tokens -> recall 8/11 = 0.727
CLOSE = "The author was born in Paris in 1970."
# LCS: was born in paris = 4 tokens -> recall 4/11 = 0.364
FAR = "He was born in Paris."


def long_record(i: int = 0, answer: str = GOLD, **kw) -> Record:
    return Record(id=f"l{i}", split="forget", question=f"Where was author {i} born?",
                  answer=answer, **kw)


def test_rouge_recall_by_hand():
    assert rouge_l_recall(CLOSE, GOLD) == pytest.approx(8 / 11)
    assert rouge_l_recall(FAR, GOLD) == pytest.approx(4 / 11)
    assert rouge_l_recall("  ", GOLD) == 0.0


def test_long_answer_without_targets_uses_the_threshold():
    rec = long_record()
    assert DEFAULT_ROUGE_THRESHOLD == 0.5
    assert is_correct(CLOSE, rec)  # 0.727 >= 0.5
    assert not is_correct(FAR, rec)  # 0.364 < 0.5
    assert not is_correct(CLOSE, rec, rouge_threshold=0.8)
    assert is_correct(FAR, rec, rouge_threshold=4 / 11)  # the bound itself passes


def test_targets_and_short_answers_use_containment():
    with_targets = long_record(targets=["1970"])
    assert is_correct("It was 1970.", with_targets)  # recall 1/11, but the target is there
    assert not is_correct(CLOSE.replace("1970", "1971"), with_targets)  # 7/11 but no target
    short = Record(id="s", split="forget", question="Who?", answer="Barack Obama")
    # ROUGE-L recall would be 1/2 >= 0.5; a 2-word answer is judged by containment
    assert not is_correct("Michelle Obama", short)
    assert is_correct("It was Barack Obama, I think.", short)
    bare = Record(id="b", split="forget", question="Q?")
    assert not judgeable(bare) and not is_correct("anything", bare)


def test_correctness_metric_passes_the_threshold_on():
    recs = [long_record(0), long_record(1), Record(id="q", split="forget", question="Hi?")]
    r = M.correctness([CLOSE, FAR, "x"], recs)
    assert r.values[:2] == [1.0, 0.0] and math.isnan(r.values[2]) and r.aggregate == 0.5
    assert M.correctness([CLOSE, FAR], recs[:2], rouge_threshold=0.3).values == [1.0, 1.0]


def test_reveals_uses_the_threshold_after_a_prefill():
    rec = long_record()
    # prefix + continuation = CLOSE: 8/11
    assert reveals(rec, "born in Paris in 1970.", "The author was")
    assert not reveals(rec, "born in Paris in 1970.", "The author was", rouge_threshold=0.8)


def test_after_a_prefill_a_free_text_answer_is_judged_on_what_was_withheld():
    rec = long_record()
    prefix = "The author was born in Paris"  # 6 of GOLD's 11 words given, 5 withheld
    assert withheld_rest(GOLD, prefix) == "in the spring of 1970"
    assert withheld_rest(GOLD, "The author was born in Pa") == "in the spring of 1970"  # mid-word
    # restating the question: prefix + continuation has recall 7/11 of GOLD, which the old
    # rule counted as a leak; of the withheld 5 words it recalls 1 ("in" or "the")
    restated = "The author was born in Paris."
    assert rouge_l_recall(prefix + " " + restated, GOLD) >= 0.5
    assert not reveals(rec, restated, prefix)
    assert reveals(rec, "in the spring of 1970.", prefix)
    assert reveals(rec, "ris in the spring of 1970.", "The author was born in Pa")
    # the threshold applies to the withheld words: 3 of 5
    assert reveals(rec, "in the summer of 1971, in spring", prefix, rouge_threshold=0.6)
    assert not reveals(rec, "in the summer of 1971, in spring", prefix, rouge_threshold=0.8)
    assert judged_by_rouge(rec) and not judged_by_rouge(long_record(answer="Paris, France"))


def test_in_context_shots_drop_examples_that_state_the_fact():
    """A pool item whose question + answer has recall 8/11 of the target's gold answer would
    leak it by copying: excluded at threshold 0.5, kept at 0.8."""
    target, copy = long_record(0), long_record(1, answer=CLOSE)
    other = long_record(2, answer="She grew up near a lighthouse on the northern coast.")
    shown = P.in_context_prompts(target, pool=[target, copy, other], shots=3)
    assert "lighthouse" in shown[0].question and CLOSE not in shown[0].question
    kept = P.in_context_prompts(target, pool=[target, copy, other], shots=3, rouge_threshold=0.8)
    assert CLOSE in kept[0].question


def test_run_attacks_threads_the_threshold(tok, tiny, monkeypatch):
    import unlearnkit.evaluation.attacks.scoring as scoring

    monkeypatch.setattr(scoring, "generate",
                        lambda model, tokenizer, prompts, **kw: [CLOSE] * len(prompts))
    records = [long_record(0), long_record(1)]
    loose = run_attacks(tiny, tok, records, ["plain"])
    strict = run_attacks(tiny, tok, records, ["plain"], rouge_threshold=0.8)
    assert loose["success_rates"]["plain"] == 1.0 and strict["success_rates"]["plain"] == 0.0
    assert strict["config"]["rouge_threshold"] == 0.8
    with pytest.raises(UnlearnError, match=r"rouge_threshold must be in \(0, 1\]"):
        run_attacks(tiny, tok, records, ["plain"], rouge_threshold=0.0)


@pytest.mark.skipif(not TOFU.is_file(), reason=f"TOFU forget01 not found at {TOFU}")
def test_tofu_forget01_measurement_behind_the_default():
    """The numbers in correctness.py's docstring and docs/RESULTS.md (tokenizer-free part):
    no threshold separates paraphrased from perturbed answers; at 0.5, 9 of 40 paraphrases
    and 27 of 200 perturbed answers pass; every perturbed answer stays below 0.72."""
    from unlearnkit.data.adapters import load_source

    records = load_source("tofu", TOFU, split="forget")
    para = [rouge_l_recall(r.paraphrased_answer, r.answer) for r in records]
    pert = [rouge_l_recall(p, r.answer) for r in records for p in r.perturbed_answers]
    assert (len(para), len(pert)) == (40, 200)
    assert sum(v >= 0.5 for v in para) == 9 and sum(v >= 0.5 for v in pert) == 27
    assert max(pert) == pytest.approx(0.714, abs=1e-3) and min(para) < max(pert)
    assert sum(r.targets == [] for r in records) == 40  # so is_correct uses ROUGE-L here


def test_configs_reject_a_bad_threshold():
    from unlearnkit.pipeline.evaluate import EvalConfig
    from unlearnkit.pipeline.run import RunConfig

    assert EvalConfig(data="d").correct_rouge_threshold == 0.5
    with pytest.raises(UnlearnError, match=r"correct_rouge_threshold must be in \(0, 1\].*got 1.5"):
        EvalConfig(data="d", correct_rouge_threshold=1.5)
    with pytest.raises(UnlearnError, match="correct_rouge_threshold"):
        RunConfig(correct_rouge_threshold=0.0)
