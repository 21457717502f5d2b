"""Typed configuration: YAML -> frozen dataclasses, secrets from the environment.

The loader is generic: it walks each dataclass's fields and type hints, so adding an option is adding
a field (with a default) to the owning section's dataclass and a commented line to
config.example.yaml. Supported field types: str, int, float, bool, Literal[...], enums, X | None,
unions of those, tuple[X, ...] / list[X], Mapping[str, X] / dict[str, X], nested dataclasses, and
`Secret`.

Rules:
- unknown keys are errors, never ignored;
- every problem is reported (not just the first), each as "field.path: reason";
- a `Secret` field `foo` is written in YAML as `foo_env: ENV_VAR_NAME`; the loader reads the variable
  (a missing one is an error naming the variable, never showing a value). Secrets never sit in the file;
- a dataclass may define `validate(self) -> list[str]` returning problems relative to itself
  ("field: reason"); the loader prefixes them with the dataclass's path. `Config.validate` holds the
  cross-section rules.
"""

from __future__ import annotations

import dataclasses
import enum
import hmac
import os
import re
import types
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

# ---------------------------------------------------------------------------------------------
# Secrets and errors
# ---------------------------------------------------------------------------------------------


class Secret:
    """A secret string. str() and repr() are '***' so it cannot leak into logs or messages by accident;
    `.reveal()` gives the value to the one place that needs it."""

    __slots__ = ("_missing", "_value")

    def __init__(self, value: str) -> None:
        self._value = value
        self._missing: str | None = None

    @classmethod
    def unset(cls, where: str) -> Secret:
        """A secret whose variable is not set, loaded by a verb that does not need it (`history` with
        no Slack token): nothing fails until something reveals it, which raises ConfigError."""
        secret = cls("")
        secret._missing = where
        return secret

    @property
    def is_set(self) -> bool:
        return self._missing is None

    def reveal(self) -> str:
        if self._missing is not None:
            raise ConfigError([self._missing])
        return self._value

    def __str__(self) -> str:
        return "***"

    def __repr__(self) -> str:
        return "'***'"

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


