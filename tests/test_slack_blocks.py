"""Block Kit rendering: pure, table-driven, checked against Slack's documented limits."""

from __future__ import annotations

import dataclasses
import json

import pytest

from bot.model import Finding, IncidentStatus, ObjectRef, Plan, RestartPodStep, Severity, StepEvent, WorkState
from bot.slack import blocks as B
from bot.slack import limits
from tests.support.slack import sample_findings, sample_incident

NOW = 1_700_000_000.0


def _view(**kwargs: object) -> B.IncidentView:
    incident_kwargs = {
        k: kwargs.pop(k) for k in list(kwargs) if k in ("work_state", "status", "findings", "dry_run_diff")
    }
    return B.IncidentView(incident=sample_incident(**incident_kwargs), now=NOW, **kwargs)  # type: ignore[arg-type]


def _action_ids(message: B.Message) -> list[str]:
    return [el["action_id"] for b in message.blocks if b["type"] == "actions" for el in b["elements"]]


def _huge_finding(i: int) -> Finding:
    pod = ObjectRef("Pod", f"p{i}", "monitoring")
    return Finding(
        code=f"code-{i}",
        severity=Severity.WARNING,
        summary="x" * 5000,
        objects=(pod,) * 30,
        evidence=tuple("<&>" * 400 for _ in range(20)),
        plan=Plan(steps=tuple(RestartPodStep(pod, "restart " + "y" * 300) for _ in range(40))),
    )


HUGE = tuple(_huge_finding(i) for i in range(60))


@pytest.mark.parametrize(
    ("name", "view"),
    [
        ("diagnosed with plan", _view()),
        ("no plan", _view(findings=sample_findings(with_plan=False))),
        ("no findings", _view(findings=())),
        ("executing", _view(work_state=WorkState.EXECUTING, execution=B.ExecutionStatus(3, "patched"))),
        (
            "succeeded",
            _view(work_state=WorkState.SUCCEEDED, execution=B.ExecutionStatus(3, "all checks pass")),
        ),
        ("resolved", _view(status=IncidentStatus.RESOLVED)),
        ("huge everything", _view(findings=HUGE, dry_run_diff="+" + "z" * 100_000)),
        ("huge diff only", _view(dry_run_diff="\n".join(f"+ line {i} <tag> & more" for i in range(20_000)))),
        (
            "rejected",
            _view(work_state=WorkState.REJECTED, rejection=B.Rejection("UBOB", "bob", "r" * 5000, NOW)),
        ),
        ("two approvals", _view(approvals=(B.Approval("U1", "a", NOW), B.Approval("U2", "b", NOW)))),
    ],
)
def test_incident_message_within_slack_limits(name: str, view: B.IncidentView) -> None:
    message = B.render_incident(view)
    assert limits.check_message(message.to_json()) == [], name
    ids = _action_ids(message)
    assert len(ids) == len(set(ids))
    for b in message.blocks:
        for el in b.get("elements", []):
            if el.get("type") == "button" and "value" in el:
                # convention 9: a button carries only an id
                assert el["value"].isdigit()


def test_limit_checker_catches_each_violation() -> None:
    cases = {
        "too many blocks": [{"type": "divider"}] * 51,
        "section text": [{"type": "section", "text": {"type": "mrkdwn", "text": "a" * 3001}}],
        "header": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
        "header mrkdwn": [{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}],
        "button value": [
            {"type": "actions", "elements": [B.button("x", "a", "1") | {"value": "v" * 2001}]},
        ],
        "duplicate action id": [
            {"type": "actions", "elements": [B.button("x", "a", "1"), B.button("y", "a", "2")]},
        ],
        "too many elements": [
            {"type": "actions", "elements": [B.button("x", f"a{i}", "1") for i in range(26)]},
        ],
        "button text": [
            {
                "type": "actions",
                "elements": [B.button("x", "a", "1") | {"text": B.plain("t", 75) | {"text": "t" * 76}}],
            }
        ],
        "bad style": [{"type": "actions", "elements": [B.button("x", "a", "1") | {"style": "green"}]}],
        "confirm title": [
            {
                "type": "actions",
                "elements": [
                    B.rollback_button(1) | {"confirm": {"title": {"type": "plain_text", "text": "t" * 101}}}
                ],
            }
        ],
        "empty context": [{"type": "context", "elements": []}],
        "unknown block": [{"type": "video"}],
    }
    for name, blocks in cases.items():
        assert limits.check_blocks(blocks), name
    assert (
        limits.check_blocks([B.section("ok"), {"type": "actions", "elements": [B.rollback_button(1)]}]) == []
    )


