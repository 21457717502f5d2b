"""diagnose(): handler isolation, registry validation, de-duplication and linking; redaction."""

from __future__ import annotations

from types import ModuleType

import pytest

from bot.diagnose import diagnose
from bot.evidence import Evidence
from bot.model import Finding, ObjectRef, Severity
from bot.redact import redact, redact_json
from bot.snapshot import read_bundle
from handlers import HANDLERS, HandlerRegistryError, validate_handlers
from handlers.base import Settings
from tests.support.kube import (
    container,
    endpoints,
    make_evidence,
    pod,
    service,
    terminated,
    waiting,
    workload,
)
from tests.test_diagnosis_seed import SEED


def _module(name: str, code: str, diagnose_fn: object = None, alerts: object = ()) -> ModuleType:
    module = ModuleType(name)
    module.CODE = code  # type: ignore[attr-defined]
    module.ALERTS = alerts  # type: ignore[attr-defined]
    if diagnose_fn is not None:
        module.diagnose = diagnose_fn  # type: ignore[attr-defined]
    return module


def test_a_raising_handler_becomes_a_report_line() -> None:
    def boom(evidence: Evidence, settings: Settings) -> list[Finding]:
        raise KeyError("spec")

    handlers = (_module("handlers.broken", "broken", boom), *HANDLERS)
    diagnosis = diagnose(read_bundle(SEED), handlers=handlers)
    assert diagnosis.handler_errors == ("handler broken failed: KeyError: 'spec'",)
    assert len(diagnosis.findings) == 3  # the others still ran


def test_registry_rejects_duplicates_and_incomplete_modules() -> None:
    def noop(evidence: Evidence, settings: Settings) -> list[Finding]:
        return []

    with pytest.raises(HandlerRegistryError, match="duplicate code 'crash-loop'"):
        validate_handlers((*HANDLERS, _module("handlers.copy", "crash-loop", noop)))
    with pytest.raises(HandlerRegistryError, match="diagnose"):
        validate_handlers((_module("handlers.empty", "empty"),))
    with pytest.raises(HandlerRegistryError, match="ALERTS"):
        validate_handlers((_module("handlers.x", "x", noop, alerts=["list"]),))
    validate_handlers(HANDLERS)
    assert len({h.CODE for h in HANDLERS}) == len(HANDLERS)


def _fixed(*findings: Finding) -> ModuleType:
    def produce(evidence: Evidence, settings: Settings) -> list[Finding]:
        return list(findings)

    return _module("handlers.fixed", "fixed", produce)


def test_generic_findings_are_dropped_when_a_specific_one_explains_the_pod() -> None:
    pod = ObjectRef("Pod", "api-0", "shop")
    other = ObjectRef("Pod", "api-1", "shop")
    specific = Finding("oom-killed", Severity.CRITICAL, "oom", (pod,))
    generic = Finding("crash-loop", Severity.CRITICAL, "crash", (pod,))
    unexplained = Finding("crash-loop", Severity.CRITICAL, "crash", (other,))
    readiness = Finding("readiness-probe-failing", Severity.WARNING, "probe", (other,))
    endpoints = Finding(
        "service-no-endpoints", Severity.WARNING, "svc", (ObjectRef("Service", "api", "shop"), pod, other)
    )
    diagnosis = diagnose(Evidence(), handlers=(_fixed(specific, generic, unexplained, readiness, endpoints),))
    assert [(f.code, f.objects[0].name) for f in diagnosis.findings] == [
        ("oom-killed", "api-0"),
        ("crash-loop", "api-1"),
        ("service-no-endpoints", "api"),
    ]
    assert diagnosis.findings[-1].caused_by == ("oom-killed", "crash-loop")


def test_healthy_evidence_yields_nothing() -> None:
    diagnosis = diagnose(Evidence())
    assert diagnosis.findings == () and not diagnosis.has_problems


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", "eyJhbGci"),
        ("GET /api/datasources?api_key=abcd1234secret HTTP/1.1", "abcd1234secret"),
        ('{"password":"s3cr3t!","user":"admin"}', "s3cr3t!"),
        ("url=postgres://grafana:hunter2@db:5432/grafana", "hunter2"),
        ("GF_SECURITY_ADMIN_PASSWORD=opensesame", "opensesame"),
        ("slack token xoxb-123456789012-abcdefghijkl", "xoxb-123456789012"),
        ("authorization: Basic YWRtaW46aHVudGVyMg==", "YWRtaW46aHVudGVyMg=="),
    ],
)
def test_redaction_hides_secrets(line: str, secret: str) -> None:
    out = redact(line)
    assert secret not in out and "***" in out


