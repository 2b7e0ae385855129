"""ASGI middleware that guards the validation endpoints before their body is read.

FastAPI reads and parses a request's whole body before it runs a route's dependencies, so
a key check written as a dependency lets anyone make the service parse (and hold in memory)
whatever they send. :class:`RequestGuard` runs first, on the raw ASGI messages, for the
guarded paths only:

1. ``X-API-Key`` (when a key is configured): missing or wrong -> 401, body never read;
2. ``Content-Length`` above ``max_body_bytes`` -> 413, body never read;
3. the body is read with a running total (a chunked body has no ``Content-Length``):
   past ``max_body_bytes`` -> 413, the rest is never read;
4. the app gets the body it would have read itself.

>>> body_too_large(2_000_001, 2_000_000)
'request body of 2000001 bytes exceeds the limit of 2000000 bytes; send smaller batches'
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import JSONResponse

logger = logging.getLogger(__name__)

__all__ = ["API_KEY_HEADER", "DEFAULT_MAX_BODY_BYTES", "RequestGuard", "body_too_large"]

API_KEY_HEADER = "X-API-Key"
# 2 MiB: a full batch of 1000 pipeline requests is about 0.5 MB of JSON.
DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def body_too_large(size: int | None, limit: int) -> str:
    """The 413 message; ``size`` is None when the body was cut off while reading."""
    told = f"request body of {size} bytes" if size is not None else "request body"
    return f"{told} exceeds the limit of {limit} bytes; send smaller batches"


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
    # Closing the connection spares the server reading (to discard) a body nobody wants.
    response = JSONResponse(
        {"message": message, "detail": message}, status, headers={"Connection": "close"}
    )
    await response(scope, receive, send)


class RequestGuard:
    """Checks the API key and the body size of requests to ``paths`` before the app runs.

    Args:
        app: the ASGI app to protect.
        paths: the guarded paths (exact match), e.g. ``{"/validate", "/validate/batch"}``.
        api_key: the expected ``X-API-Key``; None lets every caller in.
        max_body_bytes: the largest body accepted.
    """

    def __init__(self, app: Any, paths: frozenset[str], api_key: str | None, max_body_bytes: int):
        if max_body_bytes < 1:
            raise ValueError(f"RequestGuard: max_body_bytes must be >= 1, got {max_body_bytes}")
        self.app = app
        self.paths = paths
        self.expected = api_key.encode() if api_key else None
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return
        if self.expected is not None:
            given = _header(scope, API_KEY_HEADER.lower().encode())
            if given is None or not hmac.compare_digest(given, self.expected):
                await _refuse(scope, receive, send, 401, f"missing or invalid {API_KEY_HEADER} header")
                return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await _refuse(
                scope, receive, send, 413, body_too_large(int(declared), self.max_body_bytes)
            )
            return
        body = await self._read_capped(receive)
        if body is None:
            await _refuse(scope, receive, send, 413, body_too_large(None, self.max_body_bytes))
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_capped(self, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it grows past the limit."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                logger.warning("refused a request body past %d bytes", self.max_body_bytes)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the already-read body, then defers to the server."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
