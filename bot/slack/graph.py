"""The alert's graph: its expression (from the alert's generatorURL, `g0.expr`) over the last hour,
with the threshold line where the expression states one (`… > 0.9`), as a PNG for the thread.

Reading the expression and the threshold is pure. Drawing uses matplotlib's Agg backend (no display,
no pyplot global state): a well-kept, widely packaged plotting library that writes a PNG directly.
It is imported only when a graph is drawn, so a pitcrew that never draws one never loads it.
"""

from __future__ import annotations

import io
import re
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

from bot.prometheus import Series

WINDOW_SECONDS = 3600.0
POINTS = 240  # one point every 15 s over the hour
MAX_LINES = 8  # series drawn; the rest are counted in the title
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_COMPARISON = re.compile(
    r"^(?P<lhs>.+?)\s*(?P<op>>=|<=|==|!=|>|<)\s*(?:bool\s+)?"
    r"(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$",
    re.DOTALL,
)
_PAIRS = {"(": ")", "[": "]", "{": "}"}


@dataclass(frozen=True, slots=True)
class Threshold:
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


@dataclass(frozen=True, slots=True)
class GraphQuery:
    expr: str  # what to draw: the alert's expression without its final comparison
    threshold: Threshold | None


def expr_from_generator_url(url: str) -> str | None:
    """The PromQL expression of a Prometheus graph link (`…/graph?g0.expr=…`), or None."""
    if not url:
        return None
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    values = query.get("g0.expr") or []
    expr = values[0].strip() if values else ""
    return expr or None


def _balanced(text: str) -> bool:
    """Whether every bracket in `text` is closed (outside string literals)."""
    stack: list[str] = []
    quote: str | None = None
    escaped = False
    for ch in text:
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
        elif ch in "\"'`":
            quote = ch
        elif ch in _PAIRS:
            stack.append(_PAIRS[ch])
        elif ch in ")]}" and (not stack or stack.pop() != ch):
            return False
    return not stack and quote is None


def graph_query(expr: str) -> GraphQuery:
    """Split a trailing top-level comparison with a number (`rate(x[5m]) > 0.9`): the left side is
    drawn (the comparison alone would only return the points past the threshold), the number is
    the threshold line. Anything else is drawn as it is, without a line."""
    match = _COMPARISON.match(expr.strip())
    if match and _balanced(match.group("lhs")):
        lhs = match.group("lhs").strip()
        if lhs.startswith("(") and lhs.endswith(")") and _balanced(lhs[1:-1]):
            lhs = lhs[1:-1].strip()
        return GraphQuery(lhs, Threshold(match.group("op"), float(match.group("num"))))
    return GraphQuery(expr.strip(), None)


def step_for(window_seconds: float) -> float:
    return max(1.0, round(window_seconds / POINTS))


def _label(series: Series, distinguishing: Sequence[str]) -> str:
    parts = [f"{k}={series.labels[k]}" for k in distinguishing if k in series.labels]
    return ", ".join(parts)[:60] or series.labels.get("__name__", "value")


def render_png(
    series: Sequence[Series],
    *,
    title: str,
    threshold: Threshold | None,
    start: float,
    end: float,
    marker_at: float | None = None,
    marker_label: str = "",
) -> bytes:
    """The series as a PNG (800×320): lines, the threshold dashed, an optional vertical marker."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    drawn = [s for s in series if s.points][:MAX_LINES]
    keys = sorted({k for s in drawn for k in s.labels})
    distinguishing = [k for k in keys if len({s.labels.get(k) for s in drawn}) > 1] or keys[:2]
    figure = Figure(figsize=(8, 3.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for s in drawn:
        xs = [(t - end) / 60 for t, _ in s.points]
        axes.plot(xs, [v for _, v in s.points], linewidth=1.4, label=_label(s, distinguishing))
    if threshold is not None:
        axes.axhline(
            threshold.value, color="#d62728", linestyle="--", linewidth=1.2, label=f"threshold {threshold}"
        )
    if marker_at is not None and start <= marker_at <= end:
        axes.axvline((marker_at - end) / 60, color="#2ca02c", linewidth=1.2, label=marker_label or None)
    more = len([s for s in series if s.points]) - len(drawn)
    heading = title + (f" (+{more} series not drawn)" if more > 0 else "")
    axes.set_title(heading[:110], fontsize=10, loc="left")
    axes.set_xlim((start - end) / 60, 0)
    axes.set_xlabel(f"minutes before {time.strftime('%H:%M UTC', time.gmtime(end))}", fontsize=8)
    axes.grid(True, alpha=0.3)
    axes.tick_params(labelsize=8)
    if drawn or threshold is not None:
        axes.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()
