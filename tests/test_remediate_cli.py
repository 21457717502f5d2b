"""`pitcrew remediate`, `pitcrew rollback` and `pitcrew history` against the emulator seeded with the
seed incident (tests/support/kube_writes.py) and a real store file. The CLI runs its own event loop,
so each call runs in a thread while the emulator serves from the test's loop. Under pytest stdin is
not a terminal, which is exactly the case where per-step confirmation must refuse without --yes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bot.cli import build_parser, main
from bot.cli.history import cli_history
from bot.cli.remediate import cli_remediate
from bot.cli.rollback import cli_rollback
from bot.store import Store
from tests.support.kube import KubeHarness
from tests.support.kube_writes import SEED_BUNDLE, Kubelet, WriteSemantics, live_object
from tests.support.stackstubs import Stack

pytestmark = pytest.mark.integration
REPO_ROOT = Path(__file__).resolve().parents[1]
Kube = tuple[KubeHarness, WriteSemantics]


def write_config(tmp_path: Path, kube: KubeHarness, stack: Stack) -> Path:
    path = tmp_path / "pitcrew.yaml"
    path.write_text(
        json.dumps(
            {
                "cluster": {"kubeconfig": str(kube.kubeconfig), "in_cluster": False},
                "store": {"path": str(tmp_path / "pitcrew.db")},
                "remediation": {"backup_dir": str(tmp_path / "backups"), "wait_ready_timeout_seconds": 20},
                "validation": {"prometheus_url": stack.prometheus_url, "loki_url": stack.loki_url},
            }
        )
    )
    return path


async def run(verb_function: object, *argv: str) -> int:
    args = build_parser().parse_args(list(argv))
    code: int = await asyncio.to_thread(verb_function, args)  # type: ignore[arg-type]
    return code


async def test_dry_run_prints_plan_and_server_diff_and_changes_nothing(
    kube_writes: Kube, stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kube, _ = kube_writes
    config = write_config(tmp_path, kube, stack)
    before = live_object(kube, "StatefulSet", "prometheus", "monitoring")
    code = await run(cli_remediate, "remediate", "-c", str(config), "-n", "monitoring", "--dry-run")
    out = capsys.readouterr().out
    assert code == 0, out
    assert (
        "CRITICAL volume-permission-denied" in out
        and "plan:\n  1. patch monitoring/StatefulSet/prometheus" in out
    )
    assert "+      securityContext:" in out and "+    # frontend_worker:" in out
    assert live_object(kube, "StatefulSet", "prometheus", "monitoring") == before
    assert kube.count(verb="patch", dry_run=False) == 0 and kube.count(verb="delete") == 0


async def test_without_terminal_and_without_yes_refuses(
    kube_writes: Kube, stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kube, _ = kube_writes
    config = write_config(tmp_path, kube, stack)
    code = await run(cli_remediate, "remediate", "-c", str(config), "--snapshot", str(SEED_BUNDLE))
    assert code == 2
    assert "stdin is not a terminal" in capsys.readouterr().err
    assert kube.count(verb="patch", dry_run=False) == 0 and kube.count(verb="delete") == 0
    assert await run(cli_rollback, "rollback", "-c", str(config), "b-1") == 2


async def test_unknown_finding_and_bad_ids_are_clear_errors(
    kube_writes: Kube, stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kube, _ = kube_writes
    config = write_config(tmp_path, kube, stack)
    code = await run(cli_remediate, "remediate", "-c", str(config), "--finding", "nope", "--yes")
    err = capsys.readouterr().err
    assert code == 2 and "no finding 'nope' with a plan" in err and "volume-permission-denied" in err
    assert await run(cli_rollback, "rollback", "-c", str(config), "--yes", "x-1") == 2
    assert "is not a backup id" in capsys.readouterr().err
    assert await run(cli_rollback, "rollback", "-c", str(config), "--yes", "b-99") == 2
    assert "no pitcrew store at" in capsys.readouterr().err  # remediate refused: nothing was stored
    await (await Store.open(str(tmp_path / "pitcrew.db"))).close()
    assert await run(cli_rollback, "rollback", "-c", str(config), "--yes", "b-99") == 2
    assert "backup b-99 does not exist" in capsys.readouterr().err
    assert await run(cli_rollback, "rollback", "-c", str(config), "--yes", "7") == 2
    assert "incident 7 has no execution" in capsys.readouterr().err
    assert await run(cli_rollback, "rollback", "-c", str(config), "--yes", "e-99") == 2
    assert "execution e-99 does not exist" in capsys.readouterr().err


def test_history_without_a_store_says_so_and_creates_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def history(*argv: str) -> int:
        return cli_history(build_parser().parse_args(["history", *argv]))

    monkeypatch.chdir(tmp_path)  # the default store is ./pitcrew.db
    assert history() == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "pitcrew history: no pitcrew store at pitcrew.db (the default; --config names the service's config)"
    )
    config = tmp_path / "pitcrew.yaml"
    config.write_text(json.dumps({"store": {"path": str(tmp_path / "service.db")}}))
    assert history("-c", str(config)) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"pitcrew history: no pitcrew store at {tmp_path / 'service.db'}"
    # rollback (a backup, an execution, an incident) and summary read it too, and create nothing either.
    for argv in (
        ["rollback", "-c", str(config), "b-99"],
        ["rollback", "--yes", "e-3"],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"pitcrew {argv[0]}: no pitcrew store at "), err
    # summary reads it for incidents and remediations: it says the store is not there, and goes on.
    assert (
        main(["summary", "-c", str(config), "--snapshot", str(REPO_ROOT / "examples" / "seed-incident")]) == 1
    )
    out = capsys.readouterr().out
    assert f"Incidents and remediations unknown: no pitcrew store at {tmp_path / 'service.db'}" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pitcrew.yaml"]  # no file, no -wal/-shm


async def test_remediate_yes_then_history_then_rollback(
    kube_writes: Kube, stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kube, semantics = kube_writes
    config = write_config(tmp_path, kube, stack)
    sts_before = live_object(kube, "StatefulSet", "prometheus", "monitoring")
    assert sts_before is not None
    kubelet = Kubelet(kube, semantics, ready=True)
    kubelet.watch("monitoring", "prometheus-0")
    kubelet.watch("monitoring", "loki-0")
    async with kubelet:
        code = await run(
            cli_remediate,
            "remediate",
            "-c",
            str(config),
            "-n",
            "monitoring",
            "--finding",
            "volume-permission-denied",
            "--yes",
        )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "[step 1] patch done: patched monitoring/StatefulSet/prometheus (backup b-1" in out
    assert "[plan] execution done: succeeded" in out
    sts_after = live_object(kube, "StatefulSet", "prometheus", "monitoring")
    assert sts_after is not None and sts_after["spec"] != sts_before["spec"]
    # Only the chosen finding's plan ran: Loki's ConfigMap was not touched.
    assert kube.count(verb="patch", resource="configmaps", dry_run=False) == 0

    assert await run(cli_history, "history", "-c", str(config), "-o", "json") == 0
    history = json.loads(capsys.readouterr().out)
    (execution,) = history["other_executions"]
    assert execution["actor"] == "cli" and execution["status"] == "succeeded"
    assert execution["targets"][0] == "monitoring/StatefulSet/prometheus"

    code = await run(cli_rollback, "rollback", "-c", str(config), "--yes", f"e-{execution['id']}")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "rolled-back: restored b-1, b-2" in out
    assert live_object(kube, "StatefulSet", "prometheus", "monitoring") is not None
    restored = live_object(kube, "StatefulSet", "prometheus", "monitoring")
    assert restored is not None and restored["spec"] == sts_before["spec"]

    assert await run(cli_history, "history", "-c", str(config)) == 0
    text = capsys.readouterr().out
    assert f"execution {execution['id']} by cli" in text and "rolled-back" in text


async def test_interactive_mode_asks_before_each_step_on_a_terminal(
    kube_writes: Kube, stack: Stack, tmp_path: Path
) -> None:
    """The seed's interactive mode: with a terminal on stdin (a pty here) and no --yes, each step is
    confirmed; answering "n" stops the plan before that step."""
    import os
    import pty
    import sys

    kube, _ = kube_writes
    config = write_config(tmp_path, kube, stack)
    cm_before = live_object(kube, "ConfigMap", "loki-config", "monitoring")
    assert cm_before is not None
    master, slave = pty.openpty()
    try:
        os.write(master, b"y\nn\n")  # yes to the ConfigMap edit, no to the pod restart
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.cli",
            "remediate",
            "-c",
            str(config),
            "-n",
            "monitoring",
            "--finding",
            "loki-frontend-worker-all-in-one",
            stdin=slave,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=REPO_ROOT,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    text = out.decode()
    assert proc.returncode == 1, text + err.decode()
    assert "apply step 1 (edit-configmap monitoring/ConfigMap/loki-config)? [y/N]" in text
    assert "apply step 2 (restart-pod monitoring/Pod/loki-0)? [y/N]" in text
    assert "stopped before step 2: not confirmed" in text
    cm_after = live_object(kube, "ConfigMap", "loki-config", "monitoring")
    assert cm_after is not None and cm_after["data"] != cm_before["data"]
    assert kube.count(verb="delete") == 0


def unreachable_config(tmp_path: Path, port: int) -> Path:
    """A config whose kubeconfig points at 127.0.0.1:PORT (nothing there, or a server that never
    answers), with a short request timeout."""
    kubeconfig = tmp_path / "kubeconfig.yaml"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    path = tmp_path / "pitcrew.yaml"
    path.write_text(
        json.dumps(
            {
                "cluster": {
                    "kubeconfig": str(kubeconfig),
                    "in_cluster": False,
                    "request_timeout_seconds": 0.5,
                },
                "store": {"path": str(tmp_path / "pitcrew.db")},
                "remediation": {"backup_dir": str(tmp_path / "backups")},
            }
        )
    )
    return path


async def test_unreachable_cluster_is_a_clear_error_for_every_verb(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused connection, a server that never answers (timeout), an unloadable kubeconfig: each verb
    says so and exits 2; none reports an empty cluster as "nothing to remediate" or healthy."""
    from bot.cli.validate import cli_validate
    from bot.store import Store

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accept, never answer
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    silent_port = server.sockets[0].getsockname()[1]
    closed = await asyncio.start_server(silent, "127.0.0.1", 0)
    closed_port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    try:
        for port, reason in ((closed_port, "connection refused"), (silent_port, "no answer (timed out)")):
            config = unreachable_config(tmp_path, port)
            store = await Store.open(str(tmp_path / "pitcrew.db"))
            try:  # a backup to roll back, so rollback gets as far as the cluster
                execution = await store.start_execution(None, "cli", ["monitoring/ConfigMap/c"], "{}")
                backup_id = await store.save_backup(execution.id, "monitoring/ConfigMap/c", "object", "{}")
                await store.finish_execution(execution.id, "failed", "x")
            finally:
                await store.close()
            calls = (
                (cli_remediate, "remediate", "-n", "monitoring", "--dry-run"),
                (cli_remediate, "remediate", "--snapshot", str(SEED_BUNDLE), "--yes"),
                (cli_validate, "validate"),
                (cli_rollback, "rollback", "--yes", backup_id),
            )
            for function, verb, *rest in calls:
                code = await run(function, verb, "-c", str(config), *rest)
                captured = capsys.readouterr()
                assert code == 2, (verb, captured.out, captured.err)
                # The last line (the client may log its retry above it) is the verb's one-line error.
                last = captured.err.strip().splitlines()[-1]
                expected = (
                    f"pitcrew {verb}: cannot reach the Kubernetes API at http://127.0.0.1:{port}: {reason}"
                )
                assert last in (expected, f"{expected}; nothing changed")
                assert "nothing to remediate" not in captured.out and "PASS" not in captured.out
    finally:
        server.close()
        await server.wait_closed()
    for function, verb, *rest in calls:
        code = await run(function, verb, "-c", str(config), "--kubeconfig", str(tmp_path / "none"), *rest)
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert code == 2 and last.startswith(f"pitcrew {verb}: cannot load kubeconfig "), last


