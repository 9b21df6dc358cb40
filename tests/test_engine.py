import pytest
import torch

from unlearnkit.data.render import collate, render
from unlearnkit.models import engine
from unlearnkit.models.engine import forward_responses, shared_prefix_length
from unlearnkit.models.tiny import tiny_model


def test_shared_prefix_length_stops_at_the_first_difference_padding_and_limit():
    ids = torch.tensor([[5, 6, 7, 8, 0], [5, 6, 7, 9, 9], [5, 6, 7, 8, 1]])
    full = torch.ones_like(ids)
    assert shared_prefix_length(ids, full, limit=10) == 3
    assert shared_prefix_length(ids, full, limit=2) == 2
    mask = full.clone()
    mask[1, 2:] = 0  # row 1 is padding from column 2 on
    assert shared_prefix_length(ids, mask, limit=10) == 2
    same = torch.tensor([[1, 2], [1, 2]])
    assert shared_prefix_length(same, torch.ones_like(same), limit=10) == 2


@pytest.fixture
def rows(tok):
    # different question and answer lengths: right padding, several response starts
    return [render(tok, f"Where does person {i} live{' now' * i}?", f"In town {i}{' x' * i}.")
            for i in range(5)]


def test_shared_prefix_forward_matches_the_plain_forward_in_logits_and_gradients(tok, rows,
                                                                              monkeypatch):
    model = tiny_model(len(tok), layers=3)
    model.train()
    batch = collate(rows, tok.pad_token_id)
    width = batch["input_ids"].shape[1]
    keep = width - int(batch["response_start"].min()) + 1
    assert shared_prefix_length(batch["input_ids"], batch["attention_mask"],
                                width - keep) >= engine.MIN_SHARED_PREFIX  # the system turn
    params = list(model.parameters())

    def run():
        win = forward_responses(model, rows, tok.pad_token_id)
        loss = (win.logits.square() * (win.labels != -100).unsqueeze(-1)).sum()
        return win, torch.autograd.grad(loss, params)

    shared, grads = run()
    monkeypatch.setattr(engine, "MIN_SHARED_PREFIX", 10**9)  # forces the plain forward
    plain, plain_grads = run()
    assert shared.offset == plain.offset and torch.equal(shared.labels, plain.labels)
    torch.testing.assert_close(shared.logits, plain.logits, atol=1e-5, rtol=1e-5)
    for got, want in zip(grads, plain_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_a_single_row_or_no_shared_prefix_takes_the_plain_forward(tok, rows, monkeypatch):
    calls = []
    original = engine._shared_prefix_logits
    monkeypatch.setattr(engine, "_shared_prefix_logits",
                        lambda *a: calls.append(1) or original(*a))
    model = tiny_model(len(tok))
    forward_responses(model, rows[:1], tok.pad_token_id)
    assert calls == []
    forward_responses(model, rows, tok.pad_token_id)
    assert calls == [1]


def test_gradient_checkpointing_takes_the_plain_forward(tok, rows, monkeypatch):
    calls = []
    monkeypatch.setattr(engine, "_shared_prefix_logits", lambda *a: calls.append(1))
    model = tiny_model(len(tok))
    enable = getattr(model, "activation_checkpointing_enable", None)
    (enable or model.gradient_checkpointing_enable)()
    model.train()
    win = forward_responses(model, rows, tok.pad_token_id)
    assert calls == [] and win.logits.shape[0] == len(rows)


@pytest.fixture
def prompts(tok):
    # different lengths, all starting with the chat template's system turn
    return [render(tok, f"Where does person {i} live{' now' * (3 * i % 5)}?") for i in range(6)]


def _ids(prompts):
    return [list(p.input_ids) for p in prompts]


def _sharp(tok):
    """A tiny model whose weights are scaled up: at init every row would repeat one token;
    scaled, each row gets its own varied continuation (a misplaced position or a wrong cache
    row would change it)."""
    model = tiny_model(len(tok), layers=3).eval()
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.mul_(20)
    return model


def test_greedy_batch_matches_transformers_generate(tok, prompts):
    """Shared prefix once, left padding after it, position ids over real tokens: the same
    tokens as transformers' generate on the plainly left-padded batch."""
    model = _sharp(tok)
    rows = _ids(prompts)
    assert engine._common_prefix(rows, 10**9) >= engine.MIN_SHARED_PREFIX
    kw = {"eot_id": len(tok) + 5, "pad_id": tok.pad_token_id, "max_new_tokens": 7}
    with torch.no_grad():
        want = engine.hf_generate(model, rows, **kw)
        got = engine.greedy_batch(model, rows, **kw)
        single = [engine.greedy_batch(model, [r], **kw)[0] for r in rows]
    assert all(len(w) == 7 for w in want)  # the cap holds (that eot id is out of the vocabulary)
    assert len({tuple(w) for w in want}) == len(rows)  # rows differ: the check can fail
    assert got == want and single == want


def test_finished_rows_leave_the_batch_and_the_rest_are_unchanged(tok, prompts, monkeypatch):
    """Make the third token of row 2 the end-of-turn token: row 2 stops there, the other
    rows go on (dropped from the cache) and still equal transformers' generate."""
    model = _sharp(tok)
    rows = _ids(prompts)
    with torch.no_grad():
        free = engine.hf_generate(model, rows, eot_id=len(tok) + 5, pad_id=tok.pad_token_id,
                                  max_new_tokens=6)
        eot = free[2][2]
        kw = {"eot_id": eot, "pad_id": tok.pad_token_id, "max_new_tokens": 6}
        want = engine.hf_generate(model, rows, **kw)
        widths = []
        original = model.forward
        monkeypatch.setattr(model, "forward",
                            lambda *a, **k: widths.append(k["input_ids"].shape[0])
                            or original(*a, **k))
        got = engine.greedy_batch(model, rows, **kw)
    assert got == want
    assert eot not in free[2][:2]  # so row 2 stops after two tokens
    assert want[2] == free[2][:2] and all(eot not in w for w in want)
    assert max(len(w) for w in want) == 6
    assert widths[0] == 1 and widths[1] == len(rows)  # the prefix once, then every row
    assert min(widths[2:]) < len(rows)  # a finished row left the batch


def test_generate_falls_back_to_transformers_when_it_cannot_drive_the_model(tok, prompts,
                                                                           monkeypatch):
    model = tiny_model(len(tok)).eval()
    out = engine.generate(model, tok, prompts, max_new_tokens=4)
    called = []
    original = engine.hf_generate
    monkeypatch.setattr(engine, "hf_generate",
                        lambda *a, **k: called.append(1) or original(*a, **k))
    assert engine.generate(model, tok, prompts, max_new_tokens=4,
                           backend="transformers") == out and called  # asked for
    called.clear()
    monkeypatch.setattr(engine, "_can_drive", lambda m: False)
    assert engine.generate(model, tok, prompts, max_new_tokens=4) == out and called


def test_first_token_logprobs_read_each_option_off_one_prompt(tok):
    """Groups of items sharing a prompt (a question's letters; prompts of different lengths,
    one group behind a prefill, an empty group): each item's first response token scored as
    token_logprobs scores it, item by item."""
    model = _sharp(tok)
    groups = [[render(tok, f"Pick one{' please' * i}.", letter) for letter in "ABCD"[:2 + i]]
              for i in range(3)]
    groups.insert(1, [])
    groups.append([render(tok, "Pick again.", f"Sure: {x}", prefill=2) for x in ("A", "B")])
    got = engine.first_token_logprobs(model, tok, groups, batch_size=2)
    assert [len(g) for g in got] == [len(g) for g in groups]
    for group, scores in zip(groups, got, strict=True):
        want = [float(lp[0]) for lp in engine.token_logprobs(model, tok, group)] if group else []
        assert scores == pytest.approx(want, abs=1e-4)
    with pytest.raises(ValueError, match="share one prompt"):
        engine.first_token_logprobs(model, tok, [[render(tok, "Q1?", "A"),
                                                  render(tok, "Q2?", "A")]])


def test_grouped_token_logprobs_equal_the_flat_scores(tok):
    """Each group (one prompt, answers of several lengths; an empty group) batched on its own
    gives the log-probabilities token_logprobs gives the same items in one flat list."""
    model = _sharp(tok)
    groups = [[render(tok, f"Tell me{' more' * i}.", f"Answer{' x' * k}.") for k in range(3)]
              for i in range(3)]
    groups.insert(2, [])
    got = engine.grouped_token_logprobs(model, tok, groups, batch_size=2)
    flat = iter(engine.token_logprobs(model, tok, [it for g in groups for it in g]))
    for group, scores in zip(groups, got, strict=True):
        assert len(scores) == len(group)
        for lp in scores:
            torch.testing.assert_close(lp, next(flat), atol=1e-4, rtol=1e-4)


def test_token_logprobs_equal_each_item_scored_alone(tok, rows):
    """Batched through the shared-prefix response window (right padding, several response
    starts, one item with a prefill): the same log-probabilities as one plain forward per
    item, at exactly the labelled positions."""
    model = _sharp(tok)
    items = [*rows, render(tok, "Where does person 9 live?", "In town 9 x x.", prefill=2)]
    got = engine.token_logprobs(model, tok, items, batch_size=4)
    for item, lp in zip(items, got, strict=True):
        ids = torch.tensor([item.input_ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
        labels = torch.tensor(item.labels[1:])
        want = logp[labels != -100].gather(-1, labels[labels != -100, None]).squeeze(-1)
        assert len(lp) == len(item.input_ids) - item.response_start > 0
        torch.testing.assert_close(lp, want, atol=1e-4, rtol=1e-4)