class ConfigError(Exception):
    """The config cannot be used. `problems` holds one line per problem ("field.path: reason")."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        super().__init__(
            f"invalid config ({count} problem{'s' if count != 1 else ''}):\n" + "\n".join(problems)
        )


# ---------------------------------------------------------------------------------------------
# Small validation helpers for the sections' validate() methods
# ---------------------------------------------------------------------------------------------


def _positive(problems: list[str], name: str, value: float) -> None:
    if value <= 0:
        problems.append(f"{name}: must be greater than 0, got {value}")


def _at_least(problems: list[str], name: str, value: float, minimum: float) -> None:
    if value < minimum:
        problems.append(f"{name}: must be at least {minimum}, got {value}")


_URL_CREDENTIALS = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^\s/@]*:[^\s/@]*@")
_CREDENTIALS_PROBLEM = (
    "must not carry credentials (user:password@); secrets are not read from the config file"
)


def _url(problems: list[str], name: str, value: str | None) -> None:
    if value is not None and _URL_CREDENTIALS.match(value):
        # Not echoed: the URL would print the password wherever it is shown (checks, logs, links).
        problems.append(f"{name}: {_CREDENTIALS_PROBLEM}")
    elif value is not None and not re.match(r"^https?://[^\s/]+", value):
        problems.append(f"{name}: must be an http:// or https:// URL, got {value!r}")


def _unique(problems: list[str], name: str, values: Sequence[str], what: str) -> None:
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            problems.append(f"{name}[{index}].{what}: duplicate {what} {value!r}")
        seen.add(value)


# ---------------------------------------------------------------------------------------------
# Sections. Owners add fields to their own section (with a default) and to config.example.yaml.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerConfig:
    listen_host: str = "0.0.0.0"
    listen_port: int = 8080
    max_body_bytes: int = 1024 * 1024
    shutdown_timeout_seconds: float = 30.0

    def validate(self) -> list[str]:
        problems: list[str] = []
        if not 1 <= self.listen_port <= 65535:
            problems.append(f"listen_port: must be between 1 and 65535, got {self.listen_port}")
        _positive(problems, "max_body_bytes", self.max_body_bytes)
        _at_least(problems, "shutdown_timeout_seconds", self.shutdown_timeout_seconds, 0)
        return problems


@dataclass(frozen=True)
class LoggingConfig:
    format: Literal["plain", "json"] = "plain"
    level: Literal["debug", "info", "warning", "error"] = "info"


DEFAULT_STORE_PATH = "pitcrew.db"
_PG_SCHEMES = ("postgresql://", "postgres://")
# libpq parameters a URL may carry; `password` is not one of them (it comes from password_env).
_PG_URL_PARAMS = frozenset(
    {
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslpassword",
        "connect_timeout",
        "application_name",
        "target_session_attrs",
        "options",
        "server_settings",
    }
)


def postgres_url_problems(url: str) -> list[str]:
    """What is wrong with a PostgreSQL URL (`postgresql://USER@HOST[:PORT]/DB[?sslmode=...]`); [] if fine.
    A password in it (user:password@ or ?password=) is refused and never echoed."""
    import urllib.parse

    if _URL_CREDENTIALS.match(url):
        return [_CREDENTIALS_PROBLEM + "; set store.password_env"]
    if not url.startswith(_PG_SCHEMES):
        return [f"must be a postgresql://USER@HOST:PORT/DB URL, got {url!r}"]
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return [f"not a valid URL: {exc}"]
    params = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    if "password" in params:
        return ["must not carry a password (?password=); set store.password_env"]
    problems: list[str] = []
    if not parts.hostname:
        problems.append("needs a host (postgresql://USER@HOST:PORT/DB)")
    if not parts.username:
        problems.append("needs a user (postgresql://USER@HOST:PORT/DB)")
    if not parts.path.strip("/"):
        problems.append("needs a database name (postgresql://USER@HOST:PORT/DB)")
    if port is not None and not 1 <= port <= 65535:
        problems.append(f"port must be between 1 and 65535, got {port}")
    for key in sorted(params):
        if key not in _PG_URL_PARAMS:
            problems.append(f"unknown parameter {key!r} (known: {', '.join(sorted(_PG_URL_PARAMS))})")
    return problems


@dataclass(frozen=True)
class StoreConfig:
    """Either `path` (SQLite, one replica; the default) or `url` (PostgreSQL, any number of replicas)."""

    path: str | None = None
    synchronous: Literal["normal", "full"] = "normal"
    url: str | None = None
    password: Secret | None = None
    # PostgreSQL connection pool size per replica.
    pool_min_size: int = 1
    pool_max_size: int = 10

    @property
    def backend(self) -> Literal["sqlite", "postgresql"]:
        return "postgresql" if self.url is not None else "sqlite"

    @property
    def sqlite_path(self) -> str:
        """The SQLite file (the default when neither path nor url is set)."""
        return self.path if self.path is not None else DEFAULT_STORE_PATH

    def validate(self) -> list[str]:
        problems: list[str] = []
        if self.path is not None and self.url is not None:
            problems.append("path: set either path (SQLite) or url (PostgreSQL), not both")
        if self.path is not None and not self.path.strip():
            problems.append("path: must not be empty")
        if self.url is not None:
            problems.extend(f"url: {p}" for p in postgres_url_problems(self.url))
        elif self.password is not None:
            problems.append("password_env: only used with url (PostgreSQL); SQLite has no password")
        _at_least(problems, "pool_min_size", self.pool_min_size, 0)
        _at_least(problems, "pool_max_size", self.pool_max_size, max(1, self.pool_min_size))
        return problems


_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class HAConfig:
    """Several replicas on one PostgreSQL store. `enabled: true` is how a replica knows it may have
    peers: it then takes part in leader election (a coordination.k8s.io Lease) and refuses SQLite."""

    enabled: bool = False
    lease_name: str = "pitcrew-leader"
    # Default: pitcrew's own namespace (the service account's namespace file, or $POD_NAMESPACE).
    lease_namespace: str | None = None
    lease_duration_seconds: float = 15.0
    renew_interval_seconds: float = 5.0
    # This replica's name in the Lease and in claims (default: $POD_NAME, else the host name).
    identity: str | None = None

    def validate(self) -> list[str]:
        problems: list[str] = []
        if not _DNS_SUBDOMAIN.match(self.lease_name):
            problems.append(
                f"lease_name: must be a DNS subdomain name (a-z, 0-9, -, .), got {self.lease_name!r}"
            )
        if self.lease_namespace is not None and not _DNS_LABEL.match(self.lease_namespace):
            problems.append(f"lease_namespace: must be a namespace name, got {self.lease_namespace!r}")
        _at_least(problems, "lease_duration_seconds", self.lease_duration_seconds, 1)
        _positive(problems, "renew_interval_seconds", self.renew_interval_seconds)
        if self.renew_interval_seconds * 2 > self.lease_duration_seconds:
            # Two renewals must fit in a lease, or one slow API call loses leadership.
            problems.append(
                f"renew_interval_seconds: must be at most half of lease_duration_seconds"
                f" ({self.lease_duration_seconds:g}), got {self.renew_interval_seconds:g}"
            )
        if self.identity is not None and not self.identity.strip():
            problems.append("identity: must not be empty")
        return problems


@dataclass(frozen=True)
class WebhookConfig:
    """Alertmanager webhook auth: a bearer token and/or basic credentials (either passing is enough)."""

    bearer_token: Secret | None = None
    basic_username: str | None = None
    basic_password: Secret | None = None

    def validate(self) -> list[str]:
        problems: list[str] = []
        if self.basic_username is not None and self.basic_password is None:
            problems.append("basic_password_env: required when basic_username is set")
        if self.basic_password is not None and self.basic_username is None:
            problems.append("basic_username: required when basic_password_env is set")
        return problems

    @property
    def auth_configured(self) -> bool:
        return self.bearer_token is not None or self.basic_username is not None


@dataclass(frozen=True)
class WorkersConfig:
    concurrency: int = 4
    # Pending incidents are also looked for at this interval (besides the webhook's wake-up).
    poll_interval_seconds: float = 5.0
    # A failing incident is retried after retry_delay_seconds, doubling each time, at most
    # max_attempts times in all; then the failure is recorded on the incident.
    max_attempts: int = 5
    retry_delay_seconds: float = 2.0

    def validate(self) -> list[str]:
        problems: list[str] = []
        _at_least(problems, "concurrency", self.concurrency, 1)
        _positive(problems, "poll_interval_seconds", self.poll_interval_seconds)
        _at_least(problems, "max_attempts", self.max_attempts, 1)
        _positive(problems, "retry_delay_seconds", self.retry_delay_seconds)
        return problems


@dataclass(frozen=True)
class ClusterConfig:
    kubeconfig: str | None = None
    context: str | None = None
    # "auto": in-cluster service account if present, else kubeconfig.
    in_cluster: bool | Literal["auto"] = "auto"
    namespaces: tuple[str, ...] = ("monitoring",)
    request_timeout_seconds: float = 30.0
    log_tail_lines: int = 200
    log_concurrency: int = 8

    def validate(self) -> list[str]:
        problems: list[str] = []
        if not self.namespaces:
            problems.append("namespaces: at least one namespace is required")
        _positive(problems, "request_timeout_seconds", self.request_timeout_seconds)
        _at_least(problems, "log_tail_lines", self.log_tail_lines, 1)
        _at_least(problems, "log_concurrency", self.log_concurrency, 1)
        return problems


def _default_image_uids() -> Mapping[str, int]:
    return {"prometheus": 65534, "alertmanager": 65534, "loki": 10001, "grafana": 472}


@dataclass(frozen=True)
class DiagnosisConfig:
    oom_memory_factor: float = 1.5
    # image-name substring -> the uid its process runs as (for data directory ownership checks)
    image_uids: Mapping[str, int] = field(default_factory=_default_image_uids)

    def validate(self) -> list[str]:
        problems: list[str] = []
        if self.oom_memory_factor <= 1:
            problems.append(f"oom_memory_factor: must be greater than 1, got {self.oom_memory_factor}")
        for name, uid in self.image_uids.items():
            if uid < 0:
                problems.append(f"image_uids.{name}: must be a non-negative uid, got {uid}")
        return problems


@dataclass(frozen=True)
class RemediationConfig:
    backup_dir: str = "pitcrew-backups"
    rollback_on_failure: bool = False
    wait_ready_timeout_seconds: float = 300.0

    def validate(self) -> list[str]:
        problems: list[str] = []
        _positive(problems, "wait_ready_timeout_seconds", self.wait_ready_timeout_seconds)
        return problems


@dataclass(frozen=True)
class HostConfig:
    name: str
    address: str
    username: str
    client_key_file: str
    known_hosts_file: str
    port: int = 22
    # Host operations are allowed only under these paths.
    data_path_prefixes: tuple[str, ...] = ()
    # Kubernetes node names this host is.
    nodes: tuple[str, ...] = ()

    def validate(self) -> list[str]:
        problems: list[str] = []
        if not 1 <= self.port <= 65535:
            problems.append(f"port: must be between 1 and 65535, got {self.port}")
        # Host keys are always verified against this file (never accepted on first use).
        for key in ("name", "address", "username", "client_key_file", "known_hosts_file"):
            if not getattr(self, key).strip():
                problems.append(f"{key}: must not be empty")
        for index, prefix in enumerate(self.data_path_prefixes):
            if not prefix.startswith("/"):
                problems.append(f"data_path_prefixes[{index}]: must be an absolute path, got {prefix!r}")
        return problems


@dataclass(frozen=True)
class ValidationConfig:
    # Direct URLs; when unset, validation goes through the API server's service proxy.
    prometheus_url: str | None = None
    loki_url: str | None = None
    grafana_url: str | None = None
    grafana_token: Secret | None = None
    http_timeout_seconds: float = 10.0

    def validate(self) -> list[str]:
        problems: list[str] = []
        _url(problems, "prometheus_url", self.prometheus_url)
        _url(problems, "loki_url", self.loki_url)
        _url(problems, "grafana_url", self.grafana_url)
        _positive(problems, "http_timeout_seconds", self.http_timeout_seconds)
        return problems


@dataclass(frozen=True)
class SlackRoute:
    """Alerts matching every given matcher go to `channel`; the first matching route wins."""

    channel: str
    severity: str | None = None
    namespace: str | None = None
    alertname: str | None = None


@dataclass(frozen=True)
class ApproversConfig:
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    per_namespace: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    per_finding: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    two_for_critical: bool = False


@dataclass(frozen=True)
class SlackConfig:
    enabled: bool = False
    mode: Literal["http", "socket"] = "http"
    bot_token: Secret | None = None
    signing_secret: Secret | None = None
    app_token: Secret | None = None
    api_base_url: str = "https://slack.com/api/"
    command: str = "/pitcrew"
    default_channel: str | None = None
    routes: tuple[SlackRoute, ...] = ()
    approvers: ApproversConfig = field(default_factory=ApproversConfig)
    approval_expiry_seconds: float = 3600.0

    def validate(self) -> list[str]:
        problems: list[str] = []
        _url(problems, "api_base_url", self.api_base_url)
        if not self.command.startswith("/") or len(self.command) < 2:
            problems.append(f"command: must be a slash command like /pitcrew, got {self.command!r}")
        _positive(problems, "approval_expiry_seconds", self.approval_expiry_seconds)
        if self.enabled:
            if self.bot_token is None:
                problems.append("bot_token_env: required when slack is enabled")
            if self.mode == "http" and self.signing_secret is None:
                problems.append("signing_secret_env: required when slack is enabled in http mode")
            if self.mode == "socket" and self.app_token is None:
                problems.append("app_token_env: required when slack is enabled in socket mode")
            if self.default_channel is None:
                problems.append("default_channel: required when slack is enabled (where unrouted alerts go)")
        return problems


@dataclass(frozen=True)
class AlertmanagerConfig:
    # Alertmanager's base URL, for the silences API (v2) and silence links.
    url: str | None = None

    def validate(self) -> list[str]:
        problems: list[str] = []
        _url(problems, "url", self.url)
        return problems


@dataclass(frozen=True)
class ScheduleConfig:
    name: str
    cron: str
    timezone: str = "UTC"
    channel: str | None = None
    namespaces: tuple[str, ...] = ("monitoring",)
    missed_grace_seconds: float = 300.0

    def validate(self) -> list[str]:
        problems: list[str] = []
        if not self.cron.split():
            problems.append("cron: must not be empty")
        else:
            # Cron syntax is apscheduler's, checked by bot.cron (lazily: only schedules load apscheduler).
            from bot.cron import cron_problems

            problems.extend(cron_problems(self.cron, self.timezone))
        if not self.namespaces:
            problems.append("namespaces: list at least one namespace to summarize")
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            problems.append(f"timezone: unknown time zone {self.timezone!r}")
        _at_least(problems, "missed_grace_seconds", self.missed_grace_seconds, 0)
        return problems


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    diagnosis: DiagnosisConfig = field(default_factory=DiagnosisConfig)
    remediation: RemediationConfig = field(default_factory=RemediationConfig)
    hosts: tuple[HostConfig, ...] = ()
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    slack: SlackConfig = field(default_factory=SlackConfig)
    alertmanager: AlertmanagerConfig = field(default_factory=AlertmanagerConfig)
    schedules: tuple[ScheduleConfig, ...] = ()
    ha: HAConfig = field(default_factory=HAConfig)

    def validate(self) -> list[str]:
        """Rules spanning sections (each section checks itself)."""
        problems: list[str] = []
        if self.ha.enabled and self.store.url is None:
            problems.append(
                "ha.enabled: replicas need a shared PostgreSQL store (set store.url and store.password_env);"
                " SQLite is one replica's file, two replicas on it would run everything twice"
            )
        _unique(problems, "hosts", [h.name for h in self.hosts], "name")
        _unique(problems, "schedules", [s.name for s in self.schedules], "name")
        if self.slack.enabled:
            for index, schedule in enumerate(self.schedules):
                if schedule.channel is None and self.slack.default_channel is None:
                    problems.append(f"schedules[{index}].channel: required (slack has no default_channel)")
        return problems


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def load_config(
    path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None, secrets_required: bool = True
) -> Config:
    """Read, parse and validate a YAML config file; raises ConfigError listing every problem.

    `secrets_required=False` (CLI verbs that only read the store or the cluster): a secret whose
    variable is not set loads as `Secret.unset(...)`, an error only if something reveals it."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError([f"{name}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else name
        reason = "; ".join(part for part in (exc.context, exc.problem) if part)
        raise ConfigError([f"{where}: invalid YAML: {reason}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{name}: invalid YAML: {exc}"]) from None
    if data is None:
        raise ConfigError([f"{name}: the file is empty; expected a mapping of config sections"])
    if not isinstance(data, dict):
        raise ConfigError([f"{name}:1:1: expected a mapping of config sections, got {_describe_value(data)}"])
    return parse_config(data, env=os.environ if env is None else env, secrets_required=secrets_required)


