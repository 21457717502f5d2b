"""Alertmanager webhook intake: the version-4 payload parsed into typed objects, and its auth check.

Parsing happens once, here, at the edge. Every rejection is a `WebhookRejected` carrying the HTTP
status to answer, a human reason (with the field path for schema errors) and a short metric label,
so the HTTP handler stays a thin translation and the metrics name reasons consistently.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

from bot.model import Alert

SUPPORTED_VERSION = "4"

# Alertmanager writes Go's zero time for "no end time" (a firing alert with no endsAt).
_GO_ZERO_TIME_PREFIX = "0001-01-01T00:00:00"


@dataclass(frozen=True)
class WebhookPayload:
    """One Alertmanager notification for one alert group (`group_key`)."""

    version: str
    receiver: str
    status: Literal["firing", "resolved"]
    alerts: tuple[Alert, ...]
    group_labels: Mapping[str, str]
    common_labels: Mapping[str, str]
    common_annotations: Mapping[str, str]
    external_url: str
    group_key: str
    truncated_alerts: int = 0


# ---------------------------------------------------------------------------------------------
# Rejections: each maps to one HTTP status and one metric reason.
# ---------------------------------------------------------------------------------------------


class WebhookRejected(Exception):
    """A webhook we refuse. Nothing of it has been stored."""

    status: ClassVar[int] = 400
    metric_reason: ClassVar[str] = "invalid"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unauthorized(WebhookRejected):
    status = 401
    metric_reason = "unauthorized"


class PayloadTooLarge(WebhookRejected):
    status = 413
    metric_reason = "too_large"


class InvalidJson(WebhookRejected):
    status = 400
    metric_reason = "invalid_json"


class UnknownVersion(WebhookRejected):
    status = 400
    metric_reason = "unknown_version"


class SchemaViolation(WebhookRejected):
    """The JSON is well formed but not a version-4 payload; `path` names the offending field."""

    status = 422
    metric_reason = "invalid_schema"

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path


REJECTION_REASONS: tuple[str, ...] = (
    Unauthorized.metric_reason,
    PayloadTooLarge.metric_reason,
    InvalidJson.metric_reason,
    SchemaViolation.metric_reason,
    UnknownVersion.metric_reason,
)


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


def parse_webhook(body: bytes, max_bytes: int) -> WebhookPayload:
    """Parse and validate a webhook body; raises a `WebhookRejected` subclass on bad input."""
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"body is {len(body)} bytes, limit is {max_bytes}")
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise InvalidJson(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except UnicodeDecodeError as exc:
        raise InvalidJson(f"invalid JSON: body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not isinstance(data, dict):
        raise SchemaViolation("$", f"expected object, got {_json_type(data)}")
    if _SURROGATE_ESCAPE.search(body):
        # JSON may escape half of a UTF-16 pair ("\ud800"); such a string cannot be stored as UTF-8.
        where = _lone_surrogate_path(data, "")
        if where is not None:
            raise SchemaViolation(where or "$", "invalid string (unpaired UTF-16 surrogate escape)")

    # The version decides how to read everything else, so it is checked before the schema.
    version = data.get("version")
    if version is None:
        raise UnknownVersion('version: missing (expected "4")')
    if version != SUPPORTED_VERSION:
        raise UnknownVersion(f'version: unsupported {json.dumps(version)} (expected "4")')

    raw_alerts = _required(data, "alerts", list, "alerts")
    if not raw_alerts:
        raise SchemaViolation("alerts", "expected at least one alert")
    truncated = data.get("truncatedAlerts", 0)
    if truncated is None:
        truncated = 0
    if not isinstance(truncated, int) or isinstance(truncated, bool) or truncated < 0:
        got = str(truncated) if type(truncated) is int else _json_type(truncated)
        raise SchemaViolation("truncatedAlerts", f"expected non-negative integer, got {got}")

    group_key = _required(data, "groupKey", str, "groupKey")
    if not group_key:
        raise SchemaViolation("groupKey", "expected non-empty string")

    return WebhookPayload(
        version=version,
        receiver=_required(data, "receiver", str, "receiver"),
        status=_status(data, "status"),
        alerts=tuple(_parse_alert(a, f"alerts[{i}]") for i, a in enumerate(raw_alerts)),
        group_labels=_string_map(data.get("groupLabels"), "groupLabels"),
        common_labels=_string_map(data.get("commonLabels"), "commonLabels"),
        common_annotations=_string_map(data.get("commonAnnotations"), "commonAnnotations"),
        external_url=_optional_str(data, "externalURL", "externalURL"),
        group_key=group_key,
        truncated_alerts=truncated,
    )


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _lone_surrogate_path(value: Any, path: str) -> str | None:
    """Path of the first string (key or value) holding an unpaired surrogate, else None."""
    if isinstance(value, str):
        return None if _encodable(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if not _encodable(key):
                return child
            found = _lone_surrogate_path(item, child)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _lone_surrogate_path(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _parse_alert(raw: Any, path: str) -> Alert:
    if not isinstance(raw, dict):
        raise SchemaViolation(path, f"expected object, got {_json_type(raw)}")
    labels = _string_map(raw.get("labels"), f"{path}.labels")
    if not labels:
        raise SchemaViolation(f"{path}.labels", "expected at least one label")
    starts_at = _timestamp(_required(raw, "startsAt", str, f"{path}.startsAt"), f"{path}.startsAt")
    ends_raw = raw.get("endsAt")
    ends_at: str | None = None
    if ends_raw is not None:
        if not isinstance(ends_raw, str):
            raise SchemaViolation(f"{path}.endsAt", f"expected string, got {_json_type(ends_raw)}")
        if ends_raw and not ends_raw.startswith(_GO_ZERO_TIME_PREFIX):
            ends_at = _timestamp(ends_raw, f"{path}.endsAt")
    fingerprint = raw.get("fingerprint")
    if fingerprint is None:
        # Alertmanager before 0.19 did not send it; it is a pure function of the labels.
        fingerprint = labels_fingerprint(labels)
    elif not isinstance(fingerprint, str) or not fingerprint:
        got = _json_type(fingerprint) if fingerprint else "empty string"
        raise SchemaViolation(f"{path}.fingerprint", f"expected non-empty string, got {got}")
    return Alert(
        fingerprint=fingerprint,
        status=_status(raw, path + ".status"),
        labels=labels,
        annotations=_string_map(raw.get("annotations"), f"{path}.annotations"),
        starts_at=starts_at,
        ends_at=ends_at,
        generator_url=_optional_str(raw, "generatorURL", f"{path}.generatorURL"),
    )


def _required(data: dict[str, Any], key: str, kind: type, path: str) -> Any:
    if key not in data or data[key] is None:
        raise SchemaViolation(path, "missing")
    value = data[key]
    if not isinstance(value, kind):
        raise SchemaViolation(path, f"expected {_KIND_NAMES[kind]}, got {_json_type(value)}")
    return value


def _optional_str(data: dict[str, Any], key: str, path: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SchemaViolation(path, f"expected string, got {_json_type(value)}")
    return value


def _status(data: dict[str, Any], path: str) -> Literal["firing", "resolved"]:
    key = path.rsplit(".", 1)[-1]
    value = _required(data, key, str, path)
    if value == "firing":
        return "firing"
    if value == "resolved":
        return "resolved"
    raise SchemaViolation(path, f'expected "firing" or "resolved", got {json.dumps(value)}')


def _string_map(value: Any, path: str) -> dict[str, str]:
    # Go marshals an empty KV map as null; treat it as empty.
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SchemaViolation(path, f"expected object, got {_json_type(value)}")
    for key, item in value.items():
        if not isinstance(item, str):
            raise SchemaViolation(f"{path}.{key}", f"expected string, got {_json_type(item)}")
    return value


def _timestamp(text: str, path: str) -> str:
    try:
        # 3.11's fromisoformat takes RFC 3339 incl. "Z" and truncates nanoseconds beyond 6 digits.
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise SchemaViolation(path, f"expected RFC 3339 timestamp, got {json.dumps(text)}") from None
    if parsed.tzinfo is None:
        raise SchemaViolation(path, f"expected RFC 3339 timestamp with a time zone, got {json.dumps(text)}")
    return text


_KIND_NAMES: dict[type, str] = {str: "string", list: "array", dict: "object", int: "integer"}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def labels_fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's alert fingerprint: FNV-1a 64 over sorted `name 0xff value 0xff` (prometheus/common
    model.LabelSet.Fingerprint), as 16 hex digits."""
    fnv_offset, fnv_prime, mask = 14695981039346656037, 1099511628211, (1 << 64) - 1
    value = fnv_offset
    for name in sorted(labels):
        for chunk in (name.encode(), b"\xff", labels[name].encode(), b"\xff"):
            for byte in chunk:
                value = ((value ^ byte) * fnv_prime) & mask
    return f"{value:016x}"


