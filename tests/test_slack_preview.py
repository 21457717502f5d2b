"""`pitcrew slack preview`: the incident message from a bundle (and an alert), with no workspace."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest

from bot.cli import main
from bot.slack import blocks as B
from bot.slack import limits
from bot.slack.preview import BUILDER_URL

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SEED = str(EXAMPLES / "seed-incident")
ALERT = str(EXAMPLES / "alertmanager-webhook.json")


def _split(out: str) -> tuple[dict, list[str]]:  # type: ignore[type-arg]
    body, _, links = out.partition("\nBlock Kit Builder")
    return json.loads(body), ("Block Kit Builder" + links).strip().splitlines()


def test_preview_prints_the_message_and_a_builder_link(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["slack", "preview", "--snapshot", SEED, "--alert", ALERT, "--thread"]) == 0
    rendered, links = _split(capsys.readouterr().out)
    message = rendered["message"]
    assert limits.check_message(message) == []
    assert message["blocks"][0]["text"]["text"] == "🔥 FIRING · KubePodCrashLooping · critical · monitoring"
    assert len(message["blocks"]) <= B.BUDGET_BLOCKS
    assert len(B.visible_text(message["blocks"])) <= B.BUDGET_VISIBLE_CHARS
    (reply,) = rendered["thread"]
    assert limits.check_message(reply) == [] and "permission denied" in json.dumps(reply)
    assert len(links) == 2
    url = links[0].split(": ", 1)[1]
    assert url.startswith(BUILDER_URL)
    # The link opens exactly the printed blocks.
    assert json.loads(urllib.parse.unquote(url.removeprefix(BUILDER_URL))) == {"blocks": message["blocks"]}


def test_preview_without_an_alert_is_a_manual_diagnosis(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["slack", "preview", "--snapshot", SEED]) == 0
    rendered, links = _split(capsys.readouterr().out)
    assert "PitcrewManualDiagnosis" in rendered["message"]["blocks"][0]["text"]["text"]
    assert "thread" not in rendered and len(links) == 1


def test_preview_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "alert.json"
    bad.write_text('{"version": "4"}')
    assert main(["slack", "preview", "--snapshot", SEED, "--alert", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pitcrew slack preview: --alert {bad}: not an Alertmanager webhook body")
    assert main(["slack", "preview", "--snapshot", SEED, "--alert", str(tmp_path / "none.json")]) == 2
    assert "cannot read --alert" in capsys.readouterr().err
    assert main(["slack", "preview", "--snapshot", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("pitcrew slack preview: ")