def parse_config(
    mapping: Mapping[str, Any], *, env: Mapping[str, str] = os.environ, secrets_required: bool = True
) -> Config:
    """Build a Config from already-parsed data (tests, or YAML loaded elsewhere)."""
    ctx = _Context(env, secrets_required=secrets_required)
    result = _convert(Config, mapping, "", ctx)
    if ctx.problems or not isinstance(result, Config):
        raise ConfigError(ctx.problems or ["config: invalid"])
    return result


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    first_line: dict[str, int] = {}
    for key_node, _ in node.value:
        # Only scalar keys can repeat in a way worth reporting; others are rejected later as non-strings.
        if isinstance(key_node, yaml.ScalarNode):
            key = str(key_node.value)
            if key in first_line:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key!r} (first at line {first_line[key]})",
                    key_node.start_mark,
                )
            first_line[key] = key_node.start_mark.line + 1
    return dict(loader.construct_pairs(node))


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


# ---------------------------------------------------------------------------------------------
# The generic dataclass walker
# ---------------------------------------------------------------------------------------------


class _Invalid:
    """Marks a value that could not be converted (its problem is already recorded)."""


_INVALID = _Invalid()
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Context:
    def __init__(self, env: Mapping[str, str], *, secrets_required: bool = True) -> None:
        self.env = env
        self.secrets_required = secrets_required
        self.problems: list[str] = []

    def add(self, path: str, reason: str) -> None:
        self.problems.append(f"{path or 'config'}: {reason}")

    def scratch(self) -> _Context:
        return _Context(self.env, secrets_required=self.secrets_required)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


