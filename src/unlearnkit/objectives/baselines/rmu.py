"""RMU: Representation Misdirection for Unlearning (Li et al. 2024, WMDP, arXiv 2403.03218).

"The WMDP Benchmark: Measuring and Reducing Malicious Use With Unlearning", the RMU loss. With
M(t) the residual stream after block ``layer`` of the model being updated and M_0(t) that of
the frozen starting model:

    L_forget = E_{x in F} mean_t || M(t) - c u ||^2
    L_retain = E_{x in R} mean_t || M(t) - M_0(t) ||^2
    L_RMU    = L_forget + alpha * L_retain

u is a fixed random unit vector (entries uniform in [0, 1), then normalised; drawn from
``seed``), c the steering coefficient. A fixed c means different things on different models: the
residual stream's norm varies by model and layer (after block 7 of SmolLM2-135M it is about
130, so the WMDP paper's c = 6.5 asks for activations 20x smaller, and the forget answers
survive; docs/RESULTS.md). ``adaptive_beta`` > 0 selects Adaptive RMU (Dang et al. 2024, "On
Effects of Steering Latent Representation for LLM Unlearning", arXiv 2408.06223), whose
coefficient follows the starting model's activation norm at each forget position t:

    c(t) = beta * || M_0(t) ||

(precomputed by ``prepare``, like the retain activations). Only a few blocks are updated
(the paper: layer-2 .. layer, their MLPs). Here ||.||^2 is averaged over the hidden dimension
(squared norm / H), the scale of the authors' implementation, to which their reported c and
alpha refer (:mod:`unlearnkit.objectives.steer`). The frozen retain activations are
precomputed once by ``prepare`` (no frozen copy while training), which also freezes every
parameter outside the chosen blocks. Positions: the response positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from unlearnkit.models.engine import layer_output
from unlearnkit.models.lora import decoder_layers, train_only
from unlearnkit.objectives.baselines.common import (
    FORGET,
    RETAIN,
    as_batch,
    attach,
    check,
    need,
    place,
    response_mask,
)
from unlearnkit.objectives.baselines.reference import response_hidden
from unlearnkit.objectives.baselines.registry import register_baseline
from unlearnkit.objectives.steer import activation_mse, adaptive_control, control_vector


def rmu_loss(forget_h: torch.Tensor, forget_mask: torch.Tensor, retain_h: torch.Tensor,
             frozen_h: torch.Tensor, retain_mask: torch.Tensor, control: torch.Tensor, *,
             alpha: float) -> torch.Tensor:
    """``mse(forget_h, control) + alpha * mse(retain_h, frozen_h)`` on the masked positions.

    forget_h: (B_f, T_f, H) and retain_h, frozen_h: (B_r, T_r, H) activations; masks (B, T)
    bool; control: the target c * u, (H,) for one c or (B_f, T_f, H) for a c per position.
    fp32; a term with no masked position is 0.
    """
    return (activation_mse(forget_h, control, forget_mask)
            + alpha * activation_mse(retain_h, frozen_h, retain_mask))


@dataclass
class RMUConfig:
    """RMU: the steered block, the updated blocks and parameters, c, alpha and u's seed."""

    layer: int = 7  # block whose output is steered
    update_layers: list[int] = field(default_factory=list)  # empty: layer-2, layer-1, layer
    modules: list[str] = field(default_factory=lambda: ["mlp"])  # name parts to update; [] = all
    steering_coeff: float = 6.5  # c when adaptive_beta is 0
    adaptive_beta: float = 0.0  # > 0: c(t) = beta * ||M_0(t)|| (Adaptive RMU); c unused
    alpha: float = 1200.0
    seed: int = 0

    def __post_init__(self) -> None:
        check(self.layer >= 0, f"rmu.layer must be >= 0, got {self.layer}")
        check(all(0 <= i <= self.layer for i in self.update_layers),
              f"rmu.update_layers {self.update_layers} must lie in 0..layer ({self.layer}): "
              "blocks above the steered one get no gradient")
        check(self.steering_coeff > 0, f"rmu.steering_coeff must be positive, got "
              f"{self.steering_coeff}")
        check(self.adaptive_beta >= 0, f"rmu.adaptive_beta must be >= 0 (0: the fixed "
              f"steering_coeff), got {self.adaptive_beta}")
        check(self.alpha >= 0, f"rmu.alpha must be >= 0, got {self.alpha}")

    @property
    def blocks(self) -> list[int]:
        return self.update_layers or [i for i in range(self.layer - 2, self.layer + 1) if i >= 0]


def select_trainable(model, cfg: RMUConfig) -> list[str]:
    """Freeze everything except ``cfg.modules`` of ``cfg.blocks``; returns what trains."""
    n = len(decoder_layers(model))
    check(cfg.layer < n, f"rmu.layer {cfg.layer} does not exist: the model has {n} blocks")
    return train_only(model, cfg.blocks, cfg.modules, key="rmu", keep_frozen=False)


def prepare(cfg: RMUConfig, model, tokenizer, items, *, model_id=None):
    select_trainable(model, cfg)
    retain = [it.rendered for it in items if it.kind == RETAIN]
    hidden = response_hidden(model, retain, tokenizer.pad_token_id, layer=cfg.layer,
                             model_id=model_id)
    items = attach(items, RETAIN, "ref_hidden", hidden)
    if cfg.adaptive_beta > 0:
        forget = [it.rendered for it in items if it.kind == FORGET]
        hidden = response_hidden(model, forget, tokenizer.pad_token_id, layer=cfg.layer,
                                 model_id=model_id)
        items = attach(items, FORGET, "ref_norm",
                       {key: h.norm(dim=-1) for key, h in hidden.items()})
    return items


@register_baseline("rmu", config=RMUConfig, prepare=prepare, paper="Li et al. 2024 (WMDP)",
                   arxiv="2403.03218",
                   equation="L = mean ||h_F - c u||^2 + alpha mean ||h_R - h_R^frozen||^2; "
                   "adaptive: c = beta ||h_F^frozen||")
def make_step(cfg: RMUConfig, pad_id: int):
    def step(model, micro):
        batch = as_batch(micro)
        forget = [it.rendered for it in batch[FORGET]]
        retain = [it.rendered for it in batch[RETAIN]]
        h_f = layer_output(model, forget, pad_id, cfg.layer)
        h_r = layer_output(model, retain, pad_id, cfg.layer)
        frozen, r_mask = place(retain, [need(it, "ref_hidden", "rmu") for it in batch[RETAIN]],
                               0, h_r.shape[1])
        f_mask = response_mask(forget, 0, h_f.shape[1]).to(h_f.device)
        u = control_vector(h_f.shape[-1], cfg.seed).to(h_f.device)
        if cfg.adaptive_beta > 0:
            norms, _ = place(forget, [need(it, "ref_norm", "rmu") for it in batch[FORGET]], 0,
                             h_f.shape[1])
            control = adaptive_control(norms.to(h_f.device), u, cfg.adaptive_beta)
        else:
            control = cfg.steering_coeff * u
        frozen, r_mask = frozen.to(h_r.device), r_mask.to(h_r.device)
        loss = rmu_loss(h_f, f_mask, h_r, frozen, r_mask, control, alpha=cfg.alpha)
        logs = {"forget_mse": float(activation_mse(h_f.detach(), control, f_mask)),
                "retain_mse": float(activation_mse(h_r.detach(), frozen, r_mask))}
        return loss, logs

    return step
