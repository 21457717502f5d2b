"""Who may approve (and reject, and roll back) a plan: pure rules over Slack user and group ids.

Policy, from config `slack.approvers`:
- `users` / `groups`: the default approvers.
- `per_namespace[ns]`: when a namespace has an entry, it REPLACES the default rule there. The namespaces
  that count are the incident's (its alerts' `namespace` label) and every namespace the plan changes
  objects in, so a plan cannot reach a guarded namespace through an alert labelled elsewhere (or not
  at all, like a `/pitcrew diagnose` of every configured namespace).
- `per_finding[code]`: every finding code of the plan that has an entry must ALSO be satisfied, so a
  sensitive fix (say a host chown) can be limited to a few people without widening anything else.
- `two_for_critical`: a plan containing a critical finding needs two distinct approvers.

An empty rule authorises nobody: pitcrew never falls back to "anyone in the channel".
Group membership is resolved by the caller (usergroups.users.list) and passed in as `user_groups`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from bot.model import Finding, Severity


@dataclass(frozen=True)
class ApproverRule:
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()

    def allows(self, user_id: str, user_groups: Collection[str]) -> bool:
        return user_id in self.users or any(g in self.groups for g in user_groups)

    def describe(self) -> str:
        who = [f"<@{u}>" for u in sorted(self.users)] + [f"<!subteam^{g}>" for g in sorted(self.groups)]
        return ", ".join(who) if who else "nobody"


@dataclass(frozen=True)
class ApprovalPolicy:
    default: ApproverRule = ApproverRule()
    per_namespace: Mapping[str, ApproverRule] = field(default_factory=dict)
    per_finding: Mapping[str, ApproverRule] = field(default_factory=dict)
    two_for_critical: bool = False

    def rules_for(
        self, namespace: str | None, finding_codes: Iterable[str], plan_namespaces: Iterable[str] = ()
    ) -> list[tuple[str, ApproverRule]]:
        """(scope name, rule) pairs that all must allow the user: each namespace's own rule, the
        default rule for any namespace without one (or when no namespace is known), and the rules of
        the finding codes."""
        rules: list[tuple[str, ApproverRule]] = []
        namespaces = sorted({ns for ns in (namespace, *plan_namespaces) if ns})
        guarded = [ns for ns in namespaces if ns in self.per_namespace]
        if not namespaces or len(guarded) < len(namespaces):
            rules.append(("default approvers", self.default))
        rules.extend((f"namespace {ns}", self.per_namespace[ns]) for ns in guarded)
        for code in sorted(set(finding_codes)):
            if code in self.per_finding:
                rules.append((f"finding {code}", self.per_finding[code]))
        return rules

    def groups_for(
        self, namespace: str | None, finding_codes: Iterable[str], plan_namespaces: Iterable[str] = ()
    ) -> frozenset[str]:
        """The user groups whose membership matters for this decision (the only ones to resolve)."""
        rules = self.rules_for(namespace, finding_codes, plan_namespaces)
        return frozenset(g for _, rule in rules for g in rule.groups)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str  # shown to the user (ephemeral) and written to the audit log


def check(
    policy: ApprovalPolicy,
    *,
    user_id: str,
    user_groups: Collection[str],
    namespace: str | None,
    finding_codes: Iterable[str],
    plan_namespaces: Iterable[str] = (),
) -> Verdict:
    for scope, rule in policy.rules_for(namespace, finding_codes, plan_namespaces):
        if not rule.allows(user_id, user_groups):
            return Verdict(False, f"you are not an approver for {scope} (approvers: {rule.describe()})")
    return Verdict(True, "authorised")


def plan_codes(findings: Iterable[Finding]) -> tuple[str, ...]:
    """Codes of the findings whose plans an approval would run."""
    return tuple(f.code for f in findings if f.has_automatic_plan)


def plan_namespaces(findings: Iterable[Finding]) -> tuple[str, ...]:
    """The namespaces whose objects the plans an approval would run change."""
    found = {
        step.target.namespace
        for f in findings
        if f.plan is not None
        for step in f.plan.steps
        if step.target.namespace
    }
    return tuple(sorted(ns for ns in found if ns))


def approvals_needed(policy: ApprovalPolicy, findings: Iterable[Finding]) -> int:
    critical = any(f.has_automatic_plan and f.severity is Severity.CRITICAL for f in findings)
    return 2 if policy.two_for_critical and critical else 1
