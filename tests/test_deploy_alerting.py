"""deploy/'s alerting pieces against the real tools: the Alertmanager receiver snippet (wrapped into a
whole config) passes `amtool check-config`; the rules pass `promtool check rules` and fire as intended in
`promtool test rules`; the PrometheusRule carries the same groups; the AlertmanagerConfig example agrees
with the snippet; and every pitcrew metric the rules use is one pitcrew registers."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.app import WEBHOOK_PATH
from tests.support.deploy import DEPLOY_DIR, REPO_ROOT, only, render

RULES = DEPLOY_DIR / "prometheus" / "rules.yaml"
RECEIVER = DEPLOY_DIR / "alertmanager" / "receiver.yaml"
AM_CONFIG_CR = DEPLOY_DIR / "alertmanager" / "alertmanagerconfig.yaml"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (Debian package prometheus / prometheus-alertmanager)")
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def _full_alertmanager_config(snippet: Mapping[str, Any]) -> dict[str, Any]:
    """The snippet merged into the smallest whole config a user could have."""
    return {
        "route": {"receiver": "people", "routes": list(snippet["route"]["routes"])},
        "receivers": [{"name": "people"}, *snippet["receivers"]],
    }


# ---------------------------------------------------------------------------------------------
# Alertmanager
# ---------------------------------------------------------------------------------------------


def test_receiver_snippet_passes_amtool_check_config(tmp_path: Path) -> None:
    config = tmp_path / "alertmanager.yml"
    config.write_text(yaml.safe_dump(_full_alertmanager_config(yaml.safe_load(RECEIVER.read_text()))))
    proc = _run(_tool("amtool"), "check-config", str(config))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_amtool_check_config_rejects_a_broken_snippet(tmp_path: Path) -> None:
    # The check above can fail: a misspelt key in the same snippet is refused.
    config = tmp_path / "alertmanager.yml"
    broken = RECEIVER.read_text().replace("send_resolved:", "send_resolve:")
    config.write_text(yaml.safe_dump(_full_alertmanager_config(yaml.safe_load(broken))))
    proc = _run(_tool("amtool"), "check-config", str(config))
    assert proc.returncode != 0
    assert "send_resolve" in proc.stdout + proc.stderr


def test_receiver_snippet_points_at_pitcrew_with_auth(rendered_service: Mapping[str, Any]) -> None:
    snippet = yaml.safe_load(RECEIVER.read_text())
    (route,) = snippet["route"]["routes"]
    assert route["receiver"] == "pitcrew" and route["continue"] is True
    (receiver,) = snippet["receivers"]
    (hook,) = receiver["webhook_configs"]
    assert hook["send_resolved"] is True
    assert 0 < hook["max_alerts"] <= 100
    auth = hook["http_config"]["authorization"]
    assert auth["type"] == "Bearer" and "credentials" not in auth
    assert Path(auth["credentials_file"]).name == "webhook-token"  # the Secret key, mounted as a file
    port = rendered_service["spec"]["ports"][0]["port"]
    assert hook["url"] == f"http://pitcrew.pitcrew.svc.cluster.local:{port}{WEBHOOK_PATH}"


def test_alertmanagerconfig_example_agrees_with_the_snippet() -> None:
    cr = yaml.safe_load(AM_CONFIG_CR.read_text())
    assert cr["apiVersion"] == "monitoring.coreos.com/v1alpha1" and cr["kind"] == "AlertmanagerConfig"
    assert cr["metadata"]["namespace"] == "monitoring"
    snippet = yaml.safe_load(RECEIVER.read_text())
    (route,) = snippet["route"]["routes"]
    (hook,) = snippet["receivers"][0]["webhook_configs"]
    spec = cr["spec"]
    assert spec["route"]["receiver"] == "pitcrew"
    assert spec["route"]["groupBy"] == route["group_by"]
    assert spec["route"]["continue"] is True
    (receiver,) = spec["receivers"]
    assert receiver["name"] == "pitcrew"
    (cr_hook,) = receiver["webhookConfigs"]
    assert cr_hook["url"] == hook["url"]
    assert cr_hook["sendResolved"] is True and cr_hook["maxAlerts"] == hook["max_alerts"]
    auth = cr_hook["httpConfig"]["authorization"]
    assert auth["type"] == "Bearer"
    assert auth["credentials"] == {"name": "pitcrew-webhook", "key": "webhook-token"}
    # Only keys the v1alpha1 CRD knows (a misspelt one is pruned silently by the API server).
    assert set(spec) <= {"route", "receivers", "inhibitRules", "muteTimeIntervals"}
    assert set(cr_hook) <= {"url", "urlSecret", "sendResolved", "maxAlerts", "httpConfig", "timeout"}


@pytest.fixture(scope="module")
def rendered_service() -> Mapping[str, Any]:
    return only(render(), "Service", "pitcrew")


# ---------------------------------------------------------------------------------------------
# Prometheus rules
# ---------------------------------------------------------------------------------------------


def test_rules_pass_promtool_check() -> None:
    proc = _run(_tool("promtool"), "check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_prometheus_rule_carries_the_same_groups() -> None:
    rule = only(render(), "PrometheusRule", "pitcrew")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def _alert_rules() -> dict[str, Mapping[str, Any]]:
    return {r["alert"]: r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}


def _expected(alert: str, labels: dict[str, str], value: str = "") -> dict[str, Any]:
    """The alert as promtool reports it: the rule's labels and its annotations expanded."""
    rule = _alert_rules()[alert]

    def expand(text: str) -> str:
        text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m[1]], text)
        return text.replace("{{ $value }}", value)

    return {
        "exp_labels": {**labels, **rule["labels"]},
        "exp_annotations": {k: expand(v) for k, v in rule["annotations"].items()},
    }


