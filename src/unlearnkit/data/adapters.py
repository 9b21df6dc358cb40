"""Source adapters: one small function per source format, each returning :class:`Record` s.

Register an adapter with ``@register_adapter("name")`` next to its definition; call it through
:func:`load_source`, which checks the format name, the path and the options first. Every problem
a user can fix (missing, empty or non-UTF-8 file, malformed JSON or CSV, a missing field, an
unknown column) raises :class:`UnlearnError` naming the file, the line or item, and the fix.

Formats: ``tofu``, ``qa``, ``mcq``, ``text``, ``chat``, ``xstest`` (see each function).
Multiple-choice questions keep only the question text; :func:`format_mcq` renders the options.

Record ids: an id the file gives (an ``id`` column or field) is kept as written; otherwise the
adapter numbers the records ``<format>-<file stem>-<n>`` (:func:`generated_id`). Such an id is a
:class:`GeneratedId`, so that :func:`unlearnkit.data.standardize.gather` can tell it from a
written one and re-tag it (:func:`tag_generated_id`) when two sources' files share a stem.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from unlearnkit.data.rawtext import (
    QAGenerator,
    no_pairs_reason,
    passages_to_records,
    resolve_generator,
)
from unlearnkit.data.records import SPLITS, Record
from unlearnkit.errors import UnlearnError

Adapter = Callable[..., list[Record]]
ADAPTERS: dict[str, Adapter] = {}
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
Row = tuple[str, dict[str, Any]]  # (where: "file:line" or "file item n", the row's fields)


def register_adapter(name: str) -> Callable[[Adapter], Adapter]:
    """Register ``fn(path, *, split, **options) -> list[Record]`` as source format ``name``."""

    def decorator(fn: Adapter) -> Adapter:
        if name in ADAPTERS:
            raise ValueError(f"source format {name!r} is registered twice")
        ADAPTERS[name] = fn
        return fn

    return decorator


def load_source(
    format: str, path: str | Path, *, split: str | None = None, **options: Any
) -> list[Record]:
    """Load ``path`` in source ``format`` as records of ``split``.

    ``split=None`` uses the adapter's default (only ``xstest`` has one: ``"probe"``).
    """
    if format not in ADAPTERS:
        raise UnlearnError(f"unknown source format {format!r}; choose one of {sorted(ADAPTERS)}")
    fn = ADAPTERS[format]
    params = inspect.signature(fn).parameters
    if split is None:
        split = params["split"].default
        if split is inspect.Parameter.empty:
            raise UnlearnError(f"source format {format!r} needs a split: one of {SPLITS}")
    if split not in SPLITS:
        raise UnlearnError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    known = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n != "split"]
    for name in options:
        if name not in known:
            raise UnlearnError(
                f"source format {format!r} has no option {name!r}; its options: {known or 'none'}"
            )
    return fn(_check_file(path), split=split, **options)


def format_mcq(question: str, choices: list[str]) -> str:
    """Render a multiple-choice prompt: the question, one lettered line per choice, an instruction.

    >>> print(format_mcq("2+2?", ["3", "4"]))
    2+2?
    A. 3
    B. 4
    Answer with the letter.
    """
    if not choices:
        raise UnlearnError(f"question {question!r} has no choices; give at least two")
    if len(choices) > len(LETTERS):
        raise UnlearnError(f"question {question!r} has {len(choices)} choices; at most 26")
    lines = [question.strip()]
    lines += [f"{LETTERS[i]}. {choice}" for i, choice in enumerate(choices)]
    lines.append("Answer with the letter.")
    return "\n".join(lines)


def as_asked(record: Record) -> Record:
    """The record as a model is asked it: a multiple-choice record
    (:attr:`Record.multiple_choice`) with its lettered options in the question."""
    if not record.multiple_choice:
        return record
    return replace(record, question=format_mcq(record.question, record.choices))


# ----------------------------------------------------------------------------- record ids


class GeneratedId(str):
    """A record id an adapter made up (``<format>-<file stem>-<n>``), not one read from the file.

    It is a plain ``str`` in every use (equality, hashing, JSON); the type only marks the ids
    that :func:`unlearnkit.data.standardize.gather` may re-tag when two sources collide, since
    an id the user wrote must never change behind their back.
    """

    __slots__ = ()


def id_prefix(format: str, path: str | Path) -> str:
    """What every id generated for ``path`` starts with: ``<format>-<file stem>``."""
    return f"{format}-{Path(path).stem}"


def generated_id(format: str, path: str | Path, n: int) -> GeneratedId:
    """The id of the ``n``-th record (from 0) of ``path``: ``<format>-<file stem>-<n>``."""
    return GeneratedId(f"{id_prefix(format, path)}-{n}")


def tag_generated_id(record_id: GeneratedId, format: str, path: str | Path,
                     tag: str) -> GeneratedId:
    """``<format>-<stem>-<rest>`` -> ``<format>-<stem>-<tag>-<rest>``: the same numbering, told
    apart from another source's whose file has the same stem (``qa-train-retain-0``)."""
    prefix = id_prefix(format, path)
    if not record_id.startswith(prefix + "-"):
        raise ValueError(f"{record_id!r} is not an id generated for {format} {path}")
    return GeneratedId(f"{prefix}-{tag}{record_id[len(prefix):]}")


