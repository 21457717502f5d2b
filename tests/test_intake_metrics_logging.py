"""The Prometheus text registry and the redacting structured logs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable

import pytest

from bot.config import parse_config
from bot.logging import Redactor, configure_logging, secrets_in
from bot.metrics import MetricError, MetricsRegistry, Sample

# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


async def test_counter_with_labels_renders_in_exposition_format() -> None:
    registry = MetricsRegistry()
    rejected = registry.counter("pitcrew_webhooks_rejected_total", "Rejected webhooks.", ["reason"])
    rejected.preset({"reason": "too_large"})
    rejected.inc(reason="unauthorized")
    rejected.inc(2, reason="unauthorized")
    text = await registry.render()
    assert text == (
        "# HELP pitcrew_webhooks_rejected_total Rejected webhooks.\n"
        "# TYPE pitcrew_webhooks_rejected_total counter\n"
        'pitcrew_webhooks_rejected_total{reason="too_large"} 0\n'
        'pitcrew_webhooks_rejected_total{reason="unauthorized"} 3\n'
    )
    assert rejected.value(reason="unauthorized") == 3


async def test_unlabelled_counter_is_exposed_at_zero() -> None:
    registry = MetricsRegistry()
    registry.counter("pitcrew_things_total", "Things.")
    assert (await registry.render()).endswith("pitcrew_things_total 0\n")


def test_adding_a_metric_twice_returns_the_same_one_and_conflicts_raise() -> None:
    registry = MetricsRegistry()
    first = registry.counter("pitcrew_slack_signature_rejections_total", "x")
    assert registry.counter("pitcrew_slack_signature_rejections_total", "x") is first
    with pytest.raises(MetricError, match="different type or labels"):
        registry.counter("pitcrew_slack_signature_rejections_total", "x", ["reason"])
    with pytest.raises(MetricError, match="different type or labels"):
        registry.histogram("pitcrew_slack_signature_rejections_total", "x")
    with pytest.raises(MetricError, match="invalid metric name"):
        registry.counter("pitcrew-bad name", "x")
    with pytest.raises(MetricError, match="invalid label name"):
        registry.counter("pitcrew_ok_total", "x", ["le"])
    with pytest.raises(MetricError, match="expected labels"):
        first.inc(reason="x")
    with pytest.raises(MetricError, match="only go up"):
        first.inc(-1)


async def test_histogram_buckets_sum_and_count() -> None:
    registry = MetricsRegistry()
    hist = registry.histogram("pitcrew_op_seconds", "Op time.", ["outcome"], buckets=[0.1, 1, 0.5])
    for value in (0.05, 0.1, 0.3, 2.0):
        hist.observe(value, outcome="ok")
    lines = (await registry.render()).splitlines()
    assert lines[2:] == [
        'pitcrew_op_seconds_bucket{outcome="ok",le="0.1"} 2',
        'pitcrew_op_seconds_bucket{outcome="ok",le="0.5"} 3',
        'pitcrew_op_seconds_bucket{outcome="ok",le="1"} 3',
        'pitcrew_op_seconds_bucket{outcome="ok",le="+Inf"} 4',
        'pitcrew_op_seconds_sum{outcome="ok"} 2.45',
        'pitcrew_op_seconds_count{outcome="ok"} 4',
    ]
    assert hist.count(outcome="ok") == 4


async def test_gauge_is_computed_at_scrape_and_a_failing_collector_does_not_break_the_scrape() -> None:
    registry = MetricsRegistry()
    backlog = [3]

    async def outbox() -> Iterable[Sample]:
        return [({}, backlog[0])]

    async def broken() -> Iterable[Sample]:
        raise RuntimeError("store closed")

    registry.gauge("pitcrew_outbox_backlog", "Undelivered Slack messages.", collect=outbox)
    registry.gauge("pitcrew_broken", "Fails.", collect=broken)
    registry.counter("pitcrew_after_total", "Still rendered.")
    assert "pitcrew_outbox_backlog 3\n" in await registry.render()
    backlog[0] = 0
    text = await registry.render()
    assert "pitcrew_outbox_backlog 0\n" in text
    assert "# TYPE pitcrew_broken gauge\n" in text and "pitcrew_after_total 0\n" in text


async def test_label_values_are_escaped() -> None:
    registry = MetricsRegistry()
    registry.counter("pitcrew_x_total", "Help with \\ and\nnewline.", ["v"]).inc(v='a"b\\c\nd')
    text = await registry.render()
    assert "# HELP pitcrew_x_total Help with \\\\ and\\nnewline.\n" in text
    assert 'pitcrew_x_total{v="a\\"b\\\\c\\nd"} 1\n' in text


# ---------------------------------------------------------------------------------------------
# Logging
# ---------------------------------------------------------------------------------------------


SECRET = "hunter2-super-secret"


@pytest.mark.parametrize(
    ("text", "must_not_contain", "kept"),
    [
        (f"token is {SECRET}", SECRET, "token is"),
        ("Authorization: Bearer abc.def-ghi", "abc.def-ghi", "Authorization: Bearer ***"),
        ("headers={'Authorization': 'Basic dXNlcjpwYXNz'}", "dXNlcjpwYXNz", "Authorization"),
        ("sent Bearer eyJhbGciOiJIUzI1NiJ9", "eyJhbGciOiJIUzI1NiJ9", "Bearer ***"),
        ("slack xoxb-1234-5678-abcdef failed", "xoxb-1234-5678-abcdef", "slack *** failed"),
        ("socket xapp-1-A0-123-abc", "xapp-1-A0-123-abc", "socket ***"),
        ("url https://user:pa55w0rd@grafana/api", "pa55w0rd", "https://user:***@grafana/api"),
        ("password=letmein&x=1", "letmein", "password=***&x=1"),
        ('{"api_key": "k-123456"}', "k-123456", '"api_key": "***"'),
    ],
)
def test_redactor(text: str, must_not_contain: str, kept: str) -> None:
    redacted = Redactor([SECRET])(text)
    assert must_not_contain not in redacted
    assert kept in redacted


def test_plain_logs_redact_messages_args_extras_and_tracebacks(restore_root_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(format="plain", level="debug", secrets=[SECRET], stream=stream)
    log = logging.getLogger("pitcrew.test")
    log.info("calling with %s", SECRET, extra={"incident_id": 7, "header": f"Bearer {SECRET}"})
    try:
        raise RuntimeError(f"failed with {SECRET}")
    except RuntimeError:
        log.exception("boom")
    out = stream.getvalue()
    assert SECRET not in out
    assert "INFO pitcrew.test: calling with *** header=" in out
    assert "incident_id=7" in out
    assert "RuntimeError: failed with ***" in out


def test_body_of_a_forged_slack_request_is_not_logged(restore_root_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(format="plain", level="INFO", stream=stream)
    # What slack_bolt's RequestVerification middleware logs for a bad signature.
    logging.getLogger("slack_bolt.AsyncRequestVerification").info(
        "Invalid request signature detected (signature: v0=abc, timestamp: 1700000000, "
        "body: payload=%7B%22response_url%22%3A%22https%3A%2F%2Fhooks.slack.com%2Factions%2FT1%2Fs%22)"
    )
    out = stream.getvalue()
    assert (
        "Invalid request signature detected (signature: v0=abc, timestamp: 1700000000, body omitted)" in out
    )
    assert "hooks.slack.com" not in out and "payload=" not in out


def test_json_logs_are_one_object_per_line_and_redacted(restore_root_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(format="json", level="info", secrets=[SECRET], stream=stream)
    log = logging.getLogger("pitcrew.test")
    log.debug("not shown")
    log.warning("webhook from %s", "10.0.0.1", extra={"token": SECRET, "count": 2})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["level"] == "WARNING"
    assert record["logger"] == "pitcrew.test"
    assert record["message"] == "webhook from 10.0.0.1"
    assert record["token"] == "***"
    assert record["count"] == 2
    assert record["time"].endswith("Z")


def test_configure_logging_replaces_its_own_handler(restore_root_logging: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(stream=first)
    configure_logging(stream=second)
    logging.getLogger("pitcrew.test").warning("once")
    assert first.getvalue() == "" and second.getvalue().count("once") == 1
    with pytest.raises(ValueError, match="plain or json"):
        configure_logging(format="xml")


def test_every_secret_of_a_real_config_is_found() -> None:
    config = parse_config(
        {
            "webhook": {"bearer_token_env": "T", "basic_username": "am", "basic_password_env": "P"},
            "slack": {
                "enabled": True,
                "bot_token_env": "B",
                "signing_secret_env": "S",
                "default_channel": "#ops",
            },
        },
        env={"T": "tok-1", "P": "pw-2", "B": "xoxb-3", "S": "sig-4"},
    )
    assert sorted(secrets_in(config)) == ["pw-2", "sig-4", "tok-1", "xoxb-3"]
