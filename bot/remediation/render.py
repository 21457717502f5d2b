"""How a plan and its step events read in a terminal (pure)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.model import (
    HostCommandStep,
    Plan,
    StepEvent,
)

if TYPE_CHECKING:
    pass


def _host_step_text(step: HostCommandStep) -> str:
    recursive = " -R" if step.recursive else ""
    if step.operation == "chown":
        return f"chown{recursive} {step.uid}:{step.gid} {step.path} on {step.host}"
    mode = f"{step.mode:o}" if step.mode is not None else "?"
    return f"chmod{recursive} {mode} {step.path} on {step.host}"


def format_event(event: StepEvent) -> str:
    """One line per event, as the CLI prints it."""
    where = f"step {event.step_index + 1}" if event.step_index >= 0 else "plan"
    extras = []
    if event.backup_id:
        extras.append(f"backup {event.backup_id}")
    if event.elapsed_seconds is not None:
        extras.append(f"{event.elapsed_seconds:.1f}s")
    suffix = f" ({', '.join(extras)})" if extras else ""
    return f"[{where}] {event.action} {event.phase}: {event.detail}{suffix}"


def format_plan(plan: Plan) -> str:
    lines = []
    for index, step in enumerate(plan.steps, start=1):
        extra = f" [{_host_step_text(step)}]" if isinstance(step, HostCommandStep) else ""
        lines.append(f"  {index}. {step.action} {step.target}: {step.description}{extra}")
    return "\n".join(lines)