async def test_incomplete_diagnosis_with_nothing_found_is_not_success(
    kube_writes: Kube, stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kube, _ = kube_writes
    config = write_config(tmp_path, kube, stack)
    kube.forbid("pods", verb="list")
    code = await run(cli_remediate, "remediate", "-c", str(config), "-n", "monitoring", "--dry-run")
    captured = capsys.readouterr()
    assert code == 1, captured.out
    assert "could not read: cannot list pods in monitoring: forbidden" in captured.err
    assert "the diagnosis is incomplete" in captured.out


def test_read_only_verbs_need_no_secrets_they_do_not_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The service's config as deployed, read on a laptop: the webhook and Slack variables are not set.
    for name in ("PITCREW_WEBHOOK_TOKEN", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "pitcrew.yaml"
    config.write_text(
        json.dumps(
            {
                "store": {"path": str(tmp_path / "service.db")},
                "webhook": {"bearer_token_env": "PITCREW_WEBHOOK_TOKEN"},
                "slack": {"bot_token_env": "SLACK_BOT_TOKEN", "signing_secret_env": "SLACK_SIGNING_SECRET"},
            }
        )
    )
    asyncio.run(_create_empty_store(tmp_path / "service.db"))
    assert main(["history", "-c", str(config)]) == 0
    assert capsys.readouterr().out == "no incidents or executions recorded\n"
    assert main(["rollback", "-c", str(config), "--yes", "b-99"]) == 2
    assert capsys.readouterr().err == "pitcrew rollback: backup b-99 does not exist\n"
    # serve and check-config still need every variable the file names, and say which is missing.
    assert main(["check-config", str(config)]) == 2
    assert "webhook.bearer_token_env: environment variable PITCREW_WEBHOOK_TOKEN is not set" in (
        capsys.readouterr().out
    )


async def _create_empty_store(path: Path) -> None:
    await (await Store.open(str(path))).close()


def test_an_unset_secret_fails_only_where_it_is_revealed() -> None:
    from bot.config import ConfigError, parse_config

    config = parse_config({"slack": {"bot_token_env": "NOT_SET_ANYWHERE"}}, env={}, secrets_required=False)
    token = config.slack.bot_token
    assert token is not None and not token.is_set and str(token) == "***"
    with pytest.raises(
        ConfigError, match=r"slack\.bot_token_env: environment variable NOT_SET_ANYWHERE is not set"
    ):
        token.reveal()
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE is not set"):
        parse_config({"slack": {"bot_token_env": "NOT_SET_ANYWHERE"}}, env={})
