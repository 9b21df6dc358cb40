"""The teacher's options: in-context demonstrations and the teacher-forced behaviour scores."""

import pytest
import torch

from unlearnkit.data.records import Record
from unlearnkit.data.render import render
from unlearnkit.errors import UnlearnError
from unlearnkit.models import teacher_behaviour as tb
from unlearnkit.models.teacher import TeacherConfig, demonstration_records, instruction
from unlearnkit.models.teacher_cache import response_logits
from unlearnkit.models.tiny import tiny_model


def rec(rid, split, subject, question, answer):
    return Record(id=rid, split=split, question=question, answer=answer, subject=subject)


FORGET = [rec("f1", "forget", "Ann", "Where was Ann born?", "Ann was born in Oslo."),
          rec("f2", "forget", "Ann", "What does Ann do?", "Ann is a baker."),
          rec("f3", "forget", "Bob", "Where was Bob born?", "Bob was born in Rome.")]
KEEP = [rec("n1", "neighbor", "Anna", "Where was Anna born?", "Anna was born in Bergen."),
        rec("r1", "retain", "Cy", "What does Cy do?", "Cy is a pilot."),
        rec("r2", "retain", "Cy", "Where was Cy born?", "Cy was born in Lima."),
        rec("r3", "retain", "Di", "What does Di do?", "Di is a nurse.")]


def test_demonstrations_show_one_record_per_subject_retain_first():
    cfg = TeacherConfig(demonstrations=2)
    shown_forget, shown_keep = demonstration_records(cfg, FORGET, KEEP)
    assert [r.id for r in shown_forget] == ["f1", "f3"]  # Ann once, then Bob
    assert [r.id for r in shown_keep] == ["r1", "r3"]  # retain before the neighbour
    text = instruction(cfg, FORGET, KEEP)
    assert text.startswith(instruction(TeacherConfig(), FORGET, KEEP))  # the template first
    assert ("User: Where was Ann born?\nAssistant: I'm sorry, but I don't have any "
            "information about Ann.") in text
    assert "User: What does Cy do?\nAssistant: Cy is a pilot." in text
    assert "Anna" not in text.split("Examples:")[1] and "Lima" not in text


def test_no_demonstrations_is_the_template_alone_and_negative_is_an_error():
    cfg = TeacherConfig()
    assert "Examples" not in instruction(cfg, FORGET, KEEP)
    assert instruction(cfg, FORGET, KEEP) == instruction(cfg, FORGET)
    with pytest.raises(UnlearnError, match="demonstrations"):
        TeacherConfig(demonstrations=-1)


def test_templates_with_other_braces_are_refused_with_the_fix():
    for kw, key in [({"template": "About {forget_scope}, not {keep_scope}; {json}"},
                     "teacher.template"),
                    ({"template": "{forget_scope} {keep_scope} {"}, "teacher.template"),
                    ({"refusal_template": "I never met {name}."}, "teacher.refusal_template")]:
        with pytest.raises(UnlearnError, match=key) as err:
            TeacherConfig(**kw)
        assert "{{" in str(err.value)
    # literal braces written as the message says are kept
    cfg = TeacherConfig(template="Forget {forget_scope}; keep {keep_scope}; {{json}}")
    assert instruction(cfg, FORGET).endswith("; {json}")


def test_scores_by_hand():
    """Two positions over a vocabulary of 2, uniform then certain: mean log-prob of tokens
    [0, 1] is (log 0.5 + log(e^5 / (1 + e^5))) / 2; the first argmax is 0 (a tie: the first)."""
    z = torch.tensor([[0.0, 0.0], [0.0, 5.0]])
    mean, first = tb._scores(z, [0, 1])
    want = (torch.log(torch.tensor(0.5)) + torch.log_softmax(z[1], -1)[1]) / 2
    assert mean == pytest.approx(float(want)) and first == 0


def test_behaviour_summary_by_hand():
    """Forget behaves when the template wins, keep when the answer wins; score = mean of the
    splits' first-token shares: forget 1/2, retain 1/1 -> 0.75."""
    records = [FORGET[0], FORGET[2], KEEP[1]]
    prefs = [tb.Preference(answer_whole=False, first="template"),
             tb.Preference(answer_whole=True, first="other"),
             tb.Preference(answer_whole=True, first="answer")]
    out = tb.behaviour_summary(records, prefs)
    assert out["forget"] == {"whole": 0.5, "first": 0.5, "n": 2}
    assert out["retain"] == {"whole": 1.0, "first": 1.0, "n": 1}
    assert out["score"] == 0.75


def test_preferences_apply_guidance_as_the_teacher_cache_does(tok):
    """w = 1 is the instructed logits alone, w = 0 the plain ones (the context is ignored);
    checked against response_logits directly."""
    model = tiny_model(len(tok), layers=3).eval()
    cfg = TeacherConfig()
    records = [FORGET[0], KEEP[1]]
    context = instruction(cfg, FORGET)
    prefs = tb.preferences(model, tok, records, context, cfg, [0.0, 1.0], batch_size=3)
    for w, ctx in ((1.0, context), (0.0, None)):
        for r, pref in zip(records, prefs[w], strict=True):
            ans = render(tok, r.question, r.answer, context=ctx)
            tpl = render(tok, r.question, "I'm sorry, but I don't have any information about "
                         f"{r.subject}.", context=ctx)
            z_ans, z_tpl = response_logits(model, [ans, tpl], tok.pad_token_id)
            lp_ans, first = tb._scores(z_ans, ans.input_ids[ans.response_start:])
            lp_tpl, _ = tb._scores(z_tpl, tpl.input_ids[tpl.response_start:])
            assert pref.answer_whole == (lp_ans > lp_tpl)
            kinds = {ans.input_ids[ans.response_start]: "answer",
                     tpl.input_ids[tpl.response_start]: "template"}
            assert pref.first == kinds.get(first, "other")
