"""`unlearn data standardize`: many source files -> one dataset folder of chat-QA records.

A dataset folder holds ``<split>.jsonl`` for each split present and ``manifest.json`` (format
version, record counts per split, the sources with their sha256). It is written to a temporary
folder and renamed into place, so a failed run leaves nothing half-written.

Relative source paths start at ``base`` (the CLI passes the current folder, not the data
config's folder). Record ids are made unique across sources by :func:`unique_ids`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from unlearnkit.data.adapters import (
    GeneratedId,
    load_source,
    tag_generated_id,
    where_paths_start,
)
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
    """Every source's records (ids unique, validated) and the sources' manifest entries."""
    if not cfg.sources:
        raise UnlearnError("data.sources is empty: list at least one source")
    loaded = [load_spec(spec, base) for spec in cfg.sources]
    records = unique_ids(cfg.sources, [recs for recs, _ in loaded], [e for _, e in loaded])
    return validate_records(records), [entry for _, entry in loaded]


def unique_ids(specs: list[SourceSpec], parts: list[list[Record]],
               entries: list[dict]) -> list[Record]:
    """The sources' records (``parts``, one list per spec) with ids unique across sources.

    An id written in a file is kept and must be unique (else an error naming both files). A
    generated id (``<format>-<file stem>-<n>``) is kept unless another source has it already:
    then all of that source's generated ids get its split after the stem
    (``qa-train-retain-0``), or, if those are taken too, ``s<k>``, its position in the sources
    from 1 (``qa-train-s3-0``); the tag is recorded in the source's manifest entry as
    ``id_tag``. Ids that never collide, like TOFU's ``tofu-forget01-0``, never change.
    """
    taken = _written_ids(specs, parts)
    out: list[Record] = []
    for k, (spec, records, entry) in enumerate(zip(specs, parts, entries, strict=True), 1):
        records, tag = _free_generated_ids(spec, k, records, taken)
        if tag:
            entry["id_tag"] = tag
        taken.update((r.id, _describe(spec, k)) for r in records
                     if isinstance(r.id, GeneratedId))
        out += [replace(r, id=str(r.id)) for r in records]  # plain strings from here on
    return out


def _describe(spec: SourceSpec, k: int) -> str:
    """Source ``k`` (from 1) as the user wrote it, for messages: its path and position."""
    return f"{spec.path or spec.format + ' source'} (source {k})"


def _written_ids(specs: list[SourceSpec], parts: list[list[Record]]) -> dict[str, str]:
    """Id -> its source, for every id written in a file (not generated); a clear error when
    one appears twice, since only the user can say which of the two should change."""
    owner: dict[str, str] = {}
    for k, (spec, records) in enumerate(zip(specs, parts, strict=True), 1):
        where = _describe(spec, k)
        for rec in records:
            if isinstance(rec.id, GeneratedId):
                continue
            if rec.id in owner:
                places = f"twice in {where}" if owner[rec.id] == where \
                    else f"in both {owner[rec.id]} and {where}"
                raise UnlearnError(
                    f"duplicate record id {rec.id!r} {places}: ids given in the data must be "
                    "unique across all sources; change one of them, or leave the id out so "
                    "that unlearnkit numbers the records")
            owner[rec.id] = where
    return owner


def _free_generated_ids(spec: SourceSpec, k: int, records: list[Record],
                        taken: dict[str, str]) -> tuple[list[Record], str | None]:
    """``records`` with their generated ids re-tagged if any is ``taken`` (see
    :func:`unique_ids`), and the tag used (None: unchanged)."""
    generated = [r.id for r in records if isinstance(r.id, GeneratedId)]
    clash = next((rid for rid in generated if rid in taken), None)
    if clash is None:
        return records, None
    for tag in (records[0].split, f"s{k}"):
        new = {rid: tag_generated_id(rid, spec.format, spec.path, tag) for rid in generated}
        if not any(rid in taken for rid in new.values()):
            return [replace(r, id=new[r.id]) if isinstance(r.id, GeneratedId) else r
                    for r in records], tag
    raise UnlearnError(
        f"record id {clash!r} of {_describe(spec, k)} is also in {taken[clash]}, and tagging it "
        f"({new[clash]!r}) collides too; rename one of the files or give the records ids")


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
    """Read a dataset folder back (same records, same order within each split), checked
    against its manifest: each split file holds as many records as the manifest counts, all
    of that split, and no id appears twice; a folder edited since it was written fails here,
    naming the file. (Questions in both forget and another split are for the commands that
    train to refuse: :func:`~unlearnkit.data.records.validate_records`.)"""
    folder = Path(folder)
    if not folder.exists():
        raise UnlearnError(f"{folder} is not a dataset folder (it does not exist); "
                           f"{where_paths_start(folder, 'config')}")
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
    unlisted = [f"{s}.jsonl" for s in SPLITS
                if s not in manifest["counts"] and (folder / f"{s}.jsonl").exists()]
    if unlisted:
        raise UnlearnError(f"{folder} holds {', '.join(unlisted)}, which manifest.json does not "
                           f"list (edited by hand?); {RESTANDARDIZE}")
    records, where = [], {}
    for split, count in _manifest_counts(manifest, manifest_path).items():
        path = folder / f"{split}.jsonl"
        for rec in _read_split(path, split, count):
            if rec.id in where:
                twice = "twice in" if where[rec.id] == path else f"in both {where[rec.id]} and"
                raise UnlearnError(f"record id {rec.id!r} appears {twice} {path}: ids must be "
                                   f"unique; {RESTANDARDIZE}")
            where[rec.id] = path
            records.append(rec)
    return records


RESTANDARDIZE = ("fix the sources and write the folder again with unlearn data standardize "
                 "CONFIG, rather than editing its files")


def _manifest_counts(manifest: dict, path: Path) -> dict[str, int]:
    """The manifest's record count per split, checked."""
    counts = manifest["counts"]
    for split, count in counts.items():
        if split not in SPLITS or isinstance(count, bool) or not isinstance(count, int):
            raise UnlearnError(f"{path} is not a dataset manifest (damaged or edited: counts "
                               f"{split!r}: {count!r}); write the folder again with unlearn "
                               "data standardize CONFIG")
    return counts


def _read_split(path: Path, split: str, count: int) -> list[Record]:
    """The records of ``<split>.jsonl``: as many as the manifest says, all of that split."""
    if not path.is_file():
        raise UnlearnError(f"{path} is missing, and manifest.json beside it lists {count} "
                           f"{split} records; {RESTANDARDIZE}")
    records = read_jsonl(path)
    if len(records) != count:
        raise UnlearnError(f"{path} holds {len(records)} records and manifest.json says {count} "
                           f"(edited since it was written?); {RESTANDARDIZE}")
    for rec in records:
        if rec.split != split:
            raise UnlearnError(f"{path}: record {rec.id!r} has split {rec.split!r} but is in "
                               f"the {split} file; {RESTANDARDIZE}")
    return records


def manifest_dict(cfg: DataConfig) -> dict:
    return asdict(cfg)
