"""The built-in scenario's models: base, injected ("before unlearning") and oracle.

Steps, each cached by a hash of its inputs:
1. build the scenario records (people + general probes);
2. ask the base model the general probes and keep only those it answers correctly (a probe
   the base model never knew cannot measure lost utility); record its answers to the replay
   prompts, which injection replays to keep general behaviour;
3. fine-tune the injected and oracle models (:mod:`unlearnkit.training.inject`).

Steps 2 and 3 work on any records (:func:`inject_records`): ``data.kind: inject`` teaches a
dataset such as TOFU to a base model the same way (:mod:`unlearnkit.pipeline.data_source`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field

from unlearnkit.data.records import Record, atomic_write_text
from unlearnkit.data.render import render
from unlearnkit.data.replay import REPLAY_PROMPTS
from unlearnkit.data.scenario import build_scenario, general_probes
from unlearnkit.evaluation.accuracy import answer_records
from unlearnkit.models.engine import generate
from unlearnkit.models.loader import (
    DEFAULT_MODEL,
    OWN_TOKENIZER,
    TokenizerSpec,
    cache_root,
    load_model,
)
from unlearnkit.training.inject import InjectConfig, build_variants, model_identity


@dataclass
class ScenarioOptions:
    """Size of the built-in scenario (fictitious people, ~10% of them to forget)."""

    seed: int = 0
    n_people: int = 40
    n_forget: int = 4
    neighbors_per_forget: int = 2


@dataclass
class ScenarioSetup:
    """Which base model, which scenario, and how to inject it."""

    model: str = DEFAULT_MODEL
    scenario: ScenarioOptions = field(default_factory=ScenarioOptions)
    inject: InjectConfig = field(default_factory=InjectConfig)


@dataclass
class PreparedScenario:
    """Records and models of a run. ``models``: ``base``, ``injected`` (the model unlearning
    starts from: the user's own model for ``data.kind: dataset``), and optionally ``oracle``
    (trained without the forget set) and ``before`` (the "before" reference; default: the
    ``injected`` model)."""

    records: list[Record]  # people + the general probes the base model gets right
    models: dict[str, str]  # role -> model name or folder
    probe_report: dict
    sources: list[dict] = field(default_factory=list)  # where the records came from (manifest)
    # the base model's answers to the replay prompts (general keep items for unlearning's
    # ``mix.general``; disjoint from the probes, never evaluated)
    replay: list[Record] = field(default_factory=list)
    # data.tokenizer and data.chat_template: the base model's tokenizer and template
    tokenizer_spec: TokenizerSpec = field(default_factory=TokenizerSpec)


REPLAY_TOKENS = 64  # new tokens a base-model replay answer may take


def _replies(model, tokenizer, questions: list[str]) -> list[str]:
    """The model's greedy answers to ``questions``, each at most ``REPLAY_TOKENS`` long."""
    return generate(model, tokenizer, [render(tokenizer, q) for q in questions],
                    max_new_tokens=REPLAY_TOKENS)


def _base_model_facts(model_name: str, probes: list[Record],
                      tokenizer_spec: TokenizerSpec = OWN_TOKENIZER) -> dict:
    """Base model's judged answers to the probes and its replay answers (cached on disk)."""
    key = hashlib.sha256(json.dumps(
        [_identity(model_name, tokenizer_spec), [p.to_dict() for p in probes], REPLAY_PROMPTS]
    ).encode()).hexdigest()[:16]
    path = cache_root() / "base-answers" / f"{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    model, tokenizer = load_model(model_name, tokenizer_spec=tokenizer_spec)
    judged = answer_records(model, tokenizer, probes, max_new_tokens=32)
    replies = _replies(model, tokenizer, REPLAY_PROMPTS)
    finished = [len(tokenizer(r)["input_ids"]) < 60 for r in replies]
    facts = {"probes": judged, "replay": [
        {"question": q, "answer": a} for q, a, ok in zip(REPLAY_PROMPTS, replies, finished,
                                                          strict=True) if ok and a]}
    atomic_write_text(path, json.dumps(facts, indent=1))
    return facts


def _identity(model_name: str, tokenizer_spec: TokenizerSpec) -> str | list:
    """The model's identity in a cache key, with the tokenizer and template it is given, when
    it is given them (without, as before)."""
    identity = model_identity(model_name)
    return [identity, tokenizer_spec.key()] if tokenizer_spec else identity


def _base_replies(model_name: str, questions: list[str],
                  tokenizer_spec: TokenizerSpec = OWN_TOKENIZER) -> list[str]:
    return _replies(*load_model(model_name, tokenizer_spec=tokenizer_spec), questions)


def whole_sentences(text: str, *, min_words: int = 3) -> str:
    """``text`` up to the end of its last complete sentence (``.``, ``!`` or ``?`` followed by
    a space or the end); "" when no sentence of at least ``min_words`` words ends in it."""
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s|$)", text)]
    cut = text[:ends[-1]].strip() if ends else ""
    return cut if len(cut.split()) >= min_words else ""


