"""The Slack message for an alert: Block Kit plus a plain ``text`` fallback for notifications.

Laid out to be acted on in ten seconds: who (customer, segment, lifetime value), what changed
against the customer's own baseline (:mod:`alerts.highlights`) and since when, severity, the rule
and its owner team, the rule's suggested next step, and links built from configured templates
(:mod:`alerts.links`); the evidence no highlight reads follows as small print.

Pure on purpose, so limits and escaping are tested without a network. Slack rejects a message that
breaks a Block Kit limit rather than trimming it, and a rejected alert is a lost alert, so every
piece is cut to fit here (header 150 characters, section text 3,000, fields 10 of 2,000, 50 blocks).
The whole payload also stays under ``PAYLOAD_BUDGET``: Slack has refused messages of about 13k
characters that respected every per-block limit. Lengths are counted in UTF-16 code units (what a
JavaScript client counts, never less than Python's characters), and a cut never splits a
character, an emoji sequence, an ``&...;`` escape or a ``<url|label>`` link.

Customer ids, messages and evidence come from events and rule files, so they are escaped for
mrkdwn (``&``, ``<``, ``>``): ``<!channel>`` in a customer id must not ping a channel.

With ``buttons=True`` (the Web API receiver's messages, which churnwatch can update) a firing alert
ends in an ``actions`` block of feedback buttons (:mod:`alerts.feedback`); an incoming webhook's
message gets none, as nobody could answer its clicks.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from alerts.feedback import ACTIONS_BLOCK_ID, action_elements, button_value
from alerts.highlights import number, since, what_changed
from alerts.links import LinkTemplate
from alerts.model import Alert
from rules.base import EvidenceValue, Severity

HEADER_MAX = 150
SECTION_TEXT_MAX = 3000
FIELD_MAX = 2000
FIELDS_MAX = 10
BLOCKS_MAX = 50
PAYLOAD_BUDGET = 10_000
"""Characters of JSON, well under the ~13k at which Slack has rejected whole messages."""

# Our own shares of the budget, which add up to well under it (buttons included): ids and
# timestamps are short, so each piece gets far less than Slack allows.
_FALLBACK_MAX = 500
_MESSAGE_MAX = 1500
_FIELD_SHARE = 200
_CHANGED_LINES = 4
_LINE_MAX = 200
_NEXT_STEP_MAX = 300
_LINKS_MAX = 1500
_DETAILS_MAX = 1000
_EVIDENCE_VALUE_MAX = 120
_CONTEXT_MAX = 300

ELLIPSIS = "…"

_EMOJI = {
    Severity.CRITICAL: ":rotating_light:",
    Severity.WARNING: ":warning:",
    Severity.INFO: ":information_source:",
}


def slack_blocks(alert: Alert, *, buttons: bool = False, links: Sequence[LinkTemplate] = ()) -> dict[str, Any]:
    """The message (``text`` + ``blocks``) for one alert; ``buttons`` adds the feedback buttons to a
    firing alert (an alert whose ids are too long to carry gets none); ``links`` are rendered for it
    (a link whose placeholder has no value for this alert is left out)."""
    customer = escape(alert.customer_id) or "-"
    rule = escape(alert.rule_id)
    message = escape(alert.message.strip()) or "(no message)"
    severity = alert.severity.value.upper()
    firing = alert.status == "firing"
    changed, read = what_changed(alert.evidence) if firing else ([], set())
    started, read_by_since = since(alert.evidence, alert.evaluated_at)

    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": truncate(_title(alert), HEADER_MAX), "emoji": True}},
        _section(truncate(message, _MESSAGE_MAX)),
        {"type": "section", "fields": [_field(label, value) for label, value in _facts(alert, started)][:FIELDS_MAX]},
    ]
    if changed:
        lines = [f"• {truncate(escape(line), _LINE_MAX)}" for line in changed[:_CHANGED_LINES]]
        blocks.append(_section("*What changed*\n" + "\n".join(lines)))
    if firing and alert.next_step:
        blocks.append(_section(truncate(f":point_right: *Next step:* {escape(alert.next_step)}", _NEXT_STEP_MAX)))
    optional: list[dict[str, Any]] = []
    if link_text := _links_text(alert, links):
        optional.append(_section(link_text))
    details = _details_text({k: v for k, v in alert.evidence.items() if k not in read | read_by_since})
    if details:
        optional.append(_context(details))
    blocks += optional
    resolves = f"Resolves alert `{escape(alert.resolves)}`" if alert.resolves is not None else None
    blocks.append(
        _context(
            truncate(
                f"{resolves or f'Alert `{escape(alert.alert_id)}`'} · detected {_when(alert.detected_at)}", _CONTEXT_MAX
            )
        )
    )
    value = button_value(alert.alert_id, alert.rule_id, alert.customer_id) if buttons else None
    if value is not None and firing:
        blocks.append({"type": "actions", "block_id": ACTIONS_BLOCK_ID, "elements": action_elements(value)})
    label = "RESOLVED" if not firing else severity
    fallback = truncate(f"[{label}] {rule} · customer {customer}: {message}", _FALLBACK_MAX)
    return _fit({"text": fallback, "blocks": blocks[:BLOCKS_MAX]}, optional)


def payload_size(payload: dict[str, Any]) -> int:
    """What :data:`PAYLOAD_BUDGET` measures: the JSON as sent, in UTF-16 code units."""
    return width(json.dumps(payload, ensure_ascii=False))


def _fit(payload: dict[str, Any], optional: list[dict[str, Any]]) -> dict[str, Any]:
    """Within the budget whatever the input (escaping can grow a text fivefold, JSON a control
    character sixfold): the details and links go first, then the message is cut further."""
    blocks = payload["blocks"]
    for block in reversed(optional):
        if payload_size(payload) <= PAYLOAD_BUDGET:
            return payload
        blocks.remove(block)
    message = blocks[1]["text"]
    while (excess := payload_size(payload) - PAYLOAD_BUDGET) > 0 and width(message["text"]) > 1:
        text = message["text"]
        expansion = width(json.dumps(text, ensure_ascii=False)) / max(width(text), 1)  # JSON units per unit
        message["text"] = truncate(text, max(1, width(text) - math.ceil(excess / expansion) - 1))
    return payload


def _facts(alert: Alert, started: str | None) -> list[tuple[str, str]]:
    """The fields: who the customer is (to rank by value and route), the rule and who owns it, when."""
    facts = [("Customer", escape(alert.customer_id) or "-")]
    segment = alert.customer.get("segment")
    if segment not in (None, ""):
        facts.append(("Segment", escape(str(segment))))
    spend, purchases = alert.customer.get("lifetime_spend"), alert.customer.get("lifetime_purchases")
    value = []
    if isinstance(spend, int | float) and not isinstance(spend, bool) and math.isfinite(spend):
        value.append(f"{spend:,.2f}")
    elif spend is not None:
        value.append(format_value(spend))  # escaped already
    if purchases is not None:
        value.append(f"{escape(number(purchases))} purchase{'' if purchases == 1 else 's'}")
    if value:
        facts.append(("Lifetime value", " · ".join(value)))
    facts.append(("Severity", alert.severity.value.upper()))
    facts.append(("Rule", escape(alert.rule_id)))
    if alert.owner:
        facts.append(("Owner team", escape(alert.owner)))
    if started is not None:
        facts.append(("Since", escape(started)))
    facts.append(("Evaluated at", _when(alert.evaluated_at)))
    return facts


def _links_text(alert: Alert, links: Sequence[LinkTemplate]) -> str:
    """The rendered links that fit, in order, whole: a cut link would lead somewhere else. Those
    left out are counted."""
    rendered = [f"<{escape(url)}|{escape(link.name)}>" for link in links if (url := link.render(alert)) is not None]
    if not rendered:
        return ""
    room = _LINKS_MAX - len(f":link:  · {ELLIPSIS} and 9999 more")
    shown: list[str] = []
    for item in rendered:
        if width(" · ".join([*shown, item])) <= room:
            shown.append(item)
    left_out = len(rendered) - len(shown)
    return ":link: " + " · ".join([*shown, *([f"{ELLIPSIS} and {left_out} more"] if left_out else [])])


def _title(alert: Alert) -> str:
    """The rule alone: the customer id is the first field, escaped (a header is plain text, and what
    Slack makes of ``&`` or ``<`` there is not worth a customer id's risk)."""
    if alert.status == "resolved":
        return f":white_check_mark: Resolved: {alert.rule_id}"
    return f"{_EMOJI[alert.severity]} {alert.rule_id}"


def escape(text: str) -> str:
    """Escape the three characters Slack treats as control characters in mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def width(text: str) -> int:
    """Length in UTF-16 code units: a character beyond the BMP (most emoji) counts twice."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


_ZWJ = "\u200d"


def _joins(ch: str) -> bool:
    """Whether ``ch`` belongs to the character before it (a combining mark, a variation selector, a
    skin tone, an emoji tag or joiner): a cut before it would change what that character shows."""
    code = ord(ch)
    return (
        unicodedata.category(ch) in ("Mn", "Me", "Mc")
        or ch == _ZWJ
        or 0xFE00 <= code <= 0xFE0F
        or 0xE0100 <= code <= 0xE01EF
        or 0x1F3FB <= code <= 0x1F3FF
        or 0xE0020 <= code <= 0xE007F
    )


def _regional(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def truncate(text: str, limit: int) -> str:
    """Cut to ``limit`` UTF-16 code units, ending in an ellipsis; never inside a character sequence
    (an accented letter, an emoji with its modifiers, a flag), an ``&...;`` escape or a ``<...>`` link."""
    if width(text) <= limit:
        return text
    room, used, cut = limit - width(ELLIPSIS), 0, 0
    for ch in text:
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > room:
            break
        cut += 1
    while cut > 0 and ((cut < len(text) and _joins(text[cut])) or text[cut - 1] == _ZWJ):
        cut -= 1
    if 0 < cut < len(text) and _regional(text[cut]):
        run = 0
        while run < cut and _regional(text[cut - 1 - run]):
            run += 1
        cut -= run % 2  # flags are pairs: never keep half of one
    kept = text[:cut]
    amp = kept.rfind("&", max(0, len(kept) - 5))  # the escapes are at most five characters ("&amp;")
    if amp != -1 and ";" not in kept[amp:]:
        kept = kept[:amp]
    if kept.rfind("<") > kept.rfind(">"):  # raw '<' is only ever ours: a link or a mention
        kept = kept[: kept.rfind("<")]
    return kept + ELLIPSIS


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


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _field(label: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": truncate(f"*{label}*\n{value}", min(_FIELD_SHARE, FIELD_MAX))}


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _details_text(evidence: dict[str, EvidenceValue]) -> str:
    """The evidence no highlight read, as small print: as many values as fit, then how many were left out."""
    items = [(name, value) for name, value in evidence.items() if value is not None]
    if not items:
        return ""
    reserve = len(f" · {ELLIPSIS} and 99999 more")
    text = ""
    for shown, (name, value) in enumerate(items):
        label = truncate(escape(name.replace("`", "'")), _EVIDENCE_VALUE_MAX)
        item = f"{' · ' if shown else ''}`{label}` {truncate(format_value(value), _EVIDENCE_VALUE_MAX)}"
        if width(text + item) > _DETAILS_MAX - reserve:
            return f"{text} · {ELLIPSIS} and {len(items) - shown} more"
        text += item
    return text
