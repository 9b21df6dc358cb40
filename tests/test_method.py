from dataclasses import replace

import pytest
import torch

from unlearnkit.data.records import Record
from unlearnkit.data.render import render
from unlearnkit.errors import UnlearnError
from unlearnkit.models.teacher import TeacherConfig, instruction
from unlearnkit.models.teacher_cache import response_logits, teacher_topk
from unlearnkit.models.tiny import tiny_model
from unlearnkit.objectives.pushpull import PushPullConfig, _aligned, _window, pushpull_step
from unlearnkit.objectives.terms import forget_term
from unlearnkit.training.loop import OptimConfig, train
from unlearnkit.training.unlearn import (
    MixConfig,
    build_examples,
    mixture_plan,
    refresh_prefill,
    target_token_mask,
)


def records():
    out = []
    for i, (name, town, split) in enumerate([("Ada", "Dunmere", "forget"),
                                             ("Bo", "Keld", "retain"),
                                             ("Cy", "Arn", "neighbor")]):
        out.append(Record(id=f"r{i}", split=split, question=f"Where was {name} born?",
                          answer=f"{name} was born in {town}.", subject=name, targets=[town]))
    return out


def test_the_teacher_runs_without_dropout_and_keeps_the_models_mode(tok):
    model = tiny_model(len(tok))
    item = render(tok, "Where?", "In Keld.")
    [expect] = teacher_topk(model, [item], None, k=3, guidance=1.0, pad_id=0)
    for layer in model.model.layers:  # dropout as a LoRA's would be, in training mode
        layer.self_attn.attention_dropout = 0.9
    model.train()
    torch.manual_seed(0)
    tops = [teacher_topk(model, [item], None, k=3, guidance=1.0, pad_id=0)[0] for _ in range(2)]
    assert model.training
    for top in tops:
        torch.testing.assert_close(top.values, expect.values)


def test_teacher_positions_align_with_the_student_exactly(tok):
    model = tiny_model(len(tok))
    student = render(tok, "Where?", "In Keld.")
    teacher = render(tok, "Where?", "In Keld.", context="Forget everything about Ada.")
    [top] = teacher_topk(model, [teacher], None, k=3, guidance=1.0, pad_id=0)
    direct = model(torch.tensor([teacher.input_ids])).logits[0]
    n = len(student.input_ids) - student.response_start
    # teacher logits predicting response token j live at teacher.response_start - 1 + j
    for j in range(n):
        expect = direct[teacher.response_start - 1 + j].topk(3)
        torch.testing.assert_close(top.values[j], expect.values)
        assert top.indices[j].tolist() == expect.indices.tolist()
        # the log-normaliser of the whole distribution (the log-probability push's tau)
        torch.testing.assert_close(top.lse[j], direct[teacher.response_start - 1 + j]
                                   .logsumexp(-1))
    # placed into the student's logits window, they sit at the student's positions
    logits, _, off = _window(model, [student], 0)
    values, _, mask, nxt = _aligned([student], [top], off, logits.shape[:2])
    pos = torch.nonzero(mask[0]).flatten() + off
    assert pos.tolist() == list(range(student.response_start - 1, len(student.input_ids) - 1))
    assert nxt[0][mask[0]].tolist() == student.input_ids[student.response_start:]
    torch.testing.assert_close(values[0][mask[0]], top.values)


def test_guidance_amplifies_the_instruction(tok):
    model = tiny_model(len(tok))
    plain = render(tok, "Q?", "A.")
    instr = render(tok, "Q?", "A.", context="ctx")
    zp = response_logits(model, [plain], 0)[0]
    zi = response_logits(model, [instr], 0)[0]
    [top] = teacher_topk(model, [instr], [plain], k=2, guidance=3.0, pad_id=0)
    expect = (zp + 3.0 * (zi - zp)).topk(2, dim=-1)
    torch.testing.assert_close(top.values, expect.values)


