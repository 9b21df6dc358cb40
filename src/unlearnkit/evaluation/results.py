"""The results file of one evaluation (``unlearn eval``): a typed, versioned JSON schema.

:class:`EvalResults` holds what is needed to trust and compare a number later: the resolved
config, package versions, the git commit of the unlearnkit checkout (None outside one), the
seed, the seconds each step took, and per metric the per-item values with their ids, the
aggregate, its direction and the objective it serves. Attacks keep their per-item results.

Directions. ``higher_is_better`` is the metric's own direction (see
:mod:`unlearnkit.evaluation.metrics`) on data the model should keep; on the forget split the
knowledge metrics flip (lower correctness on forget is better) and the refusal rate has no
preferred direction (None): refusing a forgotten question is an acceptable way to forget.

JSON. NaN is written as ``null`` and +-infinity as the strings ``"inf"`` / ``"-inf"`` so the
file is strict JSON; :func:`load_results` turns them back into floats.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import math
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearnkit.config import from_dict
from unlearnkit.errors import UnlearnError
from unlearnkit.evaluation.chance import chance_of, leak_rate
from unlearnkit.fsutil import atomic_write_text

SCHEMA_VERSION = 1
OBJECTIVES = ("forget", "utility", "boundary", "robustness")
SPLIT_OBJECTIVE = {"forget": "forget", "retain": "utility", "general": "utility",
                   "neighbor": "boundary", "probe": "boundary"}
# Metrics that measure knowledge of an item: on the forget split less is better.
KNOWLEDGE_METRICS = frozenset({
    "correctness", "rouge_l_recall", "answer_prob", "truth_ratio", "prob_normalised",
    "mcq_accuracy", "extraction_strength", "exact_memorization", "perplexity", "loss", "zlib",
    "min_k", "min_k_plus_plus", "mc_accuracy", "knowmem_rougeL", "verbmem_rougeL",
})
NEUTRAL_ON_FORGET = frozenset({"refusal_rate"})
REQUIRED_KEYS = ("config", "seed", "versions", "metrics")


def objective_of(split: str | None) -> str:
    """The objective a per-split metric serves (forget, utility, boundary); robustness else."""
    return SPLIT_OBJECTIVE.get(split or "", "robustness")


def direction(metric: str, split: str | None, higher_is_better: bool) -> bool | None:
    """The desired direction of ``metric`` on ``split`` (None: no preferred direction)."""
    if split != "forget":
        return higher_is_better
    if metric in NEUTRAL_ON_FORGET:
        return None
    return not higher_is_better if metric in KNOWLEDGE_METRICS else higher_is_better


@dataclass
class MetricRecord:
    """One metric on one item set: per-item ``values`` (NaN where undefined) with their
    ``ids``, the ``aggregate``, its desired direction and the ``objective`` it serves."""

    metric: str
    objective: str
    aggregate: float | None
    higher_is_better: bool | None
    n: int
    values: list[float | None] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    split: str | None = None

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise UnlearnError(f"metric {self.metric!r}: objective {self.objective!r} is not "
                               f"one of {', '.join(OBJECTIVES)}")
        self.aggregate = math.nan if self.aggregate is None else float(self.aggregate)
        self.values = [math.nan if v is None else float(v) for v in self.values]


@dataclass
class AttackRecord:
    """One attack's outcome (see :func:`~unlearnkit.evaluation.attacks.run_attacks`)."""

    success_rate: float | None
    n: int
    kind: str = ""
    family: str = ""
    items: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    chance: float | None = None  # a choice attack's guessing rate (unlearnkit.evaluation.chance)

    def guess_rate(self) -> float | None:
        """A choice attack's guessing rate (recorded, or from its items in files written
        before it was recorded); None for other attacks."""
        if self.kind != "choice":
            return None
        return self.chance if self.chance is not None else chance_of(self.items)

    def leak_rate(self) -> float | None:
        """The rate the attack is judged by: the success rate, or a choice attack's rate above
        chance floored at 0."""
        return leak_rate(self.success_rate, self.guess_rate())


