"""Monitoring: every metric the Grafana dashboard queries exists in Prometheus for a live job.

One job runs a small paced simulation (bad messages → ``dead_lettered``; unidentified
transfers → ``validator_calls``; injected fraud → ``routed_bank_fraudulent`` and
``validated_fraudulent``). Once Prometheus scrapes the TaskManager, every metric name in every
panel's PromQL must appear; names of Flink job metrics must appear *for this job*
(``job_name`` label), so series left by earlier runs do not count.

Every counter is reported from the job's first bundles on (at 0 until its first event), so
every name is required, also those of events this run need not produce (validator failures,
expired joins); a missing name fails the test with the list.
The Kafka metrics carry the read's role (``kafka_lag_transactions_p0``), not the topic, so
the per-test topics export the very names the dashboard spells.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request

import pytest

from tests.e2e.conftest import REPO, Scenario, topic_size, wait_until

DASHBOARD = REPO / "monitoring" / "grafana" / "riskpipe-dashboard.json"
OPERATOR = "flink_taskmanager_job_task_operator_riskpipe_"
PROMQL_WORDS = {
    # aggregations, functions and keywords that may stand before "(" or alone
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "and", "or", "unless", "atan2", "inf", "nan",
}
# The Beam counters the issue names: they must exist for the job.
REQUIRED_COUNTERS = [
    "kafka_records_read", "parsed", "dead_lettered", "joined", "scored",
    "routed_bank_fraudulent", "validated_fraudulent", "validator_calls",
    "postgres_rows_written", "mongo_rows_written", "s3_records_written",
    "kafka_records_written",
]


def prometheus(url: str, path: str, **params) -> dict:
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{url}{path}?{query}", timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["status"] == "success", answer
    return answer["data"]


def _strip_balanced(text: str, opening: str, closing: str, keep) -> str:
    """Removes every ``opening…closing`` block, passing each block's inside to ``keep``."""
    out, depth, inside = [], 0, []
    for char in text:
        if char == opening:
            depth += 1
            if depth == 1:
                inside = []
                continue
        elif char == closing and depth:
            depth -= 1
            if depth == 0:
                keep("".join(inside))
                out.append(" ")
                continue
        (inside if depth else out).append(char)
    return "".join(out)


def metric_selectors(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, ``__name__`` regexes) a PromQL expression selects.

    >>> metric_selectors('sum by (a) (rate(x_total{a="b"}[1m])) / on() y or vector(0)')
    ({'x_total', 'y'}, set())
    >>> metric_selectors('sum(max by (__name__) ({__name__=~"k_[0-9]+"}))')
    (set(), {'k_[0-9]+'})
    """
    regexes: set[str] = set()
    names: set[str] = set()

    def matchers(inside: str) -> None:
        for op, value in re.findall(r'__name__\s*(=~|=)\s*"((?:[^"\\]|\\.)*)"', inside):
            (regexes if op == "=~" else names).add(value)

    text = _strip_balanced(expr, "{", "}", matchers)
    text = _strip_balanced(text, "[", "]", lambda _: None)
    text = re.sub(r'"(?:[^"\\]|\\.)*"', " ", text)
    # grouping label lists: by (...), without (...), on (...), ignoring (...), group_x (...)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        following = text[match.end():].lstrip()[:1]
        if following == "(" or word.lower() in PROMQL_WORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", word) or text[max(0, match.start() - 1)].isdigit():
            continue
        names.add(word)
    return names, regexes


def dashboard_exprs() -> list[tuple[str, str]]:
    def panels(items):
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    board = json.loads(DASHBOARD.read_text())
    return [
        (panel.get("title", "?"), target["expr"])
        for panel in panels(board["panels"])
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def test_dashboard_metrics_exist(services, stack_up, tmp_path):
    url = stack_up("prometheus")["prometheus"]["url"]
    sc = Scenario(services, tmp_path, seed=20260203, count=1_500, bad_rate=0.02,
                  fraud_rate=0.04)
    sc.prepare()
    exprs = dashboard_exprs()
    assert exprs, f"no PromQL targets in {DASHBOARD}"
    wanted_names: dict[str, list[str]] = {}
    wanted_regexes: dict[str, list[str]] = {}
    for title, expr in exprs:
        names, regexes = metric_selectors(expr)
        assert names or regexes, f"panel {title!r}: no metric in {expr!r}"
        for name in names:
            wanted_names.setdefault(name, []).append(title)
        for regex in regexes:
            wanted_regexes.setdefault(regex, []).append(title)
    try:
        job_id = sc.submit(start_offset="earliest")
        started = time.monotonic()
        sim = sc.start_simulator(tps=150)
        wait_until(
            "Prometheus scraping the TaskManager (up{job=\"flink-taskmanager\"} == 1)",
            lambda: prometheus(url, "/api/v1/query", query='up{job="flink-taskmanager"} == 1')["result"],
            60,
        )
        sc.finish_simulator(sim)

        def present() -> tuple[set[str], set[str]]:
            """(names of this job's Flink job metrics, every metric name Prometheus knows)."""
            mine = prometheus(
                url, "/api/v1/query", query=f'group by (__name__) ({{job_name="{sc.prefix}"}})'
            )["result"]
            every = prometheus(url, "/api/v1/label/__name__/values")
            return {r["metric"]["__name__"] for r in mine}, set(every)

        def exists(name: str, mine: set[str], every: set[str]) -> bool:
            pool = mine if name.startswith(("flink_taskmanager_job_", "flink_jobmanager_job_")) else every
            return name in pool

        def missing() -> dict[str, str]:
            mine, every = present()
            gone: dict[str, str] = {}
            for name, titles in wanted_names.items():
                if exists(name, mine, every):
                    continue
                gone[name] = f"panels {sorted(set(titles))}"
            for regex, titles in wanted_regexes.items():
                pool = mine if regex.startswith(("flink_taskmanager_job_", "flink_jobmanager_job_")) else every
                if any(re.fullmatch(regex, n) for n in pool):
                    continue
                gone[f"{{__name__=~{regex!r}}}"] = f"panels {sorted(set(titles))}"
            for counter in REQUIRED_COUNTERS:
                if OPERATOR + counter not in mine:
                    gone.setdefault(OPERATOR + counter, "a counter the issue names")
            return gone

        deadline = time.monotonic() + 120
        while (gone := missing()) and time.monotonic() < deadline:
            time.sleep(5)
        mine, every = present()
        print(f"\nmonitoring: {len(wanted_names)} names + {len(wanted_regexes)} regexes in "
              f"{len(exprs)} expressions; this job exports {len([n for n in mine if n.startswith(OPERATOR)])} "
              f"riskpipe metrics after {time.monotonic() - started:.0f} s")
        assert sc.bad > 0 and topic_size(sc.bootstrap, sc.topics["dead_letters"]) > 0
        assert not gone, "dashboard/issue metrics missing from Prometheus for job " \
            f"{sc.prefix} ({job_id}):\n" + "\n".join(f"  {n}: {w}" for n, w in sorted(gone.items()))
    finally:
        sc.cancel_all()


if __name__ == "__main__":  # pragma: no cover - prints what the test would look for
    for title, expr in dashboard_exprs():
        print(title, metric_selectors(expr))
    pytest.main([__file__, "-q", "-s"])