def _given_or_generated(raw_id: Any, format: str, path: Path, n: int) -> str:
    """The id the file gives (as a string), else the generated one."""
    return str(raw_id) if raw_id not in (None, "") else generated_id(format, path, n)


# ----------------------------------------------------------------------------- reading files


def _check_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise UnlearnError(f"data file {path} not found; {where_paths_start(path)}")
    if not path.is_file():
        raise UnlearnError(f"data path {path} is not a file; give the path of a data file")
    return path


def where_paths_start(path: Path, config: str = "data config") -> str:
    """The fix for a path that is not there. A relative one starts at the current folder, not
    at the folder of the ``config`` that names it (presets rely on that), which is easy to miss
    when running from elsewhere."""
    if path.is_absolute():
        return "check the path"
    return (f"check the path: a relative path starts at the current folder ({Path.cwd()}), not "
            f"at the {config}'s folder; give an absolute path or run from the folder the "
            "paths are relative to")


def _read_text(path: Path) -> str:
    """The file's text, strictly UTF-8 (a leading byte-order mark is dropped); never empty."""
    data = _check_file(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnlearnError(
            f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "re-encode it as UTF-8, e.g. iconv -f latin1 -t utf-8"
        ) from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise UnlearnError(f"{path} is empty; give a file with at least one record")
    return text


def _read_json_objects(path: Path) -> list[Row]:
    """Objects from a JSON array or from JSON lines (one object a line)."""
    text = _read_text(path)
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UnlearnError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg})") from None
        rows = [(f"{path} item {i}", item) for i, item in enumerate(items, 1)]
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                rows.append((f"{path}:{n}", _json_line(path, n, line, text)))
    for where, item in rows:
        if not isinstance(item, dict):
            raise UnlearnError(f"{where}: expected a JSON object, got {type(item).__name__}")
    if not rows:
        raise UnlearnError(f"{path} holds no records (an empty JSON array)")
    return rows


