"""Scale bundles for the benchmarks, and the check that their diagnosis is right.

`write_bundle(root, pods)` writes a bundle shaped like a busy cluster, as `kubectl get -o json` lists
per namespace: Deployments -> ReplicaSets (the current one and an old, scaled-down one) -> Pods, one
Service and its Endpoints per Deployment, a ConfigMap per namespace the pods read, one Event per pod
(and the warnings of the broken ones), Nodes. A few Deployments are broken on purpose: one in
`BROKEN_EVERY` crash-loops, one pulls an image that does not exist, one has a Service whose selector
has a typo. `check(diagnosis, expected)` says what a diagnosis got wrong (missing or extra findings),
so a fast wrong answer cannot pass as a benchmark figure.

    python -m bench.scale offline --pods 10000        # one offline run in this process: JSON on stdout
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NAMESPACES = 10
REPLICAS = 10  # pods per Deployment
BROKEN_EVERY = 50  # one Deployment in this many of each broken kind
NODES = 20
T_START = "2025-10-09T10:00:00Z"
T_CRASH = "2025-10-09T21:59:00Z"
T_NOW = "2025-10-09T22:00:00Z"


@dataclass(frozen=True)
class Expected:
    """Findings the bundle must produce: (code, namespace, Deployment or Service name)."""

    findings: frozenset[tuple[str, str, str]]
    broken: frozenset[tuple[str, str]]  # (namespace, name) of every broken Deployment / Service
    pods: int


def _kind(index: int) -> str:
    """What is wrong with Deployment number `index` ("" when nothing)."""
    match index % BROKEN_EVERY:
        case 7:
            return "crash"
        case 23:
            return "image"
        case 41:
            return "selector"
    return ""


def _deployment_objects(index: int, ns: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind, object) of one Deployment and everything that hangs off it."""
    name = f"app-{index}"
    broken = _kind(index)
    labels = {"app": name}
    rs_hash, old_hash = f"{index:08x}"[-8:], f"{index + 7:08x}"[-8:]
    container: dict[str, Any] = {
        "name": "app",
        "image": f"registry.example/app-{index}:1.{index % 7}"
        + ("-does-not-exist" if broken == "image" else ""),
        "ports": [{"name": "http", "containerPort": 8080}],
        "envFrom": [{"configMapRef": {"name": "settings"}}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
    }
    spec = {
        "containers": [container],
        "volumes": [{"name": "cache", "emptyDir": {}}],
        "serviceAccountName": "default",
    }
    ready = 0 if broken in ("crash", "image") else REPLICAS
    yield (
        "Deployment",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "uid": f"d-{index}", "resourceVersion": "10"},
            "spec": {
                "replicas": REPLICAS,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": spec},
            },
            "status": {"replicas": REPLICAS, "readyReplicas": ready, "availableReplicas": ready},
        },
    )
    for rs_name, replicas in ((f"{name}-{rs_hash}", REPLICAS), (f"{name}-{old_hash}", 0)):
        yield (
            "ReplicaSet",
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": rs_name,
                    "namespace": ns,
                    "labels": {**labels, "pod-template-hash": rs_name.rsplit("-", 1)[1]},
                    "ownerReferences": [{"kind": "Deployment", "name": name, "controller": True}],
                },
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {**labels, "pod-template-hash": rs_name.rsplit("-", 1)[1]}},
                    "template": {"metadata": {"labels": labels}, "spec": spec},
                },
                "status": {"replicas": replicas, "readyReplicas": ready if replicas else 0},
            },
        )
    addresses = []
    for i in range(REPLICAS):
        pod = f"{name}-{rs_hash}-{i:05d}"
        ip = f"10.{index // 250 % 250}.{index % 250}.{i + 1}"
        status: dict[str, Any]
        if broken == "crash":
            status = {
                "name": "app",
                "ready": False,
                "restartCount": 6,
                "image": container["image"],
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
                "lastState": {"terminated": {"exitCode": 2, "reason": "Error", "finishedAt": T_CRASH}},
            }
        elif broken == "image":
            status = {
                "name": "app",
                "ready": False,
                "restartCount": 0,
                "image": container["image"],
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}},
            }
        else:
            status = {
                "name": "app",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "image": container["image"],
                "state": {"running": {"startedAt": T_START}},
            }
            addresses.append(
                {"ip": ip, "nodeName": f"node-{i % NODES}", "targetRef": {"kind": "Pod", "name": pod}}
            )
        yield (
            "Pod",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pod,
                    "namespace": ns,
                    "uid": f"p-{index}-{i}",
                    "resourceVersion": "20",
                    "creationTimestamp": T_START,
                    "labels": {**labels, "pod-template-hash": rs_hash},
                    "annotations": {"kubectl.kubernetes.io/restartedAt": T_START},
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "ReplicaSet",
                            "name": f"{name}-{rs_hash}",
                            "controller": True,
                        }
                    ],
                },
                "spec": {**spec, "nodeName": f"node-{(index + i) % NODES}"},
                "status": {
                    "phase": "Running" if broken != "image" else "Pending",
                    "podIP": ip,
                    "startTime": T_START,
                    "conditions": [
                        {"type": "Initialized", "status": "True", "lastTransitionTime": T_START},
                        {
                            "type": "Ready",
                            "status": "False" if broken else "True",
                            "lastTransitionTime": T_START,
                        },
                        {"type": "PodScheduled", "status": "True", "lastTransitionTime": T_START},
                    ],
                    "containerStatuses": [status],
                },
            },
        )
        yield "Event", _event(ns, pod, f"{index}-{i}", "Normal", "Started", "Started container app")
        if broken == "crash":
            yield (
                "Event",
                _event(
                    ns,
                    pod,
                    f"{index}-{i}-w",
                    "Warning",
                    "BackOff",
                    "Back-off restarting failed container app",
                ),
            )
        elif broken == "image":
            yield (
                "Event",
                _event(
                    ns,
                    pod,
                    f"{index}-{i}-w",
                    "Warning",
                    "Failed",
                    f'Failed to pull image "{container["image"]}": manifest unknown',
                ),
            )
    selector = {"app": name + ("-typo" if broken == "selector" else "")}
    yield (
        "Service",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "selector": selector,
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
                "clusterIP": f"172.20.{index // 250 % 250}.{index % 250}",
            },
        },
    )
    yield (
        "Endpoints",
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": name, "namespace": ns},
            "subsets": [{"addresses": addresses, "ports": [{"name": "http", "port": 8080}]}]
            if addresses and broken != "selector"
            else [],
        },
    )


