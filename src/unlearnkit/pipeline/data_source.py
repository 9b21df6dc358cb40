"""Where `unlearn run`, `unlearn bench` and `unlearn diagnose` get records and models (``data:``).

Kinds (``data.kind``):

* ``scenario`` (the default): the built-in scenario, configured under ``setup``
  (:func:`~unlearnkit.pipeline.scenario_models.prepare_scenario`).
* ``dataset``: your records and your model, unlearned as it is. ``oracle`` (a model trained
  without the forget set) and ``before`` (the "before" reference; default: ``model``) are
  optional.
* ``inject``: your records taught to ``model`` first (default: the default model), as the
  scenario is (:func:`~unlearnkit.pipeline.scenario_models.inject_records`): the injected model
  learns forget + retain + neighbour records, the oracle the same without forget, both cached by
  a hash of model, records and ``inject`` settings; ``general`` records the base model answers
  wrongly are dropped (they cannot measure lost utility).

Records come from ``path`` (a dataset folder written by ``unlearn data standardize``, or a data
config ``.yaml`` file, standardised in memory) or from inline ``sources`` (the data config's
schema). ``max_per_split`` keeps a seeded sample of a split (e.g. TOFU's 3,600 retain items ->
300) before anything trains. Relative paths (``path``, and the paths inside a data config) are
relative to where the command runs, not to the config file's folder.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from unlearnkit.config import load_config
from unlearnkit.data.records import SPLITS, Record, validate_records
from unlearnkit.data.standardize import DataConfig, SourceSpec, gather, load_dataset
from unlearnkit.errors import UnlearnError
from unlearnkit.models.loader import DEFAULT_MODEL, TokenizerSpec, resolve_model_path
from unlearnkit.pipeline.scenario_models import (
    PreparedScenario,
    ScenarioSetup,
    inject_records,
    prepare_scenario,
)
from unlearnkit.training.inject import InjectConfig

Kind = Literal["scenario", "dataset", "inject"]
TRAIN_SPLITS = ("forget", "retain", "neighbor")
# which kinds each field applies to (a field set for another kind is a mistake, said so)
APPLIES: dict[str, tuple[str, ...]] = {
    "path": ("dataset", "inject"), "sources": ("dataset", "inject"),
    "model": ("dataset", "inject"), "oracle": ("dataset",), "before": ("dataset", "inject"),
    "max_per_split": ("dataset", "inject"), "seed": ("dataset", "inject"),
    "trust_remote_code": ("dataset",), "inject": ("inject",),
    "tokenizer": ("dataset", "inject"), "chat_template": ("dataset", "inject"),
}


@dataclass
class DataSource:
    """The ``data`` section: the built-in scenario (default), or your records and model."""

    kind: Kind = "scenario"
    path: str = ""  # a dataset folder, or a data config .yaml (standardised in memory)
    sources: list[SourceSpec] = field(default_factory=list)  # inline data config sources
    model: str = ""  # dataset: the model to unlearn; inject: the base model (default model)
    oracle: str = ""  # dataset: a model trained without the forget set (optional)
    before: str = ""  # the "before" reference (default: the model unlearning starts from)
    max_per_split: dict[str, int] = field(default_factory=dict)  # split -> at most N records
    seed: int = 0  # of the max_per_split samples
    trust_remote_code: bool = False  # dataset: run the model's own code from its folder/hub
    # where the models' tokenizer comes from, for checkpoints saved without one (a folder or a
    # hub id); "": each model's own files
    tokenizer: str = ""
    # the chat template the models are prompted through, replacing the tokenizer's own: plain
    # (Question/Answer lines, for a base model without one) or a Jinja file; "": their own
    chat_template: str = ""
    inject: InjectConfig = field(default_factory=InjectConfig)  # inject: how it is taught

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.name in APPLIES and self.kind not in APPLIES[f.name] \
                    and getattr(self, f.name) != _default(f):
                raise UnlearnError(
                    f"data.{f.name} does not apply to data.kind {self.kind!r} (only to "
                    f"{' or '.join(APPLIES[f.name])}); remove it or set data.kind")
        if self.kind == "scenario":
            return
        self.tokenizer_spec().check("data.")
        if bool(self.path) == bool(self.sources):
            raise UnlearnError(f"data.kind {self.kind!r} takes its records from exactly one of "
                               "data.path (a dataset folder or a data config .yaml) and "
                               "data.sources (inline sources); give one")
        if self.kind == "dataset" and not self.model:
            raise UnlearnError("data.model is empty: set it to the model to unlearn (a local "
                               "Hugging Face folder or a hub id)")
        for split, n in self.max_per_split.items():
            if split not in SPLITS:
                raise UnlearnError(f"data.max_per_split: {split!r} is not a split; use "
                                   f"{', '.join(SPLITS)}")
            if n < 1:
                raise UnlearnError(f"data.max_per_split.{split} must be at least 1, got {n}")

    def tokenizer_spec(self) -> TokenizerSpec:
        """The tokenizer and chat template every model of the run is loaded with."""
        return TokenizerSpec(self.tokenizer, self.chat_template)


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def load_records(source: DataSource) -> tuple[list[Record], list[dict]]:
    """The source's records (validated) and their manifest entries."""
    if source.sources:
        return gather(DataConfig(sources=source.sources))
    path = Path(source.path)
    if path.suffix.lower() in (".yaml", ".yml"):
        return gather(load_config(DataConfig, path))
    return validate_records(load_dataset(path)), [{"format": "dataset", "path": str(path)}]


