"""The README's 'Adding a warning rule' walk-through really works: its rule checks and its test passes."""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from alerts.links import parse_link_templates
from alerts.model import Alert
from alerts.slack_format import slack_blocks
from rules.ruleset import load_rule_set
from stream.cli import main
from tests.alerts_factory import make_alert

ROOT = Path(__file__).resolve().parents[2]


def test_adding_a_warning_rule_walkthrough(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Adding a warning rule") :]
    rule_yaml, test_yaml = (textwrap.dedent(b) for b in re.findall(r"```yaml\n(.*?)```", section, re.S)[:2])
    rules_dir = tmp_path / "rules"
    shutil.copytree(ROOT / "rules" / "defaults", rules_dir, ignore=shutil.ignore_patterns("tests"))
    (rules_dir / "enterprise.yaml").write_text(rule_yaml)
    (rules_dir / "tests").mkdir()
    (rules_dir / "tests" / "enterprise_test.yaml").write_text(test_yaml)
    runner = CliRunner()

    checked = runner.invoke(main, ["rules", "check", str(rules_dir)])
    assert checked.exit_code == 0, checked.output
    tested = runner.invoke(main, ["rules", "test", str(rules_dir / "tests" / "enterprise_test.yaml")])
    assert tested.exit_code == 0, tested.output
    assert "2 passed, 0 failed" in tested.output

    (rules_dir / "enterprise.yaml").write_text(rule_yaml.replace("spend_30d <", "spend_30 <"))
    broken = runner.invoke(main, ["rules", "check", str(rules_dir)])
    assert broken.exit_code == 1
    assert "rule 'enterprise-spend-halved': field 'condition': CEL error" in broken.output
    assert "undeclared reference to 'spend_30'" in broken.output


EXAMPLE_LINKS = "CRM=https://crm.example/customers/{customer_id},Dashboard=https://grafana.example/d/churn?var-customer={customer_id}"


def example_alert() -> Alert:
    """A purchase-overdue alert as the worker builds it, with the shipped rule's owner and next step."""
    rule = load_rule_set(ROOT / "rules" / "defaults").by_id("purchase-overdue")
    assert rule is not None
    return make_alert(
        alert_id="5b0c3f8e-2f4a-5d0e-9c61-7a2d4e8b1f03",
        customer_id="cust-1042",
        rule_id=rule.id,
        severity=rule.severity,
        message="No purchase for 63 days, overdue for this customer: alerted after 30 days (3 times their long gap "
        "of 9 days, at least 30; 14 shopping days known).",
        evidence={"days_since_last_purchase": 63.0, "typical_gap_days": 9.0, "threshold_days": 30.0,
                  "purchase_days": 14, "last_purchase_at": "2026-01-28T10:00:00+00:00"},
        customer={"lifetime_spend": 2140.5, "lifetime_purchases": 31, "segment": "enterprise",
                  "days_since_last_purchase": 63.0},
        owner=rule.owner,
        next_step=rule.next_step,
        evaluated_at=datetime(2026, 4, 1, 10, 0, tzinfo=UTC),
        detected_at=datetime(2026, 4, 1, 10, 0, 1, tzinfo=UTC),
    )  # fmt: skip


def as_text(blocks: list[dict[str, Any]]) -> str:
    """Blocks as a reader sees them: one paragraph per block, a field per line as 'Label: value'."""
    paragraphs = []
    for block in blocks:
        if "text" in block:
            paragraphs.append(block["text"]["text"])
        if "fields" in block:
            paragraphs.append("\n".join(f["text"].replace("*", "", 2).replace("\n", ": ", 1) for f in block["fields"]))
        if block["type"] == "context":
            paragraphs.append("\n".join(e["text"] for e in block["elements"]))
    return "\n\n".join(paragraphs)


def test_the_readme_slack_message_is_what_the_formatter_sends() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### The Slack message: what support sees") :]
    assert f"CHURNWATCH_ALERT_LINKS={EXAMPLE_LINKS}" in section
    text = re.search(r"```text\n(.*?)\n```", section, re.S)
    blocks = re.search(r"```json\n(.*?)```", section, re.S)
    assert text is not None and blocks is not None

    payload = slack_blocks(example_alert(), links=parse_link_templates(EXAMPLE_LINKS))
    assert json.loads(blocks[1]) == payload["blocks"]
    assert text[1] == as_text(payload["blocks"])
