import math

import pytest
import torch

from unlearnkit.data.records import Record
from unlearnkit.data.render import render
from unlearnkit.models.engine import token_logprobs
from unlearnkit.models.teacher import TeacherConfig
from unlearnkit.models.tiny import tiny_model
from unlearnkit.objectives.pushpull import PushPullConfig
from unlearnkit.training.reveal import (
    apply_contrast,
    common_tail,
    contrast_reveal,
    contrast_scores,
    contrast_subjects,
    record_subject,
    reveal_by_contrast,
    revealing_tokens,
    spare_initials,
    stand_in_names,
)
from unlearnkit.training.unlearn import build_examples

T = torch.tensor


def people():
    rows = [("Ada", "Dunmere", "forget"), ("Bo", "Keld", "retain"), ("Cy", "Arn", "neighbor"),
            ("Di", "Sorr", "retain")]
    return [Record(id=f"r{i}", split=split, question=f"Where was {name} born?",
                   answer=f"{name} was born in {town}.", subject=name, targets=[town])
            for i, (name, town, split) in enumerate(rows)]


def test_common_tail():
    assert common_tail([1, 2, 3, 4], [9, 3, 4]) == 2
    assert common_tail([1, 2], [1, 2]) == 2
    assert common_tail([1, 2], [2, 1]) == 0
    assert common_tail([], [1]) == 0


def test_contrast_scores_hand_derived():
    """Real answer: 3 tokens, log-probs (ln .5, ln .8, ln .9). Two counterfactuals whose last
    2 tokens are the real ones (the first differs: the name): at token 1 the prior is
    ln((.2 + .6) / 2) = ln .4, so c = ln .8 - ln .4 = ln 2; at token 2, ln(.9 / .45) = ln 2
    as well; token 0 lies outside a tail: None. A counterfactual one token longer (a longer
    name) is read from its own end."""
    real = T([0.5, 0.8, 0.9]).log()
    others = [T([0.1, 0.2, 0.45]).log(), T([0.3, 0.3, 0.6, 0.45]).log()]
    scores = contrast_scores(real, others, [2, 2])
    assert scores[0] is None
    assert scores[1] == pytest.approx(math.log(2.0), abs=1e-6)
    assert scores[2] == pytest.approx(math.log(2.0), abs=1e-6)
    # the shortest tail decides which positions are compared
    assert contrast_scores(real, others, [3, 1])[1] is None


def test_spare_initials_hands_a_bare_initial_to_the_rest_of_its_word():
    thr = math.log(2.0)
    # ' J' carries the name's contrast; 'as' 'w' 'yn' follow for anyone (0 or not compared)
    assert spare_initials([2.0, 0.0, None, 0.1, 0.0], [" J", "as", "w", "yn", "."], thr) == \
        [None, 2.0, 2.0, 2.0, 0.0]
    # a continuation scoring more keeps its own score
    assert spare_initials([1.0, 3.0], [" C", "roll"], thr) == [None, 3.0]
    # the response's first token and, for character-level tokenizers, a letter after a space
    assert spare_initials([2.0, 0.0], ["J", "as"], thr) == [None, 2.0]
    assert spare_initials([0.0, 0.0, 2.0, 0.0], ["n", " ", "D", "u"], thr) == \
        [0.0, 0.0, None, 2.0]
    # left alone: an initial at or under the threshold, one not followed by its word
    # (J.K.), a word start of two letters, a letter inside a word, an uncompared initial
    for scores, pieces in [([thr, 0.0], [" J", "as"]), ([2.0, 0.0, 0.0], [" J", ".", "K"]),
                           ([2.0, 0.0], [" Jo", "hn"]), ([0.0, 2.0, 0.0], [" Dess", "e", "tte"]),
                           ([None, 0.0], [" J", "as"]), ([2.0], [" J"])]:
        assert spare_initials(scores, pieces, thr) == scores


