"""`unlearn data standardize`: many source files -> one dataset folder of chat-QA records.

A dataset folder holds ``<split>.jsonl`` for each split present and ``manifest.json`` (format
version, record counts per split, the sources with their sha256). It is written to a temporary
folder and renamed into place, so a failed run leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from unlearnkit.data.adapters import load_source
from unlearnkit.data.records import (
    FORMAT_VERSION,
    SPLITS,
    Record,
    read_jsonl,
    records_to_jsonl,
    validate_records,
)
from unlearnkit.data.scenario import build_scenario, general_probes
from unlearnkit.errors import UnlearnError
from unlearnkit.fsutil import atomic_dir, check_replaceable


@dataclass
class SourceSpec:
    """One input: a file in a registered ``format`` (or ``format: scenario`` with no path)."""

    format: str
    path: str = ""
    split: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # "START:STOP": only the file's records at these positions (0-based, STOP excluded, either
    # may be left out), e.g. TOFU's first two authors "0:40" and the rest "40:"
    rows: str = ""

    def __post_init__(self) -> None:
        if self.rows:
            row_slice(self.rows)


def row_slice(text: str) -> slice:
    """``"START:STOP"`` (either part may be empty) as a slice; a clear error otherwise."""
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start, stop = (int(p) if p.strip() else None for p in parts)
    except ValueError:
        raise UnlearnError(f"source rows {text!r} is not START:STOP (e.g. '0:40' or '40:'); "
                           "give the 0-based positions of the first and after the last "
                           "record to keep") from None
    if any(v is not None and v < 0 for v in (start, stop)) or (
            start is not None and stop is not None and stop <= start):
        raise UnlearnError(f"source rows {text!r} must be 0 <= START < STOP")
    return slice(start, stop)


@dataclass
class DataConfig:
    """The ``data`` section: where records come from and where the dataset folder goes."""

    sources: list[SourceSpec] = field(
        default_factory=lambda: [SourceSpec(format="scenario")]
    )
    output: str = "runs/data"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_spec(spec: SourceSpec, base: Path) -> tuple[list[Record], dict]:
    """Records of one source, and its manifest entry."""
    if spec.format == "scenario":
        if spec.rows:
            raise UnlearnError("source rows applies to a file's records, not to format: "
                               "scenario; choose the scenario's people with its options")
        options = dict(spec.options)
        with_probes = options.pop("general_probes", True)
        try:
            records = build_scenario(**options).records
        except TypeError as exc:
            raise UnlearnError(f"scenario source: bad option ({exc})") from None
        records = records + (general_probes() if with_probes else [])
        return records, {"format": "scenario", "options": spec.options}
    if not spec.path:
        raise UnlearnError(f"source of format {spec.format!r} needs a 'path'")
    path = Path(spec.path) if Path(spec.path).is_absolute() else base / spec.path
    records = load_source(spec.format, path, split=spec.split, **spec.options)
    if spec.rows:
        records = records[row_slice(spec.rows)]
        if not records:
            raise UnlearnError(f"{spec.path}: rows {spec.rows!r} selects no record (the file "
                               "has fewer); check the positions")
    entry = {"format": spec.format, "path": spec.path, "split": spec.split,
             "options": spec.options, "sha256": _sha256(path), "n": len(records)}
    if spec.rows:
        entry["rows"] = spec.rows
    return records, entry


def gather(cfg: DataConfig, base: Path = Path()) -> tuple[list[Record], list[dict]]:
    if not cfg.sources:
        raise UnlearnError("data.sources is empty: list at least one source")
    records, entries = [], []
    for spec in cfg.sources:
        recs, entry = load_spec(spec, base)
        records += recs
        entries.append(entry)
    return validate_records(records), entries


DATASET_MARKERS = ("manifest.json",)  # what an earlier dataset folder holds


def write_dataset(records: list[Record], out: Path, sources: list[dict]) -> Path:
    """Write records to ``out`` (replacing it atomically) and return the folder."""
    with atomic_dir(out, expect=DATASET_MARKERS) as tmp:
        counts = {}
        for split in SPLITS:
            part = [r for r in records if r.split == split]
            if part:
                (tmp / f"{split}.jsonl").write_text(records_to_jsonl(part), encoding="utf-8")
                counts[split] = len(part)
        manifest = {"format_version": FORMAT_VERSION, "counts": counts, "sources": sources}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out


def standardize(cfg: DataConfig, base: Path = Path()) -> Path:
    check_replaceable(cfg.output, DATASET_MARKERS)  # before any work
    records, sources = gather(cfg, base)
    return write_dataset(records, Path(cfg.output), sources)


def load_dataset(folder: str | Path) -> list[Record]:
    """Read a dataset folder back (same records, same order within each split)."""
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise UnlearnError(f"{folder} is not a dataset folder (no manifest.json); "
                           "create one with: unlearn data standardize CONFIG")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        manifest = None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("counts"), dict):
        raise UnlearnError(f"{manifest_path} is not a dataset manifest (damaged or edited): "
                           "write the folder again with unlearn data standardize CONFIG")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise UnlearnError(f"{folder} has format version {manifest.get('format_version')}, "
                           f"this unlearnkit reads {FORMAT_VERSION}; standardize it again")
    records = []
    for split in manifest["counts"]:
        records += read_jsonl(folder / f"{split}.jsonl")
    return records


def manifest_dict(cfg: DataConfig) -> dict:
    return asdict(cfg)
