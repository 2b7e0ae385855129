"""The job with the fraud model, on the standalone Flink cluster, writes what the replay decides.

A seeded bank (4,000 transactions, 4 % fraud, no account updates) is in its topics before
the job starts, so the job reads a backlog: its two readers run apart and a counterparty's
inflows reach the counterparty step far out of event-time order, which it corrects from its
SETTLE timer once the watermark has passed them. Every transaction's final row must carry
the ``risk_score`` and model reason of the pure replay in event-time order
(:mod:`tests.detection_replay`), the same comparison the FnApiRunner's test makes
(``tests/integration/test_detection_direct.py``). Without the corrections the SETTLE timer
emits, about a quarter of the rows differ (977 of 4,000 when it was written).
"""

from __future__ import annotations

import time

import psycopg2

from pipeline.domain.model import COMMITTED_MODEL_PATH
from stack import flink_rest
from tests.detection_replay import expected
from tests.e2e.conftest import Scenario

COUNT = 4_000
TIMEOUT_S = 180.0  # passes in under a minute on two cores


def test_the_model_on_flink_writes_the_replays_scores(services, tmp_path):
    scenario = Scenario(services, tmp_path, seed=8080, count=COUNT, accounts=150,
                        bad_rate=0, fraud_rate=0.04, extra_sim_args=("--update-rate", "0"))
    scenario.prepare()
    scenario.simulate()
    want = expected(scenario.simulator_arguments(), count=COUNT)
    assert sorted(want.data.ids.tolist()) == sorted(scenario.ids)

    def rows() -> dict:
        with psycopg2.connect(scenario.dsn) as conn, conn.cursor() as cur:
            cur.execute("SELECT transaction_id, risk_score, risk_reasons"
                        " FROM banking.attributed_transactions WHERE transaction_id = ANY(%s)",
                        (scenario.ids,))
            found = {row[0]: row[1:] for row in cur.fetchall()}
        conn.close()
        return found

    job_id = scenario.submit(extra=(f"--model_path={COMMITTED_MODEL_PATH}",))
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            state = flink_rest.job_state(job_id)
            assert state == "RUNNING", (state, flink_rest.exceptions(job_id)[:4000])
            found = rows()
            differ = want.differences(found) if len(found) == COUNT else None
            if differ == []:
                break
            assert time.monotonic() < deadline, (
                f"after {TIMEOUT_S:.0f} s: {len(found)} of {COUNT} rows"
                + (f", {len(differ)} unlike the replay's, e.g. {differ[:3]}" if differ else ""))
            time.sleep(3)
        assert all(reasons[0].startswith("model fraud-lgbm@") for _, reasons in found.values())
    finally:
        scenario.cancel_all()
