"""Transaction exports (CSV, Parquet) as replay input: the records JSON Lines would give, bad rows by number."""

from __future__ import annotations

import csv
import json
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from stream import tabular_input
from stream.cli import main
from stream.decoding import DecodePolicy
from stream.replay import ReplayDeadLetters, ReplayInput, problem_lines, read_jsonl
from stream.settings import Topics
from stream.tabular_input import (
    PYARROW_MISSING,
    ColumnMap,
    InputError,
    OptionError,
    parse_column_map,
    read_input,
)
from tests.rule_files import OVERDUE_RULES

TOPICS = Topics()
DECODE = DecodePolicy(max_message_bytes=65536, max_future_skew=timedelta(hours=1), currency="USD")
BASKETS = parse_column_map("customer=cust,time=ts,amount=total,order=basket")
ROWS = parse_column_map("customer=cust,time=ts,amount=total")


def read(
    path: Path, column_map: ColumnMap | None = BASKETS, *, timezone: str | None = None, fmt: str | None = None
) -> ReplayInput:
    return read_input(
        path, fmt=fmt, column_map=column_map, timezone=timezone, currency="USD", topics=TOPICS, policy=DECODE
    )


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_parquet(path: Path, columns: dict[str, Any]) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def seen(got: ReplayInput) -> list[tuple[datetime, str, bytes | None, bytes | None]]:
    """What the replay gets of each record (the offset is the input's line or row number)."""
    return [(r.at, r.record.topic, r.record.key, r.record.value) for r in got.records]


def events(got: ReplayInput) -> list[dict[str, Any]]:
    return [json.loads(r.record.value or b"") for r in got.records]


def problems(got: ReplayInput) -> list[tuple[int, str]]:
    return sorted((p.line, p.reason) for p in got.problems)


def test_csv_and_parquet_give_the_records_of_the_same_history_in_json_lines(tmp_path: Path) -> None:
    wire = [
        ("c-1", "o-1", "2026-03-01T12:00:00+00:00", "20.50"),
        ("c-2", "o-2", "2026-03-02T08:30:00+00:00", "7"),
        ("c-1", "o-3", "2026-03-09T12:00:00.250000+00:00", "0.0001"),
    ]
    lines = [
        json.dumps(
            {
                "topic": "purchase",
                "event": {
                    "event_id": f"order-{order}",
                    "customer_id": customer,
                    "occurred_at": at,
                    "order_id": order,
                    "amount": amount,
                    "currency": "USD",
                    "item_count": 1,
                },
            }
        )
        for customer, order, at, amount in wire
    ]
    jsonl = read_jsonl([line.encode() for line in lines], TOPICS, DECODE)
    # the same moments written as exports write them: other offsets, a space, Z
    shown = ["2026-03-01T13:00:00+01:00", "2026-03-02 08:30:00Z", "2026-03-09T07:00:00.25-05:00"]
    rows = [[c, o, t, a] for (c, o, _, a), t in zip(wire, shown, strict=True)]
    from_csv = read(write_csv(tmp_path / "export.csv", ["cust", "basket", "ts", "total"], rows))
    from_parquet = read(
        write_parquet(
            tmp_path / "export.parquet",
            {
                "cust": [c for c, *_ in wire],
                "basket": [o for _, o, *_ in wire],
                "ts": pa.array([datetime.fromisoformat(at) for *_, at, _ in wire], pa.timestamp("ns", "UTC")),
                "total": pa.array([Decimal(a) for *_, a in wire], pa.decimal128(10, 4)),
                "ignored": [1, 2, 3],
            },
        )
    )
    assert jsonl.problems == from_csv.problems == from_parquet.problems == []
    assert len(jsonl.records) == 3
    assert seen(from_csv) == seen(jsonl)
    # Parquet's decimal128(10, 4) keeps its scale: "20.5000" where the text said "20.50", the same amount
    assert [e["amount"] for e in events(from_parquet)] == ["20.5000", "7.0000", "0.0001"]
    assert [(at, topic, key) for at, topic, key, _ in seen(from_parquet)] == [s[:3] for s in seen(jsonl)]
    assert [{**e, "amount": Decimal(e["amount"])} for e in events(from_parquet)] == [
        {**e, "amount": Decimal(e["amount"])} for e in events(jsonl)
    ]
    assert (from_csv.lines, from_csv.unit, from_parquet.lines, from_parquet.unit) == (3, "line", 3, "row")