@pytest.mark.parametrize(
    ("work_state", "status", "with_plan", "expired", "expected"),
    [
        (
            WorkState.DIAGNOSED,
            IncidentStatus.FIRING,
            True,
            False,
            [B.ACTION_APPROVE, B.ACTION_REJECT, B.ACTION_DETAILS],
        ),
        (WorkState.DIAGNOSED, IncidentStatus.FIRING, False, False, [B.ACTION_DETAILS]),
        (WorkState.DIAGNOSED, IncidentStatus.FIRING, True, True, [B.ACTION_REJECT, B.ACTION_DETAILS]),
        (WorkState.DIAGNOSED, IncidentStatus.RESOLVED, True, False, [B.ACTION_DETAILS]),
        (WorkState.EXECUTING, IncidentStatus.FIRING, True, False, [B.ACTION_DETAILS]),
        (WorkState.SUCCEEDED, IncidentStatus.FIRING, True, False, [B.ACTION_DETAILS, B.ACTION_ROLLBACK]),
        (WorkState.FAILED, IncidentStatus.FIRING, True, False, [B.ACTION_DETAILS, B.ACTION_ROLLBACK]),
        (WorkState.REJECTED, IncidentStatus.FIRING, True, False, [B.ACTION_DETAILS]),
    ],
)
def test_buttons_follow_state(
    work_state: WorkState, status: IncidentStatus, with_plan: bool, expired: bool, expected: list[str]
) -> None:
    view = B.IncidentView(
        incident=sample_incident(
            work_state=work_state, status=status, findings=sample_findings(with_plan=with_plan)
        ),
        execution=B.ExecutionStatus(9, "done") if work_state is not WorkState.DIAGNOSED else None,
        expires_at=NOW - 1 if expired else NOW + 600,
        now=NOW,
    )
    message = B.render_incident(view)
    assert _action_ids(message) == expected
    if expired:
        assert "expired" in message.text


def test_no_rollback_button_for_an_execution_that_backed_nothing_up() -> None:
    # A failed execution that stopped before its first backup has nothing to restore.
    view = B.IncidentView(
        incident=sample_incident(work_state=WorkState.FAILED, findings=sample_findings(with_plan=True)),
        execution=B.ExecutionStatus(9, "failed before step 1", has_backups=False),
        now=NOW,
    )
    assert B.ACTION_ROLLBACK not in _action_ids(B.render_incident(view))


def test_a_symptom_points_at_its_causes_instead_of_asking_for_a_manual_fix() -> None:
    symptom = Finding(
        code="service-no-endpoints",
        severity=Severity.WARNING,
        summary="Service prometheus has no ready endpoints",
        objects=(ObjectRef("Service", "prometheus", "monitoring"),),
        caused_by=("volume-permission-denied",),
    )
    lone = dataclasses.replace(symptom, code="service-selector-mismatch", caused_by=())
    text = json.dumps(B.render_incident(_view(findings=(symptom, lone))).to_json())
    assert "it clears once `volume-permission-denied` is fixed" in text
    assert text.count("needs a manual fix") == 1  # only the finding without causes


def test_approve_button_is_primary_with_confirm_and_carries_the_incident_id() -> None:
    message = B.render_incident(_view())
    approve = next(
        el
        for b in message.blocks
        if b["type"] == "actions"
        for el in b["elements"]
        if el["action_id"] == B.ACTION_APPROVE
    )
    assert approve["style"] == "primary"
    assert approve["value"] == "7"
    assert approve["confirm"]["confirm"]["text"] == "Approve"


def test_incident_message_content() -> None:
    message = B.render_incident(_view(approvals=(B.Approval("UALICE", "alice", NOW),)))
    text = json.dumps(message.to_json(), ensure_ascii=False)
    assert "KubePodCrashLooping · critical · monitoring · FIRING" in text
    assert "prometheus-storage-permission" in text
    assert "1. set securityContext" in text and "2. restart pod prometheus-0" in text
    assert "permission denied" in text
    assert "/#/silences/new?filter=" in text and "alertmanager.example:9093" in text
    assert "<@UALICE> at 2023-11-14 22:13:20 UTC" in text
    assert "runAsUser: 65534" in text


