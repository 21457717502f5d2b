"""Logging fixtures: tests that call configure_logging (directly or through `pitcrew serve`) must not
leave pitcrew's handler on the root logger, or later tests log into a closed capture stream."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
