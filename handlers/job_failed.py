"""`job-failed`: a Job whose `Failed` condition is True (the job controller's BackoffLimitExceeded,
DeadlineExceeded, PodFailurePolicy, ...), or a CronJob whose most recent Jobs failed. Says the
condition's reason and message, and for the failing pod its exit code and the log line that names the
error. A CronJob's old failure followed by a success is history, not a finding. No automatic plan."""

from __future__ import annotations

from bot.evidence import CronJob, Evidence, Job, Pod
from bot.model import Finding, ObjectRef, Severity
from handlers.base import Settings, clip, describe_exit, quote_error, refs

CODE = "job-failed"
ALERTS = ("KubeJobFailed", "KubeJobNotCompleted", "KubeCronJobRunning", "KubeJobCompletion")


def _pods_of(evidence: Evidence, job: Job) -> list[Pod]:
    name = job.meta.name
    out = []
    for pod in evidence.pods_in(job.meta.namespace or ""):
        owner = pod.meta.controller
        labels = pod.meta.labels
        if (owner is not None and owner.kind == "Job" and owner.name == name) or (
            owner is None and name in (labels.get("batch.kubernetes.io/job-name"), labels.get("job-name"))
        ):
            out.append(pod)
    return out


def _finished(job: Job) -> float:
    cond = job.failed_condition or job.condition("Complete")
    when = (cond.last_transition if cond else None) or job.completion_time or job.start_time
    return when.timestamp() if when else 0.0


def _failing_pod_lines(evidence: Evidence, pods: list[Pod]) -> tuple[list[str], str]:
    """Evidence about the Job's failed pods (newest first) and the headline error, if any."""
    lines: list[str] = []
    headline = ""
    failed = [p for p in pods if p.phase == "Failed" or _terminated_with_error(p)]
    failed.sort(key=lambda p: p.start_time.timestamp() if p.start_time else 0.0, reverse=True)
    for pod in failed[:2]:
        for status in pod.init_container_statuses + pod.container_statuses:
            state = status.state if status.state.state == "terminated" else status.last_state
            if state is None or state.state != "terminated" or state.exit_code in (0, None):
                continue
            log = evidence.log(pod.namespace, pod.name, status.name) + evidence.log(
                pod.namespace, pod.name, status.name, previous=True
            )
            quote = quote_error(list(log) + (state.message.splitlines() if state.message else []))
            where = "init container" if status.init else "container"
            lines.append(f"pod {pod.name}: {where} {status.name} ended with {describe_exit(state)}")
            lines += [f"log: {line}" for line in quote.lines]
            if not headline:
                text = quote.headline if quote.named else ""
                headline = f"{describe_exit(state)}" + (f": {text}" if text else "")
            break
        else:
            if pod.reason or pod.message:
                lines.append(f"pod {pod.name}: {pod.phase} {pod.reason}: {clip(pod.message)}".rstrip(": "))
    return lines, headline


def _terminated_with_error(pod: Pod) -> bool:
    return any(
        s.state.state == "terminated" and s.state.exit_code not in (0, None)
        for s in pod.container_statuses + pod.init_container_statuses
    )


def _job_finding(evidence: Evidence, job: Job, cronjob: CronJob | None, history: str) -> Finding:
    cond = job.failed_condition
    assert cond is not None
    pods = _pods_of(evidence, job)
    pod_lines, headline = _failing_pod_lines(evidence, pods)
    lines = [
        f"Job {job.meta.name}: condition Failed=True, reason {cond.reason or '?'}: {clip(cond.message)}",
        f"pods: {job.failed} failed, {job.succeeded} succeeded, {job.active} active"
        + (f" (backoffLimit {job.backoff_limit})" if job.backoff_limit is not None else "")
        + (f", activeDeadlineSeconds {job.active_deadline_seconds}" if job.active_deadline_seconds else ""),
    ]
    if history:
        lines.append(history)
    lines += pod_lines
    if not pod_lines and not pods:
        lines.append("its pods are gone (deleted when the Job failed, or cleaned up): no exit code to show")
    for event in evidence.events_for(job.ref)[-2:]:
        if event.type == "Warning":
            lines.append(f"event: {event.reason} x{event.count}: {clip(event.message)}")
    what = f"CronJob {cronjob.meta.name}'s Job {job.meta.name}" if cronjob else f"Job {job.meta.name}"
    summary = f"{what} failed ({cond.reason or 'Failed'}" + (f"; {clip(headline, 200)})" if headline else ")")
    return Finding(
        code=CODE,
        severity=Severity.WARNING,
        summary=summary,
        objects=refs(
            cronjob.ref if cronjob else None, job.ref, *(p.ref for p in pods if p.phase != "Succeeded")
        ),
        evidence=tuple(lines),
    )


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    by_cronjob: dict[tuple[str, str], list[Job]] = {}
    for job in evidence.jobs:
        owner = job.meta.controller
        if owner is not None and owner.kind == "CronJob":
            by_cronjob.setdefault((job.meta.namespace or "", owner.name), []).append(job)
        elif job.failed_condition is not None:
            findings.append(_job_finding(evidence, job, None, ""))
    cronjobs = {(c.meta.namespace or "", c.meta.name): c for c in evidence.cronjobs}
    for (namespace, name), jobs in sorted(by_cronjob.items()):
        finished = [j for j in jobs if j.failed_condition is not None or j.complete]
        if not finished:
            continue
        finished.sort(key=_finished)
        newest = finished[-1]
        if newest.failed_condition is None:
            continue  # the latest run succeeded: earlier failures are history
        cronjob = cronjobs.get((namespace, name))
        success = cronjob.last_successful_time if cronjob is not None else None
        if success is not None and success.timestamp() > _finished(newest):
            continue
        streak = 0
        for job in reversed(finished):
            if job.failed_condition is None:
                break
            streak += 1
        history = f"the last {streak} of {len(finished)} finished Jobs of CronJob {name} failed"
        if cronjob is not None and cronjob.last_successful_time is not None:
            history += f"; last success {cronjob.last_successful_time:%Y-%m-%dT%H:%M:%SZ}"
        elif cronjob is not None:
            history += "; no successful run recorded"
        finding = _job_finding(evidence, newest, cronjob, history)
        if cronjob is None:
            finding = Finding(
                code=finding.code,
                severity=finding.severity,
                summary=finding.summary.replace(
                    f"Job {newest.meta.name}", f"CronJob {name}'s Job {newest.meta.name}", 1
                ),
                objects=refs(ObjectRef("CronJob", name, namespace), *finding.objects),
                evidence=finding.evidence,
            )
        findings.append(finding)
    return findings
