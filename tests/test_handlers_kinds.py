"""The kind-based handlers: each with what it must find (in the words Kubernetes components write) and
at least one trap that looks like it but is healthy. Names, namespaces and labels vary on purpose."""

from __future__ import annotations

from typing import Any

from bot.diagnose import diagnose
from bot.evidence import Evidence
from bot.model import Finding, ObjectRef
from handlers import (
    dns_or_network_failure,
    hpa_cannot_scale,
    ingress_backend_invalid,
    job_failed,
    pdb_blocking,
    pvc_provisioning_failed,
    quota_exceeded,
    rollout_stuck,
    statefulset_misconfigured,
)
from handlers.base import Settings
from tests.support import kinds as k
from tests.support.kube import (
    container,
    endpoints,
    event,
    make_evidence,
    pod,
    pvc,
    running,
    service,
    terminated,
    waiting,
    workload,
)

S = Settings()


def _run(module: Any, objects: list[dict[str, Any]], **kw: Any) -> list[Finding]:
    ev: Evidence = make_evidence(objects, **kw)
    found: list[Finding] = module.diagnose(ev, S)
    return found


def _rs(
    name: str,
    ns: str,
    deployment: str,
    *,
    labels: dict[str, str],
    revision: int,
    replicas: int,
    ready: int,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    obj = workload(
        "ReplicaSet",
        name,
        ns,
        labels=labels,
        spec={"containers": [container("app", "img")]},
        replicas=replicas,
        ready=ready,
    )
    obj["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": str(revision)}
    obj["metadata"]["ownerReferences"] = [{"kind": "Deployment", "name": deployment, "controller": True}]
    obj["status"]["availableReplicas"] = ready
    if conditions:
        obj["status"]["conditions"] = conditions
    return obj


def _deployment(
    name: str,
    ns: str,
    *,
    labels: dict[str, str],
    replicas: int,
    available: int,
    revision: int,
    conditions: list[dict[str, Any]],
) -> dict[str, Any]:
    obj = workload(
        "Deployment",
        name,
        ns,
        labels=labels,
        spec={"containers": [container("app", "img")]},
        replicas=replicas,
        ready=available,
    )
    obj["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": str(revision)}
    obj["metadata"]["generation"] = 4
    obj["status"].update({"availableReplicas": available, "observedGeneration": 4, "conditions": conditions})
    return obj


# -- job-failed ---------------------------------------------------------------------------------


def _job_pod(name: str, ns: str, job: str, *, exit_code: int) -> dict[str, Any]:
    p = pod(
        name,
        ns,
        labels={"batch.kubernetes.io/job-name": job},
        containers=[container("migrate", "migr:3")],
        statuses=[
            {
                "name": "migrate",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": terminated(exit_code)},
            }
        ],
        phase="Failed",
    )
    p["metadata"]["ownerReferences"] = [{"kind": "Job", "name": job, "controller": True}]
    return p


def test_job_failed_quotes_condition_exit_code_and_error_line() -> None:
    objs = [
        k.job(
            "db-migrate-41",
            "billing",
            failed=3,
            backoff_limit=2,
            conditions=[
                k.condition(
                    "Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit"
                )
            ],
        ),
        _job_pod("db-migrate-41-x7k2p", "billing", "db-migrate-41", exit_code=3),
    ]
    logs = {
        ("billing", "db-migrate-41-x7k2p", "migrate", False): [
            "applying 0042_add_index",
            "Traceback (most recent call last):",
            '  File "/app/migrate.py", line 12, in <module>',
            "    cur.execute(sql)",
            'psycopg2.errors.DuplicateTable: relation "ix_orders" already exists',
        ]
    }
    (f,) = _run(job_failed, objs, logs=logs)
    assert "BackoffLimitExceeded" in f.summary and "exit code 3" in f.summary
    assert "DuplicateTable" in f.summary
    assert ObjectRef("Pod", "db-migrate-41-x7k2p", "billing") in f.objects
    assert any("Job has reached the specified backoff limit" in line for line in f.evidence)


def test_job_deadline_exceeded_without_pods() -> None:
    objs = [
        k.job(
            "report",
            "analytics",
            active=0,
            conditions=[
                k.condition(
                    "Failed", "True", "DeadlineExceeded", "Job was active longer than specified deadline"
                )
            ],
        )
    ]
    (f,) = _run(job_failed, objs)
    assert "DeadlineExceeded" in f.summary and any("pods are gone" in line for line in f.evidence)


def test_cronjob_whose_latest_run_succeeded_is_history() -> None:
    old = k.job(
        "backup-100",
        "ops",
        owner="backup",
        failed=2,
        conditions=[
            k.condition(
                "Failed",
                "True",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
                when="2025-10-09T20:00:00Z",
            )
        ],
    )
    new = k.job(
        "backup-101",
        "ops",
        owner="backup",
        succeeded=1,
        conditions=[k.condition("Complete", "True", when="2025-10-09T21:00:00Z")],
    )
    assert _run(job_failed, [k.cronjob("backup", "ops"), old, new]) == []
    # A retried Job that succeeded on its second pod is not a failure either.
    retried = k.job("seed", "ops", failed=1, succeeded=1, conditions=[k.condition("Complete", "True")])
    assert _run(job_failed, [retried]) == []


def test_cronjob_failing_again_and_again_is_one_finding() -> None:
    jobs = [
        k.job(
            f"sync-{i}",
            "crm",
            owner="sync",
            failed=1,
            conditions=[
                k.condition(
                    "Failed",
                    "True",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                    when=f"2025-10-09T2{i}:00:00Z",
                )
            ],
        )
        for i in range(3)
    ]
    (f,) = _run(job_failed, [k.cronjob("sync", "crm", last_success="2025-10-08T00:00:00Z"), *jobs])
    assert ObjectRef("CronJob", "sync", "crm") in f.objects and "sync-2" in f.summary
    assert any("the last 3 of 3" in line for line in f.evidence)


# -- rollout-stuck ------------------------------------------------------------------------------

LBL = {"app": "checkout"}


def _rollout(conditions: list[dict[str, Any]], new_status: dict[str, Any]) -> list[dict[str, Any]]:
    new_pod = pod(
        "checkout-7c9d-abcde",
        "payments",
        labels=LBL,
        containers=[container("app", "img")],
        statuses=[new_status],
        owner=("ReplicaSet", "checkout-7c9d"),
    )
    old_pod = pod(
        "checkout-5f6b-zzzzz",
        "payments",
        labels=LBL,
        containers=[container("app", "img")],
        statuses=[running("app", ready=True)],
        owner=("ReplicaSet", "checkout-5f6b"),
    )
    return [
        _deployment(
            "checkout", "payments", labels=LBL, replicas=2, available=1, revision=8, conditions=conditions
        ),
        _rs("checkout-7c9d", "payments", "checkout", labels=LBL, revision=8, replicas=1, ready=0),
        _rs("checkout-5f6b", "payments", "checkout", labels=LBL, revision=7, replicas=1, ready=1),
        new_pod,
        old_pod,
    ]


def test_rollout_past_its_deadline() -> None:
    cond = [
        k.condition(
            "Progressing",
            "False",
            "ProgressDeadlineExceeded",
            'ReplicaSet "checkout-7c9d" has timed out progressing.',
        )
    ]
    (f,) = _run(rollout_stuck, _rollout(cond, waiting("app", "ImagePullBackOff")))
    assert "ProgressDeadlineExceeded" in f.summary and "ImagePullBackOff" in f.summary
    assert ObjectRef("ReplicaSet", "checkout-7c9d", "payments") in f.objects
    assert ObjectRef("Pod", "checkout-7c9d-abcde", "payments") in f.objects


def test_rollout_whose_new_pods_crash_is_stuck_before_the_deadline() -> None:
    cond = [
        k.condition("Progressing", "True", "ReplicaSetUpdated", 'ReplicaSet "checkout-7c9d" is progressing.')
    ]
    (f,) = _run(rollout_stuck, _rollout(cond, waiting("app", "CrashLoopBackOff", restarts=4)))
    assert "CrashLoopBackOff" in f.summary and "ProgressDeadlineExceeded" not in f.summary


def test_a_rollout_still_starting_its_pods_is_not_stuck() -> None:
    cond = [
        k.condition("Progressing", "True", "ReplicaSetUpdated", 'ReplicaSet "checkout-7c9d" is progressing.')
    ]
    assert _run(rollout_stuck, _rollout(cond, waiting("app", "ContainerCreating"))) == []
    paused = [k.condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused")]
    assert _run(rollout_stuck, _rollout(paused, waiting("app", "CrashLoopBackOff", restarts=5))) == []


def test_rollout_stuck_is_caused_by_the_new_pods_finding() -> None:
    cond = [
        k.condition(
            "Progressing",
            "False",
            "ProgressDeadlineExceeded",
            'ReplicaSet "checkout-7c9d" has timed out progressing.',
        )
    ]
    objs = _rollout(cond, waiting("app", "ImagePullBackOff", message='Back-off pulling image "img:9.9"'))
    objs.append(
        event(
            ("Pod", "payments", "checkout-7c9d-abcde"), "Failed", 'Failed to pull image "img:9.9": not found'
        )
    )
    findings = {f.code: f for f in diagnose(make_evidence(objs)).findings}
    assert "image-pull-failure" in findings["rollout-stuck"].caused_by


# -- quota-exceeded -----------------------------------------------------------------------------

QUOTA_MSG = (
    'Error creating: pods "api-6d9f8-k2x9q" is forbidden: exceeded quota: team-quota, requested: '
    "requests.cpu=500m, used: requests.cpu=1800m, limited: requests.cpu=2"
)


def test_quota_refusal_names_quota_resource_used_and_hard() -> None:
    objs = [
        workload(
            "Deployment", "api", "team-a", labels={"app": "api"}, spec={"containers": []}, replicas=3, ready=2
        ),
        _rs("api-6d9f8", "team-a", "api", labels={"app": "api"}, revision=2, replicas=3, ready=2),
        k.quota("team-quota", "team-a", hard={"requests.cpu": "2"}, used={"requests.cpu": "1800m"}),
        event(("ReplicaSet", "team-a", "api-6d9f8"), "FailedCreate", QUOTA_MSG, count=14),
    ]
    # The Deployment repeats the refusal as its own ReplicaFailure condition: still one finding.
    objs[0]["status"]["conditions"] = [k.condition("ReplicaFailure", "True", "FailedCreate", QUOTA_MSG[16:])]
    (f,) = _run(quota_exceeded, objs)
    assert "ResourceQuota team-quota" in f.summary and "Deployment api" in f.summary
    assert "used requests.cpu=1800m" in f.summary
    assert any("requests.cpu used 1800m of hard 2" in line for line in f.evidence)
    assert {
        ObjectRef("Deployment", "api", "team-a"),
        ObjectRef("ResourceQuota", "team-quota", "team-a"),
    } <= set(f.objects)


def test_limit_range_refusal_of_a_statefulset() -> None:
    msg = (
        'create Pod cache-0 in StatefulSet cache failed error: pods "cache-0" is forbidden: '
        "maximum memory usage per Container is 512Mi, but limit is 1Gi"
    )
    objs = [
        workload("StatefulSet", "cache", "edge", labels={"app": "cache"}, spec={"containers": []}, ready=0),
        k.limit_range("mem-cap", "edge", max_={"memory": "512Mi"}),
        event(("StatefulSet", "edge", "cache"), "FailedCreate", msg),
    ]
    (f,) = _run(quota_exceeded, objs)
    assert "maximum memory usage per Container is 512Mi, but limit is 1Gi" in f.summary
    assert ObjectRef("LimitRange", "mem-cap", "edge") in f.objects


def test_full_quota_or_an_old_refusal_is_not_a_finding() -> None:
    full = k.quota("q", "team-b", hard={"pods": "4"}, used={"pods": "4"})
    recovered = workload(
        "ReplicaSet", "web-1", "team-b", labels={"a": "b"}, spec={"containers": []}, replicas=2, ready=2
    )
    old = event(("ReplicaSet", "team-b", "web-1"), "FailedCreate", QUOTA_MSG.replace("team-quota", "q"))
    assert _run(quota_exceeded, [full, recovered, old]) == []


# -- pvc-provisioning-failed --------------------------------------------------------------------


def _sc(name: str, provisioner: str, *, default: bool = False, mode: str = "Immediate") -> dict[str, Any]:
    ann = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "provisioner": provisioner,
        "metadata": {"name": name, "annotations": ann},
        "volumeBindingMode": mode,
    }


def test_provisioner_message_is_quoted_and_waiting_pods_are_named() -> None:
    claim = pvc("data-es-0", "search", phase="Pending", storage_class="gp3")
    user = pod(
        "es-0",
        "search",
        labels={"app": "es"},
        containers=[container("es", "es:8")],
        statuses=[],
        phase="Pending",
        node="",
        volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "data-es-0"}}],
    )
    msg = (
        'failed to provision volume with StorageClass "gp3": rpc error: code = Internal desc = Could not '
        "create volume: UnauthorizedOperation"
    )
    objs = [
        claim,
        user,
        _sc("gp3", "ebs.csi.aws.com"),
        event(("PersistentVolumeClaim", "search", "data-es-0"), "ProvisioningFailed", msg),
    ]
    (f,) = _run(pvc_provisioning_failed, objs)
    assert "UnauthorizedOperation" in f.summary and ObjectRef("Pod", "es-0", "search") in f.objects


