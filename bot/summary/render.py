"""Pure rendering of a `HealthSummary`: text (terminal, logs) and JSON. The Slack rendering is
bot/slack/summary_blocks.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.model import JsonValue
from bot.redact import redact

if TYPE_CHECKING:
    pass
from bot.summary.model import HealthSummary, IncidentLine, IncidentLink, Problem, _first_line, _plural


def _link_text(link: IncidentLink | None, incident_id: int | None) -> str:
    if incident_id is None:
        return ""
    if link is None:
        return f" [incident #{incident_id}]"
    return f" [incident #{incident_id}: {link.permalink}]"


def render_text(summary: HealthSummary) -> str:
    """Plain text for the terminal: the glance line first, then the detail."""
    lines = [summary.glance]
    window = f"since {summary.when(summary.since)}" + (
        "" if summary.has_baseline else " (no previous summary)"
    )
    lines.append(f"Health summary '{summary.title}' at {summary.when(summary.generated_at)}, {window}")
    lines.append(f"Source: {summary.source}")
    if summary.collection_error is not None:
        lines.append(f"Could not read the cluster: {summary.collection_error}")
    for error in summary.read_errors:
        lines.append(f"Could not read: {error}")
    for ns in summary.namespace_health:
        lines.append("")
        if not ns.readable:
            lines.append(f"== {ns.namespace}: pods could not be read")
            continue
        state = "healthy" if ns.healthy else _plural(len(ns.problems), "problem")
        lines.append(f"== {ns.namespace}: {state}; pods {ns.pods_ready}/{ns.pods_total} ready")
        for problem in ns.problems:
            lines.append(f"  ! {problem.detail}{_link_text(problem.link, problem.incident_id)}")
        if ns.restarted:
            restart_window = "since the last summary" if summary.has_baseline else "since the pods started"
            lines.append(f"  restarts {restart_window}:")
            for r in ns.restarted:
                reason = f", last: {r.last_reason}" if r.last_reason else ""
                lines.append(f"    {r.pod}: +{r.restarts} (total {r.total}{reason})")
            if ns.restarted_omitted:
                lines.append(f"    and {ns.restarted_omitted} more pods restarted")
    lines.append("")
    failed = sum(1 for c in summary.checks if c.status == "fail")
    warned = sum(1 for c in summary.checks if c.status == "warn")
    passed = sum(1 for c in summary.checks if c.status == "pass")
    lines.append(f"Validation checks: {passed} pass, {warned} warn, {failed} fail")
    if summary.checks_note:
        lines.append(f"  ({summary.checks_note})")
    for check in summary.checks:
        if check.status != "pass":
            lines.append(f"  {check.status.upper()} {check.name}: {check.detail}")
    lines.append("")
    if summary.store_note:
        lines.append(f"Incidents and remediations unknown: {summary.store_note}")
    else:
        lines.append(
            f"Incidents: {len(summary.incidents_opened)} opened, {len(summary.incidents_resolved)} resolved, "
            f"{len(summary.incidents_open)} still open"
        )
        shown: set[int] = set()
        for label, group in (
            ("open", summary.incidents_open),
            ("opened", summary.incidents_opened),
            ("resolved", summary.incidents_resolved),
        ):
            for inc in group:
                if inc.id in shown:
                    continue
                shown.add(inc.id)
                where = f", {inc.namespace}" if inc.namespace else ""
                lines.append(
                    f"  #{inc.id} {inc.alertname} ({inc.severity or 'no severity'}{where}): {inc.status}, "
                    f"{inc.work_state}{_link_text(inc.link, inc.id) if inc.link else ''} [{label}]"
                )
        lines.append(f"Remediations: {len(summary.remediations)}")
        for rem in summary.remediations:
            about = f" for incident #{rem.incident_id}" if rem.incident_id is not None else ""
            lines.append(
                f"  execution {rem.execution_id}{about} by {rem.actor}: {rem.status}"
                + (f" ({_first_line(rem.detail, 160)})" if rem.detail else "")
            )
    # Evidence is redacted when collected; this is the last line of defence for check details too.
    return "\n".join(redact(line) for line in lines).rstrip() + "\n"


def _link_json(link: IncidentLink | None) -> JsonValue:
    if link is None:
        return None
    return {
        "incident_id": link.incident_id,
        "channel": link.channel,
        "ts": link.ts,
        "permalink": link.permalink,
    }


def _problem_json(p: Problem) -> dict[str, JsonValue]:
    return {
        "kind": p.kind,
        "namespace": p.namespace,
        "object": str(p.object) if p.object else None,
        "detail": p.detail,
        "incident_id": p.incident_id,
        "link": _link_json(p.link),
    }


def _incident_json(i: IncidentLine) -> dict[str, JsonValue]:
    return {
        "id": i.id,
        "alertname": i.alertname,
        "severity": i.severity,
        "namespace": i.namespace,
        "status": i.status,
        "work_state": i.work_state,
        "created_at": i.created_at,
        "updated_at": i.updated_at,
        "resolved_at": i.resolved_at,
        "link": _link_json(i.link),
    }


def summary_to_json(summary: HealthSummary) -> dict[str, JsonValue]:
    """Plain data (for `-o json` and API consumers); stable keys, no internal state."""
    return {
        "glance": summary.glance,
        "title": summary.title,
        "namespaces": list(summary.namespaces),
        "generated_at": summary.generated_at,
        "since": summary.since,
        "has_baseline": summary.has_baseline,
        "source": summary.source,
        "healthy": not summary.problems and summary.complete,
        "problem_count": len(summary.problems),
        "collection_error": summary.collection_error,
        "read_errors": list(summary.read_errors),
        "problems": [_problem_json(p) for p in summary.problems],
        "namespace_health": [
            {
                "namespace": ns.namespace,
                "readable": ns.readable,
                "pods_ready": ns.pods_ready,
                "pods_total": ns.pods_total,
                "not_ready_pods": list(ns.not_ready_pods),
                "restarted": [
                    {"pod": r.pod, "restarts": r.restarts, "total": r.total, "last_reason": r.last_reason}
                    for r in ns.restarted
                ],
                "restarted_omitted": ns.restarted_omitted,
                "workloads_not_ready": [
                    {"object": str(g.ref), "desired": g.desired, "ready": g.ready}
                    for g in ns.workloads_not_ready
                ],
                "services_without_endpoints": list(ns.services_without_endpoints),
                "pvcs_not_bound": [{"name": n, "phase": p} for n, p in ns.pvcs_not_bound],
                "problems": [_problem_json(p) for p in ns.problems],
            }
            for ns in summary.namespace_health
        ],
        "checks": [
            {"name": c.name, "status": c.status, "detail": c.detail, "objects": [str(o) for o in c.objects]}
            for c in summary.checks
        ],
        "checks_note": summary.checks_note,
        "incidents": {
            "opened": [_incident_json(i) for i in summary.incidents_opened],
            "resolved": [_incident_json(i) for i in summary.incidents_resolved],
            "still_open": [_incident_json(i) for i in summary.incidents_open],
        },
        "remediations": [
            {
                "execution_id": r.execution_id,
                "incident_id": r.incident_id,
                "actor": r.actor,
                "targets": list(r.targets),
                "status": r.status,
                "detail": r.detail,
                "started_at": r.started_at,
                "finished_at": r.finished_at,
                "link": _link_json(r.link),
            }
            for r in summary.remediations
        ],
        "store_note": summary.store_note,
    }
