"""Reference tables generated from the code (the event contracts, the named aggregates); the README
embeds them and a test keeps the copies identical."""

from __future__ import annotations

from typing import Any

from rules.aggregates import CATALOG
from stream.decoding import REASON_MEANINGS
from stream.events import EVENT_MODELS, SURVEY_RANGES, InteractionKind

_NOTES: dict[tuple[str, str], str] = {
    ("interaction", "kind"): ", ".join(k.value for k in InteractionKind),
    ("feedback", "kind"): ", ".join(f"{k} ({lo}-{hi})" for k, (lo, hi) in SURVEY_RANGES.items()),
}


def _type_of(prop: dict[str, Any]) -> str:
    if "anyOf" in prop:
        return " or ".join(_type_of(p) for p in prop["anyOf"] if p.get("type") != "null")
    if "enum" in prop:
        return "enum"
    if "$ref" in prop:
        return "enum"
    kind = str(prop.get("type", "any"))
    fmt = prop.get("format")
    return f"{kind} ({fmt})" if fmt else kind


def events_markdown() -> str:
    """The fields of every stream, then the reasons a message is dead-lettered instead."""
    rows = ["| stream | field | type | required | notes |", "| --- | --- | --- | --- | --- |"]
    for stream_kind, model in EVENT_MODELS.items():
        schema = model.model_json_schema()
        required = set(schema.get("required", []))
        for name, prop in schema["properties"].items():
            note = _NOTES.get((stream_kind, name)) or prop.get("description", "")
            rows.append(
                f"| {stream_kind} | `{name}` | {_type_of(prop)} | {'yes' if name in required else 'no'} | {note} |"
            )
    rows += ["", "| dead-letter reason | when |", "| --- | --- |"]
    rows += [f"| `{reason.value}` | {meaning} |" for reason, meaning in REASON_MEANINGS.items()]
    return "\n".join(rows)


def aggregates_markdown() -> str:
    rows = ["| name | type | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{a.name}` | {a.cel_type} | {a.description} |" for a in CATALOG]
    return "\n".join(rows)
