"""Posting the alert's graph into the incident's thread: query Prometheus, draw, upload.

Best effort by design: a graph is a convenience, so it is not queued in the outbox (a PNG in the
store for a restart to resend is not worth it). Without a Prometheus URL nothing happens; when
Prometheus cannot be reached, or the expression has no data, one log line says why and the
thread stays as it is. Uploaded with `files_upload_v2` (files.getUploadURLExternal, the upload
URL, files.completeUploadExternal) into the thread once the incident message exists.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from bot.prometheus import PrometheusError, Series
from bot.slack import blocks as B
from bot.slack.graph import WINDOW_SECONDS, expr_from_generator_url, graph_query, render_png, step_for

if TYPE_CHECKING:
    from bot.store import StoreBackend

_log = logging.getLogger(__name__)

POSTED_WITHIN_SECONDS = 60.0  # how long to wait for the incident message before giving up


class RangeQuery(Protocol):
    async def query_range(
        self, expr: str, *, start: float, end: float, step: float
    ) -> tuple[Series, ...]: ...


class Uploader(Protocol):
    """slack_sdk's AsyncWebClient, as far as the graph needs it."""

    async def files_upload_v2(
        self,
        *,
        file: bytes,
        filename: str,
        title: str,
        alt_txt: str,
        channel: str,
        thread_ts: str,
        initial_comment: str,
        request_file_info: bool,
    ) -> Any: ...


def _graph_key(incident_id: int, kind: str) -> str:
    return f"slack.graph.{incident_id}.{kind}"


class GraphPoster:
    def __init__(
        self,
        store: StoreBackend,
        prometheus: RangeQuery,
        client: Uploader,
        *,
        clock: Callable[[], float] = time.time,
        poll_seconds: float = 0.2,
    ) -> None:
        self._store = store
        self._prometheus = prometheus
        self._client = client
        self._clock = clock
        self._poll = poll_seconds

    async def claim(self, incident_id: int, kind: str) -> bool:
        """True the first time for (incident, kind): each graph is posted once."""
        key = _graph_key(incident_id, kind)
        if await self._store.get_kv(key) is not None:
            return False
        await self._store.set_kv(key, str(self._clock()))
        return True

    async def post(self, incident_id: int, *, fixed_at: float | None = None) -> bool:
        """Draw and upload the alert's graph (with a marker at `fixed_at`: the recovery graph).
        False, with one log line, when there is nothing to draw or Prometheus cannot answer."""
        incident = await self._store.get_incident(incident_id)
        if incident is None:
            return False
        expr = expr_from_generator_url(B.generator_url(incident))
        if expr is None:
            return False  # not from Prometheus (a manual diagnosis, another source): nothing to draw
        query = graph_query(expr)
        end = self._clock()
        start = end - WINDOW_SECONDS
        try:
            series = await self._prometheus.query_range(
                query.expr, start=start, end=end, step=step_for(WINDOW_SECONDS)
            )
        except PrometheusError as exc:
            _log.warning("no graph for incident %d: %s", incident_id, exc)
            return False
        if not any(s.points for s in series):
            _log.info("no graph for incident %d: %s has no data in the last hour", incident_id, query.expr)
            return False
        kind = "recovery" if fixed_at is not None else "alert"
        title = f"{incident.alertname or 'alert'}: {query.expr}"
        png = await asyncio.to_thread(
            render_png,
            series,
            title=title,
            threshold=query.threshold,
            start=start,
            end=end,
            marker_at=fixed_at,
            marker_label="fix applied" if fixed_at is not None else "",
        )
        message = await self._posted(incident_id)
        if message is None:
            _log.warning("no graph for incident %d: its Slack message was not posted in time", incident_id)
            return False
        channel, ts = message
        comment = (
            "📈 After the fix: the alert's expression over the last hour"
            if fixed_at is not None
            else "📈 The alert's expression over the last hour"
        )
        if query.threshold is not None:
            comment += f" (threshold {query.threshold})"
        try:
            await self._client.files_upload_v2(
                channel=channel,
                thread_ts=ts,
                file=png,
                filename=f"incident-{incident_id}-{kind}.png",
                title=title[:250],
                alt_txt=f"Graph of {query.expr}"[:1000],
                initial_comment=comment,
                request_file_info=False,
            )
        except Exception as exc:  # slack_sdk raises its own errors and aiohttp's: one line either way
            _log.warning("uploading the graph of incident %d failed: %s", incident_id, type(exc).__name__)
            return False
        return True

    async def _posted(self, incident_id: int) -> tuple[str, str] | None:
        deadline = time.monotonic() + POSTED_WITHIN_SECONDS
        while time.monotonic() < deadline:
            message = await self._store.get_slack_message(incident_id)
            if message is not None:
                return message
            await asyncio.sleep(self._poll)
        return None
