"""A worker killed -9 while its deliveries are in flight: its successor loses no alert, and resends
none that the notification log had recorded.

What churnwatch guarantees, and so what this asserts (README, "Alerts: what is sent, and the
guarantees"): delivery is **at least once** per receiver, under a stable ``alert_id`` sent as the
``Idempotency-Key``. The notification log (``cw:{<customer>}:sent:<alert_id>:<receiver>``) is written
only after a receiver answered 2xx, and the alerts topic's offset is committed only behind finished
deliveries. So, for a kill at any moment:

- every alert reaches every receiver at least once (nothing is committed past an unfinished one);
- an alert the log had recorded for a receiver is not sent to it again (the successor re-reads the
  uncommitted records, finds the entries, and skips them as ``duplicate``);
- an alert whose request was in flight (sent, not yet answered, so not logged) may reach that
  receiver twice, both times with the same ``Idempotency-Key``: the receiver drops the copy. That
  second copy is the documented price of at least once, not a failure.

The receiver holds every request for a few seconds, so the kill lands with one alert in flight at
both receivers and the ones before it logged; offsets are committed only every 60 s, so the
successor re-reads every record the first worker had handled and the log, not the commit, is what
keeps those from being sent again.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from redis import Redis as SyncRedis

from alerts.model import Alert
from rules.base import Severity
from stream.localstack import StackInfo
from stream.localstack.worker import running_worker
from stream.windows import keys
from tests.events_factory import unique_customer
from tests.integration.deployment import SLACK_PATH, WEBHOOK_PATH, Deployment, deploy
from tests.integration.kafka_io import produce
from tests.integration.waiting import wait_for
from tests.unit.http_receiver import Reply

HOOKS = {"hook-a": WEBHOOK_PATH, "hook-b": SLACK_PATH}
"""Two webhook receivers at the local receiver, their URLs in the variables the deployment sets."""
ALERTS = 6
HOLD_SECONDS = 4.0  # under the webhook's 10 s timeout: a held request still succeeds


def routes_file(directory: Path) -> Path:
    path = directory / "routes.yaml"
    path.write_text(
        "receivers:\n"
        "  - {name: hook-a, type: webhook, url_env: CHURNWATCH_WEBHOOK_URL}\n"
        "  - {name: hook-b, type: webhook, url_env: CHURNWATCH_SLACK_WEBHOOK_URL}\n"
        "route:\n"
        "  receiver: hook-a\n"
        "  routes:\n"
        "    - {receiver: hook-a, continue: true, matchers: {severity: [info, warning, critical]}}\n"
        "    - {receiver: hook-b, matchers: {severity: [info, warning, critical]}}\n"
    )
    return path


def make_alerts() -> list[Alert]:
    now = datetime.now(UTC)
    return [
        Alert(
            alert_id=str(uuid.uuid4()),
            customer_id=unique_customer("killed-mid-delivery"),
            rule_id="nps-detractor",
            severity=Severity.WARNING,
            message=f"alert {n}",
            evidence={"score": 3},
            evaluated_at=now,
            detected_at=now,
            trigger_event_id=f"evt-{uuid.uuid4().hex[:8]}",
            trigger_topic="churnwatch.feedback",
        )
        for n in range(ALERTS)
    ]


def received(deployment: Deployment, alerts: list[Alert]) -> dict[str, Counter[str]]:
    """Per receiver, how many requests carried each alert's Idempotency-Key."""
    ids = {a.alert_id for a in alerts}
    counts: dict[str, Counter[str]] = {name: Counter() for name in HOOKS}
    for request in deployment.slack.requests:
        for name, path in HOOKS.items():
            key = request.headers.get("Idempotency-Key")
            if request.path == path and key in ids:
                counts[name][key] += 1
    return counts


async def test_a_worker_killed_mid_delivery_loses_no_alert_and_resends_none_it_had_logged(
    local_stack: StackInfo, tmp_path: Path
) -> None:
    env = {
        "CHURNWATCH_ROUTES_FILE": str(routes_file(tmp_path)),
        "CHURNWATCH_KAFKA_SESSION_TIMEOUT": "8",  # the dead worker's partitions move on soon
        "CHURNWATCH_KAFKA_COMMIT_INTERVAL": "60",  # nothing committed before the kill
    }
    alerts = make_alerts()
    with deploy(local_stack, tmp_path, env) as deployment:
        deployment.slack.receiver.default = Reply(200, delay=HOLD_SECONDS)  # the receiver holds each request
        await produce(
            local_stack.kafka_bootstrap,
            [(deployment.topics.alerts, a.customer_id.encode(), a.model_dump_json().encode()) for a in alerts],
        )
        # One alert at a time (the delivery agent's concurrency is 1), to both receivers at once: when a
        # third alert's requests have arrived at both, the two before it were answered and logged.
        wait_for(
            lambda: all(len(c) >= 3 for c in received(deployment, alerts).values()), "a third alert", 90, every=0.1
        )
        os.kill(deployment.worker.process.pid, signal.SIGKILL)  # our own child, its requests held
        deployment.worker.process.wait()
        at_kill = received(deployment, alerts)

        redis = SyncRedis.from_url(local_stack.redis_url)
        logged = {
            (a.alert_id, name)
            for a in alerts
            for name in HOOKS
            if redis.exists(keys.delivered(a.customer_id, a.alert_id, name))
        }
        redis.close()
        in_flight = {(i, name) for name, counts in at_kill.items() for i in counts} - logged
        print(f"at the kill: {len(logged)} (alert, receiver) logged, {len(in_flight)} in flight")
        assert len(logged) >= 4 and in_flight  # the kill did land mid-delivery, after logged ones

        deployment.slack.receiver.default = Reply(200)
        with running_worker(local_stack, env=deployment.env, output=tmp_path / "second.log") as second:

            def all_in() -> bool:
                return all(len(c) == ALERTS for c in received(deployment, alerts).values())

            wait_for(all_in, "every alert at both receivers", 120, every=0.1)
            time.sleep(2)  # a resend would arrive right behind
            final = received(deployment, alerts)
            metrics = second.get("/metrics").splitlines()
        dead = [ln for ln in metrics if ln.startswith("churnwatch_deadletters_total{")]
        # The successor did re-read the logged ones (nothing was committed) and skipped them by the log.
        skipped = sum(
            float(ln.rsplit(" ", 1)[1])
            for ln in metrics
            if ln.startswith("churnwatch_alert_deliveries_total{") and 'outcome="duplicate"' in ln
        )
        assert skipped == len(logged), metrics
        print({name: dict(c) for name, c in final.items()})
        for name, counts in final.items():
            for alert in alerts:
                n = counts[alert.alert_id]
                assert n >= 1, (name, alert.alert_id)  # none lost
                if (alert.alert_id, name) in logged:
                    assert n == 1, (name, alert.alert_id)  # logged before the kill: never sent again
                elif (alert.alert_id, name) in in_flight:
                    assert n <= 2, (name, alert.alert_id)  # at least once: the held request, perhaps again
                else:
                    assert n == 1, (name, alert.alert_id)  # never sent by the first worker: once
        assert not dead, dead
