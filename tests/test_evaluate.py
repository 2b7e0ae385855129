"""make evaluate's arithmetic, on a hand-made ground truth (the run itself needs services)."""

from tools.evaluate import evaluate


def _t(i, is_fraud, bank_labelled=False, scenario=None):
    return {"kind": "transaction", "transaction_id": f"t{i}", "is_fraud": is_fraud,
            "bank_labelled": bank_labelled, "scenario": scenario}


def test_fraud_the_bank_labelled_is_left_out_of_the_unlabelled_figures():
    truth = [
        _t(1, True, bank_labelled=True, scenario="card_testing"),  # the bank's label
        _t(2, True, scenario="mule_inflow"),  # caught by the job
        _t(3, True, scenario="mule_inflow"),  # missed
        _t(4, False),  # a false alarm
        *[_t(i, False) for i in range(5, 11)],
        {"kind": "account", "account_id": "a1"},
    ]
    # transaction_id -> (risk_score, is_fraudulent, validated_by)
    rows = {f"t{i}": (0, False, "none") for i in range(1, 11)}
    rows["t1"] = (10, True, "bank")
    rows["t2"] = (80, True, "validator")
    rows["t4"] = (70, True, "validator")

    result = evaluate(truth, rows)

    assert (result["final"]["tp"], result["final"]["fp"], result["final"]["fn"]) == (2, 1, 1)
    unlabelled = result["unlabelled"]
    assert unlabelled["transactions"] == 9 and unlabelled["fraud"] == 2
    assert (unlabelled["final"]["tp"], unlabelled["final"]["fp"], unlabelled["final"]["fn"]) == (
        1, 1, 1)
    assert unlabelled["final"]["precision"] == 0.5 and unlabelled["final"]["recall"] == 0.5
    assert unlabelled["final"]["alert_rate"] == round(2 / 9, 5)
    assert unlabelled["final"]["recall_by_scenario"] == {"mule_inflow": 0.5}
    assert unlabelled["risk_score"]["tp"] == 1 and unlabelled["risk_score"]["fp"] == 1


def test_a_transaction_without_a_row_counts_as_not_flagged():
    truth = [_t(1, True, scenario="structuring"), _t(2, False)]
    result = evaluate(truth, {"t2": (0, False, "none")})
    assert result["missing_rows"] == 1
    assert result["unlabelled"]["final"]["fn"] == 1
