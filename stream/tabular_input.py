"""Transaction exports (CSV, Parquet) as replay input: the same :class:`~stream.replay.ReplayInput`
that :func:`stream.replay.read_jsonl` makes, purchases only.

A ``--map`` names the columns: ``customer``, ``time`` and ``amount`` are required, ``order`` and
``currency`` optional. Rows sharing a customer and an order id are one purchase (item-level exports
have a row per item): amounts summed, the earliest row's time, ``item_count`` the rows. Without an
order column every row is a purchase, with the order id ``row-<line number>``. The event id is
``order-<order id>`` (the dedupe is per customer), so the same file replayed twice gives the same ids.

A row that cannot be read (empty customer or order, an amount that is not a number or below zero, a
time that is not one, has no timezone or is before 1970) is a problem of that row, with its number:
the CSV's physical line (the header is line 1), the Parquet file's row (1-based). Every purchase
then goes through the worker's decoder (:func:`stream.replay.checked_record`), so what the worker
would dead-letter is reported the same way, at the order's first row. Only a file that cannot be
read at all (a mapped column missing, not UTF-8, not Parquet) raises :class:`InputError`.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from stream.decoding import EARLIEST_EVENT_TIME, DecodePolicy
from stream.replay import InputProblem, ReplayInput, TimedRecord, checked_record, read_jsonl
from stream.settings import Topics

FORMATS = ("jsonl", "csv", "parquet")
SUFFIX_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
"""The format of a file by its suffix; any other suffix is JSON Lines."""
PARQUET_BATCH_ROWS = 65_536
PYARROW_MISSING = "Parquet input needs pyarrow: pip install 'churnwatch[backtest]'"
MAP_SYNTAX = "customer=COL,time=COL,amount=COL[,order=COL][,currency=COL]"

Row = dict[str, object]
"""One row's mapped values by role (``customer``, ``time``, ...): text from a CSV, Python values from Parquet."""


class InputError(ValueError):
    """The input cannot be read at all (a row that cannot is an :class:`~stream.replay.InputProblem`)."""


class OptionError(ValueError):
    """The options do not fit the input; ``option`` names the one to change."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class ColumnMap:
    """Which column holds what."""

    customer: str
    time: str
    amount: str
    order: str | None = None
    currency: str | None = None

    def roles(self) -> dict[str, str]:
        """Role -> column, the mapped ones only."""
        return {f.name: column for f in fields(self) if (column := getattr(self, f.name)) is not None}


_REQUIRED = ("customer", "time", "amount")
_ROLES = tuple(f.name for f in fields(ColumnMap))


def parse_column_map(text: str) -> ColumnMap:
    """``customer=COL,time=COL,amount=COL[,order=COL][,currency=COL]``; a ValueError names what is wrong."""
    pairs: dict[str, str] = {}
    for part in text.split(","):
        role, equals, column = (s.strip() for s in part.partition("="))
        if not equals or not role or not column:
            raise ValueError(f"{part.strip()!r} is not ROLE=COLUMN (expected {MAP_SYNTAX})")
        if role in pairs:
            raise ValueError(f"{role!r} is mapped twice")
        pairs[role] = column
    unknown = [role for role in pairs if role not in _ROLES]
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}: the keys are {', '.join(_ROLES)}")
    missing = [role for role in _REQUIRED if role not in pairs]
    if missing:
        raise ValueError(f"missing required key(s) {', '.join(missing)} (expected {MAP_SYNTAX})")
    return ColumnMap(**pairs)


def input_format(path: Path, fmt: str | None) -> str:
    """``fmt``, or the one of the file's suffix (``.csv``, ``.parquet``/``.pq``, else ``jsonl``)."""
    if fmt is None:
        return SUFFIX_FORMATS.get(path.suffix.lower(), "jsonl")
    if fmt not in FORMATS:
        raise OptionError("--format", f"{fmt!r} is not one of {', '.join(FORMATS)}")
    return fmt