def long_replay_records(model_name: str, replay: list[Record],
                        tokenizer_spec: TokenizerSpec = OWN_TOKENIZER) -> list[Record]:
    """General keep items from the replay prompts whose base-model answers ran past the
    replay's limit (and so are not replayed at injection, where a cut answer would teach the
    model to stop mid-thought): each answered again by the base model and cut after its last
    whole sentence (:func:`whole_sentences`). Among them are the questions about real people
    ("Who wrote ...?", "Who painted ...?"), whose answers start with the names that a push on
    fictitious people's names reaches. Cached on disk like the replay answers."""
    done = {r.question for r in replay}
    prompts = [q for q in REPLAY_PROMPTS if q not in done]
    key = hashlib.sha256(json.dumps(
        ["long-replay-1", _identity(model_name, tokenizer_spec), prompts, REPLAY_TOKENS]).encode()
    ).hexdigest()[:16]
    path = cache_root() / "base-answers" / f"long-{key}.json"
    if path.is_file():
        answers = json.loads(path.read_text())
    else:
        answers = [{"question": q, "answer": whole_sentences(a)}
                   for q, a in zip(prompts, _base_replies(model_name, prompts, tokenizer_spec),
                                   strict=True)]
        atomic_write_text(path, json.dumps(answers, indent=1))
    return [Record(id=f"replay-long-{i}", split="general", question=x["question"],
                   answer=x["answer"], source="base-model-replay",
                   meta={"replay": True, "cut": True})
            for i, x in enumerate(answers) if x["answer"]]


def replay_records(facts: dict) -> list[Record]:
    return [Record(id=f"replay-{i}", split="general", question=x["question"], answer=x["answer"],
                   source="base-model-replay", meta={"replay": True})
            for i, x in enumerate(facts["replay"])]


def inject_records(model: str, records: list[Record], cfg: InjectConfig,
                   variants: tuple[str, ...] = ("injected", "oracle"),
                   tokenizer_spec: TokenizerSpec = OWN_TOKENIZER) -> PreparedScenario:
    """Teach ``records`` to ``model``: the ``variants`` (:mod:`unlearnkit.training.inject`),
    cached; ``general`` records the base model answers wrongly are dropped (steps 2-3).
    ``tokenizer_spec`` takes the base model's tokenizer or chat template from elsewhere, and
    the models taught keep them."""
    probes = [r for r in records if r.split == "general"]
    facts = _base_model_facts(model, probes, tokenizer_spec)
    known = {row["id"] for row in facts["probes"] if row["correct"]}
    kept = [r for r in records if r.split != "general" or r.id in known]
    train_on = records + (replay_records(facts) if cfg.replay else [])
    models = {"base": model}
    built = build_variants(model, train_on, variants, cfg, tokenizer_spec)
    models.update((k, str(v)) for k, v in built.items())
    report = {"probes_total": len(probes), "probes_kept": len(known),
              "replay_examples": len(facts["replay"])}
    return PreparedScenario(records=kept, models=models, probe_report=report,
                            replay=replay_records(facts), tokenizer_spec=tokenizer_spec)


def prepare_scenario(cfg: ScenarioSetup,
                     variants: tuple[str, ...] = ("injected", "oracle")) -> PreparedScenario:
    people = build_scenario(**asdict(cfg.scenario)).records
    return inject_records(cfg.model, people + general_probes(), cfg.inject, variants)
