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

from bot.model import CheckResult, Finding, Incident, IncidentStatus, ObjectRef, StepEvent, WorkState
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
    status_line: str  # the latest step, or the outcome's reason, as shown on the parent message
    has_backups: bool = True  # nothing to roll back (and no Rollback button) without one
    started_at: float | None = None
    finished_at: float | None = None


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
# The incident message: one phone screen (header, cause, the alert's words, the fix, the buttons)
# ---------------------------------------------------------------------------------------------

# The budget an on-call engineer's phone imposes (asserted on real renders by the tests).
BUDGET_BLOCKS = 8
BUDGET_VISIBLE_CHARS = 1_200
BUDGET_ACTIONS_WITHIN = 4  # the actions block is one of the first four blocks

ACTION_SILENCE = "pitcrew_silence"

_CAUSE_CHARS = 140
_SUMMARY_CHARS = 100
_DESCRIPTION_CHARS = 140
_FIX_CHARS = 150
_MORE_LINE_CHARS = 72
_MORE_LINES = 3

_SEVERITY_MARK = {"critical": "🔴", "warning": "🟠", "info": "🔵"}


def header_word(incident: Incident) -> tuple[str, str]:
    """(emoji, word) of the incident's state, as the header shows it."""
    state = incident.work_state
    if state is WorkState.EXECUTING:
        return "⚙️", "FIXING"
    if incident.status is IncidentStatus.RESOLVED:
        return "✅", "RESOLVED"
    if state is WorkState.SUCCEEDED:
        return "✅", "FIXED"
    if state is WorkState.FAILED:
        return "❌", "FIX FAILED"
    return "🔥", "FIRING"


def header_text(incident: Incident) -> str:
    mark, word = header_word(incident)
    parts = [word, incident.alertname or "alert group", incident.severity or "no severity"]
    parts.append(incident.namespace or "all namespaces")
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


def mention(user_id: str) -> str:
    """A Slack mention: `<@U…>` for people, `<!subteam^S…>` for user groups."""
    return f"<!subteam^{user_id}>" if user_id.startswith("S") else f"<@{user_id}>"


def actor_mentions(actor: str) -> str:
    """An audit actor as people read it: `slack:UALICE,UBOB` -> `<@UALICE>, <@UBOB>`; other actors
    (`cli:root`, `schedule`) as they are."""
    if not actor.startswith("slack:"):
        return actor
    ids = [i.strip() for i in actor.removeprefix("slack:").split(",") if i.strip()]
    return ", ".join(mention(i) for i in ids) or actor


