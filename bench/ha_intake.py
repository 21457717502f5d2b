"""Intake throughput of 2 replicas on PostgreSQL next to 1 replica on SQLite, on loopback.

    python -m bench.ha_intake [--concurrency 32] [--duration 10]

A private PostgreSQL (Debian `postgresql`, started like the tests' fixture: initdb in a temp dir, a
free loopback port, fsync on as in production) and three pitcrew app processes (bench/intake.py's
server: the real app and store, a stand-in diagnosis): two replicas on one PostgreSQL database and
one on a SQLite file. The closed-loop client posts new alert groups back to back: to the SQLite
replica with `concurrency` clients, then to the two PostgreSQL replicas with `concurrency / 2` each
(as Alertmanager's receiver would spread them behind a Service). Prints throughput and p50/p99 for
each, and checks every acknowledged alert is in its store afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from bench.intake import TOKEN, Result, Server, _append, _merge, closed_loop, durable, line, warm_up
from bench.intake import _PitcrewApp as PitcrewApp


@dataclass(frozen=True)
class PostgresPitcrewApp:
    """Picklable factory for a pitcrew replica on PostgreSQL, in its server process."""

    url: str
    password: str
    log: str

    async def __call__(self) -> web.Application:
        import asyncio as aio

        from bot import keys
        from bot.app import create_app
        from bot.config import parse_config
        from bot.logging import configure_logging, secrets_in

        config = parse_config(
            {
                "store": {"url": self.url, "password_env": "BENCH_PG"},
                "webhook": {"bearer_token_env": "BENCH_TOKEN"},
                "logging": {"level": "info"},
            },
            env={"BENCH_TOKEN": TOKEN, "BENCH_PG": self.password},
        )
        configure_logging(
            format=config.logging.format,
            level=config.logging.level,
            secrets=secrets_in(config),
            stream=_append(self.log),
        )
        app_box: list[web.Application] = []

        async def diagnose_nothing(incident_id: int) -> None:
            await aio.sleep(0.2)
            await app_box[0][keys.STORE].save_diagnosis(incident_id, (), dry_run_diff=None, error=None)

        app = create_app(config, processor=diagnose_nothing)
        app_box.append(app)
        return app


async def _stored_fingerprints(url: str, password: str) -> set[str]:
    import asyncpg

    conn = await asyncpg.connect(url, password=password)
    try:
        return {r["fingerprint"] for r in await conn.fetch("SELECT fingerprint FROM alerts")}
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args(argv)
    from tests.support.postgres import start_postgres, stop_postgres

    server, process = start_postgres(fsync=True)
    try:
        server.psql('CREATE DATABASE "bench"')
        url = server.url("bench")
        with tempfile.TemporaryDirectory(prefix="pitcrew-bench-") as tmp:
            db = Path(tmp) / "pitcrew.db"
            counter = itertools.count()
            with Server(PitcrewApp(str(db), str(Path(tmp) / "sqlite.log"), "normal")) as sqlite_url:
                asyncio.run(warm_up(sqlite_url, counter))
                sqlite_result = asyncio.run(closed_loop(sqlite_url, args.concurrency, args.duration, counter))
            found, total = durable(db, set(sqlite_result.acked))
            replicas = [
                PostgresPitcrewApp(url, server.password, str(Path(tmp) / f"pg{i}.log")) for i in (0, 1)
            ]
            with Server(replicas[0]) as url_a, Server(replicas[1]) as url_b:
                asyncio.run(warm_up(url_a, counter))
                asyncio.run(warm_up(url_b, counter))

                async def both() -> list[Result]:
                    half = max(1, args.concurrency // 2)
                    return list(
                        await asyncio.gather(
                            closed_loop(url_a, half, args.duration, counter),
                            closed_loop(url_b, half, args.duration, counter),
                        )
                    )

                parts = asyncio.run(both())
            pg_result = _merge(parts)
            pg_result.seconds = max(p.seconds for p in parts)  # the two ran at the same time
            stored = asyncio.run(_stored_fingerprints(url, server.password))
            pg_found = len(set(pg_result.acked) & stored)
    finally:
        stop_postgres(server, process)
    print(f"intake, {args.concurrency} clients for {args.duration:.0f} s, a new alert group per request:")
    print(line("sqlite", sqlite_result) + "  1 replica")
    print(line("pg x2", pg_result) + "  2 replicas, one PostgreSQL")
    print(
        f"durable: sqlite {found}/{total}, postgresql {pg_found}/{len(pg_result.acked)}"
        " acknowledged alerts stored"
    )
    return 0 if found == total and pg_found == len(pg_result.acked) else 1


if __name__ == "__main__":
    sys.exit(main())
