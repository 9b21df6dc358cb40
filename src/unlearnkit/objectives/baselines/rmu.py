"""RMU: Representation Misdirection for Unlearning (Li et al. 2024, WMDP, arXiv 2403.03218).

"The WMDP Benchmark: Measuring and Reducing Malicious Use With Unlearning", the RMU loss. With
M(t) the residual stream after block ``layer`` of the model being updated and M_0(t) that of
the frozen starting model:

    L_forget = E_{x in F} mean_t || M(t) - c u ||^2
    L_retain = E_{x in R} mean_t || M(t) - M_0(t) ||^2
    L_RMU    = L_forget + alpha * L_retain

u is a fixed random unit vector (entries uniform in [0, 1), then normalised; drawn from
``seed``), c the steering coefficient. Only a few blocks are updated (the paper: layer-2 ..
layer, their MLPs). Here ||.||^2 is averaged over the hidden dimension (squared norm / H), the
scale of the authors' implementation, to which their reported c and alpha refer. The frozen
retain activations are precomputed once by ``prepare`` (no frozen copy while training), which
also freezes every parameter outside the chosen blocks. Positions: the response positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from unlearnkit.models.lora import decoder_layers
from unlearnkit.objectives.baselines.common import (
    FORGET,
    RETAIN,
    as_batch,
    attach,
    check,
    layer_output,
    masked_mean,
    need,
    place,
    response_mask,
)
from unlearnkit.objectives.baselines.reference import response_hidden
from unlearnkit.objectives.baselines.registry import register_baseline


def _mse(hidden: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean over positions of the hidden-dimension mean of (hidden - target)^2."""
    return masked_mean(((hidden.float() - target.float()) ** 2).mean(-1), mask)


def rmu_loss(forget_h: torch.Tensor, forget_mask: torch.Tensor, retain_h: torch.Tensor,
             frozen_h: torch.Tensor, retain_mask: torch.Tensor, control: torch.Tensor, *,
             alpha: float) -> torch.Tensor:
    """``mse(forget_h, control) + alpha * mse(retain_h, frozen_h)`` on the masked positions.

    forget_h: (B_f, T_f, H) and retain_h, frozen_h: (B_r, T_r, H) activations; masks (B, T)
    bool; control: (H,) the target c * u. fp32; a term with no masked position is 0.
    """
    return _mse(forget_h, control, forget_mask) + alpha * _mse(retain_h, frozen_h, retain_mask)


def control_vector(hidden: int, seed: int) -> torch.Tensor:
    """The fixed random unit vector u: uniform [0, 1) entries, normalised, from ``seed``."""
    u = torch.rand(hidden, generator=torch.Generator().manual_seed(seed))
    return u / u.norm()


@dataclass
class RMUConfig:
    """RMU: the steered block, the updated blocks and parameters, c, alpha and u's seed."""

    layer: int = 7  # block whose output is steered
    update_layers: list[int] = field(default_factory=list)  # empty: layer-2, layer-1, layer
    modules: list[str] = field(default_factory=lambda: ["mlp"])  # name parts to update; [] = all
    steering_coeff: float = 6.5
    alpha: float = 1200.0
    seed: int = 0

    def __post_init__(self) -> None:
        check(self.layer >= 0, f"rmu.layer must be >= 0, got {self.layer}")
        check(all(0 <= i <= self.layer for i in self.update_layers),
              f"rmu.update_layers {self.update_layers} must lie in 0..layer ({self.layer}): "
              "blocks above the steered one get no gradient")
        check(self.steering_coeff > 0, f"rmu.steering_coeff must be positive, got "
              f"{self.steering_coeff}")
        check(self.alpha >= 0, f"rmu.alpha must be >= 0, got {self.alpha}")

    @property
    def blocks(self) -> list[int]:
        return self.update_layers or [i for i in range(self.layer - 2, self.layer + 1) if i >= 0]


def select_trainable(model, cfg: RMUConfig) -> list[str]:
    """Freeze everything except ``cfg.modules`` of ``cfg.blocks``; returns what trains."""
    layers = decoder_layers(model)
    check(cfg.layer < len(layers), f"rmu.layer {cfg.layer} does not exist: the model has "
          f"{len(layers)} blocks")
    model.requires_grad_(False)
    names = []
    for index in cfg.blocks:
        for name, param in layers[index].named_parameters():
            if not cfg.modules or any(part in name for part in cfg.modules):
                param.requires_grad_(True)
                names.append(f"{index}.{name}")
    check(bool(names), f"rmu.modules {cfg.modules} match no parameter of blocks {cfg.blocks}")
    return names


def prepare(cfg: RMUConfig, model, tokenizer, items, *, model_id=None):
    select_trainable(model, cfg)
    retain = [it.rendered for it in items if it.kind == RETAIN]
    hidden = response_hidden(model, retain, tokenizer.pad_token_id, layer=cfg.layer,
                             model_id=model_id)
    return attach(items, RETAIN, "ref_hidden", hidden)


@register_baseline("rmu", config=RMUConfig, prepare=prepare, paper="Li et al. 2024 (WMDP)",
                   arxiv="2403.03218",
                   equation="L = mean ||h_F - c u||^2 + alpha mean ||h_R - h_R^frozen||^2")
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
        control = cfg.steering_coeff * control_vector(h_f.shape[-1], cfg.seed).to(h_f.device)
        frozen, r_mask = frozen.to(h_r.device), r_mask.to(h_r.device)
        loss = rmu_loss(h_f, f_mask, h_r, frozen, r_mask, control, alpha=cfg.alpha)
        logs = {"forget_mse": float(_mse(h_f.detach(), control, f_mask)),
                "retain_mse": float(_mse(h_r.detach(), frozen, r_mask))}
        return loss, logs

    return step
