"""Approval rules: who may approve, per namespace / finding code, two approvers for critical plans."""

from __future__ import annotations

import pytest

from bot.model import Severity
from bot.slack.approvers import (
    ApprovalPolicy,
    ApproverRule,
    approvals_needed,
    check,
    plan_codes,
    plan_namespaces,
)
from tests.support.slack import sample_findings

POLICY = ApprovalPolicy(
    default=ApproverRule(users=frozenset({"UALICE"}), groups=frozenset({"SOPS"})),
    per_namespace={"payments": ApproverRule(users=frozenset({"UPAY"}))},
    per_finding={"host-data-ownership": ApproverRule(users=frozenset({"UALICE", "UROOT"}))},
    two_for_critical=True,
)


@pytest.mark.parametrize(
    ("user", "groups", "namespace", "codes", "allowed"),
    [
        ("UALICE", [], "monitoring", ["prometheus-storage-permission"], True),
        ("UBOB", ["SOPS"], "monitoring", ["prometheus-storage-permission"], True),
        ("UBOB", ["SOTHER"], "monitoring", ["prometheus-storage-permission"], False),
        ("UMALLORY", [], "monitoring", [], False),
        ("UALICE", [], "payments", ["x"], False),  # namespace rule replaces the default
        ("UPAY", [], "payments", ["x"], True),
        ("UBOB", ["SOPS"], "monitoring", ["host-data-ownership"], False),  # finding rule also applies
        ("UALICE", [], "monitoring", ["host-data-ownership"], True),
        ("UROOT", [], "monitoring", ["host-data-ownership"], False),  # but not instead of the default
        ("UALICE", [], None, ["prometheus-storage-permission"], True),
    ],
)
def test_check(user: str, groups: list[str], namespace: str | None, codes: list[str], allowed: bool) -> None:
    verdict = check(POLICY, user_id=user, user_groups=groups, namespace=namespace, finding_codes=codes)
    assert verdict.allowed is allowed
    if not allowed:
        assert "not an approver" in verdict.reason


def test_empty_policy_authorises_nobody() -> None:
    verdict = check(
        ApprovalPolicy(), user_id="UALICE", user_groups=[], namespace="monitoring", finding_codes=["a"]
    )
    assert not verdict.allowed and "nobody" in verdict.reason


def test_groups_to_resolve_are_only_the_relevant_ones() -> None:
    assert POLICY.groups_for("monitoring", ["a"]) == {"SOPS"}
    assert POLICY.groups_for("payments", ["a"]) == set()


@pytest.mark.parametrize(
    ("severity", "two", "expected"),
    [(Severity.CRITICAL, True, 2), (Severity.WARNING, True, 1), (Severity.CRITICAL, False, 1)],
)
def test_approvals_needed(severity: Severity, two: bool, expected: int) -> None:
    policy = ApprovalPolicy(two_for_critical=two)
    assert approvals_needed(policy, sample_findings(severity=severity)) == expected


def test_plan_codes() -> None:
    assert plan_codes(sample_findings()) == ("prometheus-storage-permission",)
    assert plan_codes(sample_findings(with_plan=False)) == ()


@pytest.mark.parametrize(
    ("user", "namespace", "touched", "allowed"),
    [
        # The plan changes objects in a guarded namespace: its rule applies whatever the alert's label.
        ("UALICE", None, ["payments"], False),
        ("UPAY", None, ["payments"], True),
        ("UALICE", "monitoring", ["payments"], False),
        # ... and so does the default rule for the unguarded namespace the plan also touches.
        ("UPAY", "monitoring", ["payments"], False),
        ("UALICE", "monitoring", ["monitoring"], True),
        ("UPAY", "payments", ["payments"], True),
    ],
)
def test_the_namespaces_a_plan_changes_count(
    user: str, namespace: str | None, touched: list[str], allowed: bool
) -> None:
    verdict = check(
        POLICY,
        user_id=user,
        user_groups=[],
        namespace=namespace,
        finding_codes=["x"],
        plan_namespaces=touched,
    )
    assert verdict.allowed is allowed, verdict.reason
    assert POLICY.groups_for(None, ["x"], ["payments"]) == set()
    assert POLICY.groups_for(None, ["x"], ["monitoring"]) == {"SOPS"}


def test_plan_namespaces_are_the_step_targets() -> None:
    assert plan_namespaces(sample_findings()) == ("monitoring",)
    assert plan_namespaces(sample_findings(with_plan=False)) == ()
