"""The attack registry: ``@register_attack(name, kind=...)`` next to each attack's definition.

Four kinds, which decide how :func:`~unlearnkit.evaluation.attacks.runner.run_attacks` calls an
attack and scores it:

- ``"prompt"``: ``fn(record, **options) -> list[AttackPrompt]``, a pure rewrite of one forget
  probe (a ``pool`` keyword, when the function has one, receives all forget records). Scored by
  greedy generation: an item is revealed when any of its prompts makes the model state the fact.
- ``"choice"``: the same signature; each prompt is a multiple-choice question over its
  ``choices`` (default: ``record.choices``), scored by the log-probability argmax over the
  options (their letters, or their texts).
- ``"weights"``: ``fn(model, **options) -> model``, a modified *copy* of the model; the plain
  probes are then scored on it.
- ``"custom"``: ``fn(model, tokenizer, records, settings, **options) -> dict`` with ``items``
  (one ``{"id", "success", ...}`` per attacked record) and optional ``details``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from unlearnkit.errors import UnlearnError

KINDS = ("prompt", "choice", "weights", "custom")


@dataclass(frozen=True)
class AttackPrompt:
    """One rewritten probe: the user text, the system text and an optional assistant prefill.

    ``prefill`` is an int (the first k answer tokens), a float in (0, 1) (that fraction of the
    answer's tokens, rounded down, at least one) or None.
    """

    question: str
    system: str | None = None
    prefill: int | float | None = None
    label: str = ""
    # a choice attack's options and the right one's index (None: the record's own)
    choices: tuple[str, ...] | None = None
    answer_index: int | None = None


@dataclass(frozen=True)
class Attack:
    name: str
    kind: str
    fn: Callable[..., Any]
    meta: dict[str, Any] = field(default_factory=dict)

    def option_names(self) -> list[str]:
        """Keyword options the attack accepts (what ``run_attacks(..., name={...})`` may set)."""
        skip = {"record", "pool", "model", "tokenizer", "records", "settings", "rouge_threshold"}
        params = inspect.signature(self.fn).parameters.values()
        return [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name not in skip]

    def allowed(self, option: str) -> tuple | None:
        """The values ``option`` may take, when the attack lists them (meta ``values``)."""
        return self.meta.get("values", {}).get(option)

    def check_options(self, options: dict[str, Any]) -> None:
        unknown = sorted(set(options) - set(self.option_names()))
        if unknown:
            raise UnlearnError(
                f"attack {self.name!r} has no option(s) {unknown}; "
                f"it accepts {self.option_names() or 'none'}"
            )
        for key, value in options.items():
            allowed = self.allowed(key)
            if allowed is not None and value not in allowed:
                raise UnlearnError(f"attack {self.name!r}: option {key} must be one of "
                                   f"{', '.join(map(str, allowed))}, got {value!r}")


ATTACKS: dict[str, Attack] = {}


def register_attack(name: str, *, kind: str, **meta: Any) -> Callable:
    """Register an attack of ``kind`` (one of :data:`KINDS`) under ``name``; extra keywords are
    metadata (``family``: which attack family it belongs to; ``values``: option -> the values
    it may take, checked with the options)."""
    if kind not in KINDS:
        raise ValueError(f"attack kind {kind!r} is not one of {KINDS}")

    def decorator(fn: Callable) -> Callable:
        if name in ATTACKS:
            raise ValueError(f"attack {name!r} is registered twice")
        ATTACKS[name] = Attack(name, kind, fn, dict(meta))
        return fn

    return decorator


def get_attacks(names: str | Sequence[str] | None = None) -> list[Attack]:
    """The named attacks in the given order (all registered ones when ``names`` is None)."""
    if names is None:
        return list(ATTACKS.values())
    if isinstance(names, str):
        names = [names]
    unknown = [n for n in names if n not in ATTACKS]
    if unknown:
        raise UnlearnError(f"unknown attack(s) {unknown}; choose from {sorted(ATTACKS)}")
    return [ATTACKS[n] for n in dict.fromkeys(names)]  # in order, without repeats