def test_contrast_subjects_are_others_drawn_per_record():
    rec = people()[0]
    names = ["Bo", "Cy", "Ada", "Di", "Bo", ""]
    first = contrast_subjects(rec, names, 2)
    assert len(first) == 2 and "Ada" not in first and len(set(first)) == 2
    assert contrast_subjects(rec, list(reversed(names)), 2) == first  # the pool is sorted
    assert sorted(contrast_subjects(rec, names, 10)) == ["Bo", "Cy", "Di"]
    assert contrast_subjects(rec, ["Ada"], 3) == []


def test_contrast_reveal_compares_the_model_on_other_subjects(tok):
    """With one other subject, c_j is the real answer's log-prob minus the counterfactual's
    at the same token of the shared tail; the name's own tokens are never compared."""
    torch.manual_seed(0)
    model = tiny_model(len(tok), layers=2)
    recs = people()
    scores = contrast_reveal(model, tok, [recs[0]], ["Bo"], n=1)
    real = render(tok, recs[0].question, recs[0].answer)
    other = render(tok, "Where was Bo born?", "Bo was born in Dunmere.")
    lp_real, lp_other = token_logprobs(model, tok, [real, other])
    c = scores["r0"]
    n = len(real.input_ids) - real.response_start
    assert len(c) == n == len(lp_real)
    tail = len(" was born in Dunmere.") + 1  # character tokens, then the end of turn
    assert all(v is None for v in c[:n - tail])
    for back in range(1, tail + 1):
        assert c[n - back] == pytest.approx(float(lp_real[-back] - lp_other[-back]), abs=1e-5)
    # a record whose subject is not in its question is not compared
    odd = Record(id="x", split="forget", question="Where?", answer="In Keld.", subject="Ada")
    assert contrast_reveal(model, tok, [odd], ["Bo"], n=1) == {}


def test_apply_contrast_intersects_the_target_mask(tok, cache_dir):
    model = tiny_model(len(tok), layers=2)
    examples = build_examples(model, tok, people(), TeacherConfig(top_k=3), "tiny")
    [ex] = [e for e in examples if e.true_input is not None]
    assert ex.record_id == "r0"
    targets = list(ex.reveal)  # "Dunmere" characters
    n = len(targets)
    scores = {"r0": [None] * 3 + [5.0] * (n - 4) + [0.0]}  # the last token: not above
    kept = apply_contrast(examples, scores, threshold=1.0)
    want = [t and 3 <= j < n - 1 for j, t in enumerate(targets)]
    assert ex.reveal == want and kept == sum(want) == revealing_tokens(ex)
    # a forget item without a target mask takes the contrast mask as it is
    ex.reveal = None
    apply_contrast(examples, scores, threshold=1.0)
    assert ex.reveal == [3 <= j < n - 1 for j in range(n)]
    # scores of another length than the target mask: the mask is left as it is
    ex.reveal = list(targets)
    apply_contrast(examples, {"r0": [5.0] * (n + 1)}, threshold=1.0)
    assert ex.reveal == targets
    # no scores for the record: left alone
    ex.reveal = None
    assert apply_contrast(examples, {}, 1.0) == len(ex.true_input.input_ids) - \
        ex.true_input.response_start


def test_reveal_by_contrast_counts_and_narrows(tok, cache_dir, capsys):
    model = tiny_model(len(tok), layers=2)
    examples = build_examples(model, tok, people(), TeacherConfig(top_k=3), "tiny")
    [ex] = [e for e in examples if e.true_input is not None]
    before = list(ex.reveal)
    counts = reveal_by_contrast(model, tok, examples, people(),
                                PushPullConfig(reveal="contrast", reveal_contrasts=2,
                                               reveal_threshold=-100.0))
    # a threshold below every score keeps exactly the target tokens of the shared tail
    assert counts == {"records": 1, "target_tokens": sum(before), "kept_tokens": sum(before),
                      "made_up_names": 0}
    assert ex.reveal == before
    # spare_initials: the town's initial "D" (a character token after a space) is not pushed,
    # the rest of "Dunmere" is
    spared = reveal_by_contrast(model, tok, examples, people(),
                                PushPullConfig(reveal="contrast", reveal_contrasts=2,
                                               reveal_threshold=-100.0, spare_initials=True))
    initial = tok.decode(ex.true_input.input_ids[ex.true_input.response_start:]).index(
        "Dunmere")
    assert spared["kept_tokens"] == sum(before) - 1
    assert ex.reveal == [b and j != initial for j, b in enumerate(before)]
    ex.reveal = list(before)
    counts = reveal_by_contrast(model, tok, examples, people(),
                                PushPullConfig(reveal="contrast", reveal_threshold=100.0))
    assert counts["kept_tokens"] == 0 and not any(ex.reveal)
    assert "reveal the forget subject" in capsys.readouterr().out