def test_target_token_mask_marks_the_fact_tokens(tok):
    flags = target_token_mask(tok, "Ada was born in Dunmere.", ["Dunmere"])
    text = "Ada was born in Dunmere."
    assert len(flags) == len(text) + 1  # char-level tokenizer, plus end of turn
    assert [c for c, f in zip(text, flags, strict=False) if f] == list("Dunmere")
    assert target_token_mask(tok, "No fact here.", ["Dunmere"]) is None
    # every mention is marked, not only the first
    again = "It is Dunmere. Yes, Dunmere."
    flags = target_token_mask(tok, again, ["Dunmere"])
    assert "".join(c if f else "_" for c, f in zip(again, flags, strict=False)) == \
        "______Dunmere_______Dunmere_"


def test_method_trains_end_to_end_on_the_tiny_model(tok, cache_dir):
    model = tiny_model(len(tok))
    cfg = TeacherConfig(top_k=4)
    assert "Ada" in instruction(cfg, records()[:1])
    examples = build_examples(model, tok, records(), cfg, "tiny")
    assert (cache_dir / "teacher").is_dir()
    again = build_examples(model, tok, records(), cfg, "tiny")  # from the cache
    torch.testing.assert_close(again[0].pull_top.values, examples[0].pull_top.values)
    forget = examples[0]
    assert forget.kind == "forget" and forget.true_input is not None
    assert "don't have any information about Ada" in tok.decode(forget.pull_input.input_ids)
    refresh_prefill(model, tok, examples, [1, 2, 4])
    assert 1 <= forget.prefill_k < len(forget.true_top.values) - 1  # a prefill is >= 1 token
    plan = mixture_plan(examples, MixConfig(forget=1, retain=1, neighbor=1, steps=3), seed=0)
    assert all(sorted(e.kind for e in b) == ["forget", "neighbor", "retain"] for b in plan)
    before = [p.detach().clone() for p in model.parameters()]
    hist = train(model, plan, pushpull_step(0, PushPullConfig(top_m=3)), OptimConfig(lr=1e-3))
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in hist)
    assert {"pull", "push", "adv"} <= set(hist[0])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    # the forget term is push + adv (beta = gamma = 1), the pull stays with the keep terms
    step = pushpull_step(0, PushPullConfig(top_m=3))
    loss, logs = step(model, plan[0])
    forget, loss = forget_term(loss).detach(), loss.detach()
    assert float(forget) == pytest.approx(logs["push"] + logs["adv"], rel=1e-5)
    assert float(loss - forget) == pytest.approx(logs["pull"], rel=1e-5)
    # sharpness-aware on the forget term alone (Fan et al. 2025) trains end to end too
    hist = train(model, plan, step, OptimConfig(lr=1e-3, sam_rho=0.05, sam_scope="forget"))
    assert all(torch.isfinite(torch.tensor(h["sam_loss"])) for h in hist)
    assert all(h["forget_term"] == pytest.approx(h["push"] + h["adv"], rel=1e-5) for h in hist)


def test_promote_response_makes_each_token_top1_by_the_boost():
    from unlearnkit.models.teacher_cache import promote_response

    z = torch.tensor([[3.0, 1.0, 0.0], [0.0, 5.0, 4.0]])
    out = promote_response(z, [1, 2], boost=2.0)
    # row 0: token 1 -> max(1, 3 + 2) = 5; row 1: token 2 -> max(4, 5 + 2) = 7
    assert out.tolist() == [[3.0, 5.0, 0.0], [0.0, 5.0, 7.0]]
    assert promote_response(torch.tensor([[9.0, 1.0]]), [0], 2.0).tolist() == [[9.0, 1.0]]


def test_plain_keep_context_distils_keep_items_from_the_unchanged_model(tok, cache_dir):
    model = tiny_model(len(tok))
    instructed = build_examples(model, tok, records(),
                                TeacherConfig(top_k=4, keep_context="instructed"), "tiny")
    plain = build_examples(model, tok, records(), TeacherConfig(top_k=4, keep_context="plain"),
                           "tiny")
    for ex_i, ex_p in zip(instructed, plain, strict=True):
        assert ex_i.pull_input.input_ids == ex_p.pull_input.input_ids  # same student input
        same = torch.equal(ex_i.pull_top.values, ex_p.pull_top.values)
        assert same == (ex_i.kind == "forget")  # only keep items change their target
    keep = plain[1]
    [expect] = teacher_topk(model, [keep.pull_input], None, k=4, guidance=1.0, pad_id=0)
    torch.testing.assert_close(keep.pull_top.values, expect.values)  # = the student's own model


