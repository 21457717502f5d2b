"""Diagnosis at cluster scale: bundles of 1,000 and 10,000 pods (a few broken).

For each size it prints: bundle read time, diagnose time (all handlers, de-duplication, linking),
peak Python memory of each phase (tracemalloc), findings, and the API calls one live collection makes
(the real `kubernetes` client against the kmock emulator, seeded with the same objects).

    python bench/diagnose.py [--sizes 1000 10000] [--no-live]

Goal: 10,000 pods diagnosed offline in under 2 s on one core, linear growth. Timing is printed,
never asserted (tests never assert timings).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.diagnose import diagnose
from bot.evidence import Scope
from bot.snapshot import read_bundle

T = TypeVar("T")
NAMESPACES = 10
PODS_PER_SET = 10  # pods per StatefulSet; one Service and one PVC per pod


def _objects(pods: int) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """`pods` pods in StatefulSets of 10 across 10 namespaces, each with a Service, Endpoints, PVC and
    PV; one set in twenty crash-loops on a permission error, one Service in fifty selects nothing."""
    objects: list[dict[str, Any]] = []
    logs: dict[str, list[str]] = {}
    sets = pods // PODS_PER_SET
    for s in range(sets):
        ns = f"team-{s % NAMESPACES}"
        name = f"db-{s}"
        labels = {"app.kubernetes.io/name": name}
        broken = s % 20 == 0
        container = {
            "name": "db",
            "image": "quay.io/prometheus/prometheus:v2.51.0" if broken else "postgres:16",
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "ports": [{"name": "db", "containerPort": 5432}],
            "resources": {"limits": {"memory": "1Gi"}},
        }
        spec = {
            "containers": [container],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        }
        objects.append(
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"name": name, "namespace": ns, "resourceVersion": "1"},
                "spec": {
                    "replicas": PODS_PER_SET,
                    "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels}, "spec": spec},
                },
                "status": {"replicas": PODS_PER_SET, "readyReplicas": 0 if broken else PODS_PER_SET},
            }
        )
        selector = {"app.kubernetes.io/name": name + ("-typo" if s % 50 == 1 else "")}
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"selector": selector, "ports": [{"port": 5432}]},
            }
        )
        ready_addresses = []
        for i in range(PODS_PER_SET):
            pod = f"{name}-{i}"
            claim = f"data-{pod}"
            status: dict[str, Any]
            if broken:
                status = {
                    "name": "db",
                    "ready": False,
                    "restartCount": 5,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {
                        "terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2025-10-09T21:59:00Z"}
                    },
                }
                logs[f"logs/{ns}/{pod}/db.previous.log"] = [
                    'level=error err="opening storage failed: lock DB directory: '
                    'open /data/lock: permission denied"'
                ]
            else:
                status = {
                    "name": "db",
                    "ready": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": "2025-10-09T10:00:00Z"}},
                }
                ready_addresses.append(
                    {"ip": f"10.{s % 250}.{i}.1", "targetRef": {"kind": "Pod", "name": pod}}
                )
            pod_spec = json.loads(json.dumps(spec))
            pod_spec["volumes"][0]["persistentVolumeClaim"]["claimName"] = claim
            pod_spec["nodeName"] = f"node-{s % 20}"
            objects.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": pod,
                        "namespace": ns,
                        "labels": labels,
                        "ownerReferences": [{"kind": "StatefulSet", "name": name, "controller": True}],
                    },
                    "spec": pod_spec,
                    "status": {
                        "phase": "Running",
                        "conditions": [{"type": "Ready", "status": "False" if broken else "True"}],
                        "containerStatuses": [status],
                    },
                }
            )
            objects.append(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": claim, "namespace": ns},
                    "spec": {"volumeName": f"pv-{ns}-{pod}", "storageClassName": "standard"},
                    "status": {"phase": "Bound"},
                }
            )
            objects.append(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": f"pv-{ns}-{pod}"},
                    "spec": {
                        "claimRef": {"namespace": ns, "name": claim},
                        "csi": {"driver": "x", "volumeHandle": pod},
                    },
                    "status": {"phase": "Bound"},
                }
            )
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": name, "namespace": ns},
                "subsets": [{"addresses": ready_addresses}] if ready_addresses else [],
            }
        )
    for n in range(20):
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": f"node-{n}"},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]},
            }
        )
    return objects, logs


def _write(root: Path, objects: list[dict[str, Any]], logs: dict[str, list[str]]) -> None:
    (root / "objects.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    for rel, lines in logs.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")


def _measure(fn: Callable[[], T]) -> tuple[T, float, float]:
    """Result, seconds, peak MiB (tracemalloc) of one call."""
    tracemalloc.start()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, seconds, peak / 2**20


def _timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


async def _live_calls(bundle: Path) -> tuple[int, int, float]:
    """(API calls, of which log reads, seconds) of one live collection against the emulator."""
    import kmock

    from tests.support.kube import KubeHarness, RecordingEmulator

    emulator = RecordingEmulator()
    async with emulator, kmock.Server(emulator) as server:
        with tempfile.TemporaryDirectory() as work:
            harness = KubeHarness(emulator, str(server.url).rstrip("/"), Path(work), None)
            emulator.harness = harness
            harness.seed_bundle(bundle)
            namespaces = tuple(f"team-{i}" for i in range(NAMESPACES))
            start = time.perf_counter()
            async with harness.cluster(request_timeout_seconds=120) as cluster:
                await cluster.collect(Scope(namespaces))
            seconds = time.perf_counter() - start
            return len(harness.calls), harness.count(subresource="log"), seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument(
        "--no-live", action="store_true", help="skip the live collection against the emulator"
    )
    args = parser.parse_args()
    print(
        f"{'pods':>7} {'read s':>7} {'read MiB':>8} {'diagnose s':>10} {'diag MiB':>8} "
        f"{'findings':>8} {'API calls':>9} {'(logs)':>6} {'live s':>7}"
    )
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            objects, logs = _objects(size)
            _write(root, objects, logs)
            del objects
            evidence, read_s = _timed(functools.partial(read_bundle, root))
            _, _, read_mib = _measure(functools.partial(read_bundle, root))
            # Timed without tracemalloc (it slows allocation-heavy code several times), then measured.
            diagnosis, diagnose_s = _timed(functools.partial(diagnose, evidence))
            _, _, diagnose_mib = _measure(functools.partial(diagnose, evidence))
            calls, log_calls, live_s = (0, 0, 0.0) if args.no_live else asyncio.run(_live_calls(root))
            print(
                f"{len(evidence.pods):>7} {read_s:>7.2f} {read_mib:>8.1f} "
                f"{diagnose_s:>10.3f} {diagnose_mib:>8.1f} "
                f"{len(diagnosis.findings):>8} {calls if not args.no_live else '-':>9} "
                f"{log_calls if not args.no_live else '-':>6} {live_s:>7.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