def test_item_rows_of_one_order_are_one_purchase_summed_at_its_earliest_time(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "items.csv",
        ["cust", "basket", "ts", "total"],
        [
            ["c-1", "b-1", "2026-03-01T10:05:00Z", "0.10"],
            ["c-2", "b-1", "2026-03-01T11:00:00Z", "5"],  # the same order id, another customer
            ["c-1", "b-1", "2026-03-01T10:00:00Z", "0.20"],
            ["c-1", "b-2", "2026-03-08T10:00:00Z", "1.5"],
            ["c-1", "b-1", "2026-03-01T10:09:00Z", "0"],
        ],
    )
    got = read(path)
    assert got.problems == [] and got.lines == 5
    assert [(r.record.offset, r.record.key) for r in got.records] == [(2, b"c-1"), (3, b"c-2"), (5, b"c-1")]
    first, other, second = events(got)
    assert first == {
        "event_id": "order-b-1",
        "customer_id": "c-1",
        "occurred_at": "2026-03-01T10:00:00+00:00",
        "order_id": "b-1",
        "amount": "0.30",  # Decimal: not 0.30000000000000004
        "currency": "USD",
        "item_count": 3,
    }
    assert (other["customer_id"], other["event_id"], other["amount"], other["item_count"]) == (
        "c-2",
        "order-b-1",
        "5",
        1,
    )
    assert (second["order_id"], second["item_count"]) == ("b-2", 1)
    assert seen(read(path)) == seen(got)  # the same file, the same ids


def test_without_an_order_column_each_row_is_a_purchase_named_by_its_line(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "rows.csv",
        ["cust", "ts", "total"],
        [["c-1", "2026-03-01T10:00:00Z", "3"], ["c-1", "2026-03-01T10:00:00Z", "3"]],
    )
    got = read(path, ROWS)
    assert [(e["order_id"], e["event_id"], e["item_count"]) for e in events(got)] == [
        ("row-2", "order-row-2", 1),
        ("row-3", "order-row-3", 1),
    ]


def test_every_bad_row_is_reported_with_its_physical_line_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "\ufeffcust,basket,ts,total,currency,note\n"  # line 1, with a byte order mark
        "c-1,b-1,2026-03-01T10:00:00Z,1.00,USD,fine\n"  # 2
        " ,b-2,2026-03-01T10:00:00Z,1.00,USD,empty customer\n"  # 3
        "c-1,b-3,2026-03-01T10:00:00Z,1\u00a0000,USD,\n"  # 4 bad amount
        "c-1,b-4,2026-03-01T10:00:00Z,-3.00,USD,a return\n"  # 5
        "c-1,b-5,yesterday,1.00,USD,\n"  # 6
        "c-1,b-6,1969-12-31T23:59:59Z,1.00,USD,\n"  # 7 before the contract's range
        "c-1,b-7,2026-03-01T10:00:00,1.00,USD,\n"  # 8 no timezone
        "\n"  # 9 blank: neither a row nor a problem
        'c-1,b-8,2026-03-01T11:00:00Z,2.00,USD,"a note\nover two lines"\n'  # 10-11
        "c-1,b-9,2026-03-01T12:00:00Z,2.00,EUR,\n"  # 12: the worker's currency check
        "c-1,b-10,2026-03-01T12:00:00Z,1.23456,USD,\n"  # 13: the contract's 4 decimals
        "c-1,,2026-03-01T12:00:00Z,1.00,USD,\n"  # 14 empty order id
        "c-1,b-11,2026-03-01T12:00:00Z,,USD,\n"  # 15 empty amount
        "c-1,b-12\n"  # 16 a short row
        "c-2,b-13,2026-03-01T12:00:00Z,1.00,USD,\n"  # 17 \u2192 one order in two currencies
        "c-2,b-13,2026-03-01T12:00:00Z,1.00,,empty currency: the default (USD)\n"  # 18
        "c-2,b-13,2026-03-01T12:00:00Z,1.00,GBP,\n"  # 19
    )
    column_map = parse_column_map("customer=cust,order=basket,time=ts,amount=total,currency=currency")
    got = read(path, column_map)
    assert problems(got) == [
        (3, "empty_customer"),
        (4, "bad_amount"),
        (5, "negative_amount"),
        (6, "bad_time"),
        (7, "timestamp_out_of_range"),
        (8, "no_timezone"),
        (12, "currency"),
        (13, "schema"),
        (14, "empty_order"),
        (15, "bad_amount"),
        (16, "bad_time"),
        (17, "mixed_currency"),
    ]
    assert [r.record.offset for r in got.records] == [2, 10]
    assert got.lines == 16  # data rows: the blank line is none, the two-line row is one
    details = {p.line: p.detail for p in got.problems}
    assert "add --timezone" in details[8]
    assert "below zero" in details[5] and "EUR is not the configured USD" in details[12]
    assert details[17] == "order 'b-13' has rows in GBP, USD"
    shown = problem_lines(got, ReplayDeadLetters())
    assert shown[0].startswith("12 invalid line(s), not replayed: 2 bad_amount, 2 bad_time, 1 currency,")
    assert "  line 3: empty_customer: empty" in shown


