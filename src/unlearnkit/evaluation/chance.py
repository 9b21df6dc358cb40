"""What a multiple-choice attack gets by guessing, and its success rate beyond that.

A choice attack always picks a letter, so a model that knows nothing about a fact still
"reveals" it with probability 1 / the number of options: on four-option questions a model
never trained on the forget set (the oracle) scores about 0.25. Put beside generated-answer
attacks, whose success a know-nothing model almost never reaches, the raw rate would make the
multiple-choice attack the worst case of every model, an unlearned one included. So a choice
attack's rate is judged above chance:

    above = (rate - chance) / (1 - chance)

0 at chance, 1 when every item is answered right, negative below chance (Cohen's kappa
against a guesser, with the guesser's rate known rather than estimated). In the worst case
a choice attack counts with ``max(0, above)``. Which items were guessed cannot be told apart,
so the any-attack rate (items revealed by at least one attack) leaves choice attacks out.

An item asked with several prompts is revealed when any prompt picks the right letter; by
independent guesses that happens with probability ``1 - prod(1 - 1/n)`` over its prompts'
option counts ``n``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def item_chance(option_counts: Sequence[int]) -> float:
    """Chance that at least one of an item's prompts picks the right letter by guessing, with
    ``option_counts[i]`` options in prompt ``i`` (independent uniform guesses)."""
    if not option_counts or any(n < 1 for n in option_counts):
        raise ValueError(f"option counts must be >= 1, got {list(option_counts)}")
    return 1.0 - math.prod(1.0 - 1.0 / n for n in option_counts)


def chance_of(items: Iterable[dict]) -> float | None:
    """Mean guessing chance of a choice attack's items (None without items): each item's
    ``chance``, or, in results written before it was recorded, the one its variants' option
    counts give (``len(variant["logprobs"])``)."""
    values = []
    for item in items:
        if item.get("chance") is not None:
            values.append(float(item["chance"]))
        else:
            values.append(item_chance([len(v["logprobs"]) for v in item["variants"]]))
    return sum(values) / len(values) if values else None


def above_chance(rate: float | None, chance: float | None) -> float | None:
    """``(rate - chance) / (1 - chance)``; the rate itself when there is no chance level
    (a generated-answer attack); None without a rate or when chance is 1 (one option)."""
    if rate is None or chance is None:
        return rate
    if chance >= 1.0:
        return None
    return (rate - chance) / (1.0 - chance)


def leak_rate(rate: float | None, chance: float | None) -> float | None:
    """The rate an attack is judged by: the raw success rate of a generated-answer attack, the
    rate above chance, floored at 0, of a choice attack."""
    above = above_chance(rate, chance)
    return None if above is None else max(0.0, above) if chance is not None else above


def leak_rates(rates: dict[str, float | None], chance: dict[str, float]) -> dict[str, float]:
    """Per attack with a rate, its :func:`leak_rate` (``chance``: the choice attacks')."""
    out = {k: leak_rate(v, chance.get(k)) for k, v in rates.items()}
    return {k: v for k, v in out.items() if v is not None}


def worst_beyond(leaks: dict[str, float], floor: dict[str, float]
                 ) -> tuple[str | None, float | None]:
    """The attack whose leak rate most exceeds ``floor``'s (the oracle's), and by how much
    (floored at 0), over the attacks both have; (None, None) when they share none."""
    excess = {k: max(0.0, v - floor[k]) for k, v in leaks.items() if k in floor}
    if not excess:
        return None, None
    name = max(excess, key=excess.__getitem__)
    return name, excess[name]
