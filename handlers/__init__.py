"""The knowledge of pitcrew: one module per failure class, registered here in ONE explicit tuple.

Adding a failure class = one module in this package + one line below + its tests. The tuple is
validated at import (so at start-up): a duplicate code or a module missing `CODE`, `ALERTS` or
`diagnose` stops pitcrew with a clear `HandlerRegistryError`, never a silent skip. A module that
fails to import fails this import, naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

from handlers import (
    container_config_error,
    crash_loop,
    image_pull_failure,
    init_container_failing,
    lifecycle_hook_failed,
    liveness_probe_failing,
    loki_frontend_worker,
    node_not_ready,
    oom_killed,
    pod_evicted,
    pod_unschedulable,
    pvc_pending,
    rbac_forbidden,
    readiness_probe,
    service_no_endpoints,
    service_selector_mismatch,
    volume_permission,
    volume_source_missing,
)

# Most specific first; bot.diagnose runs them all and de-duplicates afterwards.
HANDLERS: tuple[ModuleType, ...] = (
    volume_permission,
    loki_frontend_worker,
    oom_killed,
    container_config_error,
    volume_source_missing,
    lifecycle_hook_failed,
    init_container_failing,
    image_pull_failure,
    pvc_pending,
    pod_unschedulable,
    rbac_forbidden,
    pod_evicted,
    node_not_ready,
    service_selector_mismatch,
    service_no_endpoints,
    liveness_probe_failing,
    readiness_probe,
    crash_loop,
)

# Codes that only describe a symptom: dropped for a pod a more specific finding already explains.
# A liveness probe failing is often the symptom too (an app whose config is wrong answers 503).
GENERIC_CODES = frozenset({crash_loop.CODE, readiness_probe.CODE, liveness_probe_failing.CODE})
# Codes whose findings name the root cause of their pods' trouble (the "more specific" ones). Service
# and node findings list pods too, but as the affected, not as explained.
POD_CAUSE_CODES = frozenset(
    {
        volume_permission.CODE,
        loki_frontend_worker.CODE,
        oom_killed.CODE,
        container_config_error.CODE,
        volume_source_missing.CODE,
        image_pull_failure.CODE,
        pvc_pending.CODE,
        pod_unschedulable.CODE,
        rbac_forbidden.CODE,
        pod_evicted.CODE,
        lifecycle_hook_failed.CODE,
        init_container_failing.CODE,
    }
)

# Codes whose findings describe trouble on the pods they list, so they can explain a Service without
# ready endpoints. A selector mismatch lists pods only as the ones that look intended: never a cause.
POD_PROBLEM_CODES = POD_CAUSE_CODES | GENERIC_CODES | {node_not_ready.CODE}


class HandlerRegistryError(Exception):
    """The handler tuple is inconsistent (the message says which module and why)."""


def validate_handlers(handlers: Sequence[ModuleType]) -> None:
    problems: list[str] = []
    seen: dict[str, str] = {}
    for module in handlers:
        name = module.__name__
        code = getattr(module, "CODE", None)
        if not isinstance(code, str) or not code:
            problems.append(f"{name}: CODE must be a non-empty string")
            continue
        if code in seen:
            problems.append(f"{name}: duplicate code {code!r} (also in {seen[code]})")
        seen[code] = name
        alerts = getattr(module, "ALERTS", None)
        if not isinstance(alerts, tuple) or not all(isinstance(a, str) for a in alerts):
            problems.append(f"{name}: ALERTS must be a tuple of alert names")
        if not callable(getattr(module, "diagnose", None)):
            problems.append(f"{name}: diagnose(evidence, settings) is missing")
    if problems:
        raise HandlerRegistryError("invalid handler registry: " + "; ".join(problems))


validate_handlers(HANDLERS)
