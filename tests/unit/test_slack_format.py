import json
from datetime import UTC, datetime
from typing import Any

import pytest

from alerts.model import Alert
from alerts.slack_format import (
    BLOCKS_MAX,
    FIELD_MAX,
    FIELDS_MAX,
    HEADER_MAX,
    PAYLOAD_BUDGET,
    SECTION_TEXT_MAX,
    format_value,
    slack_blocks,
    truncate,
)
from rules.base import EvidenceValue, Severity

EVALUATED = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
DETECTED = datetime(2025, 3, 1, 9, 30, 2, tzinfo=UTC)


def make_alert(**overrides: Any) -> Alert:
    fields: dict[str, Any] = {
        "alert_id": "0b6f6c1e-4d7c-5e59-9b1a-1f0e2c3d4a5b",
        "customer_id": "cust-42",
        "rule_id": "purchase-frequency-drop",
        "severity": Severity.WARNING,
        "message": "1 purchase in the last 30 days against a usual 4.0 (12 in the 90 days before).",
        "evidence": {"recent_purchases": 1, "expected_purchases": 4.0, "ratio": 0.25, "previous_score": None},
        "evaluated_at": EVALUATED,
        "detected_at": DETECTED,
        "trigger_event_id": "evt-1",
        "trigger_topic": "churnwatch.purchases",
    }
    return Alert(**(fields | overrides))


def texts(payload: dict[str, Any]) -> list[str]:
    """Every text Slack renders, block by block."""
    found = [payload["text"]]
    for block in payload["blocks"]:
        if "text" in block:
            found.append(block["text"]["text"])
        found += [f["text"] for f in block.get("fields", [])]
        found += [e["text"] for e in block.get("elements", [])]
    return found


def assert_within_slack_limits(payload: dict[str, Any]) -> None:
    blocks = payload["blocks"]
    assert 1 <= len(blocks) <= BLOCKS_MAX
    for block in blocks:
        if block["type"] == "header":
            assert 0 < len(block["text"]["text"]) <= HEADER_MAX
        if block["type"] == "section":
            if "text" in block:
                assert 0 < len(block["text"]["text"]) <= SECTION_TEXT_MAX
            fields = block.get("fields", [])
            assert len(fields) <= FIELDS_MAX
            assert all(0 < len(f["text"]) <= FIELD_MAX for f in fields)
    assert len(json.dumps(payload, ensure_ascii=False)) <= PAYLOAD_BUDGET < 12_000


def test_payload_has_header_message_fields_evidence_and_context() -> None:
    payload = slack_blocks(make_alert())

    assert [b["type"] for b in payload["blocks"]] == ["header", "section", "section", "section", "context"]
    header, message, fields, evidence, context = payload["blocks"]
    assert header["text"] == {"type": "plain_text", "text": ":warning: purchase-frequency-drop", "emoji": True}
    assert message["text"]["text"].startswith("1 purchase in the last 30 days against a usual 4.0")
    assert [f["text"] for f in fields["fields"]] == [
        "*Customer*\ncust-42",
        "*Rule*\npurchase-frequency-drop",
        "*Severity*\nWARNING",
        "*Evaluated at*\n2025-03-01 09:30:00 UTC",
    ]
    assert "`recent_purchases`: 1" in evidence["text"]["text"]
    assert "`expected_purchases`: 4.0" in evidence["text"]["text"]
    assert "`ratio`: 0.25" in evidence["text"]["text"]
    assert "previous_score" not in evidence["text"]["text"]  # None is skipped
    assert "0b6f6c1e-4d7c-5e59-9b1a-1f0e2c3d4a5b" in context["elements"][0]["text"]
    assert "2025-03-01 09:30:02 UTC" in context["elements"][0]["text"]
    assert payload["text"].startswith("[WARNING] purchase-frequency-drop · customer cust-42: 1 purchase")
    assert_within_slack_limits(payload)


@pytest.mark.parametrize(
    ("severity", "emoji"),
    [(Severity.CRITICAL, ":rotating_light:"), (Severity.WARNING, ":warning:"), (Severity.INFO, ":information_source:")],
)
def test_header_emoji_follows_severity(severity: Severity, emoji: str) -> None:
    header = slack_blocks(make_alert(severity=severity))["blocks"][0]
    assert header["text"]["text"].startswith(emoji)


