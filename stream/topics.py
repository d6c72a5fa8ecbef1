"""Creating churnwatch's Kafka topics when missing (existing topics are left as they are)."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream.settings import Settings

log = logging.getLogger("churnwatch.topics")


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the event, alerts and dead-letter topics that do not exist yet; return those created."""
    wanted = [*settings.topics.events, settings.topics.alerts, settings.topics.deadletter]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id=f"{settings.app_id}-admin")
    await admin.start()
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
