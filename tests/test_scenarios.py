"""The scenario corpus: every `tests/scenarios/<name>/` is diagnosed through the real CLI, offline.

A scenario is a diagnostic bundle (`bundle/`: `kubectl get -o yaml` files, `logs/`, `hosts/`) and an
`expected.yaml`:

    description: one line
    findings:                 # each must appear; kind/name/namespace narrow it to one naming that object
      - code: pvc-provisioning-failed
        kind: PersistentVolumeClaim     # or kubectl's spelling (pvc), or `object: pvc/data-db-0`
        name: data-db-0
        namespace: shop
        caused_by: [pvc-pending]        # optional: codes this finding must be caused by
    absent: [crash-loop]      # codes that must not appear
    healthy: false            # true: no findings at all (exit 0); false: at least one problem (exit 1)

A failure scenario must make `pitcrew diagnose` exit 1 (never a false "healthy"); a healthy one must
exit 0 with no findings. A malformed expected.yaml fails its scenario with the reason, so a typo cannot
turn a check off.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.cli import main

SCENARIOS = Path(__file__).resolve().parent / "scenarios"

# kubectl's short names and plural/singular spellings -> the Kind a finding's objects carry.
KIND_ALIASES: Mapping[str, str] = {
    alias: kind
    for kind, aliases in {
        "Pod": ("pod", "pods", "po"),
        "Service": ("service", "services", "svc"),
        "Endpoints": ("endpoints", "ep"),
        "Deployment": ("deployment", "deployments", "deploy"),
        "StatefulSet": ("statefulset", "statefulsets", "sts"),
        "DaemonSet": ("daemonset", "daemonsets", "ds"),
        "ReplicaSet": ("replicaset", "replicasets", "rs"),
        "Job": ("job", "jobs"),
        "CronJob": ("cronjob", "cronjobs", "cj"),
        "ConfigMap": ("configmap", "configmaps", "cm"),
        "Secret": ("secret", "secrets"),
        "PersistentVolumeClaim": ("persistentvolumeclaim", "persistentvolumeclaims", "pvc"),
        "PersistentVolume": ("persistentvolume", "persistentvolumes", "pv"),
        "StorageClass": ("storageclass", "storageclasses", "sc"),
        "Node": ("node", "nodes", "no"),
        "Ingress": ("ingress", "ingresses", "ing"),
        "IngressClass": ("ingressclass", "ingressclasses"),
        "HorizontalPodAutoscaler": ("horizontalpodautoscaler", "horizontalpodautoscalers", "hpa"),
        "PodDisruptionBudget": ("poddisruptionbudget", "poddisruptionbudgets", "pdb"),
        "ResourceQuota": ("resourcequota", "resourcequotas", "quota"),
        "LimitRange": ("limitrange", "limitranges", "limits"),
        "NetworkPolicy": ("networkpolicy", "networkpolicies", "netpol"),
        "ServiceAccount": ("serviceaccount", "serviceaccounts", "sa"),
    }.items()
    for alias in aliases
}

TOP_KEYS = frozenset({"description", "findings", "absent", "healthy"})
FINDING_KEYS = frozenset({"code", "kind", "name", "namespace", "object", "caused_by"})


class ScenarioError(ValueError):
    """An expected.yaml that does not follow the format (the message says where)."""


@dataclass(frozen=True)
class Want:
    code: str
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None
    caused_by: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = "/".join(x for x in (self.namespace, self.kind, self.name) if x)
        return self.code + (f" on {where}" if where else "")


@dataclass(frozen=True)
class Expected:
    description: str
    findings: tuple[Want, ...]
    absent: tuple[str, ...]
    healthy: bool


def _kind(text: str, where: str) -> str:
    kind = KIND_ALIASES.get(text.lower())
    if kind is None:
        if text[:1].isupper():
            return text  # a Kind as the API spells it (CRDs too)
        raise ScenarioError(f"{where}: unknown kind {text!r}")
    return kind


def _codes(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(c, str) and c for c in value):
        raise ScenarioError(f"{where}: expected a list of finding codes")
    return tuple(value)


def parse_expected(doc: Any, where: str = "expected.yaml") -> Expected:
    if not isinstance(doc, dict):
        raise ScenarioError(f"{where}: expected a mapping")
    unknown = set(doc) - TOP_KEYS
    if unknown:
        raise ScenarioError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(TOP_KEYS)})")
    description = doc.get("description")
    if not isinstance(description, str) or not description.strip():
        raise ScenarioError(f"{where}: description (one line) is required")
    healthy = doc.get("healthy", False)
    if not isinstance(healthy, bool):
        raise ScenarioError(f"{where}: healthy must be true or false")
    raw_findings = doc.get("findings") or []
    if not isinstance(raw_findings, list):
        raise ScenarioError(f"{where}: findings must be a list")
    wants: list[Want] = []
    for i, item in enumerate(raw_findings):
        at = f"{where}: findings[{i}]"
        if not isinstance(item, dict):
            raise ScenarioError(f"{at}: expected a mapping with a code")
        unknown = set(item) - FINDING_KEYS
        if unknown:
            raise ScenarioError(f"{at}: unknown keys {sorted(unknown)} (allowed: {sorted(FINDING_KEYS)})")
        code = item.get("code")
        if not isinstance(code, str) or not code:
            raise ScenarioError(f"{at}: code is required")
        kind, name = item.get("kind"), item.get("name")
        if "object" in item:
            if kind is not None or name is not None:
                raise ScenarioError(f"{at}: give either object: KIND/NAME or kind and name, not both")
            obj = item["object"]
            if not isinstance(obj, str) or obj.count("/") != 1 or not all(obj.split("/")):
                raise ScenarioError(f"{at}: object must be KIND/NAME (kubectl style), got {obj!r}")
            kind, name = obj.split("/")
        for key, value in (("kind", kind), ("name", name), ("namespace", item.get("namespace"))):
            if value is not None and (not isinstance(value, str) or not value):
                raise ScenarioError(f"{at}: {key} must be a non-empty string")
        wants.append(
            Want(
                code=code,
                kind=_kind(kind, at) if kind else None,
                name=name,
                namespace=item.get("namespace"),
                caused_by=_codes(item.get("caused_by"), f"{at}: caused_by"),
            )
        )
    absent = _codes(doc.get("absent"), f"{where}: absent")
    if healthy and wants:
        raise ScenarioError(f"{where}: a healthy scenario cannot also expect findings")
    if not healthy and not wants:
        raise ScenarioError(f"{where}: a failure scenario names at least one finding (or says healthy: true)")
    clash = {w.code for w in wants} & set(absent)
    if clash:
        raise ScenarioError(f"{where}: codes both expected and absent: {sorted(clash)}")
    return Expected(description.strip(), tuple(wants), absent, healthy)


def _object_matches(want: Want, obj: str) -> bool:
    parts = obj.split("/")
    namespace, kind, name = (parts[0], parts[1], parts[2]) if len(parts) == 3 else (None, parts[0], parts[1])
    return (
        (want.kind is None or want.kind == kind)
        and (want.name is None or want.name == name)
        and (want.namespace is None or want.namespace == namespace)
    )


def _matches(want: Want, finding: Mapping[str, Any]) -> bool:
    if finding["code"] != want.code:
        return False
    if not set(want.caused_by) <= set(finding["caused_by"]):
        return False
    if want.kind is None and want.name is None and want.namespace is None:
        return True
    return any(_object_matches(want, o) for o in finding["objects"])


def check(expected: Expected, findings: Sequence[Mapping[str, Any]], exit_code: int) -> list[str]:
    """What is wrong with a diagnosis (its JSON findings and the CLI's exit code) against `expected`."""
    problems: list[str] = []
    seen = [f"{f['code']} {f['objects']} caused_by={f['caused_by']}" for f in findings]
    if expected.healthy:
        if findings:
            problems.append(f"healthy cluster, but findings appeared: {seen}")
        if exit_code != 0:
            problems.append(f"healthy cluster, but exit code {exit_code} (want 0)")
        return problems
    for want in expected.findings:
        if not any(_matches(want, f) for f in findings):
            extra = f" caused_by {list(want.caused_by)}" if want.caused_by else ""
            problems.append(f"missing finding {want}{extra}; got {seen or 'no findings'}")
    for code in expected.absent:
        if any(f["code"] == code for f in findings):
            problems.append(f"finding {code} must not appear; got {seen}")
    if exit_code != 1:
        problems.append(f"something is wrong, but exit code {exit_code} (want 1: problems found)")
    return problems


def _scenario_dirs() -> list[Path]:
    return sorted(p for p in SCENARIOS.iterdir() if p.is_dir()) if SCENARIOS.is_dir() else []


def _load(path: Path) -> Expected:
    file = path / "expected.yaml"
    if not file.is_file():
        raise ScenarioError(f"{file}: missing (every scenario needs one)")
    if not (path / "bundle").is_dir():
        raise ScenarioError(f"{path / 'bundle'}: missing (the scenario's diagnostic bundle)")
    try:
        doc = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{file}: not valid YAML: {exc}") from None
    return parse_expected(doc, str(file.relative_to(SCENARIOS.parent)))


@pytest.mark.parametrize("scenario", _scenario_dirs(), ids=lambda p: p.name)
def test_scenario(scenario: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = _load(scenario)
    code = main(["diagnose", "--snapshot", str(scenario / "bundle"), "-o", "json"])
    out, err = capsys.readouterr()
    assert code in (0, 1), f"pitcrew diagnose exited {code}: {err.strip()}"
    doc = json.loads(out)
    problems = check(expected, doc["findings"], code)
    problems += [f"handler error: {e}" for e in doc["handler_errors"]]
    assert not problems, f"{scenario.name} ({expected.description}):\n  " + "\n  ".join(problems)


def test_the_corpus_has_healthy_and_failure_scenarios() -> None:
    loaded = [_load(p) for p in _scenario_dirs()]
    assert sum(e.healthy for e in loaded) >= 3, "healthy clusters of several shapes"
    assert sum(not e.healthy for e in loaded) >= 3


# -- the checker itself can fail ----------------------------------------------------------------

FINDING = {
    "code": "pvc-pending",
    "objects": ["shop/PersistentVolumeClaim/data-db-0", "shop/Pod/db-0"],
    "caused_by": [],
}


def test_check_reports_a_missing_finding_a_forbidden_code_and_a_wrong_exit_code() -> None:
    want = parse_expected(
        {
            "description": "d",
            "findings": [{"code": "pvc-pending", "object": "pvc/data-db-1", "namespace": "shop"}],
            "absent": ["crash-loop"],
        }
    )
    crash = {"code": "crash-loop", "objects": ["shop/Pod/db-0"], "caused_by": []}
    problems = check(want, [FINDING, crash], 0)
    assert any("missing finding pvc-pending on shop/PersistentVolumeClaim/data-db-1" in p for p in problems)
    assert any("crash-loop must not appear" in p for p in problems)
    assert any("exit code 0" in p for p in problems)
    ok = parse_expected({"description": "d", "findings": [{"code": "pvc-pending", "kind": "pvc"}]})
    assert check(ok, [FINDING], 1) == []


def test_check_caused_by_and_healthy() -> None:
    want = parse_expected(
        {"description": "d", "findings": [{"code": "pvc-pending", "caused_by": ["pvc-provisioning-failed"]}]}
    )
    assert check(want, [FINDING], 1) != []
    linked = {**FINDING, "caused_by": ["pvc-provisioning-failed"]}
    assert check(want, [linked], 1) == []
    healthy = parse_expected({"description": "fine", "healthy": True})
    assert check(healthy, [], 0) == []
    assert len(check(healthy, [FINDING], 1)) == 2


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"description": "d", "healthy": True, "absnet": ["x"]}, "unknown keys ['absnet']"),
        ({"findings": [{"code": "x"}]}, "description (one line) is required"),
        ({"description": "d"}, "names at least one finding"),
        ({"description": "d", "healthy": True, "findings": [{"code": "x"}]}, "cannot also expect"),
        ({"description": "d", "findings": [{"kind": "Pod"}]}, "code is required"),
        ({"description": "d", "findings": [{"code": "x", "nmae": "p"}]}, "unknown keys ['nmae']"),
        ({"description": "d", "findings": [{"code": "x", "object": "pod"}]}, "object must be KIND/NAME"),
        ({"description": "d", "findings": [{"code": "x", "kind": "podz"}]}, "unknown kind 'podz'"),
        ({"description": "d", "findings": [{"code": "x"}], "absent": ["x"]}, "both expected and absent"),
        ({"description": "d", "healthy": "yes"}, "healthy must be true or false"),
    ],
)
def test_a_malformed_expected_file_is_an_error(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=re.escape(message)):
        parse_expected(doc)
