"""Negative Preference Optimization (Zhang, Lin, Bai, Mei 2024, arXiv 2404.05868).

"Negative Preference Optimization: From Catastrophic Collapse to Effective Unlearning",
the NPO loss (DPO with the forget answer as the only, dispreferred, response):

    L_NPO = -(2 / beta) * E_{(x, y) in F} log sigmoid( -beta * log( pi_theta(y|x) / pi_ref(y|x) ) )

with ``log pi(y|x)`` summed over the answer tokens and pi_ref the model before unlearning
(precomputed once by ``prepare``; no reference model while training). As beta -> 0,
``L_NPO - (2/beta) log 2 -> E[log pi_theta(y|x) - log pi_ref(y|x)]``: gradient ascent on the
sequence NLL. The paper's NPO+RT adds the retain NLL (``retain``).
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
    masked_mean,
    need,
    sequence_logprob,
)
from unlearnkit.objectives.baselines.reference import attach_retain_reference, sequence_logprobs
from unlearnkit.objectives.baselines.registry import register_baseline


def npo_loss(logp: torch.Tensor, ref_logp: torch.Tensor, *, beta: float,
             valid: torch.Tensor | None = None) -> torch.Tensor:
    """``mean_b -(2/beta) log sigmoid(-beta (logp_b - ref_logp_b))`` over valid rows.

    logp: (B,) sequence log-probs under the model (sum over answer tokens); ref_logp: (B,) the
    same under the reference; valid: (B,) bool, rows with at least one answer token (all rows
    when None). fp32; 0 (with a graph) when no row is valid.
    """
    ratio = logp.float() - ref_logp.float()
    per_row = -(2.0 / beta) * F.logsigmoid(-beta * ratio)
    return masked_mean(per_row, valid)


@dataclass
class NPOConfig:
    """NPO: inverse temperature beta and the retain term (NPO+RT; retain.loss none = plain NPO)."""

    beta: float = 0.1
    retain: RetainConfig = field(default_factory=RetainConfig)

    def __post_init__(self) -> None:
        check(self.beta > 0, f"npo.beta must be positive, got {self.beta}")


def prepare(cfg: NPOConfig, model, tokenizer, items, *, model_id=None):
    pad = tokenizer.pad_token_id
    forget = [it.rendered for it in items if it.kind == FORGET]
    items = attach(items, FORGET, "ref_logp",
                   sequence_logprobs(model, forget, pad, model_id=model_id))
    return attach_retain_reference(model, items, pad, cfg.retain, model_id=model_id)


@register_baseline("npo", config=NPOConfig, prepare=prepare, paper="Zhang et al. 2024 (NPO)",
                   arxiv="2404.05868",
                   equation="L = -(2/beta) E log sigmoid(-beta log(pi/pi_ref)) [+ lambda L_R]")
def make_step(cfg: NPOConfig, pad_id: int):
    def step(model, micro):
        batch = as_batch(micro)
        forget = batch[FORGET]
        win = forward(model, [it.rendered for it in forget], pad_id)
        logp, count = sequence_logprob(win.logits, win.labels)
        ref = torch.stack([need(it, "ref_logp", "npo") for it in forget]).to(logp)
        loss = npo_loss(logp, ref, beta=cfg.beta, valid=count > 0)
        logs = {"npo": float(loss.detach()), "log_ratio": float((logp - ref).mean().detach())}
        return add_retain(loss, logs, model, batch, pad_id, cfg.retain), logs

    return step
