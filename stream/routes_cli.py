"""``churnwatch routes check|test|schema``: a routes file tried before it is deployed (mounted by :mod:`stream.cli`).

``routes test`` answers "who would be told?" for an alert described on the command line, the way
``amtool config routes test`` does, so a routing change can be tried, and pinned in CI with ``--expect``.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from alerts.model import Alert
from alerts.routing import RoutesConfig, RoutesConfigError, load_routes, route_alert
from rules.base import EvidenceValue, Severity
from rules.ruleset import RuleConfigError, load_rule_set
from stream.settings import Settings


@click.group("routes")
def routes_group() -> None:
    """Check a routes file (which receivers get which alerts) and see where an alert would go."""


def _routes_file(file: Path | None) -> Path:
    target = file or Settings().routes_file
    if target is None:
        raise click.UsageError("give FILE or set CHURNWATCH_ROUTES_FILE")
    return target


def _load_or_exit(file: Path) -> RoutesConfig:
    try:
        return load_routes(file)
    except RoutesConfigError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        click.echo(f"{len(exc.problems)} problem(s) in {file}", err=True)
        sys.exit(2)


@routes_group.command("check")
@click.argument("file", type=click.Path(path_type=Path), required=False)
def routes_check(file: Path | None) -> None:
    """Validate a routes file (default: CHURNWATCH_ROUTES_FILE); print each problem with file and field; exit 2."""
    target = _routes_file(file)
    config = _load_or_exit(target)
    routes = sum(1 for _ in config.route.walk())
    click.echo(f"ok: {len(config.receivers)} receivers, {routes} routes in {target}")


@routes_group.command("test")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--rule", "rule_id", required=True, help="The alert's rule id")
@click.option("--severity", required=True, type=click.Choice([s.value for s in Severity]))
@click.option("--team", help="The rule's owner team (default with --rules: the rule's owner)")
@click.option("--segment", help="The customer's segment")
@click.option("--lifetime-spend", type=float)
@click.option("--lifetime-purchases", type=float)
@click.option("--days-since-last-purchase", type=float)
@click.option(
    "--rules", "rules_path", type=click.Path(path_type=Path), help="Rule file or directory: --team from its owner"
)
@click.option("--expect", multiple=True, help="Receivers the alert must reach (repeat); exit 1 if it reaches others")
def routes_test(
    file: Path,
    rule_id: str,
    severity: str,
    team: str | None,
    segment: str | None,
    lifetime_spend: float | None,
    lifetime_purchases: float | None,
    days_since_last_purchase: float | None,
    rules_path: Path | None,
    expect: tuple[str, ...],
) -> None:
    """Print the receivers an alert with these attributes reaches, one a line, with the route that sends it."""
    config = _load_or_exit(file)
    if team is None and rules_path is not None:
        team = _owner_of(rules_path, rule_id)
    customer: dict[str, EvidenceValue] = {
        name: value
        for name, value in (
            ("segment", segment),
            ("lifetime_spend", lifetime_spend),
            ("lifetime_purchases", lifetime_purchases),
            ("days_since_last_purchase", days_since_last_purchase),
        )
        if value is not None
    }
    now = datetime.now(UTC)
    alert = Alert(
        alert_id="routes-test",
        customer_id="routes-test",
        rule_id=rule_id,
        severity=Severity(severity),
        message="",
        evidence={},
        customer=customer,
        evaluated_at=now,
        detected_at=now,
        trigger_event_id="routes-test",
        trigger_topic="routes-test",
    )
    matches = route_alert(config.route, alert, team=team)
    width = max(len(m.receiver) for m in matches)
    path_width = max(len(m.path) for m in matches)
    for match in matches:
        click.echo(f"{match.receiver:<{width}}  {match.path:<{path_width}}  {match.settings.describe()}")
    reached = sorted({m.receiver for m in matches})
    if expect and reached != sorted(set(expect)):
        click.echo(f"expected {', '.join(sorted(set(expect)))}; reached {', '.join(reached)}", err=True)
        sys.exit(1)


def _owner_of(rules_path: Path, rule_id: str) -> str | None:
    try:
        rule = load_rule_set(rules_path).by_id(rule_id)
    except RuleConfigError as exc:
        click.echo(f"invalid rule set in {rules_path}:", err=True)
        for problem in exc.problems:
            click.echo(f"  {problem}", err=True)
        sys.exit(2)
    if rule is None:
        raise click.BadParameter(f"no rule {rule_id!r} in {rules_path}", param_hint="'--rule'")
    return rule.owner


@routes_group.command("schema")
def routes_schema() -> None:
    """Print the JSON Schema of a routes file (for editors: yaml-language-server)."""
    click.echo(json.dumps(RoutesConfig.model_json_schema(), indent=2))
