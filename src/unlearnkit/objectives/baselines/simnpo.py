"""SimNPO: reference-free, length-normalised NPO (Fan et al. 2024, arXiv 2410.07163).

"Simplicity Prevails: Rethinking Negative Preference Optimization for LLM Unlearning",
the SimNPO loss (NPO's reference model replaced by SimPO's length-normalised reward
with a margin gamma):

    L_SimNPO = -(2 / beta) * E_{(x, y) in F} log sigmoid( -(beta / |y|) log pi_theta(y|x) - gamma )

``log pi(y|x)`` is summed over the |y| answer tokens (end-of-turn included). No reference
quantities are needed; the retain term (``retain``, NLL by default) is the paper's regulariser.
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
    check,
    forward,
    masked_mean,
    sequence_logprob,
)
from unlearnkit.objectives.baselines.reference import attach_retain_reference
from unlearnkit.objectives.baselines.registry import register_baseline


def simnpo_loss(logp: torch.Tensor, lengths: torch.Tensor, *, beta: float,
                gamma: float = 0.0) -> torch.Tensor:
    """``mean_b -(2/beta) log sigmoid(-(beta/|y_b|) logp_b - gamma)`` over rows with |y_b| > 0.

    logp: (B,) sequence log-probs (sum over answer tokens); lengths: (B,) answer-token counts.
    fp32; 0 (with a graph) when no row has an answer token.
    """
    valid = lengths > 0
    mean_logp = logp.float() / lengths.clamp(min=1).float()
    per_row = -(2.0 / beta) * F.logsigmoid(-beta * mean_logp - gamma)
    return masked_mean(per_row, valid)


@dataclass
class SimNPOConfig:
    """SimNPO: inverse temperature beta, reward margin gamma (>= 0) and the retain term."""

    beta: float = 2.5
    gamma: float = 0.0
    retain: RetainConfig = field(default_factory=RetainConfig)

    def __post_init__(self) -> None:
        check(self.beta > 0, f"simnpo.beta must be positive, got {self.beta}")
        check(self.gamma >= 0, f"simnpo.gamma must be >= 0, got {self.gamma}")


def prepare(cfg: SimNPOConfig, model, tokenizer, items, *, model_id=None):
    return attach_retain_reference(model, items, tokenizer.pad_token_id, cfg.retain,
                                   model_id=model_id)


@register_baseline("simnpo", config=SimNPOConfig, prepare=prepare,
                   paper="Fan et al. 2024 (SimNPO)", arxiv="2410.07163",
                   equation="L = -(2/beta) E log sigmoid(-(beta/|y|) log pi(y|x) - gamma)")
def make_step(cfg: SimNPOConfig, pad_id: int):
    def step(model, micro):
        batch = as_batch(micro)
        win = forward(model, [it.rendered for it in batch[FORGET]], pad_id)
        logp, count = sequence_logprob(win.logits, win.labels)
        loss = simnpo_loss(logp, count, beta=cfg.beta, gamma=cfg.gamma)
        logs = {"simnpo": float(loss.detach())}
        return add_retain(loss, logs, model, batch, pad_id, cfg.retain), logs

    return step
