"""Redaction of secrets in evidence lines (logs, events, messages) before anyone sees them.

Evidence ends up in Slack threads, CLI output, bundles and the store; container logs routinely carry
credentials (a datasource URL with a password, a bearer header echoed by a debug log, a token in a
query string). Redaction is pattern based and errs on the side of hiding: the secret is replaced by
`***`, the rest of the line stays readable so it still proves the root cause.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "***"

# Names of fields that carry secrets (as key=value, key: value, "key": "value", ?key=value).
_SECRET_NAME = (
    r"[\w.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|"
    r"credentials?|auth[_-]?key|session[_-]?id|cookie)[\w.-]*"
)

_SECRET_KEY = re.compile(rf"(?i)^{_SECRET_NAME}$")

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization headers: "Authorization: Basic abc", "authorization=abc"; bare "Bearer abc".
    (
        re.compile(
            r"""(?i)(\bauthorization["']?\s*[:=]\s*["']?)((?:basic|bearer|token|digest|negotiate)\s+)?[^\s"',;]+"""
        ),
        rf"\1\2{MASK}",
    ),
    (re.compile(r"(?i)\b(bearer\s+)(?!\*\*\*)[A-Za-z0-9._~+/=-]{8,}"), rf"\1{MASK}"),
    # URLs with credentials: scheme://user:password@host -> scheme://user:***@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]*):[^\s@/]+@"), rf"\1:{MASK}@"),
    # JSON: "password": "value"  /  'token': 'value'
    (
        re.compile(rf"""(?i)(["']{_SECRET_NAME}["']\s*:\s*)(["'])(?:\\.|(?!\2).)*\2"""),
        rf"\1\2{MASK}\2",
    ),
    # key=value / key: value (logfmt, env dumps, query strings, YAML); value up to a delimiter.
    (
        re.compile(
            rf"""(?i)(\b{_SECRET_NAME}\s*[=:]\s*)(?!{re.escape(MASK)})("[^"]*"|'[^']*'|[^\s&,;"'}}\]]+)"""
        ),
        rf"\1{MASK}",
    ),
    # Well-known token shapes, wherever they appear.
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), MASK),  # Slack bot/user tokens
    (re.compile(r"\bxapp-[A-Za-z0-9-]{10,}"), MASK),  # Slack app tokens
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), MASK),  # GitHub tokens
    (re.compile(r"\bglsa_[A-Za-z0-9_]{20,}"), MASK),  # Grafana service account tokens
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), MASK),  # AWS access key ids
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+"), MASK),  # JWTs
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"), MASK),
)


def redact(text: str) -> str:
    """`text` with every recognised secret replaced by `***`."""
    if not text:
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_lines(lines: Iterable[str]) -> list[str]:
    return [redact(line) for line in lines]


def redact_json(value: Any) -> Any:
    """A redacted deep copy of JSON data: text redacted line by line, the value of a secret-named key
    masked, and so is an env entry's `value` when its `name` is secret-named (`{name:
    DB_PASSWORD, value: ...}`, as pod specs quoted in JSON Patch `test` ops carry them)."""
    if isinstance(value, str):
        return "\n".join(redact_lines(value.split("\n")))
    if isinstance(value, list | tuple):
        return [redact_json(v) for v in value]
    if isinstance(value, dict):
        name = value.get("name")
        secret_entry = isinstance(name, str) and bool(_SECRET_KEY.match(name))
        out: dict[str, Any] = {}
        for key, item in value.items():
            names_a_reference = str(key).endswith(("Name", "Ref"))  # secretName says which, not what
            if isinstance(item, str) and (
                (_SECRET_KEY.match(str(key)) and not names_a_reference) or (secret_entry and key == "value")
            ):
                out[key] = MASK
            else:
                out[key] = redact_json(item)
        return out
    return value
