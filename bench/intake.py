"""Webhook intake benchmark: pitcrew's real app (real SQLite store on a temp dir) against a bare aiohttp
handler that answers 200 without work, in the same run, on loopback.

    python -m bench.intake [--concurrency 32] [--duration 10] [--rate 500] [--rate-duration 10]
                           [--rounds 5] [--synchronous normal|full]

Each server runs in its own process; this process is the client. Both servers run throughout and
the measurement rounds alternate between them. Two measurements per server:
1. closed loop: `concurrency` clients post back to back for `duration` s -> throughput, p50/p99;
2. open loop: `rate` requests/s on a fixed schedule for `rate-duration` s -> p50/p99, latency
   measured from the scheduled send time (so a stall is not hidden by the client waiting).
Every payload is a new alert group (one incident insert, one alert insert, one commit), and the
workers run a stand-in diagnosis (0.2 s wait, then a store write) with the configured concurrency.
After the run, pitcrew's store is read back: every acknowledged alert must be in it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing
import multiprocessing.connection
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import aiohttp
from aiohttp import web

TOKEN = "bench-token-0123456789abcdef"
# Stand-in for a diagnosis: cluster reads take time, then the findings are stored.
DIAGNOSIS_SECONDS = 0.2


# ---------------------------------------------------------------------------------------------
# Servers (each in its own process)
# ---------------------------------------------------------------------------------------------


def _serve(
    make_app: Callable[[], Awaitable[web.Application]],
    conn: multiprocessing.connection.Connection,
) -> None:
    async def main() -> None:
        app = await make_app()
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        conn.send(runner.addresses[0][1])
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # wait for "stop"
        await runner.cleanup()
        conn.send("stopped")

    asyncio.run(main())


async def _bare_app() -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/webhooks/alertmanager", ok)
    return app


@dataclass(frozen=True)
class _PitcrewApp:
    """Picklable factory for the pitcrew app in the server process."""

    db: str
    log: str
    synchronous: str

    async def __call__(self) -> web.Application:
        from bot import keys
        from bot.app import create_app
        from bot.config import parse_config
        from bot.logging import configure_logging, secrets_in

        config = parse_config(
            {
                "store": {"path": self.db, "synchronous": self.synchronous},
                "webhook": {"bearer_token_env": "BENCH_TOKEN"},
                "logging": {"level": "info"},
            },
            env={"BENCH_TOKEN": TOKEN},
        )
        # Real logging at the configured level (one line per created/updated incident), to a file.
        configure_logging(
            format=config.logging.format,
            level=config.logging.level,
            secrets=secrets_in(config),
            stream=_append(self.log),
        )
        app_box: list[web.Application] = []

        async def diagnose_nothing(incident_id: int) -> None:
            await asyncio.sleep(DIAGNOSIS_SECONDS)
            await app_box[0][keys.STORE].save_diagnosis(incident_id, (), dry_run_diff=None, error=None)

        app = create_app(config, processor=diagnose_nothing)
        app_box.append(app)
        return app


def _append(path: str) -> TextIO:
    return open(path, "a")  # the log lives as long as the server process


class Server:
    def __init__(self, make_app: Callable[[], Awaitable[web.Application]]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_serve, args=(make_app, child), daemon=True)

    def __enter__(self) -> str:
        self._process.start()
        if not self._conn.poll(30):
            raise RuntimeError("server did not start within 30 s")
        return f"http://127.0.0.1:{self._conn.recv()}/webhooks/alertmanager"

    def __exit__(self, *exc: object) -> None:
        self._conn.send("stop")
        if self._conn.poll(30):
            self._conn.recv()
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()


# ---------------------------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------------------------


def _payload(n: int) -> bytes:
    name = f"Bench{n}"
    alerts = [
        {
            "status": "firing",
            "labels": {
                "alertname": name,
                "namespace": "monitoring",
                "pod": f"pod-{n}",
                "severity": "warning",
            },
            "annotations": {"summary": f"{name} on pod-{n}", "description": "benchmark alert " + "x" * 200},
            "startsAt": "2026-11-24T10:00:00.000Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
            "fingerprint": f"{n:016x}",
        }
    ]
    return json.dumps(
        {
            "version": "4",
            "groupKey": f'{{}}:{{alertname="{name}"}}',
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "pitcrew",
            "groupLabels": {"alertname": name},
            "commonLabels": alerts[0]["labels"],
            "commonAnnotations": alerts[0]["annotations"],
            "externalURL": "http://alertmanager:9093",
            "alerts": alerts,
        }
    ).encode()


@dataclass
class Result:
    sent: int
    ok: int
    errors: int
    seconds: float
    latencies: list[float]
    acked: list[str]

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


async def _post(session: aiohttp.ClientSession, url: str, n: int, result: Result, since: float) -> None:
    try:
        async with session.post(url, data=_payload(n), headers=HEADERS) as response:
            await response.read()
            status = response.status
    except aiohttp.ClientError:
        status = 0
    result.sent += 1
    if status == 200:
        result.ok += 1
        result.latencies.append(time.perf_counter() - since)
        result.acked.append(f"{n:016x}")
    else:
        result.errors += 1


async def closed_loop(url: str, concurrency: int, duration: float, counter: itertools.count[int]) -> Result:
    result = Result(0, 0, 0, 0.0, [], [])
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        deadline = started + duration

        async def client() -> None:
            while time.perf_counter() < deadline:
                await _post(session, url, next(counter), result, time.perf_counter())

        await asyncio.gather(*(client() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - started
    return result


async def open_loop(url: str, rate: float, duration: float, counter: itertools.count[int]) -> Result:
    result = Result(0, 0, 0, 0.0, [], [])
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        tasks: list[asyncio.Task[None]] = []
        total = int(rate * duration)
        for i in range(total):
            scheduled = started + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_post(session, url, next(counter), result, scheduled)))
        await asyncio.gather(*tasks)
        result.seconds = time.perf_counter() - started
    return result


async def warm_up(url: str, counter: itertools.count[int]) -> None:
    async with aiohttp.ClientSession() as session:
        result = Result(0, 0, 0, 0.0, [], [])
        for _ in range(50):
            await _post(session, url, next(counter), result, time.perf_counter())
        if result.ok != 50:
            raise RuntimeError(f"warm-up failed: {result.errors} errors")


def durable(db: Path, acked: set[str]) -> tuple[int, int]:
    """(acknowledged alerts found in the store, acknowledged alerts in all)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        stored = {row[0] for row in conn.execute("SELECT fingerprint FROM alerts")}
    return len(acked & stored), len(acked)


