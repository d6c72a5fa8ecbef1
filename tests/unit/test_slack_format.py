import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from alerts.links import parse_link_templates
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
    width,
)
from rules.base import EvidenceValue, Severity
from tests import alerts_factory

EVALUATED = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
LINKS = parse_link_templates(
    "CRM=https://crm.example/customers/{customer_id},"
    "Dashboard=https://grafana.example/d/x?var-customer={customer_id}&var-rule={rule_id}"
)
DETECTED = datetime(2025, 3, 1, 9, 30, 2, tzinfo=UTC)


def make_alert(**overrides: Any) -> Alert:
    fields: dict[str, Any] = {
        "alert_id": "0b6f6c1e-4d7c-5e59-9b1a-1f0e2c3d4a5b",
        "customer_id": "cust-42",
        "rule_id": "purchase-frequency-drop",
        "severity": Severity.WARNING,
        "message": "1 purchase in the last 30 days against a usual 4.0 (12 in the 90 days before).",
        "evidence": {
            "recent_purchases": 1,
            "recent_days": 30,
            "baseline_purchases": 12,
            "baseline_days": 90,
            "expected_purchases": 4.0,
            "ratio": 0.25,
            "previous_score": None,
            "min_baseline_purchases": 4,
        },
        "customer": {"lifetime_spend": 1234.5, "lifetime_purchases": 17, "segment": "enterprise"},
        "owner": "retention",
        "next_step": "Call within 48 h; offer a win-back voucher",
        "evaluated_at": EVALUATED,
        "detected_at": DETECTED,
    }
    return alerts_factory.make_alert(**(fields | overrides))


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


def test_payload_says_who_what_changed_since_when_who_owns_it_and_what_to_do() -> None:
    payload = slack_blocks(make_alert(), links=LINKS)

    assert [b["type"] for b in payload["blocks"]] == [
        "header", "section", "section", "section", "section", "section", "context", "context",
    ]  # fmt: skip
    header, message, fields, changed, next_step, links, details, context = payload["blocks"]
    assert header["text"] == {
        "type": "plain_text",
        "text": ":warning: purchase-frequency-drop",
        "emoji": True,
    }
    assert message["text"]["text"].startswith("1 purchase in the last 30 days against a usual 4.0")
    assert [f["text"] for f in fields["fields"]] == [
        "*Customer*\ncust-42",
        "*Segment*\nenterprise",
        "*Lifetime value*\n1,234.50 · 17 purchases",
        "*Severity*\nWARNING",
        "*Rule*\npurchase-frequency-drop",
        "*Owner team*\nretention",
        "*Since*\n2025-01-30 (the last 30 days)",
        "*Evaluated at*\n2025-03-01 09:30:00 UTC",
    ]
    assert changed["text"]["text"] == "*What changed*\n• purchases 30d: 1 vs 4 usual (25% of usual)"
    assert next_step["text"]["text"] == ":point_right: *Next step:* Call within 48 h; offer a win-back voucher"
    assert links["text"]["text"] == (
        ":link: <https://crm.example/customers/cust-42|CRM> · "
        "<https://grafana.example/d/x?var-customer=cust-42&amp;var-rule=purchase-frequency-drop|Dashboard>"
    )
    assert details["elements"][0]["text"] == "`min_baseline_purchases` 4"  # what no highlight read
    assert "previous_score" not in json.dumps(payload)  # None is skipped
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


def details_of(payload: dict[str, Any]) -> str:
    """The small print: the context block of evidence no highlight read."""
    (details,) = [
        b["elements"][0]["text"]
        for b in payload["blocks"]
        if b["type"] == "context" and not b["elements"][0]["text"].startswith(("Alert `", "Resolves alert"))
    ]
    return str(details)


def test_many_evidence_fields_fit_in_the_details_and_say_how_many_were_left_out() -> None:
    evidence: dict[str, EvidenceValue] = {f"metric_{i:03d}": i * 1.5 for i in range(500)}
    payload = slack_blocks(make_alert(evidence=evidence))

    assert_within_slack_limits(payload)
    text = details_of(payload)
    assert text.startswith("`metric_000` 0.0 · `metric_001` 1.5 · ")
    shown = text.count("`") // 2
    assert 10 < shown < 500
    assert text.endswith(f" · … and {500 - shown} more")


