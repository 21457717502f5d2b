"""Block Kit rendering: pure, table-driven, checked against Slack's documented limits."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from bot.model import (
    CheckResult,
    Finding,
    IncidentStatus,
    ObjectRef,
    Plan,
    RestartPodStep,
    Severity,
    StepEvent,
    WorkState,
)
from bot.slack import blocks as B
from bot.slack import details as D
from bot.slack import limits
from bot.slack import progress as P
from tests.support.slack import sample_findings, sample_incident

NOW = 1_700_000_000.0
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


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


S = B.ACTION_SILENCE


@pytest.mark.parametrize(
    ("work_state", "status", "with_plan", "expired", "expected"),
    [
        (
            WorkState.DIAGNOSED,
            IncidentStatus.FIRING,
            True,
            False,
            [B.ACTION_APPROVE, B.ACTION_REJECT, B.ACTION_DETAILS, S],
        ),
        (WorkState.DIAGNOSED, IncidentStatus.FIRING, False, False, [B.ACTION_DETAILS, S]),
        (WorkState.DIAGNOSED, IncidentStatus.FIRING, True, True, [B.ACTION_REJECT, B.ACTION_DETAILS, S]),
        (WorkState.DIAGNOSED, IncidentStatus.RESOLVED, True, False, [B.ACTION_DETAILS]),
        (WorkState.EXECUTING, IncidentStatus.FIRING, True, False, [B.ACTION_DETAILS, S]),
        (WorkState.SUCCEEDED, IncidentStatus.FIRING, True, False, [B.ACTION_ROLLBACK, B.ACTION_DETAILS, S]),
        (WorkState.FAILED, IncidentStatus.FIRING, True, False, [B.ACTION_ROLLBACK, B.ACTION_DETAILS, S]),
        (WorkState.REJECTED, IncidentStatus.FIRING, True, False, [B.ACTION_DETAILS, S]),
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
    text = json.dumps(B.render_incident(_view(findings=(symptom,))).to_json())
    assert "*No automatic fix:* it clears once its causes are fixed" in text
    text = json.dumps(B.render_incident(_view(findings=(lone, symptom))).to_json(), ensure_ascii=False)
    assert "*No automatic fix:* this needs a manual change" in text
    assert "↳ caused by volume-permission-denied: `service/prometheus -n monitoring`" in text


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
    assert message.blocks[0]["text"]["text"] == "🔥 FIRING · KubePodCrashLooping · critical · monitoring"
    # The root cause names the object the alert is about, kubectl style.
    assert "*Root cause:* `pod/prometheus-0 -n monitoring`: Prometheus cannot open its TSDB lock" in text
    assert "> *prometheus-0 is crash looping*" in text
    assert "*Fix:* set securityContext runAsUser/fsGroup 65534 on StatefulSet prometheus (+2 steps)" in text
    assert "↳ caused by this: `service/prometheus -n monitoring`: Service prometheus has no ready" in text
    assert "/#/silences/new?filter=" in text and "alertmanager.example:9093" in text
    # Evidence and the diff are in the Details reply, not on the one-screen message.
    assert "permission denied" not in text and "runAsUser: 65534" not in text


def test_alert_annotations_and_links() -> None:
    alert = dataclasses.replace(
        sample_incident().alerts[0],
        generator_url="http://prom:9090/graph?g0.expr=up%20%3D%3D%200&g0.tab=1",
    )
    incident = dataclasses.replace(
        sample_incident(),
        alerts=(alert,),
        common_annotations={
            "summary": "prometheus-0 is crash looping",
            "description": "Pod monitoring/prometheus-0 restarted 9 times\nin 10 minutes. " + "d" * 600,
            "runbook_url": "https://runbooks.example/KubePodCrashLooping",
            "grafana_dashboard": "https://grafana.example/d/pods|x>y",
        },
    )
    message = B.render_incident(B.IncidentView(incident=incident, now=NOW))
    text = json.dumps(message.to_json(), ensure_ascii=False)
    assert "> Pod monitoring/prometheus-0 restarted 9 times in 10 minutes. ddd" in text
    assert "d" * 600 not in text  # clipped
    links = " ".join(el["text"] for el in message.blocks[-1]["elements"])
    assert "<http://prom:9090/graph?g0.expr=up%20%3D%3D%200&g0.tab=1|Graph>" in links
    assert "<https://runbooks.example/KubePodCrashLooping|Runbook>" in links
    assert "<https://grafana.example/d/pods%7Cx%3Ey|Dashboard>" in links  # delimiters cannot break out
    assert "|Alertmanager>" in links and "|Silence>" in links
    silence = next(el for el in message.blocks[3]["elements"] if el["action_id"] == B.ACTION_SILENCE)
    assert silence["url"].startswith("http://alertmanager.example:9093/#/silences/new?filter=")


@pytest.mark.parametrize(
    ("work_state", "status", "execution", "header", "line"),
    [
        (WorkState.DIAGNOSED, IncidentStatus.FIRING, None, "🔥 FIRING", "🟡 Waiting for approval"),
        (
            WorkState.EXECUTING,
            IncidentStatus.FIRING,
            B.ExecutionStatus(3, "step 3 wait-ready: 12/300 s"),
            "⚙️ FIXING",
            "⚙️ Fixing by <@UALICE>: step 3 wait-ready: 12/300 s",
        ),
        (
            WorkState.SUCCEEDED,
            IncidentStatus.FIRING,
            B.ExecutionStatus(3, "", started_at=NOW, finished_at=NOW + 72),
            "✅ FIXED",
            "✅ Fixed by <@UALICE> in 1m12s",
        ),
        (
            WorkState.FAILED,
            IncidentStatus.FIRING,
            B.ExecutionStatus(3, "check pods-ready failed", started_at=NOW, finished_at=NOW + 5),
            "❌ FIX FAILED",
            "❌ Fix failed in 5s: check pods-ready failed",
        ),
        (
            WorkState.SUCCEEDED,
            IncidentStatus.RESOLVED,
            B.ExecutionStatus(3, "", started_at=NOW, finished_at=NOW + 72),
            "✅ RESOLVED",
            "✅ Fixed by <@UALICE> in 1m12s",
        ),
    ],
)
def test_header_and_status_follow_the_state(
    work_state: WorkState,
    status: IncidentStatus,
    execution: B.ExecutionStatus | None,
    header: str,
    line: str,
) -> None:
    approvals = () if work_state is WorkState.DIAGNOSED else (B.Approval("UALICE", "alice", NOW),)
    view = B.IncidentView(
        incident=sample_incident(work_state=work_state, status=status),
        approvals=approvals,
        execution=execution,
        now=NOW,
    )
    message = B.render_incident(view)
    assert message.blocks[0]["text"]["text"].startswith(header + " · KubePodCrashLooping")
    assert line in json.dumps(message.to_json(), ensure_ascii=False)
    assert "slack:" not in json.dumps(message.to_json())


def test_people_are_mentions_never_internal_ids() -> None:
    assert B.actor_mentions("slack:UALICE,UBOB") == "<@UALICE>, <@UBOB>"
    assert B.actor_mentions("cli:root") == "cli:root"
    assert B.mention("SOPS") == "<!subteam^SOPS>" and B.mention("W123") == "<@W123>"
    assert [B.duration_text(s) for s in (0, 45, 72, 3600 + 180)] == ["0s", "45s", "1m12s", "1h03m"]


def _budget(message: B.Message) -> tuple[int, int, int]:
    kinds = [b["type"] for b in message.blocks]
    return len(kinds), len(B.visible_text(message.blocks)), kinds.index("actions")


def test_budget_on_the_seed_incident_from_the_real_diagnosis() -> None:
    from bot.slack.preview import preview_incident

    incident = preview_incident(str(EXAMPLES / "seed-incident"), str(EXAMPLES / "alertmanager-webhook.json"))
    assert [f.code for f in incident.findings][:1] == ["volume-permission-denied"]
    message = B.render_incident(B.IncidentView(incident=incident, now=NOW, expires_at=NOW + 3600))
    blocks, chars, actions = _budget(message)
    assert blocks <= B.BUDGET_BLOCKS and chars <= B.BUDGET_VISIBLE_CHARS and actions < B.BUDGET_ACTIONS_WITHIN
    assert limits.check_message(message.to_json()) == []
    text = json.dumps(message.to_json(), ensure_ascii=False)
    assert "`pod/prometheus-0 -n monitoring`" in text and "|Graph>" in text
    assert "• also: `pod/loki-0 -n monitoring`" in text


def _worst_case_view(state: WorkState) -> B.IncidentView:
    long = "word " * 2000
    incident = dataclasses.replace(
        sample_incident(work_state=state, findings=HUGE),
        common_annotations={
            "summary": long,
            "description": long + "end",
            "runbook_url": "https://runbooks.example/" + "r" * 1000,
            **{f"dashboard_{i}": f"https://grafana.example/{'d' * 900}{i}" for i in range(5)},
        },
        diagnosis_error="collection of 40 namespaces failed: " + "x" * 5000,
        dry_run_diff="+" + "z" * 100_000,
    )
    return B.IncidentView(
        incident=incident,
        approvals=tuple(B.Approval(f"U{i}", f"u{i}", NOW) for i in range(30)),
        approvals_needed=2,
        execution=B.ExecutionStatus(3, "s" * 5000, started_at=NOW, finished_at=NOW + 9),
        rejection=B.Rejection("UBOB", "bob", "r" * 5000, NOW),
        expires_at=NOW + 60,
        now=NOW,
    )


@pytest.mark.parametrize("state", list(WorkState))
def test_budget_holds_in_the_worst_case(state: WorkState) -> None:
    message = B.render_incident(_worst_case_view(state))
    blocks, chars, actions = _budget(message)
    assert blocks <= B.BUDGET_BLOCKS, blocks
    assert chars <= B.BUDGET_VISIBLE_CHARS, B.visible_text(message.blocks)
    assert actions < B.BUDGET_ACTIONS_WITHIN
    assert limits.check_message(message.to_json()) == []
    assert "more findings in Details" in json.dumps(message.to_json())


def test_visible_text_counts_what_a_reader_sees() -> None:
    blocks = [
        B.section("*Root cause:* `pod/x -n y` <https://very.long/url?q=1|Graph> <@UALICE> &lt;b&gt;"),
        {"type": "actions", "elements": [B.button("Approve", "a", "1")]},
    ]
    assert B.visible_text(blocks) == "Root cause: pod/x -n y Graph @UALICE <b>\nApprove"


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
    block = D.diff_block(diff)
    assert len(block["text"]["text"]) <= limits.MAX_SECTION_TEXT
    assert D.diff_is_truncated(diff) and not D.diff_is_truncated("+ small")
    parts = B.render_full_diff(diff)
    for part in parts:
        assert limits.check_message(part.to_json()) == []
    joined = "".join(b["text"]["text"][3:-3] for p in parts for b in p.blocks if b["type"] == "section")
    assert joined == B.escape(diff)


def test_configmap_diff_secrets_never_reach_slack() -> None:
    # A dry-run diff of a ConfigMap quotes its file: credentials in it must be hidden everywhere
    # the diff goes (the details reply and modal, and the full diff posted in the thread).
    diff = (
        "--- monitoring/ConfigMap/grafana-datasources\n"
        "+++ monitoring/ConfigMap/grafana-datasources (dry run)\n"
        "-  url: http://admin:pr0m-pass@prometheus:9090\n"
        "+  url: http://admin:pr0m-pass@prometheus.monitoring:9090\n"
        '   "secureJsonData": {"basicAuthPassword": "l0ki-pass"}\n'
        "   key: glsa_AbCdEfGhIjKlMnOpQrStUvWxYz012345\n"
    )
    incident = sample_incident(dry_run_diff=diff)
    rendered = [
        json.dumps(D.render_details_reply(incident).to_json()),
        json.dumps(D.details_modal(incident)),
    ] + [json.dumps(p.to_json()) for p in B.render_full_diff(diff)]
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
    progress = P.apply(P.start("Fix"), event)
    assert limits.check_message(P.render(progress).to_json()) == []


def test_final_message_offers_rollback_and_says_the_outcome_once() -> None:
    checks = (CheckResult("pods-ready", "pass", "prometheus-0 Ready"), CheckResult("loki", "warn", "slow"))
    message = P.render_final(
        "succeeded", "all checks pass", 5, offer_rollback=True, checks=checks, by="<@UALICE>", seconds=72
    )
    assert _action_ids(message) == [B.ACTION_ROLLBACK]
    assert limits.check_message(message.to_json()) == []
    text = json.dumps(message.to_json(), ensure_ascii=False)
    assert "✅ *Fixed* by <@UALICE> in 1m12s — execution e-5" in text
    assert "✅ `pods-ready` prometheus-0 Ready" in text and "⚠️ `loki` slow" in text
    assert _action_ids(P.render_final("rolled-back", "restored", 5, offer_rollback=False)) == []


def test_living_status_folds_events_into_one_message() -> None:
    findings = sample_findings()
    progress = P.start("Fix", P.planned_steps(findings))
    events = [
        StepEvent(4, 0, "patch", "started", "monitoring/StatefulSet/prometheus: set securityContext"),
        StepEvent(4, 0, "patch", "done", "patched", backup_id="b-9"),
        StepEvent(4, 1, "restart-pod", "done", "deleted prometheus-0"),
        StepEvent(4, 2, "wait-ready", "progress", "waiting for Ready", elapsed_seconds=12.4),
        StepEvent(4, -1, "validate", "started", "validating monitoring"),
        StepEvent(4, -1, "validate", "done", "3 checks passed (0 with warnings)"),
        StepEvent(4, -1, "execution", "done", "succeeded: all steps done"),
    ]
    for event in events:
        progress = P.apply(progress, event)
    text = json.dumps(P.render(progress).to_json(), ensure_ascii=False)
    assert "Fix in progress* — execution e-4" in text
    assert "✅ 1. *patch* `statefulset/prometheus -n monitoring` set securityContext" in text
    assert "— patched · backup `b-9`" in text
    assert "⏳ 3. *wait-ready* `pod/prometheus-0 -n monitoring` wait for prometheus-0 Ready" in text
    assert "(12/60 s)" in text
    assert text.count("validate") == 1 and "3 checks passed" in text
    assert "succeeded" not in text  # the final reply says the outcome, once
    assert "Fix: steps of execution e-4" in json.dumps(P.render(progress, finished=True).to_json())


def test_details_and_lists_within_limits() -> None:
    incident = sample_incident(findings=HUGE, dry_run_diff="+" + "z" * 100_000)
    reply = D.render_details_reply(incident)
    assert limits.check_message(reply.to_json()) == []
    modal = D.details_modal(incident)
    assert limits.check_view(modal) == [] and len(modal["blocks"]) <= limits.MAX_MODAL_BLOCKS
    assert "more findings" in json.dumps(modal) and "Dry-run diff" in json.dumps(modal)
    lines = [f"line {i} " + "w" * 200 for i in range(2000)]
    assert limits.check_message(B.render_lines("History", lines).to_json()) == []


def test_details_hold_evidence_plan_commands_and_diff() -> None:
    reply = json.dumps(D.render_details_reply(sample_incident()).to_json(), ensure_ascii=False)
    assert "permission denied" in reply and "1. set securityContext" in reply
    assert "kubectl delete pod/prometheus-0 -n monitoring --wait" in reply
    assert "kubectl wait --for=condition=ready pod/prometheus-0 -n monitoring --timeout=60s" in reply
    assert "runAsUser: 65534" in reply
    assert "↳" not in reply


def test_evidence_is_tidied_and_deduplicated() -> None:
    json_line = (
        'log: {"caller":"frontend_processor.go:63","err":"rpc error: connection refused",'
        '"level":"error","msg":"error contacting frontend","ts":"2025-10-09T21:52:%02dZ"}'
    )
    lines = [json_line % i for i in range(5)] + [
        'log: ts=2025-10-09T21:54:40.310Z caller=main.go:1164 level=error err="opening storage failed: '
        'open /prometheus/lock: permission denied"',
        "event: Unhealthy x128: Readiness probe failed",
        "event: Unhealthy x128: Readiness probe failed",
        "log: {not json",
        "log: plain text line",
    ]
    assert D.tidy_evidence(lines) == [
        "log [error] error contacting frontend (err: rpc error: connection refused) ×5",
        "log [error] opening storage failed: open /prometheus/lock: permission denied",
        "event: Unhealthy x128: Readiness probe failed ×2",
        "log: {not json",
        "log: plain text line",
    ]
