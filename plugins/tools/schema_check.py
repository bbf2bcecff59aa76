"""A small JSON-schema checker for tool arguments (the subset tool schemas use).

Why not ``jsonschema``: it is not a dependency of the gateway, and tool schemas are
small and flat. Supported keywords: type (one or a list), properties, required,
additionalProperties (bool or schema), enum, const, minimum, maximum,
exclusiveMinimum, exclusiveMaximum, minLength, maxLength, pattern, items,
minItems, maxItems. Unknown keywords are ignored, as JSON Schema specifies.
"""
from __future__ import annotations

import re
from typing import Any

__all__ = ["check_arguments"]

_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


def check_arguments(schema: dict[str, Any], value: Any) -> list[str]:
    """Every way ``value`` breaks ``schema``, as ``path: problem`` strings (empty when valid)."""
    problems: list[str] = []
    _check(schema or {}, value, "arguments", problems)
    return problems


def _check(schema: dict[str, Any], value: Any, path: str, out: list[str]) -> None:  # noqa: C901 - a keyword switch
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        if not any(_TYPES.get(t, lambda v: True)(value) for t in names):
            out.append(f"{path}: expected {' or '.join(names)}, got {type(value).__name__}")
            return
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: must be one of {schema['enum']!r}")
    if "const" in schema and value != schema["const"]:
        out.append(f"{path}: must be {schema['const']!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{path}: must be >= {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{path}: must be <= {schema['maximum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            out.append(f"{path}: must be > {schema['exclusiveMinimum']}")
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            out.append(f"{path}: must be < {schema['exclusiveMaximum']}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            out.append(f"{path}: must be at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            out.append(f"{path}: must be at most {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{path}: must match {schema['pattern']!r}")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            out.append(f"{path}: must have at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            out.append(f"{path}: must have at most {schema['maxItems']} items")
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                _check(schema["items"], item, f"{path}[{i}]", out)
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for name in schema.get("required") or ():
            if name not in value:
                out.append(f"{path}.{name}: is required")
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                _check(props[key], item, f"{path}.{key}", out)
            elif extra is False:
                out.append(f"{path}.{key}: unexpected property")
            elif isinstance(extra, dict):
                _check(extra, item, f"{path}.{key}", out)
