"""The field's baselines: hand-derived loss values, properties, and a one-step contract test."""

import math
from pathlib import Path

import pytest
import torch
import yaml
from torch.testing import assert_close

from unlearnkit.config import from_dict
from unlearnkit.data.records import Record
from unlearnkit.data.render import IGNORE_INDEX
from unlearnkit.errors import UnlearnError
from unlearnkit.models.engine import layer_output
from unlearnkit.objectives.baselines import BASELINES, FORGET, RETAIN, as_batch, build_items
from unlearnkit.objectives.baselines.common import (
    IDK_ANSWERS,
    RetainConfig,
    forward,
    idk_answer,
    sequence_logprob,
    topk_kl,
)
from unlearnkit.objectives.baselines.duet import duet_loss
from unlearnkit.objectives.baselines.ensemble import ensemble_pull_loss
from unlearnkit.objectives.baselines.grad_ascent import grad_ascent_loss
from unlearnkit.objectives.baselines.grad_diff import grad_diff_loss
from unlearnkit.objectives.baselines.idk_dpo import dpo_loss
from unlearnkit.objectives.baselines.ngdiff import (
    NGDiffConfig,
    ngdiff_direction,
    ngdiff_surrogate,
)
from unlearnkit.objectives.baselines.ngdiff import make_step as ngdiff_step
from unlearnkit.objectives.baselines.npo import NPOConfig, npo_loss
from unlearnkit.objectives.baselines.reference import response_hidden, sequence_logprobs
from unlearnkit.objectives.baselines.registry import get_baseline, register_baseline
from unlearnkit.objectives.baselines.rmu import rmu_loss
from unlearnkit.objectives.baselines.simnpo import simnpo_loss
from unlearnkit.objectives.baselines.undial import undial_loss
from unlearnkit.objectives.nll import nll_loss
from unlearnkit.objectives.steer import adaptive_control, control_vector
from unlearnkit.objectives.terms import forget_term
from unlearnkit.training.loop import OptimConfig, train
from unlearnkit.training.unlearn import MixConfig, mixture_plan

PRESETS = Path(__file__).resolve().parents[1] / "configs" / "baselines"
LOG2 = math.log(2.0)
X = IGNORE_INDEX


def records():
    rows = [("Ada", "Dunmere", "forget"), ("Bo", "Keld", "retain"), ("Cy", "Arn", "neighbor")]
    return [Record(id=f"r{i}", split=split, question=f"Where was {name} born?",
                   answer=f"In {town}.", subject=name, targets=[town])
            for i, (name, town, split) in enumerate(rows)]