def test_a_naive_time_needs_a_timezone_which_reads_it_in_that_zone(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "local.csv",
        ["cust", "basket", "ts", "total"],
        [
            ["c-1", "winter", "2026-01-15 10:00", "1"],
            ["c-1", "summer", "2026-07-15T10:00:00", "1"],
            ["c-1", "offset", "2026-07-15T10:00:00Z", "1"],  # an offset wins over --timezone
            ["c-1", "date", "2026-07-16", "1"],
        ],
    )
    without = read(path)
    assert problems(without) == [(2, "no_timezone"), (3, "no_timezone")]
    assert [e["occurred_at"] for e in events(without)] == ["2026-07-15T10:00:00+00:00", "2026-07-16T00:00:00+00:00"]

    berlin = read(path, timezone="Europe/Berlin")
    assert berlin.problems == []
    assert [e["occurred_at"] for e in events(berlin)] == [
        "2026-01-15T09:00:00+00:00",  # CET, +01:00
        "2026-07-15T08:00:00+00:00",  # CEST, +02:00
        "2026-07-15T10:00:00+00:00",
        "2026-07-15T22:00:00+00:00",  # the day's 00:00 in Berlin
    ]
    with pytest.raises(OptionError, match="unknown timezone 'Mars/Olympus'"):
        read(path, timezone="Mars/Olympus")


def test_parquet_times_naive_aware_and_dates_and_row_numbers_across_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tabular_input, "PARQUET_BATCH_ROWS", 2)
    naive = datetime(2026, 1, 15, 10)
    path = write_parquet(
        tmp_path / "t.pq",
        {
            "cust": pa.array([1001, 1001, 1002, None, 1002]),  # integer ids, as the Complete Journey's
            "naive": pa.array([naive] * 5, pa.timestamp("us")),
            "aware": pa.array([naive] * 5, pa.timestamp("ms", "America/New_York")),
            "day": pa.array([date(2026, 7, 16)] * 5, pa.date32()),
            "total": pa.array([1.25, 2.5, -1.0, 3.0, 0.1]),
        },
    )
    naive_map = parse_column_map("customer=cust,time=naive,amount=total")
    without = read(path, naive_map)
    assert (without.unit, without.records) == ("row", [])
    assert problems(without) == [
        (1, "no_timezone"),
        (2, "no_timezone"),
        (3, "no_timezone"),
        (4, "empty_customer"),  # the customer is read first
        (5, "no_timezone"),
    ]
    assert "add --timezone" in without.problems[0].detail

    berlin = read(path, naive_map, timezone="Europe/Berlin")
    assert problems(berlin) == [(3, "negative_amount"), (4, "empty_customer")]
    assert [(r.record.offset, r.record.key) for r in berlin.records] == [(1, b"1001"), (2, b"1001"), (5, b"1002")]
    assert [(e["occurred_at"], e["amount"], e["order_id"]) for e in events(berlin)] == [
        ("2026-01-15T09:00:00+00:00", "1.25", "row-1"),
        ("2026-01-15T09:00:00+00:00", "2.5", "row-2"),
        ("2026-01-15T09:00:00+00:00", "0.1", "row-5"),  # a float's shortest repr, not 0.1000000000000000055...
    ]
    aware = read(path, parse_column_map("customer=cust,time=aware,amount=total"), timezone="Europe/Berlin")
    assert {r.at for r in aware.records} == {datetime(2026, 1, 15, 10, tzinfo=UTC)}  # stored as UTC, used as is
    days = read(path, parse_column_map("customer=cust,time=day,amount=total"))
    assert {r.at for r in days.records} == {datetime(2026, 7, 16, tzinfo=UTC)}
    days_berlin = read(path, parse_column_map("customer=cust,time=day,amount=total"), timezone="Europe/Berlin")
    assert {r.at for r in days_berlin.records} == {datetime(2026, 7, 15, 22, tzinfo=UTC)}
    assert "  row 3: negative_amount" in "\n".join(problem_lines(berlin, ReplayDeadLetters()))


