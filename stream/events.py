"""The event contracts: one pydantic model per Kafka stream, keyed by ``customer_id``.

These models are the single schema: validation, the README table and the JSON Schema
(``churnwatch schema events``) all come from them.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]


class EventBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: Identifier = Field(description="Unique per event; redeliveries carry the same id")
    customer_id: Identifier = Field(description="Also the Kafka message key")
    occurred_at: AwareDatetime = Field(description="Event time, with a timezone (ISO 8601)")
    segment: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="Optional customer segment, for rule filters"
    )


class PurchaseEvent(EventBase):
    """A completed order."""

    order_id: Identifier = Field(description="The order this purchase completes")
    amount: Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=4)] = Field(description="Order total, >= 0")
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = Field(description="ISO 4217 code")
    item_count: Annotated[int, Field(ge=0, le=1_000_000)] | None = Field(default=None, description="Items in the order")


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
    score: int
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
    return int(event.occurred_at.timestamp() * 1000)
