"""Run registered attacks on forget probes and report success rates and the worst case."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from unlearnkit.data.records import Record
from unlearnkit.errors import UnlearnError
from unlearnkit.evaluation.attacks.registry import Attack, get_attacks
from unlearnkit.evaluation.attacks.scoring import (
    Settings,
    score_choice_attack,
    score_plain,
    score_prompt_attacks,
)
from unlearnkit.evaluation.chance import above_chance, chance_of, leak_rates
from unlearnkit.evaluation.correctness import DEFAULT_ROUGE_THRESHOLD, check_threshold, judgeable


def _check_records(records: Sequence[Record]) -> list[Record]:
    records = list(records)
    if not records:
        raise UnlearnError("run_attacks needs at least one forget record")
    unjudgeable = [r.id for r in records if not judgeable(r)]
    if unjudgeable:
        raise UnlearnError(f"forget record(s) {unjudgeable[:5]} have neither an answer nor "
                           "targets, so a leak cannot be judged; add one of them")
    return records


def _attack_options(attacks: list[Attack], options: dict[str, Any]) -> dict[str, dict]:
    """Per-attack options, checked: keys are selected attack names, values option dicts."""
    names = {a.name for a in attacks}
    unknown = sorted(set(options) - names)
    if unknown:
        raise UnlearnError(f"options {unknown} name no selected attack; selected: {sorted(names)}")
    out = {}
    for attack in attacks:
        given = options.get(attack.name) or {}
        if not isinstance(given, dict):
            raise UnlearnError(f"options for attack {attack.name!r} must be a dict, got {given!r}")
        attack.check_options(given)
        out[attack.name] = dict(given)
    return out


def _call_options(attack: Attack, given: dict, records: list[Record], settings: Settings) -> dict:
    """The options plus what the runner supplies: the forget ``pool``, the leak judge's
    ``rouge_threshold`` and the default seed."""
    opts = dict(given)
    params = inspect.signature(attack.fn).parameters
    if "pool" in params:
        opts["pool"] = records
    if "rouge_threshold" in params:
        opts["rouge_threshold"] = settings.rouge_threshold
    if "seed" in attack.option_names():
        opts.setdefault("seed", settings.seed)
    return opts


def _run_one(attack: Attack, model, tokenizer, records, opts, settings) -> dict:
    if attack.kind == "choice":
        return {"items": score_choice_attack(model, tokenizer, records, attack, opts, settings)}
    if attack.kind == "weights":
        twin = attack.fn(model, **opts)
        try:
            return {"items": score_plain(twin, tokenizer, records, settings)}
        finally:
            del twin
    return attack.fn(model, tokenizer, records, settings, **opts)


def _rate(items: list[dict]) -> float | None:
    return sum(bool(i["success"]) for i in items) / len(items) if items else None


def run_attacks(model, tokenizer, forget_records: Sequence[Record],
                names: Sequence[str] | None = None, *, max_new_tokens: int = 32,
                batch_size: int = 32, context: str | None = None, seed: int = 0,
                progress: bool = False, rouge_threshold: float = DEFAULT_ROUGE_THRESHOLD,
                **options: dict[str, Any]) -> dict:
    """Attack the forget probes; per attack the success rate (fraction of revealed items).

    ``names``: attacks to run, in order (default: all registered). ``context``: an instruction
    put before every prompt (to attack in-context unlearning). ``seed`` is the default seed of
    every attack that takes one. ``rouge_threshold``: the leak judge's threshold for long
    answers without targets (:func:`~unlearnkit.evaluation.correctness.is_correct`). Other
    keywords are per-attack options, e.g. ``relearn={"lrs": (1e-4,)}``. Returns ``attacks``
    (per attack: kind, family, success_rate, n items, per-item results, details; a choice
    attack also its guessing ``chance`` and its rate ``above_chance``:
    :mod:`unlearnkit.evaluation.chance`),
    ``success_rates``, ``worst_case`` (the attack with the highest leak rate: the success rate,
    a choice attack's rate above chance floored at 0; ``success_rate`` is that leak rate),
    ``any_attack_rate`` (items revealed by at least one generated-answer attack, among the
    items some such attack applied to; choice attacks are left out, as an item they reveal
    may be a guess) and ``config``. A rate is None when no item applied.
    """
    records = _check_records(forget_records)
    check_threshold(rouge_threshold, "rouge_threshold")
    attacks = get_attacks(names)
    given = _attack_options(attacks, options)
    settings = Settings(max_new_tokens, batch_size, context, seed, progress, rouge_threshold)
    calls = {a.name: _call_options(a, given[a.name], records, settings) for a in attacks}
    prompt_kind = [(a, calls[a.name]) for a in attacks if a.kind == "prompt"]
    outputs = {name: {"items": items} for name, items in
               score_prompt_attacks(model, tokenizer, records, prompt_kind, settings).items()}
    for attack in attacks:
        if attack.kind != "prompt":
            outputs[attack.name] = _run_one(attack, model, tokenizer, records,
                                            calls[attack.name], settings)
    return _summary(attacks, outputs, settings, given)


def _summary(attacks: list[Attack], outputs: dict, settings: Settings, given: dict) -> dict:
    report = {}
    for attack in attacks:
        items = outputs[attack.name]["items"]
        report[attack.name] = {
            "kind": attack.kind, "family": attack.meta.get("family", attack.name),
            "success_rate": _rate(items), "n": len(items), "items": items,
            "details": outputs[attack.name].get("details", {}),
        }
        if attack.kind == "choice":
            chance = chance_of(items)
            report[attack.name].update(
                chance=chance, above_chance=above_chance(report[attack.name]["success_rate"],
                                                         chance))
    rates = {name: r["success_rate"] for name, r in report.items()}
    scored = leak_rates(rates, {k: r["chance"] for k, r in report.items() if "chance" in r})
    worst = max(scored, key=scored.get) if scored else None
    revealed: dict[str, bool] = {}
    for r in report.values():
        for item in r["items"] if r["kind"] != "choice" else ():
            revealed[item["id"]] = revealed.get(item["id"], False) or bool(item["success"])
    return {
        "attacks": report, "success_rates": rates,
        "worst_case": {"attack": worst, "success_rate": scored.get(worst)},
        "any_attack_rate": _rate([{"success": v} for v in revealed.values()]),
        "config": {**asdict(settings), "names": [a.name for a in attacks], "options": given},
    }
