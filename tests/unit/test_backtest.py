"""``churnwatch backtest`` on a tiny history whose figures are computed by hand.

Rule: ``gone-quiet``, no purchase for 20 days (and ``never``, 400 days, which never fires).
Cut-off 2026-03-01 00:00 UTC, outcome window 30
days, population: at least 2 purchase days before the cut-off.

======== =================================== ======================= ===============
customer purchases (2026, 10:00 UTC)         alerts before cut-off   after cut-off
======== =================================== ======================= ===============
a        Jan 1 00:00, Jan 10                 Jan 30 10:00 (open)     none: churned
b        Jan 1, Jan 20                       Feb 9 10:00 (open)      Mar 10: stayed
c        Jan 1, Jan 5, Feb 10                Jan 25 10:00, resolved  none: churned
d        Feb 20, Feb 25                      none                    Mar 5: stayed
f        Feb 1, Feb 15                       none (due Mar 7)        none: churned
e        Jan 3 twice (one purchase day)      Jan 23: not counted     none
======== =================================== ======================= ===============
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from backtest import scoring
from stream.cli import main

RULES = """
rules:
  - id: gone-quiet
    kind: inactivity
    activity: purchase
    silent_for: 20d
    cooldown: 60d
    message: "silent {{ days_silent }} days"
  - id: never
    kind: inactivity
    silent_for: 400d
    message: "silent {{ days_silent }} days"
