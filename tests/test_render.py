import pytest
import torch

from unlearnkit.data.records import Record
from unlearnkit.data.render import IGNORE_INDEX, collate, end_of_turn, render, render_record
from unlearnkit.errors import UnlearnError


def labelled(r):
    return [t for t in r.labels if t != IGNORE_INDEX]


def test_prompt_positions_are_ignored_and_answer_decodes_back(tok):
    r = render(tok, "Where was Ada born?", "Ada was born in Dunmere.")
    eot = end_of_turn(tok)[1]
    assert all(lab == IGNORE_INDEX for lab in r.labels[: r.response_start])
    assert r.labels[r.response_start:] == r.input_ids[r.response_start:]
    assert labelled(r)[-1] == eot
    assert tok.decode(labelled(r)[:-1]) == "Ada was born in Dunmere."
    prompt = tok.decode(r.input_ids[: r.response_start])
    assert prompt.endswith("<|im_start|>assistant\n") and "Where was Ada born?" in prompt


def test_generation_prompt_has_no_labels(tok):
    r = render(tok, "Hi?")
    assert r.response_start == len(r.input_ids)
    assert set(r.labels) == {IGNORE_INDEX}


def test_integer_prefill_moves_answer_tokens_into_the_prompt(tok):
    full = render(tok, "Q?", "Answer.")
    pre = render(tok, "Q?", "Answer.", prefill=3)
    assert pre.input_ids == full.input_ids
    assert pre.response_start == full.response_start + 3
    assert labelled(pre) == labelled(full)[3:]
    assert tok.decode(pre.input_ids[full.response_start:pre.response_start]) == "Ans"


def test_string_prefill_and_generation_prompt(tok):
    r = render(tok, "Q?", None, prefill="Sure, ")
    assert tok.decode(r.input_ids).endswith("assistant\nSure, ")
    assert set(r.labels) == {IGNORE_INDEX}


def test_context_goes_into_the_system_turn_and_answers_align(tok):
    student = render(tok, "Q?", "A b.")
    teacher = render(tok, "Q?", "A b.", context="Forget Ada.", system="Be brief.")
    text = tok.decode(teacher.input_ids)
    assert "<|im_start|>system\nForget Ada.\n\nBe brief.<|im_end|>" in text
    n = len(student.input_ids) - student.response_start
    assert student.input_ids[student.response_start:] == teacher.input_ids[teacher.response_start:]
    assert len(teacher.input_ids) - teacher.response_start == n


TURN = "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
HEADER = "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
NO_SYSTEM = {  # templates without a system turn: one refuses it (as Gemma 2's), one drops it
    "refuses": "{% for m in messages %}{% if m['role'] == 'system' %}"
               "{{ raise_exception('System role not supported') }}{% endif %}" + TURN
               + "{% endfor %}" + HEADER,
    "drops": "{% for m in messages %}{% if m['role'] != 'system' %}" + TURN
             + "{% endif %}{% endfor %}" + HEADER,
}


@pytest.mark.parametrize("kind", sorted(NO_SYSTEM))
def test_a_template_without_a_system_turn_gets_the_context_in_the_user_turn(tok, kind):
    import copy

    from unlearnkit.data.render import has_system_turn

    other = copy.deepcopy(tok)
    other.chat_template = NO_SYSTEM[kind]
    assert has_system_turn(tok) and not has_system_turn(other)
    teacher = render(other, "Q?", "A b.", context="Forget Ada.", system="Be brief.")
    text = other.decode(teacher.input_ids)
    assert text.startswith("<|im_start|>user\nForget Ada.\n\nBe brief.\n\nQ?<|im_end|>\n")
    assert "system" not in text
    student = render(tok, "Q?", "A b.")
    assert student.input_ids[student.response_start:] == teacher.input_ids[teacher.response_start:]
    plain = render(other, "Q?", "A b.")  # nothing to move: the question alone
    assert plain.input_ids == student.input_ids
    # the verdict is cached on the tokenizer, and follows a changed template
    other.chat_template = tok.chat_template
    assert has_system_turn(other)


def test_prefill_longer_than_answer_is_an_error(tok):
    with pytest.raises(UnlearnError, match="prefill"):
        render(tok, "Q?", "A.", prefill=10)


def test_record_system_turn_is_used(tok):
    rec = Record(id="a", split="retain", question="Q?", answer="A.", system="Sys.")
    assert "system\nSys." in tok.decode(render_record(tok, rec).input_ids)


def test_missing_chat_template_is_a_clear_error(tok):
    import copy

    bare = copy.deepcopy(tok)
    bare.chat_template = None
    with pytest.raises(UnlearnError, match="chat template"):
        render(bare, "Q?", "A.")


@pytest.mark.parametrize("side", ["left", "right"])
def test_collate_pads_with_ignore_and_masks_from_lengths(tok, side):
    a, b = render(tok, "Q?", "A."), render(tok, "Longer question?", "Longer answer.")
    # the pad id also appears as a real token: the mask must still come from lengths
    pad = a.input_ids[3]
    batch = collate([a, b], pad, side=side)
    n = len(a.input_ids)
    width = batch["input_ids"].shape[1]
    row = batch["attention_mask"][0]
    assert int(row.sum()) == n
    real = slice(width - n, width) if side == "left" else slice(0, n)
    assert batch["input_ids"][0, real].tolist() == a.input_ids
    pad_positions = row == 0
    assert (batch["labels"][0][pad_positions] == IGNORE_INDEX).all()
    start = int(batch["response_start"][0])
    assert batch["input_ids"][0, start:start + 2].tolist() == a.input_ids[a.response_start:][:2]
    assert torch.equal(batch["attention_mask"][1], torch.ones(width, dtype=torch.long))
