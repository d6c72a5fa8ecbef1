"""Feedback from Slack's buttons in Redis: each person's latest answer per alert, and an index by
time for ``churnwatch rules stats``.

Per alert one hash (:func:`stream.windows.keys.alert_feedback`): ``user:<id>`` -> the answer as JSON,
``alert`` -> its rule and customer. An index (:func:`stream.windows.keys.feedback_index`) orders the
alerts by their latest answer. Both are written by one script, so two workers answering Slack's
retry of the same click at once record it (and count it) once: the script writes nothing when the
person's stored answer already is that outcome. Answers are kept for :data:`RETENTION`.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from alerts.feedback import AlertFeedback, Answer, Click, Outcome
from rules.state import epoch_ms
from stream.windows import keys
from stream.windows.codec import as_text

log = logging.getLogger("churnwatch.feedback")

RETENTION = timedelta(days=400)
"""A year of ``rules stats`` and some: feedback is small (a few hundred bytes per answered alert)."""
_USER = "user:"
_ALERT = "alert"

# KEYS[1] the alert's hash, KEYS[2] the index. ARGV: user field, answer JSON, outcome, alert JSON,
# click time (ms), retention (ms), alert id. Returns 1 when written, 0 when that was the answer already.
_RECORD = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local ok, answer = pcall(cjson.decode, old)
  if ok and type(answer) == 'table' and answer['outcome'] == ARGV[3] then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], 'alert', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('ZADD', KEYS[2], 'GT', ARGV[5], ARGV[7])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (tonumber(ARGV[5]) - tonumber(ARGV[6])))
return 1
"""


class RedisFeedbackStore:
    def __init__(self, redis: Redis, app_id: str, *, retention: timedelta = RETENTION) -> None:
        self._redis = redis
        self._app_id = app_id
        self._index = keys.feedback_index(app_id)
        self._retention = retention
        self._record = redis.register_script(_RECORD)

    async def answer(self, alert_id: str, user_id: str) -> Answer | None:
        raw = await self._redis.hget(keys.alert_feedback(self._app_id, alert_id), _USER + user_id)
        return None if raw is None else _answer(user_id, raw)

    async def record(self, click: Click, at: datetime) -> bool:
        answer = {"outcome": click.outcome.value, "name": click.user_name, "at": epoch_ms(at)}
        alert = {"rule": click.rule, "customer_id": click.customer_id}
        written = await self._record(
            keys=[keys.alert_feedback(self._app_id, click.alert_id), self._index],
            args=[
                _USER + click.user_id,
                json.dumps(answer, separators=(",", ":")),
                click.outcome.value,
                json.dumps(alert, separators=(",", ":")),
                epoch_ms(at),
                int(self._retention.total_seconds() * 1000),
                click.alert_id,
            ],
        )
        return bool(written)

    async def feedback(self, alert_id: str) -> AlertFeedback | None:
        raw: dict[Any, Any] = await self._redis.hgetall(keys.alert_feedback(self._app_id, alert_id))
        return _feedback(alert_id, raw)

    async def since(self, moment: datetime) -> list[AlertFeedback]:
        members: list[Any] = await self._redis.zrangebyscore(self._index, epoch_ms(moment), "+inf")
        ids = [as_text(i) for i in members]
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for alert_id in ids:
                pipe.hgetall(keys.alert_feedback(self._app_id, alert_id))
            hashes = await pipe.execute()
        found = (_feedback(alert_id, raw) for alert_id, raw in zip(ids, hashes, strict=True))
        return [f for f in found if f is not None]


def _answer(user_id: str, raw: bytes | str) -> Answer | None:
    try:
        value = json.loads(raw)
        return Answer(
            user_id, str(value["name"]), Outcome(value["outcome"]), datetime.fromtimestamp(int(value["at"]) / 1000, UTC)
        )
    except (ValueError, TypeError, KeyError):
        log.warning("feedback of user %s is unreadable, ignored", user_id)
        return None


def _feedback(alert_id: str, raw: dict[Any, Any]) -> AlertFeedback | None:
    """None for an alert whose hash expired (the index outlives it by at most a write)."""
    fields = {as_text(k): v for k, v in raw.items()}
    try:
        alert = json.loads(fields.pop(_ALERT))
        rule, customer_id = str(alert["rule"]), str(alert["customer_id"])
    except (KeyError, ValueError, TypeError):
        return None
    answers = (_answer(f.removeprefix(_USER), v) for f, v in fields.items() if f.startswith(_USER))
    kept = tuple(a for a in answers if a is not None)
    return AlertFeedback(alert_id, rule, customer_id, kept) if kept else None