def _json_line(path: Path, n: int, line: str, text: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        hint = "; each line must be one JSON object (JSON lines) or the file one JSON array"
        if n == 1:
            try:
                if isinstance(json.loads(text), dict):
                    hint = "; the file is one JSON object: put the records in a JSON array"
            except json.JSONDecodeError:
                pass
        raise UnlearnError(f"{path}:{n}: malformed JSON ({exc.msg}){hint}") from None


def _read_csv(path: Path) -> list[tuple[int, list[str]]]:
    """Non-blank CSV rows with the line number each starts on."""
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows, line = [], 1
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append((line, row))
            line = reader.line_num + 1
    except csv.Error as exc:
        raise UnlearnError(
            f"{path}:{line}: malformed CSV ({exc}); quote fields holding commas, quotes or "
            'newlines with double quotes and double any quote inside them ("")'
        ) from None
    if not rows:
        raise UnlearnError(f"{path} holds no CSV rows; give a header and at least one data row")
    return rows


def _read_csv_dicts(path: Path) -> tuple[list[str], list[Row]]:
    """The header and one dict per data row; every row must have as many fields as the header."""
    rows = _read_csv(path)
    (_, header), body = rows[0], rows[1:]
    header = [h.strip() for h in header]
    out = []
    for line, row in body:
        if len(row) != len(header):
            raise UnlearnError(
                f"{path}:{line}: malformed CSV: row has {len(row)} fields but the header has "
                f"{len(header)}; quote fields that contain commas"
            )
        out.append((f"{path}:{line}", dict(zip(header, row, strict=True))))
    if not out:
        raise UnlearnError(f"{path} has a header but no data rows")
    return header, out


def _read_table(path: Path) -> tuple[list[str], list[Row]]:
    """Rows of a CSV file (by suffix) or of a JSON / JSON-lines file, and the columns present."""
    if path.suffix.lower() == ".csv":
        return _read_csv_dicts(path)
    rows = _read_json_objects(path)
    present: dict[str, None] = {}
    for _, row in rows:
        present.update(dict.fromkeys(row))
    return list(present), rows


def _require_columns(path: Path, present: list[str], required: list[str]) -> None:
    missing = [c for c in required if c not in present]
    if missing:
        raise UnlearnError(f"{path}: missing column(s) {missing}; columns present: {present}")


# ----------------------------------------------------------------------------- field helpers


def _require_str(row: dict, key: str, where: str) -> str:
    if key not in row or row[key] is None:
        raise UnlearnError(
            f"{where}: missing required field {key!r}; fields present: {sorted(row)}"
        )
    value = row[key]
    if isinstance(value, str) and not value.strip():
        raise UnlearnError(f"{where}: required field {key!r} is empty; fill it in or drop the row")
    if not isinstance(value, str):
        raise UnlearnError(f"{where}: field {key!r} must be a string, got {value!r}")
    return value


def _opt_str(row: dict, key: str, where: str) -> str | None:
    value = row.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise UnlearnError(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
    return value


def _str_list(row: dict, key: str, where: str) -> list[str]:
    """A list of strings; a single string becomes a one-item list, a CSV cell may hold JSON."""
    value = row.get(key)
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise UnlearnError(f"{where}: field {key!r} is not a JSON list ({exc.msg})") from None
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UnlearnError(f"{where}: field {key!r} must be a string or a list of strings")
    return value


def _answer_index(value: Any, n_choices: int, where: str) -> int:
    """An answer given as an index (int or digit string) or as a letter A, B, ..."""
    text = value.strip() if isinstance(value, str) else None
    if isinstance(value, int) and not isinstance(value, bool):
        index = value
    elif text and text.isdigit():
        index = int(text)
    elif text and len(text) == 1 and text.upper() in LETTERS:
        index = LETTERS.index(text.upper())
    else:
        raise UnlearnError(f"{where}: answer {value!r} is not a choice index or letter")
    if not 0 <= index < n_choices:
        raise UnlearnError(
            f"{where}: answer {value!r} is outside the {n_choices} choices "
            f"(use 0-{n_choices - 1} or A-{LETTERS[n_choices - 1]})"
        )
    return index


def _make_record(where: str, **fields: Any) -> Record:
    try:
        return Record(**fields)
    except UnlearnError as exc:
        raise UnlearnError(f"{where}: {exc}") from None


# ----------------------------------------------------------------------------- adapters

_TOFU_FIELDS = ("question", "answer", "paraphrased_answer", "perturbed_answer",
                "paraphrased_question", "subject")


@register_adapter("tofu")
def read_tofu(path: Path, *, split: str) -> list[Record]:
    """TOFU QA, a JSON array or JSON lines. Ids ``tofu-<stem>-<n>`` (n from 0, generated).

    Fields: question, answer (required); paraphrased_answer, perturbed_answer (list),
    paraphrased_question (str or list), subject; any other field goes to ``meta``.
    """
    records = []
    for n, (where, row) in enumerate(_read_json_objects(path)):
        records.append(_make_record(
            where,
            id=generated_id("tofu", path, n),
            split=split,
            question=_require_str(row, "question", where),
            answer=_require_str(row, "answer", where),
            paraphrased_questions=_str_list(row, "paraphrased_question", where),
            paraphrased_answer=_opt_str(row, "paraphrased_answer", where),
            perturbed_answers=_str_list(row, "perturbed_answer", where),
            subject=_opt_str(row, "subject", where),
            source=path.name,
            meta={k: v for k, v in row.items() if k not in _TOFU_FIELDS},
        ))
    return records


_QA_STR = ("question", "answer", "system", "paraphrased_answer", "subject")
_QA_LIST = ("paraphrased_questions", "perturbed_answers", "choices", "targets")
_QA_FIELDS = ("id", *_QA_STR, *_QA_LIST, "answer_index")


def _column_map(path: Path, present: list[str], columns: dict[str, str] | None) -> dict:
    """Record field -> source column: the given map plus same-named columns not used by it."""
    columns = columns or {}
    if not isinstance(columns, dict) or not all(isinstance(c, str) for c in columns.values()):
        raise UnlearnError(
            f"columns: expected a mapping of record field -> column name, got {columns!r}"
        )
    for field_name, column in columns.items():
        if field_name not in _QA_FIELDS:
            raise UnlearnError(
                f"columns: {field_name!r} is not a record field; map one of {list(_QA_FIELDS)}"
            )
        if column not in present:
            raise UnlearnError(
                f"columns: column {column!r} (for {field_name!r}) is not in {path}; "
                f"columns present: {present}"
            )
    used = set(columns.values())
    defaults = {f: f for f in _QA_FIELDS if f in present and f not in columns and f not in used}
    return {**defaults, **columns}


@register_adapter("qa")
def read_qa(path: Path, *, split: str, columns: dict[str, str] | None = None,
       require_answer: bool = True) -> list[Record]:
    """Generic QA from CSV (by suffix) or JSON / JSON lines.

    ``columns`` maps record fields to source columns, e.g. ``{"question": "prompt"}``; columns
    named like a record field map themselves. List fields accept a JSON list in a CSV cell.
    Unmapped columns go to ``meta``. Ids come from the ``id`` column or are ``qa-<stem>-<n>``.
    """
    present, rows = _read_table(path)
    mapping = _column_map(path, present, columns)
    needed = ["question", "answer"] if require_answer else ["question"]
    for field_name in needed:
        if field_name not in mapping:
            raise UnlearnError(
                f"{path}: no column for {field_name!r}; columns present: {present}; "
                f"map one with columns={{'{field_name}': '<column>'}}"
            )
    return [_qa_record(path, n, where, row, mapping, split, needed)
            for n, (where, row) in enumerate(rows)]


def _qa_record(path: Path, n: int, where: str, row: dict, mapping: dict, split: str,
               needed: list[str]) -> Record:
    """One record; errors name the source column, as the user wrote it."""
    for field_name in needed:
        _require_str(row, mapping[field_name], where)
    fields: dict[str, Any] = {}
    for field_name, column in mapping.items():
        if field_name in _QA_STR:
            fields[field_name] = _opt_str(row, column, where)
        elif field_name in _QA_LIST:
            fields[field_name] = _str_list(row, column, where)
    raw_index = row.get(mapping.get("answer_index", ""))
    if raw_index not in (None, ""):
        if not fields.get("choices"):
            raise UnlearnError(f"{where}: an answer_index needs choices; map a 'choices' column")
        fields["answer_index"] = _answer_index(raw_index, len(fields["choices"]), where)
    raw_id = row.get(mapping.get("id", ""))
    fields["id"] = _given_or_generated(raw_id, "qa", path, n)
    used = set(mapping.values())
    meta = {k: v for k, v in row.items() if k not in used}
    return _make_record(where, split=split, source=path.name, meta=meta, **fields)


@register_adapter("mcq")
def read_mcq(path: Path, *, split: str, columns: dict | None = None) -> list[Record]:
    """Multiple choice: MMLU-style CSV or WMDP-style JSON / JSON lines.

    CSV: ``question,choice0..choiceN,answer`` with a header row, or the same columns without
    one (original MMLU); ``answer`` is an index from 0 or a letter. JSON: objects with
    ``question``, ``choices`` (list) and ``answer`` (index or letter). The record's ``answer``
    is the correct choice's text; ``question`` stays bare (render it with :func:`format_mcq`).
    Ids ``mcq-<stem>-<n>`` (generated).

    ``columns`` names other fields or columns: ``question`` and ``answer`` -> a column or
    field name, ``choices`` -> a JSON field (a list) or, for a CSV with a header, a list of
    columns in choice order, e.g. ``{question: prompt, choices: [opt_a, opt_b], answer: key}``.
    """
    columns = _mcq_columns(path, columns)
    rows = (_mcq_csv_rows(path, columns) if path.suffix.lower() == ".csv"
            else _mcq_json_rows(path, columns))
    category = re.sub(r"_(test|dev|val|validation|train)$", "", path.stem)
    records = []
    for n, (where, question, choices, answer) in enumerate(rows):
        index = _answer_index(answer, len(choices), where)
        records.append(_make_record(
            where, id=generated_id("mcq", path, n), split=split, question=question,
            answer=choices[index], choices=choices, answer_index=index,
            source=path.name, meta={"category": category},
        ))
    return records


_MCQ_FIELDS = ("question", "choices", "answer")


def _mcq_columns(path: Path, columns: dict | None) -> dict:
    """The mcq column map, checked: field -> name (``choices`` may be a list of names)."""
    columns = columns or {}
    if not isinstance(columns, dict):
        raise UnlearnError(f"{path}: columns: expected a mapping of {list(_MCQ_FIELDS)} -> "
                           f"column name, got {columns!r}")
    for key, value in columns.items():
        if key not in _MCQ_FIELDS:
            raise UnlearnError(f"{path}: columns: {key!r} is not a multiple-choice field; map "
                               f"one of {list(_MCQ_FIELDS)}")
        names = value if key == "choices" and isinstance(value, list) else [value]
        if not names or not all(isinstance(n, str) and n for n in names):
            also = " (or, for choices, a list of columns)" if key == "choices" else ""
            raise UnlearnError(f"{path}: columns: {key} must name a column{also}, "
                               f"got {value!r}")
    return columns


def _mcq_json_rows(path: Path, columns: dict) -> list[tuple[str, str, list[str], Any]]:
    q_key, a_key = columns.get("question", "question"), columns.get("answer", "answer")
    c_key = columns.get("choices", "choices")
    if not isinstance(c_key, str):
        raise UnlearnError(f"{path}: columns: choices must name one field holding the list in "
                           f"JSON, got {c_key!r}")
    out = []
    for where, row in _read_json_objects(path):
        question = _require_str(row, q_key, where)
        choices = _str_list(row, c_key, where)
        if len(choices) < 2:
            raise UnlearnError(f"{where}: field {c_key!r} needs a list of at least two strings")
        if a_key not in row:
            raise UnlearnError(f"{where}: missing required field {a_key!r} (the correct index)")
        out.append((where, question, choices, row[a_key]))
    return out


def _mcq_csv_rows(path: Path, columns: dict) -> list[tuple[str, str, list[str], Any]]:
    if columns:
        return _mcq_mapped_csv_rows(path, columns)
    rows = _read_csv(path)
    first = [cell.strip().lower() for cell in rows[0][1]]
    has_header = "question" in first and "answer" in first
    if not has_header:  # positional: question, choices..., answer
        width = len(rows[0][1])
        out = []
        for line, row in rows:
            if len(row) != width or width < 4:
                raise UnlearnError(
                    f"{path}:{line}: malformed CSV: expected question, 2+ choices and answer "
                    f"({width} fields like the first row), got {len(row)} fields"
                )
            out.append((f"{path}:{line}", row[0], row[1:-1], row[-1]))
        return out
    header, dict_rows = _read_csv_dicts(path)
    choice_cols = [h for h in header if re.fullmatch(r"(?i)choice\d+|[A-Z]", h)]
    if len(choice_cols) < 2:
        raise UnlearnError(
            f"{path}: no choice columns; name them choice0, choice1, ... (or A, B, ...); "
            f"columns present: {header}"
        )
    q_col = header[first.index("question")]
    a_col = header[first.index("answer")]
    return _mcq_dict_rows(dict_rows, q_col, choice_cols, a_col)


def _mcq_mapped_csv_rows(path: Path, columns: dict) -> list[tuple[str, str, list[str], Any]]:
    """A CSV with a header whose columns ``columns`` names (choices: a list of columns)."""
    header, dict_rows = _read_csv_dicts(path)
    choice_cols = columns.get("choices")
    if choice_cols is None:
        choice_cols = [h for h in header if re.fullmatch(r"(?i)choice\d+|[A-Z]", h)]
    elif isinstance(choice_cols, str):
        raise UnlearnError(f"{path}: columns: choices must list the CSV's choice columns in "
                           f"order, e.g. [A, B, C, D], got {choice_cols!r}")
    if len(choice_cols) < 2:
        raise UnlearnError(f"{path}: columns: name at least two choice columns (choices: "
                           f"[...]); columns present: {header}")
    q_col, a_col = columns.get("question", "question"), columns.get("answer", "answer")
    _require_columns(path, header, [q_col, *choice_cols, a_col])
    return _mcq_dict_rows(dict_rows, q_col, choice_cols, a_col)


def _mcq_dict_rows(dict_rows, q_col: str, choice_cols: list[str], a_col: str) -> list:
    out = []
    for where, row in dict_rows:
        question = _require_str(row, q_col, where)
        out.append((where, question, [row[c] for c in choice_cols], row[a_col]))
    return out


@register_adapter("text")
def read_text_corpus(path: Path, *, split: str,
                     generator: str | dict | QAGenerator | None = None,
                     subject: str | None = None, text_field: str = "text") -> list[Record]:
    """Raw text turned into QA by :func:`unlearnkit.data.rawtext.passages_to_records`.

    ``.json`` / ``.jsonl``: one passage per object, in ``text_field``; any other suffix: plain
    text with passages separated by blank lines. Each record keeps its passage in
    ``meta["passage"]``. ``generator``: None or "template" (offline), a mapping (a YAML
    config: ``{kind: openai, ...}`` or ``{kind: hf, ...}``, :func:`~unlearnkit.data.rawtext.
    generator_from_config`) or a QAGenerator. Ids ``text-<stem>-<n>`` (generated).
    """
    if path.suffix.lower() in (".json", ".jsonl"):
        passages = [_require_str(row, text_field, where)
                    for where, row in _read_json_objects(path)]
    else:
        chunks = re.split(r"\n\s*\n", _read_text(path))
        passages = [" ".join(c.split()) for c in chunks if c.strip()]
    gen = resolve_generator(generator, subject)
    records = passages_to_records(passages, gen, split=split, source=path.name,
                                  subject=subject, id_prefix=id_prefix("text", path))
    if not records:
        raise UnlearnError(f"{path}: no QA pairs came out of {len(passages)} passage(s); "
                           f"{no_pairs_reason(gen)}")
    return [replace(r, id=GeneratedId(r.id)) for r in records]


@register_adapter("chat")
def read_chat(path: Path, *, split: str, require_answer: bool = True) -> list[Record]:
    """Chat logs, JSON lines (or array) with ``messages``: [{role, content}, ...].

    Every user turn becomes a record (:func:`_exchanges`): ``question`` is that turn alone (the
    earlier turns are not part of it), ``answer`` the assistant turn right after it, ``system``
    the conversation's first system message before it. A conversation's first exchange has its
    id (the ``id`` field, else ``chat-<stem>-<n>``); its k-th has that id + ``-turn<k>``.
    """
    records = []
    for n, (where, row) in enumerate(_read_json_objects(path)):
        conversation_id = _given_or_generated(row.get("id"), "chat", path, n)
        for k, (i, system, question, answer) in enumerate(_exchanges(row, where), 1):
            if answer is None and require_answer:
                raise UnlearnError(
                    f"{where}: no assistant turn after user turn {k} (messages[{i}]); add "
                    "one, drop the turn, or pass require_answer=False for prompts without a "
                    "reference answer"
                )
            records.append(_make_record(
                where, id=_turn_id(conversation_id, k), split=split, question=question,
                answer=answer, system=system, source=path.name,
            ))
    return records


def _turn_id(conversation_id: str, k: int) -> str:
    """The id of a conversation's ``k``-th exchange (from 1): the first keeps the conversation's
    id (as a one-exchange conversation always had it); a generated id stays generated."""
    if k == 1:
        return conversation_id
    return type(conversation_id)(f"{conversation_id}-turn{k}")


def _chat_messages(row: dict, where: str) -> list[dict]:
    """The row's ``messages``, checked: a list of {role, content} strings."""
    messages = row.get("messages")
    if not isinstance(messages, list):
        raise UnlearnError(f"{where}: missing required field 'messages' (a list of turns)")
    for i, msg in enumerate(messages):
        if not (isinstance(msg, dict) and isinstance(msg.get("role"), str)
                and isinstance(msg.get("content"), str)):
            raise UnlearnError(f"{where}: messages[{i}] needs string 'role' and 'content'")
    return messages


def _exchanges(row: dict, where: str) -> list[tuple[int, str | None, str, str | None]]:
    """(index of the user turn, system, question, answer or None) for every user turn.

    The answer is the next message only if it is an assistant's; the system is the first
    system message before the user turn. Other roles (tool, function) are skipped.
    """
    messages = _chat_messages(row, where)
    out, system = [], None
    for i, msg in enumerate(messages):
        if msg["role"] == "system" and system is None:
            system = msg["content"]
        if msg["role"] != "user":
            continue
        nxt = messages[i + 1] if i + 1 < len(messages) else None
        answer = nxt["content"] if nxt and nxt["role"] == "assistant" else None
        out.append((i, system, msg["content"], answer))
    if not out:
        raise UnlearnError(f"{where}: 'messages' has no user turn; add one with role 'user'")
    return out


@register_adapter("xstest")
def read_xstest(path: Path, *, split: str = "probe", label: str | None = None) -> list[Record]:
    """XSTest prompts (CSV id,prompt,type,label,focus,note) as probes without answers.

    ``label="safe"`` or ``"unsafe"`` keeps only those prompts. ``meta`` holds label, type, focus.
    """
    if label not in (None, "safe", "unsafe"):
        raise UnlearnError(f"xstest: label {label!r} must be 'safe', 'unsafe' or None (both)")
    header, rows = _read_csv_dicts(path)
    _require_columns(path, header, ["id", "prompt", "type", "label", "focus"])
    records = []
    for where, row in rows:
        row_label = row["label"].strip()
        if row_label not in ("safe", "unsafe"):
            raise UnlearnError(f"{where}: label {row_label!r} must be 'safe' or 'unsafe'")
        if label is not None and row_label != label:
            continue
        records.append(_make_record(
            where, id=f"xstest-{_require_str(row, 'id', where).strip()}", split=split,
            question=_require_str(row, "prompt", where), source=path.name,
            meta={"label": row_label, "type": row["type"], "focus": row["focus"]},
        ))
    return records


# the MUSE subsets' fields: (the record's question, answer) and the role they play by default
_MUSE_FIELDS = {("question", "answer"): "knowmem", ("prompt", "gt"): "verbmem",
                ("text", None): "passage"}
_MUSE_ROLES = {"knowmem": ("question", "answer"), "icl": ("question", "answer"),
               "verbmem": ("prompt", "gt"), "passage": ("text", None),
               "holdout": ("text", None)}


@register_adapter("muse")
def read_muse(path: Path, *, split: str, role: str = "") -> list[Record]:
    """A MUSE subset's split exported as JSON or JSON lines, for ``unlearn eval --suite muse``
    (:mod:`unlearnkit.evaluation.muse`). The fields say what it is: question/answer (knowmem),
    prompt/gt (verbmem: the prompt becomes the question, the true continuation the answer),
    text (privleak's passages). ``role`` overrides: ``icl`` for knowmem's few-shot examples
    (``forget_qa_icl``, ``retain_qa_icl``), ``holdout`` for privleak's never-seen passages.
    ``meta.muse`` holds the role; ids ``muse-<stem>-<n>``."""
    if role and role not in _MUSE_ROLES:
        raise UnlearnError(f"muse: role {role!r} is not one of {', '.join(_MUSE_ROLES)}")
    records = []
    for n, (where, row) in enumerate(_read_json_objects(path)):
        found = role or next((r for (q, a), r in _MUSE_FIELDS.items()
                              if q in row and (a is None or a in row)), "")
        if not found:
            raise UnlearnError(f"{where}: a MUSE row has question and answer (knowmem), prompt "
                               f"and gt (verbmem) or text (privleak); this one has "
                               f"{sorted(row)}")
        q_field, a_field = _MUSE_ROLES[found]
        used = {q_field, a_field}
        records.append(_make_record(
            where, id=generated_id("muse", path, n), split=split,
            question=_require_str(row, q_field, where),
            answer=_require_str(row, a_field, where) if a_field else None,
            source=path.name,
            meta={"muse": found, **{k: v for k, v in row.items() if k not in used}},
        ))
    return records
