"""Store: webhook intake (grouping, dedup, resolution, re-firing, idempotent re-delivery, atomicity),
listing, diagnosis claims and work states."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from bot.model import (
    Finding,
    IncidentStatus,
    JsonPatchOp,
    ObjectRef,
    PatchStep,
    Plan,
    Severity,
    WorkState,
)
from bot.store import MIGRATIONS, Store
from tests.support.store import INTEGRITY_ERRORS, FakeClock, make_alert, make_payload

# Every test on both backends, unless it says otherwise (tests/support/store.py).
pytestmark = pytest.mark.store_backends("sqlite", "postgresql")


Opener = Callable[..., Awaitable[Store]]


def _finding() -> Finding:
    target = ObjectRef("StatefulSet", "prometheus", "monitoring")
    return Finding(
        code="prometheus-storage-permission",
        severity=Severity.CRITICAL,
        summary="Prometheus cannot open /prometheus/lock",
        objects=(target,),
        evidence=("open /prometheus/lock: permission denied",),
        plan=Plan(
            steps=(
                PatchStep(
                    target=target,
                    ops=(JsonPatchOp("add", "/spec/template/spec/securityContext/fsGroup", 65534),),
                    description="set fsGroup",
                ),
            ),
            validation=("prometheus-ready",),
        ),
    )


async def test_one_incident_per_group_key_with_its_alerts(tmp_store: Store) -> None:
    a = await tmp_store.record_webhook(make_payload("g1", [make_alert("a"), make_alert("b")]))
    b = await tmp_store.record_webhook(make_payload("g2", [make_alert("a")]))
    assert a.created and a.changed and a.pending
    assert b.created and b.incident_id != a.incident_id

    incident = await tmp_store.get_incident_by_group_key("g1")
    assert incident is not None and incident.id == a.incident_id
    assert incident.status is IncidentStatus.FIRING
    assert incident.work_state is WorkState.PENDING
    assert [x.fingerprint for x in incident.alerts] == ["a", "b"]
    assert incident.alerts[0] == make_alert("a")
    assert incident.common_labels == {"namespace": "monitoring", "severity": "critical"}
    assert incident.receiver == "pitcrew" and incident.external_url == "http://alertmanager.example:9093"
    assert await tmp_store.get_incident_by_group_key("nope") is None
    assert await tmp_store.get_incident(9999) is None


@pytest.mark.store_backends("sqlite")  # SQLite's own mechanics; PostgreSQL: test_store_postgres.py
async def test_renotification_adds_new_alerts_and_updates_known_fingerprints(
    tmp_store: Store, store_clock: FakeClock
) -> None:
    first = await tmp_store.record_webhook(make_payload("g1", [make_alert("a")]))
    store_clock.advance(60)
    updated_a = make_alert("a", annotations={"summary": "now with more detail"})
    second = await tmp_store.record_webhook(make_payload("g1", [updated_a, make_alert("b")]))
    assert second.incident_id == first.incident_id
    assert not second.created and second.changed

    incident = await tmp_store.get_incident(first.incident_id)
    assert incident is not None
    assert [x.fingerprint for x in incident.alerts] == ["a", "b"]  # not duplicated
    assert incident.alerts[0].annotations == {"summary": "now with more detail"}
    assert incident.updated_at == store_clock.now
    with sqlite3.connect(tmp_store.path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM alerts").fetchone()[0] == 2


async def test_identical_redelivery_changes_nothing(tmp_store: Store, store_clock: FakeClock) -> None:
    payload = make_payload("g1", [make_alert("a"), make_alert("b", "resolved")])
    first = await tmp_store.record_webhook(payload)
    before = await tmp_store.get_incident(first.incident_id)
    store_clock.advance(120)
    again = await tmp_store.record_webhook(payload)
    assert again == dataclasses.replace(first, created=False, changed=False, pending=False)
    assert await tmp_store.get_incident(first.incident_id) == before


async def test_incident_resolves_when_every_alert_is_resolved(tmp_store: Store) -> None:
    result = await tmp_store.record_webhook(make_payload("g1", [make_alert("a"), make_alert("b")]))
    await tmp_store.set_work_state(result.incident_id, WorkState.DIAGNOSED)

    partial = await tmp_store.record_webhook(
        make_payload("g1", [make_alert("a", "resolved"), make_alert("b")])
    )
    incident = await tmp_store.get_incident(result.incident_id)
    assert partial.changed and not partial.pending
    assert incident is not None and incident.status is IncidentStatus.FIRING
    assert [x.status for x in incident.alerts] == ["resolved", "firing"]
    assert incident.alerts[0].ends_at == "2026-11-24T11:00:00Z"

    # Alertmanager may send only the newly resolved alert; the earlier resolved one stays resolved.
    done = await tmp_store.record_webhook(make_payload("g1", [make_alert("b", "resolved")]))
    incident = await tmp_store.get_incident(result.incident_id)
    assert done.changed and not done.pending
    assert incident is not None and incident.status is IncidentStatus.RESOLVED
    # Resolution never requeues a diagnosis.
    assert incident.work_state is WorkState.DIAGNOSED


async def test_resolved_at_is_when_the_incident_resolved_and_is_cleared_when_it_fires_again(
    tmp_store: Store, store_clock: FakeClock
) -> None:
    result = await tmp_store.record_webhook(make_payload("g1", [make_alert("a"), make_alert("b")]))
    partial = await tmp_store.record_webhook(
        make_payload("g1", [make_alert("a", "resolved"), make_alert("b")])
    )
    assert partial.changed
    incident = await tmp_store.get_incident(result.incident_id)
    assert incident is not None and incident.resolved_at is None  # still firing

    store_clock.advance(60)
    resolved_time = store_clock.now
    await tmp_store.record_webhook(make_payload("g1", [make_alert("b", "resolved")]))
    incident = await tmp_store.get_incident(result.incident_id)
    assert incident is not None and incident.status is IncidentStatus.RESOLVED
    assert incident.resolved_at == resolved_time

    # Later activity on the resolved incident (a diagnosis, a change of its annotations) moves
    # updated_at, not the resolution time.
    store_clock.advance(600)
    await tmp_store.save_diagnosis(result.incident_id, [], dry_run_diff=None, error=None)
    changed = await tmp_store.record_webhook(
        make_payload("g1", [make_alert("b", "resolved", annotations={"summary": "edited"})])
    )
    assert changed.changed
    incident = await tmp_store.get_incident(result.incident_id)
    assert incident is not None and incident.updated_at == store_clock.now
    assert incident.resolved_at == resolved_time

    # Firing again clears it; resolving again sets the new time.
    store_clock.advance(60)
    await tmp_store.record_webhook(make_payload("g1", [make_alert("c")]))
    incident = await tmp_store.get_incident(result.incident_id)
    assert incident is not None and incident.status is IncidentStatus.FIRING
    assert incident.resolved_at is None
    store_clock.advance(60)
    await tmp_store.record_webhook(make_payload("g1", [make_alert("c", "resolved")], status="resolved"))
    incident = await tmp_store.get_incident(result.incident_id)
    assert incident is not None and incident.status is IncidentStatus.RESOLVED
    assert incident.resolved_at == store_clock.now


async def test_an_incident_first_seen_resolved_is_resolved_when_created(
    tmp_store: Store, store_clock: FakeClock
) -> None:
    result = await tmp_store.record_webhook(make_payload("g1", [make_alert("a", "resolved")]))
    firing = await tmp_store.record_webhook(make_payload("g2", [make_alert("a")]))
    incident = await tmp_store.get_incident(result.incident_id)
    assert incident is not None and incident.resolved_at == store_clock.now
    other = await tmp_store.get_incident(firing.incident_id)
    assert other is not None and other.resolved_at is None


@pytest.mark.store_backends("sqlite")  # SQLite's own mechanics; PostgreSQL: test_store_postgres.py
async def test_migration_2_gives_resolved_incidents_of_an_older_store_their_resolution_time(
    tmp_store_opener: Opener, tmp_store_path: Path
) -> None:
    await (await tmp_store_opener(migrations=MIGRATIONS[:1])).close()
    # Rows as the version-1 store wrote them: incident 2 resolved at 1060 (its alerts' last change)
    # and was diagnosed again at 5000; incident 1 still fires; incident 3 lost its alerts.
    with sqlite3.connect(tmp_store_path) as conn:
        conn.executemany(
            "INSERT INTO incidents (id, group_key, status, work_state, receiver, group_labels,"
            " common_labels, common_annotations, external_url, created_at, updated_at)"
            " VALUES (?, ?, ?, 'diagnosed', 'pitcrew', '{}', '{}', '{}', '', 1000, ?)",
            [(1, "g1", "firing", 1000), (2, "g2", "resolved", 5000), (3, "g3", "resolved", 3000)],
        )
        conn.executemany(
            "INSERT INTO alerts (incident_id, fingerprint, status, labels, annotations, starts_at,"
            " generator_url, first_seen, updated_at) VALUES (?, ?, ?, '{}', '{}', 's', '', 1000, ?)",
            [(1, "a", "firing", 1000), (2, "b", "resolved", 1060), (2, "c", "resolved", 1030)],
        )

    store = await tmp_store_opener()
    assert store.schema_version == len(MIGRATIONS)
    incidents = await store.list_incidents()
    assert {i.id: i.resolved_at for i in incidents} == {1: None, 2: 1060, 3: 3000}


async def test_new_firing_alert_refires_a_resolved_incident_and_requeues_it(tmp_store: Store) -> None:
    result = await tmp_store.record_webhook(make_payload("g1", [make_alert("a")]))
    await tmp_store.save_diagnosis(result.incident_id, [], dry_run_diff=None, error=None)
    await tmp_store.record_webhook(make_payload("g1", [make_alert("a", "resolved")]))

    refire = await tmp_store.record_webhook(
        make_payload("g1", [make_alert("a", "resolved"), make_alert("c")])
    )
    incident = await tmp_store.get_incident(result.incident_id)
    assert refire.changed and refire.pending
    assert incident is not None
    assert incident.status is IncidentStatus.FIRING
    assert incident.work_state is WorkState.PENDING


async def test_resolved_alert_firing_again_with_new_start_requeues(tmp_store: Store) -> None:
    result = await tmp_store.record_webhook(make_payload("g1", [make_alert("a")]))
    await tmp_store.save_diagnosis(result.incident_id, [], dry_run_diff=None, error=None)
    await tmp_store.record_webhook(make_payload("g1", [make_alert("a", "resolved")]))

    again = await tmp_store.record_webhook(
        make_payload("g1", [make_alert("a", starts_at="2026-11-24T12:00:00Z")])
    )
    incident = await tmp_store.get_incident(result.incident_id)
    assert again.changed and again.pending
    assert incident is not None and incident.status is IncidentStatus.FIRING
    assert incident.work_state is WorkState.PENDING
    assert len(incident.alerts) == 1 and incident.alerts[0].starts_at == "2026-11-24T12:00:00Z"


@pytest.mark.parametrize(
    "done", [WorkState.SUCCEEDED, WorkState.FAILED, WorkState.ROLLED_BACK, WorkState.REJECTED]
)
async def test_refire_after_pitcrew_finished_opens_a_new_incident(tmp_store: Store, done: WorkState) -> None:
    first = await tmp_store.record_webhook(make_payload("g1", [make_alert("a")]))
    await tmp_store.save_diagnosis(first.incident_id, [], dry_run_diff=None, error=None)
    execution = await tmp_store.start_execution(first.incident_id, "U1", ["monitoring/StatefulSet/p"], "{}")
    await tmp_store.finish_execution(execution.id, "succeeded", "fixed")
    assert await tmp_store.set_work_state(first.incident_id, done)
    await tmp_store.record_webhook(make_payload("g1", [make_alert("a", "resolved")]))

    # A week later the same group fires again (new startsAt): a new occurrence, fixable again.
    again = await tmp_store.record_webhook(
        make_payload("g1", [make_alert("a", starts_at="2026-12-01T08:00:00Z")])
    )
    assert again.created and again.pending and again.incident_id != first.incident_id
    current = await tmp_store.get_incident_by_group_key("g1")
    assert current is not None and current.id == again.incident_id
    assert current.status is IncidentStatus.FIRING and current.work_state is WorkState.PENDING
    old = await tmp_store.get_incident(first.incident_id)
    assert old is not None and old.status is IncidentStatus.RESOLVED and old.work_state is done
    assert old.group_key == f"g1 [closed incident {first.incident_id}]"
    second = await tmp_store.start_execution(again.incident_id, "U2", ["monitoring/StatefulSet/p"], "{}")
    assert second.incident_id == again.incident_id

    # Re-deliveries of the new firing, and a late copy of the old one, go to the new incident only.
    late = await tmp_store.record_webhook(make_payload("g1", [make_alert("a")]))
    assert late.incident_id == again.incident_id


async def test_refire_of_an_incident_nobody_acted_on_stays_the_same_incident(tmp_store: Store) -> None:
    first = await tmp_store.record_webhook(make_payload("g1", [make_alert("a")]))
    await tmp_store.save_diagnosis(first.incident_id, [], dry_run_diff=None, error=None)
    await tmp_store.record_webhook(make_payload("g1", [make_alert("a", "resolved")]))
    again = await tmp_store.record_webhook(
        make_payload("g1", [make_alert("a", starts_at="2026-12-01T08:00:00Z")])
    )
    assert again.incident_id == first.incident_id and not again.created and again.pending


async def test_late_firing_notice_for_an_already_resolved_period_is_ignored(tmp_store: Store) -> None:
    result = await tmp_store.record_webhook(make_payload("g1", [make_alert("a")]))
    await tmp_store.record_webhook(make_payload("g1", [make_alert("a", "resolved")]))
    late = await tmp_store.record_webhook(make_payload("g1", [make_alert("a")]))  # same startsAt
    incident = await tmp_store.get_incident(result.incident_id)
    assert not late.changed
    assert incident is not None and incident.status is IncidentStatus.RESOLVED


async def test_truncated_notification_follows_alertmanagers_group_status(tmp_store: Store) -> None:
    """With max_alerts, Alertmanager leaves alerts out (truncatedAlerts) but its status counts them all."""
    # Firing, though the one alert shown is resolved: some alert left out fires.
    first = await tmp_store.record_webhook(
        make_payload("g1", [make_alert("a", "resolved")], status="firing", truncated_alerts=2)
    )
    incident = await tmp_store.get_incident(first.incident_id)
    assert incident is not None and incident.status is IncidentStatus.FIRING
    await tmp_store.save_diagnosis(first.incident_id, [], dry_run_diff=None, error=None)

    # Later notifications show other alerts; the group fires on.
    await tmp_store.record_webhook(
        make_payload("g1", [make_alert("b"), make_alert("c")], status="firing", truncated_alerts=1)
    )
    # Resolved: every alert is, including "c", which this notification leaves out.
    done = await tmp_store.record_webhook(
        make_payload("g1", [make_alert("a", "resolved"), make_alert("b", "resolved")], truncated_alerts=1)
    )
    incident = await tmp_store.get_incident(first.incident_id)
    assert done.changed and not done.pending
    assert incident is not None and incident.status is IncidentStatus.RESOLVED
    assert {a.fingerprint: a.status for a in incident.alerts} == {
        "a": "resolved",
        "b": "resolved",
        "c": "resolved",
    }

    # A truncated firing notification for the resolved group: it fires again, so it is diagnosed again.
    again = await tmp_store.record_webhook(
        make_payload("g1", [make_alert("a", "resolved")], status="firing", truncated_alerts=3)
    )
    incident = await tmp_store.get_incident(first.incident_id)
    assert again.changed and again.pending
    assert incident is not None and incident.status is IncidentStatus.FIRING
    assert incident.work_state is WorkState.PENDING


async def test_resolved_notification_resolves_alerts_it_no_longer_lists(tmp_store: Store) -> None:
    """A resolved group is resolved as a whole, even if the notification about one alert was lost."""
    first = await tmp_store.record_webhook(make_payload("g1", [make_alert("a"), make_alert("b")]))
    done = await tmp_store.record_webhook(make_payload("g1", [make_alert("b", "resolved")]))
    incident = await tmp_store.get_incident(first.incident_id)
    assert done.changed and not done.pending
    assert incident is not None and incident.status is IncidentStatus.RESOLVED
    assert [a.status for a in incident.alerts] == ["resolved", "resolved"]


async def test_new_firing_alert_does_not_disturb_an_executing_incident(tmp_store: Store) -> None:
    result = await tmp_store.record_webhook(make_payload("g1", [make_alert("a")]))
    assert await tmp_store.set_work_state(result.incident_id, WorkState.EXECUTING)
    more = await tmp_store.record_webhook(make_payload("g1", [make_alert("a"), make_alert("b")]))
    incident = await tmp_store.get_incident(result.incident_id)
    assert more.changed and not more.pending
    assert incident is not None and incident.work_state is WorkState.EXECUTING
    assert len(incident.alerts) == 2


async def test_group_level_changes_are_stored_without_requeue(tmp_store: Store) -> None:
    result = await tmp_store.record_webhook(make_payload("g1", [make_alert("a")]))
    await tmp_store.set_work_state(result.incident_id, WorkState.DIAGNOSED)
    changed = await tmp_store.record_webhook(
        make_payload("g1", [make_alert("a")], common_annotations={"runbook": "x"}, truncated_alerts=3)
    )
    incident = await tmp_store.get_incident(result.incident_id)
    assert changed.changed and not changed.pending
    assert incident is not None and incident.common_annotations == {"runbook": "x"}
    assert incident.work_state is WorkState.DIAGNOSED


async def test_payload_failing_midway_stores_nothing_for_a_new_incident(tmp_store: Store) -> None:
    # The second alert violates NOT NULL (starts_at) after the incident and first alert were written.
    bad = dataclasses.replace(make_alert("b"), starts_at=None)  # type: ignore[arg-type]
    with pytest.raises(INTEGRITY_ERRORS):
        await tmp_store.record_webhook(make_payload("g1", [make_alert("a"), bad]))
    assert await tmp_store.get_incident_by_group_key("g1") is None
    assert await tmp_store.count_incidents() == {}  # and so no alert (they belong to an incident)
    # The store is still usable and the same group can be stored afterwards.
    ok = await tmp_store.record_webhook(make_payload("g1", [make_alert("a")]))
    assert ok.created


async def test_payload_failing_midway_leaves_an_existing_incident_untouched(
    tmp_store: Store, store_clock: FakeClock
) -> None:
    result = await tmp_store.record_webhook(make_payload("g1", [make_alert("a")]))
    await tmp_store.set_work_state(result.incident_id, WorkState.DIAGNOSED)
    before = await tmp_store.get_incident(result.incident_id)
    store_clock.advance(30)
    bad = dataclasses.replace(make_alert("z"), starts_at=None)  # type: ignore[arg-type]
    with pytest.raises(INTEGRITY_ERRORS):
        await tmp_store.record_webhook(
            make_payload(
                "g1", [make_alert("a", "resolved"), make_alert("b"), bad], common_annotations={"x": "y"}
            )
        )
    assert await tmp_store.get_incident(result.incident_id) == before


async def test_list_incidents_filters_and_orders_newest_first(
    tmp_store: Store, store_clock: FakeClock
) -> None:
    ids = []
    for index in range(4):
        store_clock.advance(10)
        ids.append((await tmp_store.record_webhook(make_payload(f"g{index}", [make_alert("a")]))).incident_id)
    store_clock.advance(10)
    await tmp_store.record_webhook(make_payload("g0", [make_alert("a", "resolved")]))  # updated now
    await tmp_store.set_work_state(ids[1], WorkState.DIAGNOSED)

    assert [i.id for i in await tmp_store.list_incidents()] == ids[::-1]
    assert [i.id for i in await tmp_store.list_incidents(limit=2)] == ids[:1:-1]
    assert [i.id for i in await tmp_store.list_incidents(status=IncidentStatus.RESOLVED)] == [ids[0]]
    firing = await tmp_store.list_incidents(status=IncidentStatus.FIRING, work_states=[WorkState.PENDING])
    assert [i.id for i in firing] == [ids[3], ids[2]]
    assert await tmp_store.list_incidents(work_states=[]) == []
    recent = await tmp_store.list_incidents(since=store_clock.now)
    assert {i.id for i in recent} == {ids[0], ids[1]}  # both were updated at the latest time
    assert all(len(i.alerts) == 1 for i in await tmp_store.list_incidents())


async def test_claim_pending_claims_each_incident_once(tmp_store: Store) -> None:
    ids = [
        (await tmp_store.record_webhook(make_payload(f"g{i}", [make_alert("a")]))).incident_id
        for i in range(3)
    ]
    assert await tmp_store.claim_pending(2) == ids[:2]
    assert await tmp_store.claim_pending(10) == ids[2:]
    assert await tmp_store.claim_pending(10) == []


@pytest.mark.store_backends("sqlite")  # SQLite's own mechanics; PostgreSQL: test_store_postgres.py
async def test_pending_incidents_are_found_again_after_reopening(tmp_store_opener: Opener) -> None:
    first = await tmp_store_opener()
    ids = [
        (await first.record_webhook(make_payload(f"g{i}", [make_alert("a")]))).incident_id for i in range(3)
    ]
    assert await first.claim_pending(10) == ids  # claimed, then the process "dies"
    await first.save_diagnosis(ids[0], [], dry_run_diff=None, error=None)
    await first.close()

    second = await tmp_store_opener()
    assert await second.claim_pending(10) == ids[1:]


async def test_a_claim_expires_after_its_ttl(tmp_store_opener: Opener, store_clock: FakeClock) -> None:
    store = await tmp_store_opener(claim_ttl_seconds=60)
    result = await store.record_webhook(make_payload("g1", [make_alert("a")]))
    assert await store.claim_pending(10) == [result.incident_id]
    store_clock.advance(59)
    assert await store.claim_pending(10) == []
    store_clock.advance(2)
    assert await store.claim_pending(10) == [result.incident_id]


async def test_save_diagnosis_stores_findings_and_marks_diagnosed(tmp_store: Store) -> None:
    result = await tmp_store.record_webhook(make_payload("g1", [make_alert("a")]))
    assert await tmp_store.claim_pending(1) == [result.incident_id]
    await tmp_store.save_diagnosis(
        result.incident_id, [_finding()], dry_run_diff="--- a\n+++ b\n", error=None
    )
    incident = await tmp_store.get_incident(result.incident_id)
    assert incident is not None
    assert incident.work_state is WorkState.DIAGNOSED
    assert incident.findings == (_finding(),)
    assert incident.dry_run_diff == "--- a\n+++ b\n"
    assert incident.diagnosis_error is None
    assert await tmp_store.claim_pending(10) == []


async def test_requeue_during_diagnosis_keeps_the_incident_pending(tmp_store: Store) -> None:
    result = await tmp_store.record_webhook(make_payload("g1", [make_alert("a")]))
    assert await tmp_store.claim_pending(1) == [result.incident_id]
    # A new firing alert arrives while the worker is diagnosing.
    await tmp_store.record_webhook(make_payload("g1", [make_alert("a"), make_alert("b")]))
    await tmp_store.save_diagnosis(result.incident_id, [_finding()], dry_run_diff=None, error=None)
    incident = await tmp_store.get_incident(result.incident_id)
    assert incident is not None and incident.work_state is WorkState.PENDING
    assert incident.findings == (_finding(),)
    assert await tmp_store.claim_pending(10) == [result.incident_id]


async def test_set_work_state_is_compare_and_set(tmp_store: Store) -> None:
    result = await tmp_store.record_webhook(make_payload("g1", [make_alert("a")]))
    iid = result.incident_id
    assert not await tmp_store.set_work_state(iid, WorkState.EXECUTING, expected=[WorkState.DIAGNOSED])
    assert await tmp_store.set_work_state(iid, WorkState.DIAGNOSED, expected=[WorkState.PENDING])
    assert await tmp_store.set_work_state(iid, WorkState.EXECUTING, expected=[WorkState.DIAGNOSED])
    assert not await tmp_store.set_work_state(iid, WorkState.EXECUTING, expected=[WorkState.DIAGNOSED])
    assert not await tmp_store.set_work_state(iid, WorkState.DIAGNOSED, expected=[])
    assert not await tmp_store.set_work_state(9999, WorkState.DIAGNOSED)
    incident = await tmp_store.get_incident(iid)
    assert incident is not None and incident.work_state is WorkState.EXECUTING
    # Setting PENDING requeues for diagnosis.
    assert await tmp_store.set_work_state(iid, WorkState.PENDING)
    assert await tmp_store.claim_pending(5) == [iid]