def test_adversarial_prefill_is_at_least_one_token(monkeypatch):
    import unlearnkit.training.unlearn as un
    from unlearnkit.objectives.pushpull import Example

    # easy first tokens: the mean over y[k:] is highest at k = 0, which must not be chosen
    logps = [torch.tensor([0.0] * 8 + [-1.0, -1.0]),
             torch.tensor([-0.1, -0.2])]  # too short for any candidate: no prefill
    monkeypatch.setattr(un, "token_logprobs", lambda model, tok, items: logps)
    examples = [Example(kind="forget", pull_input=None, pull_top=None, true_input=i)
                for i in range(2)]
    model = torch.nn.Linear(1, 1)
    refresh_prefill(model, None, examples, [1, 2, 4, 8])
    # mean of y[k:]: k=0 -0.2 (not a candidate), k=1 -0.222, 2 -0.25, 4 -0.333,
    # n // 2 = 5 -0.4, 8 -1.0: the best prefill is one token
    assert examples[0].prefill_k == 1
    assert examples[1].prefill_k == 0


def test_general_keep_items_join_the_batches_and_pull_toward_the_unchanged_model(tok,
                                                                                 cache_dir):
    model = tiny_model(len(tok))
    replay = Record(id="replay-0", split="general", question="What colour is snow?",
                    answer="White.", meta={"replay": True})
    probe = Record(id="general-0", split="general", question="Capital of France?",
                   answer="Paris.", targets=["Paris"])  # an evaluation probe: never trained
    examples = build_examples(model, tok, [*records(), replay, probe], TeacherConfig(top_k=4),
                              "tiny")
    general = [e for e in examples if e.kind == "general"]
    assert len(general) == 1
    assert "snow" in tok.decode(general[0].pull_input.input_ids)
    # keep_context plain: the general item's target is the model's own logits, unchanged
    [own] = teacher_topk(model, [general[0].pull_input], None, k=4, guidance=1.0, pad_id=0)
    torch.testing.assert_close(general[0].pull_top.values, own.values)
    mix = MixConfig(forget=1, retain=1, neighbor=1, general=2, steps=2)
    plan = mixture_plan(examples, mix, seed=0)
    assert all(sorted(e.kind for e in b) == ["forget", "general", "general", "neighbor",
                                             "retain"] for b in plan)
    assert all(e.kind != "general" for b in mixture_plan(examples, MixConfig(steps=2), 0)
               for e in b)  # mix.general = 0 (the default): none


def test_one_forward_step_equals_pull_and_forget_terms_run_apart(tok, cache_dir):
    """The step runs pull inputs and true answers as rows of one batch; the loss terms and
    the gradients equal those of a separate forward for each."""
    from unlearnkit.objectives import pushpull as pp

    model = tiny_model(len(tok), layers=3)
    examples = build_examples(model, tok, records(), TeacherConfig(top_k=4), "tiny")
    refresh_prefill(model, tok, examples, [1, 2])
    cfg = PushPullConfig(top_m=3)
    params = list(model.parameters())
    model.train()
    loss, logs = pushpull_step(0, cfg)(model, examples)
    grads = torch.autograd.grad(loss, params)

    pulled = [e.pull_input for e in examples]
    logits, _, off = _window(model, pulled, 0)
    values, indices, mask, _ = _aligned(pulled, [e.pull_top for e in examples], off,
                                        logits.shape[:2])
    pull = pp.pull_loss(logits, values, indices, mask, delta=cfg.delta)
    forget = [e for e in examples if e.true_input is not None]
    f_logits, _, f_off = _window(model, [e.true_input for e in forget], 0)
    apart_logs: dict = {}
    want = pull + pp._forget_terms(f_logits, f_off, forget, cfg, apart_logs)
    want_grads = torch.autograd.grad(want, params)
    torch.testing.assert_close(loss, want, atol=1e-5, rtol=1e-5)
    assert logs["pull"] == pytest.approx(float(pull.detach()), rel=1e-5)
    for key in ("push", "adv"):
        assert logs[key] == pytest.approx(apart_logs[key], rel=1e-4, abs=1e-6)
    for got, ref in zip(grads, want_grads, strict=True):
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
    assert logs["push"] > 0  # the forget terms are not trivially zero


