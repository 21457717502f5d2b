"""A real Alertmanager (Debian's prometheus-alertmanager) on 127.0.0.1 for integration tests.

`alertmanager_factory(webhook_url, credentials)` starts one Alertmanager whose only receiver is a
webhook to `webhook_url` (or, given a list, one webhook config per URL: every replica) with
`http_config.authorization.credentials`, `send_resolved: true`,
`group_wait`/`group_interval` 1 s and a long `repeat_interval`, on free ports, with no gossip
(`--cluster.listen-address=`), a fresh `--storage.path` and a fixed `--web.external-url`. Every
Alertmanager started is stopped at the end of the test.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ALERTMANAGER_BIN = "/usr/bin/prometheus-alertmanager"
AMTOOL_BIN = "/usr/bin/amtool"
START_TIMEOUT_SECONDS = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    predicate: Callable[[], bool], *, timeout: float, interval: float = 0.1, what: str = "condition"
) -> None:
    """Poll `predicate` until true; fail the test after `timeout` seconds (bounded, never forever)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def http_json(
    method: str,
    url: str,
    payload: Any = None,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5,
) -> tuple[int, Any]:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
            status: int = response.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    text = body.decode("utf-8", "replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def alertmanager_config(
    webhook_url: str | Sequence[str],
    credentials: str,
    *,
    group_by: Sequence[str] = ("alertname", "namespace"),
) -> str:
    config = {
        "route": {
            "receiver": "pitcrew",
            "group_by": list(group_by),
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "24h",
        },
        "receivers": [
            {
                "name": "pitcrew",
                # One webhook config per URL: the receiver targets every pitcrew replica.
                "webhook_configs": [
                    {
                        "url": url,
                        "send_resolved": True,
                        "http_config": {"authorization": {"type": "Bearer", "credentials": credentials}},
                    }
                    for url in ([webhook_url] if isinstance(webhook_url, str) else webhook_url)
                ],
            }
        ],
    }
    return json.dumps(config, indent=2)  # JSON is YAML


@dataclass
class Alertmanager:
    url: str  # also its --web.external-url
    process: subprocess.Popen[bytes]
    log_path: Path

    def post_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """POST alerts to API v2 (`labels`, `annotations`, optional `startsAt`/`endsAt`)."""
        status, body = http_json("POST", f"{self.url}/api/v2/alerts", list(alerts))
        if status != 200:
            raise AssertionError(f"Alertmanager refused alerts: {status} {body}")

    def alerts(self) -> list[dict[str, Any]]:
        status, body = http_json("GET", f"{self.url}/api/v2/alerts")
        assert status == 200, body
        assert isinstance(body, list)
        return body

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_alertmanager(
    workdir: Path, webhook_url: str | Sequence[str], credentials: str, **config_options: Any
) -> Alertmanager:
    if not Path(ALERTMANAGER_BIN).exists():
        pytest.fail(f"{ALERTMANAGER_BIN} is missing: apt-get install prometheus-alertmanager")
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "alertmanager.yml"
    config_path.write_text(alertmanager_config(webhook_url, credentials, **config_options))
    if shutil.which(AMTOOL_BIN):
        check = subprocess.run(
            [AMTOOL_BIN, "check-config", str(config_path)], capture_output=True, text=True, timeout=30
        )
        assert check.returncode == 0, check.stdout + check.stderr
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = workdir / "alertmanager.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                ALERTMANAGER_BIN,
                f"--config.file={config_path}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--web.external-url={url}",
                "--cluster.listen-address=",
                "--log.level=debug",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    am = Alertmanager(url=url, process=process, log_path=log_path)

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"Alertmanager exited with {process.returncode}:\n{am.log()[-3000:]}")
        try:
            return http_json("GET", f"{url}/-/ready", timeout=1)[0] == 200
        except OSError:
            return False

    try:
        wait_until(ready, timeout=START_TIMEOUT_SECONDS, what="Alertmanager to be ready")
    except BaseException:
        am.stop()
        raise
    return am


@pytest.fixture
def alertmanager_factory(tmp_path: Path) -> Iterator[Callable[..., Alertmanager]]:
    started: list[Alertmanager] = []

    def factory(webhook_url: str | Sequence[str], credentials: str, **config_options: Any) -> Alertmanager:
        am = start_alertmanager(
            tmp_path / f"alertmanager-{len(started)}", webhook_url, credentials, **config_options
        )
        started.append(am)
        return am

    yield factory
    for am in started:
        am.stop()
