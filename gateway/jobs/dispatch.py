"""Sending job messages to the workers' Celery queue.

The gateway does not import the worker's code: it sends the task by name with the job id only
(the parameters are in the job record). Visibility timeout and late acknowledgement are worker
settings; the producer only needs the broker URL and the queue.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from celery import Celery

from netliver.settings import Settings

__all__ = ["JOB_TASK_NAME", "Dispatcher", "JobQueue"]

JOB_TASK_NAME = "netliver.dosimetry.run_job"
_log = logging.getLogger("netliver.gateway.jobs")


class JobQueue(Protocol):
    """Where job messages go (:class:`Dispatcher` to Celery, or a fake)."""

    def send(self, job_id: str) -> None:
        """Publish the job; raises on a broker failure."""
        ...

    def ping(self) -> dict[str, Any]:
        """``{"status": "pass" | "fail", ...}``."""
        ...


class Dispatcher:
    """Sends job messages to the workers' Celery queue by task name."""

    def __init__(self, settings: Settings) -> None:
        self.queue = settings.job_queue
        self.celery = Celery("netliver-gateway", broker=settings.redis_url)
        self.celery.conf.update(
            broker_connection_retry_on_startup=False,
            broker_transport_options={"visibility_timeout": settings.job_visibility_timeout_s,
                                      "max_retries": 1, "socket_timeout": 3, "socket_connect_timeout": 3},
            task_serializer="json",
        )

    def send(self, job_id: str) -> None:
        """Publish the job; raises on a broker failure (the caller answers 503)."""
        self.celery.send_task(JOB_TASK_NAME, args=[job_id], queue=self.queue,
                              retry=False, task_id=None)
        _log.info("job sent", extra={"job": job_id, "queue": self.queue})

    def prepare(self) -> bool:
        """Do now what the first send would do but write: load the result backend's class and
        open the producer's broker connection and channel (the first kickoff of a gateway process
        took 14-25 ms for them instead of 1; 6-8 ms once prepared). Nothing is written to the
        broker. False, logged, when it does not answer: nothing is lost, the first send tries
        again."""
        try:
            _ = self.celery.backend
            with self.celery.producer_or_acquire() as producer:
                producer.connection.ensure_connection(max_retries=1)
                _ = producer.channel
        except Exception as exc:  # a broker down at start is the health check's to report
            _log.info("job queue not prepared: the first job message opens it",
                      extra={"queue": self.queue, "error": type(exc).__name__})
            return False
        return True

    def ping(self) -> dict[str, Any]:
        try:
            with self.celery.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
            return {"status": "pass", "queue": self.queue}
        except Exception as exc:
            return {"status": "fail", "detail": type(exc).__name__}