def test_pull_per_kind_averages_each_kind_and_the_boundary_items_apart(tok, cache_dir):
    """With pull_per_kind the pull is the mean of per-kind pulls, boundary keep items being a
    kind of their own; without it, one mean over every row's positions."""
    from unlearnkit.objectives import pushpull as pp

    model = tiny_model(len(tok), layers=3)
    examples = build_examples(model, tok, records(), TeacherConfig(top_k=4), "tiny")
    examples[1].boundary = True  # the retain item
    cfg = PushPullConfig(top_m=3, push=False, prefill=False, pull_per_kind=True)
    got, _ = pushpull_step(0, cfg)(model, examples)
    per_row = []
    for e in examples:
        logits, _, off = _window(model, [e.pull_input], 0)
        values, indices, mask, _ = _aligned([e.pull_input], [e.pull_top], off,
                                            logits.shape[:2])
        per_row.append(pp.pull_loss(logits, values, indices, mask))
    torch.testing.assert_close(got, sum(per_row) / 3, atol=1e-5, rtol=1e-5)
    pooled, _ = pushpull_step(0, PushPullConfig(top_m=3, push=False, prefill=False))(
        model, examples)
    # rows of different lengths: not the same
    assert abs(float(pooled.detach()) - float(got.detach())) > 1e-4


def test_forget_pull_weighs_the_forget_rows_of_the_pull(tok, cache_dir):
    """forget_pull=w: the pull is the full pull with the forget rows' distances times w (keep
    rows and the forget terms unchanged); w=1 is the default step."""
    from unlearnkit.objectives import pushpull as pp

    model = tiny_model(len(tok), layers=3)
    examples = build_examples(model, tok, records(), TeacherConfig(top_k=4), "tiny")
    refresh_prefill(model, tok, examples, [1, 2])
    _, half = pushpull_step(0, PushPullConfig(top_m=3, forget_pull=0.5))(model, examples)
    _, full = pushpull_step(0, PushPullConfig(top_m=3))(model, examples)
    _, one = pushpull_step(0, PushPullConfig(top_m=3, forget_pull=1.0))(model, examples)
    pulled = [e.pull_input for e in examples]
    logits, _, off = _window(model, pulled, 0)
    values, indices, mask, _ = _aligned(pulled, [e.pull_top for e in examples], off,
                                        logits.shape[:2])
    per_pos = torch.nn.functional.huber_loss(logits.float().gather(-1, indices), values,
                                             reduction="none").sum(-1)
    forget_rows = torch.tensor([e.true_input is not None for e in examples])
    weight = torch.where(forget_rows, 0.5, 1.0)[:, None]
    want = (per_pos * weight * mask).sum() / mask.sum()
    assert half["pull"] == pytest.approx(float(want.detach()), rel=1e-5)
    plain = pp.pull_loss(logits, values, indices, mask).detach()
    assert full["pull"] == pytest.approx(float(plain), rel=1e-5)
    assert half["pull"] < full["pull"] and one == full
    for key in ("push", "adv"):
        assert half[key] == pytest.approx(full[key], rel=1e-4, abs=1e-6)
    with pytest.raises(UnlearnError, match="forget_pull must be in"):
        PushPullConfig(forget_pull=1.5)


def test_pull_forget_off_pulls_only_the_keep_items(tok, cache_dir):
    """pull_forget=False: the pull is the one over the retain and neighbour rows alone, and
    the forget terms are unchanged (the same as the full step's)."""
    from unlearnkit.objectives import pushpull as pp

    model = tiny_model(len(tok), layers=3)
    examples = build_examples(model, tok, records(), TeacherConfig(top_k=4), "tiny")
    refresh_prefill(model, tok, examples, [1, 2])
    keep = [e for e in examples if e.true_input is None]
    assert 0 < len(keep) < len(examples)
    _, logs = pushpull_step(0, PushPullConfig(top_m=3, pull_forget=False))(model, examples)
    _, full = pushpull_step(0, PushPullConfig(top_m=3))(model, examples)
    pulled = [e.pull_input for e in keep]
    logits, _, off = _window(model, pulled, 0)
    values, indices, mask, _ = _aligned(pulled, [e.pull_top for e in keep], off,
                                        logits.shape[:2])
    want = pp.pull_loss(logits, values, indices, mask, delta=1.0)
    assert logs["pull"] == pytest.approx(float(want.detach()), rel=1e-5)
    assert abs(logs["pull"] - full["pull"]) > 1e-4  # the forget rows' pull is left out
    for key in ("push", "adv"):
        assert logs[key] == pytest.approx(full[key], rel=1e-4, abs=1e-6)


