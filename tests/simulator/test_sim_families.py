"""The fraud families: each appears in ground truth, by name, exactly when selected, and
each looks the way its row in ``simulator/fraud/__init__.py`` says."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import timedelta

import pytest

from simulator import fraud
from simulator.__main__ import main
from simulator.fraud.many_accounts import REPORTING_THRESHOLD_EUR, STRUCTURING_BAND_EUR
from simulator.generator import AccountEvent, BankSimulator, SimConfig, TransactionEvent
from simulator.profiles import EUR_RATES

NEW_FAMILIES = (
    "mule_inflow",
    "account_takeover_new_payee",
    "salami_drain",
    "structuring",
    "merchant_burst",
    "fixed_cashout",
    "compromised_counterparty",
    "leaked_account",
)


def simulate(scenarios, count=10_000, **overrides):
    config = SimConfig(
        **{
            "seed": 13,
            "accounts": 400,
            "fraud_rate": 0.06,
            "scenarios": scenarios,
            **overrides,
        }
    )
    sim = BankSimulator(config)
    return sim, list(sim.events(count))


def episodes(events):
    out = defaultdict(list)
    for e in events:
        if type(e) is TransactionEvent and e.truth and e.truth["is_fraud"]:
            out[e.truth["episode"]].append(e.transaction)
    return list(out.values())


def eur(t):
    return t.amount / EUR_RATES[t.currency]


def habit_eur(events, account_id, ttype):
    """Median EUR amount of an account's ordinary transactions of one type."""
    amounts = sorted(
        eur(e.transaction)
        for e in events
        if type(e) is TransactionEvent
        and e.truth is None
        and e.transaction.account_id == account_id
        and e.transaction.transaction_type == ttype
    )
    return amounts[len(amounts) // 2] if len(amounts) >= 3 else None


@pytest.fixture(scope="module")
def by_family():
    """One run per new family, that family alone."""
    return {name: simulate((name,)) for name in NEW_FAMILIES}


def test_every_family_is_documented():
    doc = fraud.__doc__
    for name in fraud.SCENARIOS:
        assert f"| {name} " in doc, name
    assert fraud.MAX_LENGTH == max(f.max_length for f in fraud.FAMILIES.values())


@pytest.mark.parametrize("name", NEW_FAMILIES)
def test_a_selected_family_and_only_it_is_in_ground_truth(by_family, name):
    sim, events = by_family[name]
    rows = [e.truth for e in events if type(e) is TransactionEvent and e.truth]
    assert {r["scenario"] for r in rows} == {name}
    assert len(episodes(events)) >= 5
    assert sim.stats.fraud[name] == len(rows)
    assert all(n == 0 for other, n in sim.stats.fraud.items() if other != name)
    for e in events:
        if type(e) is TransactionEvent and e.truth:
            assert e.truth["transaction_id"] == e.transaction.transaction_id
            assert e.truth["account_id"] == e.transaction.account_id
            assert e.truth["bank_labelled"] == (
                e.transaction.evaluation == "fraudulent"
            )
    for episode in episodes(events):
        assert len(episode) <= fraud.FAMILIES[name].max_length


def test_all_families_appear_by_default():
    _, events = simulate(tuple(fraud.SCENARIOS), count=25_000, accounts=300)
    assert {
        t.truth["scenario"] for t in events if type(t) is TransactionEvent and t.truth
    } == set(fraud.SCENARIOS)


def test_a_subset_from_the_cli_injects_only_those(capsys, tmp_path):
    truth = tmp_path / "truth.jsonl"
    status = main(
        [
            "--seed",
            "3",
            "--count",
            "8000",
            "--accounts",
            "200",
            "--dry-run",
            "--quiet",
            "--fraud-rate",
            "0.03",
            "--scenarios",
            "structuring,fixed_cashout",
            "--ground-truth-file",
            str(truth),
        ]
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert status == 0
    rows = [json.loads(line) for line in truth.read_text().splitlines()]
    scenarios = Counter(r["scenario"] for r in rows if r.get("is_fraud"))
    assert set(scenarios) == {"structuring", "fixed_cashout"}
    assert summary["fraud"]["by_scenario"] == {
        name: scenarios.get(name, 0) for name in fraud.SCENARIOS
    }


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_the_bank_labels_the_configured_share_and_ground_truth_says_which(share):
    _, events = simulate(
        ("mule_inflow", "leaked_account"), count=15_000, fraud_known_share=share
    )
    rows = [
        (e.transaction, e.truth)
        for e in events
        if type(e) is TransactionEvent and e.truth and e.truth["is_fraud"]
    ]
    labelled = [truth["bank_labelled"] for _, truth in rows]
    assert all(
        t.evaluation == ("fraudulent" if truth["bank_labelled"] else "unidentified")
        for t, truth in rows
    )
    assert abs(sum(labelled) / len(labelled) - share) < 0.1


def test_other_seeds_give_other_episodes():
    _, first = simulate(("merchant_burst",), count=5_000)
    _, other = simulate(("merchant_burst",), count=5_000, seed=14)
    ids = {t.transaction_id for ep in episodes(first) for t in ep}
    assert ids and ids.isdisjoint(
        t.transaction_id for ep in episodes(other) for t in ep
    )


def test_mule_inflow_is_many_senders_most_of_them_new_into_one_mule(by_family):
    sim, events = by_family["mule_inflow"]
    mules = {p.account_id for p in sim.bank.mules}
    regular = {
        p.account_id: {sim.bank.profiles[i].account_id for i in p.payees}
        for p in sim.bank.profiles
    }
    paid = defaultdict(set)  # account -> counterparties it paid so far
    first_time = Counter()
    for e in events:
        if type(e) is TransactionEvent:
            t = e.transaction
            if e.truth and e.truth["is_fraud"]:
                new = t.counterparty_account_id not in paid[t.account_id] | regular.get(
                    t.account_id, set()
                )
                first_time[new] += 1
            paid[t.account_id].add(t.counterparty_account_id)
    assert first_time[True] / sum(first_time.values()) > 0.6
    for ep in episodes(events):
        receivers = {t.counterparty_account_id for t in ep}
        assert len(receivers) == 1 and receivers <= mules
        assert len({t.account_id for t in ep}) >= 8
        assert {t.transaction_type for t in ep} == {"transfer"}
        assert ep[-1].datetime_occurred - ep[0].datetime_occurred <= timedelta(hours=4)


def test_account_takeover_pays_a_new_payee_2_to_8_times_habit(by_family):
    sim, events = by_family["account_takeover_new_payee"]
    paid_before = defaultdict(set)  # account -> counterparties it paid so far
    ratios, checked = [], 0
    for e in events:
        if type(e) is not TransactionEvent:
            continue
        t = e.transaction
        if (
            e.truth
            and e.truth["is_fraud"]
            and t.counterparty_account_id not in paid_before[t.account_id]
        ):
            checked += 1  # the first transfer of an episode: to a payee never paid
        paid_before[t.account_id].add(t.counterparty_account_id)
    eps = episodes(events)
    assert checked == len(eps)
    for ep in eps:
        assert len(ep) <= 3 and len({t.account_id for t in ep}) == 1
        assert len({t.counterparty_account_id for t in ep}) == 1
        assert {t.transaction_type for t in ep} == {"transfer"}
        regular = {
            sim.bank.profiles[i].account_id
            for i in sim.bank.profile(ep[0].account_id).payees
        }
        assert ep[0].counterparty_account_id not in regular
        habit = habit_eur(events, ep[0].account_id, "transfer")
        if habit:
            ratios.extend(eur(t) / habit for t in ep)
    ratios.sort()
    assert 1.5 < ratios[len(ratios) // 2] < 10


def test_salami_drain_is_many_habit_sized_transfers_to_one_payee_over_hours(by_family):
    _, events = by_family["salami_drain"]
    ratios = []
    for ep in episodes(events):
        assert len(ep) >= 12 and len({t.account_id for t in ep}) == 1
        payees = {
            t.counterparty_account_id for t in ep if t.transaction_type == "transfer"
        }
        assert len(payees) == 1
        assert {t.transaction_type for t in ep} <= {"transfer", "withdrawal"}
        span = ep[-1].datetime_occurred - ep[0].datetime_occurred
        assert timedelta(hours=1) < span <= timedelta(hours=24)
        habit = habit_eur(events, ep[0].account_id, "transfer")
        if habit:
            ratios.extend(
                eur(t) / habit for t in ep if t.transaction_type == "transfer"
            )
    ratios.sort()
    assert 0.3 < ratios[len(ratios) // 2] < 2.5  # unremarkable: near the habit


def test_structuring_stays_just_under_the_threshold(by_family):
    sim, events = by_family["structuring"]
    low, high = STRUCTURING_BAND_EUR
    mules = {p.account_id for p in sim.bank.mules}
    several = 0
    for ep in episodes(events):
        assert 3 <= len(ep) <= 8 and len({t.counterparty_account_id for t in ep}) == 1
        assert ep[0].counterparty_account_id in mules
        for t in ep:
            assert low - 0.01 <= eur(t) < high + 0.01 < REPORTING_THRESHOLD_EUR
        several += len({t.account_id for t in ep}) > 1
        assert ep[-1].datetime_occurred - ep[0].datetime_occurred <= timedelta(hours=24)
    assert several > 0


def test_merchant_burst_pays_an_id_never_seen_before_within_minutes(by_family):
    _, events = by_family["merchant_burst"]
    seen: set[str] = set()
    bursts = 0
    for e in events:
        if type(e) is AccountEvent:
            seen.add(e.account.account_id)
        elif type(e) is TransactionEvent:
            t = e.transaction
            if e.truth and e.truth["episode"] and t.counterparty_account_id not in seen:
                bursts += 1  # the first payment to a merchant nobody knew
            if t.counterparty_account_id:
                seen.add(t.counterparty_account_id)
            seen.add(t.account_id)
    eps = episodes(events)
    assert bursts == len(eps)
    for ep in eps:
        assert len({t.account_id for t in ep}) == len(ep) >= 10
        assert {t.transaction_type for t in ep} == {"payment"}
        assert ep[-1].datetime_occurred - ep[0].datetime_occurred <= timedelta(
            minutes=15
        )
        prices = sorted(eur(t) for t in ep)
        assert prices[-1] / prices[0] < 1.2


def test_fixed_cashout_repeats_one_round_sum(by_family):
    _, events = by_family["fixed_cashout"]
    for ep in episodes(events):
        assert len(ep) >= 4 and len({t.account_id for t in ep}) == 1
        assert (
            len({t.amount for t in ep}) == 1
            and len({t.transaction_type for t in ep}) == 1
        )
        amount = ep[0].amount
        assert amount % (500 if ep[0].currency == "JPY" else 5) == 0
        assert ep[0].transaction_type in ("withdrawal", "transfer")


def test_compromised_counterparty_is_normal_senders_into_a_few_ordinary_accounts(
    by_family,
):
    sim, events = by_family["compromised_counterparty"]
    mules = {p.account_id for p in sim.bank.mules}
    for ep in episodes(events):
        receivers = {t.counterparty_account_id for t in ep}
        assert 1 <= len(receivers) <= 3 and not receivers & mules
        assert len({t.account_id for t in ep}) >= 4
        assert not receivers & {t.account_id for t in ep}
        assert ep[-1].datetime_occurred - ep[0].datetime_occurred <= timedelta(hours=8)


def test_leaked_account_pays_ordinary_counterparties_3_to_8_times_habit(by_family):
    sim, events = by_family["leaked_account"]
    mules = {p.account_id for p in sim.bank.mules}
    ratios = []
    for ep in episodes(events):
        assert len({t.account_id for t in ep}) == 1 and 2 <= len(ep) <= 6
        for t in ep:
            assert t.counterparty_account_id and t.counterparty_account_id not in mules
            habit = habit_eur(events, t.account_id, t.transaction_type)
            if habit:
                ratios.append(eur(t) / habit)
    ratios.sort()
    assert 2 < ratios[len(ratios) // 2] < 10
