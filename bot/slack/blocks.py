"""Block Kit rendering of incidents, executions and thread notes: pure functions, no I/O.

Everything here turns typed values into the JSON Slack expects and keeps within Slack's limits
(`bot/slack/limits.py`): long evidence and diffs are truncated with a note, the full text goes to the
thread. Buttons carry only an id (incident id or execution id); the click handler re-reads the state
from the store before acting.
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bot.model import CheckResult, Finding, Incident, IncidentStatus, StepEvent, WorkState
from bot.redact import redact as redact_secrets
from bot.slack import limits

Block = dict[str, Any]

ACTION_APPROVE = "pitcrew_approve"
ACTION_REJECT = "pitcrew_reject"
ACTION_DETAILS = "pitcrew_details"
ACTION_ROLLBACK = "pitcrew_rollback"
REJECT_MODAL = "pitcrew_reject_modal"
REJECT_REASON_BLOCK = "reason"
REJECT_REASON_INPUT = "reason_input"

# Keep a few blocks in reserve for status, approvals, links and buttons.
_MAX_FINDING_BLOCKS = limits.MAX_MESSAGE_BLOCKS - 12
_EVIDENCE_LINES = 8
_ELLIPSIS = "…"


@dataclass(frozen=True)
class Message:
    """What chat.postMessage / chat.update / a response_url take: fallback text and blocks."""

    text: str
    blocks: tuple[Block, ...]

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": list(self.blocks)}


@dataclass(frozen=True)
class Approval:
    user_id: str
    user_name: str
    at: float


@dataclass(frozen=True)
class Rejection:
    user_id: str
    user_name: str
    reason: str | None
    at: float


@dataclass(frozen=True)
class ExecutionStatus:
    execution_id: int
    status_line: str  # the latest step, as shown on the parent message
    has_backups: bool = True  # nothing to roll back (and no Rollback button) without one


@dataclass(frozen=True)
class IncidentView:
    """An incident plus what the store knows about its approval and execution."""

    incident: Incident
    alertmanager_url: str = ""  # used when the incident carries no external URL
    approvals: tuple[Approval, ...] = ()
    approvals_needed: int = 1
    rejection: Rejection | None = None
    execution: ExecutionStatus | None = None
    expires_at: float | None = None  # when the Approve button stops working
    now: float = 0.0


# ---------------------------------------------------------------------------------------------
# Text helpers
# ---------------------------------------------------------------------------------------------


def redact(text: str) -> str:
    """Last line of defence before Slack: evidence is redacted at collection, but whatever reaches a
    message (a diff of a ConfigMap, a step detail) goes through the same redactor again."""
    return redact_secrets(text)


def escape(text: str) -> str:
    """Slack mrkdwn control characters (api.slack.com/reference/surfaces/formatting#escaping)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int, note: str = _ELLIPSIS) -> str:
    """At most `limit` characters; when cut, ends with `note`. Never splits an `&amp;` entity."""
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - len(note))]
    cut = re.sub(r"&[a-z]{0,3}$", "", cut)
    return cut + note


def code_block(text: str, limit: int, note: str = "\n… (truncated)") -> str:
    """A mrkdwn code block of escaped, redacted `text`, within `limit` characters in total."""
    body = escape(redact(text)).replace("```", "'''")
    return "```" + truncate(body, limit - 6, note) + "```"


def when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": truncate(text or "-", limit), "emoji": True}


def mrkdwn(text: str, limit: int = limits.MAX_SECTION_TEXT) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": truncate(text or "-", limit)}


def section(text: str) -> Block:
    return {"type": "section", "text": mrkdwn(text)}


def context(*texts: str) -> Block:
    return {"type": "context", "elements": [mrkdwn(t) for t in texts[: limits.MAX_CONTEXT_ELEMENTS]]}