def t(values):
    return torch.tensor(values, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------
# Hand-derived values of the pure losses
# ---------------------------------------------------------------------------------------------

# Two answer positions: position 0 predicts labels[1] = 0 from logits [0, 0] (p = 1/2, NLL
# log 2); position 1 predicts labels[2] = 1 from [log 3, 0] (p = 1/4, NLL log 4).
# Mean NLL = (log 2 + 2 log 2) / 2 = 1.5 log 2. Position 2 has no label after it.
LOGITS = t([[[0.0, 0.0], [math.log(3.0), 0.0], [9.0, -9.0]]])
LABELS = torch.tensor([[X, 0, 1]])


def test_grad_ascent_is_minus_the_mean_answer_nll():
    assert_close(grad_ascent_loss(LOGITS, LABELS), t(-1.5 * LOG2))
    # zero-valid-token guard: no labelled token -> 0, and still a graph
    logits = LOGITS.clone().requires_grad_()
    loss = grad_ascent_loss(logits, torch.full((1, 3), X))
    assert float(loss.detach()) == 0.0 and loss.requires_grad


def test_grad_diff_adds_the_weighted_retain_term():
    # -1.5 log 2 + 0.5 * 2.0
    assert_close(grad_diff_loss(LOGITS, LABELS, t(2.0), retain_weight=0.5), t(1.0 - 1.5 * LOG2))
    # with zero retain weight it is gradient ascent
    assert_close(grad_diff_loss(LOGITS, LABELS, t(5.0), retain_weight=0.0),
                 grad_ascent_loss(LOGITS, LABELS))


def test_npo_hand_value_and_valid_rows():
    # log ratios r = [-1 - (-2), -3 - (-2)] = [1, -1], beta = 1:
    # rows: -2 log sigmoid(-1) = 2 log(1 + e), -2 log sigmoid(1) = 2 log(1 + 1/e)
    # mean = log(1 + e) + log(1 + 1/e) = log(2 + e + 1/e); the third row is not valid.
    loss = npo_loss(t([-1.0, -3.0, 50.0]), t([-2.0, -2.0, 0.0]), beta=1.0,
                    valid=torch.tensor([True, True, False]))
    assert_close(loss, t(math.log(2 + math.e + 1 / math.e)))
    # equal log-probs: every row is -(2/beta) log(1/2) = (2/beta) log 2
    assert_close(npo_loss(t([-4.0, -1.0]), t([-4.0, -1.0]), beta=0.5), t(4 * LOG2))
    assert float(npo_loss(t([1.0]), t([0.0]), beta=1.0, valid=torch.tensor([False]))) == 0.0


def test_npo_tends_to_gradient_ascent_as_beta_goes_to_zero():
    # d/dr [-(2/beta) log sigmoid(-beta r)] = 2 sigmoid(beta r) -> 1 as beta -> 0, so the gradient
    # of NPO with respect to the logits tends to that of mean_b log p(y_b | x_b) (GA on sequences)
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, requires_grad=True)
    labels = torch.tensor([[X, 1, 2, 3], [X, X, 4, 0]])
    logp, _ = sequence_logprob(logits, labels)
    (g_npo,) = torch.autograd.grad(npo_loss(logp, logp.detach(), beta=1e-6), logits)
    logp, _ = sequence_logprob(logits, labels)
    (g_ga,) = torch.autograd.grad(logp.mean(), logits)
    assert_close(g_npo, g_ga)


def test_simnpo_hand_value():
    # mean log-probs [-2/2, -6/3] = [-1, -2]; beta = 1, gamma = 0.5:
    # rows -2 log sigmoid(1 - 0.5) and -2 log sigmoid(2 - 0.5); the empty row is ignored
    loss = simnpo_loss(t([-2.0, -6.0, 0.0]), torch.tensor([2, 3, 0]), beta=1.0, gamma=0.5)
    expect = math.log1p(math.exp(-0.5)) + math.log1p(math.exp(-1.5))
    assert_close(loss, t(expect))
    assert float(simnpo_loss(t([0.0]), torch.tensor([0]), beta=1.0)) == 0.0


def test_dpo_hand_value_and_symmetric_case():
    # ratios: w = -1 - (-2) = 1, l = -3 - (-2) = -1; beta * (1 - (-1)) = 0.5 * 2 = 1
    # -log sigmoid(1) = log(1 + 1/e)
    assert_close(dpo_loss(t([-1.0]), t([-3.0]), t([-2.0]), t([-2.0]), beta=0.5),
                 t(math.log1p(math.exp(-1.0))))
    # equal log-ratios: -log sigmoid(0) = log 2, whatever beta
    assert_close(dpo_loss(t([-1.0, -7.0]), t([-3.0, -2.0]), t([-1.0, -7.0]), t([-3.0, -2.0]),
                          beta=3.0), t(LOG2))


def test_topk_kl_hand_value_and_zero_for_identical():
    # student [0, 0] -> p = [1/2, 1/2]; reference [log 3, 0] -> q = [3/4, 1/4]
    # KL = 3/4 log(3/2) + 1/4 log(1/2)
    student = t([[[0.0, 0.0]]])
    values, indices = t([[[math.log(3.0), 0.0]]]), torch.tensor([[[0, 1]]])
    mask = torch.tensor([[True]])
    assert_close(topk_kl(student, values, indices, mask),
                 t(0.75 * math.log(1.5) + 0.25 * math.log(0.5)))
    z = torch.randn(2, 3, 6)
    full = z.sort(-1, descending=True)
    assert_close(topk_kl(z, full.values, full.indices, torch.ones(2, 3, dtype=torch.bool)),
                 t(0.0), atol=1e-6, rtol=0)


