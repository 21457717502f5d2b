"""What README.md tells a new user to run refers to files that work: the example webhook it curls."""

from __future__ import annotations

from pathlib import Path

from bot.alertmanager import parse_webhook
from bot.config import ServerConfig
from bot.snapshot import read_bundle

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_WEBHOOK = REPO / "examples" / "alertmanager-webhook.json"


def test_readme_curls_the_example_webhook_which_is_a_valid_alert_about_the_seed_incident() -> None:
    assert "--data @examples/alertmanager-webhook.json" in (REPO / "README.md").read_text()
    payload = parse_webhook(EXAMPLE_WEBHOOK.read_bytes(), ServerConfig().max_body_bytes)
    assert payload.status == "firing" and payload.group_key
    (alert,) = payload.alerts
    pods = {(p.namespace, p.name) for p in read_bundle(REPO / "examples" / "seed-incident").pods}
    assert (alert.labels["namespace"], alert.labels["pod"]) in pods
