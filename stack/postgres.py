"""PostgreSQL from Debian's package, as a private cluster in ``<state>/postgres/data``.

Install: ``apt-get install postgresql-<POSTGRES_MAJOR>`` if its binaries are missing (the
package's own cluster is never started, see ``stack/apt.py``). Start: ``initdb`` once, then
``postgres -D data`` listening on 127.0.0.1 only, with its Unix socket in our state folder.
As root, the server runs as the ``postgres`` system user (PostgreSQL refuses to run as root).

After start, the role and database from ``RISKPIPE_PG_USER/PASSWORD/DB`` are created and the
SQL files of ``migrations/`` are applied in name order, each once, in its own transaction,
recorded in ``public.schema_migrations``.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path
from urllib.parse import quote

from stack import apt, config, process
from stack.base import Service
from stack.errors import StackError

MIGRATIONS_DIR = config.REPO_ROOT / "migrations"
SYSTEM_USER = "postgres"
SUPERUSER = "postgres"

BOOTSTRAP_SQL = """
SELECT format('CREATE ROLE %I LOGIN CREATEDB', :'user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \\gexec
ALTER ROLE :"user" PASSWORD :'password';
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \\gexec
"""

MIGRATIONS_TABLE_SQL = """
CREATE TABLE IF NOT EXISTS public.schema_migrations (
    version    TEXT PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
"""


def _searchable_by_others(folder: Path) -> bool:
    """True when every existing parent of ``folder`` lets any user pass through."""
    return all(
        parent.stat().st_mode & 0o001 for parent in folder.parents if parent.exists()
    )


class Postgres(Service):
    name = "postgres"
    port_name = "PG"
    # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM would wait for every client to leave.
    stop_signal = signal.SIGINT

    @property
    def bin_dir(self) -> Path:
        return Path("/usr/lib/postgresql") / config.version("POSTGRES_MAJOR") / "bin"

    @property
    def cluster_dir(self) -> Path:
        """Where the cluster lives: the state folder, if the system user can reach it.

        PostgreSQL refuses to run as root, so as root the cluster runs as the ``postgres``
        user, which cannot enter a checkout under a private home (``/root`` is 0700). Then
        the cluster goes to a folder under /var/tmp named after the state folder.
        """
        if self.run_as is None or _searchable_by_others(self.state_dir):
            return self.state_dir
        digest = hashlib.sha1(str(self.state_dir).encode()).hexdigest()[:12]
        return Path("/var/tmp") / f"riskpipe-postgres-{digest}"

    @property
    def data_dir(self) -> Path:
        return self.cluster_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.cluster_dir / "run"

    @property
    def run_as(self) -> str | None:  # PostgreSQL refuses to run as root
        return SYSTEM_USER if os.geteuid() == 0 else None

    def is_installed(self) -> bool:
        return (self.bin_dir / "postgres").exists() and (self.bin_dir / "psql").exists()

    def install(self) -> None:
        package = f"postgresql-{config.version('POSTGRES_MAJOR')}"
        self.say("installing %s with apt-get …", package)
        apt.install(
            [package], log_path=self.install_log_path, system_services=("postgresql",)
        )

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if self.run_as:
            self._hand_over_to_system_user()
        if not (self.data_dir / "PG_VERSION").exists():
            self.say("initdb %s", self.data_dir)
            process.run(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                ],
                log_path=self.log_path,
                what="[postgres] initdb",
                user=self.run_as,
                group=self.run_as,
                extra_groups=[] if self.run_as else None,
            )

    def _hand_over_to_system_user(self) -> None:
        """Makes the data and socket folders the system user's, and checks it can reach them."""
        try:
            account = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            process.run(
                [
                    "useradd",
                    "--system",
                    "--user-group",
                    "--no-create-home",
                    SYSTEM_USER,
                ],
                log_path=self.install_log_path,
                what=f"creating user {SYSTEM_USER}",
            )
            account = pwd.getpwnam(SYSTEM_USER)
        for parent in self.data_dir.parents:
            mode = parent.stat().st_mode
            if parent.stat().st_uid != account.pw_uid and not mode & 0o001:
                raise StackError(
                    f"[postgres] user {SYSTEM_USER} cannot reach {self.data_dir}: {parent} is not "
                    "searchable by others; set RISKPIPE_STATE_DIR to a folder it can reach"
                )
        for folder in (self.data_dir, self.socket_dir):
            shutil.chown(folder, account.pw_uid, account.pw_gid)
            for path in folder.rglob("*"):
                if path.stat().st_uid != account.pw_uid:
                    os.chown(
                        path, account.pw_uid, account.pw_gid, follow_symlinks=False
                    )
        self.data_dir.chmod(0o700)

    def command(self) -> list[str]:
        return [
            str(self.bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            "-c",
            f"listen_addresses={config.HOST}",
            "-c",
            f"port={self.port}",
            "-c",
            f"unix_socket_directories={self.socket_dir}",
        ]

    def psql(
        self,
        sql: str,
        *,
        as_app_user: bool = False,
        variables: dict | None = None,
        single_transaction: bool = False,
    ) -> str:
        """Runs ``sql`` with psql, as the superuser over the socket or as the app user over TCP.

        Returns:
            The unaligned, tuples-only output.
        """
        if as_app_user:
            target = [
                "-h",
                config.HOST,
                "-U",
                config.pg_user(),
                "-d",
                config.pg_database(),
            ]
        else:
            target = ["-h", str(self.socket_dir), "-U", SUPERUSER, "-d", "postgres"]
        args = [
            str(self.bin_dir / "psql"),
            *target,
            "-p",
            str(self.port),
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            *(["--single-transaction"] if single_transaction else []),
        ]
        for key, value in (variables or {}).items():
            args += ["-v", f"{key}={value}"]
        env = {
            **os.environ,
            "PGPASSWORD": config.pg_password(),
            "PGCONNECT_TIMEOUT": "3",
        }
        result = subprocess.run(
            [*args, "-f", "-"],
            check=False,
            input=sql,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        if result.returncode != 0:
            raise StackError(
                result.stderr.strip() or f"psql exited {result.returncode}"
            )
        return result.stdout

    def probe(self) -> None:
        if self.psql("SELECT 1").strip() != "1":
            raise StackError("SELECT 1 did not return 1")

    def after_start(self) -> None:
        self.psql(
            BOOTSTRAP_SQL,
            variables={
                "user": config.pg_user(),
                "password": config.pg_password(),
                "db": config.pg_database(),
            },
        )
        self.migrate()

    def migrate(self) -> list[str]:
        """Applies the migrations not yet recorded; returns the names applied now."""
        self.psql(MIGRATIONS_TABLE_SQL, as_app_user=True)
        applied = set(
            self.psql(
                "SELECT version FROM public.schema_migrations", as_app_user=True
            ).split()
        )
        done = []
        for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
            if path.name in applied:
                continue
            self.say("applying migration %s", path.name)
            record = (
                "INSERT INTO public.schema_migrations (version) VALUES (:'version');"
            )
            try:
                self.psql(
                    path.read_text() + "\n" + record,
                    as_app_user=True,
                    variables={"version": path.name},
                    single_transaction=True,
                )
            except StackError as exc:
                raise StackError(f"[postgres] migration {path} failed: {exc}") from None
            done.append(path.name)
        return done

    def endpoints(self) -> dict:
        user, password, db = (
            config.pg_user(),
            config.pg_password(),
            config.pg_database(),
        )
        credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
        return {
            "host": config.HOST,
            "port": self.port,
            "user": user,
            "password": password,
            "database": db,
            "dsn": f"postgresql://{credentials}@{config.HOST}:{self.port}/{quote(db, safe='')}",
            "sqlalchemy_url": f"postgresql+psycopg2://{credentials}@{config.HOST}:{self.port}/{db}",
        }
