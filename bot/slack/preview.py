"""`pitcrew slack preview`: the incident message (and its details reply) as pitcrew would post them,
from a diagnostic bundle and optionally an Alertmanager webhook body, with no Slack workspace.

Prints the Block Kit JSON and a Block Kit Builder link (the JSON in the URL's fragment, which the
Builder reads: nothing is sent anywhere until the user opens it).
"""

from __future__ import annotations

import json
import time
import urllib.parse
from pathlib import Path
from typing import Any

from bot.model import Alert, Incident, IncidentStatus, WorkState
from bot.slack import blocks as B
from bot.slack import details as D

BUILDER_URL = "https://app.slack.com/block-kit-builder/#"
PREVIEW_ALERTNAME = "PitcrewManualDiagnosis"


class PreviewError(Exception):
    pass


def builder_link(blocks: Any) -> str:
    """A Block Kit Builder link that opens `blocks` (the Builder takes `{"blocks": [...]}`)."""
    payload = json.dumps({"blocks": list(blocks)}, ensure_ascii=False, separators=(",", ":"))
    return BUILDER_URL + urllib.parse.quote(payload, safe="")


def _alert_payload(path: str | None) -> Any:
    from bot.alertmanager import WebhookRejected, parse_webhook

    if path is None:
        return None
    try:
        body = Path(path).read_bytes()
    except OSError as exc:
        raise PreviewError(f"cannot read --alert {path}: {exc.strerror or exc}") from None
    try:
        return parse_webhook(body, max_bytes=10 * 1024 * 1024)
    except WebhookRejected as exc:
        raise PreviewError(f"--alert {path}: not an Alertmanager webhook body: {exc}") from None


def preview_incident(snapshot: str, alert_file: str | None = None, *, now: float | None = None) -> Incident:
    """The incident pitcrew would post for this bundle (and alert), diagnosed as the service does."""
    from bot.diagnose import diagnose
    from bot.snapshot import BundleError, read_bundle

    payload = _alert_payload(alert_file)
    try:
        evidence = read_bundle(snapshot)
    except BundleError as exc:
        raise PreviewError(str(exc)) from None
    alerts: tuple[Alert, ...] = payload.alerts if payload is not None else ()
    diagnosis = diagnose(evidence, alerts)
    at = time.time() if now is None else now
    if payload is not None:
        labels, annotations = dict(payload.common_labels), dict(payload.common_annotations)
        group_labels, external_url = dict(payload.group_labels), payload.external_url
        status = IncidentStatus.RESOLVED if payload.status == "resolved" else IncidentStatus.FIRING
        group_key = payload.group_key
    else:
        # No alert: shown as `/pitcrew diagnose` posts a diagnosis asked for by hand.
        labels = {"alertname": PREVIEW_ALERTNAME, "severity": "info"}
        annotations = {"summary": f"Diagnosis of the bundle {Path(snapshot).name}"}
        group_labels, external_url = {"alertname": PREVIEW_ALERTNAME}, ""
        status, group_key = IncidentStatus.FIRING, "preview"
    return Incident(
        id=1,
        group_key=group_key,
        status=status,
        work_state=WorkState.DIAGNOSED,
        receiver="pitcrew",
        group_labels=group_labels,
        common_labels=labels,
        common_annotations=annotations,
        external_url=external_url,
        alerts=alerts,
        created_at=at,
        updated_at=at,
        findings=diagnosis.findings,
        diagnosis_error="; ".join((*diagnosis.collection_errors, *diagnosis.handler_errors)) or None,
    )


def render_preview(incident: Incident, *, thread: bool, now: float) -> dict[str, Any]:
    view = B.IncidentView(incident=incident, now=now, expires_at=now + 3600)
    message = B.render_incident(view)
    out: dict[str, Any] = {"message": message.to_json()}
    if thread:
        out["thread"] = [D.render_details_reply(incident).to_json()]
    return out
