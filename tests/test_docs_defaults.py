"""The numbers README.md states for config options are the config's real defaults (or, where it says
so, deploy/config.yaml's values): a default changed in bot/config.py fails here until the README says it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from bot.config import Config

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")

# "| `server.listen_port` | 8080 |": the README's table of defaults.
TABLE_ROW = re.compile(r"^\| `((?:[a-z_]+\.)+[a-z_]+)` \| `?([^`|( ]+)`?[^|]*\|$", re.M)
# "`server.shutdown_timeout_seconds` (20 s in `deploy/config.yaml`; default 30 s)" and the like.
INLINE = re.compile(
    r"`((?:[a-z_]+\.)+[a-z_]+)` \((?:default:? )?([0-9][0-9.,]*)(?: s| MiB)?( in `deploy/config\.yaml`)?"
    r"(?:; default ([0-9][0-9.,]*)(?: s)?)?"
)


# Options whose default is computed (None in the dataclass means "the built-in default").
EFFECTIVE = {"store.path": lambda config: config.store.sqlite_path}


def _lookup(root: Any, dotted: str) -> Any:
    if isinstance(root, Config) and dotted in EFFECTIVE:
        return EFFECTIVE[dotted](root)
    value = root
    for part in dotted.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return value


def _same(stated: str, actual: Any) -> bool:
    if isinstance(actual, tuple | list):
        return stated == ",".join(str(v) for v in actual)
    if isinstance(actual, bool | str):
        return stated == str(actual)
    return float(stated.replace(",", "")) == float(actual)


def test_the_readme_table_of_defaults_is_the_config_defaults() -> None:
    rows = TABLE_ROW.findall(README)
    assert len(rows) >= 8, "the README's table of defaults is gone"
    wrong = [
        (key, stated, _lookup(Config(), key))
        for key, stated in rows
        if not _same(stated, _lookup(Config(), key))
    ]
    assert wrong == []


def test_numbers_stated_inline_for_options_are_true() -> None:
    deploy = yaml.safe_load((REPO / "deploy" / "config.yaml").read_text(encoding="utf-8"))
    mentions = INLINE.findall(README)
    assert any(key == "server.shutdown_timeout_seconds" for key, *_ in mentions)
    for key, stated, in_deploy, default in mentions:
        source = deploy if in_deploy else Config()
        assert _same(stated, _lookup(source, key)), (
            key,
            stated,
            "deploy/config.yaml" if in_deploy else "default",
        )
        if default:
            assert _same(default, _lookup(Config(), key)), (key, default, "default")


def test_the_documented_grace_period_outlasts_the_shutdown_timeout() -> None:
    # README: "inside the pod's 30 s grace period" — aiohttp's timeout plus the 5 s cleanup margin.
    deployment = yaml.safe_load((REPO / "deploy" / "deployment.yaml").read_text(encoding="utf-8"))
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert f"inside the pod's {grace} s" in README.replace("\n", " ")
    deploy = yaml.safe_load((REPO / "deploy" / "config.yaml").read_text(encoding="utf-8"))
    assert deploy["server"]["shutdown_timeout_seconds"] + 5 < grace