"""
PURCHASES = {
    "a": ["2026-01-01T00:00:00Z", "2026-01-10T10:00:00Z"],
    "b": ["2026-01-01T10:00:00Z", "2026-01-20T10:00:00Z", "2026-03-10T10:00:00Z"],
    "c": ["2026-01-01T10:00:00Z", "2026-01-05T10:00:00Z", "2026-02-10T10:00:00Z"],
    "d": ["2026-02-20T10:00:00Z", "2026-02-25T10:00:00Z", "2026-03-05T10:00:00Z"],
    "e": ["2026-01-03T10:00:00Z", "2026-01-03T11:00:00Z"],
    "f": ["2026-02-01T10:00:00Z", "2026-02-15T10:00:00Z"],
}
CUTOFF = datetime(2026, 3, 1, tzinfo=UTC)


def _days(then: str, now: datetime = CUTOFF) -> float:
    return (now - datetime.fromisoformat(then)) / timedelta(days=1)


def _purchase(customer: str, n: int, at: str) -> dict[str, object]:
    order = f"{customer}-{n}"
    return {"event_id": order, "customer_id": customer, "occurred_at": at, "order_id": order, "amount": 10,
            "currency": "USD"}  # fmt: skip


def run_backtest(tmp_path: Path, history: Path, *extra: str, rules: str = RULES) -> dict[str, object]:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "rules.yaml").write_text(rules)
    out = tmp_path / "report.json"
    result = CliRunner().invoke(
        main,
        ["backtest", str(history), "--cutoff", "2026-03-01", "--outcome-window", "30d",
         "--rules", str(tmp_path / "rules.yaml"), "--json", str(out), *extra],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    loaded: dict[str, object] = json.loads(out.read_text())
    loaded["_stdout"] = result.stdout
    return loaded


def write_jsonl(path: Path, purchases: dict[str, list[str]]) -> Path:
    lines = [
        {"topic": "purchase", "event": _purchase(c, n, at)}
        for c, times in purchases.items()
        for n, at in enumerate(times)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.fixture
def report(tmp_path: Path) -> dict[str, object]:
    return run_backtest(tmp_path, write_jsonl(tmp_path / "history.jsonl", PURCHASES))


def _row(rows: object, view: str) -> dict[str, object]:
    assert isinstance(rows, list)
    return next(r for r in rows if r["view"] == view)


def test_the_label(report: dict[str, object]) -> None:
    assert report["population"] == 5  # e has one purchase day
    assert report["churned"] == 3  # a, c, f
    assert report["churn_rate"] == pytest.approx(0.6)
    assert report["outcome_window_days"] == 30


def test_open_at_cutoff_counts_open_alerts_only(report: dict[str, object]) -> None:
    row = _row(report["rules"], "open_at_cutoff")
    assert (row["flagged"], row["true_positives"]) == (2, 1)  # a and b open; c was resolved on Feb 10
    assert row["precision"] == pytest.approx(0.5)
    assert row["recall"] == pytest.approx(1 / 3)
    assert row["f1"] == pytest.approx(0.4)
    assert row["lead_days_median"] == pytest.approx(_days("2026-01-30T10:00:00Z"))  # 29.58: a's alert
    assert row["lead_to_last_purchase_days_median"] == pytest.approx(-20)
    # a, b and c were alerted in the 59 days replayed (e is outside the population): per 1,000 a week
    assert row["alerts"] == 3
    assert row["alerts_per_1000_per_week"] == pytest.approx(1000 * 3 / 5 / (59 / 7))
    assert _row(report["all_rules"], "open_at_cutoff")["f1"] == pytest.approx(0.4)


def test_last_n_days_views(report: dict[str, object]) -> None:
    last_30 = _row(report["rules"], "last_30d")  # from Jan 30 00:00: a's and b's alerts
    assert (last_30["flagged"], last_30["true_positives"], last_30["alerts"]) == (2, 1, 2)
    last_60 = _row(report["rules"], "last_60d")  # c's resolved alert of Jan 25 counts too
    assert (last_60["flagged"], last_60["true_positives"]) == (3, 2)
    assert last_60["precision"] == pytest.approx(2 / 3)
    assert last_60["recall"] == pytest.approx(2 / 3)
    assert last_60["lead_days_median"] == pytest.approx(
        (_days("2026-01-30T10:00:00Z") + _days("2026-01-25T10:00:00Z")) / 2
    )
    assert _row(report["all_rules"], "last_60d")["lead_days"] == pytest.approx(
        [_days("2026-01-30T10:00:00Z"), _days("2026-01-25T10:00:00Z")]
    )


def test_recency_baselines(report: dict[str, object]) -> None:
    baselines = {b["name"]: b for b in report["baselines"]}  # type: ignore[attr-defined]
    # 30 whole UTC days up to the cut-off's day: a (Jan 10) and b (Jan 20) are silent
    assert (baselines["no_purchase_30d"]["flagged"], baselines["no_purchase_30d"]["true_positives"]) == (2, 1)
    assert baselines["no_purchase_60d"]["flagged"] == 0  # a bought on Jan 1, inside the 60 days
    assert baselines["no_purchase_60d"]["precision"] is None
    assert baselines["no_purchase_60d"]["f1"] == 0
    assert "does NOT beat" in str(report["_stdout"])  # 0.4 against the 30-day baseline's 0.4: a tie is no win
    assert "F1 0.400" in str(report["_stdout"])
    assert "no alerts at all from: never\n" in str(report["_stdout"])  # one line instead of four empty rows


def test_roc_auc_by_hand() -> None:
    # churned a and c; pairs (churned, stayed): a>b 1, a>d 1, c=b 0.5, c>d 1 -> 3.5 of 4
    assert scoring.roc_auc({"a": 0.9, "b": 0.8, "c": 0.8, "d": 0.1}, {"a", "c"}) == pytest.approx(0.875)
    assert scoring.roc_auc({"a": 0.1, "b": 0.9}, {"a"}) == 0.0
    assert scoring.roc_auc({"a": 0.1}, {"a"}) is None  # nobody stayed: undefined


def _figures(report: dict[str, object]) -> list[object]:
    return [report["population"], report["churned"], report["rules"], report["all_rules"], report["baselines"]]


def test_a_csv_or_parquet_export_gives_the_same_report(tmp_path: Path, report: dict[str, object]) -> None:
    rows = [(c, at, n) for c, times in PURCHASES.items() for n, at in enumerate(times)]
    csv_path = tmp_path / "orders.csv"
    csv_path.write_text("client,ordered,total,order\n" + "".join(f"{c},{at},10.00,{c}-{n}\n" for c, at, n in rows))
    column_map = ["--map", "customer=client,time=ordered,amount=total,order=order"]
    assert _figures(run_backtest(tmp_path / "csv", csv_path, *column_map)) == _figures(report)

    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    parquet_path = tmp_path / "orders.parquet"
    naive = [datetime.fromisoformat(at).replace(tzinfo=None) for _, at, _ in rows]  # as many exports store them
    table = {
        "client": [c for c, _, _ in rows],
        "ordered": pa.array(naive, pa.timestamp("us")),
        "total": [10.0] * len(rows),
        "order": [f"{c}-{n}" for c, _, n in rows],
    }
    pq.write_table(pa.table(table), parquet_path)
    from_parquet = run_backtest(tmp_path / "pq", parquet_path, *column_map, "--timezone", "UTC")
    assert _figures(from_parquet) == _figures(report)


MODEL_RULES = """
rules:
  - id: unlikely-to-buy
    kind: purchase_model
    parameters: {r: 1.40702, alpha: 9.50483, a: 0.011941, b: 6.22588, unit: days}
    horizon: 30d
    min_p_no_purchase: 0.7
    message: "p {{ p_no_purchase }}"
