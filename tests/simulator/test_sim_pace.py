"""Event time at bank pace: a normal account rarely bursts, the day has a rhythm, seeded
runs stay in the past, live runs follow the wall clock."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from simulator.__main__ import build_parser, config_from_args, main, warn_if_future
from simulator.generator import (
    LATE_MAX_DELAY_S,
    AccountEvent,
    BankSimulator,
    SimConfig,
    TransactionEvent,
)
from simulator.pace import burst_share


def cli_config(*argv: str) -> SimConfig:
    parser = build_parser()
    return config_from_args(parser.parse_args(list(argv)))


@pytest.fixture(scope="module")
def default_run():
    """``python -m simulator --seed 21 --count 20000``: the CLI's defaults, generated."""
    sim = BankSimulator(cli_config("--seed", "21", "--count", "20000"))
    return sim, list(sim.events(20_000))


def normal_transactions(events):
    return [
        e.transaction
        for e in events
        if type(e) is TransactionEvent and not (e.truth and e.truth["is_fraud"])
    ]


def test_a_normal_account_rarely_has_5_transactions_in_10_minutes(default_run):
    _, events = default_run
    stats = burst_share(
        (t.account_id, t.datetime_occurred.timestamp())
        for t in normal_transactions(events)
    )
    assert stats["accounts"] > 900 and stats["transactions"] > 19_000
    assert stats["bursty_account_share"] < 0.01
    assert stats["bursty_transaction_share"] < 0.001


def test_the_same_run_at_the_old_compressed_pace_bursts_everywhere():
    """What the check above guards against: 100 transactions/s of event time."""
    sim = BankSimulator(cli_config("--seed", "21", "--event-rate", "100"))
    stats = burst_share(
        (t.account_id, t.datetime_occurred.timestamp())
        for t in normal_transactions(list(sim.events(20_000)))
    )
    assert stats["bursty_account_share"] > 0.3


def test_a_seeded_run_spans_days_and_ends_in_the_past(default_run):
    sim, events = default_run
    times = [t.datetime_occurred for t in normal_transactions(events)]
    days = (times[-1] - times[0]).total_seconds() / 86_400
    assert 5 < days < 9  # 20,000 / (1,000 accounts x 3 a day) = 6.7
    assert times[0] >= datetime(2025, 1, 6, 12, tzinfo=UTC)
    assert sim.stats.event_time()["days"] == pytest.approx(days, abs=0.01)
    # a million transactions (about a year) still end before the day this was written
    assert sim.config.start_time + timedelta(days=1_000_000 / 3_000) < datetime(
        2026, 12, 1, tzinfo=UTC
    )


def test_accounts_transact_a_few_times_a_day_in_their_waking_hours(default_run):
    sim, events = default_run
    txns = normal_transactions(events)
    days = sim.stats.event_time()["days"]
    per_day = Counter(t.account_id for t in txns)
    assert 2.5 < len(txns) / len(per_day) / days < 3.5
    assert (
        max(per_day.values()) / days < 60
    )  # the busiest customer: a shop, not a machine
    profiles = {p.account_id: p for p in sim.bank.profiles}
    awake = sum(
        profiles[t.account_id].active_hours[t.datetime_occurred.hour] for t in txns
    )
    assert awake / len(txns) > 0.99


def test_the_banks_day_has_a_rhythm(default_run):
    _, events = default_run
    by_hour = Counter(t.datetime_occurred.hour for t in normal_transactions(events))
    assert max(by_hour.values()) > 3 * min(by_hour.values())
    assert by_hour[14] > by_hour[3]  # afternoon in Europe, night in the Americas


def test_late_accounts_come_within_a_minute_of_their_first_transaction():
    sim = BankSimulator(SimConfig(seed=8, accounts=500, late_account_rate=0.1))
    first, published_at = {}, {}
    clock = None
    for e in sim.events(20_000):
        if type(e) is TransactionEvent:
            clock = e.transaction.datetime_occurred
            first.setdefault(e.transaction.account_id, clock)
        elif type(e) is AccountEvent and e.reason == "late":
            published_at[e.account.account_id] = clock
    late = {p.account_id for p in sim.bank.profiles if p.late_after}
    assert set(published_at) == late
    transacted = [a for a in late if a in first]
    assert len(transacted) > len(late) // 2
    for account_id in transacted:
        # no transaction later than a minute after its first was yielded before it
        assert published_at[account_id] - first[account_id] <= timedelta(
            seconds=LATE_MAX_DELAY_S
        )


def test_which_clock_each_kind_of_run_gets():
    assert cli_config("--seed", "1").event_rate is None  # bank pace
    assert cli_config("--seed", "1", "--tps", "50").event_rate is None
    assert cli_config("--seed", "1", "--event-rate", "5").event_rate == 5.0
    assert cli_config("--tps", "200").event_rate == 200.0  # live: the wall clock
    assert cli_config().event_rate == 100.0
    assert (
        cli_config(
            "--seed", "1", "--tx-per-account-per-day", "8"
        ).tx_per_account_per_day
        == 8
    )


def test_more_transactions_per_day_compress_event_time():
    def days(per_day):
        sim = BankSimulator(
            SimConfig(seed=2, accounts=200, tx_per_account_per_day=per_day)
        )
        list(sim.events(3_000))
        return sim.stats.event_time()["days"]

    assert days(12.0) < days(3.0) / 3


def test_a_run_that_would_reach_the_future_is_warned_about():
    now = datetime(2026, 12, 1, tzinfo=UTC)
    sim = BankSimulator(
        SimConfig(seed=1, accounts=10, start_time=now - timedelta(days=2))
    )
    warning = warn_if_future(sim, 20_000, None, 0.0, now=now)
    assert warning and "more than a day from now" in warning
    assert warn_if_future(sim, 10, None, 0.0, now=now) is None
    assert (
        warn_if_future(
            BankSimulator(SimConfig(seed=1, accounts=1000)), 100_000, None, 0.0, now=now
        )
        is None
    )


def test_the_cli_warns_before_running_into_the_future(capsys):
    start = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert (
        main(
            [
                "--seed",
                "1",
                "--count",
                "50",
                "--accounts",
                "2",
                "--dry-run",
                "--quiet",
                "--start-time",
                start,
            ]
        )
        == 0
    )
    assert "simulator: warning: event time will reach" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["--tx-per-account-per-day", "0"],
        ["--tx-per-account-per-day", "-2"],
        ["--event-rate", "0"],
        ["--event-rate", "fast"],
        ["--event-rate", "inf"],
        ["--start-time", "1999-12-31T23:00:00Z"],
        ["--start-time", "yesterday"],
        ["--format", "xml"],
        ["--scenarios", ","],
        ["--scenarios", "mule_inflow,bogus"],
    ],
)
def test_bad_pace_and_format_flags_exit_2_with_a_message(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error: argument" in err and argv[0] in err
