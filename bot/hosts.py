"""SSH adapter for host-level fixes: the only importer of `asyncssh`.

pitcrew never runs free text on a host. The only operations are the fixed ones below (stat, chown,
chmod, and restoring a recorded ownership), each built with `shlex.quote` from typed arguments, on a
path that must lie under one of the host's configured `data_path_prefixes` (checked on the literal
path and again on the path as the host resolves it, so a symlink cannot lead outside). Host keys are
verified against the configured known_hosts file; an unknown or changed key is refused, never
accepted.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import shlex
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import asyncssh  # imported where used: ~25 MiB the service needs only for a host action

# A recursive backup of a huge tree would not fit in the store; refuse instead of truncating.
MAX_BACKUP_ENTRIES = 200_000
# Keep each restore command well under the kernel's argument-size limit.
_MAX_ARGS_BYTES = 64 * 1024


class HostSpec(Protocol):
    """What the adapter needs from one `hosts:` entry of the config."""

    @property
    def name(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def username(self) -> str: ...
    @property
    def client_key_file(self) -> str: ...
    @property
    def known_hosts_file(self) -> str: ...
    @property
    def data_path_prefixes(self) -> Sequence[str]: ...
    @property
    def nodes(self) -> Sequence[str]: ...


class HostError(Exception):
    """A host operation could not be done. `temporary` says whether retrying can help."""

    def __init__(self, message: str, *, temporary: bool = False) -> None:
        super().__init__(message)
        self.temporary = temporary


class HostKeyRejected(HostError):
    """The host presented a key that is not in the configured known_hosts file."""


class PathNotAllowed(HostError):
    """The path is not under one of the host's configured data path prefixes."""


@dataclass(frozen=True)
class PathOwnership:
    path: str
    uid: int
    gid: int
    mode: int  # permission bits, e.g. 0o755
    is_symlink: bool = False


