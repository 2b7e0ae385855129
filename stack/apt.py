"""Installs Debian packages without letting their maintainer scripts start system services.

Packages such as ``postgresql-15`` and ``prometheus`` start a system-wide server from their
postinst, which would take the ports the stack wants. A temporary ``/usr/sbin/policy-rc.d``
that exits 101 ("action forbidden") stops invoke-rc.d from starting anything while we install.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from stack import process
from stack.errors import StackError

POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
APT_LISTS = Path("/var/lib/apt/lists")
APT_LISTS_MAX_AGE_S = 24 * 3600


@contextlib.contextmanager
def _services_not_started():
    if POLICY_RC_D.exists():  # someone else's policy already decides: leave it alone
        yield
        return
    POLICY_RC_D.write_text(
        "#!/bin/sh\n# Written by riskpipe's stack/apt.py during apt-get install.\nexit 101\n"
    )
    POLICY_RC_D.chmod(0o755)
    try:
        yield
    finally:
        POLICY_RC_D.unlink(missing_ok=True)


def _lists_are_fresh() -> bool:
    lists = [p for p in APT_LISTS.glob("*_Packages*")]
    return (
        bool(lists)
        and time.time() - max(p.stat().st_mtime for p in lists) < APT_LISTS_MAX_AGE_S
    )


def install(
    packages: list[str], *, log_path: Path, system_services: tuple[str, ...] = ()
) -> None:
    """``apt-get install -y --no-install-recommends packages`` (as root), services not started.

    Args:
        system_services: systemd units the packages enable; disabled again on a systemd
            machine so that they do not take our ports at the next boot.
    """
    if os.geteuid() != 0:
        raise StackError(
            f"need root to install {' '.join(packages)}: run "
            f"`sudo apt-get install -y {' '.join(packages)}` and try again"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _lists_are_fresh():
        process.run(
            ["apt-get", "update"], log_path=log_path, what="apt-get update", env=env
        )
    with _services_not_started():
        process.run(
            ["apt-get", "install", "-y", "--no-install-recommends", *packages],
            log_path=log_path,
            what=f"apt-get install {' '.join(packages)}",
            env=env,
        )
    if system_services and Path("/run/systemd/system").is_dir():
        process.run(
            ["systemctl", "disable", "--now", *system_services],
            log_path=log_path,
            what="systemctl disable",
        )
