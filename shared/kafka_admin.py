"""Topic administration: workers and the launcher make sure topics exist before use."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

_TOPIC_ALREADY_EXISTS = TopicAlreadyExistsError.errno


async def ensure_topics(bootstrap: str, names: Iterable[str], partitions: int) -> None:
    """Create the given topics (replication factor 1); existing topics are left as they are."""
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="tenancy-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(n, partitions, 1) for n in wanted if n not in existing]
        if not missing:
            return
        response = None
        # Another process may create them first.
        with contextlib.suppress(TopicAlreadyExistsError):
            response = await admin.create_topics(missing)
        # aiokafka reports per-topic failures in the response instead of raising.
        for topic, code, *rest in response.topic_errors if response else ():
            if code in (0, _TOPIC_ALREADY_EXISTS):
                continue
            detail = rest[0] if rest and rest[0] else ""
            raise for_code(code)(f"creating topic {topic!r} failed: {detail}")
    finally:
        await admin.close()