_hints_cache: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _hints_cache:
        _hints_cache[cls] = get_type_hints(cls)
    return _hints_cache[cls]


def _is_secret_type(tp: Any) -> bool:
    if tp is Secret:
        return True
    return get_origin(tp) in (Union, types.UnionType) and Secret in get_args(tp)


def _convert(tp: Any, value: Any, path: str, ctx: _Context) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        return _convert_union(tp, value, path, ctx)
    if origin is Literal:
        choices = get_args(tp)
        # bool is an int subclass: make `true` never match a Literal 1 and vice versa.
        if any(value == c and type(value) is type(c) for c in choices):
            return value
        ctx.add(
            path,
            f"expected one of {', '.join(_literal_text(c) for c in choices)}; got {_describe_value(value)}",
        )
        return _INVALID
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, value, path, ctx)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            names = ", ".join(str(m.value) for m in tp)
            ctx.add(path, f"expected one of {names}; got {_describe_value(value)}")
            return _INVALID
    if tp is bool:
        if isinstance(value, bool):
            return value
        ctx.add(path, f"expected boolean (true/false), got {_describe_value(value)}")
        return _INVALID
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        ctx.add(path, f"expected integer, got {_describe_value(value)}")
        return _INVALID
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        ctx.add(path, f"expected number, got {_describe_value(value)}")
        return _INVALID
    if tp is str:
        if isinstance(value, str):
            return value
        ctx.add(path, f"expected string, got {_describe_value(value)}")
        return _INVALID
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        return _convert_sequence(tp, origin, value, path, ctx)
    if origin in (dict, Mapping) or tp in (dict,):
        return _convert_mapping(tp, value, path, ctx)
    raise TypeError(f"config field {path}: type {tp!r} is not supported by the loader")


