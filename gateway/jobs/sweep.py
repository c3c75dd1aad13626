"""Re-send jobs whose Celery message was lost.

Redis here keeps nothing on disk: a broker restart drops queued and unacknowledged messages while
the job rows, committed first, survive. A sweep re-sends every job still ``requested`` after
``JOB_SWEEP_S`` seconds, and every ``in-progress`` job whose lease ran out that long ago (its worker
died and no redelivery came). A duplicate message is harmless: the lease lets one worker run the
job and a finished job is dropped on claim.
"""

from __future__ import annotations

import logging
import threading

from gateway.jobs.dispatch import JobQueue
from gateway.jobs.records import JobStore

__all__ = ["resend_stale_jobs", "start_sweeper"]

_log = logging.getLogger("netliver.gateway.jobs")


def resend_stale_jobs(jobs: JobStore, dispatcher: JobQueue, older_than_s: float) -> list[str]:
    """Re-send the stale jobs; returns their ids (those the broker refused are left for next time)."""
    sent = []
    for job_id in jobs.stale(older_than_s):
        try:
            dispatcher.send(job_id)
        except Exception as exc:  # broker still down: the next sweep tries again
            _log.warning("re-sending a stale job failed", extra={"job": job_id, "error": str(exc)})
            break
        jobs.touch(job_id)
        sent.append(job_id)
    if sent:
        _log.warning("re-sent jobs whose message was lost", extra={"jobs": sent})
    return sent


def start_sweeper(jobs: JobStore, dispatcher: JobQueue, every_s: float) -> threading.Event:
    """A daemon thread sweeping every ``every_s`` seconds; set the returned event to stop it."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            try:
                resend_stale_jobs(jobs, dispatcher, every_s)
            except Exception as exc:  # the database may be down for a while; keep sweeping
                _log.warning("job sweep failed", extra={"error": str(exc)})

    threading.Thread(target=loop, name="job-sweeper", daemon=True).start()
    return stop