def sample_splits(records: list[Record], limits: dict[str, int], seed: int) -> list[Record]:
    """At most ``limits[split]`` records of each split: a seeded sample, kept in its original
    order; splits without a limit stay whole."""
    chosen: dict[str, set[str]] = {}
    for split, n in limits.items():
        ids = [r.id for r in records if r.split == split]
        if len(ids) > n:
            chosen[split] = set(random.Random(f"{seed}:{split}").sample(ids, n))
    return [r for r in records if r.split not in chosen or r.id in chosen[r.split]]


def check_records(records: list[Record], where: str) -> None:
    """Raise :class:`UnlearnError` unless there is something to forget and something to keep,
    and every training record has an answer."""
    counts = Counter(r.split for r in records)
    present = ", ".join(f"{s} {n}" for s, n in counts.items()) or "none"
    if not counts["forget"]:
        raise UnlearnError(f"{where} has no 'forget' records (splits: {present}); add a source "
                           "with split: forget")
    if not counts["retain"] and not counts["neighbor"]:
        raise UnlearnError(f"{where} has no 'retain' or 'neighbor' records (splits: {present}): "
                           "nothing says what to keep; add a source with split: retain")
    bare = next((r for r in records if r.split in TRAIN_SPLITS and not r.answer), None)
    if bare is not None:
        raise UnlearnError(f"{where}: {bare.split} record {bare.id!r} has no answer, and training "
                           "needs one; give it an answer or move it to split: probe")


def check_model(name: str, key: str) -> None:
    """A missing local folder (or a folder without config.json) fails here, naming ``key``;
    a hub id is only checked when it loads."""
    if name == DEFAULT_MODEL:
        return
    try:
        resolve_model_path(name)
    except UnlearnError as exc:
        raise UnlearnError(f"{key}: {exc}") from None


def prepare_data(source: DataSource, setup: ScenarioSetup | None = None,
                 variants: tuple[str, ...] = ("injected", "oracle")) -> PreparedScenario:
    """Records and models for a run (see the module docstring); ``setup`` is the scenario's."""
    if source.kind == "scenario":
        return prepare_scenario(setup or ScenarioSetup(), variants)
    for key in ("model", "oracle", "before"):
        if getattr(source, key):
            check_model(getattr(source, key), f"data.{key}")
    records, entries = load_records(source)
    records = sample_splits(records, source.max_per_split, source.seed)
    check_records(records, f"data ({source.path or 'data.sources'})")
    model = source.model or DEFAULT_MODEL
    if source.kind == "inject":
        prepared = inject_records(model, records, source.inject, variants,
                                  source.tokenizer_spec())
    else:
        prepared = PreparedScenario(records, {"base": model, "injected": model}, {},
                                    tokenizer_spec=source.tokenizer_spec())
    prepared.models |= {k: v for k, v in (("oracle", source.oracle), ("before", source.before))
                        if v}
    prepared.sources = [*entries, {"max_per_split": source.max_per_split, "seed": source.seed}]
    return prepared
