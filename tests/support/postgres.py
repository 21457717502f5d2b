"""A real PostgreSQL server (Debian `postgresql`) on 127.0.0.1 for store and HA tests.

`postgres_server` (session): `initdb` in a fresh temp dir and `postgres` in the foreground on a free
loopback port, its unix socket in the same temp dir, fsync off (tests need speed, not durability),
torn down (fast shutdown, dir removed) at session end. PostgreSQL refuses to run as root, so when the
tests run as root both run as `nobody` (`runuser -u nobody --`) in a temp dir `nobody` owns; as any
other user they run as that user.

Logins over TCP need a password (scram-sha-256), so the store's `password_env` path is exercised for
real; the superuser is `pitcrew` with a random password.

`postgres_db` (per test): a new, empty database on that server; `.url` (no password in it, as the
config wants) and `.password`.

A missing server is a test failure, not a skip: tests/run.sh installs the package.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SUPERUSER = "pitcrew"
RUN_AS_WHEN_ROOT = "nobody"
START_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    socket_dir: str
    data_dir: str
    bin_dir: str
    run_as: str | None  # the unprivileged user the server runs as, when the tests run as root

    def url(self, database: str = "postgres", **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}" + (f"?{query}" if query else "")

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one statement as the superuser through the unix socket; returns psql's unaligned output."""
        result = subprocess.run(
            [
                *_as_user(self.run_as),
                f"{self.bin_dir}/psql",
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.socket_dir,
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                database,
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(f"psql {sql!r} failed: {result.stderr.strip()}")
        return result.stdout.strip()


@dataclass(frozen=True)
class PostgresDatabase:
    server: PostgresServer
    name: str

    @property
    def url(self) -> str:
        return self.server.url(self.name)

    @property
    def password(self) -> str:
        return self.server.password


def postgres_bin_dir() -> str | None:
    """The newest installed server's bin dir (Debian puts them under /usr/lib/postgresql/N/bin)."""
    found = [d for d in glob.glob("/usr/lib/postgresql/*/bin") if os.access(f"{d}/initdb", os.X_OK)]
    if not found:
        return None
    return max(found, key=lambda d: int(Path(d).parent.name) if Path(d).parent.name.isdigit() else 0)


def _as_user(user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--"] if user else []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_postgres(*, fsync: bool = False) -> tuple[PostgresServer, subprocess.Popen[bytes]]:
    """Tests run with fsync off (speed); a benchmark asks for fsync on, as in production."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.fail("PostgreSQL is required (Debian package postgresql); tests/run.sh installs it")
    run_as = RUN_AS_WHEN_ROOT if os.geteuid() == 0 else None
    # Not under pytest's tmp dir: that is 0700 root's, which `nobody` cannot enter.
    root = Path(tempfile.mkdtemp(prefix="pitcrew-pg-"))
    os.chmod(root, 0o700)
    if run_as is not None:
        shutil.chown(root, run_as)
    data_dir, socket_dir = root / "data", root / "sock"
    password = secrets.token_urlsafe(18)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if run_as is not None:
        shutil.chown(pwfile, run_as)
    socket_dir.mkdir()
    if run_as is not None:
        shutil.chown(socket_dir, run_as)
    subprocess.run(
        [
            *_as_user(run_as),
            f"{bin_dir}/initdb",
            "-D",
            str(data_dir),
            "-U",
            SUPERUSER,
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pwfile.unlink()
    port = _free_port()
    log = open(root / "postgres.log", "wb")  # noqa: SIM115 - closed with the process below
    process = subprocess.Popen(
        [
            *_as_user(run_as),
            f"{bin_dir}/postgres",
            "-D",
            str(data_dir),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={socket_dir}",
            *(
                ()
                if fsync
                else ("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
            ),
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=32MB",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    server = PostgresServer(
        host="127.0.0.1",
        port=port,
        user=SUPERUSER,
        password=password,
        socket_dir=str(socket_dir),
        data_dir=str(data_dir),
        bin_dir=bin_dir,
        run_as=run_as,
    )
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        ready = subprocess.run(
            [f"{bin_dir}/pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)], check=False, timeout=10
        )
        if ready.returncode == 0:
            return server, process
        if process.poll() is not None or time.monotonic() > deadline:
            stop_postgres(server, process, keep_log=True)
            text = (root / "postgres.log").read_text(errors="replace")[-2000:]
            pytest.fail(f"postgres did not start on port {port}:\n{text}")
        time.sleep(0.1)


def stop_postgres(
    server: PostgresServer, process: subprocess.Popen[bytes], *, keep_log: bool = False
) -> None:
    if process.poll() is None:
        # SIGINT is PostgreSQL's "fast" shutdown: clients are disconnected, no waiting on them.
        # runuser forwards the signal; the process group catches anything left.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    if not keep_log:
        shutil.rmtree(Path(server.data_dir).parent, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server, process = start_postgres()
    try:
        yield server
    finally:
        stop_postgres(server, process)


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> Iterator[PostgresDatabase]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    postgres_server.psql(f'CREATE DATABASE "{name}"')
    try:
        yield PostgresDatabase(postgres_server, name)
    finally:
        postgres_server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
