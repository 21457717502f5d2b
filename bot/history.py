"""History: incidents, their plans, approvals and outcomes, and CLI executions, from the store.

Building the history is a read of the store; rendering it (text or JSON) is pure. The verb
`pitcrew history` is bot/cli/history.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from bot.model import (
    AUDIT_DIAGNOSED,
    AUDIT_DIAGNOSIS_FAILED,
    AUDIT_DIAGNOSIS_SKIPPED,
    AUDIT_PROCESSING_FAILED,
)
from bot.redact import redact_json

if TYPE_CHECKING:
    from bot.model import Incident
    from bot.store import AuditEntry, Decision, Execution, StoreBackend


DiagnosisOutcome = Literal["pending", "ok", "failed", "skipped"]


@dataclass(frozen=True)
class IncidentHistory:
    incident: Incident
    decisions: tuple[Decision, ...]
    execution: Execution | None
    # How the last diagnosis ended, from the audit log: a failed one (cluster unreachable,
    # forbidden, every retry failed) is never shown as a diagnosis that found nothing.
    diagnosis: DiagnosisOutcome = "pending"


_DIAGNOSIS_ACTIONS: dict[str, DiagnosisOutcome] = {
    AUDIT_DIAGNOSED: "ok",
    AUDIT_DIAGNOSIS_SKIPPED: "skipped",
    AUDIT_DIAGNOSIS_FAILED: "failed",
    AUDIT_PROCESSING_FAILED: "failed",
}


def diagnosis_outcome(audit: Sequence[AuditEntry]) -> DiagnosisOutcome:
    """The outcome of the newest diagnosis entry in an incident's audit log (oldest first)."""
    for entry in reversed(audit):
        if entry.action in _DIAGNOSIS_ACTIONS:
            return _DIAGNOSIS_ACTIONS[entry.action]
    return "pending"


@dataclass(frozen=True)
class History:
    incidents: tuple[IncidentHistory, ...]
    # Executions not tied to an incident (`pitcrew remediate` from a terminal, rollbacks).
    other_executions: tuple[Execution, ...]


async def load_history(store: StoreBackend, *, limit: int) -> History:
    incidents = await store.list_incidents(limit=limit)
    entries = []
    for incident in incidents:
        decisions = await store.list_decisions(incident.id)
        executions = await store.list_executions(incident.id, limit=1)
        outcome = diagnosis_outcome(await store.list_audit(incident_id=incident.id))
        entries.append(
            IncidentHistory(incident, tuple(decisions), executions[0] if executions else None, outcome)
        )
    others = [e for e in await store.list_executions(limit=limit) if e.incident_id is None]
    return History(incidents=tuple(entries), other_executions=tuple(others))


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts)) if ts else "-"


def _execution_line(execution: Execution) -> str:
    return (
        f"execution {execution.id} by {execution.actor} {_when(execution.started_at)}: {execution.status}"
        + (f" — {execution.detail}" if execution.detail else "")
    )


def render_text(history: History) -> str:
    lines: list[str] = []
    if not history.incidents and not history.other_executions:
        return "no incidents or executions recorded\n"
    for entry in history.incidents:
        inc = entry.incident
        lines.append(
            f"#{inc.id} {_when(inc.created_at)} {inc.alertname or '(no alertname)'} "
            f"[{inc.status.value}, {inc.work_state.value}]"
            + (f" ns={inc.namespace}" if inc.namespace else "")
        )
        for finding in inc.findings:
            steps = len(finding.plan.steps) if finding.plan else 0
            lines.append(
                f"    finding {finding.code} ({finding.severity.value}): {finding.summary} — {steps} step(s)"
            )
        if entry.diagnosis == "failed":
            lines.append(f"    diagnosis FAILED: {inc.diagnosis_error or 'no reason recorded'}")
        elif inc.diagnosis_error:
            lines.append(f"    diagnosis note: {inc.diagnosis_error}")
        for decision in entry.decisions:
            reason = f": {decision.reason}" if decision.reason else ""
            lines.append(f"    {decision.decision} by {decision.user_name} {_when(decision.at)}{reason}")
        if entry.execution is not None:
            lines.append("    " + _execution_line(entry.execution))
    if history.other_executions:
        lines.append("executions without an incident (CLI, rollbacks):")
        lines.extend("    " + _execution_line(e) for e in history.other_executions)
    return "\n".join(lines) + "\n"


def _execution_json(execution: Execution) -> dict[str, Any]:
    return {
        "id": execution.id,
        "incident_id": execution.incident_id,
        "actor": execution.actor,
        "targets": list(execution.targets),
        "status": execution.status,
        "detail": execution.detail,
        "started_at": execution.started_at,
        "finished_at": execution.finished_at,
        "plan": redact_json(json.loads(execution.plan_json)) if execution.plan_json else None,
    }


def render_json(history: History) -> str:
    from bot.model import finding_to_json

    return json.dumps(
        {
            "incidents": [
                {
                    "id": e.incident.id,
                    "alertname": e.incident.alertname,
                    "status": e.incident.status.value,
                    "work_state": e.incident.work_state.value,
                    "created_at": e.incident.created_at,
                    "diagnosis": {"outcome": e.diagnosis, "error": e.incident.diagnosis_error},
                    # Plans quote pod specs and ConfigMap contents exactly: printed redacted.
                    "findings": [redact_json(finding_to_json(f)) for f in e.incident.findings],
                    "decisions": [
                        {"user": d.user_name, "decision": d.decision, "reason": d.reason, "at": d.at}
                        for d in e.decisions
                    ],
                    "execution": _execution_json(e.execution) if e.execution else None,
                }
                for e in history.incidents
            ],
            "other_executions": [_execution_json(e) for e in history.other_executions],
        },
        indent=2,
    )