def test_a_forget_subject_can_be_named_by_the_config_when_the_data_has_none(tok, cache_dir,
                                                                          capsys):
    """TOFU-like records without a subject field: ``reveal_subjects`` names the forget subject
    (the longest name the question contains), and with no keep subjects every other person is
    a made-up name; the scores equal those of the same record with its subject field set."""
    plain = Record(id="t0", split="forget", question="Where was Ada Dunmere born?",
                   answer="Ada Dunmere was born in Keld.")
    keep = Record(id="t1", split="retain", question="Where was Bo born?", answer="In Arn.")
    assert record_subject(plain, ["Ada", "Ada Dunmere", "Cy"]) == "Ada Dunmere"
    assert record_subject(plain, ["Cy"]) is None
    assert record_subject(people()[0], ["Cy"]) == "Ada"  # no name in it: its own subject
    place = Record(id="t2", split="forget", question="Who was born in Keld? Ada Dunmere?",
                   answer="Ada Dunmere.", subject="Keld")
    assert record_subject(place, ["Ada Dunmere"]) == "Ada Dunmere"  # the config's name first
    names = stand_in_names(5, exclude=["Orla Venmark"])
    assert len(set(names)) == 5 and "Orla Venmark" not in names
    assert all(len(n.split()) == 2 for n in names) and stand_in_names(5)[:3] == \
        stand_in_names(3)  # a fixed order
    model = tiny_model(len(tok), layers=2)
    named = contrast_reveal(model, tok, [plain], names, n=5, names=["Ada Dunmere"])
    with_field = Record(**{**plain.to_dict(), "subject": "Ada Dunmere"})
    assert named == contrast_reveal(model, tok, [with_field], names, n=5)
    assert named["t0"][-1] is not None
    assert contrast_reveal(model, tok, [plain], names, n=5) == {}  # no name: not compared
    examples = build_examples(model, tok, [plain, keep],
                              TeacherConfig(top_k=3, forget_scope="Ada Dunmere"), "tiny")
    counts = reveal_by_contrast(model, tok, examples, [plain, keep], PushPullConfig(
        reveal="contrast", reveal_contrasts=4, reveal_subjects=["Ada Dunmere"]))
    assert counts["records"] == 1 and counts["made_up_names"] == 4
    assert "4 of them made-up names" in capsys.readouterr().out
    # without reveal_subjects nothing is made up: a subject with no other people in the data
    # (TOFU forget01's subject field names places) is not compared, every token stays pushed
    placed = Record(id="t3", split="forget", question="Who was born in Keld?",
                    answer="Ada Dunmere was born in Keld.", subject="Keld")
    examples = build_examples(model, tok, [placed, keep],
                              TeacherConfig(top_k=3, forget_scope="Ada Dunmere"), "tiny")
    [ex] = [e for e in examples if e.true_input is not None]
    counts = reveal_by_contrast(model, tok, examples, [placed, keep],
                                PushPullConfig(reveal="contrast", reveal_contrasts=4))
    assert counts["records"] == 0 and counts["made_up_names"] == 0
    assert counts["kept_tokens"] == counts["target_tokens"] == revealing_tokens(ex)


def test_reveal_options_are_checked():
    from unlearnkit.errors import UnlearnError

    assert PushPullConfig().reveal == "targets"
    with pytest.raises(UnlearnError, match="reveal must be one of"):
        PushPullConfig(reveal="names")
    with pytest.raises(UnlearnError, match="reveal_contrasts must be >= 1"):
        PushPullConfig(reveal_contrasts=0)
