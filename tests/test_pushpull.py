import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from unlearnkit.objectives.pushpull import (
    first_position,
    pull_loss,
    push_loss,
    teacher_threshold,
    to_space,
    topk_logits,
)

T = torch.tensor


def test_pull_hand_derived():
    """pos0: diffs (3-3.5, 2-0) -> Huber_1 = 0.5*0.25 + (2-0.5) = 1.625; pos1: 0."""
    student = T([[[1.0, 2, 3, 0], [0, 0, 0, 0]]])
    idx = T([[[2, 1], [0, 3]]])
    val = T([[[3.5, 0.0], [0.0, 0.0]]])
    assert pull_loss(student, val, idx, T([[1, 1]])).item() == 0.8125
    assert pull_loss(student, val, idx, T([[1, 0]])).item() == 1.625
    assert pull_loss(student, val, idx, T([[0, 1]]), first_only=True).item() == 0.0
    assert pull_loss(student, val, idx, T([[1, 1]]), first_only=True).item() == 1.625


def test_pull_per_group_by_hand():
    """Per-position Huber (K = 1, delta 1): row 0 |2-0| -> 1.5, row 1 0.5 -> 0.125, row 2
    |4-0| -> 3.5. Pooled: (1.5 + 0.125 + 3.5) / 3 = 1.708...; groups {0, 1} and {2}:
    ((1.5 + 0.125) / 2 + 3.5) / 2 = 2.15625. A group with no masked position is left out."""
    student = T([[[2.0]], [[0.5]], [[4.0]]])
    idx = T([[[0]], [[0]], [[0]]])
    val = T([[[0.0]], [[0.0]], [[0.0]]])
    mask = T([[1], [1], [1]])
    assert abs(pull_loss(student, val, idx, mask).item() - (1.5 + 0.125 + 3.5) / 3) < 1e-6
    assert pull_loss(student, val, idx, mask, groups=T([0, 0, 1])).item() == 2.15625
    assert pull_loss(student, val, idx, T([[1], [1], [0]]), groups=T([0, 0, 1])).item() == 0.8125


def test_pull_row_weights_by_hand():
    """The rows above (1.5, 0.125, 3.5), weights (1, 1, 0.5): (1.5 + 0.125 + 1.75) / 3 =
    1.125; weights (1, 1, 0): (1.5 + 0.125) / 3, the zero-weight row's position still counted;
    all ones: the plain mean."""
    student = T([[[2.0]], [[0.5]], [[4.0]]])
    idx = T([[[0]], [[0]], [[0]]])
    val = T([[[0.0]], [[0.0]], [[0.0]]])
    mask = T([[1], [1], [1]])
    assert pull_loss(student, val, idx, mask, row_weights=T([1.0, 1.0, 0.5])).item() == 1.125
    assert abs(pull_loss(student, val, idx, mask, row_weights=T([1.0, 1.0, 0.0])).item()
               - 1.625 / 3) < 1e-6
    assert pull_loss(student, val, idx, mask, row_weights=T([1.0, 1.0, 1.0])).item() == \
        pull_loss(student, val, idx, mask).item()


def test_push_hand_derived():
    """z=[4,1,0,2], K_T={1}, tau=1, margin .5, M=2 -> H={0,3}: 3.5 + 1.5 = 5."""
    student = T([[[4.0, 1, 0, 2]]])
    idx, tau, mask = T([[[1]]]), T([[1.0]]), T([[1]])
    kw = {"top_m": 2, "margin": 0.5}
    assert push_loss(student, idx, tau, T([[0]]), mask, **kw).item() == 5.0
    # the true token 1 is in the teacher's top-K: pushed too by default, as METHOD.md's H(t)
    # holds y(t+1) (+ relu(1 - 1 + 0.5)); left out in the ablation
    assert push_loss(student, idx, tau, T([[1]]), mask, **kw).item() == 5.5
    assert push_loss(student, idx, tau, T([[1]]), mask, push_true_in_topk=False,
                     **kw).item() == 5.0
    # only the true token (M=0), already below tau - margin: nothing to push
    assert push_loss(student, idx, tau, T([[2]]), mask, top_m=0, margin=0.5).item() == 0.0
    assert push_loss(student, idx, tau, T([[0]]), T([[0]]), **kw).item() == 0.0


