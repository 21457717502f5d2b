"""Local HTTP servers that answer like Prometheus, Loki and Grafana do, for validation tests.

Each stand-in serves the endpoints pitcrew's validation calls, with the bodies and status codes the
real servers give (Prometheus 2.x: `/-/healthy` "Prometheus Server is Healthy.", `/-/ready` 503
"Service Unavailable" while starting, `/api/v1/query` JSON envelope; Loki: `/ready` "ready" or 503
"Ingester not ready: ...", `/loki/api/v1/query_range` streams; Grafana: `/api/health` JSON,
`/api/datasources` and `/api/datasources/uid/UID/health` behind a bearer token).

`healthy` switches each one between a healthy and an unhealthy answer; stopping a server makes it
unreachable. Every request is recorded (method, path, query, Authorization header present or not).
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

GRAFANA_TOKEN = "glsa_test_token_for_stub"


@dataclass
class StubState:
    healthy: bool = True
    down_targets: list[str] = field(default_factory=list)  # Prometheus `up` == 0 for these jobs
    requests: list[tuple[str, str, str, bool]] = field(default_factory=list)


def _record(state: StubState, request: web.Request) -> None:
    state.requests.append(
        (request.method, request.path, request.query_string, "Authorization" in request.headers)
    )


def prometheus_app(state: StubState) -> web.Application:
    async def healthy(request: web.Request) -> web.Response:
        _record(state, request)
        return web.Response(text="Prometheus Server is Healthy.\n")

    async def ready(request: web.Request) -> web.Response:
        _record(state, request)
        if state.healthy:
            return web.Response(text="Prometheus Server is Ready.\n")
        return web.Response(status=503, text="Service Unavailable")

    async def query(request: web.Request) -> web.Response:
        _record(state, request)
        if request.query.get("query") != "up":
            return web.json_response(
                {"status": "error", "errorType": "bad_data", "error": "unsupported query in stub"}, status=400
            )
        result = []
        for job in ("prometheus", "node-exporter", "loki"):
            value = "0" if job in state.down_targets else "1"
            result.append(
                {
                    "metric": {"__name__": "up", "job": job, "instance": f"{job}:9100"},
                    "value": [1732520000.0, value],
                }
            )
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": result}})

    app = web.Application()
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_get("/api/v1/query", query)
    return app


def loki_app(state: StubState) -> web.Application:
    async def ready(request: web.Request) -> web.Response:
        _record(state, request)
        if state.healthy:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="Ingester not ready: waiting for 15s after being ready\n")

    async def query_range(request: web.Request) -> web.Response:
        _record(state, request)
        if not state.healthy:
            return web.Response(status=500, text="rpc error: code = Unavailable desc = connection refused\n")
        query = request.query.get("query", "")
        stream = {"namespace": query.split('"')[1] if '"' in query else "", "pod": "loki-0"}
        values = [["1732520000000000000", 'level=info msg="flushing stream"']]
        return web.json_response(
            {
                "status": "success",
                "data": {
                    "resultType": "streams",
                    "result": [{"stream": stream, "values": values}],
                    "stats": {},
                },
            }
        )

    app = web.Application()
    app.router.add_get("/ready", ready)
    app.router.add_get("/loki/api/v1/query_range", query_range)
    return app


def grafana_app(state: StubState) -> web.Application:
    def authorised(request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        return hmac.compare_digest(header.encode(), f"Bearer {GRAFANA_TOKEN}".encode())

    async def health(request: web.Request) -> web.Response:
        _record(state, request)
        body = {"commit": "abc", "database": "ok" if state.healthy else "failing", "version": "10.2.0"}
        return web.json_response(body, status=200 if state.healthy else 503)

    async def datasources(request: web.Request) -> web.Response:
        _record(state, request)
        if not authorised(request):
            return web.json_response({"message": "Unauthorized"}, status=401)
        return web.json_response(
            [
                {"id": 1, "uid": "prom", "name": "Prometheus", "type": "prometheus"},
                {"id": 2, "uid": "loki", "name": "Loki", "type": "loki"},
            ]
        )

    async def datasource_health(request: web.Request) -> web.Response:
        _record(state, request)
        if not authorised(request):
            return web.json_response({"message": "Unauthorized"}, status=401)
        uid = request.match_info["uid"]
        if state.healthy:
            return web.json_response({"status": "OK", "message": "Data source is working"})
        host = "prometheus" if uid == "prom" else "loki"
        return web.json_response(
            {
                "status": "ERROR",
                "message": f'Get "http://{host}.monitoring.svc.cluster.local:80": dial tcp: lookup {host}'
                ": no such host",
            },
            status=400,
        )

    app = web.Application()
    app.router.add_get("/api/health", health)
    app.router.add_get("/api/datasources", datasources)
    app.router.add_get("/api/datasources/uid/{uid}/health", datasource_health)
    return app


@dataclass
class Stack:
    prometheus: StubState
    loki: StubState
    grafana: StubState
    prometheus_url: str
    loki_url: str
    grafana_url: str
    servers: dict[str, TestServer]

    def set_healthy(self, healthy: bool) -> None:
        for state in (self.prometheus, self.loki, self.grafana):
            state.healthy = healthy

    async def stop(self, name: str) -> None:
        """Make one stand-in unreachable (its port stops listening)."""
        await self.servers[name].close()


@pytest_asyncio.fixture
async def stack() -> AsyncIterator[Stack]:
    states = {"prometheus": StubState(), "loki": StubState(), "grafana": StubState()}
    factories = {"prometheus": prometheus_app, "loki": loki_app, "grafana": grafana_app}
    servers = {name: TestServer(factories[name](states[name]), host="127.0.0.1") for name in states}
    for server in servers.values():
        await server.start_server()
    try:
        yield Stack(
            prometheus=states["prometheus"],
            loki=states["loki"],
            grafana=states["grafana"],
            prometheus_url=str(servers["prometheus"].make_url("")).rstrip("/"),
            loki_url=str(servers["loki"].make_url("")).rstrip("/"),
            grafana_url=str(servers["grafana"].make_url("")).rstrip("/"),
            servers=servers,
        )
    finally:
        for server in servers.values():
            await server.close()
