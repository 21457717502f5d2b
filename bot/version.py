"""pitcrew's version, as installed (pyproject.toml's `version`), for `--version` and /metrics."""

from __future__ import annotations

from functools import cache


@cache
def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("pitcrew")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"
