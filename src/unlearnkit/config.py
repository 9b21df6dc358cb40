"""Typed configs: dataclasses loaded from YAML with strict validation and dotted overrides.

Every config section is a dataclass. :func:`from_dict` builds one from plain data and rejects
unknown keys and wrong types naming the full dotted key; :func:`apply_overrides` applies
``a.b.c=value`` strings from the command line (values parsed as YAML scalars).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from unlearnkit.errors import UnlearnError

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it (converted where lossless)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except UnlearnError as exc:
                errors.append(str(exc))
        raise UnlearnError(errors[0] if len(errors) == 1 else f"{key}: {value!r} fits none of {tp}")
    if origin is Literal:
        if isinstance(value, bool) and value not in get_args(tp):
            value = _bool_word(value, get_args(tp))
        if value not in get_args(tp):
            choices = ", ".join(repr(a) for a in get_args(tp))
            raise UnlearnError(f"{key}: {value!r} is not one of {choices}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise UnlearnError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        (item_tp, *_) = get_args(tp) or (Any,)
        return [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UnlearnError(f"{key}: expected a mapping, got {type(value).__name__}")
        _, val_tp = get_args(tp) or (Any, Any)
        return {str(k): _convert(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, prefix=key)
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UnlearnError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UnlearnError(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise UnlearnError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise UnlearnError(f"{key}: expected a string, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"unsupported config annotation {_type_name(tp)} for {key}")


def from_dict(cls: type[T], data: Any, prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types."""
    where = prefix or "config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UnlearnError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(known), key=str)  # YAML keys may be numbers too
    if unknown:
        dotted = ", ".join(f"{prefix + '.' if prefix else ''}{k}" for k in unknown)
        raise UnlearnError(f"unknown config key {dotted}; valid keys here: {', '.join(known)}")
    kwargs = {}
    for name, value in data.items():
        value = _merge_onto_default(known[name], value)
        kwargs[name] = _convert(value, hints[name], f"{prefix + '.' if prefix else ''}{name}")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise UnlearnError(f"{where}: {exc}") from None


def deep_merge(base: dict, update: dict) -> dict:
    """``update`` over ``base``, recursively for nested mappings; neither is modified."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _merge_onto_default(f: dataclasses.Field, value: Any) -> Any:
    """A partial mapping for a dataclass field updates that field's default, not the class's.

    ``InjectConfig.optim`` defaults to ``OptimConfig(lr=1e-4, ...)``; ``optim: {lr: 2e-4}``
    must keep that default's other values rather than fall back to ``OptimConfig()``'s.
    """
    if not isinstance(value, dict) or f.default_factory is dataclasses.MISSING:
        return value
    default = f.default_factory()
    if not dataclasses.is_dataclass(default):
        return value
    return deep_merge(dataclasses.asdict(default), value)


def to_dict(obj: Any) -> Any:
    return dataclasses.asdict(obj)


# YAML 1.1 reads these words as booleans (``mixed_precision: no`` is False)
_BOOL_WORDS = {False: ("no", "off", "false", "n"), True: ("yes", "on", "true", "y")}


def _bool_word(value: bool, choices: tuple) -> Any:
    """The one string choice that YAML read as ``value`` (else ``value`` unchanged)."""
    words = [c for c in choices if isinstance(c, str) and c.lower() in _BOOL_WORDS[value]]
    return words[0] if len(words) == 1 else value


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise UnlearnError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise UnlearnError(f"override {text!r} has no key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), _exponent_floats(value)


_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _exponent_floats(value: Any) -> Any:
    """YAML 1.1 reads ``2e-5`` (no dot) as a string: as a float here, also inside lists."""
    if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [_exponent_floats(v) for v in value]
    if isinstance(value, dict):
        return {k: _exponent_floats(v) for k, v in value.items()}
    return value


def set_path(data: dict[str, Any], path: list[str], value: Any, what: str = "") -> None:
    """Set ``data[path[0]]...[path[-1]] = value``, creating sections as needed.

    A section whose keys are dotted paths themselves (a tune's ``grid: {optim.lr: [...]}``)
    takes the rest of the path as one key: ``grid.optim.lr=[...]`` sets ``grid["optim.lr"]``.
    """
    node = data
    for i, part in enumerate(path[:-1]):
        rest = ".".join(path[i:])
        if i and (rest in node or any("." in str(k) for k in node)):
            node[rest] = value
            return
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise UnlearnError(f"{what or '.'.join(path)}: {part!r} is not a section")
        node = child
    node[path[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set ``a.b.c=value`` entries in a nested dict (creating sections as needed)."""
    for text in overrides:
        path, value = parse_override(text)
        set_path(data, path, value, f"override {text!r}")
    return data


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UnlearnError(f"config file {path} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "unreadable"
        raise UnlearnError(f"config file {path} is not valid YAML{where} ({problem}): fix the "
                           "YAML there (indentation, a missing ':' or an unclosed bracket "
                           "or quote)") from None
    except UnicodeDecodeError:
        raise UnlearnError(f"config file {path} is not UTF-8 text") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UnlearnError(f"config file {path} must hold a mapping at the top level")
    return data


def load_config(cls: type[T], path: str | Path | None, overrides: list[str] | None = None) -> T:
    data = load_yaml(path) if path else {}
    return from_dict(cls, apply_overrides(data, list(overrides or [])))
