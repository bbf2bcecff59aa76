"""JSON Schema (as OpenAI tools and response formats carry it) → Gemini's ``Schema``.

Gemini's ``Schema`` is a subset of OpenAPI 3.0 (https://ai.google.dev/api/caching#Schema):
it answers 400 to keys it does not know (``additionalProperties``, ``$schema``, ``strict``...)
and has no list-valued ``type``. Known keys are kept, ``["string", "null"]`` becomes
``type: string, nullable: true``, everything else is dropped.
"""
from __future__ import annotations

from typing import Any

__all__ = ["to_gemini_schema"]

_KEEP = {
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "required",
    "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example", "default",
    "minimum", "maximum", "propertyOrdering",
}


def to_gemini_schema(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, list):
            kinds = [k for k in value if k != "null"]
            out["type"] = kinds[0] if kinds else "null"
            if "null" in value:
                out["nullable"] = True
        elif key == "properties" and isinstance(value, dict):
            out["properties"] = {name: to_gemini_schema(sub) for name, sub in value.items()}
        elif key == "items":
            out["items"] = to_gemini_schema(value)
        elif key in ("anyOf", "oneOf") and isinstance(value, list):
            out["anyOf"] = [to_gemini_schema(v) for v in value]
        elif key == "const":
            out["enum"] = [value]
        elif key in _KEEP:
            out[key] = value
    return out
