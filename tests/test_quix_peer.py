"""The Quix Streams peer of `make bench` against the real Kafka and Postgres: every
transaction gets its row, equal to the baseline's, also when accounts come late, change,
are only on the topic, or never come (their transactions wait, then are written unjoined)."""

from __future__ import annotations

import json
import signal
import uuid
from datetime import UTC, datetime

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from pipeline.records import Transaction
from tools.baseline import run_baseline
from tools.bench_data import SERVICES, SeededTopics, compare_rows
from tools.quix_peer import run_quix_peer


def produce_orphans(bootstrap: str, topic: str, count: int) -> list[str]:
    """Transactions of an account that is neither on the accounts topic nor in Postgres."""
    account_id = f"orphan-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": bootstrap})
    ids = []
    for i in range(count):
        txn = Transaction(f"{account_id}-t{i}", account_id, None, "payment", 20.0 + i, "EUR",
                          "completed", datetime(2025, 1, 7, 9, i, tzinfo=UTC), None, "cleared")
        producer.produce(topic, key=account_id, value=json.dumps(txn.to_dict()))
        ids.append(txn.transaction_id)
    assert producer.flush(10) == 0
    return ids


def test_quix_peer_writes_the_baselines_rows(stack_up):
    data = SeededTopics(stack_up(*SERVICES), prefix="test-quix")
    orphans: list[str] = []
    try:
        sim = data.simulate(400, 8641, 40, "--no-postgres", "--late-account-rate", "0.3",
                            "--update-rate", "0.05")
        assert sim["accounts"]["late"] > 0 and sim["accounts"]["update"] > 0, sim["accounts"]
        orphans = produce_orphans(data.bootstrap, data.topics["transactions"], 3)
        ids = data.ids + orphans
        topics = (data.bootstrap, data.topics["accounts"], data.topics["transactions"], data.dsn)
        baseline = run_baseline(*topics)
        reference = data.rows(ids)
        data.clear_rows(ids)

        handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
        peer = run_quix_peer(*topics, idle_timeout_s=10.0)
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers

        assert "error" not in peer, peer
        assert peer["kafka_records_read"] == peer["messages_expected"] > 403  # and accounts
        assert peer["waited"] >= 3
        assert (peer["joined"], peer["unjoined"]) == (baseline["joined"], baseline["unjoined"])
        check = compare_rows(ids, data.rows(ids), reference)
        assert (check["missing"], check["rows_agree"]) == (0, 403), check["differ"]
        assert {reference[i][0] for i in orphans} == {None}
        assert None not in {reference[i][0] for i in data.ids}
        admin = AdminClient({"bootstrap.servers": data.bootstrap})
        changelogs = [t for t in admin.list_topics(timeout=10).topics
                      if peer["consumer_group"] in t]
        groups = [g.group_id for g in admin.list_consumer_groups().result(10).valid]
        assert changelogs == [] and peer["consumer_group"] not in groups
    finally:
        data.all_ids += orphans
        data.cleanup()