def test_redaction_keeps_proof_lines_intact() -> None:
    for line in (
        'ts=2025-10-09T21:54:40.310Z caller=main.go:1164 level=error err="opening storage failed: '
        'lock DB directory: open /prometheus/lock: permission denied"',
        '{"address":"127.0.0.1:9095","msg":"error contacting frontend","level":"error"}',
        'level=warn msg="token expired, refreshing"',
    ):
        assert redact(line) == line


def test_findings_never_carry_secrets_from_evidence() -> None:
    pod = ObjectRef("Pod", "api-0", "shop")
    leaky = Finding(
        "crash-loop",
        Severity.CRITICAL,
        "api-0 crashed: connect postgres://app:s3cret@db/app failed",
        (pod,),
        evidence=("termination message: password=s3cret rejected",),
    )
    [finding] = diagnose(Evidence(), handlers=(_fixed(leaky),)).findings
    assert "s3cret" not in finding.summary and "s3cret" not in " ".join(finding.evidence)


def test_scope_from_alert_labels() -> None:
    from bot.evidence import Scope
    from bot.model import Alert

    alerts = [
        Alert(
            "f1",
            "firing",
            {"alertname": "KubePodCrashLooping", "namespace": "logging", "pod": "loki-0"},
            {},
            "t",
            None,
        ),
        Alert("f2", "firing", {"alertname": "KubeNodeNotReady", "node": "edge-1"}, {}, "t", None),
    ]
    scope = Scope.from_alerts(alerts, ["monitoring"])
    assert scope.namespaces == ("monitoring", "logging")
    assert [str(r) for r in scope.focus] == ["logging/Pod/loki-0", "Node/edge-1"]


def test_selector_mismatch_candidates_do_not_hide_a_crash_loop() -> None:
    pod = ObjectRef("Pod", "api-0", "shop")
    mismatch = Finding(
        "service-selector-mismatch", Severity.WARNING, "svc", (ObjectRef("Service", "api", "shop"), pod)
    )
    crash = Finding("crash-loop", Severity.CRITICAL, "crash", (pod,))
    codes = [f.code for f in diagnose(Evidence(), handlers=(_fixed(mismatch, crash),)).findings]
    assert codes == ["crash-loop", "service-selector-mismatch"]


def test_a_selector_mismatch_naming_the_same_pod_is_not_a_cause_of_missing_endpoints() -> None:
    labels = {"app": "shop"}
    spec = {"containers": [container("api", "example.com/api:1", memory_limit="256Mi")]}
    evidence = make_evidence(
        [
            workload("StatefulSet", "shop", "store", labels=labels, spec=spec),
            pod(
                "shop-0",
                "store",
                labels=labels,
                owner=("StatefulSet", "shop"),
                containers=spec["containers"],
                statuses=[waiting("api", "CrashLoopBackOff", restarts=5, last=terminated(137, "OOMKilled"))],
            ),
            service("shop", "store", labels),
            endpoints("shop", "store", not_ready=["shop-0"]),
            # Another label scheme: selects nothing, and names shop-0 as the pod it probably meant.
            service("shop-metrics", "store", {"app.kubernetes.io/name": "shop"}),
        ]
    )
    by_code = {f.code: f for f in diagnose(evidence).findings}
    assert by_code.keys() == {"oom-killed", "service-selector-mismatch", "service-no-endpoints"}
    assert ObjectRef("Pod", "shop-0", "store") in by_code["service-selector-mismatch"].objects
    assert by_code["service-no-endpoints"].caused_by == ("oom-killed",)


def test_redact_json_masks_secret_values_but_not_names_of_secrets() -> None:
    spec = {
        "env": [
            {"name": "GF_SECURITY_ADMIN_PASSWORD", "value": "admin123"},
            {"name": "LOG_LEVEL", "value": "debug"},
            {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}},
        ],
        "volumes": [{"name": "tls", "secret": {"secretName": "grafana-tls"}}],
        "config": "server:\n  http_listen_port: 3100\nsecret_access_key: abc123\n",
        "password": "plain",
    }
    assert redact_json(spec) == {
        "env": [
            {"name": "GF_SECURITY_ADMIN_PASSWORD", "value": "***"},
            {"name": "LOG_LEVEL", "value": "debug"},
            {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}},
        ],
        "volumes": [{"name": "tls", "secret": {"secretName": "grafana-tls"}}],
        "config": "server:\n  http_listen_port: 3100\nsecret_access_key: ***\n",
        "password": "***",
    }
