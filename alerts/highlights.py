"""What changed, in a person's words: the few evidence numbers that tell the story, against the
customer's own baseline ("purchases 30d: 1 vs 4.2 usual"), and since when.

Rule kinds put raw numbers in ``Verdict.evidence`` under names they document (``recent_purchases``,
``expected_purchases``, ``days_silent``, ...). One table here reads them by name, whatever the
rule, so a new rule of an existing kind needs nothing, and a new kind adds a line only if its
evidence deserves one; evidence no line reads is still shown, as details. Pure and plain text: the
Slack formatter escapes and cuts it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from rules.base import EvidenceValue, parse_duration

Evidence = Mapping[str, EvidenceValue]


def number(value: EvidenceValue) -> str:
    """Short, as read aloud: ``4.2``, ``0.33``, ``14.5``, ``1,235``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or value.is_integer():
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2g}" if abs(value) < 1 else f"{value:.1f}"


def _money(value: EvidenceValue) -> str:
    return f"{value:,.2f}" if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def _share(ratio: EvidenceValue) -> str:
    return f" ({ratio:.0%} of usual)" if isinstance(ratio, int | float) and not isinstance(ratio, bool) else ""


def _percent(value: EvidenceValue) -> str:
    return f"{value:.0%}" if isinstance(value, int | float) else str(value)


@dataclass(frozen=True)
class Line:
    """One line of the table: shown when every name in ``needs`` has a value and its subject (the
    first) was not told by an earlier line; it also accounts for ``reads`` (not repeated in the details)."""

    needs: tuple[str, ...]
    text: Callable[[Evidence], str]
    reads: tuple[str, ...] = ()
    when: Callable[[Evidence], bool] = lambda e: True


def _against_baseline(noun: str, label: Callable[[Evidence], str]) -> Line:
    return Line(
        (f"recent_{noun}", f"expected_{noun}", "recent_days"),
        lambda e: (
            f"{label(e)} {e['recent_days']}d: {number(e[f'recent_{noun}'])} vs "
            f"{number(e[f'expected_{noun}'])} usual{_share(e.get('ratio'))}"
        ),
        reads=(f"baseline_{noun}", "baseline_days", "ratio", "interaction_kinds"),
    )


LINES: tuple[Line, ...] = (
    # health_score: the score and its band against the same customer a lookback ago
    Line(
        ("score", "band", "previous_score", "previous_band"),
        lambda e: (
            f"health score {number(e['score'])} ({e['band']}), was {number(e['previous_score'])} "
            f"({e['previous_band']}) {e.get('lookback') or ''} ago".replace("  ", " ")
        ),
        reads=("drop", "lookback"),
    ),
    Line(("movers",), lambda e: f"moved by: {e['movers']}", when=lambda e: bool(e["movers"])),
    # detractor: the answer against the customer's previous one
    Line(
        ("score", "answered_at"),
        lambda e: (
            f"NPS {e['score']}"
            + (
                f" (previous answer {e['previous_score']})"
                if e.get("previous_score") is not None
                else " (first answer)"
            )
        ),
        reads=("previous_score", "drop"),
    ),
    # low_score
    Line(
        ("survey", "value", "threshold"),
        lambda e: (
            f"{str(e['survey']).upper()} {number(e['value'])}"
            + (f" over the last {e['answers_considered']} answers" if e.get("answers_considered", 1) != 1 else "")
            + f" (threshold {number(e['threshold'])})"
        ),
        reads=("answers_considered", "latest_score"),
    ),
    # purchase_frequency_drop, interaction_drop
    _against_baseline("purchases", lambda e: "purchases"),
    _against_baseline("interactions", lambda e: str(e.get("interaction_kinds") or "interactions")),
    # spend_drop: the measure it judged first
    Line(
        ("recent_aov", "baseline_aov", "recent_days"),
        lambda e: (
            f"average order {e['recent_days']}d: {_money(e['recent_aov'])} vs {_money(e['baseline_aov'])} usual"
            + _share(e.get("ratio") if e.get("measure") == "average_order_value" else None)
        ),
        reads=("recent_orders", "baseline_orders", "measure"),
        when=lambda e: e.get("measure") == "average_order_value",
    ),
    Line(
        ("recent_spend", "expected_spend", "recent_days"),
        lambda e: (
            f"spend {e['recent_days']}d: {_money(e['recent_spend'])} vs {_money(e['expected_spend'])} usual"
            + _share(e.get("ratio") if e.get("measure") != "average_order_value" else None)
        ),
        reads=("baseline_spend", "baseline_days", "ratio", "measure", "recent_orders", "baseline_orders"),
    ),
    # spike
    Line(
        ("count", "window_days"),
        lambda e: (
            f"{e.get('interaction_kinds') or 'interactions'} {e['window_days']}d: {e['count']}"
            + (f" vs {number(e['expected'])} usual" if e.get("expected") is not None else "")
        ),
        reads=("interaction_kinds", "expected", "baseline_days", "multiplier"),
    ),
    # overdue, inactivity: the silence against the customer's rhythm or the rule's limit
    Line(
        ("days_since_last_purchase", "typical_gap_days"),
        lambda e: (
            f"silent {number(e['days_since_last_purchase'])} days (usual gap {number(e['typical_gap_days'])} "
            f"days; alerted after {number(e.get('threshold_days', '?'))})"
        ),
        reads=("threshold_days", "purchase_days"),
    ),
    Line(
        ("days_silent", "silent_for_days"),
        lambda e: f"silent {number(e['days_silent'])} days (the rule allows {number(e['silent_for_days'])})",
    ),
    # purchase_model
    Line(
        ("p_no_purchase", "horizon_days"),
        lambda e: f"{_percent(e['p_no_purchase'])} chance of no purchase in the next {number(e['horizon_days'])} days",
        reads=("p_alive",),
    ),
    Line(("days_since_last_purchase",), lambda e: f"silent {number(e['days_since_last_purchase'])} days"),
)
"""Most telling first; a subject one line has told is not told again by a later one."""

