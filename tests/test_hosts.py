"""bot/hosts.py against a real sshd on 127.0.0.1 (tests/support/sshd.py), plus the pure path rules."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from bot.hosts import (
    HostBackup,
    HostError,
    HostKeyRejected,
    Hosts,
    PathNotAllowed,
    PathOwnership,
    path_allowed,
)
from tests.support.sshd import SshdServer


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/srv/monitoring_data/prometheus", True),
        ("/srv/monitoring_data", True),
        ("/srv/monitoring_data/../../etc", False),
        ("/srv/monitoring_data_evil/x", False),
        ("/srv/monitoring_data/prometheus/", False),  # not normalised
        ("srv/monitoring_data/prometheus", False),  # relative
        ("/etc/passwd", False),
        ("/srv/monitoring_data/a\x00b", False),
    ],
)
def test_path_allowed(path: str, allowed: bool) -> None:
    assert path_allowed(path, ["/srv/monitoring_data"]) is allowed


def test_root_prefix_never_allows_everything() -> None:
    assert not path_allowed("/etc/shadow", ["/"])


def test_host_backup_json_round_trip() -> None:
    backup = HostBackup(
        host="h",
        path="/d",
        recursive=True,
        entries=(PathOwnership("/d", 0, 0, 0o755), PathOwnership("/d/l", 1, 2, 0o777, is_symlink=True)),
    )
    assert HostBackup.from_json(backup.to_json()) == backup


async def test_unknown_host_name_is_a_clear_error() -> None:
    with pytest.raises(HostError, match="not configured"):
        await Hosts([]).stat("nowhere", "/srv/x")


def _tree(root: Path) -> Path:
    target = root / "prometheus"
    (target / "wal").mkdir(parents=True)
    (target / "lock").write_text("")
    (target / "wal" / "00000001").write_text("x")
    os.symlink("/etc/passwd", target / "link-out")  # must never be followed
    os.chmod(target / "lock", 0o600)
    return target


def _in_home(name: str) -> bool:
    return os.path.exists(os.path.join(os.path.expanduser("~"), name))


def _owners(root: Path) -> dict[str, tuple[int, int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [".", *dirnames, *filenames]:
            p = os.path.normpath(os.path.join(dirpath, name))
            st = os.lstat(p)
            out[p] = (st.st_uid, st.st_gid, st.st_mode)
    return out


@pytest.mark.integration
async def test_chown_then_restore_over_real_sshd(sshd_server: SshdServer) -> None:
    target = _tree(sshd_server.data_root)
    os.chown(target / "lock", 1234, 1234)
    before = _owners(target)
    passwd_before = os.lstat("/etc/passwd")
    hosts = Hosts([sshd_server])

    backup = await hosts.snapshot("masternode", str(target), recursive=True)
    assert {e.path for e in backup.entries} == set(before)
    await hosts.chown("masternode", str(target), uid=65534, gid=65534, recursive=True)
    changed = _owners(target)
    assert all((uid, gid) == (65534, 65534) for uid, gid, _ in changed.values())
    assert os.lstat("/etc/passwd").st_uid == passwd_before.st_uid  # the symlink was not followed

    await hosts.chmod("masternode", str(target), mode=0o700, recursive=False)
    assert os.lstat(target).st_mode & 0o7777 == 0o700
    assert (await hosts.stat("masternode", str(target))).mode == 0o700

    await hosts.restore(HostBackup.from_json(backup.to_json()))
    assert _owners(target) == before


@pytest.mark.integration
async def test_unknown_host_key_is_refused(sshd_server: SshdServer) -> None:
    target = _tree(sshd_server.data_root)
    before = _owners(target)
    wrong = dataclasses.replace(sshd_server, known_hosts_file=sshd_server.wrong_known_hosts_file)
    with pytest.raises(HostKeyRejected, match="host key not verifiable"):
        await Hosts([wrong]).chown("masternode", str(target), uid=1, gid=1, recursive=True)
    assert _owners(target) == before


@pytest.mark.integration
async def test_empty_known_hosts_refuses_rather_than_accepting(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    spec = dataclasses.replace(sshd_server, known_hosts_file=str(empty))
    with pytest.raises(HostKeyRejected):
        await Hosts([spec]).stat("masternode", str(sshd_server.data_root))


@pytest.mark.integration
async def test_paths_outside_prefix_are_refused_before_and_after_resolution(sshd_server: SshdServer) -> None:
    hosts = Hosts([sshd_server])
    with pytest.raises(PathNotAllowed):
        await hosts.chown("masternode", "/etc", uid=0, gid=0, recursive=False)
    escape = sshd_server.data_root / "escape"
    os.symlink("/etc", escape)
    with pytest.raises(PathNotAllowed, match="resolves to '/etc'"):
        await hosts.chown("masternode", str(escape), uid=1, gid=1, recursive=False)
    assert os.lstat("/etc").st_uid == 0


@pytest.mark.integration
async def test_quoting_keeps_odd_names_as_data(sshd_server: SshdServer) -> None:
    odd = sshd_server.data_root / "a b; touch pwned"
    odd.mkdir()
    hosts = Hosts([sshd_server])
    await hosts.chown("masternode", str(odd), uid=4242, gid=4242, recursive=False)
    assert os.lstat(odd).st_uid == 4242
    assert sorted(os.listdir(sshd_server.data_root)) == ["a b; touch pwned"]
    assert not _in_home("pwned")  # the remote shell's working directory


@pytest.mark.integration
async def test_failed_command_reports_exit_and_stderr(sshd_server: SshdServer) -> None:
    with pytest.raises(HostError, match="exited"):
        await Hosts([sshd_server]).stat("masternode", str(sshd_server.data_root / "missing"))


async def test_bad_ids_are_refused_without_connecting() -> None:
    spec = SshdServer(
        name="h",
        address="127.0.0.1",
        port=1,
        username="root",
        client_key_file="/nonexistent",
        known_hosts_file="/nonexistent",
        wrong_known_hosts_file="/nonexistent",
        data_path_prefixes=("/srv/data",),
        nodes=(),
        data_root=Path("/srv/data"),
    )
    with pytest.raises(HostError, match="invalid uid"):
        await Hosts([spec]).chown("h", "/srv/data/x", uid=-1, gid=0, recursive=False)
    with pytest.raises(HostError, match="invalid mode"):
        await Hosts([spec]).chmod("h", "/srv/data/x", mode=0o17777, recursive=False)


def _key_pair(directory: Path) -> Path:
    import subprocess

    key = directory / "client_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def _spec(port: int, key: Path, known_hosts: Path) -> SshdServer:
    return SshdServer(
        name="h",
        address="127.0.0.1",
        port=port,
        username="root",
        client_key_file=str(key),
        known_hosts_file=str(known_hosts),
        wrong_known_hosts_file="",
        data_path_prefixes=("/srv/data",),
        nodes=(),
        data_root=Path("/srv/data"),
    )


async def test_silent_host_times_out_as_a_temporary_error(tmp_path: Path) -> None:
    """A port that accepts but never speaks SSH: bounded by the connect timeout, retry may help."""
    import asyncio

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # say nothing until the client gives up
        writer.close()

    key = _key_pair(tmp_path)
    known = tmp_path / "known_hosts"
    known.write_text("")
    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(HostError) as caught:
            await Hosts([_spec(port, key, known)], connect_timeout_seconds=0.3).stat("h", "/srv/data/x")
    finally:
        server.close()
        await server.wait_closed()
    assert caught.value.temporary
    assert str(caught.value) == "h: SSH connection failed: timed out after 0.3s"


async def test_missing_key_file_is_a_permanent_error(tmp_path: Path) -> None:
    with pytest.raises(HostError) as caught:
        await Hosts([_spec(1, tmp_path / "missing", tmp_path / "kh")]).stat("h", "/srv/data/x")
    assert not caught.value.temporary
    assert str(caught.value) == f"h: cannot read {tmp_path / 'missing'}: No such file or directory"


@pytest.mark.integration
async def test_restore_never_follows_symlinks_planted_after_the_backup(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    """After the chown, the data directory belongs to the workload, which may replace what it owns
    with symlinks. The restore (run as root) must not change anything outside the prefixes: a file
    turned into a symlink keeps its target's mode, and a directory turned into one is refused."""
    target = sshd_server.data_root / "prometheus"
    (target / "wal").mkdir(parents=True)
    (target / "wal" / "00000001").write_text("x")
    (target / "lock").write_text("")
    os.chmod(target / "lock", 0o600)
    outside = tmp_path / "outside"
    (outside / "wal").mkdir(parents=True)
    (outside / "wal" / "00000001").write_text("secret")
    (outside / "lock").write_text("secret")
    os.chmod(outside / "lock", 0o640)
    os.chown(outside / "wal" / "00000001", 4321, 4321)
    outside_before = _owners(outside)
    hosts = Hosts([sshd_server])
    backup = await hosts.snapshot("masternode", str(target), recursive=True)
    await hosts.chown("masternode", str(target), uid=65534, gid=65534, recursive=True)

    # A file replaced by a symlink: the restore changes the link, never what it points to.
    os.remove(target / "lock")
    os.symlink(outside / "lock", target / "lock")
    wal = str(target / "wal")
    lock_only = dataclasses.replace(
        backup, entries=tuple(e for e in backup.entries if e.path != wal and not e.path.startswith(wal + "/"))
    )
    await hosts.restore(lock_only)
    assert _owners(outside) == outside_before

    # A directory replaced by a symlink: the whole restore is refused before any change.
    os.rename(target / "wal", tmp_path / "moved-wal")
    os.symlink(outside / "wal", target / "wal")
    with pytest.raises(PathNotAllowed, match=r"now resolves to .*refusing to restore through it"):
        await hosts.restore(backup)
    assert _owners(outside) == outside_before
