"""The publish loop: drives a :class:`BankSimulator` into its sinks at a chosen rate.

>>> from simulator.generator import BankSimulator, SimConfig
>>> summary = run(BankSimulator(SimConfig(seed=1, accounts=10)), Sinks(), count=100)
>>> summary["messages"]["transactions"]
100
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import IO

from simulator.formats import (
    SHAPES,
    account_encoder,
    flinksql_pg_row,
    transaction_encoder,
)
from simulator.generator import (
    AccountEvent,
    BadEvent,
    BankSimulator,
    Event,
    TransactionEvent,
)
from simulator.publish import AccountWriter, GroundTruthFile, KafkaPublisher
from simulator.serialize import dumps, transaction_dict

__all__ = ["Sinks", "Topics", "run"]

PROGRESS_INTERVAL_S = 1.0
PG_FLUSH_INTERVAL_S = 0.5
CHECK_EVERY_UNLIMITED = 2000  # messages between clock checks when --tps 0
FINAL_FLUSH_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Topics:
    """Kafka topic names; an empty name disables that topic (accounts: not published)."""

    accounts: str = "accounts"
    transactions: str = "transactions"
    ground_truth: str = "ground-truth"


@dataclass
class Sinks:
    """Where events go; any of them may be absent (a dry run has none)."""

    kafka: KafkaPublisher | None = None
    postgres: AccountWriter | None = None
    ground_truth_file: GroundTruthFile | None = None
    topics: Topics = field(default_factory=Topics)
    format: str = "riskpipe"  # record shape of the messages (simulator.formats)


class _Dispatcher:
    """Sends each event to its sinks in the sinks' record shape; counts transactions-topic
    messages."""

    def __init__(self, sinks: Sinks, sim: BankSimulator):
        self.sinks = sinks
        self.sent = 0
        shape = SHAPES[sinks.format]
        kafka = sinks.kafka
        self._produce = kafka.produce if kafka else (lambda topic, key, value: None)
        self._keyed = shape.keyed
        self._tx_topic = sinks.topics.transactions
        self._gt_topic = sinks.topics.ground_truth if kafka else ""
        self._accounts_topic = sinks.topics.accounts if shape.accounts_topic else ""
        self._fast = shape.name == "riskpipe"
        self._encode = transaction_encoder(shape.name, sim.bank.parties)
        self._encode_account = account_encoder(shape.name)
        self._pg_row = flinksql_pg_row if shape.name == "flinksql" else None
        self._initial_flushed = False

    def send(self, ev: Event) -> bool:
        """Publishes one event; True if it was a transactions-topic message."""
        cls = type(ev)
        if cls is TransactionEvent:
            txn = ev.transaction
            if self._fast:  # riskpipe's shape: the hot path, inlined
                self._produce(
                    self._tx_topic,
                    txn.account_id.encode(),
                    dumps(transaction_dict(txn)),
                )
            else:
                key = txn.account_id.encode() if self._keyed else None
                self._produce(self._tx_topic, key, self._encode(txn))
            if ev.truth:
                self.truth(ev.truth, txn.account_id)
        elif cls is BadEvent:
            key = ev.key.encode() if ev.key and self._keyed else None
            self._produce(self._tx_topic, key, ev.payload)
            self.truth(ev.truth, ev.key)
        else:
            self.account(ev)
            return False
        self.sent += 1
        if not self._initial_flushed:
            self._flush_initial_accounts()
        return True

    def _flush_initial_accounts(self) -> None:
        """The initial accounts are in Postgres and Kafka before the first transaction."""
        self._initial_flushed = True
        if self.sinks.postgres:
            self.sinks.postgres.flush()
        if self.sinks.kafka:
            self.sinks.kafka.flush(timeout=30.0)

    def account(self, ev: AccountEvent) -> None:
        a = ev.account
        pg = self.sinks.postgres
        if pg:
            if self._pg_row:
                pg.add_row(a.account_id, self._pg_row(a, ev.currency))
            else:
                pg.add(a)
        if self._accounts_topic:
            key = a.account_id.encode() if self._keyed else None
            self._produce(
                self._accounts_topic, key, self._encode_account(a, ev.currency)
            )
        if ev.truth:
            self.truth(ev.truth, a.account_id)

    def truth(self, row: dict, key: str | None) -> None:
        if self.sinks.ground_truth_file:
            self.sinks.ground_truth_file.write(row)
        if self._gt_topic:
            self._produce(self._gt_topic, key.encode() if key else None, dumps(row))


def run(
    sim: BankSimulator,
    sinks: Sinks,
    *,
    count: int | None = None,
    duration: float | None = None,
    tps: float = 0.0,
    progress: IO[str] | None = None,
) -> dict:
    """Publishes until ``count`` transactions-topic messages, ``duration`` seconds or Ctrl-C.

    Returns:
        The run's summary (see ``simulator/__init__.py``); ``delivery_failures`` > 0 means
        some message never reached Kafka.
    """
    if count is None and duration is None:
        raise ValueError("run: give a count or a duration")
    out = _Dispatcher(sinks, sim)
    kafka, pg = sinks.kafka, sinks.postgres
    check_every = max(1, min(1000, int(tps / 50))) if tps > 0 else CHECK_EVERY_UNLIMITED
    started = time.monotonic()
    next_check, next_progress, next_pg = check_every, started + PROGRESS_INTERVAL_S, 0.0
    interrupted = False
    try:
        for ev in sim.events(count):
            if not out.send(ev) or out.sent < next_check:
                continue
            next_check = out.sent + check_every
            now = time.monotonic()
            if kafka:
                kafka.poll()
            if pg and now >= next_pg:
                pg.flush()
                next_pg = now + PG_FLUSH_INTERVAL_S
            if progress and now >= next_progress:
                _progress(progress, out.sent, now - started, kafka)
                next_progress = now + PROGRESS_INTERVAL_S
            if duration is not None and now - started >= duration:
                break
            if tps > 0 and started + out.sent / tps > now:
                time.sleep(started + out.sent / tps - now)
    except KeyboardInterrupt:
        interrupted = True  # a live demo stopped by hand still flushes and summarises
    for ev in sim.drain():
        out.account(ev)
    generated = time.monotonic() - started
    if pg:
        pg.close()
    failures = kafka.flush(timeout=FINAL_FLUSH_TIMEOUT_S) if kafka else 0
    elapsed = time.monotonic() - started
    summary = {
        "seed": sim.config.seed,
        "format": sinks.format,
        "start_time": sim.config.start_time.isoformat(),
        "event_rate": round(sim.mean_rate, 6),
        **sim.stats.as_dict(),
        "messages": {
            "transactions": out.sent,
            "produced": kafka.produced if kafka else 0,
        },
        "postgres_rows": pg.written if pg else 0,
        "ground_truth_rows": sinks.ground_truth_file.rows
        if sinks.ground_truth_file
        else None,
        "delivery_failures": failures,
        "delivery_errors": kafka.errors if kafka else [],
        "interrupted": interrupted,
        "elapsed_s": round(elapsed, 3),
        "rate_tps": round(out.sent / generated, 1) if generated > 0 else None,
    }
    if sinks.ground_truth_file:
        sinks.ground_truth_file.write({"kind": "summary", **summary})
        sinks.ground_truth_file.close()
    if progress:
        _progress(progress, out.sent, elapsed, kafka)
    return summary


def _progress(
    out: IO[str], sent: int, elapsed: float, kafka: KafkaPublisher | None
) -> None:
    rate = sent / elapsed if elapsed > 0 else 0.0
    line = f"simulator: sent={sent} rate={rate:,.0f}/s elapsed={elapsed:.1f}s"
    if kafka:
        line += f" produced={kafka.produced} in_flight={kafka.in_flight} failures={kafka.failed}"
    print(line, file=out, flush=True)
