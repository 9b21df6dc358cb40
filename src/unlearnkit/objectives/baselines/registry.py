"""The baseline registry: ``@register_baseline(name, config=...)`` next to each method's definition.

A *trainable* baseline registers its step factory::

    make_step(cfg, pad_id) -> step(model, micro_batch) -> (loss, logs)

(the step function :func:`unlearnkit.training.loop.train` expects), its config dataclass, and,
when it compares with the starting model, a ``prepare`` function::

    prepare(cfg, model, tokenizer, items, *, model_id=None) -> items

which runs ONCE on the starting model before training and returns the items with their
reference quantities attached (``Item.ref``; see :mod:`.reference`), so that no second model is
held in memory while training. A non-trainable baseline (prompt-only, the oracle) registers a
plain function with ``trainable=False``. Extra keywords are metadata (paper, arXiv id, equation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from unlearnkit.config import from_dict
from unlearnkit.errors import UnlearnError


@dataclass(frozen=True)
class Baseline:
    name: str
    fn: Callable[..., Any]  # make_step for trainable baselines, else the method's entry point
    config: type
    trainable: bool = True
    prepare: Callable[..., Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def trains_on_raw_text(self) -> bool:
        """Whether it can train on the forget set as raw passages (``unlearn.forget_format:
        raw``): every trainable method but those that need each forget item's question (a
        refusal answer to it, a teacher asked it), which register ``needs_question=True``."""
        return self.trainable and not self.meta.get("needs_question", False)

    def make_config(self, data: dict | None = None):
        """The method's config from plain data (a YAML preset), validated by ``from_dict``."""
        return from_dict(self.config, data or {}, prefix=self.name)

    def make_step(self, cfg, pad_id: int):
        if not self.trainable:
            raise UnlearnError(f"baseline {self.name!r} does not train; it has no step")
        return self.fn(cfg, pad_id)

    def prepare_items(self, cfg, model, tokenizer, items: Sequence, *,
                      model_id: str | None = None) -> list:
        """Attach the precomputed reference quantities (a no-op for methods that need none)."""
        if self.prepare is None:
            return list(items)
        return self.prepare(cfg, model, tokenizer, list(items), model_id=model_id)


BASELINES: dict[str, Baseline] = {}


def register_baseline(name: str, *, config: type, trainable: bool = True,
                      prepare: Callable[..., Any] | None = None, **meta: Any) -> Callable:
    """Register the decorated function as baseline ``name`` (see the module docstring)."""

    def decorator(fn: Callable) -> Callable:
        if name in BASELINES:
            raise ValueError(f"baseline {name!r} is registered twice")
        BASELINES[name] = Baseline(name, fn, config, trainable, prepare, dict(meta))
        return fn

    return decorator


def get_baseline(name: str) -> Baseline:
    if name not in BASELINES:
        raise UnlearnError(f"unknown baseline {name!r}; choose one of "
                           f"{', '.join(sorted(BASELINES))}")
    return BASELINES[name]
