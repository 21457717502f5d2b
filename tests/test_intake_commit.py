"""Group commit of webhooks: concurrent payloads share one transaction, each stays all-or-nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.alertmanager import WebhookPayload
from bot.incidents import WebhookCommitter
from bot.model import Alert
from bot.store import IntakeResult, Store, StoreClosed


def payload(group: str, *pods: str) -> WebhookPayload:
    alerts = tuple(
        Alert(
            fingerprint=f"fp-{group}-{pod}",
            status="firing",
            labels={"alertname": group, "pod": pod},
            annotations={},
            starts_at="2026-11-24T10:00:00Z",
            ends_at=None,
        )
        for pod in pods
    )
    return WebhookPayload(
        version="4",
        receiver="pitcrew",
        status="firing",
        alerts=alerts,
        group_labels={"alertname": group},
        common_labels={"alertname": group},
        common_annotations={},
        external_url="http://am",
        group_key=f"{{}}:{{alertname={group!r}}}",
        truncated_alerts=0,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(str(tmp_path / "pitcrew.db"))
    yield opened
    await opened.close()


async def test_one_bad_payload_in_a_batch_does_not_take_the_others_down(store: Store) -> None:
    # A payload the store cannot encode (it bypassed the parser, which would refuse it).
    bad = payload("Bad", "pod-\ud800")
    results = await store.record_webhooks([payload("A", "a-0"), bad, payload("B", "b-0", "b-1")])
    assert isinstance(results[0], IntakeResult) and results[0].created
    assert isinstance(results[1], UnicodeEncodeError)
    assert isinstance(results[2], IntakeResult) and results[2].created
    incidents = {i.alertname: i for i in await store.list_incidents()}
    assert set(incidents) == {"A", "B"}  # nothing of the bad payload, all of the others
    assert len(incidents["B"].alerts) == 2


async def test_the_same_group_twice_in_one_batch_is_one_incident(store: Store) -> None:
    results = await store.record_webhooks(
        [payload("A", "a-0"), payload("A", "a-0", "a-1"), payload("A", "a-0")]
    )
    assert all(isinstance(r, IntakeResult) for r in results)
    ids = {r.incident_id for r in results if isinstance(r, IntakeResult)}
    assert len(ids) == 1
    assert [(r.created, r.changed) for r in results if isinstance(r, IntakeResult)] == [
        (True, True),
        (False, True),
        (False, False),
    ]
    (incident,) = await store.list_incidents()
    assert sorted(a.fingerprint for a in incident.alerts) == ["fp-A-a-0", "fp-A-a-1"]


async def test_concurrent_commits_are_coalesced_and_each_gets_its_own_result(store: Store) -> None:
    committer = WebhookCommitter(store, max_batch=8)
    payloads = [payload(f"G{n}", "p") for n in range(40)] + [payload("Bad", "\udc00")]
    outcomes = await asyncio.gather(*(committer.commit(p) for p in payloads), return_exceptions=True)
    assert isinstance(outcomes[-1], UnicodeEncodeError)
    good = outcomes[:-1]
    assert all(isinstance(o, IntakeResult) and o.created for o in good)
    assert len({o.incident_id for o in good if isinstance(o, IntakeResult)}) == 40
    assert len(await store.list_incidents(limit=100)) == 40
    await committer.close()


async def test_commit_failure_fails_every_waiting_request(store: Store) -> None:
    committer = WebhookCommitter(store)
    await store.close()
    outcomes = await asyncio.gather(
        *(committer.commit(payload(f"G{n}", "p")) for n in range(3)), return_exceptions=True
    )
    assert all(isinstance(o, StoreClosed) for o in outcomes)