def test_first_position():
    mask = T([[0, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]]).bool()
    assert first_position(mask).long().tolist() == [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 5))
def test_pull_is_zero_against_itself_and_ignores_masked_positions(seed, k):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(2, 5, 8, generator=g)
    val, idx, _ = topk_logits(student, k)
    mask = torch.rand(2, 5, generator=g) > 0.4
    assert pull_loss(student, val, idx, mask).item() == 0.0
    other = torch.randn(2, 5, 8, generator=g)
    changed = torch.where(mask.unsqueeze(-1), other, other + 100 * torch.randn(2, 5, 8,
                                                                           generator=g))
    a = pull_loss(other, val, idx, mask)
    b = pull_loss(changed, val, idx, mask)
    torch.testing.assert_close(a, b)


def test_push_gradient_only_on_masked_positions_and_revealing_tokens():
    student = torch.zeros(1, 2, 4, requires_grad=True)
    with torch.no_grad():
        student[0, :, 3] = 5.0
    idx, tau = T([[[0], [0]]]), T([[1.0, 1.0]])
    push_loss(student, idx, tau, T([[3, 3]]), T([[1, 0]]), top_m=1).backward()
    grad = student.grad[0]
    assert grad[1].abs().sum() == 0  # masked position
    assert grad[0, 3] > 0 and grad[0, :3].abs().sum() == 0


def test_empty_mask_gives_zero_with_a_graph():
    student = torch.randn(1, 3, 5, requires_grad=True)
    val, idx, tau = topk_logits(student.detach(), 2)
    zero = torch.zeros(1, 3, dtype=torch.bool)
    loss = pull_loss(student, val + 1, idx, zero) + push_loss(student, idx, tau, T([[0, 1, 2]]),
                                                              zero)
    assert loss.item() == 0.0
    loss.backward()
    assert student.grad is not None


def test_push_on_log_probs_hand_derived():
    """z = [ln 3, 0]: p = [3/4, 1/4]. True token 0, teacher K-th log-prob ln 1/4, margin 0.5,
    M = 0: relu(ln 3/4 - ln 1/4 + 0.5) = ln 3 + 0.5, whatever constant is added to z."""
    import math

    tau, mask, true = T([[math.log(0.25)]]), T([[1]]), T([[0]])
    kw = {"top_m": 0, "margin": 0.5, "space": "logprobs"}
    for shift in (0.0, -10.0, 7.0):
        student = T([[[math.log(3.0) + shift, shift]]])
        got = push_loss(student, T([[[1]]]), tau, true, mask, **kw).item()
        assert abs(got - (math.log(3.0) + 0.5)) < 1e-5


def test_raw_push_is_met_by_an_offset_and_the_log_prob_push_is_not():
    """Lowering every logit at a position by 10 meets the raw hinge (tau 0, margin 1) with the
    true token still the argmax; on log-probabilities the hinge is untouched by the offset."""
    student = T([[[2.0, 0.0, 0.0]]])
    idx, true, mask = T([[[1]]]), T([[0]]), T([[1]])
    raw = {"top_m": 0, "margin": 1.0}
    assert push_loss(student, idx, T([[0.0]]), true, mask, **raw).item() == 3.0
    lowered = student - 10.0
    assert push_loss(lowered, idx, T([[0.0]]), true, mask, **raw).item() == 0.0
    assert lowered.argmax(-1).item() == 0  # still says the fact
    tau_lp = torch.log_softmax(T([2.0, 0.0, 0.0]), -1)[1:2].view(1, 1)  # a teacher like it
    before = push_loss(student, idx, tau_lp, true, mask, top_m=0, space="logprobs").item()
    after = push_loss(lowered, idx, tau_lp, true, mask, top_m=0, space="logprobs").item()
    assert before == after and abs(before - 3.0) < 1e-5  # log p0 - log p1 = 2, plus margin 1


