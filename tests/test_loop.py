import json
import types

import pytest
import torch

from unlearnkit.data.render import render
from unlearnkit.errors import UnlearnError
from unlearnkit.models.engine import forward_responses
from unlearnkit.models.teacher_cache import teacher_topk
from unlearnkit.models.tiny import tiny_model
from unlearnkit.objectives.baselines.common import place_topk, topk_kl
from unlearnkit.objectives.nll import nll_loss
from unlearnkit.objectives.terms import with_forget_term
from unlearnkit.training import loop
from unlearnkit.training.checkpoint import latest_checkpoint
from unlearnkit.training.loop import OptimConfig, _lr_lambda, make_adamw, train
from unlearnkit.training.sft import Distilled, epoch_plan, sft_step


def items(tok, n=8):
    # equal lengths, so token means and per-batch means agree across batch shapes
    return [render(tok, f"Question {i}?", f"Answer {i}.") for i in range(n)]


def params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_training_reduces_loss_and_changes_weights(tok):
    model = tiny_model(len(tok))
    before = params(model).clone()
    plan = epoch_plan(items(tok), 4, epochs=10, seed=0)
    hist = train(model, plan, sft_step(tok.pad_token_id), OptimConfig(lr=3e-3))
    assert hist[-1]["loss"] < 0.7 * hist[0]["loss"]
    assert not torch.equal(before, params(model))
    assert {"loss", "lr", "grad_norm"} <= set(hist[0])


def test_each_step_logs_its_own_seconds_without_the_checks_after_it(tok, monkeypatch):
    clock = [0.0]

    def tick():  # every reading of the clock moves it on by one second
        clock[0] += 1.0
        return clock[0]

    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=tick))

    def slow_check(_step, _logs):  # on_step's own work (early stopping's generation, say)
        clock[0] += 100.0

    plan = epoch_plan(items(tok), 4, epochs=2, seed=0)
    hist = train(tiny_model(len(tok)), plan, sft_step(tok.pad_token_id), OptimConfig(lr=1e-3),
                 on_step=slow_check)
    # two readings per step (before and after it): 1 s each, the 100 s of the check outside
    assert [h["seconds"] for h in hist] == [1.0] * len(plan)


def test_fused_adamw_on_cpu_matches_torchs_default_update():
    torch.manual_seed(0)
    weights = [torch.randn(7, 5, requires_grad=True), torch.randn(3, requires_grad=True)]
    start = [w.detach().clone() for w in weights]
    reference = [w.detach().clone().requires_grad_(True) for w in weights]
    cfg = OptimConfig(lr=1e-2, weight_decay=0.1)
    fused = make_adamw(weights, cfg)
    assert fused.defaults["fused"] is True
    plain = torch.optim.AdamW(reference, lr=1e-2, weight_decay=0.1)
    for step in range(5):
        for group in (weights, reference):
            loss = sum(((w - step) ** 2).sum() for w in group)
            loss.backward()
        fused.step(), plain.step()
        fused.zero_grad(), plain.zero_grad()
    for a, b, a0 in zip(weights, reference, start, strict=True):
        assert (a - a0).abs().min() > 1e-3  # every weight moved (Adam: about lr per step)
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_adamw_takes_betas_and_eps_from_the_config():
    # Adam's first step is lr * g / (|g| + eps) whatever beta1 and beta2 (bias correction):
    # a gradient of 1e-6 against eps 1e-6 moves the weight by half the rate, with the default
    # eps 1e-8 by 0.99 of it. The second step, gradient 3e-6: m = (1-b1) (b1 g1 + g2) and
    # v = (1-b2) (b2 g1^2 + g2^2), each divided by its bias correction 1 - b^2.
    b1, b2, eps, lr = 0.5, 0.75, 1e-6, 0.1
    for cfg_eps, want in ((eps, -lr / 2), (1e-8, -lr * 1e-6 / (1e-6 + 1e-8))):
        w = torch.zeros(1, requires_grad=True)
        opt = make_adamw([w], OptimConfig(lr=lr, beta1=b1, beta2=b2, eps=cfg_eps))
        (1e-6 * w).sum().backward()
        opt.step()
        assert w.item() == pytest.approx(want, rel=1e-5)
    opt.zero_grad()
    (3e-6 * w).sum().backward()
    opt.step()
    m = (1 - b1) * (b1 * 1e-6 + 3e-6) / (1 - b1 ** 2)
    v = (1 - b2) * (b2 * 1e-12 + 9e-12) / (1 - b2 ** 2)
    assert w.item() == pytest.approx(want - lr * m / (v ** 0.5 + 1e-8), rel=1e-5)


