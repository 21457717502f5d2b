"""Every `web.AppKey` of the application, in one place.

App state is typed through these keys (no module globals). Owners of other resources add their key
here with a one-line addition next to their cleanup context in `bot/app.py`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from bot.alertmanager import WebhookAuth
    from bot.cluster import Cluster
    from bot.config import Config
    from bot.hosts import Hosts
    from bot.incidents import WebhookCommitter
    from bot.leader import LeaderElector
    from bot.metrics import IntakeMetrics, MetricsRegistry
    from bot.schedule import SummaryScheduler
    from bot.slack.service import SlackService
    from bot.snapshot_cache import SnapshotCache
    from bot.store import StoreBackend
    from bot.workers import IncidentWorkers, Processor

# A readiness probe returns None when ready, else a one-line reason. /readyz runs them all.
ReadinessProbe = Callable[[], Awaitable[str | None]]

CONFIG: web.AppKey[Config] = web.AppKey("config")
METRICS: web.AppKey[MetricsRegistry] = web.AppKey("metrics")
INTAKE_METRICS: web.AppKey[IntakeMetrics] = web.AppKey("intake_metrics")
STORE: web.AppKey[StoreBackend] = web.AppKey("store")
WEBHOOK_COMMITTER: web.AppKey[WebhookCommitter] = web.AppKey("webhook_committer")
WEBHOOK_AUTH: web.AppKey[WebhookAuth] = web.AppKey("webhook_auth")
PROCESSOR: web.AppKey[Processor] = web.AppKey("processor")
WORKERS: web.AppKey[IncidentWorkers] = web.AppKey("workers")
READINESS_PROBES: web.AppKey[list[tuple[str, ReadinessProbe]]] = web.AppKey("readiness_probes")
SLACK: web.AppKey[SlackService] = web.AppKey("slack")
CLUSTER: web.AppKey[Cluster] = web.AppKey("cluster")
CLUSTER_ERROR: web.AppKey[str] = web.AppKey("cluster_error")  # why there is no CLUSTER
HOSTS: web.AppKey[Hosts] = web.AppKey("hosts")
SCHEDULER: web.AppKey[SummaryScheduler] = web.AppKey("summary_scheduler")
LEADER: web.AppKey[LeaderElector] = web.AppKey("leader")  # only with ha.enabled
# Evidence collections shared by incidents of the same namespaces (bot.snapshot_cache).
SNAPSHOTS: web.AppKey[SnapshotCache] = web.AppKey("snapshots")
