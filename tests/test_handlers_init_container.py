"""init-container-failing: Init:CrashLoopBackOff and Init:Error with the init log's error line and exit
code, one finding per workload; traps: completed init containers, a retry that then succeeded."""

from __future__ import annotations

from typing import Any

from bot.diagnose import diagnose
from bot.model import ObjectRef
from handlers import init_container_failing
from handlers.base import Settings
from tests.support.kube import container, make_evidence, pod, running, terminated, waiting, workload

NS = "orders"
LABELS = {"app": "orders-api", "env": "prod"}
MIGRATE = container(
    "migrate", "ghcr.io/acme/orders-migrate:7.2", command=["alembic"], args=["upgrade", "head"]
)
APP = container("api", "ghcr.io/acme/orders-api:7.2", ports=[("http", 8000)])


def _pod(
    name: str, init_status: dict[str, Any], *, app_status: dict[str, Any] | None = None
) -> dict[str, Any]:
    p = pod(
        name,
        NS,
        labels=LABELS,
        owner=("ReplicaSet", "orders-api-59d"),
        containers=[APP],
        statuses=[app_status or waiting("api", "PodInitializing")],
        phase="Pending" if app_status is None else "Running",
    )
    p["spec"]["initContainers"] = [MIGRATE]
    p["status"]["initContainerStatuses"] = [init_status]
    return p


def _deployment() -> list[dict[str, Any]]:
    spec = {"initContainers": [MIGRATE], "containers": [APP]}
    return [
        workload("Deployment", "orders-api", NS, labels=LABELS, spec=spec, replicas=2),
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": "orders-api-59d",
                "namespace": NS,
                "ownerReferences": [{"kind": "Deployment", "name": "orders-api", "controller": True}],
            },
        },
    ]


ALEMBIC_LOG = [
    "INFO  [alembic.runtime.migration] Context impl PostgresqlImpl.",
    "Traceback (most recent call last):",
    '  File "/usr/local/bin/alembic", line 8, in <module>',
    "    sys.exit(main())",
    "sqlalchemy.exc.OperationalError: (psycopg2.OperationalError) could not translate host name "
    '"orders-db" to address: Name or service not known',
]


def test_init_crash_loop_quotes_the_exception_and_exit_code_once_per_workload() -> None:
    crash = waiting("migrate", "CrashLoopBackOff", restarts=6, last=terminated(exit_code=1))
    objects = [*_deployment(), _pod("orders-api-59d-k2x9q", crash), _pod("orders-api-59d-p8w3z", crash)]
    logs = {(NS, "orders-api-59d-k2x9q", "migrate", True): ALEMBIC_LOG}
    evidence = make_evidence(objects, logs=logs)
    [finding] = init_container_failing.diagnose(evidence, Settings())
    assert finding.code == "init-container-failing" and finding.plan is None
    assert finding.summary == (
        "2/2 pods of deployment/orders-api: init container migrate fails (Init:CrashLoopBackOff, exit code 1 "
        "(Error)): sqlalchemy.exc.OperationalError: (psycopg2.OperationalError) could not translate host "
        'name "orders-db" to address: Name or service not known; the app containers never start'
    )
    assert ObjectRef("Deployment", "orders-api", NS) in finding.objects
    assert "init container migrate (ghcr.io/acme/orders-migrate:7.2, command: alembic upgrade head)" in (
        finding.evidence
    )
    # The crash-loop finding on the init container is replaced by this one.
    assert [f.code for f in diagnose(evidence).findings] == ["init-container-failing"]


def test_init_error_of_a_bare_pod_with_a_termination_message() -> None:
    status = {
        "name": "migrate",
        "ready": False,
        "restartCount": 0,
        "state": {
            "terminated": {
                "exitCode": 2,
                "reason": "Error",
                "message": 'migration 0042 failed: column "sku" already exists',
                "finishedAt": "2025-10-09T21:58:00Z",
            }
        },
    }
    p = _pod("orders-migrate-once", status)
    del p["metadata"]["ownerReferences"]
    [finding] = init_container_failing.diagnose(make_evidence([p]), Settings())
    assert finding.summary == (
        "pod orders-migrate-once: init container migrate fails (Init:Error, exit code 2 (Error)): migration "
        '0042 failed: column "sku" already exists; the app containers never start'
    )


# -- traps --------------------------------------------------------------------------------------


def test_trap_completed_init_containers_and_a_retry_that_succeeded() -> None:
    done = {
        "name": "migrate",
        "ready": True,
        "restartCount": 2,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": "2025-10-09T21:50:00Z"}},
        "lastState": {"terminated": terminated(exit_code=1)},
    }
    objects = [*_deployment(), _pod("orders-api-59d-k2x9q", done, app_status=running("api", ready=True))]
    logs = {(NS, "orders-api-59d-k2x9q", "migrate", True): ALEMBIC_LOG}
    assert init_container_failing.diagnose(make_evidence(objects, logs=logs), Settings()) == []
    # A healthy Deployment's status agrees with its one running pod (else the catch-all speaks).
    objects[0]["spec"]["replicas"] = 1
    objects[0]["status"].update(replicas=1, readyReplicas=1, availableReplicas=1)
    assert diagnose(make_evidence(objects, logs=logs)).findings == ()


def test_trap_an_init_container_running_for_the_first_time_or_waiting_on_its_image() -> None:
    first = {"name": "migrate", "ready": False, "restartCount": 0, "state": {"running": {}}}
    pulling = waiting("migrate", "ErrImagePull", message="manifest unknown")
    objects = [_pod("orders-api-59d-k2x9q", first), _pod("orders-api-59d-p8w3z", pulling)]
    assert init_container_failing.diagnose(make_evidence(objects), Settings()) == []
