"""A MongoDB-wire-compatible server for the local stack: secantusdb, from PyPI.

Why secantusdb and not FerretDB: the results need bulk ``ReplaceOne`` upserts (Beam's
WriteToMongoDB), finds, and the ``$lookup`` aggregation that joins fraudulent transactions
to their users. FerretDB 1.x answers ``$lookup`` with "not implemented", deadlocks on a
bulk_write of more matching upserts than its connection pool, and scans the whole table
for each ``_id`` upsert. secantusdb (a wire-protocol server on WiredTiger) passed all of
it, Beam's WriteToMongoDB run twice included. It is beta software under GPL-2.0, used here
only as a local test server; docker-compose runs the real ``mongo`` image.

It is installed in its own virtualenv under the download cache (its dependencies stay
out of the project venv) and runs as
``secantusd-py --host 127.0.0.1 --port 27017 --storage-path .state/mongo/data --standalone``
from a clean folder, so no stray ``secantusd.toml`` is picked up. Health: ``ping``.
"""

from __future__ import annotations

import socket
import struct
import sys

from stack import config, process
from stack.base import Service
from stack.errors import StackError


def _ping(host: str, port: int, timeout_s: float = 2.0) -> None:
    """Sends ``{ping: 1}`` as an OP_MSG and checks the reply says ok (stdlib only)."""
    # BSON {"ping": 1, "$db": "admin"}
    body = b"\x10ping\x00" + struct.pack("<i", 1) + b"\x02$db\x00" + struct.pack("<i", 6)
    body += b"admin\x00"
    document = struct.pack("<i", len(body) + 5) + body + b"\x00"
    payload = struct.pack("<I", 0) + b"\x00" + document  # flags, section kind 0
    header = struct.pack("<iiii", 16 + len(payload), 1, 0, 2013)  # OP_MSG
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(header + payload)
        reply = sock.recv(65536)
    if len(reply) < 21 or b"ok\x00" not in reply:
        raise StackError(f"unexpected reply to ping: {reply[:60]!r}")


class Mongo(Service):
    name = "mongo"
    port_name = "MONGO"
    start_timeout_s = 60.0

    @property
    def version(self) -> str:
        return config.versions()["SECANTUSDB_VERSION"]

    @property
    def venv(self):
        return config.cache_dir() / f"secantusdb-{self.version}"

    @property
    def binary(self):
        return self.venv / "bin" / "secantusd-py"

    def is_installed(self) -> bool:
        return self.binary.exists()

    def install(self) -> None:
        self.say("installing secantusdb %s in its own venv with pip …", self.version)
        self.venv.parent.mkdir(parents=True, exist_ok=True)
        process.run(
            [sys.executable, "-m", "venv", str(self.venv)],
            log_path=self.install_log_path, what="[mongo] python -m venv",
        )
        process.run(
            [str(self.venv / "bin" / "pip"), "install", "-q", f"secantusdb=={self.version}"],
            log_path=self.install_log_path, what="[mongo] pip install secantusdb",
        )

    def prepare(self) -> None:
        (self.state_dir / "data").mkdir(parents=True, exist_ok=True)
        (self.state_dir / "run").mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [
            "/usr/bin/env", "-C", str(self.state_dir / "run"), str(self.binary),
            "--host", config.HOST, "--port", str(self.port),
            "--storage-path", str(self.state_dir / "data"), "--standalone",
            "--log-level", "WARNING",
        ]

    def probe(self) -> None:
        _ping(config.HOST, self.port)

    def endpoints(self) -> dict:
        return {"uri": f"mongodb://{self.address}/", "address": self.address}
