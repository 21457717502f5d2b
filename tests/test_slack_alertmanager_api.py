"""The silence request built from an incident (pure parts of bot/alertmanager_api.py)."""

from __future__ import annotations

import dataclasses

import pytest

from bot.alertmanager_api import AlertmanagerApi, incident_matchers, silence_for
from tests.support.slack import sample_incident


def test_silence_request_from_incident() -> None:
    incident = sample_incident(incident_id=42)
    request = silence_for(incident, duration_seconds=7200, created_by="slack:alice", now=1_800_000_000.0)
    body = request.to_json()
    assert body["startsAt"] == "2027-01-15T08:00:00.000000Z"
    assert body["endsAt"] == "2027-01-15T10:00:00.000000Z"
    assert body["createdBy"] == "slack:alice" and "incident #42" in str(body["comment"])
    assert body["matchers"] == [
        {"name": "alertname", "value": "KubePodCrashLooping", "isRegex": False, "isEqual": True},
        {"name": "namespace", "value": "monitoring", "isRegex": False, "isEqual": True},
        {"name": "severity", "value": "critical", "isRegex": False, "isEqual": True},
    ]


def test_incident_without_labels_cannot_be_silenced() -> None:
    incident = dataclasses.replace(sample_incident(), common_labels={}, group_labels={})
    with pytest.raises(ValueError, match="no common labels"):
        incident_matchers(incident)


def test_bad_url_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        AlertmanagerApi("alertmanager:9093")