def _convert_union(tp: Any, value: Any, path: str, ctx: _Context) -> Any:
    args = get_args(tp)
    if value is None:
        if type(None) in args:
            return None
        ctx.add(path, f"expected {_describe_type(tp)}, got null")
        return _INVALID
    alternatives = [a for a in args if a is not type(None)]
    if len(alternatives) == 1:
        return _convert(alternatives[0], value, path, ctx)
    for alternative in alternatives:
        scratch = ctx.scratch()
        result = _convert(alternative, value, path, scratch)
        if not scratch.problems:
            return result
    ctx.add(path, f"expected {_describe_type(tp)}, got {_describe_value(value)}")
    return _INVALID


def _convert_sequence(tp: Any, origin: Any, value: Any, path: str, ctx: _Context) -> Any:
    if not isinstance(value, list):
        ctx.add(path, f"expected a list, got {_describe_value(value)}")
        return _INVALID
    args = get_args(tp)
    item_type = args[0] if args else Any
    items = [_convert(item_type, item, f"{path}[{index}]", ctx) for index, item in enumerate(value)]
    if any(item is _INVALID for item in items):
        return _INVALID
    return items if origin is list or tp is list else tuple(items)


def _convert_mapping(tp: Any, value: Any, path: str, ctx: _Context) -> Any:
    if not isinstance(value, dict):
        ctx.add(path, f"expected a mapping, got {_describe_value(value)}")
        return _INVALID
    args = get_args(tp)
    value_type = args[1] if len(args) == 2 else Any
    out: dict[str, Any] = {}
    ok = True
    for key, item in value.items():
        if not isinstance(key, str):
            ctx.add(path, f"keys must be strings, got {_describe_value(key)}")
            ok = False
            continue
        converted = _convert(value_type, item, _join(path, key), ctx)
        ok &= converted is not _INVALID
        out[key] = converted
    return out if ok else _INVALID


