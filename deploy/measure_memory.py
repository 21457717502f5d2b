"""Measure pitcrew's memory the way deploy/deployment.yaml's requests and limits were sized.

Starts `pitcrew serve` with deploy/config.yaml (addresses and paths moved to loopback and a temp dir,
the Kubernetes API serving a diagnostic bundle (the seed incident) and Slack's Web API answered by small
local stand-ins), sends Alertmanager webhooks, waits until the workers have processed them, then reads
the process's resident memory from /proc/PID/status (VmRSS now, VmHWM the peak) and stops it with
SIGTERM, timing the graceful shutdown.

    python3 deploy/measure_memory.py [--webhooks 200] [--bundle examples/seed-incident]

Loopback only; every wait is bounded. Prints one line per figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import yaml
from aiohttp import ClientSession, ClientTimeout, web

REPO = Path(__file__).resolve().parent.parent
TOKEN = "measure-memory-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


_PLURALS = {
    "Endpoints": "endpoints",
    "StorageClass": "storageclasses",
    "EndpointSlice": "endpointslices",
}


class KubeStub:
    """The Kubernetes API of a diagnostic bundle (the seed incident by default), read-only: lists per
    namespace and kind, objects by name, pod logs; everything else is a 404."""

    def __init__(self, bundle: Path) -> None:
        from bot.snapshot import read_bundle_raw  # pitcrew's own bundle reader

        raw = read_bundle_raw(bundle)
        self.objects: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
        for _, obj in raw.objects:
            kind = str(obj["kind"])
            plural = _PLURALS.get(kind, kind.lower() + "s")
            namespace = str(obj.get("metadata", {}).get("namespace") or "")
            self.objects.setdefault((namespace, plural), []).append(obj)
        self.logs = {
            (k.namespace, k.pod, k.container, k.previous): "\n".join(v) + "\n" for k, v in raw.logs.items()
        }

    async def handle(self, request: web.Request) -> web.Response:
        parts = [p for p in request.path.split("/") if p]
        if parts == ["version"]:  # pitcrew's readiness probe asks whether the API server answers
            return web.json_response({"major": "1", "minor": "30", "gitVersion": "v1.30.0"})
        rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if request.method == "GET" and len(rest) == 1:
            items = self.objects.get((namespace, rest[0]), [])
            return web.json_response({"kind": "List", "apiVersion": "v1", "metadata": {}, "items": items})
        if request.method == "GET" and len(rest) == 3 and rest[0] == "pods" and rest[2] == "log":
            previous = request.query.get("previous") in ("true", "True", "1")
            key = (namespace, rest[1], request.query.get("container", ""), previous)
            if key in self.logs:
                return web.Response(text=self.logs[key])
        if request.method == "GET" and len(rest) == 2:
            for obj in self.objects.get((namespace, rest[0]), []):
                if obj.get("metadata", {}).get("name") == rest[1]:
                    return web.json_response(obj)
        status = {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404}
        return web.json_response(status, status=404)


async def _slack_stub(request: web.Request) -> web.Response:
    method = request.match_info["method"]
    body: dict[str, Any] = {"ok": True}
    if method == "auth.test":
        body.update(user_id="UPITCREW", bot_id="BPITCREW", team_id="T1", url="https://example.slack.com/")
    if method in ("chat.postMessage", "chat.update"):
        body.update(channel="C1", ts=f"{time.time():.6f}")
    return web.json_response(body)


def _webhook(i: int) -> dict[str, Any]:
    labels = {"alertname": "KubeServiceNoEndpoints", "namespace": "monitoring", "endpoint": f"svc-{i}"}
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="KubeServiceNoEndpoints", endpoint="svc-{i}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "pitcrew",
        "groupLabels": labels,
        "commonLabels": labels,
        "commonAnnotations": {"summary": "no endpoints"},
        "externalURL": "http://alertmanager.invalid",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": "no endpoints"},
                "startsAt": "2026-11-25T08:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.invalid/graph",
                "fingerprint": f"{i:016x}",
            }
        ],
    }


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def _tail(tmp: str) -> str:
    return Path(tmp, "stderr.log").read_text()[-3000:]


def _write_config(tmp: str, stub_port: int) -> tuple[Path, int]:
    """deploy/config.yaml with the address, the paths, the cluster and Slack moved to loopback/tmp."""
    config = yaml.safe_load((REPO / "deploy" / "config.yaml").read_text())
    port = _free_port()
    config["server"].update(listen_host="127.0.0.1", listen_port=port)
    config["store"]["path"] = f"{tmp}/pitcrew.db"
    config["remediation"]["backup_dir"] = f"{tmp}/backups"
    kubeconfig = Path(tmp, "kubeconfig")
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "stub", "cluster": {"server": f"http://127.0.0.1:{stub_port}"}}],
                "users": [{"name": "stub", "user": {"token": "stub"}}],
                "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}],
                "current-context": "stub",
            }
        )
    )
    config["cluster"].update(in_cluster=False, kubeconfig=str(kubeconfig))
    config["slack"]["api_base_url"] = f"http://127.0.0.1:{stub_port}/slack/api/"
    config_path = Path(tmp, "config.yaml")
    config_path.write_text(yaml.safe_dump(config))
    return config_path, port


async def _wait_ready(http: ClientSession, base: str, proc: asyncio.subprocess.Process) -> bool:
    for _ in range(200):  # up to ~20 s
        try:
            async with http.get(f"{base}/readyz") as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        if proc.returncode is not None:
            return False
        await asyncio.sleep(0.1)
    return False


def _pending(metrics: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("pitcrew_incidents{") and 'work_state="pending"' in line
    )


async def _wait_processed(http: ClientSession, base: str) -> str:
    """/metrics once no incident is pending any more (at most ~120 s)."""
    metrics = ""
    for _ in range(240):
        async with http.get(f"{base}/metrics") as resp:
            metrics = await resp.text()
        if _pending(metrics) == 0:
            break
        await asyncio.sleep(0.5)
    return metrics


async def measure(webhooks: int, bundle: Path, tmp: str, stderr: IO[str]) -> int:
    kube = KubeStub(bundle)
    stubs = web.Application()
    stubs.router.add_route("POST", "/slack/api/{method}", _slack_stub)
    stubs.router.add_route("*", "/{tail:.*}", kube.handle)
    runner = web.AppRunner(stubs)
    await runner.setup()
    stub_port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", stub_port).start()
    config_path, port = _write_config(tmp, stub_port)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        "PITCREW_WEBHOOK_TOKEN": TOKEN,
        "SLACK_BOT_TOKEN": "xoxb-measure",
        "SLACK_SIGNING_SECRET": "measure-signing-secret",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "serve", "--config", str(config_path),
        env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=stderr,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        async with ClientSession(timeout=ClientTimeout(total=10)) as http:
            if not await _wait_ready(http, base, proc):
                print(_tail(tmp), file=sys.stderr)
                print("pitcrew did not become ready", file=sys.stderr)
                return 1
            idle = _status_kib(proc.pid, "VmRSS")
            headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
            for i in range(webhooks):
                body = json.dumps(_webhook(i))
                async with http.post(f"{base}/webhooks/alertmanager", data=body, headers=headers) as resp:
                    if resp.status != 200:
                        print(f"webhook {i}: HTTP {resp.status} {await resp.text()}", file=sys.stderr)
            metrics = await _wait_processed(http, base)
            rss = _status_kib(proc.pid, "VmRSS")
            peak = _status_kib(proc.pid, "VmHWM")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), timeout=60)
        stopped = time.monotonic() - started
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await runner.cleanup()
    counted = [
        line
        for line in metrics.splitlines()
        if line.startswith(("pitcrew_webhooks_received_total", "pitcrew_incidents{"))
    ]
    print(f"idle RSS after start-up: {idle / 1024:.1f} MiB")
    print(f"RSS after {webhooks} webhooks: {rss / 1024:.1f} MiB")
    print(f"peak RSS (VmHWM): {peak / 1024:.1f} MiB")
    print("pitcrew's own counts:", *counted, sep="\n  ")
    print(f"SIGTERM -> exit {code} in {stopped:.1f} s")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--webhooks", type=int, default=200)
    parser.add_argument(
        "--bundle", type=Path, default=REPO / "examples" / "seed-incident", help="cluster to serve"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))  # run as a script from anywhere: pitcrew's own modules (bundle reader)
    with (
        tempfile.TemporaryDirectory(prefix="pitcrew-measure-") as tmp,
        Path(tmp, "stderr.log").open("w") as stderr,
    ):
        return asyncio.run(measure(args.webhooks, args.bundle, tmp, stderr))


if __name__ == "__main__":
    sys.exit(main())