def zone_of(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise OptionError("--timezone", f"unknown timezone {name!r}: an IANA name such as Europe/Berlin") from exc


def read_input(
    path: Path,
    *,
    fmt: str | None,
    column_map: ColumnMap | None,
    timezone: str | None,
    currency: str,
    topics: Topics,
    policy: DecodePolicy,
) -> ReplayInput:
    """The replay input of ``path``: JSON Lines envelopes, or a CSV/Parquet export mapped by
    ``column_map`` (whose naive times are in ``timezone``; rows without a currency column in
    ``currency``). Raises :class:`OptionError` for options that do not fit, :class:`InputError`
    for a file that cannot be read; a row that cannot be read is a problem of the result."""
    kind = input_format(path, fmt)
    if kind == "jsonl":
        if column_map is not None:
            raise OptionError("--map", "is for csv and parquet input: JSON Lines events name their own fields")
        if timezone is not None:
            raise OptionError("--timezone", "is for csv and parquet input: JSON Lines event times carry their offset")
        with path.open("rb") as lines:
            return read_jsonl(lines, topics, policy)
    if column_map is None:
        raise OptionError("--map", f"is required for {kind} input: {MAP_SYNTAX}")
    zone = zone_of(timezone) if timezone is not None else None
    rows = _csv_rows(path, column_map) if kind == "csv" else _parquet_rows(path, column_map)
    purchases = Purchases(column_map, zone=zone, currency=currency)
    read = ReplayInput(unit="line" if kind == "csv" else "row")
    for number, row in rows:
        read.lines += 1
        problem = purchases.add(number, row)
        if problem is not None:
            read.problems.append(problem)
    for got in purchases.records(topics.purchases, policy):
        if isinstance(got, InputProblem):
            read.problems.append(got)
        else:
            read.records.append(got)
    return read


def _missing_columns(path: Path, present: Iterable[str], column_map: ColumnMap) -> None:
    names = list(present)
    missing = [column for column in column_map.roles().values() if column not in names]
    if missing:
        raise InputError(f"{path}: no column {', '.join(map(repr, missing))}; its columns: {', '.join(names)}")


def _csv_rows(path: Path, column_map: ColumnMap) -> Iterator[tuple[int, Row]]:
    """Each non-blank data row with its first physical line (the header is line 1)."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                raise InputError(f"{path}: empty file, no header row")
            _missing_columns(path, header, column_map)
            where = {role: header.index(column) for role, column in column_map.roles().items()}
            last = reader.line_num  # a quoted field may span lines: a row starts after the last one's end
            for row in reader:
                first, last = last + 1, reader.line_num
                if row:  # [] is a blank line
                    yield first, {role: row[i] if i < len(row) else None for role, i in where.items()}
        except (UnicodeDecodeError, csv.Error) as exc:
            raise InputError(f"{path}: unreadable after line {reader.line_num}: {exc}") from exc


def _parquet_rows(path: Path, column_map: ColumnMap) -> Iterator[tuple[int, Row]]:
    """Each row with its number (1-based), reading only the mapped columns, a batch at a time."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise InputError(PYARROW_MISSING) from exc
    try:
        table = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a Parquet file ({exc})") from exc
    _missing_columns(path, table.schema_arrow.names, column_map)
    roles = column_map.roles()
    number = 0
    for batch in table.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=list(dict.fromkeys(roles.values()))):
        values = {role: _python_values(pa, batch.column(column)) for role, column in roles.items()}
        for i in range(batch.num_rows):
            number += 1
            yield number, {role: column[i] for role, column in values.items()}


def _python_values(pa: Any, array: Any) -> list[object]:
    if pa.types.is_timestamp(array.type) and array.type.unit == "ns":  # as datetimes, not pandas Timestamps
        array = array.cast(pa.timestamp("us", array.type.tz), safe=False)
    return list(array.to_pylist())


class _RowError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@dataclass
class _Order:
    line: int
    customer: str
    order_id: str
    at: datetime
    amount: Decimal
    currency: str
    items: int = 1
    other_currencies: frozenset[str] = frozenset()


