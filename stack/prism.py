"""Prism, Beam's portable reference runner, built with the Go toolchain into the cache.

Beam's PrismRunner downloads a release binary from GitHub unless given ``--prism_location``;
here Prism is built from the Go module proxy instead, pinned to ``BEAM_VERSION``::

    go install github.com/apache/beam/sdks/v2/go/cmd/prism@v<BEAM_VERSION>

into ``<cache>/prism-v<BEAM_VERSION>/prism`` (about 90 s on 2 cores the first time; the
module and build caches are Go's own, shared with the MinIO build). The job finds the binary
there by its name (``pipeline.runners.flags.prism_location``), so
``python -m pipeline.main --runner=PrismRunner`` runs on it once it is built.

Prism is not a service: each PrismRunner job starts its own Prism process and stops it
when it exits. ``python -m stack install prism`` builds it; :func:`prism_binary` builds it
on first use (the tests call it).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from pathlib import Path

from pipeline.runners import flags
from stack import config
from stack.errors import StackError
from stack.jobserver import run_with_progress

logger = logging.getLogger(__name__)

PRISM_PACKAGE = "github.com/apache/beam/sdks/v2/go/cmd/prism"


def _say(message: str) -> None:
    logger.info("[prism] %s", message)


class Prism:
    """The Prism binary: installed like a service's binaries, never started by the stack."""

    name = "prism"

    @property
    def version(self) -> str:
        """The Go module version: the Python SDK's, e.g. ``v2.77.0``."""
        return f"v{config.version('BEAM_VERSION')}"

    @property
    def binary(self) -> Path:
        return config.cache_dir() / flags.prism_binary_name()

    @property
    def install_log_path(self) -> Path:
        return config.state_dir(self.name) / "install.log"

    def is_installed(self) -> bool:
        return self.binary.exists()

    def install(self) -> Path:
        """Builds the binary unless it exists (one build at a time); returns its path."""
        self.binary.parent.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.binary.parent.with_name(self.binary.parent.name + ".lock")
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not self.is_installed():
                self._build()
        return self.binary

    def _build(self) -> None:
        if shutil.which("go") is None:
            raise StackError(
                "[prism] needs the Go toolchain on PATH (https://go.dev/doc/install), or "
                "RISKPIPE_PRISM_LOCATION naming a prism binary"
            )
        # Built into a folder of its own, renamed when complete: an interrupted build
        # leaves no half-written binary where the job looks.
        partial = self.binary.parent.with_name(self.binary.parent.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        _say(
            f"building Prism {self.version} with go install (about 90 s the first time; "
            f"log: {self.install_log_path})"
        )
        run_with_progress(
            ["go", "install", f"{PRISM_PACKAGE}@{self.version}"],
            log_path=self.install_log_path,
            what="[prism] go install prism",
            say=_say,
            env={**os.environ, "GOBIN": str(partial), "CGO_ENABLED": "0"},
        )
        if not (partial / "prism").exists():
            raise StackError(f"[prism] go install built no prism; see {self.install_log_path}")
        shutil.rmtree(self.binary.parent, ignore_errors=True)
        partial.rename(self.binary.parent)
        _say(f"Prism binary: {self.binary}")


def prism_binary() -> Path:
    """The cached Prism binary of ``BEAM_VERSION``, built on first use."""
    return Prism().install()