def test_missing_storage_class_without_any_pod() -> None:
    objs = [
        pvc("scratch", "batch", phase="Pending", storage_class="fast-nvme"),
        _sc("standard", "x", default=True),
    ]
    (f,) = _run(pvc_provisioning_failed, objs)
    assert 'storageclass.storage.k8s.io "fast-nvme" not found' in f.summary


def test_wait_for_first_consumer_and_bound_claims_are_fine() -> None:
    objs = [
        pvc("logs", "web", phase="Pending", storage_class="local"),
        _sc("local", "rancher.io/local-path", mode="WaitForFirstConsumer"),
        event(
            ("PersistentVolumeClaim", "web", "logs"),
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding",
            type_="Normal",
        ),
        pvc("db", "web", phase="Bound", storage_class="local", volume="pv-1"),
        event(("PersistentVolumeClaim", "web", "db"), "ProvisioningFailed", "transient error, retried"),
    ]
    assert _run(pvc_provisioning_failed, objs) == []


def test_pod_waiting_on_the_claim_is_caused_by_it() -> None:
    claim = pvc("data-kafka-0", "stream", phase="Pending", storage_class="premium")
    user = pod(
        "kafka-0",
        "stream",
        labels={"app": "kafka"},
        containers=[container("k", "kafka")],
        statuses=[],
        phase="Pending",
        node="",
        volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "data-kafka-0"}}],
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims.",
            }
        ],
    )
    objs = [claim, user, _sc("standard", "x", default=True)]
    findings = {f.code: f for f in diagnose(make_evidence(objs)).findings}
    assert "pvc-provisioning-failed" in findings["pvc-pending"].caused_by
    assert "pvc-provisioning-failed" in findings["pod-unschedulable"].caused_by


