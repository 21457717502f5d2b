"""Prometheus's HTTP API (`/api/v1/query_range`), for the alert graph: the only module that asks
Prometheus for series. Answers are parsed once, here, into typed `Series`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

MAX_SERIES = 50  # a graph shows a handful; an expression matching thousands is cut here
MAX_POINTS = 11_000  # Prometheus's own limit per series in a range query


@dataclass(frozen=True, slots=True)
class Series:
    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...]  # (unix seconds, value); NaN and ±Inf dropped


class PrometheusError(Exception):
    """Prometheus could not answer: `temporary` when a retry can help (network, 5xx, timeout)."""

    def __init__(self, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.temporary = temporary


class PrometheusApi:
    def __init__(self, base_url: str, *, timeout_seconds: float = 10.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def query_range(self, expr: str, *, start: float, end: float, step: float) -> tuple[Series, ...]:
        if not expr.strip():
            raise PrometheusError("empty expression", temporary=False)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        form = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        try:
            async with self._session.post(f"{self.base_url}/api/v1/query_range", data=form) as resp:
                status = resp.status
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise PrometheusError(
                f"cannot reach {self.base_url}: {type(exc).__name__}", temporary=True
            ) from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else None
            raise PrometheusError(
                f"query_range answered {status}: {error or 'not a Prometheus answer'}",
                temporary=status >= 500,
            )
        return _parse_matrix(body.get("data"))


def _parse_matrix(data: Any) -> tuple[Series, ...]:
    if not isinstance(data, dict) or data.get("resultType") != "matrix":
        raise PrometheusError("query_range did not answer a matrix", temporary=False)
    out: list[Series] = []
    for item in (data.get("result") or [])[:MAX_SERIES]:
        if not isinstance(item, dict):
            continue
        raw_metric = item.get("metric")
        metric: dict[str, Any] = raw_metric if isinstance(raw_metric, dict) else {}
        points: list[tuple[float, float]] = []
        for pair in (item.get("values") or [])[:MAX_POINTS]:
            try:
                at, value = float(pair[0]), float(pair[1])
            except (TypeError, ValueError, IndexError):
                continue
            if math.isfinite(value):
                points.append((at, value))
        out.append(Series(labels={str(k): str(v) for k, v in metric.items()}, points=tuple(points)))
    return tuple(out)