def duration_text(seconds: float) -> str:
    """`1m12s`, `45s`, `2h03m`."""
    total = max(0, round(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def kubectl_name(ref: ObjectRef) -> str:
    """`pod/prometheus-0 -n monitoring`, as kubectl takes it."""
    ns = f" -n {ref.namespace}" if ref.namespace else ""
    return f"{ref.kind.lower()}/{ref.name}{ns}"


def _who(view: IncidentView) -> str:
    shown = ", ".join(mention(a.user_id) for a in view.approvals[:3])
    return shown + (f" +{len(view.approvals) - 3}" if len(view.approvals) > 3 else "")


def _free(text: str, limit: int) -> str:
    """Free text (a reason, an error, a step detail) made safe for mrkdwn and clipped."""
    return escape(truncate(redact(" ".join(text.split())), limit))


def status_line(view: IncidentView) -> str:
    """Where pitcrew is with the incident, in one mrkdwn line (people as mentions, free text
    escaped and clipped so no part can break the markup)."""
    inc = view.incident
    state = inc.work_state
    ex = view.execution
    who = _who(view)
    by = f" by {who}" if who else ""
    if state is WorkState.PENDING:
        return "⏳ Diagnosing…"
    if state is WorkState.DIAGNOSED:
        if inc.diagnosis_error and not inc.findings:
            return f"⚠️ Diagnosis failed: {_free(inc.diagnosis_error, 100)}"
        if not inc.findings:
            return "🔍 Diagnosed: no known root cause found"
        if not has_plan(inc):
            return "🔍 Manual action needed (no automatic plan)"
        if inc.status is IncidentStatus.RESOLVED:
            return "✅ Resolved before approval; the plan is no longer offered"
        if is_expired(view):
            return "⌛ Approval expired — run `/pitcrew diagnose` for a fresh plan"
        waiting = "Waiting for approval"
        if view.approvals_needed > 1:
            waiting = f"Waiting for {view.approvals_needed} distinct approvers ({len(view.approvals)} so far"
            waiting += f": {who})" if who else ")"
        if view.expires_at is not None:
            waiting += f" · expires {when(view.expires_at)}"
        return f"🟡 {waiting}"
    if state is WorkState.REJECTED:
        r = view.rejection
        if r is None:
            return "🚫 Rejected"
        reason = f": {_free(r.reason, 80)}" if r.reason else ""
        return f"🚫 Rejected by {mention(r.user_id)} at {when(r.at)}{reason}"
    took = ""
    if ex is not None and ex.started_at is not None and ex.finished_at is not None:
        took = f" in {duration_text(ex.finished_at - ex.started_at)}"
    detail = _free(ex.status_line, 90) if ex and ex.status_line else ""
    if state is WorkState.EXECUTING:
        return f"⚙️ Fixing{by}: {detail or 'starting'}"
    if state is WorkState.SUCCEEDED:
        return f"✅ Fixed{by}{took}" + (f" · {detail}" if detail else "")
    if state is WorkState.FAILED:
        return f"❌ Fix failed{took}: {detail or 'see the thread'}"
    return f"↩️ Rolled back{': ' + detail if detail else ''}"


def _primary(incident: Incident) -> Finding | None:
    """The finding the message leads with: the worst root cause (diagnosis sorts them first)."""
    roots = [f for f in incident.findings if not f.caused_by]
    chosen = roots or list(incident.findings)
    return chosen[0] if chosen else None


def _cause_line(incident: Incident, primary: Finding | None) -> str:
    if primary is None:
        if incident.work_state is WorkState.PENDING:
            return "⏳ Diagnosing…"
        if incident.diagnosis_error:
            return f"⚠️ *Diagnosis failed:* {escape(truncate(redact(incident.diagnosis_error), _CAUSE_CHARS))}"
        return "🔍 *Root cause:* none of pitcrew's checks explains this alert"
    mark = _SEVERITY_MARK.get(primary.severity.value, "•")
    obj = _named_object(incident, primary)
    where = f"`{escape(kubectl_name(obj))}`: " if obj is not None else ""
    return f"{mark} *Root cause:* {where}{escape(truncate(redact(primary.summary), _CAUSE_CHARS))}"


def _named_object(incident: Incident, finding: Finding) -> ObjectRef | None:
    """The finding's object the alert names (its `pod`, `statefulset`… label), else its first."""
    named = {*incident.common_labels.values(), *(v for a in incident.alerts[:20] for v in a.labels.values())}
    return next((o for o in finding.objects if o.name in named), None) or (
        finding.objects[0] if finding.objects else None
    )


def annotation_lines(incident: Incident) -> list[str]:
    """The alert's own `summary` and `description` annotations, clipped, as quoted lines."""
    annotations = _annotations(incident)
    out = []
    summary = annotations.get("summary", "").strip()
    description = annotations.get("description", "").strip()
    if summary:
        out.append(f"> *{escape(truncate(redact(' '.join(summary.split())), _SUMMARY_CHARS))}*")
    if description and description != summary:
        out.append(f"> {escape(truncate(redact(' '.join(description.split())), _DESCRIPTION_CHARS))}")
    return out


def _annotations(incident: Incident) -> Mapping[str, str]:
    """Common annotations; when the group's alerts disagree (none in common), the first alert's."""
    if incident.common_annotations:
        return incident.common_annotations
    return incident.alerts[0].annotations if incident.alerts else {}


def fix_sentence(incident: Incident) -> str:
    """The proposed fix in one sentence, or why there is none."""
    planned = [f for f in incident.findings if f.has_automatic_plan and f.plan is not None]
    if not planned:
        if not incident.findings:
            return "*No automatic fix:* nothing to change until a root cause is known"
        symptom_only = all(f.caused_by for f in incident.findings)
        why = "it clears once its causes are fixed" if symptom_only else "this needs a manual change"
        return f"*No automatic fix:* {why} (Details has the evidence and commands)"
    first = planned[0]
    assert first.plan is not None
    steps = first.plan.steps
    text = f"*Fix:* {redact(steps[0].description)}"
    if len(steps) > 1:
        text += f" (+{len(steps) - 1} step{'s' if len(steps) > 2 else ''})"
    validation = first.plan.validation
    if validation:
        text += f", then checks {', '.join(validation[:3])}"
    if len(planned) > 1:
        others = sum(len(f.plan.steps) for f in planned[1:] if f.plan is not None)
        text += f"; also fixes {', '.join(f.code for f in planned[1:])} ({others} steps)"
    return escape(truncate(text, _FIX_CHARS))


def _more_lines(incident: Incident, primary: Finding | None) -> list[str]:
    """Each further finding as one `caused by` / `also` line."""
    lines = []
    rest = [f for f in incident.findings if f is not primary]
    for finding in rest[:_MORE_LINES]:
        obj = _named_object(incident, finding)
        where = f"`{kubectl_name(obj)}`: " if obj is not None else ""
        primary_code = primary.code if primary is not None else ""
        if primary_code and primary_code in finding.caused_by:
            word = "↳ caused by this:"
        elif finding.caused_by:
            word = f"↳ caused by {finding.caused_by[0]}:"
        else:
            word = "• also:"
        body = truncate(f"{where}{redact(finding.summary)}", _MORE_LINE_CHARS)
        lines.append(f"{word} {escape(body)}")
    if len(rest) > _MORE_LINES:
        lines.append(f"+{len(rest) - _MORE_LINES} more findings in Details")
    return lines


def _safe_url(url: str) -> str | None:
    """A URL fit for a mrkdwn link: http(s) only, with Slack's link delimiters percent-encoded."""
    url = url.strip()
    if not url.startswith(("http://", "https://")) or len(url) > limits.MAX_BUTTON_URL:
        return None
    return url.replace(" ", "%20").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")


def generator_url(incident: Incident) -> str:
    return next((a.generator_url for a in incident.alerts if a.generator_url), "")


def _links(view: IncidentView) -> list[tuple[str, str]]:
    inc = view.incident
    annotations = _annotations(inc)
    links: list[tuple[str, str]] = []
    candidates = [("Graph", generator_url(inc)), ("Runbook", annotations.get("runbook_url", ""))]
    candidates += [
        ("Dashboard", v) for k, v in sorted(annotations.items()) if "dashboard" in k.lower() and v
    ][:2]
    base = alertmanager_base(view)
    labels = dict(inc.common_labels) or dict(inc.group_labels)
    if base:
        candidates.append(("Alertmanager", alerts_link(base, labels)))
        candidates.append(("Silence", silence_link(base, labels)))
    for label, url in candidates:
        safe = _safe_url(url) if url else None
        if safe:
            links.append((label, safe))
    return links


def _approve_button(inc: Incident) -> Block:
    return button(
        "Approve",
        ACTION_APPROVE,
        str(inc.id),
        style="primary",
        confirm={
            "title": plain("Run this plan?", limits.MAX_CONFIRM_TITLE),
            "text": plain(
                f"pitcrew will back up, change and validate the objects of incident #{inc.id}. "
                "Progress is posted in the thread.",
                limits.MAX_CONFIRM_TEXT,
            ),
            "confirm": plain("Approve", limits.MAX_CONFIRM_BUTTON),
            "deny": plain("Cancel", limits.MAX_CONFIRM_BUTTON),
        },
    )


def _buttons(view: IncidentView) -> list[Block]:
    inc = view.incident
    incident_id = str(inc.id)
    elements: list[Block] = []
    if approval_open(view):
        elements.append(_approve_button(inc))
    if inc.work_state is WorkState.DIAGNOSED and has_plan(inc) and inc.status is IncidentStatus.FIRING:
        elements.append(button("Reject", ACTION_REJECT, incident_id, style="danger"))
    if (
        view.execution is not None
        and view.execution.has_backups
        and inc.work_state in (WorkState.SUCCEEDED, WorkState.FAILED)
    ):
        elements.append(rollback_button(view.execution.execution_id))
    if inc.findings:
        elements.append(button("Details", ACTION_DETAILS, incident_id))
    base = alertmanager_base(view)
    if base and inc.status is IncidentStatus.FIRING:
        url = _safe_url(silence_link(base, dict(inc.common_labels) or dict(inc.group_labels)))
        if url:
            # A link button: Alertmanager's own form (its auth, the duration the person picks).
            silence = button("Silence", ACTION_SILENCE, incident_id)
            silence["url"] = url
            elements.append(silence)
    return elements


def render_incident(view: IncidentView) -> Message:
    """The incident message within the budget: ≤ 8 blocks, ≤ 1,200 visible characters, buttons in
    the first four blocks. Evidence, the full plan and the diff go to the Details reply/modal."""
    inc = view.incident
    primary = _primary(inc)
    blocks: list[Block] = [{"type": "header", "text": plain(header_text(inc), limits.MAX_HEADER_TEXT)}]
    cause = [_cause_line(inc, primary), *annotation_lines(inc)]
    if inc.diagnosis_error and inc.findings:
        cause.append(f"⚠️ Part of the diagnosis failed: {escape(truncate(redact(inc.diagnosis_error), 60))}")
    blocks.append(section("\n".join(cause)))
    blocks.append(section(f"{fix_sentence(inc)}\n{status_line(view)}"))
    elements = _buttons(view)
    if elements:
        blocks.append({"type": "actions", "block_id": f"incident-{inc.id}", "elements": elements})
    more = _more_lines(inc, primary)
    if more:
        blocks.append(context("\n".join(more)))
    # One element per link: a long URL can never cut another link's markup.
    links = [f"<{url}|{label}>" for label, url in _links(view)]
    blocks.append(context(f"Incident #{inc.id}", *links))
    text = f"{header_text(inc)} — {status_line(view)}"
    return Message(text=truncate(text, 3000), blocks=tuple(blocks))


_LINK = re.compile(r"<([^|<>]+)\|([^<>]+)>")
_MENTION = re.compile(r"<[@!]([^<>|]+)>")


def visible_text(blocks: Sequence[Mapping[str, Any]]) -> str:
    """What a reader sees of `blocks`: texts with links shown as their labels, mentions as @name,
    entities decoded and mrkdwn markers dropped (what the character budget counts)."""
    parts: list[str] = []

    def add(obj: Any) -> None:
        if isinstance(obj, Mapping) and isinstance(obj.get("text"), str):
            text = _MENTION.sub(lambda m: "@" + m.group(1).split("^")[-1], _LINK.sub(r"\2", obj["text"]))
            text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
            parts.append(re.sub(r"[*`~]|(?<!\w)_|_(?!\w)|^> ", "", text, flags=re.M))

    for block in blocks:
        add(block.get("text"))
        for f in block.get("fields") or ():
            add(f)
        for el in block.get("elements") or ():
            add(el.get("text") if el.get("type") == "button" else el)
    return "\n".join(parts)


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


def render_checks(title: str, checks: Sequence[CheckResult]) -> Message:
    marks = {"pass": "✅", "warn": "⚠️", "fail": "❌"}
    lines = [f"{marks.get(c.status, '•')} `{escape(c.name)}` {escape(redact(c.detail))}" for c in checks]
    blocks: list[Block] = [section(f"*{escape(title)}*")]
    blocks.extend(chunk_lines(lines or ["(no checks ran)"], limits.MAX_MESSAGE_BLOCKS - 1))
    failed = sum(1 for c in checks if c.status == "fail")
    return Message(text=f"{title}: {failed} failed of {len(checks)}", blocks=tuple(blocks))


def render_check_line(check: CheckResult) -> str:
    marks = {"pass": "✅", "warn": "⚠️", "fail": "❌"}
    return f"{marks.get(check.status, '•')} check {check.name}: {redact(check.detail)}"


def chunk_lines(lines: Sequence[str], max_blocks: int) -> list[Block]:
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


def render_lines(title: str, lines: Sequence[str], *, mrkdwn_lines: bool = False) -> Message:
    """A titled list; `lines` are plain text (escaped here) unless `mrkdwn_lines` says they are
    mrkdwn already (mentions in them stay mentions)."""
    blocks: list[Block] = [section(f"*{escape(title)}*")]
    shown = [line if mrkdwn_lines else escape(redact(line)) for line in lines]
    blocks.extend(chunk_lines(shown or ["(none)"], limits.MAX_MESSAGE_BLOCKS - 1))
    return Message(text=title, blocks=tuple(blocks))