SINCE: tuple[tuple[str, str], ...] = (
    ("last_activity_at", "last activity"),
    ("last_purchase_at", "last purchase"),
    ("answered_at", "answered"),
    ("alerted_at", "alerted"),
)
"""Evidence moments that say since when the risk stands, most precise first."""
SINCE_DAYS: tuple[tuple[str, str], ...] = (("days_since_last_purchase", "last purchase"),)
"""Else a count of days back to the moment."""
WINDOWS = ("recent_days", "window_days", "lookback")
"""Otherwise the window the rule compared: the risk stands since its start."""


def what_changed(evidence: Evidence) -> tuple[list[str], set[str]]:
    """The table's lines for ``evidence`` and the names they account for."""
    present = {name for name, value in evidence.items() if value is not None and value != ""}
    shown: list[str] = []
    used: set[str] = set()
    for line in LINES:
        if line.needs[0] in used or not set(line.needs) <= present or not line.when(evidence):
            continue
        shown.append(line.text(evidence))
        used |= {*line.needs, *line.reads}
    return shown, used


def since(evidence: Evidence, evaluated_at: datetime) -> tuple[str | None, set[str]]:
    """Since when, as ``2026-03-01 (last purchase, 63 days ago)``, and the evidence names it read."""
    for name, label in SINCE:
        value = evidence.get(name)
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                continue
            if moment.tzinfo is None:
                continue
            return f"{moment.date().isoformat()} ({label}, {_ago(evaluated_at - moment)})", {name}
    for name, label in SINCE_DAYS:
        value = evidence.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 36_500:
            span = timedelta(days=value)
            return f"{(evaluated_at - span).date().isoformat()} ({label}, {_ago(span)})", set()
    for name in WINDOWS:
        value = evidence.get(name)
        try:
            span = parse_duration(f"{value}d" if isinstance(value, int) else value)
        except ValueError:
            continue
        if isinstance(span, timedelta) and span > timedelta(0):
            start = (evaluated_at - span).date().isoformat()
            return f"{start} (the last {_ago(span).removesuffix(' ago')})", set()
    return None, set()


def _ago(span: timedelta) -> str:
    days = span / timedelta(days=1)
    if days >= 1:
        return f"{days:.0f} day{'' if round(days) == 1 else 's'} ago"
    hours = span / timedelta(hours=1)
    return f"{max(hours, 0):.0f} h ago"