def _convert_dataclass(cls: type, value: Any, path: str, ctx: _Context) -> Any:
    if not isinstance(value, dict):
        ctx.add(path, f"expected a mapping, got {_describe_value(value)}")
        return _INVALID
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    # YAML key -> dataclass field; a Secret field `x` is spelled `x_env` (the variable's name).
    keys = {(f"{name}_env" if _is_secret_type(hints[name]) else name): name for name in fields}
    # Unknown keys are reported but do not stop the section from being built and checked: only a
    # field whose value failed to convert does (its value rules would run on a made-up default).
    for key in value:
        if not isinstance(key, str):
            ctx.add(path, f"keys must be strings, got {_describe_value(key)}")
        elif key not in keys:
            if key in fields:  # a secret written inline
                ctx.add(
                    _join(path, key),
                    f"secrets are not read from the config file; set {key}_env to the name of an "
                    "environment variable holding it",
                )
            else:
                ctx.add(_join(path, key), f"unknown key{_suggestion(key, keys)}")
    kwargs: dict[str, Any] = {}
    missing = False
    for key, name in keys.items():
        f = fields[name]
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if key not in value:
            if not has_default:
                ctx.add(_join(path, key), "required")
                missing = True
            continue
        if _is_secret_type(hints[name]):
            kwargs[name] = _resolve_secret(hints[name], value[key], _join(path, key), ctx)
        else:
            kwargs[name] = _convert(hints[name], value[key], _join(path, key), ctx)
    if missing or any(v is _INVALID for v in kwargs.values()):
        return _INVALID
    instance = cls(**kwargs)
    validate: Callable[[], list[str]] | None = getattr(instance, "validate", None)
    if validate is not None:
        for problem in validate():
            ctx.problems.append(_join(path, problem) if path else problem)
    return instance


