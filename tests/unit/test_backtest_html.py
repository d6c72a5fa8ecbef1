"""``backtest --html``: a report built by hand, rendered, and read back as HTML and SVG."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import pytest

from backtest.html import render
from backtest.report import BacktestReport, BaselineFigures, RuleFigures, SetFigures, WeekVolume
from backtest.scoring import VIEWS

matplotlib = pytest.importorskip("matplotlib")  # the optional extra churnwatch[backtest]

CUTOFF = datetime(2026, 3, 1, tzinfo=UTC)
EVIL_RULE = "absence_<script>alert(1)</script>"
EVIL_WARNING = "the history ends early <script>steal()</script>"
CHURNED = 50
VOID = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "wbr", "source"}


def _rule(rule: str, view: str, flagged: int, tp: int, mode: str = "active") -> RuleFigures:
    precision = tp / flagged if flagged else None
    recall = tp / CHURNED
    return RuleFigures(
        rule=rule, mode=mode, view=view, flagged=flagged, true_positives=tp, precision=precision, recall=recall,
        f1=2 * precision * recall / (precision + recall) if precision and recall else 0.0,
        lead_days_median=12.0 if tp else None, lead_to_last_purchase_days_median=-3.0 if tp else None,
        alerts=2 * flagged, alerts_per_1000_per_week=1.5, auc=0.61 if rule == "spend_drop" else None,
    )  # fmt: skip


def _set(view: str, f1: float, lead_days: list[float]) -> SetFigures:
    return SetFigures(
        view=view, rules=[EVIL_RULE, "spend_drop"], flagged=90, true_positives=len(lead_days), precision=0.33,
        recall=0.6, f1=f1, lead_days_median=10.0 if lead_days else None, lead_to_last_purchase_days_median=None,
        alerts=150, alerts_per_1000_per_week=3.0, lead_days=lead_days,
    )  # fmt: skip


def _baseline(days: int, f1: float) -> BaselineFigures:
    return BaselineFigures(
        name=f"no_purchase_{days}d", days=days, flagged=70, true_positives=20, precision=0.29, recall=0.4, f1=f1
    )


def _report(set_f1: float = 0.43, **changes: object) -> BacktestReport:
    """Three rules (one shadow rule that never alerted: precision None) in every view, the set,
    three baselines (the best, no_purchase_60d, at F1 0.35) and 20 weeks of volume with gaps."""
    rules = [
        figures
        for view in VIEWS
        for figures in (
            _rule(EVIL_RULE, view, 40, 25),
            _rule("spend_drop", view, 60, 8),
            _rule("health_score", view, 0, 0, mode="shadow"),
        )
    ]
    weeks = [
        WeekVolume(week_start=CUTOFF - timedelta(weeks=k + 1), rule=rule, alerts=k % 7 + 1)
        for k in range(20)
        if k % 4
        for rule in (EVIL_RULE, "spend_drop")
    ]
    fields: dict[str, object] = {
        "cutoff": CUTOFF, "outcome_window_days": 181.0, "min_purchase_days": 2, "population": 250,
        "churned": CHURNED, "churn_rate": 0.2, "replayed_events": 12_345, "first_event": CUTOFF - timedelta(days=365),
        "rule_set": "2026-02-rules", "warnings": [EVIL_WARNING], "rules": rules,
        "all_rules": [_set(view, set_f1, [1.0, 3.0, 8.0, 10.0, 10.0, 30.0, 61.5]) for view in VIEWS],
        "baselines": [_baseline(30, 0.30), _baseline(60, 0.35), _baseline(90, 0.31)], "weekly_alerts": weeks,
    }  # fmt: skip
    return BacktestReport.model_validate({**fields, **changes})


@pytest.fixture(scope="module")
def page() -> str:
    """The full report, rendered once: a render draws four charts and takes a few seconds."""
    return render(_report())


class _Structure(HTMLParser):
    """Fails on any end tag that does not close the innermost open element."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.open[-1:] or 'nothing'} at {self.getpos()}")
        else:
            self.open.pop()


def _check_structure(page: str) -> None:
    parser = _Structure()
    parser.feed(page)
    parser.close()
    assert parser.problems == []
    assert parser.open == []


def _svgs(page: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", page, flags=re.DOTALL)


def test_the_page_is_well_formed_and_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    _check_structure(page)
    svgs = _svgs(page)
    # precision/recall (open_at_cutoff), the other views, lead times, weekly volume
    assert len(svgs) == 4
    for svg in svgs:
        assert ElementTree.fromstring(svg).tag == "{http://www.w3.org/2000/svg}svg"
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, flags=re.IGNORECASE)
    assert not re.search(r"<(script|link|img|iframe)\b|@import|url\(\s*['\"]?(https?:)?//", page, re.IGNORECASE)
    assert "<?xml" not in page and "<!DOCTYPE svg" not in page


