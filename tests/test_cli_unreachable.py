"""A Kubernetes API that cannot be reached is one clear line and exit code 2 from every verb that talks
to it, whatever the way it fails: nothing listening, a server that accepts and never answers, and one
that answers something that is not HTTP (or not TLS). Run as a user runs it, in a subprocess, so any
warning a library logs or a traceback would show on stderr."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
VERBS = ("diagnose", "validate", "summary", "remediate")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def _silent_server() -> Iterator[int]:
    """Accepts connections (the kernel completes them into the backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield s.getsockname()[1]


@contextlib.contextmanager
def _garbage_server() -> Iterator[int]:
    """Answers every connection with bytes that are neither HTTP nor TLS, then closes it."""
    stop = threading.Event()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.1)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    conn.recv(65536)
                    conn.sendall(b"garbage, not a protocol\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def _setup(tmp_path: Path, name: str, server: str) -> Path:
    """A config whose kubeconfig points at `server`, with a short request timeout; returns the config."""
    kubeconfig = tmp_path / f"{name}.kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    config = tmp_path / f"{name}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "store": {"path": str(tmp_path / f"{name}.db")},
                "cluster": {"kubeconfig": str(kubeconfig), "request_timeout_seconds": 1},
            }
        )
    )
    return config


def test_every_verb_says_once_why_the_api_cannot_be_reached(tmp_path: Path) -> None:
    closed = _free_port()
    with _silent_server() as silent, _garbage_server() as garbage:
        cases = {
            "refused": (f"https://127.0.0.1:{closed}", "connection refused"),
            "silent": (f"https://127.0.0.1:{silent}", "no answer (timed out)"),
            "not-http": (
                f"http://127.0.0.1:{garbage}",
                "the answer is not HTTP (is this the API server's address?)",
            ),
            "not-tls": (f"https://127.0.0.1:{garbage}", "TLS handshake failed (wrong version number)"),
        }
        runs = {}
        for name, (server, _) in cases.items():
            config = _setup(tmp_path, name, server)
            for verb in VERBS:
                # All at once: the silent server costs each of them its timeouts, not the test their sum.
                runs[name, verb] = subprocess.Popen(
                    [sys.executable, "-m", "bot.cli", verb, "--config", str(config), "-n", "monitoring"],
                    cwd=tmp_path,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
        for (name, verb), proc in runs.items():
            out, err = proc.communicate(timeout=120)
            server, reason = cases[name]
            assert (proc.returncode, out, err) == (
                2,
                "",
                f"pitcrew {verb}: cannot reach the Kubernetes API at {server}: {reason}\n",
            ), (name, verb)
    # Nothing was written: no store for an unreachable cluster, no bundle, no backup.
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".kubeconfig"] * 4 + [".yaml"] * 4