# -- ingress-backend-invalid --------------------------------------------------------------------


def test_ingress_missing_service_wrong_port_class_and_tls_secret() -> None:
    objs = [
        k.ingress(
            "shop",
            "front",
            class_name="nginx-internal",
            rules=[
                ("shop.example", "/", "web", 8080),
                ("shop.example", "/api", "api-v2", 80),
                ("shop.example", "/img", "web", 9999),
            ],
            tls=[(("shop.example",), "shop-cert")],
        ),
        service("web", "front", {"app": "web"}, port=8080),
        endpoints("web", "front", ready=["web-1"]),
        k.ingress_class("nginx"),
        k.secret("other-cert", "front"),
    ]
    (f,) = _run(ingress_backend_invalid, objs)
    text = "\n".join(f.evidence)
    assert "Service api-v2 does not exist in front" in text and "Service web has no port 9999" in text
    assert "IngressClass nginx-internal does not exist" in text and "TLS Secret shop-cert" in text
    assert "/" + "img" in text and "web:8080" not in text.split("\n", 1)[1]  # the good rule is not listed


def test_ingress_to_a_service_without_endpoints_is_caused_by_it() -> None:
    objs = [
        k.ingress("blog", "cms", class_name=None, rules=[("", "/", "ghost", 2368)]),
        service("ghost", "cms", {"app": "ghost"}, port=2368),
        endpoints("ghost", "cms", not_ready=["ghost-0"]),
        pod(
            "ghost-0",
            "cms",
            labels={"app": "ghost"},
            containers=[container("g", "ghost")],
            statuses=[waiting("g", "CrashLoopBackOff", restarts=5, last=terminated())],
        ),
    ]
    findings = {f.code: f for f in diagnose(make_evidence(objs)).findings}
    assert "has no ready endpoints" in findings["ingress-backend-invalid"].summary
    assert "service-no-endpoints" in findings["ingress-backend-invalid"].caused_by


