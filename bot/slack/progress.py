"""One living status per execution: a pure fold of step events into what the thread shows.

The executor reports every step (started, progress, done, failed); instead of one thread reply per
event, the thread has one status message edited in place (`chat.update`) and one final reply with
the outcome, the validation results and Rollback. `Progress` is what that status message shows;
`apply` folds one more event into it. Rendering only; the workflow decides when to send.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from bot.model import CheckResult, Finding, Step, StepEvent, WaitReadyStep
from bot.slack import limits
from bot.slack.blocks import (
    Block,
    Message,
    chunk_lines,
    duration_text,
    escape,
    kubectl_name,
    redact,
    rollback_button,
    section,
    truncate,
)

_LINE_CHARS = 240
_MARK = {
    None: "◻️",
    "started": "⏳",
    "progress": "⏳",
    "done": "✅",
    "failed": "❌",
    "skipped": "⏭️",
    "rolled-back": "↩️",
}


@dataclass(frozen=True, slots=True)
class StepLine:
    action: str
    target: str  # kubectl style
    description: str
    timeout_seconds: float | None = None  # wait-ready: shown as "N/M s"
    phase: str | None = None
    detail: str = ""
    backup_id: str | None = None
    elapsed_seconds: float | None = None


@dataclass(frozen=True)
class Progress:
    title: str  # "Fix" or "Rollback"
    execution_id: int | None = None
    steps: tuple[StepLine, ...] = ()
    plan_lines: tuple[tuple[str, str, str], ...] = ()  # (action, phase, detail), latest per action


def planned_steps(findings: Sequence[Finding]) -> tuple[Step, ...]:
    """The steps an execution of these findings runs, in its order (as bot.remediation's plan_of)."""
    return tuple(s for f in findings if f.plan is not None for s in f.plan.steps)


def start(title: str, steps: Sequence[Step] = ()) -> Progress:
    lines = tuple(
        StepLine(
            action=s.action,
            target=kubectl_name(s.target),
            description=s.description,
            timeout_seconds=s.timeout_seconds if isinstance(s, WaitReadyStep) else None,
        )
        for s in steps
    )
    return Progress(title=title, steps=lines)


def apply(progress: Progress, event: StepEvent) -> Progress:
    """`progress` with `event` folded in. The final `execution` event is left to the final reply
    (the outcome is said once)."""
    progress = replace(progress, execution_id=event.execution_id)
    if event.step_index < 0:
        if event.action == "execution":
            return progress
        kept = tuple(p for p in progress.plan_lines if p[0] != event.action)
        return replace(progress, plan_lines=(*kept, (event.action, event.phase, event.detail)))
    steps = list(progress.steps)
    while len(steps) <= event.step_index:  # a step the plan did not announce: shown as reported
        steps.append(StepLine(action=event.action, target="", description=""))
    current = steps[event.step_index]
    detail = event.detail
    if event.phase == "started" and current.description:
        detail = ""  # "target: description" repeats what the line says already
    steps[event.step_index] = replace(
        current,
        phase=event.phase,
        detail=detail,
        backup_id=event.backup_id or current.backup_id,
        elapsed_seconds=event.elapsed_seconds,
    )
    return replace(progress, steps=tuple(steps))


def _step_text(i: int, step: StepLine) -> str:
    what = f"`{step.target}` {step.description}".strip() if step.target else step.description
    text = f"{_MARK.get(step.phase, '•')} {i}. *{step.action}* {escape(redact(what))}"
    detail = redact(" ".join(step.detail.split()))
    if detail:
        text += f" — {escape(detail)}"
    if step.elapsed_seconds is not None and step.phase in ("started", "progress"):
        total = f"/{step.timeout_seconds:.0f}" if step.timeout_seconds else ""
        text += f" ({step.elapsed_seconds:.0f}{total} s)"
    if step.backup_id:
        text += f" · backup `{escape(step.backup_id)}`"
    return truncate(text, _LINE_CHARS)


def render(progress: Progress, *, finished: bool = False) -> Message:
    ref = f"execution e-{progress.execution_id}" if progress.execution_id is not None else "execution"
    head = f"*{progress.title}: steps of {ref}*" if finished else f"⚙️ *{progress.title} in progress* — {ref}"
    lines = [_step_text(i, s) for i, s in enumerate(progress.steps, 1)]
    lines += [
        truncate(f"{_MARK.get(phase, '•')} *{action}* {escape(redact(detail))}", _LINE_CHARS)
        for action, phase, detail in progress.plan_lines
    ]
    blocks: list[Block] = [section(head)]
    blocks.extend(chunk_lines(lines or ["(no steps reported yet)"], limits.MAX_MESSAGE_BLOCKS - 1))
    return Message(text=f"{progress.title} of {ref}", blocks=tuple(blocks))


_OUTCOME = {
    "succeeded": ("✅", "Fixed"),
    "failed": ("❌", "Fix failed"),
    "rolled-back": ("↩️", "Rolled back"),
}
_CHECK_MARK = {"pass": "✅", "warn": "⚠️", "fail": "❌"}


def render_final(
    outcome: str,
    detail: str,
    execution_id: int,
    *,
    offer_rollback: bool,
    checks: Sequence[CheckResult] = (),
    by: str = "",
    seconds: float | None = None,
) -> Message:
    """The one reply that says how an execution ended: outcome, validation results, Rollback."""
    mark, word = _OUTCOME.get(outcome, ("•", outcome))
    took = f" in {duration_text(seconds)}" if seconds is not None else ""
    who = f" by {by}" if by else ""
    head = f"{mark} *{word}*{who}{took} — execution e-{execution_id}: {escape(redact(detail))}"
    lines = [truncate(head, 600)]
    lines += [
        truncate(f"{_CHECK_MARK.get(c.status, '•')} `{escape(c.name)}` {escape(redact(c.detail))}", 300)
        for c in checks
    ]
    blocks: list[Block] = chunk_lines(lines, limits.MAX_MESSAGE_BLOCKS - 1)
    if offer_rollback:
        blocks.append(
            {
                "type": "actions",
                "block_id": f"execution-{execution_id}",
                "elements": [rollback_button(execution_id)],
            }
        )
    text = f"{mark} {word}{took} — execution e-{execution_id}: {redact(detail)}"
    return Message(text=truncate(text, 3000), blocks=tuple(blocks))
