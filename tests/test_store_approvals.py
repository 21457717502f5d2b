"""Store: approval decisions and the audit log."""

from __future__ import annotations

import pytest

from bot.store import NotFound, Store
from tests.support.store import FakeClock, new_incident

# Every test on both backends, unless it says otherwise (tests/support/store.py).
pytestmark = pytest.mark.store_backends("sqlite", "postgresql")


async def test_decisions_round_trip_in_order(tmp_store: Store, store_clock: FakeClock) -> None:
    iid = await new_incident(tmp_store)
    await tmp_store.record_decision(iid, "U1", "alice", "approve", None)
    store_clock.advance(1)
    await tmp_store.record_decision(iid, "U2", "bob", "reject", "not during the release")
    decisions = await tmp_store.list_decisions(iid)
    assert [(d.user_name, d.decision, d.reason) for d in decisions] == [
        ("alice", "approve", None),
        ("bob", "reject", "not during the release"),
    ]
    assert decisions[1].at == store_clock.now and decisions[0].incident_id == iid
    with pytest.raises(ValueError, match="decision must be one of approve, reject"):
        await tmp_store.record_decision(iid, "U1", "alice", "maybe", None)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        await tmp_store.record_decision(999, "U1", "alice", "approve", None)


async def test_audit_round_trip_and_limit(tmp_store: Store, store_clock: FakeClock) -> None:
    iid = await new_incident(tmp_store)
    for n in range(5):
        store_clock.advance(1)
        await tmp_store.audit("alice", f"step-{n}", incident_id=iid, execution_id=7, detail=f"d{n}")
    await tmp_store.audit("pitcrew", "unrelated")
    entries = await tmp_store.list_audit(incident_id=iid)
    assert [e.action for e in entries] == [f"step-{n}" for n in range(5)]
    assert (entries[0].actor, entries[0].execution_id, entries[0].detail) == ("alice", 7, "d0")
    latest = await tmp_store.list_audit(incident_id=iid, limit=2)
    assert [e.action for e in latest] == ["step-3", "step-4"]  # the latest two, oldest first
    everything = await tmp_store.list_audit()
    assert everything[-1].action == "unrelated" and everything[-1].incident_id is None
    assert len(everything) == 6