def test_a_working_ingress_and_unknown_lists_are_not_findings() -> None:
    good = [
        k.ingress(
            "docs",
            "wiki",
            rules=[("docs.example", "/", "wiki", "http")],
            tls=[(("docs.example",), "wiki-tls")],
            annotations={"kubernetes.io/ingress.class": "nginx"},
            class_name=None,
        ),
        service("wiki", "wiki", {"app": "wiki"}, port=80) | {},
        endpoints("wiki", "wiki", ready=["wiki-0"]),
        k.secret("wiki-tls", "wiki"),
    ]
    good[1]["spec"]["ports"][0]["name"] = "http"
    assert _run(ingress_backend_invalid, good) == []
    # No Services or Secrets in the evidence at all (a bundle of Ingresses only): nothing is claimed.
    assert _run(ingress_backend_invalid, [good[0]]) == []


# -- hpa-cannot-scale ---------------------------------------------------------------------------


def test_hpa_missing_request_for_cpu() -> None:
    msg = (
        "the HPA was unable to compute the replica count: failed to get cpu utilization: missing request "
        "for cpu in container worker of Pod queue-worker-5d8-2fj9k"
    )
    objs = [
        k.hpa(
            "queue-worker",
            "jobs",
            target=("Deployment", "queue-worker"),
            conditions=[
                k.condition(
                    "AbleToScale",
                    "True",
                    "SucceededGetScale",
                    "the HPA controller was able to get the target's current scale",
                ),
                k.condition("ScalingActive", "False", "FailedGetResourceMetric", msg),
            ],
        )
    ]
    (f,) = _run(hpa_cannot_scale, objs)
    assert "FailedGetResourceMetric" in f.summary and "missing request for cpu" in f.summary
    assert ObjectRef("Deployment", "queue-worker", "jobs") in f.objects