def test_topk_cache_round_trip_keeps_the_log_normalisers(tmp_path):
    from unlearnkit.models.teacher_cache import TopK, load_topk, save_topk

    with_lse = TopK(torch.randn(3, 2), torch.tensor([[0, 1], [2, 3], [4, 5]]), torch.randn(3))
    without = TopK(torch.randn(1, 2), torch.tensor([[1, 0]]))
    save_topk(tmp_path / "c", {"a": with_lse, "b": without}, {"k": 1})
    entries, meta = load_topk(tmp_path / "c")
    torch.testing.assert_close(entries["a"].lse, with_lse.lse)
    assert entries["b"].lse is None and meta == {"k": 1}


@pytest.mark.parametrize("space", ["logodds", "logprobs"])
def test_the_step_push_reads_the_teacher_k_th_score(tok, cache_dir, space):
    """The step's push in ``space`` equals push_loss on the student's scores with the
    teacher's K-th logit and log-normaliser converted by teacher_threshold, at the true
    answers' positions; a summary without log-normalisers is refused with the fix."""
    from unlearnkit.objectives import pushpull as pp

    model = tiny_model(len(tok), layers=3)
    examples = build_examples(model, tok, records(), TeacherConfig(top_k=4), "tiny")
    forget = [e for e in examples if e.true_input is not None]
    cfg = PushPullConfig(top_m=3, prefill=False, pull=False, push_space=space)
    _, logs = pushpull_step(0, cfg)(model, forget)
    items = [e.true_input for e in forget]
    logits, _, off = _window(model, items, 0)
    values, indices, mask, nxt = _aligned(items, [e.true_top for e in forget], off,
                                          logits.shape[:2])
    lse = torch.zeros(mask.shape)
    for r, e in enumerate(forget):
        first = e.true_input.response_start - 1 - off
        lse[r, first:first + len(e.true_top.lse)] = e.true_top.lse
    reveal = pp._reveal_mask(forget, off, logits.shape[:2]) & mask
    tau = pp.teacher_threshold(values[..., -1], lse, space)
    want = pp.push_loss(logits, indices, tau, nxt, reveal, top_m=3, push_true_in_topk=True,
                        space=space)
    assert logs["push"] == pytest.approx(want.item(), rel=1e-5)
    forget[0].true_top = pp.TopK(forget[0].true_top.values, forget[0].true_top.indices)
    with pytest.raises(UnlearnError, match="recompute the teacher cache"):
        pushpull_step(0, cfg)(model, forget)


def test_push_space_is_checked():
    assert PushPullConfig().push_space == "logits"
    with pytest.raises(UnlearnError, match="push_space must be one of"):
        PushPullConfig(push_space="probs")
    assert PushPullConfig().push_below == "teacher"
    with pytest.raises(UnlearnError, match="push_below must be one of"):
        PushPullConfig(push_below="student")


def test_the_step_push_below_the_alternative(tok, cache_dir):
    """With ``push_below: alternative`` the step's push and adversarial terms equal push_loss
    against the student's best non-revealing token, and the teacher's log-normalisers are not
    needed (a summary without them is accepted)."""
    from unlearnkit.objectives import pushpull as pp

    model = tiny_model(len(tok), layers=3)
    examples = build_examples(model, tok, records(), TeacherConfig(top_k=4), "tiny")
    forget = [e for e in examples if e.true_input is not None]
    for e in forget:
        e.true_top = pp.TopK(e.true_top.values, e.true_top.indices)
    cfg = PushPullConfig(top_m=3, prefill=False, pull=False, push_below="alternative",
                         push_space="logodds")
    _, logs = pushpull_step(0, cfg)(model, forget)
    items = [e.true_input for e in forget]
    logits, _, off = _window(model, items, 0)
    _, indices, mask, nxt = _aligned(items, [e.true_top for e in forget], off,
                                     logits.shape[:2])
    reveal = pp._reveal_mask(forget, off, logits.shape[:2]) & mask
    want = pp.push_loss(logits, indices, None, nxt, reveal, top_m=3, push_true_in_topk=True,
                        space="logodds", below="alternative")
    assert want.item() > 0
    assert logs["push"] == pytest.approx(want.item(), rel=1e-5)


