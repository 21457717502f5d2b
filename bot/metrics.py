"""A small Prometheus registry rendered in the text exposition format (version 0.0.4).

One registry per application (kept in app state, never a module global), so tests get fresh counts.
Adding a metric is one call on the registry; asking again for the same name with the same shape
returns the existing metric, so any module holding the app can reach it without passing references.
Gauges whose value lives elsewhere (incidents by state, outbox backlog) are computed at scrape time by
an async callback.
"""

from __future__ import annotations

import logging
import math
import re
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar, cast

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

DEFAULT_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

LabelValues = tuple[str, ...]
Sample = tuple[Mapping[str, str], float]
GaugeCollector = Callable[[], Awaitable[Iterable[Sample]]]


_log = logging.getLogger(__name__)


class MetricError(ValueError):
    """A metric defined or used inconsistently (a programming error, raised at definition time)."""


@dataclass
class _Metric:
    name: str
    help: str
    labelnames: tuple[str, ...]

    kind = "untyped"

    def _key(self, labels: Mapping[str, str]) -> LabelValues:
        if set(labels) != set(self.labelnames):
            raise MetricError(f"{self.name}: expected labels {sorted(self.labelnames)}, got {sorted(labels)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def _header(self) -> list[str]:
        return [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]

    def _same_shape(self, other: _Metric) -> bool:
        return type(self) is type(other) and self.labelnames == other.labelnames


@dataclass
class Counter(_Metric):
    """A monotonically increasing count; `inc(reason="too_large")`."""

    kind = "counter"
    _values: dict[LabelValues, float] = field(default_factory=dict)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise MetricError(f"{self.name}: counters only go up (got {amount})")
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def preset(self, *label_sets: Mapping[str, str]) -> None:
        """Expose these label combinations at 0 before anything happened (so rates work from start)."""
        for labels in label_sets:
            self._values.setdefault(self._key(labels), 0.0)

    def render(self) -> list[str]:
        lines = self._header()
        if not self.labelnames:
            lines.append(f"{self.name} {_fmt(self._values.get((), 0.0))}")
            return lines
        for key, val in sorted(self._values.items()):
            lines.append(f"{self.name}{_labels(self.labelnames, key)} {_fmt(val)}")
        return lines


@dataclass
class Gauge(_Metric):
    """A value that goes up and down. Either set directly, or computed by `collect` at each scrape."""

    kind = "gauge"
    collect: GaugeCollector | None = None
    _values: dict[LabelValues, float] = field(default_factory=dict)

    def set(self, value: float, **labels: str) -> None:
        self._values[self._key(labels)] = value

    async def render_async(self) -> list[str]:
        lines = self._header()
        if self.collect is not None:
            try:
                samples = {self._key(labels): float(val) for labels, val in await self.collect()}
            except Exception:
                # A failing collector must not break the whole scrape; its samples are just absent.
                _log.exception("metrics collector for %s failed", self.name)
                samples = {}
        else:
            samples = dict(self._values)
        for key, val in sorted(samples.items()):
            lines.append(f"{self.name}{_labels(self.labelnames, key)} {_fmt(val)}")
        return lines


@dataclass
class Histogram(_Metric):
    """Observations in cumulative buckets, exposed as `_bucket{le=..}`, `_sum` and `_count`."""

    kind = "histogram"
    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    _counts: dict[LabelValues, list[int]] = field(default_factory=dict)
    _sums: dict[LabelValues, float] = field(default_factory=dict)

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = [0] * (len(self.buckets) + 1)  # last slot is +Inf
            self._sums[key] = 0.0
        counts[bisect_left(self.buckets, value)] += 1
        self._sums[key] += value

    def count(self, **labels: str) -> int:
        return sum(self._counts.get(self._key(labels), ()))

    def render(self) -> list[str]:
        lines = self._header()
        for key in sorted(self._counts):
            cumulative = 0
            for bound, n in zip((*self.buckets, math.inf), self._counts[key], strict=True):
                cumulative += n
                le = "+Inf" if bound == math.inf else _fmt(bound)
                lines.append(
                    f"{self.name}_bucket{_labels((*self.labelnames, 'le'), (*key, le))} {cumulative}"
                )
            lines.append(f"{self.name}_sum{_labels(self.labelnames, key)} {_fmt(self._sums[key])}")
            lines.append(f"{self.name}_count{_labels(self.labelnames, key)} {cumulative}")
        return lines

    def _same_shape(self, other: _Metric) -> bool:
        return super()._same_shape(other) and isinstance(other, Histogram) and self.buckets == other.buckets


_M = TypeVar("_M", bound=_Metric)


class MetricsRegistry:
    """All metrics of one application, rendered in registration order."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Counter:
        return self._register(Counter(name, help, _check_labels(name, labelnames)))

    def gauge(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        *,
        collect: GaugeCollector | None = None,
    ) -> Gauge:
        return self._register(Gauge(name, help, _check_labels(name, labelnames), collect=collect))

    def histogram(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        ordered = tuple(sorted(float(b) for b in buckets))
        if not ordered or len(set(ordered)) != len(ordered) or math.inf in ordered:
            raise MetricError(f"{name}: buckets must be distinct finite bounds")
        return self._register(Histogram(name, help, _check_labels(name, labelnames), buckets=ordered))

    def get(self, name: str) -> _Metric | None:
        return self._metrics.get(name)

    async def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics.values():
            if isinstance(metric, Gauge):
                lines.extend(await metric.render_async())
            elif isinstance(metric, Counter | Histogram):
                lines.extend(metric.render())
        return "\n".join(lines) + "\n"

    def _register(self, metric: _M) -> _M:
        if not _NAME_RE.match(metric.name):
            raise MetricError(f"invalid metric name {metric.name!r}")
        existing = self._metrics.get(metric.name)
        if existing is None:
            self._metrics[metric.name] = metric
            return metric
        if not existing._same_shape(metric):
            raise MetricError(f"{metric.name} is already registered with a different type or labels")
        if isinstance(metric, Gauge) and metric.collect is not None:
            raise MetricError(f"{metric.name}: a computed gauge can only be registered once")
        return cast(_M, existing)


def _check_labels(name: str, labelnames: Sequence[str]) -> tuple[str, ...]:
    for label in labelnames:
        if not _LABEL_RE.match(label) or label.startswith("__") or label == "le":
            raise MetricError(f"{name}: invalid label name {label!r}")
    if len(set(labelnames)) != len(labelnames):
        raise MetricError(f"{name}: duplicate label names")
    return tuple(labelnames)


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    inner = ",".join(f'{n}="{_escape_value(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + inner + "}"


def _escape_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _fmt(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


# How processing one incident ended (the `outcome` of pitcrew_incidents_processed_total).
ProcessOutcome = Literal["ok", "failed", "skipped"]
PROCESS_OUTCOMES: tuple[ProcessOutcome, ...] = ("ok", "failed", "skipped")


def register_build_info(registry: MetricsRegistry, version: str) -> None:
    """`pitcrew_build_info{version="0.1.0"} 1`: the version running, joinable onto any other series."""
    registry.gauge("pitcrew_build_info", "pitcrew's version; the value is always 1.", ["version"]).set(
        1.0, version=version
    )


@dataclass(frozen=True)
class IntakeMetrics:
    """The intake's own metrics, registered once per app and shared by the handler and the workers."""

    webhooks_received: Counter
    webhooks_rejected: Counter
    webhook_duration: Histogram
    incident_processing: Histogram
    incident_processing_failures: Counter
    incidents_processed: Counter

    @classmethod
    def register(cls, registry: MetricsRegistry, rejection_reasons: Sequence[str]) -> IntakeMetrics:
        rejected = registry.counter(
            "pitcrew_webhooks_rejected_total",
            "Alertmanager webhooks refused, by reason; nothing of them was stored.",
            ["reason"],
        )
        rejected.preset(*({"reason": r} for r in rejection_reasons))
        processed = registry.counter(
            "pitcrew_incidents_processed_total",
            "Incidents whose processing ended, by outcome: ok (diagnosed), failed (no diagnosis: the "
            "cluster could not be read, or every retry failed), skipped (resolved before diagnosis).",
            ["outcome"],
        )
        processed.preset(*({"outcome": o} for o in PROCESS_OUTCOMES))
        return cls(
            webhooks_received=registry.counter(
                "pitcrew_webhooks_received_total", "Alertmanager webhook requests received."
            ),
            webhooks_rejected=rejected,
            webhook_duration=registry.histogram(
                "pitcrew_webhook_duration_seconds",
                "Time from receiving an Alertmanager webhook to answering it (commit included).",
                ["outcome"],
            ),
            incident_processing=registry.histogram(
                "pitcrew_incident_processing_duration_seconds",
                "Time a background worker spent processing one incident.",
                ["outcome"],
            ),
            incident_processing_failures=registry.counter(
                "pitcrew_incident_processing_failures_total",
                "Incident processing attempts that raised; the incident is retried with backoff.",
            ),
            incidents_processed=processed,
        )
