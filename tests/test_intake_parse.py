"""Webhook payload parsing and auth: the documented payload, and every bad-input case with its status."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from bot.alertmanager import (
    InvalidJson,
    PayloadTooLarge,
    SchemaViolation,
    Unauthorized,
    UnknownVersion,
    WebhookAuth,
    WebhookRejected,
    labels_fingerprint,
    parse_webhook,
)

MAX = 1 << 20

# The version-4 format as documented on prometheus.io (configuration, <webhook_config>), with its
# placeholders filled in.
DOCUMENTED: dict[str, Any] = {
    "version": "4",
    "groupKey": '{}/{severity="critical"}:{alertname="PrometheusDown"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "pitcrew",
    "groupLabels": {"alertname": "PrometheusDown"},
    "commonLabels": {"alertname": "PrometheusDown", "namespace": "monitoring", "severity": "critical"},
    "commonAnnotations": {"summary": "Prometheus is down"},
    "externalURL": "http://alertmanager.example.org:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "PrometheusDown",
                "namespace": "monitoring",
                "pod": "prometheus-0",
                "severity": "critical",
            },
            "annotations": {"summary": "Prometheus is down"},
            "startsAt": "2026-11-24T10:00:00.123456789Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example.org:9090/graph?g0.expr=up%3D%3D0",
            "fingerprint": "3b1b3d5a0c2b6c1e",
        },
        {
            "status": "resolved",
            "labels": {
                "alertname": "PrometheusDown",
                "namespace": "monitoring",
                "pod": "prometheus-1",
                "severity": "critical",
            },
            "annotations": {"summary": "Prometheus is down"},
            "startsAt": "2026-11-24T10:00:00Z",
            "endsAt": "2026-11-24T10:05:00+02:00",
            "generatorURL": "",
            "fingerprint": "77c4c3a1a8e5a2f0",
        },
    ],
}

# A payload as Alertmanager < 0.19 sent it (widely quoted example): no fingerprint, no truncatedAlerts.
LEGACY: dict[str, Any] = {
    "receiver": "webhook",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "Test",
                "dc": "eu-west-1",
                "instance": "localhost:9090",
                "job": "prometheus24",
            },
            "annotations": {"description": "some description"},
            "startsAt": "2018-08-03T09:52:26.739266876+02:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://example.com:9090/graph?g0.expr=go_memstats_alloc_bytes+%3E+0\u0026g0.tab=1",
        }
    ],
    "groupLabels": {"alertname": "Test", "job": "prometheus24"},
    "commonLabels": {
        "alertname": "Test",
        "dc": "eu-west-1",
        "instance": "localhost:9090",
        "job": "prometheus24",
    },
    "commonAnnotations": {"description": "some description"},
    "externalURL": "http://example.com:9093",
    "version": "4",
    "groupKey": '{}:{alertname="Test", job="prometheus24"}',
}


def body(data: Any) -> bytes:
    return json.dumps(data).encode()


def test_documented_payload_parses_into_typed_objects() -> None:
    payload = parse_webhook(body(DOCUMENTED), MAX)
    assert payload.version == "4"
    assert payload.receiver == "pitcrew"
    assert payload.status == "firing"
    assert payload.group_key == '{}/{severity="critical"}:{alertname="PrometheusDown"}'
    assert payload.group_labels == {"alertname": "PrometheusDown"}
    assert payload.common_labels["severity"] == "critical"
    assert payload.common_annotations == {"summary": "Prometheus is down"}
    assert payload.external_url == "http://alertmanager.example.org:9093"
    assert payload.truncated_alerts == 0
    first, second = payload.alerts
    assert first.fingerprint == "3b1b3d5a0c2b6c1e"
    assert first.status == "firing"
    assert first.name == "PrometheusDown"
    assert first.labels["pod"] == "prometheus-0"
    assert first.starts_at == "2026-11-24T10:00:00.123456789Z"
    assert first.ends_at is None  # Go's zero time means "no end"
    assert first.generator_url.startswith("http://prometheus.example.org:9090/graph")
    assert second.status == "resolved"
    assert second.ends_at == "2026-11-24T10:05:00+02:00"


def test_legacy_payload_without_fingerprint_gets_alertmanagers_fingerprint() -> None:
    payload = parse_webhook(body(LEGACY), MAX)
    (alert,) = payload.alerts
    assert alert.fingerprint == labels_fingerprint(alert.labels)
    assert len(alert.fingerprint) == 16
    assert payload.truncated_alerts == 0


def test_fingerprint_is_fnv1a_over_sorted_labels() -> None:
    # Known value of prometheus/common model.LabelSet{"a": "b"}.Fingerprint(): FNV-1a 64 of "a\xffb\xff".
    h = 14695981039346656037
    for byte in b"a\xffb\xff":
        h = ((h ^ byte) * 1099511628211) % (1 << 64)
    assert labels_fingerprint({"a": "b"}) == f"{h:016x}"
    assert labels_fingerprint({"x": "1", "a": "b"}) == labels_fingerprint({"a": "b", "x": "1"})
    assert labels_fingerprint({"a": "b"}) != labels_fingerprint({"a": "c"})


def test_null_maps_are_empty_and_unknown_fields_are_ignored() -> None:
    data = copy.deepcopy(DOCUMENTED)
    data["commonAnnotations"] = None
    data["alerts"][0]["annotations"] = None
    data["someFutureField"] = {"x": 1}
    payload = parse_webhook(body(data), MAX)
    assert payload.common_annotations == {}
    assert payload.alerts[0].annotations == {}


def mutate(path: str, value: Any) -> bytes:
    """DOCUMENTED with the field at `path` (dotted, [i] for list items) set to value, or removed if DELETE."""
    data = copy.deepcopy(DOCUMENTED)
    target: Any = data
    parts = path.replace("[", ".").replace("]", "").split(".")
    for part in parts[:-1]:
        target = target[int(part)] if isinstance(target, list) else target[part]
    last: Any = int(parts[-1]) if isinstance(target, list) else parts[-1]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return body(data)


DELETE = object()


@pytest.mark.parametrize(
    ("raw", "error", "status", "reason"),
    [
        (b"{", InvalidJson, 400, "invalid JSON: Expecting property name enclosed in double quotes at line 1"),
        (b"", InvalidJson, 400, "invalid JSON: Expecting value at line 1 column 1"),
        (b'{"version": "4",}', InvalidJson, 400, "invalid JSON"),
        (b"\xff\xfe\x00{", InvalidJson, 400, "invalid JSON"),
        (b"[1, 2]", SchemaViolation, 422, "$: expected object, got array"),
        (mutate("version", DELETE), UnknownVersion, 400, 'version: missing (expected "4")'),
        (mutate("version", "5"), UnknownVersion, 400, 'version: unsupported "5" (expected "4")'),
        (mutate("version", 4), UnknownVersion, 400, 'version: unsupported 4 (expected "4")'),
        (mutate("alerts", DELETE), SchemaViolation, 422, "alerts: missing"),
        (mutate("alerts", {}), SchemaViolation, 422, "alerts: expected array, got object"),
        (mutate("alerts", []), SchemaViolation, 422, "alerts: expected at least one alert"),
        (mutate("alerts[1]", "x"), SchemaViolation, 422, "alerts[1]: expected object, got string"),
        (
            mutate("alerts[1].labels.severity", 3),
            SchemaViolation,
            422,
            "alerts[1].labels.severity: expected string, got number",
        ),
        (
            mutate("alerts[0].labels", {}),
            SchemaViolation,
            422,
            "alerts[0].labels: expected at least one label",
        ),
        (
            mutate("alerts[0].labels", ["a"]),
            SchemaViolation,
            422,
            "alerts[0].labels: expected object, got array",
        ),
        (
            mutate("alerts[0].annotations.summary", None),
            SchemaViolation,
            422,
            "alerts[0].annotations.summary: expected string, got null",
        ),
        (
            mutate("alerts[0].status", "pending"),
            SchemaViolation,
            422,
            'alerts[0].status: expected "firing" or "resolved", got "pending"',
        ),
        (mutate("alerts[0].status", DELETE), SchemaViolation, 422, "alerts[0].status: missing"),
        (mutate("alerts[0].startsAt", DELETE), SchemaViolation, 422, "alerts[0].startsAt: missing"),
        (
            mutate("alerts[0].startsAt", "yesterday"),
            SchemaViolation,
            422,
            'alerts[0].startsAt: expected RFC 3339 timestamp, got "yesterday"',
        ),
        (
            mutate("alerts[0].startsAt", "2026-11-24T10:00:00"),
            SchemaViolation,
            422,
            "alerts[0].startsAt: expected RFC 3339 timestamp with a time zone",
        ),
        (
            mutate("alerts[1].endsAt", 12),
            SchemaViolation,
            422,
            "alerts[1].endsAt: expected string, got number",
        ),
        (
            mutate("alerts[1].endsAt", "soon"),
            SchemaViolation,
            422,
            "alerts[1].endsAt: expected RFC 3339 timestamp",
        ),
        (
            mutate("alerts[0].fingerprint", ""),
            SchemaViolation,
            422,
            "alerts[0].fingerprint: expected non-empty string, got empty string",
        ),
        (
            mutate("alerts[0].fingerprint", 7),
            SchemaViolation,
            422,
            "alerts[0].fingerprint: expected non-empty string, got number",
        ),
        (
            mutate("alerts[0].generatorURL", False),
            SchemaViolation,
            422,
            "alerts[0].generatorURL: expected string, got boolean",
        ),
        (mutate("status", "ok"), SchemaViolation, 422, 'status: expected "firing" or "resolved", got "ok"'),
        (mutate("status", DELETE), SchemaViolation, 422, "status: missing"),
        (mutate("receiver", 1), SchemaViolation, 422, "receiver: expected string, got number"),
        (mutate("groupKey", DELETE), SchemaViolation, 422, "groupKey: missing"),
        (mutate("groupKey", ""), SchemaViolation, 422, "groupKey: expected non-empty string"),
        (mutate("commonLabels", ["a"]), SchemaViolation, 422, "commonLabels: expected object, got array"),
        (
            mutate("groupLabels.alertname", {"x": 1}),
            SchemaViolation,
            422,
            "groupLabels.alertname: expected string, got object",
        ),
        (mutate("externalURL", 5), SchemaViolation, 422, "externalURL: expected string, got number"),
        (
            mutate("truncatedAlerts", -1),
            SchemaViolation,
            422,
            "truncatedAlerts: expected non-negative integer, got -1",
        ),
        (
            mutate("truncatedAlerts", "2"),
            SchemaViolation,
            422,
            "truncatedAlerts: expected non-negative integer, got string",
        ),
    ],
)
def test_bad_input_is_rejected_with_status_and_reason(
    raw: bytes, error: type[WebhookRejected], status: int, reason: str
) -> None:
    with pytest.raises(error) as info:
        parse_webhook(raw, MAX)
    assert info.value.status == status
    assert info.value.reason.startswith(reason), info.value.reason


def test_body_over_the_limit_is_413_before_parsing() -> None:
    raw = body(DOCUMENTED)
    with pytest.raises(PayloadTooLarge) as info:
        parse_webhook(raw, len(raw) - 1)
    assert info.value.status == 413
    assert info.value.metric_reason == "too_large"
    assert parse_webhook(raw, len(raw)).group_key  # exactly at the limit is fine


def test_schema_violation_names_the_field_path() -> None:
    with pytest.raises(SchemaViolation) as info:
        parse_webhook(mutate("alerts[1].labels.severity", 3), MAX)
    assert info.value.path == "alerts[1].labels.severity"
    assert str(info.value) == "alerts[1].labels.severity: expected string, got number"


# ---------------------------------------------------------------------------------------------
# Auth
# ---------------------------------------------------------------------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


BEARER = WebhookAuth(bearer_token="s3cret-token")
BASIC = WebhookAuth(basic_username="am", basic_password="pa:ss")
BOTH = WebhookAuth(bearer_token="s3cret-token", basic_username="am", basic_password="pa:ss")


@pytest.mark.parametrize(
    ("auth", "header"),
    [
        (BEARER, "Bearer s3cret-token"),
        (BEARER, "bearer s3cret-token"),
        (BASIC, basic("am", "pa:ss")),
        (BOTH, "Bearer s3cret-token"),
        (BOTH, basic("am", "pa:ss")),
    ],
)
def test_accepted_credentials(auth: WebhookAuth, header: str) -> None:
    auth.check(header)


MALFORMED = "malformed Authorization header (expected 'Bearer <token>' or 'Basic <credentials>')"


@pytest.mark.parametrize(
    ("auth", "header", "reason"),
    [
        (BEARER, None, "missing Authorization header"),
        (BEARER, "", "missing Authorization header"),
        (BEARER, "Bearer wrong", "wrong bearer token"),
        (BEARER, "Bearer s3cret-token-and-more", "wrong bearer token"),
        (BEARER, "Bearer ", "wrong bearer token"),
        (BEARER, basic("am", "pa:ss"), "unsupported authorization scheme 'basic'"),
        (BASIC, "Bearer s3cret-token", "unsupported authorization scheme 'bearer'"),
        (BASIC, basic("am", "wrong"), "wrong basic credentials"),
        (BASIC, basic("other", "pa:ss"), "wrong basic credentials"),
        (BASIC, "Basic not-base64!", "malformed basic credentials"),
        (BOTH, "Token s3cret-token", "unsupported authorization scheme 'token'"),
        (BOTH, "s3cret-token", MALFORMED),  # the token without its scheme: not echoed (it is logged)
        (BOTH, "Token", MALFORMED),
    ],
)
def test_rejected_credentials(auth: WebhookAuth, header: str | None, reason: str) -> None:
    with pytest.raises(Unauthorized) as info:
        auth.check(header)
    assert info.value.status == 401
    assert info.value.reason == reason
    assert "s3cret" not in info.value.reason


def test_auth_configured_flag() -> None:
    assert not WebhookAuth().configured
    assert BEARER.configured and BASIC.configured


def test_unpaired_surrogate_escape_is_a_schema_violation() -> None:
    # Valid JSON, but "\ud800" alone is no character: it could never be stored as UTF-8 text.
    raw = json.dumps(DOCUMENTED).replace("prometheus-1", "prom\\ud800").encode()
    with pytest.raises(SchemaViolation) as info:
        parse_webhook(raw, MAX)
    assert info.value.status == 422
    assert str(info.value) == "alerts[1].labels.pod: invalid string (unpaired UTF-16 surrogate escape)"
    key = json.dumps(DOCUMENTED).replace('"summary"', '"sum\\udc00"', 1).encode()
    with pytest.raises(SchemaViolation, match=r"^commonAnnotations\.sum.*: invalid string"):
        parse_webhook(key, MAX)


def test_escaped_surrogate_pair_is_one_character() -> None:
    raw = json.dumps(DOCUMENTED).replace("prometheus-1", "prom\\ud83d\\ude00").encode()
    assert parse_webhook(raw, MAX).alerts[1].labels["pod"] == "prom\U0001f600"