def test_user_provided_text_is_escaped_for_mrkdwn() -> None:
    payload = slack_blocks(
        make_alert(
            customer_id="<!channel> & co",
            message="Score <3 & dropping > fast <https://evil.example|click>",
            evidence={"comment": "<@U123> hi"},
        )
    )

    rendered = "\n".join(texts(payload))
    assert "<!channel>" not in rendered
    assert "<@U123>" not in rendered
    assert "<https://evil" not in rendered
    assert "&lt;!channel&gt; &amp; co" in rendered
    assert "Score &lt;3 &amp; dropping &gt; fast" in rendered
    assert "&lt;@U123&gt; hi" in rendered


def test_huge_message_and_ids_are_truncated_within_limits() -> None:
    payload = slack_blocks(
        make_alert(
            customer_id="c" * 5_000,
            message="& " * 20_000,  # escaping grows it fivefold before the cut
            alert_id="a" * 5_000,
        )
    )

    assert_within_slack_limits(payload)
    message = payload["blocks"][1]["text"]["text"]
    assert message.endswith("…")
    assert not message.rstrip("…").endswith(("&", "&a", "&am", "&amp"))  # never half an escape
    assert all(t.endswith("…") for t in texts(payload) if len(t) > 250)


def test_many_evidence_fields_fit_in_one_section_and_say_how_many_were_left_out() -> None:
    evidence: dict[str, EvidenceValue] = {f"metric_{i:03d}": i * 1.5 for i in range(500)}
    payload = slack_blocks(make_alert(evidence=evidence))

    assert_within_slack_limits(payload)
    text = payload["blocks"][3]["text"]["text"]
    assert "`metric_000`: 0.0" in text
    assert "`metric_001`: 1.5" in text
    shown = text.count("\n• ")
    assert 10 < shown < 500
    assert text.endswith(f"… and {500 - shown} more")


def test_huge_evidence_values_are_cut() -> None:
    payload = slack_blocks(make_alert(evidence={"note": "x" * 50_000, "n": 3}))
    assert_within_slack_limits(payload)
    assert "`n`: 3" in payload["blocks"][3]["text"]["text"]


def test_no_evidence_means_no_evidence_block_and_empty_message_still_renders() -> None:
    payload = slack_blocks(make_alert(evidence={"x": None}, message="   "))
    assert [b["type"] for b in payload["blocks"]] == ["header", "section", "section", "context"]
    assert payload["blocks"][1]["text"]["text"] == "(no message)"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (4.0, "4.0"),
        (0.25, "0.25"),
        (1 / 3, "0.333333"),
        (1234.5678, "1234.5678"),
        (0.00001234, "1.23e-05"),
        (7, "7"),
        (True, "yes"),
        (False, "no"),
        ("a<b", "a&lt;b"),
        (float("nan"), "nan"),
    ],
)
def test_format_value(value: EvidenceValue, text: str) -> None:
    assert format_value(value) == text


def test_truncate_keeps_short_text_and_marks_cuts() -> None:
    assert truncate("short", 10) == "short"
    assert truncate("0123456789abc", 10) == "012345678…"
    assert truncate("abcdef&amp;xyz", 9) == "abcdef…"


def test_customer_value_and_segment_are_shown_when_known() -> None:
    from datetime import UTC, datetime

    from alerts.model import Alert

    alert = Alert(
        alert_id="a1", customer_id="cust-9", rule_id="r", severity="warning", message="m", evidence={},
        customer={"lifetime_spend": 1234.5, "lifetime_purchases": 17.0, "segment": ""},
        evaluated_at=datetime(2026, 1, 1, tzinfo=UTC), detected_at=datetime(2026, 1, 1, tzinfo=UTC),
        trigger_event_id="e", trigger_topic="t",
    )  # fmt: skip
    fields = [f["text"] for b in slack_blocks(alert)["blocks"] for f in b.get("fields", [])]
    assert "*Lifetime spend*\n1234.5" in fields and "*Lifetime purchases*\n17" in fields[-1] + fields[-2]
    assert not any("Segment" in f for f in fields)  # empty: not shown


