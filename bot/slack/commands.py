"""The `/pitcrew` slash command's grammar: text in, a typed command or a usage error out. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.model import ObjectRef

MAX_HISTORY = 50
MAX_SILENCE_SECONDS = 30 * 24 * 3600

_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_KIND = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_DURATION_PART = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# An execution "12" or "e-12" (the CLI's spelling), or a backup "b-12".
_ROLLBACK_ID = re.compile(r"^(\d+|e-\d+|b-\d+)$")


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class Status:
    pass


@dataclass(frozen=True)
class Diagnose:
    namespace: str | None = None
    target: ObjectRef | None = None


@dataclass(frozen=True)
class Validate:
    namespace: str | None = None


@dataclass(frozen=True)
class History:
    limit: int = 10


@dataclass(frozen=True)
class Rollback:
    ref: str  # as `pitcrew rollback` takes it: an incident ("7"), an execution ("e-12") or a backup ("b-4")


@dataclass(frozen=True)
class Silence:
    incident_id: int
    duration_seconds: int
    duration_text: str


@dataclass(frozen=True)
class Summary:
    pass


Command = Help | Status | Diagnose | Validate | History | Rollback | Silence | Summary


class CommandError(ValueError):
    """Malformed input; the message says what is wrong and is shown with the usage."""


def usage(command: str = "/pitcrew") -> str:
    c = command
    return "\n".join(
        [
            f"*Usage:* `{c} <subcommand>`",
            f"`{c} help` — this text",
            f"`{c} status` — open incidents and where pitcrew is with them",
            f"`{c} diagnose [NAMESPACE | NAMESPACE/KIND/NAME]` — diagnose now, post the result with buttons",
            f"`{c} validate [NAMESPACE]` — run the health checks",
            f"`{c} history [N]` — the last N executions (default 10, at most {MAX_HISTORY})",
            f"`{c} rollback ID` — undo a fix: of an incident (7), an execution (e-12) or one backup (b-4)",
            f"`{c} silence INCIDENT DURATION` — silence an incident's alerts (e.g. 2h, 1d, 1h30m)",
            f"`{c} summary` — post a health summary now",
        ]
    )


def parse_duration(text: str) -> int:
    """`90s`, `30m`, `2h`, `1d`, `1h30m` -> seconds; between 1 minute and 30 days."""
    if not text or _DURATION_PART.sub("", text) != "":
        raise CommandError(f"not a duration: {text!r} (use e.g. 30m, 2h, 1d, 1h30m)")
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    if seconds < 60:
        raise CommandError(f"duration {text!r} is shorter than a minute")
    if seconds > MAX_SILENCE_SECONDS:
        raise CommandError(f"duration {text!r} is longer than 30 days")
    return seconds


def _namespace(text: str) -> str:
    if len(text) > 63 or not _NAMESPACE.match(text):
        raise CommandError(f"not a namespace name: {text!r}")
    return text


def _expect_args(name: str, args: list[str], most: int) -> None:
    if len(args) > most:
        raise CommandError(f"`{name}` takes at most {most} argument(s), got {len(args)}")


def parse(text: str) -> Command:
    words = text.split()
    if not words:
        return Help()
    name, args = words[0].lower(), words[1:]
    if name == "help":
        _expect_args(name, args, 0)
        return Help()
    if name == "status":
        _expect_args(name, args, 0)
        return Status()
    if name == "summary":
        _expect_args(name, args, 0)
        return Summary()
    if name == "diagnose":
        _expect_args(name, args, 1)
        if not args:
            return Diagnose()
        if "/" not in args[0]:
            return Diagnose(namespace=_namespace(args[0]))
        parts = args[0].split("/")
        if len(parts) != 3 or not _KIND.match(parts[1]) or len(parts[2]) > 253 or not _NAME.match(parts[2]):
            raise CommandError(f"not NAMESPACE/KIND/NAME: {args[0]!r}")
        ns = _namespace(parts[0])
        return Diagnose(namespace=ns, target=ObjectRef(kind=parts[1], name=parts[2], namespace=ns))
    if name == "validate":
        _expect_args(name, args, 1)
        return Validate(namespace=_namespace(args[0]) if args else None)
    if name == "history":
        _expect_args(name, args, 1)
        if not args:
            return History()
        if not args[0].isdigit() or not 1 <= int(args[0]) <= MAX_HISTORY:
            raise CommandError(f"history takes a number from 1 to {MAX_HISTORY}, not {args[0]!r}")
        return History(limit=int(args[0]))
    if name == "rollback":
        if len(args) != 1 or not _ROLLBACK_ID.match(args[0]):
            raise CommandError(
                "`rollback` takes one id: an incident (7), an execution (e-12) or a backup (b-4)"
            )
        return Rollback(ref=args[0])
    if name == "silence":
        if len(args) != 2:
            raise CommandError("`silence` takes an incident id and a duration, e.g. `silence 42 2h`")
        incident = args[0].lstrip("#")
        if not incident.isdigit() or int(incident) < 1:
            raise CommandError(f"not an incident id: {args[0]!r}")
        return Silence(
            incident_id=int(incident), duration_seconds=parse_duration(args[1]), duration_text=args[1]
        )
    raise CommandError(f"unknown subcommand {name!r}")
