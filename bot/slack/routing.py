"""Which channel an incident goes to: the first matching route, else the default channel. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bot.model import Incident


class RouteLike(Protocol):
    """A config route: each set field must equal the incident's value; unset fields match anything."""

    @property
    def severity(self) -> str | None: ...
    @property
    def namespace(self) -> str | None: ...
    @property
    def alertname(self) -> str | None: ...
    @property
    def channel(self) -> str: ...


def route_matches(route: RouteLike, incident: Incident) -> bool:
    wanted = (
        (route.severity, incident.severity),
        (route.namespace, incident.namespace),
        (route.alertname, incident.alertname),
    )
    return all(want is None or want == have for want, have in wanted)


def choose_channel(routes: Sequence[RouteLike], default_channel: str, incident: Incident) -> str:
    for route in routes:
        if route_matches(route, incident):
            return route.channel
    return default_channel
