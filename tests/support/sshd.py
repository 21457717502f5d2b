"""A real OpenSSH server (Debian `openssh-server`) on 127.0.0.1 for host-command tests.

The fixture generates a host key and a client key with ssh-keygen, writes an sshd config that
accepts only that client key (as the current user; we run as root, so `PermitRootLogin
prohibit-password`), and runs `/usr/sbin/sshd -D -e -f CONFIG` in the foreground on a free port.
It also writes two known_hosts files: one pinning the real host key and one pinning a different
key, so tests can prove an unknown host key is refused.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"


@dataclass(frozen=True)
class SshdServer:
    """Fields named like a `hosts:` entry of the config, so it can stand in for one."""

    name: str
    address: str
    port: int
    username: str
    client_key_file: str
    known_hosts_file: str
    wrong_known_hosts_file: str
    data_path_prefixes: tuple[str, ...]
    nodes: tuple[str, ...]
    data_root: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


@pytest.fixture
def sshd_server(tmp_path: Path) -> Iterator[SshdServer]:
    if not os.access(SSHD, os.X_OK) or shutil.which("ssh-keygen") is None:
        pytest.fail(
            f"{SSHD} and ssh-keygen are required (Debian package openssh-server); tests/run.sh installs it"
        )
    workdir = tmp_path / "sshd"
    workdir.mkdir()
    data_root = tmp_path / "data"
    data_root.mkdir()
    host_pub = _keygen(workdir / "host_ed25519")
    client_pub = _keygen(workdir / "client_ed25519")
    other_pub = _keygen(workdir / "other_host_ed25519")
    (workdir / "authorized_keys").write_text(client_pub + "\n")
    port = _free_port()
    config = workdir / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {workdir / 'host_ed25519'}",
                f"PidFile {workdir / 'sshd.pid'}",
                f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                # pytest's temp dirs are not owned the way StrictModes wants.
                "StrictModes no",
                "LogLevel ERROR",
                "",
            ]
        )
    )
    known = workdir / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    wrong = workdir / "known_hosts_wrong"
    wrong.write_text(f"[127.0.0.1]:{port} {other_pub}\n")
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    log = (workdir / "sshd.log").open("wb")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.fail(f"sshd exited {proc.returncode}: {(workdir / 'sshd.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("sshd did not listen within 10 s")
                time.sleep(0.05)
        yield SshdServer(
            name="masternode",
            address="127.0.0.1",
            port=port,
            username=getpass.getuser(),
            client_key_file=str(workdir / "client_ed25519"),
            known_hosts_file=str(known),
            wrong_known_hosts_file=str(wrong),
            data_path_prefixes=(str(data_root),),
            nodes=("node-1",),
            data_root=data_root,
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()
