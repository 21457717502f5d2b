"""Validation checks against local servers that answer like Prometheus, Loki and Grafana
(tests/support/stackstubs.py: healthy, unhealthy, unreachable) and the kmock emulator seeded with
the seed incident (pods not Ready, empty endpoints), through the real `kubernetes` client."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from bot.cli.validate import cli_validate
from bot.config import Config, parse_config
from bot.model import CheckResult
from bot.validate import CHECKS, render_text, validate, worst
from tests.support.kube import KubeHarness
from tests.support.kube_writes import WriteSemantics
from tests.support.stackstubs import GRAFANA_TOKEN, Stack

Kube = tuple[KubeHarness, WriteSemantics]
HTTP_CHECKS = ("http-health", "prometheus-up", "loki-query", "grafana-datasources")


def config_for(stack: Stack | None, *, token: str | None = GRAFANA_TOKEN) -> Config:
    validation: dict[str, Any] = {"http_timeout_seconds": 3}
    env = {}
    if stack is not None:
        validation.update(
            prometheus_url=stack.prometheus_url, loki_url=stack.loki_url, grafana_url=stack.grafana_url
        )
    if token is not None:
        validation["grafana_token_env"] = "TEST_GRAFANA_TOKEN"
        env["TEST_GRAFANA_TOKEN"] = token
    return parse_config({"validation": validation}, env=env)


def by_name(results: list[CheckResult]) -> dict[str, list[CheckResult]]:
    out: dict[str, list[CheckResult]] = {}
    for r in results:
        out.setdefault(r.name, []).append(r)
    return out


async def run(
    kube: KubeHarness, config: Config, checks: tuple[str, ...] | None, since: float | None = None
) -> list[CheckResult]:
    async with kube.cluster() as cluster:
        return await validate(["monitoring"], cluster=cluster, config=config, since=since, checks=checks)


@pytest.mark.integration
async def test_healthy_stack_passes(kube_writes: Kube, stack: Stack) -> None:
    kube, _ = kube_writes
    results = await run(kube, config_for(stack), HTTP_CHECKS)
    assert [r for r in results if r.status != "pass"] == []
    details = " | ".join(r.detail for r in results)
    assert "prometheus /-/healthy: HTTP 200" in details and "loki /ready: HTTP 200 ready" in details
    assert "3 targets up" in details and "Loki: Data source is working" in details
    # Grafana's API was called with the token; the Prometheus and Loki stand-ins never saw one.
    assert all(auth for _, path, _, auth in stack.grafana.requests if path.startswith("/api/datasources"))
    assert not any(auth for *_, auth in stack.prometheus.requests + stack.loki.requests)
    assert ("GET", "/api/v1/query", "query=up", False) in stack.prometheus.requests


@pytest.mark.integration
async def test_unhealthy_stack_fails_each_check_with_the_reason(kube_writes: Kube, stack: Stack) -> None:
    kube, _ = kube_writes
    stack.set_healthy(False)
    stack.prometheus.down_targets.append("node-exporter")
    results = by_name(await run(kube, config_for(stack), HTTP_CHECKS))
    health = {r.detail.split(":")[0]: r for r in results["http-health"]}
    assert health["prometheus /-/healthy"].status == "pass"  # the process is up ...
    assert health["prometheus /-/ready"].status == "fail"  # ... but not ready
    assert "HTTP 503" in health["prometheus /-/ready"].detail
    assert health["loki /ready"].status == "fail" and "Ingester not ready" in health["loki /ready"].detail
    assert health["grafana /api/health"].status == "fail"
    (up,) = results["prometheus-up"]
    assert up.status == "fail" and up.detail == "1 of 3 targets down: node-exporter/node-exporter:9100"
    (loki,) = results["loki-query"]
    assert loki.status == "fail" and "HTTP 500" in loki.detail
    grafana = results["grafana-datasources"]
    assert [r.status for r in grafana] == ["fail", "fail"]
    assert "no such host" in grafana[0].detail


@pytest.mark.integration
async def test_unreachable_servers_fail(kube_writes: Kube, stack: Stack) -> None:
    kube, _ = kube_writes
    config = config_for(stack)
    for name in ("prometheus", "loki", "grafana"):
        await stack.stop(name)
    results = await run(kube, config, HTTP_CHECKS)
    assert results and all(r.status == "fail" for r in results)
    assert all(
        "unreachable via http://127.0.0.1:" in r.detail for r in results if r.name != "grafana-datasources"
    )


@pytest.mark.integration
async def test_wrong_grafana_token_fails_and_no_token_skips(kube_writes: Kube, stack: Stack) -> None:
    kube, _ = kube_writes
    (wrong,) = by_name(await run(kube, config_for(stack, token="not-the-token"), ("grafana-datasources",)))[
        "grafana-datasources"
    ]
    assert wrong.status == "fail" and "HTTP 401" in wrong.detail
    assert "not-the-token" not in wrong.detail
    assert await run(kube, config_for(stack, token=None), ("grafana-datasources",)) == []


@pytest.mark.integration
async def test_http_checks_go_through_the_service_proxy_without_direct_urls(
    kube_writes: Kube, stack: Stack
) -> None:
    kube, semantics = kube_writes
    semantics.service_backends[("monitoring", "prometheus")] = stack.prometheus_url
    semantics.service_backends[("monitoring", "loki")] = stack.loki_url
    # grafana has no backend: the API server answers 503 "no endpoints available", as it does.
    results = by_name(await run(kube, config_for(None, token=None), ("http-health", "prometheus-up")))
    health = {r.detail.split(":")[0]: r for r in results["http-health"]}
    assert health["prometheus /-/ready"].status == "pass"
    assert health["loki /ready"].status == "pass"
    assert (
        health["grafana /api/health"].status == "fail" and "HTTP 503" in health["grafana /api/health"].detail
    )
    assert results["prometheus-up"][0].status == "pass"
    assert kube.count(subresource="proxy/-/ready", resource="services") == 1


@pytest.mark.integration
async def test_no_url_and_no_service_warns(kube: KubeHarness) -> None:
    results = await run(kube, config_for(None, token=None), ("http-health",))
    assert [r.status for r in results] == ["warn"] * 4
    assert "no validation.prometheus_url and no prometheus Service in monitoring" in results[0].detail


@pytest.mark.integration
async def test_seed_incident_fails_cluster_checks(kube_writes: Kube) -> None:
    kube, _ = kube_writes
    results = by_name(
        await run(
            kube,
            config_for(None, token=None),
            ("pods-ready", "endpoints", "pvcs-bound", "restarts", "logs", "dns"),
        )
    )
    (pods,) = results["pods-ready"]
    assert pods.status == "fail"
    assert pods.detail.startswith("2 of 3 pods not Ready: prometheus-0 (CrashLoopBackOff), loki-0")
    assert {str(o) for o in pods.objects} == {"monitoring/Pod/prometheus-0", "monitoring/Pod/loki-0"}
    (endpoints,) = results["endpoints"]
    assert endpoints.status == "fail" and endpoints.detail == "no ready endpoints: prometheus, loki"
    assert results["pvcs-bound"][0].status == "pass"
    (restarts,) = results["restarts"]
    assert restarts.status == "warn" and "prometheus-0/prometheus (9)" in restarts.detail
    (logs,) = results["logs"]
    assert logs.status == "warn" and "permission denied" in logs.detail
    assert results["dns"][0].status == "warn"  # not running in a cluster
    assert worst(r for group in results.values() for r in group) == "fail"


@pytest.mark.integration
async def test_restart_after_the_fix_fails(kube_writes: Kube) -> None:
    kube, _ = kube_writes
    # The seed's last terminations are from 2025-10-09: a fix started before them sees them as new.
    since = 1_760_000_000.0  # 2025-10-09T08:53Z
    (restarts,) = await run(kube, config_for(None, token=None), ("restarts",), since=since)
    assert restarts.status == "fail" and "prometheus-0/prometheus (exit 1)" in restarts.detail
    (later,) = await run(kube, config_for(None, token=None), ("restarts",), since=1_800_000_000.0)
    assert later.status == "pass"


async def test_unknown_check_name_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown validation checks: nope"):
        await validate(["monitoring"], cluster=None, config=Config(), since=None, checks=["nope"])  # type: ignore[arg-type]


def test_render_text_and_worst() -> None:
    results = [
        CheckResult("pods-ready", "pass", "3 pods Ready"),
        CheckResult("dns", "warn", "skipped"),
    ]
    assert worst(results) == "warn"
    text = render_text(results)
    assert text.splitlines() == [
        "PASS  pods-ready           3 pods Ready",
        "WARN  dns                  skipped",
        "1 passed, 1 warnings, 0 failed",
    ]
    assert worst([*results, CheckResult("endpoints", "fail", "x")]) == "fail"
    assert set(CHECKS) >= {"pods-ready", "http-health", "prometheus-up", "loki-query", "grafana-datasources"}


def build_args(config: Path, namespace: str, *extra: str) -> argparse.Namespace:
    from bot.cli import build_parser

    return build_parser().parse_args(["validate", "--config", str(config), "-n", namespace, *extra])


def _args(config: Path, *extra: str) -> argparse.Namespace:
    return build_args(config, "monitoring", *extra)


@pytest.mark.integration
async def test_cli_validate_exit_codes(
    kube_writes: Kube, stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kube, _ = kube_writes
    config = tmp_path / "pitcrew.yaml"
    config.write_text(
        json.dumps(
            {
                "cluster": {"kubeconfig": str(kube.kubeconfig), "in_cluster": False},
                "validation": {"prometheus_url": stack.prometheus_url, "loki_url": stack.loki_url},
            }
        )
    )
    # The seed incident: pods not Ready, endpoints empty -> exit 1.
    code = await asyncio.to_thread(cli_validate, _args(config, "-o", "json"))
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    assert {r["name"] for r in out if r["status"] == "fail"} >= {"pods-ready", "endpoints"}

    # A namespace with nothing broken in it: passes and warnings only -> exit 0.
    code = await asyncio.to_thread(cli_validate, build_args(config, "other"))
    text = capsys.readouterr().out
    assert code == 0, text
    assert "WARN  pods-ready" in text and "FAIL" not in text

    bad = tmp_path / "bad.yaml"
    bad.write_text("validation:\n  prometheus_url: 12\n  surprise: 1\n")
    assert await asyncio.to_thread(cli_validate, _args(bad)) == 2
    assert "surprise" in capsys.readouterr().err


@pytest.mark.integration
async def test_focus_narrows_pod_and_service_checks_to_what_the_change_touched(kube_writes: Kube) -> None:
    from bot.model import ObjectRef

    kube, _ = kube_writes
    config = config_for(None, token=None)
    async with kube.cluster() as cluster:
        focused = by_name(
            await validate(
                ["monitoring"],
                cluster=cluster,
                config=config,
                since=None,
                checks=("pods-ready", "endpoints"),
                focus=(ObjectRef("ConfigMap", "loki-config", "monitoring"),),
            )
        )
        missing = await validate(
            ["monitoring"],
            cluster=cluster,
            config=config,
            since=None,
            checks=("pods-ready",),
            focus=(ObjectRef("Pod", "prometheus-1", "monitoring"),),
        )
    # Loki's pod mounts the ConfigMap: it is judged; Prometheus (also broken) is not this change's.
    assert focused["pods-ready"][0].detail == "1 of 1 pods not Ready: loki-0 (Running)"
    assert focused["endpoints"][0].detail == "no ready endpoints: loki"
    assert [(r.status, r.detail) for r in missing] == [
        ("fail", "pods not found after the change: prometheus-1")
    ]


@pytest.mark.integration
async def test_unreadable_pods_fail_validation(kube_writes: Kube) -> None:
    kube, _ = kube_writes
    kube.forbid("pods", verb="list")
    results = await run(kube, config_for(None, token=None), ("pvcs-bound",))
    evidence = [r for r in results if r.name == "evidence"]
    assert [(r.status, r.detail) for r in evidence] == [
        ("fail", "could not read everything: cannot list pods in monitoring: forbidden")
    ]
    assert worst(results) == "fail"


async def test_log_read_since_the_fix_is_bounded_to_the_newest_lines(kube: KubeHarness) -> None:
    # A chatty container must not pull its whole log into every validation.
    kube.logs[("monitoring", "loki-0", "loki", False)] = [f"line {i}" for i in range(5000)]
    async with kube.cluster(max_log_lines_since=300) as cluster:
        lines = await cluster.read_log_since("monitoring", "loki-0", "loki", since_seconds=600)
    assert len(lines) == 300 and lines[-1] == "line 4999"
    call = next(c for c in kube.calls if c.subresource == "log")
    assert call.verb == "get"
