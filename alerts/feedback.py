"""Feedback from Slack: what a button click on an alert says, and what the rules earn from it.

The Web API receiver's messages carry four buttons (:func:`alerts.slack_format.slack_blocks` with
``buttons=True``); each button's ``value`` names the alert, its rule and its customer, so a click
can be recorded, counted per rule and, for a snooze, turned into a silence without looking the
alert up anywhere. Pure: parsing Slack's interaction payload, the message's "who did what" block,
and the per-rule shares of ``churnwatch rules stats``. Verifying the request's signature and the
Redis store live in :mod:`stream.slack_interactions` and :mod:`stream.feedback_store`.

A person's latest click is their answer (one per person and alert: clicking "False alarm" after
"Acknowledge" replaces it), and an alert's verdict is the latest answer of anyone, so the shares of
one rule add up to 100 %.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, ValidationError

VALUE_MAX = 256
"""Our share of a button's ``value`` (Slack allows 2,000): four buttons carry it, within the message's
budget (:data:`alerts.slack_format.PAYLOAD_BUDGET`). Every id the event contract allows fits (a
customer id of 128 characters, a rule id of 64, the alert's UUID)."""
ACTIONS_BLOCK_ID = "churnwatch_feedback_actions"
FEEDBACK_BLOCK_ID = "churnwatch_feedback"
_FEEDBACK_TEXT_MAX = 2000
_FEEDBACK_LINES_MAX = 10
_USER_ID = re.compile(r"[UW][A-Z0-9]{1,20}")
"""Slack user ids: only these are written as ``<@id>`` mentions, anything else is escaped text."""


class Outcome(StrEnum):
    ACKNOWLEDGED = "acknowledged"
    SNOOZED = "snoozed"
    FALSE_ALARM = "false_alarm"
    SAVED = "saved"


@dataclass(frozen=True)
class Button:
    action_id: str
    label: str
    outcome: Outcome
    done: str
    """How the message reports it: "*Snoozed 7 days* by @ana"."""
    style: str | None = None


BUTTONS = (
    Button("churnwatch_acknowledge", "Acknowledge", Outcome.ACKNOWLEDGED, "Acknowledged"),
    Button("churnwatch_snooze_7d", "Snooze 7 days", Outcome.SNOOZED, "Snoozed 7 days"),
    Button("churnwatch_false_alarm", "False alarm", Outcome.FALSE_ALARM, "Marked a false alarm", "danger"),
    Button("churnwatch_saved", "Customer saved", Outcome.SAVED, "Customer saved", "primary"),
)
_BY_ACTION = {b.action_id: b for b in BUTTONS}
_BY_OUTCOME = {b.outcome: b for b in BUTTONS}


class FeedbackPayloadError(ValueError):
    """A signed request that is not a usable interaction payload (answered 400)."""


class ButtonValue(BaseModel):
    """What a button carries back (``{"a": alert id, "r": rule, "c": customer}``, short keys to save
    the message's budget): enough to record, count and snooze without another lookup."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    alert_id: str = Field(alias="a")
    rule: str = Field(alias="r", min_length=1, max_length=64)
    customer_id: str = Field(alias="c", min_length=1)


def button_value(alert_id: str, rule: str, customer_id: str) -> str | None:
    """The buttons' JSON ``value``; None when it would be longer than :data:`VALUE_MAX` (no buttons then)."""
    try:
        uuid.UUID(alert_id)  # what a click is checked against
        value = ButtonValue(alert_id=alert_id, rule=rule, customer_id=customer_id).model_dump_json(by_alias=True)
    except ValueError:  # not a UUID, or a rule id longer than rule files allow: no click could be recorded
        return None
    return value if len(value) <= VALUE_MAX else None


def action_elements(value: str) -> list[dict[str, Any]]:
    """The four buttons of an ``actions`` block, all carrying ``value``."""
    elements = []
    for button in BUTTONS:
        element: dict[str, Any] = {
            "type": "button",
            "action_id": button.action_id,
            "text": {"type": "plain_text", "text": button.label, "emoji": True},
            "value": value,
        }
        if button.style is not None:
            element["style"] = button.style
        elements.append(element)
    return elements


@dataclass(frozen=True)
class Click:
    """One button click, read from a ``block_actions`` payload."""

    alert_id: str
    rule: str
    customer_id: str
    outcome: Outcome
    user_id: str
    user_name: str
    response_url: str | None
    blocks: tuple[Mapping[str, Any], ...]
    """The message as it was clicked, rebuilt with the feedback block (``replace_original``)."""
    text: str

    @property
    def author(self) -> str:
        """The Slack user as a silence's author: name and id, so it is both readable and unique."""
        return f"{self.user_name} ({self.user_id})" if self.user_name != self.user_id else self.user_id


class _User(BaseModel):
    id: str = Field(min_length=1, max_length=64)
    username: str | None = None
    name: str | None = None


class _Action(BaseModel):
    action_id: str = ""
    value: str | None = None


class _Message(BaseModel):
    text: str = ""
    blocks: list[dict[str, Any]] = Field(default_factory=list)


class _BlockActions(BaseModel):
    """The fields of Slack's ``block_actions`` payload that churnwatch reads (Slack sends many more)."""

    model_config = ConfigDict(extra="ignore")

    type: str
    user: _User
    actions: list[_Action] = Field(default_factory=list)
    response_url: str | None = None
    message: _Message = Field(default_factory=_Message)


def payload_of(body: bytes) -> dict[str, Any]:
    """The JSON in the ``payload`` field of Slack's form-encoded request body."""
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True, max_num_fields=100)
        [raw] = form["payload"]
        payload = json.loads(raw)
    except (UnicodeDecodeError, ValueError, KeyError) as exc:
        raise FeedbackPayloadError(f"no JSON payload field ({type(exc).__name__})") from None
    if not isinstance(payload, dict):
        raise FeedbackPayloadError("the payload is not a JSON object")
    return payload