def test_parquet_item_rows_with_integer_order_ids_are_summed(tmp_path: Path) -> None:
    path = write_parquet(
        tmp_path / "items.parquet",
        {
            "household_key": [7, 7, 7],
            "basket_id": [26984851472, 26984851472, 26984851516],
            "day": ["2026-03-01", "2026-03-01", "2026-03-02"],
            "sales_value": [1.39, 0.82, 2.99],
        },
    )
    got = read(path, parse_column_map("customer=household_key,order=basket_id,time=day,amount=sales_value"))
    assert [(e["customer_id"], e["event_id"], e["amount"], e["item_count"]) for e in events(got)] == [
        ("7", "order-26984851472", "2.21", 2),
        ("7", "order-26984851516", "2.99", 1),
    ]


def test_a_mapped_column_missing_from_the_file_names_it_and_the_columns(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "e.csv", ["cust", "ts", "total"], [["c", "2026-03-01", "1"]])
    with pytest.raises(InputError, match=r"no column 'basket'; its columns: cust, ts, total"):
        read(csv_path)
    parquet_path = write_parquet(tmp_path / "e.parquet", {"cust": ["c"], "when": ["2026-03-01"], "total": [1]})
    with pytest.raises(InputError, match=r"no column 'ts', 'basket'; its columns: cust, when, total"):
        read(parquet_path)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="no header row"):
        read(tmp_path / "empty.csv")
    (tmp_path / "fake.parquet").write_text("cust,ts\n")
    with pytest.raises(InputError, match="not a Parquet file"):
        read(tmp_path / "fake.parquet")


def test_parquet_without_pyarrow_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_parquet(tmp_path / "e.parquet", {"cust": ["c"], "ts": ["2026-03-01"], "total": [1]})
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(InputError) as raised:
        read(path, ROWS)
    assert str(raised.value) == PYARROW_MISSING == "Parquet input needs pyarrow: pip install 'churnwatch[backtest]'"
    result = CliRunner().invoke(main, ["replay", str(path), "--map", "customer=cust,time=ts,amount=total"])
    assert result.exit_code == 1 and PYARROW_MISSING in result.stderr


def test_the_column_map_names_unknown_and_missing_keys() -> None:
    assert parse_column_map(" customer=household_key, time = day ,amount=sales value,order=basket_id") == ColumnMap(
        customer="household_key", time="day", amount="sales value", order="basket_id"
    )
    with pytest.raises(ValueError, match=r"unknown key\(s\) price, sku: the keys are customer, time, amount, order"):
        parse_column_map("customer=c,time=t,amount=a,price=p,sku=s")
    with pytest.raises(ValueError, match=r"missing required key\(s\) time, amount"):
        parse_column_map("customer=c")
    with pytest.raises(ValueError, match="'customer' is mapped twice"):
        parse_column_map("customer=c,customer=d,time=t,amount=a")
    with pytest.raises(ValueError, match="'time' is not ROLE=COLUMN"):
        parse_column_map("customer=c,time,amount=a")