def line(name: str, result: Result) -> str:
    return (
        f"{name:<8} {result.throughput:8.0f} req/s"
        f"  p50 {result.pct(0.50):6.2f} ms  p99 {result.pct(0.99):6.2f} ms"
        f"  ({result.ok} ok, {result.errors} errors in {result.seconds:.1f} s)"
    )


def _merge(parts: list[Result]) -> Result:
    merged = Result(0, 0, 0, 0.0, [], [])
    for part in parts:
        merged.sent += part.sent
        merged.ok += part.ok
        merged.errors += part.errors
        merged.seconds += part.seconds
        merged.latencies += part.latencies
        merged.acked += part.acked
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--rate-duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=5, help="alternate servers this many times")
    parser.add_argument("--synchronous", choices=("normal", "full"), default="normal")
    args = parser.parse_args(argv)

    names = ("bare", "pitcrew")
    closed: dict[str, list[Result]] = {n: [] for n in names}
    fixed: dict[str, list[Result]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="pitcrew-bench-") as tmp:
        db = Path(tmp) / "pitcrew.db"
        counter = itertools.count()
        pitcrew = _PitcrewApp(str(db), str(Path(tmp) / "pitcrew.log"), args.synchronous)
        # Both servers run for the whole benchmark and the rounds alternate between them, so load
        # from anything else on the machine falls on both alike.
        with Server(_bare_app) as bare_url, Server(pitcrew) as pitcrew_url:
            urls = {"bare": bare_url, "pitcrew": pitcrew_url}
            for url in urls.values():
                asyncio.run(warm_up(url, counter))
            for _ in range(args.rounds):
                for name, url in urls.items():
                    closed[name].append(
                        asyncio.run(closed_loop(url, args.concurrency, args.duration / args.rounds, counter))
                    )
            for _ in range(args.rounds):
                for name, url in urls.items():
                    fixed[name].append(
                        asyncio.run(open_loop(url, args.rate, args.rate_duration / args.rounds, counter))
                    )
        results = {n: {"closed": _merge(closed[n]), "fixed": _merge(fixed[n])} for n in names}
        acked = set(results["pitcrew"]["closed"].acked) | set(results["pitcrew"]["fixed"].acked)
        found, total = durable(db, acked)

    print(
        f"intake benchmark: loopback, concurrency {args.concurrency}, {args.duration:.0f} s per server"
        f" in {args.rounds} alternating rounds; store synchronous={args.synchronous}"
    )
    for name in names:
        print(line(name, results[name]["closed"]))
    ratio = results["pitcrew"]["closed"].throughput / max(results["bare"]["closed"].throughput, 1e-9)
    print(f"ratio    pitcrew / bare throughput = {ratio:.0%}  (goal >= 40%)")
    print(
        f"fixed rate {args.rate:.0f} req/s, {args.rate_duration:.0f} s per server"
        " (latency from the scheduled send time):"
    )
    for name in names:
        print(line(name, results[name]["fixed"]))
    p99 = results["pitcrew"]["fixed"].pct(0.99)
    print(f"pitcrew p99 at {args.rate:.0f} req/s = {p99:.2f} ms  (goal < 20 ms)")
    print(f"durable  {found} of {total} acknowledged alerts are in the store")
    return 0 if found == total else 1


if __name__ == "__main__":
    sys.exit(main())
