"""Creating churnwatch's Kafka topics when missing (existing topics are left as they are)."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError

from stream.connections import KafkaUnavailableError, describe_kafka, kafka_client_kwargs
from stream.settings import Settings

log = logging.getLogger("churnwatch.topics")


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the event, alerts and dead-letter topics that do not exist yet; return those created.

    The worker's first Kafka connection: a broker that cannot be reached, or that refuses the TLS
    handshake or the SASL credentials, stops the start here with :class:`KafkaUnavailableError`."""
    wanted = [*settings.topics.events, settings.topics.alerts, settings.topics.deadletter]
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings), client_id=f"{settings.app_id}-admin")
    try:
        await admin.start()
    except KafkaConnectionError as exc:
        await admin.close()
        raise KafkaUnavailableError(
            f"cannot connect to Kafka at {describe_kafka(settings)}: {exc}. aiokafka logged the broker's reason "
            "above (SaslAuthenticationFailed: wrong user name, password or mechanism; an SSL error: a certificate "
            "not signed by CHURNWATCH_KAFKA_SSL_CAFILE; 'Connection closed': a security protocol the listener "
            "does not speak)"
        ) from None
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(t, num_partitions=settings.topic_partitions, replication_factor=settings.topic_replicas)
                    for t in missing
                ]
            )
            log.info("created topics %s", ", ".join(missing))
        return missing
    finally:
        await admin.close()
