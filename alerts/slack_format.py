"""The Slack message for an alert: Block Kit plus a plain ``text`` fallback for notifications.

Pure on purpose, so limits and escaping are tested without a network. Slack rejects a message that
breaks a Block Kit limit rather than trimming it, and a rejected alert is a lost alert, so every
piece is cut to fit here (header 150 characters, section text 3,000, fields 10 of 2,000, 50 blocks).
The whole payload also stays under ``PAYLOAD_BUDGET``: Slack has refused messages of about 13k
characters that respected every per-block limit.

Customer ids, messages and evidence come from events and rule files, so they are escaped for
mrkdwn (``&``, ``<``, ``>``): ``<!channel>`` in a customer id must not ping a channel.

With ``buttons=True`` (the Web API receiver's messages, which churnwatch can update) a firing alert
ends in an ``actions`` block of feedback buttons (:mod:`alerts.feedback`); an incoming webhook's
message gets none, as nobody could answer its clicks.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from alerts.feedback import ACTIONS_BLOCK_ID, action_elements, button_value
from alerts.model import Alert
from rules.base import EvidenceValue, Severity

HEADER_MAX = 150
SECTION_TEXT_MAX = 3000
FIELD_MAX = 2000
FIELDS_MAX = 10
BLOCKS_MAX = 50
PAYLOAD_BUDGET = 10_000
"""Characters of JSON, well under the ~13k at which Slack has rejected whole messages."""

# Our own shares of the budget; ids and timestamps are short, so fields get far less than Slack allows.
_FALLBACK_MAX = 500
_FIELD_SHARE = 300
_EVIDENCE_VALUE_MAX = 200
_CONTEXT_MAX = 300

ELLIPSIS = "…"

_EMOJI = {
    Severity.CRITICAL: ":rotating_light:",
    Severity.WARNING: ":warning:",
    Severity.INFO: ":information_source:",
}


_CUSTOMER_FIELDS = (
    ("lifetime_spend", "Lifetime spend"),
    ("lifetime_purchases", "Lifetime purchases"),
    ("segment", "Segment"),
)


def _customer_fields(alert: Alert) -> list[tuple[str, EvidenceValue]]:
    """Who the customer is, so support can rank alerts by value (CLV) and route them."""
    return [
        (label, alert.customer[key]) for key, label in _CUSTOMER_FIELDS if alert.customer.get(key) not in (None, "")
    ]


def slack_blocks(alert: Alert, *, buttons: bool = False) -> dict[str, Any]:
    """The message (``text`` + ``blocks``) for one alert; ``buttons`` adds the feedback buttons to a
    firing alert (an alert whose ids are too long to carry gets none)."""
    customer = escape(alert.customer_id) or "-"
    rule = escape(alert.rule_id)
    message = escape(alert.message.strip()) or "(no message)"
    severity = alert.severity.value.upper()

    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": truncate(_title(alert), HEADER_MAX),
                "emoji": True,
            },
        },
        _section(truncate(message, SECTION_TEXT_MAX)),
        {
            "type": "section",
            "fields": [
                _field("Customer", customer),
                _field("Rule", rule),
                _field("Severity", severity),
                _field("Evaluated at", _when(alert.evaluated_at)),
                *(_field(label, escape(format_value(value))) for label, value in _customer_fields(alert)),
            ][:FIELDS_MAX],
        },
    ]
    evidence = _evidence_text(alert.evidence)
    if evidence:
        blocks.append(_section(evidence))
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": truncate(
                        f"Alert `{escape(alert.alert_id)}` · detected {_when(alert.detected_at)}", _CONTEXT_MAX
                    ),
                }
            ],
        }
    )
    if alert.resolves is not None:
        blocks[-1]["elements"][0]["text"] = truncate(
            f"Resolves alert `{escape(alert.resolves)}` · detected {_when(alert.detected_at)}", _CONTEXT_MAX
        )
    value = button_value(alert.alert_id, alert.rule_id, alert.customer_id) if buttons else None
    if value is not None and alert.status == "firing":
        blocks.append({"type": "actions", "block_id": ACTIONS_BLOCK_ID, "elements": action_elements(value)})
    label = "RESOLVED" if alert.status == "resolved" else severity
    fallback = truncate(f"[{label}] {rule} · customer {customer}: {message}", _FALLBACK_MAX)
    return {"text": fallback, "blocks": blocks[:BLOCKS_MAX]}


def _title(alert: Alert) -> str:
    if alert.status == "resolved":
        return f":white_check_mark: Resolved: {alert.rule_id}"
    return f"{_EMOJI[alert.severity]} {alert.rule_id}"


def escape(text: str) -> str:
    """Escape the three characters Slack treats as control characters in mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int) -> str:
    """Cut to ``limit`` characters, ending in an ellipsis, never in the middle of an ``&...;`` escape."""
    if len(text) <= limit:
        return text
    cut = text[: limit - len(ELLIPSIS)]
    amp = cut.rfind("&", max(0, len(cut) - 5))
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + ELLIPSIS


def format_value(value: EvidenceValue) -> str:
    """Numbers as a person reads them: ``4.0``, ``0.333``, ``1234.57``; booleans as yes/no."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value.is_integer() and abs(value) < 1e15:
            return f"{value:.1f}"
        if abs(value) < 1e-3 or abs(value) >= 1e15:
            return f"{value:.3g}"
        return f"{value:.6f}".rstrip("0")
    return escape(str(value))


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _field(label: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": truncate(f"*{label}*\n{value}", min(_FIELD_SHARE, FIELD_MAX))}


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _evidence_text(evidence: dict[str, EvidenceValue]) -> str:
    """One line per non-empty value, as many as fit in one section, then how many were left out."""
    items = [(name, value) for name, value in evidence.items() if value is not None]
    if not items:
        return ""
    reserve = len("\n… and 99999 more")
    text = "*Evidence*"
    for shown, (name, value) in enumerate(items):
        label = truncate(escape(name.replace("`", "'")), _EVIDENCE_VALUE_MAX)
        line = f"\n• `{label}`: {truncate(format_value(value), _EVIDENCE_VALUE_MAX)}"
        if len(text) + len(line) > SECTION_TEXT_MAX - reserve:
            return f"{text}\n{ELLIPSIS} and {len(items) - shown} more"
        text += line
    return text