def _resolve_secret(tp: Any, value: Any, path: str, ctx: _Context) -> Any:
    if value is None:
        if tp is not Secret:  # Secret | None: explicitly unset
            return None
        ctx.add(path, "expected the name of an environment variable, got null")
        return _INVALID
    if not isinstance(value, str) or not _ENV_NAME.match(value):
        # The value is not echoed: a secret pasted here by mistake must not reach logs or CI output.
        got = "a string that is not a variable name" if isinstance(value, str) else _describe_value(value)
        ctx.add(path, f"expected the name of an environment variable (letters, digits, _), got {got}")
        return _INVALID
    secret = ctx.env.get(value)
    if secret is None and not ctx.secrets_required:
        return Secret.unset(f"{path}: environment variable {value} is not set")
    if secret is None:
        ctx.add(path, f"environment variable {value} is not set")
        return _INVALID
    if not secret:
        ctx.add(path, f"environment variable {value} is empty")
        return _INVALID
    return Secret(secret)


def _suggestion(key: str, known: Mapping[str, str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]}?)" if close else f" (known keys: {', '.join(sorted(known))})"


def _literal_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _describe_type(tp: Any) -> str:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        parts = [_describe_type(a) for a in get_args(tp) if a is not type(None)]
        return " or ".join(parts)
    if origin is Literal:
        return "one of " + ", ".join(_literal_text(c) for c in get_args(tp))
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if tp in names:
        return names[tp]
    if origin in (list, tuple, Sequence):
        return "a list"
    if origin in (dict, Mapping):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _describe_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string {shown!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
