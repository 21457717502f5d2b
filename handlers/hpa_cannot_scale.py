"""`hpa-cannot-scale`: a HorizontalPodAutoscaler that cannot do its job, from its own status
conditions as the HPA controller writes them: AbleToScale=False (FailedGetScale: the target does not
exist; FailedUpdateScale), ScalingActive=False (FailedGetResourceMetric: no metrics API, or `missing
request for cpu in container X of Pod Y`), or ScalingLimited=True/TooManyReplicas while at
maxReplicas with a metric over its target (it wants more pods than it may have).

Not findings: ScalingActive=False/ScalingDisabled (the target was scaled to zero on purpose),
TooFewReplicas (sitting at minReplicas under low load), and an HPA created moments ago whose metrics
have not arrived yet. No automatic plan."""

from __future__ import annotations

import re

from bot.evidence import Evidence, HorizontalPodAutoscaler
from bot.model import Finding, ObjectRef, Severity
from handlers.base import Settings, clip, refs

CODE = "hpa-cannot-scale"
ALERTS = ("KubeHpaMaxedOut", "KubeHpaReplicasMismatch")

# Metrics arrive about a minute after an HPA (or its pods) appear: no verdict before that.
WARMUP_SECONDS = 180.0
_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(m|k|K|Ki|M|Mi|G|Gi|T|Ti|%)?\s*$")


def _number(text: str) -> float | None:
    """`80%` -> 80, `350m` -> 0.35, `2k` -> 2000; None when unreadable."""
    m = _QUANTITY.match(text or "")
    if not m:
        return None
    value = float(m.group(1))
    scale = {
        None: 1.0, "%": 1.0, "m": 0.001, "k": 1e3, "K": 1e3, "Ki": 1024.0, "M": 1e6, "Mi": 1024.0**2,
        "G": 1e9, "Gi": 1024.0**3, "T": 1e12, "Ti": 1024.0**4,
    }[m.group(2)]  # fmt: skip
    return value * scale


def _over_target(hpa: HorizontalPodAutoscaler) -> list[str]:
    over = []
    for metric in hpa.metrics:
        current, target = _number(metric.current), _number(metric.target)
        if current is not None and target is not None and target > 0 and current > target:
            over.append(f"{metric.name} {metric.current} (target {metric.target})")
    return over


def _young(evidence: Evidence, hpa: HorizontalPodAutoscaler) -> bool:
    if evidence.observed_at is None or hpa.meta.created_at is None:
        return False
    return (evidence.observed_at - hpa.meta.created_at).total_seconds() < WARMUP_SECONDS


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    for hpa in evidence.hpas:
        problems: list[str] = []
        able = hpa.condition("AbleToScale")
        active = hpa.condition("ScalingActive")
        limited = hpa.condition("ScalingLimited")
        if able is not None and able.status == "False":
            problems.append(f"AbleToScale=False {able.reason}: {clip(able.message)}")
        if (
            active is not None
            and active.status == "False"
            and active.reason != "ScalingDisabled"
            and not _young(evidence, hpa)
        ):
            problems.append(f"ScalingActive=False {active.reason}: {clip(active.message)}")
        over = _over_target(hpa)
        maxed = (
            limited is not None
            and limited.status == "True"
            and limited.reason == "TooManyReplicas"
            and hpa.max_replicas > 0
            and hpa.current_replicas >= hpa.max_replicas
            and bool(over)
        )
        if maxed and limited is not None:
            problems.append(
                f"ScalingLimited=True TooManyReplicas: {clip(limited.message)}; at maxReplicas "
                f"{hpa.max_replicas} with {', '.join(over)}"
            )
        if not problems:
            continue
        target = ObjectRef(hpa.target_kind, hpa.target_name, hpa.meta.namespace) if hpa.target_name else None
        lines = [
            f"HorizontalPodAutoscaler {hpa.meta.name} -> {hpa.target_kind}/{hpa.target_name}: "
            f"{hpa.current_replicas} current, {hpa.desired_replicas} desired, "
            f"min {hpa.min_replicas}, max {hpa.max_replicas}",
            *problems,
        ]
        lines += [f"metric {m.type} {m.name}: {m.current or '<unknown>'} / {m.target}" for m in hpa.metrics]
        for event in evidence.events_for(hpa.ref)[-2:]:
            if event.type == "Warning":
                lines.append(f"event: {event.reason} x{event.count}: {clip(event.message)}")
        headline = problems[0].split(": ", 1)
        findings.append(
            Finding(
                code=CODE,
                severity=Severity.WARNING,
                summary=(
                    f"HorizontalPodAutoscaler {hpa.meta.namespace}/{hpa.meta.name} cannot scale "
                    f"{hpa.target_kind} {hpa.target_name}: {headline[0]}"
                    + (f" ({clip(headline[1], 200)})" if len(headline) > 1 else "")
                ),
                objects=refs(hpa.ref, target),
                evidence=tuple(lines),
            )
        )
    return findings
