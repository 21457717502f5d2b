"""loki-frontend-worker-all-in-one: single binary with frontend_worker is found and fixed by a text
edit; microservices mode (where frontend_worker is right) and healthy pods are not."""

from __future__ import annotations

import pytest

from bot.model import EditConfigMapStep, RestartPodStep, WaitReadyStep
from handlers import loki_frontend_worker as loki
from handlers.base import Settings
from tests.support.kube import configmap, container, make_evidence, pod, running, terminated, workload

CONFIG = """\
auth_enabled: false
server:
  http_listen_port: 3100
  grpc_listen_port: 9095

frontend_worker:
  frontend_address: localhost:9095
  # tuned for the homelab
  grpc_client_config:
    max_send_msg_size: 104857600

  parallelism: 4
ingester:
  lifecycler:
    ring:
      replication_factor: 1
"""

ERROR = (
    'level=error ts=2025-10-09T21:59:10Z caller=frontend_processor.go:63 msg="error contacting frontend" '
    'address=localhost:9095 err="rpc error: code = Unavailable desc = connection error: desc = '
    '\\"transport: Error while dialing: dial tcp [::1]:9095: connect: connection refused\\""'
)


def _objects(args: list[str], *, ready: bool = False, namespace: str = "logging") -> list[dict[str, object]]:
    labels = {"app.kubernetes.io/name": "loki", "app.kubernetes.io/component": "single-binary"}
    spec = {
        "containers": [
            container(
                "loki",
                "docker.io/grafana/loki:2.9.8",
                args=args,
                mounts=[("config", "/etc/loki/config"), ("storage", "/var/loki")],
                ports=[("http-metrics", 3100), ("grpc", 9095)],
            )
        ],
        "volumes": [{"name": "config", "configMap": {"name": "loki"}}, {"name": "storage", "emptyDir": {}}],
    }
    return [
        configmap("loki", namespace, {"config.yaml": CONFIG}),
        workload("StatefulSet", "loki", namespace, labels=labels, spec=spec),
        pod(
            "loki-0",
            namespace,
            labels=labels,
            owner=("StatefulSet", "loki"),
            containers=spec["containers"],  # type: ignore[arg-type]
            volumes=spec["volumes"],  # type: ignore[arg-type]
            statuses=[
                running("loki", ready=ready, restarts=2, last=terminated(finished="2025-10-09T21:55:00Z"))
            ],
        ),
    ]


def _logs(namespace: str = "logging") -> dict[tuple[str, str, str, bool], list[str]]:
    return {(namespace, "loki-0", "loki", False): ['level=info msg="Loki started"', ERROR]}


@pytest.mark.parametrize(
    "args",
    [
        ["--config.file", "/etc/loki/config/config.yaml"],  # no target: Loki's default is all
        ["-config.file=/etc/loki/config/config.yaml", "-target=all"],
        ["-config.file=/etc/loki/config/config.yaml", "-target=all,table-manager"],
    ],
)
def test_single_binary_with_frontend_worker(args: list[str]) -> None:
    evidence = make_evidence(_objects(args), logs=_logs())
    [finding] = loki.diagnose(evidence, Settings())
    assert finding.code == "loki-frontend-worker-all-in-one"
    assert {str(o) for o in finding.objects} == {"logging/Pod/loki-0", "logging/ConfigMap/loki"}
    assert any("error contacting frontend" in line for line in finding.evidence)
    assert finding.plan is not None
    edit, restart, wait = finding.plan.steps
    assert (
        isinstance(edit, EditConfigMapStep)
        and isinstance(restart, RestartPodStep)
        and isinstance(wait, WaitReadyStep)
    )
    assert (str(edit.target), edit.key, edit.resource_version) == (
        "logging/ConfigMap/loki",
        "config.yaml",
        "55",
    )
    assert edit.old_content == CONFIG
    old_lines, new_lines = CONFIG.splitlines(keepends=True), edit.new_content.splitlines(keepends=True)
    assert len(old_lines) == len(new_lines)
    changed = [i for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=True)) if a != b]
    assert changed == [5, 6, 8, 9, 11]  # the block's content lines; its blank line and comment stay
    for i in changed:
        assert new_lines[i] == "# " + old_lines[i]


def test_microservices_querier_with_frontend_worker_is_correct() -> None:
    args = ["-config.file=/etc/loki/config/config.yaml", "-target=querier"]
    evidence = make_evidence(_objects(args), logs=_logs())
    assert loki.diagnose(evidence, Settings()) == []


