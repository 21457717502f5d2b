"""Before anything changes: the server-side dry run (each patch sent with `dryRun=All`, the answer
rendered as a diff for the approval message) and the preflight checks (a patch not pinned to what
diagnosis saw, a host step outside what the config allows).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bot.hosts import HostError
from bot.model import (
    EditConfigMapStep,
    Finding,
    HostCommandStep,
    PatchStep,
    Plan,
)
from bot.redact import redact_json
from bot.yamldiff import unified_yaml_diff

if TYPE_CHECKING:
    from bot.hosts import Hosts
from bot.remediation.base import ClusterWriter, DryRunFailed, api_status
from bot.remediation.plan import _changed_since_diagnosis, _patch_ops, _resource_version, plan_of
from bot.remediation.render import _host_step_text


async def dry_run(findings: Plan | Sequence[Finding], cluster: ClusterWriter) -> str:
    """Unified YAML diff of every patch / ConfigMap edit of the plan, as the API server would apply
    it (server-side `dryRun=All`; nothing is persisted). Other steps are listed as comments.
    Raises DryRunFailed if an object is missing, changed since diagnosis, or the patch is refused."""
    plan = plan_of(findings)
    parts: list[str] = []
    for index, step in enumerate(plan.steps, start=1):
        header = f"# {index}. {step.action} {step.target}: {step.description}"
        if not isinstance(step, PatchStep | EditConfigMapStep):
            if isinstance(step, HostCommandStep):
                header += f" [{_host_step_text(step)}]"
            parts.append(header + "\n")
            continue
        try:
            live = await cluster.read_raw(step.target)
        except Exception as exc:  # 403, timeout...: the caller gets one error type for "no diff"
            raise DryRunFailed(f"cannot read {step.target}: {exc}") from exc
        if live is None:
            raise DryRunFailed(f"{step.target} not found")
        why = _changed_since_diagnosis(step, live)
        if why:
            raise DryRunFailed(why)
        try:
            after = await cluster.json_patch(
                step.target, _patch_ops(step, _resource_version(live)), dry_run=True
            )
        except Exception as exc:
            status = api_status(exc)
            if status in (409, 422):
                raise DryRunFailed(f"object changed since diagnosis: {step.target} ({exc})") from exc
            raise DryRunFailed(f"dry run of {step.target} refused: {exc}") from exc
        # Shown in Slack and the CLI: env values and secret-looking config lines are masked.
        diff = unified_yaml_diff(redact_json(live), redact_json(after), label=str(step.target))
        parts.append(header + "\n" + (diff or "# (no change)\n"))
    return "".join(parts)


def _unpinned_paths(step: PatchStep) -> list[str]:
    """Paths the patch changes that nothing pins to the state seen at diagnosis: no resourceVersion,
    and no `test` op on the path or on one of its parents."""
    if step.resource_version is not None:
        return []
    tested = [op.path for op in step.ops if op.op == "test"]
    return [
        op.path
        for op in step.ops
        if op.op != "test"
        and not any(op.path == t or op.path.startswith(t.rstrip("/") + "/") for t in tested)
    ]


def preflight(plan: Plan, hosts: Hosts | None) -> list[str]:
    """Why steps would fail for reasons known before anything changes (a patch not pinned to what
    diagnosis saw, so it could clobber; a host step's host not configured, its path outside the
    host's data path prefixes). Checked up front, so a plan does not stop half-way with its first
    changes applied."""
    problems = []
    for index, step in enumerate(plan.steps, start=1):
        if isinstance(step, PatchStep) and (unpinned := _unpinned_paths(step)):
            problems.append(
                f"step {index} ({step.action} {step.target}): not pinned to the state seen at diagnosis "
                f"(no resourceVersion and no test op covering {', '.join(unpinned)})"
            )
        if not isinstance(step, HostCommandStep):
            continue
        try:
            if hosts is None:
                raise HostError(f"host {step.host!r} is not configured (no hosts are configured)")
            hosts.check_allowed(step.host, step.path)
        except HostError as exc:
            problems.append(f"step {index} ({step.action} {step.target}): {exc}")
    return problems