def test_hpa_at_max_while_over_target() -> None:
    objs = [
        k.hpa(
            "web",
            "shop",
            target=("Deployment", "web"),
            max_replicas=6,
            current=6,
            desired=6,
            cpu_now=240,
            conditions=[
                k.condition(
                    "ScalingLimited",
                    "True",
                    "TooManyReplicas",
                    "the desired replica count is more than the maximum replica count",
                )
            ],
        )
    ]
    (f,) = _run(hpa_cannot_scale, objs)
    assert "TooManyReplicas" in f.summary and any("cpu 240% (target 80%)" in line for line in f.evidence)


def test_hpa_traps_scaled_to_zero_at_min_and_capped_under_target() -> None:
    objs = [
        k.hpa(
            "a",
            "x",
            target=("Deployment", "a"),
            conditions=[
                k.condition(
                    "ScalingActive",
                    "False",
                    "ScalingDisabled",
                    "scaling is disabled since the replica count of the target is zero",
                )
            ],
        ),
        k.hpa(
            "b",
            "x",
            target=("Deployment", "b"),
            cpu_now=5,
            conditions=[
                k.condition(
                    "ScalingActive",
                    "True",
                    "ValidMetricFound",
                    "the HPA was able to successfully calculate a replica count",
                ),
                k.condition(
                    "ScalingLimited",
                    "True",
                    "TooFewReplicas",
                    "the desired replica count is less than the minimum replica count",
                ),
            ],
        ),
        k.hpa(
            "c",
            "x",
            target=("Deployment", "c"),
            max_replicas=3,
            current=3,
            cpu_now=60,
            conditions=[
                k.condition(
                    "ScalingLimited",
                    "True",
                    "TooManyReplicas",
                    "the desired replica count is more than the maximum replica count",
                )
            ],
        ),
    ]
    assert _run(hpa_cannot_scale, objs) == []


