"""The Slack part of the configuration, as the Slack code uses it (secrets revealed once, here).

`settings_from_config` is the only place that reads `config.slack` / `config.alertmanager`, so the
rest of `bot/slack/` and its tests depend on this small frozen type, not on the whole Config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from bot.slack.approvers import ApprovalPolicy, ApproverRule

if TYPE_CHECKING:
    from bot.config import Config

DEFAULT_API_BASE_URL = "https://slack.com/api/"


@dataclass(frozen=True)
class Route:
    channel: str
    severity: str | None = None
    namespace: str | None = None
    alertname: str | None = None


@dataclass(frozen=True)
class SlackSettings:
    bot_token: str = field(repr=False)
    signing_secret: str = field(repr=False)
    default_channel: str
    mode: Literal["http", "socket"] = "http"
    app_token: str | None = field(default=None, repr=False)
    api_base_url: str = DEFAULT_API_BASE_URL
    command: str = "/pitcrew"
    routes: tuple[Route, ...] = ()
    policy: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    approval_expiry_seconds: float = 3600.0
    alertmanager_url: str = ""
    group_cache_seconds: float = 60.0
    prometheus_url: str = ""  # when set, the thread gets the alert's graph (validation.prometheus_url)

    def __post_init__(self) -> None:
        if not self.api_base_url.endswith("/"):
            # slack_sdk joins base_url and the method name without a separator.
            object.__setattr__(self, "api_base_url", self.api_base_url + "/")


def _rule(data: Any) -> ApproverRule:
    """A rule from `{users, groups}` (an object or mapping) or from a plain list of ids, where Slack's
    own id prefixes tell them apart: user groups (subteams) start with `S`, users with `U` or `W`."""
    if isinstance(data, Mapping):
        users, groups = data.get("users"), data.get("groups")
    elif isinstance(data, list | tuple | frozenset | set):
        ids = [str(i) for i in data]
        users = [i for i in ids if not i.startswith("S")]
        groups = [i for i in ids if i.startswith("S")]
    else:
        users, groups = getattr(data, "users", None), getattr(data, "groups", None)
    return ApproverRule(users=frozenset(users or ()), groups=frozenset(groups or ()))


def _reveal(secret: Any) -> str | None:
    if secret is None:
        return None
    reveal = getattr(secret, "reveal", None)
    return str(reveal()) if callable(reveal) else str(secret)


def settings_from_config(config: Config) -> SlackSettings:
    """Raises ValueError when Slack is enabled but a required secret is missing."""
    slack: Any = config.slack
    approvers: Any = slack.approvers
    bot_token = _reveal(slack.bot_token)
    signing_secret = _reveal(slack.signing_secret)
    app_token = _reveal(getattr(slack, "app_token", None))
    if not bot_token:
        raise ValueError("slack.bot_token: not set (bot_token_env names an empty or missing variable)")
    if slack.mode == "http" and not signing_secret:
        raise ValueError("slack.signing_secret: required in http mode")
    if slack.mode == "socket" and not app_token:
        raise ValueError("slack.app_token: required in socket mode")
    alertmanager: Any = getattr(config, "alertmanager", None)
    return SlackSettings(
        bot_token=bot_token,
        signing_secret=signing_secret or "",
        app_token=app_token,
        default_channel=slack.default_channel,
        mode=slack.mode,
        api_base_url=slack.api_base_url or DEFAULT_API_BASE_URL,
        command=slack.command,
        routes=tuple(
            Route(
                channel=r.channel,
                severity=getattr(r, "severity", None),
                namespace=getattr(r, "namespace", None),
                alertname=getattr(r, "alertname", None),
            )
            for r in slack.routes
        ),
        policy=ApprovalPolicy(
            default=_rule(approvers),
            per_namespace={k: _rule(v) for k, v in dict(approvers.per_namespace or {}).items()},
            per_finding={k: _rule(v) for k, v in dict(approvers.per_finding or {}).items()},
            two_for_critical=bool(approvers.two_for_critical),
        ),
        approval_expiry_seconds=float(slack.approval_expiry_seconds),
        alertmanager_url=(getattr(alertmanager, "url", None) or "") if alertmanager is not None else "",
        prometheus_url=getattr(getattr(config, "validation", None), "prometheus_url", None) or "",
    )
