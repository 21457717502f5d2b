"""The alert's graph: expression and threshold read from the alert, a PNG drawn from a real
Prometheus (Debian's, scraping itself on loopback), uploaded with files_upload_v2 into the thread
of the recording Slack server (getUploadURLExternal, the upload URL, completeUploadExternal)."""

from __future__ import annotations

import io
import logging
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from bot.prometheus import PrometheusApi, PrometheusError, Series
from bot.slack import blocks as B
from bot.slack.graph import PNG_SIGNATURE, Threshold, expr_from_generator_url, graph_query, render_png
from tests.support.alertmanager import free_port
from tests.support.prometheus import Prometheus, prometheus  # noqa: F401 - the fixture
from tests.support.slack import SlackApiServer, seed_incident
from tests.test_slack_app import make_env, parent_updates, thread

pytestmark = pytest.mark.integration


def _decode(png: bytes) -> tuple[int, int]:
    from matplotlib.image import imread

    assert png.startswith(PNG_SIGNATURE)
    pixels = imread(io.BytesIO(png), format="png")
    return int(pixels.shape[1]), int(pixels.shape[0])


def generator(base: str, expr: str) -> str:
    return f"{base}/graph?{urllib.parse.urlencode({'g0.expr': expr, 'g0.tab': '1'})}"


@pytest.mark.parametrize(
    ("expr", "drawn", "threshold"),
    [
        ("rate(http_errors_total[5m]) > 0.9", "rate(http_errors_total[5m])", Threshold(">", 0.9)),
        ("up == 0", "up", Threshold("==", 0.0)),
        ('(sum by (pod) (x{le="0.5"})) >= 1e3', 'sum by (pod) (x{le="0.5"})', Threshold(">=", 1000.0)),
        ("a > bool 2", "a", Threshold(">", 2.0)),
        ("kube_pod_container_status_waiting_reason{reason='CrashLoopBackOff'}", None, None),
        ("foo > bar", None, None),  # not a number: no line
        ("(a > 1", None, None),  # unbalanced: drawn as it is
    ],
)
def test_expression_and_threshold(expr: str, drawn: str | None, threshold: Threshold | None) -> None:
    query = graph_query(expr)
    assert query.expr == (drawn or expr) and query.threshold == threshold


def test_expr_from_generator_url() -> None:
    url = generator("http://prom:9090", 'rate(x{a="b"}[5m]) > 0.9')
    assert expr_from_generator_url(url) == 'rate(x{a="b"}[5m]) > 0.9'
    assert expr_from_generator_url("http://prom:9090/graph") is None
    assert expr_from_generator_url("") is None


def test_matplotlib_is_imported_only_when_a_graph_is_drawn() -> None:
    import subprocess

    code = "import bot.slack.service, bot.slack.graphs, sys; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_render_png_is_a_valid_image() -> None:
    series = (Series({"job": "a"}, tuple((1000.0 + i * 15, float(i % 7)) for i in range(240))),)
    png = render_png(series, title="t", threshold=Threshold(">", 5), start=1000, end=4600, marker_at=4000)
    assert _decode(png) == (800, 320)


async def test_graph_of_the_alert_and_of_the_recovery_from_a_real_prometheus(
    slack_api: SlackApiServer,
    tmp_path: Path,
    prometheus: Prometheus,  # noqa: F811
) -> None:
    async with make_env(slack_api, tmp_path, prometheus_url=prometheus.url) as env:
        url = generator(prometheus.url, 'up{job="prometheus"} < 0.5')
        incident_id = await seed_incident(env.store, severity="warning", generator_url=url)
        await env.service.post_incident(incident_id)
        _, ts = await env.posted(incident_id)
        await slack_api.wait_for(lambda a: len(a.completed_uploads()) == 1, what="alert graph", within=30)
        (upload,) = slack_api.completed_uploads()
        assert upload.channel == "C-ALERTS" and upload.thread_ts == ts
        assert upload.filename == f"incident-{incident_id}-alert.png"
        assert upload.data is not None and _decode(upload.data) == (800, 320)
        assert upload.initial_comment is not None and "(threshold < 0.5)" in upload.initial_comment
        await env.service.post_incident(incident_id)  # a re-post does not draw it again
        await env.service.drain()
        assert len(slack_api.completed_uploads()) == 1

        # After a fix: a second graph, still within four thread replies for the execution.
        before = len(thread(slack_api, ts))
        assert await env.click(B.ACTION_APPROVE, str(incident_id)) == 200
        await slack_api.wait_for(lambda a: len(a.completed_uploads()) == 2, what="recovery graph", within=30)
        recovery = slack_api.completed_uploads()[1]
        assert recovery.filename == f"incident-{incident_id}-recovery.png" and recovery.thread_ts == ts
        assert recovery.data is not None and _decode(recovery.data) == (800, 320)
        await slack_api.wait_for(lambda a: "FIXED" in parent_updates(a, ts)[-1].text, what="fixed", within=30)
        replies = len(thread(slack_api, ts)) - before + 1  # + the recovery graph's file share
        assert replies <= 4


async def test_no_prometheus_no_graph_and_unreachable_is_one_log_line(
    slack_api: SlackApiServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = generator("http://127.0.0.1:9", "up == 0")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with make_env(slack_api, tmp_path / "a") as env:
        incident_id = await seed_incident(env.store, generator_url=url)
        await env.service.post_incident(incident_id)
        await env.posted(incident_id)
        await env.service.drain()
        assert env.service.graphs is None
    dead = f"http://127.0.0.1:{free_port()}"
    caplog.set_level(logging.INFO, logger="bot.slack.graphs")
    async with make_env(slack_api, tmp_path / "b", prometheus_url=dead) as env:
        incident_id = await seed_incident(env.store, generator_url=url)
        await env.service.post_incident(incident_id)
        await env.service.drain()
    assert slack_api.uploads == {}
    lines = [r for r in caplog.records if r.name == "bot.slack.graphs"]
    assert len(lines) == 1 and "cannot reach" in lines[0].getMessage()
    assert lines[0].levelno == logging.WARNING and lines[0].exc_info is None


async def test_prometheus_errors_are_typed(prometheus: Prometheus) -> None:  # noqa: F811
    api = PrometheusApi(prometheus.url)
    try:
        with pytest.raises(PrometheusError) as bad:
            await api.query_range("up{", start=0, end=60, step=15)
        assert not bad.value.temporary
        now = time.time()
        series = await api.query_range('up{job="prometheus"}', start=now - 300, end=now, step=1)
        assert series and all(v == 1.0 for s in series for _, v in s.points)
    finally:
        await api.close()