# -- statefulset-misconfigured ------------------------------------------------------------------


def _sts(name: str, ns: str, service_name: str, sc: str | None) -> dict[str, Any]:
    obj = workload(
        "StatefulSet", name, ns, labels={"app": name}, spec={"containers": [container("c", "img")]}, ready=0
    )
    obj["spec"]["serviceName"] = service_name
    obj["spec"]["volumeClaimTemplates"] = [{"metadata": {"name": "data"}, "spec": {"storageClassName": sc}}]
    return obj


def test_statefulset_missing_service_and_storage_class() -> None:
    objs = [
        _sts("zk", "coord", "zk-headless", "ssd"),
        service("zk-client", "coord", {"app": "zk"}),
        _sc("hdd", "p"),
    ]
    (f,) = _run(statefulset_misconfigured, objs)
    text = "\n".join(f.evidence)
    assert (
        "serviceName zk-headless: no such Service in coord" in text
        and "StorageClass ssd does not exist" in text
    )
    assert ObjectRef("Service", "zk-headless", "coord") in f.objects


def test_statefulset_with_what_it_names_is_fine() -> None:
    objs = [_sts("pg", "db", "pg", "hdd"), service("pg", "db", {"app": "pg"}), _sc("hdd", "p")]
    assert _run(statefulset_misconfigured, objs) == []
    # A bundle without Services or StorageClasses proves nothing missing.
    assert _run(statefulset_misconfigured, [_sts("pg", "db", "pg", "hdd")]) == []


# -- pdb-blocking -------------------------------------------------------------------------------


def test_pdb_with_unhealthy_pods_blocks_drains() -> None:
    pods = [
        pod(
            f"etcd-{i}",
            "infra",
            labels={"app": "etcd"},
            containers=[container("etcd", "etcd")],
            node=f"n{i}",
            statuses=[running("etcd", ready=i == 0)],
            owner=("StatefulSet", "etcd"),
        )
        for i in range(3)
    ]
    objs = [
        k.pdb(
            "etcd",
            "infra",
            selector={"app": "etcd"},
            min_available=2,
            current=1,
            desired=2,
            expected=3,
            allowed=0,
            conditions=[k.condition("DisruptionAllowed", "False", "InsufficientPods")],
        ),
        *pods,
    ]
    (f,) = _run(pdb_blocking, objs)
    assert "allows 0 disruptions" in f.summary and "n0, n1, n2" in f.summary
    assert (
        ObjectRef("Pod", "etcd-1", "infra") in f.objects
        and ObjectRef("Pod", "etcd-0", "infra") not in f.objects
    )


def test_pdb_selecting_nothing() -> None:
    objs = [
        k.pdb("old-api", "svc", selector={"app": "api-v1"}, min_available=1),
        pod("api-v2-1", "svc", labels={"app": "api-v2"}, containers=[], statuses=[]),
    ]
    (f,) = _run(pdb_blocking, objs)
    assert "selects no pods" in f.summary


def test_pdb_traps() -> None:
    healthy = [pod("r-0", "q", labels={"app": "r"}, containers=[], statuses=[running("r", ready=True)])]
    objs = [
        # minAvailable equal to the replicas: 0 allowed, every pod healthy — a deliberate choice.
        k.pdb("r", "q", selector={"app": "r"}, min_available=1, current=1, desired=1, expected=1, allowed=0),
        # a workload scaled to zero: nothing selected, but its template would be.
        k.pdb("w", "q", selector={"app": "w"}, min_available=1),
        workload("Deployment", "w", "q", labels={"app": "w"}, spec={"containers": []}, replicas=0),
        *healthy,
    ]
    assert _run(pdb_blocking, objs) == []


# -- dns-or-network-failure ---------------------------------------------------------------------


def _crashing(name: str, ns: str, labels: dict[str, str]) -> dict[str, Any]:
    return pod(
        name,
        ns,
        labels=labels,
        containers=[container("app", "app:1")],
        statuses=[waiting("app", "CrashLoopBackOff", restarts=6, last=terminated())],
        owner=("ReplicaSet", name.rsplit("-", 1)[0]),
    )