def button(
    text: str,
    action_id: str,
    value: str,
    *,
    style: Literal["primary", "danger"] | None = None,
    confirm: Mapping[str, Any] | None = None,
) -> Block:
    out: Block = {"type": "button", "text": plain(text, limits.MAX_BUTTON_TEXT), "action_id": action_id}
    out["value"] = value[: limits.MAX_BUTTON_VALUE]
    if style:
        out["style"] = style
    if confirm:
        out["confirm"] = dict(confirm)
    return out


# ---------------------------------------------------------------------------------------------
# Links to Alertmanager
# ---------------------------------------------------------------------------------------------


def _matcher_filter(labels: Mapping[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


def alertmanager_base(view: IncidentView) -> str:
    return (view.incident.external_url or view.alertmanager_url).rstrip("/")


def alerts_link(base: str, labels: Mapping[str, str]) -> str:
    return f"{base}/#/alerts?{urllib.parse.urlencode({'filter': _matcher_filter(labels)})}"


def silence_link(base: str, labels: Mapping[str, str]) -> str:
    return f"{base}/#/silences/new?{urllib.parse.urlencode({'filter': _matcher_filter(labels)})}"


# ---------------------------------------------------------------------------------------------
# The incident message
# ---------------------------------------------------------------------------------------------

_SEVERITY_MARK = {"critical": "🔴", "warning": "🟠", "info": "🔵"}


def header_text(incident: Incident) -> str:
    mark = "✅" if incident.status is IncidentStatus.RESOLVED else "🔥"
    parts = [incident.alertname or "alert group", incident.severity or "no severity"]
    parts.append(incident.namespace or "all namespaces")
    parts.append(incident.status.value.upper())
    return f"{mark} " + " · ".join(parts)


def has_plan(incident: Incident) -> bool:
    return any(f.has_automatic_plan for f in incident.findings)


def approval_open(view: IncidentView) -> bool:
    """Whether the Approve button should be offered right now."""
    inc = view.incident
    return (
        inc.work_state is WorkState.DIAGNOSED
        and inc.status is IncidentStatus.FIRING
        and has_plan(inc)
        and not is_expired(view)
    )


def is_expired(view: IncidentView) -> bool:
    return view.expires_at is not None and view.now >= view.expires_at


def status_line(view: IncidentView) -> str:
    inc = view.incident
    state = inc.work_state
    if state is WorkState.PENDING:
        return "⏳ Diagnosing…"
    if state is WorkState.DIAGNOSED:
        if inc.diagnosis_error and not inc.findings:
            return f"⚠️ Diagnosis failed: {inc.diagnosis_error}"
        if not inc.findings:
            return "🔍 Diagnosed: no known root cause found"
        if not has_plan(inc):
            return "🔍 Diagnosed: manual action needed (no automatic plan)"
        if inc.status is IncidentStatus.RESOLVED:
            return "✅ Resolved before approval; the plan is no longer offered"
        if is_expired(view):
            return "⌛ Approval expired — run `/pitcrew diagnose` for a fresh plan"
        waiting = "Waiting for approval"
        if view.approvals_needed > 1:
            waiting = f"Waiting for {view.approvals_needed} distinct approvers ({len(view.approvals)} so far)"
        if view.expires_at is not None:
            waiting += f" (expires {when(view.expires_at)})"
        return f"🟡 {waiting}"
    if state is WorkState.REJECTED:
        return "🚫 Rejected"
    if state is WorkState.EXECUTING:
        line = view.execution.status_line if view.execution else "starting"
        return f"⚙️ Executing: {line}"
    if state is WorkState.SUCCEEDED:
        return "✅ Fixed and validated" + (f": {view.execution.status_line}" if view.execution else "")
    if state is WorkState.FAILED:
        return "❌ Remediation failed" + (f": {view.execution.status_line}" if view.execution else "")
    return "↩️ Rolled back" + (f": {view.execution.status_line}" if view.execution else "")


def _finding_blocks(finding: Finding) -> list[Block]:
    mark = _SEVERITY_MARK.get(finding.severity.value, "•")
    lines = [f"{mark} *{escape(finding.code)}* — {escape(redact(finding.summary))}"]
    if finding.objects:
        lines.append("Objects: " + ", ".join(f"`{escape(str(o))}`" for o in finding.objects[:10]))
    if finding.caused_by:
        lines.append("Caused by: " + ", ".join(f"`{escape(c)}`" for c in finding.caused_by[:10]))
    head = "\n".join(lines)
    evidence = list(finding.evidence[:_EVIDENCE_LINES])
    if len(finding.evidence) > _EVIDENCE_LINES:
        evidence.append(f"(+{len(finding.evidence) - _EVIDENCE_LINES} more lines — Details)")
    text = head
    if evidence:
        room = limits.MAX_SECTION_TEXT - len(head) - 1
        text = head + "\n" + code_block("\n".join(evidence), max(room, 20))
    blocks = [section(text)]
    if finding.has_automatic_plan and finding.plan is not None:
        steps = [f"{i}. {escape(redact(s.description))}" for i, s in enumerate(finding.plan.steps, 1)]
        plan_text = "*Plan*\n" + "\n".join(steps)
        if finding.plan.validation:
            plan_text += "\n_Then validate:_ " + ", ".join(f"`{escape(v)}`" for v in finding.plan.validation)
        blocks.append(section(truncate(plan_text, limits.MAX_SECTION_TEXT, "\n… (see Details)")))
    elif finding.caused_by:
        # A symptom (e.g. Services without endpoints): fixing its causes fixes it.
        causes = ", ".join(f"`{escape(c)}`" for c in finding.caused_by)
        blocks.append(context(f"_No plan of its own: it clears once {causes} is fixed._"))
    else:
        blocks.append(context("_No automatic plan: this needs a manual fix (see Details)._"))
    return blocks


def diff_section(diff: str) -> Block:
    title = "*Dry-run diff* (server-side)\n"
    note = "\n… (truncated; the full diff is in the thread)"
    return section(title + code_block(diff, limits.MAX_SECTION_TEXT - len(title), note))


def diff_is_truncated(diff: str) -> bool:
    text: str = diff_section(diff)["text"]["text"]
    return text.endswith("thread)```")


def render_incident(view: IncidentView) -> Message:
    inc = view.incident
    blocks: list[Block] = [{"type": "header", "text": plain(header_text(inc), limits.MAX_HEADER_TEXT)}]
    status = redact(status_line(view))  # carries diagnosis errors and execution details
    blocks.append(context(f"*Status:* {escape(status)}", f"Incident #{inc.id}"))
    summary = inc.common_annotations.get("summary") or inc.common_annotations.get("description")
    if summary:
        blocks.append(section(escape(redact(summary))))
    if inc.diagnosis_error and inc.findings:
        blocks.append(context(f"⚠️ Part of the diagnosis failed: {escape(redact(inc.diagnosis_error))}"))

    finding_blocks: list[Block] = []
    shown = 0
    for finding in inc.findings:
        more = _finding_blocks(finding)
        if len(finding_blocks) + len(more) > _MAX_FINDING_BLOCKS:
            break
        finding_blocks.extend(more)
        shown += 1
    blocks.extend(finding_blocks)
    if shown < len(inc.findings):
        blocks.append(context(f"+{len(inc.findings) - shown} more findings — see Details"))

    if inc.dry_run_diff:
        blocks.append(diff_section(inc.dry_run_diff))

    if view.approvals:
        who = ", ".join(f"<@{a.user_id}> at {when(a.at)}" for a in view.approvals)
        blocks.append(context(f"👍 Approved by {who}"))
    if view.rejection is not None:
        r = view.rejection
        reason = f": {escape(redact(r.reason))}" if r.reason else ""
        blocks.append(context(f"🚫 Rejected by <@{r.user_id}> at {when(r.at)}{reason}"))

    base = alertmanager_base(view)
    labels = dict(inc.common_labels) or dict(inc.group_labels)
    if base:
        blocks.append(
            context(
                f"<{alerts_link(base, labels)}|Alertmanager source> · "
                f"<{silence_link(base, labels)}|Silence these alerts>"
            )
        )

    incident_id = str(inc.id)
    elements: list[Block] = []
    if approval_open(view):
        elements.append(
            button(
                "Approve",
                ACTION_APPROVE,
                incident_id,
                style="primary",
                confirm={
                    "title": plain("Run this plan?", limits.MAX_CONFIRM_TITLE),
                    "text": plain(
                        f"pitcrew will back up, change and validate the objects of incident #{inc.id}. "
                        "Every step is posted in the thread.",
                        limits.MAX_CONFIRM_TEXT,
                    ),
                    "confirm": plain("Approve", limits.MAX_CONFIRM_BUTTON),
                    "deny": plain("Cancel", limits.MAX_CONFIRM_BUTTON),
                },
            )
        )
    if inc.work_state is WorkState.DIAGNOSED and has_plan(inc) and inc.status is IncidentStatus.FIRING:
        elements.append(button("Reject", ACTION_REJECT, incident_id, style="danger"))
    if inc.findings:
        elements.append(button("Details", ACTION_DETAILS, incident_id))
    if (
        view.execution is not None
        and view.execution.has_backups
        and inc.work_state in (WorkState.SUCCEEDED, WorkState.FAILED)
    ):
        elements.append(rollback_button(view.execution.execution_id))
    if elements:
        blocks.append({"type": "actions", "block_id": f"incident-{inc.id}", "elements": elements})

    text = f"{header_text(inc)} — {status}"
    return Message(text=truncate(text, 3000), blocks=tuple(blocks))


def rollback_button(execution_id: int) -> Block:
    return button(
        "Rollback",
        ACTION_ROLLBACK,
        str(execution_id),
        style="danger",
        confirm={
            "title": plain("Roll back?", limits.MAX_CONFIRM_TITLE),
            "text": plain(
                f"Restore every backup of execution {execution_id} and restart what it changed.",
                limits.MAX_CONFIRM_TEXT,
            ),
            "confirm": plain("Roll back", limits.MAX_CONFIRM_BUTTON),
            "deny": plain("Cancel", limits.MAX_CONFIRM_BUTTON),
        },
    )


# ---------------------------------------------------------------------------------------------
# Thread replies
# ---------------------------------------------------------------------------------------------

_PHASE_MARK = {
    "started": "▶️",
    "progress": "⏳",
    "done": "✅",
    "failed": "❌",
    "skipped": "⏭️",
    "rolled-back": "↩️",
}


def step_event_line(event: StepEvent) -> str:
    """One line for the thread and the parent's status line, e.g. `✅ step 1 patch: patched …`."""
    mark = _PHASE_MARK.get(event.phase, "•")
    where = f"step {event.step_index + 1} {event.action}" if event.step_index >= 0 else event.action
    line = f"{mark} {where}: {redact(event.detail)}"
    if event.backup_id:
        line += f" (backup `{event.backup_id}`)"
    if event.elapsed_seconds is not None:
        line += f" — {event.elapsed_seconds:.0f} s elapsed"
    return line


def render_step_event(event: StepEvent) -> Message:
    line = step_event_line(event)
    return Message(text=truncate(line, 3000), blocks=(section(escape(line)),))


def render_final(outcome: str, detail: str, execution_id: int, *, offer_rollback: bool) -> Message:
    mark = {"succeeded": "✅", "failed": "❌", "rolled-back": "↩️"}.get(outcome, "•")
    text = f"{mark} Execution {execution_id} {outcome}: {redact(detail)}"
    blocks: list[Block] = [section(escape(text))]
    if offer_rollback:
        blocks.append(
            {
                "type": "actions",
                "block_id": f"execution-{execution_id}",
                "elements": [rollback_button(execution_id)],
            }
        )
    return Message(text=truncate(text, 3000), blocks=tuple(blocks))


def render_note(text: str) -> Message:
    return Message(text=truncate(redact(text), 3000), blocks=(section(escape(redact(text))),))


def render_full_diff(diff: str) -> list[Message]:
    """The whole dry-run diff as thread replies, each message within Slack's limits."""
    body = escape(redact(diff)).replace("```", "'''")
    chunk = limits.MAX_SECTION_TEXT - 8
    pieces: list[str] = []
    rest = body
    while rest:
        cut = rest[:chunk]
        if len(rest) > chunk and "\n" in cut:
            cut = cut[: cut.rindex("\n") + 1]
        cut = re.sub(r"&[a-z]{0,3}$", "", cut) or rest[:chunk]
        pieces.append(cut)
        rest = rest[len(cut) :]
    per_message = limits.MAX_MESSAGE_BLOCKS - 1
    messages: list[Message] = []
    for start in range(0, len(pieces), per_message):
        group = pieces[start : start + per_message]
        blocks: list[Block] = [context(f"Dry-run diff, part {start // per_message + 1}")]
        blocks.extend(section("```" + p + "```") for p in group)
        messages.append(Message(text="Dry-run diff", blocks=tuple(blocks)))
    return messages


def render_details(incident: Incident) -> Message:
    """Every finding with all its evidence and exact steps, for the Details button (ephemeral)."""
    blocks: list[Block] = [{"type": "header", "text": plain(f"Incident #{incident.id} details", 150)}]
    for finding in incident.findings:
        if len(blocks) >= limits.MAX_MESSAGE_BLOCKS - 3:
            blocks.append(context("… more findings: run `pitcrew diagnose` in a terminal for all of them"))
            break
        head = f"*{escape(finding.code)}* ({finding.severity.value}) — {escape(redact(finding.summary))}\n"
        blocks.append(section(head + code_block("\n".join(finding.evidence) or "(no evidence lines)", 2900)))
        if finding.plan is not None and finding.plan.steps:
            steps = "\n".join(
                f"{i}. [{s.action}] `{escape(str(s.target))}` — {escape(redact(s.description))}"
                for i, s in enumerate(finding.plan.steps, 1)
            )
            blocks.append(section(truncate("*Steps*\n" + steps, limits.MAX_SECTION_TEXT)))
    if len(blocks) == 1:
        blocks.append(section("No findings."))
    return Message(text=f"Incident #{incident.id} details", blocks=tuple(blocks))


def render_checks(title: str, checks: Sequence[CheckResult]) -> Message:
    marks = {"pass": "✅", "warn": "⚠️", "fail": "❌"}
    lines = [f"{marks.get(c.status, '•')} `{escape(c.name)}` {escape(redact(c.detail))}" for c in checks]
    blocks: list[Block] = [section(f"*{escape(title)}*")]
    blocks.extend(_chunk_lines(lines or ["(no checks ran)"], limits.MAX_MESSAGE_BLOCKS - 1))
    failed = sum(1 for c in checks if c.status == "fail")
    return Message(text=f"{title}: {failed} failed of {len(checks)}", blocks=tuple(blocks))


def render_check_line(check: CheckResult) -> str:
    marks = {"pass": "✅", "warn": "⚠️", "fail": "❌"}
    return f"{marks.get(check.status, '•')} check {check.name}: {redact(check.detail)}"


def _chunk_lines(lines: Sequence[str], max_blocks: int) -> list[Block]:
    """Lines packed into as few sections as the 3,000-character limit allows."""
    blocks: list[Block] = []
    current = ""
    for line in lines:
        line = truncate(line, limits.MAX_SECTION_TEXT)
        if current and len(current) + 1 + len(line) > limits.MAX_SECTION_TEXT:
            blocks.append(section(current))
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        blocks.append(section(current))
    if len(blocks) > max_blocks:
        blocks = [*blocks[: max_blocks - 1], context("… more lines left out")]
    return blocks


def render_lines(title: str, lines: Sequence[str]) -> Message:
    blocks: list[Block] = [section(f"*{escape(title)}*")]
    blocks.extend(
        _chunk_lines([escape(redact(line)) for line in lines] or ["(none)"], limits.MAX_MESSAGE_BLOCKS - 1)
    )
    return Message(text=title, blocks=tuple(blocks))
