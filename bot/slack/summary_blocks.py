"""Block Kit rendering of a `HealthSummary`: pure, always within Slack's message limits.

Layout: header, the glance line, when/what it covers, what could not be read, one section per
namespace with problems (worst first), one compact section listing the healthy namespaces, then
validation checks, incidents and remediations. A big cluster (dozens of namespaces) cannot fit in
50 blocks: namespaces past the budget are left out and a closing context block names what was
left out and how to see everything. Problems link to their incident's Slack thread.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.slack import limits
from bot.slack.blocks import (
    Block,
    Message,
    actor_mentions,
    context,
    escape,
    plain,
    redact,
    section,
    truncate,
)
from bot.summary.model import (
    HealthSummary,
    IncidentLine,
    IncidentLink,
    NamespaceHealth,
    Problem,
    RemediationLine,
)

# Lines listed per group before "and N more" (each section also stays under the text limit).
MAX_PROBLEM_LINES = 12
MAX_CHECK_LINES = 15
MAX_INCIDENT_LINES = 15
MAX_REMEDIATION_LINES = 10
SEE_ALL = "`/pitcrew summary` or `pitcrew summary -o json` shows everything"

_STATUS_ICON = {"pass": ":white_check_mark:", "warn": ":warning:", "fail": ":x:"}


def _text(value: str) -> str:
    return escape(redact(value))


def _link(link: IncidentLink | None, incident_id: int | None) -> str:
    if incident_id is None:
        return ""
    if link is None:
        return f" (incident #{incident_id})"
    return f" (<{link.permalink}|incident #{incident_id}>)"


def _lines_text(title: str, lines: Sequence[str], max_lines: int, more_what: str) -> str:
    """`title` then up to `max_lines` lines, cut to the section limit with a note of what was cut."""
    shown = list(lines[:max_lines])
    hidden = len(lines) - len(shown)
    budget = limits.MAX_SECTION_TEXT - 60  # room for the "and N more" note
    text = title
    for i, line in enumerate(shown):
        candidate = f"{text}\n{line}"
        if len(candidate) > budget:
            hidden += len(shown) - i
            break
        text = candidate
    if hidden:
        text += f"\n_…and {hidden} more {more_what}_"
    return truncate(text, limits.MAX_SECTION_TEXT)


def _problem_line(problem: Problem) -> str:
    return f"• {_text(problem.detail)}{_link(problem.link, problem.incident_id)}"


def namespace_section(ns: NamespaceHealth, *, has_baseline: bool) -> Block:
    if not ns.readable:
        lines = [_problem_line(p) for p in ns.problems]
        return section(
            _lines_text(f"*{_text(ns.namespace)}*: pods could not be read", lines, MAX_PROBLEM_LINES, "lines")
        )
    count = len(ns.problems)
    head = (
        f":red_circle: *{_text(ns.namespace)}*: {count} problem{'s' if count != 1 else ''}"
        f" · pods {ns.pods_ready}/{ns.pods_total} ready"
    )
    lines = [_problem_line(p) for p in ns.problems]
    if ns.restarted:
        window = "since the last summary" if has_baseline else "since start"
        restarts = ", ".join(f"{_text(r.pod)} +{r.restarts}" for r in ns.restarted)
        more = f", and {ns.restarted_omitted} more" if ns.restarted_omitted else ""
        lines.append(f"Restarts {window}: {restarts}{more}")
    return section(_lines_text(head, lines, MAX_PROBLEM_LINES, "problems"))


def _healthy_entry(ns: NamespaceHealth) -> str:
    extra = ""
    if ns.restarted:
        # Healthy now, but restarting: name the top offenders even in the compact list.
        top = ", ".join(f"{_text(r.pod)} +{r.restarts}" for r in ns.restarted[:3])
        more = len(ns.restarted) - 3 + ns.restarted_omitted
        extra = f"; restarts: {top}" + (f" and {more} more" if more > 0 else "")
    return f"{_text(ns.namespace)} ({ns.pods_ready}/{ns.pods_total} pods{extra})"


def healthy_section(healthy: Sequence[NamespaceHealth]) -> tuple[Block, int]:
    """One section listing healthy namespaces; returns it and how many did not fit."""
    head = f":large_green_circle: *Healthy* ({len(healthy)}): "
    budget = limits.MAX_SECTION_TEXT - 80
    text = head
    shown = 0
    for ns in healthy:
        entry = ("" if shown == 0 else ", ") + _healthy_entry(ns)
        if len(text) + len(entry) > budget:
            break
        text += entry
        shown += 1
    left = len(healthy) - shown
    if left:
        text += f" _…and {left} more healthy namespaces_"
    return section(text), left


def checks_section(summary: HealthSummary) -> Block:
    counts = {
        status: sum(1 for c in summary.checks if c.status == status) for status in ("pass", "warn", "fail")
    }
    head = f"*Validation checks*: {counts['pass']} pass, {counts['warn']} warn, {counts['fail']} fail"
    if summary.checks_note:
        head += f" _({_text(summary.checks_note)})_"
    lines = [
        f"{_STATUS_ICON[c.status]} {_text(c.name)}: {_text(c.detail)}"
        for c in sorted(summary.checks, key=lambda c: {"fail": 0, "warn": 1, "pass": 2}[c.status])
        if c.status != "pass"
    ]
    return section(_lines_text(head, lines, MAX_CHECK_LINES, "checks"))


def _incident_line(incident: IncidentLine, label: str) -> str:
    where = f", {_text(incident.namespace)}" if incident.namespace else ""
    name = _text(incident.alertname)
    ref = f"<{incident.link.permalink}|#{incident.id}>" if incident.link else f"#{incident.id}"
    return (
        f"• {ref} {name} ({_text(incident.severity or 'no severity')}{where}): {label}, {incident.work_state}"
    )


def incidents_section(summary: HealthSummary) -> Block:
    if summary.store_note:
        return section(f"*Incidents and remediations*: unknown ({_text(summary.store_note)})")
    head = (
        f"*Incidents*: {len(summary.incidents_opened)} opened, {len(summary.incidents_resolved)} resolved, "
        f"{len(summary.incidents_open)} still open"
    )
    lines: list[str] = []
    seen: set[int] = set()
    for label, group in (
        ("still open", summary.incidents_open),
        ("opened", summary.incidents_opened),
        ("resolved", summary.incidents_resolved),
    ):
        for incident in group:
            if incident.id not in seen:
                seen.add(incident.id)
                lines.append(_incident_line(incident, label))
    return section(_lines_text(head, lines, MAX_INCIDENT_LINES, "incidents"))


def _remediation_line(r: RemediationLine) -> str:
    about = ""
    if r.link is not None:
        about = f" for <{r.link.permalink}|incident #{r.incident_id}>"
    elif r.incident_id is not None:
        about = f" for incident #{r.incident_id}"
    detail = f": {_text(truncate(r.detail, 200))}" if r.detail else ""
    return f"• execution e-{r.execution_id}{about} by {_who(r.actor)}: *{r.status}*{detail}"


def _who(actor: str) -> str:
    """People as Slack mentions (`slack:UALICE,UBOB`), any other actor (`cli`) as escaped text."""
    if actor.startswith("slack:") and all(
        part.strip().isalnum() for part in actor.removeprefix("slack:").split(",")
    ):
        return actor_mentions(actor)
    return _text(actor)


def remediations_section(summary: HealthSummary) -> Block:
    head = f"*Remediations*: {len(summary.remediations)}"
    lines = [_remediation_line(r) for r in summary.remediations]
    return section(_lines_text(head, lines, MAX_REMEDIATION_LINES, "remediations"))


def _severity(ns: NamespaceHealth) -> tuple[int, str]:
    return (-len(ns.problems), ns.namespace)


def render_summary(summary: HealthSummary) -> Message:
    """The chat.postMessage body (text + blocks) of a summary; `check_message` finds nothing in it."""
    blocks: list[Block] = [
        {"type": "header", "text": plain(f"Health summary: {summary.title}", limits.MAX_HEADER_TEXT)},
        section(f"*{_text(summary.glance)}*"),
    ]
    window = (
        "since " + summary.when(summary.since) + ("" if summary.has_baseline else " (no previous summary)")
    )
    blocks.append(
        context(f"{summary.when(summary.generated_at)} · {window} · source: {_text(summary.source)}")
    )
    if summary.collection_error is not None:
        blocks.append(
            section(
                truncate(
                    f":warning: *Could not read the cluster*: {_text(summary.collection_error)}",
                    limits.MAX_SECTION_TEXT,
                )
            )
        )
    if summary.read_errors:
        lines = [f"• {_text(e)}" for e in summary.read_errors]
        blocks.append(section(_lines_text(":warning: *Could not read*:", lines, 10, "errors")))

    # Fixed tail: divider, checks, incidents, remediations, and maybe the "left out" note.
    tail: list[Block] = [
        {"type": "divider"},
        checks_section(summary),
        incidents_section(summary),
        remediations_section(summary),
    ]
    with_problems = sorted((ns for ns in summary.namespace_health if not ns.healthy), key=_severity)
    healthy = [ns for ns in summary.namespace_health if ns.healthy]
    reserved = len(blocks) + len(tail) + (1 if healthy else 0) + 1  # +1: the "left out" note
    room = max(0, limits.MAX_MESSAGE_BLOCKS - reserved)
    shown = with_problems[:room]
    omitted_problem_ns = with_problems[len(shown) :]
    blocks.extend(namespace_section(ns, has_baseline=summary.has_baseline) for ns in shown)
    omitted_healthy = 0
    if healthy:
        block, omitted_healthy = healthy_section(healthy)
        blocks.append(block)
    blocks.extend(tail)

    notes: list[str] = []
    if omitted_problem_ns:
        names = ", ".join(_text(ns.namespace) for ns in omitted_problem_ns)
        problems = sum(len(ns.problems) for ns in omitted_problem_ns)
        count = len(omitted_problem_ns)
        notes.append(f"Left out: {count} namespaces with {problems} problems ({truncate(names, 1500)})")
    if omitted_healthy:
        notes.append(f"Left out: {omitted_healthy} healthy namespaces")
    if notes:
        blocks.append(context(truncate("; ".join(notes) + f". {SEE_ALL}.", limits.MAX_SECTION_TEXT)))
    return Message(text=truncate(summary.glance, limits.MAX_MESSAGE_TEXT), blocks=tuple(blocks))