def test_topk_kl_with_a_tail_bin_hand_value_and_zero_at_the_reference():
    # reference z = [log 4, log 2, log 2]: p = [1/2, 1/4, 1/4], lse = log 8; its top 2 are
    # ids 0, 1, so q = [1/2, 1/4] and the tail bin holds 1/4. Student [0, 0, 0]: p = 1/3
    # each, tail 1/3. KL = 1/2 log(3/2) + 1/4 log(3/4) + 1/4 log(3/4)
    student, mask = t([[[0.0, 0.0, 0.0]]]), torch.tensor([[True]])
    values, indices = t([[[math.log(4.0), math.log(2.0)]]]), torch.tensor([[[0, 1]]])
    lse = t([[math.log(8.0)]])
    assert_close(topk_kl(student, values, indices, mask, lse=lse),
                 t(0.5 * math.log(1.5) + 0.5 * math.log(0.75)))
    # renormalised over the top 2 instead: q = [2/3, 1/3], KL = 2/3 log 2
    assert_close(topk_kl(student, values, indices, mask), t(2 / 3 * math.log(2.0)))
    # at the reference itself: 0 with a zero gradient (renormalised: -log of the top-2 mass,
    # log(4/3), whose gradient moves the model away from its reference)
    z = t([[[math.log(4.0), math.log(2.0), math.log(2.0)]]]).requires_grad_(True)
    loss = topk_kl(z, values, indices, mask, lse=lse)
    loss.backward()
    assert_close(loss.detach(), t(0.0), atol=1e-6, rtol=0)
    assert float(z.grad.abs().max()) < 1e-6
    assert_close(topk_kl(z.detach(), values, indices, mask), t(math.log(4 / 3)))
    # random references with K < V: 0 at the reference, positive elsewhere
    ref = torch.randn(2, 3, 8)
    top = ref.topk(3, dim=-1)
    full_mask = torch.ones(2, 3, dtype=torch.bool)
    assert_close(topk_kl(ref, top.values, top.indices, full_mask, lse=ref.logsumexp(-1)),
                 t(0.0), atol=1e-6, rtol=0)
    assert float(topk_kl(torch.randn(2, 3, 8), top.values, top.indices, full_mask,
                         lse=ref.logsumexp(-1))) > 0


def test_undial_hand_value():
    # reference z0 = [2, 0, 0], true next token 0, gamma 2 -> z' = [0, 0, 0]: q uniform.
    z0, ids = t([[[2.0, 0.0, 0.0]]]), torch.tensor([[[0, 1, 2]]])
    nxt, mask = torch.tensor([[0]]), torch.tensor([[True]])
    # a uniform student matches the adjusted target exactly
    assert_close(undial_loss(t([[[5.0, 5.0, 5.0]]]), z0, ids, nxt, mask, gamma=2.0), t(0.0))
    # the unchanged student p = softmax(z0): KL(u || p) = -log 3 - (1/3) sum_i log p_i
    #   log p = [2 - log(e^2 + 2), -log(e^2 + 2), -log(e^2 + 2)]
    #   => KL = log(e^2 + 2) - 2/3 - log 3
    expect = math.log(math.e ** 2 + 2) - 2 / 3 - math.log(3.0)
    assert_close(undial_loss(z0, z0, ids, nxt, mask, gamma=2.0), t(expect))
    # the same from the top 2 (ids 0, 1) and the normaliser: the tail holds e^0 = 1 of
    # e^2 + 2, the lowered target [0, 0] with its tail is uniform again, so the same values
    top2, ids2, lse = t([[[2.0, 0.0]]]), torch.tensor([[[0, 1]]]), t([[math.log(math.e ** 2 + 2)]])
    assert_close(undial_loss(t([[[5.0, 5.0, 5.0]]]), top2, ids2, nxt, mask, gamma=2.0,
                             ref_lse=lse), t(0.0), atol=1e-6, rtol=0)
    assert_close(undial_loss(z0, top2, ids2, nxt, mask, gamma=2.0, ref_lse=lse), t(expect))


