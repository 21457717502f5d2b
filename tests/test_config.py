"""Config loading: defaults, the example file, and every kind of bad input with its message."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import (
    Config,
    ConfigError,
    Secret,
    SlackConfig,
    WebhookConfig,
    load_config,
    parse_config,
)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config.example.yaml"


def _example_env() -> dict[str, str]:
    """Every *_env variable the example names, set to a dummy value."""
    names: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, str) and key.endswith("_env") and isinstance(value, str):
                    names.append(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(yaml.safe_load(EXAMPLE.read_text()))
    return {name: f"value-of-{name}" for name in names}


def _problems(mapping: Any, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(mapping, env=env or {})
    return info.value.problems


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pitcrew.yaml"
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------
# Valid configs
# ---------------------------------------------------------------------------------------------


def test_example_file_is_valid() -> None:
    env = _example_env()
    assert "PITCREW_WEBHOOK_TOKEN" in env and "SLACK_BOT_TOKEN" in env
    config = load_config(EXAMPLE, env=env)
    assert config.webhook.bearer_token is not None
    assert config.webhook.bearer_token.reveal() == "value-of-PITCREW_WEBHOOK_TOKEN"
    assert config.slack.enabled and config.slack.bot_token is not None
    assert config.hosts and config.schedules and config.slack.routes


def test_example_file_documents_every_option() -> None:
    """Walk the dataclasses: each field (as its YAML key) is set in the example file at its place, or
    shown there commented out (`# key: value`)."""
    text = EXAMPLE.read_text()
    missing: list[str] = []

    def commented(key: str) -> bool:
        return re.search(rf"^\s*#\s*(- )?{re.escape(key)}:", text, re.MULTILINE) is not None

    def walk(cls: type, nodes: list[Any], path: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            key = f"{f.name}_env" if Secret in (typing.get_args(tp) or (tp,)) else f.name
            where = f"{path}.{key}" if path else key
            values = [n[key] for n in nodes if isinstance(n, dict) and key in n]
            if not values:
                if not commented(key):
                    missing.append(where)
                continue
            args = typing.get_args(tp)
            item_types = [a for a in args if isinstance(a, type) and dataclasses.is_dataclass(a)]
            if isinstance(tp, type) and dataclasses.is_dataclass(tp):
                walk(tp, values, where)
            elif item_types:
                walk(item_types[0], [item for v in values if isinstance(v, list) for item in v], f"{where}[]")

    walk(Config, [yaml.safe_load(text)], "")
    assert missing == []


def test_minimal_config_uses_defaults() -> None:
    config = parse_config({}, env={})
    assert config == Config()
    assert config.server.listen_port == 8080
    assert config.server.max_body_bytes == 1024 * 1024
    assert config.store.synchronous == "normal"
    assert config.cluster.namespaces == ("monitoring",)
    assert config.cluster.in_cluster == "auto"
    assert config.diagnosis.oom_memory_factor == 1.5
    assert config.diagnosis.image_uids["loki"] == 10001
    assert config.slack.command == "/pitcrew" and not config.slack.enabled
    assert not config.webhook.auth_configured


def test_minimal_file_loads(tmp_path: Path) -> None:
    path = _write(tmp_path, "store:\n  path: /tmp/x.db\nwebhook:\n  bearer_token_env: TOKEN\n")
    config = load_config(path, env={"TOKEN": "s3cret"})
    assert config.store.path == "/tmp/x.db"
    assert config.webhook.bearer_token == Secret("s3cret")


def test_values_are_typed() -> None:
    config = parse_config(
        {
            "server": {"shutdown_timeout_seconds": 5},  # an int where a float is expected is fine
            "cluster": {"in_cluster": False, "namespaces": ["monitoring", "logging"]},
            "slack": {"routes": [{"severity": "critical", "channel": "#oncall"}]},
            "diagnosis": {"image_uids": {"mimir": 10001}},
        },
        env={},
    )
    assert config.server.shutdown_timeout_seconds == 5.0
    assert isinstance(config.server.shutdown_timeout_seconds, float)
    assert config.cluster.in_cluster is False
    assert config.cluster.namespaces == ("monitoring", "logging")
    assert config.slack.routes[0].channel == "#oncall" and config.slack.routes[0].namespace is None
    assert config.diagnosis.image_uids == {"mimir": 10001}  # replaces the default map


def test_secret_never_shows_its_value() -> None:
    config = parse_config({"webhook": {"bearer_token_env": "TOKEN"}}, env={"TOKEN": "hunter2"})
    secret = config.webhook.bearer_token
    assert secret is not None and secret.reveal() == "hunter2"
    assert str(secret) == "***" and repr(secret) == "'***'" and f"{secret}" == "***"
    assert "hunter2" not in repr(config)
    assert secret == Secret("hunter2") and secret != Secret("other")


# ---------------------------------------------------------------------------------------------
# Bad configs: one line per problem, "field.path: reason"
# ---------------------------------------------------------------------------------------------


def test_unknown_keys_are_errors_at_every_level() -> None:
    problems = _problems(
        {
            "sever": {},
            "server": {"listen_prot": 1},
            "slack": {"routes": [{"channel": "#a", "chanel": "#b"}]},
        }
    )
    assert "sever: unknown key (did you mean server?)" in problems
    assert "server.listen_prot: unknown key (did you mean listen_port?)" in problems
    assert "slack.routes[0].chanel: unknown key (did you mean channel?)" in problems
    assert len(problems) == 3


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        ({"server": {"listen_port": "8080"}}, "server.listen_port: expected integer, got string '8080'"),
        ({"server": {"listen_port": True}}, "server.listen_port: expected integer, got boolean true"),
        (
            {"server": {"shutdown_timeout_seconds": "soon"}},
            "server.shutdown_timeout_seconds: expected number",
        ),
        ({"slack": {"enabled": "yes please"}}, "slack.enabled: expected boolean (true/false), got string"),
        ({"logging": {"format": "xml"}}, "logging.format: expected one of plain, json; got string 'xml'"),
        ({"cluster": {"in_cluster": "maybe"}}, "cluster.in_cluster: expected boolean or one of auto"),
        ({"cluster": {"namespaces": "monitoring"}}, "cluster.namespaces: expected a list, got string"),
        ({"cluster": {"namespaces": ["a", 3]}}, "cluster.namespaces[1]: expected string, got number 3"),
        ({"server": []}, "server: expected a mapping, got a list"),
        ({"diagnosis": {"image_uids": {"loki": "10001"}}}, "diagnosis.image_uids.loki: expected integer"),
        ({"cluster": {"context": None, "log_tail_lines": None}}, "cluster.log_tail_lines: expected integer"),
        ({"hosts": [{"name": "n"}]}, "hosts[0].address: required"),
        ({"slack": {"routes": [{"channel": "#a"}, {}, {}]}}, "slack.routes[2].channel: required"),
        (
            {"schedules": [{"name": "x", "cron": "* * * * *", "timezone": "Mars/Base"}]},
            "schedules[0].timezone",
        ),
        ({"server": {"listen_port": 70000}}, "server.listen_port: must be between 1 and 65535, got 70000"),
        ({"workers": {"concurrency": 0}}, "workers.concurrency: must be at least 1, got 0"),
        ({"validation": {"prometheus_url": "prometheus:9090"}}, "validation.prometheus_url: must be an http"),
        ({"slack": {"command": "pitcrew"}}, "slack.command: must be a slash command"),
    ],
)
def test_bad_values_name_the_field_and_the_reason(mapping: dict[str, Any], expected: str) -> None:
    problems = _problems(mapping)
    assert any(p.startswith(expected) for p in problems), problems


def test_several_problems_are_reported_together() -> None:
    problems = _problems(
        {
            "server": {"listen_port": "x", "max_body_bytes": 0},
            "logging": {"level": "loud"},
            "webhook": {"bearer_token_env": "MISSING_TOKEN"},
            "slack": {"routes": [{"channel": "#a"}, {"severity": "critical"}, {"channel": 5}]},
            "bogus": 1,
        }
    )
    assert problems == [
        "bogus: unknown key (known keys: alertmanager, cluster, diagnosis, ha, hosts, logging, remediation, "
        "schedules, server, slack, store, validation, webhook, workers)",
        "server.listen_port: expected integer, got string 'x'",
        "logging.level: expected one of debug, info, warning, error; got string 'loud'",
        "webhook.bearer_token_env: environment variable MISSING_TOKEN is not set",
        "slack.routes[1].channel: required",
        "slack.routes[2].channel: expected string, got number 5",
    ]
    # A section's value rules (max_body_bytes > 0) run once its fields have the right types.
    assert _problems({"server": {"listen_port": 0, "max_body_bytes": 0}}) == [
        "server.listen_port: must be between 1 and 65535, got 0",
        "server.max_body_bytes: must be greater than 0, got 0",
    ]


def test_unknown_keys_do_not_hide_the_other_problems_of_their_section() -> None:
    """An unknown key is one problem among others: the section's (and the whole config's) value
    rules still run, so one check-config run lists everything to fix."""
    host = {"address": "10.0.0.1", "username": "u", "client_key_file": "k", "known_hosts_file": "h"}
    problems = _problems(
        {
            "server": {"listen_port": 70000, "bogus": 1},
            "slack": {"enabled": True, "routes": [{"channel": "#a", "chanel": "#b"}]},
            "hosts": [{"name": "a", **host, "prot": 22}, {"name": "a", **host}],
            "extra": 1,
        }
    )
    assert problems == [
        "extra: unknown key (known keys: alertmanager, cluster, diagnosis, ha, hosts, logging, remediation, "
        "schedules, server, slack, store, validation, webhook, workers)",
        "server.bogus: unknown key (known keys: listen_host, listen_port, max_body_bytes, "
        "shutdown_timeout_seconds)",
        "server.listen_port: must be between 1 and 65535, got 70000",
        "hosts[0].prot: unknown key (did you mean port?)",
        "slack.routes[0].chanel: unknown key (did you mean channel?)",
        "slack.bot_token_env: required when slack is enabled",
        "slack.signing_secret_env: required when slack is enabled in http mode",
        "slack.default_channel: required when slack is enabled (where unrouted alerts go)",
        "hosts[1].name: duplicate name 'a'",
    ]


def test_missing_and_empty_environment_variables_are_named_without_values() -> None:
    problems = _problems(
        {
            "webhook": {"bearer_token_env": "PITCREW_TOKEN"},
            "slack": {"bot_token_env": "SLACK_BOT_TOKEN"},
        },
        env={"SLACK_BOT_TOKEN": ""},
    )
    assert problems == [
        "webhook.bearer_token_env: environment variable PITCREW_TOKEN is not set",
        "slack.bot_token_env: environment variable SLACK_BOT_TOKEN is empty",
    ]


def test_secret_written_inline_is_refused_without_echoing_it() -> None:
    problems = _problems(
        {"slack": {"bot_token": "xoxb-123-secret"}, "webhook": {"bearer_token_env": "xoxb-456"}}
    )
    assert problems == [
        "webhook.bearer_token_env: expected the name of an environment variable (letters, digits, _), "
        "got a string that is not a variable name",
        "slack.bot_token: secrets are not read from the config file; set bot_token_env to the name of an "
        "environment variable holding it",
    ]
    assert not any("xoxb" in p for p in problems)


def test_slack_enabled_requires_its_credentials_per_mode() -> None:
    assert _problems({"slack": {"enabled": True}}) == [
        "slack.bot_token_env: required when slack is enabled",
        "slack.signing_secret_env: required when slack is enabled in http mode",
        "slack.default_channel: required when slack is enabled (where unrouted alerts go)",
    ]
    env = {"BOT": "xoxb", "APP": "xapp"}
    socket = {"enabled": True, "mode": "socket", "bot_token_env": "BOT", "default_channel": "#a"}
    assert _problems({"slack": socket}, env) == [
        "slack.app_token_env: required when slack is enabled in socket mode"
    ]
    config = parse_config({"slack": {**socket, "app_token_env": "APP"}}, env=env)
    assert config.slack == SlackConfig(
        enabled=True, mode="socket", bot_token=Secret("xoxb"), app_token=Secret("xapp"), default_channel="#a"
    )


def test_basic_auth_needs_both_parts() -> None:
    assert _problems({"webhook": {"basic_username": "am"}}) == [
        "webhook.basic_password_env: required when basic_username is set"
    ]
    config = parse_config({"webhook": {"basic_username": "am", "basic_password_env": "PW"}}, env={"PW": "p"})
    assert config.webhook == WebhookConfig(basic_username="am", basic_password=Secret("p"))


def test_cross_section_rules() -> None:
    host = {"address": "10.0.0.1", "username": "u", "client_key_file": "k", "known_hosts_file": "h"}
    problems = _problems(
        {
            "hosts": [{"name": "a", **host}, {"name": "a", **host}],
            "schedules": [{"name": "s", "cron": "0 8 * * *"}, {"name": "s", "cron": "0 9 * * *"}],
        }
    )
    assert problems == ["hosts[1].name: duplicate name 'a'", "schedules[1].name: duplicate name 's'"]


# ---------------------------------------------------------------------------------------------
# Bad files
# ---------------------------------------------------------------------------------------------


def test_invalid_yaml_names_file_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "server:\n  listen_port: 8080\n  listen_host: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    [problem] = info.value.problems
    assert problem.startswith(f"{path}:4:1: invalid YAML: ")
    assert "flow sequence" in problem


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    path = _write(tmp_path, "server:\n  listen_port: 1\n  listen_port: 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.problems == [
        f"{path}:3:3: invalid YAML: while constructing a mapping; "
        "duplicate key 'listen_port' (first at line 2)"
    ]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("- server\n- store\n", ":1:1: expected a mapping of config sections, got a list"),
        ("just text\n", ":1:1: expected a mapping of config sections, got string 'just text'"),
        ("", ": the file is empty; expected a mapping of config sections"),
        ("# only a comment\n", ": the file is empty; expected a mapping of config sections"),
    ],
)
def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str, reason: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.problems == [f"{path}{reason}"]


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.yaml", env={})
    assert info.value.problems == [f"{tmp_path / 'absent.yaml'}: cannot read: No such file or directory"]


def test_config_error_message_lists_every_problem() -> None:
    error = ConfigError(["a: x", "b: y"])
    assert str(error) == "invalid config (2 problems):\na: x\nb: y"


def test_check_config_command_prints_one_line_per_problem(tmp_path: Path) -> None:
    bad = _write(tmp_path, "server:\n  listen_port: high\nlogging:\n  format: xml\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO)
    run = subprocess.run(
        [sys.executable, "-m", "bot.cli", "check-config", str(bad)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2, run.stderr
    assert run.stdout.splitlines() == [
        "server.listen_port: expected integer, got string 'high'",
        "logging.format: expected one of plain, json; got string 'xml'",
    ]

    good = _write(tmp_path, "store:\n  path: x.db\n")
    run = subprocess.run(
        [sys.executable, "-m", "bot.cli", "check-config", str(good)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert (run.returncode, run.stdout) == (0, "ok\n"), run.stderr


def test_host_with_empty_known_hosts_file_is_refused() -> None:
    host = {
        "name": "masternode",
        "address": "127.0.0.1",
        "username": "root",
        "client_key_file": "/etc/pitcrew/ssh/id_ed25519",
        "known_hosts_file": " ",
    }
    with pytest.raises(ConfigError) as error:
        parse_config({"hosts": [host]}, env={})
    assert error.value.problems == ["hosts[0].known_hosts_file: must not be empty"]


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("validation", "grafana_url"),
        ("validation", "loki_url"),
        ("alertmanager", "url"),
        ("slack", "api_base_url"),
    ],
)
def test_a_url_carrying_credentials_is_refused_without_echoing_them(section: str, key: str) -> None:
    # A password in a URL would be printed wherever the URL is (CLI checks, logs, silence links).
    problems = _problems({section: {key: "http://admin:hunter2-in-url@grafana.monitoring:3000"}})
    assert f"{section}.{key}: must not carry credentials (user:password@)" in "\n".join(problems), problems
    assert not any("hunter2-in-url" in p for p in problems)
    parse_config({section: {key: "http://grafana.monitoring:3000"}}, env={})  # no credentials: fine