def test_lookup_of_a_missing_service() -> None:
    objs = [
        _crashing("orders-7d-abc", "shop", {"app": "orders"}),
        service("payments", "shop", {"app": "pay"}),
    ]
    logs = {
        ("shop", "orders-7d-abc", "app", True): [
            "panic: dial tcp: lookup payment on 10.96.0.10:53: no such host"
        ]
    }
    (f,) = _run(dns_or_network_failure, objs, logs=logs)
    assert (
        "cannot resolve payment" in f.summary
        and "Service payment does not exist in namespace shop" in f.summary
    )
    # The crash is explained: crash-loop on the pod gives way to the specific finding.
    codes = [g.code for g in diagnose(make_evidence(objs, logs=logs)).findings]
    assert "crash-loop" not in codes and CODE_DNS in codes


CODE_DNS = dns_or_network_failure.CODE


def test_egress_policy_blocks_the_database() -> None:
    objs = [
        _crashing("api-5c-q1", "app", {"app": "api", "tier": "web"}),
        service("pg", "data", {"app": "pg"}, port=5432),
        endpoints("pg", "data", ready=["pg-0"]),
        pod(
            "pg-0",
            "data",
            labels={"app": "pg"},
            containers=[container("pg", "pg")],
            statuses=[running("pg", ready=True)],
        ),
        k.network_policy(
            "api-egress",
            "app",
            pod_selector={"tier": "web"},
            types=["Egress"],
            egress=[
                {
                    "to": [
                        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}
                    ],
                    "ports": [{"protocol": "UDP", "port": 53}],
                }
            ],
        ),
    ]
    logs = {
        ("app", "api-5c-q1", "app", True): [
            'level=error msg="db ping failed" err="dial tcp 10.96.7.7:5432: i/o timeout"',
            "Error: connect ETIMEDOUT pg.data.svc.cluster.local:5432",
        ]
    }
    (f,) = _run(dns_or_network_failure, objs, logs=logs)
    assert "NetworkPolicy api-egress" in f.summary and "egress to Service pg (data)" in f.summary
    assert ObjectRef("NetworkPolicy", "api-egress", "app") in f.objects


def test_network_traps_healthy_pod_loopback_and_allowed_traffic() -> None:
    healthy = pod(
        "web-1",
        "a",
        labels={"app": "web"},
        containers=[container("app", "x")],
        statuses=[running("app", ready=True, restarts=1)],
    )
    loop = _crashing("side-9-x", "a", {"app": "side"})
    allowed = _crashing("cli-3-y", "a", {"app": "cli"})
    objs = [
        healthy,
        loop,
        allowed,
        service("db", "a", {"app": "db"}, port=3306),
        endpoints("db", "a", ready=["db-0"]),
        pod("db-0", "a", labels={"app": "db"}, containers=[], statuses=[running("db", ready=True)]),
        k.network_policy(
            "db-in",
            "a",
            pod_selector={"app": "db"},
            ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "cli"}}}], "ports": [{"port": 3306}]}],
        ),
    ]
    logs = {
        ("a", "web-1", "app", False): ["dial tcp 10.96.1.1:3306: connect: connection refused", "connected"],
        ("a", "side-9-x", "app", True): ["dial tcp 127.0.0.1:15000: connect: connection refused"],
        ("a", "cli-3-y", "app", True): [
            "ERROR 2003 (HY000): Can't connect to MySQL server on 'db:3306' (111 Connection refused)"
        ],
    }
    assert _run(dns_or_network_failure, objs, logs=logs) == []


def test_a_python_client_naming_the_host_before_the_resolver_error() -> None:
    objs = [_crashing("worker-6f-k2", "jobs", {"app": "worker"}), service("redis", "jobs", {"app": "redis"})]
    logs = {
        ("jobs", "worker-6f-k2", "app", True): [
            "redis.exceptions.ConnectionError: Error -2 connecting to redis-cache:6379. "
            "Name or service not known."
        ]
    }
    (f,) = _run(dns_or_network_failure, objs, logs=logs)
    assert (
        "cannot resolve redis-cache:6379" in f.summary and "Service redis-cache does not exist" in f.summary
    )
