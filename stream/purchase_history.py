"""Reading a purchase history from a file, for fitting purchase models offline (``churnwatch model fit``).

Two inputs: the wire format (JSON Lines of purchase events, each validated by the same
:class:`stream.events.PurchaseEvent` the worker uses) and a transactions CSV with named columns.
A line that is not a purchase is counted by reason and skipped, never fatal: a history of millions
of rows is worth fitting even when some rows are broken, and the report says how many were.

Per customer only what BG/NBD needs is kept: the earliest purchase time of each UTC day, so a
cut-off (``--as-of``) can drop what came later and the customer reduces to x, t_x and T exactly as
the rule computes them (:func:`rules.purchase_model.bgnbd_inputs`).
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from pydantic import ValidationError

from rules.purchase_model import BgNbdInputs, bgnbd_inputs
from rules.state import day_number
from stream.decoding import EARLIEST_EVENT_TIME
from stream.events import PurchaseEvent

MAX_EXAMPLES = 5
"""Invalid lines quoted in the report (the rest are only counted)."""


@dataclass
class ReadReport:
    rows: int = 0
    """Lines (JSONL) or data rows (CSV) read, blank lines excluded."""
    purchases: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    """Rows not used, by reason (``not_json``, ``schema``, ``bad_time``, ``not_a_purchase``, ...)."""
    examples: list[str] = field(default_factory=list)

    def skip(self, where: int, reason: str, detail: str) -> None:
        self.skipped[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"line {where}: {reason}: {detail[:300]}")

    def summary(self) -> str:
        text = f"{self.rows} rows read, {self.purchases} purchases used"
        if self.skipped:
            reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
            text += f", {sum(self.skipped.values())} skipped ({reasons})"
        return text


@dataclass
class PurchaseHistory:
    """Each customer's purchase days, and the earliest purchase time (epoch seconds) on each of them."""

    days: dict[str, dict[int, float]] = field(default_factory=dict)
    latest: datetime | None = None

    def add(self, customer_id: str, at: datetime) -> None:
        day, seconds = day_number(at), at.timestamp()
        customer = self.days.setdefault(customer_id, {})
        if seconds < customer.get(day, float("inf")):
            customer[day] = seconds
        if self.latest is None or at > self.latest:
            self.latest = at

    def inputs(self, as_of: datetime) -> dict[str, BgNbdInputs]:
        """x, t_x, T of every customer who had bought by ``as_of``, counting only purchases by then."""
        cut, found = as_of.timestamp(), {}
        for customer_id, by_day in self.days.items():
            seen = [day for day, first_at in by_day.items() if first_at <= cut]
            if seen:
                found[customer_id] = bgnbd_inputs(min(seen), max(seen), len(seen), as_of)
        return found


def read_jsonl(path: Path) -> tuple[PurchaseHistory, ReadReport]:
    """Purchase events as the ``purchases`` topic carries them, one JSON object a line."""
    history, report = PurchaseHistory(), ReadReport()
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            report.rows += 1
            try:
                event = PurchaseEvent.model_validate_json(line)
            except ValidationError as exc:
                reason = "not_json" if any(e["type"] == "json_invalid" for e in exc.errors()) else "schema"
                report.skip(number, reason, _summarise(exc))
                continue
            if event.occurred_at < EARLIEST_EVENT_TIME:
                report.skip(number, "bad_time", f"occurred_at {event.occurred_at.isoformat()} is before 1970")
                continue
            history.add(event.customer_id, event.occurred_at)
            report.purchases += 1
    return history, report


def read_csv(
    path: Path,
    *,
    customer_column: str,
    time_column: str,
    amount_column: str | None = None,
    time_format: str | None = None,
) -> tuple[PurchaseHistory, ReadReport]:
    """A transactions table: one row per purchase. Times are ISO 8601 unless ``time_format`` (a
    ``strptime`` format) says otherwise; times without a timezone are UTC. With ``amount_column``,
    rows whose amount is not above zero (returns, refunds, voids) are not purchases."""
    history, report = PurchaseHistory(), ReadReport()
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        wanted = [c for c in (customer_column, time_column, amount_column) if c is not None]
        missing = [c for c in wanted if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: no column {', '.join(map(repr, missing))}; columns: {reader.fieldnames}")
        for row in reader:
            number = reader.line_num
            report.rows += 1
            customer = (row.get(customer_column) or "").strip()
            if not customer:
                report.skip(number, "no_customer", f"empty {customer_column!r}")
                continue
            moment = _parse_time(row.get(time_column) or "", time_format)
            if isinstance(moment, str):
                report.skip(number, "bad_time", moment)
                continue
            if amount_column is not None:
                problem = _not_a_purchase(row.get(amount_column) or "")
                if problem is not None:
                    report.skip(number, problem[0], problem[1])
                    continue
            history.add(customer, moment)
            report.purchases += 1
    return history, report


def _parse_time(text: str, time_format: str | None) -> datetime | str:
    """The moment, or why it is not one."""
    try:
        moment = datetime.strptime(text.strip(), time_format) if time_format else datetime.fromisoformat(text.strip())
    except ValueError as exc:
        return f"{text!r} is not a time ({exc})"
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if moment < EARLIEST_EVENT_TIME:
        return f"{text!r} is before 1970"
    return moment


def _not_a_purchase(text: str) -> tuple[str, str] | None:
    try:
        amount = Decimal(text.strip())
    except InvalidOperation:
        return "bad_amount", f"{text!r} is not a number"
    if not amount.is_finite():
        return "bad_amount", f"{text!r} is not a number"
    if amount <= 0:
        return "not_a_purchase", f"amount {text.strip()} is not above zero"
    return None


def _summarise(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '(line)'}: {e['msg']}" for e in exc.errors())
