"""A real Prometheus (Debian's `prometheus`) on 127.0.0.1, scraping itself every second, for tests that
query it (the alert graph's query_range). Fresh TSDB per test, free port, stopped at the end."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.alertmanager import free_port, http_json, wait_until

PROMETHEUS_BIN = "/usr/bin/prometheus"
START_TIMEOUT_SECONDS = 30.0


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def samples(self, expr: str) -> int:
        """How many samples of `expr` the last minute holds (0 if the query fails)."""
        query = urllib.parse.urlencode({"query": f"count_over_time(({expr})[1m:1s])"})
        try:
            status, body = http_json("GET", f"{self.url}/api/v1/query?{query}", timeout=2)
        except OSError:
            return 0
        if status != 200 or not isinstance(body, dict):
            return 0
        result = body.get("data", {}).get("result", [])
        return int(float(result[0]["value"][1])) if result else 0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_prometheus(workdir: Path) -> Prometheus:
    if not Path(PROMETHEUS_BIN).exists():
        pytest.fail(f"{PROMETHEUS_BIN} is missing: apt-get install prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
        ],
    }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(json.dumps(config))  # JSON is YAML
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                PROMETHEUS_BIN,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    prom = Prometheus(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"Prometheus exited with {process.returncode}:\n{prom.log()[-3000:]}")
        try:
            return http_json("GET", f"{prom.url}/-/ready", timeout=1)[0] == 200
        except OSError:
            return False

    try:
        wait_until(ready, timeout=START_TIMEOUT_SECONDS, what="Prometheus to be ready")
        # A few scrapes of itself, so a range query has points to draw.
        wait_until(lambda: prom.samples("up") >= 3, timeout=START_TIMEOUT_SECONDS, what="3 scrapes")
    except BaseException:
        prom.stop()
        raise
    return prom


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    prom = start_prometheus(tmp_path / "prometheus")
    try:
        yield prom
    finally:
        prom.stop()