def click_of(payload: Mapping[str, Any]) -> Click | None:
    """The click on one of churnwatch's buttons; None for any other interaction (another app's
    button, a shortcut, a modal): those are acknowledged and ignored."""
    if payload.get("type") != "block_actions":
        return None
    try:
        parsed = _BlockActions.model_validate(payload)
    except ValidationError as exc:
        raise FeedbackPayloadError(f"block_actions payload: {exc.error_count()} problem(s)") from None
    action = next((a for a in parsed.actions if a.action_id in _BY_ACTION), None)
    if action is None:
        return None
    try:
        value = ButtonValue.model_validate_json(action.value or "")
        alert_id = str(uuid.UUID(value.alert_id))
    except (ValidationError, ValueError):
        raise FeedbackPayloadError(f"{action.action_id}: the button's value names no alert") from None
    user = parsed.user
    return Click(
        alert_id=alert_id,
        rule=value.rule,
        customer_id=value.customer_id,
        outcome=_BY_ACTION[action.action_id].outcome,
        user_id=user.id,
        user_name=(user.username or user.name or user.id).strip() or user.id,
        response_url=parsed.response_url,
        blocks=tuple(parsed.message.blocks),
        text=parsed.message.text,
    )


@dataclass(frozen=True)
class Answer:
    """One person's latest answer on one alert."""

    user_id: str
    user_name: str
    outcome: Outcome
    at: datetime


@dataclass(frozen=True)
class AlertFeedback:
    alert_id: str
    rule: str
    customer_id: str
    answers: tuple[Answer, ...]

    @property
    def verdict(self) -> Answer:
        """The latest answer of anyone (ties by user id, so it is stable)."""
        return max(self.answers, key=lambda a: (a.at, a.user_id))


class FeedbackStore(Protocol):
    async def answer(self, alert_id: str, user_id: str) -> Answer | None: ...

    async def record(self, click: Click, at: datetime) -> bool:
        """Store the click as the user's answer; False (nothing written) when it was their answer already."""
        ...

    async def feedback(self, alert_id: str) -> AlertFeedback | None: ...

    async def since(self, moment: datetime) -> list[AlertFeedback]:
        """Every alert whose latest click is at or after ``moment``."""
        ...


