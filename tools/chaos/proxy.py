"""A local HTTP proxy in front of the fraud validator: passes, answers slowly or with garbage."""

from __future__ import annotations

import http.server
import threading
import time
import urllib.error
import urllib.request

__all__ = ["ValidatorProxy"]


class ValidatorProxy:
    """Forwards HTTP to the real validator; ``mode`` = pass | slow | garbage."""

    def __init__(self, upstream: str, slow_s: float = 8.0):
        self.upstream = upstream.rstrip("/")
        self.slow_s = slow_s
        self.mode = "pass"
        self.answered = {"pass": 0, "slow": 0, "garbage": 0}
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                mode = proxy.mode
                proxy.answered[mode] = proxy.answered.get(mode, 0) + 1
                if mode == "garbage":
                    n = proxy.answered["garbage"]
                    if n % 3 == 0:
                        data, ctype = b"<html>502 garbage</html>", "text/html"
                    elif n % 3 == 1:
                        data, ctype = b'{"results": [{"garbage": true}]}', "application/json"
                    else:
                        data, ctype = b'{"results": "\x00\xff not json', "application/json"
                    return self._send(200, data, ctype)
                if mode == "slow":
                    time.sleep(proxy.slow_s)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length", "connection")}
                request = urllib.request.Request(proxy.upstream + self.path, data=body,
                                                 headers=headers, method=self.command)
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        return self._send(answer.status, answer.read(),
                                          answer.headers.get("Content-Type", "application/json"))
                except urllib.error.HTTPError as error:
                    return self._send(error.code, error.read(),
                                      error.headers.get("Content-Type", "application/json"))
                except OSError as error:
                    return self._send(502, str(error).encode(), "text/plain")

            def _send(self, status, data, ctype):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

            do_GET = do_POST = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
