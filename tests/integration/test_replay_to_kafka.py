"""churnwatch replay --to-kafka against the real broker: every valid event on its topic, keyed by its
customer, valued as the decoder accepts it, in event-time order, paced by --speed."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from stream.cli import main
from stream.decoding import DecodePolicy, decode_event
from stream.events import EventBase
from stream.localstack import StackInfo
from stream.settings import Topics
from tests.events_factory import feedback, interaction, purchase, wire_dict
from tests.integration.kafka_io import read_topic

KIND = {"PurchaseEvent": "purchase", "InteractionEvent": "interaction", "FeedbackEvent": "feedback"}
START = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
MINUTES = timedelta(minutes=1)
DECODE = DecodePolicy(max_message_bytes=65536, max_future_skew=timedelta(hours=1), currency="USD")


def history(tag: str) -> list[EventBase]:
    """Two customers over two hours (at least ten minutes between one's events), on all three topics."""
    a, b = f"{tag}-a", f"{tag}-b"
    return [
        purchase(a, START),
        interaction(b, START + 5 * MINUTES),
        feedback(a, START + 10 * MINUTES, score=3),
        purchase(b, START + 20 * MINUTES),
        interaction(a, START + 30 * MINUTES),
        purchase(a, START + 60 * MINUTES),
        feedback(b, START + 90 * MINUTES, score=9),
        interaction(a, START + 120 * MINUTES),
    ]


def test_replay_to_kafka_sends_the_sorted_history_to_the_input_topics(
    local_stack: StackInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = uuid.uuid4().hex[:8]
    topics = Topics(
        purchases=f"tk-{run}.purchases",
        interactions=f"tk-{run}.interactions",
        feedback=f"tk-{run}.feedback",
        alerts=f"tk-{run}.alerts",
        deadletter=f"tk-{run}.deadletter",
    )
    monkeypatch.setenv("CHURNWATCH_KAFKA_BOOTSTRAP", local_stack.kafka_bootstrap)
    for name, value in topics.model_dump().items():
        monkeypatch.setenv(f"CHURNWATCH_TOPIC_{name.upper()}", value)
    events = history(run)
    shuffled = [events[n] for n in (5, 0, 7, 2, 1, 6, 3, 4)]  # the file is not in time order
    lines = [json.dumps({"topic": KIND[type(e).__name__], "event": wire_dict(e)}) for e in shuffled]
    lines.insert(2, '{"topic": "purchase", "event": {"customer_id": "nobody"}}')  # invalid: reported, not sent
    (tmp_path / "history.jsonl").write_text("\n".join(lines) + "\n")

    started = time.monotonic()
    result = CliRunner().invoke(main, ["replay", str(tmp_path / "history.jsonl"), "--to-kafka", "--speed", "3600"])
    elapsed = time.monotonic() - started

    assert result.exit_code == 0, result.output
    assert "line 3: schema" in result.stderr
    assert f"sent 8 events to {local_stack.kafka_bootstrap} (PLAINTEXT) in " in result.stderr
    assert elapsed >= 2.0 - 0.05  # two hours of event time at 3,600 times real time

    async def read_all() -> list[Any]:
        wanted = {topics.purchases: 3, topics.interactions: 3, topics.feedback: 2}
        found = await asyncio.gather(
            *(
                read_topic(local_stack.kafka_bootstrap, topic, until=lambda got, n=n: len(got) >= n, timeout=30)
                for topic, n in wanted.items()
            )
        )
        return [record for records in found for record in records]

    records = asyncio.run(read_all())
    assert len(records) == 8
    by_id = {e.event_id: e for e in events}
    sent_at: dict[str, list[tuple[int, datetime]]] = defaultdict(list)
    per_partition: dict[tuple[str, int], list[tuple[int, datetime]]] = defaultdict(list)
    kind_of = topics.event_kinds
    for r in records:
        decoded = decode_event(kind_of[r.topic], r.key, r.value, now=datetime.now(UTC), policy=DECODE)
        assert isinstance(decoded, EventBase), decoded  # the worker accepts it as it is
        original = by_id[decoded.event_id]
        assert decoded == original and r.topic == topics.for_event(original)
        assert r.key == original.customer_id.encode()
        sent_at[original.customer_id].append((r.timestamp, original.occurred_at))
        per_partition[r.topic, r.partition].append((r.offset, original.occurred_at))
    for customer, sends in sent_at.items():  # across topics: sent in event-time order, paced apart
        in_send_order = [at for _, at in sorted(sends)]
        assert in_send_order == sorted(in_send_order), customer
        assert len({ms for ms, _ in sends}) == len(sends)
    for in_partition in per_partition.values():
        assert [at for _, at in sorted(in_partition)] == sorted(at for _, at in in_partition)


def test_ctrl_c_stops_the_sending_and_what_was_sent_is_on_the_topic(local_stack: StackInfo, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    topic = f"tk-{run}.purchases"
    env = {
        **os.environ,
        "CHURNWATCH_KAFKA_BOOTSTRAP": local_stack.kafka_bootstrap,
        "CHURNWATCH_TOPIC_PURCHASES": topic,
        "CHURNWATCH_TOPIC_INTERACTIONS": f"tk-{run}.interactions",
        "CHURNWATCH_TOPIC_FEEDBACK": f"tk-{run}.feedback",
    }
    customer = f"{run}-weekly"
    hours = [purchase(customer, START - timedelta(days=100) + n * timedelta(hours=1)) for n in range(100)]
    lines = [json.dumps({"topic": "purchase", "event": wire_dict(e)}) for e in hours]
    (tmp_path / "history.jsonl").write_text("\n".join(lines) + "\n")
    command = [sys.executable, "-m", "stream.cli", "replay", str(tmp_path / "history.jsonl"), "--to-kafka"]
    sender = subprocess.Popen(  # an hour of event time a tenth of a second: 10 s for all 100
        [*command, "--speed", "36000"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert sender.stderr is not None
        assert "sending 100 events" in sender.stderr.readline()  # the first line, before any send
        time.sleep(2.0)
        sender.send_signal(signal.SIGINT)
        _, err = sender.communicate(timeout=30)
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()

    assert sender.returncode == 0, err
    match = re.search(r"sent (\d+) events to .* stopped after \1 of 100", err)
    assert match is not None, err
    count = int(match.group(1))
    assert 0 < count < 100

    got = asyncio.run(read_topic(local_stack.kafka_bootstrap, topic, until=lambda r: len(r) > count, timeout=5))
    assert [json.loads(r.value)["event_id"] for r in got] == [e.event_id for e in hours[:count]]
