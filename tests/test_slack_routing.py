"""Channel routing: the first route whose every given matcher equals the incident's value, else the
default channel."""

from __future__ import annotations

import dataclasses

import pytest

from bot.model import Incident
from bot.slack.routing import choose_channel
from bot.slack.settings import Route
from tests.support.slack import sample_incident

ROUTES = (
    Route(channel="C-PROM", namespace="monitoring", alertname="PrometheusDown"),
    Route(channel="C-CRIT", severity="critical"),
    Route(channel="C-MON", namespace="monitoring"),
)


def incident(
    *, alertname: str = "KubePodCrashLooping", namespace: str = "monitoring", severity: str = "warning"
) -> Incident:
    base = sample_incident(severity=severity)
    labels = {"alertname": alertname, "namespace": namespace, "severity": severity}
    return dataclasses.replace(base, common_labels=labels, group_labels={"alertname": alertname})


@pytest.mark.parametrize(
    ("alertname", "namespace", "severity", "channel"),
    [
        ("PrometheusDown", "monitoring", "critical", "C-PROM"),  # first match wins over severity
        ("PrometheusDown", "logging", "critical", "C-CRIT"),  # every matcher of a route must match
        ("KubePodCrashLooping", "monitoring", "critical", "C-CRIT"),
        ("KubePodCrashLooping", "monitoring", "warning", "C-MON"),
        ("KubePodCrashLooping", "logging", "warning", "C-DEFAULT"),
    ],
)
def test_first_matching_route_else_default(
    alertname: str, namespace: str, severity: str, channel: str
) -> None:
    chosen = choose_channel(
        ROUTES, "C-DEFAULT", incident(alertname=alertname, namespace=namespace, severity=severity)
    )
    assert chosen == channel


def test_no_routes_means_the_default_channel() -> None:
    assert choose_channel((), "C-DEFAULT", incident()) == "C-DEFAULT"