def test_huge_evidence_values_are_cut() -> None:
    payload = slack_blocks(make_alert(evidence={"note": "x" * 50_000, "n": 3}))
    assert_within_slack_limits(payload)
    assert details_of(payload).endswith("… · `n` 3")


def test_no_evidence_means_no_highlights_nor_details_and_empty_message_still_renders() -> None:
    payload = slack_blocks(make_alert(evidence={"x": None}, message="   ", next_step=None))
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
    assert "*Lifetime value*\n1,234.50 · 17 purchases" in fields
    assert not any("Segment" in f for f in fields)  # empty: not shown
    assert not any("Owner" in f or "Since" in f for f in fields)  # unknown: not shown


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
    payload = slack_blocks(resolution, links=LINKS)
    assert [b["type"] for b in payload["blocks"]] == ["header", "section", "section", "section", "context", "context"]
    assert details_of(payload) == "`returned_at` 2026-06-11T00:00:00+00:00"
    assert "What changed" not in json.dumps(payload) and "Next step" not in json.dumps(payload)
    assert "*Since*\n2026-06-01 (alerted, 10 days ago)" in [f["text"] for f in payload["blocks"][2]["fields"]]
    assert payload["blocks"][3]["text"]["text"].startswith(":link: <https://crm.example/customers/c-9|CRM>")
    assert payload["blocks"][0]["text"]["text"] == ":white_check_mark: Resolved: purchase-overdue"
    assert f"Resolves alert `{resolution.resolves}`" in payload["blocks"][-1]["elements"][0]["text"]
    assert payload["text"].startswith("[RESOLVED] purchase-overdue")
    assert "came back on 2026-06-11, 10 days after the alert" in payload["blocks"][1]["text"]["text"]


def test_buttons_are_an_actions_block_slack_sdk_reads_back_unchanged() -> None:
    from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement

    from alerts.feedback import ACTIONS_BLOCK_ID, ButtonValue

    payload = slack_blocks(make_alert(), buttons=True)

    assert [b["type"] for b in payload["blocks"]] == [
        "header", "section", "section", "section", "section", "context", "context", "actions",
    ]  # fmt: skip
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


def largest_alert(**overrides: Any) -> Alert:
    """Every part at the most the contracts allow, or far beyond where nothing bounds it."""
    fields: dict[str, Any] = {
        "customer_id": "c" * 128,  # the longest customer id the event contract allows
        "rule_id": "r" * 64,  # and rule id the rule schema allows
        "message": "& 😀 " * 20_000,
        "evidence": {
            **{f"metric_{i:03d}": "x" * 300 for i in range(500)},
            "recent_purchases": 10**30, "expected_purchases": 1e300, "recent_days": 365, "ratio": 1e-300,
            "days_silent": 1e300, "silent_for_days": 1e300, "score": 10, "band": "b" * 5_000,
            "previous_score": 0, "previous_band": "&" * 5_000, "movers": "<!channel> " * 1_000,
            "answered_at": "2026-01-01T00:00:00+00:00",
        },
        "customer": {"lifetime_spend": 1e300, "lifetime_purchases": 10**30, "segment": "s" * 64},
        "owner": "o&" * 5_000,  # rule files do not bound it
        "next_step": "👍🏽" * 200,  # NEXT_STEP_MAX characters, each two UTF-16 units and a modifier
    }  # fmt: skip
    return make_alert(**(fields | overrides))


MANY_LINKS = parse_link_templates(
    ",".join(f"Link{i}=https://example.com/{'p' * 200}/{{customer_id}}?r={{rule_id}}&s={{segment}}" for i in range(60))
)


