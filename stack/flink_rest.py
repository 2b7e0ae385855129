"""A small client for Flink's REST API (standard library only), for tests and the demo.

>>> from stack import flink_rest                                   # doctest: +SKIP
>>> job_id = flink_rest.job_id_by_name("riskpipe")
>>> flink_rest.wait_for_job_state(job_id, "RUNNING", timeout=60)
>>> flink_rest.stop_with_savepoint(job_id, "file:///.../savepoints")   # -> savepoint path

Every function takes ``base_url`` (default: the local stack's ``http://127.0.0.1:8081``).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterable

from stack import config
from stack.errors import StackError

TERMINAL_STATES = {"FINISHED", "FAILED", "CANCELED", "SUSPENDED"}


def default_url() -> str:
    return f"http://{config.HOST}:{config.port('FLINK')}"


def request(
    method: str,
    path: str,
    body: dict | None = None,
    *,
    base_url: str | None = None,
    timeout: float = 10.0,
):
    """Sends one request; returns the decoded JSON answer (None if empty)."""
    url = (base_url or default_url()).rstrip("/") + path
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            payload = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise StackError(
            f"Flink REST {method} {path}: HTTP {exc.code}: {detail}"
        ) from None
    return json.loads(payload) if payload.strip() else None


def overview(*, base_url: str | None = None, timeout: float = 10.0) -> dict:
    """``/overview``: taskmanagers, slots-total, slots-available, jobs-running..."""
    return request("GET", "/overview", base_url=base_url, timeout=timeout)


def jobs(*, base_url: str | None = None) -> list[dict]:
    """Every job the cluster knows: ``jid``, ``name``, ``state``, ``start-time``..."""
    return request("GET", "/jobs/overview", base_url=base_url)["jobs"]


def job(job_id: str, *, base_url: str | None = None) -> dict:
    """``/jobs/<id>``: state, vertices, timestamps."""
    return request("GET", f"/jobs/{job_id}", base_url=base_url)


def job_state(job_id: str, *, base_url: str | None = None) -> str:
    return job(job_id, base_url=base_url)["state"]


def job_id_by_name(
    name: str,
    *,
    states: set[str] | None = None,
    exclude: Iterable[str] = (),
    base_url: str | None = None,
) -> str | None:
    """The id of the most recently started job called ``name`` (optionally in ``states``),
    other than the ids in ``exclude``."""
    excluded = set(exclude)
    matches = [
        j
        for j in jobs(base_url=base_url)
        if j["name"] == name and (states is None or j["state"] in states)
        and j["jid"] not in excluded
    ]
    if not matches:
        return None
    return max(matches, key=lambda j: j.get("start-time", 0))["jid"]


def wait_for_job_id(
    name: str,
    timeout: float = 60.0,
    *,
    exclude: Iterable[str] = (),
    base_url: str | None = None,
) -> str:
    """Waits until a job called ``name`` appears (one not in ``exclude``, e.g. the ids that
    existed before a submission); returns its id."""
    excluded = set(exclude)
    deadline = time.monotonic() + timeout
    while True:
        job_id = job_id_by_name(name, exclude=excluded, base_url=base_url)
        if job_id:
            return job_id
        if time.monotonic() > deadline:
            raise StackError(f"no Flink job named {name!r} after {timeout:.0f} s")
        time.sleep(0.5)


def exceptions(job_id: str, *, base_url: str | None = None) -> str:
    """The root exception of a failed job (its stack trace), or ''."""
    answer = request("GET", f"/jobs/{job_id}/exceptions", base_url=base_url)
    return (answer or {}).get("root-exception") or ""


def wait_for_job_state(
    job_id: str,
    state: str | set[str],
    timeout: float = 60.0,
    *,
    base_url: str | None = None,
) -> str:
    """Waits until the job is in ``state`` (one or a set); returns the state reached.

    Raises:
        StackError: on timeout, or if the job ends in another terminal state (with its
            root exception).
    """
    wanted = {state} if isinstance(state, str) else set(state)
    deadline = time.monotonic() + timeout
    while True:
        current = job_state(job_id, base_url=base_url)
        if current in wanted:
            return current
        if current in TERMINAL_STATES:
            trace = exceptions(job_id, base_url=base_url)
            raise StackError(
                f"Flink job {job_id} ended {current}, not {'/'.join(sorted(wanted))}"
                + (f":\n{trace[:4000]}" if trace else "")
            )
        if time.monotonic() > deadline:
            raise StackError(
                f"Flink job {job_id} still {current} after {timeout:.0f} s "
                f"(waiting for {'/'.join(sorted(wanted))})"
            )
        time.sleep(0.5)


def wait_until_running(
    job_id: str, timeout: float = 60.0, *, base_url: str | None = None
) -> None:
    """Waits until the job RUNS with every task running (or finished), not just scheduled.

    After a TaskManager loss the job itself says RUNNING while its tasks wait for slots;
    checkpoints and savepoints fail until they are all running again.
    """
    deadline = time.monotonic() + timeout
    while True:
        answer = job(job_id, base_url=base_url)
        statuses = {v["status"] for v in answer.get("vertices", [])}
        if (
            answer["state"] == "RUNNING"
            and statuses
            and statuses <= {"RUNNING", "FINISHED"}
        ):
            return
        if answer["state"] in TERMINAL_STATES:
            raise StackError(f"Flink job {job_id} ended {answer['state']}")
        if time.monotonic() > deadline:
            raise StackError(
                f"Flink job {job_id} not fully running after {timeout:.0f} s "
                f"(job {answer['state']}, tasks {sorted(statuses)})"
            )
        time.sleep(0.5)


def cancel(job_id: str, *, base_url: str | None = None) -> None:
    """Cancels the job (retained checkpoints stay: RETAIN_ON_CANCELLATION)."""
    request("PATCH", f"/jobs/{job_id}?mode=cancel", base_url=base_url)


def stop_with_savepoint(
    job_id: str,
    target_directory: str | None = None,
    *,
    drain: bool = False,
    timeout: float = 120.0,
    base_url: str | None = None,
) -> str:
    """Stops the job with a savepoint; returns its location (``file:/…/savepoint-…``).

    Args:
        target_directory: a ``file://`` URI or path (default: the cluster's savepoint-dir).
        drain: advance the watermark to the end first (fires all event-time timers).
    """
    body: dict = {"drain": drain}
    if target_directory:
        body["targetDirectory"] = str(target_directory)
    trigger = request("POST", f"/jobs/{job_id}/stop", body, base_url=base_url)[
        "request-id"
    ]
    deadline = time.monotonic() + timeout
    while True:
        answer = request(
            "GET", f"/jobs/{job_id}/savepoints/{trigger}", base_url=base_url
        )
        if answer["status"]["id"] == "COMPLETED":
            operation = answer.get("operation") or {}
            if "location" in operation:
                return operation["location"]
            raise StackError(
                f"stop-with-savepoint of {job_id} failed: "
                f"{json.dumps(operation.get('failure-cause', operation))[:4000]}"
            )
        if time.monotonic() > deadline:
            raise StackError(
                f"stop-with-savepoint of {job_id} not done after {timeout:.0f} s"
            )
        time.sleep(0.5)


def checkpoints(job_id: str, *, base_url: str | None = None) -> dict:
    """``/jobs/<id>/checkpoints``: counts, ``latest.completed`` (with ``external_path``)…"""
    return request("GET", f"/jobs/{job_id}/checkpoints", base_url=base_url)


def latest_checkpoint_path(job_id: str, *, base_url: str | None = None) -> str | None:
    """The ``external_path`` of the job's latest completed checkpoint, if any."""
    latest = (checkpoints(job_id, base_url=base_url).get("latest") or {}).get(
        "completed"
    )
    return latest.get("external_path") if latest else None
