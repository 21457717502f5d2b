"""How the handlers' findings relate, applied to every handler alike (pure).

`correlate(findings, evidence)` turns what the handlers said into what a person reads:

1. **Symptoms give way to causes.** A generic symptom (`GENERIC_CODES`: crash-loop, readiness) on pods
   a specific finding (`POD_CAUSE_CODES`) explains is dropped; a catch-all (`CATCH_ALL_CODES`) on a
   pod any other finding names — except those that list pods only as affected (`AFFECTED_CODES`) — is
   dropped, and a workload catch-all when another finding names the workload or one of its pods.
2. **One finding per workload.** Pod findings (objects[0] is a Pod) with the same code whose pods all
   belong to the same workload (the ReplicaSet's Deployment, the StatefulSet, DaemonSet or Job) become
   one finding that names the workload first and lists its pods: "3/3 pods of deployment/api: ...".
3. **Cause chains.** A finding of `AFFECTED_CODES` is caused by every other finding on the pods it
   lists (not another affected one) and by every finding about one of its other objects (a finding
   whose objects[0] it names); `CAUSE_LINKS` adds effect -> cause links between findings sharing an
   object of the kinds it names. Links never form a cycle.
4. **Root first.** Findings are ordered by the caller's key, then every finding is moved right after
   its causes, so each chain reads from its root.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from bot.evidence import Evidence
from bot.model import Finding, ObjectRef, Plan, Step
from handlers import AFFECTED_CODES, CATCH_ALL_CODES, CAUSE_LINKS, GENERIC_CODES, POD_CAUSE_CODES

MAX_MERGED_EVIDENCE = 24  # lines of a merged finding: the first pod's in full, then what differs


def correlate(
    findings: Sequence[Finding],
    evidence: Evidence,
    sort_key: Callable[[Finding], Any] | None = None,
) -> list[Finding]:
    owners = pod_owners(evidence)
    kept = suppress(findings, owners)
    grouped = group_by_workload(kept, owners)
    ordered = sorted(grouped, key=sort_key) if sort_key is not None else list(grouped)
    return link_and_order(ordered)


# ---------------------------------------------------------------------------------------------
# owners
# ---------------------------------------------------------------------------------------------


def pod_owners(evidence: Evidence) -> dict[ObjectRef, ObjectRef]:
    """Pod -> the workload it belongs to: the top-level controller when collected (a ReplicaSet's
    Deployment), else the controller the pod names (a Job, an uncollected StatefulSet)."""
    out: dict[ObjectRef, ObjectRef] = {}
    for pod in evidence.pods:
        workload = evidence.owning_workload(pod)
        if workload is not None:
            out[pod.ref] = workload.ref
            continue
        controller = pod.meta.controller
        if controller is not None and controller.kind != "Node":  # static pods name their Node
            out[pod.ref] = ObjectRef(controller.kind, controller.name, pod.namespace)
    return out


def _pods(finding: Finding) -> set[ObjectRef]:
    return {o for o in finding.objects if o.kind == "Pod"}


# ---------------------------------------------------------------------------------------------
# 1. symptoms and catch-alls give way
# ---------------------------------------------------------------------------------------------


def suppress(findings: Sequence[Finding], owners: Mapping[ObjectRef, ObjectRef]) -> list[Finding]:
    explained: set[ObjectRef] = set()
    for f in findings:
        if f.code in POD_CAUSE_CODES:
            explained |= _pods(f)
    kept = [f for f in findings if not (f.code in GENERIC_CODES and _pods(f) and _pods(f) <= explained)]
    # crash-loop (or liveness restarts) and readiness on the same pod: the restarts explain the readiness.
    crashing = {p for f in kept if f.code in ("crash-loop", "liveness-probe-failing") for p in _pods(f)}
    kept = [f for f in kept if not (f.code == "readiness-probe-failing" and _pods(f) <= crashing)]

    specific = [f for f in kept if f.code not in CATCH_ALL_CODES]
    covered_pods = {p for f in specific if f.code not in AFFECTED_CODES for p in _pods(f)}
    # A finding about a workload (its objects[0]) explains that workload's pods too.
    subjects = {f.objects[0] for f in specific if f.objects and f.code not in AFFECTED_CODES}
    named = {o for f in specific for o in f.objects}
    pod_catch_all = [
        f for f in kept if f.code in CATCH_ALL_CODES and f.objects and f.objects[0].kind == "Pod"
    ]
    out: list[Finding] = []
    for f in kept:
        if f.code not in CATCH_ALL_CODES or not f.objects:
            out.append(f)
            continue
        subject = f.objects[0]
        if subject.kind == "Pod":
            if subject in covered_pods or owners.get(subject) in subjects:
                continue
        else:
            # A workload: named by another finding, or one of its pods has a finding of its own.
            pods_with_findings = covered_pods | {p for g in pod_catch_all for p in _pods(g)}
            if subject in named or any(owners.get(p) == subject for p in pods_with_findings):
                continue
        out.append(f)
    return out


# ---------------------------------------------------------------------------------------------
# 2. one finding per workload
# ---------------------------------------------------------------------------------------------


def group_by_workload(findings: Sequence[Finding], owners: Mapping[ObjectRef, ObjectRef]) -> list[Finding]:
    totals: dict[ObjectRef, int] = {}
    for workload in owners.values():
        totals[workload] = totals.get(workload, 0) + 1
    groups: dict[tuple[str, ObjectRef], list[int]] = {}
    for i, f in enumerate(findings):
        owner = _single_workload(f, owners)
        if owner is not None:
            groups.setdefault((f.code, owner), []).append(i)
    merged: dict[int, Finding] = {}
    dropped: set[int] = set()
    for (_, workload), members in groups.items():
        if len(members) < 2:
            continue
        combined = merge([findings[i] for i in members], workload, totals.get(workload, len(members)))
        if combined is None:
            continue  # plans that cannot be combined: keep them apart
        merged[members[0]] = combined
        dropped.update(members[1:])
    return [merged.get(i, f) for i, f in enumerate(findings) if i not in dropped]


def _single_workload(finding: Finding, owners: Mapping[ObjectRef, ObjectRef]) -> ObjectRef | None:
    if not finding.objects or finding.objects[0].kind != "Pod":
        return None
    workloads = {owners.get(p) for p in _pods(finding)}
    if len(workloads) != 1:
        return None
    return workloads.pop()


def merge(members: Sequence[Finding], workload: ObjectRef, total: int) -> Finding | None:
    """One finding for `members` (same code, pods of `workload`), or None when their plans conflict."""
    try:
        plan = _merge_plans([m.plan for m in members])
    except _PlansConflict:
        return None
    pods = list(dict.fromkeys(p for m in members for p in m.objects if p.kind == "Pod"))
    others = [o for m in members for o in m.objects if o.kind != "Pod" and o != workload]
    first = members[0]
    kind = workload.kind.lower()
    names = ", ".join(p.name for p in pods)
    lines = [f"{len(pods)}/{total} pods of {kind}/{workload.name} ({first.code}): {names}"]
    lines += first.evidence
    for m in members[1:]:
        lines += [line for line in m.evidence if line not in lines][:2]
    if len(lines) > MAX_MERGED_EVIDENCE:
        lines = [*lines[: MAX_MERGED_EVIDENCE - 1], f"… {len(lines) - MAX_MERGED_EVIDENCE + 1} more lines"]
    return Finding(
        code=first.code,
        severity=max((m.severity for m in members), key=lambda s: s.rank),
        summary=f"{len(pods)}/{total} pods of {kind}/{workload.name}: {first.summary}",
        objects=tuple(dict.fromkeys([workload, *pods, *others])),
        evidence=tuple(lines),
        caused_by=tuple(dict.fromkeys(c for m in members for c in m.caused_by)),
        plan=plan,
    )


class _PlansConflict(Exception):
    pass


def _merge_plans(plans: Sequence[Plan | None]) -> Plan | None:
    """The steps of every plan once each, in order. Raises _PlansConflict when two steps change the
    same object differently (they would race: keep those findings apart)."""
    real = [p for p in plans if p is not None and p.steps]
    if not real:
        return None
    steps: list[Step] = []
    for plan in real:
        for step in plan.steps:
            if step in steps:
                continue
            if step.action in ("patch", "edit-configmap", "host-command") and any(
                s.action == step.action and s.target == step.target for s in steps
            ):
                raise _PlansConflict
            steps.append(step)
    validation = tuple(dict.fromkeys(v for p in real for v in p.validation))
    return Plan(steps=tuple(steps), validation=validation)


# ---------------------------------------------------------------------------------------------
# 3 + 4. cause chains, root first
# ---------------------------------------------------------------------------------------------


def _causes(effect: Finding, cause: Finding) -> bool:
    if effect is cause or effect.code == cause.code:
        return False
    if effect.code in AFFECTED_CODES:
        if cause.code not in AFFECTED_CODES and _pods(effect) & _pods(cause):
            return True
        if cause.objects and cause.objects[0] in effect.objects[1:]:
            return True
    link = CAUSE_LINKS.get(effect.code)
    if link is not None and cause.code in link[0]:
        kinds = link[1]
        return any(o.kind in kinds for o in set(effect.objects) & set(cause.objects))
    return False


def link_and_order(findings: Sequence[Finding]) -> list[Finding]:
    """Add `caused_by` links (no cycles) and move each finding right after its causes."""
    n = len(findings)
    edges: dict[int, list[int]] = {i: [] for i in range(n)}  # effect -> causes

    def reaches(start: int, target: int) -> bool:
        stack, seen = [start], set()
        while stack:
            i = stack.pop()
            if i == target:
                return True
            if i in seen:
                continue
            seen.add(i)
            stack.extend(edges[i])
        return False

    # Every link needs a shared object: look only at findings that share one (linear in big outages).
    by_object: dict[ObjectRef, list[int]] = {}
    for i, f in enumerate(findings):
        for o in dict.fromkeys(f.objects):
            by_object.setdefault(o, []).append(i)
    for e in range(n):
        candidates = sorted({c for o in findings[e].objects for c in by_object.get(o, ())})
        for c in candidates:
            if _causes(findings[e], findings[c]) and not reaches(c, e):
                edges[e].append(c)
    linked = [
        replace(f, caused_by=tuple(dict.fromkeys(f.caused_by + tuple(findings[c].code for c in edges[i]))))
        if edges[i]
        else f
        for i, f in enumerate(findings)
    ]
    order: list[int] = []
    placed: set[int] = set()

    def place(i: int, visiting: set[int]) -> None:
        if i in placed or i in visiting:
            return
        visiting.add(i)
        for c in edges[i]:
            place(c, visiting)
        placed.add(i)
        order.append(i)

    for i in range(n):
        place(i, set())
    return [linked[i] for i in order]
