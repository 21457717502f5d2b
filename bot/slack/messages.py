"""The incident's Slack message and thread, kept in step with the store.

`IncidentMessages.post(incident_id)` is what the pipeline calls once an incident is diagnosed (and
again on any change): it renders the incident from the store's current state and queues the post —
or, when the incident already has a message, an update of that same message (`chat.update`). Thread
replies and status-line changes go through here too. All of it is queued in the store's outbox; the
outbox worker sends it (bot/slack/outbox.py).

Small per-incident state kept in the store's kv table:
- `slack.offer.<id>`: when the current plan was first offered (approvals expire relative to it, and
  only approvals given after it count);
- `slack.details.<id>`: the digest of the diagnosis whose details reply was posted (posted once);
- `slack.status.<id>`: the latest execution step line, shown on the parent message;
- `slack.rendered.<id>`: the status last rendered, to notice resolution (-> thread note);
- `slack.channel.<id>`: the channel a `/pitcrew diagnose` was asked from (overrides routing).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bot.model import Incident, IncidentStatus, WorkState, findings_dumps
from bot.slack import blocks as B
from bot.slack import details as D
from bot.slack.approvers import approvals_needed
from bot.slack.outbox import OutboxPayload, enqueue, incident_thread
from bot.slack.routing import choose_channel
from bot.slack.settings import SlackSettings

if TYPE_CHECKING:
    from bot.store import StoreBackend

_log = logging.getLogger(__name__)


def _offer_key(incident_id: int) -> str:
    return f"slack.offer.{incident_id}"


def _status_key(incident_id: int) -> str:
    return f"slack.status.{incident_id}"


def _rendered_key(incident_id: int) -> str:
    return f"slack.rendered.{incident_id}"


def _details_key(incident_id: int) -> str:
    return f"slack.details.{incident_id}"


def channel_key(incident_id: int) -> str:
    return f"slack.channel.{incident_id}"


def plan_digest(incident: Incident) -> str:
    text = findings_dumps(list(incident.findings)) + "\0" + (incident.dry_run_diff or "")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class IncidentMessages:
    def __init__(
        self,
        store: StoreBackend,
        settings: SlackSettings,
        *,
        wake: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._settings = settings
        self._wake = wake
        self._clock = clock
        # post() reads then writes per-incident state (offer, rendered): one at a time per incident.
        self._locks: dict[int, asyncio.Lock] = {}
        # Incidents whose message offers Approve, and when that offer expires: `sync` re-renders
        # them then, so the message itself says the approval expired (not only a later click).
        self._offers_expiring: dict[int, float] = {}

    # -- state --------------------------------------------------------------------------------

    async def offer(self, incident: Incident) -> dict[str, Any] | None:
        """The current plan's offer record, started now if the plan is new (a (re)diagnosis)."""
        raw = await self._store.get_kv(_offer_key(incident.id))
        offer: dict[str, Any] | None = json.loads(raw) if raw else None
        if incident.work_state is WorkState.DIAGNOSED and B.has_plan(incident):
            digest = plan_digest(incident)
            if offer is None or offer.get("digest") != digest:
                offer = {"at": self._clock(), "digest": digest}
                await self._store.set_kv(_offer_key(incident.id), json.dumps(offer))
        return offer

    async def load_view(self, incident: Incident) -> B.IncidentView:
        offer = await self.offer(incident)
        offered_at = float(offer["at"]) if offer else 0.0
        decisions = await self._store.list_decisions(incident.id)
        approvals: list[B.Approval] = []
        for d in decisions:
            if (
                d.decision == "approve"
                and d.at >= offered_at
                and all(a.user_id != d.user_id for a in approvals)
            ):
                approvals.append(B.Approval(d.user_id, d.user_name, d.at))
        rejection = None
        if incident.work_state is WorkState.REJECTED:
            rejects = [d for d in decisions if d.decision == "reject"]
            if rejects:
                r = rejects[-1]
                rejection = B.Rejection(r.user_id, r.user_name, r.reason, r.at)
        execution = None
        executions = await self._store.list_executions(incident.id, limit=1)
        if executions:
            latest = executions[0]
            line = await self._store.get_kv(_status_key(incident.id))
            if latest.status != "running" and incident.work_state is not WorkState.EXECUTING:
                line = latest.detail or line  # the outcome's reason, once it is over
            execution = B.ExecutionStatus(
                latest.id,
                line or latest.detail or latest.status,
                has_backups=bool(await self._store.list_backups(latest.id)),
                started_at=latest.started_at,
                finished_at=latest.finished_at,
            )
        return B.IncidentView(
            incident=incident,
            alertmanager_url=self._settings.alertmanager_url,
            approvals=tuple(approvals),
            approvals_needed=approvals_needed(self._settings.policy, incident.findings),
            rejection=rejection,
            execution=execution,
            expires_at=offered_at + self._settings.approval_expiry_seconds if offer else None,
            now=self._clock(),
        )

    async def channel_for(self, incident: Incident) -> str:
        override = await self._store.get_kv(channel_key(incident.id))
        if override:
            return override
        return choose_channel(self._settings.routes, self._settings.default_channel, incident)

    # -- queueing -----------------------------------------------------------------------------

    async def post(self, incident_id: int) -> None:
        """Post the incident's message, or update it if it was posted already. Idempotent."""
        lock = self._locks.setdefault(incident_id, asyncio.Lock())
        async with lock:
            await self._post(incident_id)

    async def _post(self, incident_id: int) -> None:
        incident = await self._store.get_incident(incident_id)
        if incident is None:
            raise LookupError(f"incident {incident_id} does not exist")
        view = await self.load_view(incident)
        message = B.render_incident(view)
        if B.approval_open(view) and view.expires_at is not None:
            self._offers_expiring[incident_id] = view.expires_at
        else:
            self._offers_expiring.pop(incident_id, None)
        channel = await self.channel_for(incident)
        # Everything this update says (the message, the details reply, a resolved/firing note) and the
        # state that records it is handed to the outbox in one transaction, in thread order.
        args = {"channel": channel, **message.to_json()}
        items = [OutboxPayload("parent", args, incident_id)]
        records: dict[str, str] = {}

        digest = plan_digest(incident)
        if incident.findings and await self._store.get_kv(_details_key(incident.id)) != digest:
            # The details reply (evidence, plan, commands, diff), once per diagnosis: again only when
            # a re-diagnosis changed them. A diff too long for it follows whole, in as few replies as fit.
            items.append(self._reply_payload(incident_id, D.render_details_reply(incident)))
            if incident.dry_run_diff and D.diff_is_truncated(incident.dry_run_diff):
                parts = B.render_full_diff(incident.dry_run_diff)
                items.extend(self._reply_payload(incident_id, part) for part in parts)
            records[_details_key(incident.id)] = digest

        rendered_raw = await self._store.get_kv(_rendered_key(incident_id))
        rendered = json.loads(rendered_raw) if rendered_raw else {}
        if (
            rendered.get("status") == IncidentStatus.FIRING.value
            and incident.status is IncidentStatus.RESOLVED
        ):
            note = f"✅ Resolved: every alert of this group is resolved ({B.when(self._clock())})."
            items.append(self._reply_payload(incident_id, B.render_note(note)))
        elif (
            rendered.get("status") == IncidentStatus.RESOLVED.value
            and incident.status is IncidentStatus.FIRING
        ):
            items.append(self._reply_payload(incident_id, B.render_note("🔥 Firing again.")))
        records[_rendered_key(incident_id)] = json.dumps(
            {
                "status": incident.status.value,
                "work_state": incident.work_state.value,
                "updated_at": incident.updated_at,
            }
        )
        thread = incident_thread(incident_id)
        await self._store.enqueue_outbox_many(
            [(thread, "chat.postMessage", item.dumps()) for item in items], kv=records
        )
        self._wake()

    @staticmethod
    def _reply_payload(incident_id: int, message: B.Message) -> OutboxPayload:
        return OutboxPayload("reply", message.to_json(), incident_id)

    async def reply(self, incident_id: int, message: B.Message) -> None:
        await self._queue_reply(incident_id, message)
        self._wake()

    async def living(self, incident_id: int, key: str, message: B.Message) -> None:
        """Post `message` in the thread the first time `key` is used, edit it in place after."""
        await enqueue(
            self._store,
            incident_thread(incident_id),
            "chat.postMessage",
            OutboxPayload("living", message.to_json(), incident_id, key=key),
        )
        self._wake()

    async def _queue_reply(self, incident_id: int, message: B.Message) -> None:
        payload = self._reply_payload(incident_id, message)
        await enqueue(self._store, incident_thread(incident_id), "chat.postMessage", payload)

    async def set_status(self, incident_id: int, line: str, *, refresh: bool = True) -> None:
        """Show `line` as the execution's status on the parent message (now, or with its next update
        when `refresh` is false)."""
        await self._store.set_kv(_status_key(incident_id), line)
        if refresh:
            await self.post(incident_id)

    async def is_posted(self, incident_id: int) -> bool:
        return await self._store.get_kv(_rendered_key(incident_id)) is not None

    async def restore_offers(self) -> None:
        """After a restart: find the posted messages that still offer Approve, so that their expiry is
        rendered on time (that schedule lives in memory only)."""
        for incident in await self._store.list_incidents(
            status=IncidentStatus.FIRING, work_states=[WorkState.DIAGNOSED], limit=500
        ):
            if not await self.is_posted(incident.id):
                continue
            view = await self.load_view(incident)
            if B.approval_open(view) and view.expires_at is not None:
                self._offers_expiring[incident.id] = view.expires_at

    async def sync(self, since: float) -> float:
        """Refresh the messages of incidents changed since `since` whose message pitcrew already
        queued (re-notifications, resolutions, state changes made elsewhere). Returns the next cursor."""
        cursor = self._clock()
        for incident in await self._store.list_incidents(since=since, limit=200):
            raw = await self._store.get_kv(_rendered_key(incident.id))
            if raw is None:
                continue  # never posted: the pipeline posts it once diagnosed
            rendered = json.loads(raw)
            if (
                rendered.get("status") != incident.status.value
                or rendered.get("work_state") != incident.work_state.value
                or float(rendered.get("updated_at", 0)) < incident.updated_at
            ):
                try:
                    await self.post(incident.id)
                except Exception:
                    _log.exception("refreshing the Slack message of incident %d failed", incident.id)
        for incident_id, expires_at in list(self._offers_expiring.items()):
            if expires_at <= cursor:
                try:
                    await self.post(incident_id)
                except Exception:
                    _log.exception("marking the approval of incident %d expired failed", incident_id)
                    self._offers_expiring.pop(incident_id, None)
        # Overlap one second so an update in the same instant as the scan is not missed.
        return cursor - 1.0
