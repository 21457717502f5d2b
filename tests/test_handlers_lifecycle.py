"""lifecycle-hook-failed: the kubelet's FailedPostStartHook / FailedPreStopHook wording, the hook from
the spec, its output and exit code; traps: old hook failures with the container running since."""

from __future__ import annotations

from typing import Any

from bot.diagnose import diagnose
from bot.model import ObjectRef
from handlers import lifecycle_hook_failed
from handlers.base import Settings
from tests.support.kube import container, event, make_evidence, pod, running, terminated, waiting, workload

NS = "cms"
LABELS = {"app.kubernetes.io/name": "wiki", "app.kubernetes.io/part-of": "docs"}


def _wiki_container() -> dict[str, Any]:
    c = container("wiki", "requarks/wiki:2.5", ports=[("http", 3000)])
    c["lifecycle"] = {
        "postStart": {"exec": {"command": ["/bin/sh", "-c", "cp -r /seed/* /wiki/data/"]}},
        "preStop": {"httpGet": {"path": "/hooks/drain", "port": 3000}},
    }
    return c


def _objects(status: dict[str, Any], name: str = "wiki-0") -> list[dict[str, Any]]:
    c = _wiki_container()
    return [
        workload("StatefulSet", "wiki", NS, labels=LABELS, spec={"containers": [c]}),
        pod(name, NS, labels=LABELS, owner=("StatefulSet", "wiki"), containers=[c], statuses=[status]),
    ]


POST_START = (
    'Exec lifecycle hook ([/bin/sh -c cp -r /seed/* /wiki/data/]) for Container "wiki" in Pod '
    '"wiki-0_cms(8f1c2a6e-3b7d-4e0a-9a51-2c4f7e9d1b30)" failed - error: command \'/bin/sh -c cp -r /seed/* '
    "/wiki/data/' exited with 1: , message: \"cp: can't stat '/seed/*': No such file or directory\\n\""
)


def test_failed_poststart_hook_names_the_hook_its_output_and_explains_the_crash() -> None:
    objects = _objects(waiting("wiki", "CrashLoopBackOff", restarts=4, last=terminated(exit_code=137)))
    objects.append(event(("Pod", NS, "wiki-0"), "FailedPostStartHook", POST_START, count=5))
    [finding] = lifecycle_hook_failed.diagnose(make_evidence(objects), Settings())
    assert finding.code == "lifecycle-hook-failed" and finding.plan is None
    assert finding.severity.value == "critical"
    assert finding.summary == (
        "statefulset/wiki: the postStart hook of container wiki (exec /bin/sh -c cp -r /seed/* /wiki/data/) "
        "fails, exits 1: cp: can't stat '/seed/*': No such file or directory; the kubelet kills the "
        "container and restarts it"
    )
    assert ObjectRef("StatefulSet", "wiki", NS) in finding.objects
    assert "hook output: cp: can't stat '/seed/*': No such file or directory" in finding.evidence
    assert [f.code for f in diagnose(make_evidence(objects)).findings] == ["lifecycle-hook-failed"]


def test_failed_prestop_hook_of_a_pod_that_is_gone() -> None:
    objects = _objects(running("wiki", ready=True), name="wiki-1")
    objects.append(
        event(
            ("Pod", NS, "wiki-0"),
            "FailedPreStopHook",
            'HTTP lifecycle hook (/hooks/drain) for Container "wiki" in Pod "wiki-0_cms(1b2c)" failed - '
            'error: Get "http://10.44.0.12:3000/hooks/drain": dial tcp 10.44.0.12:3000: connect: '
            'connection refused, message: ""',
            count=1,
        )
    )
    [finding] = lifecycle_hook_failed.diagnose(make_evidence(objects), Settings())
    assert finding.severity.value == "warning"
    assert finding.objects == (ObjectRef("Pod", "wiki-0", NS), ObjectRef("StatefulSet", "wiki", NS))
    assert finding.summary.startswith(
        "statefulset/wiki: the preStop hook of container wiki (HTTP GET /hooks/drain on port 3000) fails, "
        'Get "http://10.44.0.12:3000/hooks/drain": dial tcp'
    )
    assert finding.summary.endswith("the container is stopped without its graceful shutdown step")


def test_poststart_error_in_the_container_status_without_events() -> None:
    status = waiting(
        "wiki",
        "PostStartHookError",
        message='Exec lifecycle hook ([/bin/sh -c cp -r /seed/* /wiki/data/]) for Container "wiki" ... '
        "exited with 1",
    )
    [finding] = lifecycle_hook_failed.diagnose(make_evidence(_objects(status)), Settings())
    assert "the postStart hook of container wiki" in finding.summary


# -- traps --------------------------------------------------------------------------------------


def test_trap_an_old_hook_failure_with_the_container_running_since() -> None:
    objects = _objects(running("wiki", ready=True, restarts=1))
    objects.append(
        event(("Pod", NS, "wiki-0"), "FailedPostStartHook", POST_START, count=1, last="2025-10-09T12:00:00Z")
    )
    assert lifecycle_hook_failed.diagnose(make_evidence(objects), Settings()) == []
    assert diagnose(make_evidence(objects)).findings == ()


def test_trap_other_warning_events_are_not_hook_failures() -> None:
    objects = _objects(running("wiki", ready=True))
    objects.append(
        event(("Pod", NS, "wiki-0"), "FailedKillPod", "error killing pod: context deadline exceeded")
    )
    assert lifecycle_hook_failed.diagnose(make_evidence(objects), Settings()) == []
