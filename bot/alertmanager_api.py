"""Alertmanager API v2 client (aiohttp): create silences for an incident's alerts.

The matchers are the incident's common labels (what every alert of the group shares), so the silence
covers exactly that group. Errors carry whether a retry can help (`temporary`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp

from bot.model import Incident

DEFAULT_TIMEOUT_SECONDS = 10.0


class AlertmanagerApiError(Exception):
    def __init__(self, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.temporary = temporary


@dataclass(frozen=True)
class Matcher:
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "value": self.value, "isRegex": self.is_regex, "isEqual": self.is_equal}


@dataclass(frozen=True)
class SilenceRequest:
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str

    def to_json(self) -> dict[str, object]:
        return {
            "matchers": [m.to_json() for m in self.matchers],
            "startsAt": _rfc3339(self.starts_at),
            "endsAt": _rfc3339(self.ends_at),
            "createdBy": self.created_by,
            "comment": self.comment,
        }


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def incident_matchers(incident: Incident) -> tuple[Matcher, ...]:
    """Equality matchers on the labels every alert of the incident shares."""
    labels: Mapping[str, str] = incident.common_labels or incident.group_labels
    if not labels:
        raise ValueError(f"incident {incident.id} has no common labels to silence on")
    return tuple(Matcher(k, v) for k, v in sorted(labels.items()))


def silence_for(
    incident: Incident, *, duration_seconds: float, created_by: str, now: float | None = None
) -> SilenceRequest:
    start = time.time() if now is None else now
    return SilenceRequest(
        matchers=incident_matchers(incident),
        starts_at=start,
        ends_at=start + duration_seconds,
        created_by=created_by,
        comment=f"pitcrew incident #{incident.id} ({incident.alertname or incident.group_key})",
    )


class AlertmanagerApi:
    """One aiohttp session per client; `await close()` when done."""

    def __init__(self, base_url: str, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"alertmanager.url must be an http(s) URL, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_seconds))

    async def close(self) -> None:
        await self._session.close()

    async def create_silence(self, request: SilenceRequest) -> str:
        """POST /api/v2/silences; returns the new silence id."""
        url = f"{self.base_url}/api/v2/silences"
        try:
            async with self._session.post(url, json=request.to_json()) as resp:
                text = await resp.text()
                if resp.status >= 500:
                    raise AlertmanagerApiError(
                        f"Alertmanager answered {resp.status}: {text[:200]}", temporary=True
                    )
                if resp.status != 200:
                    raise AlertmanagerApiError(
                        f"Alertmanager refused the silence ({resp.status}): {text[:200]}", temporary=False
                    )
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AlertmanagerApiError(
                f"cannot reach Alertmanager at {self.base_url}: {exc}", temporary=True
            ) from exc
        silence_id = data.get("silenceID") if isinstance(data, dict) else None
        if not isinstance(silence_id, str):
            raise AlertmanagerApiError(f"unexpected answer from Alertmanager: {text[:200]}", temporary=False)
        return silence_id

    async def get_silence(self, silence_id: str) -> dict[str, object]:
        url = f"{self.base_url}/api/v2/silence/{silence_id}"
        try:
            async with self._session.get(url) as resp:
                if resp.status != 200:
                    raise AlertmanagerApiError(
                        f"silence {silence_id}: HTTP {resp.status}", temporary=resp.status >= 500
                    )
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AlertmanagerApiError(
                f"cannot reach Alertmanager at {self.base_url}: {exc}", temporary=True
            ) from exc
        if not isinstance(data, dict):
            raise AlertmanagerApiError("unexpected answer from Alertmanager", temporary=False)
        return data

    def silence_url(self, silence_id: str) -> str:
        return f"{self.base_url}/#/silences/{silence_id}"
