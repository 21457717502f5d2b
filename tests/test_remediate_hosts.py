"""Host-command steps executed by the executor over a real sshd (tests/support/sshd.py): the owner and
mode are recorded as a "host" backup first, the change is made, and rollback restores them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bot.config import parse_config
from bot.hosts import HostBackup, Hosts
from bot.model import HostCommandStep, ObjectRef, Plan, StepEvent
from bot.remediation import execute, rollback
from bot.store import Store
from tests.support.kube import KubeHarness
from tests.support.kube_writes import WriteSemantics
from tests.support.sshd import SshdServer

pytestmark = pytest.mark.integration


def owners(root: Path) -> dict[str, tuple[int, int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [".", *dirnames, *filenames]:
            path = os.path.normpath(os.path.join(dirpath, name))
            st = os.lstat(path)
            out[path] = (st.st_uid, st.st_gid, st.st_mode & 0o7777)
    return out


async def ignore(event: StepEvent) -> None:
    return None


async def test_chown_step_backs_up_then_rollback_restores(
    sshd_server: SshdServer,
    kube_writes: tuple[KubeHarness, WriteSemantics],
    tmp_store: Store,
    tmp_path: Path,
) -> None:
    kube, _ = kube_writes
    data = sshd_server.data_root / "prometheus"
    (data / "wal").mkdir(parents=True)
    (data / "wal" / "00000001").write_text("x")
    os.chown(data / "wal", 0, 0)
    os.chown(data / "wal" / "00000001", 1234, 5678)
    before = owners(data)
    plan = Plan(
        steps=(
            HostCommandStep(
                target=ObjectRef("PersistentVolume", "prometheus-pv"),
                host="masternode",
                operation="chown",
                path=str(data),
                uid=65534,
                gid=65534,
                description="give the data directory to nobody:nogroup",
            ),
            HostCommandStep(
                target=ObjectRef("PersistentVolume", "prometheus-pv"),
                host="masternode",
                operation="chmod",
                path=str(data),
                mode=0o750,
                recursive=False,
                description="tighten the top directory",
            ),
        ),
        validation=("pvcs-bound",),
    )
    config = parse_config({"remediation": {"backup_dir": str(tmp_path / "backups")}})
    hosts = Hosts([sshd_server])
    async with kube.cluster() as cluster:
        result = await execute(
            plan,
            incident_id=None,
            actor="cli",
            cluster=cluster,
            hosts=hosts,
            store=tmp_store,
            config=config,
            on_event=ignore,
        )
        assert result.outcome == "succeeded", result.detail
        changed = owners(data)
        assert {(u, g) for u, g, _ in changed.values()} == {(65534, 65534)}
        assert changed[str(data)][2] == 0o750

        backups = await tmp_store.list_backups(result.execution_id or 0)
        assert [b.kind for b in backups] == ["host", "host"]
        recorded = HostBackup.from_json(backups[0].content)
        assert {e.path: (e.uid, e.gid, e.mode) for e in recorded.entries} == before
        assert json.loads(backups[0].content)["host"] == "masternode"

        undone = await rollback(
            result.execution_id or 0,
            actor="cli",
            cluster=cluster,
            hosts=hosts,
            store=tmp_store,
            on_event=ignore,
        )
    assert undone.outcome == "rolled-back", undone.detail
    assert owners(data) == before


async def test_host_step_outside_data_prefix_fails_and_changes_nothing(
    sshd_server: SshdServer,
    kube_writes: tuple[KubeHarness, WriteSemantics],
    tmp_store: Store,
    tmp_path: Path,
) -> None:
    kube, _ = kube_writes
    etc_before = os.lstat("/etc")
    plan = Plan(
        steps=(
            HostCommandStep(
                target=ObjectRef("PersistentVolume", "prometheus-pv"),
                host="masternode",
                operation="chown",
                path="/etc",
                uid=65534,
                gid=65534,
                description="not a data path",
            ),
        )
    )
    config = parse_config({"remediation": {"backup_dir": str(tmp_path / "backups")}})
    async with kube.cluster() as cluster:
        result = await execute(
            plan,
            incident_id=None,
            actor="cli",
            cluster=cluster,
            hosts=Hosts([sshd_server]),
            store=tmp_store,
            config=config,
            on_event=ignore,
        )
    assert result.outcome == "failed"
    assert "not under a configured data path prefix" in result.detail
    assert result.backups == ()
    assert os.lstat("/etc").st_uid == etc_before.st_uid


async def test_host_steps_are_checked_before_the_first_change(
    sshd_server: SshdServer,
    kube_writes: tuple[KubeHarness, WriteSemantics],
    tmp_store: Store,
    tmp_path: Path,
) -> None:
    """A plan whose later host step cannot run (host not configured, path outside the data prefixes)
    fails before its first step: the StatefulSet patch in front of it is never applied."""
    from tests.test_remediate_e2e import seed_findings

    kube, _ = kube_writes
    prometheus_plan = seed_findings(kube)[0].plan
    assert prometheus_plan is not None
    patch_step = prometheus_plan.steps[0]

    def host_step(path: str) -> HostCommandStep:
        return HostCommandStep(
            target=ObjectRef("PersistentVolume", "prometheus-pv"),
            host="masternode",
            operation="chown",
            path=path,
            uid=65534,
            gid=65534,
            description="chown the data directory",
        )

    config = parse_config({"remediation": {"backup_dir": str(tmp_path / "backups")}})
    cases = (
        (None, str(sshd_server.data_root), "host 'masternode' is not configured"),
        (Hosts([sshd_server]), "/etc", "'/etc' on masternode is not under a configured data path prefix"),
    )
    async with kube.cluster() as cluster:
        for hosts, path, reason in cases:
            result = await execute(
                Plan(steps=(patch_step, host_step(path))),
                incident_id=None,
                actor="cli",
                cluster=cluster,
                hosts=hosts,
                store=tmp_store,
                config=config,
                on_event=ignore,
            )
            events = list(result.events)
            assert result.outcome == "failed"
            assert result.detail.startswith("not started, nothing was changed: step 2 (host-command")
            assert reason in result.detail
            assert result.backups == () and not [e for e in events if e.step_index >= 0]
            assert kube.count(verb="patch", dry_run=False) == 0
