"""How a digest reads: Slack Block Kit (:func:`slack_digest`), JSON for webhooks and Kafka
(:func:`digest_document`); the log line is :func:`alerts.log_sink.digest_line`.

The Slack message keeps to the same limits as a single alert's (:mod:`alerts.slack_format`): a
header, one section per alert shown (at most 20, so at most 24 blocks), each cut to fit, and the
whole payload under :data:`~alerts.slack_format.PAYLOAD_BUDGET`; the alerts not shown are counted
and the command that lists every one of them is named, as are the alerts still waiting over the
storm limit. Customer ids, rule ids and messages are escaped for mrkdwn.
"""

from __future__ import annotations

import json
from typing import Any

from alerts.grouping import Digest, value_of
from alerts.model import Alert
from alerts.slack_format import HEADER_MAX, PAYLOAD_BUDGET, escape, payload_size, truncate, width

_ENTRY_MAX = 400
_ENTRY_MIN = 40
_FALLBACK_MAX = 500
_CONTEXT_MAX = 500
_EMOJI = {"critical": ":rotating_light:", "warning": ":warning:", "info": ":information_source:"}


def _title(digest: Digest) -> str:
    count = len(digest.alerts)
    what = f"{count} churn alert{'' if count == 1 else 's'}"
    return f"{':repeat: Still open: ' if digest.repeat else ':bell: '}{what} for {digest.receiver}"


def _printable(text: str) -> str:
    """One line, no control characters: an entry is two lines, whatever the event carried."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def _entry(alert: Alert) -> str:
    segment = alert.customer.get("segment")
    who = f"*{escape(_printable(alert.customer_id)) or '-'}*"
    if segment not in (None, ""):
        who += f" ({escape(_printable(str(segment)))})"
    value = f"{value_of(alert):,.2f} lifetime"
    head = f"{_EMOJI[alert.severity.value]} {who} · {value} · `{escape(alert.rule_id)}` {alert.severity.value.upper()}"
    return truncate(f"{head}\n{escape(_printable(alert.message))}", _ENTRY_MAX)


def _footer(digest: Digest) -> list[str]:
    lines = []
    if digest.rest:
        lines.append(f"…and {digest.rest} more: every alert of this digest with `{digest.list_command()}`")
    else:
        lines.append(f"Every alert of this digest: `{digest.list_command()}`")
    if digest.held_back:
        lines.append(
            f":hourglass: {digest.held_back} more over this route's storm limit "
            f"({digest.max_alerts_per_hour} an hour) wait for the next digest, the most valuable first"
        )
    lines.append(f"Digest `{digest.digest_id}` · route `{escape(digest.route)}`")
    return lines


def slack_digest(digest: Digest) -> dict[str, Any]:
    """The digest as one Slack message (``text`` + ``blocks``), within Block Kit's limits."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": truncate(_title(digest), HEADER_MAX), "emoji": True}}
    ]
    blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": _entry(a)}} for a in digest.top]
    blocks += [
        {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(line, _CONTEXT_MAX)}]}
        for line in _footer(digest)
    ]
    top = digest.top[0] if digest.top else None
    lead = f" · top: {escape(_printable(top.customer_id))} ({value_of(top):,.2f})" if top is not None else ""
    fallback = truncate(f"{_title(digest)}{lead}", _FALLBACK_MAX)
    payload: dict[str, Any] = {"text": fallback, "blocks": blocks}
    sections = [b["text"] for b in blocks if b["type"] == "section"]
    while payload_size(payload) > PAYLOAD_BUDGET and sections:  # quotes and escapes grow in JSON
        longest = max(sections, key=lambda text: width(text["text"]))
        if width(longest["text"]) <= _ENTRY_MIN:
            break
        longest["text"] = truncate(longest["text"], max(_ENTRY_MIN, width(longest["text"]) * 3 // 4))
    return payload


def digest_document(digest: Digest) -> dict[str, Any]:
    """The digest as JSON: the alerts shown in full, every alert of it as a summary (ids, customer,
    value), and what waits over the storm limit; ``digest_id`` is the idempotency key."""
    return {
        "type": "digest",
        "digest_id": digest.digest_id,
        "group": digest.group,
        "receiver": digest.receiver,
        "route": digest.route,
        "created_at": digest.created_at.isoformat(),
        "repeat": digest.repeat,
        "count": len(digest.alerts),
        "alerts": [a.model_dump(mode="json") for a in digest.top],
        "rest": digest.rest,
        "all": [
            {
                "alert_id": a.alert_id,
                "customer_id": a.customer_id,
                "rule_id": a.rule_id,
                "severity": a.severity.value,
                "lifetime_spend": value_of(a),
            }
            for a in digest.alerts
        ],
        "held_back": digest.held_back,
        "max_alerts_per_hour": digest.max_alerts_per_hour,
        "list_command": digest.list_command(),
    }


def digest_bytes(digest: Digest) -> bytes:
    return json.dumps(digest_document(digest), separators=(",", ":")).encode()
