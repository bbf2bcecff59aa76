"""Convert plain YAML data into typed, frozen dataclasses, with errors that name the path.

Supported field types: bool, int, float, str, Any, Literal[...], Optional/Union,
list[T], tuple[T, ...], dict[str, T], and nested dataclasses. Unknown keys are errors.
A field's docstring-like description goes in ``field(metadata={"help": ...})``.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

__all__ = ["SchemaError", "convert", "describe"]


class SchemaError(ValueError):
    """One or more problems, each ``path: message``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _tname(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if isinstance(tp, type):
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "dict": "mapping", "list": "list"}.get(
            tp.__name__, tp.__name__
        )
    return str(tp).replace("typing.", "")


def _got(value: Any) -> str:
    shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{_tname(type(value))} {shown}"


def convert(tp: Any, value: Any, path: str = "") -> Any:
    """Return ``value`` converted to ``tp``; raise SchemaError listing every problem."""
    problems: list[str] = []
    out = _convert(tp, value, path, problems)
    if problems:
        raise SchemaError(problems)
    return out


_MISSING = object()


def _convert(tp: Any, value: Any, path: str, problems: list[str]) -> Any:  # noqa: C901 - a type switch
    where = path or "<root>"
    if tp is Any or tp is object:
        return value
    origin = get_origin(tp)
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            problems.append(f"{where}: expected one of {', '.join(map(repr, allowed))}, got {_got(value)}")
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            problems.append(f"{where}: must not be null")
            return None
        for arg in args:
            if arg is type(None):
                continue
            trial: list[str] = []
            out = _convert(arg, value, path, trial)
            if not trial:
                return out
        problems.append(f"{where}: expected {' or '.join(_tname(a) for a in args if a is not type(None))}, got {_got(value)}")
        return None
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, list):
            problems.append(f"{where}: expected a list, got {_got(value)}")
            return () if origin is tuple else []
        args = get_args(tp)
        item_tp = args[0] if args else Any
        items = [_convert(item_tp, v, f"{path}[{i}]", problems) for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a mapping, got {_got(value)}")
            return {}
        args = get_args(tp)
        val_tp = args[1] if len(args) == 2 else Any
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                problems.append(f"{where}: keys must be strings, got {_got(k)}")
                continue
            out[k] = _convert(val_tp, v, f"{path}.{k}" if path else k, problems)
        return out
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, value, path, problems)
    if tp is bool:
        if not isinstance(value, bool):
            problems.append(f"{where}: expected a boolean, got {_got(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{where}: expected an integer, got {_got(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{where}: expected a number, got {_got(value)}")
            return value
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            problems.append(f"{where}: expected a string, got {_got(value)}")
        return value
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    problems.append(f"{where}: expected {_tname(tp)}, got {_got(value)}")
    return value


def _convert_dataclass(tp: Any, value: Any, path: str, problems: list[str]) -> Any:
    where = path or "<root>"
    if value is None:
        value = {}
    if not isinstance(value, dict):
        problems.append(f"{where}: expected a mapping, got {_got(value)}")
        return None
    hints = typing.get_type_hints(tp)
    fields = {f.name: f for f in dataclasses.fields(tp) if f.init}
    unknown = [k for k in value if k not in fields]
    for k in unknown:
        known = ", ".join(sorted(fields)) or "none"
        problems.append(f"{path + '.' if path else ''}{k}: unknown key (known keys: {known})")
    kwargs: dict[str, Any] = {}
    before = len(problems)
    for name, f in fields.items():
        sub = f"{path}.{name}" if path else name
        if name in value:
            kwargs[name] = _convert(hints[name], value[name], sub, problems)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            problems.append(f"{sub}: required key is missing")
    if len(problems) > before or unknown:
        return None
    try:
        obj = tp(**kwargs)
    except (TypeError, ValueError) as exc:
        problems.append(f"{where}: {exc}")
        return None
    check = getattr(obj, "validate", None)
    if callable(check):
        try:
            check()
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
    return obj


def describe(tp: Any) -> list[tuple[str, str, str]]:
    """(name, type, help) for each field of a Config dataclass, for docs and ``plugins list``."""
    if not dataclasses.is_dataclass(tp):
        return []
    hints = typing.get_type_hints(tp)
    return [(f.name, _tname(hints[f.name]), f.metadata.get("help", "")) for f in dataclasses.fields(tp)]
