"""Socket Mode: pitcrew connects to a local WebSocket server speaking Slack's envelope protocol
(apps.connections.open -> hello -> envelopes -> acks) and handles slash commands through it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.slack.service import SlackService
from bot.slack.settings import SlackSettings
from bot.store import Store
from tests.support.slack import (
    APP_TOKEN,
    BOT_TOKEN,
    ScriptedExecutor,
    SlackApiServer,
    SocketModeServer,
    seed_incident,
    slash_command_payload,
)

pytestmark = pytest.mark.integration


def socket_settings(api: SlackApiServer) -> SlackSettings:
    return SlackSettings(
        bot_token=BOT_TOKEN,
        signing_secret="",
        app_token=APP_TOKEN,
        mode="socket",
        default_channel="C-ALERTS",
        api_base_url=api.base_url,
    )


async def test_slash_commands_over_socket_mode(
    slack_api: SlackApiServer, socket_mode_server: SocketModeServer, tmp_path: Path
) -> None:
    slack_api.socket_url = socket_mode_server.url
    store = await Store.open(str(tmp_path / "s.db"))
    settings = socket_settings(slack_api)
    service = SlackService(settings, store, executor=ScriptedExecutor(store))
    try:
        await service.start()
        await asyncio.wait_for(socket_mode_server.connected.wait(), 10)  # connects in the background
        assert slack_api.ok_calls("apps.connections.open")  # with the app token (checked by the server)

        envelope = await socket_mode_server.send_envelope(
            "slash_commands", slash_command_payload("help", response_url=slack_api.response_url("help"))
        )
        ack = await socket_mode_server.wait_ack(envelope)
        assert "/pitcrew diagnose" in ack["payload"]["text"]

        envelope = await socket_mode_server.send_envelope(
            "slash_commands", slash_command_payload("bogus", response_url=slack_api.response_url("bogus"))
        )
        ack = await socket_mode_server.wait_ack(envelope)
        assert "unknown subcommand" in ack["payload"]["text"]

        incident_id = await seed_incident(store)
        envelope = await socket_mode_server.send_envelope(
            "slash_commands", slash_command_payload("status", response_url=slack_api.response_url("status"))
        )
        ack = await socket_mode_server.wait_ack(envelope)
        assert "payload" not in ack or not ack["payload"]
        await slack_api.wait_for(lambda a: bool(a.responses), what="status answer via response_url")
        assert f"#{incident_id} KubePodCrashLooping" in str(slack_api.responses[0])
    finally:
        await service.stop()
        await store.close()


async def test_slack_down_at_start_up_holds_nothing_up_and_the_connection_follows(
    slack_api: SlackApiServer, socket_mode_server: SocketModeServer, tmp_path: Path
) -> None:
    slack_api.socket_url = socket_mode_server.url
    slack_api.fail_next("apps.connections.open", status=500, times=2)
    store = await Store.open(str(tmp_path / "s.db"))
    settings = socket_settings(slack_api)
    service = SlackService(settings, store, executor=ScriptedExecutor(store), socket_ping_seconds=0.2)
    try:
        # Start-up returns while Slack refuses (pitcrew's webhooks and probes do not wait for Slack)...
        await asyncio.wait_for(service.start(), 5)
        # ...and the connection comes once Slack answers.
        await asyncio.wait_for(socket_mode_server.connected.wait(), 10)
        assert [c.status for c in slack_api.calls if c.method == "apps.connections.open"] == [500, 500, 200]
        envelope = await socket_mode_server.send_envelope(
            "slash_commands", slash_command_payload("help", response_url=slack_api.response_url("help"))
        )
        ack = await socket_mode_server.wait_ack(envelope)
        assert "/pitcrew diagnose" in ack["payload"]["text"]
    finally:
        await service.stop()
        await store.close()
