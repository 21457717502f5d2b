"""The /pitcrew grammar: every subcommand, and each malformed input gets a clear error."""

from __future__ import annotations

import pytest

from bot.model import ObjectRef
from bot.slack import commands as C


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", C.Help()),
        ("help", C.Help()),
        ("  STATUS ", C.Status()),
        ("diagnose", C.Diagnose()),
        ("diagnose monitoring", C.Diagnose(namespace="monitoring")),
        (
            "diagnose monitoring/StatefulSet/prometheus",
            C.Diagnose("monitoring", ObjectRef("StatefulSet", "prometheus", "monitoring")),
        ),
        ("validate", C.Validate()),
        ("validate monitoring", C.Validate("monitoring")),
        ("history", C.History(10)),
        ("history 3", C.History(3)),
        ("rollback 7", C.Rollback("7")),  # an incident, as `pitcrew rollback 7`
        ("rollback e-12", C.Rollback("e-12")),
        ("rollback b-4", C.Rollback("b-4")),
        ("silence 42 2h", C.Silence(42, 7200, "2h")),
        ("silence #42 1h30m", C.Silence(42, 5400, "1h30m")),
        ("summary", C.Summary()),
    ],
)
def test_parse(text: str, expected: C.Command) -> None:
    assert C.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("frobnicate", "unknown subcommand"),
        ("status now", "at most 0"),
        ("diagnose Monitoring", "not a namespace"),
        ("diagnose monitoring/StatefulSet", "not NAMESPACE/KIND/NAME"),
        ("diagnose a b", "at most 1"),
        ("history 0", "1 to 50"),
        ("history lots", "1 to 50"),
        ("rollback", "takes one"),
        ("rollback ../etc", "takes one"),
        ("rollback e-", "takes one"),
        ("silence 42", "incident id and a duration"),
        ("silence x 2h", "not an incident id"),
        ("silence 42 forever", "not a duration"),
        ("silence 42 10s", "shorter than a minute"),
        ("silence 42 31d", "longer than 30 days"),
    ],
)
def test_malformed(text: str, message: str) -> None:
    with pytest.raises(C.CommandError, match=message):
        C.parse(text)


def test_usage_names_every_subcommand() -> None:
    text = C.usage("/crew")
    for sub in ("help", "status", "diagnose", "validate", "history", "rollback", "silence", "summary"):
        assert f"/crew {sub}" in text