def test_log_odds_hand_derived():
    """z = [ln 3, 0, 0]: p = [3/5, 1/5, 1/5], log-odds ln(3/2), ln(1/4), ln(1/4). The
    teacher's K-th logit 0 with log-normaliser ln 4 (p = 1/4): log-odds ln(1/3). True token 0,
    M = 0, margin 0: relu(ln 3/2 - ln 1/3) = ln 4.5, whatever offset z carries."""
    import math

    z = T([[[math.log(3.0), 0.0, 0.0]]])
    want = [math.log(1.5), math.log(0.25), math.log(0.25)]
    assert torch.allclose(to_space(z, "logodds")[0, 0], T(want), atol=1e-6)
    tau = teacher_threshold(T([[0.0]]), T([[math.log(4.0)]]), "logodds")
    assert abs(tau.item() - math.log(1 / 3)) < 1e-6
    for shift in (0.0, -10.0):
        got = push_loss(z + shift, T([[[1]]]), tau, T([[0]]), T([[1]]), top_m=0, margin=0.0,
                        space="logodds").item()
        assert abs(got - math.log(4.5)) < 1e-5


def test_log_odds_gradient_does_not_vanish_when_the_model_is_sure():
    """p(true) ~ 1 - 2e-9: d log p / d z_true is ~0, d log-odds / d z_true is 1."""
    z = T([[[20.0, 0.0, 0.0]]]).requires_grad_()
    for space, expect in (("logprobs", 0.0), ("logodds", 1.0)):
        loss = push_loss(z, T([[[1]]]), T([[-30.0]]), T([[0]]), T([[1]]), top_m=0,
                         margin=0.0, space=space)
        (grad,) = torch.autograd.grad(loss, z)
        assert abs(grad[0, 0, 0].item() - expect) < 1e-6
        assert torch.isfinite(grad).all()


def test_teacher_threshold_per_space():
    import math

    tau, lse = T([[1.0]]), T([[3.0]])
    assert teacher_threshold(tau, None, "logits").item() == 1.0
    assert abs(teacher_threshold(tau, lse, "logprobs").item() + 2.0) < 1e-6
    p = math.exp(-2.0)
    assert abs(teacher_threshold(tau, lse, "logodds").item() - math.log(p / (1 - p))) < 1e-6


def test_push_below_the_student_alternative_hand_derived():
    """z = [3, 1, 2, 0, -1], true token 0, K_T = {0, 2}, M = 0 (H = {0}), margin 1: the best
    token outside H is 2 (z = 2), so relu(3 - 2 + 1) = 2, with gradient +1 on z_0 only (the
    alternative is held fixed), whatever constant z carries. With M = 2 the student's top-2
    outside K_T adds token 1: H = {0, 1}, the alternative is still 2: 2 + relu(1 - 2 + 1) =
    2."""
    idx, true, mask = T([[[0, 2]]]), T([[0]]), T([[1]])
    kw = {"margin": 1.0, "push_true_in_topk": True, "below": "alternative"}
    for shift in (0.0, -10.0, 5.0):
        z = (T([[[3.0, 1, 2, 0, -1]]]) + shift).requires_grad_()
        loss = push_loss(z, idx, None, true, mask, top_m=0, **kw)
        assert abs(loss.item() - 2.0) < 1e-5
        (grad,) = torch.autograd.grad(loss, z)
        assert grad[0, 0].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
        assert abs(push_loss(z, idx, None, true, mask, top_m=2, **kw).item() - 2.0) < 1e-5
    # the fact already a margin below its best alternative: nothing to push
    z = T([[[1.0, 0, 2.5, 0, 0]]])
    assert push_loss(z, idx, None, true, mask, top_m=0, **kw).item() == 0.0
    # log-probabilities differ from logits by a per-position constant: the same hinge
    z = T([[[3.0, 1, 2, 0, -1]]])
    assert abs(push_loss(z, idx, None, true, mask, top_m=0, space="logprobs", **kw).item()
               - 2.0) < 1e-5


def test_push_below_the_alternative_is_zero_where_every_token_reveals():
    """V = 2, M = 2: both tokens are in H, there is no alternative, and the loss stays finite."""
    z = T([[[1.0, 0.0]]]).requires_grad_()
    loss = push_loss(z, T([[[0]]]), None, T([[0]]), T([[1]]), top_m=2, below="alternative")
    assert loss.item() == 0.0
    (grad,) = torch.autograd.grad(loss, z)
    assert torch.isfinite(grad).all()
