from datetime import timedelta

import pytest

from stream.settings import Settings


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURNWATCH_TOPIC_PARTITIONS", "8")
    monkeypatch.setenv("CHURNWATCH_DEDUPE_TTL", "P3D")
    monkeypatch.setenv("CHURNWATCH_TOPIC_ALERTS", "team.alerts")
    monkeypatch.setenv("CHURNWATCH_SLACK_WEBHOOK_URL", "https://hooks.example/services/T/B/hush-hush-0042")
    monkeypatch.setenv("CHURNWATCH_WEBHOOK_SECRET", "signing-key-0042")
    monkeypatch.setenv("CHURNWATCH_SLACK_BOT_TOKEN", "xoxb-token-0042")
    monkeypatch.setenv("CHURNWATCH_SLACK_CHANNEL", "#churn")
    settings = Settings()
    assert settings.topic_partitions == 8
    assert settings.dedupe_ttl == timedelta(days=3)
    assert settings.topics.alerts == "team.alerts"
    assert "0042" not in repr(settings)  # SecretStr keeps the webhook, signing key and token out of logs


def test_empty_values_switch_features_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURNWATCH_SLACK_WEBHOOK_URL", "")
    monkeypatch.setenv("CHURNWATCH_ALERT_MAX_LAG", "")
    settings = Settings()
    assert settings.slack_webhook_url is None and settings.alert_max_lag is None


def test_topics_map_events_to_their_stream() -> None:
    topics = Settings().topics
    assert topics.event_kinds == {
        "churnwatch.purchases": "purchase",
        "churnwatch.interactions": "interaction",
        "churnwatch.feedback": "feedback",
    }


@pytest.mark.parametrize(
    ("written", "seconds"), [("30", 30), ("45s", 45), ("10m", 600), ("12h", 43200), ("P2D", 172800)]
)
def test_durations_are_written_as_people_write_them(
    monkeypatch: pytest.MonkeyPatch, written: str, seconds: int
) -> None:
    monkeypatch.setenv("CHURNWATCH_KAFKA_SESSION_TIMEOUT", written)
    assert Settings().kafka_session_timeout == timedelta(seconds=seconds)


def test_a_bad_duration_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("CHURNWATCH_RETENTION", "forever")
    with pytest.raises(ValidationError, match="not a duration"):
        Settings()
