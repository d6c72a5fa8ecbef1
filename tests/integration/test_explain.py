"""`churnwatch rules explain` reads the live state from a real Redis."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from redis.asyncio import Redis

from rules.ruleset import load_rule_set
from stream.cli import main
from stream.localstack import StackInfo
from tests.events_factory import interaction, unique_customer, weekly_purchases
from tests.integration.test_processor_redis import DEFAULT_RULES, NOW, Harness


def test_explain_shows_the_numbers_and_the_cooldown(local_stack: StackInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    cid = unique_customer("explain")

    async def feed() -> None:  # the CLI runs its own event loop, so the test itself is synchronous
        redis = Redis.from_url(local_stack.redis_url)
        try:
            harness = Harness(redis, load_rule_set(DEFAULT_RULES))
            await harness.feed([*weekly_purchases(cid, NOW, 119, 40), interaction(cid, NOW)])
        finally:
            await redis.aclose()

    asyncio.run(feed())
    monkeypatch.setenv("CHURNWATCH_REDIS_URL", local_stack.redis_url)
    runner = CliRunner()

    result = runner.invoke(main, ["rules", "explain", "purchase-overdue", "--customer", cid])
    assert result.exit_code == 0, result.output
    assert "would fire: YES" in result.output
    assert "days_since_last_purchase = 42" in result.output and "purchase_days = 12" in result.output
    assert "last alerted at" in result.output

    earlier = (NOW - timedelta(days=45)).isoformat()
    result = runner.invoke(main, ["rules", "explain", "purchase-overdue", "--customer", cid, "--at", earlier])
    assert "would fire: no" in result.output

    result = runner.invoke(main, ["rules", "explain", "purchase-overdue", "--customer", "nobody-" + cid])
    assert "no state in Redis" in result.output

    # A rule shipped disabled is explained too (what it would do if switched on), and says it is off;
    # the worker never judged it, so it never alerted.
    result = runner.invoke(main, ["rules", "explain", "purchase-frequency-drop", "--customer", cid])
    assert result.exit_code == 0, result.output
    assert "disabled (enabled: false)" in result.output
    assert "would fire: YES" in result.output and "recent_purchases = 0" in result.output
    assert "last alerted at" not in result.output

    result = runner.invoke(main, ["rules", "explain", "no-such-rule", "--customer", cid])
    assert result.exit_code == 1 and "known:" in result.output


def test_explain_with_a_rule_file(local_stack: StackInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "r.yaml").write_text(
        "rules:\n  - id: big\n    kind: expression\n    condition: 'lifetime_spend > 100.0'\n    message: m\n"
    )
    monkeypatch.setenv("CHURNWATCH_REDIS_URL", local_stack.redis_url)
    result = CliRunner().invoke(main, ["rules", "explain", "big", "--customer", "x", "--rules", str(tmp_path)])
    assert result.exit_code == 0 and "no state in Redis" in result.output
