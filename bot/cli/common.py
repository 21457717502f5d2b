"""What every CLI verb shares: loading --config (with --kubeconfig/--context applied), reporting a bad
config the same way, and a cluster whose API server has answered."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from bot.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from bot.cluster import Cluster

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def load_cli_config(args: argparse.Namespace) -> Config:
    """The config named by --config (defaults when absent), with --kubeconfig/--context applied."""
    # Secrets are needed only where revealed (the webhook token by serve, Slack's by the Slack app):
    # a CLI verb loads the config without them, and fails only if it must use one.
    config = load_config(args.config, secrets_required=False) if getattr(args, "config", None) else Config()
    overrides = {
        key: value
        for key, value in (
            ("kubeconfig", getattr(args, "kubeconfig", None)),
            ("context", getattr(args, "context", None)),
        )
        if value
    }
    if overrides:
        config = dataclasses.replace(config, cluster=dataclasses.replace(config.cluster, **overrides))
    return config


def report_config_error(verb: str, error: ConfigError) -> int:
    """Every CLI verb says why its --config is unusable the same way: one line per problem, on
    stderr, naming the verb. Returns the bad-input exit code."""
    for problem in error.problems:
        print(f"pitcrew {verb}: bad config: {problem}", file=sys.stderr)
    return EXIT_BAD_INPUT


@contextlib.asynccontextmanager
async def reachable_cluster(config: Config) -> AsyncIterator[Cluster]:
    """A `Cluster` for the CLI verbs, from the config's `cluster` section, whose API server has
    answered. Raises ClusterError (unloadable kubeconfig, API server down or refusing) before the
    verb reads anything, so it reports that instead of judging an empty cluster."""
    from bot.cluster import Cluster

    async with Cluster.from_config(config.cluster) as cluster:
        await cluster.require_reachable()
        yield cluster


def load_config_file(path: str) -> Config | None:
    """The config, or None after printing why not (one line per problem, on stdout, as
    `pitcrew check-config` prints `ok`)."""
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem)
        return None
    except OSError as exc:
        print(f"{path}: cannot read config file: {exc.strerror or exc}")
        return None


def store_must_exist(verb: str, config: Config, *, configured: bool) -> bool:
    """A verb that reads the store never creates it (opening SQLite would make an empty file, and its
    -wal/-shm, and then report "nothing recorded" about the wrong place). False after saying
    "no pitcrew store at PATH" on stderr."""
    if config.store.url is not None or os.path.exists(config.store.sqlite_path):
        return True
    hint = "" if configured else " (the default; --config names the service's config)"
    print(f"pitcrew {verb}: no pitcrew store at {config.store.sqlite_path}{hint}", file=sys.stderr)
    return False
