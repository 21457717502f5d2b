"""Remediation: runs a finding's plan the way the seed's remediate script does, safely enough for a
button in chat.

    base.py       outcome types, the cluster interface (`ClusterWriter`), errors, the result, the metric
    plan.py       plans, targets and the JSON patches a step sends (pure)
    preflight.py  the server-side dry run and the checks made before anything changes
    run.py        one execution's running state (events, audit) and its backups
    executor.py   `execute`: backup, apply, wait, validate, step by step
    rollback.py   `rollback`: restore the backups in reverse order
    render.py     how plans and step events read in a terminal (pure)

The CLI verbs (bot/cli/remediate.py, bot/cli/rollback.py) only parse arguments and print.

Safety rules (DESIGN.md) and where each one lives:
1. approval: the caller (Slack approval, or the CLI's per-step confirmation / `--yes`) decides; the
   actor is recorded with every audit entry.
2. backups (run.py): before each mutating step the live object (or the host path's owner/mode) is
   saved in the store, committed, and written as YAML under `remediation.backup_dir`; its id is
   reported.
3. dry run (preflight.py): `dry_run()` sends each patch with `dryRun=All` and renders the server's
   answer as a diff.
4. no clobbering: patches carry `test` ops (the plan's, plus `metadata.resourceVersion` of the object
   just backed up); the API answers 409/422 if anything changed, and the executor stops with
   "object changed since diagnosis". ConfigMap edits also check the key's content seen at diagnosis.
5. validation after the change; failure -> outcome failed, and rollback when configured.
6. one execution per incident and one at a time per target: bot/store/executions.py (SQL).
7. every step is in the audit log and reported through `on_event` (Slack thread, CLI).

The executor talks to the cluster through the small `ClusterWriter` protocol (implemented by
`bot.cluster.Cluster`) and to hosts through `bot.hosts.Hosts`.
"""

from bot.remediation.base import (
    EXECUTION_OUTCOMES,
    ClusterWriter,
    Confirm,
    DryRunFailed,
    EventSink,
    ExecutionResult,
    ExecutorCluster,
    Outcome,
    StepFailed,
    execution_counter,
)
from bot.remediation.executor import execute
from bot.remediation.plan import host_target, plan_namespaces, plan_of, step_lock_target
from bot.remediation.preflight import dry_run, preflight
from bot.remediation.render import format_event, format_plan
from bot.remediation.rollback import rollback

__all__ = [
    "EXECUTION_OUTCOMES",
    "ClusterWriter",
    "Confirm",
    "DryRunFailed",
    "EventSink",
    "ExecutionResult",
    "ExecutorCluster",
    "Outcome",
    "StepFailed",
    "dry_run",
    "execute",
    "execution_counter",
    "format_event",
    "format_plan",
    "host_target",
    "plan_namespaces",
    "plan_of",
    "preflight",
    "rollback",
    "step_lock_target",
]
