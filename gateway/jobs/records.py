"""Durable job records (SQL) and their projection as FHIR ``Task``s.

A job row is committed before its Celery message is sent. Workers hold a *lease* on a job:
``claim`` grants it when the job is new or the previous holder's lease has run out (its worker
died); progress reports renew it; only the holder may complete or fail the job, and a job
completes once. This is what makes a redelivered message safe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from netliver.fhir.builders import fhir_instant
from netliver.fhir.codesystems import CANONICAL_BASE

__all__ = ["TERMINAL", "Claim", "Job", "JobStore", "task_resource"]

TERMINAL = frozenset({"completed", "failed", "cancelled"})
PROGRESS_EXTENSION = f"{CANONICAL_BASE}/StructureDefinition/task-progress"
ATTEMPTS_EXTENSION = f"{CANONICAL_BASE}/StructureDefinition/task-attempts"
#: Seconds spent in each stage of the job (sub-extension url = stage name).
TIMINGS_EXTENSION = f"{CANONICAL_BASE}/StructureDefinition/task-stage-seconds"


@dataclass
class Job:
    id: str
    kind: str
    params: dict[str, Any]
    state: str = "requested"
    stage: str = ""
    progress: float = 0.0
    lease_owner: str = ""
    lease_until: datetime | None = None
    attempts: int = 0
    status_reason: str = ""
    outputs: list[dict[str, Any]] = field(default_factory=list)
    patient: str = ""
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated: datetime = field(default_factory=lambda: datetime.now(UTC))
    completions: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "params": self.params, "state": self.state,
                "stage": self.stage, "progress": self.progress, "attempts": self.attempts,
                "patient": self.patient}


@dataclass(frozen=True)
class Claim:
    granted: bool
    reason: str
    job: Job | None


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class JobStore:
    """Job rows in the gateway's database (SQLite or PostgreSQL).

    The table is added to ``metadata``; whoever owns the schema creates it (the SQL store does,
    under its schema lock, so gunicorn workers starting together do not race)."""

    def __init__(self, engine: sa.Engine, metadata: sa.MetaData) -> None:
        self.engine = engine
        self.metadata = metadata
        self.table = sa.Table(
            "netliver_jobs", self.metadata,
            sa.Column("id", sa.String(64), primary_key=True),
            sa.Column("kind", sa.String(64), nullable=False),
            sa.Column("params", sa.Text, nullable=False),
            sa.Column("state", sa.String(16), nullable=False, index=True),
            sa.Column("stage", sa.String(64), nullable=False, default=""),
            sa.Column("progress", sa.Float, nullable=False, default=0.0),
            sa.Column("lease_owner", sa.String(128), nullable=False, default=""),
            sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
            sa.Column("attempts", sa.Integer, nullable=False, default=0),
            sa.Column("completions", sa.Integer, nullable=False, default=0),
            sa.Column("status_reason", sa.Text, nullable=False, default=""),
            sa.Column("outputs", sa.Text, nullable=False, default="[]"),
            sa.Column("patient", sa.String(128), nullable=False, default=""),
            sa.Column("timings", sa.Text, nullable=False, default="{}"),
            sa.Column("created", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
            extend_existing=True,
        )

    # -- reading ------------------------------------------------------------------------------
    def _row_to_job(self, row: Any) -> Job:
        m = row._mapping
        return Job(id=m["id"], kind=m["kind"], params=json.loads(m["params"]), state=m["state"],
                   stage=m["stage"], progress=m["progress"], lease_owner=m["lease_owner"],
                   lease_until=_utc(m["lease_until"]), attempts=m["attempts"],
                   status_reason=m["status_reason"], outputs=json.loads(m["outputs"]),
                   patient=m["patient"], created=_utc(m["created"]) or datetime.now(UTC),
                   updated=_utc(m["updated"]) or datetime.now(UTC), completions=m["completions"],
                   timings_s=json.loads(m["timings"] or "{}"))

    def get(self, job_id: str, conn: sa.Connection | None = None) -> Job | None:
        stmt = sa.select(self.table).where(self.table.c.id == job_id)
        if conn is not None:
            row = conn.execute(stmt).first()
        else:
            with self.engine.connect() as c:
                row = c.execute(stmt).first()
        return self._row_to_job(row) if row else None

    # -- writing ------------------------------------------------------------------------------
    def insert(self, job: Job, conn: sa.Connection) -> None:
        conn.execute(self.table.insert().values(
            id=job.id, kind=job.kind, params=json.dumps(job.params, sort_keys=True), state=job.state,
            stage=job.stage, progress=job.progress, lease_owner="", lease_until=None, attempts=0,
            completions=0, status_reason="", outputs="[]", patient=job.patient, timings="{}",
            created=job.created, updated=job.updated))

    def reset(self, job: Job, conn: sa.Connection) -> None:
        """Make a failed or cancelled job runnable again with the parameters of the new request
        (the caller asked for it anew)."""
        conn.execute(self.table.update().where(self.table.c.id == job.id).values(
            state="requested", stage="", progress=0.0, lease_owner="", lease_until=None,
            status_reason="", outputs="[]", params=json.dumps(job.params, sort_keys=True),
            patient=job.patient, updated=datetime.now(UTC)))

    def stale(self, older_than_s: float, limit: int = 100) -> list[str]:
        """Ids of jobs whose message may have been lost: still ``requested`` after
        ``older_than_s``, or ``in-progress`` with a lease that ran out ``older_than_s`` ago."""
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
        t = self.table
        stmt = (sa.select(t.c.id)
                .where(sa.or_(sa.and_(t.c.state == "requested", t.c.updated < cutoff),
                              sa.and_(t.c.state == "in-progress", t.c.lease_until < cutoff)))
                .order_by(t.c.updated).limit(limit))
        with self.engine.connect() as conn:
            return [row[0] for row in conn.execute(stmt)]

    def touch(self, job_id: str) -> None:
        """Mark a job as just re-sent (so the next sweep leaves it alone for a while)."""
        with self.engine.begin() as conn:
            conn.execute(self.table.update().where(self.table.c.id == job_id)
                         .where(self.table.c.state == "requested").values(updated=datetime.now(UTC)))

    def claim(self, conn: sa.Connection, job_id: str, worker: str, lease_s: int) -> Claim:
        """Grant ``worker`` the lease inside the caller's transaction (which holds the row lock,
        so the caller can write the Task before a cancel can slip in between)."""
        now = datetime.now(UTC)
        job = self._locked(conn, job_id)
        if job is None:
            return Claim(False, "unknown job", None)
        if job.state in TERMINAL:
            return Claim(False, f"job is {job.state}", job)
        held = (job.state == "in-progress" and job.lease_owner and job.lease_owner != worker
                and job.lease_until is not None and job.lease_until > now)
        if held:
            return Claim(False, "leased by another worker", job)
        job.lease_owner, job.lease_until = worker, now + timedelta(seconds=lease_s)
        job.attempts += 1
        job.state, job.updated = "in-progress", now
        conn.execute(self.table.update().where(self.table.c.id == job_id).values(
            lease_owner=worker, lease_until=job.lease_until, attempts=job.attempts,
            state="in-progress", updated=now))
        return Claim(True, "granted", job)

    def _locked(self, conn: sa.Connection, job_id: str) -> Job | None:
        stmt = sa.select(self.table).where(self.table.c.id == job_id)
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        elif conn.dialect.name == "sqlite":
            # Take SQLite's write lock now so two claims cannot both read the old lease.
            conn.exec_driver_sql("UPDATE netliver_jobs SET id = id WHERE id = ?", (job_id,))
        row = conn.execute(stmt).first()
        return self._row_to_job(row) if row else None

    def progress(self, conn: sa.Connection, job_id: str, worker: str, stage: str, fraction: float,
                 lease_s: int) -> tuple[str, Job | None]:
        """Record progress and renew the lease inside the caller's transaction. Returns ``ok``,
        ``cancelled``, ``lost`` or ``unknown``."""
        now = datetime.now(UTC)
        job = self._locked(conn, job_id)
        if job is None:
            return "unknown", None
        if job.state == "cancelled":
            return "cancelled", job
        if job.state != "in-progress" or job.lease_owner != worker:
            return "lost", job
        job.stage, job.progress = stage, max(0.0, min(1.0, fraction))
        job.lease_until, job.updated = now + timedelta(seconds=lease_s), now
        conn.execute(self.table.update().where(self.table.c.id == job_id).values(
            stage=job.stage, progress=job.progress, lease_until=job.lease_until, updated=now))
        return "ok", job

    def finish(self, conn: sa.Connection, job_id: str, worker: str, state: str, reason: str = "",
               outputs: list[dict[str, Any]] | None = None,
               timings_s: dict[str, float] | None = None) -> tuple[str, Job | None]:
        """Move the job to a terminal state inside the caller's transaction.

        Only the lease holder may finish an in-progress job; ``cancel`` (worker ``""``) may finish
        any job not yet terminal. Returns ``ok``, ``cancelled``, ``lost``, ``done`` or ``unknown``.
        """
        now = datetime.now(UTC)
        job = self._locked(conn, job_id)
        if job is None:
            return "unknown", None
        if job.state in TERMINAL:
            return ("cancelled" if job.state == "cancelled" else "done"), job
        if worker and (job.state != "in-progress" or job.lease_owner != worker):
            return "lost", job
        job.state, job.status_reason, job.updated = state, reason, now
        if state == "completed":
            job.progress, job.stage, job.completions = 1.0, "done", job.completions + 1
        job.outputs = list(outputs or [])
        job.timings_s = {str(k): float(v) for k, v in (timings_s or {}).items()}
        conn.execute(self.table.update().where(self.table.c.id == job_id).values(
            state=state, status_reason=reason, updated=now, progress=job.progress, stage=job.stage,
            outputs=json.dumps(job.outputs), completions=job.completions, timings=json.dumps(job.timings_s)))
        return "ok", job


def task_resource(job: Job, base_url: str) -> dict[str, Any]:
    """The job as a FHIR ``Task`` (R4 §12.1)."""
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": job.id,
        "status": job.state,
        "intent": "order",
        "code": {"coding": [{"system": f"{CANONICAL_BASE}/CodeSystem/operation", "code": job.kind}],
                 "text": f"${job.kind}"},
        "instantiatesCanonical": f"{CANONICAL_BASE}/OperationDefinition/{job.kind}",
        "authoredOn": fhir_instant(job.created),
        "lastModified": fhir_instant(job.updated),
        "businessStatus": {"text": job.stage or job.state},
        "extension": [
            {"url": PROGRESS_EXTENSION, "valueDecimal": round(job.progress, 3)},
            {"url": ATTEMPTS_EXTENSION, "valueInteger": job.attempts},
        ],
        "input": [_task_input(k, v) for k, v in sorted(job.params.items())],
    }
    if job.patient:
        task["for"] = {"reference": job.patient}
    if job.lease_owner and job.state == "in-progress":
        task["owner"] = {"display": job.lease_owner}
    if job.timings_s:
        task["extension"].append({"url": TIMINGS_EXTENSION, "extension": [
            {"url": stage, "valueDecimal": round(seconds, 3)} for stage, seconds in job.timings_s.items()]})
    if job.status_reason:
        task["statusReason"] = {"text": job.status_reason}
    if job.outputs:
        task["output"] = [{"type": {"text": o.get("type", "result")},
                           "valueReference": {"reference": o["reference"]}} for o in job.outputs]
    return task


def _task_input(name: str, value: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"type": {"text": name}}
    if isinstance(value, bool):
        item["valueBoolean"] = value
    elif isinstance(value, (int, float)):
        item["valueDecimal"] = value
    elif isinstance(value, dict) and "reference" in value:
        item["valueReference"] = value
    else:
        item["valueString"] = str(value)
    return item
