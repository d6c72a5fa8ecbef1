"""The event contracts: one pydantic model per Kafka stream, keyed by ``customer_id``.

These models are the single schema: validation, the README table and the JSON Schema
(``churnwatch schema events``) all come from them. The rules that need the message around the
event (its key, the clock, the size) are applied by :mod:`stream.decoding`, and stated here in
the field descriptions so the table and the schema say them too.

Numbers are strict where pydantic would coerce: a JSON ``true`` would otherwise be NPS 1, ``"2"``
or ``2.0`` a score of 2, ``"1_000"`` an amount of 1000, and an epoch number an event time.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictInt,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from rules.state import epoch_ms

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]

# RFC 3339 / ISO 8601 extended form with an offset; a space for the "T" and minutes without seconds
# are accepted as before. pydantic parses what this lets through; this only refuses the other forms
# it would also read (epoch numbers, numeric strings, dates alone).
_ISO_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?(?:[Zz]|[+-][0-9]{2}:?[0-9]{2})"
)
_DECIMAL_TEXT = re.compile(r"^-?[0-9]+(?:\.[0-9]+)?$")  # anchored: JSON Schema patterns search


def _iso_date_time_text(value: object) -> object:
    if isinstance(value, datetime):  # built in Python, not read from a message
        return value
    if isinstance(value, str) and _ISO_DATE_TIME.fullmatch(value):
        return value
    raise ValueError("must be an ISO 8601 date-time string with a timezone, such as 2026-05-31T10:00:00Z")


def _amount_input(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("must be a number or a decimal string, not a boolean")
    if isinstance(value, str) and not _DECIMAL_TEXT.fullmatch(value):
        raise ValueError('a string amount must be plain decimal digits such as "19.90" (no exponent, _, + or spaces)')
    return value


def _in_utc(value: datetime) -> datetime:
    """The same instant in UTC: with pydantic's own timezone object, every later comparison or epoch
    conversion of an event time calls back into it (1.6 µs, against 0.06 µs in UTC)."""
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01 with a positive offset: kept, for the range check to refuse
        return value


EventTime = Annotated[AwareDatetime, BeforeValidator(_iso_date_time_text), AfterValidator(_in_utc)]

Amount = Annotated[
    Decimal,
    Field(ge=0, max_digits=14, decimal_places=4),  # before the validator: constraints stay native (fast)
    BeforeValidator(_amount_input),
    # Plain notation, so what the model writes (1e3 read as a JSON number) is what it reads back.
    PlainSerializer(lambda amount: format(amount, "f"), return_type=str, when_used="json"),
    WithJsonSchema(
        {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": _DECIMAL_TEXT.pattern}]},
        mode="validation",
    ),
]


class EventBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: Identifier = Field(description="Unique per event; redeliveries carry the same id")
    customer_id: Identifier = Field(description="Must equal the Kafka message key (its UTF-8 bytes)")
    occurred_at: EventTime = Field(
        description="Event time: an ISO 8601 string with a timezone (Z or +hh:mm), never a number; "
        "from 1970-01-01T00:00:00Z to CHURNWATCH_MAX_FUTURE_SKEW ahead of the clock"
    )
    segment: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="Optional customer segment, for rule filters"
    )


class PurchaseEvent(EventBase):
    """A completed order."""

    order_id: Identifier = Field(description="The order this purchase completes")
    amount: Amount = Field(
        description="Order total >= 0, up to 14 digits and 4 decimals: a JSON number or a plain decimal string "
        'such as "19.90" (no exponent, underscore, plus sign or spaces); never a boolean'
    )
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = Field(description="ISO 4217 code")
    item_count: Annotated[StrictInt, Field(ge=0, le=1_000_000)] | None = Field(
        default=None, description='Items in the order, 0-1,000,000: a JSON integer (not 2.0, "2" or true)'
    )


class InteractionKind(StrEnum):
    LOGIN = "login"
    SESSION = "session"
    PAGE_VIEW = "page_view"
    SUPPORT_TICKET = "support_ticket"
    COMPLAINT = "complaint"
    EMAIL_OPEN = "email_open"
    EMAIL_CLICK = "email_click"
    PUSH_OPEN = "push_open"
    CUSTOM = "custom"


class InteractionEvent(EventBase):
    """A touch between the customer and the business. Kinds outside the closed set use
    ``kind: custom`` with ``custom_kind`` naming it."""

    kind: InteractionKind
    custom_kind: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")] | None = Field(
        default=None, description="Required with kind 'custom': the kind's name, e.g. webinar"
    )
    channel: Annotated[str, StringConstraints(min_length=1, max_length=32)] = Field(
        description="e.g. web, app, email, phone, store"
    )

    @model_validator(mode="after")
    def _custom_kind_only_for_custom(self) -> InteractionEvent:
        if (self.kind is InteractionKind.CUSTOM) != (self.custom_kind is not None):
            raise ValueError("custom_kind is required when kind is 'custom', and only then")
        return self

    @property
    def counted_kind(self) -> str:
        """The name the windows count this interaction under."""
        return self.custom_kind if self.custom_kind else self.kind.value


SURVEY_RANGES: dict[str, tuple[int, int]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}


class FeedbackEvent(EventBase):
    """A survey answer: NPS 0-10, CSAT 1-5 or CES 1-7 (high effort = bad)."""

    kind: Literal["nps", "csat", "ces"]
    score: StrictInt = Field(description='A JSON integer (not 2.0, "2" or true) in the range of its kind')
    comment: Annotated[str, StringConstraints(max_length=4000)] | None = Field(
        default=None, description="Free-text answer, up to 4,000 characters"
    )

    @model_validator(mode="after")
    def _score_in_range_for_kind(self) -> FeedbackEvent:
        low, high = SURVEY_RANGES[self.kind]
        if not low <= self.score <= high:
            raise ValueError(f"{self.kind} score must be between {low} and {high}, got {self.score}")
        return self


AnyEvent = PurchaseEvent | InteractionEvent | FeedbackEvent

EVENT_MODELS: dict[str, type[EventBase]] = {
    "purchase": PurchaseEvent,
    "interaction": InteractionEvent,
    "feedback": FeedbackEvent,
}


def occurred_epoch_ms(event: EventBase) -> int:
    return epoch_ms(event.occurred_at)
