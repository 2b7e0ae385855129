"""Fixtures of the simulator's tests: a seeded run's messages without a broker."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from simulator.generator import BankSimulator, SimConfig
from simulator.run import Sinks, Topics, run


class Message(NamedTuple):
    topic: str
    key: bytes | None
    value: bytes


class RecordingKafka:
    """Stands in for ``KafkaPublisher``: keeps every message in production order."""

    def __init__(self):
        self.messages: list[Message] = []
        self.failed = 0
        self.errors: list[str] = []
        self.in_flight = 0

    @property
    def produced(self) -> int:
        return len(self.messages)

    def produce(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.messages.append(Message(topic, key, value))

    def poll(self) -> None:
        pass

    def flush(self, timeout: float = 60.0) -> int:
        return self.failed

    def topic(self, name: str) -> list[Message]:
        return [m for m in self.messages if m.topic == name]


class RecordingWriter:
    """Stands in for ``AccountWriter``: the latest row of each account."""

    def __init__(self, columns):
        self.columns = columns
        self.rows: dict[str, tuple] = {}
        self.written = 0

    def add(self, account) -> None:
        self.add_row(
            account.account_id, tuple(getattr(account, c) for c in self.columns)
        )

    def add_row(self, account_id: str, row: tuple) -> None:
        assert len(row) == len(self.columns)
        self.rows[account_id] = row
        self.written += 1

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture(scope="session")
def publish():
    """Factory: ``publish(fmt, count, **config)`` runs a seeded simulation into a
    :class:`RecordingKafka` (and a :class:`RecordingWriter` when the format writes
    Postgres); returns ``(kafka, writer, summary, topics)``."""
    from simulator.formats import SHAPES

    def go(fmt: str, count: int = 4_000, **config):
        shape = SHAPES[fmt]
        topics = Topics(
            accounts=shape.accounts_topic or "",
            transactions=shape.transactions_topic,
            ground_truth="ground-truth",
        )
        kafka = RecordingKafka()
        writer = (
            RecordingWriter(shape.postgres_columns) if shape.postgres_columns else None
        )
        sim = BankSimulator(
            SimConfig(**{"seed": 4, "accounts": 150, "message_format": fmt, **config})
        )
        sinks = Sinks(kafka=kafka, postgres=writer, topics=topics, format=fmt)
        summary = run(sim, sinks, count=count)
        return kafka, writer, summary, topics

    return go
