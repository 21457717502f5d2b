"""Slack settings from the real config loader: secrets revealed once, approver lists interpreted."""

from __future__ import annotations

from pathlib import Path

from bot.config import load_config
from bot.slack.settings import settings_from_config

CONFIG = """
slack:
  enabled: true
  bot_token_env: PITCREW_TEST_SLACK_BOT
  signing_secret_env: PITCREW_TEST_SLACK_SIGNING
  api_base_url: http://127.0.0.1:1/api
  default_channel: C-ALERTS
  routes:
    - severity: critical
      channel: C-CRIT
  approvers:
    users: [UALICE]
    groups: [SOPS]
    per_namespace:
      payments: [UPAY, SPAYTEAM]
    two_for_critical: true
  approval_expiry_seconds: 600
alertmanager:
  url: http://127.0.0.1:9093
"""


def test_settings_from_config(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    env = {"PITCREW_TEST_SLACK_BOT": "xoxb-secret", "PITCREW_TEST_SLACK_SIGNING": "signing-secret"}
    settings = settings_from_config(load_config(str(path), env=env))
    assert settings.bot_token == "xoxb-secret" and settings.signing_secret == "signing-secret"
    assert "xoxb-secret" not in repr(settings) and "signing-secret" not in repr(settings)
    assert settings.api_base_url == "http://127.0.0.1:1/api/"  # slack_sdk needs the trailing slash
    assert settings.routes[0].channel == "C-CRIT" and settings.routes[0].severity == "critical"
    assert settings.policy.default.users == {"UALICE"} and settings.policy.default.groups == {"SOPS"}
    payments = settings.policy.per_namespace["payments"]
    assert payments.users == {"UPAY"} and payments.groups == {"SPAYTEAM"}
    assert settings.policy.two_for_critical and settings.approval_expiry_seconds == 600
    assert settings.alertmanager_url == "http://127.0.0.1:9093"