def test_keep_nll_adds_the_keep_items_answer_nll_and_only_theirs(tok, cache_dir):
    """keep_nll adds w * the mean NLL of the retain and neighbour answers' tokens (the forget
    item's pulled template is not among them), computed here from a plain forward per row."""
    model = tiny_model(len(tok), layers=3)
    examples = build_examples(model, tok, records(), TeacherConfig(top_k=4), "tiny")
    base = PushPullConfig(top_m=3, push=False, prefill=False)
    without, _ = pushpull_step(0, base)(model, examples)
    base.keep_nll = 0.5
    with_nll, logs = pushpull_step(0, base)(model, examples)
    total, count = 0.0, 0
    for e in examples[1:]:  # the retain and the neighbour item
        ids = torch.tensor([e.pull_input.input_ids])
        logp = model(ids).logits[0].float().log_softmax(-1)
        for t in range(e.pull_input.response_start, len(e.pull_input.input_ids)):
            total -= float(logp[t - 1, e.pull_input.input_ids[t]])
            count += 1
    assert logs["keep_nll"] == pytest.approx(total / count, rel=1e-4)
    assert float(with_nll - without) == pytest.approx(0.5 * total / count, rel=1e-4)
    with pytest.raises(UnlearnError, match="keep_nll must be >= 0 and needs the pull"):
        PushPullConfig(pull=False, keep_nll=1.0)


def test_steer_adds_the_rmu_distance_of_the_forget_answers_at_the_pushed_positions(tok,
                                                                                   cache_dir):
    """steer=w adds w * mean over the forget answers' revealing positions of
    mean_H (h(t) - beta ||h_0(t)|| u)^2, h the output of block steer_layer; at the starting
    model h = h_0, so each position gives (1 - 2 beta cos(h, u) + beta^2) ||h||^2 / H."""
    from unlearnkit.objectives.steer import control_vector
    from unlearnkit.training.unlearn import attach_start_norms

    model = tiny_model(len(tok), layers=3)
    examples = build_examples(model, tok, records(), TeacherConfig(top_k=4), "tiny")
    refresh_prefill(model, tok, examples, [1, 2])
    cfg = PushPullConfig(top_m=3, steer=0.5, steer_layer=1, steer_beta=3.0)
    with pytest.raises(UnlearnError, match="attach_start_norms"):
        pushpull_step(0, cfg)(model, examples)
    attach_start_norms(model, 0, examples, 1)
    steered, logs = pushpull_step(0, cfg)(model, examples)
    plain, plain_logs = pushpull_step(0, PushPullConfig(top_m=3))(model, examples)
    [forget] = [e for e in examples if e.true_input is not None]
    item = forget.true_input
    with torch.no_grad():
        hidden = model(torch.tensor([item.input_ids]), output_hidden_states=True)
    h = hidden.hidden_states[2][0]  # after block 1
    rows = range(item.response_start - 1, len(item.input_ids) - 1)
    u = control_vector(h.shape[-1], 0)
    per_pos = [float(((h[t] - 3.0 * h[t].norm() * u) ** 2).mean())
               for t, r in zip(rows, forget.reveal, strict=True) if r]
    assert 0 < len(per_pos) < len(rows)  # only the target's tokens
    assert logs["steer"] == pytest.approx(sum(per_pos) / len(per_pos), rel=1e-4)
    assert float((steered - plain).detach()) == pytest.approx(0.5 * logs["steer"], rel=1e-4)
    for key in ("pull", "push", "adv"):
        assert logs[key] == pytest.approx(plain_logs[key], rel=1e-5, abs=1e-6)
    assert "steer" not in plain_logs
    # the steer term alone reaches no weight above the steered block
    alone = PushPullConfig(pull=False, push=False, prefill=False, steer=1.0, steer_layer=1)
    loss, _ = pushpull_step(0, alone)(model, examples)
    loss.backward()
    assert model.model.layers[1].mlp.down_proj.weight.grad.abs().sum() > 0
    assert model.model.layers[2].mlp.down_proj.weight.grad is None or \
        float(model.model.layers[2].mlp.down_proj.weight.grad.abs().sum()) == 0
    with pytest.raises(UnlearnError, match="steer must be >= 0"):
        PushPullConfig(steer=-1.0)


