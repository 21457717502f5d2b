"""An idle service does not load the SDKs it has no work for yet (behaviour, not timing).

Each adapter is the only importer of its SDK and imports it on first use: kubernetes at the first
cluster call, asyncssh at the first host action, apscheduler when a schedule is configured. Checked
in a fresh interpreter (this test process has imported everything already)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAZY = ("kubernetes", "asyncssh", "apscheduler")

_SERVE_IDLE = """
import asyncio, json, sys
from aiohttp import web
from bot.app import create_app
from bot.config import parse_config

async def main():
    config = parse_config(
        {
            "store": {"path": sys.argv[1] + "/pitcrew.db"},
            "webhook": {"bearer_token_env": "T"},
            "cluster": {"kubeconfig": sys.argv[1] + "/kubeconfig", "namespaces": ["monitoring"]},
        },
        env={"T": "token-0123456789"},
    )
    runner = web.AppRunner(create_app(config))
    await runner.setup()  # every cleanup context's start-up half: store, cluster, workers, ...
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    started = [m for m in %(lazy)r if m in sys.modules]
    app = runner.app
    from bot import keys
    try:
        await app[keys.CLUSTER].ping()  # the first cluster call loads the client
    finally:
        after_call = [m for m in %(lazy)r if m in sys.modules]
        await runner.cleanup()
    print(json.dumps({"started": started, "after_call": after_call}))

asyncio.run(main())
"""


def _run(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_importing_the_service_loads_no_lazy_sdk() -> None:
    code = f"import sys, bot.cli, bot.cli.serve, bot.app; print([m for m in {LAZY!r} if m in sys.modules])"
    assert _run(code) == "[]"


def test_a_started_service_loads_the_kubernetes_client_on_its_first_cluster_call(tmp_path: Path) -> None:
    # No kubeconfig at that path: the call fails, but only once it has been made is the client loaded.
    result = json.loads(_run(_SERVE_IDLE % {"lazy": LAZY}, str(tmp_path)))
    assert result["started"] == []
    assert result["after_call"] == ["kubernetes"]
