"""LoRA adapters through peft; with them the frozen base is available by disabling adapters."""

from __future__ import annotations

from dataclasses import dataclass, field

from unlearnkit.errors import UnlearnError

DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoraSettings:
    """LoRA on the attention and MLP projections; ``rank=0`` means full fine-tuning. The
    default ``target_modules`` are Llama-style names; on a model without them (Phi-3, GPT-NeoX,
    GPT-2) the default means every linear layer of the blocks (their names), and a
    list the user gives is checked against the model."""

    rank: int = 0
    alpha: float = 32.0
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))

    def __post_init__(self) -> None:
        if self.rank < 0:
            raise UnlearnError(f"lora.rank must be >= 0 (0 = full fine-tuning), got {self.rank}")

    @property
    def enabled(self) -> bool:
        return self.rank > 0


@dataclass
class TrainOnly:
    """Which parameters an unlearning run trains: those in blocks ``layers`` (0-based; empty:
    every block, and the parameters outside the blocks too) whose names contain one of
    ``modules`` (e.g. ``mlp``, ``down_proj``; empty: any). Parameters that were frozen before
    (LoRA's base weights) stay frozen, so with LoRA it picks adapters. Empty both: no change.
    """

    layers: list[int] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if any(i < 0 for i in self.layers):
            raise UnlearnError(f"train_only.layers must be block indices >= 0, got {self.layers}")

    @property
    def enabled(self) -> bool:
        return bool(self.layers or self.modules)


def train_only(model, layers: list[int], modules: list[str], *, key: str = "train_only",
               keep_frozen: bool = True) -> list[str]:
    """Leave trainable only ``modules`` of blocks ``layers`` (see :class:`TrainOnly`); returns
    the names of what trains. ``keep_frozen=False`` also unfreezes what it selects."""
    blocks = decoder_layers(model)
    missing = [i for i in layers if i >= len(blocks)]
    if missing:
        raise UnlearnError(f"{key}.layers {missing} do not exist: the model has {len(blocks)} "
                           f"blocks (0..{len(blocks) - 1})")
    scopes = [(f"{i}.", blocks[i]) for i in layers] if layers else [("", model)]
    chosen = {}
    for prefix, scope in scopes:
        for name, param in scope.named_parameters():
            if (param.requires_grad or not keep_frozen) and \
                    (not modules or any(part in name for part in modules)):
                chosen[prefix + name] = param
    if not chosen:
        raise UnlearnError(f"{key}.modules {modules} match no trainable parameter of "
                           f"{'blocks ' + str(layers) if layers else 'the model'}")
    model.requires_grad_(False)
    for param in chosen.values():
        param.requires_grad_(True)
    return list(chosen)


def restrict(model, settings: TrainOnly):
    """``model`` with only ``settings``' parameters trainable (unchanged when it is empty)."""
    if settings.enabled:
        train_only(model, settings.layers, settings.modules)
    return model


def apply_lora(model, settings: LoraSettings, first_layer: int = 0):
    """Wrap ``model`` with LoRA adapters (only they train) or return it unchanged.

    ``first_layer > 0`` leaves the blocks below it without adapters, so the backward pass
    stops there (as :func:`freeze` does for full fine-tuning).
    """
    if not settings.enabled:
        return model
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in settings.target_modules if t not in present]
    linear = linear_types()
    targets = settings.target_modules
    if missing and settings.target_modules == DEFAULT_TARGETS:
        # another family's names (Phi-3's qkv_proj and gate_up_proj, GPT-NeoX's
        # query_key_value, GPT-2's c_attn): every linear layer of the blocks, which is what
        # the default names select in a Llama-style model (a list of names, not peft's
        # "all-linear", which cannot start at a block)
        targets = sorted({name.rsplit(".", 1)[-1]
                          for name, m in decoder_layers(model).named_modules()
                          if isinstance(m, linear)})
    elif missing:
        raise UnlearnError(f"lora.target_modules {missing} are not in this model; "
                           f"some module names it has: {sorted(present)[:12]}")
    # GPT-2's Conv1D stores its weight [in, out]; peft needs to be told (or it warns and guesses)
    extra = {"fan_in_fan_out": any(isinstance(m, linear[1]) for m in model.modules())}
    if first_layer > 0:
        n = len(decoder_layers(model))
        if first_layer >= n:
            raise UnlearnError(f"cannot start LoRA at block {first_layer}: the model has {n}")
        extra["layers_to_transform"] = list(range(first_layer, n))
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=targets, task_type="CAUSAL_LM", **extra)
    return get_peft_model(model, config)


def merged(model):
    """A plain transformers model: LoRA weights merged in, or the model itself."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def linear_types() -> tuple[type, type]:
    """The layer types a linear projection has: ``nn.Linear`` ([out, in] weight) and
    transformers' ``Conv1D`` (GPT-2's projections, [in, out])."""
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    return nn.Linear, Conv1D


def decoder_layers(model):
    """The transformer block list (the ModuleList as long as ``num_hidden_layers``); ``model``
    may be wrapped for several processes (DDP's ``module``)."""
    import torch.nn as nn

    n = getattr(getattr(model, "module", model).config, "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return module
    raise UnlearnError(f"cannot find the {n} decoder layers of {type(model).__name__}")


def freeze(model, *, embeddings: bool = False, lower_layers: int = 0):
    """Freeze the (tied) embeddings and/or the ``lower_layers`` lowest blocks; returns model.

    Freezing the embedding matrix skips its vocabulary-sized gradient, and frozen lower
    blocks end the backward pass early: on a CPU this is most of a step's cost.
    """
    if embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
        out = model.get_output_embeddings()
        if out is not None:
            out.weight.requires_grad_(False)
    layers = decoder_layers(model)
    if lower_layers > len(layers):
        raise UnlearnError(f"cannot freeze {lower_layers} layers: the model has {len(layers)}")
    for layer in list(layers)[:lower_layers]:
        layer.requires_grad_(False)
    return model
