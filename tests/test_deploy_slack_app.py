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
    # chat.postMessage / chat.update, the slash command, usergroups.users.list for approver groups,
    # files_upload_v2 for the alert graph.
    assert sorted(bot_scopes) == ["chat:write", "commands", "files:write", "usergroups:read"]
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


# Every Slack Web API method pitcrew calls, and the bot scope it needs (None: no scope). A method
# found in the code but missing here fails the test below, so a new call cannot ship without its
# scope being decided. From the methods' reference pages (docs.slack.dev/reference/methods).
METHOD_SCOPES: dict[str, str | None] = {
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.postEphemeral": "chat:write",
    "views.open": None,  # needs only the click's trigger_id
    "usergroups.users.list": "usergroups:read",
    # files_upload_v2 = files.getUploadURLExternal + upload URL + files.completeUploadExternal
    "files.upload_v2": "files:write",
}
# Called by the libraries, not by pitcrew's code: Bolt's auth.test (no scope) and Socket Mode's
# apps.connections.open (the app-level token's connections:write, not a bot scope).
LIBRARY_METHODS = {"auth.test": None, "apps.connections.open": None}
_FAMILIES = "chat|views|usergroups|files|auth|conversations|reactions|users|apps|pins|bookmarks|team"


def _methods_in_code() -> set[str]:
    from tests.support.deploy import REPO_ROOT

    found: set[str] = set()
    for path in (REPO_ROOT / "bot").rglob("*.py"):
        text = path.read_text()
        found.update(re.findall(rf'"((?:{_FAMILIES})\.[A-Za-z_.]+)"', text))
        for call in re.findall(rf"\.((?:{_FAMILIES})_[A-Za-z0-9_]+)\(", text):
            # slack_sdk names a method after its Web API name, dots as underscores.
            found.add("files.upload_v2" if call == "files_upload_v2" else call.replace("_", "."))
    return found


def test_every_method_pitcrew_calls_has_its_scope_and_nothing_more(manifest: dict[str, Any]) -> None:
    used = _methods_in_code()
    assert {"chat.postMessage", "chat.update", "views.open", "files.upload_v2"} <= used
    unknown = used - set(METHOD_SCOPES)
    assert not unknown, f"Web API methods without a decided scope: {sorted(unknown)}"
    needed = {METHOD_SCOPES[m] for m in used} - {None} | {"commands"}  # the /pitcrew slash command
    assert sorted(manifest["oauth_config"]["scopes"]["bot"]) == sorted(needed)
    # Posting into a channel needs the bot invited there (no chat:write.public): documented.
    text = MANIFEST.read_text()
    assert "chat:write.public" not in manifest["oauth_config"]["scopes"]["bot"]
    assert "/invite @pitcrew" in text
    from tests.support.slack import KNOWN_METHODS

    # The recording server answers exactly what the code and the libraries call.
    answered = (used - {"files.upload_v2"}) | set(LIBRARY_METHODS)
    answered |= {"files.getUploadURLExternal", "files.completeUploadExternal"}
    assert answered == KNOWN_METHODS