"""


def test_auc_of_a_scored_rule(tmp_path: Path) -> None:
    """Everyone first bought on Jan 1 and once more; with the same first purchase and count, the
    model's chance of no purchase grows with the silence since the second, so the ranking at the
    cut-off is p (silent 55 days) > q (45) > r (28) > s (9). p and r churn: of the four (churned,
    stayed) pairs, p>q, p>s and r>s are ordered right, r<q wrong: AUC 3/4."""
    purchases = {
        "p": ["2026-01-01T10:00:00Z", "2026-01-05T10:00:00Z"],
        "q": ["2026-01-01T10:00:00Z", "2026-01-15T10:00:00Z", "2026-03-03T10:00:00Z"],
        "r": ["2026-01-01T10:00:00Z", "2026-02-01T10:00:00Z"],
        "s": ["2026-01-01T10:00:00Z", "2026-02-20T10:00:00Z", "2026-03-03T10:00:00Z"],
    }
    got = run_backtest(tmp_path, write_jsonl(tmp_path / "h.jsonl", purchases), rules=MODEL_RULES)
    row = _row(got["rules"], "open_at_cutoff")
    assert (row["auc"], row["scored"]) == (pytest.approx(0.75), 4)


def _random_history(seed: int, customers: int, *, after_cutoff: bool) -> dict[str, list[str]]:
    """Customers buying every few days from December on; some stop. ``after_cutoff`` adds purchases
    after the cut-off, which a fit for the backtest must never see."""
    rng = random.Random(seed)
    history: dict[str, list[str]] = {}
    for n in range(customers):
        at, stop = (
            datetime(2025, 12, 1, 10, tzinfo=UTC),
            datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=rng.uniform(0, 90)),
        )
        times = []
        while at < stop:
            if at < CUTOFF or after_cutoff:
                times.append(at.isoformat())
            at += timedelta(days=rng.expovariate(1 / 6) + 1)
        history[f"c{n}"] = times
    return history


def test_fit_model_fits_on_the_history_before_the_cutoff_only(tmp_path: Path) -> None:
    pytest.importorskip("scipy")
    with_future = write_jsonl(tmp_path / "with.jsonl", _random_history(7, 120, after_cutoff=True))
    without = write_jsonl(tmp_path / "without.jsonl", _random_history(7, 120, after_cutoff=False))
    fitted = [
        run_backtest(tmp_path / name, path, "--fit-model", rules=MODEL_RULES)
        for name, path in (("with", with_future), ("without", without))
    ]
    notes = [next(w for w in report["warnings"] if "purchase model fitted" in w) for report in fitted]  # type: ignore[attr-defined]
    assert "before 2026-03-01T00:00:00+00:00" in notes[0]
    assert notes[0] == notes[1]  # the same parameters: nothing after the cut-off reached the fit
    assert [r["rule_set"] for r in fitted] == [fitted[0]["rule_set"]] * 2
    assert str(fitted[0]["rule_set"]).endswith("+fitted")

    plain = run_backtest(tmp_path / "plain", with_future, rules=MODEL_RULES)
    assert any("--fit-model fits them" in w for w in plain["warnings"])  # type: ignore[attr-defined]
