"""Unit tests of the fraud model: each rule on its own, the score, determinism."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factories import examples
from validator.config import load_config
from validator.model import RULE_ORDER, FraudModel, Verdict
from validator.schemas import ValidationRequest

NOON = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def reasons(model, make_request, **overrides) -> tuple[str, ...]:
    return model.evaluate(make_request(**overrides)).reasons


def test_harmless_request_fires_nothing(model, make_request):
    assert model.evaluate(make_request()) == Verdict(False, 0.0, ())


@pytest.mark.parametrize(
    ("amount", "currency", "fired"),
    [
        (9_999.99, "EUR", ()),
        (10_000.5, "EUR", ("large_amount",)),
        (11_000.5, "USD", ("large_amount",)),  # 10,120 EUR
        (10_500.5, "USD", ()),  # 9,660 EUR
        (50_000.5, "EUR", ("large_amount", "very_large_amount")),
        (-20_000.5, "EUR", ("large_amount",)),  # the magnitude counts
        (1_000_000.5, "JPY", ()),  # 6,200 EUR
    ],
)
def test_amount_thresholds_in_eur(model, make_request, amount, currency, fired):
    assert reasons(model, make_request, amount=amount, currency=currency) == fired


def test_currency_code_is_case_insensitive(model, make_request):
    assert reasons(model, make_request, amount=11_000.5, currency="usd") == ("large_amount",)


def test_unknown_currency_fires_and_counts_amount_as_eur(model, make_request):
    fired = reasons(model, make_request, amount=10_000.5, currency="XYZ")
    assert fired == ("large_amount", "unknown_currency")


@pytest.mark.parametrize(
    ("amount", "fires"),
    [(1000, True), (7000.0, True), (999.0, False), (0, False), (1500, False), (3000.01, False)],
)
def test_round_amount(model, make_request, amount, fires):
    assert ("round_amount" in reasons(model, make_request, amount=amount)) is fires


@pytest.mark.parametrize(
    ("bank", "fires"),
    [
        ("Offshore Trust Ltd", True),
        ("  offshore TRUST ltd ", True),
        ("Bank A", False),
        (None, False),
    ],
)
def test_watched_sender_bank(model, make_request, bank, fires):
    assert ("watched_sender_bank" in reasons(model, make_request, sender_bank=bank)) is fires


@pytest.mark.parametrize(
    ("receiver", "expected"),
    [
        (None, ("receiver_missing",)),
        ({}, ("receiver_missing",)),
        ("", ("receiver_missing",)),
        ({"bank": "Bank B"}, ("receiver_missing",)),  # neither a name nor an account
        ({"name": "Bo", "bank_account": "FR2"}, ("receiver_incomplete",)),  # no bank
        ({"name": "Bo", "bank": "B"}, ("receiver_incomplete",)),  # no account
        ({"bank_account": "FR2", "bank": "B"}, ("receiver_incomplete",)),  # no name
        ({"name": "Bo", "bank": "B", "iban": "FR2"}, ()),  # iban is an account alias
        ({"name": "Bo", "bank": "B", "account_id": "a2"}, ()),
        ('{"name": "Bo", "bank": "B", "bank_account": "FR2"}', ()),
        ({"name": "Me", "bank": "B", "bank_account": "DE001"}, ("receiver_is_sender",)),
        ({"name": "Me", "bank": "B", "account_id": "DE001"}, ("receiver_is_sender",)),
    ],
)
def test_receiver_rules(model, make_request, receiver, expected):
    assert reasons(model, make_request, receiver_details=receiver) == expected


@pytest.mark.parametrize(
    ("risk", "score"), [(None, 0.0), (0, 0.0), (50, 0.0), (75, 0.2), (100, 0.4)]
)
def test_pipeline_risk_scales_above_min_score(model, make_request, risk, score):
    verdict = model.evaluate(make_request(risk_score=risk))
    assert verdict.score == score
    assert ("pipeline_risk" in verdict.reasons) is (score > 0)


@pytest.mark.parametrize(
    ("age_days", "fires"), [(29.9, True), (30, False), (400, False), (-1, True)]
)
def test_new_account(model, make_request, age_days, fires):
    created = NOON - timedelta(days=age_days)
    fired = reasons(model, make_request, account_created_at=created, datetime_occurred=NOON)
    assert ("new_account" in fired) is fires


def test_new_account_needs_both_dates(model, make_request):
    assert reasons(model, make_request, account_created_at=NOON) == ()


@pytest.mark.parametrize(
    ("occurred", "fires"),
    [
        ("2026-03-01T00:00:00Z", True),
        ("2026-03-01T04:59:59+00:00", True),
        ("2026-03-01T05:00:00Z", False),
        ("2026-03-01T03:00:00", True),  # naive = UTC
        ("2026-03-01T03:00:00+02:00", True),  # 01:00 UTC
        ("2026-03-01T06:00:00+02:00", True),  # 04:00 UTC
        ("2026-03-01T07:00:00+02:00", False),  # 05:00 UTC
    ],
)
def test_unusual_hour_in_utc(model, make_request, occurred, fires):
    assert ("unusual_hour" in reasons(model, make_request, datetime_occurred=occurred)) is fires


def test_score_is_sum_of_weights_capped_at_one(model, make_request):
    verdict = model.evaluate(make_request(amount=20_000, sender_bank="Offshore Trust Ltd"))
    assert verdict.reasons == ("large_amount", "round_amount", "watched_sender_bank")
    assert verdict.score == 0.85 and verdict.is_fraudulent
    everything = model.evaluate(
        make_request(
            amount=90_000, sender_bank="Offshore Trust Ltd", receiver_details=None, risk_score=100
        )
    )
    assert everything.score == 1.0


def test_threshold_is_inclusive(config_with, make_request):
    model = FraudModel(config_with(threshold=0.4))
    verdict = model.evaluate(make_request(amount=12_000))  # 0.30 + 0.10
    assert verdict.score == 0.4 and verdict.is_fraudulent
    assert (
        not FraudModel(config_with(threshold=0.41))
        .evaluate(make_request(amount=12_000))
        .is_fraudulent
    )


def test_zero_weight_switches_a_rule_off(config_with, make_request):
    model = FraudModel(config_with(round_amount={"weight": 0}))
    assert model.evaluate(make_request(amount=12_000)).reasons == ("large_amount",)


def test_rule_parameters_come_from_config(config_with, make_request):
    model = FraudModel(
        config_with(large_amount={"min_eur": 100}, watched_sender_bank={"banks": ["Bank A"]})
    )
    assert model.evaluate(make_request(amount=150.5)).reasons == (
        "large_amount",
        "watched_sender_bank",
    )


def test_reasons_follow_rule_order(model, make_request):
    verdict = model.evaluate(
        make_request(
            amount=60_000,
            currency="XYZ",
            sender_bank="Shell Island Bank",
            receiver_details=None,
            risk_score=90,
            account_created_at=NOON,
            datetime_occurred="2026-03-01T02:00:00Z",
        )
    )
    assert list(verdict.reasons) == [r for r in RULE_ORDER if r in verdict.reasons]
    assert set(verdict.reasons) == set(RULE_ORDER) - {"receiver_incomplete", "receiver_is_sender"}


requests_strategy = st.builds(
    lambda amount, currency, bank, risk, receiver: ValidationRequest.model_validate(
        {
            "transaction_id": "h",
            "sender_bank_account": "S1",
            "receiver_details": receiver,
            "sender_bank": bank,
            "amount": amount,
            "currency": currency,
            "risk_score": risk,
        }
    ),
    st.floats(-1e9, 1e9, allow_nan=False),
    st.sampled_from(["EUR", "USD", "JPY", "ABC", None]),
    st.sampled_from(["Bank A", "Offshore Trust Ltd", None]),
    st.one_of(st.none(), st.floats(0, 100)),
    st.sampled_from([None, {"name": "x"}, {"name": "x", "bank": "b", "bank_account": "S1"}]),
)


@settings(max_examples=examples(200), deadline=None)
@given(requests_strategy)
def test_deterministic_and_bounded(model, req):
    first = model.evaluate(req)
    assert first == model.evaluate(req) == FraudModel(load_config()).evaluate(req)
    assert 0.0 <= first.score <= 1.0
    assert first.is_fraudulent is (first.score >= model.config.threshold)
    assert list(first.reasons) == [r for r in RULE_ORDER if r in first.reasons]