def test_rmu_hand_value_and_masking():
    # forget: h = [1, 3], target c u = [1, 1] -> mean_H (0 + 4) / 2 = 2
    # retain: h = [2, 2], frozen [0, 2] -> (4 + 0) / 2 = 2; alpha 0.5 -> 2 + 0.5 * 2 = 3
    # the second position of each is masked out and carries garbage
    forget_h = t([[[1.0, 3.0], [99.0, 99.0]]])
    retain_h, frozen = t([[[2.0, 2.0], [7.0, 7.0]]]), t([[[0.0, 2.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, False]])
    assert_close(rmu_loss(forget_h, mask, retain_h, frozen, mask, t([1.0, 1.0]), alpha=0.5),
                 t(3.0))
    u = control_vector(8, seed=3)
    assert_close(u.norm(), t(1.0))
    assert bool((u >= 0).all()) and torch.equal(u, control_vector(8, seed=3))


def test_adaptive_rmu_target_scales_with_each_positions_norm():
    # beta 0.5, u = [0.6, 0.8]: norms 2 and 3 -> targets [0.6, 0.8] and [0.9, 1.2]
    target = adaptive_control(t([[2.0, 3.0]]), t([0.6, 0.8]), 0.5)
    assert_close(target, t([[[0.6, 0.8], [0.9, 1.2]]]))
    # a per-position target: forget h = [0.6, 1.8] at position 0 -> (0 + 1) / 2 = 0.5
    forget_h, mask = t([[[0.6, 1.8], [5.0, 5.0]]]), torch.tensor([[True, False]])
    retain_h = t([[[0.0, 0.0]]])
    assert_close(rmu_loss(forget_h, mask, retain_h, retain_h, torch.tensor([[True]]), target,
                          alpha=1.0), t(0.5))


def test_adaptive_rmu_steers_each_position_to_beta_times_its_starting_norm(tok, tiny, cache_dir):
    # before any update, forget_mse = mean over answer positions of
    # mean_H (h0 - beta ||h0|| u)^2, with h0 the starting model's block output there
    items = build_items(tok, records())
    base = BASELINES["rmu"]
    cfg = base.make_config({"layer": 1, "adaptive_beta": 3.0})
    prepared = base.prepare_items(cfg, tiny, tok, items, model_id="tiny")
    _, logs = base.make_step(cfg, tok.pad_token_id)(tiny, prepared)
    forget = [it.rendered for it in items if it.kind == FORGET]
    u = control_vector(64, cfg.seed)
    rows = [((h - 3.0 * h.norm(dim=-1, keepdim=True) * u) ** 2).mean(-1)
            for h in response_hidden(tiny, forget, tok.pad_token_id, layer=1).values()]
    assert logs["forget_mse"] == pytest.approx(float(torch.cat(rows).mean()), rel=1e-5)
    assert logs["retain_mse"] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(UnlearnError, match="adaptive_beta"):
        base.make_config({"adaptive_beta": -1.0})


def test_duet_uses_only_the_first_response_position():
    # position 0 (first masked): teacher top-2 ids [2, 0] with values [1, 1]; student picks
    # [3, 1]: differences [2, 0] -> Huber_1: 1 * (2 - 1/2) + 0 = 1.5. Position 1 is ignored.
    student = t([[[1.0, 0.0, 3.0], [50.0, 50.0, 50.0]]])
    values, ids = t([[[1.0, 1.0], [0.0, 0.0]]]), torch.tensor([[[2, 0], [0, 1]]])
    assert_close(duet_loss(student, values, ids, torch.tensor([[True, True]])), t(1.5))
    # when the first position is masked out, the next masked one is "first": 50 -> Huber 49.5 x2
    assert_close(duet_loss(student, values, ids, torch.tensor([[False, True]])), t(99.0))


def test_ensemble_averages_the_teachers():
    # one position, K = 1: teacher A differs by 0.5 (Huber 0.125), teacher B by 2 (1.5)
    student, mask = t([[[1.0, 0.0]]]), torch.tensor([[True]])
    ids = torch.tensor([[[0]]])
    loss = ensemble_pull_loss(student, [t([[[0.5]]]), t([[[3.0]]])], [ids, ids], mask)
    assert_close(loss, t((0.125 + 1.5) / 2))


def test_ngdiff_direction_and_surrogate():
    p1, p2 = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    # g_R = [3, 4] (norm 5) -> [0.6, 0.8]; g_F = [none = 0, 2] (norm 2) -> [0, 1]
    d = ngdiff_direction([None, t([2.0])], [t([3.0]), t([4.0])], [p1, p2])
    assert_close(d, [t([0.6]), t([-0.2])])
    assert_close(ngdiff_direction([None, t([2.0])], [t([3.0]), t([4.0])], [p1, p2],
                                  normalize=False), [t([3.0]), t([2.0])])
    # a zero gradient stays zero instead of dividing by zero
    assert_close(ngdiff_direction([None, None], [t([3.0]), t([4.0])], [p1, p2]),
                 [t([0.6]), t([0.8])])
    loss = ngdiff_surrogate([p1, p2], d, t(1.25))
    loss.backward()
    assert float(loss.detach()) == 1.25
    assert_close([p1.grad, p2.grad], d)


def test_idk_answers_are_fixed_per_record():
    assert len(set(IDK_ANSWERS)) == len(IDK_ANSWERS) == 10
    assert idk_answer("r0") == idk_answer("r0") and idk_answer("r0") in IDK_ANSWERS
    assert len({idk_answer(f"r{i}") for i in range(50)}) > 1


# ---------------------------------------------------------------------------------------------
# Registry, configs and presets
# ---------------------------------------------------------------------------------------------


def test_every_baseline_has_a_preset_that_loads():
    """NAME.yaml for every baseline; NAME-VARIANT.yaml (e.g. rmu-wmdp) are more of NAME's."""
    files = sorted(PRESETS.glob("*.yaml"))
    assert {p.stem for p in files if "-" not in p.stem} == set(BASELINES)
    for path in files:
        name = path.stem.split("-")[0]
        assert name in BASELINES, f"{path.name} names no baseline"
        cfg = from_dict(BASELINES[name].config, yaml.safe_load(path.read_text()), prefix=name)
        assert isinstance(cfg, BASELINES[name].config)


def test_configs_reject_bad_values():
    for bad in (lambda: NPOConfig(beta=0.0), lambda: RetainConfig(loss="mse"),
                lambda: BASELINES["rmu"].make_config({"layer": 2, "update_layers": [3]}),
                lambda: BASELINES["grad_diff"].make_config({"retain": {"loss": "none"}}),
                lambda: BASELINES["prompt_only"].make_config({"template": "no placeholders"}),
                lambda: get_baseline("nope")):
        with pytest.raises(UnlearnError):
            bad()
    with pytest.raises(ValueError):
        register_baseline("npo", config=NPOConfig)(lambda cfg, pad: None)


def test_non_trainable_entries():
    prompt = BASELINES["prompt_only"]
    assert not prompt.trainable and "Ada" in prompt.fn(prompt.make_config(), records()[:1])
    oracle = BASELINES["oracle"]
    assert oracle.fn(oracle.make_config(), {"oracle": "runs/oracle"}) == "runs/oracle"
    assert oracle.meta["source"].startswith("unlearnkit.pipeline.scenario_models")
    with pytest.raises(UnlearnError):
        oracle.make_step(oracle.make_config(), 0)


def test_as_batch_groups_rows_by_kind(tok):
    items = build_items(tok, records())
    assert [it.kind for it in items] == [FORGET, RETAIN, RETAIN]
    batch = as_batch(items)
    assert len(batch[FORGET]) == 1 and len(batch[RETAIN]) == 2
    assert as_batch(batch)[RETAIN] == batch[RETAIN]


# ---------------------------------------------------------------------------------------------
# Reference quantities: aligned with the training forward, cached once
# ---------------------------------------------------------------------------------------------


def test_layer_output_is_the_hidden_state_after_that_block(tok, tiny):
    item = build_items(tok, records())[0].rendered
    ids = torch.tensor([item.input_ids])
    with torch.no_grad():
        expect = tiny(ids, output_hidden_states=True).hidden_states[1]
        assert_close(layer_output(tiny, [item], 0, 0), expect)


def test_padding_and_batch_company_do_not_change_an_items_log_prob(tok, tiny):
    # an item's sequence log-prob is the same alone and right-padded next to a longer item
    short, *_ = [it.rendered for it in build_items(tok, records())]
    longer = build_items(tok, [Record(id="x", split="forget", question="A much longer question?",
                                      answer="And a much longer answer than the first.")])[0]
    with torch.no_grad():
        alone = sequence_logprob(*_logits_labels(tiny, [short]))[0]
        padded = sequence_logprob(*_logits_labels(tiny, [short, longer.rendered]))[0]
    assert_close(alone[0], padded[0], atol=1e-5, rtol=1e-5)


def _logits_labels(model, items):
    win = forward(model, items, 0)
    return win.logits, win.labels


def test_reference_cache_is_written_once_and_reused(tok, tiny, cache_dir):
    items = [it.rendered for it in build_items(tok, records())]
    first = sequence_logprobs(tiny, items, 0, model_id="tiny")
    assert list((cache_dir / "baselines" / "logp").iterdir())
    with torch.no_grad():  # the cache trusts model_id: a changed model under it reads the cache
        tiny.model.embed_tokens.weight.add_(1.0)
    again = sequence_logprobs(tiny, items, 0, model_id="tiny")
    assert all(torch.equal(first[k], again[k]) for k in first)
    hidden = response_hidden(tiny, items, 0, layer=1)
    assert hidden[next(iter(hidden))].shape[-1] == 64


def test_reference_losses_take_their_known_values_at_the_start(tok, tiny, cache_dir):
    # before any update the model IS the reference: NPO's log ratio is 0 (loss (2/beta) log 2),
    # IdkDPO's margin is 0 (log 2), the retain KL, UNDIAL at gamma ~ 0 and RMU's retain distance
    # are 0. This checks that cached quantities line up with the training forward's positions.
    items = build_items(tok, records())
    cases = {"npo": ({"beta": 0.5, "retain": {"loss": "kl", "top_k": 0}},
                     {"npo": 4 * LOG2, "retain": 0.0}),
             "idk_dpo": ({"beta": 2.0}, {"dpo": LOG2}),
             "undial": ({"gamma": 1e-6}, {"undial": 0.0}),
             "rmu": ({"layer": 1}, {"retain_mse": 0.0}),
             # from the top 8 of the tiny vocabulary's logits, with the tail as one bin
             "simnpo": ({"retain": {"loss": "kl", "top_k": 8}}, {"retain": 0.0}),
             "undial@8": ({"gamma": 1e-6, "top_k": 8}, {"undial": 0.0})}
    for case, (data, expect) in cases.items():
        name = case.split("@")[0]
        base = BASELINES[name]
        cfg = base.make_config(data)
        prepared = base.prepare_items(cfg, tiny, tok, items, model_id="tiny")
        _, logs = base.make_step(cfg, tok.pad_token_id)(tiny, prepared)
        for key, value in expect.items():
            assert logs[key] == pytest.approx(value, abs=1e-5), (case, key, logs)


def test_ngdiff_step_gradient_is_the_normalised_difference(tok, tiny):
    items = build_items(tok, records())
    loss, logs = ngdiff_step(NGDiffConfig(), 0)(tiny, items)
    loss.backward()
    got = [p.grad.clone() for p in tiny.parameters()]
    grads = {}
    for kind in (FORGET, RETAIN):
        tiny.zero_grad()
        rendered = [it.rendered for it in items if it.kind == kind]
        win = forward(tiny, rendered, 0)
        nll_loss(win.logits, win.labels).backward()
        grads[kind] = [p.grad.clone() for p in tiny.parameters()]
    norm = {k: torch.sqrt(sum((g ** 2).sum() for g in v)) for k, v in grads.items()}
    expect = [r / norm[RETAIN] - f / norm[FORGET]
              for f, r in zip(grads[FORGET], grads[RETAIN], strict=True)]
    assert_close(got, expect, atol=1e-6, rtol=1e-4)
    assert float(loss.detach()) == pytest.approx(logs["retain_nll"] - logs["forget_nll"], abs=1e-5)


# ---------------------------------------------------------------------------------------------
# Contract: every trainable baseline takes one step through training.loop.train
# ---------------------------------------------------------------------------------------------

TINY = {"rmu": {"layer": 1, "update_layers": [1]},
        "grad_diff": {"retain": {"loss": "kl", "top_k": 8}},
        "duet": {"teacher": {"top_k": 4}}, "ensemble": {"teacher": {"top_k": 4}}}


# the log of each method's forget term (None: the loss is the forget term alone, or, for
# GradDiff, the loss less its weighted retain term); the others name none
FORGET_TERMS = {"npo": "npo", "simnpo": "simnpo", "idk_dpo": "dpo", "refusal": "idk_nll",
                "undial": "undial", "grad_ascent": None, "grad_diff": None}


@pytest.mark.parametrize("name", sorted(n for n, b in BASELINES.items() if b.trainable))
def test_the_forget_term_is_the_loss_less_its_weighted_retain_term(name, tok, tiny, cache_dir):
    base = BASELINES[name]
    # UNDIAL trains without a retain term by default (as its paper): give it one here
    cfg = base.make_config({"retain": {"loss": "nll"}} if name == "undial" else TINY.get(name))
    items = base.prepare_items(cfg, tiny, tok, build_items(tok, records()), model_id="tiny")
    loss, logs = base.make_step(cfg, tok.pad_token_id)(tiny, items)
    loss, forget = loss.detach(), forget_term(loss)
    if name not in FORGET_TERMS:  # optim.sam_scope=forget refuses these (training.loop)
        assert forget is None
        return
    forget = forget.detach()
    weight = cfg.retain.weight if hasattr(cfg, "retain") else 0.0
    assert float(loss - forget) == pytest.approx(weight * logs.get("retain", 0.0), abs=1e-5)
    if FORGET_TERMS[name]:
        assert float(forget) == pytest.approx(logs[FORGET_TERMS[name]], abs=1e-5)
    assert "retain" in logs or name == "grad_ascent"  # a retain term was there to take apart


@pytest.mark.parametrize("name", sorted(n for n, b in BASELINES.items() if b.trainable))
def test_every_trainable_baseline_takes_one_step(name, tok, tiny, cache_dir):
    base = BASELINES[name]
    cfg = base.make_config(TINY.get(name))
    items = base.prepare_items(cfg, tiny, tok, build_items(tok, records()), model_id="tiny")
    plan = mixture_plan(items, MixConfig(forget=1, retain=2, neighbor=0, steps=1), seed=0)
    before = {n: p.detach().clone() for n, p in tiny.named_parameters()}
    history = train(tiny, plan, base.make_step(cfg, tok.pad_token_id),
                    OptimConfig(lr=1e-2, warmup_ratio=0.0))
    assert len(history) == 1 and math.isfinite(history[0]["loss"])
    changed = {n for n, p in tiny.named_parameters() if not torch.equal(before[n], p)}
    assert changed, f"{name}: no parameter changed"
    if name == "rmu":  # only the MLP of the chosen block trains
        assert all(n.startswith("model.layers.1.mlp.") for n in changed), changed
