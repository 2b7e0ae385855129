"""Benchmark: validations per second through ``POST /validate/batch`` on a real server.

Starts ``python -m validator`` (one uvicorn worker, pinned to one CPU) unless ``--url``
names a running one, sends deterministic synthetic transactions in batches over HTTP
keep-alive sessions, checks every answer, and prints one JSON object::

    .venv/bin/python -m validator.bench --transactions 200000 --batch-size 500

Request bodies are serialised before the clock starts, so the figure is the server's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import requests

from validator.process import ValidatorProcess

_BANKS = ("Bank A", "Bank B", "Northern Savings", "Offshore Trust Ltd", "City Credit")
_CURRENCIES = ("EUR", "EUR", "EUR", "USD", "GBP", "CHF", "XYZ")
_START = datetime(2026, 1, 1, tzinfo=UTC)


def synthetic_requests(count: int, seed: int = 7) -> list[dict]:
    """``count`` validation requests, the same for the same seed; a few percent fraudulent."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        if rng.random() < 0.1:
            amount = float(rng.randint(1, 60) * 1000)
        else:
            amount = round(rng.lognormvariate(5, 1.5), 2)
        receiver = {
            "name": f"Receiver {i % 997}",
            "bank": rng.choice(_BANKS),
            "bank_account": f"R{i}",
        }
        occurred = _START + timedelta(seconds=rng.randint(0, 30 * 86400))
        out.append(
            {
                "transaction_id": f"tx-{i}",
                "sender_bank_account": f"S{i % 5000}",
                "receiver_details": json.dumps(receiver)
                if i % 2
                else (receiver if i % 7 else None),
                "sender_bank": rng.choice(_BANKS),
                "amount": amount,
                "currency": rng.choice(_CURRENCIES),
                "transaction_type": "transfer",
                "risk_score": round(rng.betavariate(2, 6) * 100),
                "account_created_at": (occurred - timedelta(days=rng.randint(1, 900))).isoformat(),
                "datetime_occurred": occurred.isoformat(),
            }
        )
    return out


def _worker(url: str, headers: dict, bodies: list[tuple[bytes, int]], out: dict) -> None:
    latencies, fraudulent = [], 0
    with requests.Session() as session:
        for body, size in bodies:
            started = time.perf_counter()
            response = session.post(url + "/validate/batch", data=body, headers=headers, timeout=60)
            latencies.append(time.perf_counter() - started)
            response.raise_for_status()
            results = response.json()["results"]
            if len(results) != size:
                raise RuntimeError(f"asked {size} validations, got {len(results)}")
            fraudulent += sum(r["is_fraudulent_transaction"] for r in results)
    out["latencies"], out["fraudulent"] = latencies, fraudulent


def run_bench(
    url: str, transactions: int, batch_size: int, concurrency: int, api_key: str | None
) -> dict:
    """Sends ``transactions`` in batches over ``concurrency`` sessions; returns the figures."""
    items = synthetic_requests(transactions)
    batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    bodies = [(json.dumps({"transactions": b}).encode(), len(b)) for b in batches]
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["X-API-Key"] = api_key
    _worker(url, headers, bodies[:2], {})  # warm-up: imports, first connections
    outs = [{} for _ in range(concurrency)]
    threads = [
        threading.Thread(target=_worker, args=(url, headers, bodies[n::concurrency], outs[n]))
        for n in range(concurrency)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if any("latencies" not in out for out in outs):
        raise RuntimeError("a benchmark session failed; see the traceback above")
    latencies = sorted(x for out in outs for x in out["latencies"])
    return {
        "validations_per_s": round(transactions / elapsed, 1),
        "transactions": transactions,
        "batch_size": batch_size,
        "batches": len(bodies),
        "concurrency": concurrency,
        "elapsed_s": round(elapsed, 3),
        "batch_latency_ms_p50": round(statistics.median(latencies) * 1000, 2),
        "batch_latency_ms_p99": round(latencies[int(0.99 * (len(latencies) - 1))] * 1000, 2),
        "fraudulent_share": round(sum(out["fraudulent"] for out in outs) / transactions, 4),
    }


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and prints its JSON result."""
    parser = argparse.ArgumentParser(
        prog="python -m validator.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--transactions",
        type=int,
        default=100_000,
        help="Validations to send (default: %(default)s).",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=500,
        help="Transactions per request (default: %(default)s).",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="Parallel keep-alive sessions (default: %(default)s).",
    )
    parser.add_argument("--url", help="Benchmark this running server instead of starting one.")
    parser.add_argument("--api-key", help="X-API-Key to send (and to start the server with).")
    parser.add_argument(
        "--cpu",
        type=int,
        default=0,
        help="CPU to pin the started server to; -1 = no pinning (default: %(default)s).",
    )
    args = parser.parse_args(argv)
    server_cpus = {args.cpu} if args.cpu >= 0 else None
    meta = {
        "server": args.url or "python -m validator (1 uvicorn worker)",
        "server_cpus": sorted(server_cpus) if server_cpus and not args.url else None,
        "host_cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    if args.url:
        result = run_bench(
            args.url, args.transactions, args.batch_size, args.concurrency, args.api_key
        )
    else:
        if server_cpus and os.cpu_count() and os.cpu_count() > 1:
            # Keep the client off the server's core so the two do not compete.
            os.sched_setaffinity(0, set(range(os.cpu_count())) - server_cpus)
        with ValidatorProcess(api_key=args.api_key, cpus=server_cpus) as server:
            result = run_bench(
                server.url, args.transactions, args.batch_size, args.concurrency, args.api_key
            )
    print(json.dumps({**result, **meta}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