def test_alerts_fire_when_they_should_and_not_otherwise(tmp_path: Path) -> None:
    shutil.copy(RULES, tmp_path / "rules.yaml")
    mon = 'namespace="monitoring"'
    addr = "kube_endpoint_address"
    own = 'namespace="pitcrew"'
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # kube-state-metrics < 2.14: the old gauge.
                    {
                        "series": f'kube_endpoint_address_available{{{mon},endpoint="prometheus"}}',
                        "values": "0x20",
                    },
                    {
                        "series": f'kube_endpoint_address_available{{{mon},endpoint="grafana"}}',
                        "values": "1x20",
                    },
                    # Newer kube-state-metrics: loki has a not-ready address only; alertmanager a ready one.
                    {"series": f'kube_endpoint_info{{{mon},endpoint="loki"}}', "values": "1x20"},
                    {
                        "series": f'{addr}{{{mon},endpoint="loki",ip="10.0.0.7",ready="false"}}',
                        "values": "1x20",
                    },
                    {"series": f'kube_endpoint_info{{{mon},endpoint="alertmanager"}}', "values": "1x20"},
                    {
                        "series": f'{addr}{{{mon},endpoint="alertmanager",ip="10.0.0.8",ready="true"}}',
                        "values": "1x20",
                    },
                    # pitcrew's own metrics.
                    {
                        "series": f'pitcrew_webhooks_rejected_total{{{own},reason="unauthorized"}}',
                        "values": "0+1x20",
                    },
                    {
                        "series": f'pitcrew_webhooks_rejected_total{{{own},reason="invalid_json"}}',
                        "values": "0x20",
                    },
                    {"series": f'pitcrew_executions_total{{{own},outcome="failed"}}', "values": "0 0 0 1x17"},
                    {"series": f'pitcrew_executions_total{{{own},outcome="succeeded"}}', "values": "0+1x20"},
                    {"series": f"pitcrew_slack_outbox_backlog{{{own}}}", "values": "25x20"},
                    {
                        "series": f'pitcrew_slack_outbox_deliveries_total{{{own},outcome="failed"}}',
                        "values": "0x5 1x15",
                    },
                    {
                        "series": f'pitcrew_slack_outbox_deliveries_total{{{own},outcome="sent"}}',
                        "values": "0+3x20",
                    },
                ],
                "alert_rule_test": [
                    # Not yet: every alert waits its `for`.
                    {"eval_time": "3m", "alertname": "KubeServiceNoEndpoints", "exp_alerts": []},
                    {"eval_time": "3m", "alertname": "PitcrewWebhooksRejected", "exp_alerts": []},
                    {"eval_time": "2m", "alertname": "PitcrewExecutionsFailed", "exp_alerts": []},
                    {
                        "eval_time": "10m",
                        "alertname": "KubeServiceNoEndpoints",
                        "exp_alerts": [
                            _expected(
                                "KubeServiceNoEndpoints",
                                {"namespace": "monitoring", "endpoint": "loki", "service": "loki"},
                            ),
                            _expected(
                                "KubeServiceNoEndpoints",
                                {
                                    "namespace": "monitoring",
                                    "endpoint": "prometheus",
                                    "service": "prometheus",
                                },
                            ),
                        ],
                    },
                    {
                        "eval_time": "15m",
                        "alertname": "PitcrewWebhooksRejected",
                        "exp_alerts": [
                            _expected(
                                "PitcrewWebhooksRejected", {"namespace": "pitcrew", "reason": "unauthorized"}
                            )
                        ],
                    },
                    {
                        "eval_time": "5m",
                        "alertname": "PitcrewExecutionsFailed",
                        "exp_alerts": [_expected("PitcrewExecutionsFailed", {"namespace": "pitcrew"})],
                    },
                    {"eval_time": "10m", "alertname": "PitcrewOutboxBacklog", "exp_alerts": []},
                    {"eval_time": "4m", "alertname": "PitcrewSlackDeliveriesFailed", "exp_alerts": []},
                    {
                        "eval_time": "8m",
                        "alertname": "PitcrewSlackDeliveriesFailed",
                        "exp_alerts": [_expected("PitcrewSlackDeliveriesFailed", {"namespace": "pitcrew"})],
                    },
                    {
                        "eval_time": "18m",
                        "alertname": "PitcrewOutboxBacklog",
                        "exp_alerts": [
                            _expected("PitcrewOutboxBacklog", {"namespace": "pitcrew"}, value="25")
                        ],
                    },
                ],
            }
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    proc = _run(_tool("promtool"), "test", "rules", str(tmp_path / "tests.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _registered_metric_names() -> set[str]:
    names: set[str] = set()
    for source in (REPO_ROOT / "bot").rglob("*.py"):
        names |= set(re.findall(r"""["'](pitcrew_[a-z0-9_]+)["']""", source.read_text()))
    return names


def test_rules_use_only_metrics_pitcrew_registers() -> None:
    used = {
        name for r in _alert_rules().values() for name in re.findall(r"\b(pitcrew_[a-z0-9_]+)\b", r["expr"])
    }
    assert used == {
        "pitcrew_webhooks_rejected_total",
        "pitcrew_executions_total",
        "pitcrew_slack_outbox_backlog",
        "pitcrew_slack_outbox_deliveries_total",
    }
    missing = used - _registered_metric_names()
    assert not missing, f"rules use metrics no module in bot/ registers: {sorted(missing)}"


def test_the_prevention_alert_is_one_pitcrew_diagnoses() -> None:
    from handlers import service_no_endpoints

    rule = _alert_rules()["KubeServiceNoEndpoints"]
    assert rule["alert"] in service_no_endpoints.ALERTS
    # The alert names the namespace (Alertmanager's route to pitcrew matches on it) and the Service, which
    # pitcrew reads from the `service` label to focus its diagnosis.
    assert "namespace" in re.findall(r"by \(([^)]*)\)", rule["expr"])[0]
    assert '"service", "$1", "endpoint"' in rule["expr"]