@dataclass
class EvalResults:
    """Everything one ``unlearn eval`` run produced; one JSON file per model and dataset.

    ``timings`` has the seconds of every finished step (a metric on a split, an attack, a
    protocol); a step is finished exactly when it has a timing, which is what resuming checks.
    ``skipped`` names steps that could not run and why. ``generations`` keeps, per split,
    ``{id, question, reference, generation}`` for every item that was generated.
    """

    schema_version: int = SCHEMA_VERSION
    name: str = ""
    created: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    versions: dict[str, str | None] = field(default_factory=dict)
    git_commit: str | None = None
    data_fingerprint: str | None = None
    metrics: dict[str, MetricRecord] = field(default_factory=dict)
    attacks: dict[str, AttackRecord] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    generations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    diagnostics: dict[str, Any] | None = None

    def done(self, step: str) -> bool:
        return step in self.timings

    def worst_attack(self) -> tuple[str | None, float | None]:
        """The attack with the highest leak rate (:meth:`AttackRecord.leak_rate`) and that rate
        (None, None without any)."""
        rates = {k: a.leak_rate() for k, a in self.attacks.items() if a.leak_rate() is not None}
        if not rates:
            return None, None
        worst = max(rates, key=rates.__getitem__)
        return worst, rates[worst]

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(dataclasses.asdict(self))


def new_results(config: dict[str, Any], *, seed: int, name: str = "",
                data_fingerprint: str | None = None) -> EvalResults:
    """Fresh results stamped with versions, git commit and the current UTC time."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return EvalResults(config=config, seed=seed, versions=package_versions(),
                       git_commit=git_commit(), name=name, created=now,
                       data_fingerprint=data_fingerprint)


def _json_safe(obj: Any) -> Any:
    """NaN -> None, +-inf -> "inf"/"-inf", recursively (strict JSON)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def save_results(path: str | Path, results: EvalResults) -> None:
    """Write ``results`` to ``path`` atomically (complete or absent, never half-written)."""
    atomic_write_text(path, json.dumps(results.to_dict(), indent=1, allow_nan=False) + "\n")


def load_results(path: str | Path) -> EvalResults:
    """Read a results file; a clear :class:`UnlearnError` when it is missing, not JSON, of
    another schema version, or malformed."""
    data = read_json(path)
    version = data.get("schema_version")
    if version is None:
        raise UnlearnError(f"{path} is not an unlearnkit results file (no schema_version); "
                           "write one with: unlearn eval MODEL --data DATASET")
    if version != SCHEMA_VERSION:
        raise UnlearnError(f"{path} has results schema version {version!r}; this unlearnkit "
                           f"reads version {SCHEMA_VERSION}: re-run unlearn eval with --recompute")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise UnlearnError(f"{path} is a malformed results file: missing {', '.join(missing)}")
    try:
        return from_dict(EvalResults, data)
    except UnlearnError as exc:
        raise UnlearnError(f"{path} is a malformed results file: {exc}") from None


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON object from ``path``, or a one-line :class:`UnlearnError` naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise UnlearnError(f"results file {path} not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UnlearnError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise UnlearnError(f"{path} is not UTF-8 text") from None
    if not isinstance(data, dict):
        raise UnlearnError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


# ------------------------------------------------------------------ provenance


def package_versions() -> dict[str, str | None]:
    """Versions of python, unlearnkit, torch and transformers (None when not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("unlearnkit", "torch", "transformers"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(start: str | Path | None = None) -> str | None:
    """The commit checked out in the git repository holding ``start`` (default: this file),
    read from ``.git`` without running git; None outside a git checkout."""
    here = Path(start or __file__).resolve()
    for folder in (here, *here.parents):
        git = folder / ".git"
        if git.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = git.read_text(encoding="utf-8", errors="replace").strip()
            if not text.startswith("gitdir:"):
                return None
            git = (folder / text.split(":", 1)[1].strip()).resolve()
        if git.is_dir():
            return _read_head(git)
    return None


def _is_sha(text: str) -> bool:
    return len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text)


def _read_head(git: Path) -> str | None:
    try:
        head = (git / "HEAD").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not head.startswith("ref:"):
        return head if _is_sha(head) else None
    ref = head[4:].strip()
    common = git / "commondir"
    bases = [git, (git / common.read_text().strip()).resolve()] if common.is_file() else [git]
    for base in bases:
        loose = base / ref
        if loose.is_file():
            sha = loose.read_text(encoding="utf-8").strip()
            return sha if _is_sha(sha) else None
        packed = base / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref and _is_sha(parts[0]):
                    return parts[0]
    return None
