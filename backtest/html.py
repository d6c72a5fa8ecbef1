"""``churnwatch backtest --html``: the report as one self-contained page, for people who would
rather look than read (whether a rule should ship).

Charts are drawn with matplotlib's object-oriented API (a :class:`~matplotlib.figure.Figure` on an
explicit Agg canvas, never pyplot, and rc settings only inside :func:`matplotlib.rc_context`), so
rendering leaves no global state behind, and are inlined as SVG: the file has no external
references and can be mailed or attached to a ticket as is. matplotlib is the optional extra
``churnwatch[backtest]``: it is imported only once :func:`render` runs, so its ImportError reaches
the CLI's "needs matplotlib" message.

Every string that comes from the report (rule ids, warnings, the rule set version) is escaped.
"""

from __future__ import annotations

import io
import statistics
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from html import escape
from typing import TYPE_CHECKING

from backtest.report import BacktestReport, Figures, SetFigures, number, percent
from backtest.scoring import VIEWS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAIN_VIEW = VIEWS[0]  # open_at_cutoff: who would be warned at the cut-off
_COLOURS = {"rule": "#4477aa", "shadow": "#99badd", "set": "#228833", "baseline": "#ee7733", "chance": "#cc3311"}
_KIND_LABELS = {"rule": "active rule", "shadow": "rule not active", "set": "all enabled", "baseline": "baseline"}
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; color: #222; }
h1 { margin-bottom: .2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: .2em 1em; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; }
.warning { background: #fff4e5; border-left: 4px solid #ee7733; padding: .4em .8em; }
.verdict { font-size: 1.3em; padding: .6em 1em; border-radius: 4px; }
.verdict.beats { background: #e6f4ea; border-left: 6px solid #228833; }
.verdict.loses { background: #fdecea; border-left: 6px solid #cc3311; }
.verdict.unknown { background: #f2f2f2; border-left: 6px solid #999; }
.empty { color: #666; font-style: italic; }
figure { margin: 1em 0; } figure svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; margin: 1em 0; font-size: .9em; }
th, td { padding: .25em .6em; border-bottom: 1px solid #e5e5e5; text-align: right; }
th.t, td.t { text-align: left; } tr:nth-child(even) td { background: #fafafa; }
caption { text-align: left; color: #555; padding-bottom: .3em; }
"""


def render(report: BacktestReport) -> str:
    """The whole page: header, verdict, the three charts, then the full tables."""
    import matplotlib  # the optional extra; the CLI turns its ImportError into an install hint

    with matplotlib.rc_context(
        {"font.size": 9, "svg.fonttype": "none", "axes.spines.top": False, "axes.spines.right": False}
    ):
        charts = [
            _section(
                "Precision and recall per rule",
                "Precision: the share of flagged customers who churned; a bar left of the red line (the churn "
                "rate) is worse than flagging customers at random. Recall: the share of churned customers who "
                f"were flagged. View: {MAIN_VIEW} (an alert still open at the cut-off).",
                _precision_recall(report, [MAIN_VIEW], "precision_recall"),
                _details(
                    "Other views (an alert in the last 30, 60 or 90 days)",
                    _precision_recall(report, [v for v in VIEWS if v != MAIN_VIEW], "precision_recall_views"),
                ),
            ),
            _section(
                "How early the enabled rules warn",
                "Days from the first alert to the cut-off, for every churned customer the enabled rules flagged.",
                _lead_times(report),
            ),
            _section(
                "Alerts per week",
                "Firing alerts per rule per week before the cut-off: the load the rules would put on people.",
                _weekly_volume(report),
            ),
        ]
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Churn backtest, cut-off {escape(_when(report.cutoff))}</title>",
        f"<style>{_CSS}</style></head><body>",
        _header(report),
        _headline(report),
        *charts,
        _section("Tables", "Lift: precision divided by the churn rate; below 1 is worse than chance.", _tables(report)),
        "</body></html>",
    ])  # fmt: skip


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M %Z").strip()


def _lift(precision: float | None, churn_rate: float) -> str:
    return "-" if precision is None or not churn_rate else f"{precision / churn_rate:.2f}"


def _section(title: str, intro: str, *body: str) -> str:
    return "\n".join([f"<section><h2>{escape(title)}</h2><p>{escape(intro)}</p>", *body, "</section>"])


def _details(summary: str, body: str) -> str:
    """Collapsed by default: a selector for the other views without any JavaScript."""
    return f"<details><summary>{escape(summary)}</summary>\n{body}\n</details>"


def _empty(message: str) -> str:
    return f'<p class="empty">{escape(message)}</p>'


def _header(report: BacktestReport) -> str:
    facts = [
        ("Cut-off", _when(report.cutoff)),
        ("Outcome window", f"{report.outcome_window_days:g} days (churned: no purchase in it)"),
        ("Population", f"{report.population:,} customers with >= {report.min_purchase_days} purchase days"),
        ("Churned", f"{report.churned:,} ({percent(report.churn_rate)})"),
        ("Rule set", report.rule_set),
        ("History", f"{report.replayed_events:,} events replayed from {_when(report.first_event)}"),
    ]
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts)
    warnings = "".join(f'<p class="warning">Warning: {escape(w)}</p>' for w in report.warnings)
    return f'<header><h1>Churn backtest</h1><dl class="facts">{rows}</dl>{warnings}</header>'


def _main_set(report: BacktestReport) -> SetFigures | None:
    return next((s for s in report.all_rules if s.view == MAIN_VIEW), None)


def _headline(report: BacktestReport) -> str:
    """The one question first: do the enabled rules beat plain recency ("no purchase in N days")?
    Same criterion as the terminal's verdict: a strictly higher F1."""
    best, ours = report.best_baseline(), _main_set(report)
    if best is None or ours is None:
        return '<p class="verdict unknown">No verdict: the report has no enabled-rule set or no baseline.</p>'
    beats = ours.f1 > best.f1
    word = "beat" if beats else "do NOT beat"
    return (
        f'<p class="verdict {"beats" if beats else "loses"}">The enabled rules {word} the best recency baseline '
        f"on F1: {ours.f1:.3f} against {best.f1:.3f} ({escape(best.name)}).</p>"
        f"<p>Enabled rules ({MAIN_VIEW}): {ours.flagged:,} flagged, precision {percent(ours.precision)}, "
        f"recall {percent(ours.recall)}. {escape(best.name)}: {best.flagged:,} flagged, precision "
        f"{percent(best.precision)}, recall {percent(best.recall)}. Churn rate {percent(report.churn_rate)}.</p>"
    )


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)  # explicit Agg canvas: no pyplot, no matplotlib.use()
    return figure


def _svg(figure: Figure, name: str, caption: str) -> str:
    """The figure as inline SVG: no XML prolog or DOCTYPE (an external DTD reference), no metadata,
    and element ids salted per chart so two charts in one page never share a clip-path id."""
    import matplotlib

    out = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": name}):
        figure.savefig(out, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    text = out.getvalue()
    return f"<figure>{text[text.index('<svg') :]}<figcaption>{escape(caption)}</figcaption></figure>"


def _plain(label: str) -> str:
    """A label as matplotlib should print it: a '$' would otherwise start mathtext."""
    return label.replace("$", r"\$")


def _rows(report: BacktestReport, view: str) -> list[tuple[str, Figures, str]]:
    """What the precision/recall chart compares in one view: each rule, the set, the baselines."""
    rows: list[tuple[str, Figures, str]] = []
    for rule in (r for r in report.rules if r.view == view):
        active = rule.mode == "active"
        rows.append((rule.rule if active else f"{rule.rule} ({rule.mode})", rule, "rule" if active else "shadow"))
    rows += [("all enabled", s, "set") for s in report.all_rules if s.view == view]
    rows += [(f"{b.name} (baseline)", b, "baseline") for b in report.baselines]
    return rows


def _precision_recall(report: BacktestReport, views: Sequence[str], name: str) -> str:
    """Horizontal bars, one row of two panels per view; a missing precision (nothing flagged) is
    written as "no alerts" instead of a zero-length bar that reads as 0%."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import PercentFormatter

    every = [(view, _rows(report, view)) for view in views]
    per_view = [(view, rows) for view, rows in every if any(kind != "baseline" for *_, kind in rows)]
    if not per_view:
        return _empty("No rules to chart.")
    most = max(len(rows) for _, rows in per_view)
    figure = _figure(9, len(per_view) * (0.3 * most + 0.9) + 0.6)
    grid = figure.subplots(len(per_view), 2, sharey="row", squeeze=False)
    for (view, rows), (left, right) in zip(per_view, grid, strict=True):
        labels = [_plain(label) for label, _, _ in rows]
        colours = [_COLOURS[kind] for _, _, kind in rows]
        for ax, what, values, missing in (
            (left, "precision", [f.precision for _, f, _ in rows], "no alerts"),
            (right, "recall", [f.recall for _, f, _ in rows], "nobody churned"),
        ):
            bars = ax.barh(labels, [v or 0.0 for v in values], color=colours)
            ax.bar_label(bars, labels=[missing if v is None else percent(v) for v in values], padding=3)
            ax.set_xlim(0, 1.18)
            ax.set_xticks([0, 0.25, 0.5, 0.75, 1])
            ax.xaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
            ax.set_title(f"{what}, {view}", loc="left")
        left.axvline(report.churn_rate, color=_COLOURS["chance"], linestyle="--", zorder=0.5)
        left.invert_yaxis()
    kinds = dict.fromkeys(kind for _, rows in per_view for _, _, kind in rows)
    handles: list[Patch | Line2D] = [Patch(color=_COLOURS[k], label=_KIND_LABELS[k]) for k in kinds]
    handles.append(Line2D([], [], color=_COLOURS["chance"], linestyle="--", label="churn rate (chance)"))
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    return _svg(figure, name, f"Precision and recall per rule, {', '.join(v for v, _ in per_view)}.")


def _lead_times(report: BacktestReport) -> str:
    ours = _main_set(report)
    days = ours.lead_days if ours is not None else []
    if not days:
        return _empty("No true positives: the enabled rules flagged none of the customers who churned.")
    median = statistics.median(days)
    figure = _figure(8, 3.2)
    ax = figure.add_subplot()
    ax.hist(days, bins=range(int(min(days)) // 7 * 7, int(max(days)) + 8, 7), color=_COLOURS["set"], edgecolor="white")
    ax.axvline(median, color="#222222", linestyle="--", label=f"median {median:.1f} days")
    ax.set_xlabel("days from the first alert to the cut-off (one bar per week)")
    ax.set_ylabel("churned customers")
    ax.legend(frameon=False)
    return _svg(figure, "lead_times", f"Lead time of the {len(days):,} true positives of the enabled rules.")


def _weekly_volume(report: BacktestReport) -> str:
    """One line per rule; weeks without an alert (absent from the report) are drawn as 0."""
    if not any(w.alerts for w in report.weekly_alerts):
        return _empty("No alerts: no rule fired before the cut-off.")
    counts: dict[str, dict[datetime, int]] = {}
    for week in report.weekly_alerts:
        counts.setdefault(week.rule, {})[week.week_start] = week.alerts
    first, last = min(w.week_start for w in report.weekly_alerts), max(w.week_start for w in report.weekly_alerts)
    weeks = [first + n * timedelta(weeks=1) for n in range((last - first) // timedelta(weeks=1) + 1)]
    modes = {r.rule: r.mode for r in report.rules}
    figure = _figure(9, 3.6)
    ax = figure.add_subplot()
    for rule, by_week in counts.items():
        label = rule if modes.get(rule, "active") == "active" else f"{rule} ({modes[rule]})"
        ax.plot(range(len(weeks)), [by_week.get(w, 0) for w in weeks], marker=".", label=_plain(label))
    step = -(-len(weeks) // 12)  # at most about 12 date labels
    ax.set_xticks(range(0, len(weeks), step), [f"{w:%Y-%m-%d}" for w in weeks[::step]], rotation=30, ha="right")
    ax.set_ylabel("alerts per week")
    ax.set_ylim(bottom=0)
    figure.legend(loc="outside right upper", frameon=False)
    return _svg(figure, "weekly_alerts", "Firing alerts per rule per week (weeks start on the date shown).")


def _table(caption: str, head: Sequence[str], rows: Iterable[Sequence[str]], text_columns: int = 1) -> str:
    """Every cell escaped; the first ``text_columns`` are left-aligned text, the rest numbers."""

    def cells(tag: str, row: Sequence[str]) -> str:
        return "".join(
            f"<{tag}{' class=t' if i < text_columns else ''}>{escape(cell)}</{tag}>" for i, cell in enumerate(row)
        )

    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f"<table><caption>{escape(caption)}</caption><tr>{cells('th', head)}</tr>{body}</table>"


def _tables(report: BacktestReport) -> str:
    rate = report.churn_rate
    common = ["flagged", "true positives", "precision", "recall", "F1", "lift"]
    alert_head = ["median lead d", "median lead to last purchase d", "alerts", "alerts /1000 /week"]

    def figures(f: Figures) -> list[str]:
        return [f"{f.flagged:,}", f"{f.true_positives:,}", percent(f.precision), percent(f.recall), f"{f.f1:.3f}",
                _lift(f.precision, rate)]  # fmt: skip

    rules = _table(
        "Every enabled rule, per view (rules not active are judged as if they were)",
        ["rule", "mode", "view", *common, *alert_head, "AUC", "scored"],
        (
            [r.rule, r.mode, r.view, *figures(r), number(r.lead_days_median),
             number(r.lead_to_last_purchase_days_median),
             f"{r.alerts:,}", number(r.alerts_per_1000_per_week, 2), number(r.auc, 3),
             "-" if r.scored is None else f"{r.scored:,}"]
            for r in report.rules
        ),
        text_columns=3,
    )  # fmt: skip
    sets = _table(
        "The enabled active rules together, per view",
        ["view", "rules", *common, *alert_head],
        (
            [s.view, ", ".join(s.rules) or "(none)", *figures(s), number(s.lead_days_median),
             number(s.lead_to_last_purchase_days_median), f"{s.alerts:,}", number(s.alerts_per_1000_per_week, 2)]
            for s in report.all_rules
        ),
        text_columns=2,
    )  # fmt: skip
    baselines = _table(
        "Recency baselines at the cut-off",
        ["baseline", "days", *common],
        ([b.name, str(b.days), *figures(b)] for b in report.baselines),
    )
    return "\n".join([rules, sets, baselines])