def test_the_format_follows_the_suffix_and_map_fits_only_tables(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "export.txt", ["cust", "ts", "total"], [["c", "2026-03-01", "1"]])
    assert len(read(path, ROWS, fmt="csv").records) == 1
    with pytest.raises(OptionError, match="is for csv and parquet input") as raised:
        read(path, ROWS)  # .txt: JSON Lines
    assert raised.value.option == "--map"
    with pytest.raises(OptionError, match="is required for csv input"):
        read(tmp_path / "export.csv", None)
    assert tabular_input.input_format(Path("x.PQ"), None) == "parquet"
    assert tabular_input.event_id("o" * 122) == "order-" + "o" * 122
    assert len(tabular_input.event_id("o" * 200)) <= 128


def test_replay_of_a_csv_export_alerts_as_the_worker_would(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "overdue.yaml").write_text(OVERDUE_RULES)
    t0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
    rows: list[list[str]] = []
    for n, days_ago in enumerate(range(119, -1, -7)):
        at = (t0 - timedelta(days=days_ago)).isoformat()
        rows += [["weekly", f"o-{n}", at, "12.00"], ["weekly", f"o-{n}", at, "8.00"]]  # two items an order
    rows.append(["weekly", "o-x", "2026-03-01T13:00", "1.00"])  # no timezone: reported, left out
    path = write_csv(tmp_path / "export.csv", ["customer", "order", "time", "amount"], rows)
    args = ["replay", str(path), "--map", "customer=customer,order=order,time=time,amount=amount"]
    args += ["--rules", str(tmp_path / "rules"), "--until", "2026-04-10"]

    result = CliRunner().invoke(main, args)

    assert result.exit_code == 0, result.output
    (firing,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert (firing["customer"], firing["rule"], firing["status"]) == ("weekly", "purchase-overdue", "firing")
    assert firing["time"] == "2026-03-22T12:00:00+00:00" and firing["evidence"]["typical_gap_days"] == 7.0
    assert "1 invalid line(s), not replayed: 1 no_timezone" in result.stderr
    assert f"line {len(rows) + 1}: no_timezone" in result.stderr
    assert f"replayed {len(rows) // 2} purchases (from {len(rows)} lines)" in result.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--map", "customer=c,time=t,amount=a,price=p"], "unknown key(s) price"),
        (["--map", "customer=c,amount=a"], "missing required key(s) time"),
        (["--timezone", "Europe/Nowhere"], "unknown timezone 'Europe/Nowhere'"),
        (["--currency", "usd"], "'usd' is not an ISO 4217 code"),
    ],
)
def test_replay_refuses_bad_input_options(tmp_path: Path, extra: list[str], message: str) -> None:
    path = write_csv(tmp_path / "e.csv", ["c", "t", "a"], [["x", "2026-03-01", "1"]])
    result = CliRunner().invoke(main, ["replay", str(path), *extra])
    assert result.exit_code == 2 and message in result.stderr, result.output


def test_replay_wants_map_for_a_table_and_refuses_it_for_json_lines(tmp_path: Path) -> None:
    table = write_csv(tmp_path / "e.csv", ["c", "t", "a"], [["x", "2026-03-01", "1"]])
    result = CliRunner().invoke(main, ["replay", str(table)])
    assert result.exit_code == 2 and "'--map': is required for csv input" in result.stderr
    (tmp_path / "h.jsonl").write_text("")
    result = CliRunner().invoke(main, ["replay", str(tmp_path / "h.jsonl"), "--map", "customer=c,time=t,amount=a"])
    assert result.exit_code == 2 and "is for csv and parquet input" in result.stderr
    result = CliRunner().invoke(
        main, ["replay", str(table), "--format", "parquet", "--map", "customer=c,time=t,amount=a"]
    )
    assert result.exit_code == 1 and "not a Parquet file" in result.stderr


def test_parquet_doubles_are_rounded_to_the_contracts_four_decimals(tmp_path: Path) -> None:
    # A double holds no decimal exactly: 0.1 + 0.2 is 0.30000000000000004 (17 digits, which the
    # contract refuses), as some of the Complete Journey's sales values are.
    path = write_parquet(
        tmp_path / "doubles.parquet",
        {"c": ["7", "8", "9"], "t": ["2026-03-01"] * 3, "a": [0.1 + 0.2, 2.9899999999999998, 12.00005]},
    )
    got = read(path, parse_column_map("customer=c,time=t,amount=a"))
    assert got.problems == []
    assert [e["amount"] for e in events(got)] == ["0.3", "2.99", "12"]  # 12.00005 is 12.0000499... as a double
