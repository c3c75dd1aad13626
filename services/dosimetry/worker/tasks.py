"""Celery tasks of the dosimetry worker: thin, idempotent, ids and JSON only.

``run_job(job_id)`` claims the job at the gateway, runs it with progress reports (which are
also the cancellation and lease checks), and hands the result resources to the gateway, which
writes them once. A job whose lease another live worker holds is retried later; a job already
finished is acknowledged and dropped.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import requests
from celery import Task, shared_task

from netliver import sessions
from netliver.settings import Settings
from services.dosimetry.worker.reporter import (
    GatewayUnavailable,
    JobCancelled,
    JobLost,
    JobReporter,
)

__all__ = ["JOB_KINDS", "execute_job", "run_job"]

_log = logging.getLogger("netliver.dosimetry.worker")

JobOutput = tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, float]]
JobFunction = Callable[[dict[str, Any], JobReporter, Settings], JobOutput]


def _voxel_dosimetry(params: dict[str, Any], reporter: JobReporter, settings: Settings) -> JobOutput:
    from services.dosimetry.imaging.dicomweb import make_client
    from services.dosimetry.operation import tissue_table, voxel_dosimetry

    client = make_client(settings.dicomweb_url, user=settings.orthanc_user, password=settings.orthanc_password)
    done = voxel_dosimetry(params, reporter.job_id, client, progress=reporter.progress,
                           tissues=tissue_table(settings), find_body_structure=reporter.body_structure,
                           store_bed_map=settings.dosimetry_store_bed_map)
    reporter.note = done.note  # e.g. the RT Dose was not stored: the Task says so
    return done.resources, done.outputs, done.timings_s


#: Job kinds a worker can run, by the ``kind`` of the job record.
JOB_KINDS: dict[str, JobFunction] = {"voxel-dosimetry": _voxel_dosimetry}


class JobError(Exception):
    """A job that cannot succeed (bad study, missing tags...): the Task fails with this reason."""


def execute_job(job_id: str, settings: Settings, worker: str, session: requests.Session | None = None) -> str:
    """Run one job to its end. Returns what happened: completed, failed, cancelled, lost, held,
    done (already finished) or unknown. ``session`` carries the job calls to the gateway (one
    for the job when not given: its claim, progress reports and write-back share a connection)."""
    if session is None:
        # The gateway answers a job call sent twice by the job's state (a second claim renews the
        # lease, a second completion is 'done'), so a POST may go again on a closed connection.
        with sessions.session({*sessions.IDEMPOTENT, "POST"}) as own:
            return execute_job(job_id, settings, worker, own)
    reporter = JobReporter(settings.internal_gateway_url, settings.internal_token, job_id, worker, session)
    try:
        return _execute(reporter, job_id, settings)
    finally:
        reporter.close()  # the progress reports still on their way


def _execute(reporter: JobReporter, job_id: str, settings: Settings) -> str:
    claim = reporter.claim()
    if not claim.get("granted"):
        reason = str(claim.get("reason", ""))
        _log.info("job not claimed", extra={"job": job_id, "reason": reason})
        return "held" if "leased" in reason else ("unknown" if "unknown" in reason else "done")
    job = claim["job"]
    run = JOB_KINDS.get(job["kind"])
    if run is None:
        reporter.fail(f"this worker cannot run jobs of kind {job['kind']!r}")
        return "failed"
    try:
        started = time.perf_counter()
        resources, outputs, timings = run(job["params"], reporter, settings)
    except JobCancelled:
        _log.info("job cancelled; nothing written", extra={"job": job_id})
        return "cancelled"
    except JobLost:
        _log.warning("lease lost; another worker owns the job", extra={"job": job_id})
        return "lost"
    except GatewayUnavailable:
        raise
    except Exception as exc:
        # An imaging error's reason is written for the requester; any other exception's text
        # may hold internal URLs or library details, so the Task names only its type.
        reason = getattr(exc, "reason", None) or (f"the dosimetry worker failed ({type(exc).__name__}); "
                                                  f"its log has the details of job {job_id}")
        _log.exception("job failed", extra={"job": job_id})
        reporter.fail(str(reason)[:2000])
        return "failed"
    timings["total"] = time.perf_counter() - started
    write_started = time.perf_counter()
    state = reporter.complete(resources, outputs, timings)
    _log.info("job finished", extra={"job": job_id, "state": state, "resources": len(resources),
                                     "timings": timings, "write_s": round(time.perf_counter() - write_started, 3)})
    return "completed" if state == "ok" else state


@shared_task(name="netliver.dosimetry.run_job", bind=True, acks_late=True,  # type: ignore[misc,untyped-decorator,unused-ignore]
             reject_on_worker_lost=True, max_retries=None)
def run_job(self: Task, job_id: str) -> str:
    settings: Settings = self.app.conf.get("netliver_settings") or Settings.from_env()
    worker = f"{self.request.hostname or socket.gethostname()}:{os.getpid()}"
    try:
        outcome = execute_job(job_id, settings, worker)
    except GatewayUnavailable as exc:
        _log.warning("gateway unavailable; retrying", extra={"job": job_id, "error": str(exc)})
        raise self.retry(countdown=10) from exc
    if outcome == "held":
        # Another worker holds a live lease: check again when it would have run out.
        raise self.retry(countdown=max(1, settings.job_lease_s))
    return outcome