@pytest.mark.parametrize("key, value", [("beta1", 1.0), ("beta2", -0.1), ("eps", 0.0)])
def test_optim_refuses_adam_settings_out_of_range(key, value):
    with pytest.raises(UnlearnError, match=f"optim.{key}"):
        OptimConfig(**{key: value})


@pytest.mark.parametrize(("key", "value", "valid"), [
    ("weight_decay", -1.0, r">= 0 \(0: none\)"),
    ("max_grad_norm", -1.0, r">= 0 \(0: no clipping\)"),
    ("checkpoint_every", -1, r">= 0 steps \(0: no checkpoints\)"),
    ("keep_checkpoints", -2, r">= 0 \(0: keep every one\)"),
    ("sam_rho", -0.1, r">= 0 \(0: plain steps\)")])
def test_optim_refuses_negative_settings_when_the_config_loads(key, value, valid):
    from unlearnkit.config import load_config
    from unlearnkit.pipeline.run import RunConfig

    with pytest.raises(UnlearnError, match=rf"optim\.{key} must be {valid}, got {value}"):
        load_config(RunConfig, None, [f"optim.{key}={value}"])
    OptimConfig(**{key: 0})  # zero is each one's "off"


def test_accumulation_matches_one_big_batch(tok):
    data = items(tok)
    big, small = tiny_model(len(tok)), tiny_model(len(tok))
    train(big, [data[:4], data[4:]], sft_step(0), OptimConfig(lr=1e-3, warmup_ratio=0))
    micro = [[x] for x in data]
    train(small, micro, sft_step(0), OptimConfig(lr=1e-3, warmup_ratio=0, grad_accum=4))
    torch.testing.assert_close(params(big), params(small), atol=1e-6, rtol=1e-5)


def test_killed_run_resumes_to_the_same_model(tok, tmp_path):
    plan = epoch_plan(items(tok), 2, epochs=2, seed=1)  # 8 steps
    cfg = OptimConfig(lr=2e-3, checkpoint_every=2)
    full = tiny_model(len(tok))
    train(full, plan, sft_step(0), cfg, out_dir=tmp_path / "a")

    def kill(step, logs):
        if step == 5:
            raise KeyboardInterrupt

    killed = tiny_model(len(tok))
    with pytest.raises(KeyboardInterrupt):
        train(killed, plan, sft_step(0), cfg, out_dir=tmp_path / "b", on_step=kill)
    assert latest_checkpoint(tmp_path / "b" / "checkpoints").name == "step-0000004"
    resumed = tiny_model(len(tok), seed=123)  # different init: everything must come from disk
    hist = train(resumed, plan, sft_step(0), cfg, out_dir=tmp_path / "b", resume=True)
    assert [h["step"] for h in hist] == list(range(1, 9))
    torch.testing.assert_close(params(full), params(resumed), atol=1e-6, rtol=1e-5)


def test_schedule_warms_up_then_decays():
    f = _lr_lambda(OptimConfig(warmup_ratio=0.2, schedule="linear"), total=10)
    assert f(0) == pytest.approx(1 / 3) and f(1) == pytest.approx(2 / 3)
    assert f(2) == 1.0 and f(10) == 0.0
    g = _lr_lambda(OptimConfig(warmup_ratio=0.0, schedule="cosine"), total=10)
    assert g(5) == pytest.approx(0.5)


def test_bad_settings_are_user_errors(tok):
    with pytest.raises(UnlearnError, match="lr must be positive"):
        OptimConfig(lr=0)
    with pytest.raises(UnlearnError, match="fewer than grad_accum"):
        train(tiny_model(len(tok)), [[1]], sft_step(0), OptimConfig(grad_accum=2))


