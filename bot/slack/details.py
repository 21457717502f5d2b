"""The incident's details, out of the way of the one-screen message: pure rendering, no I/O.

Evidence (tidied: JSON and logfmt log records as level + message, identical lines once with ×N),
the full plan with the equivalent kubectl / ssh commands, and the dry-run diff. Posted once as a
thread reply with the incident message (Slack message: 50 blocks) and shown in a modal by the
Details button (`views.open`: 100 blocks, a 24-character title).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from typing import Any

from bot.model import (
    EditConfigMapStep,
    Finding,
    HostCommandStep,
    Incident,
    ObjectRef,
    PatchStep,
    RestartPodStep,
    Step,
    WaitReadyStep,
)
from bot.slack import limits
from bot.slack.blocks import Block, Message, code_block, context, escape, kubectl_name, plain, redact, section

DETAILS_MODAL = "pitcrew_details_modal"
_LOG_PREFIX = "log: "
_LOGFMT = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')
_MESSAGE_KEYS = ("msg", "message", "err", "error")
_ERR_CHARS = 200


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def _record(level: str, fields: dict[str, str]) -> str | None:
    """`[error] message (err: …)` from a structured log record, or None without a message."""
    message = next((fields[k] for k in ("msg", "message") if fields.get(k)), "")
    error = next((fields[k] for k in ("err", "error") if fields.get(k)), "")
    if not message and not error:
        return None
    text = message or error
    if message and error:
        text += f" (err: {error[:_ERR_CHARS]}{'…' if len(error) > _ERR_CHARS else ''})"
    return f"[{level or 'log'}] {text}"


def tidy_log_line(line: str) -> str:
    """A JSON or logfmt log record as level + message (timestamps and callers dropped, so repeats
    of one record read the same); any other line unchanged."""
    if not line.startswith(_LOG_PREFIX):
        return line
    body = line[len(_LOG_PREFIX) :].strip()
    if body.startswith("{"):
        try:
            data = json.loads(body)
        except ValueError:
            return line
        if isinstance(data, dict):
            fields = {str(k): str(v) for k, v in data.items() if isinstance(v, str | int | float)}
            tidy = _record(fields.get("level", fields.get("severity", "")), fields)
            return f"log {tidy}" if tidy else line
        return line
    pairs = {k: _unquote(v) for k, v in _LOGFMT.findall(body)}
    if "level" in pairs and any(k in pairs for k in _MESSAGE_KEYS):
        tidy = _record(pairs["level"], pairs)
        return f"log {tidy}" if tidy else line
    return line


def tidy_evidence(lines: Sequence[str]) -> list[str]:
    """Evidence lines tidied, each distinct line once (first position kept) with ×N when repeated."""
    counts: dict[str, int] = {}
    for line in lines:
        tidy = tidy_log_line(line)
        counts[tidy] = counts.get(tidy, 0) + 1
    return [line if n == 1 else f"{line} ×{n}" for line, n in counts.items()]


def _target(ref: ObjectRef) -> str:
    ns = f" -n {shlex.quote(ref.namespace)}" if ref.namespace else ""
    return f"{ref.kind.lower()}/{shlex.quote(ref.name)}{ns}"


def kubectl_commands(step: Step) -> list[str]:
    """What a person would type to do this step by hand."""
    match step:
        case PatchStep():
            ops = json.dumps([op.to_json() for op in step.ops if op.op != "test"], separators=(",", ":"))
            return [f"kubectl patch {_target(step.target)} --type=json -p {shlex.quote(ops)}"]
        case EditConfigMapStep():
            return [f"kubectl edit {_target(step.target)}   # key {step.key}, as in the diff"]
        case RestartPodStep():
            return [f"kubectl delete {_target(step.target)} --wait"]
        case WaitReadyStep():
            return [
                f"kubectl wait --for=condition=ready {_target(step.target)} "
                f"--timeout={int(step.timeout_seconds)}s"
            ]
        case HostCommandStep():
            flag = "-R " if step.recursive else ""
            if step.operation == "chown":
                owner = f"{step.uid}" + (f":{step.gid}" if step.gid is not None else "")
                command = f"chown {flag}{owner} {shlex.quote(step.path)}"
            else:
                mode = f"{step.mode:o}" if step.mode is not None else "?"
                command = f"chmod {flag}{mode} {shlex.quote(step.path)}"
            return [f"ssh {shlex.quote(step.host)} {shlex.quote(command)}"]
    return []


def _finding_blocks(finding: Finding) -> list[Block]:
    objects = ", ".join(f"`{escape(kubectl_name(o))}`" for o in finding.objects[:6])
    more = f" +{len(finding.objects) - 6}" if len(finding.objects) > 6 else ""
    head = f"*{escape(finding.code)}* ({finding.severity.value}) — {escape(redact(finding.summary))}"
    if objects:
        head += f"\n{objects}{more}"
    if finding.caused_by:
        head += "\n_caused by_ " + ", ".join(f"`{escape(c)}`" for c in finding.caused_by)
    head = head[:1200]
    evidence = tidy_evidence(finding.evidence) or ["(no evidence lines)"]
    blocks = [section(head + "\n" + code_block("\n".join(evidence), limits.MAX_SECTION_TEXT - len(head) - 1))]
    if finding.plan is not None and finding.plan.steps:
        steps = "\n".join(
            f"{i}. {escape(redact(s.description))}" for i, s in enumerate(finding.plan.steps, 1)
        )
        if finding.plan.validation:
            steps += "\n_then validate:_ " + ", ".join(f"`{escape(v)}`" for v in finding.plan.validation)
        blocks.append(section(("*Plan*\n" + steps)[: limits.MAX_SECTION_TEXT]))
        commands = [c for s in finding.plan.steps for c in kubectl_commands(s)]
        title = "*By hand*\n"
        blocks.append(section(title + code_block("\n".join(commands), limits.MAX_SECTION_TEXT - len(title))))
    return blocks


def details_blocks(incident: Incident, *, max_blocks: int) -> list[Block]:
    """Every finding's evidence, plan and commands, then the dry-run diff, within `max_blocks`."""
    blocks: list[Block] = []
    tail = [diff_block(incident.dry_run_diff)] if incident.dry_run_diff else []
    room = max_blocks - len(tail) - 1  # one for a "more findings" note
    for i, finding in enumerate(incident.findings):
        more = _finding_blocks(finding)
        if len(blocks) + len(more) > room:
            left = len(incident.findings) - i
            blocks.append(context(f"+{left} more findings: `pitcrew diagnose` in a terminal shows all"))
            break
        blocks.extend(more)
    if not incident.findings:
        blocks.append(section("No findings."))
    return blocks + tail


