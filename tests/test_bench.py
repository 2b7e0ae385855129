"""The figures of `make bench`: row comparison, ratios, and its command line."""

from __future__ import annotations

from tools.bench import parse_args
from tools.bench_data import compare_rows, ratios

REFERENCE = {
    "t1": ("Ann", 12, ()),
    "t2": ("Bo", 71, ("amount_spike", "new_counterparty")),
    "t3": (None, 40, ("unknown_account",)),
}


def test_rows_equal_to_the_reference_all_agree():
    check = compare_rows(list(REFERENCE), dict(REFERENCE), REFERENCE)
    assert check == {"transactions": 3, "rows": 3, "missing": 0, "rows_agree": 3, "differ": []}


def test_a_missing_row_and_a_changed_reason_are_told_apart():
    rows = {"t1": ("Ann", 12, ()), "t2": ("Bo", 71, ("amount_spike",))}
    check = compare_rows(list(REFERENCE), rows, REFERENCE)
    assert (check["rows"], check["missing"], check["rows_agree"]) == (2, 1, 1)
    assert check["differ"] == [{"transaction_id": "t2", "reference": REFERENCE["t2"],
                                "row": ("Bo", 71, ("amount_spike",))}]


def test_a_row_the_reference_lacks_differs():
    check = compare_rows(["t9"], {"t9": ("Cy", 1, ())}, REFERENCE)
    assert (check["rows_agree"], check["differ"][0]["reference"]) == (0, None)


def test_differences_shown_are_capped():
    rows = {f"t{i}": ("X", i, ()) for i in range(10)}
    check = compare_rows(list(rows), rows, {})
    assert check["rows_agree"] == 0 and len(check["differ"]) == 3


def test_ratios_pair_each_engine_with_every_later_one():
    assert ratios({"flink": 1500.0, "quix": 1000.0, "fnapi": 500.0, "baseline": 4000.0}) == {
        "flink_over_quix": 1.5, "flink_over_fnapi": 3.0, "flink_over_baseline": 0.38,
        "quix_over_fnapi": 2.0, "quix_over_baseline": 0.25, "fnapi_over_baseline": 0.12,
    }


def test_a_ratio_over_nothing_is_none():
    assert ratios({"flink": 10.0, "quix": 0.0}) == {"flink_over_quix": None}
    assert ratios({"flink": None, "quix": 10.0}) == {"flink_over_quix": None}
    assert ratios({"quix": 10.0}) == {}


def test_command_line_defaults_and_skips():
    args = parse_args([])
    assert (args.count, args.seed, args.skip, args.latency_rates) == (
        100_000, 1, [], [200.0, 1000.0])
    args = parse_args(["--skip-flink", "--skip-quix", "--latency-rates", "", "--job-arg=--x=1",
                       "--job-arg=--y=2"])
    assert (args.skip, args.latency_rates, args.job_arg) == (
        ["flink", "quix"], [], ["--x=1", "--y=2"])
