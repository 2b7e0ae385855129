"""Command line of the local stack: ``python -m stack {install,up,down,status,urls,supervise}``.

``install`` also takes the tools the stack builds but never runs (``install prism``).

``up`` with a supervised service (worker pool, Flink, validator) also starts the supervisor;
``supervise`` is the supervisor itself, in the foreground (``stack/supervisor.py``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import stack
from stack.base import Status
from stack.errors import StackError


def print_table(rows: list[Status]) -> None:
    """Prints service, status, address, restarts (by the supervisor) and log as columns."""
    table = [("SERVICE", "STATUS", "ADDRESS", "RESTARTS", "LOG")]
    for row in rows:
        state = f"{row.state} ({row.detail})" if row.detail else row.state
        restarts = row.restarts.describe() if row.restarts is not None else "-"
        table.append((row.service, state, row.address, restarts, str(row.log)))
    widths = [max(len(line[i]) for line in table) for i in range(4)]
    for line in table:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths))
            + "  "
            + line[4]
        )


# What a person opens in a browser (or a client) to watch the stack.
URLS = (
    ("Flink UI", "flink", "http://{address}"),
    ("Prometheus", "prometheus", "http://{address}/graph"),
    ("Validator API docs", "validator", "http://{address}/docs"),
    ("S3 (MinIO/moto)", "s3", "http://{address}"),
)


def print_urls() -> None:
    """Prints the URL of each web UI with whether its service is up."""
    health = {row.service: row for row in stack.status(None)}
    for title, service, template in URLS:
        row = health[service]
        print(f"{title:<20} {template.format(address=row.address):<40} {row.state}")
    print("Grafana              (docker compose only) http://127.0.0.1:3000")


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except StackError as exc:
        print(f"stack: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stack: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    # Imported here: the registry is built on first use (see stack/__init__.py).
    from stack.services import TOOLS

    parser = argparse.ArgumentParser(
        prog="python -m stack", description=stack.__doc__.splitlines()[0]
    )
    parser.add_argument(
        "command", choices=["install", "up", "down", "status", "urls", "supervise"]
    )
    parser.add_argument(
        "services",
        nargs="*",
        metavar="service",
        help=f"any of: {', '.join(stack.SERVICES)} (default: all); install also takes "
        f"{', '.join(TOOLS)}",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    started = time.monotonic()
    if args.command == "supervise":
        from stack import services, supervisor

        return supervisor.main(services.supervised_units())
    if args.command == "urls":
        print_urls()
        return 0
    if args.command == "install":
        stack.install(args.services)
        for name, tool in TOOLS.items():
            if not args.services or name in args.services:
                print(f"{name}: {tool.binary}")
        services = [name for name in args.services if name not in TOOLS]
        if args.services and not services:
            return 0  # tools only: no service table
        args.services = services
    elif args.command == "up":
        from stack.services import with_supervisor

        args.services = with_supervisor(args.services)
        stack.up(args.services)
    elif args.command == "down":
        stack.down(args.services)
    rows = stack.status(args.services)
    print_table(rows)
    print(f"({args.command} took {time.monotonic() - started:.1f} s)", file=sys.stderr)
    if args.command in ("up", "status"):
        return 0 if all(row.healthy for row in rows) else 1
    if args.command == "down":
        return 0 if all(row.state == "stopped" for row in rows) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
