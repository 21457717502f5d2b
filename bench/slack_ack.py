"""Time from a signed Slack button click arriving to Bolt's 200 acknowledgement, while a long
remediation is running. Loopback only, a fixed number of clicks at a fixed concurrency.

    python -m bench.slack_ack [--clicks 400] [--concurrency 8]

Prints p50 / p90 / p99 / max in milliseconds. Goal: p99 under 100 ms (Slack allows 3 s).

Set-up: pitcrew's real Slack service (Bolt through the aiohttp adapter, real store, outbox worker)
talking to the recording Slack Web API stand-in of the test suite. One incident's execution is held
open for the whole run (the "long remediation"); the measured clicks are Approve clicks on other
incidents (their plans touch the same objects, so the store's target lock refuses them while the
long one runs), Details clicks and unauthorised clicks, mixed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout, web

from bot.slack import blocks as B
from bot.slack.approvers import ApprovalPolicy, ApproverRule
from bot.slack.service import SlackService
from bot.slack.settings import SlackSettings
from bot.store import Store
from tests.support.slack import (
    BOT_TOKEN,
    SIGNING_SECRET,
    ScriptedExecutor,
    SlackApiServer,
    block_actions_body,
    seed_incident,
    sign,
)

REQUEST_TIMEOUT_SECONDS = 10.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


async def run(clicks: int, concurrency: int) -> int:
    api = SlackApiServer()
    await api.start()
    with tempfile.TemporaryDirectory() as tmp:
        store = await Store.open(str(Path(tmp) / "bench.db"))
        settings = SlackSettings(
            bot_token=BOT_TOKEN,
            signing_secret=SIGNING_SECRET,
            default_channel="C-ALERTS",
            api_base_url=api.base_url,
            policy=ApprovalPolicy(default=ApproverRule(users=frozenset({"UALICE"}))),
        )
        hold = asyncio.Event()
        executor = ScriptedExecutor(store, hold=hold)
        service = SlackService(settings, store, executor=executor)
        app = web.Application()
        app.router.add_post("/slack/events", service.handle_http)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}/slack/events"
        await service.start()
        incidents = [
            await seed_incident(store, group=f"g{i}", severity="warning") for i in range(clicks // 4 + 2)
        ]
        for incident_id in incidents:
            await service.post_incident(incident_id)
        timings: list[float] = []
        failures = 0
        try:
            async with ClientSession(timeout=ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)) as http:

                async def click(action: str, value: str, user: str) -> float:
                    body = block_actions_body(
                        action, value, user_id=user, response_url=api.response_url(user)
                    )
                    headers = sign(body)
                    started = time.perf_counter()
                    async with http.post(url, data=body.encode(), headers=headers) as resp:
                        await resp.read()
                        if resp.status != 200:
                            raise RuntimeError(f"HTTP {resp.status}")
                    return time.perf_counter() - started

                # The long remediation: approved, and held open until the end of the run.
                await click(B.ACTION_APPROVE, str(incidents[0]), "UALICE")
                for _ in range(500):
                    if executor.started:
                        break
                    await asyncio.sleep(0.01)
                if not executor.started:
                    print("the long remediation did not start", file=sys.stderr)
                    return 1

                await asyncio.gather(
                    *(click(B.ACTION_DETAILS, str(incidents[0]), "UALICE") for _ in range(20))
                )

                limit = asyncio.Semaphore(concurrency)
                plan: list[tuple[str, str, str]] = []
                for i in range(clicks):
                    incident = str(incidents[1 + i // 4])
                    plan.append(
                        [
                            (B.ACTION_APPROVE, incident, "UALICE"),
                            (B.ACTION_DETAILS, incident, "UALICE"),
                            (B.ACTION_APPROVE, incident, "UMALLORY"),
                            (B.ACTION_APPROVE, incident, "UALICE"),
                        ][i % 4]
                    )

                async def measured(action: str, value: str, user: str) -> None:
                    nonlocal failures
                    async with limit:
                        try:
                            timings.append(await click(action, value, user))
                        except Exception as exc:
                            failures += 1
                            print(f"click failed: {exc}", file=sys.stderr)

                wall = time.perf_counter()
                await asyncio.gather(*(measured(*p) for p in plan))
                wall = time.perf_counter() - wall
        finally:
            hold.set()
            await service.drain(30.0)
            await service.stop()
            await runner.cleanup()
            await store.close()
            await api.close()

    if not timings:
        print("no successful clicks", file=sys.stderr)
        return 1
    ms = [t * 1000 for t in timings]
    print(f"slack ack: {len(ms)} clicks at concurrency {concurrency} in {wall:.2f} s, {failures} failed")
    print(f"  executions held running during the run: {len(executor.started)}")
    print(
        f"  p50 {percentile(ms, 50):.1f} ms  p90 {percentile(ms, 90):.1f} ms  p99 {percentile(ms, 99):.1f} ms"
        f"  max {max(ms):.1f} ms  mean {statistics.fmean(ms):.1f} ms"
    )
    print(f"  goal p99 < 100 ms: {'met' if percentile(ms, 99) < 100 else 'NOT met'}")
    return 0 if failures == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    if not 1 <= args.clicks <= 10_000 or not 1 <= args.concurrency <= 64:
        parser.error("--clicks must be 1..10000 and --concurrency 1..64")
    return asyncio.run(run(args.clicks, args.concurrency))


if __name__ == "__main__":
    sys.exit(main())
