"""`pitcrew check-config` and `pitcrew serve` start-up refusals, through the real CLI entry point."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main

VALID = """\
server:
  listen_host: 127.0.0.1
  listen_port: 18080
store:
  path: {db}
webhook:
  bearer_token_env: PITCREW_TEST_SERVICE_TOKEN
workers:
  concurrency: 2
"""

# `pitcrew serve` configures logging on the root logger; take it off again after each test.
pytestmark = pytest.mark.usefixtures("restore_root_logging")


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The loader reads secrets from the process environment; set the variable for this test only.
    monkeypatch.setenv("PITCREW_TEST_SERVICE_TOKEN", "service-token")


def test_check_config_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str], token_env: None) -> None:
    path = tmp_path / "pitcrew.yaml"
    path.write_text(VALID.format(db=tmp_path / "p.db"))
    assert main(["check-config", str(path)]) == 0
    assert capsys.readouterr().out == "ok\n"


def test_check_config_lists_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "pitcrew.yaml"
    path.write_text(
        "server:\n  colour: blue\n"
        "logging:\n  format: xml\n"
        "webhook:\n  bearer_token: inline-secret\n"
        "workers:\n  concurrency: 0\n  max_attempts: 0\n"
    )
    assert main(["check-config", str(path)]) == 2
    out = capsys.readouterr().out.splitlines()
    assert "ok" not in out
    assert any(line.startswith("logging.format:") for line in out), out
    assert any(line.startswith("server.colour:") for line in out), out
    assert any(line.startswith("webhook.bearer_token:") for line in out), out
    assert any(line.startswith("workers.concurrency:") for line in out), out
    assert any(line.startswith("workers.max_attempts:") for line in out), out
    assert not any("inline-secret" in line for line in out)


def test_check_config_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["check-config", str(missing)]) == 2
    (line,) = capsys.readouterr().out.splitlines()
    assert str(missing) in line and "cannot read" in line


def test_check_config_missing_secret_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "pitcrew.yaml"
    path.write_text(VALID.format(db=tmp_path / "p.db"))
    monkeypatch.delenv("PITCREW_TEST_SERVICE_TOKEN", raising=False)
    assert main(["check-config", str(path)]) == 2
    assert "PITCREW_TEST_SERVICE_TOKEN" in capsys.readouterr().out


def test_serve_refuses_without_webhook_auth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "pitcrew.yaml"
    path.write_text(f"store:\n  path: {tmp_path / 'p.db'}\n")
    assert main(["serve", "--config", str(path)]) == 2
    assert "--insecure-no-webhook-auth" in capsys.readouterr().err
    assert not (tmp_path / "p.db").exists()  # refused before opening anything


def test_serve_refuses_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "pitcrew.yaml"
    path.write_text("server:\n  max_body_bytes: -1\n")
    assert main(["serve", "--config", str(path)]) == 2
    assert "server.max_body_bytes:" in capsys.readouterr().out


def test_serve_with_a_store_it_cannot_open_says_why_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], token_env: None
) -> None:
    path = tmp_path / "pitcrew.yaml"
    (tmp_path / "a-file").write_text("")  # a missing folder is created; one under a file cannot be
    path.write_text(VALID.format(db=tmp_path / "a-file" / "sub" / "p.db"))
    assert main(["serve", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"start-up failed: store.path: cannot create folder {tmp_path / 'a-file' / 'sub'}: " in err
    assert "Traceback" not in err
    # check-config --connect says the same before serve is tried.
    assert main(["check-config", "--connect", str(path)]) == 1
    assert "store.path: folder " in capsys.readouterr().out


async def test_serve_creates_a_missing_store_folder_owner_only(tmp_path: Path, aiohttp_client: Any) -> None:
    from bot.app import create_app
    from bot.config import parse_config

    db = tmp_path / "var" / "lib" / "pitcrew" / "pitcrew.db"
    config = parse_config(
        {"store": {"path": str(db)}, "webhook": {"bearer_token_env": "T"}}, env={"T": "token-value"}
    )
    client = await aiohttp_client(create_app(config))
    assert (await client.get("/healthz")).status == 200
    assert db.is_file()
    assert (db.parent.stat().st_mode & 0o777) == 0o700


def test_serve_on_a_port_in_use_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], token_env: None
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = tmp_path / "pitcrew.yaml"
        path.write_text(VALID.format(db=tmp_path / "p.db").replace("18080", str(port)))
        assert main(["serve", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}: " in err
    assert "Traceback" not in err
