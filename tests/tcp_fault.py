"""A TCP forwarder in front of a real server, whose link a test can cut and restore.

A fault between a worker and a shared local service, without stopping the service that
other tests use: clients connect to ``link.address``; ``cut()`` drops every open
connection and refuses new ones (as a stopped server does); ``restore()`` accepts again.

    with TcpLink(("127.0.0.1", 5432)) as link:
        dsn = f"postgresql://u:p@{link.host}:{link.port}/db"
        link.cut()
        ...
        link.restore()
"""

from __future__ import annotations

import selectors
import socket
import threading


class TcpLink:
    """Forwards 127.0.0.1:<port> to ``target``; ``cut`` and ``restore`` the link."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.host = "127.0.0.1"
        probe = socket.socket()
        probe.bind((self.host, 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.accepted = 0

    # -- the link ---------------------------------------------------------------------
    def restore(self) -> None:
        """Listens again (idempotent)."""
        with self._lock:
            if self._listener is not None:
                return
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
            listener.listen(64)
            self._listener = listener
        thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        thread.start()
        self._threads.append(thread)

    def cut(self) -> None:
        """Closes the listener and every forwarded connection: clients see resets/refusals."""
        with self._lock:
            listener, self._listener = self._listener, None
            connections, self._connections = self._connections, []
        if listener is not None:
            listener.close()
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def __enter__(self) -> "TcpLink":
        self.restore()
        return self

    def __exit__(self, *exc) -> None:
        self.cut()

    # -- internals --------------------------------------------------------------------
    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    client.close()
                    upstream.close()
                    return
                self._connections += [client, upstream]
                self.accepted += 1
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        try:
            while True:
                for key, _ in selector.select():
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            selector.close()
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass
