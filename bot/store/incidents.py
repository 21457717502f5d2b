"""Incidents and their alerts (SQLite): webhook intake, one transaction per notification, the work
state machine's compare-and-set, and the claims of pending incidents by workers.

Rules that live here, in SQL, so no caller can get them wrong: one open incident per Alertmanager
group (UNIQUE group_key), one row per alert fingerprint per incident; a group that fires again after
its incident resolved and pitcrew's work on it ended opens a new incident (the old one keeps a retired
key), so a recurring problem can be fixed again; a webhook is stored all-or-nothing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

from bot.model import Alert, Finding, Incident, IncidentStatus, WorkState, findings_dumps, findings_loads
from bot.store.records import WORK_DONE, IntakeResult, NotFound, group_status
from bot.store.sqlite import SqliteDatabase

if TYPE_CHECKING:
    from bot.alertmanager import WebhookPayload


def _json(mapping: Mapping[str, str]) -> str:
    # Canonical form, so "did it change?" is a string comparison.
    return json.dumps(dict(mapping), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_INCIDENT_COLUMNS = (
    "id, group_key, status, work_state, receiver, group_labels, common_labels, common_annotations, "
    "external_url, created_at, updated_at, findings, diagnosis_error, dry_run_diff, resolved_at"
)
_ALERT_COLUMNS = "incident_id, fingerprint, status, labels, annotations, starts_at, ends_at, generator_url"


def _alert_from_row(row: sqlite3.Row) -> Alert:
    return Alert(
        fingerprint=row["fingerprint"],
        status=row["status"],
        labels=json.loads(row["labels"]),
        annotations=json.loads(row["annotations"]),
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        generator_url=row["generator_url"],
    )


def _incident_from_row(row: sqlite3.Row, alerts: tuple[Alert, ...]) -> Incident:
    return Incident(
        id=row["id"],
        group_key=row["group_key"],
        status=IncidentStatus(row["status"]),
        work_state=WorkState(row["work_state"]),
        receiver=row["receiver"],
        group_labels=json.loads(row["group_labels"]),
        common_labels=json.loads(row["common_labels"]),
        common_annotations=json.loads(row["common_annotations"]),
        external_url=row["external_url"],
        alerts=alerts,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        findings=findings_loads(row["findings"]),
        diagnosis_error=row["diagnosis_error"],
        dry_run_diff=row["dry_run_diff"],
        resolved_at=row["resolved_at"],
    )


class SqliteIncidents(SqliteDatabase):
    """The incidents repository (`bot.store.interface.IncidentRepository`) on SQLite."""

    # -- intake ---------------------------------------------------------------------------------

    async def record_webhooks(self, payloads: Sequence[WebhookPayload]) -> list[IntakeResult | Exception]:
        return await self._run(self._record_webhooks, list(payloads))

    def _record_webhooks(self, payloads: list[WebhookPayload]) -> list[IntakeResult | Exception]:
        results: list[IntakeResult | Exception] = []
        with self._write():
            for payload in payloads:
                try:
                    results.append(self._record_webhook(payload))
                except Exception as exc:  # this payload rolled back to its savepoint; the others stand
                    results.append(exc)
        return results

    async def record_webhook(self, payload: WebhookPayload) -> IntakeResult:
        return await self._run(self._record_webhook, payload)

    @staticmethod
    def _is_new_occurrence(conn: sqlite3.Connection, row: sqlite3.Row, incoming: Iterable[Alert]) -> bool:
        if row["status"] != IncidentStatus.RESOLVED.value or row["work_state"] not in WORK_DONE:
            return False
        firing = [a for a in incoming if a.status == "firing"]
        if not firing:
            return False
        seen = {
            (r["fingerprint"], r["starts_at"])
            for r in conn.execute(
                "SELECT fingerprint, starts_at FROM alerts WHERE incident_id = ?", (row["id"],)
            )
        }
        # Same fingerprint and startsAt as an alert we already saw resolve: a late delivery, not a re-fire.
        return any((a.fingerprint, a.starts_at) not in seen for a in firing)

    def _record_webhook(self, payload: WebhookPayload) -> IntakeResult:
        now = self._clock()
        incident_fields = (
            payload.receiver,
            _json(payload.group_labels),
            _json(payload.common_labels),
            _json(payload.common_annotations),
            payload.external_url,
            payload.truncated_alerts,
        )
        # Last one wins if a payload repeats a fingerprint (Alertmanager does not, but be exact).
        incoming: dict[str, Alert] = {}
        for alert in payload.alerts:
            incoming[alert.fingerprint] = alert

        with self._write() as conn:
            row = conn.execute(
                "SELECT id, status, work_state, receiver, group_labels, common_labels, common_annotations,"
                " external_url, truncated_alerts FROM incidents WHERE group_key = ?",
                (payload.group_key,),
            ).fetchone()
            if row is not None and self._is_new_occurrence(conn, row, incoming.values()):
                # The group fires again after its incident was resolved and pitcrew's work on it ended
                # (fixed, failed, rolled back or rejected): that is a new occurrence, with its own
                # diagnosis, Slack message and approval. The closed incident keeps its history under
                # a retired key, so the group key stays unique for the open one.
                conn.execute(
                    "UPDATE incidents SET group_key = ? WHERE id = ?",
                    (f"{payload.group_key} [closed incident {row['id']}]", row["id"]),
                )
                row = None
            created = row is None
            if row is None:
                status = group_status(payload, (a.status for a in incoming.values()))
                cursor = conn.execute(
                    "INSERT INTO incidents (group_key, status, work_state, receiver, group_labels,"
                    " common_labels, common_annotations, external_url, truncated_alerts, created_at,"
                    " updated_at, resolved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        payload.group_key,
                        status.value,
                        WorkState.PENDING.value,
                        *incident_fields,
                        now,
                        now,
                        now if status is IncidentStatus.RESOLVED else None,
                    ),
                )
                incident_id = cast(int, cursor.lastrowid)
                stored: dict[str, sqlite3.Row] = {}
            else:
                incident_id = row["id"]
                stored = {
                    r["fingerprint"]: r
                    for r in conn.execute(
                        "SELECT id, fingerprint, status, labels, annotations, starts_at, ends_at,"
                        " generator_url FROM alerts WHERE incident_id = ?",
                        (incident_id,),
                    )
                }

            inserts: list[tuple[Any, ...]] = []
            updates: list[tuple[Any, ...]] = []
            statuses = {fp: r["status"] for fp, r in stored.items()}
            gained_firing = False
            for fingerprint, alert in incoming.items():
                fields = (
                    alert.status,
                    _json(alert.labels),
                    _json(alert.annotations),
                    alert.starts_at,
                    alert.ends_at,
                    alert.generator_url,
                )
                old = stored.get(fingerprint)
                if old is None:
                    inserts.append((incident_id, fingerprint, *fields, now, now))
                    gained_firing |= alert.status == "firing"
                    statuses[fingerprint] = alert.status
                    continue
                if (
                    old["status"] == "resolved"
                    and alert.status == "firing"
                    and old["starts_at"] == alert.starts_at
                ):
                    # A firing notice for the same firing period we already saw resolved: a delayed
                    # or re-ordered delivery, not a new firing (a re-fire has a new startsAt).
                    continue
                old_fields = (
                    old["status"],
                    old["labels"],
                    old["annotations"],
                    old["starts_at"],
                    old["ends_at"],
                    old["generator_url"],
                )
                if fields != old_fields:
                    updates.append((*fields, now, old["id"]))
                    gained_firing |= old["status"] == "resolved" and alert.status == "firing"
                    statuses[fingerprint] = alert.status
            # A resolved notification means the whole group is resolved (Alertmanager's status counts
            # every alert): alerts it no longer lists, or left out (truncatedAlerts), are resolved too.
            resolved_elsewhere: list[tuple[float, int]] = []
            if payload.status == "resolved":
                for fingerprint, old in stored.items():
                    if fingerprint not in incoming and statuses[fingerprint] == "firing":
                        resolved_elsewhere.append((now, old["id"]))
                        statuses[fingerprint] = "resolved"

            if inserts:
                conn.executemany(
                    f"INSERT INTO alerts ({_ALERT_COLUMNS}, first_seen, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    inserts,
                )
            if updates:
                conn.executemany(
                    "UPDATE alerts SET status = ?, labels = ?, annotations = ?, starts_at = ?, ends_at = ?,"
                    " generator_url = ?, updated_at = ? WHERE id = ?",
                    updates,
                )
            if resolved_elsewhere:
                conn.executemany(
                    "UPDATE alerts SET status = 'resolved', updated_at = ? WHERE id = ?", resolved_elsewhere
                )
            if created:
                return IntakeResult(incident_id, created=True, changed=True, pending=True)

            assert row is not None
            status = group_status(payload, statuses.values())
            old_incident_fields = (
                row["receiver"],
                row["group_labels"],
                row["common_labels"],
                row["common_annotations"],
                row["external_url"],
                row["truncated_alerts"],
            )
            changed = (
                bool(inserts or updates or resolved_elsewhere)
                or status != row["status"]
                or incident_fields != old_incident_fields
            )
            if not changed:
                return IntakeResult(incident_id, created=False, changed=False)
            # Re-diagnosis rule: an incident is (re)queued as PENDING only when it is created (above) or
            # gains a firing alert (a new fingerprint firing, or a resolved one firing again with a new
            # startsAt, or a truncated notification saying a resolved group fires again). Label/annotation/
            # endsAt updates and resolutions never requeue. An incident being EXECUTING is left alone:
            # the running execution owns it until it finishes.
            refired = status is IncidentStatus.FIRING and row["status"] == IncidentStatus.RESOLVED.value
            requeue = (gained_firing or refired) and row["work_state"] != WorkState.EXECUTING.value
            conn.execute(
                "UPDATE incidents SET status = ?, receiver = ?, group_labels = ?, common_labels = ?,"
                " common_annotations = ?, external_url = ?, truncated_alerts = ?, updated_at = ?,"
                # Set when the incident becomes resolved, kept while it stays so, cleared when it fires.
                " resolved_at = CASE WHEN ? = 'resolved' THEN COALESCE(resolved_at, ?) END,"
                " work_state = CASE WHEN ? THEN 'pending' ELSE work_state END,"
                " pending_gen = pending_gen + ? WHERE id = ?",
                (status.value, *incident_fields, now, status.value, now, requeue, int(requeue), incident_id),
            )
            return IntakeResult(incident_id, created=False, changed=True, pending=requeue)

    # -- incidents ------------------------------------------------------------------------------

    async def get_incident(self, incident_id: int) -> Incident | None:
        return await self._run(self._get_incident, "id", incident_id)

    async def get_incident_by_group_key(self, group_key: str) -> Incident | None:
        return await self._run(self._get_incident, "group_key", group_key)

    def _get_incident(self, column: Literal["id", "group_key"], value: object) -> Incident | None:
        row = self._conn.execute(
            f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE {column} = ?", (value,)
        ).fetchone()
        if row is None:
            return None
        return self._with_alerts([row])[0]

    def _with_alerts(self, rows: Sequence[sqlite3.Row]) -> list[Incident]:
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        by_incident: dict[int, list[Alert]] = {i: [] for i in ids}
        placeholders = ",".join("?" * len(ids))
        for alert_row in self._conn.execute(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE incident_id IN ({placeholders}) ORDER BY id", ids
        ):
            by_incident[alert_row["incident_id"]].append(_alert_from_row(alert_row))
        return [_incident_from_row(r, tuple(by_incident[r["id"]])) for r in rows]

    async def list_incidents(
        self,
        *,
        status: IncidentStatus | None = None,
        work_states: Collection[WorkState] | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[Incident]:
        return await self._run(self._list_incidents, status, work_states, since, limit)

    def _list_incidents(
        self,
        status: IncidentStatus | None,
        work_states: Collection[WorkState] | None,
        since: float | None,
        limit: int,
    ) -> list[Incident]:
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            where.append("status = ?")
            params.append(IncidentStatus(status).value)
        if work_states is not None:
            states = [WorkState(s).value for s in work_states]
            if not states:
                return []
            where.append(f"work_state IN ({','.join('?' * len(states))})")
            params.extend(states)
        if since is not None:
            where.append("updated_at >= ?")
            params.append(since)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._conn.execute(
            f"SELECT {_INCIDENT_COLUMNS} FROM incidents{clause} ORDER BY id DESC LIMIT ?", (*params, limit)
        ).fetchall()
        return self._with_alerts(rows)

    async def count_incidents(self) -> dict[tuple[IncidentStatus, WorkState], int]:
        return await self._run(self._count_incidents)

    def _count_incidents(self) -> dict[tuple[IncidentStatus, WorkState], int]:
        rows = self._conn.execute(
            "SELECT status, work_state, COUNT(*) FROM incidents GROUP BY status, work_state"
        ).fetchall()
        return {(IncidentStatus(r[0]), WorkState(r[1])): int(r[2]) for r in rows}

    async def claim_pending(self, limit: int) -> list[int]:
        return await self._run(self._claim_pending, limit)

    def _claim_pending(self, limit: int) -> list[int]:
        now = self._clock()
        with self._write() as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM incidents WHERE work_state = 'pending'"
                    " AND (claimed_by IS NULL OR claimed_by != ? OR claimed_until <= ?) ORDER BY id LIMIT ?",
                    (self._token, now, limit),
                )
            ]
            conn.executemany(
                "UPDATE incidents SET claimed_by = ?, claimed_until = ?, claimed_gen = pending_gen"
                " WHERE id = ?",
                [(self._token, now + self._claim_ttl, i) for i in ids],
            )
        return ids

    async def save_diagnosis(
        self,
        incident_id: int,
        findings: Sequence[Finding],
        *,
        dry_run_diff: str | None,
        error: str | None,
    ) -> None:
        text = findings_dumps(list(findings))
        await self._run(self._save_diagnosis, incident_id, text, dry_run_diff, error)

    def _save_diagnosis(
        self, incident_id: int, findings: str, dry_run_diff: str | None, error: str | None
    ) -> None:
        now = self._clock()
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE incidents SET findings = ?, dry_run_diff = ?, diagnosis_error = ?, updated_at = ?,"
                " work_state = CASE WHEN work_state = 'pending'"
                "   AND (claimed_gen IS NULL OR claimed_gen >= pending_gen) THEN 'diagnosed'"
                "   ELSE work_state END,"
                " claimed_by = NULL, claimed_until = NULL, claimed_gen = NULL WHERE id = ?",
                (findings, dry_run_diff, error, now, incident_id),
            )
            if cursor.rowcount == 0:
                raise NotFound(f"incident {incident_id} does not exist")

    async def set_work_state(
        self,
        incident_id: int,
        new: WorkState,
        *,
        expected: Collection[WorkState] | None = None,
    ) -> bool:
        expected_values = None if expected is None else [WorkState(s).value for s in expected]
        return await self._run(self._set_work_state, incident_id, WorkState(new), expected_values)

    def _set_work_state(self, incident_id: int, new: WorkState, expected: list[str] | None) -> bool:
        if expected is not None and not expected:
            return False
        now = self._clock()
        condition = ""
        params: list[Any] = [new.value, now, int(new is WorkState.PENDING), incident_id]
        if expected is not None:
            condition = f" AND work_state IN ({','.join('?' * len(expected))})"
            params.extend(expected)
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE incidents SET work_state = ?, updated_at = ?, pending_gen = pending_gen + ?,"
                f" claimed_by = NULL, claimed_until = NULL, claimed_gen = NULL WHERE id = ?{condition}",
                params,
            )
            return cursor.rowcount == 1