def test_charts_show_what_they_are_about(page: str) -> None:
    main, views, lead, weekly = _svgs(page)

    assert "open_at_cutoff" in main and "last_30d" not in main
    assert all(view in views for view in ("last_30d", "last_60d", "last_90d"))
    assert "no alerts" in main  # the shadow rule flagged nobody: its precision is None, not a 0% bar
    assert "health_score (shadow)" in main and "no_purchase_60d (baseline)" in main
    assert "churn rate (chance)" in main
    assert "median 10.0 days" in lead
    assert "spend_drop" in weekly


def test_strings_from_the_report_are_escaped() -> None:
    page = render(_report(rule_set="rules <b>v2</b>"))

    assert not re.search(r"<script|<b>", page, flags=re.IGNORECASE)
    assert "absence_&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Warning: the history ends early &lt;script&gt;steal()&lt;/script&gt;" in page
    assert "rules &lt;b&gt;v2&lt;/b&gt;" in page


def test_the_header_says_what_was_judged(page: str) -> None:
    for fact in ("2026-03-01 00:00 UTC", "181 days", "250 customers", "50 (20.0%)", "2026-02-rules", "12,345"):
        assert fact in page


def _verdict(page: str) -> tuple[str, str]:
    found = re.search(r'<p class="verdict (\w+)">(.*?)</p>', page)
    assert found is not None
    return found.group(1), found.group(2)


def test_the_headline_says_the_set_beats_the_best_baseline() -> None:
    kind, text = _verdict(render(_report(set_f1=0.43, rules=[], weekly_alerts=[])))

    assert kind == "beats"
    assert text == "The enabled rules beat the best recency baseline on F1: 0.430 against 0.350 (no_purchase_60d)."


@pytest.mark.parametrize("set_f1", [0.20, 0.35], ids=["worse", "tie"])
def test_the_headline_says_the_set_does_not_beat_the_best_baseline(set_f1: float) -> None:
    kind, text = _verdict(render(_report(set_f1=set_f1, rules=[], weekly_alerts=[])))

    assert kind == "loses"
    assert text == (
        f"The enabled rules do NOT beat the best recency baseline on F1: {set_f1:.3f} against 0.350 (no_purchase_60d)."
    )


def test_the_tables_hold_every_row(page: str) -> None:
    assert page.count("<table>") == 3
    rows = re.findall(r"<tr>(.*?)</tr>", page)
    assert len(rows) == (1 + 3 * len(VIEWS)) + (1 + len(VIEWS)) + (1 + 3)
    health = next(row for row in rows if "health_score" in row and "open_at_cutoff" in row)
    assert "<td class=t>shadow</td>" in health
    assert "<td>0</td><td>0</td><td>-</td><td>0.0%</td><td>0.000</td><td>-</td>" in health  # no precision, no lift
    assert any("<td>62.5%</td>" in row and "<td>3.12</td>" in row for row in rows)  # lift 0.625 / 0.2


def test_a_report_without_alerts_renders_with_messages_instead_of_charts() -> None:
    quiet = _report(
        rules=[_rule("spend_drop", view, 0, 0) for view in VIEWS],
        all_rules=[_set(view, 0.0, []) for view in VIEWS],
        weekly_alerts=[],
    )

    page = render(quiet)

    _check_structure(page)
    assert len(_svgs(page)) == 2  # precision/recall still compares against the baselines
    assert "No true positives" in page
    assert "No alerts: no rule fired before the cut-off." in page
    assert _verdict(page)[0] == "loses"


def test_an_empty_report_renders() -> None:
    empty = _report(
        population=0, churned=0, churn_rate=0.0, replayed_events=0, first_event=None, warnings=[],
        rules=[], all_rules=[], baselines=[], weekly_alerts=[],
    )  # fmt: skip

    page = render(empty)

    _check_structure(page)
    assert _svgs(page) == []
    assert _verdict(page)[0] == "unknown"
    assert "No rules to chart." in page


def test_rendering_leaves_matplotlib_as_it_found_it() -> None:
    """No rcParams change and no pyplot (which would pick a backend for the whole process)."""
    before = dict(matplotlib.rcParams.copy())
    render(_report(weekly_alerts=[]))
    assert dict(matplotlib.rcParams.copy()) == before

    script = (
        "import sys; from tests.unit.test_backtest_html import _report; from backtest.html import render; "
        "render(_report()); print('matplotlib.pyplot' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
