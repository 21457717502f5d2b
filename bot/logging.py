"""Structured logging, plain or JSON, that never writes a secret.

Redaction happens in pitcrew's formatters, on everything they write: the message, extra fields and
tracebacks.
Known secret values come from the config (every `Secret` in it); patterns catch credentials that
are not in the config (Authorization headers, Slack tokens, `password=...`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, TextIO, runtime_checkable

REDACTED = "***"

# (cheap lower-case substrings that must appear for the pattern to possibly match, pattern, replacement).
# The substring test keeps redaction cheap for the common log line that contains no credential.
_PATTERNS: tuple[tuple[tuple[str, ...], re.Pattern[str], str], ...] = (
    # Authorization header values, with or without a scheme.
    (
        ("authorization",),
        re.compile(r"(?i)(\bauthorization[\"']?\s*[:=]\s*[\"']?)((?:bearer|basic|token)\s+)?[^\s\"',;]+"),
        r"\1\2***",
    ),
    (("bearer", "basic"), re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"), r"\1 ***"),
    # Slack tokens (bot, user, app-level, config, refresh).
    (("xox",), re.compile(r"\bxox[a-z]-[A-Za-z0-9-]+"), REDACTED),
    (("xapp-",), re.compile(r"\bxapp-[A-Za-z0-9-]+"), REDACTED),
    # key=value / "key": "value" for credential-like keys.
    (
        ("pass", "secret", "token", "api", "credentials"),
        re.compile(
            r"(?i)\b((?:password|passwd|secret|token|api[_-]?key|credentials|signing[_-]?secret)\w*)"
            r"([\"']?\s*[:=]\s*[\"']?)([^\s\"',;&}]+)"
        ),
        r"\1\2***",
    ),
    # Credentials in URLs: scheme://user:password@host
    (("://",), re.compile(r"(://[^/\s:@]+:)[^@\s/]+@"), r"\1***@"),
)


_ANY_TRIGGER = re.compile(
    "|".join(re.escape(trigger) for triggers, _, _ in _PATTERNS for trigger in triggers), re.IGNORECASE
)


@runtime_checkable
class _RevealsSecret(Protocol):
    def reveal(self) -> str: ...


class Redactor:
    """Replaces known secret values and credential-looking text with `***`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._known = re.compile("|".join(re.escape(v) for v in values)) if values else None

    def __call__(self, text: str) -> str:
        if self._known is not None:
            text = self._known.sub(REDACTED, text)
        if _ANY_TRIGGER.search(text) is None:
            return text  # the common case: nothing that looks like a credential
        lowered = text.lower()
        for triggers, pattern, replacement in _PATTERNS:
            if any(t in lowered for t in triggers):
                text = pattern.sub(replacement, text)
        return text


def secrets_in(obj: object) -> list[str]:
    """Every secret value inside a config object (dataclasses, mappings and sequences walked)."""
    found: list[str] = []
    seen: set[int] = set()

    def walk(value: object) -> None:
        if id(value) in seen or isinstance(value, str | bytes | int | float | bool) or value is None:
            return
        seen.add(id(value))
        if isinstance(value, _RevealsSecret):
            if getattr(value, "is_set", True):  # an unset one (Secret.unset) has nothing to hide
                found.append(value.reveal())
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                walk(getattr(value, f.name))
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple | set | frozenset):
            for item in value:
                walk(item)

    walk(obj)
    return found


# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged as a field.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


class _RedactingFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor
        self._second = -1
        self._second_text = ""

    def _utc(self, created: float) -> str:
        """RFC 3339 UTC with milliseconds; the date part is formatted once per second."""
        second = int(created)
        if second != self._second:
            self._second, self._second_text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{int(created % 1 * 1000):03d}Z"


class PlainFormatter(_RedactingFormatter):
    """`2026-11-25T08:00:00.123Z INFO bot.app: message key=value`"""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{self._utc(record.created)} {record.levelname} {record.name}: {record.getMessage()}"
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{k}={_plain(v)}" for k, v in sorted(extras.items()))
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return self.redactor(line)


class JsonFormatter(_RedactingFormatter):
    """One JSON object per line: time, level, logger, message, extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self._utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": self.redactor(record.getMessage()),
        }
        for key, value in _extras(record).items():
            out[key] = self._redact_value(value)
        if record.exc_info:
            out["exception"] = self.redactor(self.formatException(record.exc_info))
        return json.dumps(out, default=str, ensure_ascii=False)

    def _redact_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redactor(value)
        if isinstance(value, int | float | bool) or value is None:
            return value
        return self.redactor(str(value))


_HANDLER_NAME = "pitcrew"


def _omit_forged_slack_bodies(record: logging.LogRecord) -> bool:
    """slack-bolt logs the whole body of a request whose signature failed, at INFO. That body is
    attacker-sized input, or (with a mistyped signing secret) a real payload with its response_url,
    which can post to the channel: keep the line, drop the body."""
    if record.name.startswith("slack_bolt.") and "Invalid request signature" in str(record.msg):
        record.msg = str(record.msg).split(", body:", 1)[0] + ", body omitted)"
        record.args = ()
    return True


def configure_logging(
    *, format: str = "plain", level: str = "INFO", secrets: Iterable[str] = (), stream: TextIO | None = None
) -> logging.Handler:
    """Install pitcrew's handler on the root logger (replacing one installed before) and return it."""
    redactor = Redactor(secrets)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    if format == "json":
        handler.setFormatter(JsonFormatter(redactor))
    elif format == "plain":
        handler.setFormatter(PlainFormatter(redactor))
    else:
        raise ValueError(f"logging.format: expected plain or json, got {format!r}")
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)
            old.close()
    handler.addFilter(_omit_forged_slack_bodies)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp's access log would repeat every request at INFO; keep it for debugging only.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return handler


def _plain(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text