def test_secrets_and_mrkdwn_are_neutralised() -> None:
    finding = dataclasses.replace(
        sample_findings()[0],
        evidence=("password=hunter2 token: abc.def Authorization: Bearer xyz", "<!channel> & <@U1>"),
    )
    text = json.dumps(B.render_incident(_view(findings=(finding,))).to_json())
    assert "hunter2" not in text and "abc.def" not in text and "xyz" not in text
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text


def test_status_line_and_command_lists_are_redacted() -> None:
    # A diagnosis error and an execution's detail reach the status line and `/pitcrew history`.
    failed = dataclasses.replace(
        sample_incident(findings=()), diagnosis_error="GET http://admin:hunter2@prometheus:9090 failed"
    )
    message = B.render_incident(B.IncidentView(incident=failed, now=NOW)).to_json()
    assert "Diagnosis failed" in json.dumps(message) and "hunter2" not in json.dumps(message)
    lines = B.render_lines("History", ["execution 3 · failed: Authorization: Bearer s3cr3t-t0ken-value"])
    assert "s3cr3t-t0ken-value" not in json.dumps(lines.to_json())


def test_long_diff_is_truncated_with_a_note_and_posted_whole_in_the_thread() -> None:
    diff = "\n".join(f"+ line {i} <b>" for i in range(5000))
    section = B.diff_section(diff)
    assert len(section["text"]["text"]) <= limits.MAX_SECTION_TEXT
    assert B.diff_is_truncated(diff) and not B.diff_is_truncated("+ small")
    parts = B.render_full_diff(diff)
    for part in parts:
        assert limits.check_message(part.to_json()) == []
    joined = "".join(b["text"]["text"][3:-3] for p in parts for b in p.blocks if b["type"] == "section")
    assert joined == B.escape(diff)


def test_configmap_diff_secrets_never_reach_slack() -> None:
    # A dry-run diff of a ConfigMap quotes its file: credentials in it must be hidden everywhere
    # the diff goes (the message's diff section and the full diff posted in the thread).
    diff = (
        "--- monitoring/ConfigMap/grafana-datasources\n"
        "+++ monitoring/ConfigMap/grafana-datasources (dry run)\n"
        "-  url: http://admin:pr0m-pass@prometheus:9090\n"
        "+  url: http://admin:pr0m-pass@prometheus.monitoring:9090\n"
        '   "secureJsonData": {"basicAuthPassword": "l0ki-pass"}\n'
        "   key: glsa_AbCdEfGhIjKlMnOpQrStUvWxYz012345\n"
    )
    rendered = [json.dumps(B.diff_section(diff))] + [
        json.dumps(p.to_json()) for p in B.render_full_diff(diff)
    ]
    for text in rendered:
        assert "pr0m-pass" not in text and "l0ki-pass" not in text and "glsa_" not in text
    assert "prometheus.monitoring:9090" in rendered[0]  # the change itself stays readable


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            StepEvent(1, 0, "patch", "done", "backup saved", backup_id="b-12"),
            "✅ step 1 patch: backup saved (backup `b-12`)",
        ),
        (
            StepEvent(1, 2, "wait-ready", "progress", "waiting for Ready", elapsed_seconds=12.4),
            "⏳ step 3 wait-ready: waiting for Ready — 12 s elapsed",
        ),
        (
            StepEvent(1, -1, "validation", "failed", "check loki-ready: fail"),
            "❌ validation: check loki-ready: fail",
        ),
        (
            StepEvent(1, 1, "restart-pod", "failed", "token=s3cret refused"),
            "❌ step 2 restart-pod: token=*** refused",
        ),
    ],
)
def test_step_event_lines(event: StepEvent, expected: str) -> None:
    assert B.step_event_line(event) == expected
    assert limits.check_message(B.render_step_event(event).to_json()) == []


def test_final_message_offers_rollback() -> None:
    message = B.render_final("succeeded", "all checks pass", 5, offer_rollback=True)
    assert _action_ids(message) == [B.ACTION_ROLLBACK]
    assert limits.check_message(message.to_json()) == []
    assert _action_ids(B.render_final("rolled-back", "restored", 5, offer_rollback=False)) == []


def test_details_and_lists_within_limits() -> None:
    incident = sample_incident(findings=HUGE)
    assert limits.check_message(B.render_details(incident).to_json()) == []
    lines = [f"line {i} " + "w" * 200 for i in range(2000)]
    assert limits.check_message(B.render_lines("History", lines).to_json()) == []
