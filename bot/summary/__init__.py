"""Health summaries of the monitoring namespaces: what a person wants to see once a day (or hour).

    model.py   the typed value (`HealthSummary` and its parts) and the limits the rules apply
    rules.py   pure: `summarize(...)` turns an `Evidence` snapshot, store rows (incidents,
               executions, Slack message locations), validation results and the previous
               summary's `SummaryState` into a `HealthSummary`; no I/O, table-driven tests
    render.py  pure: `render_text` / `summary_to_json` write it out
    gather.py  `build_summary(deps, ...)` reads those inputs through their adapters (cluster or
               bundle, store, validate) and never raises for an unreachable cluster or store: what
               failed becomes part of the summary

`pitcrew summary` is bot/cli/summary.py, the Slack rendering bot/slack/summary_blocks.py; scheduling
and posting are bot/schedule.py.
"""

from __future__ import annotations

from bot.summary.gather import (
    SummaryDeps,
    baseline_schedule,
    build_summary,
    load_state,
    state_key,
)
from bot.summary.model import (
    COLLECT_TIMEOUT_SECONDS,
    COVERED_CHECKS,
    DEFAULT_LOOKBACK_SECONDS,
    STORE_QUERY_LIMIT,
    TOP_RESTARTS,
    HealthSummary,
    IncidentLine,
    IncidentLink,
    NamespaceHealth,
    PodRestarts,
    Problem,
    ProblemKind,
    RemediationLine,
    SummaryState,
    WorkloadGap,
    scope_label,
    when,
)
from bot.summary.render import (
    render_text,
    summary_to_json,
)
from bot.summary.rules import (
    incident_in_scope,
    namespace_health,
    restart_key,
    summarize,
)

__all__ = [
    "COLLECT_TIMEOUT_SECONDS",
    "COVERED_CHECKS",
    "DEFAULT_LOOKBACK_SECONDS",
    "STORE_QUERY_LIMIT",
    "TOP_RESTARTS",
    "HealthSummary",
    "IncidentLine",
    "IncidentLink",
    "NamespaceHealth",
    "PodRestarts",
    "Problem",
    "ProblemKind",
    "RemediationLine",
    "SummaryDeps",
    "SummaryState",
    "WorkloadGap",
    "baseline_schedule",
    "build_summary",
    "incident_in_scope",
    "load_state",
    "namespace_health",
    "render_text",
    "restart_key",
    "scope_label",
    "state_key",
    "summarize",
    "summary_to_json",
    "when",
]