class Purchases:
    """Rows folded into purchases, one per (customer, order id), in the order of their first row."""

    def __init__(self, column_map: ColumnMap, *, zone: tzinfo | None, currency: str) -> None:
        self._map, self._zone, self._currency = column_map, zone, currency
        self._orders: dict[tuple[str, str], _Order] = {}

    def add(self, number: int, row: Row) -> InputProblem | None:
        """Fold one row in; a row that cannot be read is returned as its problem."""
        try:
            customer = _identifier(row["customer"], "empty_customer")
            order_id = f"row-{number}" if self._map.order is None else _identifier(row["order"], "empty_order")
            at = _moment(row["time"], self._zone)
            amount = _amount(row["amount"])
        except _RowError as exc:
            return InputProblem(number, exc.reason, exc.detail)
        currency = _text(row.get("currency")) or self._currency
        order = self._orders.get((customer, order_id))
        if order is None:
            self._orders[customer, order_id] = _Order(number, customer, order_id, at, amount, currency)
            return None
        order.at, order.amount, order.items = min(order.at, at), order.amount + amount, order.items + 1
        if currency != order.currency:
            order.other_currencies |= {currency}
        return None

    def records(self, topic: str, policy: DecodePolicy) -> Iterator[TimedRecord | InputProblem]:
        """Each purchase as a record checked by the worker's decoder, or its problem at its first row."""
        for order in self._orders.values():
            if order.other_currencies:
                mixed = ", ".join(sorted({order.currency, *order.other_currencies}))
                yield InputProblem(order.line, "mixed_currency", f"order {order.order_id!r} has rows in {mixed}")
                continue
            yield checked_record("purchase", _event(order), order.line, topic, policy)


def _event(order: _Order) -> dict[str, object]:
    return {
        "event_id": event_id(order.order_id),
        "customer_id": order.customer,
        "occurred_at": order.at.astimezone(UTC).isoformat(),
        "order_id": order.order_id,
        "amount": format(order.amount, "f"),
        "currency": order.currency,
        "item_count": order.items,
    }


def event_id(order_id: str) -> str:
    """``order-<order id>``; an order id too long for that (over 122 characters) by its digest."""
    if len(order_id) <= 122:
        return f"order-{order_id}"
    return "order-b2-" + hashlib.blake2b(order_id.encode(), digest_size=20).hexdigest()


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def _identifier(value: object, empty: str) -> str:
    if isinstance(value, float) and value.is_integer():  # integer ids in a column with nulls
        value = int(value)
    text = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else None
    if not text:
        raise _RowError(empty, "empty" if not _text(value) else f"{value!r} is not an id")
    return text


_CONTRACT_DECIMALS = Decimal("0.0001")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DATE = re.compile(r"[0-9]{4}-?[0-9]{2}-?[0-9]{2}")


def _amount(value: object) -> Decimal:
    if isinstance(value, float) and math.isfinite(value):
        # A binary double holds no decimal exactly (0.29 may be 0.29000000000000004): rounded to the
        # contract's 4 decimals. Text and decimal columns are taken exactly.
        amount = Decimal(repr(value)).quantize(_CONTRACT_DECIMALS).normalize()
    elif isinstance(value, int) and not isinstance(value, bool):
        amount = Decimal(value)
    elif isinstance(value, Decimal) and value.is_finite():
        amount = value
    elif isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        amount = Decimal(value.strip())
    else:
        raise _RowError("bad_amount", f"{value!r} is not an amount" if _text(value) else "empty")
    if amount < 0:
        raise _RowError("negative_amount", f"amount {value} is below zero (a return?): not a purchase")
    return amount


def _moment(value: object, zone: tzinfo | None) -> datetime:
    """A row's time: aware as given; naive in ``zone`` (an error without it); a date at its 00:00
    (in ``zone``, else UTC). Raises :class:`_RowError` (``bad_time``, ``no_timezone``,
    ``timestamp_out_of_range``)."""
    if isinstance(value, str) and _DATE.fullmatch(value.strip()):
        value = _parse(date.fromisoformat, value.strip())
    elif isinstance(value, str) and value.strip():
        value = _parse(datetime.fromisoformat, value.strip())
    if isinstance(value, datetime):
        if value.tzinfo is None:
            if zone is None:
                raise _RowError(
                    "no_timezone", f"{value.isoformat()} has no timezone: add --timezone (the export's zone)"
                )
            value = value.replace(tzinfo=zone)
    elif isinstance(value, date):
        value = datetime.combine(value, time(), tzinfo=zone or UTC)
    else:
        raise _RowError("bad_time", f"{value!r} is not a time" if _text(value) else "empty")
    try:
        utc = value.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise _RowError("bad_time", f"{value!r}: {exc}") from exc
    if utc < EARLIEST_EVENT_TIME:
        raise _RowError("timestamp_out_of_range", f"{utc.isoformat()} is before {EARLIEST_EVENT_TIME.isoformat()}")
    return utc


def _parse(parse: Any, text: str) -> datetime | date:
    try:
        parsed: datetime | date = parse(text)
    except ValueError as exc:
        raise _RowError("bad_time", f"{text!r} is not an ISO 8601 date or date-time ({exc})") from exc
    return parsed
