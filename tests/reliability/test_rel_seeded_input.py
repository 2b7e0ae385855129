"""tools.seeded_input against the local Kafka and PostgreSQL: one seeded simulation replayed
twice gives two identical inputs (what makes a fault-free run a reference for a fault)."""

from __future__ import annotations

import json
import uuid

import psycopg2

from stack.kafka import ensure_topics
from tools.reconcile import read_topic
from tools.seeded_input import PARTITIONS, SeededInput

SEED = 90_210_777  # no other test uses it: its account ids are this test's own
COUNT = 300


def topic_contents(bootstrap: str, topic: str) -> list[tuple]:
    """(partition, offset, key, value) of every message, in partition and offset order."""
    return sorted((m.partition(), m.offset(), m.key(), m.value())
                  for m in read_topic(bootstrap, topic))


def test_two_replays_of_one_input_are_the_same_messages(kafka_bootstrap, postgres_dsn,
                                                        tmp_path):
    source = SeededInput.generate(SEED, COUNT, tmp_path, accounts=20, bad_rate=0.05)
    again = SeededInput.generate(SEED, COUNT, tmp_path)  # the simulator is deterministic
    assert [m.value for m in again.messages][:20] == [m.value for m in source.messages][:20]
    transactions = [m for m in source.messages if m.role == "transactions"]
    assert len(transactions) == COUNT and len(source.transaction_ids) < COUNT  # some bad

    runs = []
    for _ in range(2):
        tag = uuid.uuid4().hex[:8]
        topics = {"accounts": f"seeded-{tag}.accounts",
                  "transactions": f"seeded-{tag}.transactions"}
        ensure_topics({t: PARTITIONS for t in topics.values()}, kafka_bootstrap)
        with psycopg2.connect(postgres_dsn) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM banking.accounts WHERE account_id = ANY(%s)",
                        (source.account_ids,))
        conn.close()
        replay = source.replay(kafka_bootstrap, topics, tps=2000, postgres_dsn=postgres_dsn)
        replay.wait(120)
        runs.append({role: topic_contents(kafka_bootstrap, t) for role, t in topics.items()})

    assert runs[0] == runs[1]
    # The publishing order of the simulator, per partition; every message once.
    for role in ("accounts", "transactions"):
        published = [m.value for m in source.messages if m.role == role]
        assert sorted(v for _, _, _, v in runs[0][role]) == sorted(published)
        for partition in range(PARTITIONS):
            values = [v for p, _, _, v in runs[0][role] if p == partition]
            assert values == [v for v in published if v in set(values)]
    # An account's records share one partition on both topics.
    account_partition = {k: p for p, _, k, _ in runs[0]["accounts"]}
    for p, _, key, _ in runs[0]["transactions"]:
        if key in account_partition:
            assert p == account_partition[key]

    with psycopg2.connect(postgres_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT account_id, account_name FROM banking.accounts"
                    " WHERE account_id = ANY(%s)", (source.account_ids,))
        stored = dict(cur.fetchall())
        cur.execute("DELETE FROM banking.accounts WHERE account_id = ANY(%s)",
                    (source.account_ids,))
    conn.close()
    latest = {}
    for m in source.messages:
        if m.role == "accounts":
            account = json.loads(m.value)
            latest[account["account_id"]] = account["account_name"]
    assert stored == latest