_DIFF_TITLE = "*Dry-run diff* (server-side)\n"
_DIFF_NOTE = "\n… (truncated; the whole diff follows in the thread)"


def diff_block(diff: str) -> Block:
    return section(_DIFF_TITLE + code_block(diff, limits.MAX_SECTION_TEXT - len(_DIFF_TITLE), _DIFF_NOTE))


def diff_is_truncated(diff: str) -> bool:
    text: str = diff_block(diff)["text"]["text"]
    return text.endswith(_DIFF_NOTE + "```")


def render_details_reply(incident: Incident) -> Message:
    """The thread reply posted with the incident message."""
    blocks = [
        context(f"🔎 Details of incident #{incident.id}: evidence, plan, commands, dry-run diff"),
        *details_blocks(incident, max_blocks=limits.MAX_MESSAGE_BLOCKS - 1),
    ]
    return Message(text=f"Details of incident #{incident.id}", blocks=tuple(blocks))


def details_modal(incident: Incident) -> dict[str, Any]:
    """The Details button's modal (views.open)."""
    return {
        "type": "modal",
        "callback_id": DETAILS_MODAL,
        "title": plain(f"Incident #{incident.id}", limits.MAX_MODAL_TITLE),
        "close": plain("Close", limits.MAX_MODAL_TITLE),
        "blocks": details_blocks(incident, max_blocks=limits.MAX_MODAL_BLOCKS),
    }
