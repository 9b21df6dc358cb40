"""The fluency judge of runs and benches: per model or run, the share of forget answers
unlikelier than every gold answer (:mod:`unlearnkit.evaluation.fluency`).

Set ``fluency_judge`` in an `unlearn run` or bench config to a model that has not seen the
forget facts (the base model before injection: ``smollm2-135m-instruct`` for the built-in
scenario and TOFU). Scores are kept in ``<output>/fluency_judge.json``, for one judge (its name
and the identity of its weights: another judge, or the same folder retrained, starts afresh)
and keyed by question + answer, so a rebuilt leaderboard scores only answers it has not seen.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from unlearnkit.data.records import Record
from unlearnkit.data.scenario import build_scenario
from unlearnkit.errors import UnlearnError
from unlearnkit.evaluation.fluency import (
    has_broken_bytes,
    is_unlikely,
    score_answers,
    unlikely_threshold,
)
from unlearnkit.evaluation.metrics import is_degenerate
from unlearnkit.fsutil import atomic_write_text
from unlearnkit.models.loader import load_model
from unlearnkit.pipeline.data_source import load_records, sample_splits
from unlearnkit.training.inject import model_identity

if TYPE_CHECKING:  # run.py imports this module
    from unlearnkit.pipeline.run import RunConfig

SCORES_FILE = "fluency_judge.json"
SCORING = 2  # bump when evaluation.fluency scores answers otherwise (2: the first line counts)
GOLD_SPLITS = ("forget", "retain")  # the gold answers the judge's line is drawn from
CHUNK = 64  # answers scored between progress-bar updates


def setup_records(cfg: RunConfig) -> list[Record]:
    """The setup's records as a run sees them (without loading or injecting any model)."""
    if cfg.data.kind == "scenario":
        return build_scenario(**asdict(cfg.setup.scenario)).records
    records, _ = load_records(cfg.data)
    return sample_splits(records, cfg.data.max_per_split, cfg.data.seed)


def pair_key(question: str, answer: str) -> str:
    return hashlib.sha256(f"{question}\0{answer}".encode()).hexdigest()[:32]


def _load_cache(path: Path, judge: dict[str, str]) -> dict[str, float]:
    if not path.is_file():
        return {}
    saved = json.loads(path.read_text())
    if {k: saved.get(k) for k in judge} != judge:
        return {}
    return {k: math.nan if v is None else v for k, v in saved["scores"].items()}


def _score_missing(judge: str, pairs: dict[str, tuple[str, str]], load_options: dict
                   ) -> dict[str, float]:
    model, tokenizer = load_model(judge, **load_options)
    keys = list(pairs)
    out: dict[str, float] = {}
    with tqdm(total=len(keys), desc="fluency judge", unit="answer") as bar:
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start:start + CHUNK]
            out |= dict(zip(chunk, score_answers(model, tokenizer, [pairs[k] for k in chunk]),
                            strict=True))
            bar.update(len(chunk))
    return out


def forget_answers(items: list[dict]) -> list[tuple[str, str, bool]]:
    """A model's forget answers (its results' ``items``) as (record id, text, refused)."""
    return [(item["id"], item["generation"], bool(item.get("refused")))
            for item in items if item["split"] == "forget"]


def answer_form(verdicts: dict, answers: dict) -> dict:
    """Per key with answers: ``forget_unlikely``, the share the judge found unlikely
    (:func:`judge_answers`' ``verdicts``), and ``forget_fluent``, the share in language:
    neither unlikely nor degenerate (a refusal is language)."""
    out = {}
    for key, judged in verdicts.items():
        if judged:
            texts = [text for _, text, _ in answers[key]]
            fluent = sum(not (v or is_degenerate(t)) for v, t in zip(judged, texts, strict=True))
            out[key] = {"forget_unlikely": sum(judged) / len(judged),
                        "forget_fluent": fluent / len(judged)}
    return out


def judge_answers(judge: str, path: Path, setup: list[Record],
                  answers: dict, load_options: dict) -> tuple[dict, dict]:
    """Per key of ``answers`` (a run, a model), whether each of its forget answers
    (``(record id, text, refused)``) is unlikely to the judge or holds bytes that are not
    text (:func:`~unlearnkit.evaluation.fluency.has_broken_bytes`); and the judge's summary
    (model, threshold, number of gold answers). ``setup``: the records the answers belong
    to, whose forget and retain answers draw the line; ``path``: the scores' cache file
    (:data:`SCORES_FILE` in a run's or bench's folder); ``load_options``: how the judge loads
    (device, remote code). A refusal is language, whatever its likelihood after a question
    the judge would answer ("I can't say." scores above TOFU's line): it is not scored and
    never unlikely."""
    records = {r.id: r for r in setup}
    gold = {pair_key(r.question, r.answer): (r.question, r.answer) for r in records.values()
            if r.split in GOLD_SPLITS and r.answer}
    wanted: dict[tuple, list[tuple[str | None, str]]] = {}  # (None, text): a refusal
    pairs = dict(gold)
    for run, rows in answers.items():
        wanted[run] = []
        for record_id, text, refused in rows:
            if record_id not in records:
                who = "/".join(map(str, run)) if isinstance(run, tuple) else run
                raise UnlearnError(f"fluency judge: {who} answered record {record_id!r}, "
                                   "which the data no longer has; rerun it")
            key = None if refused else pair_key(records[record_id].question, text)
            wanted[run].append((key, text))
            if key is not None:
                pairs[key] = (records[record_id].question, text)
    who = {"judge": judge, "identity": model_identity(judge), "scoring": SCORING}
    scores = _load_cache(path, who)
    if missing := {k: v for k, v in pairs.items() if k not in scores}:
        print(f"fluency judge: scoring {len(missing)} answers with {judge}", flush=True)
        scores |= _score_missing(judge, missing, load_options)
        atomic_write_text(path, json.dumps({**who, "scores": {
            k: None if math.isnan(v) else v for k, v in sorted(scores.items())}}))
    threshold = unlikely_threshold([scores[k] for k in gold])
    verdicts = {run: [k is not None and (is_unlikely(scores[k], threshold)
                                         or has_broken_bytes(text)) for k, text in rows]
                for run, rows in wanted.items()}
    return verdicts, {"model": judge, "threshold": threshold, "gold_answers": len(gold)}
