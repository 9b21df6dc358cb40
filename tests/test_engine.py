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