def test_keep_hidden_adds_rmus_retain_distance_on_the_keep_items_only(tok, cache_dir):
    """keep_hidden=w adds w * mean over the keep items' response positions of
    mean_H (h(t) - h_0(t))^2, h the output of block steer_layer and h_0 the starting model's.
    It is 0 at the starting model; after block 0's MLP output is scaled by 30, h - h_0 is
    computed here from a plain forward per item of both models. It is a keep term (not part
    of the forget term), and with steer on, both read the same forward pass."""
    import copy

    from unlearnkit.training.unlearn import attach_start_hidden, attach_start_norms

    model = tiny_model(len(tok), layers=3)
    examples = build_examples(model, tok, records(), TeacherConfig(top_k=4), "tiny")
    refresh_prefill(model, tok, examples, [1, 2])
    cfg = PushPullConfig(top_m=3, keep_hidden=2.0, steer_layer=1)
    with pytest.raises(UnlearnError, match="attach_start_hidden"):
        pushpull_step(0, cfg)(model, examples)
    attach_start_hidden(model, 0, examples, 1)
    assert all((e.start_hidden is None) == (e.true_input is not None) for e in examples)
    _, logs = pushpull_step(0, cfg)(model, examples)
    assert logs["keep_hidden"] == pytest.approx(0.0, abs=1e-10)
    start = copy.deepcopy(model)
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.mul_(30.0)
    loss, logs = pushpull_step(0, cfg)(model, examples)
    plain, plain_logs = pushpull_step(0, PushPullConfig(top_m=3))(model, examples)
    per_pos = []
    for e in examples[1:]:  # the retain and the neighbour item
        ids = torch.tensor([e.pull_input.input_ids])
        with torch.no_grad():
            h = model(ids, output_hidden_states=True).hidden_states[2][0]
            h0 = start(ids, output_hidden_states=True).hidden_states[2][0]
        per_pos += [float(((h[t] - h0[t]) ** 2).mean())
                    for t in range(e.pull_input.response_start - 1, len(ids[0]) - 1)]
    assert min(per_pos) > 0
    assert logs["keep_hidden"] == pytest.approx(sum(per_pos) / len(per_pos), rel=1e-4)
    assert float((loss - plain).detach()) == pytest.approx(2.0 * logs["keep_hidden"], rel=1e-4)
    assert float(forget_term(loss)) == pytest.approx(float(forget_term(plain)), rel=1e-5)
    for key in ("pull", "push", "adv"):
        assert logs[key] == pytest.approx(plain_logs[key], rel=1e-5, abs=1e-6)
    # with the steer term too: each is what it is alone
    attach_start_norms(start, 0, examples, 1)
    both = PushPullConfig(pull=False, push=False, prefill=False, steer=1.0, keep_hidden=1.0,
                          steer_layer=1)
    _, both_logs = pushpull_step(0, both)(model, examples)
    _, steer_logs = pushpull_step(0, replace(both, keep_hidden=0.0))(model, examples)
    assert both_logs["keep_hidden"] == pytest.approx(logs["keep_hidden"], rel=1e-4)
    assert both_logs["steer"] == pytest.approx(steer_logs["steer"], rel=1e-5)
    # alone, it reaches no weight above its block
    alone = PushPullConfig(pull=False, push=False, prefill=False, keep_hidden=1.0,
                           steer_layer=1)
    model.zero_grad()
    pushpull_step(0, alone)(model, examples)[0].backward()
    assert model.model.layers[0].mlp.down_proj.weight.grad.abs().sum() > 0
    assert model.model.layers[2].mlp.down_proj.weight.grad is None or \
        float(model.model.layers[2].mlp.down_proj.weight.grad.abs().sum()) == 0
    with pytest.raises(UnlearnError, match="keep_hidden must be >= 0"):
        PushPullConfig(keep_hidden=-1.0)