def _event(ns: str, pod: str, uid: str, type_: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{pod}.{uid}", "namespace": ns},
        "involvedObject": {"kind": "Pod", "name": pod, "namespace": ns},
        "reason": reason,
        "message": message,
        "type": type_,
        "count": 3 if type_ == "Warning" else 1,
        "firstTimestamp": T_START,
        "lastTimestamp": T_NOW if type_ == "Warning" else T_START,
        "source": {"component": "kubelet"},
    }


def objects(pods: int, namespaces: int = NAMESPACES) -> Iterator[tuple[str, dict[str, Any]]]:
    """(namespace or "cluster", object) of a cluster with `pods` pods."""
    for n in range(NODES):
        yield (
            "cluster",
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": f"node-{n}", "labels": {"kubernetes.io/hostname": f"node-{n}"}},
                "status": {
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": T_START}]
                },
            },
        )
    for n in range(namespaces):
        yield (
            f"team-{n}",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "settings", "namespace": f"team-{n}"},
                "data": {"LOG_LEVEL": "info", "FEATURES": "a,b,c"},
            },
        )
    for index in range(max(1, pods // REPLICAS)):
        ns = f"team-{index % namespaces}"
        for _, obj in _deployment_objects(index, ns):
            yield ns, obj


def expected(pods: int, namespaces: int = NAMESPACES) -> Expected:
    found: set[tuple[str, str, str]] = set()
    broken: set[tuple[str, str]] = set()
    for index in range(max(1, pods // REPLICAS)):
        ns, name, kind = f"team-{index % namespaces}", f"app-{index}", _kind(index)
        if not kind:
            continue
        broken.add((ns, name))
        code = {"crash": "crash-loop", "image": "image-pull-failure", "selector": "service-selector-mismatch"}
        found.add((code[kind], ns, name))
    return Expected(frozenset(found), frozenset(broken), max(1, pods // REPLICAS) * REPLICAS)


def logs(pods: int, namespaces: int = NAMESPACES) -> Iterator[tuple[str, str, str, list[str]]]:
    """(namespace, pod, file name, lines) of the crashing pods' previous logs."""
    for index in range(max(1, pods // REPLICAS)):
        if _kind(index) != "crash":
            continue
        ns, name = f"team-{index % namespaces}", f"app-{index}"
        rs_hash = f"{index:08x}"[-8:]
        for i in range(REPLICAS):
            yield (
                ns,
                f"{name}-{rs_hash}-{i:05d}",
                "app.previous.log",
                [
                    "level=info msg=starting",
                    'level=error msg="cannot connect to db: dial tcp 10.0.0.9:5432: connection refused"',
                ],
            )


def write_bundle(root: Path, pods: int, namespaces: int = NAMESPACES) -> Expected:
    """The bundle as kubectl-style JSON Lists, one file per namespace and kind."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for where, obj in objects(pods, namespaces):
        groups.setdefault((where, obj["kind"]), []).append(obj)
    for (where, kind), items in groups.items():
        folder = root / where
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{kind.lower()}s.json", "w", encoding="utf-8") as fh:
            json.dump({"apiVersion": "v1", "kind": "List", "items": items}, fh)
    groups.clear()
    for ns, pod, filename, lines in logs(pods, namespaces):
        path = root / "logs" / ns / pod / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    (root / "observed-at.txt").write_text(T_NOW + "\n", encoding="utf-8")
    return expected(pods, namespaces)


def _subject(refs: Iterable[Any]) -> set[tuple[str, str]]:
    """(namespace, Deployment or Service name) a finding's objects belong to."""
    out: set[tuple[str, str]] = set()
    for ref in refs:
        name = ref.name
        if ref.kind == "Pod" or ref.kind == "ReplicaSet":
            name = name.rsplit("-", 2 if ref.kind == "Pod" else 1)[0]
        out.add((ref.namespace or "", name))
    return out


def check(findings: Iterable[Any], want: Expected) -> list[str]:
    """What is wrong with `findings` (bot.model.Finding) for a bundle that should give `want`."""
    got: set[tuple[str, str, str]] = set()
    problems: list[str] = []
    for f in findings:
        subjects = _subject(f.objects)
        if not subjects & want.broken:
            problems.append(f"unexpected finding {f.code} on {sorted(subjects)[:3]}")
        got.update((f.code, ns, name) for ns, name in subjects)
    missing = sorted(want.findings - got)
    if missing:
        problems.append(f"{len(missing)} expected findings missing, e.g. {missing[:3]}")
    return problems


def peak_rss_mib() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def offline(pods: int) -> dict[str, Any]:
    """Generate a bundle in a child-free way, then (in this process) read + diagnose it once.

    The bundle is generated by a separate process first so its objects do not count in the peak."""
    import subprocess

    with tempfile.TemporaryDirectory(prefix="pitcrew-bench-") as tmp:
        root = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "bench.scale", "generate", "--pods", str(pods), str(root)], check=True
        )
        want = expected(pods)
        from bot.diagnose import diagnose
        from bot.snapshot import read_bundle

        base = peak_rss_mib()
        start = time.perf_counter()
        evidence = read_bundle(root)
        read_s = time.perf_counter() - start
        diagnosis = diagnose(evidence)
        total_s = time.perf_counter() - start
        return {
            "pods": len(evidence.pods),
            "read_seconds": round(read_s, 3),
            "seconds": round(total_s, 3),
            "peak_rss_mib": round(peak_rss_mib(), 1),
            "rss_before_mib": round(base, 1),
            "findings": len(diagnosis.findings),
            "problems": check(diagnosis.findings, want),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    sub = parser.add_subparsers(dest="verb", required=True)
    gen = sub.add_parser("generate", help="write a scale bundle")
    gen.add_argument("--pods", type=int, default=10000)
    gen.add_argument("directory")
    off = sub.add_parser("offline", help="read + diagnose a generated bundle once; JSON on stdout")
    off.add_argument("--pods", type=int, default=10000)
    args = parser.parse_args(argv)
    if args.verb == "generate":
        write_bundle(Path(args.directory), args.pods)
        return 0
    print(json.dumps(offline(args.pods)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