def test_target_read_simple_scalable_is_not_flagged() -> None:
    evidence = make_evidence(
        _objects(["-config.file=/etc/loki/config/config.yaml", "--target=read"]), logs=_logs()
    )
    assert loki.diagnose(evidence, Settings()) == []


def test_ready_pod_is_not_flagged_even_with_the_block_and_old_errors() -> None:
    evidence = make_evidence(
        _objects(["-config.file=/etc/loki/config/config.yaml"], ready=True), logs=_logs()
    )
    assert loki.diagnose(evidence, Settings()) == []


def test_without_the_error_in_logs_there_is_no_finding() -> None:
    logs = {("logging", "loki-0", "loki", False): ['level=info msg="Loki started"']}
    evidence = make_evidence(_objects(["-config.file=/etc/loki/config/config.yaml"]), logs=logs)
    assert loki.diagnose(evidence, Settings()) == []


def test_comment_out_keeps_every_other_byte() -> None:
    text = "a: 1\r\nfrontend_worker:\r\n  parallelism: 10\r\nb: 2\r\n"
    assert (
        loki.comment_out_frontend_worker(text)
        == "a: 1\r\n# frontend_worker:\r\n#   parallelism: 10\r\nb: 2\r\n"
    )
    no_block = "server:\n  frontend_worker: nested-is-not-the-top-level-block\n# frontend_worker:\n"
    assert loki.comment_out_frontend_worker(no_block) == no_block
    at_end = "x: 1\nfrontend_worker:\n  frontend_address: 127.0.0.1:9095"
    assert (
        loki.comment_out_frontend_worker(at_end)
        == "x: 1\n# frontend_worker:\n#   frontend_address: 127.0.0.1:9095"
    )


def test_target_from_config_file_when_no_flag() -> None:
    assert loki.loki_target([], "target: querier\nfrontend_worker:\n  x: 1\n") == "querier"
    assert loki.loki_target(["-target", "all"], "target: querier\n") == "all"
    assert loki.loki_target([], "server: {}\n") == "all"


def test_image_default_config_path_when_no_flag() -> None:
    objects = _objects(["-target=all"])
    for obj in objects:
        if obj["kind"] in ("Pod",):
            obj["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] = "/etc/loki"  # type: ignore[index]
    objects[0]["data"] = {"local-config.yaml": CONFIG}
    [finding] = loki.diagnose(make_evidence(objects, logs=_logs()), Settings())
    assert finding.plan is not None
    edit = finding.plan.steps[0]
    assert isinstance(edit, EditConfigMapStep) and edit.key == "local-config.yaml"


@pytest.mark.parametrize(
    ("line", "found"),
    [
        # Another version's wording: the worker's own "error connecting", refused on the gRPC port.
        (
            'level=error caller=worker.go:214 msg="error connecting" addr=loki-0.loki:9095 '
            'err="dial tcp 10.42.0.17:9095: connect: connection refused"',
            True,
        ),
        ('level=error msg="error contacting scheduler" address=127.0.0.1:9095 err="EOF"', True),
        # Refused elsewhere (memberlist, the object store): not the frontend worker's doing.
        ('level=warn msg="joining memberlist" err="dial tcp 10.42.0.9:7946: connection refused"', False),
        ('level=error msg="flush failed" err="dial tcp 10.0.0.5:9000: connect: connection refused"', False),
    ],
)
def test_other_wordings_of_the_worker_error(line: str, found: bool) -> None:
    logs = {("logging", "loki-0", "loki", False): ['level=info msg="Loki started"', line]}
    evidence = make_evidence(_objects(["-config.file=/etc/loki/config/config.yaml"]), logs=logs)
    findings = loki.diagnose(evidence, Settings())
    assert [f.code for f in findings] == (["loki-frontend-worker-all-in-one"] if found else [])
    if found:
        assert any(line in e for e in findings[0].evidence)


def test_the_ports_the_worker_dials_come_from_the_config() -> None:
    text = "server:\n  grpc_listen_port: 9096\nfrontend_worker:\n  frontend_address: 'query-fe:9097'\n"
    assert loki.worker_ports(text) == {"9096", "9097"}
    assert loki.worker_ports("frontend_worker:\n  parallelism: 2\n") == {"9095"}
