"""IdkDPO: DPO with an "I don't know" answer preferred over the true forget answer.

Rafailov et al., "Direct Preference Optimization: Your Language Model is Secretly a Reward
Model", arXiv 2305.18290, Eq. 7 (the DPO objective); used for unlearning by TOFU (Maini et al.,
arXiv 2401.06121, Preference Optimization) with y_w = a refusal, y_l = the true answer:

    L_DPO = -E log sigmoid( beta [ log pi(y_w|x)/pi_ref(y_w|x) - log pi(y_l|x)/pi_ref(y_l|x) ] )

``log pi(y|x)`` is summed over answer tokens; the reference log-probs of both answers are
precomputed once by ``prepare``. When both log-ratios are equal the loss is log 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from unlearnkit.objectives.baselines.common import (
    FORGET,
    RetainConfig,
    add_retain,
    as_batch,
    attach,
    check,
    forward,
    idk_rendering,
    masked_mean,
    need,
    sequence_logprob,
    with_ref,
)
from unlearnkit.objectives.baselines.reference import attach_retain_reference, sequence_logprobs
from unlearnkit.objectives.baselines.registry import register_baseline


def dpo_loss(logp_w: torch.Tensor, logp_l: torch.Tensor, ref_w: torch.Tensor,
             ref_l: torch.Tensor, *, beta: float, valid: torch.Tensor | None = None
             ) -> torch.Tensor:
    """``mean_b -log sigmoid(beta ((logp_w - ref_w) - (logp_l - ref_l)))`` over valid rows.

    All inputs (B,): sequence log-probs of the preferred (w) and dispreferred (l) answers under
    the model and the reference; valid: (B,) bool (all rows when None). fp32; 0 when none valid.
    """
    margin = (logp_w.float() - ref_w.float()) - (logp_l.float() - ref_l.float())
    per_row = -F.logsigmoid(beta * margin)
    return masked_mean(per_row, valid)


@dataclass
class IdkDPOConfig:
    """IdkDPO: DPO inverse temperature beta and the retain term."""

    beta: float = 0.1
    retain: RetainConfig = field(default_factory=RetainConfig)

    def __post_init__(self) -> None:
        check(self.beta > 0, f"idk_dpo.beta must be positive, got {self.beta}")


def prepare(cfg: IdkDPOConfig, model, tokenizer, items, *, model_id=None):
    """Forget items keep the true answer as ``rendered``; ``ref["idk"]`` is the refusal."""
    pad = tokenizer.pad_token_id
    items = [with_ref(it, idk=idk_rendering(tokenizer, it)) if it.kind == FORGET else it
             for it in items]
    forget = [it for it in items if it.kind == FORGET]
    both = [it.rendered for it in forget] + [it.ref["idk"] for it in forget]
    table = sequence_logprobs(model, both, pad, model_id=model_id)
    items = attach(items, FORGET, "ref_logp", table)
    items = attach(items, FORGET, "ref_logp_idk", table, source=lambda it: it.ref["idk"])
    return attach_retain_reference(model, items, pad, cfg.retain, model_id=model_id)


@register_baseline("idk_dpo", config=IdkDPOConfig, prepare=prepare, needs_question=True,
                   paper="Rafailov et al. 2023 (DPO); TOFU", arxiv="2305.18290",
                   equation="L = -log sigmoid(beta (log ratio(idk) - log ratio(true)))")
def make_step(cfg: IdkDPOConfig, pad_id: int):
    def step(model, micro):
        batch = as_batch(micro)
        forget = batch[FORGET]
        win = forward(model, [it.rendered for it in forget] + [it.ref["idk"] for it in forget],
                      pad_id)
        logp, count = sequence_logprob(win.logits, win.labels)
        logp_l, logp_w = logp.chunk(2)
        ref_l = torch.stack([need(it, "ref_logp", "idk_dpo") for it in forget]).to(logp)
        ref_w = torch.stack([need(it, "ref_logp_idk", "idk_dpo") for it in forget]).to(logp)
        valid = (count[: len(forget)] > 0) & (count[len(forget):] > 0)
        loss = dpo_loss(logp_w, logp_l, ref_w, ref_l, beta=cfg.beta, valid=valid)
        logs = {"dpo": float(loss.detach())}
        return add_retain(loss, logs, model, batch, pad_id, cfg.retain), logs

    return step
