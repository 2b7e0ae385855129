"""The pure generator: determinism, record validity, ordering, fraud and bad-message mix."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factories import examples
from pipeline.records import (
    ACCOUNT_TYPES,
    EVALUATIONS,
    TRANSACTION_STATUSES,
    TRANSACTION_TYPES,
    Account,
    Transaction,
)
from simulator import fraud
from simulator.bad import BAD_KINDS, OVERSIZED_BYTES
from simulator.generator import (
    DEFAULT_START,
    AccountEvent,
    BadEvent,
    BankSimulator,
    SimConfig,
    TransactionEvent,
)
from simulator.profiles import CURRENCIES, EUR_RATES
from simulator.serialize import transaction_dict, transaction_json

ACCOUNT_DETAIL_FIELDS = (
    "account_name",
    "email",
    "account_type",
    "created_at",
    "address",
    "birthdate",
    "phone_number",
    "job",
    "company",
    "bank",
    "bank_account",
)
MAX_VALID_PAYLOAD = 64 * 1024


def generate(count=20_000, **overrides):
    config = SimConfig(**{"seed": 11, "accounts": 300, **overrides})
    sim = BankSimulator(config)
    return sim, list(sim.events(count))


@pytest.fixture(scope="module")
def stream():
    """A mid-sized run with every kind of event."""
    return generate(60_000, fraud_rate=0.01, bad_rate=0.01, update_rate=0.005)


def transactions(events):
    return [e.transaction for e in events if type(e) is TransactionEvent]


def fingerprint(events) -> list:
    out = []
    for e in events:
        if type(e) is AccountEvent:
            out.append(("account", e.reason, e.account.to_dict(), e.truth))
        elif type(e) is TransactionEvent:
            out.append(("transaction", e.transaction.to_dict(), e.truth))
        else:
            out.append(("bad", e.key, e.payload, e.truth))
    return out


# Determinism


def test_same_seed_gives_identical_records_ids_and_timestamps():
    _, first = generate(5_000, bad_rate=0.02, fraud_rate=0.02)
    _, second = generate(5_000, bad_rate=0.02, fraud_rate=0.02)
    assert fingerprint(first) == fingerprint(second)


def test_another_seed_gives_other_ids():
    _, first = generate(1_000)
    _, other = generate(1_000, seed=12)
    ids = {t.transaction_id for t in transactions(first)}
    assert ids.isdisjoint(t.transaction_id for t in transactions(other))


def test_event_time_starts_at_the_configured_start_and_never_decreases(stream):
    sim, events = stream
    times = [t.datetime_occurred for t in transactions(events)]
    assert DEFAULT_START <= times[0] < DEFAULT_START + timedelta(hours=1)
    assert all(a <= b for a, b in itertools.pairwise(times))
    # Bank pace by default: 3 transactions per account per day (the run's very end may
    # jump ahead: it finishes fraud episodes scheduled later).
    n = len(times) * 9 // 10
    days = (times[n] - times[0]).total_seconds() / 86_400
    expected = n / (sim.config.accounts * sim.config.tx_per_account_per_day)
    assert 0.85 * expected < days < 1.15 * expected


def test_an_explicit_event_rate_is_constant():
    _, events = generate(20_000, event_rate=100.0)
    times = [t.datetime_occurred for t in transactions(events)]
    n = len(times) * 9 // 10
    span = (times[n] - times[0]).total_seconds()
    assert 0.9 * n / 100 < span < 1.1 * n / 100
    # no daily rhythm: the first and second halves of the span have as many
    half = times[0] + (times[n] - times[0]) / 2
    first = sum(t < half for t in times[:n])
    assert 0.45 < first / n < 0.55


def test_start_time_is_honoured():
    start = datetime(2030, 6, 1, 12, tzinfo=UTC)
    _, events = generate(100, start_time=start)
    assert transactions(events)[0].datetime_occurred - start < timedelta(seconds=5)


# Record validity


def test_every_transaction_is_valid(stream):
    _sim, events = stream
    known = {e.account.account_id for e in events if type(e) is AccountEvent}
    for t in transactions(events):
        assert type(t) is Transaction
        assert t.transaction_type in TRANSACTION_TYPES
        assert t.transaction_status in TRANSACTION_STATUSES
        assert t.evaluation in EVALUATIONS
        assert t.currency in CURRENCIES
        assert isinstance(t.amount, float) and math.isfinite(t.amount) and t.amount > 0
        assert t.amount == round(t.amount, 2)
        assert t.datetime_occurred.tzinfo is not None
        assert t.account_id in known and t.sender_bank
        if t.transaction_type == "transfer":
            assert t.counterparty_account_id in known
            assert t.counterparty_account_id != t.account_id
        if t.transaction_type in ("withdrawal", "deposit"):
            assert t.counterparty_account_id is None


def test_transactions_equal_ones_built_by_the_record_class(stream):
    _, events = stream
    for t in transactions(events)[:2_000]:
        rebuilt = Transaction(**{f: getattr(t, f) for f in t.__dataclass_fields__})
        assert t == rebuilt and hash(t) == hash(rebuilt)
        assert Transaction.from_dict(t.to_dict()) == t


def test_fast_serialisation_matches_to_dict(stream):
    _, events = stream
    for t in transactions(events)[:5_000]:
        assert transaction_dict(t) == t.to_dict()
        assert list(transaction_dict(t)) == list(t.to_dict())
        assert json.loads(transaction_json(t)) == t.to_dict()


def test_accounts_have_every_user_detail(stream):
    sim, events = stream
    accounts = [e.account for e in events if type(e) is AccountEvent]
    for a in accounts:
        assert type(a) is Account
        for name in ACCOUNT_DETAIL_FIELDS:
            assert getattr(a, name) not in (None, ""), name
        assert a.account_type in ACCOUNT_TYPES
        assert Account.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    first_versions = [
        e for e in events if type(e) is AccountEvent and e.reason in ("initial", "late")
    ]
    assert len(first_versions) == sim.config.accounts
    assert len({e.account.account_id for e in first_versions}) == sim.config.accounts


def test_realistic_mix(stream):
    _sim, events = stream
    txns = transactions(events)
    n = len(txns)
    evaluations = Counter(t.evaluation for t in txns)
    assert evaluations["cleared"] / n > 0.9
    assert 0.02 < evaluations["unidentified"] / n < 0.06
    assert 0 < evaluations["fraudulent"] / n < 0.01
    types = Counter(t.transaction_type for t in txns)
    assert set(types) == set(TRANSACTION_TYPES)
    assert types["payment"] > types["withdrawal"]
    statuses = Counter(t.transaction_status for t in txns)
    assert (
        0.9 < statuses["completed"] / n < 0.99
        and statuses["pending"]
        and statuses["failed"]
    )
    currencies = Counter(t.currency for t in txns)
    assert set(currencies) == set(CURRENCIES)


def test_accounts_keep_their_habits(stream):
    """Each account's ordinary amounts cluster around its own typical amount."""
    _sim, events = stream
    by_account = defaultdict(list)
    for e in events:
        if type(e) is TransactionEvent and e.truth is None:
            t = e.transaction
            if t.transaction_type == "payment" and t.currency != "JPY":
                by_account[t.account_id].append(t.amount / EUR_RATES[t.currency])
    medians = sorted(
        sorted(v)[len(v) // 2] for v in by_account.values() if len(v) >= 20
    )
    assert medians[-1] / medians[0] > 10  # habits differ a lot between accounts


# Ordering: late accounts, updates


def test_accounts_precede_their_transactions_except_late_ones(stream):
    sim, events = stream
    published, late_seen = set(), {}
    early = Counter()
    last_transaction = max(
        i for i, e in enumerate(events) if type(e) is not AccountEvent
    )
    for i, e in enumerate(events):
        if type(e) is AccountEvent:
            if e.reason == "late":
                # right after its 1-3 first transactions, or drained at the end
                assert early[e.account.account_id] >= 1 or i > last_transaction
                assert e.truth == {
                    "kind": "late_account",
                    "account_id": e.account.account_id,
                    "transactions_before": early[e.account.account_id],
                }
                late_seen[e.account.account_id] = early[e.account.account_id]
            published.add(e.account.account_id)
        elif type(e) is TransactionEvent and e.transaction.account_id not in published:
            early[e.transaction.account_id] += 1
    assert set(early) <= set(late_seen)
    assert len(late_seen) == round(sim.config.accounts * sim.config.late_account_rate)
    assert all(0 <= n <= 3 for n in late_seen.values())
    assert sum(n > 0 for n in late_seen.values()) >= len(late_seen) // 2


def test_late_accounts_unpublished_at_stop_are_drained():
    sim = BankSimulator(SimConfig(seed=3, accounts=200, late_account_rate=0.5))
    events = []
    for e in sim.events(None):
        events.append(e)
        if sum(type(x) is TransactionEvent for x in events) >= 30:
            break
    drained = list(sim.drain())
    assert drained and all(e.reason == "late" for e in drained)
    published = {
        e.account.account_id for e in events + drained if type(e) is AccountEvent
    }
    assert len(published) == 200
    assert list(sim.drain()) == []


def test_account_updates_change_one_thing(stream):
    _sim, events = stream
    latest = {}
    changes = Counter()
    for e in events:
        if type(e) is not AccountEvent:
            continue
        a = e.account
        if e.reason == "update":
            before = latest[a.account_id]
            diff = {k for k, v in a.to_dict().items() if v != before.to_dict()[k]}
            assert len(diff) <= 1
            changes.update(diff)
        latest[a.account_id] = a
    assert {"balance", "email"} <= set(changes)


# Fraud


def fraud_rows(events):
    return [
        (e.transaction, e.truth)
        for e in events
        if type(e) is TransactionEvent and e.truth and e.truth["is_fraud"]
    ]


def test_fraud_rate_and_labels():
    sim, events = generate(100_000, fraud_rate=0.01)
    rows = fraud_rows(events)
    n = len(transactions(events))
    assert 0.007 < len(rows) / n < 0.013
    assert {truth["scenario"] for _, truth in rows} == set(fraud.SCENARIOS)
    labels = Counter(t.evaluation for t, _ in rows)
    assert set(labels) == {"fraudulent", "unidentified"}
    assert 0.3 < labels["fraudulent"] / len(rows) < 0.5
    # Only fraud is labelled `fraudulent`; some ordinary transactions are `unidentified`.
    fraud_ids = {t.transaction_id for t, _ in rows}
    ordinary = [t for t in transactions(events) if t.transaction_id not in fraud_ids]
    assert not [t for t in ordinary if t.evaluation == "fraudulent"]
    assert (
        0.02
        < sum(t.evaluation == "unidentified" for t in ordinary) / len(ordinary)
        < 0.04
    )
    for t, truth in rows:
        assert truth == {
            "kind": "transaction",
            "transaction_id": t.transaction_id,
            "account_id": t.account_id,
            "is_fraud": True,
            "scenario": truth["scenario"],
            "episode": truth["episode"],
            "evaluation": t.evaluation,
            "bank_labelled": t.evaluation == "fraudulent",
        }
    assert sim.stats.as_dict()["fraud"]["transactions"] == len(rows)
    assert not sim._heap  # a counted run finishes every episode it started


def test_no_fraud_when_rate_is_zero():
    _, events = generate(20_000, fraud_rate=0.0)
    assert not fraud_rows(events)
    assert not any(t.evaluation == "fraudulent" for t in transactions(events))


def episodes_of(scenario, **overrides):
    sim, events = generate(40_000, fraud_rate=0.02, scenarios=(scenario,), **overrides)
    episodes = defaultdict(list)
    for t, truth in fraud_rows(events):
        assert truth["scenario"] == scenario
        episodes[truth["episode"]].append(t)
    assert len(episodes) >= 5
    return sim, events, list(episodes.values())


def habit_median(events, account_id):
    amounts = sorted(
        e.transaction.amount
        for e in events
        if type(e) is TransactionEvent
        and e.truth is None
        and e.transaction.account_id == account_id
        and e.transaction.transaction_type == "payment"
    )
    return amounts[len(amounts) // 2] if len(amounts) >= 5 else None


def test_compromised_account_amounts_jump_over_the_habit():
    _, events, episodes = episodes_of("compromised_account")
    ratios = []
    for txns in episodes:
        assert 3 <= len(txns) <= 8 and len({t.account_id for t in txns}) == 1
        median = habit_median(events, txns[0].account_id)
        if median:
            ratios.append(sorted(t.amount for t in txns)[len(txns) // 2] / median)
    assert sorted(ratios)[len(ratios) // 2] > 4


def test_transfer_burst_is_many_transfers_in_minutes():
    _, _, episodes = episodes_of("transfer_burst")
    for txns in episodes:
        assert 8 <= len(txns) <= 20
        assert {t.transaction_type for t in txns} == {"transfer"}
        span = txns[-1].datetime_occurred - txns[0].datetime_occurred
        assert span <= timedelta(minutes=5)


def test_new_account_opens_then_moves_a_large_sum():
    _, events, episodes = episodes_of("new_account_large_transfer")
    opened = {
        e.account.account_id: (i, e.account)
        for i, e in enumerate(events)
        if type(e) is AccountEvent and e.reason == "new"
    }
    index = {
        id(e.transaction): i
        for i, e in enumerate(events)
        if type(e) is TransactionEvent
    }
    for txns in episodes:
        i, account = opened[txns[0].account_id]
        for t in txns:
            assert index[id(t)] > i and t.transaction_type == "transfer"
            assert t.amount / EUR_RATES[t.currency] >= 5_000
            assert t.datetime_occurred - account.created_at <= timedelta(minutes=30)


def test_night_activity_happens_outside_the_accounts_active_hours():
    sim, _, episodes = episodes_of("night_activity")
    profiles = {p.account_id: p for p in sim._profiles}
    outside = [
        not profiles[t.account_id].active_hours[t.datetime_occurred.hour]
        for txns in episodes
        for t in txns
    ]
    assert sum(outside) / len(outside) > 0.9
    # ordinary traffic stays within active hours
    assert all(p.active_hours.count(True) >= 8 for p in sim._profiles)


def test_card_testing_is_many_tiny_payments_then_a_large_one():
    _, _, episodes = episodes_of("card_testing")
    for txns in episodes:
        tiny = [t for t in txns if t.amount / EUR_RATES[t.currency] <= 2.0 + 1e-6]
        assert len(tiny) >= 10 and {t.transaction_type for t in txns} == {"payment"}
        assert any(t.transaction_status == "failed" for t in tiny) or len(tiny) < 15
        assert txns[-1].amount > 5 * max(t.amount for t in tiny)


# Bad messages


def strictly_valid(payload: bytes) -> bool:
    """What any reasonable parser accepts; every bad message must fail it."""
    if len(payload) > MAX_VALID_PAYLOAD:
        return False
    try:
        data = json.loads(
            payload, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c))
        )
    except (ValueError, UnicodeDecodeError):
        return False
    if not isinstance(data, dict):
        return False
    required = (
        "transaction_id",
        "account_id",
        "transaction_type",
        "amount",
        "currency",
        "transaction_status",
        "datetime_occurred",
        "evaluation",
    )
    if any(k not in data for k in required):
        return False
    if not isinstance(data["amount"], (int, float)) or not data["amount"] > 0:
        return False
    if (
        data["currency"] not in CURRENCIES
        or data["transaction_type"] not in TRANSACTION_TYPES
    ):
        return False
    try:
        datetime.fromisoformat(data["datetime_occurred"])
    except (TypeError, ValueError):
        return False
    return True


def test_bad_messages_cover_every_kind_and_are_all_invalid():
    sim, events = generate(20_000, bad_rate=0.05)
    bad = [e for e in events if type(e) is BadEvent]
    assert 0.04 < len(bad) / 20_000 < 0.06
    assert {e.truth["bad"] for e in bad} == set(BAD_KINDS)
    for e in bad:
        assert not strictly_valid(e.payload), e.truth["bad"]
        truth = e.truth
        assert truth["kind"] == "bad" and truth["is_fraud"] is False
        assert truth["payload_sha256"] == hashlib.sha256(e.payload).hexdigest()
        assert truth["payload_bytes"] == len(e.payload)
        assert truth["account_id"] == e.key
        assert truth["id_in_payload"] == (truth["transaction_id"].encode() in e.payload)
        if truth["bad"] not in ("binary", "missing_field"):
            assert truth["id_in_payload"], truth["bad"]
        if truth["bad"] == "oversized":
            assert len(e.payload) > OVERSIZED_BYTES
    valid = [e for e in events if type(e) is TransactionEvent][:2_000]
    assert all(strictly_valid(transaction_json(e.transaction)) for e in valid)
    assert sum(sim.stats.bad.values()) == len(bad)


def test_count_is_messages_on_the_transactions_topic():
    sim, events = generate(7_777, bad_rate=0.1, fraud_rate=0.02)
    kinds = Counter(type(e).__name__ for e in events)
    assert kinds["TransactionEvent"] + kinds["BadEvent"] == 7_777
    assert sim.stats.transactions == kinds["TransactionEvent"]


def test_ground_truth_all_gives_a_row_per_transaction():
    _, events = generate(2_000, ground_truth_all=True)
    rows = [e.truth for e in events if type(e) is TransactionEvent]
    assert all(rows)
    assert {r["is_fraud"] for r in rows} <= {True, False}


@pytest.mark.parametrize(
    "overrides",
    [
        {"accounts": 1},
        {"fraud_rate": 1.5},
        {"bad_rate": -0.1},
        {"event_rate": 0},
        {"scenarios": ("no_such_scenario",)},
        {"start_time": datetime(2026, 1, 1)},
    ],
)
def test_bad_config_is_rejected(overrides):
    with pytest.raises(ValueError, match="SimConfig"):
        SimConfig(**overrides)


@settings(max_examples=examples(25), deadline=None)
@given(
    seed=st.integers(0, 2**63),
    accounts=st.integers(2, 12),
    count=st.integers(0, 300),
    fraud_rate=st.floats(0, 0.5),
    bad_rate=st.floats(0, 0.3),
    late_account_rate=st.floats(0, 1),
    update_rate=st.floats(0, 0.3),
)
def test_any_small_config_gives_a_consistent_stream(
    seed, accounts, count, fraud_rate, bad_rate, late_account_rate, update_rate
):
    config = SimConfig(
        seed=seed,
        accounts=accounts,
        fraud_rate=fraud_rate,
        bad_rate=bad_rate,
        late_account_rate=late_account_rate,
        update_rate=update_rate,
    )
    events = list(BankSimulator(config).events(count))
    kinds = Counter(type(e) for e in events)
    assert kinds[TransactionEvent] + kinds[BadEvent] == count
    published = set()
    for e in events:
        if type(e) is AccountEvent:
            published.add(e.account.account_id)
        elif type(e) is TransactionEvent:
            t = e.transaction
            assert t.amount > 0 and t.currency in CURRENCIES
            if t.counterparty_account_id and t.transaction_type == "transfer":
                assert t.counterparty_account_id != t.account_id
            assert (t.evaluation == "fraudulent") <= bool(
                e.truth and e.truth["is_fraud"]
            )
    assert len(published) >= accounts  # every account published, late ones included
    assert fingerprint(events) == fingerprint(list(BankSimulator(config).events(count)))