class InMemoryFeedbackStore:
    """For tests: the same answers as the Redis store, forgetting on restart."""

    def __init__(self) -> None:
        self.alerts: dict[str, AlertFeedback] = {}

    async def answer(self, alert_id: str, user_id: str) -> Answer | None:
        found = self.alerts.get(alert_id)
        return next((a for a in found.answers if a.user_id == user_id), None) if found else None

    async def record(self, click: Click, at: datetime) -> bool:
        old = self.alerts.get(click.alert_id)
        answers = [a for a in (old.answers if old else ()) if a.user_id != click.user_id]
        if old is not None and any(a.user_id == click.user_id and a.outcome is click.outcome for a in old.answers):
            return False
        answers.append(Answer(click.user_id, click.user_name, click.outcome, at))
        self.alerts[click.alert_id] = AlertFeedback(click.alert_id, click.rule, click.customer_id, tuple(answers))
        return True

    async def feedback(self, alert_id: str) -> AlertFeedback | None:
        return self.alerts.get(alert_id)

    async def since(self, moment: datetime) -> list[AlertFeedback]:
        return [f for f in self.alerts.values() if f.verdict.at >= moment]


def with_feedback(blocks: Sequence[Mapping[str, Any]], answers: Iterable[Answer]) -> list[dict[str, Any]]:
    """The clicked message with a context block saying who answered what (latest first), in place of
    the previous one; the buttons stay, so anyone can still answer or change their answer."""
    kept = [dict(b) for b in blocks if b.get("block_id") != FEEDBACK_BLOCK_ID]
    lines = [
        f"*{_BY_OUTCOME[a.outcome].done}* by {_mention(a)} · {a.at.astimezone(UTC):%Y-%m-%d %H:%M UTC}"
        for a in sorted(answers, key=lambda a: (a.at, a.user_id), reverse=True)
    ]
    if not lines:
        return kept
    if len(lines) > _FEEDBACK_LINES_MAX:
        lines = [*lines[:_FEEDBACK_LINES_MAX], f"… and {len(lines) - _FEEDBACK_LINES_MAX} more"]
    text = "\n".join(lines)
    if len(text) > _FEEDBACK_TEXT_MAX:
        text = text[: _FEEDBACK_TEXT_MAX - 1] + "…"
    block = {"type": "context", "block_id": FEEDBACK_BLOCK_ID, "elements": [{"type": "mrkdwn", "text": text}]}
    at = next((i for i, b in enumerate(kept) if b.get("block_id") == ACTIONS_BLOCK_ID), len(kept) - 1)
    return [*kept[: at + 1], block, *kept[at + 1 :]][:50]


def _mention(answer: Answer) -> str:
    if _USER_ID.fullmatch(answer.user_id):
        return f"<@{answer.user_id}>"
    return answer.user_name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True)
class RuleStats:
    rule: str
    alerts: int
    """Alerts with at least one answer in the period."""
    counts: Mapping[Outcome, int]
    """Alerts per verdict."""

    def share(self, outcome: Outcome) -> float:
        return self.counts.get(outcome, 0) / self.alerts if self.alerts else 0.0


def rule_stats(feedback: Iterable[AlertFeedback]) -> list[RuleStats]:
    """Per rule (sorted by id): alerts with feedback and how many of them ended on each verdict."""
    per_rule: dict[str, dict[Outcome, int]] = {}
    totals: dict[str, int] = {}
    for alert in feedback:
        if not alert.answers:
            continue
        counts = per_rule.setdefault(alert.rule, dict.fromkeys(Outcome, 0))
        counts[alert.verdict.outcome] += 1
        totals[alert.rule] = totals.get(alert.rule, 0) + 1
    return [RuleStats(rule, totals[rule], per_rule[rule]) for rule in sorted(per_rule)]


STATS_COLUMNS = (
    ("acknowledged", Outcome.ACKNOWLEDGED),
    ("false alarm", Outcome.FALSE_ALARM),
    ("saved", Outcome.SAVED),
    ("snoozed", Outcome.SNOOZED),
)


def stats_table(stats: Sequence[RuleStats]) -> list[str]:
    """``churnwatch rules stats``'s lines: one per rule, shares as whole percentages."""
    width = max([len("rule"), *(len(s.rule) for s in stats)])
    head = f"{'rule':<{width}}  {'alerts':>6}" + "".join(f"  {name:>12}" for name, _ in STATS_COLUMNS)
    rows = [
        f"{s.rule:<{width}}  {s.alerts:>6}" + "".join(f"  {s.share(o):>12.0%}" for _, o in STATS_COLUMNS) for s in stats
    ]
    return [head, *rows]