def test_bucketed_plan_keeps_every_item_once_per_epoch_and_reduces_padding(tok):
    data = [render(tok, "Q" * (i % 7 + 1) + "?", "A" * (3 * i % 11 + 1) + ".") for i in range(40)]
    plain = epoch_plan(data, 4, epochs=2, seed=3)
    bucketed = epoch_plan(data, 4, epochs=2, seed=3, bucket=5)
    for plan in (plain, bucketed):
        for epoch in (plan[:10], plan[10:]):
            assert sorted(id(x) for b in epoch for x in b) == sorted(id(x) for x in data)

    def padding(plan):
        return sum(max(len(x.input_ids) for x in b) * len(b) - sum(len(x.input_ids) for x in b)
                   for b in plan)

    assert padding(bucketed) < padding(plain)
    assert bucketed == epoch_plan(data, 4, epochs=2, seed=3, bucket=5)


def _fake_accelerator(kind: str, stage: int = 0, processes: int = 2, fsdp_version: int = 1):
    from types import SimpleNamespace

    plugin = SimpleNamespace(zero_stage=stage, deepspeed_config={}) if stage else None
    fsdp = SimpleNamespace(fsdp_version=fsdp_version) if kind == "FSDP" else None
    return SimpleNamespace(distributed_type=f"DistributedType.{kind}", num_processes=processes,
                           state=SimpleNamespace(deepspeed_plugin=plugin, fsdp_plugin=fsdp))


@pytest.mark.parametrize(("kind", "stage", "message"), [("FSDP", 0, "FSDP1 wraps the model"),
                                                        ("DEEPSPEED", 3, "ZeRO-3 partitions")])
def test_fsdp1_and_zero3_are_refused_before_training(kind, stage, message):
    from unlearnkit.training.loop import _check_unsharded

    with pytest.raises(UnlearnError, match=message):
        _check_unsharded(_fake_accelerator(kind, stage))


def test_fsdp2_is_accepted():
    from unlearnkit.training.loop import _check_unsharded

    _check_unsharded(_fake_accelerator("FSDP", fsdp_version=2))


def test_every_process_gets_rows_and_under_fsdp_the_same_kinds():
    from types import SimpleNamespace

    from unlearnkit.training.loop import _check_shards

    def rows(*kinds):
        return [SimpleNamespace(kind=k) for k in kinds]

    balanced = [rows("forget", "forget", "retain", "retain")]  # rank 0: f, r; rank 1: f, r
    for kind in ("MULTI_GPU", "FSDP"):
        _check_shards(_fake_accelerator(kind, fsdp_version=2), balanced)
        with pytest.raises(UnlearnError, match="micro-batch 2 has 1 rows for 2 processes"):
            _check_shards(_fake_accelerator(kind, fsdp_version=2), [*balanced, rows("forget")])
    uneven = [rows("forget", "retain", "retain", "retain")]  # rank 0: f, r; rank 1: r, r
    _check_shards(_fake_accelerator("MULTI_GPU"), uneven)  # DDP: any rows will do
    with pytest.raises(UnlearnError, match="a multiple of 2"):
        _check_shards(_fake_accelerator("FSDP", fsdp_version=2), uneven)
    _check_shards(_fake_accelerator("NO", processes=1), [rows("forget")])


def test_full_weight_setups_pass_and_deepspeed_gets_its_micro_batch():
    from unlearnkit.training.loop import _check_unsharded, _set_deepspeed_micro_batch

    for acc in (_fake_accelerator("MULTI_GPU"), _fake_accelerator("NO", processes=1)):
        _check_unsharded(acc)
        _set_deepspeed_micro_batch(acc, [[1, 2, 3, 4]])  # no plugin: nothing to set
    zero2 = _fake_accelerator("DEEPSPEED", stage=2)
    _check_unsharded(zero2)
    _set_deepspeed_micro_batch(zero2, [[1, 2, 3, 4, 5, 6]])
    assert zero2.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] == 3


def test_sam_shift_by_hand():
    from unlearnkit.training.loop import sam_shift

    # ||g|| over both tensors: sqrt(3^2 + 4^2 + 12^2) = 13
    shifts = sam_shift([torch.tensor([3.0, 4.0]), None, torch.tensor([12.0])], rho=0.26)
    torch.testing.assert_close(shifts[0], torch.tensor([0.06, 0.08]))
    assert shifts[1] is None
    torch.testing.assert_close(shifts[2], torch.tensor([0.24]))
    assert sam_shift([torch.zeros(3)], rho=1.0)[0].abs().sum() == 0  # no gradient, no shift
    assert sam_shift([None], rho=1.0) == [None]


