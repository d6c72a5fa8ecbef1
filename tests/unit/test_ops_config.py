"""The SRE side: Prometheus alert rules, their unit tests, and every Grafana query parse with promtool."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

OPS = Path(__file__).resolve().parents[2] / "ops"
COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool not installed (Debian package 'prometheus')")
    return subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_alert_rules_check_and_pass_their_unit_tests() -> None:
    checked = promtool("check", "rules", "alerts.yml", cwd=OPS / "prometheus")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "alerts_test.yml", cwd=OPS / "prometheus")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    dashboard = json.loads((OPS / "grafana" / "dashboards" / "churnwatch.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert exprs
    rules = [
        {"record": f"dashboard:query_{i}", "expr": e.replace("$__rate_interval", "5m")} for i, e in enumerate(exprs)
    ]
    (tmp_path / "dashboard_rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", "dashboard_rules.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_wires_the_services() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert {"kafka", "redis", "worker", "prometheus", "grafana"} <= set(services)
    worker_env = services["worker"]["environment"]
    assert worker_env["CHURNWATCH_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert worker_env["CHURNWATCH_REDIS_URL"].startswith("redis://redis:")
    for mount in services["prometheus"]["volumes"] + services["grafana"]["volumes"]:
        source = mount.split(":")[0]
        assert (COMPOSE.parent / source).exists(), source


def test_dashboard_and_alerts_use_metrics_the_worker_exposes() -> None:
    import re

    from prometheus_client import CollectorRegistry, generate_latest

    from stream.metrics import Metrics

    metrics = Metrics(CollectorRegistry())
    for labelled in (metrics.events_consumed, metrics.alerts_fired, metrics.alert_deliveries, metrics.deadletters):
        labelled.labels(*["x"] * len(labelled._labelnames)).inc()  # so the families have samples
    exposed = set(re.findall(r"^# TYPE (\w+) ", generate_latest(metrics.registry).decode(), re.M))
    texts = (OPS / "grafana" / "dashboards" / "churnwatch.json").read_text() + (
        OPS / "prometheus" / "alerts.yml"
    ).read_text()
    used = {re.sub(r"_(bucket|count|sum)$", "", name) for name in re.findall(r"churnwatch_[a-z_]+", texts)}
    assert used, "no churnwatch metric referenced"
    families = {re.sub(r"_total$", "", name) for name in exposed} | exposed
    missing = {name for name in used if name not in families and re.sub(r"_total$", "", name) not in families}
    assert not missing, f"dashboard/alerts use metrics the worker does not expose: {sorted(missing)}"


def test_readme_event_table_is_generated_from_the_models() -> None:
    from stream.schema_docs import events_markdown

    readme = (COMPOSE.parent / "README.md").read_text()
    start, end = "<!-- events-table:start -->\n", "\n<!-- events-table:end -->"
    embedded = readme[readme.index(start) + len(start) : readme.index(end)]
    assert embedded == events_markdown(), "regenerate with: churnwatch schema events --markdown"


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (COMPOSE.parent / "README.md").read_text()
    ci = (COMPOSE.parent / ".ci" / "run").read_text()
    assert "bin/test    # run the whole test suite" in readme and "\nbin/test\n" in ci


def test_rule_file_json_schema_for_editors_is_current() -> None:
    from rules.ruleset import RuleFile

    committed = json.loads((COMPOSE.parent / "rules" / "rules.schema.json").read_text())
    assert committed == RuleFile.model_json_schema(), "regenerate: churnwatch schema rules > rules/rules.schema.json"


def test_readme_aggregates_table_is_generated_from_the_catalog() -> None:
    from stream.schema_docs import aggregates_markdown

    readme = (COMPOSE.parent / "README.md").read_text()
    start, end = "<!-- aggregates-table:start -->\n", "\n<!-- aggregates-table:end -->"
    embedded = readme[readme.index(start) + len(start) : readme.index(end)]
    assert embedded == aggregates_markdown(), "regenerate with: churnwatch rules aggregates --markdown"