@dataclass(frozen=True)
class HostBackup:
    """Owner and mode of a path (and, if recursive, of everything under it) before a change."""

    host: str
    path: str
    recursive: bool
    entries: tuple[PathOwnership, ...]

    def to_json(self) -> str:
        return json.dumps(
            {
                "host": self.host,
                "path": self.path,
                "recursive": self.recursive,
                "entries": [[e.path, e.uid, e.gid, e.mode, e.is_symlink] for e in self.entries],
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> HostBackup:
        data = json.loads(text)
        return cls(
            host=str(data["host"]),
            path=str(data["path"]),
            recursive=bool(data["recursive"]),
            entries=tuple(
                PathOwnership(path=str(p), uid=int(u), gid=int(g), mode=int(m), is_symlink=bool(s))
                for p, u, g, m, s in data["entries"]
            ),
        )


def path_allowed(path: str, prefixes: Sequence[str]) -> bool:
    """True if `path` is absolute, normalised and strictly under (or equal to) one of `prefixes`."""
    if not path.startswith("/") or posixpath.normpath(path) != path or "\x00" in path:
        return False
    for prefix in prefixes:
        clean = posixpath.normpath(prefix)
        if clean == "/":
            continue  # "/" as a prefix would allow the whole host: never
        if path == clean or path.startswith(clean + "/"):
            return True
    return False


def _check_ids(uid: int | None, gid: int | None, mode: int | None) -> None:
    for label, value, top in (("uid", uid, 2**32 - 2), ("gid", gid, 2**32 - 2), ("mode", mode, 0o7777)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top
        ):
            raise HostError(f"invalid {label}: {value!r}")


def _chunks(paths: Sequence[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    size = 0
    for path in paths:
        quoted = len(shlex.quote(path)) + 1
        if batch and size + quoted > _MAX_ARGS_BYTES:
            yield batch
            batch, size = [], 0
        batch.append(path)
        size += quoted
    if batch:
        yield batch


class _Session:
    """Fixed commands over one open connection."""

    def __init__(self, spec: HostSpec, conn: asyncssh.SSHClientConnection, timeout: float) -> None:
        self._spec = spec
        self._conn = conn
        self._timeout = timeout

    async def run(self, command: str) -> str:
        """stdout of one command; raises HostError on a non-zero exit or a timeout."""
        import asyncssh

        host = self._spec.name
        try:
            result = await self._conn.run(command, check=False, timeout=self._timeout)
        except asyncssh.TimeoutError:
            raise HostError(
                f"{host}: command timed out after {self._timeout:g}s (it may still be running on the host)",
                temporary=True,
            ) from None
        if result.exit_status != 0:
            stderr = str(result.stderr or "").strip().splitlines()
            raise HostError(
                f"{host}: `{command[:200]}` exited {result.exit_status}: "
                f"{stderr[-1] if stderr else 'no error output'}"
            )
        return str(result.stdout or "")

    async def check_canonical(self, directories: Sequence[str]) -> None:
        """Refuse when a directory on the way to a recorded entry resolves elsewhere now (it was
        replaced by a symlink since the backup): `chown -h` and `chmod` follow every component but
        the last, so a restore through it would change files outside the data path prefixes."""
        for chunk in _chunks(directories):
            out = await self.run(f"realpath -m -z -- {' '.join(shlex.quote(d) for d in chunk)}")
            resolved = [r for r in out.split("\x00") if r]
            if len(resolved) != len(chunk):
                raise HostError(f"{self._spec.name}: realpath answered {len(resolved)} of {len(chunk)} paths")
            for given, real in zip(chunk, resolved, strict=True):
                if real != given:
                    raise PathNotAllowed(
                        f"{given!r} on {self._spec.name} now resolves to {real!r} (a symlink since the "
                        "backup); refusing to restore through it"
                    )

    async def check_resolved(self, path: str) -> None:
        """Refuse a path whose real location (symlinks resolved on the host) leaves the prefixes."""
        real = (await self.run(f"realpath -e -- {shlex.quote(path)}")).strip()
        if not path_allowed(real, self._spec.data_path_prefixes):
            raise PathNotAllowed(
                f"path {path!r} on {self._spec.name} resolves to {real!r}, outside the data path prefixes"
            )


class Hosts:
    """The configured hosts, reached over SSH with key authentication and pinned host keys."""

    def __init__(
        self,
        hosts: Sequence[HostSpec],
        *,
        connect_timeout_seconds: float = 10.0,
        command_timeout_seconds: float = 120.0,
    ) -> None:
        self._hosts = {h.name: h for h in hosts}
        self._connect_timeout = connect_timeout_seconds
        self._command_timeout = command_timeout_seconds

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._hosts)

    def host_for_node(self, node: str) -> str | None:
        """Name of the configured host that is Kubernetes node `node`, if any."""
        for host in self._hosts.values():
            if node in host.nodes or node == host.name:
                return host.name
        return None

    def _spec(self, host: str) -> HostSpec:
        try:
            return self._hosts[host]
        except KeyError:
            raise HostError(f"host {host!r} is not configured (configured: {sorted(self._hosts)})") from None

    def _check_path(self, spec: HostSpec, path: str) -> None:
        if not path_allowed(path, spec.data_path_prefixes):
            raise PathNotAllowed(
                f"path {path!r} on {spec.name} is not under a configured data path prefix "
                f"({', '.join(spec.data_path_prefixes) or 'none configured'})"
            )

    def check_allowed(self, host: str, path: str) -> None:
        """Raise HostError unless `host` is configured and `path` lies under its data path prefixes.
        No connection: the executor checks every host step this way before a plan's first change."""
        self._check_path(self._spec(host), path)

    @contextlib.asynccontextmanager
    async def _session(self, host: str) -> AsyncIterator[_Session]:
        """One SSH connection for one operation: its path checks and its command share it."""
        import asyncssh

        spec = self._spec(host)
        try:
            async with asyncssh.connect(
                spec.address,
                port=spec.port,
                username=spec.username,
                client_keys=[spec.client_key_file],
                known_hosts=spec.known_hosts_file,  # never None: None would disable verification
                config=None,
                agent_path=None,
                connect_timeout=self._connect_timeout,
                login_timeout=self._connect_timeout,
            ) as conn:
                yield _Session(spec, conn, self._command_timeout)
        except asyncssh.HostKeyNotVerifiable as exc:
            raise HostKeyRejected(
                f"{host}: host key not verifiable against {spec.known_hosts_file} ({exc.reason}); "
                "refusing to connect"
            ) from None
        except asyncssh.PermissionDenied:
            raise HostError(f"{host}: SSH authentication as {spec.username} was refused") from None
        except TimeoutError:
            raise HostError(
                f"{host}: SSH connection failed: timed out after {self._connect_timeout:g}s", temporary=True
            ) from None
        except OSError as exc:
            if exc.filename:  # our key or known_hosts file: a config problem, retrying will not help
                raise HostError(f"{host}: cannot read {exc.filename}: {exc.strerror}") from None
            raise HostError(f"{host}: SSH connection failed: {exc}", temporary=True) from None
        except asyncssh.Error as exc:
            raise HostError(f"{host}: SSH connection failed: {exc}", temporary=True) from None

    async def stat(self, host: str, path: str) -> PathOwnership:
        self._check_path(self._spec(host), path)
        async with self._session(host) as session:
            await session.check_resolved(path)
            out = await session.run(f"stat -c '%u %g %a %F' -- {shlex.quote(path)}")
        uid, gid, mode, kind = out.strip().split(" ", 3)
        return PathOwnership(
            path=path, uid=int(uid), gid=int(gid), mode=int(mode, 8), is_symlink=kind == "symbolic link"
        )

    async def snapshot(self, host: str, path: str, *, recursive: bool) -> HostBackup:
        """Record owner and mode of `path` (and everything under it if recursive) before a change."""
        self._check_path(self._spec(host), path)
        depth = "" if recursive else "-maxdepth 0 "
        # NUL-separated so any file name survives; -xdev keeps to the data filesystem.
        listing = f"find {shlex.quote(path)} -xdev {depth}-printf '%U %G %m %y %p\\0'"
        async with self._session(host) as session:
            await session.check_resolved(path)
            out = await session.run(f"{listing} | head -z -n {MAX_BACKUP_ENTRIES + 1}")
        records = [r for r in out.split("\x00") if r]
        if len(records) > MAX_BACKUP_ENTRIES:
            raise HostError(
                f"{host}: more than {MAX_BACKUP_ENTRIES} entries under {path}; refusing to back up"
            )
        entries = []
        for record in records:
            uid, gid, mode, kind, entry_path = record.split(" ", 4)
            entries.append(
                PathOwnership(
                    path=entry_path, uid=int(uid), gid=int(gid), mode=int(mode, 8), is_symlink=kind == "l"
                )
            )
        return HostBackup(host=host, path=path, recursive=recursive, entries=tuple(entries))

    async def chown(self, host: str, path: str, *, uid: int, gid: int, recursive: bool) -> None:
        _check_ids(uid, gid, None)
        self._check_path(self._spec(host), path)
        flag = "-R " if recursive else ""
        async with self._session(host) as session:
            await session.check_resolved(path)
            await session.run(f"chown {flag}{int(uid)}:{int(gid)} -- {shlex.quote(path)}")

    async def chmod(self, host: str, path: str, *, mode: int, recursive: bool) -> None:
        _check_ids(None, None, mode)
        self._check_path(self._spec(host), path)
        flag = "-R " if recursive else ""
        async with self._session(host) as session:
            await session.check_resolved(path)
            await session.run(f"chmod {flag}{int(mode):o} -- {shlex.quote(path)}")

    async def restore(self, backup: HostBackup) -> None:
        """Put back the owners and modes recorded in `backup` (entries outside the prefixes are refused)."""
        spec = self._spec(backup.host)
        self._check_path(spec, backup.path)
        for entry in backup.entries:
            self._check_path(spec, entry.path)
            _check_ids(entry.uid, entry.gid, entry.mode)
        by_owner: dict[tuple[int, int], list[str]] = {}
        by_mode: dict[int, list[str]] = {}
        for entry in backup.entries:
            by_owner.setdefault((entry.uid, entry.gid), []).append(entry.path)
            if not entry.is_symlink:  # a symlink's own mode cannot be changed on Linux
                by_mode.setdefault(entry.mode, []).append(entry.path)
        commands = []
        for (uid, gid), paths in sorted(by_owner.items()):
            for chunk in _chunks(paths):
                # -h: change a symlink itself, never what it points to.
                commands.append(f"chown -h {uid}:{gid} -- {' '.join(shlex.quote(p) for p in chunk)}")
        for mode, paths in sorted(by_mode.items()):
            for chunk in _chunks(paths):
                # chmod follows a symlink; an entry replaced by one since the backup is left alone.
                quoted = " ".join(shlex.quote(p) for p in chunk)
                commands.append(f"find -P {quoted} -maxdepth 0 ! -type l -exec chmod {mode:o} -- {{}} +")
        parents = sorted({posixpath.dirname(e.path) for e in backup.entries if e.path != backup.path})
        async with self._session(backup.host) as session:
            await session.check_resolved(backup.path)
            await session.check_canonical(parents)
            for command in commands:
                await session.run(command)
