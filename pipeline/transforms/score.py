"""Scoring joined transactions with per-account rolling features kept in state.

Usage::

    scored = joined | "ScoreRisk" >> ScoreRisk()   # PCollection[AttributedTransaction]

The formula lives in :mod:`pipeline.domain.scoring`; this module only keeps each
account's :class:`~pipeline.domain.scoring.AccountFeatures` in Beam state. Scored
transactions leave with ``is_fraudulent=False`` and ``validated_by="none"``: routing and
validation decide those later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import apache_beam as beam
from apache_beam.coders import FastPrimitivesCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.typehints import KV
from apache_beam.utils.timestamp import Duration

from pipeline.domain.scoring import (
    AccountFeatures,
    is_suspicious,
    score_transaction,
    update,
)
from pipeline.records import AttributedTransaction
from pipeline.transforms.join import JoinedTransaction

__all__ = ["ScoreRisk", "ScoreTransactionsFn"]

logger = logging.getLogger(__name__)

METRICS_NAMESPACE = "riskpipe"
DEFAULT_FEATURES_IDLE = timedelta(days=7)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _key_by_account(joined: JoinedTransaction) -> tuple[str, JoinedTransaction]:
    return joined.transaction.account_id, joined


class ScoreTransactionsFn(beam.DoFn):
    """Scores each ``(account_id, JoinedTransaction)`` against the account's history.

    The score uses the features of the account's earlier transactions; the transaction
    is folded into them afterwards.

    State and timers (per account_id):
      FEATURES: ReadModifyWriteStateSpec holding the account's AccountFeatures.
      GC: event-time timer at the last element time + features_idle; it drops FEATURES,
        so an account idle that long starts a fresh history.
    """

    FEATURES = ReadModifyWriteStateSpec("features", FastPrimitivesCoder())
    GC = TimerSpec("gc", TimeDomain.WATERMARK)

    def __init__(
        self,
        features_idle: timedelta | float = DEFAULT_FEATURES_IDLE,
        clock: Callable[[], datetime] | None = None,
    ):
        seconds = (
            features_idle.total_seconds()
            if isinstance(features_idle, timedelta)
            else float(features_idle)
        )
        if not seconds > 0:
            raise ValueError(f"features_idle must be positive, got {features_idle!r}")
        self._features_idle = Duration.of(seconds)
        self._clock = clock or _utcnow
        self._scored = Metrics.counter(METRICS_NAMESPACE, "scored")
        self._high_risk = Metrics.counter(METRICS_NAMESPACE, "high_risk")

    def start_bundle(self):
        # Report every counter from the first bundle on (at 0), so dashboards and
        # alerts see a zero instead of no series before the first event.
        self._scored.inc(0)
        self._high_risk.inc(0)

    def process(
        self,
        element: tuple[str, JoinedTransaction],
        timestamp=beam.DoFn.TimestampParam,
        features_state=beam.DoFn.StateParam(FEATURES),
        gc=beam.DoFn.TimerParam(GC),
    ):
        _, joined = element
        txn, account = joined.transaction, joined.account
        features = features_state.read() or AccountFeatures()
        score, reasons = score_transaction(txn, account, features)
        features_state.write(update(features, txn))
        gc.set(timestamp + self._features_idle)
        self._scored.inc()
        if is_suspicious(score):
            self._high_risk.inc()
        yield AttributedTransaction(
            transaction=txn,
            account_name=account.account_name if account is not None else None,
            risk_score=score,
            risk_reasons=reasons,
            is_fraudulent=False,
            validated_by="none",
            processed_at=self._clock(),
        )

    @on_timer(GC)
    def _on_gc(self, features_state=beam.DoFn.StateParam(FEATURES)):
        features_state.clear()


class ScoreRisk(beam.PTransform):
    """JoinedTransaction → AttributedTransaction with a risk score and reasons.

    Args:
      features_idle: how long (event time) an account may be idle before its rolling
        features are dropped.
      clock: returns ``processed_at``; defaults to the UTC clock.
    """

    def __init__(
        self,
        features_idle: timedelta | float = DEFAULT_FEATURES_IDLE,
        clock: Callable[[], datetime] | None = None,
    ):
        super().__init__()
        if clock is not None and not callable(clock):
            raise ValueError(f"clock must be callable, got {clock!r}")
        self._fn = ScoreTransactionsFn(features_idle, clock)

    def expand(self, joined):
        return (
            joined
            | "KeyByAccount"
            >> beam.Map(_key_by_account).with_output_types(KV[str, JoinedTransaction])
            | "Score" >> beam.ParDo(self._fn).with_output_types(AttributedTransaction)
        )
