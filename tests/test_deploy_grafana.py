"""deploy/'s fit with kube-prometheus-stack and Grafana: the components/kube-prometheus-stack component
labels the PrometheusRule and ServiceMonitor with `release:` (what the chart's Prometheus selects on),
and components/grafana-dashboard ships the dashboard as a ConfigMap the Grafana sidecar loads. The
dashboard's queries are checked against a real /metrics scrape of pitcrew (Slack enabled, so every
metric family is registered) and parsed by promtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.app import create_app
from tests.support.deploy import DEPLOY_DIR, REPO_ROOT, only, render
from tests.support.slack import SlackApiServer
from tests.test_slack_wiring import make_config

DASHBOARD = DEPLOY_DIR / "components" / "grafana-dashboard" / "pitcrew-dashboard.json"
README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def _queries(dashboard: Mapping[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def metric_families(exposition: str) -> dict[str, str]:
    """{name: type} from the `# TYPE` lines of a Prometheus text exposition."""
    return dict(re.findall(r"^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)$", exposition, re.M))


def series_names(families: Mapping[str, str]) -> set[str]:
    """The names a query can use: a histogram is queried as _bucket, _sum and _count."""
    names: set[str] = set()
    for name, kind in families.items():
        names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind == "histogram" else {name}
    return names


async def test_the_dashboard_queries_only_metrics_pitcrew_exports(
    tmp_path: Path, aiohttp_client: ClientFactory, slack_api: SlackApiServer
) -> None:
    async def nothing(incident_id: int) -> None:
        return None

    client = await aiohttp_client(create_app(make_config(tmp_path, slack_api), processor=nothing))
    families = metric_families(await (await client.get("/metrics")).text())
    assert "pitcrew_webhooks_received_total" in families  # a real scrape, not an empty page
    used = {m for q in _queries(_dashboard()) for m in re.findall(r"\b(pitcrew_[a-z0-9_]+)\b", q)}
    assert used - series_names(families) == set(), "the dashboard queries metrics pitcrew does not export"
    # What an operator looks at first is on it: intake, diagnoses, remediations, Slack, version.
    assert {
        "pitcrew_build_info",
        "pitcrew_webhooks_received_total",
        "pitcrew_webhooks_rejected_total",
        "pitcrew_webhook_duration_seconds_bucket",
        "pitcrew_incidents_processed_total",
        "pitcrew_incident_processing_duration_seconds_bucket",
        "pitcrew_executions_total",
        "pitcrew_incidents",
        "pitcrew_slack_outbox_backlog",
        "pitcrew_slack_outbox_deliveries_total",
    } <= used


def test_the_unknown_metric_check_catches_a_misspelt_name() -> None:
    families = metric_families("# TYPE pitcrew_x_seconds histogram\n# TYPE pitcrew_y_total counter\n")
    assert series_names(families) == {
        "pitcrew_x_seconds_bucket",
        "pitcrew_x_seconds_sum",
        "pitcrew_x_seconds_count",
        "pitcrew_y_total",
    }
    assert "pitcrew_x_seconds" not in series_names(families)


def test_the_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed (Debian package prometheus)")
    # Grafana fills $__rate_interval; as recording rules the queries get promtool's real PromQL parser.
    rules = [
        {"record": f"pitcrew:dashboard_query_{i}", "expr": q.replace("$__rate_interval", "5m")}
        for i, q in enumerate(_queries(_dashboard()))
    ]
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "d", "rules": [{"record": "x:y", "expr": "sum(("}]}]})
    )
    broken = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert broken.returncode != 0  # the check can fail


def test_the_dashboard_is_well_formed_for_grafana() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "pitcrew" and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    (variable,) = dashboard["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "datasource",
        "datasource",
        "prometheus",
    )
    for panel in dashboard["panels"]:
        # Every query follows the data source picked at the top (no hard-coded data source uid).
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert all(t["datasource"] == panel["datasource"] for t in panel["targets"])
        assert panel["targets"] and panel["description"]
    # Panels do not overlap on Grafana's 24-column grid.
    cells = set()
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, panel["title"]
        cells |= mine


def _components_block() -> str:
    (block,) = re.findall(r"```yaml\n(components:\n.*?)```", README, re.S)
    return block


def test_the_readme_recipe_for_kube_prometheus_stack_renders(tmp_path: Path) -> None:
    """README's `components:` for kube-prometheus-stack, put into deploy/kustomization.yaml as it says."""
    shutil.copytree(DEPLOY_DIR, tmp_path / "deploy")
    kustomization = tmp_path / "deploy" / "kustomization.yaml"
    text = kustomization.read_text()
    assert "components:\n  - prometheus-operator\n" in text
    kustomization.write_text(text.replace("components:\n  - prometheus-operator\n", _components_block()))
    objects = render(tmp_path / "deploy")

    for kind in ("PrometheusRule", "ServiceMonitor"):
        labels = only(objects, kind, "pitcrew")["metadata"]["labels"]
        assert labels["release"] == "kube-prometheus-stack", kind
    dashboard = only(objects, "ConfigMap", "pitcrew-grafana-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["data"] == {"pitcrew-dashboard.json": DASHBOARD.read_text(encoding="utf-8")}
    # The ServiceMonitor keeps pitcrew's own `namespace` label (the monitored namespace of an execution).
    (endpoint,) = only(objects, "ServiceMonitor", "pitcrew")["spec"]["endpoints"]
    assert endpoint["honorLabels"] is True


def test_the_base_alone_carries_no_release_label_and_no_dashboard() -> None:
    objects = render()
    assert "release" not in only(objects, "PrometheusRule", "pitcrew")["metadata"]["labels"]
    assert not [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and "grafana_dashboard" in o["metadata"].get("labels", {})
    ]