# ---------------------------------------------------------------------------------------------
# Auth
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookAuth:
    """Accepted credentials: a bearer token and/or basic credentials; either one passing is enough."""

    bearer_token: str | None = None
    basic_username: str | None = None
    basic_password: str | None = None

    @property
    def configured(self) -> bool:
        return bool(self.bearer_token) or self.basic_username is not None

    def check(self, authorization: str | None) -> None:
        """Raise `Unauthorized` unless the Authorization header carries an accepted credential."""
        if not authorization:
            raise Unauthorized("missing Authorization header")
        scheme, _, credentials = authorization.strip().partition(" ")
        scheme = scheme.lower()
        credentials = credentials.strip()
        if scheme == "bearer" and self.bearer_token:
            if _equal(credentials, self.bearer_token):
                return
            raise Unauthorized("wrong bearer token")
        if scheme == "basic" and self.basic_username is not None:
            try:
                decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise Unauthorized("malformed basic credentials") from None
            username, _, password = decoded.partition(":")
            # Both comparisons always run so the time taken does not tell which part was wrong.
            user_ok = _equal(username, self.basic_username)
            password_ok = _equal(password, self.basic_password or "")
            if user_ok & password_ok:
                return
            raise Unauthorized("wrong basic credentials")
        if not credentials:
            # A lone word is most likely a credential sent without its scheme: never echo it.
            raise Unauthorized(
                "malformed Authorization header (expected 'Bearer <token>' or 'Basic <credentials>')"
            )
        raise Unauthorized(f"unsupported authorization scheme {scheme!r}")


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
