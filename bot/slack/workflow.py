"""What a click means: approve, reject, roll back — checked against the store and the approver rules.

Nothing here trusts the button: it carries only an id, and every decision re-reads the incident (its
state, findings and previous approvals) from the store and checks who clicked (convention 9). The
store's `start_execution` is the final word on "exactly one execution per incident", so two people
clicking at once, or one person twice, start one execution. Every refusal is audited.

The executor is reached through the small `Executor` protocol (`RemediateExecutor` binds
`bot.remediation` to the cluster and hosts adapters), and group membership through `GroupResolver`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from bot.model import Finding, IncidentStatus, ObjectRef, StepEvent, WorkState
from bot.slack import blocks as B
from bot.slack import progress as P
from bot.slack.approvers import Verdict, approvals_needed, check, plan_codes, plan_namespaces
from bot.slack.messages import IncidentMessages
from bot.slack.settings import SlackSettings

if TYPE_CHECKING:
    from bot.store import StoreBackend

_log = logging.getLogger(__name__)

# Waiting steps report progress every few seconds; the living status shows it at most this often.
PROGRESS_UPDATE_SECONDS = 5.0

EventSink = Callable[[StepEvent], Awaitable[None]]
Spawn = Callable[[Coroutine[Any, Any, None], str], None]


class ResultLike(Protocol):
    @property
    def execution_id(self) -> int | None: ...
    @property
    def outcome(self) -> str: ...
    @property
    def detail(self) -> str: ...
    @property
    def backups(self) -> tuple[str, ...]: ...


class Executor(Protocol):
    async def execute(
        self, findings: Sequence[Finding], *, incident_id: int, actor: str, on_event: EventSink
    ) -> ResultLike: ...

    async def rollback(self, ref: int | str, *, actor: str, on_event: EventSink) -> ResultLike: ...


class GroupResolver(Protocol):
    async def groups_of(self, user_id: str, candidates: frozenset[str]) -> frozenset[str]: ...


@dataclass(frozen=True)
class Actor:
    user_id: str
    user_name: str

    @property
    def audit_name(self) -> str:
        return f"slack:{self.user_id}"


class Workflow:
    def __init__(
        self,
        store: StoreBackend,
        settings: SlackSettings,
        messages: IncidentMessages,
        groups: GroupResolver,
        executor: Executor,
        spawn: Spawn,
        *,
        clock: Callable[[], float] = time.time,
        on_fixed: Callable[[int, float], None] | None = None,
    ) -> None:
        self._on_fixed = on_fixed  # (incident id, when): a fix succeeded (the recovery graph)
        self._store = store
        self._settings = settings
        self._messages = messages
        self._groups = groups
        self._executor = executor
        self._spawn = spawn
        self._clock = clock

    async def authorise(
        self,
        actor: Actor,
        namespace: str | None,
        findings: Sequence[Finding],
        *,
        also_namespaces: Sequence[str] = (),
    ) -> Verdict:
        codes = plan_codes(findings) or tuple(f.code for f in findings)
        touched = tuple(sorted({*plan_namespaces(findings), *also_namespaces}))
        candidates = self._settings.policy.groups_for(namespace, codes, touched)
        groups = await self._groups.groups_of(actor.user_id, candidates) if candidates else frozenset()
        return check(
            self._settings.policy,
            user_id=actor.user_id,
            user_groups=groups,
            namespace=namespace,
            finding_codes=codes,
            plan_namespaces=touched,
        )

    async def _deny(self, actor: Actor, action: str, incident_id: int | None, reason: str) -> str:
        await self._store.audit(actor.audit_name, f"{action} denied", incident_id=incident_id, detail=reason)
        return f"Not done: {reason}."

    # -- approve --------------------------------------------------------------------------------

    async def approve(self, incident_id: int, actor: Actor) -> str:
        """Returns the text to show the clicking user (ephemeral)."""
        incident = await self._store.get_incident(incident_id)
        if incident is None:
            return f"Incident #{incident_id} does not exist."
        verdict = await self.authorise(actor, incident.namespace, incident.findings)
        if not verdict.allowed:
            return await self._deny(actor, "approve", incident_id, verdict.reason)
        if not B.has_plan(incident):
            return f"Incident #{incident_id} has no automatic plan to approve."
        if incident.work_state is not WorkState.DIAGNOSED:
            return f"Incident #{incident_id} is {incident.work_state.value}; there is nothing to approve now."
        if incident.status is IncidentStatus.RESOLVED:
            return await self._deny(
                actor, "approve", incident_id, "the alerts resolved; the plan is no longer offered"
            )
        view = await self._messages.load_view(incident)
        if B.is_expired(view):
            await self._messages.post(incident_id)  # the button now says it expired
            return await self._deny(
                actor,
                "approve",
                incident_id,
                "this approval request expired; run `/pitcrew diagnose` for a fresh plan",
            )

        await self._store.record_decision(incident_id, actor.user_id, actor.user_name, "approve", None)
        await self._store.audit(actor.audit_name, "approved", incident_id=incident_id)
        view = await self._messages.load_view(incident)
        needed = approvals_needed(self._settings.policy, incident.findings)
        if len(view.approvals) < needed:
            await self._messages.post(incident_id)
            return f"Approval recorded. This critical plan needs {needed} distinct approvers; waiting."

        # The store refuses a second execution, whoever and however often clicks.
        executions = await self._store.list_executions(incident_id, limit=1)
        if executions:
            return (
                f"Incident #{incident_id} already has execution {executions[0].id} ({executions[0].status})."
            )
        approvers = ", ".join(a.user_id for a in view.approvals)
        self._spawn(
            self._run_execution(incident_id, incident.findings, actor, approvers), f"execute-{incident_id}"
        )
        return f"Approved. Executing the plan of incident #{incident_id}; progress is in the thread."

    async def _run_execution(
        self, incident_id: int, findings: Sequence[Finding], actor: Actor, approvers: str
    ) -> None:
        # The thread gets one living status (edited as steps progress) and one final reply; the
        # parent follows step starts, failures and plan-level events (chat.update is rate-limited).
        progress = P.start("Fix", P.planned_steps(findings))
        shown_at = -1e9

        async def on_event(event: StepEvent) -> None:
            nonlocal progress, shown_at
            progress = P.apply(progress, event)
            now = time.monotonic()
            if event.phase != "progress" or now - shown_at >= PROGRESS_UPDATE_SECONDS:
                shown_at = now
                await self._messages.living(
                    incident_id, f"{incident_id}:execution:{event.execution_id}", P.render(progress)
                )
            refresh = event.phase in ("started", "failed") or event.step_index < 0
            await self._messages.set_status(incident_id, B.step_event_line(event), refresh=refresh)

        try:
            result = await self._executor.execute(
                findings, incident_id=incident_id, actor=f"slack:{approvers}", on_event=on_event
            )
        except Exception as exc:
            _log.exception("execution of incident %d crashed", incident_id)
            await self._messages.reply(
                incident_id, B.render_note(f"❌ Execution crashed: {type(exc).__name__}: {exc}")
            )
            await self._messages.post(incident_id)
            return
        if result.outcome == "refused":
            await self._store.audit(
                actor.audit_name, "execution refused", incident_id=incident_id, detail=result.detail
            )
            holder = await self._store.get_execution(result.execution_id) if result.execution_id else None
            if holder is None or holder.incident_id != incident_id:
                # Not another click on this incident (whose execution reports in the thread): e.g. a
                # target is locked by another incident's execution. Say so where the approver looks.
                await self._messages.reply(incident_id, B.render_note(f"⛔ Not executed: {result.detail}"))
                await self._messages.post(incident_id)
            return
        if result.execution_id is not None:
            key = f"{incident_id}:execution:{result.execution_id}"
            await self._messages.living(incident_id, key, P.render(progress, finished=True))
            execution = await self._store.get_execution(result.execution_id)
            seconds = (
                execution.finished_at - execution.started_at
                if execution is not None and execution.finished_at is not None
                else None
            )
            offer = bool(result.backups) and result.outcome in ("succeeded", "failed")
            await self._messages.reply(
                incident_id,
                P.render_final(
                    result.outcome,
                    result.detail,
                    result.execution_id,
                    offer_rollback=offer,
                    checks=tuple(getattr(result, "checks", ())),
                    by=B.actor_mentions(f"slack:{approvers}"),
                    seconds=seconds,
                ),
            )
        await self._messages.set_status(incident_id, result.detail)
        if result.outcome == "succeeded" and self._on_fixed is not None:
            self._on_fixed(incident_id, self._clock())

    # -- reject ---------------------------------------------------------------------------------

    async def refuse_reject(self, incident_id: int, actor: Actor) -> str | None:
        """Before the reason modal opens: why `actor` may not reject (audited), or None if they may."""
        incident = await self._store.get_incident(incident_id)
        if incident is None:
            return f"Incident #{incident_id} does not exist."
        verdict = await self.authorise(actor, incident.namespace, incident.findings)
        if not verdict.allowed:
            return await self._deny(actor, "reject", incident_id, verdict.reason)
        return None

    async def reject(self, incident_id: int, actor: Actor, reason: str | None) -> str:
        incident = await self._store.get_incident(incident_id)
        if incident is None:
            return f"Incident #{incident_id} does not exist."
        verdict = await self.authorise(actor, incident.namespace, incident.findings)
        if not verdict.allowed:
            return await self._deny(actor, "reject", incident_id, verdict.reason)
        if not await self._store.set_work_state(
            incident_id, WorkState.REJECTED, expected=[WorkState.DIAGNOSED]
        ):
            current = await self._store.get_incident(incident_id)
            state = current.work_state.value if current else "gone"
            return f"Incident #{incident_id} is {state}; it can no longer be rejected."
        clean = (reason or "").strip()[:500] or None
        await self._store.record_decision(incident_id, actor.user_id, actor.user_name, "reject", clean)
        await self._store.audit(actor.audit_name, "rejected", incident_id=incident_id, detail=clean or "")
        await self._messages.post(incident_id)
        return f"Rejected incident #{incident_id}."

    # -- rollback -------------------------------------------------------------------------------

    async def rollback(self, ref: int | str, actor: Actor) -> str:
        """`ref`: an execution id, or a backup id ("b-12")."""
        if isinstance(ref, str):
            backup = await self._store.get_backup(ref)
            if backup is None:
                return f"Backup {ref} does not exist."
            execution = await self._store.get_execution(backup.execution_id)
        else:
            execution = await self._store.get_execution(ref)
        if execution is None:
            return f"Execution {ref} does not exist."
        incident = await self._store.get_incident(execution.incident_id) if execution.incident_id else None
        # The namespaces the execution changed count too: a CLI run or a rollback has no incident.
        verdict = await self.authorise(
            actor,
            incident.namespace if incident else None,
            incident.findings if incident else (),
            also_namespaces=_target_namespaces(execution.targets),
        )
        incident_id = incident.id if incident else None
        if not verdict.allowed:
            return await self._deny(actor, "rollback", incident_id, verdict.reason)
        if execution.status == "running":
            return f"Execution {execution.id} is still running."
        if execution.status == "rolled-back" and not isinstance(ref, str):
            return f"Execution {execution.id} was already rolled back."
        await self._store.audit(
            actor.audit_name, "rollback requested", incident_id=incident_id, execution_id=execution.id
        )
        self._spawn(self._run_rollback(ref, incident_id, actor), f"rollback-{execution.id}")
        where = (
            "the incident's thread"
            if incident_id and await self._messages.is_posted(incident_id)
            else "this reply"
        )
        what = f"backup {ref}" if isinstance(ref, str) else f"execution {ref}"
        return f"Rolling back {what}; progress in {where}."

    async def _run_rollback(self, ref: int | str, incident_id: int | None, actor: Actor) -> None:
        threaded = incident_id is not None and await self._messages.is_posted(incident_id)
        progress = P.start("Rollback")

        async def on_event(event: StepEvent) -> None:
            nonlocal progress
            progress = P.apply(progress, event)
            if threaded and incident_id is not None:
                await self._messages.living(
                    incident_id, f"{incident_id}:rollback:{event.execution_id}:{ref}", P.render(progress)
                )

        try:
            result = await self._executor.rollback(ref, actor=actor.audit_name, on_event=on_event)
        except Exception as exc:
            _log.exception("rollback of %s crashed", ref)
            if threaded and incident_id is not None:
                await self._messages.reply(
                    incident_id, B.render_note(f"❌ Rollback failed: {type(exc).__name__}: {exc}")
                )
            return
        if threaded and incident_id is not None:
            await self._messages.reply(
                incident_id,
                P.render_final(
                    result.outcome,
                    result.detail,
                    result.execution_id or 0,
                    offer_rollback=False,
                    by=B.mention(actor.user_id),
                ),
            )
            line = (
                result.detail
                if result.outcome == "rolled-back"
                else f"rollback {result.outcome}: {result.detail}"
            )
            await self._messages.set_status(incident_id, line)


def _target_namespaces(targets: Sequence[str]) -> tuple[str, ...]:
    """Namespaces of an execution's object targets ("ns/Kind/name"; host targets have none)."""
    found = set()
    for target in targets:
        if target.startswith("host:"):
            continue
        with contextlib.suppress(ValueError):
            namespace = ObjectRef.parse(target).namespace
            if namespace:
                found.add(namespace)
    return tuple(sorted(found))


class RemediateExecutor:
    """`Executor` over `bot.remediation`, with the cluster and hosts adapters bound."""

    def __init__(
        self, *, cluster: Any, hosts: Any, store: StoreBackend, config: Any, metrics: Any = None
    ) -> None:
        self._cluster = cluster
        self._hosts = hosts
        self._store = store
        self._config = config
        self._metrics = metrics  # the app's registry: executions are counted for pitcrew's own alerts

    async def execute(
        self, findings: Sequence[Finding], *, incident_id: int, actor: str, on_event: EventSink
    ) -> ResultLike:
        from bot import remediation

        return await remediation.execute(
            findings,
            incident_id=incident_id,
            actor=actor,
            cluster=self._cluster,
            hosts=self._hosts,
            store=self._store,
            config=self._config,
            on_event=on_event,
            metrics=self._metrics,
        )

    async def rollback(self, ref: int | str, *, actor: str, on_event: EventSink) -> ResultLike:
        from bot import remediation

        return await remediation.rollback(
            ref,
            actor=actor,
            cluster=self._cluster,
            hosts=self._hosts,
            store=self._store,
            on_event=on_event,
            config=self._config,  # undo backups are also written as YAML files
        )
