"""Runs the fraud validator under uvicorn: ``python -m validator [--port 8000] ...``.

The rules file is loaded and checked before the server starts: a bad file prints one
line naming the problem and exits with status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import uvicorn

from validator.app import DEFAULT_MAX_BATCH_SIZE, create_app
from validator.config import DEFAULT_CONFIG_PATH, ConfigError, load_config
from validator.guard import DEFAULT_MAX_BODY_BYTES

logger = logging.getLogger("validator")


def _int_from_env(name: str, default: int) -> int:
    value = os.environ.get(name) or str(default)
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"validator: {name} must be an integer, got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m validator``."""
    parser = argparse.ArgumentParser(
        prog="python -m validator",
        description="riskpipe fraud validator: POST /validate, /validate/batch; docs at /docs.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="Address to bind (default: %(default)s)."
    )
    parser.add_argument(
        "--port",
        type=int,
        default=_int_from_env("RISKPIPE_VALIDATOR_PORT", 8000),
        help="Port to bind (default: $RISKPIPE_VALIDATOR_PORT or 8000; now %(default)s).",
    )
    parser.add_argument(
        "--config",
        default=os.environ.get("RISKPIPE_VALIDATOR_CONFIG") or str(DEFAULT_CONFIG_PATH),
        help="Rules file (YAML; default: $RISKPIPE_VALIDATOR_CONFIG or the shipped rules.yaml).",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("RISKPIPE_VALIDATOR_API_KEY") or None,
        help="Require this key in the X-API-Key header of validation calls "
        "(default: $RISKPIPE_VALIDATOR_API_KEY; none = open). Prefer the variable: "
        "arguments are visible to other users in `ps`.",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="Worker processes (default: %(default)s). Each keeps its own /metrics counters.",
    )
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=DEFAULT_MAX_BATCH_SIZE,
        help="Most transactions per /validate/batch call (default: %(default)s).",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=_int_from_env("RISKPIPE_VALIDATOR_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
        help="Largest request body of a validation call, else 413; checked before the body "
        "is read (default: $RISKPIPE_VALIDATOR_MAX_BODY_BYTES or %(default)s).",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("critical", "error", "warning", "info", "debug"),
        help="Log level of the server (default: %(default)s).",
    )
    parser.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Log one line per HTTP request (default: on).",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parses the command line, checks the rules and serves until interrupted."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    if args.workers < 1 or args.max_batch_size < 1 or args.max_body_bytes < 1:
        print(
            "validator: --workers, --max-batch-size and --max-body-bytes must be >= 1",
            file=sys.stderr,
        )
        return 2
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"validator: {exc}", file=sys.stderr)
        return 2
    options = {
        "host": args.host,
        "port": args.port,
        "log_level": args.log_level,
        "access_log": args.access_log,
    }
    logger.info(
        "serving on http://%s:%d (rules %s, API key %s, bodies up to %d bytes, %d worker(s))",
        args.host,
        args.port,
        args.config,
        "on" if args.api_key else "off",
        args.max_body_bytes,
        args.workers,
    )
    if args.workers == 1:
        app = create_app(
            config,
            api_key=args.api_key,
            max_batch_size=args.max_batch_size,
            max_body_bytes=args.max_body_bytes,
        )
        uvicorn.run(app, **options)
    else:
        # Worker processes import the app themselves, so the settings travel by env.
        os.environ["RISKPIPE_VALIDATOR_CONFIG"] = args.config
        os.environ["RISKPIPE_VALIDATOR_MAX_BATCH"] = str(args.max_batch_size)
        os.environ["RISKPIPE_VALIDATOR_MAX_BODY_BYTES"] = str(args.max_body_bytes)
        if args.api_key:
            os.environ["RISKPIPE_VALIDATOR_API_KEY"] = args.api_key
        uvicorn.run(
            "validator.app:create_app_from_env", factory=True, workers=args.workers, **options
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
