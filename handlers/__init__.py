"""The knowledge of pitcrew: one module per failure class, registered here in ONE explicit tuple.

Adding a failure class = one module in this package + one line below + its tests. The tuple is
validated at import (so at start-up): a duplicate code or a module missing `CODE`, `ALERTS` or
`diagnose` stops pitcrew with a clear `HandlerRegistryError`, never a silent skip. A module that
fails to import fails this import, naming it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType, ModuleType

from handlers import (
    container_config_error,
    crash_loop,
    dns_or_network_failure,
    hpa_cannot_scale,
    image_pull_failure,
    ingress_backend_invalid,
    init_container_failing,
    job_failed,
    lifecycle_hook_failed,
    liveness_probe_failing,
    loki_frontend_worker,
    node_not_ready,
    oom_killed,
    pdb_blocking,
    pod_evicted,
    pod_not_healthy,
    pod_unschedulable,
    pvc_pending,
    pvc_provisioning_failed,
    quota_exceeded,
    rbac_forbidden,
    readiness_probe,
    rollout_stuck,
    service_no_endpoints,
    service_selector_mismatch,
    statefulset_misconfigured,
    volume_permission,
    volume_source_missing,
    workload_not_healthy,
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
    statefulset_misconfigured,
    pvc_provisioning_failed,
    quota_exceeded,
    pvc_pending,
    pod_unschedulable,
    rbac_forbidden,
    pod_evicted,
    node_not_ready,
    job_failed,
    dns_or_network_failure,
    service_selector_mismatch,
    service_no_endpoints,
    ingress_backend_invalid,
    hpa_cannot_scale,
    rollout_stuck,
    pdb_blocking,
    liveness_probe_failing,
    readiness_probe,
    crash_loop,
    # Last: the catch-alls, for whatever no handler above explains.
    pod_not_healthy,
    workload_not_healthy,
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
        pvc_provisioning_failed.CODE,
        job_failed.CODE,
        dns_or_network_failure.CODE,
    }
)

# How findings relate (bot.correlate applies these to every handler's findings, new ones included):
#
# - A catch-all finding (a pod or workload that is not healthy, no more) is dropped when any other
#   finding names its pod, or, for a workload, the workload or one of its pods — except findings of
#   AFFECTED_CODES, which list pods as the ones affected by another object, not as explained.
#   A new handler needs nothing here to replace the catch-all for the pods its findings name.
# - A finding of AFFECTED_CODES is `caused_by` every finding on the pods it lists (not another
#   affected one), and every finding about (objects[0]) one of its other objects: a Service without
#   endpoints is caused by its pods' findings, an Ingress backend by the Service's finding.
# - CAUSE_LINKS adds the links between other kinds (below).
CATCH_ALL_CODES = frozenset({pod_not_healthy.CODE, workload_not_healthy.CODE})
AFFECTED_CODES = frozenset(
    {
        service_no_endpoints.CODE,
        service_selector_mismatch.CODE,
        rollout_stuck.CODE,
        pdb_blocking.CODE,
        ingress_backend_invalid.CODE,
    }
)

# Codes whose findings describe trouble on the pods they list, so they can explain a rollout or a
# disruption budget. A selector mismatch lists pods only as the ones that look intended: never a cause.
POD_PROBLEM_CODES = POD_CAUSE_CODES | GENERIC_CODES | {node_not_ready.CODE, pod_not_healthy.CODE}

_SERVICE_CAUSES = frozenset({service_no_endpoints.CODE, service_selector_mismatch.CODE})
# Cause chains across kinds: a finding with the code on the left is `caused_by` any other finding
# whose code is in the set and that names one of the same objects of the given kinds. Rollouts and
# disruption budgets are stuck because of their pods; an Ingress or a connection fails because of its
# Service; pods wait on a claim that cannot be provisioned.
CAUSE_LINKS: Mapping[str, tuple[frozenset[str], frozenset[str]]] = MappingProxyType(
    {
        rollout_stuck.CODE: (POD_PROBLEM_CODES | {quota_exceeded.CODE}, frozenset({"Pod", "ReplicaSet"})),
        pdb_blocking.CODE: (POD_PROBLEM_CODES, frozenset({"Pod"})),
        ingress_backend_invalid.CODE: (_SERVICE_CAUSES, frozenset({"Service"})),
        dns_or_network_failure.CODE: (_SERVICE_CAUSES, frozenset({"Service"})),
        pvc_pending.CODE: (
            frozenset({pvc_provisioning_failed.CODE, statefulset_misconfigured.CODE}),
            frozenset({"PersistentVolumeClaim", "StatefulSet"}),
        ),
        pod_unschedulable.CODE: (
            frozenset({pvc_pending.CODE, pvc_provisioning_failed.CODE}),
            frozenset({"Pod"}),
        ),
        pvc_provisioning_failed.CODE: (
            frozenset({statefulset_misconfigured.CODE}),
            frozenset({"StatefulSet"}),
        ),
    }
)


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


def validate_relations(handlers: Sequence[ModuleType]) -> None:
    """The relation tables name registered codes only (a typo would silently turn a link off)."""
    codes = {m.CODE for m in handlers}
    problems = [f"CAUSE_LINKS: {c!r} is not a registered code" for c in sorted(set(CAUSE_LINKS) - codes)]
    for code, (causes, _kinds) in CAUSE_LINKS.items():
        problems += [f"CAUSE_LINKS[{code!r}]: {c!r} is not a registered code" for c in sorted(causes - codes)]
    for name, table in (("AFFECTED_CODES", AFFECTED_CODES), ("CATCH_ALL_CODES", CATCH_ALL_CODES)):
        problems += [f"{name}: {c!r} is not a registered code" for c in sorted(table - codes)]
    if problems:
        raise HandlerRegistryError("invalid handler registry: " + "; ".join(problems))


validate_handlers(HANDLERS)
validate_relations(HANDLERS)
