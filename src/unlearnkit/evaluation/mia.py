"""Membership inference: per-token statistics from one forward pass, per-item scores, ROC AUC.

Every per-item score here is oriented like a loss: **higher means the item looks less like a
training member**. :func:`mia_auc` then reports the probability that a holdout item scores
higher than a forget item, so 1.0 means the forget set is still plainly recognisable as
training data, 0.5 means indistinguishable from unseen data (the goal of unlearning).
This is OpenUnlearning's convention ("auc is 1 when the forget data is much more likely than
the holdout data").

Scores:

- LOSS (Yeom et al., 2018): mean negative log-likelihood of the answer tokens.
- zlib (Carlini et al., 2021, "Extracting Training Data from Large Language Models"): the
  LOSS divided by the zlib-compressed length (bytes) of the answer text.
- Min-K% (Shi et al., 2024, "Detecting Pretraining Data from Large Language Models"): minus
  the mean of the lowest k% token log-probabilities (k = 20% by default).
- Min-K%++ (Zhang et al., 2024, "Min-K%++", arXiv 2404.02936): the same on standardised
  token scores (log p(x_t) - mu_t) / sigma_t, where mu_t = sum_z p(z) log p(z) and
  sigma_t^2 = sum_z p(z) (log p(z))^2 - mu_t^2 are the mean and variance of log p(z) for z
  drawn from the model's own next-token distribution at t.

An item with no scored tokens gets NaN; NaNs are dropped before the AUC.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import rankdata

from unlearnkit.data.render import IGNORE_INDEX, Rendered, collate
from unlearnkit.errors import UnlearnError

SIGMA_EPS = 1e-6  # floor for sigma_t in Min-K%++ (a one-hot next-token distribution has 0)


@dataclass(frozen=True)
class TokenStats:
    """Per labelled (answer) token of one item; every field is 1-D with one entry per token.

    ``logprobs``: log p(x_t | x_<t), teacher-forced. ``argmax_match``: whether the model's
    argmax at t equals x_t. ``mu``, ``sigma``: mean and standard deviation of log p(z) under
    z ~ p(. | x_<t) (full vocabulary).
    """

    logprobs: torch.Tensor
    argmax_match: torch.Tensor
    mu: torch.Tensor
    sigma: torch.Tensor

    @property
    def standardized(self) -> torch.Tensor:
        """Min-K%++ token scores (log p(x_t) - mu_t) / sigma_t (sigma floored at SIGMA_EPS)."""
        return (self.logprobs - self.mu) / self.sigma.clamp_min(SIGMA_EPS)


def vocab_stats(logits: torch.Tensor, targets: torch.Tensor) -> TokenStats:
    """Statistics of ``logits`` (N, V) at N positions whose observed tokens are ``targets`` (N,).

    Computed in fp32; p log p is taken as 0 where p underflows to 0.
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    p = logp.exp()
    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    p_logp = torch.where(p > 0, p * logp, zero)
    mu = p_logp.sum(-1)
    second = torch.where(p > 0, p_logp * logp, zero).sum(-1)
    sigma = (second - mu.square()).clamp_min(0).sqrt()
    picked = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return TokenStats(picked, logits.argmax(-1) == targets, mu, sigma)


@torch.no_grad()
def token_stats(model, tokenizer, items: Sequence[Rendered], *, batch_size: int = 8
                ) -> list[TokenStats]:
    """Per-token :class:`TokenStats` of the labelled positions of each rendered item.

    One forward pass per batch (right padding, items sorted by length); only positions whose
    label is not IGNORE_INDEX are kept, so prompt and padding never enter a statistic.
    """
    if not items:
        raise UnlearnError("token_stats got no items; give at least one rendered example")
    order = sorted(range(len(items)), key=lambda i: len(items[i].input_ids))
    out: list[TokenStats | None] = [None] * len(items)
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = collate([items[i] for i in idx], tokenizer.pad_token_id)
        logits = model(input_ids=batch["input_ids"].to(device),
                       attention_mask=batch["attention_mask"].to(device)).logits[:, :-1]
        labels = batch["labels"][:, 1:].to(device)
        mask = labels != IGNORE_INDEX
        stats = vocab_stats(logits[mask], labels[mask])
        counts = mask.sum(-1).tolist()
        parts = [torch.split(t.cpu(), counts) for t in
                 (stats.logprobs, stats.argmax_match, stats.mu, stats.sigma)]
        for row, i in enumerate(idx):
            out[i] = TokenStats(*(part[row] for part in parts))
    return out  # type: ignore[return-value]


# ------------------------------------------------------------------------- per-item scores


def loss_score(logprobs: torch.Tensor) -> float:
    """LOSS: mean negative log-likelihood per token (NaN without tokens)."""
    return -float(logprobs.double().mean()) if logprobs.numel() else math.nan


def zlib_score(logprobs: torch.Tensor, text: str) -> float:
    """zlib: LOSS / len(zlib.compress(text as UTF-8)) in bytes."""
    return loss_score(logprobs) / len(zlib.compress(text.encode("utf-8")))


def min_k_score(values: torch.Tensor, *, k: float = 0.2) -> float:
    """Minus the mean of the lowest ``max(1, floor(k * n))`` of n token values (NaN if n = 0).

    With log-probabilities this is Min-K%; with :attr:`TokenStats.standardized` it is Min-K%++.
    """
    if not 0 < k <= 1:
        raise UnlearnError(f"Min-K% needs 0 < k <= 1, got k={k}")
    n = values.numel()
    if n == 0:
        return math.nan
    lowest = torch.sort(values.double().flatten()).values[: max(1, int(k * n))]
    return -float(lowest.mean())


# ------------------------------------------------------------------------------ AUC


def roc_auc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """P(score of a positive > score of a negative), ties counting 1/2 (NaNs dropped).

    The Mann-Whitney statistic: with average ranks R over both samples pooled,
    U = sum(R of positives) - n_pos (n_pos + 1) / 2 and AUC = U / (n_pos n_neg).
    """
    pos = np.asarray(positive, dtype=float)
    neg = np.asarray(negative, dtype=float)
    pos, neg = pos[~np.isnan(pos)], neg[~np.isnan(neg)]
    if pos.size == 0 or neg.size == 0:
        raise UnlearnError(
            f"AUC needs scores in both groups, got {pos.size} and {neg.size} non-NaN scores"
        )
    ranks = rankdata(np.concatenate([pos, neg]))  # average ranks for ties
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2
    return float(u / (pos.size * neg.size))


def mia_auc(forget_scores: Sequence[float], holdout_scores: Sequence[float]) -> float:
    """AUC of telling forget from holdout items with loss-like scores (higher = non-member).

    P(holdout score > forget score) + P(tie) / 2: 1.0 when the forget items are still
    recognisably members, 0.5 when they look like unseen data.
    """
    return roc_auc(holdout_scores, forget_scores)


def privleak(auc: float, reference_auc: float) -> float:
    """PrivLeak (MUSE, Shi et al., 2024): (AUC - AUC_ref) / AUC_ref * 100.

    ``reference_auc`` is the MIA AUC of a model never trained on the forget set (the oracle);
    0 is ideal, large positive means the forget set still leaks membership.
    """
    if reference_auc <= 0:
        raise UnlearnError(f"PrivLeak needs a positive reference AUC, got {reference_auc}")
    return (auc - reference_auc) / reference_auc * 100.0