def test_a_resolution_says_so_and_names_the_alert_it_resolves() -> None:
    resolution = Alert.resolution(
        customer_id="c-9",
        rule_id="purchase-overdue",
        claim_key="abc",
        severity=Severity.WARNING,
        alerted_at=datetime(2026, 6, 1, tzinfo=UTC),
        returned_at=datetime(2026, 6, 11, tzinfo=UTC),
        trigger_event_id="e-1",
        trigger_topic="churnwatch.purchases",
        detected_at=datetime(2026, 6, 11, tzinfo=UTC),
    )
    payload = slack_blocks(resolution)
    assert payload["blocks"][0]["text"]["text"] == ":white_check_mark: Resolved: purchase-overdue"
    assert f"Resolves alert `{resolution.resolves}`" in payload["blocks"][-1]["elements"][0]["text"]
    assert payload["text"].startswith("[RESOLVED] purchase-overdue")
    assert "came back on 2026-06-11, 10 days after the alert" in payload["blocks"][1]["text"]["text"]


def test_buttons_are_an_actions_block_slack_sdk_reads_back_unchanged() -> None:
    from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement

    from alerts.feedback import ACTIONS_BLOCK_ID, ButtonValue

    payload = slack_blocks(make_alert(), buttons=True)

    assert [b["type"] for b in payload["blocks"]] == ["header", "section", "section", "section", "context", "actions"]
    parsed = Block.parse_all(payload["blocks"])
    assert [b.to_dict() for b in parsed] == payload["blocks"]  # to_dict validates Block Kit's limits
    actions = parsed[-1]
    assert isinstance(actions, ActionsBlock) and actions.block_id == ACTIONS_BLOCK_ID
    buttons = actions.elements
    assert all(isinstance(b, ButtonElement) for b in buttons)
    assert [(b.action_id, b.text.text, b.style) for b in buttons] == [  # type: ignore[attr-defined]
        ("churnwatch_acknowledge", "Acknowledge", None),
        ("churnwatch_snooze_7d", "Snooze 7 days", None),
        ("churnwatch_false_alarm", "False alarm", "danger"),
        ("churnwatch_saved", "Customer saved", "primary"),
    ]
    values = {ButtonValue.model_validate_json(b.value) for b in buttons}  # type: ignore[attr-defined]
    assert values == {
        ButtonValue(
            alert_id="0b6f6c1e-4d7c-5e59-9b1a-1f0e2c3d4a5b", rule="purchase-frequency-drop", customer_id="cust-42"
        )
    }
    assert_within_slack_limits(payload)


def test_no_buttons_by_default_nor_on_a_resolution() -> None:
    assert all(b["type"] != "actions" for b in slack_blocks(make_alert())["blocks"])
    resolution = make_alert(status="resolved", resolves="0b6f6c1e-4d7c-5e59-9b1a-1f0e2c3d4a5b")
    assert all(b["type"] != "actions" for b in slack_blocks(resolution, buttons=True)["blocks"])


def test_the_largest_message_with_buttons_stays_within_the_budget() -> None:
    from slack_sdk.models.blocks import Block

    evidence: dict[str, EvidenceValue] = {f"metric_{i:03d}": "x" * 300 for i in range(500)}
    payload = slack_blocks(
        make_alert(
            customer_id="c" * 128,  # the longest customer id the event contract allows
            rule_id="r" * 64,
            message="& " * 20_000,
            evidence=evidence,
            customer={"lifetime_spend": 1e300, "lifetime_purchases": 10**30, "segment": "s" * 64},
        ),
        buttons=True,
    )
    assert payload["blocks"][-1]["type"] == "actions"
    assert_within_slack_limits(payload)
    assert [b.to_dict() for b in Block.parse_all(payload["blocks"])] == payload["blocks"]


def test_ids_too_long_to_carry_mean_no_buttons() -> None:
    assert slack_blocks(make_alert(customer_id="c" * 5_000), buttons=True)["blocks"][-1]["type"] == "context"
    assert slack_blocks(make_alert(alert_id="not-a-uuid"), buttons=True)["blocks"][-1]["type"] == "context"
