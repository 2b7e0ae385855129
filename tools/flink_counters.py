"""Helpers for a riskpipe job running on Flink: its riskpipe counters, read over REST.

The Beam Flink runner publishes every Beam metric as one Flink user accumulator,
``__metricscontainers`` (JSON of MonitoringInfos); user counters are
``beam:metric:user:sum_int64:v1`` with a varint payload.
"""

from __future__ import annotations

import base64
import json

from stack import flink_rest

__all__ = ["riskpipe_counters"]

USER_COUNTER = "beam:metric:user:sum_int64:v1"


def _varint(data: bytes) -> int:
    value = shift = 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return value - (1 << 64) if value >= 1 << 63 else value


def riskpipe_counters(job_id: str, namespace: str = "riskpipe") -> dict[str, int]:
    """The job's counters in ``namespace`` by name, summed over transforms (attempted)."""
    answer = flink_rest.request("GET", f"/jobs/{job_id}/accumulators") or {}
    totals: dict[str, int] = {}
    for accumulator in answer.get("user-task-accumulators", []):
        if accumulator.get("name") != "__metricscontainers":
            continue
        infos = json.loads(accumulator["value"]).get("metrics", {}).get("attempted", [])
        for info in infos:
            labels = info.get("labels", {})
            if info.get("urn") == USER_COUNTER and labels.get("NAMESPACE") == namespace:
                name = labels.get("NAME", "?")
                totals[name] = totals.get(name, 0) + _varint(base64.b64decode(info["payload"]))
    return totals


if __name__ == "__main__":
    raise SystemExit(
        "tools.flink_counters is a library, not a command: it is used by python -m tools.demo"
    )
