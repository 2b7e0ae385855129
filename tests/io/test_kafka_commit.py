"""The reader's offset committer against the local broker: the committed offset of a partition
never moves backwards within a run, and a later run may commit lower offsets."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from pipeline.io.kafka.commit import CHECK_INTERVAL_S, SETTLE_CHECKS, OffsetCommitter
from pipeline.io.kafka.config import ReadSettings


def settings(bootstrap: str, topic: str, group: str, run_id: str) -> ReadSettings:
    return ReadSettings(
        bootstrap_servers=bootstrap, topics=(topic,), group_id=group, start="committed",
        bounded=False, max_records=None, consumer_config=(), poll_timeout_s=0.2,
        max_batch=100, max_bundle_s=1.0, idle_resume_s=0.5, watermark_allowance_s=2.0,
        run_id=run_id,
    )


def wait_until(what: str, predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def group() -> str:
    return f"test-commit-{uuid.uuid4().hex[:10]}"


def test_an_older_bundle_finalized_last_does_not_move_the_offset_back(
    kafka_broker, kafka_topic, kafka_committed, group
):
    topic = kafka_topic(partitions=1)
    committer = OffsetCommitter(settings(kafka_broker, topic, group, "run-1"))
    committer.want(topic, 0, 26)
    committer.want(topic, 0, 20)  # a bundle before the one that read up to 25
    committer.flush()
    assert kafka_committed(group, topic, partitions=1) == {0: 26}


def test_another_workers_late_commit_is_repaired(
    kafka_broker, kafka_topic, kafka_committed, group
):
    topic = kafka_topic(partitions=1)
    committer = OffsetCommitter(settings(kafka_broker, topic, group, "run-1"))
    committer.want(topic, 0, 26)
    committer.flush()
    # Another SDK worker of the same run commits an older bundle's offset, landing last.
    other = Consumer({"bootstrap.servers": kafka_broker, "group.id": group})
    other.commit(offsets=[TopicPartition(topic, 0, 20, metadata="run-1")], asynchronous=False)
    other.close()
    assert kafka_committed(group, topic, partitions=1) == {0: 20}
    wait_until(
        "the committer to restore offset 26",
        lambda: kafka_committed(group, topic, partitions=1) == {0: 26},
        timeout=(SETTLE_CHECKS + 2) * CHECK_INTERVAL_S,
    )


def test_a_later_run_commits_its_own_lower_offsets(
    kafka_broker, kafka_topic, kafka_committed, group
):
    topic = kafka_topic(partitions=2)
    first = OffsetCommitter(settings(kafka_broker, topic, group, "run-1"))
    first.want(topic, 0, 26)
    first.want(topic, 1, 30)
    first.flush()
    # Resubmitted from an older savepoint: the new run starts behind the old one.
    second = OffsetCommitter(settings(kafka_broker, topic, group, "run-2"))
    second.want(topic, 0, 10)
    second.flush()
    assert kafka_committed(group, topic, partitions=2) == {0: 10, 1: 30}


def test_one_committer_per_group_and_run_in_a_process():
    a = settings("127.0.0.1:1", "t", "g", "run-1")
    assert OffsetCommitter.of(a) is OffsetCommitter.of(a)
    assert OffsetCommitter.of(a) is not OffsetCommitter.of(settings("127.0.0.1:1", "t", "g", "run-2"))
