"""deploy/slack-app-manifest.yaml: valid YAML with the fields Slack's app manifest requires (and within
its documented limits), consistent with pitcrew's Slack endpoint and config."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.support.deploy import DEPLOY_DIR

MANIFEST = DEPLOY_DIR / "slack-app-manifest.yaml"


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    loaded = yaml.safe_load(MANIFEST.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_required_fields_and_slack_limits(manifest: dict[str, Any]) -> None:
    info = manifest["display_information"]
    assert 0 < len(info["name"]) <= 35
    assert len(info.get("description", "")) <= 140
    # Slack refuses a long_description shorter than 174 or longer than 4000 characters.
    assert 174 <= len(info["long_description"]) <= 4000
    assert re.fullmatch(r"#[0-9a-fA-F]{6}", info["background_color"])
    bot_user = manifest["features"]["bot_user"]
    assert 0 < len(bot_user["display_name"]) <= 80
    assert set(manifest) <= {"_metadata", "display_information", "features", "oauth_config", "settings"}


def test_scopes_are_the_ones_pitcrew_uses(manifest: dict[str, Any]) -> None:
    bot_scopes = manifest["oauth_config"]["scopes"]["bot"]
    # chat.postMessage / chat.update, the slash command, usergroups.users.list for approver groups.
    assert sorted(bot_scopes) == ["chat:write", "commands", "usergroups:read"]
    assert "user" not in manifest["oauth_config"]["scopes"]


def test_slash_command_and_interactivity_reach_pitcrew(manifest: dict[str, Any]) -> None:
    config = yaml.safe_load((DEPLOY_DIR / "config.yaml").read_text())
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == config["slack"]["command"] == "/pitcrew"
    assert len(command["command"]) <= 32 and len(command["description"]) <= 2000
    assert len(command.get("usage_hint", "")) <= 1000
    interactivity = manifest["settings"]["interactivity"]
    assert interactivity["is_enabled"] is True
    # Bolt serves commands and interactions on one path of pitcrew's app.
    for url in (command["url"], interactivity["request_url"]):
        assert re.fullmatch(r"https://[a-z0-9.-]+/slack/events", url), url
    # HTTP mode by default, matching config.yaml; Socket Mode is the documented alternative.
    assert manifest["settings"]["socket_mode_enabled"] is False
    assert config["slack"]["mode"] == "http"
    assert "socket_mode_enabled: true" in MANIFEST.read_text()


def test_slash_command_usage_hint_names_every_subcommand(manifest: dict[str, Any]) -> None:
    from bot.slack.commands import usage

    (command,) = manifest["features"]["slash_commands"]
    subcommands = set(re.findall(r"`/pitcrew (\w+)", usage()))
    hinted = {part.split()[0] for part in command["usage_hint"].split("|")}
    assert hinted == subcommands
