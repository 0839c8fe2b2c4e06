from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
import uuid
from pathlib import Path

import psutil
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from stack.broker import EmbeddedBroker, ensure_topics


async def list_topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics: list[str] = await admin.list_topics()
        return topics
    finally:
        await admin.close()


async def test_produce_and_consume_with_a_group(broker: EmbeddedBroker) -> None:
    topic = f"stack-{uuid.uuid4().hex[:8]}"
    await ensure_topics(broker.bootstrap_servers, [topic], partitions=3)

    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello", key=b"k")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap_servers,
        group_id="stack-test",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=30)
        await consumer.commit()
    finally:
        await consumer.stop()
    assert (record.key, record.value) == (b"k", b"hello")


async def test_ensure_topics_is_idempotent(broker: EmbeddedBroker) -> None:
    await ensure_topics(broker.bootstrap_servers, ["alpha", "beta"], partitions=2)
    await ensure_topics(broker.bootstrap_servers, ["alpha", "beta", "gamma", "gamma"], 6)
    assert {"alpha", "beta", "gamma"} <= set(await list_topics(broker.bootstrap_servers))


async def test_ensure_topics_rejects_zero_partitions(broker: EmbeddedBroker) -> None:
    with pytest.raises(ValueError, match="partitions"):
        await ensure_topics(broker.bootstrap_servers, ["x"], partitions=0)


async def test_restart_keeps_address_and_loses_topics(broker: EmbeddedBroker) -> None:
    await ensure_topics(broker.bootstrap_servers, ["ephemeral"], partitions=1)
    assert "ephemeral" in await list_topics(broker.bootstrap_servers)
    bootstrap, pid = broker.bootstrap_servers, broker.pid()

    broker.restart()  # called from inside a running loop on purpose

    assert broker.bootstrap_servers == bootstrap
    assert broker.pid() not in (None, pid)
    assert "ephemeral" not in await list_topics(broker.bootstrap_servers)


def test_stop_is_quick_with_a_client_connected(broker: EmbeddedBroker) -> None:
    # Tansu drains for ~5 s on SIGTERM while clients are connected; stop must not.
    with socket.create_connection(("127.0.0.1", broker.port)):
        started = time.monotonic()
        broker.restart()
        assert time.monotonic() - started < 2


def test_stop_leaves_no_process(broker: EmbeddedBroker) -> None:
    pid = broker.pid()
    assert pid is not None
    broker.stop()
    assert not broker.is_running()
    assert broker.pid() is None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    broker.stop()  # a second stop is harmless


def test_stop_after_external_kill_and_start_again(broker: EmbeddedBroker) -> None:
    pid = broker.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while broker.is_running() and time.monotonic() < deadline:
        time.sleep(0.01)
    broker.stop()
    broker.start()
    assert broker.pid() not in (None, pid)


def test_start_is_idempotent(broker: EmbeddedBroker) -> None:
    pid = broker.pid()
    broker.start()
    assert broker.pid() == pid


def test_otel_endpoint_is_not_passed_to_the_broker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    with EmbeddedBroker(tmp_path / "otel") as server:
        pid = server.pid()
        assert pid is not None
        assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in psutil.Process(pid).environ()


def test_interrupted_start_leaves_no_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*_args: object) -> None:
        raise KeyboardInterrupt

    server = EmbeddedBroker(tmp_path / "interrupted")
    monkeypatch.setattr(server, "_wait_ready", interrupted)
    with pytest.raises(KeyboardInterrupt):
        server.start()
    assert not server.is_running()  # and the autouse fixture checks nothing leaked