class _Quadratic(torch.nn.Module):
    """L(w) = 1/2 (1 w0^2 + 2 w1^2), from w = (3, 4): gradient a * w = (3, 8)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
        self.a = torch.tensor([1.0, 2.0])


def _quadratic_step(model, _batch):
    loss = 0.5 * (model.a * model.w ** 2).sum()
    return loss, {}


class _Recorder:
    """An optimizer that only records the gradient it is asked to apply."""

    def __init__(self, params):
        self.params, self.seen = params, None

    def step(self):
        self.seen = [p.grad.clone() for p in self.params]

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None


@pytest.mark.parametrize("rho", [0.0, 0.5])
def test_a_sharpness_aware_step_takes_the_gradient_at_the_shifted_weights(rho):
    model = _Quadratic()
    params = [model.w]
    cfg = OptimConfig(sam_rho=rho, max_grad_norm=0.0)
    recorder = _Recorder(params)
    logs = loop._optimizer_step(model, [[0]], 0, _quadratic_step, cfg, loop.make_accelerator(cfg),
                                recorder, params)
    g = torch.tensor([3.0, 8.0])
    shifted = torch.tensor([3.0, 4.0]) + rho * g / 73 ** 0.5  # ||g|| = sqrt(9 + 64)
    torch.testing.assert_close(recorder.seen[0], torch.tensor([1.0, 2.0]) * shifted)
    torch.testing.assert_close(model.w.detach(), torch.tensor([3.0, 4.0]))  # moved back
    assert logs["loss"] == pytest.approx(0.5 * (9 + 2 * 16))  # the loss at w itself
    if rho:
        assert logs["sam_loss"] == pytest.approx(0.5 * float((torch.tensor([1.0, 2.0])
                                                              * shifted ** 2).sum()))
    else:
        assert "sam_loss" not in logs


def _split_quadratic_step(model, _batch):
    """Forget term f(w) = 1/2 (1 w0^2 + 2 w1^2); keep term r(w) = 1/2 |w - (1, 1)|^2."""
    forget = 0.5 * (model.a * model.w ** 2).sum()
    keep = 0.5 * ((model.w - 1.0) ** 2).sum()
    return with_forget_term(forget + keep, forget), {"keep": float(keep.detach())}


@pytest.mark.parametrize("rho", [0.0, 0.5])
def test_a_forget_term_sharpness_aware_step_shifts_along_the_forget_gradient_alone(rho):
    """Fan et al. 2025: g = grad f(w + rho grad f / |grad f|) + grad r(w). From w = (3, 4):
    grad f = (3, 8), |grad f| = sqrt(73); grad r = w - 1 = (2, 3), taken at w itself."""
    model = _Quadratic()
    params = [model.w]
    cfg = OptimConfig(sam_rho=rho, sam_scope="forget", max_grad_norm=0.0)
    recorder = _Recorder(params)
    logs = loop._optimizer_step(model, [[0]], 0, _split_quadratic_step, cfg,
                                loop.make_accelerator(cfg), recorder, params)
    a, w = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])
    shifted = w + rho * torch.tensor([3.0, 8.0]) / 73 ** 0.5
    torch.testing.assert_close(recorder.seen[0], a * shifted + torch.tensor([2.0, 3.0]))
    torch.testing.assert_close(model.w.detach(), w)  # moved back
    assert logs["loss"] == pytest.approx(0.5 * (9 + 2 * 16) + 0.5 * (4 + 9))  # at w itself
    if rho:
        assert logs["forget_term"] == pytest.approx(0.5 * (9 + 2 * 16))
        assert logs["sam_loss"] == pytest.approx(0.5 * float((a * shifted ** 2).sum()))
    else:  # sam_rho 0: a plain step, whatever the scope
        assert "forget_term" not in logs and "sam_loss" not in logs
    # the whole loss's shift (sam_scope all) climbs the keep term too: another gradient
    whole = OptimConfig(sam_rho=rho, max_grad_norm=0.0)
    loop._optimizer_step(model, [[0]], 0, _split_quadratic_step, whole,
                         loop.make_accelerator(whole), recorder, params)
    g = torch.tensor([3.0 + 2.0, 8.0 + 3.0])
    at = w + rho * g / float(g.norm())
    torch.testing.assert_close(recorder.seen[0], a * at + (at - 1.0))


def test_a_forget_term_shift_needs_a_step_that_names_its_forget_term():
    model = _Quadratic()
    cfg = OptimConfig(sam_rho=0.1, sam_scope="forget")
    with pytest.raises(UnlearnError, match="does not name its forget term"):
        loop._optimizer_step(model, [[0]], 0, _quadratic_step, cfg, loop.make_accelerator(cfg),
                             _Recorder([model.w]), [model.w])
    with pytest.raises(UnlearnError, match="sam_scope must be 'all'"):
        OptimConfig(sam_scope="keep")

    def own(model, batch):
        return _quadratic_step(model, batch)

    own.own_gradients = True  # NGDiff takes its gradients itself
    with pytest.raises(UnlearnError, match="takes its gradients itself"):
        loop._check_sam(cfg, _fake_accelerator("NO", processes=1), own)
    loop._check_sam(OptimConfig(sam_rho=0.1), _fake_accelerator("NO", processes=1), own)
    loop._check_sam(OptimConfig(sam_scope="forget"), _fake_accelerator("NO"), own)  # no shift
    loop._check_sam(cfg, _fake_accelerator("MULTI_GPU"), _split_quadratic_step)  # DDP is fine


def test_sharpness_aware_training_learns_and_is_refused_where_gradients_are_sharded(tok):
    model = tiny_model(len(tok))
    plan = epoch_plan(items(tok), 4, epochs=10, seed=0)
    hist = train(model, plan, sft_step(tok.pad_token_id), OptimConfig(lr=3e-3, sam_rho=0.05))
    assert hist[-1]["loss"] < 0.7 * hist[0]["loss"]
    assert all(h["sam_loss"] >= h["loss"] - 1e-3 for h in hist[:3])  # uphill, to first order
    for kind, stage, name in (("FSDP", 0, "FSDP"), ("DEEPSPEED", 2, "DeepSpeed")):
        with pytest.raises(UnlearnError, match=f"optim.sam_rho needs .* {name} shards"):
            loop._check_sam(OptimConfig(sam_rho=0.05),
                            _fake_accelerator(kind, stage, fsdp_version=2))
    loop._check_sam(OptimConfig(sam_rho=0.05), _fake_accelerator("MULTI_GPU"))  # DDP is fine


def test_sft_step_distills_marked_rows_and_trains_the_rest_by_nll(tok):
    torch.manual_seed(0)
    model, ref = tiny_model(len(tok)), tiny_model(len(tok), seed=1)
    data = items(tok, 4)
    tops = teacher_topk(ref, data[2:], None, k=5, guidance=1.0, pad_id=0)
    batch = data[:2] + [Distilled(it, top) for it, top in zip(data[2:], tops, strict=True)]
    loss, logs = sft_step(0, kd_weight=0.5)(model, batch)
    with torch.no_grad():
        plain = forward_responses(model, data[:2], 0)
        nll = nll_loss(plain.logits, plain.labels)
        win = forward_responses(model, data[2:], 0)
        kl = topk_kl(win.logits, *place_topk(data[2:], tops, win))
    torch.testing.assert_close(loss.detach(), nll + 0.5 * kl, atol=1e-5, rtol=1e-5)
    assert logs["nll"] == pytest.approx(float(nll), rel=1e-5)
    assert logs["kd"] == pytest.approx(float(kl), rel=1e-5)
    assert float(kl) > 0  # a different model: the reference is not matched yet
    # distilling toward the model's own top-K of the whole vocabulary costs nothing
    own = teacher_topk(model, data[2:], None, k=len(tok), guidance=1.0, pad_id=0)
    only = [Distilled(it, top) for it, top in zip(data[2:], own, strict=True)]
    assert float(sft_step(0)(model, only)[0].detach()) == pytest.approx(0.0, abs=1e-5)


def test_greedy_reproduces_by_hand():
    """Vocabulary of 3; labels shifted by one against the logits' positions; -100 ignored.
    Row 0: argmax 2 at t=0 (label 2 at t=1), argmax 0 at t=1 (label 0 at t=2): reproduced.
    Row 1: the same logits, label 1 at t=2: the argmax 0 misses it. Row 2: the miss is at
    an ignored label: reproduced."""
    from unlearnkit.training.sft import greedy_reproduces

    step = torch.tensor([[0.0, 0.1, 0.9], [0.8, 0.1, 0.1], [0.3, 0.3, 0.4]])
    logits = step.expand(3, 3, 3)
    labels = torch.tensor([[-100, 2, 0], [-100, 2, 1], [-100, 2, -100]])
    assert greedy_reproduces(logits, labels).tolist() == [True, False, True]


def test_finetune_stops_once_greedy_decoding_reproduces_every_answer(tok):
    """Memorising four short answers takes part of the cap's 40 epochs: training stops at
    the first epoch-end check where every answer is reproduced, and greedy generation from
    each prompt then gives exactly the answer."""
    from unlearnkit.data.records import Record
    from unlearnkit.models.engine import generate
    from unlearnkit.training.sft import finetune, learned

    torch.manual_seed(0)
    model = tiny_model(len(tok)).train()
    pairs = [("Sky?", "Blue."), ("Grass?", "Green."), ("Snow?", "White."), ("Coal?", "Black.")]
    records = [Record(id=f"q{i}", split="retain", question=q, answer=a)
               for i, (q, a) in enumerate(pairs)]
    checks: list[dict] = []
    history = finetune(model, tok, records, OptimConfig(lr=3e-3, warmup_ratio=0,
                                                        schedule="constant"),
                       epochs=40, batch_size=2, stop_after_epochs=2, checks=checks)
    assert 4 <= len(history) < 80 and len(history) % 2 == 0  # stopped at an epoch's end
    assert checks[0]["step"] == 4 and checks[-1] == {"step": len(history), "learned": 4, "of": 4}
    assert all(c["learned"] < 4 for c in checks[:-1])
    prompts = [render(tok, r.question) for r in records]
    assert generate(model, tok, prompts, max_new_tokens=8) == [r.answer for r in records]
    assert learned(model, [render(tok, r.question, r.answer) for r in records],
                   tok.pad_token_id) == [True] * 4


def test_a_step_that_takes_its_own_gradients_is_refused_under_fsdp(tok):
    from unlearnkit.objectives.baselines import get_baseline

    ngdiff = get_baseline("ngdiff")
    step = ngdiff.make_step(ngdiff.make_config(), 0)
    assert step.own_gradients
    with pytest.raises(UnlearnError, match="takes its gradients itself"):
        train(tiny_model(len(tok)), [[1, 2]], step, OptimConfig(),
              accelerator=_fake_accelerator("FSDP", fsdp_version=2))


def test_decoder_layers_are_found_through_a_process_wrapper(tok):
    from unlearnkit.models.lora import decoder_layers

    class Wrapper(torch.nn.Module):  # DDP keeps the model as .module, without its config
        def __init__(self, module):
            super().__init__()
            self.module = module

    model = tiny_model(len(tok))
    assert decoder_layers(Wrapper(model)) is decoder_layers(model)


def test_early_stopping_that_generates_is_refused_under_fsdp(tok):
    from unlearnkit.data.records import Record
    from unlearnkit.pipeline.stopping import chain, forget_check
    from unlearnkit.training.unlearn import StopConfig

    forget = [Record(id="f", split="forget", question="Q?", answer="A")]
    check = forget_check(None, tok, forget, StopConfig(every=2), max_new_tokens=4,
                         rouge_threshold=0.5)
    hook = chain(check, lambda step, logs: None)
    assert hook.generates and not chain(lambda step, logs: None).generates
    with pytest.raises(UnlearnError, match=r"unlearn\.stop\.every=0"):
        train(tiny_model(len(tok)), [[1, 2]], lambda m, b: (None, {}), OptimConfig(),
              accelerator=_fake_accelerator("FSDP", fsdp_version=2), on_step=hook)


# `unlearn run` around the loop: what it refuses before its folder gets a file, and what it
# says about checkpoints it does not continue from


def _tiny_run(out, method="grad_ascent", **settings):
    from unlearnkit.pipeline.run import RunConfig
    from unlearnkit.training.unlearn import MixConfig

    settings = {"max_new_tokens": 4, "eval_batch_size": 64, "eval_references": False,
                "report": False, "teacher_report": False, **settings}
    cfg = RunConfig(method=method, output=str(out), **settings)
    cfg.unlearn.mix = MixConfig(forget=1, retain=1, neighbor=1, steps=2)
    cfg.unlearn.teacher.top_k = cfg.unlearn.method.top_m = 4
    return cfg


def _no_subjects(prepared):
    from dataclasses import replace

    return replace(prepared, records=[replace(r, subject=None) for r in prepared.records])


def _gone_model(prepared):
    from dataclasses import replace

    return replace(prepared, models={**prepared.models, "injected": "/nonexistent/unlearnkit"})


@pytest.mark.parametrize("method", ["pushpull", "grad_ascent"])
@pytest.mark.parametrize(("change", "message"), [
    ({"train_only.layers": [99]}, r"train_only\.layers \[99\] do not exist"),
    ({"lora.rank": 2, "lora.target_modules": ["nope"]}, r"lora\.target_modules \['nope'\]"),
    ({"optim.grad_accum": 3}, r"unlearn\.mix\.steps \(2 micro-batches\) is fewer than "
                              r"optim\.grad_accum \(3"),
    ({"unlearn.mix.general": 1}, r"unlearn\.mix\.general draws general keep items"),
    (_gone_model, r"/nonexistent/unlearnkit"),
])
def test_a_run_refused_for_its_settings_leaves_no_output_folder(
        tiny_scenario, tmp_path, monkeypatch, method, change, message, one_thread):
    import unlearnkit.pipeline.run as run_mod
    from unlearnkit.config import apply_overrides, from_dict
    from unlearnkit.pipeline.run import RunConfig

    out = tmp_path / "run"
    data = {"method": method, "output": str(out), "teacher_report": True}
    if callable(change):
        monkeypatch.setattr(run_mod, "prepare_scenario", lambda setup, v: change(tiny_scenario))
    else:
        data = apply_overrides(data, [f"{k}={v}" for k, v in change.items()])
    cfg = from_dict(RunConfig, data)
    cfg.unlearn.teacher.top_k = cfg.unlearn.method.top_m = 4
    cfg.unlearn.mix.steps = 2
    with pytest.raises(UnlearnError, match=message):
        run_mod.run(cfg)
    assert not out.exists()  # no checkpoints.json, teacher_report.json or tensorboard


@pytest.mark.parametrize("method", ["pushpull", "duet", "prompt_only"])
def test_a_forget_scope_the_data_cannot_give_is_refused_before_any_file(
        tiny_scenario, tmp_path, monkeypatch, method):
    import unlearnkit.pipeline.run as run_mod

    monkeypatch.setattr(run_mod, "prepare_scenario",
                        lambda setup, v: _no_subjects(tiny_scenario))
    cfg = _tiny_run(tmp_path / "run", method, teacher_report=True)
    with pytest.raises(UnlearnError, match=r"the forget records have no 'subject'; set "
                                           r"teacher\.forget_scope"):
        run_mod.run(cfg)
    assert not (tmp_path / "run").exists()


def test_a_run_says_when_it_drops_checkpoints_or_has_none_to_resume(
        tiny_scenario, tmp_path, capsys, one_thread):
    from unlearnkit.pipeline.run import run

    out = tmp_path / "run"
    cfg = _tiny_run(out, optim=OptimConfig(lr=1e-3, checkpoint_every=1))
    run(cfg)
    assert latest_checkpoint(out / "checkpoints").name == "step-0000001"
    assert "checkpoint" not in capsys.readouterr().out  # a new folder: nothing to say
    run(cfg)  # again, without --resume: the earlier run's checkpoint goes, and it says so
    assert (f"removing 1 checkpoint of an earlier run in {out / 'checkpoints'}; pass "
            "--resume to continue it") in capsys.readouterr().out.splitlines()
    # --resume where no checkpoint was saved (checkpoint_every 0) trains from step 0, saying so
    run(_tiny_run(tmp_path / "other", resume=True))
    history = json.loads((tmp_path / "other" / "train_log.json").read_text())
    assert [h["step"] for h in history] == [1, 2]
    printed = capsys.readouterr().out
    assert (f"no checkpoint to resume from in {tmp_path / 'other' / 'checkpoints'}: training "
            "from step 0 (optim.checkpoint_every is 0") in printed