@pytest.mark.parametrize("buttons", [True, False])
def test_the_largest_message_stays_within_every_limit_and_slack_sdk_reads_it_back(buttons: bool) -> None:
    from slack_sdk.models.blocks import Block

    payload = slack_blocks(largest_alert(), buttons=buttons, links=MANY_LINKS)

    assert payload["blocks"][-1]["type"] == ("actions" if buttons else "context")
    assert_within_slack_limits(payload)
    assert [b.to_dict() for b in Block.parse_all(payload["blocks"])] == payload["blocks"]
    links = next(b["text"]["text"] for b in payload["blocks"] if b.get("text", {}).get("text", "").startswith(":link:"))
    assert re.fullmatch(r":link: (<https://example\.com/p+/c+\?r=r+&amp;s=s+\|Link\d+>( · )?)+… and \d+ more", links)
    assert "<!channel>" not in json.dumps(payload)


def test_a_payload_that_json_escaping_blows_up_sheds_details_and_links_then_cuts_the_message() -> None:
    """Control characters are six JSON characters each (\\u0001): the shares alone cannot bound that."""
    from slack_sdk.models.blocks import Block

    payload = slack_blocks(
        largest_alert(customer_id="\x01" * 128, message="\x01" * 5_000), buttons=True, links=MANY_LINKS
    )
    assert_within_slack_limits(payload)
    assert [b.to_dict() for b in Block.parse_all(payload["blocks"])] == payload["blocks"]
    assert payload["blocks"][1]["text"]["text"].endswith("…")
    assert not any(b["elements"][0]["text"].startswith("`metric_") for b in payload["blocks"] if b["type"] == "context")
    assert payload["blocks"][-1]["elements"][0]["text"].startswith("Alert `")  # the alert id stays


@pytest.mark.parametrize(
    ("text", "limit", "cut"),
    [
        ("abcdef😀xyz", 8, "abcdef…"),  # 😀 is two UTF-16 units: it would not fit whole
        ("abcde😀xyz", 8, "abcde😀…"),
        ("abcdefe\u0301xyz", 8, "abcdef…"),  # e + combining acute: never split from its accent
        ("abc👍🏽xyz", 7, "abc…"),  # thumbs up + skin tone stay together
        ("ab👩\u200d💻xyz", 6, "ab…"),  # a ZWJ sequence is not cut after its joiner
        ("a🇩🇪🇫🇷zzzz", 8, "a🇩🇪…"),  # flags are pairs of regional indicators
        ("see <https://x.example/a|CRM> now", 20, "see …"),  # never inside a link
        ("abcdef&amp;xyz", 9, "abcdef…"),  # never inside an escape
    ],
)
def test_truncate_never_splits_a_character_an_escape_or_a_link(text: str, limit: int, cut: str) -> None:
    assert truncate(text, limit) == cut
    assert width(cut) <= limit


def test_a_long_next_step_and_owner_are_escaped_and_cut() -> None:
    payload = slack_blocks(make_alert(owner="<!here>" * 100, next_step="<@U1> & " * 30))
    rendered = json.dumps(payload)
    assert "<!here>" not in rendered and "<@U1>" not in rendered
    assert_within_slack_limits(payload)


def test_ids_too_long_to_carry_mean_no_buttons() -> None:
    assert slack_blocks(make_alert(customer_id="c" * 5_000), buttons=True)["blocks"][-1]["type"] == "context"
    assert slack_blocks(make_alert(alert_id="not-a-uuid"), buttons=True)["blocks"][-1]["type"] == "context"


def test_a_link_too_long_for_the_message_is_left_out_whole_and_counted() -> None:
    (huge,) = parse_link_templates(f"Huge=https://example.com/{'p' * 3_000}/{{customer_id}}")
    payload = slack_blocks(make_alert(), links=[huge, *LINKS])
    texts = [b.get("text", {}).get("text", "") for b in payload["blocks"]]
    assert ":link: <https://crm.example/customers/cust-42|CRM> · <https://grafana" in str(texts)
    assert any(t.startswith(":link: <") and t.endswith("|Dashboard> · … and 1 more") for t in texts)
    assert "example.com/ppp" not in json.dumps(payload)
